"""`fraudstream demo`: the whole pipeline on this machine, with a summary a person can check.

Services, topics and schema; a default model (trained on first run); the processor as a real
`fraudstream process` subprocess; normal and hacker producers plus a trickle of malformed events; a
live view; and at the end the figures that matter, all computed from the data itself: the rows'
own timestamps and the producers' send times for latency, the ground-truth labels for precision
and recall.

The traffic runs on a simulated clock (``simulate/live.py``): the simulated world continues right
after the history the model was trained on, at a time scale that makes the requested rate, so every
account transacts as often per simulated hour as in training. Before the measured part, the
processor is warmed up with the preceding simulated days (as fast as it can take them), because a
fraud system that just started knows no account. Each run is its own world: a fresh consumer group
(no feature state from an earlier run) and its own labels topic (no earlier run's labels).
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.console.server import BackgroundConsole, ConsoleUnavailable, announce
from fraudstream.model.registry import Registry
from fraudstream.model.train import SplitConfig, TrainConfig
from fraudstream.progress import NoProgress, wait_for_count
from fraudstream.services import manager
from fraudstream.simulate.backfill import DEFAULT_START, to_microseconds
from fraudstream.simulate.live import (
    DEFAULT_WARM_UP_DAYS,
    SIMULATED_LABEL_DELAYS,
    LiveProducer,
    Mode,
    ProduceSummary,
    SimulatedClock,
    TrafficSource,
    default_live_start_us,
    hacker_fraud_share,
    time_scale_for,
    warm_up_together,
)
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS
from fraudstream.store.schema import migrate
from fraudstream.timeunits import MICROS_PER_DAY
from fraudstream.training import build

log = logging.getLogger(__name__)

#: The first-run model: 10 simulated days (about a minute here), enough for a model that works.
DEFAULT_TRAINING_DAYS = 10
DEFAULT_TRAINING = TrainConfig(split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=2, test_days=2),
                               max_rounds=200)
MALFORMED_EVENT = b'{"transaction_id": "demo-malformed", "amount": '
#: The warm-up fails only when the processor scored nothing new for this long (a busy machine is slower,
#: not stuck); the drain after the live part ends after this long without a new row or label.
WARM_UP_STALL_S = 120.0
DRAIN_STALL_S = 30.0


def ensure_default_model(settings: Settings) -> str:
    """The promoted model's version; on first run, train one on a small simulated history and promote it
    (also when the promoted one predates signed manifests: it could not be loaded)."""
    registry = Registry(settings.models_dir)
    version = registry.production_version()
    if version is not None and registry.signed(version):
        return version
    log.info("training default model days=%d models_dir=%s", DEFAULT_TRAINING_DAYS, settings.models_dir)
    version, result = build(settings.models_dir, days=DEFAULT_TRAINING_DAYS, promote=True, config=DEFAULT_TRAINING)
    log.info("default model promoted version=%s average_precision=%.3f", version,
             result.metrics["model"]["average_precision"])
    return version


@dataclass
class DemoSummary:
    """The demo's closing figures over the measured (live) part; the warm-up is not counted.

    Latencies are in ms of real time: ``send_to_commit`` from the producer handing an event to the
    Kafka client to its row's write, ``ingest_to_commit`` from the processor reading it to the write.
    (Event time is simulated, so event time -> commit is not a latency here.) Precision and recall are
    over labelled transactions."""

    produced: int = 0
    scored: int = 0
    alerted: int = 0
    dead_lettered: int = 0
    labels: int = 0
    frauds: int = 0
    late: int = 0
    precision: float | None = None
    recall: float | None = None
    send_to_commit_p50_ms: float | None = None
    send_to_commit_p99_ms: float | None = None
    ingest_to_commit_p50_ms: float | None = None
    ingest_to_commit_p99_ms: float | None = None
    model_version: str = ""
    time_scale: float | None = None
    warm_up_events: int = 0
    simulated_start: datetime | None = None
    simulated_end: datetime | None = None

    @property
    def flagged_share(self) -> float | None:
        return self.alerted / self.scored if self.scored else None


def processor_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child `fraudstream` command see these settings' endpoints and topics."""
    names = ("kafka_bootstrap", "database_url", "state_dir", "transactions_topic", "labels_topic", "alerts_topic",
             "dlq_topic", "transactions_partitions")
    return {**os.environ, **{f"FRAUDSTREAM_{name.upper()}": str(getattr(settings, name)) for name in names}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processor_counter(metrics_port: int, outcome: str) -> int:
    """The processor's own event counter for ``outcome`` (scored, dead_lettered), from its /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f'fraudstream_events_total{{outcome="{outcome}"}}'):
            return int(float(line.split()[-1]))
    return 0


def measure(connection: psycopg.Connection, since: datetime, id_patterns: list[str]) -> DemoSummary:
    """Figures over this run's rows: (simulated) event time at or after ``since`` (the warm-up is
    before it) and transaction ids matching ``id_patterns`` (the table is shared with other runs)."""
    scored, alerted, late, ingest50, ingest99 = connection.execute(
        "SELECT count(*), count(*) FILTER (WHERE decision <> 'approve'), count(*) FILTER (WHERE is_late),"
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
        scored=scored, alerted=alerted, labels=labels, frauds=frauds, late=late,
        precision=true_alerts / labelled_alerts if labelled_alerts else None,
        recall=true_alerts / frauds if frauds else None,
        ingest_to_commit_p50_ms=ms(ingest50), ingest_to_commit_p99_ms=ms(ingest99),
    )


def send_to_commit_ms(connection: psycopg.Connection, since: datetime,
                      send_times_us: dict[str, np.ndarray]) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) from the producers' send times (per id prefix, indexed by the number that ends
    each transaction id) to the rows' write times."""
    sent, written = [], []
    for prefix, times_us in send_times_us.items():
        rows = connection.execute(
            "SELECT substr(transaction_id, %s)::bigint, (extract(epoch FROM written_at) * 1e6)::bigint"
            " FROM transactions WHERE event_time >= %s AND transaction_id LIKE %s",
            (len(prefix) + 1, since, prefix + "%")).fetchall()
        if not rows:
            continue
        numbers, written_us = np.array(rows, dtype=np.int64).T
        known = (numbers < len(times_us)) & (times_us[np.minimum(numbers, len(times_us) - 1)] >= 0)
        sent.append(times_us[numbers[known]])
        written.append(written_us[known])
    if not sent:
        return None, None
    latency_ms = (np.concatenate(written) - np.concatenate(sent)) / 1000.0
    return float(np.percentile(latency_ms, 50)), float(np.percentile(latency_ms, 99))


