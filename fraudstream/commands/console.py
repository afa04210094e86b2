"""`fraudstream console` (serve the analyst console) and `fraudstream console add-user`."""

from __future__ import annotations

import typer

from fraudstream.commands._output import console, fail
from fraudstream.config import get_settings

console_app = typer.Typer(help="The analyst console.", invoke_without_command=True)


@console_app.callback()
def serve_console(
    context: typer.Context,
    host: str = typer.Option(None, help="Address to bind (default: setting console_host, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: setting console_port / FRAUDSTREAM_CONSOLE_PORT, 8000)."),
) -> None:
    """Serve the analyst console: live overview, alert queue, claims and verdicts (which become labels)."""
    if context.invoked_subcommand is not None:
        return
    from fraudstream.console.server import ConsoleUnavailable, serve

    settings = get_settings()
    updates = {key: value for key, value in (("console_host", host), ("console_port", port)) if value is not None}
    try:
        serve(settings.model_copy(update=updates), console)
    except ConsoleUnavailable as error:
        raise fail(str(error)) from None


@console_app.command("add-user")
def add_user(
    username: str = typer.Argument(..., help="Login name (a-z, 0-9, '_', '.', '-')."),
    role: str = typer.Option("analyst", help="analyst or admin."),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 envvar="FRAUDSTREAM_CONSOLE_NEW_PASSWORD", help="At least 12 characters."),
) -> None:
    """Create a console user (the password is stored as an argon2 hash)."""
    import psycopg

    from fraudstream.console.auth import UserError, create_user
    from fraudstream.console.server import ConsoleUnavailable, announce, prepare

    settings = get_settings()
    try:
        generated = prepare(settings)
        if generated:
            announce(settings, generated, console)
        with psycopg.connect(settings.database_url) as connection:
            user = create_user(connection, username, password, role)
    except (UserError, ConsoleUnavailable) as error:
        raise fail(str(error)) from None
    console.print(f"user [bold]{user.username}[/] ({user.role}) created")


def register(app: typer.Typer) -> None:
    app.add_typer(console_app, name="console")
