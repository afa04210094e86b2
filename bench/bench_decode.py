"""Decode + validate throughput (events/s, CPU and wall): the per-record reference path against the
vectorized path of ``fast_decode.decode_transactions``, batches of 100 and 5,000, all valid and 1 % invalid.

    .venv/bin/python bench/bench_decode.py [--seconds 2] [--repeat 3]

Payloads are what the live producer sends (simulated traffic, stamped with event times). The invalid
ones are spread through the batch and rotate through a small catalogue (bad currency, a string amount,
a missing field, a NUL character, out-of-range latitude, truncated JSON, an unreal date). CPU time
(time.process_time) is the figure to compare on a shared machine; each figure is the median (min-max) of
``--repeat`` rounds of ``--seconds`` each, the two paths interleaved, so that load from other processes
hits both alike. Wall time is shown beside it; the machine, load and commit head the table (bench/_report.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import orjson
from _report import BenchRun, add_repeat_argument, format_spread, spread

from fraudstream.events import contract, fast_decode
from fraudstream.simulate.live import Mode, TrafficSource, stamp_events
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS

BATCH_SIZES = (100, 5_000)
INVALID_SHARE = 0.01
PATHS: dict[str, Callable[[Sequence[bytes | None]], contract.DecodedBatch]] = {
    "per-record (old)": contract.decode_transactions_per_record,
    "vectorized (new)": fast_decode.decode_transactions,
}


def live_payloads(count: int) -> list[bytes]:
    source = TrafficSource(Mode.all, seed=3, accounts=5_000, merchants=500, fraud_share=0.02,
                           scenarios=DEFAULT_SCENARIO_WEIGHTS)
    payloads: list[bytes] = []
    for chunk in source.chunks():
        payloads += stamp_events(chunk.bodies, 1_800_000_000.0, 1_800_000_000.0 + len(chunk.bodies) / 20_000)
        if len(payloads) >= count:
            return payloads[:count]
    return payloads


def spoil(payloads: list[bytes], share: float) -> list[bytes]:
    """Every 1/share-th payload broken in one of a few ways, as producers break them."""
    broken = list(payloads)
    step = round(1 / share)
    for number, position in enumerate(range(step // 2, len(broken), step)):
        event = orjson.loads(broken[position])
        bad = [
            {**event, "currency": "euro"}, {**event, "amount": str(event["amount"])},
            {k: v for k, v in event.items() if k != "device_id"}, {**event, "merchant_id": "merch\u0000"},
            {**event, "latitude": 123.0}, {**event, "event_time": "2026-02-30T00:00:00Z"},
        ]
        broken[position] = (orjson.dumps(bad[number % len(bad)]) if number % 7 != 6
                            else broken[position][: len(broken[position]) // 2])
    return broken


def measure(decode: Callable[[Sequence[bytes | None]], contract.DecodedBatch], batches: list[list[bytes]],
            seconds: float) -> dict[str, float]:
    count = calls = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - began < seconds or calls < 3:
        decoded = decode(batches[calls % len(batches)])
        count += len(decoded.positions) + len(decoded.rejected)
        calls += 1
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return {"events": count, "events_per_cpu_second": count / cpu, "events_per_second": count / wall,
            "cpu_us_per_event": 1e6 * cpu / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per path, case and round")
    add_repeat_argument(parser)
    args = parser.parse_args()
    payloads = live_payloads(100_000)
    with BenchRun("bench_decode", settings=vars(args)) as run:
        results: dict[str, dict[str, dict[str, object]]] = {}
        for size in BATCH_SIZES:
            for share in (0.0, INVALID_SHARE):
                batches = [spoil(payloads[i : i + size], share) if share else payloads[i : i + size]
                           for i in range(0, len(payloads) - size + 1, size)]
                case = f"batch {size:,}, " + (f"{share:.0%} invalid" if share else "all valid")
                rounds: dict[str, list[dict[str, float]]] = {name: [] for name in PATHS}
                for _ in range(args.repeat):
                    for name, decode in PATHS.items():
                        rounds[name].append(measure(decode, batches, args.seconds))
                results[case] = {name: {key: spread(figures[key] for figures in measured)
                                        for key in ("events_per_cpu_second", "events_per_second", "cpu_us_per_event")}
                                 for name, measured in rounds.items()}
        old, new = PATHS
        columns = ["case", *(f"{name} {unit}" for name in PATHS for unit in ("events/CPU-s", "events/s (wall)")),
                   "speed-up (CPU, medians)"]
        rows = [[case, *(format_spread(best[name][key]) for name in PATHS
                         for key in ("events_per_cpu_second", "events_per_second")),
                 f"{best[new]['events_per_cpu_second']['median'] / best[old]['events_per_cpu_second']['median']:.1f}x"]
                for case, best in results.items()]
        run.table("decode + validate", columns, rows,
                  note=f"median (min-max) of {args.repeat} rounds of {args.seconds:g} s per path and case, the two "
                       "paths interleaved in each round")
        run.figures["cases"] = results


if __name__ == "__main__":
    main()
