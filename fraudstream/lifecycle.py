"""Automatic retraining: a challenger trained on the system's own matured history, compared with the champion
on the same most recent matured labels, promoted only when the promotion rule says so.

One run (``retrain_once``):

1. read the history from the database as of ``as_of`` (event time), with label maturity;
2. train a challenger with the champion's feature configuration (so running engines can switch to it
   without rebuilding their state) and publish it;
3. score champion and challenger on the challenger's test period, the most recent matured labels
   (the training replay is reused for every model it fits);
4. apply the promotion rule (fraudstream.model.promotion): promote, or keep the challenger in shadow
   (engines score it beside production, without decisions);
5. write a JSON report and a ``model_events`` line.

The schedule (``retrain_every``) repeats runs on the wall clock, or on event time read from the
database: a run is due when the newest stored transaction reaches the next due time, which lets a
test (or a replay of history) drive the schedule as fast as the data arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psycopg

from fraudstream.backtest import challenge, window_bounds
from fraudstream.batch.scoring import Scorer
from fraudstream.config import Settings
from fraudstream.events.contract import format_time_us, parse_time_us
from fraudstream.features import FeatureConfig
from fraudstream.model.exceptions import ModelError, NoProductionModel
from fraudstream.model.maturity import LabelMaturity, label_status
from fraudstream.model.metrics import evaluate
from fraudstream.model.promotion import PromotionDecision, PromotionRule, decide_promotion, recall_at_threshold
from fraudstream.model.registry import Registry
from fraudstream.model.thresholds import Thresholds
from fraudstream.model.train import StageProgress, TrainConfig
from fraudstream.model.train import build as build_from_history
from fraudstream.store import history as stored_history
from fraudstream.store.model_events import ModelEvent, log_model_event
from fraudstream.timeunits import MICROS_PER_DAY
from fraudstream.training import DatabaseSource, database_history, with_deployment

log = logging.getLogger(__name__)

CLOCKS = ("wall", "event-time")


@dataclass(frozen=True)
class RetrainConfig:
    """What one run reads and how it decides."""

    maturity: LabelMaturity = field(default_factory=LabelMaturity)
    #: Read only this many days before ``as_of``; None: everything stored.
    history_days: float | None = None
    #: The split, costs and LightGBM settings; the feature configuration is the champion's.
    train: TrainConfig = field(default_factory=TrainConfig)
    rule: PromotionRule = field(default_factory=PromotionRule)
    #: Where the JSON reports go (one file per run).
    report_dir: Path | None = None
    #: Who runs it, for model_events ('retrain', 'retrain --every').
    actor: str = "retrain"


@dataclass(frozen=True)
class RetrainOutcome:
    decision: str  # 'promoted' | 'shadow'
    champion: str | None
    challenger: str
    reasons: tuple[str, ...]
    report: dict[str, Any]
    report_path: Path
    #: A warning when model_events could not take the line (the decision stands).
    warning: str | None = None


def _feature_choice(registry: Registry, champion: str | None, config: TrainConfig) -> TrainConfig:
    """The champion's feature configuration: engines refuse to switch to a model built with another one."""
    if champion is None:
        return config
    manifest = registry.manifest(champion)
    return replace(config, features=FeatureConfig.from_dict(manifest["feature_config"]),
                   feature_config_version=manifest.get("feature_config_version", config.feature_config_version))


