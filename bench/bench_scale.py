"""Cost against population: the engines' stateful step (the feature core) on the same number of events
drawn from populations of 10,000 to 10 million accounts, with a label for every transaction and without.

    .venv/bin/python bench/bench_scale.py [--populations 10000,100000,1000000,10000000] [--events 200000]

For each population the live producer's own simulator (``TrafficSource``, mixed traffic) makes the first
--events transactions of a simulated week, and a label for each one, due after a delay scaled to the
stream's simulated span (fraud after 1-10 %, legitimate after 10-40 % of it, so most labels arrive during
the run, the rest would come after it). Each case then runs in its own process, so its peak RSS is its own:
micro-batches of --batch events, the labels due by each batch applied first (as the engines do), a
checkpoint (``FeatureState.snapshot()``, what the local engine writes per partition) every
--checkpoint-events events, and at the end a restore of the last checkpoint. The Spark job is not
measured here (bench_spark.py).

Per case: events per wall second and CPU microseconds per event of the batches (checkpoints excluded),
peak RSS of the process and its growth over the loaded stream, live accounts and state bytes per account
at the end, median checkpoint bytes and seconds, and the restore time; docs/bench_scale.png plots the
costs against the population. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import DOCUMENT, BenchRun

ORIGIN_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SEED = 7
MERCHANTS = 2_000
#: Beside docs/benchmarks.md, which links it (bench/results/ is not committed).
PICTURE = DOCUMENT.parent / "bench_scale.png"


def generate(accounts: int, events: int, out: Path) -> dict[str, float]:
    """The first ``events`` of a population's simulated traffic and a label for each, written as a history."""
    from fraudstream.history import History, write_history
    from fraudstream.simulate.backfill import LabelDelays, to_tables
    from fraudstream.simulate.live import Mode, TrafficSource
    from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS, SCENARIO_NAMES

    began = time.perf_counter()
    source = TrafficSource(Mode.all, SEED, accounts, MERCHANTS, None, DEFAULT_SCENARIO_WEIGHTS, start_us=ORIGIN_US,
                           population_start_us=ORIGIN_US)
    built = time.perf_counter() - began
    columns = source.take_events(events)
    span_s = max(1.0, (int(columns["time_us"][-1]) - int(columns["time_us"][0])) / 1e6)
    delays = LabelDelays(fraud_s=(0.01 * span_s, 0.1 * span_s), legit_s=(0.1 * span_s, 0.4 * span_s))
    transactions, labels = to_tables(source.population, columns, np.random.default_rng([SEED, 9]), "tx-", delays)
    write_history(History(transactions, labels, SEED, int(columns["time_us"][0]), int(columns["time_us"][-1]) + 1),
                  out, SCENARIO_NAMES)
    return {"population_build_s": round(built, 1), "generate_s": round(time.perf_counter() - began, 1),
            "simulated_span_h": round(span_s / 3600, 2), "population_bytes_per_account":
                round(source.population.nbytes() / accounts, 1)}


