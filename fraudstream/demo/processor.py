"""The demo's processor: `fraudstream process` as a child process, started once it holds its partitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fraudstream.config import Settings
from fraudstream.probes import NotReady, wait_until_assigned

#: How long a starting processor may take to join its group and take its partitions over.
START_TIMEOUT_S = 120.0


def processor_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child `fraudstream` command see these settings' endpoints and topics."""
    names = ("kafka_bootstrap", "database_url", "state_dir", "transactions_topic", "labels_topic", "alerts_topic",
             "dlq_topic", "transactions_partitions")
    return {**os.environ, **{f"FRAUDSTREAM_{name.upper()}": str(getattr(settings, name)) for name in names}}


def fraudstream_command(*arguments: str) -> list[str]:
    """The `fraudstream` command of this installation (beside this Python)."""
    return [str(Path(sys.executable).with_name("fraudstream")), *arguments]


def start_processor(settings: Settings, group: str, metrics_port: int, log_path: Path) -> subprocess.Popen:
    """A processor in a fresh ``group`` that starts at the end of the topic; returns once it reports the
    partitions it owns (traffic sent from then on is processed)."""
    command = fraudstream_command("process", "--group", group, "--metrics-port", str(metrics_port), "--from-end")
    process = subprocess.Popen(command, env=processor_env(settings), stdout=log_path.open("wb"),
                               stderr=subprocess.STDOUT)
    try:
        wait_until_assigned(settings, group, metrics_ports=[metrics_port], timeout_s=START_TIMEOUT_S,
                            alive=lambda: process.poll() is None)
    except NotReady as error:
        stop_processor(process)
        raise RuntimeError(f"the processor did not start: {error}; see {log_path}") from None
    return process


def stop_processor(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM (the processor finishes its batch and closes), then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
