"""Console helpers shared by the commands: one Console, tables, and errors that name what to fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    grid = Table(title=title)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(str(value) for value in row))
    return grid


def fail(message: str) -> typer.Exit:
    """Print the error (which says what to change) and return the exit to raise."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)
