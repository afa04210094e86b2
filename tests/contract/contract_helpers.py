"""Pieces of the engine contract suite: the engines as the contract drives them, SIGKILL, topic reads."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from local_engine_harness import FRAUDSTREAM, EngineRun

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.demo import processor_env


@dataclass(frozen=True)
class EngineUnderTest:
    """One engine as the contract drives it."""

    name: str
    #: A member of the engine on the run's topics (its log under the run's logs, named by the instance).
    start: Callable[[EngineRun, str], subprocess.Popen]
    #: SIGKILLs in the kill test (half in each phase, the odd one in the second, where labels take effect).
    #: Spark gets one: each driver start costs its 15-45 s first batch on a quiet machine (70-120 s under a
    #: load average of 6-8), and a kill test with two took 9.4 min of the suite's 14 there.
    kills: int
    #: How long without a new row means the engine is stuck (Spark's first batch after a start is slow).
    stall_s: float
    #: What the engine logs when it switches to a promoted model.
    switch_log: str


def start_local(run: EngineRun, instance: str) -> subprocess.Popen:
    """`fraudstream process`, small batches and frequent snapshots: kills land between batches, and
    restores start from snapshots."""
    return run.start(instance, "--batch-size", "300", "--snapshot-interval-s", "1")


def start_spark(run: EngineRun, instance: str) -> subprocess.Popen:
    """`fraudstream spark submit` in its own process group (the driver's JVM is its child), one checkpoint
    per run."""
    checkpoint = run.logs / f"checkpoint-{run.group}"
    command = [FRAUDSTREAM, "spark", "submit", "--checkpoint", str(checkpoint), "--max-offsets-per-trigger", "600",
               "--app-name", f"test-{run.group}"]
    log = (run.logs / f"{instance}.log").open("ab")
    return subprocess.Popen(command, env=processor_env(run.settings), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


ENGINES = {
    "local": EngineUnderTest("local", start_local, kills=10, stall_s=60, switch_log="model switched from="),
    "spark": EngineUnderTest("spark", start_spark, kills=1, stall_s=240, switch_log="spark job switched model"),
}


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the member and every process it started (the Spark driver's JVM), as when its machine dies."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGKILL)
    process.wait(30)


def read_topic(settings: Settings, topic: str, at_least: int, idle_s: float = 3.0,
               timeout_s: float = 60.0) -> list[tuple[bytes | None, bytes | None, dict[str, str]]]:
    """Every message of ``topic`` as (key, value, headers): read until at least ``at_least`` came and then
    nothing for ``idle_s``."""
    consumer = kafka.consumer(settings, f"contract-reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    found: list[tuple[bytes | None, bytes | None, dict[str, str]]] = []
    deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
    try:
        while time.monotonic() < deadline:
            messages = [m for m in consumer.consume(500, 0.5) if m.error() is None]
            if messages:
                quiet_since = time.monotonic()
            found += [(m.key(), m.value(), {name: value.decode() for name, value in m.headers() or []})
                      for m in messages]
            if len(found) >= at_least and time.monotonic() - quiet_since >= idle_s:
                break
    finally:
        consumer.close()
    return found
