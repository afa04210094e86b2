"""Feature configuration and the feature names it implies.

Windows are part of the configuration so a team can retune them, but the names carry the window
(``account_transaction_count_1h``), so a model's manifest always says exactly what it was trained on.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

#: Bump whenever a feature's definition changes: a model trained on other code must not be served.
FEATURE_CODE_VERSION = "1"

#: The feature configuration file format this code reads (the ``format`` key of the file).
FEATURE_CONFIG_FORMAT = 1
#: The version label of the built-in defaults (fraudstream/features/default.toml).
DEFAULT_FEATURE_CONFIG_VERSION = "default-1"


def window_label(seconds: int) -> str:
    """Short unit suffix for a window: 600 -> '10min', 86400 -> '24h', 604800 -> '7d' (days only by weeks)."""
    if seconds % 604_800 == 0:
        return f"{seconds // 86_400}d"
    for unit, size in (("h", 3_600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class FeatureConfig:
    """Every knob of the feature core. Defaults suit card-like traffic on one machine.

    Windows are half-open in event time, ``(t - window, t]``, and include the current event.
    """

    account_windows_s: tuple[int, ...] = (600, 3_600, 86_400, 604_800)
    merchant_windows_s: tuple[int, ...] = (3_600, 86_400)
    merchant_fraud_window_s: int = 604_800
    #: An event more than this much older than its account's watermark is scored but flagged late.
    allowed_lateness_s: int = 300
    #: A key idle longer than its TTL (in event time) starts fresh on its next event and is evicted.
    account_ttl_s: int = 60 * 86_400
    merchant_ttl_s: int = 90 * 86_400
    max_history_events: int = 512
    max_merchant_events: int = 20_000
    max_distinct_values: int = 64
    #: Home is the mean location of the account's first ``home_transactions`` transactions.
    home_transactions: int = 5
    #: Implied speed divides by at least this many seconds (coordinates are not precise enough below).
    min_speed_interval_s: int = 60
    merchant_risk_prior: float = 0.01
    merchant_risk_strength: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Inverse of to_dict; unknown keys are an error so a manifest cannot silently drift."""
        known = {field.name for field in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown feature config keys: {sorted(unknown)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})


class FeatureConfigError(ValueError):
    """A feature configuration file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class VersionedFeatureConfig:
    """A feature configuration and the version label its file gave it (recorded in model manifests)."""

    config: FeatureConfig
    version: str


def _check_values(config: FeatureConfig) -> list[str]:
    problems = []
    for name in ("account_windows_s", "merchant_windows_s"):
        windows = getattr(config, name)
        if not windows or any(not isinstance(w, int) or w <= 0 for w in windows):
            problems.append(f"{name} must be a non-empty list of positive whole seconds")
        elif len(set(windows)) != len(windows):
            problems.append(f"{name} has a window twice")
    for name in ("merchant_fraud_window_s", "account_ttl_s", "merchant_ttl_s", "min_speed_interval_s",
                 "max_history_events", "max_merchant_events", "max_distinct_values", "home_transactions"):
        if getattr(config, name) <= 0:
            problems.append(f"{name} must be more than 0")
    if config.allowed_lateness_s < 0:
        problems.append("allowed_lateness_s must be 0 or more")
    return problems


def load_feature_config(path: Path | str) -> VersionedFeatureConfig:
    """Read a versioned feature configuration file (TOML, as fraudstream/features/default.toml): keys not
    given keep their defaults; an unknown key, a missing ``format``/``version`` or a bad value is an error."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise FeatureConfigError(f"{path}: {error}") from None
    if data.pop("format", None) != FEATURE_CONFIG_FORMAT:
        raise FeatureConfigError(f"{path}: set format = {FEATURE_CONFIG_FORMAT} (the file format this code reads)")
    version = data.pop("version", None)
    if not isinstance(version, str) or not version.strip():
        raise FeatureConfigError(f'{path}: set version = "<a name for this configuration>" (recorded in the model)')
    try:
        config = FeatureConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise FeatureConfigError(f"{path}: {error}") from None
    problems = _check_values(config)
    if problems:
        raise FeatureConfigError(f"{path}: " + "; ".join(problems))
    return VersionedFeatureConfig(config, version.strip())


def default_feature_config_file() -> Path:
    """The file of the built-in defaults (a template to copy)."""
    return Path(str(resources.files("fraudstream.features") / "default.toml"))


def account_feature_names(config: FeatureConfig) -> tuple[str, ...]:
    """Names of the account-scoped features, in output order."""
    windows = [window_label(w) for w in config.account_windows_s]
    return (
        "amount",
        *(f"account_transaction_count_{w}" for w in windows),
        *(f"account_amount_sum_{w}" for w in windows),
        "account_previous_transaction_count",
        "seconds_since_previous_transaction",
        "amount_to_account_mean_ratio",
        "amount_zscore",
        "is_new_merchant",
        "is_new_device",
        "is_new_country",
        "is_new_payment_method",
        "distance_from_home_km",
        "speed_from_previous_kmh",
        "hour_of_day",
        "is_night",
        "is_weekend",
        "account_age_days",
        "channel_code",
        "payment_method_code",
    )


def merchant_feature_names(config: FeatureConfig) -> tuple[str, ...]:
    """Names of the merchant-scoped features, in output order."""
    return (
        *(f"merchant_transaction_count_{window_label(w)}" for w in config.merchant_windows_s),
        "merchant_fraud_rate_smoothed",
        f"merchant_fraud_count_{window_label(config.merchant_fraud_window_s)}",
        "merchant_label_count",
    )


def feature_names(config: FeatureConfig) -> tuple[str, ...]:
    """All feature names for a configuration: account part, then merchant part."""
    return account_feature_names(config) + merchant_feature_names(config)


FEATURE_NAMES: tuple[str, ...] = feature_names(FeatureConfig())
#: Integer-coded categoricals (codes are positions in events.contract.CHANNELS / PAYMENT_METHODS).
CATEGORICAL_FEATURES: tuple[str, ...] = ("channel_code", "payment_method_code")