def summary_table(summary: DemoSummary, title: str) -> Table:
    def number(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:,.0f}{unit}"

    def share(value: float | None) -> str:
        return "- (no labels yet)" if value is None else f"{value:.1%}"

    def moment(value: datetime | None) -> str:
        return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    flagged = summary.flagged_share
    for name, value in (
        ("model version", summary.model_version),
        ("simulated time (x wall clock)", f"{moment(summary.simulated_start)} -> {moment(summary.simulated_end)}"
                                          f" (x{number(summary.time_scale)})"),
        ("warm-up events (not counted)", number(summary.warm_up_events)),
        ("events produced", number(summary.produced)),
        ("scored", number(summary.scored)),
        ("alerted (review + block)", number(summary.alerted) + ("" if flagged is None else f" ({flagged:.2%})")),
        ("dead-lettered", number(summary.dead_lettered)),
        ("labels received (fraud)", f"{number(summary.labels)} ({number(summary.frauds)})"),
        ("alert precision", share(summary.precision)),
        ("alert recall", share(summary.recall)),
        ("late events", number(summary.late)),
        ("send -> commit p50 / p99", f"{number(summary.send_to_commit_p50_ms, ' ms')} / "
                                     f"{number(summary.send_to_commit_p99_ms, ' ms')}"),
        ("ingest -> commit p50 / p99", f"{number(summary.ingest_to_commit_p50_ms, ' ms')} / "
                                       f"{number(summary.ingest_to_commit_p99_ms, ' ms')}"),
    ):
        table.add_row(name, value)
    return table


