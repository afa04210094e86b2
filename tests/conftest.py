"""Session fixtures: real Kafka and PostgreSQL started by the project itself (never mocks)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fraudstream import kafka
from fraudstream.config import POSTGRES_APP_ROLE, Settings, get_settings
from fraudstream.services import manager, postgres
from fraudstream.store.schema import migrate


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Settings:
    """Kafka and PostgreSQL up (a no-op when `make test` already started them), schema migrated."""
    manager.up(settings, ["postgres", "kafka"])
    migrate(settings.database_url)
    kafka.create_topics(settings)
    return settings


@pytest.fixture(scope="session")
def kafka_ready(services: Settings) -> Settings:
    return services


@pytest.fixture(scope="session")
def postgres_ready(services: Settings) -> Settings:
    return services


@pytest.fixture
def database(postgres_ready: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_ready.database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def unique_topic(kafka_ready: Settings) -> Callable[..., str]:
    """Create a fresh topic for one test so that tests never read each other's events."""

    def create(prefix: str = "test", partitions: int = 3) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        kafka.create_topics(kafka_ready, {name: partitions})
        return name

    return create


@pytest.fixture
def scratch_url(postgres_ready: Settings) -> Iterator[str]:
    """A fresh, empty database on the project's server owned by the application role, dropped after the test
    (the administrator creates it: the application role may not create databases)."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.admin_url(postgres_ready), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                    sql.Identifier(POSTGRES_APP_ROLE)))
        try:
            yield make_conninfo(postgres_ready.database_url, dbname=name)
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
