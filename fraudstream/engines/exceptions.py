"""Named failures of the engines: each one is a broken invariant or a missing prerequisite, never bad
data (bad data goes to the dead-letter topic), and each message says what to check."""

from __future__ import annotations


class EngineError(RuntimeError):
    """Base class of the engines' own failures."""


class OffsetRegression(EngineError):
    """A partition's committed offset would move backwards: another member owns it, or the state is corrupt."""


class SinkDeliveryFailed(EngineError):
    """Kafka did not acknowledge alerts or dead letters; the batch is not committed and will be replayed."""


class ModelUnavailable(EngineError):
    """No promoted model to score with."""


class TopicMissing(EngineError):
    """A topic the engine reads or writes does not exist on the broker."""


class MetricsPortUnavailable(EngineError):
    """The Prometheus port could not be opened."""


class BatchAbandoned(EngineError):
    """The batch in flight was not committed (the database connection was lost, or the engine stopped during
    an outage); its partitions resume from the database's checkpoints, so nothing is lost or doubled."""


class StateConfigMismatch(EngineError):
    """A checkpointed feature state was built with another feature configuration than the model's: the
    engine refuses to guess (replaying from the beginning depends on what Kafka still retains); the message
    says how to start the state over."""
