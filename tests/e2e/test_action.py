"""The composite GitHub Action (action.yml): its shell steps run with bash exactly as the runner
runs them (`bash --noprofile --norc -eo pipefail`, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files,
the step's `env:` evaluated from the inputs), with the real CLI pointed at a sandbox.

The helpers here (`run_action`, `evaluate`, `reconciler_shim`) are also used by
test_examples.py to run every `uses: .../reconciler@...` step of the example workflows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for
from tests.paced_cli import PACED_CLI, pace_env

REPO = Path(__file__).resolve().parents[2]
ACTION = REPO / "action.yml"
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]  # GitHub's `shell: bash`
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load_action() -> dict[str, Any]:
    data = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def action_step(step_id: str) -> dict[str, Any]:
    for step in load_action()["runs"]["steps"]:
        if step.get("id") == step_id:
            return dict(step)
    raise AssertionError(f"action.yml has no step with id {step_id}")


def lookup(path: str, context: Mapping[str, Any]) -> str:
    """The value of a dotted context path (inputs.paths, steps.plan.outputs.exitcode, vars.X).
    An unknown path fails the test: an example may not use a value nobody defines."""
    node: Any = context
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"${{{{ {path} }}}} is not defined in the test context")
        node = node[part]
    return str(node)


def evaluate(text: str, context: Mapping[str, Any]) -> str:
    """Replace every `${{ dotted.path }}` (the only expressions the action and the examples
    put in values) with its value from `context`."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if not re.fullmatch(r"[A-Za-z_][\w.-]*", expression):
            raise AssertionError(f"unsupported expression in a value: ${{{{ {expression} }}}}")
        return lookup(expression, context)

    return EXPRESSION.sub(one, text)


