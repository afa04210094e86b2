"""The benches' one result writer: tables with their context, spreads of repeated runs, the collected report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

WRITER = Path(__file__).resolve().parents[2] / "bench" / "_report.py"


@pytest.fixture(scope="module")
def report():  # bench/ is not a package: loaded by path
    spec = importlib.util.spec_from_file_location("_report", WRITER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_report"] = module
    spec.loader.exec_module(module)
    return module


def test_spread_is_min_median_max_of_the_measured_runs(report) -> None:
    assert report.spread([3.0, 1.0, 2.0, None]) == {"min": 1.0, "median": 2.0, "max": 3.0, "runs": 3}
    assert report.spread([]) == {"min": None, "median": None, "max": None, "runs": 0}
    assert report.format_spread(report.spread([1000.0, 1200.0, 900.0])) == "1,000 (900-1,200)"
    assert report.format_spread(report.spread([2.5]), digits=1) == "2.5"


def test_markdown_table_escapes_pipes(report) -> None:
    assert report.markdown_table(["a", "b"], [["x|y", 1]]) == "| a | b |\n|---|---|\n| x\\|y | 1 |"


def test_a_run_writes_json_and_markdown_with_machine_load_and_commit(report, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    with report.BenchRun("bench_example", settings={"events": 10}) as run:
        run.table("throughput", ["engine", "events/s"], [["ours", "1,000"]], note="higher is better")
        run.figures["events_per_s"] = 1000.0
    json_path, markdown_path = run.paths
    written = json.loads(json_path.read_text())
    assert written["figures"] == {"events_per_s": 1000.0}
    assert written["settings"] == {"events": 10}
    context = written["context"]
    assert context["machine"]["cores"] and context["load_average"]["samples"] >= 2
    assert len(context["commit"]) == 40 and isinstance(context["dirty"], bool)
    text = markdown_path.read_text()
    assert text.startswith("## bench_example\n") and "| ours | 1,000 |" in text
    assert "cores" in text and "load average" in text and context["commit"][:12] in text


def test_a_failed_run_writes_nothing(report, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    with pytest.raises(RuntimeError), report.BenchRun("bench_broken") as run:
        run.table("t", ["a"], [["1"]])
        raise RuntimeError("measurement failed")
    assert list(tmp_path.iterdir()) == []


def test_the_report_takes_the_newest_table_of_each_bench(report, tmp_path) -> None:
    (tmp_path / "bench_a-20261201T000000Z.md").write_text("## bench_a\n\nold\n")
    (tmp_path / "bench_a-20261202T000000Z.md").write_text("## bench_a\n\nnew\n")
    (tmp_path / "bench_b-20261201T000000Z.md").write_text("## bench_b\n\nonly\n")
    document = report.collect(tmp_path, tmp_path / "docs" / "benchmarks.md")
    text = document.read_text()
    assert "new" in text and "old" not in text and "only" in text
    assert text.index("## bench_a") < text.index("## bench_b")


def test_targets_are_judged_and_collected_into_one_table(report, tmp_path, monkeypatch) -> None:
    assert report.Target("drain", 60_000, 50_000, 75_000).verdict() == "floor met"
    assert report.Target("p99", 40.0, 100.0, 50.0, " ms", "lower").verdict() == "goal met"
    assert report.Target("p99", 120.0, 100.0, 50.0, " ms", "lower").verdict() == "below floor"
    assert report.Target("start", None, 1.5, 1.0).verdict() == "not measured"
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    with report.BenchRun("bench_example") as run:
        run.target("backlog drain", 60_000.0, 50_000, 75_000, " ev/s")
    text = report.collect(tmp_path, tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in text and "| backlog drain | 60,000 ev/s | 50,000 ev/s | 75,000 ev/s | floor met |" in text
