"""Feature configuration and the feature names it implies.

Windows are part of the configuration so a team can retune them, but the names carry the window
(``account_transaction_count_1h``), so a model's manifest always says exactly what it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

#: Bump whenever a feature's definition changes: a model trained on other code must not be served.
FEATURE_CODE_VERSION = "1"



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
