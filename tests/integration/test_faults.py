"""Faults of the services the engine needs, on the real services: PostgreSQL stopped (fast shutdown) for
30 s, PostgreSQL killed (crash recovery), the Kafka broker killed and restarted 10 s later, the database's
volume full for 20 s (a tmpfs tablespace), each while a stream arrives at 5,000 events/s. The processor
must not exit; afterwards every event is a row exactly once, with the scores and features of a clean run,
and the committed offsets cover exactly the rows. And a SIGTERM during a broker outage: the processor stops
within seconds, having committed nothing beyond the rows written, and its successor finishes exactly once.

Each test prints its figures (``reliability: ...``) and appends them to ``<state dir>/reliability.jsonl``:
the README's Reliability table comes from them.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from local_engine_harness import (
    EngineRun,
    count_rows,
    free_port,
    model_state_dir,
    new_run,
    scored,
    scrape,
    stop,
    stream,
    wait_for_rows,
)
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fraudstream import kafka
from fraudstream.config import POSTGRES_APP_ROLE, Settings
from fraudstream.engines.feed import publish_frame
from fraudstream.services import kafka_broker, manager, postgres
from fraudstream.services.exceptions import ServiceError
from fraudstream.services.process import pid_alive
from fraudstream.store.schema import migrate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

#: The issue's table asks for 100k events at 5k/s (the README's Reliability figures come from such a run);
#: FRAUDSTREAM_FAULT_EVENTS sets another count.
EVENTS = int(os.environ.get("FRAUDSTREAM_FAULT_EVENTS", "100000"))
RATE = 5_000
#: How long into the stream the fault is injected (rows are being written by then).
FAULT_AFTER_S = 2.0


@dataclass
class FaultFigures:
    fault: str
    events: int
    rows: int
    duplicates: int
    #: From the fault to the service answering again (a restart included: the broker's JVM takes a while).
    outage_s: float
    #: From the service answering again to every event being a row (consumer lag 0).
    caught_up_after_restart_s: float
    alerts: int
    alerts_missing: int
    processor_exits: int
    outages_counted: float
    outage_log_lines: int
    #: librdkafka's own lines (throttled per facility; no raw lines on stderr)
    client_log_lines: int


def alert_keys(settings: Settings) -> set[str]:
    """Every key in the alerts topic (a transaction id), read up to the end the broker reports now."""
    consumer = kafka.consumer(settings, f"alerts-reader-{time.monotonic_ns()}")
    topic = settings.alerts_topic
    partitions = kafka.describe_topics(settings, [topic])[topic]
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    keys: set[str] = set()
    positions = dict.fromkeys(ends, 0)
    deadline = time.monotonic() + 120
    while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for message in consumer.consume(10_000, 1.0):
            if message.error() is None:
                keys.add(message.key().decode())
                positions[message.partition()] = message.offset() + 1
    consumer.close()
    return keys


def dependency(metrics: dict, name: str, dependency_name: str) -> float | None:
    return metrics.get((name, (("dependency", dependency_name),)))


def connect(settings: Settings, timeout_s: float = 60) -> psycopg.Connection:
    """A new connection, waiting for a server that is still recovering."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return psycopg.connect(settings.database_url, autocommit=True, connect_timeout=2)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_service(settings: Settings, name: str, timeout_s: float = 240) -> None:
    """`services up` for one service, retried while a killed predecessor is still letting go."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            manager.up(settings, [name])
            return
        except ServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.05)


def publish_paced(settings: Settings, frame: pd.DataFrame, rate: float, started: threading.Event) -> None:
    """``frame`` at ``rate`` events/s in 100 ms chunks (the producer buffers through a broker outage)."""
    producer = kafka.producer(settings)
    chunk = max(1, int(rate / 10))
    begin = time.monotonic()
    started.set()
    for number, first in enumerate(range(0, len(frame), chunk)):
        publish_frame(producer, settings.transactions_topic, frame.iloc[first:first + chunk],
                      settings.transactions_partitions)
        time.sleep(max(0.0, begin + (number + 1) * 0.1 - time.monotonic()))
    assert producer.flush(600) == 0  # waits out the broker outage (its restart can take minutes here)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return stream(EVENTS, prefix="")


@pytest.fixture(scope="module")
def clean_run(postgres_ready: Settings, events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[pd.DataFrame]:
    """The same events through an undisturbed processor: the scores and features every fault run must match."""
    run = new_run(postgres_ready, model_state_dir(postgres_ready), tmp_path_factory.mktemp("clean") / "logs")
    prefix = f"clean-{run.group}-"
    run.publish(events.assign(transaction_id=prefix + events["transaction_id"]))
    processor = run.start("clean")
    with connect(postgres_ready) as database:
        assert wait_for_rows(database, prefix, EVENTS, 300, (processor,)) == EVENTS
        assert stop(processor) == 0
        yield scored(database, prefix)


def ride_out(settings: Settings, events: pd.DataFrame, clean: pd.DataFrame, logs: Path, fault: str,
             dependency_name: str, inject: Callable[[], None], restore: Callable[[], None],
             outage_s: float) -> FaultFigures:
    """Stream ``events`` at RATE into a running processor, ``inject`` the fault FAULT_AFTER_S in, ``restore``
    after ``outage_s``; then check exactly once, the metrics and the log, and return the figures."""
    run: EngineRun = new_run(settings, model_state_dir(settings), logs)
    prefix = f"{fault}-{run.group}-"
    port = free_port()
    processor = run.start("member", "--metrics-port", str(port))
    try:
        run.wait_until_assigned(processor, metrics_port=port)
        started = threading.Event()
        producer = threading.Thread(target=publish_paced, daemon=True, args=(
            run.settings, events.assign(transaction_id=prefix + events["transaction_id"]), RATE, started))
        producer.start()
        started.wait(30)
        time.sleep(FAULT_AFTER_S)
        with connect(settings) as database:
            rows_before = wait_for_rows(database, prefix, 1, 30, (processor,))
        assert rows_before > 0, "no row was written before the fault"
        inject()
        deadline = time.monotonic() + outage_s
        saw_down = False
        try:
            while time.monotonic() < deadline:
                assert processor.poll() is None, f"the processor exited during the outage:\n{run.log_text('member')}"
                saw_down = saw_down or dependency(scrape(port), "fraudstream_dependency_up", dependency_name) == 0
                time.sleep(0.5)
        finally:
            restore()  # the service comes back whatever happened: the next tests need it
        restored_at = time.monotonic()
        measured_outage_s = restored_at - deadline + outage_s
        producer.join(120)
        with connect(settings) as database:
            final = wait_for_rows(database, prefix, EVENTS, 300, (processor,))
            caught_up_s = time.monotonic() - restored_at
            time.sleep(2)  # anything written late would show as an extra row
            # The gauge returns to 1 at the next probe (every lag_interval_s while an outage is on), also
            # after a late "all brokers down" from a client that reconnected meanwhile.
            recovered_by = time.monotonic() + 15
            while (dependency(metrics := scrape(port), "fraudstream_dependency_up", dependency_name) != 1
                   and time.monotonic() < recovered_by):
                time.sleep(0.5)
            assert processor.poll() is None, "the processor exited"
            rows = scored(database, prefix)
            total, distinct = database.execute(
                "SELECT count(*), count(DISTINCT transaction_id) FROM transactions WHERE transaction_id LIKE %s",
                (prefix + "%",)).fetchone()
            committed = database.execute("SELECT coalesce(sum(next_offset), 0) FROM engine_offsets"
                                         " WHERE consumer_group = %s", (run.group,)).fetchone()[0]
    finally:
        exit_code = stop(processor)
    flagged = {prefix + key for key in rows.index[rows["decision"] != "approve"]}
    alerted = alert_keys(run.settings)
    log = run.log_text("member")
    figures = FaultFigures(
        fault=fault, events=EVENTS, rows=int(total), duplicates=int(total - distinct),
        outage_s=round(measured_outage_s, 1),
        caught_up_after_restart_s=round(caught_up_s, 1), alerts=len(flagged),
        alerts_missing=len(flagged - alerted), processor_exits=log.count("engine started") - 1,
        outages_counted=dependency(metrics, "fraudstream_dependency_outages_total", dependency_name) or 0.0,
        outage_log_lines=log.count(f"unavailable dependency={dependency_name}"),
        client_log_lines=log.count("fraudstream.kafka.client") + log.count("|rdkafka#"))
    print(f"\nreliability: {json.dumps(asdict(figures))}")
    with (settings.state_dir / "reliability.jsonl").open("a") as report:
        report.write(json.dumps(asdict(figures)) + "\n")

    assert exit_code == 0, log[-3000:]
    assert final == EVENTS == figures.rows
    assert figures.duplicates == 0
    assert figures.alerts > 0 and figures.alerts_missing == 0, "every review/block row's alert, at least once"
    assert committed == EVENTS, "the committed offsets must cover exactly the rows written"
    assert figures.processor_exits == 0
    assert saw_down, f"fraudstream_dependency_up{{dependency={dependency_name!r}}} never showed the outage"
    assert figures.outages_counted >= 1
    assert dependency(metrics, "fraudstream_dependency_up", dependency_name) == 1
    # once when each outage starts, then once per 10 s at most: never once per retry
    assert 1 <= figures.outage_log_lines <= 2 * figures.outages_counted + measured_outage_s / 10, log[-3000:]
    assert "|rdkafka#" not in log, "librdkafka's lines must go through the throttled logger"
    assert figures.client_log_lines <= 5 * (measured_outage_s / 10 + 2), log[-3000:]
    assert set(rows.index) == set(clean.index)
    assert (rows["score"] == clean["score"]).all()
    assert (rows["features"] == clean["features"]).all()
    return figures


def test_postgres_stopped_for_30_s_is_ridden_out(postgres_ready: Settings, events: pd.DataFrame,
                                                  clean_run: pd.DataFrame, tmp_path: Path) -> None:
    figures = ride_out(postgres_ready, events, clean_run, tmp_path / "logs", "postgres-stop", "postgres",
                       inject=lambda: manager.down(postgres_ready, ["postgres"]),
                       restore=lambda: start_service(postgres_ready, "postgres"), outage_s=30)
    assert figures.caught_up_after_restart_s < 30


def test_postgres_killed_recovers_exactly_once(postgres_ready: Settings, events: pd.DataFrame,
                                               clean_run: pd.DataFrame, tmp_path: Path) -> None:
    def crash() -> None:
        pid = postgres.server_process(postgres_ready).pid()
        assert pid is not None, "PostgreSQL is not running"
        kill(pid)

    figures = ride_out(postgres_ready, events, clean_run, tmp_path / "logs", "postgres-kill", "postgres",
                       inject=crash, restore=lambda: start_service(postgres_ready, "postgres"), outage_s=5)
    assert figures.caught_up_after_restart_s < 30


def test_kafka_broker_killed_for_10_s_is_ridden_out(kafka_ready: Settings, events: pd.DataFrame,
                                                    clean_run: pd.DataFrame, tmp_path: Path) -> None:
    def crash() -> None:
        pid = kafka_broker.broker_process(kafka_ready).pid()
        assert pid is not None, "the broker is not running"
        kill(pid)

    figures = ride_out(kafka_ready, events, clean_run, tmp_path / "logs", "kafka-kill", "kafka",
                       inject=crash, restore=lambda: start_service(kafka_ready, "kafka"), outage_s=10)
    assert figures.caught_up_after_restart_s < 30


@pytest.fixture
def small_volume_database(postgres_ready: Settings) -> Iterator[tuple[Settings, Path]]:
    """A database whose tables live on a 256 MB tmpfs volume (a tablespace; the WAL stays on the server's
    own disk, as on a server with a separate data volume), migrated, and the volume's mount point (outside
    pytest's private temporary directory: the server's user must reach it)."""
    assert os.geteuid() == 0, "this test mounts a tmpfs volume: run the tests as root (as `make test` does)"
    volume = Path(tempfile.mkdtemp(prefix="fraudstream-volume-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", str(volume)], check=True)
    tag = volume.stat().st_ino
    space, name = f"disk_full_{tag}", f"disk_full_{tag}"
    try:
        postgres.chown_tree(volume, postgres.server_user())
        with psycopg.connect(postgres.admin_url(postgres_ready), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(sql.Identifier(space),
                                                                           sql.Literal(str(volume))))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TABLESPACE {}").format(
                sql.Identifier(name), sql.Identifier(POSTGRES_APP_ROLE), sql.Identifier(space)))
            try:
                settings = postgres_ready.model_copy(
                    update={"database_url": make_conninfo(postgres_ready.database_url, dbname=name)})
                migrate(settings.database_url)
                yield settings, volume
            finally:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                admin.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(space)))
    finally:
        subprocess.run(["umount", str(volume)], check=True)
        volume.rmdir()


def test_database_volume_full_is_ridden_out(small_volume_database: tuple[Settings, Path], events: pd.DataFrame,
                                            clean_run: pd.DataFrame, tmp_path: Path) -> None:
    settings, volume = small_volume_database
    ballast = volume / "ballast"

    def fill() -> None:
        """Write until the volume refuses a single byte (the server may take space meanwhile)."""
        descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        block = bytes(1 << 20)
        try:
            while block:
                try:
                    os.write(descriptor, block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    block = block[:len(block) // 2]
        finally:
            os.close(descriptor)
        assert os.statvfs(volume).f_bavail == 0

    figures = ride_out(settings, events, clean_run, tmp_path / "logs", "postgres-disk-full", "postgres",
                       inject=fill, restore=ballast.unlink, outage_s=20)
    log = (tmp_path / "logs" / "member.log").read_text()
    assert "No space left on device" in log, "the outage's log line must name the cause"
    assert figures.caught_up_after_restart_s < 30


#: A SIGTERM during a broker outage must stop the processor within this (its batch cannot be confirmed).
STOP_BOUND_S = 10.0
SIGTERM_EVENTS = 20_000


def test_sigterm_during_a_broker_outage_stops_promptly_and_loses_nothing(
        kafka_ready: Settings, events: pd.DataFrame, tmp_path: Path) -> None:
    """The broker is killed while events arrive; a few seconds into the outage the processor gets SIGTERM. It
    must exit 0 within STOP_BOUND_S with nothing committed beyond the rows written (the batch it could not
    confirm is left to the next member), and the next member must finish the stream exactly once, alerts
    included."""
    run = new_run(kafka_ready, model_state_dir(kafka_ready), tmp_path / "logs")
    prefix = f"sigterm-{run.group}-"
    sent = events.iloc[:SIGTERM_EVENTS]
    sent = sent.assign(transaction_id=prefix + sent["transaction_id"])
    processor = run.start("member")
    try:
        run.wait_for_log("member", "partition assigned", 1, processor)
        started = threading.Event()
        producer = threading.Thread(target=publish_paced, daemon=True, args=(run.settings, sent, RATE, started))
        producer.start()
        started.wait(30)
        time.sleep(FAULT_AFTER_S)
        with connect(kafka_ready) as database:
            assert wait_for_rows(database, prefix, 1, 30, (processor,)) > 0, "no row was written before the fault"
        pid = kafka_broker.broker_process(kafka_ready).pid()
        assert pid is not None, "the broker is not running"
        kill(pid)
        time.sleep(5)  # well into the outage: the batch in flight waits for the broker's acknowledgements
        assert processor.poll() is None, "the processor exited during the outage"
        asked = time.monotonic()
        processor.terminate()
        try:
            exit_code = processor.wait(120)
        except subprocess.TimeoutExpired:
            processor.kill()
            exit_code = processor.wait(30)
        stop_s = time.monotonic() - asked
    finally:
        if processor.poll() is None:
            processor.kill()
        start_service(kafka_ready, "kafka")
    with connect(kafka_ready) as database:
        rows_at_stop = count_rows(database, prefix)
        committed = database.execute("SELECT coalesce(sum(next_offset), 0) FROM engine_offsets"
                                     " WHERE consumer_group = %s", (run.group,)).fetchone()[0]
    producer.join(300)
    successor = run.start("successor")
    with connect(kafka_ready) as database:
        try:
            final = wait_for_rows(database, prefix, len(sent), 300, (successor,))
            time.sleep(2)  # anything written late would show as an extra row
            total, distinct = database.execute(
                "SELECT count(*), count(DISTINCT transaction_id) FROM transactions WHERE transaction_id LIKE %s",
                (prefix + "%",)).fetchone()
            rows = scored(database, prefix)
        finally:
            assert stop(successor) == 0, run.log_text("successor")[-3000:]
    flagged = {prefix + key for key in rows.index[rows["decision"] != "approve"]}
    missing = len(flagged - alert_keys(run.settings))
    figures = {"fault": "sigterm-during-kafka-outage", "events": len(sent), "stop_s": round(stop_s, 1),
               "exit_code": exit_code, "rows_at_stop": rows_at_stop, "committed_at_stop": int(committed),
               "rows": int(total), "duplicates": int(total - distinct), "alerts": len(flagged),
               "alerts_missing": missing}
    print(f"\nreliability: {json.dumps(figures)}")
    with (kafka_ready.state_dir / "reliability.jsonl").open("a") as report:
        report.write(json.dumps(figures) + "\n")

    log = run.log_text("member")
    assert stop_s < STOP_BOUND_S, f"SIGTERM took {stop_s:.1f} s during the outage:\n{log[-3000:]}"
    assert exit_code == 0, log[-3000:]
    assert committed == rows_at_stop, "the committed offsets must cover exactly the rows written"
    assert 0 < rows_at_stop < len(sent), "the stop must land mid-stream"
    assert final == total == distinct == len(sent)
    assert flagged and missing == 0, "every review/block row's alert, at least once"
