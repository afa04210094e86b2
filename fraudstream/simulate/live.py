"""Live producing: simulated traffic sent to Kafka at a requested rate with wall-clock event times.

Traffic is generated one simulated week at a time (in a helper thread, so generation never stalls the
sender) and played back in order, so an attack that took minutes in simulated time arrives as a
compressed burst. Pacing works in small time slices: each slice sends whatever the rate says is due
by now, which keeps the long-run rate exact even when one slice runs late. Labels follow on their own
topic after a compressed delay; labels still pending when the run ends are sent at the end so that
every transaction has its ground truth.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError, Message, Producer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fraudstream.config import Settings
from fraudstream.events import SCHEMA_VERSION, TRANSACTION_COLUMNS
from fraudstream.kafka import producer as kafka_producer
from fraudstream.simulate.backfill import LabelDelays, simulate_window, to_microseconds, to_tables
from fraudstream.simulate.normal import LEGITIMATE, take_columns
from fraudstream.simulate.population import MICROS_PER_DAY, MICROS_PER_SECOND, build_population
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS, SCENARIO_NAMES

log = logging.getLogger(__name__)

SLICE_S = 0.005
UNLIMITED_SLICE_EVENTS = 5_000
LABEL_BUCKET_S = 0.1
#: Share of fraud simulated per chunk in hacker mode (only the fraud is sent).
HACKER_FRAUD_SHARE = 0.3
#: Simulated days generated at once: long enough for skimmed cards to be cloned and used days later.
CHUNK_DAYS = 7
LIVE_LABEL_DELAYS = LabelDelays(fraud_s=(5.0, 30.0), legit_s=(30.0, 90.0))
_EVENT_FIELDS = tuple(name for name in TRANSACTION_COLUMNS if name != "event_time_us")


class Mode(StrEnum):
    """Which traffic a producer sends: legitimate customers, attackers, or both mixed."""

    normal = "normal"
    hacker = "hacker"
    all = "all"


@dataclass
class ProduceSummary:
    """What a live run sent, and how fast."""

    mode: str
    requested_rate: float | None
    events_sent: int = 0
    labels_sent: int = 0
    labels_sent_early: int = 0
    delivery_failures: int = 0
    sending_s: float = 0.0
    fraud_by_scenario: dict[str, int] = field(default_factory=dict)

    @property
    def rate_achieved(self) -> float:
        return self.events_sent / self.sending_s if self.sending_s > 0 else 0.0

    @property
    def fraud_share_by_scenario(self) -> dict[str, float]:
        return {name: count / self.events_sent if self.events_sent else 0.0
                for name, count in self.fraud_by_scenario.items()}


@dataclass
class Chunk:
    """Simulated days ready to send: pre-encoded bodies (without event_time) plus label fields."""

    bodies: list[bytes]
    keys: list[bytes]
    transaction_ids: list[str]
    merchant_ids: list[str]
    scenario_codes: np.ndarray


class TrafficSource:
    """Endless simulated traffic for a mode, a simulated week at a time, deterministic under a seed."""

    def __init__(self, mode: Mode, seed: int, accounts: int, merchants: int, fraud_share: float,
                 scenarios: Mapping[str, float]) -> None:
        self.mode = mode
        self.seed = seed
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start_us = to_microseconds(today)
        self.population = build_population(seed, accounts, merchants, self.start_us)
        self.fraud_share = {Mode.normal: 0.0, Mode.hacker: HACKER_FRAUD_SHARE, Mode.all: fraud_share}[mode]
        self.scenarios = scenarios
        self.id_prefix = f"lv{seed}-{os.urandom(4).hex()}-"
        self.sent_numbers = 0

    def chunks(self) -> Iterator[Chunk]:
        """Simulated weeks in order; the next one is generated in a helper thread while this one is sent."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate") as pool:
            week = 0
            pending: Future[Chunk] = pool.submit(self._chunk, week)
            while True:
                chunk = pending.result()
                week += 1
                pending = pool.submit(self._chunk, week)
                if chunk.bodies:
                    yield chunk

    def _chunk(self, week: int) -> Chunk:
        rng = np.random.default_rng([self.seed, 3, week])
        begin = self.start_us + week * CHUNK_DAYS * MICROS_PER_DAY
        columns = simulate_window(self.population, rng, begin, begin + CHUNK_DAYS * MICROS_PER_DAY, self.fraud_share,
                                  self.scenarios)
        fraud = columns["scenario"] != LEGITIMATE
        if self.mode is not Mode.all:
            columns = take_columns(columns, np.flatnonzero(fraud if self.mode is Mode.hacker else ~fraud))
        # Numbers are unique per run; they follow generation order, not send order, across chunks.
        first = self.sent_numbers
        self.sent_numbers += len(columns["time_us"])
        table, _ = to_tables(self.population, columns, rng, self.id_prefix, LIVE_LABEL_DELAYS, first)
        return Chunk(encode_bodies(table), table.column("account_id").cast(pa.string()).cast(pa.binary()).to_pylist(),
                     table.column("transaction_id").to_pylist(),
                     table.column("merchant_id").cast(pa.string()).to_pylist(), columns["scenario"].copy())


