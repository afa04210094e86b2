"""`fraudstream train` and `fraudstream model list|show|promote`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fraudstream.commands._output import console, fail, table
from fraudstream.config import get_settings
from fraudstream.model.exceptions import ModelError
from fraudstream.model.registry import Registry
from fraudstream.model.report import metrics_table, summary_table
from fraudstream.model.train import TrainConfig
from fraudstream.training import build

model_app = typer.Typer(help="List, inspect and promote trained models.", no_args_is_help=True)

_STAGES = {
    "simulate": "simulating history (hours)",
    "replay": "replaying features (events)",
    "train": "training models (LightGBM, logistic regression, seed forest)",
}


def train(
    input_path: Annotated[
        Path | None,
        typer.Option("--input", help="Backfill directory, or a CSV/Parquet labeled history (docs/import-format.md)."),
    ] = None,
    days: Annotated[int, typer.Option("--days", min=14, help="Days to simulate when no --input is given.")] = 30,
    promote: Annotated[bool, typer.Option("--promote", help="Promote the new version to production.")] = False,
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            min=1,
            help="Partitions of the transactions topic the model is served on (one feature state each, "
            "as in the engines). Default: FRAUDSTREAM_TRANSACTIONS_PARTITIONS.",
        ),
    ] = None,
) -> None:
    """Replay history through the feature core, train LightGBM and two baselines, publish a version."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            settings = get_settings()
            config = TrainConfig(partitions=partitions or settings.transactions_partitions)
            version, result = build(settings.models_dir, input_path, days, promote, config, progress, settings)
        except (ModelError, FileNotFoundError) as error:
            raise fail(str(error)) from None
    manifest = {**result.manifest, "version": version}
    console.print(metrics_table(manifest))
    console.print(summary_table(manifest))
    console.print(f"published [bold]{version}[/]" + (" and promoted it to production" if promote else ""))


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
    try:
        Registry(get_settings().models_dir).promote(version)
    except ModelError as error:
        raise fail(str(error)) from None
    console.print(f"production model is now [bold]{version}[/]")


@model_app.command("default")
def default_model() -> None:
    """Train and promote the first-run model unless a production model exists (containers' init step)."""
    from fraudstream.demo import ensure_default_model

    console.print(f"production model: [bold]{ensure_default_model(get_settings())}[/]")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(model_app, name="model")
