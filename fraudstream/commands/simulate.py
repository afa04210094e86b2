"""`fraudstream produce` (live traffic to Kafka) and `fraudstream simulate` (a backfill to Parquet)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fraudstream import kafka
from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings
from fraudstream.simulate.backfill import run_backfill
from fraudstream.simulate.live import Mode, produce_live
from fraudstream.simulate.report import fraud_table

Seed = Annotated[int, typer.Option("--seed", help="Seed of the simulated population and traffic.")]
Accounts = Annotated[int, typer.Option("--accounts", help="Simulated accounts.")]
FraudShare = Annotated[float, typer.Option("--fraud-share", help="Share of fraudulent transactions.")]


def produce(
    mode: Annotated[Mode, typer.Argument(help="normal customers, hacker scenarios, or all mixed.")] = Mode.all,
    rate: Annotated[float, typer.Option("--rate", help="Events per second; 0 sends as fast as possible.")] = 100.0,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after this many seconds.")] = None,
    max_events: Annotated[int | None, typer.Option("--max-events", help="Stop after this many events.")] = None,
    seed: Seed = 7,
    accounts: Accounts = 10_000,
    fraud_share: FraudShare = 0.007,
) -> None:
    """Send transactions keyed by account to Kafka at --rate (event time = now); labels follow later."""
    settings = get_settings()
    try:
        kafka.wait_for_broker(settings)
    except kafka.KafkaUnavailable as error:
        raise fail(str(error)) from None
    summary = produce_live(settings, mode, rate or None, duration, max_events, seed, accounts=accounts,
                           fraud_share=fraud_share)
    console.print(fraud_table(f"produced {summary.mode} traffic", summary.events_sent, summary.fraud_by_scenario, {
        "labels sent": f"{summary.labels_sent:,} ({summary.labels_sent_early:,} early, at shutdown)",
        "delivery failures": f"{summary.delivery_failures:,}",
        "seconds": f"{summary.sending_s:.2f}",
        "events/s achieved": f"{summary.rate_achieved:,.1f}",
    }))
    if summary.delivery_failures:
        raise fail(f"{summary.delivery_failures} messages were not delivered to {settings.kafka_bootstrap}")


def simulate(
    days: Annotated[int, typer.Option("--days", min=1, help="Days of history to simulate.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for transactions/labels Parquet and summary.json.")],
    seed: Seed = 7,
    accounts: Accounts = 10_000,
    merchants: Annotated[int, typer.Option("--merchants", help="Simulated merchants.")] = 2_000,
    fraud_share: FraudShare = 0.007,
) -> None:
    """Write a simulated history (transactions and their delayed labels) as fast as possible."""
    run_backfill(days, out, seed, accounts, merchants, fraud_share, console)


def register(app: typer.Typer) -> None:
    app.command("produce")(produce)
    app.command("simulate")(simulate)
