"""The container image (Dockerfile): it builds, and the image runs `reconciler` as its entrypoint,
as a non-root user, with no compiler, and plans and applies against the embedded sandbox in a
mounted directory. Needs a working container engine (docker or podman) and the base image
(pulled from its registry, or RECONCILER_TEST_PYTHON_IMAGE: a mirror of python:3.11-slim, passed
as the Dockerfile's PYTHON_IMAGE); without either the test skips and says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.distribution import DISTRIBUTION, installed_version

REPO = Path(__file__).resolve().parents[2]
BASE = os.environ.get("RECONCILER_TEST_PYTHON_IMAGE", "docker.io/library/python:3.11-slim")

pytestmark = pytest.mark.slow


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
    """An engine's error is its last line (podman first says what it was trying)."""
    return next((line for line in reversed(text.splitlines()) if line.strip()), "").strip()


def usable_engine() -> str:
    """docker or podman, whichever answers; else skip, saying why."""
    reasons = []
    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            reasons.append(f"{engine}: not installed")
            continue
        info = run([engine, "info"], timeout=60)
        if info.returncode == 0:
            return engine
        reasons.append(f"{engine}: `{engine} info` failed: {last_line(info.stderr)}")
    pytest.skip("no usable container engine (" + "; ".join(reasons) + ")")


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    engine = usable_engine()
    if run([engine, "image", "inspect", BASE]).returncode != 0:
        pulled = run([engine, "pull", BASE], timeout=600)
        if pulled.returncode != 0:
            pytest.skip(f"{engine} cannot pull the base image {BASE}: {last_line(pulled.stderr)}")
    tag = f"localhost/reconciler-test:{uuid.uuid4().hex[:12]}"
    built = run([engine, "build", "--build-arg", f"PYTHON_IMAGE={BASE}", "--tag", tag,
                 "--file", str(REPO / "Dockerfile"), str(REPO)], timeout=1200)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    yield f"{engine} {tag}"
    run([engine, "rmi", "--force", tag])


def in_image(image: str, *args: str, entrypoint: str | None = None,
             mount: Path | None = None) -> subprocess.CompletedProcess[str]:
    engine, tag = image.split(" ")
    options = [*(["--entrypoint", entrypoint] if entrypoint else []), *(["-v", f"{mount}:/work"] if mount else [])]
    return run([engine, "run", "--rm", *options, tag, *args])


def test_image_runs_reconciler_as_its_entrypoint(image: str) -> None:
    done = in_image(image, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: reconciler" in done.stdout and "plan" in done.stdout
    done = in_image(image, "--version")
    assert (done.returncode, done.stdout) == (0, f"{DISTRIBUTION} {installed_version()}\n"), done.stderr


def test_image_runs_as_non_root_without_compilers(image: str) -> None:
    done = in_image(image, "-u", entrypoint="id")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() != "0"
    done = in_image(image, "-c", "command -v gcc cc c++ clang make || echo none", entrypoint="sh")
    assert done.stdout.strip() == "none", done.stdout


def test_image_plans_and_applies_manifests_in_a_mounted_directory(image: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO / "manifests", work / "manifests")
    work.chmod(0o777)  # the image's user (uid 10001) writes the sandbox state here
    done = in_image(image, "apply", "manifests/", "--sandbox", "state.db", "--auto-approve", mount=work)
    assert done.returncode == 0, done.stdout + done.stderr
    done = in_image(image, "plan", "manifests/", "--sandbox", "state.db", "--detailed-exitcode", mount=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes." in done.stdout
