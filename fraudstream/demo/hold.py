"""`fraudstream demo --keep`: after the summary, traffic goes on until Ctrl-C (or SIGTERM) while a person
looks around; a status line shows what the processor does with it.

The customers' and attackers' producers (with their delayed labels) continue the simulated world where the
measured part stopped, at the same time scale, on one clock they share; each is a child process
(``fraudstream.demo.hold_producer``) so that stopping is a signal, after which each flushes what it sent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from fraudstream.config import Settings
from fraudstream.demo.processor import processor_env
from fraudstream.demo.traffic import MODES, MalformedTrickle, TrafficPlan
from fraudstream.demo.view import HoldStatus, hold_status_line
from fraudstream.probes import Samples, sample_value, scrape

#: The shared clock starts this long after the producers are launched, so none starts with a backlog.
CLOCK_LEAD_S = 3.0
STOP_TIMEOUT_S = 30.0


@dataclass
class HoldTraffic:
    """The hold phase's producers: one child process per mode, all on one simulated clock from ``start_us``."""

    settings: Settings
    plan: TrafficPlan
    start_us: int
    time_scale: float
    logs: Path

    def __post_init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.malformed = MalformedTrickle(self.settings)

    def start(self) -> HoldTraffic:
        origin_wall_s = time.time() + CLOCK_LEAD_S
        for mode in MODES:
            command = [sys.executable, "-m", "fraudstream.demo.hold_producer", mode.value,
                       "--start-us", str(self.start_us), "--origin-wall-s", repr(origin_wall_s),
                       "--time-scale", repr(self.time_scale),
                       *self.plan.arguments()]
            log = (self.logs / f"demo-hold-{mode.value}.log").open("wb")
            self.processes.append(subprocess.Popen(command, env=processor_env(self.settings), stdout=log,
                                                   stderr=subprocess.STDOUT))
        self.malformed.start()
        return self

    def running(self) -> int:
        return sum(process.poll() is None for process in self.processes)

    def stop(self) -> list[int]:
        """SIGINT to each producer (it flushes and sends its pending labels), SIGKILL after STOP_TIMEOUT_S;
        returns their exit codes."""
        self.malformed.stop()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(STOP_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes


@contextmanager
def signals_ignored() -> Iterator[None]:
    """While stopping: a second Ctrl-C must not cut the shutdown short (it would leave children behind)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _counts(samples: Samples) -> tuple[int, int, int]:
    """Scored, alerted (review + block) and dead-lettered events, from the processor's counters."""
    def value(name: str, **labels: str) -> int:
        return int(sample_value(samples, name, **labels) or 0)

    return (value("fraudstream_events_total", outcome="scored"),
            value("fraudstream_decisions_total", decision="review") + value("fraudstream_decisions_total",
                                                                            decision="block"),
            value("fraudstream_events_total", outcome="dead_lettered"))


def hold(traffic: HoldTraffic, metrics_port: int, out: Console, processor: subprocess.Popen,
         console_url: str | None) -> None:
    """Run the hold phase until Ctrl-C/SIGTERM (KeyboardInterrupt), or until the processor stops: when it was
    asked to (exit 0: a Ctrl-C reached it first), everything stops as for Ctrl-C; otherwise it is an error."""
    where = f"; analyst console at {console_url}" if console_url else ""
    out.print(f"[bold]--keep[/]: producers, processor and analyst console keep running{where}; Ctrl-C stops "
              "everything")

    def counts() -> tuple[int, int, int]:
        try:
            return _counts(scrape(metrics_port, timeout_s=2.0))
        except OSError:
            return last

    last = (0, 0, 0)
    last = baseline = counts()
    began = time.monotonic()
    traffic.start()
    try:
        with Live(console=out, refresh_per_second=1, transient=False) as live:
            while processor.poll() is None:
                last = counts()
                live.update(hold_status_line(HoldStatus(
                    time.monotonic() - began, *(now - before for now, before in zip(last, baseline, strict=True)),
                    producers_running=traffic.running(), producers=len(traffic.processes))))
                time.sleep(1.0)
        if processor.returncode != 0:
            raise RuntimeError(f"the processor exited with code {processor.returncode} during the hold phase; "
                               "see its log")
        out.print("the processor stopped; stopping")
    except KeyboardInterrupt:
        out.print("stopping")
    finally:
        with signals_ignored():
            traffic.stop()