def _write_report(report: dict[str, Any], report_dir: Path, as_of_us: int, challenger: str) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = format_time_us(as_of_us).replace(":", "").replace("-", "")[:15]
    path = report_dir / f"retrain-{stamp}-{challenger}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def retrain_once(settings: Settings, config: RetrainConfig, as_of_us: int | None = None,
                 progress: StageProgress | None = None) -> RetrainOutcome:
    """One run: train a challenger, evaluate both models on the same matured labels, promote or shadow, report."""
    began = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    registry = Registry(settings.models_dir)
    champion = registry.production_version()
    requested = registry.retrain_request()
    history = database_history(settings.database_url, DatabaseSource(config.maturity, as_of_us, config.history_days))
    as_of_us = parse_time_us(str(history.source["as_of"]))
    train_config = with_deployment(_feature_choice(registry, champion, config.train), settings)
    challenger, result = build_from_history(settings.models_dir, history, False, train_config, progress)
    manifest = {**result.manifest, "version": challenger}
    bounds = window_bounds(manifest, "test")
    windows: dict[str, Any] = {**manifest["training_window"], "evaluation": manifest["training_window"]["test"],
                               "matured_until": history.source.get("matured_until")}
    if champion is None:
        reasons: tuple[str, ...] = ("no production model yet: the challenger is promoted without a comparison",)
        champion_metrics, challenger_metrics = None, {**result.metrics["model"]}
        promote = True
    else:
        contest = challenge(history, Scorer(registry.load(champion)), Scorer(registry.load(challenger)), bounds,
                            config.rule, progress, [result.replay])
        champion_metrics, challenger_metrics = contest.champion, contest.challenger
        reasons, promote = contest.decision.reasons, contest.decision.promote
        champion_window = registry.manifest(champion).get("training_window", {}).get("train", {})
        if champion_window.get("end", "") >= windows["evaluation"]["start"]:
            reasons = (*reasons, f"note: the champion was trained up to {champion_window['end']}, inside the "
                                 "evaluation period, so its figures there are optimistic")
    if requested is not None:
        reasons = (f"run early: {requested.get('reason', 'retraining requested')}", *reasons)
        registry.clear_retrain_request()
    if promote:
        registry.promote(challenger)
        registry.clear_shadow()  # an older challenger was compared with the champion just replaced
    else:
        registry.set_shadow(challenger)
    decision = "promoted" if promote else "shadow"
    report = {
        "kind": "retrain",
        "started_at": started_at,
        "seconds": round(time.perf_counter() - began, 3),
        "as_of": format_time_us(as_of_us),
        "champion": champion,
        "challenger": challenger,
        "production": registry.production_version(),
        "shadow": registry.shadow_version(),
        "decision": decision,
        "reasons": list(reasons),
        "windows": windows,
        "metrics": {"champion": champion_metrics, "challenger": challenger_metrics},
        "rule": asdict(config.rule),
        "history": history.source,
        "rows": manifest["rows"],
        "fraud_rows": manifest["fraud_rows"],
    }
    report_path = _write_report(report, config.report_dir or settings.state_dir / "reports", as_of_us, challenger)
    warning = log_model_event(settings.database_url, ModelEvent(
        "retrain", decision, champion, registry.production_version(), challenger, reasons, as_of_us, windows,
        champion_metrics, challenger_metrics, config.actor))
    log.info("retrain decision=%s champion=%s challenger=%s report=%s", decision, champion, challenger, report_path)
    return RetrainOutcome(decision, champion, challenger, reasons, report, report_path, warning)


@dataclass(frozen=True)
class LiveComparison:
    """Champion and the challenger in shadow on the same live rows whose labels are known (arrived or matured)."""

    production: str
    shadow: str
    rows: int
    labeled: int
    champion: dict[str, float] | None
    challenger: dict[str, float] | None
    decision: PromotionDecision


def compare_live(settings: Settings, maturity: LabelMaturity, rule: PromotionRule | None = None) -> LiveComparison:
    """Both models' metrics on the transactions the engines scored with the shadow model beside the current
    production one, counting the labels known now (maturity as in training); what the promotion rule says."""
    registry = Registry(settings.models_dir)
    production, shadow = registry.production_version(), registry.shadow_version()
    if production is None or shadow is None:
        raise NoProductionModel(f"no model in shadow in {settings.models_dir}: `fraudstream retrain` puts a "
                                "challenger there when it does not promote it")
    with psycopg.connect(settings.database_url, connect_timeout=10) as connection:
        scored = stored_history.read_shadow_scored(connection, shadow).to_pandas()
        labels = stored_history.read_labels_of(connection, shadow).to_pandas()
        as_of_us = stored_history.latest_event_us(connection)
    scored = scored[scored["model_version"] == production]
    status = label_status(scored["transaction_id"].to_numpy(dtype=object),
                          scored["event_time_us"].to_numpy(dtype=np.int64), labels, as_of_us or 0, maturity)
    known, y = status.known, status.is_fraud[status.known]
    if not y.any() or y.all():
        return LiveComparison(production, shadow, len(scored), int(known.sum()), None, None, PromotionDecision(
            False, ("no known labels of both classes on the rows scored in shadow yet; the champion stays",)))
    times = scored["event_time_us"].to_numpy(dtype=np.int64)[known]
    accounts = scored["account_id"].to_numpy(dtype=object)[known]
    metrics = []
    for version, column in ((production, "score"), (shadow, "shadow_score")):
        score = scored[column].to_numpy(dtype=np.float64)[known]
        figures = evaluate(y, score, times, accounts)
        review = Thresholds.from_dict(registry.manifest(version)["thresholds"]).review
        figures["recall_at_review"] = recall_at_threshold(y, score, review)
        metrics.append(figures)
    decision = decide_promotion(metrics[0], metrics[1], int(y.sum()), rule)
    return LiveComparison(production, shadow, len(scored), int(known.sum()), metrics[0], metrics[1], decision)


