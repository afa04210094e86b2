"""The versioned feature configuration file: defaults, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.features.config import (
    DEFAULT_FEATURE_CONFIG_VERSION,
    FeatureConfig,
    FeatureConfigError,
    default_feature_config_file,
    feature_names,
    load_feature_config,
)

pytestmark = pytest.mark.unit


def test_the_shipped_file_is_the_built_in_defaults() -> None:
    loaded = load_feature_config(default_feature_config_file())
    assert loaded.config == FeatureConfig()
    assert loaded.version == DEFAULT_FEATURE_CONFIG_VERSION


def test_a_30_day_account_window_and_longer_ttl(tmp_path: Path) -> None:
    path = tmp_path / "features.toml"
    path.write_text('format = 1\nversion = "thirty-days"\naccount_windows_s = [3600, 86400, 2592000]\n'
                    "account_ttl_s = 7776000\n")
    loaded = load_feature_config(path)
    assert loaded.version == "thirty-days"
    assert loaded.config.account_windows_s == (3600, 86400, 2592000) and loaded.config.account_ttl_s == 7776000
    assert loaded.config.merchant_windows_s == FeatureConfig().merchant_windows_s  # not given: default
    assert "account_transaction_count_720h" in feature_names(loaded.config)


@pytest.mark.parametrize(("text", "message"), [
    ('version = "x"\n', "format = 1"),
    ("format = 2\nversion = \"x\"\n", "format = 1"),
    ("format = 1\n", "version ="),
    ('format = 1\nversion = "x"\naccount_window_s = [60]\n', "account_window_s"),
    ('format = 1\nversion = "x"\naccount_windows_s = [0, 60]\n', "account_windows_s must be"),
    ('format = 1\nversion = "x"\nmerchant_windows_s = [60, 60]\n', "merchant_windows_s has a window twice"),
    ('format = 1\nversion = "x"\naccount_ttl_s = -5\n', "account_ttl_s must be more than 0"),
    ("format = 1\nversion = \n", "features.toml"),
], ids=["no format", "other format", "no version", "unknown key", "zero window", "same window twice",
        "negative ttl", "not toml"])
def test_errors_name_the_file_and_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "features.toml"
    path.write_text(text)
    with pytest.raises(FeatureConfigError, match=message):
        load_feature_config(path)
