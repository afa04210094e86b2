"""Jars resolved from Maven Central once and cached in the state directory."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from fraudstream.config import Settings
from fraudstream.services.exceptions import ServiceError

#: deploy/maven/<name>/pom.xml in the source tree.
POM_ROOT = Path(__file__).resolve().parents[2] / "deploy" / "maven"


def resolve_jars(name: str, jars_root: Path) -> Path:
    """Directory holding the runtime jars of deploy/maven/<name>/pom.xml, resolving them when the pom changed."""
    pom = POM_ROOT / name / "pom.xml"
    if not pom.exists():
        raise ServiceError(f"{pom} is missing: run fraudstream from a checkout of the repository")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    jars_root = jars_root.resolve()  # mvn resolves relative paths against the pom's directory
    target = jars_root / name
    stamp = target / ".pom-sha256"
    if stamp.exists() and stamp.read_text() == digest:
        return target
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is required to fetch jars: apt-get install maven")
    staging = jars_root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"mvn could not resolve {pom}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    (staging / ".pom-sha256").write_text(digest)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def project_jars(settings: Settings, name: str) -> Path:
    """The jars of deploy/maven/<name>: the pre-resolved folder under ``jars_dir`` when set (an image
    built them; no Maven at run time), else resolved with Maven into the state directory."""
    if settings.jars_dir is None:
        return resolve_jars(name, settings.state_dir / "jars")
    folder = settings.jars_dir / name
    if not any(folder.glob("*.jar")):
        raise ServiceError(f"no jars in {folder} (FRAUDSTREAM_JARS_DIR): resolve deploy/maven/{name}/pom.xml "
                           "into it, or unset FRAUDSTREAM_JARS_DIR to resolve them with Maven")
    return folder
