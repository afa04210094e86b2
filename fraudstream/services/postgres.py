"""A project-local PostgreSQL server from Debian's packages, run as a non-root OS user when we are root."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from fraudstream.config import Settings
from fraudstream.services.exceptions import ServiceError
from fraudstream.services.process import ManagedProcess, port_open

SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "256MB",
    "max_connections": "200",
    "max_wal_size": "2GB",
    "wal_compression": "lz4",  # cheaper than pglz ("on") on the full-page images after a checkpoint
    "log_min_messages": "warning",
}


def postgres_home(settings: Settings) -> Path:
    return settings.state_dir / "postgres"


def bin_dir() -> Path:
    """The newest installed server's bin directory, installing Debian's package when missing (as root)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    if os.geteuid() != 0:
        raise ServiceError("PostgreSQL server binaries not found: install Debian's postgresql package")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return bin_dir()


def server_user() -> str | None:
    """The OS user the server runs as: None (ourselves) unless we are root, who may not run PostgreSQL."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "fraudstream"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "fraudstream"], check=True)
    return "fraudstream"


def as_user(user: str | None, command: list[str]) -> list[str]:
    """Command that runs as `user` (exec, so the pid is the server's own)."""
    if user is None:
        return command
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]


def chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, _dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid)


def server_process(settings: Settings) -> ManagedProcess:
    home = postgres_home(settings)
    options = [arg for key, value in SERVER_OPTIONS.items() for arg in ("-c", f"{key}={value}")]
    command = [str(bin_dir() / "postgres"), "-D", str(home / "data"), "-p", str(settings.postgres_port),
               "-k", str(home / "run"), *options]
    return ManagedProcess(
        name="postgres",
        command=as_user(server_user(), command),
        pid_file=home / "postgres.pid",
        log_file=home / "postgres.log",
        marker=str(home / "data"),
        ports={settings.postgres_port: "FRAUDSTREAM_POSTGRES_PORT"},
        stop_signal=signal.SIGINT,  # "fast" shutdown: SIGTERM would wait for every client to leave
    )


def prepare(settings: Settings) -> None:
    """An initialised data directory owned by the server user, trusting local connections only."""
    home = postgres_home(settings)
    user = server_user()
    (home / "run").mkdir(parents=True, exist_ok=True)
    if (home / "data" / "PG_VERSION").exists():
        return
    shutil.rmtree(home / "data", ignore_errors=True)
    (home / "data").mkdir(parents=True)
    chown_tree(home, user)
    os.chmod(home / "data", 0o700)
    result = subprocess.run(
        as_user(user, [str(bin_dir() / "initdb"), "-D", str(home / "data"), "-U", "fraudstream",
                       "--auth=trust", "-E", "UTF8", "--no-locale"]),
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"initdb failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def admin_url(settings: Settings) -> str:
    return f"postgresql://fraudstream@127.0.0.1:{settings.postgres_port}/postgres"


def healthy(settings: Settings) -> bool:
    if not port_open(settings.postgres_port):
        return False
    try:
        with psycopg.connect(admin_url(settings), connect_timeout=1) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def ensure_database(settings: Settings) -> None:
    """The project database exists on the local server."""
    with psycopg.connect(admin_url(settings), autocommit=True) as connection:
        name = settings.postgres_db
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
