"""Prometheus metrics of a running engine, served over HTTP.

Histograms are fed a whole batch at a time (NumPy bucket counts) rather than one Python call per
event, so that measuring latency costs little beside the work it measures.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

_REASON_DETAIL = re.compile(r": |, got ")


def dead_letter_kind(reason: str) -> str:
    """A dead letter's reason without the offending value ("amount must be > 0, got -5" -> "amount must
    be > 0"): few distinct kinds, so that it can be a metric label."""
    return _REASON_DETAIL.split(reason, maxsplit=1)[0][:80]


LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class BatchHistogram(Collector):
    """A histogram observed with arrays of values."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=self._counts.size)
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [(f"{bound:g}", count) for bound, count in zip(self.bounds.tolist(), cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        yield family


class EngineMetrics:
    """The metrics every engine reports; one instance per process, on its own registry."""

    def __init__(self, engine: str) -> None:
        self.registry = CollectorRegistry()
        self.engine = engine
        self.events = Counter("fraudstream_events", "Events handled, by outcome (scored, dead_lettered).",
                              ["outcome"], registry=self.registry)
        self.events_per_second = Gauge("fraudstream_events_per_second",
                                       "Events per second over the last batch.", registry=self.registry)
        self.decisions = Counter("fraudstream_decisions", "Scored events by decision.", ["decision"],
                                 registry=self.registry)
        self.batch_duration = BatchHistogram("fraudstream_batch_duration_seconds",
                                             "Wall time of one micro-batch, poll to database commit.")
        # A latency only when producers stamp wall-clock event times: a time-scaled simulation
        # (fraudstream produce / demo) stamps simulated times, and then this measures the clock offset.
        self.event_to_commit = BatchHistogram("fraudstream_event_time_to_commit_seconds",
                                              "Event time to database commit, per event (a latency only "
                                              "for wall-clock event times).")
        self.ingest_to_commit = BatchHistogram("fraudstream_ingest_to_commit_seconds",
                                               "Read from Kafka to database commit, per event.")
        self.produce_to_commit = BatchHistogram("fraudstream_produce_to_commit_seconds",
                                                "Kafka message timestamp (producer's send time) to database "
                                                "commit, per event; whatever the event time says.")
        for histogram in (self.batch_duration, self.event_to_commit, self.ingest_to_commit, self.produce_to_commit):
            self.registry.register(histogram)
        self.consumer_lag = Gauge("fraudstream_consumer_lag", "Messages behind the end of each partition.",
                                  ["partition"], registry=self.registry)
        self.feature_psi = Gauge("fraudstream_feature_psi", "Population stability index of a feature over recent "
                                 "batches against the model's training distribution (above 0.2: drift).",
                                 ["feature"], registry=self.registry)
        self.score_psi = Gauge("fraudstream_score_psi", "Population stability index of the score over recent "
                               "batches against the model's test scores.", registry=self.registry)
        self.model = Gauge("fraudstream_model_info", "1 for the model version in use.", ["model_version"],
                           registry=self.registry)
        self.dead_letters = Counter("fraudstream_dead_letters", "Events and labels sent to the dead-letter topic, "
                                    "by kind of reason.", ["reason"], registry=self.registry)
        self.state_keys = Gauge("fraudstream_state_keys", "Keys held in the feature state, by kind (account, "
                                "merchant); idle keys are evicted after their TTL.", ["kind"], registry=self.registry)
        self.label_lag = Gauge("fraudstream_label_lag", "Labels not yet read, per partition of the labels topic.",
                               ["partition"], registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        self.dependency_up = Gauge("fraudstream_dependency_up", "1 while a service the engine needs answers, "
                                   "0 during an outage it is riding out.", ["dependency"], registry=self.registry)
        self.dependency_outages = Counter("fraudstream_dependency_outages", "Outages of a needed service, counted "
                                          "when each one starts.", ["dependency"], registry=self.registry)
        self.dependency_outage_seconds = Counter("fraudstream_dependency_outage_seconds",
                                                 "Time spent waiting for a needed service, counted when each outage "
                                                 "ends.", ["dependency"], registry=self.registry)
        self._model_version: str | None = None

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (a daemon thread)."""
        start_http_server(port, registry=self.registry)

    def observe_batch(self, *, duration_s: float, committed_at_us: int, event_time_us: np.ndarray,
                      ingested_at_us: np.ndarray, decisions: Mapping[str, int], dead_lettered: int,
                      produced_at_us: np.ndarray | None = None) -> None:
        """One committed batch. ``produced_at_us``: the records' Kafka timestamps (CreateTime, set by
        the producer when it sends), the latency origin that holds under a simulated clock too."""
        scored = int(event_time_us.size)
        self.events.labels("scored").inc(scored)
        self.events.labels("dead_lettered").inc(dead_lettered)
        self.events_per_second.set((scored + dead_lettered) / duration_s if duration_s > 0 else 0.0)
        for decision, count in decisions.items():
            self.decisions.labels(decision).inc(count)
        self.batch_duration.observe_many(np.array([duration_s]))
        self.event_to_commit.observe_many((committed_at_us - event_time_us) / 1e6)
        self.ingest_to_commit.observe_many((committed_at_us - ingested_at_us) / 1e6)
        if produced_at_us is not None:
            self.produce_to_commit.observe_many((committed_at_us - produced_at_us) / 1e6)

    def set_lag(self, lag_by_partition: Mapping[int, int]) -> None:
        self.consumer_lag.clear()
        for partition, lag in lag_by_partition.items():
            self.consumer_lag.labels(str(partition)).set(lag)

    def set_state_keys(self, accounts: int, merchants: int) -> None:
        self.state_keys.labels("account").set(accounts)
        self.state_keys.labels("merchant").set(merchants)

    def observe_dead_letters(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.dead_letters.labels(dead_letter_kind(reason)).inc()

    def set_label_lag(self, lag_by_partition: Mapping[int, int]) -> None:
        self.label_lag.clear()
        for partition, lag in lag_by_partition.items():
            self.label_lag.labels(str(partition)).set(lag)
    def dependency_available(self, dependency: str, outage_s: float | None = None) -> None:
        """``dependency`` answers (again); ``outage_s``: how long the outage that just ended lasted."""
        self.dependency_up.labels(dependency).set(1)
        self.dependency_outages.labels(dependency)  # exported as 0 before the first outage
        if outage_s is not None:
            self.dependency_outage_seconds.labels(dependency).inc(outage_s)

    def dependency_lost(self, dependency: str) -> None:
        self.dependency_up.labels(dependency).set(0)
        self.dependency_outages.labels(dependency).inc()

    def set_drift(self, psi: Mapping[str, float]) -> None:
        """PSI of each feature (and ``score``) over the engine's recent batches against the model's training."""
        for name, value in psi.items():
            if name == "score":
                self.score_psi.set(value)
            else:
                self.feature_psi.labels(name).set(value)

    def set_model(self, version: str) -> None:
        if self._model_version is not None:
            self.model.remove(self._model_version)
        self.model.labels(version).set(1)
        self._model_version = version
