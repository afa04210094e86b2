"""Kafka plumbing shared by every command: client factories, topic creation, producing with backpressure,
dead-letter publishing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.config import Settings

log = logging.getLogger(__name__)


class ClientLogThrottle(logging.Filter):
    """At most one librdkafka log line per facility per interval. While a broker is away the client logs
    each failed connection attempt (several a second); the engines log the outage itself, once per
    interval, so the client's own lines only need to show what kind of failure it is."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._logged_at: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs (facility, client name, message) as the record's arguments
        facility = str(record.args[0]) if isinstance(record.args, tuple) and record.args else record.getMessage()
        now = time.monotonic()
        if now - self._logged_at.get(facility, -self.interval_s) < self.interval_s:
            return False
        self._logged_at[facility] = now
        return True


#: Where librdkafka's own log lines go (instead of straight to stderr), throttled.
CLIENT_LOG = logging.getLogger("fraudstream.kafka.client")
CLIENT_LOG.addFilter(ClientLogThrottle())


class KafkaUnavailable(RuntimeError):
    """The broker did not answer; the message names the bootstrap setting to check."""


#: Keys the client settings may not carry: the project sets them itself (the broker address has its own
#: setting, which error messages name).
RESERVED_CLIENT_KEYS = frozenset({"bootstrap.servers", "logger"})


def read_client_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a librdkafka properties file (the format managed Kafka consoles hand out)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ValueError(f"cannot read the Kafka client config file {path} ({error.strerror}); "
                         "fix FRAUDSTREAM_KAFKA_CLIENT_CONFIG_FILE") from None
    config: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith(("#", "!")):
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: expected key=value, e.g. security.protocol=SASL_SSL")
        config[key.strip()] = value.strip()
    return config


def client_config(settings: Settings) -> dict[str, Any]:
    """The user's librdkafka settings (security above all) that every producer, consumer and admin client
    gets: the config file, then FRAUDSTREAM_KAFKA_CLIENT_CONFIG on top."""
    config: dict[str, Any] = {}
    if settings.kafka_client_config_file:
        config.update(read_client_properties(settings.kafka_client_config_file))
    config.update(settings.kafka_client_config)
    reserved = sorted(RESERVED_CLIENT_KEYS & config.keys())
    if reserved:
        raise ValueError(f"Kafka client config may not set {', '.join(reserved)}; "
                         "set the broker address with FRAUDSTREAM_KAFKA_BOOTSTRAP")
    return config


def spark_source_options(settings: Settings) -> dict[str, str]:
    """Options of a Spark ``kafka`` source: the broker and the user's JVM client settings, ``kafka.``-prefixed."""
    return {"kafka.bootstrap.servers": settings.kafka_bootstrap,
            **{f"kafka.{key}": value for key, value in settings.spark_kafka_options.items()}}


def producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer tuned for throughput with ordering per key (idempotent, lz4, small linger)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        # CRC-32 of the key modulo the partition count: the same as events.partition_for, which training uses
        # to replay history through the same per-partition feature state as serving.
        "partitioner": "consistent_random",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "logger": CLIENT_LOG,
        **client_config(settings),
    }
    config.update(overrides)
    return Producer(config)


def consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that never auto-commits: the engines decide when an offset is durable."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 20,
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        "logger": CLIENT_LOG,
        **client_config(settings),
    }
    config.update(overrides)
    return Consumer(config)


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, **client_config(settings)})


def wait_for_broker(settings: Settings, timeout_s: float = 10.0) -> int:
    """Number of brokers once a metadata request succeeds; KafkaUnavailable otherwise."""
    try:
        metadata = admin(settings).list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} did not answer ({error}); start it with "
            "`fraudstream services up` or set FRAUDSTREAM_KAFKA_BOOTSTRAP"
        ) from None
    return len(metadata.brokers)


def topic_specs(settings: Settings) -> dict[str, int]:
    """The project's topics and their partition counts."""
    return {
        settings.transactions_topic: settings.transactions_partitions,
        settings.labels_topic: settings.topic_partitions,
        settings.alerts_topic: settings.topic_partitions,
        settings.dlq_topic: settings.topic_partitions,
    }


def create_topics(settings: Settings, partitions: Mapping[str, int] | None = None) -> dict[str, str]:
    """Create missing topics (existing ones are left as they are); returns topic -> 'created'|'exists'."""
    specs = dict(partitions or topic_specs(settings))
    client = admin(settings)
    existing = set(client.list_topics(timeout=10).topics)
    result = {name: "exists" for name in specs if name in existing}
    missing = [
        NewTopic(name, num_partitions=count, replication_factor=1,
                 config={"retention.ms": str(settings.topic_retention_ms)})
        for name, count in specs.items() if name not in existing
    ]
    if missing:
        for name, future in client.create_topics(missing, operation_timeout=30).items():
            try:
                future.result()
                result[name] = "created"
            except KafkaException as error:
                if error.args[0].code() != error.args[0].TOPIC_ALREADY_EXISTS:
                    raise
                result[name] = "exists"
            log.info("topic %s: %s", name, result[name])
    return result


def describe_topics(settings: Settings, names: list[str] | None = None) -> dict[str, int]:
    """Topic name -> partition count, as the broker reports it."""
    topics = admin(settings).list_topics(timeout=10).topics
    return {name: len(meta.partitions) for name, meta in topics.items() if names is None or name in names}


def produce(producer_: Producer, topic: str, value: bytes | None, key: bytes | None = None, *,
            partition: int | None = None, headers: list[tuple[str, bytes]] | None = None,
            on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """Produce one message, waiting for room in the producer's local queue when it is full: backpressure,
    never loss (librdkafka raises BufferError instead of blocking; serving delivery reports frees room)."""
    options: dict[str, Any] = {}
    if partition is not None:
        options["partition"] = partition
    if headers is not None:
        options["headers"] = headers
    if on_delivery is not None:
        options["on_delivery"] = on_delivery
    while True:
        try:
            producer_.produce(topic, value, key, **options)
            return
        except BufferError:
            producer_.poll(0.05)


def publish_dead_letters(
    producer_: Producer, topic: str, items: list[tuple[bytes | None, bytes | None, str, Mapping[str, str]]], *,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    """Send (key, original bytes, reason, provenance) to the dead-letter topic; the reason rides in headers
    too so that a consumer can filter without parsing the payload. ``on_delivery`` is required: a letter the
    broker refuses (e.g. larger than the topic's max.message.bytes) must fail the batch, not vanish."""
    for key, value, reason, provenance in items:
        headers = [("dlq.reason", reason.encode())]
        headers += [(f"dlq.{name}", str(text).encode()) for name, text in provenance.items()]
        produce(producer_, topic, value, key, headers=headers, on_delivery=on_delivery)
