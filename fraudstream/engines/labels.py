"""Label feedback for the local engine: every member reads all partitions of the labels topic.

Labels are global (a merchant's risk depends on every label), while feature state is per transactions
partition; so each member assigns itself every label partition (no group: no rebalance, its own
positions) and the batch step applies each label to each partition state it owns that has not seen it.
Each state remembers how far it has applied every label partition (``advance``), and that position
travels in its snapshot: a restored state gets exactly the labels it had not seen, and the labels table
is upserted idempotently.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

import numpy as np
from confluent_kafka import TopicPartition

from fraudstream import kafka
from fraudstream.batch import Records
from fraudstream.config import Settings

log = logging.getLogger(__name__)

MAX_LABELS_PER_BATCH = 20_000


class LabelFeed:
    """Reads every partition of the labels topic from the lowest position any owned state needs."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.topic = settings.labels_topic
        self.consumer = kafka.consumer(settings, f"{group}.labels")
        self.partitions = sorted(kafka.admin(settings).list_topics(self.topic, timeout=10)
                                 .topics[self.topic].partitions)
        self.positions: dict[int, int] = {}
        self.no_labels = Records.empty(self.topic)

    def rewind(self, state_offsets: Collection[dict[int, int]]) -> None:
        """Move back to the lowest label position of the given states (new owners may need old labels)."""
        if not state_offsets:
            return
        wanted = {p: min(offsets.get(p, 0) for offsets in state_offsets) for p in self.partitions}
        target = {p: min(wanted[p], self.positions.get(p, wanted[p])) for p in self.partitions}
        if target != self.positions:
            self.consumer.assign([TopicPartition(self.topic, p, offset) for p, offset in target.items()])
            self.positions = target
            log.info("label feed positioned topic=%s offsets=%s", self.topic, target)

    def poll(self) -> Records:
        """The label records that arrived since the last poll (none before the first ``rewind``)."""
        messages = [m for m in self.consumer.consume(MAX_LABELS_PER_BATCH, 0) if m.error() is None] \
            if self.positions else []
        if not messages:
            return self.no_labels
        records = kafka.records(self.topic, messages)
        for partition in np.unique(records.partitions):
            self.positions[int(partition)] = int(records.offsets[records.partitions == partition].max()) + 1
        return records

    @staticmethod
    def advance(states: Iterable, records: Records) -> None:
        """Note in each owned state (``label_offsets``) that it has now seen these label records."""
        if not len(records):
            return
        ends = {int(p): int(records.offsets[records.partitions == p].max()) + 1 for p in np.unique(records.partitions)}
        for state in states:
            for partition, end in ends.items():
                state.label_offsets[partition] = max(state.label_offsets.get(partition, 0), end)

    def lag(self) -> dict[int, int]:
        """Labels not yet read per partition (cached high watermarks: no broker round trip)."""
        lag = {}
        for partition, position in self.positions.items():
            _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high >= 0:
                lag[partition] = max(0, high - position)
        return lag

    def close(self) -> None:
        self.consumer.close()
