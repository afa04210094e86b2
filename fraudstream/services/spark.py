"""A local Spark standalone cluster (one master, N one-core workers) run from the pyspark package.

The pyspark wheel ships ``bin/spark-class`` but not the ``sbin`` start scripts, so the master and the
workers are started here as plain JVM processes (``spark-class org.apache.spark.deploy...``). The
master is the service's identity (its pid file, its port); the workers are composed into it so that
``services up|down|status spark`` treats the cluster as one service.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fraudstream.config import Settings
from fraudstream.services.exceptions import ServiceError
from fraudstream.services.maven import project_jars
from fraudstream.services.process import ManagedProcess, port_open

#: Each worker offers one core and 1 GB to executors: the machine is small and shared.
WORKER_CORES = 1
WORKER_MEMORY = "1g"
#: Heap of the master and worker daemons themselves (executors get WORKER_MEMORY).
DAEMON_MEMORY = "512m"

DAEMON_PROPERTIES = "\n".join([
    "spark.master.rest.enabled=false",
    "spark.worker.cleanup.enabled=true",
    "spark.worker.cleanup.appDataTtl=86400",
    "",
])


def spark_home() -> Path:
    """The pyspark package directory: it is a complete SPARK_HOME (bin/, jars/). Found without importing
    pyspark, which is slow and not needed to manage the daemons."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ServiceError("pyspark is not installed: pip install 'fraudstream[spark]'")
    return Path(spec.origin).resolve().parent


def spark_env() -> dict[str, str]:
    """Environment for Spark's launch scripts: this pyspark, loopback only, this venv's Python."""
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_NO_DAEMONIZE": "1",
    }


def spark_dir(settings: Settings) -> Path:
    return settings.state_dir / "spark"


def master_url(settings: Settings) -> str:
    """The URL of the local master, as jobs and workers address it."""
    return f"spark://127.0.0.1:{settings.spark_master_port}"


def connector_jars(settings: Settings) -> list[Path]:
    """The Kafka connector jars pyspark lacks (deploy/maven/spark/pom.xml), resolved once into the state dir."""
    folder = project_jars(settings, "spark")
    return sorted(folder.glob("*.jar"))


def _spark_class(*args: str) -> list[str]:
    return [str(spark_home() / "bin" / "spark-class"), *args]


def master_state(settings: Settings) -> dict | None:
    """The master's JSON status page, or None when it does not answer."""
    url = f"http://127.0.0.1:{settings.spark_master_webui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def alive_workers(settings: Settings) -> int:
    """Workers registered with the master and alive (0 when the master does not answer)."""
    state = master_state(settings)
    if state is None:
        return 0
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def healthy(settings: Settings) -> bool:
    """The master answers and every configured worker has registered with it."""
    return port_open(settings.spark_master_port) and alive_workers(settings) >= settings.spark_workers


@dataclass
class SparkCluster(ManagedProcess):
    """The master process, plus its workers started after it and stopped before it."""

    workers: list[ManagedProcess] = field(default_factory=list)
    master_ready: Callable[[], bool] = lambda: False
    registered: Callable[[], int] = lambda: 0

    def start(self, healthy: Callable[[], bool], timeout_s: float) -> int:
        """Master first (until it answers), then each worker until the master counts it, then `healthy()`."""
        for worker in self.workers:
            worker.check_ports_free()
        deadline = time.monotonic() + timeout_s
        pid = super().start(self.master_ready, timeout_s)
        try:
            for count, worker in enumerate(self.workers, start=1):
                if worker.pid() is None:
                    worker.start(lambda count=count: self.registered() >= count,
                                 max(deadline - time.monotonic(), 1.0))
            while not healthy():
                if time.monotonic() > deadline:
                    raise ServiceError(f"spark cluster not healthy within {timeout_s:.0f} s.\n{self.log_tail()}")
                time.sleep(0.2)
        except ServiceError:
            self.stop()
            raise
        return pid

    def stop(self, timeout_s: float = 20.0) -> str:
        """Workers first (so that they do not try to re-register), then the master."""
        stopped = [worker.stop(timeout_s) for worker in self.workers]
        action = super().stop(timeout_s)
        if action == "not running" and any(state != "not running" for state in stopped):
            return "stopped workers"
        return action

    def log_tail(self, lines: int = 20) -> str:
        parts = [f"== {self.name} ==\n{super().log_tail(lines)}"]
        parts += [f"== {worker.name} ==\n{worker.log_tail(lines)}" for worker in self.workers]
        return "\n".join(parts)


def cluster_process(settings: Settings) -> SparkCluster:
    """The cluster as one managed process: master on spark_master_port, workers on consecutive web UI ports."""
    home = spark_dir(settings)
    properties = home / "spark-daemons.conf"
    env = spark_env()
    workers = []
    for index in range(1, settings.spark_workers + 1):
        webui = settings.spark_worker_webui_port + index - 1
        work_dir = home / f"worker-{index}"
        workers.append(ManagedProcess(
            name=f"spark-worker-{index}",
            command=_spark_class("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                 "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
                                 "--webui-port", str(webui), "--work-dir", str(work_dir),
                                 "--properties-file", str(properties), master_url(settings)),
            pid_file=home / f"worker-{index}.pid",
            log_file=home / f"worker-{index}.log",
            marker=str(work_dir),
            ports={webui: "FRAUDSTREAM_SPARK_WORKER_WEBUI_PORT"},
            env=env,
            cwd=home,
        ))
    return SparkCluster(
        name="spark",
        command=_spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                             "--port", str(settings.spark_master_port),
                             "--webui-port", str(settings.spark_master_webui_port),
                             "--properties-file", str(properties)),
        pid_file=home / "master.pid",
        log_file=home / "master.log",
        marker=str(properties),
        ports={settings.spark_master_port: "FRAUDSTREAM_SPARK_MASTER_PORT",
               settings.spark_master_webui_port: "FRAUDSTREAM_SPARK_MASTER_WEBUI_PORT"},
        env=env,
        cwd=home,
        workers=workers,
        master_ready=lambda: master_state(settings) is not None,
        registered=lambda: alive_workers(settings),
    )


def prepare(settings: Settings) -> list[Path]:
    """Java present, daemon configuration written, connector jars resolved (so a job never downloads)."""
    if not (spark_home() / "bin" / "spark-class").exists():
        raise ServiceError(f"{spark_home()} has no bin/spark-class: reinstall pyspark")
    if shutil.which("java") is None:
        raise ServiceError("Java is required for Spark: apt-get install openjdk-17-jre-headless")
    home = spark_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    (home / "spark-daemons.conf").write_text(DAEMON_PROPERTIES)
    for index in range(1, settings.spark_workers + 1):
        (home / f"worker-{index}").mkdir(exist_ok=True)
    return connector_jars(settings)
