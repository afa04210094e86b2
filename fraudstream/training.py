"""Where a model build gets its history and settings: a fresh simulation, a file or the database
(with label maturity), then ``model.train``.

The model package only trains on the history it is handed; this module (used by the `train` command
and the demo) chooses the source and fills in what the deployment decides (the partition count).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg

from fraudstream.config import Settings, get_settings
from fraudstream.model.dataset import LabeledHistory, load_history
from fraudstream.model.exceptions import NotEnoughData
from fraudstream.model.maturity import LabelMaturity, with_maturity
from fraudstream.model.train import StageProgress, TrainConfig, TrainingResult
from fraudstream.model.train import build as build_from_history
from fraudstream.simulate.backfill import simulate_history
from fraudstream.store import history as stored_history
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_HOUR


@dataclass(frozen=True)
class DatabaseSource:
    """Train on the system's own history: the ``transactions`` and ``labels`` tables."""

    maturity: LabelMaturity = field(default_factory=LabelMaturity)
    #: "Now" in event time; None: the newest stored transaction.
    as_of_us: int | None = None
    #: Only the last this many days before ``as_of``; None: everything stored.
    history_days: float | None = None


def simulated_history(days: int, seed: int = 7, progress: StageProgress | None = None) -> LabeledHistory:
    """A fresh simulation of the default population, reported in simulated hours."""
    total_hours = days * 24
    done_us = [0]

    def on_block(block_us: int, _: int) -> None:
        done_us[0] += block_us
        if progress is not None:
            progress("simulate", min(done_us[0] // MICROS_PER_HOUR, total_hours), total_hours)

    history = simulate_history(days, seed=seed, on_block=on_block)
    return LabeledHistory(history.transactions, history.labels, span_us=(history.start_us, history.end_us))


def database_history(database_url: str, source: DatabaseSource) -> LabeledHistory:
    """The stored history up to ``as_of``, with the labels known then and their maturity."""
    with psycopg.connect(database_url) as connection:
        as_of_us = source.as_of_us if source.as_of_us is not None else stored_history.latest_event_us(connection)
        if as_of_us is None:
            raise NotEnoughData("the transactions table is empty: run the processor on traffic first "
                                "(fraudstream process), or train from a file with --input")
        since_us = None if source.history_days is None else as_of_us - round(source.history_days * MICROS_PER_DAY)
        history = stored_history.read_history(connection, as_of_us, since_us)
    labeled = LabeledHistory(history.transactions, history.labels, source={"database": "transactions, labels"})
    return with_maturity(labeled, as_of_us, source.maturity)


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
    database: DatabaseSource | None = None,
) -> tuple[str, TrainingResult]:
    """Read the database (``database``) or ``input_path``, or simulate ``days``; train, publish, maybe promote."""
    settings = settings or get_settings()
    if database is not None:
        history = database_history(settings.database_url, database)
    elif input_path is not None:
        history = load_history(input_path)
    else:
        history = simulated_history(days, progress=progress)
    return build_from_history(models_dir, history, promote, with_deployment(config, settings), progress)
