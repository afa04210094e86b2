"""The local PostgreSQL lets nobody in without a password, the engines run as a role that is not a
superuser, and a password in FRAUDSTREAM_DATABASE_URL never reaches a log or an error message."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fraudstream.config import POSTGRES_ADMIN_ROLE, POSTGRES_APP_ROLE, Settings
from fraudstream.services import postgres
from fraudstream.services.exceptions import ServiceError

pytestmark = pytest.mark.integration

FRAUDSTREAM = str(Path(sys.executable).with_name("fraudstream"))


def without_password(settings: Settings, role: str) -> str:
    return make_conninfo(host="127.0.0.1", port=settings.postgres_port, dbname="postgres", user=role,
                         passfile="/nonexistent")


def url_with_password(settings: Settings, password: str) -> str:
    return f"postgresql://{POSTGRES_APP_ROLE}:{password}@127.0.0.1:{settings.postgres_port}/{settings.postgres_db}"


def test_no_role_gets_in_without_its_password(postgres_ready: Settings) -> None:
    hba = postgres.postgres_home(postgres_ready) / "data" / "pg_hba.conf"
    assert postgres.trusting_rules(hba) == []
    for role in (POSTGRES_ADMIN_ROLE, POSTGRES_APP_ROLE, "postgres"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without_password(postgres_ready, role), connect_timeout=5)
    passfile = postgres_ready.postgres_passfile
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert "password" not in postgres_ready.database_url
    assert conninfo_to_dict(postgres_ready.database_url)["passfile"] == str(passfile)


def test_the_engines_role_owns_the_schema_and_is_not_a_superuser(database: psycopg.Connection) -> None:
    role, superuser, create_role, create_db = database.execute(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
    assert (role, superuser, create_role, create_db) == (POSTGRES_APP_ROLE, False, False, False)
    owners = dict(database.execute("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
                                   " AND tablename IN ('transactions', 'labels', 'engine_offsets')").fetchall())
    assert owners == dict.fromkeys(("transactions", "labels", "engine_offsets"), POSTGRES_APP_ROLE)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        database.execute("CREATE ROLE intruder SUPERUSER")


def test_a_password_in_the_database_url_is_never_logged(postgres_ready: Settings, tmp_path: Path) -> None:
    password = postgres.read_password(postgres_ready.postgres_passfile, POSTGRES_APP_ROLE)
    wrong = "Wr0ng-s3cret-" + password[:6]

    def run(url: str, *command: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "FRAUDSTREAM_DATABASE_URL": url, "FRAUDSTREAM_STATE_DIR": str(tmp_path),
               "COLUMNS": "400"}
        return subprocess.run([FRAUDSTREAM, "--verbose", *command], env=env, capture_output=True, text=True,
                              timeout=300)

    right = run(url_with_password(postgres_ready, password), "db", "init")
    assert right.returncode == 0, right.stderr[-2000:]
    refused = run(url_with_password(postgres_ready, wrong), "db", "init")
    assert refused.returncode != 0 and "password authentication failed" in " ".join(refused.stdout.split())
    engine = run(url_with_password(postgres_ready, wrong), "process", "--max-events", "1", "--metrics-port", "0")
    assert engine.returncode != 0
    for result in (right, refused, engine):
        output = result.stdout + result.stderr
        unwrapped = "".join(output.split())  # a wrapped line must not hide a secret
        assert password not in unwrapped and wrong not in unwrapped, output[-2000:]


def test_a_data_directory_that_trusts_local_users_is_refused_with_the_way_out(postgres_ready: Settings,
                                                                               tmp_path: Path) -> None:
    settings = postgres_ready.model_copy(update={"state_dir": tmp_path})
    data = postgres.postgres_home(settings) / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("17\n")
    (data / "pg_hba.conf").write_text("# TYPE DATABASE USER ADDRESS METHOD\nlocal all all trust\n"
                                      "host all all 127.0.0.1/32 trust\n")
    with pytest.raises(ServiceError, match=r"without a password .* mv .*\.trust"):
        postgres.prepare(settings)


def test_sslmode_in_the_database_url_reaches_the_engines_connections(postgres_ready: Settings, tmp_path: Path) -> None:
    """TLS settings pass through: ``sslmode=require`` against the local server (no TLS) must be refused by
    libpq in `db init` and in the processor, naming SSL, and still without the password in any output."""
    password = postgres.read_password(postgres_ready.postgres_passfile, POSTGRES_APP_ROLE)
    url = url_with_password(postgres_ready, password) + "?sslmode=require&connect_timeout=5"
    env = {**os.environ, "FRAUDSTREAM_DATABASE_URL": url, "FRAUDSTREAM_STATE_DIR": str(tmp_path), "COLUMNS": "400"}
    for command in (["db", "init"], ["process", "--max-events", "1", "--metrics-port", "0"]):
        result = subprocess.run([FRAUDSTREAM, "--verbose", *command], env=env, capture_output=True, text=True,
                                timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-2000:]
        assert "SSL" in output, output[-2000:]
        assert password not in "".join(output.split()), output[-2000:]
