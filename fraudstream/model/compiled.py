"""The model's trees compiled to native code (lleaves, on LLVM): the predictor both engines score with.

LightGBM walks its trees at ~26 µs per row on one thread for a 320-tree model, the largest CPU cost of
an event; the same trees compiled to branches cost ~4 µs per row and give the same probabilities to
within 1e-15. Compiling takes seconds (~16 s for 320 trees), so the machine code is cached per model
text hash, in a ``compiled-models`` directory beside the models directory, never inside a model
artifact: a model handed over carries text (verified against its manifest), not code. Compiling
writes under a lock, so processes loading the same model at once (Spark's Python workers) compile it
once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import lleaves
import numpy as np
from llvmlite import binding

CACHE_FOLDER = "compiled-models"


def cache_dir_for(models_dir: Path) -> Path:
    """Where the compiled models of a models directory live (beside it, not in it)."""
    return Path(models_dir).resolve().parent / CACHE_FOLDER


def _cache_key(model_sha256: str) -> str:
    """The model text plus everything the machine code depends on: compiler versions and the CPU."""
    toolchain = "|".join((metadata.version("lleaves"), metadata.version("llvmlite"), platform.machine(),
                          binding.get_host_cpu_name(), binding.get_host_cpu_features().flatten()))
    return f"{model_sha256[:32]}-{hashlib.sha256(toolchain.encode()).hexdigest()[:16]}"


class CompiledModel:
    """Probabilities of the positive class, as ``lightgbm.Booster.predict`` gives them, one thread."""

    def __init__(self, model_file: Path, model_sha256: str, cache_dir: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        binary = cache_dir / f"{_cache_key(model_sha256)}.so"
        self._model = lleaves.Model(model_file=str(model_file))
        with (cache_dir / f"{binary.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first process compiles, the others wait and load
            if not binary.exists():
                handle, staging = tempfile.mkstemp(prefix=".compiling-", suffix=".so", dir=cache_dir)
                os.close(handle)
                os.unlink(staging)  # lleaves writes the file itself when the path does not exist
                lleaves.Model(model_file=str(model_file)).compile(cache=staging)
                os.replace(staging, binary)
            self._model.compile(cache=str(binary))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self._model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=1)
