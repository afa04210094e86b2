"""Versioned, idempotent migrations; TimescaleDB when the extension is available, plain PostgreSQL otherwise.

Migrations are ``migrations/NNN_name.sql``; ``NNN_name.timescale.sql`` beside one runs right after it
only on TimescaleDB. Applied versions are recorded in ``schema_migrations``; an advisory lock keeps two
processes from migrating at once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x46524155  # arbitrary constant: "FRAU"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    timescale_sql: str | None


@dataclass(frozen=True)
class MigrationReport:
    flavour: str  # "timescaledb" or "postgresql"
    applied: list[str]
    already: list[str]


def migrations() -> list[Migration]:
    """The packaged migrations in version order."""
    folder = resources.files("fraudstream.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            extra = folder.joinpath(f"{match[1]}_{match[2]}.timescale.sql")
            found.append(Migration(int(match[1]), match[2], entry.read_text(),
                                   extra.read_text() if extra.is_file() else None))
    return sorted(found, key=lambda m: m.version)


def timescale_available(connection: psycopg.Connection) -> bool:
    """The one place that decides the flavour of the schema."""
    row = connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def migrate(database_url: str) -> MigrationReport:
    """Apply the migrations not yet applied, each in its own transaction."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            timescale = timescale_available(connection)
            flavour = "timescaledb" if timescale else "postgresql"
            log.info("schema flavour: %s", flavour)
            if timescale:
                connection.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " flavour text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
            applied, already = [], []
            for migration in migrations():
                label = f"{migration.version:03d}_{migration.name}"
                if migration.version in done:
                    already.append(label)
                    continue
                with connection.transaction():
                    connection.execute(migration.sql)
                    if timescale and migration.timescale_sql:
                        connection.execute(migration.timescale_sql)
                    connection.execute(
                        "INSERT INTO schema_migrations (version, name, flavour) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, flavour),
                    )
                log.info("migration %s applied (%s)", label, flavour)
                applied.append(label)
            return MigrationReport(flavour, applied, already)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
