"""The sink contract every engine writes through (``fraudstream.engines.sink`` is the PostgreSQL/Kafka one).

A batch's outputs leave the engine in two moves, and a batch counts as done only when both succeeded:

1. ``send`` + ``confirm_delivery``: the alerts and dead letters are acknowledged by the broker; any one
   refused fails the batch (it is replayed: at least once, keyed by transaction id / source offset).
2. ``write``: the rows, the labels, the offsets the batch reaches and the state snapshots due, in one
   database transaction (rows are upserted, so a replayed batch writes nothing twice). An engine that keeps
   its offsets and state elsewhere (Spark's checkpoint) writes none of them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from fraudstream.batch.rows import DeadLetter


@dataclass(frozen=True)
class Snapshot:
    """A partition's feature state serialized at ``next_offset``, with the label positions it includes."""

    partition: int
    next_offset: int
    state: bytes
    label_offsets: Mapping[int, int]


@dataclass(frozen=True)
class SinkWrite:
    """What ``write`` stores in one database transaction."""

    #: The rows' COPY payload (fraudstream.store.writer.encode_scored) and their count.
    encoded_rows: bytes
    row_count: int
    labels: pd.DataFrame
    #: Partition -> next offset to consume, for the partitions the batch advanced (only ever forwards).
    offsets: Mapping[int, int] = field(default_factory=dict)
    snapshots: Sequence[Snapshot] = ()

    @property
    def is_empty(self) -> bool:
        return not self.row_count and self.labels.empty and not self.offsets and not self.snapshots


class Sink(Protocol):
    """Where a batch's outputs go; see the module docstring for the order and the guarantees."""

    def send(self, alerts: Sequence[tuple[bytes, bytes]], letters: Sequence[DeadLetter]) -> None:
        """Enqueue alerts and dead letters (``confirm_delivery`` waits for them)."""

    def confirm_delivery(self) -> None:
        """Return once every message sent is acknowledged; raise if any was refused or never acknowledged."""

    def write(self, connection: Any, batch: SinkWrite) -> int:
        """Rows, labels, offsets and snapshots in one transaction on ``connection``; the rows that were new."""
