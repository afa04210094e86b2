"""Consumed Kafka messages as the batch step's input columns: the one place the local engine's two
consumers (transactions and labels) turn librdkafka messages into ``Records``."""
from __future__ import annotations

import numpy as np
from confluent_kafka import Message

from fraudstream.batch import Records


def as_records(topic: str, messages: list[Message]) -> Records:
    """Consumed messages of one topic as the batch step's columns; one C-level pass per column. Timestamps
    are the producer's send time: the latency origin that holds under a simulated event-time clock too."""
    produced_ms = np.fromiter((timestamp for _, timestamp in map(Message.timestamp, messages)), np.int64,
                              len(messages))
    return Records(topic, list(map(Message.value, messages)),
                   np.fromiter(map(Message.partition, messages), np.int32, len(messages)),
                   np.fromiter(map(Message.offset, messages), np.int64, len(messages)), produced_ms * 1000,
                   keys=lambda: list(map(Message.key, messages)))
