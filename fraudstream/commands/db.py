"""`fraudstream db init`."""

from __future__ import annotations

import psycopg
import typer

from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings
from fraudstream.store.schema import migrate

db_app = typer.Typer(help="The PostgreSQL / TimescaleDB schema.", no_args_is_help=True)


@db_app.command("init")
def init() -> None:
    """Apply the schema migrations not yet applied (safe to run again)."""
    settings = get_settings()
    try:
        report = migrate(settings.database_url)
    except psycopg.OperationalError as error:
        raise fail(f"cannot reach PostgreSQL at FRAUDSTREAM_DATABASE_URL ({error}); "
                   "start it with `fraudstream services up` or set FRAUDSTREAM_DATABASE_URL") from None
    console.print(f"schema flavour: [bold]{report.flavour}[/]; applied: {', '.join(report.applied) or 'none'}; "
                  f"already applied: {len(report.already)}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
