"""Every promote and rollback writes a line in model_events (real PostgreSQL, the commands as a user runs them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import Settings, get_settings
from fraudstream.store.model_events import recent_model_events
from fraudstream.store.schema import migrate
from fraudstream.testing.example_model import publish_example_model

pytestmark = pytest.mark.integration


@pytest.fixture
def lifecycle_env(settings: Settings, scratch_url: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The commands' settings: a fresh models directory and a scratch database."""
    migrate(scratch_url)
    monkeypatch.setenv("FRAUDSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDSTREAM_DATABASE_URL", scratch_url)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_promote_and_rollback_are_logged(lifecycle_env: Settings) -> None:
    models = lifecycle_env.models_dir
    first = publish_example_model(models, seed=1, promote=False)
    second = publish_example_model(models, seed=2, promote=False)
    runner = CliRunner()
    for version in (first, second):
        result = runner.invoke(app, ["model", "promote", version])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["model", "rollback"])
    assert result.exit_code == 0, result.output
    assert f"production model is now {first} (rolled back from {second})" in " ".join(result.output.split())
    refused = runner.invoke(app, ["model", "rollback"])
    assert refused.exit_code != 0 and "no earlier production version" in refused.output

    with psycopg.connect(lifecycle_env.database_url) as connection:
        events = recent_model_events(connection)
    assert [(e["kind"], e["decision"], e["production_before"], e["production_after"]) for e in events] == [
        ("rollback", "rolled_back", second, first),
        ("promote", "promoted", first, second),
        ("promote", "promoted", None, first),
    ]
    assert all(event["actor"] == "cli" for event in events)


def test_a_promotion_without_the_table_warns_what_to_run(settings: Settings, scratch_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FRAUDSTREAM_DATABASE_URL", scratch_url)  # not migrated
    get_settings.cache_clear()
    try:
        version = publish_example_model(get_settings().models_dir, promote=False)
        result = CliRunner().invoke(app, ["model", "promote", version])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "fraudstream db init" in result.output
