"""Reason codes: path contributions are exact (bias + contributions = raw score) and agree with
TreeSHAP on the features that matter."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from fraudstream.batch.scoring import Scorer
from fraudstream.features import FEATURE_NAMES
from fraudstream.model.explain import PathAttribution, describer
from fraudstream.model.registry import Registry
from fraudstream.testing.example_model import example_manifest

pytestmark = pytest.mark.unit

AMOUNT = FEATURE_NAMES.index("amount")
SPEED = FEATURE_NAMES.index("speed_from_previous_kmh")


def two_cause_booster(rows: int = 3_000, seed: int = 3) -> tuple[lgb.Booster, np.ndarray]:
    """Fraud when the amount is huge or the implied speed is impossible; every other feature is noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURE_NAMES)))
    x[rng.random(rows) < 0.05, SPEED] = np.nan  # missing values take the default branch
    y = ((x[:, AMOUNT] > 1.5) | (np.nan_to_num(x[:, SPEED]) > 1.5)).astype(int)
    params = {"objective": "binary", "num_threads": 1, "verbosity": -1, "seed": seed, "num_leaves": 15}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=list(FEATURE_NAMES)), num_boost_round=60)
    return booster, x


def test_bias_plus_contributions_is_the_raw_score() -> None:
    booster, x = two_cause_booster()
    attribution = PathAttribution(booster)
    leaves = booster.predict(x, pred_leaf=True)
    contributions = attribution.contributions(leaves)
    assert contributions.shape == x.shape
    raw = booster.predict(x, raw_score=True)
    np.testing.assert_allclose(attribution.bias + contributions.sum(axis=1), raw, rtol=0, atol=1e-9)
    # Only features the trees split on get credit.
    used = np.flatnonzero(booster.feature_importance("split"))
    unused = np.setdiff1d(np.arange(x.shape[1]), used)
    assert np.all(contributions[:, unused] == 0)
    assert np.abs(contributions[:, AMOUNT]).max() > 1


def test_a_single_leaf_tree_only_adds_to_the_bias() -> None:
    x = np.random.default_rng(0).normal(size=(200, 3))
    params = {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 1000}  # no split is allowed
    booster = lgb.train(params, lgb.Dataset(x, (x[:, 0] > 0).astype(int)), num_boost_round=2)
    attribution = PathAttribution(booster)
    contributions = attribution.contributions(booster.predict(x, pred_leaf=True))
    assert np.all(contributions == 0)
    np.testing.assert_allclose(attribution.bias, booster.predict(x, raw_score=True), atol=1e-12)


def test_top_reasons_agree_with_treeshap(tmp_path: Path) -> None:
    booster, x = two_cause_booster()
    registry = Registry(tmp_path)
    registry.promote(registry.publish(booster, example_manifest(review=0.5, block=0.9)))
    scorer = Scorer.from_registry(tmp_path)
    probe = np.random.default_rng(11).normal(size=(400, x.shape[1]))
    probe[:200, [AMOUNT, SPEED]] = -1.0
    probe[:100, AMOUNT] = 3.0  # clearly fraud because of the amount alone
    probe[100:200, SPEED] = 3.0  # clearly fraud because of the speed alone
    ours = scorer.contributions(probe)
    shap = booster.predict(probe, pred_contrib=True)[:, :-1]
    assert ours[:100].argmax(axis=1).tolist() == shap[:100].argmax(axis=1).tolist() == [AMOUNT] * 100
    assert ours[100:200].argmax(axis=1).tolist() == shap[100:200].argmax(axis=1).tolist() == [SPEED] * 100

    result = scorer.score(pd.DataFrame(probe, columns=list(FEATURE_NAMES)))
    assert (result.decision[:200] != "approve").all()
    amount_words, speed_words = describer("amount"), describer("speed_from_previous_kmh")
    assert all(reasons[0] == amount_words(3.0) for reasons in result.reasons[:100])
    assert all(reasons[0] == speed_words(3.0) for reasons in result.reasons[100:200])


def test_describer_words() -> None:
    count = describer("account_transaction_count_10min")
    assert count(4.0) == "4 transactions from this account in the last 10 minutes"
    assert describer("account_amount_sum_1h")(1234.5) == "1,234.50 spent by this account in the last hour"
    assert describer("is_new_device")(1.0) == "first transaction from this device"
    assert describer("amount_zscore")(float("nan")).startswith("no history for amount zscore")
    assert describer("something_else")(2.5) == "something else is 2.5"
