"""kafka.produce: a full local queue is backpressure (wait and retry), never a lost message."""

from __future__ import annotations

from typing import Any

from fraudstream import kafka


class FullQueueProducer:
    """Refuses the first ``refusals`` produce calls as librdkafka does when its queue is full."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.produced: list[tuple[str, Any, Any, dict[str, Any]]] = []
        self.polls = 0

    def produce(self, topic: str, value: Any, key: Any, **options: Any) -> None:
        if self.refusals:
            self.refusals -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value, key, options))

    def poll(self, _timeout: float) -> int:
        self.polls += 1
        return 0


def test_produce_waits_for_room_and_sends_once() -> None:
    producer = FullQueueProducer(refusals=3)
    kafka.produce(producer, "topic", b"value", b"key", partition=2)  # type: ignore[arg-type]
    assert producer.produced == [("topic", b"value", b"key", {"partition": 2})]
    assert producer.polls == 3


def test_produce_passes_only_the_options_given() -> None:
    producer = FullQueueProducer(refusals=0)
    headers = [("dlq.reason", b"bad")]
    kafka.produce(producer, "dlq", None, headers=headers)  # type: ignore[arg-type]
    assert producer.produced == [("dlq", None, None, {"headers": headers})]
