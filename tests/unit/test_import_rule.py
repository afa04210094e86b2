"""The layer rule of ARCHITECTURE.md, enforced: `lint-imports` with the contracts in pyproject.toml.

Every import statement counts, also one inside a function: that is where upward imports used to hide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(folder: Path) -> subprocess.CompletedProcess[str]:
    """The project's import contracts checked over the ``fraudstream`` package inside ``folder``."""
    command = [str(Path(sys.executable).with_name("lint-imports")), "--config", str(ROOT / "pyproject.toml"),
               "--no-cache"]
    return subprocess.run(command, cwd=folder, env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True,
                          text=True, timeout=120, check=False)


def test_every_import_points_down_and_the_core_imports_no_driver() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "fraudstream", tmp_path / "fraudstream",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "migrations", "*.json"))
    return tmp_path


@pytest.mark.parametrize(("module", "source", "reported"), [
    ("model/upward.py", "def build() -> None:\n    from fraudstream.simulate import backfill\n",
     "fraudstream.model.upward -> fraudstream.simulate.backfill"),
    ("features/upward.py", "from fraudstream.engines import local\n",
     "fraudstream.features.upward -> fraudstream.engines.local"),
    ("simulate/upward.py", "def start() -> None:\n    from fraudstream.model.registry import Registry\n",
     "fraudstream.simulate.upward -> fraudstream.model.registry"),
    ("events/driver.py", "def send() -> None:\n    import confluent_kafka\n",
     "fraudstream.events.driver -> confluent_kafka"),
])
def test_an_upward_import_fails_the_rule_also_inside_a_function(package_copy: Path, module: str, source: str,
                                                                 reported: str) -> None:
    (package_copy / "fraudstream" / module).write_text(source)
    result = lint_imports(package_copy)
    assert result.returncode == 1, result.stdout
    assert reported in result.stdout, result.stdout


def test_a_new_top_level_module_must_be_given_a_layer(package_copy: Path) -> None:
    (package_copy / "fraudstream" / "newcomer.py").write_text('"""In no layer yet."""\n')
    result = lint_imports(package_copy)
    assert result.returncode == 1 and "fraudstream.newcomer" in result.stdout, result.stdout
