"""A background process we own: pid file, log file, start, health wait, graceful stop, stale-pid recovery."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fraudstream.services.exceptions import PortTaken, ServiceError


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True for a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class ManagedProcess:
    """One long-running JVM or server process, identified by a pid file and a marker in its command line."""

    name: str
    command: Sequence[str]
    pid_file: Path
    log_file: Path
    marker: str
    ports: dict[int, str] = field(default_factory=dict)  # port -> setting that changes it
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM

    def pid(self) -> int | None:
        """The pid of our running process, or None; a stale pid file (after kill -9) is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and self.marker in pid_cmdline(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def check_ports_free(self) -> None:
        """PortTaken naming the setting, when a port we need is held by someone else."""
        for port, setting in self.ports.items():
            if port_open(port):
                raise PortTaken(self.name, port, setting)

    def start(self, healthy: Callable[[], bool], timeout_s: float) -> int:
        """Start in its own session, wait until `healthy()`; ServiceError with the log's tail otherwise."""
        self.check_ports_free()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                list(self.command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.cwd, env={**os.environ, **self.env}, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"{self.name} exited with code {process.returncode}.\n{self.log_tail()}")
            if healthy():
                return process.pid
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"{self.name} did not become healthy within {timeout_s:.0f} s.\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> str:
        """SIGTERM, wait, then SIGKILL; returns what happened in words."""
        pid = self.pid()
        if pid is None:
            return "not running"
        os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                return "stopped"
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return f"killed after {timeout_s:.0f} s"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
