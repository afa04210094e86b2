"""Where a model build gets its history and settings: a fresh simulation or a file, then ``model.train``.

The model package only trains on the history it is handed; this module (used by the `train` command
and the demo) chooses the source and fills in what the deployment decides (the partition count).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fraudstream.config import Settings, get_settings
from fraudstream.model.dataset import LabeledHistory, load_history
from fraudstream.model.train import StageProgress, TrainConfig, TrainingResult
from fraudstream.model.train import build as build_from_history
from fraudstream.simulate.backfill import simulate_history
from fraudstream.timeunits import MICROS_PER_HOUR


def simulated_history(days: int, seed: int = 7, progress: StageProgress | None = None) -> LabeledHistory:
    """A fresh simulation of the default population, reported in simulated hours."""
    total_hours = days * 24
    done_us = [0]

    def on_block(block_us: int, _: int) -> None:
        done_us[0] += block_us
        if progress is not None:
            progress("simulate", min(done_us[0] // MICROS_PER_HOUR, total_hours), total_hours)

    history = simulate_history(days, seed=seed, on_block=on_block)
    return LabeledHistory(history.transactions, history.labels)


def with_deployment(config: TrainConfig | None, settings: Settings) -> TrainConfig:
    """The configuration with the serving partition count filled in when the caller left it open."""
    config = config or TrainConfig()
    return config if config.partitions is not None else replace(config, partitions=settings.transactions_partitions)


def build(
    models_dir: Path,
    input_path: Path | None = None,
    days: int = 30,
    promote: bool = False,
    config: TrainConfig | None = None,
    progress: StageProgress | None = None,
    settings: Settings | None = None,
) -> tuple[str, TrainingResult]:
    """Load ``input_path`` (or simulate ``days``), train, publish, maybe promote."""
    settings = settings or get_settings()
    history = load_history(input_path) if input_path is not None else simulated_history(days, progress=progress)
    return build_from_history(models_dir, history, promote, with_deployment(config, settings), progress)
