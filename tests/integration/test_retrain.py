"""`fraudstream retrain` on real PostgreSQL: a challenger better than the champion is promoted, an equal one
is kept in shadow; every run leaves a JSON report and a model_events line; the event-time schedule runs
when the stored traffic reaches each due time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import psycopg
import pytest
from stored_history import store_history
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import Settings, get_settings
from fraudstream.events.contract import format_time_us
from fraudstream.lifecycle import RetrainConfig, RetrainOutcome, retrain_every
from fraudstream.model.maturity import LabelMaturity
from fraudstream.model.promotion import PromotionRule
from fraudstream.model.registry import Registry
from fraudstream.model.split import SplitConfig
from fraudstream.model.train import TrainConfig
from fraudstream.simulate.backfill import LabelDelays, simulate_history
from fraudstream.store.model_events import recent_model_events
from fraudstream.store.schema import migrate
from fraudstream.testing.example_model import publish_example_model

pytestmark = pytest.mark.integration
HOUR_US = 3_600 * 1_000_000
DELAYS = LabelDelays(fraud_s=(0.5 * 86_400, 3 * 86_400), legit_s=(5 * 86_400, 8 * 86_400))
#: Maturity, split and rule for a 16-day history of a small population.
ARGS = ["--fraud-label-days", "3", "--legitimate-label-days", "8", "--burn-in-days", "1", "--gap-days", "1",
        "--validation-days", "3", "--test-days", "3", "--partitions", "3", "--min-fraud-labels", "10"]


@pytest.fixture
def stored(settings: Settings, scratch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A scratch database holding 16 simulated days and the labels arrived by the last event (its time),
    and the commands' settings pointing at it and at an empty models directory."""
    migrate(scratch_url)
    history = simulate_history(16, seed=5, accounts=400, merchants=200, fraud_share=0.04, label_delays=DELAYS)
    as_of = int(history.transactions["event_time_us"].max())
    store_history(scratch_url, history.transactions, history.labels[history.labels["labeled_at_us"] <= as_of])
    monkeypatch.setenv("FRAUDSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDSTREAM_DATABASE_URL", scratch_url)
    get_settings.cache_clear()
    try:
        yield as_of
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def _events(url: str) -> list[dict[str, object]]:
    with psycopg.connect(url) as connection:
        return list(reversed(recent_model_events(connection)))


def test_retrain_promotes_a_better_challenger_and_keeps_an_equal_one_in_shadow(stored: int) -> None:
    settings = get_settings()
    registry = Registry(settings.models_dir)
    champion = publish_example_model(settings.models_dir)  # random-data model: any trained one beats it
    runner = CliRunner()

    # The random-data champion sends nearly every transaction to review (its recall there is near 1 by
    # flagging everything): the trained challenger may lose a little of that recall.
    better = runner.invoke(app, ["retrain", *ARGS, "--recall-tolerance", "0.1"])
    assert better.exit_code == 0, better.output
    challenger = registry.versions()[-1]
    assert registry.production_version() == challenger != champion, better.output
    assert registry.shadow_version() is None
    assert "promoted to production" in better.output

    # Same data, same as-of, same settings: the same model, a tie, which keeps the champion.
    equal = runner.invoke(app, ["retrain", *ARGS])
    assert equal.exit_code == 0, equal.output
    second = registry.versions()[-1]
    assert registry.production_version() == challenger and registry.shadow_version() == second
    assert "kept in shadow" in equal.output

    reports = sorted((settings.state_dir / "reports").glob("retrain-*.json"))
    assert len(reports) == 2
    first_report, second_report = (orjson.loads(path.read_bytes()) for path in reports)
    assert (first_report["champion"], first_report["challenger"], first_report["decision"]) == (
        champion, challenger, "promoted")
    assert first_report["as_of"] == format_time_us(stored)
    won = first_report["metrics"]
    assert won["challenger"]["average_precision"] > won["champion"]["average_precision"] + 0.01
    assert won["challenger"]["rows"] == won["champion"]["rows"] > 0  # the same evaluation rows
    assert second_report["decision"] == "shadow"
    assert second_report["metrics"]["champion"] == second_report["metrics"]["challenger"]
    assert any("not better" in reason for reason in second_report["reasons"])

    events = _events(settings.database_url)
    assert [(e["kind"], e["decision"], e["production_before"], e["production_after"], e["challenger"])
            for e in events] == [("retrain", "promoted", champion, challenger, challenger),
                                 ("retrain", "shadow", challenger, challenger, second)]
    assert events[0]["windows"]["evaluation"] == first_report["windows"]["evaluation"]
    assert events[0]["challenger_metrics"]["average_precision"] == won["challenger"]["average_precision"]
    assert events[1]["reasons"] == second_report["reasons"]


