"""Both engines read a checkpointed feature state through restore_state: another feature configuration
than the model's stops them with one named error that says how to start over."""

from __future__ import annotations

import pytest

from fraudstream.engines.exceptions import StateConfigMismatch
from fraudstream.engines.restore import restore_state
from fraudstream.features import FeatureConfig, FeatureState, StateFormatError

pytestmark = pytest.mark.unit


def test_a_state_of_the_models_configuration_is_restored() -> None:
    config = FeatureConfig(allowed_lateness_s=60)
    assert restore_state(FeatureState(config).snapshot(), config, "start over").config == config


def test_another_feature_configuration_is_refused_with_how_to_start_over() -> None:
    blob = FeatureState(FeatureConfig(allowed_lateness_s=60)).snapshot()
    with pytest.raises(StateConfigMismatch, match="use a new checkpoint"):
        restore_state(blob, FeatureConfig(), "use a new checkpoint")


def test_an_unreadable_snapshot_is_the_cores_format_error() -> None:
    with pytest.raises(StateFormatError):
        restore_state(b"not a snapshot", FeatureConfig(), "start over")
