"""Summary tables printed at the end of a backfill or a live run (and by the benchmark)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table


def fraud_table(title: str, events: int, fraud_by_scenario: Mapping[str, int],
                figures: Mapping[str, str]) -> Table:
    """Events, fraud share per scenario, and any extra figures (rate achieved, files, ...)."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("share of events", justify="right")
    table.add_row("events", f"{events:,}", "100 %")
    fraud = sum(fraud_by_scenario.values())
    table.add_row("fraud (all scenarios)", f"{fraud:,}", f"{fraud / max(events, 1):.3%}")
    for name, count in fraud_by_scenario.items():
        table.add_row(f"  {name}", f"{count:,}", f"{count / max(events, 1):.3%}")
    for name, value in figures.items():
        table.add_row(name, value, "")
    return table
