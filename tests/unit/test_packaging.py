"""What `pipx install managed-identity-reconciler` gives a user, who has neither this repository
nor ../shared: the wheel carries every data file the tool reads at run time, installs into a
fresh venv the way pipx does it, and works there; and no document tells a user to install a
distribution that is not ours.

Offline: the sdist and wheel build without build isolation (setuptools from the test extras),
and the fresh venv takes the wheel's dependencies from this venv's site-packages (a .pth file
to a folder of links to them, without this project's own editable install), with `--no-index`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.distribution import DISTRIBUTION

REPO = Path(__file__).resolve().parents[2]
WHEEL_PREFIX = DISTRIBUTION.replace("-", "_")
# what the editable install of this checkout put into this venv: not for the fresh one
OWN_ENTRIES = re.compile(rf"^(__editable__.*|{WHEEL_PREFIX}[-.].*|reconciler([-.].*)?|.*\.pth)$")


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def build_like_a_release(tmp: Path) -> tuple[Path, Path]:
    """sdist from a copy of the source tree, then the wheel from that sdist (as `python -m build`
    does), so the wheel proves the sdist is complete too."""
    src = tmp / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", ".reconciler", ".hypothesis"))
    out = tmp / "dist"
    out.mkdir()
    probe = f"import setuptools.build_meta as b; print(b.build_sdist({str(out)!r}))"
    done = run([sys.executable, "-c", probe], cwd=src)
    assert done.returncode == 0, done.stderr
    sdist = out / done.stdout.strip().splitlines()[-1]
    done = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                "-w", str(out), str(sdist)], cwd=tmp)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob(f"{WHEEL_PREFIX}-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and wheel: built here, or, with RECONCILER_TEST_DIST=dist/, the release files
    about to be published (examples/release/release.yml)."""
    if dist := os.environ.get("RECONCILER_TEST_DIST"):
        (sdist,) = Path(dist).glob(f"{WHEEL_PREFIX}-*.tar.gz")
        (wheel,) = Path(dist).glob(f"{WHEEL_PREFIX}-*.whl")
        return sdist.resolve(), wheel.resolve()
    return build_like_a_release(tmp_path_factory.mktemp("build"))


