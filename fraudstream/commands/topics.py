"""`fraudstream topics create|list`."""

from __future__ import annotations

import typer

from fraudstream import kafka
from fraudstream.commands._output import console, fail, table
from fraudstream.config import Settings, get_settings

topics_app = typer.Typer(help="Kafka topics of the pipeline.", no_args_is_help=True)


def _reachable_settings() -> Settings:
    """The settings, once the broker answers; exits with what to fix otherwise."""
    settings = get_settings()
    try:
        kafka.wait_for_broker(settings)
    except kafka.KafkaUnavailable as error:
        raise fail(str(error)) from None
    return settings


@topics_app.command("create")
def create() -> None:
    """Create the pipeline's topics that are missing (partitions/retention from FRAUDSTREAM_* settings)."""
    settings = _reachable_settings()
    result = kafka.create_topics(settings)
    partitions = kafka.describe_topics(settings, list(result))
    console.print(table("topics", ["topic", "partitions", "result"],
                        [(name, partitions.get(name, "?"), outcome) for name, outcome in result.items()]))


@topics_app.command("list")
def list_topics() -> None:
    """Topics on the broker and their partition counts."""
    settings = _reachable_settings()
    console.print(table("topics", ["topic", "partitions"], sorted(kafka.describe_topics(settings).items())))


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
