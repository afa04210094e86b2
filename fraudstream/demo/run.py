"""The demo's order of events: services, model, processor, console, warm-up, the measured live part,
the drain, the summary, then (``--keep``) the hold phase; everything started is stopped in reverse."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psycopg
from rich.console import Console
from rich.live import Live

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.console.server import BackgroundConsole, ConsoleUnavailable, announce
from fraudstream.demo.default_model import ensure_default_model
from fraudstream.demo.hold import HoldTraffic, hold, signals_ignored
from fraudstream.demo.processor import start_processor, stop_processor
from fraudstream.demo.summary import DemoSummary, labels_stored, measure, send_to_commit_ms
from fraudstream.demo.traffic import MODES, MalformedTrickle, TrafficPlan
from fraudstream.demo.view import summary_table
from fraudstream.history import to_microseconds
from fraudstream.model.registry import Registry
from fraudstream.probes import sample_value, scrape
from fraudstream.progress import NoProgress, wait_for_count
from fraudstream.services import manager
from fraudstream.simulate.backfill import DEFAULT_START
from fraudstream.simulate.live import (
    DEFAULT_WARM_UP_DAYS,
    LiveProducer,
    ProduceSummary,
    SimulatedClock,
    live_start_us,
    time_scale_for,
    warm_up_together,
)
from fraudstream.store.groups import forget_consumer_group
from fraudstream.store.schema import migrate
from fraudstream.timeunits import MICROS_PER_DAY

log = logging.getLogger(__name__)

#: The warm-up fails only when the processor scored nothing new for this long (a busy machine is slower,
#: not stuck); the drain after the live part ends after this long without a new row or label.
WARM_UP_STALL_S = 120.0
DRAIN_STALL_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processor_counter(metrics_port: int, outcome: str) -> int:
    """The processor's own event counter for ``outcome`` (scored, dead_lettered); 0 before it answers."""
    try:
        return int(sample_value(scrape(metrics_port, timeout_s=2.0), "fraudstream_events_total", outcome=outcome) or 0)
    except OSError:
        return 0


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo the way Ctrl-C does, and Ctrl-C works even when the demo inherited SIGINT
    ignored (started in the background by a script): the way out stops every child it started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Demo:
    """One demo run; the pieces are started in order and stopped in reverse.

    Each run is its own world: a fresh consumer group (no feature state from an earlier run) and its own
    labels topic (no earlier run's labels); both are forgotten at the end."""

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
        self.plan: TrafficPlan | None = None
        self.producers: list[LiveProducer] = []
        self.producer_summaries: list[ProduceSummary] = []
        self.live_start_us = 0
        self.time_scale = 1.0
        self.warm_up_events = 0
        self.keep = keep
        self.console_url: str | None = None
        self.with_console = with_console

    @property
    def id_patterns(self) -> list[str]:
        return [producer.source.id_prefix + "%" for producer in self.producers]

    @property
    def log_path(self) -> Path:
        return self.settings.state_dir / "demo-processor.log"

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
        """Customers and attackers of the model's population, from ``warm_up_days`` before the live start."""
        self.live_start_us = live_start_us(Registry(self.settings.models_dir).production_training_end_us())
        start_us = self.live_start_us - round(self.warm_up_days * MICROS_PER_DAY)
        self.plan = TrafficPlan(self.rate, self.hacker_rate, min(to_microseconds(DEFAULT_START), start_us))
        sources = [self.plan.source(mode, start_us) for mode in MODES]
        self.time_scale = time_scale_for(self.rate, sources[0].events_per_simulated_second())
        return [self.plan.producer(self.settings, source, self.time_scale, record_send_times=True)
                for source in sources]

    def warm_up(self, processor_alive: Callable[[], bool]) -> int:
        """The simulated days before the live start, sent at full speed; returns once the processor
        has scored them all (the live part's latencies must not include this backlog)."""
        days = self.warm_up_days
        self.console.print(f"[bold]warm-up[/]: {days:g} simulated days before the live start, as fast as possible")
        sent = warm_up_together(self.producers, self.live_start_us)
        try:
            wait_for_count(lambda: _processor_counter(self.metrics_port, "scored"), sent, stall_s=WARM_UP_STALL_S,
                           what="warm-up events scored by the processor", alive=processor_alive, interval_s=0.5)
        except NoProgress as error:
            raise RuntimeError(f"{error}; see {self.log_path}") from None
        return sent

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

    def run(self, on_summary: Callable[[DemoSummary], None] | None = None) -> DemoSummary:
        with stop_signals_interrupt():
            version = self.prepare()
            processor = start_processor(self.settings, self.group, self.metrics_port, self.log_path)
            console_server = None
            try:
                console_server = self.start_console()
                final = self.measured_run(version, lambda: processor.poll() is None)
                if on_summary is not None:
                    on_summary(final)
                if self.keep:
                    self.hold(processor)
                elif self.console_url:
                    self.console.print(f"the analyst console ({self.console_url}) stops with the demo; "
                                       "`fraudstream demo --keep` (`make demo DEMO_ARGS=--keep`) keeps it running")
            finally:
                with signals_ignored():
                    if console_server is not None:
                        console_server.stop()
                    stop_processor(processor)
                    self._forget_run()
        return final

    def measured_run(self, version: str, processor_alive: Callable[[], bool]) -> DemoSummary:
        """Warm-up, ``duration_s`` of paced traffic with a live table, the drain; the closing figures."""
        since = datetime.fromtimestamp(self.live_start_us / 1e6, UTC)
        warm_up_events = self.warm_up_events = self.warm_up(processor_alive)
        dead_lettered_before = _processor_counter(self.metrics_port, "dead_lettered")
        clock = SimulatedClock(time.time(), self.live_start_us, self.time_scale)
        threads = [threading.Thread(target=self._produce, args=(producer, clock), daemon=True)
                   for producer in self.producers]
        malformed = MalformedTrickle(self.settings).start()
        for thread in threads:
            thread.start()
        self.console.print(f"[bold]running[/] {self.duration_s:.0f} s: normal {self.rate:,.0f}/s, hacker "
                           f"{self.hacker_rate:,.0f}/s on average, simulated time x{self.time_scale:,.0f}; "
                           f"processor log {self.log_path}")
        with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
            with Live(console=self.console, refresh_per_second=2) as live:
                while any(thread.is_alive() for thread in threads):
                    live.update(summary_table(self._snapshot(connection, since, version), "live"))
                    time.sleep(1.0)
                malformed.stop()
                produced = self._live_events()
                labels_sent = sum(s.labels_sent for s in self.producer_summaries)

                def drained() -> int:
                    """Rows (capped at what was produced) plus labels stored, shown live."""
                    current = self._snapshot(connection, since, version)
                    live.update(summary_table(current, "draining"))
                    return min(current.scored, produced) + labels_stored(connection, self.id_patterns)

                try:  # let the processor drain the backlog and the late labels
                    wait_for_count(drained, produced + labels_sent, stall_s=DRAIN_STALL_S, interval_s=1.0,
                                   what="rows and labels drained", alive=processor_alive)
                except NoProgress as error:
                    log.warning("demo drain incomplete reason=%r", str(error))
            final = self._snapshot(connection, since, version)
            final.dead_lettered -= dead_lettered_before
            final.send_to_commit_p50_ms, final.send_to_commit_p99_ms = send_to_commit_ms(
                connection, since, {p.source.id_prefix: p.send_times_us() for p in self.producers})
        final.produced = produced + malformed.sent
        final.warm_up_events = warm_up_events
        final.simulated_end = self._simulated_end()
        return final

    def hold(self, processor: subprocess.Popen) -> None:
        """--keep: traffic continues from where the measured part ended, until Ctrl-C or SIGTERM."""
        end = self._simulated_end()
        start_us = self.live_start_us if end is None else int(end.timestamp() * 1_000_000) + 1
        traffic = HoldTraffic(self.settings, self.plan, start_us, self.time_scale, self.settings.state_dir)
        try:
            hold(traffic, self.metrics_port, self.console, processor, self.console_url)
        except RuntimeError as error:
            raise RuntimeError(f"{error} ({self.log_path})") from None

    def _produce(self, producer: LiveProducer, clock: SimulatedClock) -> None:
        self.producer_summaries.append(producer.run(self.duration_s, None, progress=False, clock=clock))

    def _live_events(self) -> int:
        return sum(s.events_sent - s.warm_up_events for s in self.producer_summaries)

    def _simulated_end(self) -> datetime | None:
        ends = [s.simulated_end_us for s in self.producer_summaries if s.simulated_end_us is not None]
        return datetime.fromtimestamp(max(ends) / 1e6, UTC) if ends else None

    def _forget_run(self) -> None:
        """Drop what only this run needed: its labels topic, and its group's checkpoints in the database."""
        try:
            client = kafka.admin(self.settings)  # kept referenced until the deletion is confirmed
            for future in client.delete_topics([self.settings.labels_topic], operation_timeout=30).values():
                future.result()
            with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
                forget_consumer_group(connection, self.group)
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
    them before ``keep`` holds everything running until Ctrl-C or SIGTERM)."""
    return Demo(settings, duration_s, rate, hacker_rate, console, warm_up_days, keep, with_console).run(on_summary)
