"""`fraudstream score`: batch scoring reproduces the model's held-out test metrics; Parquet and CSV out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudstream.backtest import backtest_metrics, challenge, score_history, window_bounds, write_scores
from fraudstream.batch.scoring import Scorer
from fraudstream.history import write_history
from fraudstream.model.dataset import load_history
from fraudstream.model.metrics import METRIC_NAMES
from fraudstream.model.promotion import PromotionRule
from fraudstream.model.registry import Registry
from fraudstream.model.split import SplitConfig
from fraudstream.model.train import TrainConfig, build
from fraudstream.simulate.backfill import simulate_history

pytestmark = pytest.mark.unit
#: The installed command, as a user runs it.
FRAUDSTREAM = str(Path(sys.executable).parent / "fraudstream")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A small simulated history on disk and a model trained on it: (history dir, state dir, version)."""
    root = tmp_path_factory.mktemp("backtest")
    write_history(simulate_history(16, seed=3, accounts=300, merchants=200, fraud_share=0.03), root / "history")
    config = TrainConfig(split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=3, test_days=4),
                         max_rounds=30, partitions=4)
    version, _ = build(root / "state" / "models", load_history(root / "history"), config=config)
    return root / "history", root / "state", version


def test_score_on_the_held_out_file_reproduces_the_test_metrics(published: tuple[Path, Path, str]) -> None:
    history_dir, state_dir, version = published
    scorer = Scorer(Registry(state_dir / "models").load(version))
    manifest = scorer.artifact.manifest
    scored = score_history(load_history(history_dir), scorer)
    metrics = backtest_metrics(scored, scorer, window_bounds(manifest, "test"))
    assert metrics is not None
    assert metrics["rows"] == manifest["rows"]["test"]
    for name in (*METRIC_NAMES, "review_rate", "block_rate"):
        assert metrics[name] == pytest.approx(manifest["metrics"]["model"][name], abs=1e-9), name
    assert (scored.scores["decision"] != "approve").any()
    flagged = scored.scores[scored.scores["decision"] != "approve"]
    assert all(len(reasons) > 0 for reasons in flagged["reasons"])


def test_score_command_writes_csv_and_prints_the_metrics_beside_model_show(
        published: tuple[Path, Path, str], tmp_path: Path) -> None:
    history_dir, state_dir, version = published
    out = tmp_path / "scores.csv"
    env = {**os.environ, "FRAUDSTREAM_STATE_DIR": str(state_dir), "COLUMNS": "200"}
    done = subprocess.run([FRAUDSTREAM, "score", "--input", str(history_dir), "--model",
                           version, "--out", str(out), "--window", "test"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "model show (training)" in done.stdout and "score (this run)" in done.stdout
    written = pd.read_csv(out)
    transactions = load_history(history_dir).transactions
    assert written["transaction_id"].tolist() == transactions["transaction_id"].tolist()
    assert list(written.columns) == ["transaction_id", "event_time", "account_id", "merchant_id", "amount", "score",
                                     "decision", "reasons", "model_version", "is_fraud"]
    assert set(written["model_version"]) == {version}


def test_an_unlabeled_file_is_scored_without_metrics(published: tuple[Path, Path, str], tmp_path: Path) -> None:
    history_dir, state_dir, version = published
    transactions = load_history(history_dir).transactions.head(2_000)
    unlabeled = tmp_path / "unlabeled.csv"
    frame = transactions.rename(columns={"event_time_us": "timestamp"})
    frame.to_csv(unlabeled, index=False)
    scorer = Scorer(Registry(state_dir / "models").load(version))
    scored = score_history(load_history(unlabeled, labeled=False), scorer)
    assert scored.scores["is_fraud"].isna().all()
    assert backtest_metrics(scored, scorer, None) is None
    write_scores(scored.scores, tmp_path / "out.parquet", version)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 2_000 and pa.types.is_list(table.schema.field("reasons").type)


def test_a_bad_output_name_or_window_is_refused_before_any_work(published: tuple[Path, Path, str],
                                                              tmp_path: Path) -> None:
    history_dir, state_dir, _ = published
    env = {**os.environ, "FRAUDSTREAM_STATE_DIR": str(state_dir)}
    done = subprocess.run([FRAUDSTREAM, "score", "--input", str(history_dir), "--out",
                           str(tmp_path / "scores.xlsx")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and ".parquet or .csv" in done.stdout + done.stderr
    with pytest.raises(ValueError, match="--window must be one of"):
        window_bounds({}, "holdout")


def test_challenge_scores_both_models_on_the_same_rows_and_keeps_a_worse_or_equal_challenger(
        published: tuple[Path, Path, str]) -> None:
    history_dir, state_dir, version = published
    history = load_history(history_dir)
    weak_config = TrainConfig(split=SplitConfig(burn_in_days=1, gap_days=1, validation_days=3, test_days=4),
                              max_rounds=2, num_leaves=2, early_stopping_rounds=1, partitions=4)
    weak_version, _ = build(state_dir / "models", history, config=weak_config)
    registry = Registry(state_dir / "models")
    champion, weak = Scorer(registry.load(version)), Scorer(registry.load(weak_version))
    bounds = window_bounds(champion.artifact.manifest, "test")
    rule = PromotionRule(average_precision_margin=0.0, card_precision_margin=0.0, min_fraud_labels=1)

    worse = challenge(history, champion, weak, bounds, rule)
    assert worse.champion is not None and worse.challenger is not None
    assert worse.champion["rows"] == worse.challenger["rows"] == champion.artifact.manifest["rows"]["test"]
    assert worse.challenger["average_precision"] < worse.champion["average_precision"]
    assert not worse.decision.promote and "not better" in worse.decision.reasons[0]

    tie = challenge(history, champion, champion, bounds, rule)
    assert tie.champion == tie.challenger and not tie.decision.promote

    few = challenge(history, weak, champion, bounds, PromotionRule(min_fraud_labels=10_000))
    assert not few.decision.promote and few.decision.reasons[0].startswith("too few fraud labels")
