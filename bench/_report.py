"""The one result writer of every bench: its figures as JSON and its tables as Markdown in bench/results/, each
stamped with the machine, the load average sampled during the run, the commit and the date, so that no
figure travels without the conditions it was measured under.

In a bench::

    from _report import BenchRun, add_repeat_argument, spread

    with BenchRun("bench_decode", settings=vars(args)) as run:
        ...                                    # measure (the load average is sampled meanwhile)
        run.table("title", ["case", "events/s"], [["a", "1,000"]], note="how to read it")
        run.figures["cases"] = results         # anything JSON can hold

On leaving the block the tables are printed and ``bench/results/<bench>-<UTC stamp>.{json,md}`` written.
``python bench/_report.py`` (``make bench-report``) collects the newest Markdown of each bench into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
REPOSITORY = BENCH_DIR.parent
DOCUMENT = REPOSITORY / "docs" / "benchmarks.md"
#: Seconds between two load-average samples.
LOAD_SAMPLE_INTERVAL_S = 5.0


def machine() -> dict[str, object]:
    """CPU model, logical cores and memory of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": memory_gb, "system": platform.platform(),
            "python": platform.python_version()}


def commit() -> dict[str, object]:
    """The checkout's commit and whether its tracked files differ from it (a dirty run is said so)."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True,
                                    check=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": None if changed is None else bool(changed)}


def spread(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """min / median / max of repeated runs (``runs`` says how many were measured)."""
    measured = [float(value) for value in values if value is not None]
    if not measured:
        return {"min": None, "median": None, "max": None, "runs": 0}
    return {"min": min(measured), "median": statistics.median(measured), "max": max(measured),
            "runs": len(measured)}


def format_spread(figures: dict[str, float | int | None], digits: int = 0) -> str:
    """``median (min-max)`` of a ``spread``; the bare value for a single run."""
    if not figures.get("runs"):
        return "-"
    median = f"{figures['median']:,.{digits}f}"
    if figures["runs"] == 1:
        return median
    return f"{median} ({figures['min']:,.{digits}f}-{figures['max']:,.{digits}f})"


def add_repeat_argument(parser: argparse.ArgumentParser, default: int = 3) -> None:
    """``--repeat N``: absolute figures are measured N times and shown as median (min-max)."""
    parser.add_argument("--repeat", type=int, default=default,
                        help="runs per measurement; tables show median (min-max) of them")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are written as given (format the numbers before)."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(column) for column in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


class LoadSampler:
    """Samples the 1-minute load average in a daemon thread: the run's start, end, max and mean."""

    def __init__(self, interval_s: float = LOAD_SAMPLE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(os.getloadavg()[0])

    def start(self) -> None:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 1)
        self.samples.append(os.getloadavg()[0])
        return {"start": self.samples[0], "end": self.samples[-1], "max": max(self.samples),
                "mean": round(statistics.fmean(self.samples), 2), "samples": len(self.samples)}


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Target:
    """A figure with the floor and goal it is held to (``higher`` or ``lower`` is better)."""

    figure: str
    measured: float | None
    floor: float
    goal: float
    unit: str = ""
    better: str = "higher"

    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        def meets(limit: float) -> bool:
            return self.measured >= limit if self.better == "higher" else self.measured <= limit
        return "goal met" if meets(self.goal) else "floor met" if meets(self.floor) else "below floor"


