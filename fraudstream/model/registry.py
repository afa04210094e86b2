"""Model registry: one directory per version, a signed manifest with SHA-256 of every file, a promote pointer.

Layout under ``models_dir``::

    v0001/model.txt        LightGBM native text model (booster.save_model)
    v0001/manifest.json    feature names, feature-code version, window, metrics, thresholds, file hashes,
                           HMAC-SHA256 signature (fraudstream.model.signing; the key lives outside models_dir)
    PRODUCTION             the promoted version's name, replaced atomically (write + rename)
    PRODUCTION_HISTORY     JSON list of the versions promoted, oldest first, the current last: what
                           `model rollback` pops back to
    SHADOW                 the challenger scored beside production (no decisions), if any
    RETRAIN_REQUESTED      JSON: a running engine saw drift on this production version; a scheduled
                           `fraudstream retrain` runs early

A version directory is built under a temporary name and renamed into place, so readers never see a
half-written artifact. Loading verifies the manifest's signature, then re-hashes every file: an edited
file or manifest is refused, and so is a manifest re-hashed by someone without the key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import orjson

from fraudstream.events.contract import InvalidEvent, parse_time_us
from fraudstream.model.exceptions import ArtifactError, ModelError, NoProductionModel
from fraudstream.model.signing import ModelSigner, signing_key_path

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"
POINTER_FILE = "PRODUCTION"
HISTORY_FILE = "PRODUCTION_HISTORY"
SHADOW_FILE = "SHADOW"
RETRAIN_FILE = "RETRAIN_REQUESTED"
#: 2: signed (HMAC-SHA256). 1 carried a checksum of itself, which anyone editing it could recompute.
MANIFEST_FORMAT = 2
_VERSION = re.compile(r"^v\d{4,}$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A verified model: the booster and its manifest."""

    version: str
    path: Path
    manifest: dict[str, Any]
    booster: lgb.Booster
    #: The key that verified the manifest; it also vouches for the model's compiled library.
    signer: ModelSigner


def load_artifact(path: Path, signer: ModelSigner | None = None) -> Artifact:
    """Load a version directory, verifying the manifest's signature and the hash of every file (the key:
    ``signer``'s, else the models directory's, see fraudstream.model.signing)."""
    path = Path(path)
    signer = signer or ModelSigner(signing_key_path(path.parent))
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not a model artifact: {MANIFEST_FILE} is missing")
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise ArtifactError(f"{manifest_path}: not valid JSON ({error})") from None
    if manifest.get("format") == 1:
        raise ArtifactError(f"{manifest_path}: an unsigned manifest (format 1, built before manifests were signed) "
                            "cannot be verified; rebuild the model with `fraudstream train`")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{manifest_path}: unknown manifest format {manifest.get('format')!r}")
    signer.verify(manifest, manifest_path)
    files = manifest.get("files", {})
    if MODEL_FILE not in files:
        raise ArtifactError(f"{manifest_path}: manifest lists no {MODEL_FILE}")
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: {name} is listed in the manifest but missing")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"{file}: SHA-256 {actual[:12]}… does not match the manifest ({expected[:12]}…); "
                "the artifact was tampered with or corrupted, refusing to load it"
            )
    booster = lgb.Booster(model_file=str(path / MODEL_FILE))
    if list(booster.feature_name()) != list(manifest["feature_names"]):
        raise ArtifactError(f"{path}: the model's features differ from the manifest's feature_names")
    return Artifact(manifest["version"], path, manifest, booster, signer)


