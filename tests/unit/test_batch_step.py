"""BatchStep, the step both engines run: labels before transactions, dead letters with reasons, replays
that move the state and produce nothing, and outputs independent of how the stream is cut into batches."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream.batch import BatchOutput, BatchStep, ModelChoice, OnePartition, Records
from fraudstream.batch.scoring import Scorer
from fraudstream.events.contract import LABEL_COLUMNS, encode, label_to_dict, transaction_to_dict
from fraudstream.features import FeatureState
from fraudstream.model.drift import DriftWindow, drift_reference
from fraudstream.simulate.backfill import simulate_history
from fraudstream.testing.example_model import publish_example_model

pytestmark = pytest.mark.unit

INGESTED_US = 2_000_000_000_000_000


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ModelChoice:
    directory = tmp_path_factory.mktemp("models")
    publish_example_model(directory)
    scorer = Scorer.from_registry(directory)
    return ModelChoice(scorer, scorer.feature_names)


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    """600 transactions and labels for their first 200, each labeled a little later in the stream's time
    (chargebacks arriving while the stream runs), so that labels change later merchant features."""
    simulated = simulate_history(days=1, seed=5, accounts=300, merchants=200, fraud_share=0.05)
    transactions = simulated.transactions.head(600).reset_index(drop=True)
    labeled = transactions.head(200)
    times = transactions["event_time_us"].to_numpy()
    labels = pd.DataFrame({
        "transaction_id": labeled["transaction_id"], "account_id": labeled["account_id"],
        "merchant_id": labeled["merchant_id"], "is_fraud": np.arange(200) % 3 == 0, "scenario": None,
        "labeled_at_us": times[np.minimum(np.arange(200) * 2 + 50, 599)]}).astype(LABEL_COLUMNS)
    return transactions, labels.sort_values("labeled_at_us", kind="stable").reset_index(drop=True)


def records(topic: str, payloads: list[bytes], first_offset: int = 0) -> Records:
    count = len(payloads)
    return Records(topic, payloads, np.zeros(count, np.int32), np.arange(first_offset, first_offset + count),
                   np.full(count, INGESTED_US - 1_000), keys=lambda: [f"k{i}".encode() for i in range(count)])


def payloads(transactions: pd.DataFrame) -> list[bytes]:
    return [encode(transaction_to_dict(row)) for row in transactions.itertuples(index=False)]


def label_payloads(labels: pd.DataFrame) -> list[bytes]:
    return [encode(label_to_dict(row)) for row in labels.itertuples(index=False)]


def test_bad_records_become_dead_letters_with_reasons_and_the_rest_is_scored(model: ModelChoice, history) -> None:
    transactions, labels = history
    good = payloads(transactions.head(20))
    batch = [*good[:10], b"{not json", *good[10:], b""]
    bad_label = b'{"transaction_id": "x"}'
    step = BatchStep("test", future_tolerance_s=300)
    output = step.run(records("tx", batch), records("labels", [*label_payloads(labels.head(3)), bad_label]),
                      OnePartition(FeatureState(model.scorer.feature_config)), model, ingested_at_us=INGESTED_US)
    assert len(output.rows) == 20 and output.rejected == 2 and output.replayed == 0
    assert output.rows["kafka_offset"].tolist() == [*range(10), *range(11, 21)]
    sources = [(letter[3]["source"], letter[3]["offset"]) for letter in output.letters]
    assert sources == [("transactions", "10"), ("transactions", "21"), ("labels", "3")]
    assert all(letter[2] for letter in output.letters)  # every letter has a reason
    assert len(output.labels) == 3
    flagged = output.rows[output.rows["decision"] != "approve"]["transaction_id"].tolist()
    assert [key.decode() for key, _ in output.alerts] == flagged


def test_outputs_do_not_depend_on_batch_boundaries_or_replays(model: ModelChoice, history) -> None:
    """One batch, or three with the labels arriving before the transactions they may affect, or a replay
    of the first part: the same features, scores and decisions."""
    transactions, labels = history
    step = BatchStep("test", future_tolerance_s=300)
    config = model.scorer.feature_config
    everything = payloads(transactions)
    whole = step.run(records("tx", everything), records("labels", label_payloads(labels)),
                     OnePartition(FeatureState(config)), model, ingested_at_us=INGESTED_US).rows
    unlabeled = step.run(records("tx", everything), records("labels", []), OnePartition(FeatureState(config)),
                         model, ingested_at_us=INGESTED_US).rows
    assert unlabeled["features"].tolist() != whole["features"].tolist()  # the labels do change features

    def labels_due(until_us: int, after_us: int) -> list[bytes]:
        due = labels[(labels["labeled_at_us"] <= until_us) & (labels["labeled_at_us"] > after_us)]
        return label_payloads(due)

    state = OnePartition(FeatureState(config))
    parts, cuts, applied_until = [], [0, 150, 400, len(everything)], -1
    label_offset = 0
    for begin, end in pairwise(cuts):
        until = int(transactions["event_time_us"].iloc[end - 1])
        due = labels_due(until, applied_until)
        applied_until = until
        # The replay: the first cut's records come again below the committed offset and produce nothing.
        committed = np.full(end - begin, 100 if begin == 0 else 0)
        output = step.run(records("tx", everything[begin:end], begin), records("labels", due, label_offset), state,
                          model, ingested_at_us=INGESTED_US, committed=committed if begin == 0 else None)
        label_offset += len(due)
        parts.append(output.rows)
        assert output.replayed == (100 if begin == 0 else 0)
    cut = pd.concat(parts, ignore_index=True)
    assert len(cut) == len(whole) - 100
    expected = whole.iloc[100:].reset_index(drop=True)
    for column in ("transaction_id", "features", "decision", "reasons"):
        assert cut[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(cut["score"], expected["score"], rtol=0, atol=1e-12)


def test_a_state_that_does_not_own_labels_applies_them_but_neither_stores_nor_dead_letters_them(
        model: ModelChoice, history) -> None:
    _, labels = history
    step = BatchStep("test", future_tolerance_s=300)
    output = step.run(records("tx", []), records("labels", [*label_payloads(labels.head(5)), b"{}"]),
                      OnePartition(FeatureState(model.scorer.feature_config)), model, ingested_at_us=INGESTED_US,
                      owns_labels=False)
    assert output.labels.empty and output.letters == [] and output.rows.empty


def test_a_shadow_model_is_scored_beside_production_and_decides_nothing(model: ModelChoice, history,
                                                                       tmp_path: Path) -> None:
    transactions = history[0]
    publish_example_model(tmp_path, seed=9, promote=False)
    challenger = Scorer.from_registry(tmp_path, "v0001")
    step = BatchStep("test", future_tolerance_s=300)

    def run(choice: ModelChoice) -> BatchOutput:
        return step.run(records("tx", payloads(transactions.head(300))), records("labels", []),
                        OnePartition(FeatureState(model.scorer.feature_config)), choice, ingested_at_us=INGESTED_US)

    alone = run(model)
    beside = run(ModelChoice(model.scorer, model.feature_columns, challenger))
    assert alone.rows["shadow_score"].isna().all() and alone.rows["shadow_model_version"].isna().all()
    production = ["score", "decision", "reasons", "model_version"]
    pd.testing.assert_frame_equal(beside.rows[production], alone.rows[production])
    def alerts(output: BatchOutput) -> list[tuple[bytes, dict[str, object]]]:
        return [(key, {k: v for k, v in orjson.loads(value).items() if k != "scored_at"})
                for key, value in output.alerts]

    assert alerts(beside) == alerts(alone) and beside.letters == alone.letters
    assert set(beside.rows["shadow_model_version"]) == {"v0001"}
    shadow_score = beside.rows["shadow_score"].to_numpy(dtype=float)
    assert np.isfinite(shadow_score).all() and not np.array_equal(shadow_score, alone.rows["score"].to_numpy())


def test_the_batch_step_counts_live_features_and_scores_into_the_drift_window(model: ModelChoice, history) -> None:
    scorer = model.scorer
    rng = np.random.default_rng(3)
    reference = drift_reference({"amount": rng.lognormal(3, 1, size=2_000)}, rng.uniform(size=2_000))
    drift = DriftWindow(reference, scorer.feature_names)
    assert np.isnan(drift.psi()["amount"])
    step = BatchStep("test", future_tolerance_s=300)
    step.run(records("tx", payloads(history[0].head(300))), records("labels", []),
             OnePartition(FeatureState(scorer.feature_config)), ModelChoice(scorer, model.feature_columns, None, drift),
             ingested_at_us=INGESTED_US)
    psi = drift.psi()
    assert set(psi) == {"amount", "score"} and np.isfinite(psi["amount"]) and np.isfinite(psi["score"])
