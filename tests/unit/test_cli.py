"""Every command answers --help with a description (walks the whole command tree)."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from fraudstream.cli import app

pytestmark = pytest.mark.unit


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


PATHS = command_paths(typer.main.get_command(app))


def test_the_foundation_commands_exist() -> None:
    assert {("services", "up"), ("services", "down"), ("services", "status"), ("services", "logs"),
            ("topics", "create"), ("db", "init")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "fraudstream")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert (command.help or "").strip(), f"{' '.join(path)} has no description"
