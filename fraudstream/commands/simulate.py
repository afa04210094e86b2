"""`fraudstream produce` (live traffic to Kafka) and `fraudstream simulate` (a backfill to Parquet)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from fraudstream import kafka
from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings
from fraudstream.model.registry import Registry
from fraudstream.simulate.backfill import run_backfill
from fraudstream.simulate.live import Labels, Mode, live_start_us, produce_live
from fraudstream.simulate.report import fraud_table

log = logging.getLogger(__name__)

Seed = Annotated[int, typer.Option("--seed", help="Seed of the simulated population and traffic.")]
Accounts = Annotated[int, typer.Option("--accounts", help="Simulated accounts.")]
FraudShare = Annotated[float, typer.Option("--fraud-share", help="Share of fraudulent transactions.")]


def produce(
    mode: Annotated[Mode, typer.Argument(help="normal customers, hacker scenarios, or all mixed.")] = Mode.all,
    rate: Annotated[float, typer.Option("--rate", help="Events per second; 0 sends as fast as possible.")] = 100.0,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after this many seconds.")] = None,
    max_events: Annotated[int | None, typer.Option("--max-events", help="Stop after this many events.")] = None,
    seed: Seed = 7,
    accounts: Annotated[str, typer.Option(
        "--accounts", help="Simulated accounts, or auto: on the wall clock (--time-scale 1) as many as make "
                           "--rate at the simulated transactions per account and day (at most 10 million), "
                           "else 10,000 (the model's training population).")] = "auto",
    labels: Annotated[Labels, typer.Option(
        "--labels", help="Which transactions get a label later: all (chargeback or no dispute) or fraud-only.")
    ] = Labels.all,
    fraud_share: Annotated[float | None, typer.Option(
        "--fraud-share", help="Share of fraud among the simulated transactions (default 0.007; hacker mode "
                              "sends only the fraud of a 0.3 share).")] = None,
    time_scale: Annotated[float, typer.Option(
        "--time-scale", min=0.0, help="Simulated seconds per second. 0: derived from --rate, so each account "
                                      "transacts as often as in the simulated history (what the model expects); "
                                      "1: wall clock (event time = send time, exactly --rate, for throughput "
                                      "tests).")] = 0.0,
    warm_up_days: Annotated[float, typer.Option(
        "--warm-up-days", min=0.0, help="Simulated clock: first send this many simulated days before the start "
                                        "as fast as possible, so a fresh processor knows the accounts.")] = 14.0,
) -> None:
    """Send transactions keyed by account to Kafka at --rate; labels follow later.

    By default on a simulated clock that continues after the promoted model's training history
    (events carry simulated times); --time-scale 1 stamps the wall clock instead."""
    settings = get_settings()
    if accounts != "auto" and not (accounts.isdigit() and int(accounts) >= 10):
        raise fail(f"--accounts must be auto or a whole number of at least 10, got {accounts!r}")
    if rate == 0 and time_scale == 0:
        raise fail("--rate 0 (as fast as possible) needs an explicit --time-scale (1: wall clock)")
    try:
        kafka.wait_for_broker(settings)
    except kafka.KafkaUnavailable as error:
        raise fail(str(error)) from None
    start_us = None if time_scale == 1 else live_start_us(Registry(settings.models_dir).production_training_end_us())
    summary = produce_live(settings, mode, rate or None, duration, max_events, seed,
                           accounts=None if accounts == "auto" else int(accounts), fraud_share=fraud_share,
                           time_scale=time_scale or None, start_us=start_us,
                           warm_up_days=warm_up_days if time_scale != 1 else 0.0, labels=labels)
    clock = "wall clock" if summary.time_scale == 1 else f"simulated x{summary.time_scale:,.0f}"
    console.print(fraud_table(f"produced {summary.mode} traffic", summary.events_sent, summary.fraud_by_scenario, {
        "clock": clock,
        "warm-up events": f"{summary.warm_up_events:,}",
        "labels sent": f"{summary.labels_sent:,} ({summary.labels_sent_early:,} early, at shutdown)",
        "delivery failures": f"{summary.delivery_failures:,}",
        "seconds (paced part)": f"{summary.sending_s:.2f}",
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
