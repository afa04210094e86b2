"""Pre-resolved jars (FRAUDSTREAM_JARS_DIR, set by the container image) are used as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.services.exceptions import ServiceError
from fraudstream.services.maven import project_jars


def test_jars_dir_folder_is_used_without_maven(tmp_path: Path) -> None:
    folder = tmp_path / "jars" / "spark"
    folder.mkdir(parents=True)
    (folder / "spark-sql-kafka.jar").write_bytes(b"")
    settings = Settings(state_dir=tmp_path / "state", jars_dir=tmp_path / "jars")
    assert project_jars(settings, "spark") == folder


def test_jars_dir_without_jars_names_the_folder(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", jars_dir=tmp_path / "jars")
    with pytest.raises(ServiceError, match="FRAUDSTREAM_JARS_DIR"):
        project_jars(settings, "kafka")
