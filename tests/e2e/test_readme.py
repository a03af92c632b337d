"""The README's walkthroughs run as written: every shell block (```sh / ```bash) is run,
unchanged, in order, in a scratch directory holding a copy of manifests/, with the installed
`reconciler` on PATH. A `reconciler sandbox serve` line (which runs until Ctrl-C, "in a second
terminal") is started in the background by this harness, which waits until it is listening and
stops it at the end. A block preceded by `<!-- no-test: reason -->` is not run; there are few.

`make demo` is run too: it prints the plan once and ends with an empty plan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELLS = ("sh", "bash", "shell")
NO_TEST = re.compile(r"^<!--\s*no-test:\s*(?P<why>\S.*?)\s*-->$")
SERVE = "reconciler sandbox serve"


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    body: str
    skipped_because: str | None


def shell_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w+)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = lines.index("```", i + 1)
        if fence.group(1) in SHELLS:
            above = lines[i - 1].strip() if i else ""
            marker = NO_TEST.match(above)
            blocks.append(Block(i + 1, "\n".join(lines[i + 1:end]) + "\n", marker.group("why") if marker else None))
        i = end + 1
    return blocks


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "NO_COLOR"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    return env


def _start_server(command: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # ends when the server exits: then it never got ready
        seen.append(line)
        if line.startswith("Press Ctrl-C"):
            return proc
    with proc:  # closes its pipe
        proc.wait(timeout=30)
    raise AssertionError(f"`{command}` exited {proc.returncode} before it was ready:\n{''.join(seen)}")


def test_readme_blocks_are_found_and_few_are_skipped() -> None:
    blocks = shell_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    run = [b for b in blocks if b.skipped_because is None]
    assert len(run) >= 2 and any(SERVE in b.body for b in run) and any("curl" in b.body for b in run)
    # Each skip says why: make demo/test (tested on their own), the PyPI install, real-Azure export.
    assert len(blocks) - len(run) <= 3, [b.line for b in blocks if b.skipped_because]
    assert all(b.skipped_because for b in blocks if b.skipped_because is not None)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's curl walkthrough needs curl")
def test_every_readme_shell_block_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    env = _env()
    servers: list[subprocess.Popen[str]] = []
    try:
        for block in shell_blocks((REPO / "README.md").read_text(encoding="utf-8")):
            if block.skipped_because is not None:
                continue
            script = []
            for line in block.body.splitlines():
                if line.startswith(SERVE):
                    servers.append(_start_server(line.split("#", 1)[0].strip(), tmp_path, env))
                else:
                    script.append(line)
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (f"README.md:{block.line}: block failed ({done.returncode})\n"
                                          f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
            assert "Traceback" not in done.stderr
            if "reconciler plan" in block.body:
                assert "Plan: 18 to add" in done.stdout, done.stdout
    finally:
        for server in servers:
            server.terminate()
            with server:  # closes its pipe
                server.wait(timeout=30)
    assert servers, "the walkthrough starts a sandbox"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_prints_the_plan_once_and_ends_in_sync(tmp_path: Path) -> None:
    # The installation step is not re-run (-o): this checks what demo prints, on the installed
    # package; DB and PLAN point into a scratch directory so the repository stays untouched.
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "-o", ".venv/.installed", "demo", f"DB={tmp_path / 'demo.db'}",
         f"PLAN={tmp_path / 'plan.json'}", f"RUN={sys.executable} -m reconciler"],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Plan: 18 to add") == 1, done.stdout
    assert done.stdout.count("will be created") == 18
    assert done.stdout.rstrip().endswith("No changes. Azure matches the manifests."), done.stdout
