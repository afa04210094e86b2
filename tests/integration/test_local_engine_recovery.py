"""Exactly once in effect: SIGKILL `fraudstream process` at random moments during a 100,000-event stream."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from local_engine_harness import (
    count_rows,
    model_state_dir,
    new_run,
    scored,
    stop,
    stream,
    wait_for_rows,
)

from fraudstream.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EVENTS = 100_000
KILLS = 6


def test_sigkill_at_random_moments_keeps_every_event_once_with_clean_run_scores(
    postgres_ready: Settings, database: psycopg.Connection, tmp_path: Path
) -> None:
    models = model_state_dir(postgres_ready)
    events = stream(EVENTS, prefix="")

    clean = new_run(postgres_ready, models, tmp_path / "logs")
    clean_prefix = f"clean-{clean.group}-"
    clean.publish(events.assign(transaction_id=clean_prefix + events["transaction_id"]))
    processor = clean.start("clean")
    assert wait_for_rows(database, clean_prefix, EVENTS, 300, (processor,)) == EVENTS
    assert stop(processor) == 0

    killed = new_run(postgres_ready, models, tmp_path / "logs")
    prefix = f"kill-{killed.group}-"
    # 2,500 events every 1.2 s (~48 s), and the last chunk only after the last kill: the engine drains far
    # faster than that, and every kill must still land before the stream's end.
    chunks = [events.iloc[start:start + 2_500] for start in range(0, EVENTS, 2_500)]
    kills_done = threading.Event()

    def produce_slowly() -> None:
        for number, chunk in enumerate(chunks):
            if number == len(chunks) - 1:
                kills_done.wait(600)
            killed.publish(chunk.assign(transaction_id=prefix + chunk["transaction_id"]))
            time.sleep(1.2)

    producer = threading.Thread(target=produce_slowly, daemon=True)
    producer.start()
    rng = random.Random(20261128)
    progress = []
    for _ in range(KILLS):
        processor = killed.start("member", "--batch-size", "2000", "--snapshot-interval-s", "1")
        before = count_rows(database, prefix)
        wait_for_rows(database, prefix, before + 1, 120, (processor,))  # it is running and committing
        time.sleep(rng.uniform(0.0, 2.0))
        processor.send_signal(signal.SIGKILL)
        processor.wait()
        progress.append(count_rows(database, prefix))
    kills_done.set()
    producer.join()
    processor = killed.start("member", "--batch-size", "2000")
    # Wait for this member to run (and own its SIGTERM) before anything below can stop it.
    killed.wait_for_log("member", "engine started", KILLS + 1, processor)
    final = wait_for_rows(database, prefix, EVENTS, 300, (processor,))
    time.sleep(2)  # anything written late would show as an extra row
    assert stop(processor) == 0
    assert final == EVENTS
    assert 0 < progress[0] < progress[-1] < EVENTS, f"kills did not land mid-stream: rows after each {progress}"

    clean_rows, killed_rows = scored(database, clean_prefix), scored(database, prefix)
    assert len(killed_rows) == EVENTS == killed_rows.index.nunique()
    assert set(killed_rows.index) == set(events["transaction_id"])
    assert (killed_rows["score"] == clean_rows["score"]).all()
    assert (killed_rows["features"] == clean_rows["features"]).all()
    log = killed.log_text("member")
    assert log.count("engine started") == KILLS + 1
    assert re.search(r"resume_offset=\d+", log), "no restart resumed from a feature-state snapshot"
