"""End-to-end benchmark, Kafka to PostgreSQL, on this machine: the local engine beside the seed's design.

For each design, in one run:
- sustained throughput: a backlog of events is already in Kafka; events/s is measured from the rows'
  own timestamps, the first row's ingest (read from Kafka) to the last row's commit;
- latency at fixed rates (1k, 5k, 20k events/s by default): a paced producer records when it sent each
  event; p50/p95/p99 of sent -> commit and of ingest -> commit. A row's commit time is the
  ``written_at`` of the last row of its database transaction (rows sharing its ``xmin``): only the
  offsets, the snapshot and the fsync come after it, a few ms, so the figures are a slight lower bound.
  Each rate run starts with ``--warm-up`` seconds (default 3) at the same rate whose events are written
  but left out of the percentiles: a fresh engine's first batches and a fresh producer's wait for its
  idempotence id took ~1 s to absorb, which at 5,000 events/s alone moved p99 from ~200 to ~760 ms;
- start-up: on the backlog, from launching the design's processes to their first commit (the process
  starting, loading the model, joining the group and its first batch);
- where the CPU goes: CPU seconds (``/proc/<pid>/stat``) of the design's processes, the Kafka broker,
  PostgreSQL (all its processes, autovacuum included), this process (the producer) and everything else
  on the machine, over each scenario, with the load average before and after it. When a design cannot
  go faster, this says which process holds the cores.

Events keep their simulated event times: stamping a 20k/s stream with the wall clock would squeeze a
population's day into seconds, make every account look like a card-testing attack and benchmark the
explanation of alerts rather than the pipeline. (Live traffic stamps event time at send, so there
"sent -> written" is the event-time latency the engine's metrics report.)

The seed-style baseline is the seed's job shape: one Kafka message at a time, one model call and one
INSERT (committed) per event, with the same decoding, features and model as the engine. It is
measured on a backlog only: it holds none of the fixed rates, where its latency would only measure the
queue. Both sides of the throughput ratio run with the same PostgreSQL durability (the engine sink's
``synchronous_commit``, the server's ``fsync``; the table prints both) and drain the same
``--baseline-backlog`` events; the engine's larger ``--backlog`` is a row of its own. Every scenario runs
``--repeat`` times: median (min-max).

    .venv/bin/python bench/bench_pipeline.py [--rates 1000,5000,20000] [--duration 20] [--warm-up 3]
        [--backlog 100000] [--baseline-backlog 5000] [--members 1,2] [--repeat 3]
        [--engine-args '--batch-timeout-ms 100']
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psycopg
from _report import BenchRun, add_repeat_argument, format_spread, spread
from rich.console import Console

from fraudstream import kafka
from fraudstream.batch import rows as pipeline
from fraudstream.batch.scoring import Scorer
from fraudstream.config import Settings, get_settings
from fraudstream.demo import ensure_default_model, processor_env
from fraudstream.events.contract import partition_for, transaction_to_dict
from fraudstream.features import FeatureState
from fraudstream.probes import NotReady, wait_until_assigned
from fraudstream.simulate.backfill import simulate_history

SEED_STYLE = "seed-style per-row"
#: What the engine's sink runs its transactions with (``SET LOCAL`` in fraudstream/engines/sink.py: rows and
#: offsets in one transaction, replayed from Kafka if a crash loses it); the per-row baseline uses the same, so
#: neither side of the ratio gains from a laxer durability setting. fsync is the server's, shared by both.
ENGINE_SYNCHRONOUS_COMMIT = "off"
LOGS = Path(__file__).with_name("results") / "logs"
CPU_PARTS = ("design", "kafka", "postgres", "producer", "other")
console = Console(width=150)
#: Extra `fraudstream process` options for the local-engine members (--engine-args).
ENGINE_ARGS: list[str] = []


@dataclass
class Measurement:
    design: str
    synchronous_commit: str
    fsync: str
    scenario: str  # "backlog" or "<rate>/s"
    target_rate: int | None
    produced: int
    written: int
    events_per_second: float
    sent_to_commit_p50_ms: float | None
    sent_to_commit_p95_ms: float | None
    sent_to_commit_p99_ms: float | None
    ingest_to_commit_p50_ms: float | None
    ingest_to_commit_p99_ms: float | None
    seconds: float
    #: CPU seconds over the scenario by process: design, kafka, postgres, producer, other.
    cpu_s: dict[str, float]
    load_before: float
    load_after: float
    #: Backlog only: from starting the design's processes to its first commit (start-up included).
    start_to_first_commit_s: float | None = None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime of a process (plus its reaped children's), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / _CLOCK_TICKS


def _machine_busy_s() -> float:
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def _pids(match: Callable[[int, str, bytes], bool]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if match(int(entry.name), (entry / "comm").read_text().strip(), (entry / "cmdline").read_bytes()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


class CpuMeter:
    """CPU seconds by process over a scenario: the design's members, the broker, PostgreSQL (every
    process, plus the postmaster's reaped children: backends that ended), this process and the rest.
    The broker and the postmaster are the ones under the settings' state directory: another stack on
    the machine (other ports) counts as "other"."""

    def __init__(self, design_pids: list[int], settings: Settings) -> None:
        home = str(settings.state_dir).encode()
        self.design_pids = design_pids
        self.kafka_pids = _pids(lambda _pid, _comm, cmdline: b"kafka.Kafka" in cmdline and home in cmdline)
        self.postmaster = min(_pids(lambda _pid, comm, cmdline: comm == "postgres" and home in cmdline))
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        postgres = _pids(lambda pid, comm, _cmdline: comm == "postgres" and _parent(pid) == self.postmaster)
        reading = {
            "design": sum(_process_cpu_s(pid) for pid in self.design_pids),
            "kafka": sum(_process_cpu_s(pid) for pid in self.kafka_pids),
            "postgres": _process_cpu_s(self.postmaster, children=True) + sum(map(_process_cpu_s, postgres)),
            "producer": time.process_time(),
        }
        reading["other"] = _machine_busy_s() - sum(reading.values())
        return reading

    def used(self) -> dict[str, float]:
        """CPU seconds since the meter started, by process (read before the design's processes end)."""
        return {name: round(value - self.start[name], 2) for name, value in self._read().items()}


def events_payloads(count: int, seed: int = 5) -> list[dict[str, object]]:
    """Wire dictionaries of a simulation, in event-time order."""
    history = simulate_history(days=max(1, count // 12_000 + 1), seed=seed, accounts=10_000, merchants=1_000)
    frame = history.transactions.head(count)
    return [transaction_to_dict(row) for row in frame.itertuples(index=False)]


def bench_settings(base: Settings, tag: str) -> Settings:
    settings = base.model_copy(update={
        "transactions_topic": f"bench-tx-{tag}", "labels_topic": f"bench-labels-{tag}",
        "alerts_topic": f"bench-alerts-{tag}", "dlq_topic": f"bench-dlq-{tag}",
    })
    kafka.create_topics(settings)
    return settings


def produce(settings: Settings, events: list[dict[str, object]], prefix: str, rate: int | None) -> np.ndarray:
    """Send events with ids ``prefix + n``, paced at ``rate``/s (None: at once); returns when each was sent."""
    producer = kafka.producer(settings)
    partitions = settings.transactions_partitions
    sent_at = np.zeros(len(events))
    began = time.perf_counter()
    for number, event in enumerate(events):
        if rate is not None and number % max(1, rate // 200) == 0:
            ahead = number / rate - (time.perf_counter() - began)
            if ahead > 0:
                time.sleep(ahead)
        account = str(event["account_id"])
        event = {**event, "transaction_id": f"{prefix}{number}"}
        sent_at[number] = time.time()
        kafka.produce(producer, settings.transactions_topic, orjson.dumps(event), account.encode(),
                      partition=partition_for(account, partitions))
        producer.poll(0)
    producer.flush(60)
    return sent_at


def local_design(members: int) -> str:
    return f"local engine, {members} member{'s' if members > 1 else ''}"


def start_design(design: str, settings: Settings, group: str, logs: Path) -> list[subprocess.Popen]:
    """The design's processes (one per consumer-group member), once each has partitions."""
    if design == SEED_STYLE:
        commands = [[sys.executable, __file__, "--seed-worker", group]]
    else:
        members = int(design.split(", ")[1].split()[0])
        commands = [[str(Path(sys.executable).with_name("fraudstream")), "process", "--group", group,
                     "--metrics-port", "0", *ENGINE_ARGS]] * members
    processes = []
    for number, command in enumerate(commands):
        log = logs / f"{group}-{number}.log"
        processes.append(subprocess.Popen(command, env=processor_env(settings), stdout=log.open("ab"),
                                          stderr=subprocess.STDOUT))
        try:
            wait_until_assigned(settings, group, members=number + 1, alive=lambda p=processes[-1]: p.poll() is None)
        except NotReady as error:
            raise AssertionError(f"{design}: {error}; see {log}") from None
    return processes


def wait_written(connection: psycopg.Connection, prefix: str, expected: int, limit_s: float,
                 processes: list[subprocess.Popen]) -> int:
    """Wait until all rows are written, at most ``limit_s`` seconds (a design that cannot keep up
    is measured on what it wrote by then); a design whose process died fails the benchmark."""
    deadline = time.monotonic() + limit_s
    while True:
        count = connection.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE %s",
                                   (prefix + "%",)).fetchone()[0]
        if count >= expected or time.monotonic() > deadline:
            return count
        assert all(process.poll() is None for process in processes), f"a design process exited: see {LOGS}"
        time.sleep(0.5)


def measure(connection: psycopg.Connection, design: str, scenario: str, rate: int | None, prefix: str,
            sent_at: np.ndarray, seconds: float, cpu_s: dict[str, float], loads: tuple[float, float],
            warm_up: int = 0, started_at: float | None = None) -> Measurement:
    rows = connection.execute(
        "SELECT substr(transaction_id, %s)::bigint, extract(epoch FROM max(written_at) OVER (PARTITION BY xmin::text)),"
        " extract(epoch FROM max(written_at) OVER (PARTITION BY xmin::text) - ingested_at)"
        " FROM transactions WHERE transaction_id LIKE %s",
        (len(prefix) + 1, prefix + "%")).fetchall()
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    written = len(data)
    # from the first row read (its ingested_at) to the last commit: every row's processing inside the span, so
    # a backlog drained in a few batches is measured like a long one (and like the per-row baseline)
    first_read = float((data[:, 1] - data[:, 2]).min()) if written else 0.0
    span = float(data[:, 1].max() - first_read) if written else 0.0
    rate_seen = written / span if span > 0 else 0.0
    steady = data[data[:, 0] >= warm_up]
    sent_to_commit = steady[:, 1] - sent_at[steady[:, 0].astype(np.int64)]

    def pct(values: np.ndarray, q: float) -> float | None:
        return float(np.percentile(values, q) * 1000) if written and rate is not None else None

    durability = durability_settings(connection)
    return Measurement(design, ENGINE_SYNCHRONOUS_COMMIT, durability["fsync"], scenario, rate, len(sent_at), written,
                       rate_seen, pct(sent_to_commit, 50),
                       pct(sent_to_commit, 95), pct(sent_to_commit, 99), pct(steady[:, 2], 50), pct(steady[:, 2], 99),
                       seconds, cpu_s, *loads,
                       float(data[:, 1].min()) - started_at if written and started_at is not None else None)


def durability_settings(connection: psycopg.Connection) -> dict[str, str]:
    """The server's fsync and default synchronous_commit (both designs' sessions set synchronous_commit)."""
    return {name: connection.execute(f"SHOW {name}").fetchone()[0] for name in ("fsync", "synchronous_commit")}


def run_scenario(base: Settings, connection: psycopg.Connection, design: str, events: list[dict[str, object]],
                 rate: int | None, logs: Path, limit_s: float, warm_up: int = 0) -> Measurement:
    """One design on one scenario; at a fixed rate the first ``warm_up`` events are sent at the rate too
    but left out of the latency percentiles (a fresh process's first batches, and a fresh producer
    waiting for its idempotence id, are start-up, not steady state)."""
    tag = uuid.uuid4().hex[:8]
    settings = bench_settings(base, tag)
    prefix = f"bench-{tag}-"
    scenario = "backlog" if rate is None else f"{rate}/s"
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    processes: list[subprocess.Popen] = []
    try:
        started_at = None
        if rate is None:
            sent_at = produce(settings, events, prefix, None)
            started_at = time.time()
            processes = start_design(design, settings, f"bench-{tag}", logs)
            meter = CpuMeter([process.pid for process in processes], settings)
        else:
            processes = start_design(design, settings, f"bench-{tag}", logs)
            meter = CpuMeter([process.pid for process in processes], settings)
            sent_at = produce(settings, events, prefix, rate)
        wait_written(connection, prefix, len(events), limit_s, processes)
        cpu_s = meter.used()
        result = measure(connection, design, scenario, rate, prefix, sent_at, time.perf_counter() - began, cpu_s,
                         (load_before, os.getloadavg()[0]), warm_up, started_at)
    finally:
        for process in processes:
            process.kill()
            process.wait(30)
        connection.execute("DELETE FROM transactions WHERE transaction_id LIKE %s", (prefix + "%",))
        connection.execute("VACUUM transactions")  # now, not by autovacuum during the next scenario
    console.print(f"{design:>20} {scenario:>8}: {result.written}/{result.produced} rows, "
                  f"{result.events_per_second:,.0f} events/s, sent->commit p99 {result.sent_to_commit_p99_ms} ms, "
                  f"cpu {cpu_s}")
    return result


def seed_worker(group: str) -> None:
    """The seed job's shape: per message, decode, features, one model call, one committed INSERT."""
    settings = get_settings()
    scorer = Scorer.from_registry(settings.models_dir)
    state = FeatureState(scorer.feature_config)
    consumer = kafka.consumer(settings, group)
    consumer.subscribe([settings.transactions_topic])
    columns = ", ".join(name for name in pipeline.ROW_COLUMNS if not name.endswith("_us"))
    times = ", ".join(f"timestamptz 'epoch' + %s * interval '1 microsecond' AS {name[:-3]}" for name in
                      ("event_time_us", "ingested_at_us", "scored_at_us"))
    statement = (f"INSERT INTO transactions ({columns}, event_time, ingested_at, scored_at) "
                 f"SELECT {', '.join(['%s'] * (len(pipeline.ROW_COLUMNS) - 3))}, {times} "
                 "ON CONFLICT (transaction_id, event_time) DO NOTHING")
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(f"SET synchronous_commit = {ENGINE_SYNCHRONOUS_COMMIT}")
        applied = connection.execute("SHOW synchronous_commit").fetchone()[0]
        if applied != ENGINE_SYNCHRONOUS_COMMIT:
            raise SystemExit(f"seed worker: synchronous_commit is {applied}, not {ENGINE_SYNCHRONOUS_COMMIT}")
        while True:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            ingested_at_us = time.time_ns() // 1000
            received_at_us = pipeline.received_times_us(np.array([message.timestamp()[1] * 1000]), ingested_at_us)
            decoded = pipeline.decode([message.value()], received_at_us,
                                      future_tolerance_s=settings.event_time_future_tolerance_s)
            if decoded.rejected:
                continue
            frame = decoded.frame.assign(kafka_partition=message.partition(), kafka_offset=message.offset(),
                                         ingested_at_us=ingested_at_us)
            features = state.process_rows(decoded.frame)
            rows = pipeline.scored_rows(frame, features, scorer.score_rows(features),
                                        model_version=scorer.model_version, engine="seed-style",
                                        scored_at_us=time.time_ns() // 1000, feature_columns=scorer.feature_names)
            row = rows.iloc[0]
            values = [row[name] for name in pipeline.ROW_COLUMNS if not name.endswith("_us")]
            values = [list(value) if isinstance(value, tuple | list) else value for value in values]
            times_us = [int(row["event_time_us"]), int(row["ingested_at_us"]), int(row["scored_at_us"])]
            connection.execute(statement, [*map(_plain, values), *times_us])


def _plain(value: object) -> object:
    if value is pd.NA:  # a null of an Arrow-backed column (the shadow score without a shadow model)
        return None
    return value.item() if isinstance(value, np.generic) else value


def tables(run: BenchRun, results: list[list[Measurement]]) -> None:
    """One row per design and scenario: median (min-max) over the repeated runs."""
    def ms(values: list[float | None]) -> str:
        return format_spread(spread(values))

    rows, cpu_rows = [], []
    for runs in results:
        first = runs[0]
        rows.append([first.design, first.scenario, f"{first.produced:,}",
                     f"synchronous_commit={first.synchronous_commit}, fsync={first.fsync}",
                     f"{min(r.written for r in runs):,}", ms([r.events_per_second for r in runs]),
                     *(ms([getattr(r, f"{name}_ms") for r in runs]) for name in
                       ("sent_to_commit_p50", "sent_to_commit_p95", "sent_to_commit_p99", "ingest_to_commit_p50",
                        "ingest_to_commit_p99")),
                     format_spread(spread(r.start_to_first_commit_s for r in runs), 2)])
        cpu_rows.append([first.design, first.scenario, ms([r.load_before for r in runs]),
                         *(ms([r.cpu_s[part] / max(r.written, 1) * 1e6 for r in runs]) for part in CPU_PARTS)])
    run.table("Kafka -> PostgreSQL end to end",
              ["design", "scenario", "events", "PostgreSQL durability", "written (min)", "events/s",
               "sent->commit p50 ms", "p95 ms", "p99 ms", "ingest->commit p50 ms", "p99 ms",
               "start -> first commit s"], rows,
              note=f"median (min-max) of {len(results[0])} runs each")
    run.table("CPU by process over each scenario: µs per written event", ["design", "scenario", "load 1m before",
              *CPU_PARTS], cpu_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000,5000,20000")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per fixed-rate run")
    parser.add_argument("--warm-up", type=float, default=3.0,
                        help="seconds sent at the rate before each fixed-rate run, left out of its latencies")
    parser.add_argument("--backlog", type=int, default=100_000, help="events for the sustained-throughput run")
    parser.add_argument("--baseline-backlog", type=int, default=5_000,
                        help="events the per-row baseline drains; the engine drains the same count too (the ratio)")
    parser.add_argument("--drain-limit", type=float, default=60.0,
                        help="seconds a design may take to catch up after the producer stops")
    parser.add_argument("--members", default="1", help="local-engine group sizes to measure, e.g. 1,2")
    parser.add_argument("--engine-args", default="", help="extra `fraudstream process` options, e.g. "
                        "'--batch-timeout-ms 100'")
    parser.add_argument("--skip-baseline", action="store_true", help="only the local engine")
    parser.add_argument("--seed-worker", metavar="GROUP", help=argparse.SUPPRESS)
    add_repeat_argument(parser)
    args = parser.parse_args()
    ENGINE_ARGS.extend(args.engine_args.split())
    if args.seed_worker:
        seed_worker(args.seed_worker)
        return
    base = get_settings()
    ensure_default_model(base)
    rates = [int(rate) for rate in args.rates.split(",")]
    events = events_payloads(max(args.backlog, int(max(rates) * (args.duration + args.warm_up))))
    LOGS.mkdir(parents=True, exist_ok=True)
    with (BenchRun("bench_pipeline", settings=vars(args)) as run,
          psycopg.connect(base.database_url, autocommit=True) as connection):
        run.figures["server_durability"] = durability_settings(connection)
        designs = [local_design(int(n)) for n in args.members.split(",")] + ([] if args.skip_baseline else [SEED_STYLE])
        plan: list[tuple[str, int | None, int, int]] = []  # design, rate, events, warm-up events
        for design in designs:
            local = design != SEED_STYLE
            # the ratio's two sides drain the same number of events; the engine's large backlog is its own row
            backlogs = [args.backlog] if local else []
            if not args.skip_baseline and args.baseline_backlog not in backlogs:
                backlogs.append(args.baseline_backlog)
            plan += [(design, None, backlog, 0) for backlog in backlogs]
            plan += [(design, rate, int(rate * args.warm_up) + int(rate * args.duration), int(rate * args.warm_up))
                     for rate in (rates if local else ())]
        measured: dict[tuple[str, int | None, int], list[Measurement]] = {}
        for _ in range(args.repeat):  # each repeat runs every design and scenario once: load hits them alike
            for design, rate, count, warm_up in plan:
                limit_s = 900.0 if rate is None else args.drain_limit
                measured.setdefault((design, rate, count), []).append(
                    run_scenario(base, connection, design, events[:count], rate, LOGS, limit_s, warm_up))
        results = list(measured.values())
        tables(run, results)
        first = measured.get((designs[0], None, args.backlog))
        if designs[0] == local_design(1) and first:
            run.target(f"local engine, backlog drain ({args.backlog:,} events), 1 member, Kafka + PostgreSQL "
                       "co-located", spread(r.events_per_second for r in first)["median"], 50_000, 75_000, " ev/s")
        if designs[0] == local_design(1) and first:
            run.target("processor start to first batch (process start to first commit, backlog waiting)",
                       spread(r.start_to_first_commit_s for r in first)["median"], 1.5, 1.0, " s", "lower")
        at_5000 = measured.get((local_design(1), 5000, int(5000 * args.warm_up) + int(5000 * args.duration)))
        if at_5000:
            run.target("local engine, send->commit p99 at 5,000 ev/s",
                       spread(r.sent_to_commit_p99_ms for r in at_5000)["median"], 100, 50, " ms", "lower")
        run.figures["results"] = [[asdict(r) for r in runs] for runs in results]
        equal = {runs[0].design: runs for runs in results
                 if runs[0].scenario == "backlog" and runs[0].produced == args.baseline_backlog}
        if designs[0] in equal and SEED_STYLE in equal:
            ratios = [ours.events_per_second / seed.events_per_second
                      for ours, seed in zip(equal[designs[0]], equal[SEED_STYLE], strict=True)
                      if seed.events_per_second]
            run.figures["throughput_ratio"] = spread(ratios)
            run.note(f"Sustained throughput, {designs[0]} / {SEED_STYLE}, both draining the same "
                     f"{args.baseline_backlog:,}-event backlog with synchronous_commit={ENGINE_SYNCHRONOUS_COMMIT} "
                     f"and the server's fsync={run.figures['server_durability']['fsync']}: "
                     f"{format_spread(spread(ratios), 1)}x (the ratio of each repeat's pair)")


if __name__ == "__main__":
    main()
