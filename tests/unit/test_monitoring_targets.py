"""Processors announce their metrics endpoint to Prometheus through files that they remove again."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.monitoring.targets import announced, prometheus_config, targets_dir

pytestmark = pytest.mark.unit


def test_endpoint_is_announced_while_running_and_stale_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    folder = targets_dir(settings)
    folder.mkdir(parents=True)
    finished = subprocess.Popen(["true"])  # a pid that has exited
    finished.wait()
    (folder / f"{finished.pid}.json").write_text("[]")
    with announced(settings, 19464, "group-a") as path:
        assert path.name == f"{os.getpid()}.json"
        assert json.loads(path.read_text()) == [
            {"targets": ["127.0.0.1:19464"], "labels": {"group": "group-a", "host": os.uname().nodename}}]
        assert not (folder / f"{finished.pid}.json").exists()
    assert list(folder.iterdir()) == []


def test_prometheus_config_reads_the_announced_targets_and_the_listed_ones() -> None:
    assert 'files: ["targets/*.json"]' in prometheus_config(())
    assert "static_configs" not in prometheus_config(())
    assert 'targets: ["localhost:9464", "h:1"]' in prometheus_config(["localhost:9464", "h:1"])
