"""`fraudstream demo`: the whole pipeline on this machine, with a summary a person can check.

Services, topics and schema; a default model (trained on first run); the processor as a real
`fraudstream process` subprocess; normal and hacker producers plus a trickle of malformed events; a
live view; and at the end the figures that matter, all computed from the data itself: the rows'
own timestamps for latency and the ground-truth labels for precision and recall.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.model.registry import Registry
from fraudstream.model.train import SplitConfig, TrainConfig, build
from fraudstream.services import manager
from fraudstream.simulate.live import LIVE_LABEL_DELAYS, LiveProducer, Mode, ProduceSummary, TrafficSource
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS
from fraudstream.store.schema import migrate

log = logging.getLogger(__name__)

#: The first-run model: 10 simulated days (about a minute here), enough for a model that works.
DEFAULT_TRAINING_DAYS = 10
DEFAULT_TRAINING = TrainConfig(split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=2, test_days=2),
                               max_rounds=200)
MALFORMED_EVENT = b'{"transaction_id": "demo-malformed", "amount": '


def ensure_default_model(settings: Settings) -> str:
    """The promoted model's version; on first run, train one on a small simulated history and promote it."""
    version = Registry(settings.models_dir).production_version()
    if version is not None:
        return version
    log.info("training default model days=%d models_dir=%s", DEFAULT_TRAINING_DAYS, settings.models_dir)
    version, result = build(settings.models_dir, days=DEFAULT_TRAINING_DAYS, promote=True, config=DEFAULT_TRAINING)
    log.info("default model promoted version=%s average_precision=%.3f", version,
             result.metrics["model"]["average_precision"])
    return version


@dataclass
class DemoSummary:
    """The demo's closing figures (latencies in ms; precision/recall over labelled transactions)."""

    produced: int = 0
    scored: int = 0
    alerted: int = 0
    dead_lettered: int = 0
    labels: int = 0
    precision: float | None = None
    recall: float | None = None
    event_to_commit_p50_ms: float | None = None
    event_to_commit_p99_ms: float | None = None
    ingest_to_commit_p50_ms: float | None = None
    ingest_to_commit_p99_ms: float | None = None
    model_version: str = ""


