"""Registry: versioned artifacts with verified hashes, atomic promote, tamper detection."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import orjson
import pytest

from fraudstream.config import get_settings
from fraudstream.features import FEATURE_NAMES
from fraudstream.model.exceptions import ArtifactError, NoProductionModel
from fraudstream.model.registry import MANIFEST_FILE, MODEL_FILE, Registry
from fraudstream.model.signing import SIGNING_KEY_FILE
from fraudstream.testing.example_model import example_booster, example_manifest

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


def test_a_file_edited_with_its_hash_recomputed_is_rejected(tmp_path: Path) -> None:
    """The manifest's hashes are only as good as its signature: re-hashing an edited file must not pass."""
    registry = Registry(tmp_path / "models")
    version = registry.publish(example_booster(), example_manifest())
    model = tmp_path / "models" / version / MODEL_FILE
    model.write_text(model.read_text().replace("shrinkage=", "shrinkage=0", 1))
    path = tmp_path / "models" / version / MANIFEST_FILE
    manifest = orjson.loads(path.read_bytes())
    manifest["files"][MODEL_FILE] = hashlib.sha256(model.read_bytes()).hexdigest()
    if "manifest_sha256" in manifest:  # what a self-checksummed manifest let anyone recompute
        body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
        manifest["manifest_sha256"] = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    path.write_bytes(orjson.dumps(manifest))
    with pytest.raises(ArtifactError, match="signature does not match: the manifest was modified"):
        registry.load(version)


def test_the_signing_key_is_created_outside_the_models_directory_readable_by_its_owner_only(tmp_path: Path) -> None:
    models = tmp_path / "state" / "models"
    Registry(models).publish(example_booster(), example_manifest())
    key = tmp_path / "state" / SIGNING_KEY_FILE
    assert key.is_file() and not list(models.rglob("*.key"))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    manifest = orjson.loads((models / "v0001" / MANIFEST_FILE).read_bytes())
    assert manifest["signature"]["algorithm"] == "HMAC-SHA256"


def test_a_missing_or_other_key_is_a_clear_error_on_load(tmp_path: Path) -> None:
    models = tmp_path / "models"
    version = Registry(models).publish(example_booster(), example_manifest())
    key = tmp_path / SIGNING_KEY_FILE
    key.rename(tmp_path / "kept.key")
    with pytest.raises(ArtifactError, match=r"the model signing key .* does not exist"):
        Registry(models).load(version)
    other = tmp_path / "other.key"
    Registry(tmp_path / "elsewhere", signing_key_file=other).publish(example_booster(), example_manifest())
    with pytest.raises(ArtifactError, match="signed with another key"):
        Registry(models, signing_key_file=other).load(version)
    assert Registry(models, signing_key_file=tmp_path / "kept.key").load(version).version == version
    (tmp_path / "kept.key").chmod(0o644)
    with pytest.raises(ArtifactError, match="accessible to other users"):
        Registry(models, signing_key_file=tmp_path / "kept.key").load(version)


def test_the_key_file_setting_moves_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_MODEL_SIGNING_KEY_FILE", str(tmp_path / "secrets" / "models.key"))
    get_settings.cache_clear()
    try:
        version = Registry(tmp_path / "models").publish(example_booster(), example_manifest())
        assert (tmp_path / "secrets" / "models.key").is_file()
        assert not (tmp_path / SIGNING_KEY_FILE).exists()
        assert Registry(tmp_path / "models").load(version).version == version
    finally:
        monkeypatch.delenv("FRAUDSTREAM_MODEL_SIGNING_KEY_FILE")
        get_settings.cache_clear()


def test_an_unsigned_manifest_is_refused_with_what_to_do(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    version = registry.publish(example_booster(), example_manifest())
    path = tmp_path / "models" / version / MANIFEST_FILE
    manifest = orjson.loads(path.read_bytes())
    manifest["format"] = 1
    del manifest["signature"]
    path.write_bytes(orjson.dumps(manifest))
    assert not registry.signed(version)
    with pytest.raises(ArtifactError, match=r"unsigned manifest .* rebuild the model with `fraudstream train`"):
        registry.load(version)


def test_rollback_returns_to_the_previous_production_version_like_an_undo_stack(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second, third = (registry.publish(example_booster(seed), example_manifest()) for seed in (1, 2, 3))
    with pytest.raises(NoProductionModel, match=r"no earlier production version.*production: none"):
        registry.rollback()
    registry.promote(first)
    with pytest.raises(NoProductionModel, match=rf"production: {first}.*model promote"):
        registry.rollback()
    registry.promote(second)
    registry.promote(second)  # promoting the current version again is no new step
    registry.promote(third)
    assert registry.production_history() == [first, second, third]
    assert registry.rollback() == (third, second)
    assert registry.production_version() == second
    assert registry.rollback() == (second, first)
    assert registry.production_version() == first
    assert registry.production_history() == [first]
    registry.promote(third)
    assert registry.rollback() == (third, first)
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())


def test_rollback_starts_from_the_current_version_of_a_registry_without_history(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second = (registry.publish(example_booster(seed), example_manifest()) for seed in (1, 2))
    registry.promote(first)
    (tmp_path / "PRODUCTION_HISTORY").unlink()
    (tmp_path / "PRODUCTION").write_text(second + "\n")  # promoted by an older release (no history kept)
    assert registry.production_history() == [second]
    registry.promote(first)
    assert registry.rollback() == (first, second)


def test_rollback_refuses_a_previous_version_that_no_longer_verifies(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second = (registry.publish(example_booster(seed), example_manifest()) for seed in (1, 2))
    registry.promote(first)
    registry.promote(second)
    (tmp_path / first / MODEL_FILE).write_text("edited")
    with pytest.raises(ArtifactError, match="tampered"):
        registry.rollback()
    assert registry.production_version() == second
    assert registry.production_history() == [first, second]


def test_a_shadow_version_is_kept_until_it_is_promoted_or_cleared(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second = (registry.publish(example_booster(seed), example_manifest()) for seed in (1, 2))
    assert registry.shadow_version() is None
    registry.promote(first)
    registry.set_shadow(second)
    assert registry.shadow_version() == second
    registry.promote(second)
    assert registry.shadow_version() is None
    registry.set_shadow(first)
    registry.clear_shadow()
    assert registry.shadow_version() is None
    with pytest.raises(ArtifactError, match="no model version"):
        registry.set_shadow("v0009")


def test_a_retraining_request_holds_for_the_production_version_it_names(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, second = (registry.publish(example_booster(seed), example_manifest()) for seed in (1, 2))
    registry.promote(first)
    assert registry.retrain_request() is None
    registry.request_retrain(first, "drift above PSI 0.2: {'amount': 0.4}")
    assert registry.retrain_request() == {"version": first, "reason": "drift above PSI 0.2: {'amount': 0.4}"}
    registry.promote(second)  # another model serves now: the request is stale
    assert registry.retrain_request() is None
    registry.clear_retrain_request()
    registry.rollback()
    assert registry.retrain_request() is None
