"""`fraudstream monitoring dashboards|refresh`."""

from __future__ import annotations

from pathlib import Path

import psycopg
import typer

from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings

monitoring_app = typer.Typer(help="Grafana dashboards as code, Prometheus, and the per-minute monitoring views.",
                             no_args_is_help=True)


@monitoring_app.command("dashboards")
def dashboards(
    folder: str = typer.Option("deploy", "--out", help="Folder that receives grafana/ and prometheus/."),
    timescaledb: bool = typer.Option(False, "--timescaledb", help="Mark the datasource as TimescaleDB."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when a file differs."),
) -> None:
    """Generate Grafana provisioning (datasources, provider, dashboards JSON) and prometheus.yml."""
    from fraudstream.monitoring import provisioning

    out = Path(folder)
    if check:
        stale = [relative for relative, text in provisioning.files(timescaledb).items()
                 if not (out / relative).is_file() or (out / relative).read_text() != text]
        if stale:
            raise fail(f"out of date under {out}: {', '.join(stale)}; run `make dashboards`")
        console.print(f"{out}: up to date")
        return
    changed = provisioning.write(out, timescaledb)
    console.print(f"{out}: {len(changed)} file(s) written" + "".join(f"\n  {path}" for path in changed))


@monitoring_app.command("refresh")
def refresh(every: float | None = typer.Option(None, min=1.0, help="Keep refreshing, every this many "
                                               "seconds (what `services up monitoring` runs).")) -> None:
    """Add the rows written since the last refresh to the per-minute rollups (monitoring_refresh())."""
    from fraudstream.monitoring.refresh import refresh_every, refresh_once

    settings = get_settings()
    try:
        if every is not None:
            refresh_every(settings.database_url, every)
            return
        with psycopg.connect(settings.database_url, autocommit=True) as connection:
            done = refresh_once(connection)
    except psycopg.OperationalError as error:
        raise fail(f"cannot reach PostgreSQL at FRAUDSTREAM_DATABASE_URL ({error}); "
                   "start it with `fraudstream services up` or set FRAUDSTREAM_DATABASE_URL") from None
    except psycopg.errors.UndefinedFunction:
        raise fail("monitoring_refresh() is missing: run `fraudstream db init`") from None
    console.print(f"rollups hold rows written up to {done.written_to:%Y-%m-%d %H:%M:%S} "
                  f"({done.duration_s * 1000:.0f} ms)")


def register(app: typer.Typer) -> None:
    app.add_typer(monitoring_app, name="monitoring")
