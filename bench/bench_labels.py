"""Cost of the label stream in the feature core: micro-batches of events with a label for every
transaction versus the same events without labels, in events per wall and per CPU second.

    .venv/bin/python bench/bench_labels.py [--events 200000] [--against /path/to/other/checkout]

Each checkout (this one, plus every --against, e.g. a worktree of main) runs in its own process with
its own fraudstream on PYTHONPATH, on the same deterministic stream, one after the other; take the
machine's load average (printed) into account on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "bench_labels.json"
ORIGIN_US = 1_767_225_600_000_000


def stream(events: int, accounts: int, merchants: int, rate: float, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transactions at ``rate`` per simulated second and one label per transaction, labeled 0-24 h later."""
    rng = np.random.default_rng(seed)
    times = ORIGIN_US + np.sort(rng.uniform(0, events / rate, events) * 1e6).astype(np.int64)
    ids = np.array([f"t{n}" for n in range(events)], dtype=object)
    merchant = np.array([f"m{m}" for m in rng.zipf(1.3, events) % merchants], dtype=object)
    account = np.array([f"a{a}" for a in rng.integers(0, accounts, events)], dtype=object)
    transactions = pd.DataFrame({
        "transaction_id": ids, "event_time_us": times, "account_id": account,
        "amount": rng.gamma(2.0, 30.0, events).round(2), "currency": "USD", "merchant_id": merchant,
        "merchant_category": "grocery", "payment_method": "credit_card", "channel": "online", "country": "US",
        "latitude": rng.uniform(30, 45, events), "longitude": rng.uniform(-120, -70, events), "device_id": account,
    })
    labeled_at = times + rng.uniform(0, 86_400e6, events).astype(np.int64)
    order = np.argsort(labeled_at, kind="stable")
    labels = pd.DataFrame({
        "transaction_id": ids[order], "account_id": account[order], "merchant_id": merchant[order],
        "is_fraud": rng.random(events)[order] < 0.01, "scenario": None, "labeled_at_us": labeled_at[order],
    })
    return transactions, labels


def run(transactions: pd.DataFrame, labels: pd.DataFrame | None, size: int) -> dict[str, float]:
    """Micro-batches of ``size`` events; before each, the labels made by then (as they would arrive). Also
    what the state holds at the end: bytes per account (account part) and per label applied (merchant part,
    with the duplicate index derived from it)."""
    from fraudstream.features import FeatureState

    state = FeatureState()
    times = transactions["event_time_us"].to_numpy()
    label_times = labels["labeled_at_us"].to_numpy() if labels is not None else None
    sent = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(transactions), size):
        if labels is not None:
            upto = int(np.searchsorted(label_times, times[start], side="right"))
            if upto > sent:
                state.apply_labels(labels.iloc[sent:upto])
                sent = upto
        state.process(transactions.iloc[start : start + size])
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    events = len(transactions)
    stats = state.stats()
    derived = getattr(state.merchants, "derived_nbytes", lambda: 0)()  # checkouts without a derived index
    return {"events_per_second": events / wall, "events_per_cpu_second": events / cpu, "labels_applied": sent,
            "simulated_days": float(times[-1] - times[0]) / 86_400e6, "accounts": stats.accounts,
            "account_bytes_per_account": stats.account_bytes / max(stats.accounts, 1),
            "merchant_bytes": stats.merchant_bytes + derived,
            "snapshot_bytes": len(state.snapshot())}


def worker(args: argparse.Namespace) -> None:
    transactions, labels = stream(args.events, args.accounts, args.merchants, args.rate)
    import fraudstream

    figures = {"no labels": run(transactions, None, args.batch),
               "a label per event": run(transactions, labels, args.batch)}
    print(json.dumps({"code": str(Path(fraudstream.__file__).parents[1]), **figures}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=2.0, help="events per simulated second")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--against", action="append", default=[], help="another checkout to measure too")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    here = str(Path(__file__).resolve().parents[1])
    for checkout in args.against:
        if not (Path(checkout) / "fraudstream" / "features").is_dir():
            parser.error(f"--against {checkout}: no fraudstream package there (give a checkout of the project)")
    passed = [f"--{name}={getattr(args, name)}" for name in ("events", "accounts", "merchants", "rate", "batch")]
    rows = {}
    console = Console()
    for checkout in [here, *args.against]:
        with console.status(f"measuring {checkout}"):
            env = {**os.environ, "PYTHONPATH": checkout}
            done = subprocess.run([sys.executable, __file__, "--worker", *passed], env=env, check=True,
                                  capture_output=True, text=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        if Path(figures.pop("code")) != Path(checkout).resolve():
            raise SystemExit(f"{checkout}: the worker imported fraudstream from elsewhere (check PYTHONPATH)")
        rows[checkout] = figures
    load = os.getloadavg()
    table = Table(title=f"feature core, {args.events:,} events in batches of {args.batch}, "
                        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for column in ("checkout", "labels", "events/s", "events/CPU-s", "share of label-free (CPU)"):
        table.add_column(column)
    for checkout, figures in rows.items():
        free = figures["no labels"]["events_per_cpu_second"]
        for mode, result in figures.items():
            table.add_row(checkout, mode, f"{result['events_per_second']:,.0f}",
                          f"{result['events_per_cpu_second']:,.0f}", f"{result['events_per_cpu_second'] / free:.0%}")
    console.print(table)
    sizes = Table(title="state at the end (bytes)")
    for column in ("checkout", "labels", "simulated days", "per account (account part)", "merchant part",
                   "merchant part: more per label", "snapshot per account"):
        sizes.add_column(column)
    for checkout, figures in rows.items():
        for mode, result in figures.items():
            if "merchant_bytes" not in result:
                continue
            extra = result["merchant_bytes"] - figures["no labels"]["merchant_bytes"]
            per_label = extra / result["labels_applied"] if result["labels_applied"] else None
            sizes.add_row(checkout, mode, f"{result['simulated_days']:.1f}",
                          f"{result['account_bytes_per_account']:,.0f}", f"{result['merchant_bytes']:,}",
                          "" if per_label is None else f"{per_label:,.1f}",
                          f"{result['snapshot_bytes'] / max(result['accounts'], 1):,.0f}")
    console.print(sizes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load_average": load, "settings": vars(args), "checkouts": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
