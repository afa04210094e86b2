"""A scratch database for benches that fill big tables: on the local server, owned by the application role
(which may not create databases itself), migrated, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fraudstream.config import POSTGRES_APP_ROLE, Settings
from fraudstream.services import postgres
from fraudstream.store.schema import migrate


@contextmanager
def scratch_database(settings: Settings, prefix: str, keep: bool = False) -> Iterator[str]:
    """The URL of a fresh, migrated database named ``<prefix>_<random>``; dropped on exit unless ``keep``."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.admin_url(settings), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                    sql.Identifier(POSTGRES_APP_ROLE)))
        try:
            url = make_conninfo(settings.database_url, dbname=name)
            migrate(url)
            yield url
        finally:
            if not keep:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