class Registry:
    """Versions under one directory; cheap ``production_version`` for engines to poll per batch."""

    def __init__(self, models_dir: Path, signing_key_file: Path | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.signer = ModelSigner(signing_key_file or signing_key_path(self.models_dir))

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        if not self.models_dir.is_dir():
            return []
        names = [entry.name for entry in self.models_dir.iterdir() if entry.is_dir() and _VERSION.match(entry.name)]
        return sorted(names, key=lambda name: int(name[1:]))

    def path(self, version: str) -> Path:
        if not _VERSION.match(version) or not (self.models_dir / version).is_dir():
            raise ArtifactError(f"no model version {version!r} in {self.models_dir}")
        return self.models_dir / version

    def load(self, version: str) -> Artifact:
        return load_artifact(self.path(version), self.signer)

    def signed(self, version: str) -> bool:
        """Whether a version's manifest is of the signed format (not whether the signature is valid)."""
        try:
            return orjson.loads((self.path(version) / MANIFEST_FILE).read_bytes()).get("format") == MANIFEST_FORMAT
        except (OSError, orjson.JSONDecodeError):
            return False

    def manifest(self, version: str) -> dict[str, Any]:
        return self.load(version).manifest

    def publish(self, booster: lgb.Booster, manifest: dict[str, Any]) -> str:
        """Write a new version (model + manifest with hashes) and return its name."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=self.models_dir))
        booster.save_model(str(staging / MODEL_FILE))
        while True:
            existing = self.versions()
            version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
            body = {
                **manifest,
                "format": MANIFEST_FORMAT,
                "version": version,
                "files": {MODEL_FILE: sha256_file(staging / MODEL_FILE)},
            }
            body = self.signer.sign(body)
            (staging / MANIFEST_FILE).write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            try:
                staging.rename(self.models_dir / version)  # fails if another build took the name
            except OSError:
                continue
            return version

    def promote(self, version: str) -> None:
        """Point production at a verified version (atomic replace of the PRODUCTION file); it is pushed on
        the production history and stops being the shadow model if it was."""
        self.load(version)
        history = self.production_history()
        if not history or history[-1] != version:
            self._write(HISTORY_FILE, orjson.dumps([*history, version]).decode())
        self._write(POINTER_FILE, version)
        if self.shadow_version() == version:
            self.clear_shadow()

    def rollback(self) -> tuple[str, str]:
        """Return production to the version promoted before the current one; (from, to). Rolling back
        again goes further back, as an undo stack (a later promote pushes again)."""
        history = self.production_history()
        if len(history) < 2:
            current = history[-1] if history else None
            raise NoProductionModel(
                f"no earlier production version to return to in {self.models_dir} (production: {current or 'none'}): "
                "promote a version with `fraudstream model promote VERSION` instead")
        current, previous = history[-1], history[-2]
        self.load(previous)
        self._write(HISTORY_FILE, orjson.dumps(history[:-1]).decode())
        self._write(POINTER_FILE, previous)
        return current, previous

    def production_history(self) -> list[str]:
        """Versions promoted, oldest first, ending with the current one (a registry promoted before the
        history was kept starts it at its current version)."""
        try:
            history = [str(version) for version in orjson.loads((self.models_dir / HISTORY_FILE).read_bytes())]
        except FileNotFoundError:
            history = []
        except orjson.JSONDecodeError as error:
            raise ArtifactError(f"{self.models_dir / HISTORY_FILE}: not valid JSON ({error}); restore it or delete "
                                "it (rollback then starts from the current version)") from None
        current = self.production_version()
        if current is not None and (not history or history[-1] != current):
            history.append(current)
        return history

    def set_shadow(self, version: str) -> None:
        """Score a verified version in shadow beside production (engines pick it up at their next batch)."""
        self.load(version)
        self._write(SHADOW_FILE, version)

    def clear_shadow(self) -> None:
        (self.models_dir / SHADOW_FILE).unlink(missing_ok=True)

    def shadow_version(self) -> str | None:
        """The challenger in shadow, or None; one small file read, as ``production_version``."""
        try:
            version = (self.models_dir / SHADOW_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def request_retrain(self, version: str, reason: str) -> None:
        """Mark ``version`` for retraining (drift seen by an engine); the scheduled retrain runs early."""
        self._write(RETRAIN_FILE, orjson.dumps({"version": version, "reason": reason}).decode())

    def retrain_request(self) -> dict[str, str] | None:
        """The pending request for the current production version, or None (one for an older version is stale)."""
        try:
            request = orjson.loads((self.models_dir / RETRAIN_FILE).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return request if request.get("version") == self.production_version() else None

    def clear_retrain_request(self) -> None:
        (self.models_dir / RETRAIN_FILE).unlink(missing_ok=True)

    def _write(self, name: str, text: str) -> None:
        """Replace a small registry file atomically (write, fsync, rename)."""
        handle, temporary = tempfile.mkstemp(prefix=f".{name.lower()}-", dir=self.models_dir)
        with os.fdopen(handle, "w") as pointer:
            pointer.write(text + "\n")
            pointer.flush()
            os.fsync(pointer.fileno())
        os.replace(temporary, self.models_dir / name)

    def production_version(self) -> str | None:
        """The promoted version, or None; one small file read, cheap enough for every batch."""
        try:
            version = (self.models_dir / POINTER_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def production(self) -> Artifact:
        version = self.production_version()
        if version is None:
            raise NoProductionModel(f"no model is promoted in {self.models_dir}")
        return self.load(version)

    def production_training_end_us(self) -> int | None:
        """The end of the promoted model's training data (its test window), where live traffic continues;
        None without a promoted model that records one."""
        try:
            return parse_time_us(self.production().manifest["training_window"]["test"]["end"])
        except (ModelError, KeyError, TypeError, InvalidEvent):
            log.info("no promoted model with a training window in %s", self.models_dir)
            return None
