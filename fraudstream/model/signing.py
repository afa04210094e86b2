"""HMAC-SHA256 signatures of model manifests and compiled model libraries.

A manifest lists the SHA-256 of every file of its model; the signature over the manifest makes that list
trustworthy: whoever edits a file and recomputes its hash still cannot sign the edited manifest without
the key. The key is kept outside the models directory (by default ``model-signing.key`` in the directory
that holds it, the state directory; ``FRAUDSTREAM_MODEL_SIGNING_KEY_FILE`` moves it), is created with
mode 0600 the first time a model is published, and is only read when a model is loaded: a missing or
other key is then a clear error, never a silent pass. What this does not protect against: someone who
can read the key (the same user, or root) can sign anything.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import orjson

from fraudstream.model.exceptions import ArtifactError

SIGNING_KEY_FILE = "model-signing.key"
ALGORITHM = "HMAC-SHA256"


def signing_key_path(models_dir: Path) -> Path:
    """The key that signs ``models_dir``'s manifests: the configured file, else one beside the directory."""
    from fraudstream.config import get_settings

    configured = get_settings().model_signing_key_file
    return Path(configured) if configured else Path(models_dir).resolve().parent / SIGNING_KEY_FILE


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the document without its signature, keys sorted."""
    return orjson.dumps({key: value for key, value in document.items() if key != "signature"},
                        option=orjson.OPT_SORT_KEYS)


class ModelSigner:
    """Signs and verifies with the key in one file; the key is read lazily and created only on ``sign``."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = Path(key_file)
        self._key: bytes | None = None

    def _read(self) -> bytes:
        mode = self.key_file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ArtifactError(f"the model signing key {self.key_file} is accessible to other users "
                                f"(mode {stat.filemode(mode)}): `chmod 600 {self.key_file}`")
        key = bytes.fromhex(self.key_file.read_text().strip())
        if len(key) < 32:
            raise ArtifactError(f"the model signing key {self.key_file} is shorter than 32 bytes")
        return key

    def _create(self) -> None:
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # another process created it first: use theirs
        with os.fdopen(handle, "w") as key:
            key.write(secrets.token_hex(32) + "\n")

    def key(self, create: bool = False) -> bytes:
        if self._key is None:
            if not self.key_file.exists():
                if not create:
                    raise ArtifactError(
                        f"the model signing key {self.key_file} does not exist, so no signed manifest can be "
                        "verified: restore the key file the models were published with (or point "
                        "FRAUDSTREAM_MODEL_SIGNING_KEY_FILE at it), or rebuild the model with `fraudstream train`")
                self._create()
            self._key = self._read()
        return self._key

    @property
    def key_id(self) -> str:
        """Names the key in signatures (a hash of it), so a mismatch can say which key signed."""
        return hashlib.sha256(self.key()).hexdigest()[:16]

    def digest(self, data: bytes, create: bool = False) -> str:
        return hmac.new(self.key(create), data, hashlib.sha256).hexdigest()

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` with its signature (the key is created on first use)."""
        value = self.digest(canonical(document), create=True)
        return {**document, "signature": {"algorithm": ALGORITHM, "key_id": self.key_id, "value": value}}

    def verify(self, document: dict[str, Any], where: Path) -> None:
        """ArtifactError unless ``document`` carries a valid signature by this key."""
        signature = document.get("signature")
        if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
            raise ArtifactError(f"{where}: not signed ({ALGORITHM} signature missing): it cannot be trusted; "
                                "rebuild the model with `fraudstream train`")
        expected = self.digest(canonical(document))
        if not hmac.compare_digest(str(signature.get("value", "")), expected):
            other = signature.get("key_id") != self.key_id
            raise ArtifactError(
                f"{where}: signature does not match: "
                + (f"signed with another key (key id {signature.get('key_id')}, {self.key_file} is {self.key_id})"
                   if other else "the manifest was modified after it was signed")
                + "; refusing to load it")
