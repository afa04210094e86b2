"""`fraudstream demo`: the whole pipeline for a while, then a summary."""

from __future__ import annotations

import typer

from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings


def demo(
    duration: float = typer.Option(60.0, min=5.0, help="Seconds of live traffic."),
    rate: float = typer.Option(500.0, min=1.0, help="Normal customers' transactions per second."),
    hacker_rate: float = typer.Option(10.0, min=1.0, help="Attackers' transactions per second."),
    warm_up_days: float = typer.Option(14.0, "--warm-up-days", min=0.0,
                                       help="Simulated days sent first, unmeasured, so the processor knows "
                                            "the accounts (a cold state flags every account as new)."),
    keep: bool = typer.Option(False, "--keep", help="After the summary, keep the producers, the processor and "
                                                     "the analyst console running until Ctrl-C, to look around."),
    with_console: bool = typer.Option(True, "--console/--no-console",
                                      help="Start the analyst console (port: FRAUDSTREAM_CONSOLE_PORT, 8000)."),
) -> None:
    """Services, a default model, producers, the processor and a live view; ends with a summary.

    Traffic runs on a simulated clock that continues after the model's training history, as many
    times faster than the wall clock as --rate needs; latencies are measured in real time."""
    from fraudstream.demo import DemoSummary, run_demo, summary_table
    from fraudstream.monitoring.guide import where_to_look

    def show(summary: DemoSummary) -> None:
        console.print(summary_table(summary, f"fraudstream demo: {duration:.0f} s"))
        for line in where_to_look(get_settings(), summary.simulated_start, summary.simulated_end):
            console.print(line)

    try:
        run_demo(get_settings(), duration, rate, hacker_rate, console, warm_up_days, keep, with_console, show)
    except RuntimeError as error:
        raise fail(str(error)) from None


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
