"""Reading a checkpointed feature state back, the same way in both engines."""

from __future__ import annotations

from fraudstream.engines.exceptions import StateConfigMismatch
from fraudstream.features import FeatureConfig, FeatureState


def restore_state(blob: bytes, config: FeatureConfig, start_over: str) -> FeatureState:
    """The state in ``blob``; StateConfigMismatch when it was built with another feature configuration than
    ``config`` (the model's), naming ``start_over`` (how this engine starts its state afresh). A snapshot
    that cannot be read at all raises the core's StateFormatError."""
    state = FeatureState.restore(blob)
    if state.config != config:
        raise StateConfigMismatch("the checkpointed feature state was built with another feature configuration "
                                  f"than the model's; to rebuild it from the topic's beginning, {start_over}")
    return state
