"""Registry: versioned artifacts with verified hashes, atomic promote, tamper detection."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fraudstream.features import FEATURE_NAMES
from fraudstream.model.examples import example_booster, example_manifest
from fraudstream.model.exceptions import ArtifactError, NoProductionModel
from fraudstream.model.registry import MANIFEST_FILE, MODEL_FILE, Registry

pytestmark = pytest.mark.unit


def test_publish_load_and_promote(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.production_version() is None
    with pytest.raises(NoProductionModel):
        registry.production()
    first = registry.publish(example_booster(), example_manifest())
    second = registry.publish(example_booster(2), example_manifest())
    assert (first, second) == ("v0001", "v0002")
    assert registry.versions() == ["v0001", "v0002"]
    registry.promote(first)
    assert registry.production_version() == "v0001"
    artifact = registry.production()
    assert artifact.manifest["feature_names"] == list(FEATURE_NAMES)
    assert set(artifact.manifest["files"]) == {MODEL_FILE}
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no leftovers from staging


def test_tampered_model_file_is_rejected(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = registry.publish(example_booster(), example_manifest())
    model = tmp_path / version / MODEL_FILE
    model.write_text(model.read_text().replace("shrinkage=", "shrinkage=0", 1))
    with pytest.raises(ArtifactError, match="tampered"):
        registry.load(version)
    with pytest.raises(ArtifactError):
        registry.promote(version)
    assert registry.production_version() is None


def test_tampered_manifest_is_rejected(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = registry.publish(example_booster(), example_manifest())
    path = tmp_path / version / MANIFEST_FILE
    manifest = orjson.loads(path.read_bytes())
    manifest["thresholds"]["block"] = 0.99
    path.write_bytes(orjson.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest was modified"):
        registry.load(version)


def test_unknown_version_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no model version"):
        Registry(tmp_path).load("v0042")