@dataclass
class BenchRun:
    """One run of one bench: collects tables and figures, writes them with their context on exit."""

    bench: str
    settings: dict[str, object] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    console: Console = field(default_factory=lambda: Console(width=160))
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    paths: tuple[Path, Path] | None = None

    def __post_init__(self) -> None:
        self._load = LoadSampler()
        self._began = time.perf_counter()
        self._commit = commit()  # the code that runs: read at the start, not after a checkout during the run

    def __enter__(self) -> BenchRun:
        self._load.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        load = self._load.stop()
        if kind is not None:
            return  # a failed run writes nothing: no half figures in bench/results/
        self.write(load)

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], note: str = "") -> None:
        """A table of this run (cells formatted by the bench); printed and written as Markdown on exit."""
        self.sections.append(Section(title, list(columns), [[str(value) for value in row] for row in rows], note))

    def target(self, figure: str, measured: float | None, floor: float, goal: float, unit: str = "",
               better: str = "higher") -> None:
        """A figure held to a floor and a goal; docs/benchmarks.md lists every bench's targets in one table."""
        self.targets.append(Target(figure, measured, floor, goal, unit, better))

    def note(self, text: str) -> None:
        """A line of text under the tables (what the figures mean, what a ratio compares)."""
        self.notes.append(text)

    def context(self, load: dict[str, float]) -> dict[str, object]:
        return {"bench": self.bench, "date": self.started.isoformat(timespec="seconds"),
                "wall_s": round(time.perf_counter() - self._began, 1), "machine": machine(), "load_average": load,
                **self._commit, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}

    def markdown(self, context: dict[str, object]) -> str:
        host, load = context["machine"], context["load_average"]
        dirty = " (uncommitted changes)" if context.get("dirty") else ""
        lines = [f"## {self.bench}", "",
                 f"`{context['command']}` on {context['date']}, commit `{str(context['commit'])[:12]}`{dirty}; "
                 f"{host['cpu']}, {host['cores']} cores, {host['memory_gb']} GB RAM; load average (1 min) "
                 f"{load['start']:.2f} at start, {load['end']:.2f} at end, max {load['max']:.2f} "
                 f"({load['samples']} samples); {context['wall_s']:,.0f} s.", ""]
        if self.targets:
            lines += ["**Targets**", "", target_table([(self.bench, target) for target in self.targets]), ""]
        for section in self.sections:
            lines += [f"**{section.title}**", "", markdown_table(section.columns, section.rows), ""]
            if section.note:
                lines += [section.note, ""]
        lines += [*(f"{text}\n" for text in self.notes)]
        return "\n".join(lines).rstrip() + "\n"

    def write(self, load: dict[str, float]) -> tuple[Path, Path]:
        context = self.context(load)
        for section in self.sections:
            printed = Table(title=section.title, caption=section.note or None)
            for number, column in enumerate(section.columns):
                printed.add_column(column, justify="left" if number == 0 else "right")
            for row in section.rows:
                printed.add_row(*row)
            self.console.print(printed)
        for text in self.notes:
            self.console.print(text)
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = self.started.strftime("%Y%m%dT%H%M%SZ")
        json_path, markdown_path = RESULTS / f"{self.bench}-{stamp}.json", RESULTS / f"{self.bench}-{stamp}.md"
        json_path.write_text(json.dumps({"context": context, "settings": self.settings, "figures": self.figures,
                                         "targets": [vars(target) for target in self.targets],
                                         "tables": [vars(section) for section in self.sections]},
                                        indent=2, default=str) + "\n")
        markdown_path.write_text(self.markdown(context))
        self.console.print(f"load average {load['start']:.2f} -> {load['end']:.2f} (max {load['max']:.2f}); "
                           f"results: {json_path}, {markdown_path.name}")
        self.paths = (json_path, markdown_path)
        return self.paths


def target_table(targets: Iterable[tuple[str, Target]]) -> str:
    def value(number: float | None, unit: str) -> str:
        return "-" if number is None else f"{number:,.{2 if abs(number) < 10 else 0}f}{unit}"

    return markdown_table(["figure", "measured", "floor", "goal", "verdict", "bench"],
                          [[target.figure, value(target.measured, target.unit), value(target.floor, target.unit),
                            value(target.goal, target.unit), target.verdict(), f"[{bench}](#{bench})"]
                           for bench, target in targets])


def latest_targets(tables: dict[str, Path]) -> list[tuple[str, Target]]:
    """The targets of each bench's newest run (from the JSON beside its Markdown)."""
    found = []
    for bench, path in tables.items():
        data = path.with_suffix(".json")
        if data.exists():
            found += [(bench, Target(**target)) for target in json.loads(data.read_text()).get("targets", [])]
    return found


def latest_tables(results: Path = RESULTS) -> dict[str, Path]:
    """The newest Markdown result of each bench (file names end in a sortable UTC stamp)."""
    newest: dict[str, Path] = {}
    for path in sorted(results.glob("*-*.md")):
        bench = path.stem.rsplit("-", 1)[0]
        newest[bench] = path  # sorted: the last one wins
    return dict(sorted(newest.items()))


def collect(results: Path = RESULTS, document: Path = DOCUMENT) -> Path:
    """docs/benchmarks.md from the newest table of every bench."""
    tables = latest_tables(results)
    if not tables:
        raise SystemExit(f"no results in {results}: run `make bench` (or one bench/bench_*.py) first")
    parts = ["# Benchmarks", "",
             "Generated by `make bench-report` from the newest result of each `bench/bench_*.py` in `bench/results/`"
             " (`make bench` runs them all). Every table states the machine, the load average during its run and the "
             "commit it measured: figures from a shared or loaded machine are lower than a quiet one gives, and "
             "runs on different days are not side by side. Ratios compare runs made in the same bench run.", "",
             "Contents: " + ", ".join(f"[{bench}](#{bench})" for bench in tables), ""]
    targets = latest_targets(tables)
    if targets:
        parts += ["## Targets", "", "Each figure from its bench's newest run (median of its repeats), against the "
                  "floor and goal it is held to.", "", target_table(targets), ""]
    parts += [path.read_text().rstrip() + "\n" for path in tables.values()]
    document.parent.mkdir(parents=True, exist_ok=True)
    document.write_text("\n".join(parts))
    return document


if __name__ == "__main__":
    written = collect()
    print(f"{written.relative_to(REPOSITORY)}: {', '.join(latest_tables())}")
