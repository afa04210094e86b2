"""The model's trees compiled to native code (lleaves, on LLVM): the predictor both engines score with.

Walking the trees is the largest CPU cost of an event; the same trees compiled to branches cost a
fraction of it and give the same probabilities to within 1e-15 (`bench/bench_score.py` measures both).
Compiling takes seconds, so the machine code is cached per model
text hash, in a ``compiled-models`` directory beside the models directory, never inside a model
artifact: a model handed over carries text (verified against its manifest), not code. Compiling
writes under a lock, so processes loading the same model at once (Spark's Python workers) compile it
once.

Machine code is loaded into the process, so it is checked first: each library has a manifest beside it
(``<library>.json``: the model text's and the library's SHA-256, signed with the model signing key),
and a library whose bytes or manifest do not match is refused and compiled again from the verified
model text. The checked bytes are what gets loaded: they are copied to a private file first, so the
cached file cannot be swapped between the check and the load.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import lleaves
import numpy as np
import orjson
from llvmlite import binding

from fraudstream.model.signing import ModelSigner

log = logging.getLogger(__name__)

CACHE_FOLDER = "compiled-models"


def cache_dir_for(models_dir: Path) -> Path:
    """Where the compiled models of a models directory live (beside it, not in it)."""
    return Path(models_dir).resolve().parent / CACHE_FOLDER


def _cache_key(model_sha256: str) -> str:
    """The model text plus everything the machine code depends on: compiler versions and the CPU."""
    toolchain = "|".join((metadata.version("lleaves"), metadata.version("llvmlite"), platform.machine(),
                          binding.get_host_cpu_name(), binding.get_host_cpu_features().flatten()))
    return f"{model_sha256[:32]}-{hashlib.sha256(toolchain.encode()).hexdigest()[:16]}"


def _library_manifest(binary: Path) -> Path:
    return binary.with_name(binary.name + ".json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _library_refusal(binary: Path, data: bytes, model_sha256: str, signer: ModelSigner) -> str | None:
    """Why the cached library must not be loaded, or None when its manifest vouches for these bytes."""
    try:
        manifest = orjson.loads(_library_manifest(binary).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return "no readable library manifest"
    expected = signer.digest(f"{manifest.get('model_sha256')}:{manifest.get('library_sha256')}".encode())
    if not hmac.compare_digest(str(manifest.get("signature", "")), expected):
        return "library manifest signature does not match"
    if manifest.get("model_sha256") != model_sha256:
        return "library compiled from another model"
    if manifest.get("library_sha256") != _sha256(data):
        return f"SHA-256 {_sha256(data)[:12]}… differs from the manifest's {str(manifest.get('library_sha256'))[:12]}…"
    return None


def _compile(model_file: Path, binary: Path, model_sha256: str, signer: ModelSigner) -> None:
    """Compile into ``binary`` and write its signed manifest (library first: a manifest never precedes it)."""
    handle, staging = tempfile.mkstemp(prefix=".compiling-", suffix=".so", dir=binary.parent)
    os.close(handle)
    os.unlink(staging)  # lleaves writes the file itself when the path does not exist
    lleaves.Model(model_file=str(model_file)).compile(cache=staging)
    library_sha256 = _sha256(Path(staging).read_bytes())
    os.replace(staging, binary)
    manifest = {"model_sha256": model_sha256, "library_sha256": library_sha256,
                "signature": signer.digest(f"{model_sha256}:{library_sha256}".encode())}
    handle, staging = tempfile.mkstemp(prefix=".manifest-", dir=binary.parent)
    with os.fdopen(handle, "wb") as file:
        file.write(orjson.dumps(manifest))
    os.replace(staging, _library_manifest(binary))


class CompiledModel:
    """Probabilities of the positive class, as ``lightgbm.Booster.predict`` gives them, one thread."""

    def __init__(self, model_file: Path, model_sha256: str, cache_dir: Path, signer: ModelSigner) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        binary = cache_dir / f"{_cache_key(model_sha256)}.so"
        self._model = lleaves.Model(model_file=str(model_file))
        with (cache_dir / f"{binary.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first process compiles, the others wait and load
            data = binary.read_bytes() if binary.exists() else None
            refusal = "not compiled yet" if data is None else _library_refusal(binary, data, model_sha256, signer)
            if refusal is not None:
                if data is not None:
                    log.error("compiled model refused library=%s reason=%r action=compile_again", binary, refusal)
                _compile(model_file, binary, model_sha256, signer)
                data = binary.read_bytes()
                refusal = _library_refusal(binary, data, model_sha256, signer)
                if refusal is not None:
                    raise RuntimeError(f"{binary}: the library just compiled does not verify ({refusal})")
        private = Path(tempfile.mkdtemp(prefix="fraudstream-model-"))  # mode 0700: only we can write there
        try:
            (private / binary.name).write_bytes(data)
            self._model.compile(cache=str(private / binary.name))  # loads the verified bytes
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self._model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=1)
