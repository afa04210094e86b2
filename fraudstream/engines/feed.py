"""Publish a transaction frame to Kafka exactly as the producers do (keyed by account, partition from
``partition_for``), so tests, benchmarks and re-processing runs feed the engines a realistic stream."""

from __future__ import annotations

import pandas as pd
from confluent_kafka import Producer

from fraudstream.events.contract import encode, partition_for, transaction_to_dict
from fraudstream.kafka import produce


def publish_frame(producer: Producer, topic: str, frame: pd.DataFrame, partitions: int) -> int:
    """Produce every row of a TRANSACTION_COLUMNS frame in order; returns the count (call flush after)."""
    for row in frame.itertuples(index=False):
        produce(producer, topic, encode(transaction_to_dict(row)), row.account_id.encode(),
                partition=partition_for(row.account_id, partitions))
        producer.poll(0)
    return len(frame)
