"""What a running processor says about itself, read from outside: its /metrics samples and its
consumer group's partition assignment; and the wait for it to be ready.

Readiness is read from the systems that know, not from log text: the Kafka group coordinator says which
members hold which partitions (``describe_consumer_groups``), and an engine with a metrics endpoint
exports one ``fraudstream_consumer_lag`` series per partition it has taken over (its start offset
resolved, so anything produced from then on is processed). One parser (prometheus_client's) reads every
scrape. The demo, the pipeline bench and the tests wait with ``wait_until_assigned``.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from fraudstream import kafka
from fraudstream.config import Settings

#: Every sample of one scrape, keyed by metric name and sorted label pairs.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: The engine's per-partition gauge: one series for each partition the engine has taken over.
OWNED_PARTITIONS_METRIC = "fraudstream_consumer_lag"


class NotReady(RuntimeError):
    """A processor did not get its partitions in time (or exited); the message says what was seen."""


def scrape(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> Samples:
    """Every sample the /metrics endpoint on ``host:port`` exports now (OSError when nobody answers)."""
    return parse_samples(urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s).read().decode())


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and sorted label pairs."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sample_value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly these labels, None when it is not exported."""
    return samples.get((name, tuple(sorted(labels.items()))))


def owned_partitions(samples: Samples) -> set[int]:
    """The partitions an engine reports as its own (one consumer-lag series each)."""
    return {int(dict(labels)["partition"]) for name, labels in samples
            if name == OWNED_PARTITIONS_METRIC and "partition" in dict(labels)}


@dataclass(frozen=True)
class GroupAssignment:
    """A consumer group as its coordinator describes it: its state and each member's partitions of a topic."""

    state: str
    partitions_by_member: dict[str, frozenset[int]]

    @property
    def assigned_members(self) -> int:
        """Members holding at least one partition, counted only once the group is stable."""
        if self.state != ConsumerGroupState.STABLE.name:
            return 0
        return sum(1 for partitions in self.partitions_by_member.values() if partitions)


def describe_group(client: AdminClient, group: str, topic: str, timeout_s: float = 5.0) -> GroupAssignment:
    """The group's state and, per member, its partitions of ``topic`` (Kafka admin API)."""
    description = client.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
    state = description.state.name if isinstance(description.state, ConsumerGroupState) else str(description.state)
    return GroupAssignment(state, {
        member.member_id: frozenset(tp.partition for tp in (member.assignment.topic_partitions or [])
                                    if tp.topic == topic)
        for member in description.members})


def wait_until_assigned(settings: Settings, group: str, *, members: int = 1, topic: str | None = None,
                        metrics_ports: Iterable[int] = (), timeout_s: float = 120.0,
                        alive: Callable[[], bool] | None = None, interval_s: float = 0.2) -> GroupAssignment:
    """Return once ``group`` is stable with at least ``members`` members holding partitions of ``topic``
    (default: the transactions topic) and every engine on ``metrics_ports`` reports the partitions it
    took over. Raises NotReady after ``timeout_s``, or at once when ``alive()`` says the process is gone.

    The coordinator's view comes first (it works for any consumer); the metrics add the engine's own word
    that it resolved its start offsets, which a stream that starts "at the end" needs before sending."""
    topic = topic or settings.transactions_topic
    ports: Sequence[int] = tuple(metrics_ports)
    client = kafka.admin(settings)
    deadline = time.monotonic() + timeout_s
    seen = "nothing yet"
    while True:
        if alive is not None and not alive():
            raise NotReady(f"group {group}: the process exited before it was assigned partitions ({seen})")
        try:
            assignment = describe_group(client, group, topic)
            seen = (f"state {assignment.state}, {assignment.assigned_members} of {members} member(s) "
                    f"with partitions of {topic}")
            if assignment.assigned_members >= members and all(_reports_partitions(port) for port in ports):
                return assignment
        except KafkaException as error:
            seen = f"the group could not be described: {error}"
        if time.monotonic() > deadline:
            waited_for = f" and their metrics on ports {', '.join(map(str, ports))}" if ports else ""
            raise NotReady(f"group {group}: no {members} member(s) with partitions of {topic}{waited_for} after "
                           f"{timeout_s:.0f} s ({seen}); is Kafka at {settings.kafka_bootstrap} up and the "
                           "processor's log free of errors?")
        time.sleep(interval_s)


def _reports_partitions(port: int) -> bool:
    try:
        return bool(owned_partitions(scrape(port, timeout_s=2.0)))
    except OSError:  # the endpoint is not up yet
        return False