def reconciler_shim(bin_dir: Path, server: SandboxServer) -> Path:
    """A `reconciler` on PATH that runs this checkout's CLI and, for the commands that talk to
    Azure, appends the sandbox target, as azure/login + DefaultAzureCredential would target Azure.
    The CLI paces FIC writes at the sandbox's scale (tests/paced_cli.py)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "reconciler"
    quoted = " ".join(f"'{t}'" for t in ["--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path])
    (pace_name, pace), = pace_env(server.url, server.config.fic_throttle_scale).items()
    cli = f'"{sys.executable}" "{PACED_CLI}"'
    shim.write_text(
        "#!/usr/bin/env bash\n"
        f"export {pace_name}='{pace}'\n"
        f'case "${{1:-}}" in\n'
        f'  plan|apply|drift|output) exec {cli} "$@" {quoted} ;;\n'
        f'  *) exec {cli} "$@" ;;\n'
        "esac\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    return shim


@dataclass
class ActionRun:
    returncode: int
    outputs: dict[str, str]
    stdout: str
    stderr: str
    summary: str


def read_outputs(path: Path) -> dict[str, str]:
    outputs: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        assert "<<" not in line, "multi-line outputs are not expected"
        key, _, value = line.partition("=")
        outputs[key] = value
    return outputs


def run_action(
    inputs: Mapping[str, str], workspace: Path, bin_dir: Path, runner_temp: Path, env: Mapping[str, str]
) -> ActionRun:
    """Run the action's `run` step as a GitHub runner would, with `inputs` (defaults filled in
    from action.yml) and `bin_dir` (holding the `reconciler` to use) first on PATH."""
    action = load_action()
    declared = action["inputs"]
    unknown = set(inputs) - set(declared)
    assert not unknown, f"inputs the action does not declare: {sorted(unknown)}"
    values = {name: str(inputs.get(name, spec.get("default", ""))) for name, spec in declared.items()}
    missing = [name for name, spec in declared.items() if spec.get("required") and not inputs.get(name)]
    assert not missing, f"required inputs missing: {missing}"
    context = {"inputs": values}
    step = action_step("run")
    runner_temp.mkdir(parents=True, exist_ok=True)
    output_file = runner_temp / f"output-{len(list(runner_temp.iterdir()))}"
    summary_file = runner_temp / f"summary-{len(list(runner_temp.iterdir()))}"
    output_file.touch()
    summary_file.touch()
    step_env = {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output_file),
        "GITHUB_STEP_SUMMARY": str(summary_file),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_ACTION_PATH": str(REPO),
        "GITHUB_WORKSPACE": str(workspace),
    }
    step_env.update({k: evaluate(str(v), context) for k, v in step.get("env", {}).items()})
    cwd = workspace / evaluate(str(step.get("working-directory", ".")), context)
    script = runner_temp / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    done = subprocess.run([*BASH, str(script)], cwd=cwd, env=step_env, capture_output=True, text=True, timeout=300)
    return ActionRun(done.returncode, read_outputs(output_file), done.stdout, done.stderr,
                     summary_file.read_text(encoding="utf-8"))


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def workspace(manifests: Path) -> Path:
    """The checked-out repository: manifests/ at its root."""
    return manifests.parent


@dataclass
class Runner:
    workspace: Path
    bin_dir: Path
    temp: Path
    env: dict[str, str]

    def __call__(self, **inputs: str) -> ActionRun:
        return run_action(inputs, self.workspace, self.bin_dir, self.temp, self.env)


@pytest.fixture
def runner(seeded: SandboxServer, workspace: Path, tmp_path: Path) -> Runner:
    bin_dir = tmp_path / "bin"
    reconciler_shim(bin_dir, seeded)
    return Runner(workspace, bin_dir, tmp_path / "runner-temp",
                  {"RECONCILER_ACCESS_TOKEN": seeded.admin_token()})


def apply_now(manifests: Path, server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", server.admin_token())
    code = main(["apply", str(manifests), "--auto-approve", "--arm-endpoint", server.url,
                 "--ca-cert", server.ca_cert_path])
    assert code == 0


def identity_names(server: SandboxServer) -> set[str]:
    return {i.name for i in gateway_for(server).msi(SUB).user_assigned_identities.list_by_subscription()}


# --- the run step ---------------------------------------------------------------------------------


def test_plan_with_changes_succeeds_with_has_changes_and_a_markdown_plan(runner: Runner, workspace: Path) -> None:
    run = runner(command="plan")
    assert run.returncode == 0, run.stderr
    assert run.outputs["exitcode"] == "2"
    assert run.outputs["has-changes"] == "true"
    plan_file = Path(run.outputs["plan-file"])
    assert plan_file == workspace / "plan.json" and plan_file.is_file()
    markdown = Path(run.outputs["plan-markdown-file"]).read_text(encoding="utf-8")
    assert markdown.startswith("### Plan: ") and "to add" in markdown
    assert "payments-api" in markdown
    assert markdown in run.summary  # the job summary shows the plan
    assert "changes found (exit code 2)" in run.stdout


def test_plan_in_sync_has_no_changes(
    runner: Runner, workspace: Path, seeded: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_now(workspace / "manifests", seeded, monkeypatch)
    run = runner(command="plan")
    assert run.returncode == 0, run.stderr
    assert run.outputs["exitcode"] == "0"
    assert run.outputs["has-changes"] == "false"
    markdown = Path(run.outputs["plan-markdown-file"]).read_text(encoding="utf-8")
    assert markdown.startswith("### No changes.")


def test_plan_error_fails_the_step_but_sets_the_outputs(runner: Runner, workspace: Path) -> None:
    (workspace / "manifests" / "broken.yaml").write_text("apiVersion: reconciler/v1\nkind: IdentitySet\n")
    run = runner(command="plan")
    assert run.returncode == 1
    assert run.outputs["exitcode"] == "1"
    assert run.outputs["has-changes"] == "false"
    assert "::error::reconciler plan failed (exit code 1)" in run.stdout
    assert not (workspace / "plan.json").exists()


def test_plan_refused_by_preflight_fails_the_step_but_keeps_the_plan_and_its_markdown(
    runner: Runner, workspace: Path, seeded: SandboxServer
) -> None:
    nobody = "12121212-0000-4000-8000-000000000001"  # holds no role: every step would be refused
    seeded.add_principal(nobody, "ServicePrincipal", "no-roles")
    run = runner(command="plan", **{"extra-args": f"--apply-as {nobody}"})
    assert run.returncode == 1
    assert run.outputs["exitcode"] == "1"
    markdown = Path(run.outputs["plan-markdown-file"]).read_text(encoding="utf-8")
    assert "#### Preflight" in markdown and nobody in markdown  # the PR comment shows why
    assert (workspace / "plan.json").is_file()


def test_drift_exit_2_is_information_and_the_report_is_kept(
    runner: Runner, workspace: Path, seeded: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_sync_before_apply = runner(command="drift", **{"extra-args": "--format markdown"})
    assert in_sync_before_apply.returncode == 0, in_sync_before_apply.stderr
    assert in_sync_before_apply.outputs["exitcode"] == "2"  # everything declared is missing
    assert in_sync_before_apply.outputs["has-changes"] == "true"
    report = Path(in_sync_before_apply.outputs["output-file"]).read_text(encoding="utf-8")
    assert report.startswith("#") and "missing" in report
    assert report in in_sync_before_apply.summary

    apply_now(workspace / "manifests", seeded, monkeypatch)
    in_sync = runner(command="drift", **{"extra-args": "--format markdown"})
    assert in_sync.returncode == 0, in_sync.stderr
    assert (in_sync.outputs["exitcode"], in_sync.outputs["has-changes"]) == ("0", "false")


def test_apply_needs_an_explicit_auto_approve(runner: Runner, seeded: SandboxServer) -> None:
    refused = runner(command="apply")
    assert refused.returncode == 1
    assert refused.outputs["exitcode"] == "1"
    assert "--auto-approve" in refused.stderr
    assert identity_names(seeded) == set()

    applied = runner(command="apply", **{"extra-args": "--auto-approve --report apply-report.json"})
    assert applied.returncode == 0, applied.stderr
    assert applied.outputs["exitcode"] == "0"
    assert "Verified: a fresh plan shows no changes." in applied.stdout
    assert identity_names(seeded) == {"payments-api", "payments-worker", "platform-deployer", "platform-monitoring"}
    assert (runner.workspace / "apply-report.json").is_file()


def test_applying_the_saved_plan_file(runner: Runner, seeded: SandboxServer) -> None:
    planned = runner(command="plan", **{"plan-file": "out/the-plan.json"})
    assert planned.outputs["exitcode"] == "2"
    applied = runner(command="apply", paths="out/the-plan.json")
    assert applied.returncode == 0, applied.stderr
    assert "payments-api" in identity_names(seeded)


def test_validate_and_show(runner: Runner) -> None:
    valid = runner(command="validate")
    assert (valid.returncode, valid.outputs["exitcode"]) == (0, "0")
    assert "Valid: 2 file(s)" in valid.stdout
    runner(command="plan")
    shown = runner(command="show", paths="plan.json", **{"extra-args": "--format markdown"})
    assert shown.returncode == 0, shown.stderr
    assert Path(shown.outputs["output-file"]).read_text(encoding="utf-8").startswith("### Plan: ")


def test_unknown_command_fails(runner: Runner) -> None:
    run = runner(command="destroy")
    assert run.returncode == 1
    assert run.outputs["exitcode"] == "1"
    assert "unknown command 'destroy'" in run.stdout


def test_inputs_cannot_inject_shell_code(runner: Runner, workspace: Path) -> None:
    run = runner(command="validate", paths="manifests/ $(touch injected) `touch injected2`",
                 **{"extra-args": "; touch injected3"})
    assert run.returncode == 1  # the odd words reach reconciler as paths/arguments and are refused
    assert not any((workspace / n).exists() for n in ("injected", "injected2", "injected3"))


def test_no_expression_is_interpolated_into_a_script() -> None:
    for step in load_action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), f"step {step.get('name')}: pass inputs through env"


def test_every_declared_output_is_written(runner: Runner) -> None:
    run = runner(command="plan")
    declared = load_action()["outputs"]
    for name, spec in declared.items():
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
        assert name in run.outputs, f"output {name} is never written"


# --- the install step -----------------------------------------------------------------------------


def fake_python(bin_dir: Path, log: Path) -> None:
    """A `python` that logs its arguments; `-m venv DIR` makes DIR/bin/python (this same fake)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$0 $*" >> "{log}"\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi\n'
        'if [ "$1 $2 $3" = "-m pip install" ]; then : > "$(dirname "$0")/reconciler"; '
        'chmod +x "$(dirname "$0")/reconciler"; fi\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)


