"""Backfills: weeks of simulated history, written in the history file format (fraudstream.history) as
fast as NumPy allows.

The model is trained on these files, so they must be reproducible: the same seed gives the same
history (the format's writer makes that byte-identical files), a different seed a different history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fraudstream.events.contract import CHANNELS, LABEL_COLUMNS, PAYMENT_METHODS, TRANSACTION_COLUMNS
from fraudstream.history import History, to_microseconds, write_history
from fraudstream.simulate.normal import (
    LEGITIMATE,
    Columns,
    Surprises,
    concat_columns,
    normal_traffic,
    plan_surprises,
    take_columns,
)
from fraudstream.simulate.population import (
    Population,
    build_population,
    category_names,
    country_codes,
    currencies,
    device_ids,
    labelled_ids,
)
from fraudstream.simulate.report import fraud_table
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS, SCENARIO_NAMES, Context, inject_fraud
from fraudstream.timeunits import MICROS_PER_DAY, MICROS_PER_SECOND

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
BLOCK_DAYS = 7


@dataclass(frozen=True)
class LabelDelays:
    """How long ground truth takes: chargebacks for fraud, a quiet "no dispute" period for the rest."""

    fraud_s: tuple[float, float] = (1 * 86_400.0, 21 * 86_400.0)
    legit_s: tuple[float, float] = (30 * 86_400.0, 45 * 86_400.0)


def simulate_window(population: Population, rng: np.random.Generator, start_us: int, end_us: int,
                    fraud_share: float, scenarios: Mapping[str, float],
                    on_block: Callable[[int, int], None] | None = None) -> Columns:
    """Legitimate traffic plus injected fraud over [start_us, end_us), sorted by event time.

    ``on_block(simulated_us, events)`` is called after each block of days, for progress bars."""
    surprises = plan_surprises(population, rng, start_us, end_us)
    return simulate_span(population, surprises, rng, start_us, end_us, fraud_share, scenarios, on_block)


def simulate_span(population: Population, surprises: Surprises, rng: np.random.Generator, start_us: int,
                  end_us: int, fraud_share: float, scenarios: Mapping[str, float],
                  on_block: Callable[[int, int], None] | None = None) -> Columns:
    """``simulate_window`` for a span inside the window ``surprises`` were planned for."""
    if not 0.0 <= fraud_share < 0.5:
        raise ValueError("fraud_share must be in [0, 0.5)")
    blocks: list[Columns] = []
    block_us = BLOCK_DAYS * MICROS_PER_DAY
    for block_start in range(start_us, end_us, block_us):
        block_end = min(end_us, block_start + block_us)
        blocks.append(normal_traffic(population, surprises, rng, block_start, block_end))
        if on_block is not None:
            on_block(block_end - block_start, len(blocks[-1]["time_us"]))
    normal = concat_columns(blocks)
    fraud_events = round(len(normal["time_us"]) * fraud_share / (1.0 - fraud_share))
    fraud = inject_fraud(Context(population, rng, start_us, end_us, normal), fraud_events, scenarios)
    combined = concat_columns([normal, fraud])
    # Ids are numbered after this sort, so equal times end up ordered by transaction_id as promised.
    return take_columns(combined, np.argsort(combined["time_us"]))


def _strings(names: np.ndarray | tuple[str, ...], codes: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Strings from a small vocabulary as an Arrow dictionary array: no copy, no Python object per row.

    The dictionary is made unique first (several countries share a currency): Parquet's writer
    hashes duplicate dictionary entries in no fixed order, which would break byte-identical output."""
    vocabulary, code_of_name = np.unique(np.asarray(names, dtype=object), return_inverse=True)
    return pa.DictionaryArray.from_arrays(pa.array(code_of_name.astype(np.int32)[codes], mask=mask),
                                          pa.array(vocabulary.tolist(), type=pa.string()))


def _account_strings(population: Population, accounts: np.ndarray) -> pa.Array:
    """Account ids as a dictionary array over the accounts these rows name (not the whole population)."""
    distinct, positions = np.unique(accounts, return_inverse=True)
    return pa.DictionaryArray.from_arrays(pa.array(positions.astype(np.int32)), population.account_ids(distinct))


