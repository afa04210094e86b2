"""Reason codes in words: a feature and its value as a sentence an analyst understands."""

from __future__ import annotations

import math
import re

from fraudstream.events import CHANNELS, PAYMENT_METHODS

_UNIT_WORDS = {"min": "minutes", "h": "hours", "d": "days", "s": "seconds"}
_WINDOW = re.compile(r"^(?P<stem>.+)_(?P<size>\d+)(?P<unit>min|h|d|s)$")


def _window_words(size: str, unit: str) -> str:
    words = _UNIT_WORDS[unit]
    return f"last {words[:-1] if size == '1' else size + ' ' + words}"


def _duration(seconds: float) -> str:
    for size, unit in ((86_400, "days"), (3_600, "hours"), (60, "minutes")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


_FIXED = {
    "amount": lambda v: f"amount is {v:,.2f}",
    "account_previous_transaction_count": lambda v: f"account has only {v:.0f} earlier transactions",
    "seconds_since_previous_transaction": lambda v: f"only {_duration(v)} since the account's previous transaction",
    "amount_to_account_mean_ratio": lambda v: f"amount is {v:.1f}x this account's average",
    "amount_zscore": lambda v: f"amount is {v:.1f} standard deviations from this account's usual",
    "is_new_merchant": lambda v: "first purchase from this merchant" if v else "merchant known for this account",
    "is_new_device": lambda v: "first transaction from this device" if v else "device known for this account",
    "is_new_country": lambda v: "first transaction from this country" if v else "country known for this account",
    "is_new_payment_method": lambda v: "first use of this payment method" if v else "payment method already used",
    "distance_from_home_km": lambda v: f"{v:,.0f} km from the account's home area",
    "speed_from_previous_kmh": lambda v: f"implies travelling at {v:,.0f} km/h since the previous transaction",
    "hour_of_day": lambda v: f"made at {v:02.0f}:00 local time",
    "is_night": lambda v: "made at night" if v else "made during the day",
    "is_weekend": lambda v: "made on a weekend" if v else "made on a weekday",
    "account_age_days": lambda v: f"account first seen {v:.1f} days ago",
    "channel_code": lambda v: f"channel is {CHANNELS[int(v)].replace('_', ' ')}",
    "payment_method_code": lambda v: f"paid by {PAYMENT_METHODS[int(v)].replace('_', ' ')}",
    "merchant_fraud_rate_smoothed": lambda v: f"merchant's confirmed fraud rate is {v:.1%}",
    "merchant_label_count": lambda v: f"merchant has {v:.0f} confirmed outcomes",
}


def describe(feature: str, value: float) -> str:
    """One reason sentence for a feature's value (missing values say the history is missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"no history for {feature.replace('_', ' ')} (first transaction of the account)"
    if feature in _FIXED:
        return _FIXED[feature](value)
    match = _WINDOW.match(feature)
    if match:
        stem, window = match["stem"], _window_words(match["size"], match["unit"])
        if stem == "account_transaction_count":
            return f"{value:.0f} transactions from this account in the {window}"
        if stem == "account_amount_sum":
            return f"{value:,.2f} spent by this account in the {window}"
        if stem == "merchant_transaction_count":
            return f"{value:.0f} transactions at this merchant in the {window}"
        if stem == "merchant_fraud_count":
            return f"{value:.0f} confirmed frauds at this merchant in the {window}"
    return f"{feature.replace('_', ' ')} is {value:g}"
