"""Starting the console: schema, the first admin, then uvicorn (in the foreground or on a thread)."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import uvicorn
from rich.console import Console

from fraudstream.config import Settings
from fraudstream.console import auth
from fraudstream.console.app import create_app
from fraudstream.store.schema import migrate

log = logging.getLogger(__name__)


class ConsoleUnavailable(RuntimeError):
    """The console cannot start; the message says what to fix."""


def prepare(settings: Settings, create_admin: bool = True) -> str | None:
    """Migrate the schema and create the first admin; returns a generated admin password (print it once)."""
    try:
        migrate(settings.database_url)
        if not create_admin:
            return None
        with psycopg.connect(settings.database_url) as connection:
            return auth.ensure_admin(connection, settings.console_admin_password, settings.state_dir)
    except psycopg.OperationalError as error:
        raise ConsoleUnavailable(f"cannot reach PostgreSQL at FRAUDSTREAM_DATABASE_URL ({error}); start it with "
                                 "`fraudstream services up` or set FRAUDSTREAM_DATABASE_URL") from None


def url(settings: Settings) -> str:
    return f"http://{settings.console_host}:{settings.console_port}/"


def announce(settings: Settings, password: str | None, out: Console, reveal_saved: bool = False) -> None:
    """Where the console is and how to log in (the generated password is shown on the first start, and by
    the demo, a local session, from its 0600 file)."""
    out.print(f"[bold]analyst console[/]: {url(settings)}")
    saved = settings.state_dir / auth.ADMIN_PASSWORD_FILE
    if password is None and reveal_saved and not settings.console_admin_password and saved.is_file():
        password = saved.read_text().strip()
    if password:
        out.print(f"  first start: user [bold]{auth.ADMIN_USERNAME}[/], password [bold]{password}[/] "
                  f"(also in {settings.state_dir / auth.ADMIN_PASSWORD_FILE}, mode 0600)")
    elif settings.console_admin_password:
        out.print(f"  log in as {auth.ADMIN_USERNAME} with FRAUDSTREAM_CONSOLE_ADMIN_PASSWORD")
    else:
        out.print(f"  log in as {auth.ADMIN_USERNAME}; its password was printed on the first start and is in "
                  f"{settings.state_dir / auth.ADMIN_PASSWORD_FILE}")


def _server(settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(create_app(settings), host=settings.console_host, port=settings.console_port,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def serve(settings: Settings, out: Console) -> None:
    """Run the console in the foreground until Ctrl-C."""
    password = prepare(settings)
    announce(settings, password, out)
    server = _server(settings)
    server.run()
    if not server.started:
        raise ConsoleUnavailable(f"the console could not listen on {settings.console_host}:{settings.console_port}; "
                                 "choose another port with --port or FRAUDSTREAM_CONSOLE_PORT")


class BackgroundConsole:
    """The console on a thread of this process (the demo, tests): ``start()`` returns once it listens.
    Tests that log in with users of their own pass ``create_admin=False``, so that the shared database's
    ``admin`` is the one a person's first start creates (and is told the password of)."""

    def __init__(self, settings: Settings, create_admin: bool = True) -> None:
        self.settings = settings
        self.admin_password = prepare(settings, create_admin)
        self.server = _server(settings)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    @property
    def url(self) -> str:
        return url(self.settings)

    def start(self, timeout_s: float = 30.0) -> BackgroundConsole:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConsoleUnavailable(f"the console did not start on {self.settings.console_host}:"
                                         f"{self.settings.console_port} (port in use? set FRAUDSTREAM_CONSOLE_PORT)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
