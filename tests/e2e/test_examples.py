"""The CI examples (examples/github, examples/azure-pipelines), the bootstrap manifest and the
pre-commit hook, checked against the real CLI so that an example can never drift from it.

Every example file must load and declare the triggers and least privileges docs/pipelines.md
promises. Every `reconciler ...` command of their shell steps (`run:`, `script:`, AzureCLI@2
`inlineScript:`) is extracted with a small shell-word parser and run against a sandbox, and every
`uses: .../reconciler@...` step runs the action's shell step (tests/e2e/test_action.py); each
must end with an exit code its workflow handles: 0, or 2 where the script captures it as
"changes". The sticky-comment and drift-issue scripts run against in-memory fakes of the GitHub
and Azure DevOps APIs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import http.server
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.mgmt.msi.models import IdentityUpdate

from reconciler.cli import main
from reconciler.roles import RoleCatalog
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for
from tests.e2e.test_action import evaluate, load_action, reconciler_shim, run_action

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GITHUB = sorted((EXAMPLES / "github").glob("*.yml"))
PIPELINES = sorted((EXAMPLES / "azure-pipelines").glob("*.yml"))
BOOTSTRAP = EXAMPLES / "bootstrap" / "pipeline-identity.yaml"
ONLINE = ("plan", "apply", "drift", "output")
PRIVILEGED_ROLES = {  # may assign roles: never in the apply identity's condition
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",  # Role Based Access Control Administrator
}
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def triggers(workflow: Mapping[Any, Any]) -> dict[str, Any]:
    """`on:` of a workflow (YAML 1.1 reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict), "a workflow needs `on:` as a mapping"
    return on


def is_reconciler_action(uses: str) -> bool:
    return uses in ("./", ".") or re.search(r"(^|/)reconciler@", uses) is not None


# --- the shell-word parser -------------------------------------------------------------------------

KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "{", "("}
SEPARATORS = {";", "&&", "||", "|", "&", ";;", ")", "}"}
REDIRECT = re.compile(r"^\d*(>|>>|<|>&|<&|&>)$")


@dataclass
class Invocation:
    argv: list[str]
    handled: bool  # followed by `|| ...`: a non-zero exit code is captured, not fatal
    line: str
    stdout: str | None = None  # `> FILE` / `>> FILE`: where standard output goes
    append: bool = False

    @property
    def dynamic(self) -> bool:
        return any("$" in word or "`" in word for word in self.argv)


def substitute(script: str, values: Callable[[str], str | None]) -> str:
    """Map `${{ expr }}`, Azure Pipelines `$(Name.Path)` macros and shell `$var`/`${var}` to test
    values where `values` knows them; anything else is left for `Invocation.dynamic`."""

    def swap(match: re.Match[str]) -> str:
        value = values(match.group(1) or match.group(2) or match.group(3) or match.group(4))
        return match.group(0) if value is None else value

    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}|\$\(([A-Za-z_][\w.]*)\)|\$\{(\w+)\}|\$(\w+)\b(?![\[(])", swap, script)


def invocations(script: str, values: Callable[[str], str | None] = lambda _: None) -> list[Invocation]:
    """Every `reconciler ...` command of a bash script, as argv after substitution. Handles line
    continuations, quoting, `;`/`&&`/`||`/`|`, `if`/`!` prefixes, variable assignments and
    redirections (which end the argv)."""
    text = substitute(script.replace("\\\n", " "), values)
    found: list[Invocation] = []
    for line in text.splitlines():
        if "reconciler" not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>(){}")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as e:  # e.g. a quote left open: a mistake in the example
            raise AssertionError(f"cannot parse shell line {line!r}: {e}") from None
        command: list[str] = []
        for i, token in enumerate([*tokens, ";"]):
            if token in SEPARATORS:
                invocation = _invocation(command, token, line)
                if invocation is not None:
                    found.append(invocation)
                command = []
                continue
            # the `2` of `2>&1` belongs to the redirection, not to the arguments
            if token.isdigit() and i + 1 < len(tokens) and REDIRECT.match(tokens[i + 1]):
                continue
            command.append(token)
    return found


def _invocation(command: list[str], separator: str, line: str) -> Invocation | None:
    """The `reconciler ...` command that `separator` ends, or None when it is another command."""
    words = list(command)
    while words and (words[0] in KEYWORDS or re.fullmatch(r"\w+=.*", words[0])):
        words.pop(0)
    if not words or words[0] != "reconciler":
        return None
    argv: list[str] = []
    for word in words[1:]:
        if REDIRECT.match(word):
            break
        argv.append(word)
    invocation = Invocation(argv, separator == "||", line.strip())
    for j, word in enumerate(words[:-1]):
        if word in (">", ">>", "1>", "1>>"):
            invocation.stdout, invocation.append = words[j + 1], word.endswith(">>")
    return invocation


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("reconciler plan manifests/ \\\n  --out plan.json || rc=$?",
         [(["plan", "manifests/", "--out", "plan.json"], True)]),
        ('if ! reconciler show "$(Dir)/p.json" --format markdown > "$out"; then exit 1; fi',
         [(["show", "/stage/p.json", "--format", "markdown"], False)]),
        ("rc=0; X=1 reconciler drift ${{ vars.PATHS }} 2>&1 | tee log",
         [(["drift", "a/", "b/"], False)]),
        ('echo "reconciler plan is not a command here"  # reconciler apply', []),
        ('reconciler "${args[@]}" | tee "$output_file"', [(['${args[@]}'], False)]),
    ],
)
def test_shell_parser(script: str, expected: list[tuple[list[str], bool]]) -> None:
    values = {"Dir": "/stage", "vars.PATHS": "a/ b/"}.get
    assert [(i.argv, i.handled) for i in invocations(script, values)] == expected


