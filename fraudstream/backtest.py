"""Batch scoring and backtests: a history replayed through the feature core and a published model.

``fraudstream score`` reads a history (a history directory, a CSV/Parquet import file, or the
database), replays it with the feature configuration and partition count of the model's manifest
(the same replay the model was trained on and the engines serve), scores every transaction with the
engines' scorer (probability, decision, reasons) and writes one row per transaction. When labels are
present it evaluates the model on the labeled rows of a window (by default all of them; ``test``
picks the model's held-out test period, so the figures reproduce `model show`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fraudstream.batch.scoring import Scorer
from fraudstream.config import Settings
from fraudstream.events.contract import parse_time_us
from fraudstream.features.columnar import float_matrix
from fraudstream.model.dataset import LabeledHistory, Replay, load_history, replay
from fraudstream.model.metrics import compromised_since, evaluate
from fraudstream.model.promotion import PromotionDecision, PromotionRule, decide_promotion, recall_at_threshold
from fraudstream.model.registry import Registry
from fraudstream.training import DatabaseSource, database_history

#: Stage name, done, total: the CLI draws one progress bar per stage.
StageProgress = Callable[[str, int, int], None]
#: Rows scored per call: bounds memory and gives the progress bar steps.
SCORE_CHUNK_ROWS = 200_000
#: The manifest's periods `--window` can name.
WINDOWS = ("train", "validation", "test")
OUTPUT_SUFFIXES = (".parquet", ".csv")


@dataclass
class ScoredHistory:
    """One row per transaction of the history, and what it cost."""

    history: LabeledHistory
    scores: pd.DataFrame
    replay: Replay
    score_seconds: float
    score_cpu_seconds: float
    model_version: str

    @property
    def cpu_seconds(self) -> float:
        return self.replay.cpu_seconds + self.score_cpu_seconds

    @property
    def events_per_cpu_second(self) -> float:
        """Replay plus scoring, per CPU-second of this process."""
        return len(self.scores) / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


def replay_fits(replayed: Replay, scorer: Scorer) -> bool:
    """Whether a replay of the history is the one ``scorer``'s model was trained on (same states, same config)."""
    # A manifest without the partition count predates partitioned replay: it was trained on one state.
    return replayed.partitions == (scorer.replay_partitions or 1) and replayed.config == scorer.feature_config


def score_history(history: LabeledHistory, scorer: Scorer, progress: StageProgress | None = None,
                  replayed: Replay | None = None) -> ScoredHistory:
    """Replay ``history`` as the model was trained (its manifest's feature config and partitions) and score it;
    ``replayed``: a replay of this very history already made, used when it fits the model."""
    report = progress or (lambda stage, done, total: None)
    if replayed is None or not replay_fits(replayed, scorer):
        replayed = replay(history, scorer.replay_partitions or 1, scorer.feature_config,
                          progress=lambda done, total: report("replay", done, total))
    began, began_cpu = time.perf_counter(), time.process_time()
    matrix = float_matrix(replayed.features, pd.Index(scorer.feature_names))
    total = matrix.shape[0]
    probability = np.empty(total)
    decision = np.empty(total, dtype=object)
    reasons: list[tuple[str, ...]] = []
    report("score", 0, total)
    for start in range(0, total, SCORE_CHUNK_ROWS):
        result = scorer.score_matrix(matrix[start:start + SCORE_CHUNK_ROWS])
        probability[start:start + len(result.probability)] = result.probability
        decision[start:start + len(result.probability)] = result.decision
        reasons.extend(result.reasons)
        report("score", min(start + SCORE_CHUNK_ROWS, total), total)
    transactions = history.transactions
    # A label counts where it is known (maturity); a history without labels has none.
    is_fraud = pd.array(history.targets(), dtype="boolean")
    is_fraud[~history.known_mask() | history.labels.empty] = pd.NA
    scores = pd.DataFrame({
        "transaction_id": transactions["transaction_id"].to_numpy(dtype=object),
        "event_time_us": transactions["event_time_us"].to_numpy(dtype=np.int64),
        "account_id": transactions["account_id"].to_numpy(dtype=object),
        "merchant_id": transactions["merchant_id"].to_numpy(dtype=object),
        "amount": transactions["amount"].to_numpy(dtype=np.float64),
        "score": probability,
        "decision": decision,
        "reasons": pd.Series(reasons, dtype=object).to_numpy(),
        "is_fraud": is_fraud,
    })
    return ScoredHistory(history, scores, replayed, time.perf_counter() - began, time.process_time() - began_cpu,
                         scorer.model_version)


def window_bounds(manifest: dict[str, object], window: str | None, start: str | None = None,
                  end: str | None = None) -> tuple[int, int] | None:
    """Inclusive event-time bounds (µs) of a named manifest period (train / validation / test) or of
    explicit ISO times; None: every row."""
    if window is not None:
        if window not in WINDOWS:
            raise ValueError(f"--window must be one of {', '.join(WINDOWS)} (got {window!r})")
        period = manifest["training_window"][window]  # type: ignore[index]
        return parse_time_us(period["start"]), parse_time_us(period["end"])
    if start is None and end is None:
        return None
    low = parse_time_us(start) if start is not None else np.iinfo(np.int64).min
    high = parse_time_us(end) if end is not None else np.iinfo(np.int64).max
    return int(low), int(high)


