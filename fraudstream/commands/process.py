"""`fraudstream process`: one member of the local engine's consumer group."""

from __future__ import annotations

import contextlib

import psycopg
import typer

from fraudstream import kafka
from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings
from fraudstream.engines.exceptions import EngineError


def process(
    group: str = typer.Option("fraudstream-local", help="Consumer group; members share the partitions."),
    instance_id: str | None = typer.Option(None, help="Static member id: a restart takes its partitions back at "
                                           "once instead of after the session timeout."),
    metrics_port: int = typer.Option(9464, help="Prometheus /metrics port; 0 disables it."),
    batch_size: int = typer.Option(10_000, min=1, help="Most records per micro-batch."),
    batch_timeout_ms: int = typer.Option(50, min=1, help="Longest wait to fill a micro-batch."),
    snapshot_interval_s: float = typer.Option(10.0, min=0.0, help="Feature-state checkpoint interval."),
    from_end: bool = typer.Option(False, "--from-end", help="Partitions this group never processed start at "
                                  "their end (live traffic only) instead of their beginning."),
    max_events: int | None = typer.Option(None, min=1, help="Stop after this many new events (tests)."),
    duration: float | None = typer.Option(None, min=0.0, help="Stop after this many seconds (tests)."),
) -> None:
    """Consume transactions, score them, write PostgreSQL and alerts; exactly once in effect."""
    from fraudstream.engines.local import EngineOptions, run_local_engine
    from fraudstream.monitoring.targets import announced

    settings = get_settings()
    options = EngineOptions(group=group, instance_id=instance_id, metrics_port=metrics_port or None,
                            batch_size=batch_size, batch_timeout_ms=batch_timeout_ms,
                            snapshot_interval_s=snapshot_interval_s, new_partitions_from_end=from_end,
                            max_events=max_events, duration_s=duration)
    try:
        kafka.wait_for_broker(settings)
        with announced(settings, metrics_port, group) if metrics_port else contextlib.nullcontext():
            summary = run_local_engine(settings, options)
    except (kafka.KafkaUnavailable, EngineError) as error:
        raise fail(str(error)) from None
    except psycopg.OperationalError as error:
        raise fail(f"cannot reach PostgreSQL at FRAUDSTREAM_DATABASE_URL ({error}); start it with "
                   "`fraudstream services up` or set FRAUDSTREAM_DATABASE_URL") from None
    console.print(f"scored {summary.scored}, dead-lettered {summary.dead_lettered}, alerted {summary.alerted}, "
                  f"replayed {summary.replayed} in {summary.batches} batches; "
                  f"models: {', '.join(summary.model_versions)}")


def register(app: typer.Typer) -> None:
    app.command("process")(process)
