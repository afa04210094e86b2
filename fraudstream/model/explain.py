"""Reason codes: which features pushed a row towards fraud (PathAttribution), in words (describer)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse

from fraudstream.events.contract import CHANNELS, PAYMENT_METHODS

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


Describe = Callable[[float], str]


def describer(feature: str) -> Describe:
    """The sentence builder for one feature's value, resolved once per feature (not once per row);
    a missing value says the history is missing."""
    words = _words(feature)
    missing = f"no history for {feature.replace('_', ' ')} (first transaction of the account)"
    return lambda value: missing if math.isnan(value) else words(value)


def _words(feature: str) -> Describe:
    if feature in _FIXED:
        return _FIXED[feature]
    match = _WINDOW.match(feature)
    if match:
        stem, window = match["stem"], _window_words(match["size"], match["unit"])
        if stem == "account_transaction_count":
            return lambda v: f"{v:.0f} transactions from this account in the {window}"
        if stem == "account_amount_sum":
            return lambda v: f"{v:,.2f} spent by this account in the {window}"
        if stem == "merchant_transaction_count":
            return lambda v: f"{v:.0f} transactions at this merchant in the {window}"
        if stem == "merchant_fraud_count":
            return lambda v: f"{v:.0f} confirmed frauds at this merchant in the {window}"
    spaced = feature.replace("_", " ")
    return lambda v: f"{spaced} is {v:g}"


class PathAttribution:
    """Exact per-feature path contributions of a LightGBM binary model (Saabas / "treeinterpreter").

    Every split on a row's root-to-leaf path moves the prediction from the parent's value to the
    child's; that move is credited to the split's feature. Summed over trees, ``bias`` (the sum of
    the roots' values) plus a row's contributions equals its raw score (log-odds), exactly. The
    per-leaf credit vectors are precomputed once from ``dump_model()``, so explaining rows costs one
    ``pred_leaf`` prediction and a gather-sum: orders of magnitude cheaper than TreeSHAP.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("path attribution supports single-output (binary/regression) models only")
        trees = dump["tree_info"]
        self.features = dump["max_feature_idx"] + 1
        self.leaves_per_tree = max((tree["num_leaves"] for tree in trees), default=1)
        #: Row ``tree * leaves_per_tree + leaf``: the credit each feature gets when a row lands there.
        self.table = np.zeros((len(trees) * self.leaves_per_tree, self.features))
        self._tree_offset = np.arange(len(trees), dtype=np.int64) * self.leaves_per_tree
        self.bias = 0.0
        for number, tree in enumerate(trees):
            root = tree["tree_structure"]
            self.bias += _node_value(root)
            self._credit(root, number * self.leaves_per_tree, np.zeros(self.features))

    def _credit(self, root: dict[str, Any], offset: int, start: np.ndarray) -> None:
        """Depth-first over one tree (explicit stack: trees can be deeper than Python's recursion)."""
        stack = [(root, start)]
        while stack:
            node, path = stack.pop()
            if "leaf_index" in node or "split_feature" not in node:
                self.table[offset + node.get("leaf_index", 0)] = path
                continue
            value = _node_value(node)
            for side in ("left_child", "right_child"):
                child = node[side]
                credit = path.copy()
                credit[node["split_feature"]] += _node_value(child) - value
                stack.append((child, credit))

    def contributions(self, leaves: np.ndarray) -> np.ndarray:
        """(rows, features) credits for the leaf indices ``booster.predict(x, pred_leaf=True)`` gives.

        A one-hot (rows x all leaves) sparse matrix times the table: the gather-sum in one
        compiled product, without a (rows, trees, features) temporary.
        """
        rows = np.asarray(leaves, dtype=np.int64).reshape(-1, self._tree_offset.size)
        trees = self._tree_offset.size
        onehot = scipy.sparse.csr_matrix(
            (np.ones(rows.size), (rows + self._tree_offset).ravel(), np.arange(0, rows.size + 1, trees)),
            shape=(rows.shape[0], self.table.shape[0]),
        )
        return np.asarray(onehot @ self.table)


def _node_value(node: dict[str, Any]) -> float:
    return float(node["leaf_value"] if "leaf_value" in node else node["internal_value"])
