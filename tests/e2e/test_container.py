"""The container image (Dockerfile): it builds, and the image runs `reconciler` as its entrypoint,
as a non-root user, with no compiler. Needs a working container engine (docker or podman) and
the base image (pulled from its registry); without either the test skips and says which."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.distribution import DISTRIBUTION, installed_version

REPO = Path(__file__).resolve().parents[2]
BASE = "docker.io/library/python:3.11-slim"  # the Dockerfile's PYTHON_IMAGE default

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
    built = run([engine, "build", "--tag", tag, "--file", str(REPO / "Dockerfile"), str(REPO)], timeout=1200)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    yield f"{engine} {tag}"
    run([engine, "rmi", "--force", tag])


def in_image(image: str, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    engine, tag = image.split(" ")
    return run([engine, "run", "--rm", *(["--entrypoint", entrypoint] if entrypoint else []), tag, *args])


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