def test_the_event_time_schedule_runs_when_the_traffic_reaches_each_due_time(stored: int) -> None:
    settings = get_settings()
    publish_example_model(settings.models_dir)
    config = RetrainConfig(LabelMaturity(3, 8), None, TrainConfig(
        split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=3, test_days=3), max_rounds=30, partitions=3),
        PromotionRule(min_fraud_labels=10), actor="retrain --every 12h")
    results = retrain_every(settings, config, 12 * HOUR_US, clock="event-time", start_us=stored - 12 * HOUR_US,
                            runs=2, poll_s=0.1)
    assert all(isinstance(result, RetrainOutcome) for result in results)
    assert [result.report["as_of"] for result in results] == [  # type: ignore[union-attr]
        format_time_us(stored - 12 * HOUR_US), format_time_us(stored)]
    events = _events(settings.database_url)
    assert [event["actor"] for event in events] == ["retrain --every 12h"] * 2


def test_a_failed_run_names_what_to_fix_and_is_logged(stored: int) -> None:
    settings = get_settings()
    publish_example_model(settings.models_dir)
    result = CliRunner().invoke(app, ["retrain", *ARGS, "--validation-days", "30"])
    assert result.exit_code != 0
    assert "--validation-days" in " ".join(result.output.split())
    assert [(e["kind"], e["decision"]) for e in _events(settings.database_url)] == [("retrain", "failed")]


def test_model_compare_reads_both_scores_of_the_live_rows_with_their_known_labels(
        settings: Settings, scratch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate(scratch_url)
    history = simulate_history(4, seed=6, accounts=300, merchants=200, fraud_share=0.05, label_delays=DELAYS)
    as_of = int(history.transactions["event_time_us"].max())
    arrived = history.labels[history.labels["labeled_at_us"] <= as_of]
    fraud = history.transactions["transaction_id"].isin(history.labels.loc[history.labels["is_fraud"],
                                                                            "transaction_id"]).to_numpy()
    rng = np.random.default_rng(1)
    production_score = rng.uniform(size=len(fraud))  # knows nothing
    shadow_score = np.clip(rng.uniform(size=len(fraud)) * 0.5 + fraud * 0.5, 0, 1)  # ranks fraud first
    monkeypatch.setenv("FRAUDSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDSTREAM_DATABASE_URL", scratch_url)
    get_settings.cache_clear()
    try:
        models = get_settings().models_dir
        production = publish_example_model(models, seed=1)
        challenger = publish_example_model(models, seed=2, promote=False)
        Registry(models).set_shadow(challenger)
        store_history(scratch_url, history.transactions, arrived, score=production_score, model_version=production,
                      shadow=(shadow_score, challenger))
        result = CliRunner().invoke(app, ["model", "compare", "--fraud-label-days", "3", "--min-fraud-labels", "5"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"{len(fraud):,} transactions scored by {production} with {challenger} in shadow" in output
    # The shadow scores rank every known fraud first; the production ones are noise.
    assert "average precision: 1.0000 vs 0.1" in output, result.output
    # Few cards per day in this small population: both top-100 rankings hold them all, a tie that keeps it.
    assert "card precision@100: 0.0400 vs 0.0400" in output and f"the promotion rule would keep {production}" in output
