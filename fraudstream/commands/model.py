"""`fraudstream train`, `score`, `retrain` and `fraudstream model list|show|promote|rollback`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from fraudstream.backtest import backtest_metrics, check_output, load_scoring_history, run_score, window_bounds
from fraudstream.commands._output import console, fail, table
from fraudstream.config import get_settings
from fraudstream.features.config import FeatureConfigError, load_feature_config
from fraudstream.history import to_microseconds
from fraudstream.lifecycle import (
    RetrainConfig,
    RetrainOutcome,
    compare_live,
    parse_every,
    record_failure,
    retrain_every,
    retrain_once,
)
from fraudstream.model.exceptions import ImportFormatError, ModelError
from fraudstream.model.maturity import LabelMaturity
from fraudstream.model.promotion import PromotionRule
from fraudstream.model.registry import Registry
from fraudstream.model.report import metrics_grid, metrics_table, summary_table
from fraudstream.model.split import SplitConfig, check_simulated_days, check_split
from fraudstream.model.train import TrainConfig
from fraudstream.store.model_events import ModelEvent, log_model_event
from fraudstream.training import DatabaseSource, build

model_app = typer.Typer(help="List, inspect, promote and roll back trained models.", no_args_is_help=True)

_STAGES = {
    "simulate": "simulating history (hours)",
    "replay": "replaying features (events)",
    "train": "training models (LightGBM, logistic regression, seed forest)",
    "score": "scoring (rows)",
}


class StageBars(Progress):
    """One progress bar per stage of a long build (replay, training, scoring, ...), made on first report."""

    def __init__(self) -> None:
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=console)
        self._stage_tasks: dict[str, TaskID] = {}

    def update_stage(self, stage: str, done: int, total: int) -> None:
        if stage not in self._stage_tasks:
            self._stage_tasks[stage] = self.add_task(_STAGES.get(stage, stage), total=total)
        self.update(self._stage_tasks[stage], completed=done, total=total)


def _utc_us(moment: datetime | None) -> int | None:
    """A command-line date (naive means UTC) as µs since the epoch."""
    if moment is None:
        return None
    return to_microseconds(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _maturity(fraud_label_days: float | None, legitimate_label_days: float | None) -> LabelMaturity:
    """Label delays from the flags, else from the settings."""
    settings = get_settings()
    return LabelMaturity(settings.fraud_label_days if fraud_label_days is None else fraud_label_days,
                         settings.legitimate_label_days if legitimate_label_days is None else legitimate_label_days)


_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]
_SPLIT = "split (days; see `fraudstream/model/split.py`)"
_RULE = "promotion rule (see `fraudstream/model/promotion.py`)"
_DB = "--from-db"
# Options shared by train and retrain, declared once.
TrainDays = Annotated[float | None, typer.Option(
    "--train-days", rich_help_panel=_SPLIT, help="Training length (default: all before the first gap).")]
GapDays = Annotated[float, typer.Option(
    "--gap-days", rich_help_panel=_SPLIT, help="Label delay left out after training and after validation.")]
ValidationDays = Annotated[float, typer.Option("--validation-days", rich_help_panel=_SPLIT)]
TestDays = Annotated[float, typer.Option("--test-days", rich_help_panel=_SPLIT)]
BurnInDays = Annotated[float, typer.Option(
    "--burn-in-days", rich_help_panel=_SPLIT, help="First days only warm the feature state.")]
Partitions = Annotated[int | None, typer.Option(
    "--partitions", min=1, help="Partitions of the transactions topic the model is served on (one feature state "
    "each, as in the engines). Default: FRAUDSTREAM_TRANSACTIONS_PARTITIONS.")]
AsOf = Annotated[datetime | None, typer.Option(
    "--as-of", formats=_DATE_FORMATS, rich_help_panel=_DB,
    help="'Now' in event time: labels after it are unknown (default: the newest stored transaction).")]
HistoryDays = Annotated[float | None, typer.Option(
    "--history-days", rich_help_panel=_DB, help="Read only this many days before --as-of.")]
FraudLabelDays = Annotated[float | None, typer.Option(
    "--fraud-label-days", rich_help_panel=_DB,
    help="A fraud label arrives within this many days; unlabeled transactions count as legitimate "
    "only after it, younger ones are left out. Default: FRAUDSTREAM_FRAUD_LABEL_DAYS (21).")]
LegitimateLabelDays = Annotated[float | None, typer.Option(
    "--legitimate-label-days", rich_help_panel=_DB,
    help="A legitimate label arrives within this many days; older unlabeled rows are reported as overdue. "
    "Default: FRAUDSTREAM_LEGITIMATE_LABEL_DAYS (45).")]


def train(
    input_path: Annotated[
        Path | None,
        typer.Option("--input", help="History directory, or a CSV/Parquet labeled history (docs/import-format.md)."),
    ] = None,
    from_db: Annotated[bool, typer.Option("--from-db", help="Train on the transactions and labels tables.")] = False,
    days: Annotated[int, typer.Option("--days", min=1, help="Days to simulate when no --input is given (at least "
                                      "what the split needs: 15 with the default one).")] = 30,
    promote: Annotated[bool, typer.Option("--promote", help="Promote the new version to production.")] = False,
    partitions: Partitions = None,
    train_start: Annotated[datetime | None, typer.Option(
        "--train-start", formats=_DATE_FORMATS, rich_help_panel=_SPLIT,
        help="First day of training (UTC); validation and test follow the training period.")] = None,
    train_end: Annotated[datetime | None, typer.Option(
        "--train-end", formats=_DATE_FORMATS, rich_help_panel=_SPLIT,
        help="End of training (UTC, exclusive).")] = None,
    train_days: TrainDays = None,
    gap_days: GapDays = SplitConfig.gap_days,
    validation_days: ValidationDays = SplitConfig.validation_days,
    test_days: TestDays = SplitConfig.test_days,
    burn_in_days: BurnInDays = SplitConfig.burn_in_days,
    features_file: Annotated[Path | None, typer.Option(
        "--features", help="Versioned feature configuration file (TOML; template: "
        "fraudstream/features/default.toml), recorded in the model's manifest.")] = None,
    as_of: AsOf = None,
    history_days: HistoryDays = None,
    fraud_label_days: FraudLabelDays = None,
    legitimate_label_days: LegitimateLabelDays = None,
) -> None:
    """Replay history through the feature core, train LightGBM and two baselines, publish a version."""
    if from_db and input_path is not None:
        raise fail("give --input or --from-db, not both")
    with StageBars() as bar:
        progress = bar.update_stage
        try:
            settings = get_settings()
            features = load_feature_config(features_file) if features_file is not None else None
            split = SplitConfig(burn_in_days=burn_in_days, gap_days=gap_days, validation_days=validation_days,
                                test_days=test_days, train_days=train_days, train_start_us=_utc_us(train_start),
                                train_end_us=_utc_us(train_end))
            check_split(split)
            if input_path is None and not from_db:
                check_simulated_days(days, split)
            config = TrainConfig(split=split, partitions=partitions or settings.transactions_partitions,
                                 **({"features": features.config, "feature_config_version": features.version}
                                    if features is not None else {}))
            database = DatabaseSource(_maturity(fraud_label_days, legitimate_label_days), _utc_us(as_of),
                                      history_days) if from_db else None
            before = Registry(settings.models_dir).production_version()
            version, result = build(settings.models_dir, input_path, days, promote, config, progress, settings,
                                    database)
        except (ModelError, FeatureConfigError, FileNotFoundError, ValueError, psycopg.OperationalError) as error:
            raise fail(str(error)) from None
    manifest = {**result.manifest, "version": version}
    console.print(metrics_table(manifest))
    console.print(summary_table(manifest))
    console.print(f"published [bold]{version}[/]" + (" and promoted it to production" if promote else ""))
    if promote:
        _record(ModelEvent("promote", "promoted", before, version, version,
                           ("trained and promoted by `train --promote`",), windows=manifest["training_window"],
                           challenger_metrics=manifest["metrics"]["model"]))


def score(
    input_path: Annotated[Path | None, typer.Option(
        "--input", help="History directory, or a CSV/Parquet file (docs/import-format.md; is_fraud optional).")] = None,
    from_db: Annotated[bool, typer.Option(
        "--from-db", help="Score the transactions table (labels from labels).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")] = Path("scores.parquet"),
    version: Annotated[str | None, typer.Option(
        "--model", help="Model version, e.g. v0003 (default: production).")] = None,
    window: Annotated[str | None, typer.Option(
        "--window", help="Evaluate on the model's train, validation or test period only (test reproduces "
        "`model show`).")] = None,
    evaluate_from: Annotated[str | None, typer.Option("--evaluate-from", help="Evaluate from this ISO time.")] = None,
    evaluate_to: Annotated[str | None, typer.Option("--evaluate-to", help="Evaluate up to this ISO time.")] = None,
    as_of: Annotated[datetime | None, typer.Option(
        "--as-of", formats=_DATE_FORMATS, rich_help_panel=_DB, help="With --from-db: 'now' in event time.")] = None,
    history_days: Annotated[float | None, typer.Option("--history-days", rich_help_panel=_DB)] = None,
    fraud_label_days: Annotated[float | None, typer.Option(
        "--fraud-label-days", rich_help_panel=_DB, help="Default: FRAUDSTREAM_FRAUD_LABEL_DAYS (21).")] = None,
) -> None:
    """Replay a history through the feature core and a model; write score, decision and reasons per transaction."""
    settings = get_settings()
    try:
        check_output(out)
        database = DatabaseSource(_maturity(fraud_label_days, None), _utc_us(as_of), history_days) if from_db else None
        history = load_scoring_history(input_path, database, settings)
        with StageBars() as bar:
            scored, scorer = run_score(settings, version, history, out, bar.update_stage)
        manifest = {**scorer.artifact.manifest, "version": scorer.model_version}
        bounds = window_bounds(manifest, window, evaluate_from, evaluate_to)
    except (ModelError, ImportFormatError, FileNotFoundError, ValueError, psycopg.OperationalError) as error:
        raise fail(str(error)) from None
    rows = len(scored.scores)
    console.print(f"scored {rows:,} transactions with [bold]{scorer.model_version}[/] -> {out} "
                  f"({scored.events_per_cpu_second:,.0f} events per CPU-second, replay and scoring)")
    metrics = backtest_metrics(scored, scorer, bounds)
    if metrics is None:
        console.print("no labeled rows of both classes in the window: no metrics")
        return
    title = f"{scorer.model_version}: {window or 'labeled rows'} ({int(metrics['rows']):,} rows)"
    shown = {"score (this run)": metrics}
    if window == "test":  # the manifest holds the test period's figures: side by side
        shown["model show (training)"] = manifest["metrics"]["model"]
    console.print(metrics_grid(title, shown))
    console.print(f"review rate {metrics['review_rate']:.2%}, block rate {metrics['block_rate']:.2%} "
                  f"(thresholds {scorer.thresholds.review:.4f} / {scorer.thresholds.block:.4f})")


def retrain(
    every: Annotated[str | None, typer.Option(
        "--every", help="Run on a schedule, e.g. 6h (units s, m, h, d); without it, one run.")] = None,
    clock: Annotated[str, typer.Option(
        "--clock", help="With --every: 'wall' (real time) or 'event-time' (a run is due when the newest stored "
        "transaction reaches the next due time: replays and tests drive the schedule).")] = "wall",
    runs: Annotated[int | None, typer.Option("--runs", min=1, help="With --every: stop after this many runs.")] = None,
    poll_seconds: Annotated[float, typer.Option(
        "--poll-seconds", min=0.1, help="With --clock event-time: how often to read the newest event time.")] = 5.0,
    as_of: AsOf = None,
    history_days: HistoryDays = None,
    fraud_label_days: FraudLabelDays = None,
    legitimate_label_days: LegitimateLabelDays = None,
    partitions: Partitions = None,
    train_days: TrainDays = None,
    gap_days: GapDays = SplitConfig.gap_days,
    validation_days: ValidationDays = SplitConfig.validation_days,
    test_days: TestDays = SplitConfig.test_days,
    burn_in_days: BurnInDays = SplitConfig.burn_in_days,
    average_precision_margin: Annotated[float, typer.Option(
        "--average-precision-margin", rich_help_panel=_RULE,
        help="The challenger must beat the champion's average precision by at least this.")
    ] = PromotionRule.average_precision_margin,
    card_precision_margin: Annotated[float, typer.Option(
        "--card-precision-margin", rich_help_panel=_RULE, help="Same for card precision@100.")
    ] = PromotionRule.card_precision_margin,
    recall_tolerance: Annotated[float, typer.Option(
        "--recall-tolerance", rich_help_panel=_RULE,
        help="Recall at the review threshold the challenger may lose.")] = PromotionRule.recall_tolerance,
    min_fraud_labels: Annotated[int, typer.Option(
        "--min-fraud-labels", rich_help_panel=_RULE,
        help="Fewer fraud labels in the evaluation period: no decision, the champion stays.")
    ] = PromotionRule.min_fraud_labels,
    report_dir: Annotated[Path | None, typer.Option(
        "--report-dir", help="Where the JSON report of each run goes (default: .fraudstream/reports).")] = None,
) -> None:
    """Train a challenger on the latest matured window of the database, compare it with the champion on the
    same most recent matured labels, promote it or keep it in shadow; write a report and a model_events line."""
    settings = get_settings()
    try:
        split = SplitConfig(burn_in_days=burn_in_days, gap_days=gap_days, validation_days=validation_days,
                            test_days=test_days, train_days=train_days)
        check_split(split)
        rule = PromotionRule(average_precision_margin, card_precision_margin, recall_tolerance, min_fraud_labels)
        config = RetrainConfig(_maturity(fraud_label_days, legitimate_label_days), history_days,
                               TrainConfig(split=split, partitions=partitions), rule, report_dir,
                               "retrain" if every is None else f"retrain --every {every}")
        every_us = parse_every(every) if every is not None else None
    except (ModelError, ValueError) as error:
        raise fail(str(error)) from None

    def one_run(moment_us: int | None) -> RetrainOutcome:
        with StageBars() as bar:
            return retrain_once(settings, config, moment_us, bar.update_stage)

    if every_us is None:
        try:
            _show_retrain(one_run(_utc_us(as_of)))
        except (ModelError, ValueError, psycopg.OperationalError) as error:
            record_failure(settings, config, error, _utc_us(as_of))
            raise fail(f"retrain failed: {error}") from None
        return
    console.print(f"retraining every {every} ({clock} clock); Ctrl-C stops")
    try:
        retrain_every(settings, config, every_us, clock, _utc_us(as_of), runs, poll_seconds, one_run,
                      on_run=lambda outcome: _show_retrain(outcome) if isinstance(outcome, RetrainOutcome)
                      else console.print(f"[red]retrain failed:[/] {outcome} (next run on schedule)"))
    except (ValueError, psycopg.OperationalError) as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print("retrain schedule stopped")


def _show_retrain(outcome: RetrainOutcome) -> None:
    """Both models' figures side by side, the decision and why."""
    metrics = outcome.report["metrics"]
    if metrics["champion"] is not None:
        shown = {f"champion {outcome.champion}": metrics["champion"],
                 f"challenger {outcome.challenger}": metrics["challenger"]}
        window = outcome.report["windows"]["evaluation"]
        console.print(metrics_grid(f"evaluation {window['start']} → {window['end']}", shown))
    for reason in outcome.reasons:
        console.print(f"  {reason}")
    verdict = ("promoted to production" if outcome.decision == "promoted"
               else f"kept in shadow beside {outcome.champion}")
    console.print(f"challenger [bold]{outcome.challenger}[/] {verdict}; report {outcome.report_path}")
    if outcome.warning:
        console.print(f"[yellow]warning:[/] {outcome.warning}")