def encode_bodies(table: pa.Table) -> list[bytes]:
    """Each row as a JSON object without ``event_time`` (added at send time), built by Arrow in C.

    Splicing text is safe here because every string value comes from the simulator's own
    vocabularies and id generators (letters, digits, ``-`` and ``_``): nothing needs escaping."""
    pieces: list[pa.Array | str] = [f'{{"schema_version":{SCHEMA_VERSION}']
    for name in _EVENT_FIELDS:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_floating(column.type):
            pieces += [f',"{name}":', pc.cast(column, pa.string())]
        else:
            pieces += [f',"{name}":"', column, '"']
    pieces.append("}")
    return pc.binary_join_element_wise(*pieces, "").cast(pa.binary()).to_pylist()


def stamp_events(bodies: list[bytes], start_s: float, end_s: float) -> list[bytes]:
    """Add ``event_time`` spread evenly over [start_s, end_s) (wall clock) to pre-encoded bodies."""
    count = len(bodies)
    times_us = (start_s * MICROS_PER_SECOND + np.arange(count) * ((end_s - start_s) * MICROS_PER_SECOND / count))
    texts = np.datetime_as_string(times_us.astype(np.int64).astype("datetime64[us]"), unit="us").tolist()
    return [body[:-1] + b',"event_time":"' + text.encode() + b'Z"}' for body, text in zip(bodies, texts, strict=True)]


class LabelSchedule:
    """Labels waiting for their (compressed) delay, grouped in small time buckets."""

    def __init__(self, delays: LabelDelays, rng: np.random.Generator) -> None:
        self.delays = delays
        self.rng = rng
        self.buckets: dict[int, list[tuple[Chunk, np.ndarray]]] = {}
        self.order: list[int] = []
        self.pending = 0

    def add(self, chunk: Chunk, rows: np.ndarray, now_s: float) -> None:
        fraud = chunk.scenario_codes[rows] != LEGITIMATE
        low, high = np.where(fraud[:, None], self.delays.fraud_s, self.delays.legit_s).T
        keys = ((now_s + self.rng.uniform(low, high)) / LABEL_BUCKET_S).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        unique_keys, starts = np.unique(keys[order], return_index=True)
        for key, group in zip(unique_keys.tolist(), np.split(rows[order], starts[1:]), strict=True):
            if key not in self.buckets:
                self.buckets[key] = []
                heapq.heappush(self.order, key)
            self.buckets[key].append((chunk, group))
        self.pending += len(rows)

    def pop_due(self, now_s: float | None) -> Iterator[tuple[Chunk, np.ndarray]]:
        """Groups due by ``now_s`` (every group when ``now_s`` is None)."""
        while self.order and (now_s is None or self.order[0] * LABEL_BUCKET_S <= now_s):
            for chunk, rows in self.buckets.pop(heapq.heappop(self.order)):
                self.pending -= len(rows)
                yield chunk, rows


