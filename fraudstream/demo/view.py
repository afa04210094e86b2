"""What the demo shows in the terminal: the figures table (live, draining, final) and the hold status line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.table import Table
from rich.text import Text

from fraudstream.demo.summary import DemoSummary


def summary_table(summary: DemoSummary, title: str) -> Table:
    def number(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:,.0f}{unit}"

    def share(value: float | None) -> str:
        return "- (no labels yet)" if value is None else f"{value:.1%}"

    def moment(value: datetime | None) -> str:
        return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    flagged = summary.flagged_share
    for name, value in (
        ("model version", summary.model_version),
        ("simulated time (x wall clock)", f"{moment(summary.simulated_start)} -> {moment(summary.simulated_end)}"
                                          f" (x{number(summary.time_scale)})"),
        ("warm-up events (not counted)", number(summary.warm_up_events)),
        ("events produced", number(summary.produced)),
        ("scored", number(summary.scored)),
        ("alerted (review + block)", number(summary.alerted) + ("" if flagged is None else f" ({flagged:.2%})")),
        ("dead-lettered", number(summary.dead_lettered)),
        ("labels received (fraud)", f"{number(summary.labels)} ({number(summary.frauds)})"),
        ("alert precision", share(summary.precision)),
        ("alert recall", share(summary.recall)),
        ("late events", number(summary.late)),
        ("send -> commit p50 / p99", f"{number(summary.send_to_commit_p50_ms, ' ms')} / "
                                     f"{number(summary.send_to_commit_p99_ms, ' ms')}"),
        ("ingest -> commit p50 / p99", f"{number(summary.ingest_to_commit_p50_ms, ' ms')} / "
                                       f"{number(summary.ingest_to_commit_p99_ms, ' ms')}"),
    ):
        table.add_row(name, value)
    return table


@dataclass(frozen=True)
class HoldStatus:
    """The hold phase as one line: what the processor did since the summary, and who is still running."""

    elapsed_s: float
    scored: int
    alerted: int
    dead_lettered: int
    producers_running: int
    producers: int

    @property
    def scored_per_s(self) -> float:
        return self.scored / self.elapsed_s if self.elapsed_s > 0 else 0.0


def hold_status_line(status: HoldStatus) -> Text:
    producers = (f"producers {status.producers_running}/{status.producers} running"
                 if status.producers_running == status.producers
                 else f"[red]producers {status.producers_running}/{status.producers} running[/]")
    return Text.from_markup(
        f"[bold]holding[/] {status.elapsed_s:,.0f} s: scored {status.scored:,} ({status.scored_per_s:,.0f}/s), "
        f"alerted {status.alerted:,}, dead-lettered {status.dead_lettered:,}; {producers}; Ctrl-C stops")
