"""`fraudstream spark submit`: run the Structured Streaming job (the driver runs in this process)."""

from __future__ import annotations

import psycopg
import typer

from fraudstream import kafka
from fraudstream.commands._output import console, fail, table
from fraudstream.config import get_settings
from fraudstream.engines.exceptions import ModelUnavailable, TopicMissing

spark_app = typer.Typer(help="The Spark Structured Streaming engine.", no_args_is_help=True)


@spark_app.command("submit")
def submit(
    master: str | None = typer.Option(None, help="Spark master URL (default: the local cluster of "
                                      "`fraudstream services up spark`; 'keep' uses spark-submit's)."),
    checkpoint: str | None = typer.Option(None, help="Checkpoint location (any Hadoop path); default "
                                          "$FRAUDSTREAM_STATE_DIR/spark/checkpoints/<app-name>."),
    app_name: str = typer.Option("fraudstream", help="Application and query name."),
    max_offsets_per_trigger: int = typer.Option(50_000, min=1, help="Most Kafka records per micro-batch."),
    trigger_interval: float = typer.Option(0.0, min=0.0, help="Seconds between micro-batches (0: back to back)."),
    shuffle_partitions: int = typer.Option(0, min=0, help="Stateful tasks per batch, frozen in the checkpoint "
                                           "(0: one per executor core, at most one per transactions partition)."),
    cores_max: int | None = typer.Option(None, min=1, help="Executor cores to take from the cluster "
                                         "(default: 2 on the local cluster; spark-submit's with --master keep)."),
    executor_memory: str | None = typer.Option(None, help="Memory per executor (default: 512m on the local "
                                               "cluster; spark-submit's with --master keep)."),
    max_events: int | None = typer.Option(None, min=1, help="Stop after this many new events (tests)."),
    duration: float | None = typer.Option(None, min=0.0, help="Stop after this many seconds (tests)."),
) -> None:
    """Consume transactions on a Spark cluster, score them, write PostgreSQL and alerts; exactly once in effect."""
    from fraudstream.engines.spark_job import JobOptions, run_spark_job
    from fraudstream.services.spark import master_url

    settings = get_settings()
    options = JobOptions(
        master=None if master == "keep" else master or master_url(settings), checkpoint=checkpoint or "",
        app_name=app_name, max_offsets_per_trigger=max_offsets_per_trigger, trigger_interval_s=trigger_interval,
        shuffle_partitions=shuffle_partitions, cores_max=cores_max, executor_memory=executor_memory,
        max_events=max_events, duration_s=duration,
    )
    try:
        kafka.wait_for_broker(settings)
        reports = run_spark_job(settings, options)
    except (kafka.KafkaUnavailable, ModelUnavailable, TopicMissing) as error:
        raise fail(str(error)) from None
    except psycopg.OperationalError as error:
        raise fail(f"cannot reach PostgreSQL at FRAUDSTREAM_DATABASE_URL ({error})") from None
    console.print(table("spark batches", ["batches", "scored", "written", "dead-lettered", "alerted", "labels"],
                        [(len(reports), sum(r.scored for r in reports), sum(r.written for r in reports),
                          sum(r.dead_lettered for r in reports), sum(r.alerted for r in reports),
                          sum(r.labels for r in reports))]))


def register(app: typer.Typer) -> None:
    app.add_typer(spark_app, name="spark")