class LiveProducer:
    """Sends a TrafficSource to Kafka at a rate; ``run`` returns the summary."""

    def __init__(self, settings: Settings, source: TrafficSource, rate: float | None,
                 label_delays: LabelDelays, transactions_topic: str, labels_topic: str) -> None:
        self.settings = settings
        self.source = source
        self.rate = rate
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self.labels = LabelSchedule(label_delays, np.random.default_rng([source.seed, 4]))
        self.summary = ProduceSummary(source.mode.value, rate, fraud_by_scenario=dict.fromkeys(SCENARIO_NAMES, 0))
        # Only failed deliveries call back into Python: one callback per message would cost ~10 % throughput.
        self.producer: Producer = kafka_producer(settings, **{"delivery.report.only.error": True})
        self.scenario_counts = np.zeros(len(SCENARIO_NAMES) + 1, dtype=np.int64)

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.summary.delivery_failures += 1
            if self.summary.delivery_failures <= 5:
                log.error("delivery failed: %s", error)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce, waiting for room in the local queue when it is full (backpressure, not loss)."""
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _send_events(self, chunk: Chunk, begin: int, end: int, slice_start_s: float, now_s: float) -> None:
        bodies = stamp_events(chunk.bodies[begin:end], slice_start_s, max(now_s, slice_start_s + 1e-6))
        produce, topic, delivered = self.producer.produce, self.transactions_topic, self._delivered
        for key, body in zip(chunk.keys[begin:end], bodies, strict=True):
            try:
                produce(topic, body, key, on_delivery=delivered)
            except BufferError:
                self._produce(topic, key, body)
        rows = np.arange(begin, end)
        self.scenario_counts += np.bincount(chunk.scenario_codes[rows] + 1, minlength=len(self.scenario_counts))
        self.labels.add(chunk, rows, now_s)
        self.summary.events_sent += end - begin

    def _send_labels(self, now_s: float | None) -> None:
        labeled_at = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        scenario_names = (None, *SCENARIO_NAMES)
        for chunk, rows in self.labels.pop_due(now_s):
            for row in rows.tolist():
                code = int(chunk.scenario_codes[row])
                label = {"transaction_id": chunk.transaction_ids[row], "account_id": chunk.keys[row].decode(),
                         "merchant_id": chunk.merchant_ids[row], "is_fraud": code != LEGITIMATE,
                         "scenario": scenario_names[code + 1], "labeled_at": labeled_at}
                self._produce(self.labels_topic, chunk.keys[row], orjson.dumps(label))
                self.summary.labels_sent += 1
                self.summary.labels_sent_early += now_s is None

    def run(self, duration_s: float | None, max_events: int | None, progress: bool) -> ProduceSummary:
        """Send until the duration or event budget is spent (or Ctrl-C), then flush everything."""
        budget = max_events if max_events is not None else math.inf
        if self.rate is not None and duration_s is not None:
            budget = min(budget, round(self.rate * duration_s))
        bar = Progress(TextColumn("[bold]producing {task.fields[mode]}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]:,.0f} events/s"), TimeElapsedColumn(), disable=not progress)
        task = bar.add_task("produce", total=None if math.isinf(budget) else budget, mode=self.source.mode.value,
                            rate=0.0)
        chunks = self.source.chunks()
        chunk, position = next(chunks), 0
        started = time.time()
        slice_start = started
        next_tick = time.perf_counter()
        with bar:
            try:
                while self.summary.events_sent < budget:
                    now = time.time()
                    elapsed = now - started
                    if duration_s is not None and self.rate is None and elapsed >= duration_s:
                        break
                    due = (UNLIMITED_SLICE_EVENTS if self.rate is None
                           else math.floor(self.rate * elapsed) - self.summary.events_sent)
                    due = int(min(due, budget - self.summary.events_sent))
                    while due > 0:
                        take = min(due, len(chunk.bodies) - position)
                        self._send_events(chunk, position, position + take, slice_start, now)
                        position, due = position + take, due - take
                        if position == len(chunk.bodies):
                            chunk, position = next(chunks), 0
                    slice_start = now
                    self._send_labels(now)
                    self.producer.poll(0)
                    bar.update(task, completed=self.summary.events_sent,
                               rate=self.summary.events_sent / max(elapsed, 1e-9))
                    if self.rate is not None:
                        next_tick += SLICE_S
                        time.sleep(max(0.0, next_tick - time.perf_counter()))
            except KeyboardInterrupt:
                log.info("interrupted: flushing what was sent")
            self.summary.sending_s = time.time() - started
            chunks.close()  # stops the helper thread's generation
            self._send_labels(None)
            remaining = self.producer.flush(60)
        self.summary.delivery_failures += remaining
        self.summary.fraud_by_scenario = dict(zip(SCENARIO_NAMES, self.scenario_counts[1:].tolist(), strict=True))
        return self.summary


def produce_live(settings: Settings, mode: Mode | str = Mode.all, rate: float | None = 100.0,
                 duration_s: float | None = None, max_events: int | None = None, seed: int = 7,
                 progress: bool = True, accounts: int = 10_000, merchants: int = 2_000,
                 fraud_share: float = 0.007, scenarios: Mapping[str, float] = DEFAULT_SCENARIO_WEIGHTS,
                 label_delays: LabelDelays = LIVE_LABEL_DELAYS, transactions_topic: str | None = None,
                 labels_topic: str | None = None) -> ProduceSummary:
    """Send simulated transactions (keyed by account) and, later, their labels to Kafka.

    ``rate`` is events per second (None: as fast as possible); the run stops after ``duration_s``
    seconds or ``max_events`` events, whichever comes first, or on Ctrl-C without either."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for unlimited)")
    source = TrafficSource(Mode(mode), seed, accounts, merchants, fraud_share, scenarios)
    live = LiveProducer(settings, source, rate, label_delays, transactions_topic or settings.transactions_topic,
                        labels_topic or settings.labels_topic)
    summary = live.run(duration_s, max_events, progress)
    log.info("produced %d events and %d labels in %.1f s (%.0f events/s)", summary.events_sent,
             summary.labels_sent, summary.sending_s, summary.rate_achieved)
    return summary
