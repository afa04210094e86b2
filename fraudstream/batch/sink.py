"""The sink contract every engine writes through (``fraudstream.engines.sink`` is the PostgreSQL/Kafka one).

A batch's outputs leave the engine in three moves, in this order:

1. ``send`` + ``confirm_delivery`` of the dead letters: acknowledged by the broker before anything that
   covers them commits; any one refused fails the batch (it is replayed).
2. ``write``: the rows, the labels, the offsets the batch reaches and the state snapshots due, in one
   database transaction (rows are upserted, so a replayed batch writes nothing twice). An engine that keeps
   its offsets and state elsewhere (Spark's checkpoint) writes none of them here. It returns the alerts of
   the rows *as stored*: when a row already existed (a replay), the stored version's, never a second
   scoring's, so that every alert matches its transaction's stored row.
3. ``send`` + ``confirm_delivery`` of those alerts. A crash before they are acknowledged is covered by the
   replay: the engine's restored state starts before the last committed batch, and the alerts of the
   replayed records' stored rows are sent again (``SinkWrite.replayed_ids``). Alerts are at least once,
   keyed by transaction id.
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
    #: The alerts of the rows as built (what is stored when every row is new), and the rows' ids (to read
    #: the stored versions when some already existed).
    alerts: Sequence[tuple[bytes, bytes]] = ()
    row_ids: Sequence[str] = ()
    #: Transactions replayed below the committed offset: the alerts of their stored rows are sent again.
    replayed_ids: Sequence[str] = ()

    @property
    def is_empty(self) -> bool:
        return (not self.row_count and self.labels.empty and not self.offsets and not self.snapshots
                and not self.replayed_ids)


@dataclass(frozen=True)
class Written:
    """What ``write`` stored: the rows that were new, and the alerts of the batch's rows as stored."""

    rows: int
    alerts: list[tuple[bytes, bytes]]


class Sink(Protocol):
    """Where a batch's outputs go; see the module docstring for the order and the guarantees."""

    def send(self, alerts: Sequence[tuple[bytes, bytes]], letters: Sequence[DeadLetter]) -> None:
        """Enqueue alerts and dead letters (``confirm_delivery`` waits for them)."""

    def confirm_delivery(self) -> None:
        """Return once every message sent is acknowledged; raise if any was refused or never acknowledged."""

    def write(self, connection: Any, batch: SinkWrite) -> Written:
        """Rows, labels, offsets and snapshots in one transaction on ``connection``; then the alerts of the
        rows as stored."""
