"""The demo end to end: producers, the processor subprocess, labels, and a summary that adds up; with
--keep, traffic that goes on after the summary until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from local_engine_harness import free_port
from rich.console import Console

from fraudstream.config import Settings
from fraudstream.demo import processor_env, run_demo
from fraudstream.demo.processor import fraudstream_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_demo_scores_every_event_and_reports_quality_and_latency(postgres_ready: Settings) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = postgres_ready.model_copy(update={
        "transactions_topic": f"demo-tx-{tag}", "labels_topic": f"demo-labels-{tag}",
        "alerts_topic": f"demo-alerts-{tag}", "dlq_topic": f"demo-dlq-{tag}",
    })
    summary = run_demo(settings, duration_s=20, rate=300, hacker_rate=10, console=Console(quiet=True),
                       warm_up_days=7)

    assert summary.dead_lettered >= 5, "one malformed event per second should have been dead-lettered"
    assert summary.scored + summary.dead_lettered == summary.produced
    # The rate is an average over the simulated day; the first simulated hours (UTC night) are quieter.
    assert summary.produced >= 0.4 * 20 * 310
    assert summary.warm_up_events > 7 * 10_000
    assert summary.labels == summary.scored, "every transaction's label should have arrived"
    assert summary.late == 0, "producers sharing one simulated clock should not make late events"
    assert summary.alerted > 0 and summary.precision is not None and summary.recall is not None
    # Alert quality in the range of the model's held-out evaluation. Wall-clock event times (every
    # account transacting every ~20 s) gave precision 0.04 with half the events flagged; a cold
    # feature state (no warm-up) gave ~0.1.
    assert summary.recall > 0.8, f"hacker traffic should be caught: recall {summary.recall:.2f}"
    assert summary.precision > 0.3, f"alerts should mostly be fraud: precision {summary.precision:.2f}"
    assert summary.flagged_share is not None and summary.flagged_share < 0.1
    assert summary.send_to_commit_p50_ms is not None and 0 < summary.send_to_commit_p50_ms < 5_000
    assert summary.ingest_to_commit_p99_ms is not None


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            parents.setdefault(parent, []).append(int(entry.name))
    found, pending = set(), [pid]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ctrl_c(demo: subprocess.Popen) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
    os.killpg(demo.pid, signal.SIGINT)


def sigterm(demo: subprocess.Popen) -> None:
    """What a service manager does: SIGTERM to the demo alone."""
    demo.send_signal(signal.SIGTERM)


@pytest.mark.parametrize("stop", [ctrl_c, sigterm], ids=["ctrl-c", "sigterm"])
def test_keep_goes_on_producing_after_the_summary_until_stopped(
        postgres_ready: Settings, database: psycopg.Connection, stop: Callable[[subprocess.Popen], None]) -> None:
    """`fraudstream demo --keep`: after the summary the producers keep sending and the processor keeps
    scoring, the console answers; Ctrl-C or SIGTERM stops everything with exit code 0 and leaves no process
    behind."""
    tag = uuid.uuid4().hex[:10]
    console_port = free_port()
    settings = postgres_ready.model_copy(update={
        "transactions_topic": f"keep-tx-{tag}", "labels_topic": f"keep-labels-{tag}",
        "alerts_topic": f"keep-alerts-{tag}", "dlq_topic": f"keep-dlq-{tag}",
    })
    env = {**processor_env(settings), "FRAUDSTREAM_CONSOLE_PORT": str(console_port), "COLUMNS": "200"}
    demo = subprocess.Popen(fraudstream_command("demo", "--duration", "10", "--rate", "200", "--hacker-rate", "5",
                                                "--warm-up-days", "1", "--keep"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, as in a terminal
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 420
        while not any("--keep:" in line for line in lines):
            assert demo.poll() is None, "the demo exited before holding:\n" + "".join(lines)
            assert time.monotonic() < deadline, "no hold phase after 420 s:\n" + "".join(lines)
            time.sleep(0.5)
        assert any("fraudstream demo: 10 s" in line for line in lines), "the summary comes before the hold"
        held_at = datetime.now(UTC)

        def rows_since_hold() -> int:
            return database.execute("SELECT count(*) FROM transactions WHERE written_at > %s", (held_at,)).fetchone()[0]

        counts = []
        for _ in range(3):  # rows keep arriving: more at every look
            deadline = time.monotonic() + 60
            while (count := rows_since_hold()) <= (counts[-1] if counts else 0):
                assert demo.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, f"no new rows for 60 s in the hold phase (counts {counts})"
                time.sleep(1.0)
            counts.append(count)
            time.sleep(5.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{console_port}/login", timeout=10) as answer:
            assert answer.status == 200
        children = descendants(demo.pid)
        assert len(children) >= 3, f"a processor and two producers expected below the demo, found {children}"
    except BaseException:
        demo.kill()
        demo.wait()
        raise

    stop(demo)
    assert demo.wait(120) == 0, "".join(lines[-40:])
    reader.join(10)
    assert any("stopping" in line for line in lines)
    left = [pid for pid in children if running(pid)]
    assert not left, f"processes left after the demo stopped: {left}"
