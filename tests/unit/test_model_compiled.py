"""The compiled predictor: LightGBM's probabilities, machine code cached outside the models directory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fraudstream.features import FEATURE_NAMES
from fraudstream.model.compiled import CompiledModel, cache_dir_for
from fraudstream.model.registry import MODEL_FILE, Registry
from fraudstream.testing.example_model import publish_example_model

pytestmark = pytest.mark.unit


def test_compiled_model_matches_lightgbm_and_is_cached_beside_the_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    version = publish_example_model(models)
    artifact = Registry(models).load(version)
    cache = cache_dir_for(models)
    assert cache == tmp_path / "compiled-models"
    matrix = np.random.default_rng(3).normal(size=(2_000, len(FEATURE_NAMES)))
    matrix[::7, 4] = np.nan  # missing values take the trees' default branches in both

    first = CompiledModel(artifact.path / MODEL_FILE, artifact.manifest["files"][MODEL_FILE], cache, artifact.signer)
    expected = artifact.booster.predict(matrix, num_threads=1)
    np.testing.assert_allclose(first.predict(matrix), expected, rtol=0, atol=1e-12)
    binaries = sorted(cache.glob("*.so"))
    assert len(binaries) == 1 and not list(models.rglob("*.so"))

    compiled_at = binaries[0].stat().st_mtime_ns
    second = CompiledModel(artifact.path / MODEL_FILE, artifact.manifest["files"][MODEL_FILE], cache, artifact.signer)
    assert binaries[0].stat().st_mtime_ns == compiled_at  # loaded, not compiled again
    assert np.array_equal(second.predict(matrix), first.predict(matrix))
    assert np.array_equal(second.predict(matrix[5:6]), first.predict(matrix)[5:6])


def test_a_tampered_compiled_library_is_refused_and_compiled_again(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    models = tmp_path / "models"
    artifact = Registry(models).load(publish_example_model(models))
    cache = cache_dir_for(models)
    model_file, model_sha256 = artifact.path / MODEL_FILE, artifact.manifest["files"][MODEL_FILE]
    matrix = np.random.default_rng(5).normal(size=(50, len(FEATURE_NAMES)))
    expected = CompiledModel(model_file, model_sha256, cache, artifact.signer).predict(matrix)
    [binary] = cache.glob("*.so")
    genuine = binary.read_bytes()
    binary.write_bytes(genuine + b"\0tampered")
    with caplog.at_level(logging.ERROR, logger="fraudstream.model.compiled"):
        again = CompiledModel(model_file, model_sha256, cache, artifact.signer)
    assert any("compiled model refused" in record.getMessage() and "differs from the manifest" in record.getMessage()
               for record in caplog.records)
    assert not binary.read_bytes().endswith(b"tampered")
    assert np.array_equal(again.predict(matrix), expected)
