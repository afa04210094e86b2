"""Shared pieces of the local-engine tests: a private set of topics and a group per test, a promoted
model, `fraudstream process` as a real subprocess, and reads of the rows a test produced."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.demo import ensure_default_model, processor_env
from fraudstream.engines.feed import publish_frame
from fraudstream.model.signing import SIGNING_KEY_FILE
from fraudstream.probes import scrape, wait_until_assigned  # noqa: F401 - the tests import scrape from here
from fraudstream.progress import NoProgress, wait_for_count
from fraudstream.simulate.backfill import simulate_history

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))


@dataclass
class EngineRun:
    """Topics, group and model of one test."""

    settings: Settings
    group: str
    logs: Path

    def start(self, instance_id: str | None = None, *options: str) -> subprocess.Popen:
        """`fraudstream process` in this run's topics and group; its log goes to logs/<instance>.log."""
        name = instance_id or uuid.uuid4().hex[:6]
        command = [FRAUDSTREAM, "process", "--group", self.group, "--metrics-port", "0", *options]
        if instance_id:
            command += ["--instance-id", instance_id]
        log = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(command, env=processor_env(self.settings), stdout=log, stderr=subprocess.STDOUT)

    def log_text(self, instance_id: str) -> str:
        return (self.logs / f"{instance_id}.log").read_text()

    def wait_until_assigned(self, process: subprocess.Popen, *, metrics_port: int | None = None,
                            members: int = 1, timeout_s: float = 120) -> None:
        """Until the group coordinator has given partitions to ``members`` members (and the engine on
        ``metrics_port`` reports the partitions it took over): the readiness signal the demo waits on."""
        wait_until_assigned(self.settings, self.group, members=members, timeout_s=timeout_s,
                            metrics_ports=[metrics_port] if metrics_port else [],
                            alive=lambda: process.poll() is None)

    def publish(self, frame: pd.DataFrame) -> None:
        producer = kafka.producer(self.settings)
        publish_frame(producer, self.settings.transactions_topic, frame, self.settings.transactions_partitions)
        assert producer.flush(30) == 0


def new_run(base: Settings, models_state_dir: Path, logs: Path, partitions: int = 6) -> EngineRun:
    """Fresh topics and group (the tables are shared: tests filter rows by their own id prefix)."""
    tag = uuid.uuid4().hex[:10]
    settings = base.model_copy(update={
        "transactions_topic": f"test-tx-{tag}", "labels_topic": f"test-labels-{tag}",
        "alerts_topic": f"test-alerts-{tag}", "dlq_topic": f"test-dlq-{tag}",
        "transactions_partitions": partitions, "state_dir": models_state_dir,
    })
    kafka.create_topics(settings)
    logs.mkdir(parents=True, exist_ok=True)
    return EngineRun(settings, f"test-group-{tag}", logs)


def model_state_dir(base: Settings) -> Path:
    """A state directory whose registry has a promoted model, trained on the first test run and kept."""
    directory = base.state_dir / "tests" / "local-engine"
    ensure_default_model(base.model_copy(update={"state_dir": directory}))
    return directory


def private_model_state(base: Settings, directory: Path) -> Path:
    """A copy of model_state_dir's registry (promotions there stay private) with the key that signed it."""
    source = model_state_dir(base)
    shutil.copytree(source / "models", directory / "models")
    shutil.copy2(source / SIGNING_KEY_FILE, directory / SIGNING_KEY_FILE)
    return directory


def stream(events: int, prefix: str, seed: int = 11) -> pd.DataFrame:
    """``events`` simulated transactions with ids ``prefix + simulator id``, in event-time order."""
    days = max(1, events // 12_000 + 1)
    history = simulate_history(days=days, seed=seed, accounts=8_000, merchants=800)
    frame = history.transactions.head(events).copy()
    assert len(frame) == events, f"simulation produced {len(frame)} < {events} events"
    frame["transaction_id"] = prefix + frame["transaction_id"]
    return frame


def count_rows(database: psycopg.Connection, prefix: str) -> int:
    return database.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE %s",
                            (prefix + "%",)).fetchone()[0]


def wait_for_rows(database: psycopg.Connection, prefix: str, expected: int, stall_s: float,
                  processes: tuple[subprocess.Popen, ...] = ()) -> int:
    """Poll the table until ``expected`` rows with the prefix exist and return the count; gives up (returning
    the count reached) only when no new row came for ``stall_s`` seconds; fails early if a processor died."""

    def alive() -> bool:
        for process in processes:
            assert process.poll() is None, f"processor exited with {process.returncode}"
        return True

    try:
        return wait_for_count(lambda: count_rows(database, prefix), expected, stall_s=stall_s,
                              what=f"rows {prefix}*", alive=alive)
    except NoProgress as stalled:
        return stalled.count


def scored(database: psycopg.Connection, prefix: str) -> pd.DataFrame:
    """The prefix's rows keyed by the id without prefix: score, decision, features, model_version."""
    rows = database.execute(
        "SELECT substr(transaction_id, %s), score, decision, features::text, model_version FROM transactions"
        " WHERE transaction_id LIKE %s", (len(prefix) + 1, prefix + "%")).fetchall()
    frame = pd.DataFrame(rows, columns=["id", "score", "decision", "features", "model_version"])
    return frame.set_index("id").sort_index()


def stop(process: subprocess.Popen, timeout_s: float = 30) -> int:
    """SIGTERM and wait: the processor finishes its batch and leaves the group."""
    if process.poll() is None:
        process.terminate()
    return process.wait(timeout_s)


def free_port() -> int:
    """A port nobody listens on now (for a processor's metrics)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


