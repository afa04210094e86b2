"""Scorer: probabilities, decisions from manifest thresholds, reasons for flagged rows, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.batch.scoring import Scorer
from fraudstream.features import FEATURE_NAMES, FeatureRows
from fraudstream.model.exceptions import ArtifactError
from fraudstream.model.registry import MODEL_FILE, Registry
from fraudstream.testing.example_model import example_booster, example_manifest, publish_example_model

pytestmark = pytest.mark.unit


@pytest.fixture
def scorer(tmp_path: Path) -> Scorer:
    publish_example_model(tmp_path)
    return Scorer.from_registry(tmp_path)


def features(rows: int, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    frame["channel_code"] = 1.0
    frame["payment_method_code"] = 0.0
    frame["is_late"] = False
    return frame


def test_score_decisions_and_reasons(scorer: Scorer) -> None:
    frame = features(300)
    result = scorer.score(frame)
    assert scorer.model_version == "v0001"
    assert result.probability.dtype == np.float64 and result.probability.shape == (300,)
    expected = np.where(result.probability >= 0.8, "block", np.where(result.probability >= 0.3, "review", "approve"))
    assert result.decision.tolist() == expected.tolist()
    flagged = result.decision != "approve"
    assert flagged.any() and (~flagged).any()
    assert all(reasons == () for reasons, f in zip(result.reasons, flagged, strict=True) if not f)
    flagged_reasons = [reasons for reasons, f in zip(result.reasons, flagged, strict=True) if f]
    assert all(1 <= len(reasons) <= 3 for reasons in flagged_reasons)
    # The model learned from the first feature (amount), so it leads the reasons of flagged rows.
    assert sum(reasons[0].startswith("amount is") for reasons in flagged_reasons) > len(flagged_reasons) / 2


def test_scoring_is_deterministic_and_batch_size_independent(scorer: Scorer) -> None:
    frame = features(50)
    first, second = scorer.score(frame), scorer.score(frame)
    assert np.array_equal(first.probability, second.probability)
    single = scorer.score(frame.iloc[[17]])
    assert single.probability[0] == first.probability[17]
    assert single.reasons[0] == first.reasons[17]
    assert len(scorer.score(frame.iloc[:0]).probability) == 0


def test_scorer_refuses_a_tampered_artifact(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = registry.publish(example_booster(), example_manifest())
    with (tmp_path / version / MODEL_FILE).open("a") as handle:
        handle.write("\n")
    with pytest.raises(ArtifactError, match="SHA-256"):
        Scorer.load(tmp_path / version)


def rows_of(frame: pd.DataFrame) -> FeatureRows:
    names = tuple(name for name in frame.columns if name != "is_late")
    return FeatureRows(frame[list(names)].to_numpy(dtype=np.float64), names, frame["is_late"].to_numpy(dtype=bool))


def test_feature_rows_in_another_column_order_score_as_the_frame(scorer: Scorer) -> None:
    frame = features(40)
    rows = rows_of(frame[list(reversed(frame.columns))])  # the core's order need not be the model's
    assert rows.names[0] != FEATURE_NAMES[0]
    by_rows, by_frame = scorer.score_rows(rows.rows(np.arange(40) % 2 == 0)), scorer.score(frame.iloc[::2])
    assert np.array_equal(by_rows.probability, by_frame.probability)
    assert by_rows.reasons == by_frame.reasons
    with pytest.raises(KeyError, match="amount"):
        scorer.score_rows(rows_of(frame.drop(columns="amount")))
