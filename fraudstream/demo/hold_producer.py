"""One producer of the demo's hold phase, as a child process: ``python -m fraudstream.demo.hold_producer``.

A child process per mode, so that a signal stops each cleanly: the first SIGINT or SIGTERM ends its run,
which flushes what it sent and sends its pending labels; then it exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from fraudstream.config import get_settings
from fraudstream.demo.traffic import MODES, TrafficPlan
from fraudstream.simulate.live import Mode, SimulatedClock

log = logging.getLogger(__name__)


def _interrupt_once(_signum: int, _frame: FrameType | None) -> None:
    """The first SIGINT/SIGTERM interrupts the run (which then flushes); later ones must not cut the flush."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """One hold-phase producer: ``mode``'s traffic from ``--start-us`` on the clock that shows it at
    ``--origin-wall-s``, until SIGINT or SIGTERM; endpoints and topics from the environment."""
    parser = argparse.ArgumentParser(prog="python -m fraudstream.demo.hold_producer")
    parser.add_argument("mode", choices=[mode.value for mode in MODES])
    parser.add_argument("--start-us", type=int, required=True)
    parser.add_argument("--origin-wall-s", type=float, required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--hacker-rate", type=float, required=True)
    parser.add_argument("--population-start-us", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt_once)
    try:
        plan = TrafficPlan(args.rate, args.hacker_rate, args.population_start_us, args.seed, args.accounts,
                           args.merchants)
        producer = plan.producer(get_settings(), plan.source(Mode(args.mode), args.start_us), args.time_scale)
        summary = producer.run(None, None, progress=False,
                               clock=SimulatedClock(args.origin_wall_s, args.start_us, args.time_scale))
    except KeyboardInterrupt:  # stopped before its run began: nothing was sent
        log.info("hold producer stopped before sending mode=%s", args.mode)
        return 0
    log.info("hold producer stopped mode=%s events=%d labels=%d delivery_failures=%d", args.mode,
             summary.events_sent, summary.labels_sent, summary.delivery_failures)
    return 1 if summary.delivery_failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