def test_shell_parser_redirections() -> None:
    (first, second) = invocations('reconciler matrix m/ > "$(Dir)/s.json"; reconciler show a 2>&1 >> out.md',
                                  {"Dir": "/stage"}.get)
    assert (first.argv, first.stdout, first.append) == (["matrix", "m/"], "/stage/s.json", False)
    assert (second.argv, second.stdout, second.append) == (["show", "a"], "out.md", True)


# --- static checks of the files ------------------------------------------------------------------


def test_every_example_file_is_known() -> None:
    assert [p.name for p in GITHUB] == ["drift.yml", "main.yml", "pull-request.yml", "sharded.yml"]
    assert [p.name for p in PIPELINES] == ["drift.yml", "main.yml", "pull-request.yml", "sharded.yml"]
    for path in [*GITHUB, *PIPELINES, BOOTSTRAP, REPO / "action.yml", REPO / ".pre-commit-hooks.yaml"]:
        assert yaml.safe_load(path.read_text(encoding="utf-8")), path


def ado_jobs(pipeline: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The jobs of an Azure Pipeline; a pipeline with top-level `steps:` is one job."""
    return list(pipeline["jobs"]) if "jobs" in pipeline else [{"job": "default", "steps": pipeline["steps"]}]


def job_uses(job: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(prefix)]


# Least privileges, per workflow and job: exactly these, nothing else.
EXPECTED_PERMISSIONS = {
    "pull-request.yml": {
        "validate": {"contents": "read"},
        "plan": {"contents": "read", "id-token": "write", "pull-requests": "write"},
    },
    "main.yml": {"apply": {"contents": "read", "id-token": "write"}, "deploy": {"id-token": "write"}},
    "drift.yml": {"drift": {"contents": "read", "id-token": "write", "issues": "write"}},
    "sharded.yml": {
        "matrix": {"contents": "read"},
        "plan": {"contents": "read", "id-token": "write"},
        "review": {"contents": "read", "pull-requests": "write"},
        "apply": {"contents": "read", "id-token": "write"},
    },
}


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name)
def test_github_workflow_shape_and_least_privilege(path: Path) -> None:
    workflow = load(path)
    on = triggers(workflow)
    assert workflow["permissions"] == {"contents": "read"}
    assert "secrets." not in path.read_text(encoding="utf-8"), "OIDC only: no client secret"
    jobs = workflow["jobs"]
    assert {name: job.get("permissions") for name, job in jobs.items()} == EXPECTED_PERMISSIONS[path.name]
    for name, job in jobs.items():
        logins = job_uses(job, "azure/login@")
        assert (job["permissions"].get("id-token") == "write") == bool(logins), name
        for login in logins:
            assert login["uses"] == "azure/login@v2"
            assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
            for key, value in login["with"].items():
                from_output = re.fullmatch(r"\$\{\{ needs\.(\w+)\.outputs\.([\w-]+) \}\}", value)
                if key == "client-id" and from_output:  # a workload identity, from `reconciler output`
                    producer = jobs[from_output.group(1)]
                    assert re.fullmatch(r"\$\{\{ steps\.ids\.outputs\.[A-Z_]+_CLIENT_ID \}\}",
                                        producer["outputs"][from_output.group(2)])
                else:
                    assert re.fullmatch(r"\$\{\{ vars\.AZURE_[A-Z_]+ \}\}", value), (name, key)
        steps = [s for s in job["steps"] if is_reconciler_action(str(s.get("uses", "")))]
        if not steps:  # a consumer job, e.g. a deployment that signs in with an output of ours
            assert "needs" in job, name
            continue
        if "strategy" in job:  # a shard job: one per entry of `reconciler matrix`, none hiding another
            assert job["strategy"] == {"fail-fast": False, "matrix": "${{ fromJSON(needs.matrix.outputs.matrix) }}"}
            assert all("${{ matrix.args }}" in s["with"].get("extra-args", "") for s in steps
                       if s["with"]["command"] in ONLINE), name
        online = [s for s in steps if s["with"]["command"] in ONLINE]
        if online:  # signed in before the first step that talks to Azure
            first_online = job["steps"].index(online[0])
            assert logins and job["steps"].index(logins[0]) < first_online, name
    if path.name == "pull-request.yml":
        assert set(on) == {"pull_request"}
        assert "<!-- reconciler-plan -->" in jobs["plan"]["steps"][-1]["with"]["script"]
        assert workflow["concurrency"]["cancel-in-progress"] is True
    elif path.name == "main.yml":
        assert on["push"]["branches"] == ["main"]
        assert workflow["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}
        assert jobs["apply"]["environment"] == "azure-identities"
        apply = [s for s in jobs["apply"]["steps"] if s.get("with", {}).get("command") == "apply"]
        assert "--auto-approve" in apply[0]["with"]["extra-args"].split()
    elif path.name == "sharded.yml":
        assert set(on) == {"pull_request", "push"}
        assert jobs["apply"]["environment"] == "azure-identities"
        assert jobs["apply"]["if"] == "github.event_name == 'push'"
        (review,) = [s for s in jobs["review"]["steps"] if s.get("with", {}).get("command") == "show"]
        assert review["with"]["matrix"] == "${{ needs.matrix.outputs.matrix }}"
        assert "always()" in jobs["review"]["if"]
        assert "<!-- reconciler-plan -->" in jobs["review"]["steps"][-1]["with"]["script"]
    else:
        (cron,) = [s["cron"] for s in on["schedule"]]
        minute, hour, *rest = cron.split()
        assert minute.isdigit() and hour == "*" and rest == ["*", "*", "*"], "hourly"
        assert "'reconciler-drift'" in jobs["drift"]["steps"][-1]["with"]["script"]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_azure_pipeline_shape(path: Path) -> None:
    pipeline = load(path)
    text = path.read_text(encoding="utf-8")
    assert "secret" not in text.lower().replace("no client secret", "")
    cli_tasks = [s for job in ado_jobs(pipeline) for s in job["steps"] if s.get("task") == "AzureCLI@2"]
    assert cli_tasks
    for task in cli_tasks:
        assert task["inputs"]["azureSubscription"].startswith("${{ variables.")
        assert task["inputs"]["scriptType"] == "bash" and task["inputs"]["scriptLocation"] == "inlineScript"
    if path.name == "pull-request.yml":
        assert pipeline["trigger"] == "none" and pipeline["pr"]["branches"]["include"] == ["main"]
        assert "<!-- reconciler-plan -->" in text and "/threads" in text
    elif path.name == "sharded.yml":
        jobs = {j["job"]: j for j in pipeline["jobs"]}
        assert jobs["plan"]["strategy"]["matrix"] == jobs["apply"]["strategy"]["matrix"] == (
            "$[ dependencies.matrix.outputs['m.shards'] ]")
        assert "succeededOrFailed()" in jobs["review"]["condition"]
        assert "<!-- reconciler-plan -->" in text and "--matrix" in text
    elif path.name == "main.yml":
        assert pipeline["pr"] == "none"
        assert pipeline["trigger"]["branches"]["include"] == ["main"] and pipeline["trigger"]["batch"] is True
        assert pipeline["lockBehavior"] == "sequential"
    else:
        assert pipeline["trigger"] == "none" and pipeline["pr"] == "none"
        (schedule,) = pipeline["schedules"]
        minute, hour, *_ = schedule["cron"].split()
        assert minute.isdigit() and hour == "*" and schedule["always"] is True
        assert "drift-report" in text


# --- running every reconciler command of the examples against the sandbox ----------------------


@dataclass
class Outcome:
    command: str
    exitcode: int
    where: str


@dataclass
class Simulation:
    workspace: Path
    server: SandboxServer
    monkeypatch: pytest.MonkeyPatch
    bin_dir: Path
    temp: Path
    staging: Path
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def target(self) -> list[str]:
        return ["--arm-endpoint", self.server.url, "--ca-cert", self.server.ca_cert_path]

    def run_cli(self, invocation: Invocation, where: str) -> None:
        assert not invocation.dynamic, f"{where}: unresolved substitution in {invocation.line!r}"
        self.monkeypatch.chdir(self.workspace)
        # Pathname expansion as bash does it: a pattern that matches nothing stays as written.
        argv = [m for w in invocation.argv for m in (sorted(glob.glob(w)) if "*" in w else []) or [w]]
        assert argv and argv[0] in ("validate", "plan", "show", "apply", "drift", "output", "matrix"), invocation.line
        if argv[0] in ONLINE:
            argv += self.target
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(argv)
        if invocation.stdout:
            target = self.workspace / invocation.stdout
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a" if invocation.append else "w", encoding="utf-8") as f:
                f.write(stdout.getvalue())
        may_change = (argv[0] == "plan" and "--detailed-exitcode" in argv) or argv[0] == "drift"
        allowed = {0, 2} if may_change and invocation.handled else {0}
        assert code in allowed, f"{where}: `reconciler {' '.join(invocation.argv)}` exited {code}"
        self.outcomes.append(Outcome(argv[0], code, where))

    def github_legs(self, job: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any] | None]:
        """One run of the job, or one per entry of a `fromJSON(needs.JOB.outputs.NAME)` matrix."""
        matrix = job.get("strategy", {}).get("matrix")
        if matrix is None:
            return [None]
        found = re.fullmatch(r"\$\{\{ fromJSON\(([\w.-]+)\) \}\}", str(matrix))
        assert found, f"unsupported matrix {matrix!r}"
        value = json.loads(evaluate("${{ " + found.group(1) + " }}", context))
        assert value["include"], "an empty matrix: GitHub would fail the workflow"
        return list(value["include"])

    def run_github(self, path: Path) -> None:
        workflow = load(path)
        context: dict[str, Any] = {
            # the apply identity preflight evaluates: here the sandbox admin, who may do everything
            "vars": {"AZURE_APPLY_OBJECT_ID": self.server.admin_object_id},
            "github": {"run_number": "1", "event": {"pull_request": {"number": "7"}}}, "needs": {},
        }
        for job_name, job in workflow["jobs"].items():
            for leg in self.github_legs(job, context):
                context["matrix"] = leg or {}
                self.run_github_job(path, job_name, job, context)
            outputs: dict[str, str] = {}
            for key, expression in job.get("outputs", {}).items():
                # Outputs set by plain shell steps (not run here) stay undefined for later jobs.
                with contextlib.suppress(KeyError):
                    outputs[key] = evaluate(str(expression), context)
            context["needs"][job_name] = {"outputs": outputs}

    def run_github_job(self, path: Path, job_name: str, job: Mapping[str, Any], context: dict[str, Any]) -> None:
        context["steps"] = {}
        for step in job["steps"]:
            where = f"{path.name}:{job_name}:{step.get('name', step.get('uses', ''))}"
            if is_reconciler_action(str(step.get("uses", ""))):
                inputs = {k: evaluate(str(v), context) for k, v in step.get("with", {}).items()}
                result = run_action(inputs, self.workspace, self.bin_dir, self.temp,
                                    {"RECONCILER_ACCESS_TOKEN": self.server.admin_token()})
                assert result.returncode == 0, f"{where}: the step failed\n{result.stdout}\n{result.stderr}"
                if "id" in step:
                    context["steps"][step["id"]] = {"outputs": result.outputs}
                self.outcomes.append(Outcome(inputs["command"], int(result.outputs["exitcode"]), where))
            for invocation in invocations(str(step.get("run", "")), lambda name: None):
                self.run_cli(invocation, where)

    def ado_values(self, pipeline: Mapping[str, Any], leg: Mapping[str, str] | None = None,
                   staging: Path | None = None) -> Callable[[str], str | None]:
        known = {
            **{str(k): str(v) for k, v in pipeline.get("variables", {}).items()},
            **(leg or {}),
            "Build.ArtifactStagingDirectory": str(staging or self.staging),
            "System.DefaultWorkingDirectory": str(self.workspace),
            "Build.SourcesDirectory": str(self.workspace),
            "Pipeline.Workspace": str(self.temp / "pipeline"),
            "applyObjectId": self.server.admin_object_id,  # preflight's apply identity: the sandbox admin
        }
        return lambda name: known.get(name.removeprefix("variables."))

    def ado_legs(self, job: Mapping[str, Any], job_outputs: Mapping[str, str]) -> list[dict[str, str] | None]:
        """One run of the job, or one per leg of a `$[ dependencies.JOB.outputs['STEP.VAR'] ]` matrix."""
        matrix = job.get("strategy", {}).get("matrix")
        if matrix is None:
            return [None]
        found = re.fullmatch(r"\$\[ dependencies\.(\w+)\.outputs\['([\w.]+)'\] \]", str(matrix))
        assert found, f"unsupported matrix {matrix!r}"
        legs = json.loads(job_outputs[f"{found.group(1)}.{found.group(2)}"])
        assert legs, "an empty matrix"
        return [{str(k): str(v) for k, v in leg.items()} for leg in legs.values()]

    def run_pipeline(self, path: Path) -> None:
        pipeline = load(path)
        artifacts = self.temp / "artifacts"
        shutil.rmtree(artifacts, ignore_errors=True)
        shutil.rmtree(self.temp / "pipeline", ignore_errors=True)
        job_outputs: dict[str, str] = {}  # "job.step.var" -> value (##vso[task.setvariable ...;isOutput=true])
        for job in ado_jobs(pipeline):
            for leg in self.ado_legs(job, job_outputs):
                staging = self.temp / "staging" / f"{job['job']}-{(leg or {}).get('shard', '')}"
                shutil.rmtree(staging, ignore_errors=True)  # a fresh agent per job
                staging.mkdir(parents=True)
                values = self.ado_values(pipeline, leg, staging if "jobs" in pipeline else None)
                for step in job["steps"]:
                    self.run_ado_step(path, job, step, values, artifacts, job_outputs)

    def run_ado_step(self, path: Path, job: Mapping[str, Any], step: Mapping[str, Any],
                     values: Callable[[str], str | None], artifacts: Path, job_outputs: dict[str, str]) -> None:
        where = f"{path.name}:{step.get('displayName', step.get('task', 'script'))}"
        if "publish" in step:  # an artifact: a copy of the folder, kept for later jobs
            source = Path(substitute(str(step["publish"]), values))
            name = substitute(str(step["artifact"]), values)
            if source.is_dir():
                shutil.copytree(source, artifacts / name, dirs_exist_ok=True)
            return
        if step.get("task") == "DownloadPipelineArtifact@2":
            inputs = step["inputs"]
            patterns = [p.strip() for p in str(inputs["patterns"]).splitlines() if p.strip()]
            target = Path(substitute(str(inputs["path"]), values))
            for file in artifacts.rglob("*") if artifacts.is_dir() else []:
                relative = file.relative_to(artifacts).as_posix()
                if file.is_file() and any(fnmatch.fnmatch(relative, p) for p in patterns):
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(file, target / relative)
            return
        scripts = [step.get("script", "")]
        if step.get("task") in ("AzureCLI@2", "Bash@3"):
            scripts.append(step["inputs"].get("inlineScript", step["inputs"].get("script", "")))
        for script in scripts:
            for invocation in invocations(str(script), values):
                self.run_cli(invocation, where)
            # An output variable set from a file a command of the step wrote.
            for var, file in re.findall(r'##vso\[task\.setvariable variable=(\w+);isOutput=true\]\$\(cat "([^"]+)"\)',
                                        substitute(str(script), values)):
                job_outputs[f"{job['job']}.{step['name']}.{var}"] = Path(file).read_text(encoding="utf-8").strip()

    def run(self, path: Path) -> list[Outcome]:
        self.outcomes = []
        (self.run_github if path.parent.name == "github" else self.run_pipeline)(path)
        return self.outcomes


@pytest.fixture
def simulation(seeded: SandboxServer, manifests: Path, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> Simulation:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", seeded.admin_token())
    bin_dir = tmp_path / "bin"
    reconciler_shim(bin_dir, seeded)
    staging = tmp_path / "staging"
    staging.mkdir()
    return Simulation(manifests.parent, seeded, monkeypatch, bin_dir, tmp_path / "runner-temp", staging)


def untag_out_of_band(server: SandboxServer) -> None:
    """A person edits an identity's tags in the portal: `changed` drift."""
    ops = gateway_for(server).msi(SUB).user_assigned_identities
    identity = ops.get("rg-payments", "payments-worker")
    tags = {k: v for k, v in (identity.tags or {}).items() if k != "team"}
    ops.update("rg-payments", "payments-worker", IdentityUpdate(tags=tags))


def first_plan_or_drift(outcomes: list[Outcome]) -> Outcome:
    return next(o for o in outcomes if o.command in ("plan", "drift"))


@pytest.mark.parametrize("path", [*GITHUB, *PIPELINES], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_reconciler_command_of_the_example_runs_with_a_handled_exit_code(
    path: Path, simulation: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. Nothing applied yet: everything is missing, so plan/drift must report changes (2).
    fresh = simulation.run(path)
    commands = {o.command for o in fresh}
    assert commands >= ({"validate", "plan"} if "drift" not in path.name else {"drift"}), commands
    assert first_plan_or_drift(fresh).exitcode == 2, fresh

    # 2. Applied: in sync, so every plan/drift says 0.
    code = main(["apply", str(simulation.workspace / "manifests"), "--auto-approve", *simulation.target])
    assert code == 0
    in_sync = simulation.run(path)
    assert all(o.exitcode == 0 for o in in_sync), in_sync

    # 3. Changed out of band: plan/drift report it (2) and an apply example repairs it.
    untag_out_of_band(simulation.server)
    drifted = simulation.run(path)
    assert first_plan_or_drift(drifted).exitcode == 2, drifted
    if "apply" in {o.command for o in drifted}:
        assert simulation.run(path) and first_plan_or_drift(simulation.outcomes).exitcode == 0
    capsys.readouterr()


def test_action_yml_invocations_are_the_ones_its_tests_run(tmp_path: Path, manifests: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The action builds its main command in an array (run by test_action.py for every command);
    its literal `reconciler show ... --format markdown` must be a command the CLI accepts."""
    monkeypatch.chdir(manifests.parent)
    assert main(["plan", "manifests/", "--sandbox", str(tmp_path / "s.db"), "--out", "plan.json"]) == 0
    plan = str(manifests.parent / "plan.json")
    found = [i for step in load_action()["runs"]["steps"]
             for i in invocations(str(step.get("run", "")), {"plan_file": plan}.get)]
    dynamic = [i for i in found if i.dynamic]
    literal = [i for i in found if not i.dynamic]
    assert [i.argv for i in dynamic] == [['${args[@]}']]
    assert [i.argv for i in literal] == [["show", plan, "--format", "markdown"]]
    assert main(literal[0].argv) == 0


# --- the GitHub scripts (actions/github-script) against an in-memory GitHub ---------------------

GITHUB_FAKE = r"""
const fs = require('fs');
const [scriptPath, statePath] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
let next = 1000 + state.comments.length + state.issues.length;
const find = (list, key, value) => {
  const found = list.find(x => x[key] === value);
  if (!found) throw new Error(`no ${key} ${value}`);
  return found;
};
const issues = {
  listComments: async p => ({ data: state.comments.filter(c => c.issue_number === p.issue_number) }),
  createComment: async p => {
    const c = { id: next++, issue_number: p.issue_number, body: p.body, user: { type: 'Bot' } };
    state.comments.push(c);
    return { data: c };
  },
  updateComment: async p => {
    const c = find(state.comments, 'id', p.comment_id);
    c.body = p.body;
    return { data: c };
  },
  listForRepo: async p => ({ data: state.issues.filter(i => i.state === p.state
      && p.labels.split(',').every(l => i.labels.some(x => x.name === l))) }),
  create: async p => {
    const i = { number: next++, title: p.title, body: p.body, state: 'open',
                labels: (p.labels || []).map(name => ({ name })) };
    state.issues.push(i);
    return { data: i };
  },
  update: async p => {
    const i = find(state.issues, 'number', p.issue_number);
    for (const k of ['body', 'state', 'state_reason']) if (p[k] !== undefined) i[k] = p[k];
    return { data: i };
  },
};
const github = { rest: { issues }, paginate: async (fn, p) => (await fn(p)).data };
const context = { repo: { owner: 'contoso', repo: 'identities' }, issue: { number: 7 }, runId: 42,
                  serverUrl: 'https://github.com', sha: 'ffffffffffffffff' };
const core = { info: m => console.log(m) };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('github', 'context', 'core', 'require', fs.readFileSync(scriptPath, 'utf8'))(
  github, context, core, require)
  .then(() => fs.writeFileSync(statePath, JSON.stringify(state)))
  .catch(e => { console.error(e); process.exit(1); });
"""


def github_script(workflow: str, job: str) -> dict[str, Any]:
    (step,) = [s for s in load(EXAMPLES / "github" / workflow)["jobs"][job]["steps"]
               if str(s.get("uses", "")).startswith("actions/github-script@")]
    return dict(step)


class FakeGitHub:
    def __init__(self, tmp_path: Path) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is needed to run the actions/github-script scripts")
        self.node = node
        self.dir = tmp_path
        self.state: dict[str, list[dict[str, Any]]] = {"comments": [], "issues": []}
        (tmp_path / "fake.js").write_text(GITHUB_FAKE, encoding="utf-8")

    def run(self, step: Mapping[str, Any], outputs: Mapping[str, Mapping[str, str]]) -> str:
        declared = set(load_action()["outputs"])
        for step_outputs in outputs.values():
            assert set(step_outputs) <= declared
        context = {"steps": {k: {"outputs": {**dict.fromkeys(declared, ""), **v}} for k, v in outputs.items()},
                   "github": {"event": {"pull_request": {"head": {"sha": "0123456789abcdef"}}}}}
        env = {**os.environ, **{k: evaluate(str(v), context) for k, v in step.get("env", {}).items()}}
        (self.dir / "script.js").write_text(step["with"]["script"], encoding="utf-8")
        (self.dir / "state.json").write_text(json.dumps(self.state), encoding="utf-8")
        done = subprocess.run([self.node, str(self.dir / "fake.js"), str(self.dir / "script.js"),
                               str(self.dir / "state.json")], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        self.state = json.loads((self.dir / "state.json").read_text(encoding="utf-8"))
        return done.stdout


def test_pull_request_comment_is_sticky(tmp_path: Path) -> None:
    fake = FakeGitHub(tmp_path)
    step = github_script("pull-request.yml", "plan")
    plan_md = tmp_path / "plan.md"
    fake.state["comments"].append({"id": 1, "issue_number": 7, "user": {"type": "User"},
                                   "body": "what does <!-- reconciler-plan --> do?"})  # a person's
    plan_md.write_text("### Plan: 3 to add, 0 to change, 0 to replace, 0 to destroy\n", encoding="utf-8")
    fake.run(step, {"plan": {"exitcode": "2", "plan-markdown-file": str(plan_md)}})
    ours = [c for c in fake.state["comments"] if c["user"]["type"] == "Bot"]
    assert len(ours) == 1 and "3 to add" in ours[0]["body"] and ours[0]["body"].startswith("<!-- reconciler-plan -->")
    assert "of 0123456" in ours[0]["body"]

    plan_md.write_text("### No changes. Azure matches the manifests\n", encoding="utf-8")
    fake.run(step, {"plan": {"exitcode": "0", "plan-markdown-file": str(plan_md)}})
    fake.run(step, {"plan": {"exitcode": "1", "plan-markdown-file": ""}})
    ours_after = [c for c in fake.state["comments"] if c["user"]["type"] == "Bot"]
    assert [c["id"] for c in ours_after] == [ours[0]["id"]]  # edited, never a second comment
    assert "reconciler plan failed (exit code 1)" in ours_after[0]["body"]
    assert fake.state["comments"][0]["body"] == "what does <!-- reconciler-plan --> do?"

    plan_md.write_text("x" * 100_000, encoding="utf-8")
    fake.run(step, {"plan": {"exitcode": "2", "plan-markdown-file": str(plan_md)}})
    body = fake.state["comments"][-1]["body"]
    assert len(body) < 65536 and "truncated" in body


def test_drift_issue_is_opened_updated_and_closed(tmp_path: Path) -> None:
    fake = FakeGitHub(tmp_path)
    step = github_script("drift.yml", "drift")
    report = tmp_path / "drift.md"
    report.write_text("## Drift: 1 changed\n", encoding="utf-8")
    fake.run(step, {"drift": {"exitcode": "2", "output-file": str(report)}})
    (issue,) = fake.state["issues"]
    assert issue["state"] == "open" and [x["name"] for x in issue["labels"]] == ["reconciler-drift"]
    assert "1 changed" in issue["body"]

    report.write_text("## Drift: 2 changed\n", encoding="utf-8")
    fake.run(step, {"drift": {"exitcode": "2", "output-file": str(report)}})
    (issue,) = fake.state["issues"]
    assert "2 changed" in issue["body"]

    fake.run(step, {"drift": {"exitcode": "0", "output-file": str(report)}})
    (issue,) = fake.state["issues"]
    assert issue["state"] == "closed"
    (closing,) = fake.state["comments"]
    assert closing["body"].startswith("Azure is back in sync")

    assert "no open drift issue" in fake.run(step, {"drift": {"exitcode": "0", "output-file": str(report)}})
    fake.run(step, {"drift": {"exitcode": "2", "output-file": str(report)}})
    assert [i["state"] for i in fake.state["issues"]] == ["closed", "open"]  # a new episode, a new issue


# --- the Azure DevOps pull request thread against an in-memory Azure DevOps ---------------------


class FakeDevOps(http.server.ThreadingHTTPServer):
    threads: list[dict[str, Any]]
    requests: list[tuple[str, str, str]]


class _DevOpsHandler(http.server.BaseHTTPRequestHandler):
    server: FakeDevOps

    def _reply(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, self.headers["Authorization"]))
        self._reply({"value": self.server.threads, "count": len(self.server.threads)})

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path, self.headers["Authorization"]))
        body = self._body()
        thread = {"id": len(self.server.threads) + 1, "status": body.get("status"),
                  "comments": [{"id": 1, **c} for c in body["comments"]]}
        self.server.threads.append(thread)
        self._reply(thread)

    def do_PATCH(self) -> None:
        self.server.requests.append(("PATCH", self.path, self.headers["Authorization"]))
        match = re.search(r"/threads/(\d+)/comments/(\d+)\?", self.path)
        assert match
        thread = self.server.threads[int(match.group(1)) - 1]
        comment = next(c for c in thread["comments"] if c["id"] == int(match.group(2)))
        comment["content"] = self._body()["content"]
        self._reply(comment)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def devops() -> Iterator[FakeDevOps]:
    server = FakeDevOps(("127.0.0.1", 0), _DevOpsHandler)
    server.threads, server.requests = [], []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_azure_devops_plan_thread_is_sticky(devops: FakeDevOps, tmp_path: Path) -> None:
    pipeline = load(EXAMPLES / "azure-pipelines" / "pull-request.yml")
    (step,) = [s for s in pipeline["steps"] if s.get("task") == "PythonScript@0"]
    script = tmp_path / "comment.py"
    script.write_text(step["inputs"]["script"], encoding="utf-8")
    staging = tmp_path / "staging"
    staging.mkdir()
    devops.threads.append({"id": 1, "comments": [{"id": 1, "content": "LGTM"}]})  # a person's thread

    def run(exitcode: str, plan: str) -> None:
        (staging / "plan.md").write_text(plan, encoding="utf-8")
        known = {"System.AccessToken": "sekrit", "plan.exitcode": exitcode,
                 "Build.ArtifactStagingDirectory": str(staging)}
        env = {**os.environ, **{k: substitute(str(v), known.get) for k, v in step["env"].items()}}
        env.update({
            "SYSTEM_COLLECTIONURI": f"http://127.0.0.1:{devops.server_address[1]}/contoso/",
            "SYSTEM_TEAMPROJECTID": "proj", "BUILD_REPOSITORY_ID": "repo", "BUILD_BUILDID": "99",
            "SYSTEM_PULLREQUEST_PULLREQUESTID": "5", "SYSTEM_PULLREQUEST_SOURCECOMMITID": "abcdef0123",
        })
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    run("2", "### Plan: 3 to add\n")
    run("2", "### Plan: 4 to add\n")
    run("1", "")
    assert len(devops.threads) == 2
    ours = devops.threads[1]["comments"][0]["content"]
    assert ours.startswith("<!-- reconciler-plan -->") and "plan failed (exit code 1)" in ours
    assert devops.threads[0]["comments"][0]["content"] == "LGTM"
    assert [m for m, _, _ in devops.requests] == ["GET", "POST", "GET", "PATCH", "GET", "PATCH"]
    assert all(path.startswith("/contoso/proj/_apis/git/repositories/repo/pullRequests/5/threads")
               and "api-version=7.1" in path for _, path, _ in devops.requests)
    assert {auth for _, _, auth in devops.requests} == {"Bearer sekrit"}


# --- the bootstrap manifest and the permissions it documents -----------------------------------


def condition_sets(condition: str) -> tuple[set[str], set[str]]:
    write = re.search(r"@Request\[Microsoft\.Authorization/roleAssignments:RoleDefinitionId\]\s+"
                      r"ForAnyOfAnyValues:GuidEquals\s*\{([^}]*)\}", condition)
    delete = re.search(r"@Resource\[Microsoft\.Authorization/roleAssignments:RoleDefinitionId\]\s+"
                       r"ForAnyOfAnyValues:GuidEquals\s*\{([^}]*)\}", condition)
    assert write and delete, condition
    return set(re.findall(GUID, write.group(1))), set(re.findall(GUID, delete.group(1)))


def manifest_role_guids() -> set[str]:
    from reconciler.manifest.loader import load_manifests

    desired, _ = load_manifests([REPO / "manifests"], RoleCatalog())
    return {ra.role_definition_id.lower() for ra in desired.role_assignments}


def test_bootstrap_manifest_validates_and_applies(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["validate", str(BOOTSTRAP)]) == 0
    assert "2 identities, 3 federated credentials, 5 role assignments" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["apply", str(BOOTSTRAP), "--sandbox", "b.db", "--auto-approve"]) == 0
    assert main(["plan", str(BOOTSTRAP), "--sandbox", "b.db", "--detailed-exitcode"]) == 0


def test_apply_condition_allows_exactly_the_roles_of_the_manifests() -> None:
    spec = load(BOOTSTRAP)["spec"]
    (apply_identity,) = [i for i in spec["identities"] if i["name"] == "reconciler-apply"]
    (rbac_admin,) = [r for r in apply_identity["roles"] if r["role"] == "Role Based Access Control Administrator"]
    assert rbac_admin["conditionVersion"] == "2.0"
    write, delete = condition_sets(rbac_admin["condition"])
    assert write == delete == manifest_role_guids(), "update the condition with the roles the manifests grant"
    assert not write & PRIVILEGED_ROLES
    for role in ("Owner", "User Access Administrator"):
        assert all(r["role"] != role for i in spec["identities"] for r in i.get("roles", []))
    # the pipeline's identities live where the apply identity cannot add federated credentials
    mi_contributor_scopes = {r["scope"].lower() for r in apply_identity["roles"]
                             if r["role"] == "Managed Identity Contributor"}
    assert not any(s.endswith("/resourcegroups/" + spec["defaults"]["resourceGroup"].lower())
                   for s in mi_contributor_scopes)


def test_permissions_doc_uses_the_same_condition() -> None:
    doc = (REPO / "docs" / "permissions.md").read_text(encoding="utf-8")
    write, delete = condition_sets(doc)
    assert write == delete == manifest_role_guids()
    assert "--condition-version 2.0" in doc and '--condition "$CONDITION"' in doc
    assert "examples/bootstrap/pipeline-identity.yaml" in doc


def test_pipelines_doc_names_every_repository_variable() -> None:
    doc = (REPO / "docs" / "pipelines.md").read_text(encoding="utf-8")
    used = {m for path in GITHUB for m in re.findall(r"vars\.([A-Z_]+)", path.read_text(encoding="utf-8"))}
    assert used == {"AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_PLAN_CLIENT_ID", "AZURE_APPLY_CLIENT_ID",
                    "AZURE_APPLY_OBJECT_ID"}
    assert all(f"`{name}`" in doc for name in used)


# --- the pre-commit hook --------------------------------------------------------------------------


def test_pre_commit_hook(manifests: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "reconciler-validate" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    assert files.search("manifests/payments.yaml") and files.search("a/b.yml") and not files.search("plan.json")
    entry = shlex.split(hook["entry"])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert entry[0] in scripts and scripts[entry[0]] == "reconciler.cli:main"

    monkeypatch.chdir(manifests.parent)
    assert main([*entry[1:], *hook["args"]]) == 0
    # Why the folder and not the changed files: a new file duplicating an identity of an
    # unchanged file is valid on its own and only the whole folder shows the duplicate.
    duplicate = manifests / "copy.yaml"
    duplicate.write_text((manifests / "payments.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert main([*entry[1:], str(duplicate)]) == 0
    assert main([*entry[1:], *hook["args"]]) == 1