@model_app.command("list")
def list_models() -> None:
    """Published versions with their test metrics; * marks production."""
    registry = Registry(get_settings().models_dir)
    production = registry.production_version()
    rows = []
    for version in registry.versions():
        try:
            manifest = registry.manifest(version)
        except ModelError as error:
            rows.append(("", version, f"[red]{error}[/]", "", "", ""))
            continue
        metrics = manifest["metrics"]["model"]
        rows.append(
            (
                "*" if version == production else "",
                version,
                manifest["created_at"],
                f"{metrics['average_precision']:.4f}",
                f"{metrics['card_precision_at_100']:.4f}",
                f"{metrics['roc_auc']:.4f}",
            )
        )
    columns = ("", "version", "created", "average precision", "card precision@100", "ROC AUC")
    console.print(table(f"models in {registry.models_dir}", columns, rows))


@model_app.command("show")
def show(version: Annotated[str, typer.Argument(help="Version, e.g. v0001.")]) -> None:
    """Metrics (model vs baselines), thresholds and training window of one verified version."""
    try:
        manifest = Registry(get_settings().models_dir).manifest(version)
    except ModelError as error:
        raise fail(str(error)) from None
    console.print(metrics_table(manifest))
    console.print(summary_table(manifest))


@model_app.command("promote")
def promote_version(version: Annotated[str, typer.Argument(help="Version to serve, e.g. v0001.")]) -> None:
    """Make a version the production model; running engines switch at their next batch."""
    settings = get_settings()
    registry = Registry(settings.models_dir)
    before = registry.production_version()
    try:
        registry.promote(version)
    except ModelError as error:
        raise fail(str(error)) from None
    console.print(f"production model is now [bold]{version}[/]")
    _record(ModelEvent("promote", "promoted", before, version, reasons=("promoted by hand",)))