def processor_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child `fraudstream` command see these settings' endpoints and topics."""
    names = ("kafka_bootstrap", "database_url", "state_dir", "transactions_topic", "labels_topic", "alerts_topic",
             "dlq_topic", "transactions_partitions")
    return {**os.environ, **{f"FRAUDSTREAM_{name.upper()}": str(getattr(settings, name)) for name in names}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dead_lettered(metrics_port: int) -> int:
    """The processor's own dead-letter counter, read from its /metrics endpoint."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith('fraudstream_events_total{outcome="dead_lettered"}'):
            return int(float(line.split()[-1]))
    return 0


def measure(connection: psycopg.Connection, since: datetime, id_patterns: list[str]) -> DemoSummary:
    """Figures over this run's rows: event time after ``since`` (live events carry wall-clock time) and
    transaction ids matching ``id_patterns`` (the table is shared with other runs)."""
    scored, alerted, p50, p99, ingest50, ingest99 = connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE decision <> 'approve'),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - event_time)),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - event_time)),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at)),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at))"
        " FROM transactions WHERE event_time >= %s AND transaction_id LIKE ANY(%s)", (since, id_patterns)).fetchone()
    labels, true_alerts, labelled_alerts, frauds = connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE l.is_fraud AND t.decision <> 'approve'),"
        " count(*) FILTER (WHERE t.decision <> 'approve'), count(*) FILTER (WHERE l.is_fraud)"
        " FROM labels l JOIN transactions t USING (transaction_id)"
        " WHERE t.event_time >= %s AND t.transaction_id LIKE ANY(%s)", (since, id_patterns)).fetchone()

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else float(seconds) * 1000

    return DemoSummary(
        scored=scored, alerted=alerted, labels=labels,
        precision=true_alerts / labelled_alerts if labelled_alerts else None,
        recall=true_alerts / frauds if frauds else None,
        event_to_commit_p50_ms=ms(p50), event_to_commit_p99_ms=ms(p99),
        ingest_to_commit_p50_ms=ms(ingest50), ingest_to_commit_p99_ms=ms(ingest99),
    )


def summary_table(summary: DemoSummary, title: str) -> Table:
    def number(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:,.0f}{unit}"

    def share(value: float | None) -> str:
        return "- (no labels yet)" if value is None else f"{value:.1%}"

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in (
        ("model version", summary.model_version),
        ("events produced", number(summary.produced)),
        ("scored", number(summary.scored)),
        ("alerted (review + block)", number(summary.alerted)),
        ("dead-lettered", number(summary.dead_lettered)),
        ("labels received", number(summary.labels)),
        ("alert precision", share(summary.precision)),
        ("alert recall", share(summary.recall)),
        ("event time -> commit p50 / p99", f"{number(summary.event_to_commit_p50_ms, ' ms')} / "
                                           f"{number(summary.event_to_commit_p99_ms, ' ms')}"),
        ("ingest -> commit p50 / p99", f"{number(summary.ingest_to_commit_p50_ms, ' ms')} / "
                                       f"{number(summary.ingest_to_commit_p99_ms, ' ms')}"),
    ):
        table.add_row(name, value)
    return table


class Demo:
    """One demo run; the pieces are started in order and stopped in reverse."""

    def __init__(self, settings: Settings, duration_s: float, rate: float, hacker_rate: float,
                 console: Console) -> None:
        self.settings = settings
        self.duration_s = duration_s
        self.rate = rate
        self.hacker_rate = hacker_rate
        self.console = console
        self.metrics_port = _free_port()
        self.sources = [TrafficSource(mode, seed, 10_000, 2_000, 0.007, DEFAULT_SCENARIO_WEIGHTS)
                        for mode, seed in ((Mode.normal, 7), (Mode.hacker, 8))]
        self.id_patterns = [source.id_prefix + "%" for source in self.sources]
        self.producer_summaries: list[ProduceSummary] = []
        self.malformed_sent = 0

    def prepare(self) -> str:
        self.console.print("[bold]services[/] (Kafka, PostgreSQL), topics, schema")
        manager.up(self.settings, ["postgres", "kafka"])
        migrate(self.settings.database_url)
        kafka.create_topics(self.settings)
        self.console.print("[bold]model[/] (trained on first run, about a minute)")
        return ensure_default_model(self.settings)

    def start_processor(self, log_path: Path) -> subprocess.Popen:
        command = [str(Path(sys.executable).with_name("fraudstream")), "process", "--group", "fraudstream-demo",
                   "--metrics-port", str(self.metrics_port), "--from-end"]
        process = subprocess.Popen(command, env=processor_env(self.settings), stdout=log_path.open("wb"),
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "partition assigned" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the processor did not start; see {log_path}")
            time.sleep(0.2)
        return process

    def _produce(self, source: TrafficSource, rate: float) -> None:
        live = LiveProducer(self.settings, source, rate, LIVE_LABEL_DELAYS, self.settings.transactions_topic,
                            self.settings.labels_topic)
        self.producer_summaries.append(live.run(self.duration_s, None, progress=False))

    def _malformed(self, stop: threading.Event) -> None:
        producer = kafka.producer(self.settings)
        while not stop.wait(1.0):
            producer.produce(self.settings.transactions_topic, key=b"demo-malformed", value=MALFORMED_EVENT)
            self.malformed_sent += 1
        producer.flush(10)

    def run(self) -> DemoSummary:
        version = self.prepare()
        log_path = self.settings.state_dir / "demo-processor.log"
        since = datetime.now(UTC)
        processor = self.start_processor(log_path)
        stop = threading.Event()
        normal, hacker = self.sources
        threads = [threading.Thread(target=self._produce, args=(normal, self.rate), daemon=True),
                   threading.Thread(target=self._produce, args=(hacker, self.hacker_rate), daemon=True),
                   threading.Thread(target=self._malformed, args=(stop,), daemon=True)]
        for thread in threads:
            thread.start()
        self.console.print(f"[bold]running[/] {self.duration_s:.0f} s: normal {self.rate:,.0f}/s, hacker "
                           f"{self.hacker_rate:,.0f}/s; processor log {log_path}")
        try:
            with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
                with Live(console=self.console, refresh_per_second=2) as live:
                    while any(thread.is_alive() for thread in threads[:2]):
                        live.update(summary_table(self._snapshot(connection, since, version), "live"))
                        time.sleep(1.0)
                    stop.set()
                    threads[2].join()
                    produced = sum(s.events_sent for s in self.producer_summaries)
                    labels_sent = sum(s.labels_sent for s in self.producer_summaries)
                    deadline = time.monotonic() + 60  # let the processor drain the backlog and the late labels
                    while time.monotonic() < deadline:
                        current = self._snapshot(connection, since, version)
                        live.update(summary_table(current, "draining"))
                        if current.scored >= produced and current.labels >= labels_sent:
                            break
                        time.sleep(1.0)
                final = self._snapshot(connection, since, version)
        finally:
            processor.terminate()
            processor.wait(30)
        final.produced = produced + self.malformed_sent
        return final

    def _snapshot(self, connection: psycopg.Connection, since: datetime, version: str) -> DemoSummary:
        summary = measure(connection, since, self.id_patterns)
        summary.dead_lettered = _dead_lettered(self.metrics_port)
        summary.produced = sum(s.events_sent for s in self.producer_summaries)
        summary.model_version = version
        return summary


def run_demo(settings: Settings, duration_s: float, rate: float, hacker_rate: float, console: Console) -> DemoSummary:
    """Run the whole pipeline for ``duration_s`` seconds and return the closing figures."""
    return Demo(settings, duration_s, rate, hacker_rate, console).run()
