"""A project-local PostgreSQL server from Debian's packages, run as a non-root OS user when we are root.

Nobody gets in without a password: the cluster is initialised with scram-sha-256 for every connection,
local or TCP. Two roles with generated passwords, kept in a libpq passfile under the state directory
(mode 0600, ``Settings.postgres_passfile``, named in the default database URL so no password appears in
a URL, a command line or a log): ``fraudstream_admin``, the superuser, used only here to create the
application role and database; ``fraudstream``, the application role the engines, the console and the
migrations use, owner of the project database and not a superuser.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fraudstream.config import POSTGRES_ADMIN_ROLE, POSTGRES_APP_ROLE, Settings
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


def write_passfile(path: Path, passwords: dict[str, str]) -> None:
    """A libpq passfile (any host, port and database) holding ``passwords`` by role, created mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.new")
    staging.unlink(missing_ok=True)
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w") as passfile:
        passfile.writelines(f"*:*:*:{role}:{password}\n" for role, password in passwords.items())
    os.replace(staging, path)


def read_password(path: Path, role: str) -> str:
    """``role``'s password from a passfile written by write_passfile."""
    for line in path.read_text().splitlines():
        *_, name, password = line.split(":", 4)
        if name == role:
            return password
    raise ServiceError(f"{path} holds no password for the role {role}; re-create the local PostgreSQL "
                       "(`make clean`, or move .fraudstream/postgres aside)")


def trusting_rules(hba_file: Path) -> list[str]:
    """The pg_hba.conf rules that let a connection in without a password."""
    rules = [line.split("#", 1)[0].split() for line in hba_file.read_text().splitlines()]
    return [" ".join(rule) for rule in rules if rule and rule[-1] in ("trust", "password", "ident")]


def _check_existing(settings: Settings) -> None:
    """A data directory from before passwords (trust for every local user) is refused, naming the way out."""
    home = postgres_home(settings)
    way_out = (f"keep its data aside with `fraudstream services down postgres && mv {home} {home}.trust` (or start "
               "from scratch with `make clean`), then `fraudstream services up && fraudstream db init` creates one "
               "with passwords")
    trusting = trusting_rules(home / "data" / "pg_hba.conf")
    if trusting:
        raise ServiceError(f"the local PostgreSQL in {home / 'data'} lets local users in without a password "
                           f"({trusting[0]!r}; initialised before fraudstream set passwords): {way_out}")
    if not settings.postgres_passfile.is_file():
        raise ServiceError(f"the password file {settings.postgres_passfile} of the local PostgreSQL in "
                           f"{home / 'data'} is missing: {way_out}")


def prepare(settings: Settings) -> None:
    """An initialised data directory owned by the server user, with scram-sha-256 authentication for every
    connection and generated passwords for the administrator and the application role."""
    home = postgres_home(settings)
    user = server_user()
    (home / "run").mkdir(parents=True, exist_ok=True)
    if (home / "data" / "PG_VERSION").exists():
        _check_existing(settings)
        return
    shutil.rmtree(home / "data", ignore_errors=True)
    (home / "data").mkdir(parents=True)
    passwords = {role: secrets.token_urlsafe(24) for role in (POSTGRES_ADMIN_ROLE, POSTGRES_APP_ROLE)}
    password_file = home / ".initdb-password"  # read by initdb as the server user, deleted right after
    password_file.write_text(passwords[POSTGRES_ADMIN_ROLE] + "\n")
    password_file.chmod(0o600)
    chown_tree(home, user)
    os.chmod(home / "data", 0o700)
    try:
        result = subprocess.run(
            as_user(user, [str(bin_dir() / "initdb"), "-D", str(home / "data"), "-U", POSTGRES_ADMIN_ROLE,
                           "--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--no-locale"]),
            capture_output=True, text=True, check=False,
        )
    finally:
        password_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ServiceError(f"initdb failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    write_passfile(settings.postgres_passfile, passwords)


def admin_url(settings: Settings, dbname: str = "postgres") -> str:
    """The administrator's connection to the local server (password from the passfile)."""
    return make_conninfo(host="127.0.0.1", port=settings.postgres_port, dbname=dbname, user=POSTGRES_ADMIN_ROLE,
                         passfile=str(settings.postgres_passfile))


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
    """The application role (not a superuser, its password the passfile's) and the project database it owns
    exist on the local server; so does the timescaledb extension in it when the server has it (creating
    an extension takes a superuser)."""
    password = read_password(settings.postgres_passfile, POSTGRES_APP_ROLE)
    role, name = sql.Identifier(POSTGRES_APP_ROLE), sql.Identifier(settings.postgres_db)
    with psycopg.connect(admin_url(settings), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (POSTGRES_APP_ROLE,)).fetchone()
        connection.execute(sql.SQL("{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.SQL("ALTER" if exists else "CREATE"), role, sql.Literal(password)))
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (settings.postgres_db,)).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, role))
        else:
            connection.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, role))
        timescale = connection.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is not None
    if timescale:
        with psycopg.connect(admin_url(settings, settings.postgres_db), autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
