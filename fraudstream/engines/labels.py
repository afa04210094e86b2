"""Label feedback for the local engine: every member reads all partitions of the labels topic.

Labels are global (a merchant's risk depends on every label), while feature state is per transactions
partition; so each member assigns itself every label partition (no group: no rebalance, its own
positions) and applies each label to each partition state it owns. Each state remembers how far it
has applied every label partition, and that position travels in its snapshot: a restored state gets
exactly the labels it had not seen, and the labels table is upserted idempotently.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

import numpy as np
import pandas as pd
from confluent_kafka import TopicPartition

from fraudstream import kafka
from fraudstream.config import Settings
from fraudstream.events.contract import decode_labels
from fraudstream.features.partitioned import PartitionedFeatureState
from fraudstream.pipeline import DeadLetter, dead_letters

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
        #: What a poll without labels returns (built once: an empty frame costs ~2 ms per batch to build).
        self.no_labels = decode_labels([])[0]

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

    def poll(self, states: Iterable, features: PartitionedFeatureState,
             engine: str) -> tuple[pd.DataFrame, list[DeadLetter]]:
        """Labels that arrived since the last poll, applied to the partition states that had not seen them.

        ``states`` are the engine's PartitionState objects (``partition``, ``label_offsets``), whose feature
        states ``features`` holds. Returns the valid labels for the table and the invalid ones as dead letters.
        """
        messages = [m for m in self.consumer.consume(MAX_LABELS_PER_BATCH, 0) if m.error() is None] \
            if self.positions else []
        if not messages:
            return self.no_labels, []
        payloads = [m.value() for m in messages]
        partitions = np.fromiter((m.partition() for m in messages), np.int32, len(messages))
        offsets = np.fromiter((m.offset() for m in messages), np.int64, len(messages))
        frame, rejected = decode_labels(payloads)
        valid = np.setdiff1d(np.arange(len(messages)), [r.position for r in rejected])
        for state in states:
            seen = np.array([state.label_offsets.get(int(p), 0) for p in partitions[valid]], dtype=np.int64)
            unseen = offsets[valid] >= seen
            if unseen.any():
                features.apply_labels(state.partition, frame[unseen].reset_index(drop=True))
            for partition in np.unique(partitions):
                last = int(offsets[partitions == partition].max()) + 1
                state.label_offsets[int(partition)] = max(state.label_offsets.get(int(partition), 0), last)
        for partition in np.unique(partitions):
            self.positions[int(partition)] = int(offsets[partitions == partition].max()) + 1
        letters = dead_letters([m.key() for m in messages], payloads, rejected, source="labels", topic=self.topic,
                               partitions=partitions.tolist(), offsets=offsets.tolist(), engine=engine)
        return frame, letters

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
