"""Errors of the local service manager; each message names what to change."""


class ServiceError(RuntimeError):
    """A local service could not be installed, started or stopped."""


class PortTaken(ServiceError):
    """Another program listens on a port one of our services needs."""

    def __init__(self, service: str, port: int, setting: str) -> None:
        super().__init__(
            f"{service}: port {port} is already in use by a process that is not ours. "
            f"Stop that process or choose another port with {setting}=<port>."
        )