class Demo:
    """One demo run; the pieces are started in order and stopped in reverse."""

    def __init__(self, settings: Settings, duration_s: float, rate: float, hacker_rate: float,
                 console: Console, warm_up_days: float = DEFAULT_WARM_UP_DAYS, keep: bool = False,
                 with_console: bool = True) -> None:
        tag = os.urandom(4).hex()
        #: This run's own labels topic: a fresh processor reads its labels topic from the beginning, and
        #: an earlier run's labels (same simulated dates, same merchants) would count as this run's.
        self.settings = settings.model_copy(update={"labels_topic": f"{settings.labels_topic}-demo-{tag}"})
        self.group = f"fraudstream-demo-{tag}"  # a fresh feature state, not an earlier run's
        self.duration_s = duration_s
        self.rate = rate
        self.hacker_rate = hacker_rate
        self.warm_up_days = warm_up_days
        self.console = console
        self.metrics_port = _free_port()
        self.producers: list[LiveProducer] = []
        self.producer_summaries: list[ProduceSummary] = []
        self.malformed_sent = 0
        self.live_start_us = 0
        self.time_scale = 1.0
        self.warm_up_events = 0
        self.keep = keep
        self.console_url: str | None = None
        self.with_console = with_console

    @property
    def id_patterns(self) -> list[str]:
        return [producer.source.id_prefix + "%" for producer in self.producers]

    def prepare(self) -> str:
        self.console.print("[bold]services[/] (Kafka, PostgreSQL), topics, schema")
        manager.up(self.settings, ["postgres", "kafka"])
        migrate(self.settings.database_url)
        kafka.create_topics(self.settings)
        self.console.print("[bold]model[/] (trained on first run, about a minute)")
        version = ensure_default_model(self.settings)
        self.producers = self.build_producers()
        return version

    def build_producers(self) -> list[LiveProducer]:
        """Customers and attackers of one simulated population (the model's, seed 7) on one clock.

        The attackers simulate the same population and traffic and send only their fraud, at a share
        that gives ``hacker_rate`` beside the customers' ``rate``; so every attack hits accounts and
        merchants whose real history the processor has seen."""
        self.live_start_us = default_live_start_us(self.settings.models_dir)
        start_us = self.live_start_us - round(self.warm_up_days * MICROS_PER_DAY)
        population_start_us = min(to_microseconds(DEFAULT_START), start_us)
        shares = {Mode.normal: None, Mode.hacker: hacker_fraud_share(self.rate, self.hacker_rate)}
        sources = {mode: TrafficSource(mode, 7, 10_000, 2_000, share, DEFAULT_SCENARIO_WEIGHTS, start_us=start_us,
                                       population_start_us=population_start_us) for mode, share in shares.items()}
        self.time_scale = time_scale_for(self.rate, sources[Mode.normal].events_per_simulated_second())
        return [LiveProducer(self.settings, source, rate, SIMULATED_LABEL_DELAYS, self.settings.transactions_topic,
                             self.settings.labels_topic, time_scale=self.time_scale, record_send_times=True)
                for source, rate in ((sources[Mode.normal], self.rate), (sources[Mode.hacker], self.hacker_rate))]

    def start_processor(self, log_path: Path) -> subprocess.Popen:
        command = [str(Path(sys.executable).with_name("fraudstream")), "process", "--group", self.group,
                   "--metrics-port", str(self.metrics_port), "--from-end"]
        process = subprocess.Popen(command, env=processor_env(self.settings), stdout=log_path.open("wb"),
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "partition assigned" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the processor did not start; see {log_path}")
            time.sleep(0.2)
        return process

    def warm_up(self, processor: subprocess.Popen, log_path: Path) -> int:
        """The simulated days before the live start, sent at full speed; returns once the processor
        has scored them all (the live part's latencies must not include this backlog)."""
        days = self.warm_up_days
        self.console.print(f"[bold]warm-up[/]: {days:g} simulated days before the live start, as fast as possible")
        sent = warm_up_together(self.producers, self.live_start_us)
        try:
            wait_for_count(lambda: _processor_counter(self.metrics_port, "scored"), sent, stall_s=WARM_UP_STALL_S,
                           what="warm-up events scored by the processor", alive=lambda: processor.poll() is None,
                           interval_s=0.5)
        except NoProgress as error:
            raise RuntimeError(f"{error}; see {log_path}") from None
        return sent

    def _produce(self, producer: LiveProducer, clock: SimulatedClock) -> None:
        self.producer_summaries.append(producer.run(self.duration_s, None, progress=False, clock=clock))

    def _malformed(self, stop: threading.Event) -> None:
        producer = kafka.producer(self.settings)
        while not stop.wait(1.0):
            producer.produce(self.settings.transactions_topic, key=b"demo-malformed", value=MALFORMED_EVENT)
            self.malformed_sent += 1
        producer.flush(10)

    def start_console(self) -> BackgroundConsole | None:
        """The analyst console on this run's topics (a verdict's label reaches this run's processor); the
        demo goes on without it when its port is taken."""
        if not self.with_console:
            return None
        try:
            server = BackgroundConsole(self.settings).start()
        except ConsoleUnavailable as error:
            self.console.print(f"[yellow]analyst console not started:[/] {error}")
            return None
        announce(self.settings, server.admin_password, self.console, reveal_saved=True)
        self.console_url = server.url
        return server

    def hold(self) -> None:
        """--keep: the processor and the console stay up until Ctrl-C, so a person can look around."""
        where = f"; analyst console at {self.console_url}" if self.console_url else ""
        self.console.print(f"[bold]--keep[/]: the processor and the analyst console keep running{where}; "
                           "Ctrl-C stops everything")
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            self.console.print("stopping")

    def run(self, on_summary: Callable[[DemoSummary], None] | None = None) -> DemoSummary:
        version = self.prepare()
        log_path = self.settings.state_dir / "demo-processor.log"
        since = datetime.fromtimestamp(self.live_start_us / 1e6, UTC)
        processor = self.start_processor(log_path)
        console_server = self.start_console()
        try:
            warm_up_events = self.warm_up_events = self.warm_up(processor, log_path)
            dead_lettered_before = _processor_counter(self.metrics_port, "dead_lettered")
            stop = threading.Event()
            clock = SimulatedClock(time.time(), self.live_start_us, self.time_scale)
            threads = [threading.Thread(target=self._produce, args=(producer, clock), daemon=True)
                       for producer in self.producers]
            threads.append(threading.Thread(target=self._malformed, args=(stop,), daemon=True))
            for thread in threads:
                thread.start()
            self.console.print(f"[bold]running[/] {self.duration_s:.0f} s: normal {self.rate:,.0f}/s, hacker "
                               f"{self.hacker_rate:,.0f}/s on average, simulated time x{self.time_scale:,.0f}; "
                               f"processor log {log_path}")
            with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
                with Live(console=self.console, refresh_per_second=2) as live:
                    while any(thread.is_alive() for thread in threads[:2]):
                        live.update(summary_table(self._snapshot(connection, since, version), "live"))
                        time.sleep(1.0)
                    stop.set()
                    threads[2].join()
                    produced = self._live_events()
                    labels_sent = sum(s.labels_sent for s in self.producer_summaries)

                    def drained() -> int:
                        """Rows (capped at what was produced) plus labels stored, shown live."""
                        current = self._snapshot(connection, since, version)
                        live.update(summary_table(current, "draining"))
                        return min(current.scored, produced) + self._labels_stored(connection)

                    try:  # let the processor drain the backlog and the late labels
                        wait_for_count(drained, produced + labels_sent, stall_s=DRAIN_STALL_S, interval_s=1.0,
                                       what="rows and labels drained", alive=lambda: processor.poll() is None)
                    except NoProgress as error:
                        log.warning("demo drain incomplete reason=%r", str(error))
                final = self._snapshot(connection, since, version)
                final.dead_lettered -= dead_lettered_before
                final.send_to_commit_p50_ms, final.send_to_commit_p99_ms = send_to_commit_ms(
                    connection, since, {p.source.id_prefix: p.send_times_us() for p in self.producers})
            final.produced = produced + self.malformed_sent
            final.warm_up_events = warm_up_events
            final.time_scale = self.time_scale
            final.simulated_start = since
            ends = [s.simulated_end_us for s in self.producer_summaries if s.simulated_end_us is not None]
            final.simulated_end = datetime.fromtimestamp(max(ends) / 1e6, UTC) if ends else None

            if on_summary is not None:
                on_summary(final)
            if self.keep:
                self.hold()
            elif self.console_url:
                self.console.print(f"the analyst console ({self.console_url}) stops with the demo; "
                                   "`fraudstream demo --keep` (`make demo DEMO_ARGS=--keep`) keeps it running")
        finally:
            if console_server is not None:
                console_server.stop()
            processor.terminate()
            processor.wait(30)
            self._forget_run()
        return final

    def _live_events(self) -> int:
        return sum(s.events_sent - s.warm_up_events for s in self.producer_summaries)

    def _labels_stored(self, connection: psycopg.Connection) -> int:
        """This run's labels in the table (warm-up included: they were all sent)."""
        return connection.execute("SELECT count(*) FROM labels WHERE transaction_id LIKE ANY(%s)",
                                  (self.id_patterns,)).fetchone()[0]

    def _forget_run(self) -> None:
        """Drop what only this run needed: its labels topic and its group's offsets and feature snapshots
        (a few MB per run otherwise; the engine has no command for it, so plain SQL on its tables)."""
        try:
            client = kafka.admin(self.settings)  # kept referenced until the deletion is confirmed
            for future in client.delete_topics([self.settings.labels_topic], operation_timeout=30).values():
                future.result()
            with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
                for table in ("engine_state_snapshots", "engine_offsets"):
                    connection.execute(f"DELETE FROM {table} WHERE consumer_group = %s", (self.group,))
        except Exception as error:  # cleanup must not hide the run's own result or failure
            log.warning("demo cleanup incomplete group=%s error=%r", self.group, str(error))

    def _snapshot(self, connection: psycopg.Connection, since: datetime, version: str) -> DemoSummary:
        summary = measure(connection, since, self.id_patterns)
        summary.dead_lettered = _processor_counter(self.metrics_port, "dead_lettered")
        summary.produced = self._live_events()
        summary.model_version = version
        summary.time_scale = self.time_scale
        summary.warm_up_events = self.warm_up_events
        summary.simulated_start = since
        return summary


def run_demo(settings: Settings, duration_s: float, rate: float, hacker_rate: float, console: Console,
             warm_up_days: float = DEFAULT_WARM_UP_DAYS, keep: bool = False, with_console: bool = True,
             on_summary: Callable[[DemoSummary], None] | None = None) -> DemoSummary:
    """Run the whole pipeline for ``duration_s`` seconds and return the closing figures (``on_summary`` gets
    them before ``keep`` holds everything running until Ctrl-C)."""
    return Demo(settings, duration_s, rate, hacker_rate, console, warm_up_days, keep, with_console).run(on_summary)