def rss_mb() -> float:
    """This process's current resident set (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(history_dir: Path, with_labels: bool, batch: int, checkpoint_events: int) -> dict[str, float]:
    """One case in this process: batches with (or without) labels, checkpoints, a restore."""
    from fraudstream.features import FeatureState
    from fraudstream.history import read_history

    history = read_history(history_dir)
    transactions, labels = history.transactions, history.labels
    loaded_mb = rss_mb()
    times = transactions["event_time_us"].to_numpy()
    label_times = labels["labeled_at_us"].to_numpy()
    state = FeatureState()
    applied = 0
    checkpoints: list[tuple[int, float]] = []
    wall = cpu = 0.0
    last = b""
    for start in range(0, len(transactions), batch):
        began, began_cpu = time.perf_counter(), time.process_time()
        if with_labels:
            upto = int(np.searchsorted(label_times, times[start], side="right"))
            if upto > applied:
                state.apply_labels(labels.iloc[applied:upto])
                applied = upto
        state.process_rows(transactions.iloc[start:start + batch])
        wall += time.perf_counter() - began
        cpu += time.process_time() - began_cpu
        done = min(start + batch, len(transactions))
        if done // checkpoint_events > start // checkpoint_events or done == len(transactions):
            began = time.perf_counter()
            last = state.snapshot()
            checkpoints.append((len(last), time.perf_counter() - began))
    began = time.perf_counter()
    FeatureState.restore(last)
    restore_s = time.perf_counter() - began
    stats = state.stats()
    events = len(transactions)
    return {
        "events": events, "labels_applied": applied, "events_per_second": events / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_loading_mb": loaded_mb, "live_accounts": stats.accounts, "live_merchants": stats.merchants,
        "state_bytes_per_account": stats.bytes_per_account,
        "checkpoints": len(checkpoints),
        "checkpoint_bytes": float(np.median([size for size, _ in checkpoints])),
        "checkpoint_s": float(np.median([seconds for _, seconds in checkpoints])),
        "last_checkpoint_bytes": checkpoints[-1][0], "restore_s": restore_s,
    }


def plot(results: list[dict[str, object]], path: Path) -> None:
    """Cost against population (log scale), with and without labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("cpu_us_per_event", "CPU µs per event"), ("peak_rss_mb", "peak RSS (MB)"),
              ("state_bytes_per_account", "state bytes per live account"),
              ("last_checkpoint_bytes", "checkpoint (MB)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(16, 4))
    for axis, (key, title) in zip(axes, panels, strict=True):
        for labels, marker in (("off", "o"), ("on", "s")):
            rows = [row for row in results if row["labels"] == labels]
            values = [row[key] / (1e6 if key == "last_checkpoint_bytes" else 1) for row in rows]
            axis.plot([row["accounts"] for row in rows], values, marker=marker, label=f"labels {labels}")
        axis.set_xscale("log")
        axis.set_xlabel("accounts in the population")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--populations", default="10000,100000,1000000,10000000",
                        help="comma-separated account counts")
    parser.add_argument("--events", type=int, default=200_000, help="events per case (the same for every case)")
    parser.add_argument("--batch", type=int, default=2_000, help="events per micro-batch")
    parser.add_argument("--checkpoint-events", type=int, default=50_000, help="events between two checkpoints")
    parser.add_argument("--worker", nargs=2, metavar=("HISTORY_DIR", "LABELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), args.worker[1] == "on", args.batch, args.checkpoint_events)))
        return
    populations = [int(value) for value in args.populations.split(",")]
    results: list[dict[str, object]] = []
    with BenchRun("bench_scale", settings=vars(args)) as run, tempfile.TemporaryDirectory() as scratch:
        for accounts in populations:
            folder = Path(scratch) / str(accounts)
            run.console.print(f"simulating {args.events:,} events of {accounts:,} accounts")
            generated = generate(accounts, args.events, folder)
            for labels in ("off", "on"):
                run.console.print(f"  feature core, labels {labels}")
                done = subprocess.run([sys.executable, __file__, "--worker", str(folder), labels,
                                       f"--batch={args.batch}", f"--checkpoint-events={args.checkpoint_events}"],
                                      check=True, capture_output=True, text=True)
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                results.append({"accounts": accounts, "labels": labels, **generated, **figures})
        run.figures["cases"] = results
        plot(results, PICTURE)
        run.table(f"feature core, {args.events:,} events per case in batches of {args.batch:,}, a checkpoint every "
                  f"{args.checkpoint_events:,} events", [
                      "accounts", "labels", "labels applied", "events/s", "CPU µs/event", "peak RSS MB",
                      "RSS growth MB", "live accounts", "state B/account", "checkpoint MB", "checkpoint s",
                      "restore s"],
                  [[f"{row['accounts']:,}", row["labels"], f"{row['labels_applied']:,}",
                    f"{row['events_per_second']:,.0f}", f"{row['cpu_us_per_event']:,.1f}", f"{row['peak_rss_mb']:,.0f}",
                    f"{row['peak_rss_mb'] - row['rss_after_loading_mb']:,.0f}", f"{row['live_accounts']:,}",
                    f"{row['state_bytes_per_account']:,.0f}", f"{row['checkpoint_bytes'] / 1e6:,.1f}",
                    f"{row['checkpoint_s']:.3f}", f"{row['restore_s']:.3f}"] for row in results],
                  note="Checkpoint MB and s: median over the run's checkpoints (each is the whole state today); "
                       "RSS growth: peak over the process's RSS once the stream was loaded.")
        run.table("the simulated streams", ["accounts", "population build s", "population B/account",
                                            "simulated span h"],
                  [[f"{row['accounts']:,}", f"{row['population_build_s']:.1f}",
                    f"{row['population_bytes_per_account']:.0f}", f"{row['simulated_span_h']:,.2f}"]
                   for row in results if row["labels"] == "off"])
        run.note(f"![cost against population]({PICTURE.name}) (`{PICTURE.relative_to(PICTURE.parents[1])}`, "
                 "written by this run)")


if __name__ == "__main__":
    main()
