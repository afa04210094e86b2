"""Live producing: simulated traffic sent to Kafka, on a simulated clock or on the wall clock.

Two clocks, because a population of 10,000 accounts makes about 0.2 transactions per second:

- **Simulated clock** (``time_scale`` > 1, what the demo uses): simulated time advances at
  ``time_scale`` x the wall clock and every event carries its own simulated time as ``event_time``.
  An event is sent when the simulated clock reaches it, so each account transacts exactly as often
  (per simulated hour) as in the history the model was trained on, and the velocity and window
  features mean what they meant in training. ``time_scale_for(rate, ...)`` picks the scale that gives
  a requested average rate (traffic follows the day: about 0.5x the average at night, 1.5x at the
  afternoon peak). Labels are due ``LabelDelays()`` (chargeback-like days) later on the same clock, so
  the label-feedback features behave as in training too. A warm-up (``warm_up``) first sends the
  simulated days before the start as fast as possible, so a fresh processor holds the account and
  merchant history a running system would have: a cold state looks like every account is brand new.
- **Wall clock** (``time_scale`` 1, for throughput and real-time use): events are sent at exactly
  ``rate`` per second and stamped with the wall clock, whatever the population would do; attacks that
  took minutes in simulated time arrive as compressed bursts, and labels follow after a compressed
  delay (``LIVE_LABEL_DELAYS``).

Traffic is simulated a week at a time, or for a population whose week would exceed ``WINDOW_ROWS``
events, in equal windows of the week of about that many (the week's trips and new devices are planned
once for the whole week). Rows are encoded ``CHUNK_ROWS`` at a time, in a helper thread so generation
never stalls the sender; pending labels keep a few numbers per row, not the encoded events. So memory
grows with the population's arrays, not with its weekly traffic. In wall-clock mode the population can
be sized to the rate (``accounts_for_rate``), so each account transacts as often per wall-clock day as
it does per simulated day. Pacing works in small time slices: each slice sends whatever is due by now, which keeps the
long-run rate exact even when one slice runs late. Labels still pending when the run ends are sent at
the end (with their scheduled ``labeled_at``) so that every transaction has its ground truth.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import pyarrow as pa
from confluent_kafka import KafkaError, Message, Producer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fraudstream.config import Settings
from fraudstream.events.contract import (
    add_event_times,
    encode,
    encode_transactions_without_time,
    format_time_us,
    label_to_dict,
)
from fraudstream.kafka import produce
from fraudstream.kafka import producer as kafka_producer
from fraudstream.simulate.backfill import (
    DEFAULT_START,
    LabelDelays,
    simulate_span,
    to_microseconds,
    transactions_table,
)
from fraudstream.simulate.normal import (
    LEGITIMATE,
    Columns,
    concat_columns,
    empty_columns,
    plan_surprises,
    take_columns,
)
from fraudstream.simulate.population import Population, build_population, labelled_ids_of
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS, SCENARIO_NAMES
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_SECOND

log = logging.getLogger(__name__)

SLICE_S = 0.005
UNLIMITED_SLICE_EVENTS = 5_000
#: Upper bound of one paced slice on a simulated clock (only reached after a long stall).
MAX_SLICE_EVENTS = 1_000_000
LABEL_BUCKET_S = 0.1
#: Share of fraud simulated per chunk in hacker mode (only the fraud is sent).
HACKER_FRAUD_SHARE = 0.3
#: Simulated days planned at once (trips, new devices): long enough for skimmed cards to be cloned and
#: used days later when the whole week is simulated at once.
CHUNK_DAYS = 7
WEEK_US = CHUNK_DAYS * MICROS_PER_DAY
#: Events simulated at once at most (about): a bigger population's week is split into windows.
WINDOW_ROWS = 500_000
#: Events encoded at once and handed to the sender.
CHUNK_ROWS = 50_000
#: The Kafka client's local queue (kilobytes): about five seconds of traffic at 50,000 events/s.
PRODUCER_QUEUE_KB = 131_072
#: The population of the simulated-clock mode and the default one (the model's training population).
DEFAULT_ACCOUNTS = 10_000
#: Largest population ``accounts_for_rate`` builds (about 0.8 GB of account arrays).
MAX_AUTO_ACCOUNTS = 10_000_000
#: Accounts of the sample whose simulated week measures the mean transactions per account per day.
RATE_SAMPLE_ACCOUNTS = 10_000
#: Wall-clock mode's compressed label delays (seconds).
LIVE_LABEL_DELAYS = LabelDelays(fraud_s=(5.0, 30.0), legit_s=(30.0, 90.0))
#: Simulated-clock mode's label delays: the history's own (days), on the simulated clock.
SIMULATED_LABEL_DELAYS = LabelDelays()
#: Simulated days sent before the start so the processor's feature state is warm: from a cold state
#: every account looks new, and alerts lose most of their precision.
DEFAULT_WARM_UP_DAYS = 14.0


class Mode(StrEnum):
    """Which traffic a producer sends: legitimate customers, attackers, or both mixed."""

    normal = "normal"
    hacker = "hacker"
    all = "all"


class Labels(StrEnum):
    """Which transactions get a label: every one (chargeback or "no dispute", the engine's worst case)
    or only the fraud."""

    all = "all"
    fraud_only = "fraud-only"


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
    time_scale: float = 1.0
    warm_up_events: int = 0
    #: Simulated time span of the paced part (simulated-clock mode), as microseconds since the epoch.
    simulated_start_us: int | None = None
    simulated_end_us: int | None = None

    @property
    def rate_achieved(self) -> float:
        """Events per second of the paced part (the warm-up is not paced)."""
        paced = self.events_sent - self.warm_up_events
        return paced / self.sending_s if self.sending_s > 0 else 0.0

    @property
    def fraud_share_by_scenario(self) -> dict[str, float]:
        return {name: count / self.events_sent if self.events_sent else 0.0
                for name, count in self.fraud_by_scenario.items()}


@dataclass
class Chunk:
    """Rows ready to send: pre-encoded bodies (without event_time) plus what their labels need."""

    bodies: list[bytes]
    keys: list[bytes]
    accounts: np.ndarray
    merchants: np.ndarray
    scenario_codes: np.ndarray
    #: Simulated event times (sorted) and the run-wide number of the first row (ids follow it).
    times_us: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first_number: int = 0
    id_prefix: str = ""

    @property
    def transaction_ids(self) -> list[str]:
        return transaction_ids(self.id_prefix, self.first_number + np.arange(len(self.bodies))).to_pylist()


def transaction_ids(id_prefix: str, numbers: np.ndarray) -> pa.Array:
    """The ids of these run-wide transaction numbers."""
    return labelled_ids_of(id_prefix, numbers, width=10)


class TrafficSource:
    """Endless simulated traffic for a mode, in simulated-time order, deterministic under a seed.

    ``start_us`` is where the simulated traffic begins (default: today, midnight UTC) and
    ``population_start_us`` the moment the population is built for (default: ``start_us``); a live
    stream that continues a simulated history passes the history's start (``DEFAULT_START``) so that
    accounts are the same ones, opened at the same moments. ``fraud_share`` is the share of fraud
    among everything simulated; in hacker mode only the fraud is sent (default share
    ``HACKER_FRAUD_SHARE``).

    A week is simulated at once when it holds at most ``WINDOW_ROWS`` events (the stream is then the
    one of a whole-week simulation), else in equal windows; fraud scenarios then see only their window
    (a skimmed card's clone is used inside it, so windows under about two days have no such fraud)."""

    def __init__(self, mode: Mode, seed: int, accounts: int, merchants: int, fraud_share: float | None,
                 scenarios: Mapping[str, float], start_us: int | None = None,
                 population_start_us: int | None = None) -> None:
        self.mode = mode
        self.seed = seed
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start_us = to_microseconds(today) if start_us is None else start_us
        self.population = build_population(seed, accounts, merchants,
                                           self.start_us if population_start_us is None else population_start_us)
        default_share = {Mode.normal: 0.0, Mode.hacker: HACKER_FRAUD_SHARE, Mode.all: 0.007}[mode]
        self.fraud_share = 0.0 if mode is Mode.normal else default_share if fraud_share is None else fraud_share
        self.scenarios = scenarios
        self.id_prefix = f"lv{seed}-{os.urandom(4).hex()}-"
        self.sent_numbers = 0
        week_events = float(self.population.transactions_per_day.sum(dtype=np.float64)) * CHUNK_DAYS / (
            1.0 - self.fraud_share)
        # Whole days (7 a week) or hours: a window of a fractional number of days would fold a day's rhythm.
        self.windows_per_week = 1 if week_events <= WINDOW_ROWS else 7 * math.ceil(week_events / WINDOW_ROWS / 7)
        self._windows: Iterator[tuple[int, int, Columns]] | None = None
        self._peeked: tuple[int, int, Columns] | None = None

    def events_per_simulated_second(self) -> float:
        """This source's average rate per simulated second, measured on its first window."""
        if self._peeked is None:
            self._peeked = next(self._window_iterator())
        start_us, end_us, columns = self._peeked
        return len(columns["time_us"]) / ((end_us - start_us) / MICROS_PER_SECOND)

    def _window_iterator(self) -> Iterator[tuple[int, int, Columns]]:
        if self._windows is None:
            self._windows = self._simulate_windows()
        return self._windows

    def _simulate_windows(self) -> Iterator[tuple[int, int, Columns]]:
        """(start, end, this mode's columns) of each window in order; one generator per week plans the
        week's surprises and then simulates its windows one after another."""
        week = 0
        carried = empty_columns()
        while True:
            rng = np.random.default_rng([self.seed, 3, week])
            begin = self.start_us + week * WEEK_US
            surprises = plan_surprises(self.population, rng, begin, begin + WEEK_US)
            for window in range(self.windows_per_week):
                start = begin + window * WEEK_US // self.windows_per_week
                end = begin + (window + 1) * WEEK_US // self.windows_per_week
                columns = simulate_span(self.population, surprises, rng, start, end, self.fraud_share,
                                        self.scenarios)
                if self.mode is not Mode.all:
                    fraud = columns["scenario"] != LEGITIMATE
                    columns = take_columns(columns, np.flatnonzero(fraud if self.mode is Mode.hacker else ~fraud))
                if self.windows_per_week > 1:
                    columns, carried = _carry_over(carried, columns, end)
                yield start, end, columns
            week += 1

    def take_events(self, count: int) -> Columns:
        """The next ``count`` simulated events as columns, not encoded (benches feed them to the feature
        core); the rest of the last window simulated is dropped."""
        parts: list[Columns] = []
        while sum(len(part["time_us"]) for part in parts) < count:
            if self._peeked is not None:
                window, self._peeked = self._peeked, None
            else:
                window = next(self._window_iterator())
            parts.append(window[2])
        return {name: values[:count] for name, values in concat_columns(parts).items()}

    def _encoded_chunks(self) -> Iterator[Chunk]:
        """Windows cut into chunks of at most ``CHUNK_ROWS`` rows, numbered in order."""
        while True:
            if self._peeked is not None:
                window, self._peeked = self._peeked, None  # sent from here on; not kept for the whole run
            else:
                window = next(self._window_iterator())
            columns = window[2]
            for begin in range(0, len(columns["time_us"]), CHUNK_ROWS):
                yield self._chunk({name: values[begin:begin + CHUNK_ROWS] for name, values in columns.items()})

    def chunks(self) -> Iterator[Chunk]:
        """Chunks in order; the next one is simulated and encoded in a helper thread while this one is sent."""
        encoded = self._encoded_chunks()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate") as pool:
            pending: Future[Chunk] = pool.submit(next, encoded)
            while True:
                chunk = pending.result()
                pending = pool.submit(next, encoded)
                yield chunk

    def _chunk(self, columns: Columns) -> Chunk:
        # Numbers are unique per run and follow the simulated order.
        first = self.sent_numbers
        self.sent_numbers += len(columns["time_us"])
        table = transactions_table(self.population, columns, self.id_prefix, first)
        return Chunk(encode_transactions_without_time(table),
                     table.column("account_id").cast(pa.string()).cast(pa.binary()).to_pylist(),
                     columns["account"].copy(), columns["merchant"].copy(), columns["scenario"].copy(),
                     columns["time_us"].astype(np.int64), first, self.id_prefix)


def _carry_over(carried: Columns, columns: Columns, end_us: int) -> tuple[Columns, Columns]:
    """A window's rows merged with those carried from earlier windows, split at the window's end:
    (rows to send now, in time order; rows after the end, for the next windows). A fraud incident that
    starts near the end of a short window continues in the next ones instead of arriving early."""
    merged = concat_columns([carried, columns])
    merged = take_columns(merged, np.argsort(merged["time_us"], kind="stable"))
    now = int(np.searchsorted(merged["time_us"], end_us, side="left"))
    return ({name: values[:now] for name, values in merged.items()},
            {name: values[now:] for name, values in merged.items()})


def accounts_for_rate(rate: float, seed: int = 7, merchants: int = 2_000) -> int:
    """Accounts whose simulated habits add up to ``rate`` transactions per wall-clock second, so that
    wall-clock traffic gives each account as many transactions a day as the simulated history does
    (at most ``MAX_AUTO_ACCOUNTS``). The mean per account and day is measured on a sample's first week."""
    sample = TrafficSource(Mode.all, seed, RATE_SAMPLE_ACCOUNTS, merchants, None, DEFAULT_SCENARIO_WEIGHTS)
    per_account_per_second = sample.events_per_simulated_second() / RATE_SAMPLE_ACCOUNTS
    needed = math.ceil(rate / per_account_per_second)
    if needed > MAX_AUTO_ACCOUNTS:
        log.warning("%.0f events/s needs %d accounts to be realistic; using %d, so each account transacts %.1f "
                    "times as often as in the simulated history", rate, needed, MAX_AUTO_ACCOUNTS,
                    needed / MAX_AUTO_ACCOUNTS)
    return max(RATE_SAMPLE_ACCOUNTS // 1000, min(needed, MAX_AUTO_ACCOUNTS))


def resolve_accounts(accounts: int | None, mode: Mode, rate: float | None, time_scale: float | None,
                     seed: int = 7, merchants: int = 2_000) -> int:
    """The population to simulate: ``accounts`` when given; for None ("auto"), sized to the rate in
    wall-clock mode (normal and mixed traffic), else ``DEFAULT_ACCOUNTS`` (the training population)."""
    if accounts is not None:
        return accounts
    if time_scale == 1.0 and rate is not None and Mode(mode) is not Mode.hacker:
        return accounts_for_rate(rate, seed, merchants)
    return DEFAULT_ACCOUNTS


def stamp_events(bodies: list[bytes], start_s: float, end_s: float) -> list[bytes]:
    """Add ``event_time`` spread evenly over [start_s, end_s) (wall clock) to pre-encoded bodies."""
    count = len(bodies)
    times_us = (start_s * MICROS_PER_SECOND + np.arange(count) * ((end_s - start_s) * MICROS_PER_SECOND / count))
    return add_event_times(bodies, times_us.astype(np.int64))


@dataclass(frozen=True)
class SimulatedClock:
    """Simulated time that advances ``scale`` times as fast as the wall clock from a common origin.

    One instance is shared by every producer of a run (normal customers and attackers), so their
    events interleave in simulated time exactly as they were simulated."""

    origin_wall_s: float
    origin_simulated_us: int
    scale: float

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"time scale must be positive, got {self.scale}")

    def simulated_us(self, wall_s: float) -> int:
        """The simulated moment (microseconds since the epoch) at wall-clock second ``wall_s``."""
        return self.origin_simulated_us + int((wall_s - self.origin_wall_s) * self.scale * MICROS_PER_SECOND)

    def wall_s(self, simulated_us: int) -> float:
        """The wall-clock second at which the simulated clock shows ``simulated_us``."""
        return self.origin_wall_s + (simulated_us - self.origin_simulated_us) / (self.scale * MICROS_PER_SECOND)


def time_scale_for(rate: float, events_per_simulated_second: float) -> float:
    """Simulated seconds per wall second that make traffic of ``events_per_simulated_second`` arrive
    at ``rate`` events per second on average."""
    if rate <= 0 or events_per_simulated_second <= 0:
        raise ValueError("rate and events per simulated second must be positive")
    return rate / events_per_simulated_second


def hacker_fraud_share(normal_rate: float, hacker_rate: float) -> float:
    """The fraud share to simulate so that a hacker producer (fraud only) sharing a normal producer's
    simulated population and clock sends ``hacker_rate`` while the normal one sends ``normal_rate``."""
    if normal_rate <= 0 or hacker_rate <= 0:
        raise ValueError("rates must be positive")
    return hacker_rate / (normal_rate + hacker_rate)


def due_until(times_us: np.ndarray, position: int, until_us: int) -> int:
    """End (exclusive) of the rows from ``position`` on whose simulated time is at most ``until_us``;
    ``times_us`` is sorted."""
    return max(position, int(np.searchsorted(times_us, until_us, side="right")))


@dataclass(frozen=True)
class LabelBatch:
    """Labels of one group of rows: transaction numbers, account and merchant numbers, scenario codes
    and due times (seconds of the producer's clock), a few bytes per label."""

    numbers: np.ndarray
    accounts: np.ndarray
    merchants: np.ndarray
    scenario_codes: np.ndarray
    due_s: np.ndarray

    def take(self, rows: np.ndarray) -> LabelBatch:
        return LabelBatch(self.numbers[rows], self.accounts[rows], self.merchants[rows], self.scenario_codes[rows],
                          self.due_s[rows])


class LabelSchedule:
    """Labels waiting for their delay, grouped in small time buckets of the producer's clock.

    Times are seconds of whichever clock the producer runs on (wall or simulated); ``bucket_s`` is
    the grouping granularity in those seconds. Each row keeps its exact due time: it becomes the
    label's ``labeled_at``, also when the label is sent early at the end of a run. With
    ``Labels.fraud_only`` legitimate transactions get no label."""

    def __init__(self, delays: LabelDelays, rng: np.random.Generator, bucket_s: float = LABEL_BUCKET_S,
                 labels: Labels = Labels.all) -> None:
        self.delays = delays
        self.rng = rng
        self.bucket_s = bucket_s
        self.labels = Labels(labels)
        self.buckets: dict[int, list[LabelBatch]] = {}
        self.order: list[int] = []
        self.pending = 0

    def add(self, chunk: Chunk, rows: np.ndarray, now_s: float | np.ndarray) -> None:
        """Schedule the labels of ``rows``, each its delay after ``now_s`` (one time, or one per row)."""
        fraud = chunk.scenario_codes[rows] != LEGITIMATE
        if self.labels is Labels.fraud_only:
            now_s = now_s[fraud] if isinstance(now_s, np.ndarray) else now_s
            rows, fraud = rows[fraud], fraud[fraud]
        low, high = np.where(fraud[:, None], self.delays.fraud_s, self.delays.legit_s).T
        due = now_s + self.rng.uniform(low, high)
        keys = (due / self.bucket_s).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        batch = LabelBatch(chunk.first_number + rows, chunk.accounts[rows], chunk.merchants[rows],
                           chunk.scenario_codes[rows], due).take(order)
        unique_keys, starts = np.unique(keys[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for key, begin, end in zip(unique_keys.tolist(), starts.tolist(), ends.tolist(), strict=True):
            if key not in self.buckets:
                self.buckets[key] = []
                heapq.heappush(self.order, key)
            self.buckets[key].append(batch.take(np.arange(begin, end)))
        self.pending += len(rows)

    def pop_due(self, now_s: float | None) -> Iterator[LabelBatch]:
        """Label batches due by ``now_s`` (every one when ``now_s`` is None)."""
        while self.order and (now_s is None or self.order[0] * self.bucket_s <= now_s):
            for batch in self.buckets.pop(heapq.heappop(self.order)):
                self.pending -= len(batch.numbers)
                yield batch


class LiveProducer:
    """Sends a TrafficSource to Kafka: optionally ``warm_up`` (simulated clock), then ``run``.

    ``time_scale`` 1 is the wall clock (paced by ``rate``, stamped with the send time); anything else
    is a simulated clock at that many simulated seconds per second (paced by the events' own times;
    ``rate`` None sends as fast as possible). With ``record_send_times`` the producer keeps when it
    handed each transaction to the Kafka client (``send_times_us``), for latencies measured from the
    send rather than from a simulated event time."""

    def __init__(self, settings: Settings, source: TrafficSource, rate: float | None,
                 label_delays: LabelDelays, transactions_topic: str, labels_topic: str,
                 time_scale: float = 1.0, record_send_times: bool = False, labels: Labels = Labels.all) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.settings = settings
        self.source = source
        self.rate = rate
        self.time_scale = time_scale
        self.simulated = time_scale != 1.0
        self.transactions_topic = transactions_topic
        self.labels_topic = labels_topic
        self.labels = LabelSchedule(label_delays, np.random.default_rng([source.seed, 4]), LABEL_BUCKET_S * time_scale,
                                    labels)
        self.summary = ProduceSummary(source.mode.value, rate, fraud_by_scenario=dict.fromkeys(SCENARIO_NAMES, 0),
                                      time_scale=time_scale)
        # Only failed deliveries call back into Python: a callback per message would cost throughput. The
        # client's queue is bounded well below its default (1 GB): beyond, sending waits for the broker.
        self.producer: Producer = kafka_producer(settings, **{"delivery.report.only.error": True,
                                                              "queue.buffering.max.kbytes": PRODUCER_QUEUE_KB})
        self.scenario_counts = np.zeros(len(SCENARIO_NAMES) + 1, dtype=np.int64)
        self._chunks: Iterator[Chunk] | None = None
        self._chunk: Chunk | None = None
        self._position = 0
        #: Where the simulated clock stands (the warm-up's end, then the paced run's).
        self.simulated_now_us = source.start_us
        self._send_log: list[tuple[int, int, int]] | None = [] if record_send_times else None

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.summary.delivery_failures += 1
            if self.summary.delivery_failures <= 5:
                log.error("delivery failed: %s", error)

    def _current(self) -> Chunk:
        if self._chunk is None or self._position == len(self._chunk.bodies):
            if self._chunks is None:
                self._chunks = self.source.chunks()
            self._chunk, self._position = next(self._chunks), 0
        return self._chunk

    def _send_rows(self, chunk: Chunk, begin: int, end: int, bodies: list[bytes], label_base_s: float | np.ndarray,
                   sent_at_s: float) -> None:
        producer, topic, delivered = self.producer, self.transactions_topic, self._delivered
        for key, body in zip(chunk.keys[begin:end], bodies, strict=True):
            produce(producer, topic, body, key, on_delivery=delivered)
        if self._send_log is not None:
            self._send_log.append((chunk.first_number + begin, chunk.first_number + end, round(sent_at_s * 1e6)))
        rows = np.arange(begin, end)
        self.scenario_counts += np.bincount(chunk.scenario_codes[rows] + 1, minlength=len(self.scenario_counts))
        self.labels.add(chunk, rows, label_base_s)
        self.summary.events_sent += end - begin

    def _send_wall(self, count: int, slice_start_s: float, now_s: float) -> None:
        """Wall clock: the next ``count`` events, stamped evenly over the slice."""
        while count > 0:
            chunk = self._current()
            begin = self._position
            end = begin + min(count, len(chunk.bodies) - begin)
            bodies = stamp_events(chunk.bodies[begin:end], slice_start_s, max(now_s, slice_start_s + 1e-6))
            self._send_rows(chunk, begin, end, bodies, now_s, now_s)
            self._position, count = end, count - (end - begin)

    def _send_simulated(self, until_us: int, limit: int) -> int:
        """Simulated clock: events whose simulated time is at most ``until_us`` (at most ``limit``),
        stamped with their own times; returns how many were sent."""
        sent = 0
        while sent < limit:
            chunk = self._current()
            begin = self._position
            end = min(due_until(chunk.times_us, begin, until_us), begin + limit - sent)
            if end == begin:
                break
            times_us = chunk.times_us[begin:end]
            self._send_rows(chunk, begin, end, add_event_times(chunk.bodies[begin:end], times_us),
                            times_us / MICROS_PER_SECOND, time.time())
            self._position, sent = end, sent + end - begin
            self.simulated_now_us = max(self.simulated_now_us, int(times_us[-1]))
        return sent

    def _send_labels(self, now_s: float | None) -> None:
        """Labels due by ``now_s`` (every pending one when None), ``labeled_at`` = their due time."""
        scenario_names = (None, *SCENARIO_NAMES)
        population: Population = self.source.population
        for batch in self.labels.pop_due(now_s):
            accounts = population.account_ids(batch.accounts).to_pylist()
            for transaction_id, account_id, merchant, code, labeled_at_us in zip(
                    transaction_ids(self.source.id_prefix, batch.numbers).to_pylist(), accounts,
                    batch.merchants.tolist(), batch.scenario_codes.tolist(),
                    (batch.due_s * MICROS_PER_SECOND).astype(np.int64).tolist(), strict=True):
                label = {"transaction_id": transaction_id, "account_id": account_id,
                         "merchant_id": population.merchant_ids[merchant], "is_fraud": code != LEGITIMATE,
                         "scenario": scenario_names[code + 1], "labeled_at_us": labeled_at_us}
                produce(self.producer, self.labels_topic, encode(label_to_dict(label)), account_id.encode(),
                        on_delivery=self._delivered)
            self.summary.labels_sent += len(accounts)
            self.summary.labels_sent_early += len(accounts) if now_s is None else 0

    def advance(self, until_us: int) -> int:
        """Send every event simulated before ``until_us`` as fast as possible, with the labels due by
        then (no waiting for delivery); returns how many events were sent."""
        if not self.simulated:
            raise ValueError("advancing needs a simulated clock (time_scale != 1)")
        before = self.summary.events_sent
        while self._send_simulated(until_us - 1, UNLIMITED_SLICE_EVENTS) == UNLIMITED_SLICE_EVENTS:
            self._send_labels(self.simulated_now_us / MICROS_PER_SECOND)
            self.producer.poll(0)
        self.simulated_now_us = max(self.simulated_now_us, until_us)
        self._send_labels(self.simulated_now_us / MICROS_PER_SECOND)
        self.producer.poll(0)
        return self.summary.events_sent - before

    def warm_up(self, until_us: int) -> int:
        """``warm_up_together`` for this producer alone."""
        return warm_up_together([self], until_us)

    def send_times_us(self) -> np.ndarray:
        """When each transaction number was handed to the Kafka client (-1: never), in microseconds."""
        if self._send_log is None:
            raise ValueError("send times are recorded only with record_send_times=True")
        end = max((entry[1] for entry in self._send_log), default=0)
        times = np.full(end, -1, dtype=np.int64)
        for begin, stop, sent_at_us in self._send_log:
            times[begin:stop] = sent_at_us
        return times

    def run(self, duration_s: float | None, max_events: int | None, progress: bool,
            clock: SimulatedClock | None = None) -> ProduceSummary:
        """Send until the duration or event budget is spent (or Ctrl-C), then flush everything.

        On a simulated clock, ``clock`` (shared by the run's producers) defaults to one that starts
        now at the simulated moment where this producer stands."""
        budget = max_events if max_events is not None else math.inf
        if self.rate is not None and duration_s is not None and not self.simulated:
            budget = min(budget, round(self.rate * duration_s))
        if self.simulated and clock is None:
            clock = SimulatedClock(time.time(), self.simulated_now_us, self.time_scale)
        bar = Progress(TextColumn("[bold]producing {task.fields[mode]}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]:,.0f} events/s"), TimeElapsedColumn(), disable=not progress)
        task = bar.add_task("produce", total=None if math.isinf(budget) else budget, mode=self.source.mode.value,
                            rate=0.0)
        before = self.summary.events_sent
        started = time.time()
        if clock is not None:
            self.summary.simulated_start_us = clock.simulated_us(started) if self.rate is not None else \
                self.simulated_now_us
        slice_start = started
        next_tick = time.perf_counter()
        with bar:
            try:
                while (sent := self.summary.events_sent - before) < budget:
                    now = time.time()
                    elapsed = now - started
                    if duration_s is not None and (self.rate is None or self.simulated) and elapsed >= duration_s:
                        break
                    left = budget - sent
                    if clock is not None:
                        paced = self.rate is not None
                        until = clock.simulated_us(now) if paced else np.iinfo(np.int64).max
                        slice_limit = MAX_SLICE_EVENTS if paced else UNLIMITED_SLICE_EVENTS
                        self._send_simulated(until, int(min(left, slice_limit)))
                        if paced:
                            self.simulated_now_us = max(self.simulated_now_us, until)
                        self._send_labels(self.simulated_now_us / MICROS_PER_SECOND)
                    else:
                        due = (UNLIMITED_SLICE_EVENTS if self.rate is None
                               else math.floor(self.rate * elapsed) - sent)
                        self._send_wall(int(min(due, left)), slice_start, now)
                        self._send_labels(now)
                    slice_start = now
                    self.producer.poll(0)
                    bar.update(task, completed=self.summary.events_sent - before,
                               rate=(self.summary.events_sent - before) / max(elapsed, 1e-9))
                    if self.rate is not None:
                        next_tick += SLICE_S
                        time.sleep(max(0.0, next_tick - time.perf_counter()))
            except KeyboardInterrupt:
                log.info("interrupted: flushing what was sent")
            self.summary.sending_s = time.time() - started
            if clock is not None:
                self.summary.simulated_end_us = self.simulated_now_us
            if self._chunks is not None:
                self._chunks.close()  # stops the helper thread's generation
            self._send_labels(None)
            remaining = self.producer.flush(60)
        self.summary.delivery_failures += remaining
        self.summary.fraud_by_scenario = dict(zip(SCENARIO_NAMES, self.scenario_counts[1:].tolist(), strict=True))
        return self.summary


def warm_up_together(producers: Sequence[LiveProducer], until_us: int, step_s: float = 300.0) -> int:
    """Send the simulated days before ``until_us`` of producers sharing one simulated world as fast as
    possible, in lockstep steps of ``step_s`` simulated seconds (the features' allowed lateness), and
    wait until Kafka has everything; returns the events sent.

    A processor that starts with this backlog holds the history a running system would have
    (account habits, merchant traffic, fraud labels): a cold state makes every account look new and
    costs the alerts most of their precision. Lockstep keeps one producer's events from reaching an
    account long after another producer's later ones (they would be late)."""
    if not producers:
        return 0
    step_us = round(step_s * MICROS_PER_SECOND)
    moment = min(producer.simulated_now_us for producer in producers)
    sent = [0] * len(producers)
    while moment < until_us:
        moment = min(until_us, moment + step_us)
        for index, producer in enumerate(producers):
            sent[index] += producer.advance(moment)
    for index, producer in enumerate(producers):
        producer.summary.delivery_failures += producer.producer.flush(120)
        producer.summary.warm_up_events += sent[index]
    log.info("warm-up sent %d events up to simulated %s", sum(sent), format_time_us(until_us))
    return sum(sent)


def live_start_us(training_end_us: int | None = None) -> int:
    """Where a simulated live stream starts: the midnight after the model's training data ends (so the
    stream continues the history it learned from), else 30 days after ``DEFAULT_START``."""
    if training_end_us is None:
        return to_microseconds(DEFAULT_START) + 30 * MICROS_PER_DAY
    return -(-training_end_us // MICROS_PER_DAY) * MICROS_PER_DAY


def produce_live(settings: Settings, mode: Mode | str = Mode.all, rate: float | None = 100.0,
                 duration_s: float | None = None, max_events: int | None = None, seed: int = 7,
                 progress: bool = True, accounts: int | None = DEFAULT_ACCOUNTS, merchants: int = 2_000,
                 fraud_share: float | None = None, scenarios: Mapping[str, float] = DEFAULT_SCENARIO_WEIGHTS,
                 label_delays: LabelDelays | None = None, transactions_topic: str | None = None,
                 labels_topic: str | None = None, time_scale: float | None = 1.0,
                 start_us: int | None = None, warm_up_days: float = 0.0,
                 labels: Labels | str = Labels.all) -> ProduceSummary:
    """Send simulated transactions (keyed by account) and, later, their labels to Kafka.

    ``rate`` is events per second (None: as fast as possible); the run stops after ``duration_s``
    seconds or ``max_events`` events, whichever comes first, or on Ctrl-C without either.
    ``time_scale`` 1 is the wall clock; None derives a simulated clock's scale from ``rate``; any
    other value is a simulated clock at that scale, starting at ``start_us`` (default:
    ``live_start_us()``) after ``warm_up_days`` of simulated history sent at full speed.
    ``accounts`` None sizes the population (``resolve_accounts``); ``labels`` says which
    transactions get a label."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for unlimited)")
    accounts = resolve_accounts(accounts, Mode(mode), rate, time_scale, seed, merchants)
    log.info("simulating %d accounts and %d merchants", accounts, merchants)
    if time_scale == 1.0:
        source = TrafficSource(Mode(mode), seed, accounts, merchants, fraud_share, scenarios)
        delays = label_delays or LIVE_LABEL_DELAYS
    else:
        start = live_start_us() if start_us is None else start_us
        source = TrafficSource(Mode(mode), seed, accounts, merchants, fraud_share, scenarios,
                               start_us=start - round(warm_up_days * MICROS_PER_DAY),
                               population_start_us=to_microseconds(DEFAULT_START))
        if time_scale is None:
            if rate is None:
                raise ValueError("a time scale derived from the rate needs a rate")
            time_scale = time_scale_for(rate, source.events_per_simulated_second())
        delays = label_delays or SIMULATED_LABEL_DELAYS
    live = LiveProducer(settings, source, rate, delays, transactions_topic or settings.transactions_topic,
                        labels_topic or settings.labels_topic, time_scale=time_scale, labels=Labels(labels))
    if live.simulated and warm_up_days > 0:
        live.warm_up(start)
    summary = live.run(duration_s, max_events, progress)
    log.info("produced %d events and %d labels in %.1f s (%.0f events/s, time scale %.0f)", summary.events_sent,
             summary.labels_sent, summary.sending_s, summary.rate_achieved, time_scale)
    return summary
