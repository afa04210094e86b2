"""The engine contract: what every engine must do on the real services, as one suite parametrized by engine.

The ``engine`` fixture gives each engine of ``contract_helpers.ENGINES`` in turn; a third engine passes
the contract by adding itself there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_helpers import ENGINES, EngineUnderTest

from fraudstream.config import Settings
from fraudstream.services import manager


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, kafka_ready: Settings,
           postgres_ready: Settings) -> Iterator[EngineUnderTest]:
    """Each engine in turn; the Spark cluster is started for the Spark engine only (no-op when up)."""
    if request.param == "spark":
        manager.up(kafka_ready, ["spark"])
    yield ENGINES[request.param]


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"
