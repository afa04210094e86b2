"""The demo's traffic: customers and attackers of one simulated population on one clock, and a trickle of
malformed events.

The attackers simulate the same population and traffic and send only their fraud, at a share that gives
``hacker_rate`` beside the customers' ``rate``; so every attack hits accounts and merchants whose real
history the processor has seen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.simulate.live import (
    SIMULATED_LABEL_DELAYS,
    LiveProducer,
    Mode,
    TrafficSource,
    hacker_fraud_share,
)
from fraudstream.simulate.scenarios import DEFAULT_SCENARIO_WEIGHTS

MALFORMED_EVENT = b'{"transaction_id": "demo-malformed", "amount": '
#: The modes the demo sends, customers first.
MODES = (Mode.normal, Mode.hacker)


@dataclass(frozen=True)
class TrafficPlan:
    """One simulated world (the model's population, seed 7) and each mode's average events per second."""

    rate: float
    hacker_rate: float
    population_start_us: int
    seed: int = 7
    accounts: int = 10_000
    merchants: int = 2_000

    def rate_of(self, mode: Mode) -> float:
        return self.hacker_rate if mode is Mode.hacker else self.rate

    def source(self, mode: Mode, start_us: int) -> TrafficSource:
        """``mode``'s traffic from the simulated moment ``start_us`` on."""
        share = hacker_fraud_share(self.rate, self.hacker_rate) if mode is Mode.hacker else None
        return TrafficSource(mode, self.seed, self.accounts, self.merchants, share, DEFAULT_SCENARIO_WEIGHTS,
                             start_us=start_us, population_start_us=self.population_start_us)

    def producer(self, settings: Settings, source: TrafficSource, time_scale: float,
                 record_send_times: bool = False) -> LiveProducer:
        return LiveProducer(settings, source, self.rate_of(source.mode), SIMULATED_LABEL_DELAYS,
                            settings.transactions_topic, settings.labels_topic, time_scale=time_scale,
                            record_send_times=record_send_times)

    def arguments(self) -> list[str]:
        """This plan as arguments of ``python -m fraudstream.demo.hold_producer``."""
        return ["--rate", repr(self.rate), "--hacker-rate", repr(self.hacker_rate),
                "--population-start-us", str(self.population_start_us), "--seed", str(self.seed),
                "--accounts", str(self.accounts), "--merchants", str(self.merchants)]


class MalformedTrickle:
    """One malformed event a second on the transactions topic (each must reach the dead-letter topic)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-malformed", daemon=True)

    def start(self) -> MalformedTrickle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        producer = kafka.producer(self.settings)
        while not self._stop.wait(1.0):
            producer.produce(self.settings.transactions_topic, key=b"demo-malformed", value=MALFORMED_EVENT)
            self.sent += 1
        producer.flush(10)