def record_failure(settings: Settings, config: RetrainConfig, error: Exception, as_of_us: int | None) -> str | None:
    """A failed run is a model_events line too (what failed and what to fix); the warning if it cannot be written.
    A retraining request it answered is dropped (the next scheduled run comes anyway, not a loop of failures)."""
    registry = Registry(settings.models_dir)
    registry.clear_retrain_request()
    production = registry.production_version()
    return log_model_event(settings.database_url, ModelEvent(
        "retrain", "failed", production, production, None, (f"{type(error).__name__}: {error}",), as_of_us,
        actor=config.actor))


def parse_every(text: str) -> int:
    """A schedule interval like 90s, 30m, 6h or 1d, in microseconds."""
    units = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": MICROS_PER_DAY}
    number, unit = text[:-1], text[-1:].lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value <= 0:
        raise ValueError(f"--every {text!r}: give a positive number and a unit s, m, h or d (e.g. 6h)")
    return round(value * units[unit])


def newest_event_us(database_url: str) -> int | None:
    with psycopg.connect(database_url, connect_timeout=10) as connection:
        return stored_history.latest_event_us(connection)


def due_times(settings: Settings, every_us: int, clock: str, start_us: int | None, poll_s: float,
              sleep: Callable[[float], None] = time.sleep,
              monotonic: Callable[[], float] = time.monotonic) -> Iterator[int | None]:
    """When each run is due. Wall clock: now, then every interval (as_of: the newest stored event, None).
    Event time: ``start_us`` (default the newest stored event), then every interval of event time,
    each yielded once the database holds a transaction at or past it. Either way a retraining request
    (an engine saw drift on the production model, Registry.request_retrain) makes a run due at once."""
    if clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(CLOCKS)} (got {clock!r})")
    registry = Registry(settings.models_dir)
    if clock == "wall":
        while True:
            began = monotonic()
            yield None
            while (left := every_us / 1e6 - (monotonic() - began)) > 0 and registry.retrain_request() is None:
                sleep(min(poll_s, left))
    due = start_us if start_us is not None else newest_event_us(settings.database_url)
    while due is None:  # an empty table: wait for traffic
        sleep(poll_s)
        due = newest_event_us(settings.database_url)
    while True:
        newest = newest_event_us(settings.database_url)
        if newest is not None and newest >= due:
            yield due
            due += every_us
        elif newest is not None and registry.retrain_request() is not None:
            yield newest
        else:
            sleep(poll_s)


def retrain_every(settings: Settings, config: RetrainConfig, every_us: int, clock: str = "wall",
                  start_us: int | None = None, runs: int | None = None, poll_s: float = 5.0,
                  run: Callable[[int | None], RetrainOutcome] | None = None,
                  on_run: Callable[[RetrainOutcome | Exception], None] | None = None,
                  ) -> list[RetrainOutcome | Exception]:
    """Run on a schedule until ``runs`` runs (None: forever); ``run`` does one (default ``retrain_once``; the
    command wraps it in progress bars). A failed run is recorded and reported, and the schedule goes on: a
    retrain must not stop for one bad window."""
    run = run or (lambda as_of_us: retrain_once(settings, config, as_of_us))
    results: list[RetrainOutcome | Exception] = []
    for as_of_us in due_times(settings, every_us, clock, start_us, poll_s):
        try:
            outcome: RetrainOutcome | Exception = run(as_of_us)
        except (ModelError, ValueError, psycopg.OperationalError) as error:
            log.error("retrain failed as_of=%s error=%r", as_of_us, str(error))
            record_failure(settings, config, error, as_of_us)
            outcome = error
        results.append(outcome)
        if on_run is not None:
            on_run(outcome)
        if runs is not None and len(results) >= runs:
            break
    return results