def backtest_metrics(scored: ScoredHistory, scorer: Scorer, bounds: tuple[int, int] | None) -> dict[str, float] | None:
    """The `model show` metrics on the labeled rows within ``bounds``; None without both classes there."""
    frame = scored.scores
    time_us = frame["event_time_us"].to_numpy()
    rows = frame["is_fraud"].notna().to_numpy()
    if bounds is not None:
        rows = rows & (time_us >= bounds[0]) & (time_us <= bounds[1])
    y = frame["is_fraud"].to_numpy(dtype=bool, na_value=False)[rows]
    if y.all() or not y.any():
        return None
    score = frame["score"].to_numpy()[rows]
    metrics = evaluate(y, score, time_us[rows], frame["account_id"].to_numpy(dtype=object)[rows],
                       compromised_since(scored.history.labels))
    metrics["recall_at_review"] = recall_at_threshold(y, score, scorer.thresholds.review)
    metrics["review_rate"] = float((score >= scorer.thresholds.review).mean())
    metrics["block_rate"] = float((score >= scorer.thresholds.block).mean())
    metrics["rows"] = float(rows.sum())
    metrics["fraud_rows"] = float(y.sum())
    return metrics


@dataclass(frozen=True)
class Challenge:
    """Champion and challenger on the same rows, and what the promotion rule made of it."""

    champion: dict[str, float] | None
    challenger: dict[str, float] | None
    decision: PromotionDecision


def challenge(history: LabeledHistory, champion: Scorer, challenger: Scorer, bounds: tuple[int, int] | None,
              rule: PromotionRule | None = None, progress: StageProgress | None = None,
              replays: Sequence[Replay] = ()) -> Challenge:
    """Score the same history with both models, evaluate both on the same labeled rows, apply the rule.
    ``replays``: replays of this history already made (the challenger's training), reused where they fit."""
    known = list(replays)
    metrics = []
    for who, scorer in (("champion", champion), ("challenger", challenger)):
        fitting = next((replayed for replayed in known if replay_fits(replayed, scorer)), None)
        stages = None if progress is None else _named(progress, who)
        scored = score_history(history, scorer, stages, fitting)
        known.append(scored.replay)
        metrics.append(backtest_metrics(scored, scorer, bounds))
    if metrics[0] is None or metrics[1] is None:
        return Challenge(metrics[0], metrics[1], PromotionDecision(False, (
            "no labeled rows of both classes in the evaluation window; the champion stays",)))
    decision = decide_promotion(metrics[0], metrics[1], int(metrics[0]["fraud_rows"]), rule)
    return Challenge(metrics[0], metrics[1], decision)


def _named(progress: StageProgress, who: str) -> StageProgress:
    """Stages of one model's scoring reported under its role ("champion replay", "challenger score")."""
    return lambda stage, done, total: progress(f"{who} {stage}", done, total)


def check_output(out: Path) -> None:
    """Refuse an output name we cannot write before any work is done."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out {out}: name a .parquet or .csv file")


def write_scores(scores: pd.DataFrame, out: Path, model_version: str) -> None:
    """Parquet (reasons as a list) or CSV (reasons joined by '; '), by the file's suffix."""
    check_output(out)
    suffix = out.suffix.lower()
    reasons = pa.array(scores["reasons"].to_numpy(dtype=object).tolist(), type=pa.list_(pa.string()))
    columns = {
        "transaction_id": pa.array(scores["transaction_id"].to_numpy(dtype=object), type=pa.string()),
        "event_time": pa.array(scores["event_time_us"].to_numpy(), type=pa.timestamp("us", tz="UTC")),
        "account_id": pa.array(scores["account_id"].to_numpy(dtype=object), type=pa.string()),
        "merchant_id": pa.array(scores["merchant_id"].to_numpy(dtype=object), type=pa.string()),
        "amount": pa.array(scores["amount"].to_numpy()),
        "score": pa.array(scores["score"].to_numpy()),
        "decision": pa.array(scores["decision"].to_numpy(dtype=object), type=pa.string()),
        "reasons": reasons if suffix == ".parquet" else pc.binary_join(reasons, "; "),
        "model_version": pa.array(np.full(len(scores), model_version, dtype=object), type=pa.string()),
        "is_fraud": pa.array(scores["is_fraud"], type=pa.bool_()),
    }
    table = pa.table(columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        pq.write_table(table, out, compression="zstd")
    else:
        pa_csv.write_csv(table, out)


def load_scoring_history(input_path: Path | None, database: DatabaseSource | None,
                         settings: Settings) -> LabeledHistory:
    """The history to score: a directory or file (labels optional), or the database."""
    if (input_path is None) == (database is None):
        raise ValueError("give --input FILE|DIR or --from-db")
    if database is not None:
        return database_history(settings.database_url, database)
    assert input_path is not None
    return load_history(input_path, labeled=False)


def run_score(settings: Settings, version: str | None, history: LabeledHistory, out: Path,
              progress: StageProgress | None = None) -> tuple[ScoredHistory, Scorer]:
    """Load the model (``version``, default production), score the history, write ``out``."""
    registry = Registry(settings.models_dir)
    scorer = Scorer(registry.load(version) if version else registry.production())
    scored = score_history(history, scorer, progress)
    write_scores(scored.scores, out, scorer.model_version)
    return scored, scorer
