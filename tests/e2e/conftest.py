"""The compose test's images are built in the background from the start of the session.

A cold build (Docker installed and started, a debootstrap'd base image, the project image and the
stand-ins) takes minutes that would otherwise add up with the rest of the suite: when the session has
tests marked `docker`, they run last and the build (scripts/install-docker.sh, then
scripts/docker-images.sh --local, at a lower priority than the tests: its host-side steps, and the
builds themselves when this starts the Docker daemon, as on CI) starts as soon as collection ends. Its
log is .fraudstream/docker/background-build.log; the compose fixture waits for it (`docker_images`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_LOG = ROOT / ".fraudstream" / "docker" / "background-build.log"
# exit status 3 of scripts/install-docker.sh: no Docker daemon can run here
NO_DAEMON = 3


@dataclass
class BackgroundBuild:
    process: subprocess.Popen[bytes]


BUILD = pytest.StashKey[BackgroundBuild]()


def start_build() -> BackgroundBuild:
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with BUILD_LOG.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", "FRAUDSTREAM_DOCKERD_NICE=10 scripts/install-docker.sh "
                           "&& nice -n 10 scripts/docker-images.sh --local\n"
                           'status=$?; echo "build finished after $SECONDS s"; exit $status'],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return BackgroundBuild(process)


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: only the tests that will run count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker = [item for item in items if item.get_closest_marker("docker")]
    if not docker:
        return
    items[:] = [item for item in items if not item.get_closest_marker("docker")] + docker
    if not config.option.collectonly:
        config.stash[BUILD] = start_build()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A build still running when the session ends early (-x, Ctrl-C) is stopped with it."""
    build = session.config.stash.get(BUILD, None)
    if build is not None and build.process.poll() is None:
        os.killpg(build.process.pid, signal.SIGTERM)
        build.process.wait(timeout=60)


@pytest.fixture(scope="session")
def docker_images(request: pytest.FixtureRequest) -> dict[str, object]:
    """Waits for the background build: its output, its own wall time (it overlapped the other tests) and
    how long this fixture waited for it. Skips only where no Docker daemon can run."""
    build = request.config.stash.get(BUILD, None) or start_build()
    waiting = time.monotonic()
    try:
        status = build.process.wait(timeout=1800)
    except subprocess.TimeoutExpired:
        os.killpg(build.process.pid, signal.SIGTERM)
        raise AssertionError(f"the image build took more than 30 min; its log: {BUILD_LOG}") from None
    output = BUILD_LOG.read_text(errors="replace")
    if status == NO_DAEMON:
        pytest.skip(f"no Docker daemon can be started here: {output.strip()[-2000:]}")
    assert status == 0, f"building the images failed (exit {status}), {BUILD_LOG}:\n{output[-5000:]}"
    finished = re.search(r"build finished after (\d+) s", output)
    return {"build_s": int(finished[1]) if finished else None,
            "waited_for_build_s": round(time.monotonic() - waiting, 1), "build_output": output}
