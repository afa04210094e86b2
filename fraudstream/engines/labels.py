"""Label feedback for the local engine: every member reads all partitions of the labels topic.

Labels are global (a merchant's risk depends on every label), while feature state is per transactions
partition; so each member assigns itself every label partition (no group: no rebalance, its own
positions) and the batch step applies each label to each partition state it owns that has not seen it.
After every (re)positioning the feed first reads what the topic held at that moment (``catch_up_s`` at the
most): a restored state gets the labels that were there before its replay and its next transactions,
instead of whatever the first fetch happened to bring.
Each state remembers how far it has applied every label partition (``advance``), and that position
travels in its snapshot: a restored state gets exactly the labels it had not seen, and the labels table
is upserted idempotently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable

import numpy as np
from confluent_kafka import TopicPartition

from fraudstream import kafka
from fraudstream.batch import Records
from fraudstream.config import Settings
from fraudstream.engines.consumed import as_records

log = logging.getLogger(__name__)

MAX_LABELS_PER_BATCH = 20_000
#: The longest a batch waits for the labels the topic held when the feed was repositioned.
CATCH_UP_S = 10.0


class LabelFeed:
    """Reads every partition of the labels topic from the lowest position any owned state needs."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.topic = settings.labels_topic
        self.consumer = kafka.consumer(settings, f"{group}.labels")
        self.partitions = sorted(kafka.admin(settings).list_topics(self.topic, timeout=10)
                                 .topics[self.topic].partitions)
        self.positions: dict[int, int] = {}
        #: Label partition -> the end offset to read up to before the next batch (set by ``rewind``).
        self.catch_up: dict[int, int] = {}
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
            ends = {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                    for p in self.partitions}
            self.catch_up = {p: end for p, end in ends.items() if end > target[p]}
            log.info("label feed positioned topic=%s offsets=%s catching_up_to=%s", self.topic, target, self.catch_up)

    def poll(self) -> Records:
        """The label records that arrived since the last poll (none before the first ``rewind``); after a
        rewind, at least those up to the ends the topic had then (waiting ``CATCH_UP_S`` at the most)."""
        if not self.positions:
            return self.no_labels
        messages = self._consume(0)
        deadline = time.monotonic() + CATCH_UP_S
        while self._behind() and time.monotonic() < deadline:
            messages += self._consume(0.1)
        if self.catch_up:
            if self._behind():
                log.warning("label feed still behind after %.0f s topic=%s positions=%s ends=%s", CATCH_UP_S,
                            self.topic, self.positions, self.catch_up)
            self.catch_up = {}
        if not messages:
            return self.no_labels
        return as_records(self.topic, messages)

    def _consume(self, timeout_s: float) -> list:
        messages = [m for m in self.consumer.consume(MAX_LABELS_PER_BATCH, timeout_s) if m.error() is None]
        for message in messages:
            self.positions[message.partition()] = max(self.positions.get(message.partition(), 0), message.offset() + 1)
        return messages

    def _behind(self) -> bool:
        return any(self.positions.get(p, 0) < end for p, end in self.catch_up.items())

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