def run_install_step(tmp_path: Path, version: str) -> tuple[list[subprocess.CompletedProcess[str]], list[str]]:
    """The install step, run twice as two uses of the action in one job do; its runs and the
    `python` calls it made."""
    bin_dir, log, temp = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "temp"
    temp.mkdir()
    fake_python(bin_dir, log)
    github_path = tmp_path / "github_path"
    step = action_step("install")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(temp),
        "GITHUB_ACTION_PATH": str(REPO),
        "GITHUB_PATH": str(github_path),
    }
    env.update({k: evaluate(str(v), {"inputs": {"version": version}}) for k, v in step["env"].items()})
    script = tmp_path / "install.sh"
    script.write_text(step["run"], encoding="utf-8")
    runs = [subprocess.run([*BASH, str(script)], env=env, capture_output=True, text=True, timeout=60)
            for _ in range(2)]
    return runs, log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.mark.parametrize(("version", "installs"), [
    ("", str(REPO)),
    ("0.2.0", "managed-identity-reconciler==0.2.0"),
    ("1.10.3rc1", "managed-identity-reconciler==1.10.3rc1"),
])
def test_install_step_installs_the_pinned_checkout_or_that_release_once(
        tmp_path: Path, version: str, installs: str) -> None:
    runs, calls = run_install_step(tmp_path, version)
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    venv = tmp_path / "temp" / "reconciler-venv"
    assert calls == [  # the second use of the action in the same job reuses the venv
        f"{tmp_path}/bin/python -m venv {venv}",
        f"{venv}/bin/python -m pip install --quiet --disable-pip-version-check {installs}",
    ]
    assert (tmp_path / "github_path").read_text(encoding="utf-8").splitlines() == [f"{venv}/bin", f"{venv}/bin"]


@pytest.mark.parametrize("version", [
    "reconciler==0.1.0",                 # somebody else's distribution
    "reconciler",
    "managed-identity-reconciler",       # a bare name: whatever is newest
    "==0.2.0",
    "v0.2.0",
    "0.2.0 ; python_version>'3'",
    "git+https://example.com/x.git",
    "0.2.0\n::warning::injected",
])
def test_install_step_refuses_anything_but_a_release_version(tmp_path: Path, version: str) -> None:
    runs, calls = run_install_step(tmp_path, version)
    assert [r.returncode for r in runs] == [1, 1]
    assert calls == []  # no venv, no pip
    (line,) = runs[0].stdout.splitlines()
    assert line.startswith("::error::reconciler action: version '") and "is not a release version" in line
    assert "::" not in line.removeprefix("::error::")  # the input cannot smuggle in a workflow command
