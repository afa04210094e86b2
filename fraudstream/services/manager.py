"""Start, stop and inspect the local services as one set: `fraudstream services up|down|status|logs`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fraudstream.config import Settings
from fraudstream.services import kafka_broker, postgres, prometheus, spark
from fraudstream.services.exceptions import ServiceError
from fraudstream.services.process import ManagedProcess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """How to prepare, run and probe one local service."""

    name: str
    prepare: Callable[[Settings], object]
    process: Callable[[Settings], ManagedProcess]
    healthy: Callable[[Settings], bool]
    port: Callable[[Settings], int]
    data_dir: Callable[[Settings], str]
    after_start: Callable[[Settings], None] | None = None
    start_timeout_s: float = 60.0


SERVICES: dict[str, Service] = {
    "postgres": Service(
        "postgres", postgres.prepare, postgres.server_process, postgres.healthy,
        lambda s: s.postgres_port, lambda s: str(postgres.postgres_home(s) / "data"),
        after_start=postgres.ensure_database,
    ),
    "kafka": Service(
        "kafka", kafka_broker.prepare, kafka_broker.broker_process, kafka_broker.healthy,
        lambda s: s.kafka_port, lambda s: str(kafka_broker.kafka_home(s) / "data"),
        start_timeout_s=120.0,  # the JVM's start (and log recovery after a kill) takes a minute on a busy machine
    ),
    "spark": Service("spark", spark.prepare, spark.cluster_process, spark.healthy, lambda s: s.spark_master_port,
                     lambda s: str(spark.spark_dir(s)), start_timeout_s=120.0),
    "prometheus": Service("prometheus", prometheus.prepare, prometheus.server_process, prometheus.healthy,
                          lambda s: s.prometheus_port, lambda s: str(prometheus.prometheus_home(s) / "data")),
    "refresher": Service("refresher", lambda s: None, prometheus.refresher_process, prometheus.refresher_running,
                         lambda s: 0, lambda s: str(prometheus.prometheus_home(s))),
}
DEFAULT_SERVICES = ("postgres", "kafka")
#: Names that stand for several services.
GROUPS = {"monitoring": ("prometheus", "refresher")}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    healthy: bool
    data_dir: str
    action: str = ""


def _selected(names: Sequence[str] | None) -> list[Service]:
    chosen = [member for name in (names or DEFAULT_SERVICES) for member in GROUPS.get(name, (name,))]
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        known = ", ".join([*SERVICES, *GROUPS])
        raise ServiceError(f"unknown service(s) {', '.join(unknown)}; choose from {known}")
    return [SERVICES[name] for name in chosen]


def up(settings: Settings, names: Sequence[str] | None = None) -> list[ServiceStatus]:
    """Start what is not running (idempotent); returns once every service answers its health check."""
    statuses = []
    for service in _selected(names):
        process = service.process(settings)
        pid = process.pid()
        if pid is not None and service.healthy(settings):
            action = "already running"
        else:
            if pid is not None:  # alive but not answering: restart it
                process.stop()
            started = time.monotonic()
            service.prepare(settings)
            pid = process.start(lambda service=service: service.healthy(settings), service.start_timeout_s)
            action = f"started in {time.monotonic() - started:.1f} s"
        if service.after_start is not None:
            service.after_start(settings)
        log.info("service %s (pid %s): %s", service.name, pid, action)
        statuses.append(ServiceStatus(service.name, pid, service.port(settings), True,
                                      service.data_dir(settings), action))
    return statuses


def down(settings: Settings, names: Sequence[str] | None = None) -> list[ServiceStatus]:
    """Stop services in reverse start order (SIGTERM or the server's fast-shutdown signal, wait, report)."""
    chosen = _selected(names or list(SERVICES))
    statuses = []
    for service in reversed(chosen):
        action = service.process(settings).stop()
        log.info("service %s: %s", service.name, action)
        statuses.append(ServiceStatus(service.name, None, service.port(settings), False,
                                      service.data_dir(settings), action))
    return statuses


def status(settings: Settings, names: Sequence[str] | None = None) -> list[ServiceStatus]:
    return [
        ServiceStatus(service.name, service.process(settings).pid(), service.port(settings),
                      service.healthy(settings), service.data_dir(settings))
        for service in _selected(names or list(SERVICES))
    ]


def logs(settings: Settings, name: str, lines: int = 50) -> str:
    return _selected([name])[0].process(settings).log_tail(lines)
