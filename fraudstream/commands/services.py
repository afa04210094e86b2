"""`fraudstream services up|down|status|logs`."""

from __future__ import annotations

import typer

from fraudstream.commands._output import console, fail, table
from fraudstream.config import get_settings
from fraudstream.services import manager
from fraudstream.services.exceptions import ServiceError

services_app = typer.Typer(help="Start, stop and inspect the local Kafka, PostgreSQL (and Spark) services.",
                           no_args_is_help=True)

NAMES = typer.Argument(None, help="Services to act on (default: postgres kafka).", show_default=False)


def _print(statuses: list[manager.ServiceStatus], title: str) -> None:
    console.print(table(title, ["service", "pid", "port", "healthy", "data dir", "action"],
                        [(s.name, s.pid or "-", s.port, "yes" if s.healthy else "no", s.data_dir, s.action)
                         for s in statuses]))


@services_app.command("up")
def up(names: list[str] | None = NAMES,
       spark: bool = typer.Option(False, "--spark", help="Also start the local Spark cluster.")) -> None:
    """Start the services that are not running; return once each one answers (idempotent)."""
    if spark:
        names = [*(names or manager.DEFAULT_SERVICES), "spark"]
    try:
        with console.status("starting services (the first run fetches jars and initialises data)..."):
            statuses = manager.up(get_settings(), names)
    except ServiceError as error:
        raise fail(str(error)) from None
    _print(statuses, "services")


@services_app.command("down")
def down(names: list[str] | None = NAMES) -> None:
    """Stop the services we started (graceful first, forced after a timeout)."""
    _print(manager.down(get_settings(), names), "services stopped")


@services_app.command("status")
def status(names: list[str] | None = NAMES) -> None:
    """A table of each service: pid, port, health, data directory.

    Exits 1 when a named service, a default one (postgres, kafka) or one that is running is unhealthy.
    """
    statuses = manager.status(get_settings(), names)
    _print(statuses, "services")
    expected = set(names or manager.DEFAULT_SERVICES)
    if any(not s.healthy and (s.name in expected or s.pid is not None) for s in statuses):
        raise typer.Exit(code=1)


@services_app.command("logs")
def logs(name: str = typer.Argument(..., help="postgres, kafka, ..."),
         lines: int = typer.Option(50, help="How many lines from the end.")) -> None:
    """The last lines of a service's log."""
    try:
        console.print(manager.logs(get_settings(), name, lines), markup=False, highlight=False)
    except ServiceError as error:
        raise fail(str(error)) from None


def register(app: typer.Typer) -> None:
    app.add_typer(services_app, name="services")