def transactions_table(population: Population, columns: Columns, id_prefix: str, first_number: int = 0) -> pa.Table:
    """Sorted columns as the contract's transaction table (ids follow the row order from ``first_number``)."""
    size = len(columns["time_us"])
    return pa.Table.from_arrays([
        labelled_ids(id_prefix, size, width=10, first=first_number),
        pa.array(columns["time_us"]),
        _account_strings(population, columns["account"]),
        pa.array(columns["amount"]),
        _strings(currencies(), population.home_country[columns["account"]]),
        _strings(population.merchant_ids, columns["merchant"]),
        _strings(category_names(), population.merchant_category[columns["merchant"]]),
        _strings(PAYMENT_METHODS, columns["payment"]),
        _strings(CHANNELS, columns["channel"]),
        _strings(country_codes(), columns["country"]),
        pa.array(np.round(columns["latitude"], 5)),
        pa.array(np.round(columns["longitude"], 5)),
        device_ids(population, columns["device"]),
    ], names=list(TRANSACTION_COLUMNS))


def to_tables(population: Population, columns: Columns, rng: np.random.Generator, id_prefix: str,
              label_delays: LabelDelays, first_number: int = 0) -> tuple[pa.Table, pa.Table]:
    """Sorted columns as the contract's transaction and label tables (ids follow the time order)."""
    transactions = transactions_table(population, columns, id_prefix, first_number)
    is_fraud = columns["scenario"] != LEGITIMATE
    low, high = np.where(is_fraud[:, None], label_delays.fraud_s, label_delays.legit_s).T
    labeled_at = columns["time_us"] + (rng.uniform(low, high) * MICROS_PER_SECOND).astype(np.int64)
    scenario = _strings(SCENARIO_NAMES, np.where(is_fraud, columns["scenario"], 0), mask=~is_fraud)
    labels = pa.Table.from_arrays([
        transactions.column("transaction_id"), transactions.column("account_id"),
        transactions.column("merchant_id"), pa.array(is_fraud), scenario, pa.array(labeled_at),
    ], names=list(LABEL_COLUMNS))
    return transactions, labels.take(pa.array(np.argsort(labeled_at, kind="stable")))


def simulate_history(days: int, seed: int = 7, accounts: int = 10_000, merchants: int = 2_000,
                     fraud_share: float = 0.007, start: datetime | None = None,
                     scenarios: Mapping[str, float] = DEFAULT_SCENARIO_WEIGHTS,
                     label_delays: LabelDelays = LabelDelays(),
                     on_block: Callable[[int, int], None] | None = None) -> History:
    """``days`` of transactions and their eventual labels, deterministic under ``seed``.

    ``scenarios`` maps scenario names to relative weights of the fraud share (0 switches one off)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    start_us = to_microseconds(start or DEFAULT_START)
    end_us = start_us + days * MICROS_PER_DAY
    population = build_population(seed, accounts, merchants, start_us)
    rng = np.random.default_rng([seed, 2])
    columns = simulate_window(population, rng, start_us, end_us, fraud_share, scenarios, on_block)
    transactions, labels = to_tables(population, columns, rng, f"tx{seed}-", label_delays)
    return History(transactions, labels, seed, start_us, end_us)


def run_backfill(days: int, out: Path | str, seed: int = 7, accounts: int = 10_000, merchants: int = 2_000,
                 fraud_share: float = 0.007, console: Console | None = None) -> dict[str, object]:
    """The ``fraudstream simulate`` command: simulate with a progress bar, write, print a summary table."""
    console = console or Console()
    began = time.perf_counter()
    columns = ("[bold]{task.description}", BarColumn(), TextColumn("{task.fields[events]:,} events"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("simulating days", total=days * MICROS_PER_DAY, events=0)

        def on_block(simulated_us: int, events: int) -> None:
            bar.update(task, advance=simulated_us, events=bar.tasks[task].fields["events"] + events)

        history = simulate_history(days, seed, accounts, merchants, fraud_share, on_block=on_block)
        bar.update(task, description="writing parquet", events=history.transactions_table.num_rows)
        summary = write_history(history, out, SCENARIO_NAMES)
    seconds = time.perf_counter() - began
    events = history.transactions_table.num_rows
    console.print(fraud_table(f"backfill of {days} days (seed {seed}) -> {out}", events,
                              history.fraud_by_scenario(SCENARIO_NAMES),
                              {"seconds": f"{seconds:.2f}", "events/s": f"{events / seconds:,.0f}"}))
    return {**summary, "seconds": seconds, "events_per_second": events / seconds}