@model_app.command("rollback")
def rollback() -> None:
    """Return production to the version promoted before the current one; running engines switch at their
    next batch. Repeat to go further back."""
    try:
        current, previous = Registry(get_settings().models_dir).rollback()
    except ModelError as error:
        raise fail(str(error)) from None
    console.print(f"production model is now [bold]{previous}[/] (rolled back from {current})")
    _record(ModelEvent("rollback", "rolled_back", current, previous, reasons=("rolled back by hand",)))


def _record(event: ModelEvent) -> None:
    """A line in model_events; a warning (not a failure) when the database cannot take it."""
    warning = log_model_event(get_settings().database_url, event)
    if warning is not None:
        console.print(f"[yellow]warning:[/] {warning}")


@model_app.command("compare")
def compare(
    fraud_label_days: FraudLabelDays = None,
    legitimate_label_days: LegitimateLabelDays = None,
    min_fraud_labels: Annotated[int, typer.Option(
        "--min-fraud-labels", help="Fewer fraud labels: no decision.")] = PromotionRule.min_fraud_labels,
) -> None:
    """Production against the challenger in shadow on the live transactions both scored, with the labels known
    now; and what the promotion rule would decide."""
    settings = get_settings()
    try:
        result = compare_live(settings, _maturity(fraud_label_days, legitimate_label_days),
                              PromotionRule(min_fraud_labels=min_fraud_labels))
    except (ModelError, ValueError, psycopg.OperationalError) as error:
        raise fail(str(error)) from None
    console.print(f"{result.rows:,} transactions scored by {result.production} with {result.shadow} in shadow, "
                  f"{result.labeled:,} with a known label")
    if result.champion is not None and result.challenger is not None:
        console.print(metrics_grid("live, on the same labeled transactions",
                                   {f"production {result.production}": result.champion,
                                    f"shadow {result.shadow}": result.challenger}))
    for reason in result.decision.reasons:
        console.print(f"  {reason}")
    console.print(f"the promotion rule would {'promote' if result.decision.promote else 'keep'} "
                  f"{result.shadow if result.decision.promote else result.production}")


@model_app.command("default")
def default_model() -> None:
    """Train and promote the first-run model unless a production model exists (containers' init step)."""
    from fraudstream.demo import ensure_default_model

    console.print(f"production model: [bold]{ensure_default_model(get_settings())}[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("score")(score)
    app.command("retrain")(retrain)
    app.add_typer(model_app, name="model")