def fresh_venv(where: Path) -> Path:
    """A venv as pipx makes one, whose only view of this venv is its dependencies."""
    venv = where / "venv"
    done = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=where)
    assert done.returncode == 0, done.stderr
    deps = where / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not OWN_ENTRIES.match(entry.name):
            (deps / entry.name).symlink_to(entry)
    (venv / "lib" / "python3.11" / "site-packages" / "_deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    return venv


def pip_install(venv: Path, *args: str) -> None:
    done = run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                "--no-index", *args], cwd=venv)
    assert done.returncode == 0, done.stderr


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "RECONCILER_"))}
    env.update(HOME=str(home), PATH=f"{home.parent / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return env


def test_wheel_ships_the_role_table_and_both_schemas(built: tuple[Path, Path]) -> None:
    sdist, wheel = built
    version = wheel.name.split("-")[1]
    assert sdist.name == f"{WHEEL_PREFIX}-{version}.tar.gz"
    with tarfile.open(sdist) as tar:
        assert any(m.name.endswith("/reconciler/data/manifest.schema.json") for m in tar.getmembers())
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in ("builtin_roles.json", "manifest.schema.json", "plan.schema.json"):
            assert f"reconciler/data/{name}" in names
        # the schemas are real files in the wheel, equal to the ones in schemas/, not dangling links
        for name in ("manifest.schema.json", "plan.schema.json"):
            shipped = json.loads(z.read(f"reconciler/data/{name}"))
            assert shipped == json.loads((REPO / "schemas" / name).read_text())
        assert len(json.loads(z.read("reconciler/data/builtin_roles.json"))) > 900
        assert any(n.startswith("reconciler/sandbox/") for n in names)
        metadata = z.read(f"{WHEEL_PREFIX}-{version}.dist-info/METADATA").decode()
        assert f"Name: {DISTRIBUTION}\n" in metadata
        entry_points = z.read(f"{WHEEL_PREFIX}-{version}.dist-info/entry_points.txt").decode()
        assert "reconciler = reconciler.cli:main" in entry_points


def test_pipx_style_install_runs_validate_plan_apply_on_the_embedded_sandbox(
        built: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = built
    version = wheel.name.split("-")[1]
    venv = fresh_venv(tmp_path)
    pip_install(venv, str(wheel))
    # a user's directory: manifests only, no repository, no ../shared, no schemas/
    work = tmp_path / "home" / "identities"
    shutil.copytree(REPO / "manifests", work / "manifests")
    env = clean_env(work.parent)
    reconciler = str(venv / "bin" / "reconciler")

    done = run([reconciler, "--version"], cwd=work, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{DISTRIBUTION} {version}\n", "")
    probe = "import reconciler; print(reconciler.__file__)"
    where = run([str(venv / "bin" / "python"), "-c", probe], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    # a `reconciler` package from elsewhere on the path is not the one the distribution installed
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(REPO / "reconciler", elsewhere / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    done = run([reconciler, "--version"], cwd=work, env={**env, "PYTHONPATH": str(elsewhere)})
    assert done.returncode == 1 and done.stdout == "", done.stdout
    assert f"`reconciler` was imported from {elsewhere / 'reconciler'}, not from {DISTRIBUTION}'s" in done.stderr

    done = run([reconciler, "validate", "manifests/"], cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    assert "Valid:" in done.stdout
    db = "state/sandbox.db"
    done = run([reconciler, "plan", "manifests/", "--sandbox", db, "--detailed-exitcode"], cwd=work, env=env)
    assert done.returncode == 2, done.stderr
    assert re.search(r"^Plan: [1-9][0-9]* to add, 0 to change, 0 to replace, 0 to destroy\.$", done.stdout, re.M)
    done = run([reconciler, "apply", "manifests/", "--sandbox", db, "--auto-approve"], cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    done = run([reconciler, "plan", "manifests/", "--sandbox", db, "--detailed-exitcode"], cwd=work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes." in done.stdout
    assert not (work / "reconciler").exists() and not (work.parent / "shared").exists()


def unrelated_reconciler_wheel(where: Path) -> Path:
    """A wheel like the unrelated `reconciler` on PyPI: its own top-level package `reconciler`."""
    files = {
        "reconciler/__init__.py": b'"""Reconcile two data frames."""\n',
        "reconciler/frames.py": b"def reconcile(left, right): ...\n",
        "reconciler-0.2.2.dist-info/METADATA": b"Metadata-Version: 2.1\nName: reconciler\nVersion: 0.2.2\n",
        "reconciler-0.2.2.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                            b"Tag: py3-none-any\n",
        "reconciler-0.2.2.dist-info/top_level.txt": b"reconciler\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("reconciler-0.2.2.dist-info/RECORD,,")
    wheel = where / "reconciler-0.2.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("reconciler-0.2.2.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_version_fails_clearly_when_another_distribution_owns_the_import_package(
        built: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = built
    venv = fresh_venv(tmp_path)
    pip_install(venv, "--no-deps", str(wheel))
    pip_install(venv, "--no-deps", str(unrelated_reconciler_wheel(tmp_path)))
    home = tmp_path / "home"
    home.mkdir()
    done = run([str(venv / "bin" / "reconciler"), "--version"], cwd=home, env=clean_env(home))
    assert done.returncode == 1, done.stdout
    assert done.stdout == ""
    assert f"installed by {DISTRIBUTION} and also by reconciler" in done.stderr
    assert "Traceback" not in done.stderr


# --- documents: only our name, and the current release ------------------------------------------

INSTALL = re.compile(r"\b(?:pipx|pip3?|uv(?:\s+tool|\s+pip)?)\s+(?:install|download)\b(?P<args>[^\n`#]*)")
NOT_OURS = [  # (what, pattern): somebody else's package or repository
    ("the distribution `reconciler` with a version", re.compile(r"(?<![\w.-])reconciler\s*(?:===?|[<>~!]=|[<>])")),
    ("a repository `*/reconciler` other than OWNER's",
     re.compile(r"(?:github\.com/|uses:\s*)(?!OWNER/)[\w.-]+/reconciler\b")),
]
PINS = [  # each names the release a user gets
    re.compile(r"OWNER/reconciler@v(\d[\w.]*)"),
    re.compile(r"managed-identity-reconciler(?:==| )(\d+\.\d+[\w.]*)"),
    re.compile(r"managed_identity_reconciler-(\d[\w.]*?)-py3"),
    re.compile(r"reconcilerVersion: (\d[\w.]*)"),
    re.compile(r"\brev: v(\d[\w.]*)"),
    re.compile(r"`version: (\d[\w.]*)`"),
]


def user_documents(root: Path) -> list[Path]:
    names = ["README.md", "CHANGELOG.md", "action.yml", "Dockerfile", ".pre-commit-hooks.yaml", "Makefile"]
    found = [root / n for n in names if (root / n).exists()]
    found += sorted((root / "docs").rglob("*.md")) + sorted(p for p in (root / "examples").rglob("*") if p.is_file())
    return found


def names_not_ours(root: Path) -> list[str]:
    problems = []
    for path in user_documents(root):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(root)}:{number}"
            for match in INSTALL.finditer(line):
                for arg in match["args"].split():
                    name = re.match(r"[\"']?([A-Za-z0-9][A-Za-z0-9._-]*)", arg)
                    if not arg.startswith("-") and name and name[1].lower().replace("_", "-") == "reconciler":
                        problems.append(f"{where}: installs the distribution `reconciler`: {line.strip()}")
            problems += [f"{where}: {what}: {line.strip()}" for what, pattern in NOT_OURS if pattern.search(line)]
    return problems


def test_no_document_tells_a_user_to_install_a_name_that_is_not_ours() -> None:
    assert names_not_ours(REPO) == []


def test_the_check_finds_somebody_elses_name(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "pipx install --force reconciler\n"
        "python -m pip install --quiet 'reconciler[extra]'\n"
        "uv tool install managed-identity-reconciler\n"          # ours
        "version: reconciler==0.1.0\n"
        "- uses: contoso/reconciler@v1\n"
        "- uses: OWNER/reconciler@v0.2.0\n"                      # ours
        "  - repo: https://github.com/contoso/reconciler\n"
        "pip install managed-identity-reconciler==0.2.0\n",      # ours
        encoding="utf-8")
    assert [p.split(": ")[0] for p in names_not_ours(tmp_path)] == [
        "README.md:1", "README.md:2", "README.md:4", "README.md:5", "README.md:7"]


def test_docs_pin_the_current_release() -> None:
    """Every `OWNER/reconciler@vX`, `managed-identity-reconciler==X`, ... in README, docs,
    examples and action.yml names the version in pyproject.toml (CHANGELOG keeps history)."""
    import tomllib

    current = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    pins = [(f"{path.relative_to(REPO)}:{number}", version)
            for path in user_documents(REPO) if path.name != "CHANGELOG.md"
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            for pattern in PINS for version in pattern.findall(line)]
    assert len(pins) > 10
    assert [(where, version) for where, version in pins if version != current] == []


# --- the example release workflow -----------------------------------------------------------------

RELEASE = REPO / "examples" / "release" / "release.yml"


def release_workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(RELEASE.read_text(encoding="utf-8"))
    return loaded


def release_step(job: str, name_starts: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = release_workflow()["jobs"][job]["steps"]
    (step,) = [s for s in steps if str(s.get("name", "")).startswith(name_starts)]
    return step


def test_release_workflow_checks_then_publishes_with_trusted_publishing_and_provenance() -> None:
    workflow = release_workflow()
    assert workflow[True]["push"] == {"tags": ["v[0-9]+.[0-9]+.[0-9]+*"]}  # YAML reads `on:` as True
    assert workflow["permissions"] == {"contents": "read"}
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    build_runs = "\n".join(str(s.get("run", "")) for s in build["steps"])
    assert "python -m build" in build_runs and "twine check --strict dist/*" in build_runs
    smoke = release_step("build", "Wheel smoke test")
    assert smoke["env"] == {"RECONCILER_TEST_DIST": "${{ github.workspace }}/dist"}
    assert "tests/unit/test_packaging.py" in smoke["run"]
    # publish: only after the checks, from a protected environment, with OIDC, no token anywhere
    assert publish["needs"] == "build" and publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write", "attestations": "write"}
    uses = [str(s.get("uses", "")) for s in publish["steps"]]
    assert uses[1:] == ["actions/attest-build-provenance@v2", "pypa/gh-action-pypi-publish@release/v1"]
    assert publish["steps"][1]["with"] == {"subject-path": "dist/*"}
    assert "with" not in publish["steps"][2]  # no user/password/token: trusted publishing
    assert "secrets." not in RELEASE.read_text(encoding="utf-8")


@pytest.mark.parametrize(("tag", "ok"), [("v0.2.0", True), ("v0.2.1", False), ("0.2.0", False)])
def test_release_refuses_a_tag_that_is_not_the_version(tmp_path: Path, tag: str, ok: bool) -> None:
    import tomllib

    step = release_step("build", "The tag, pyproject.toml and CHANGELOG.md")
    current = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    tag = tag.replace("0.2.0", current)
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=REPO,
                          env={**os.environ, "TAG": tag}, capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    if not ok:
        assert done.stdout.startswith(f"::error::tag {tag}, but pyproject.toml says {current}")


def test_github_release_notes_are_this_versions_changelog_section(tmp_path: Path) -> None:
    import tomllib

    current = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"  # records its arguments and the notes it was given
    gh.write_text(f'#!/usr/bin/env bash\necho "$*" > "{tmp_path}/args"\ncp notes.md "{tmp_path}/notes"\n',
                  encoding="utf-8")
    gh.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "CHANGELOG.md", work)
    step = release_step("github-release", "GitHub release")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TAG": f"v{current}", "GH_TOKEN": "x"}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=work,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text() == (
        f"release create v{current} dist/* --title v{current} --notes-file notes.md --verify-tag\n")
    notes = (tmp_path / "notes").read_text()
    changelog = (REPO / "CHANGELOG.md").read_text()
    section = changelog.split(f"## [{current}] - ", 1)[1].split("\n## [", 1)[0].split("\n", 1)[1]
    assert notes.strip() == section.strip() and "### Added" in notes
