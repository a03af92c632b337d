"""Golden-file tests: desired + live in, rendered plan out, compared with files a person reviewed.

To accept new output after an intended change, run

    UPDATE_GOLDEN=1 pytest tests/unit/test_golden.py

which rewrites every `expected.txt` / `expected.md` / `expected.json`; then read the diff as a reviewer would
before committing it (the files are the spec of what reviewers see).

Each case is a folder in tests/golden/ with:

    desired.json   DesiredState: {"owners"?, "identities", "federatedCredentials", "roleAssignments"}
    live.json      LiveState: {"resourceGroups", "identities", "federatedCredentials", "roleAssignments"};
                   a live resource may say who changed it last: "modified": {"by", "at", "byType"}
    options.json   optional: PlanOptions, the plan flags ({"prune_unmanaged": true, ...})
    expected.txt   render_text(plan) without colour
    expected.md    render_markdown(plan, full_plan_hint=HINT)
    expected.json  plan.dumps(): the JSON plan, byte for byte (key order included), as saved
                   plans and `plan --format json` carry it

Identities are referenced as "subscription/resourceGroup/name". Ids that ARM would assign
(identity, credential and assignment ids) are derived from names, so the files hold only what
the case is about. Role names come from the built-in role table, as online plans resolve them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import SourceLocation
from reconciler.model import (
    DEFAULT_AUDIENCES,
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    Modified,
    PrincipalRef,
    identity_id,
)
from reconciler.plan import Action, Plan, ReasonCode
from reconciler.planner import PlanOptions, make_plan
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.roles import RoleCatalog

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
HINT = "Full plan: artifact plan.json of this workflow run."
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "desired.json").is_file())


# ----------------------------------------------------------------------------- loader


def _key(ref: str) -> IdentityKey:
    subscription, resource_group, name = ref.split("/")
    return IdentityKey.of(subscription, resource_group, name)


def _source(data: dict[str, Any]) -> SourceLocation | None:
    if "source" not in data:
        return None
    file, line, col = data["source"].rsplit(":", 2)
    return SourceLocation(file, int(line), int(col))


def _modified(data: dict[str, Any]) -> Modified | None:
    m = data.get("modified")
    return Modified(by=m.get("by"), at=m.get("at"), by_type=m.get("byType")) if m else None


def load_desired(data: dict[str, Any]) -> DesiredState:
    identities = tuple(
        DesiredIdentity(
            owner=i["owner"], subscription=i["subscription"], resource_group=i["resourceGroup"],
            name=i["name"], location=i["location"], tags=i.get("tags", {}),
            protect=i.get("protect", False), source=_source(i),
        )
        for i in data.get("identities", [])
    )
    fics = tuple(
        DesiredFederatedCredential(
            owner=f["owner"], identity=_key(f["identity"]), name=f["name"], issuer=f["issuer"],
            subject=f["subject"], audiences=tuple(f.get("audiences", DEFAULT_AUDIENCES)), source=_source(f),
        )
        for f in data.get("federatedCredentials", [])
    )
    ras = []
    for r in data.get("roleAssignments", []):
        p = r["principal"]
        principal = (
            PrincipalRef(identity=_key(p["identity"])) if "identity" in p
            else PrincipalRef(object_id=p["objectId"], principal_type=p.get("principalType", "ServicePrincipal"))
        )
        ras.append(DesiredRoleAssignment(
            owner=r["owner"], scope=r["scope"], role_definition_id=r["roleDefinitionId"],
            role_name=r["roleName"], principal=principal, description=r.get("description"),
            condition=r.get("condition"), condition_version=r.get("conditionVersion"), source=_source(r),
        ))
    owners = frozenset(data.get("owners") or {i.owner for i in identities})
    return DesiredState(identities=identities, federated_credentials=fics, role_assignments=tuple(ras),
                        owners=owners)


def load_live(data: dict[str, Any]) -> LiveState:
    identities = {}
    for i in data.get("identities", []):
        li = LiveIdentity(
            id=identity_id(i["subscription"], i["resourceGroup"], i["name"]),
            subscription=i["subscription"], resource_group=i["resourceGroup"], name=i["name"],
            location=i["location"], tags=i.get("tags", {}), principal_id=i["principalId"],
            client_id=i.get("clientId", "client-" + i["principalId"]), tenant_id=i.get("tenantId", "tenant"),
            modified=_modified(i),
        )
        identities[li.key] = li
    # Credentials were listed for every live identity: one not mentioned has none.
    fics: dict[IdentityKey, tuple[LiveFederatedCredential, ...]] = {k: () for k in identities}
    for ref, items in data.get("federatedCredentials", {}).items():
        key = _key(ref)
        fics[key] = tuple(
            LiveFederatedCredential(
                identity=key, id=f"{identities[key].id}/federatedIdentityCredentials/{f['name']}",
                name=f["name"], issuer=f["issuer"], subject=f["subject"],
                audiences=tuple(f.get("audiences", DEFAULT_AUDIENCES)), modified=_modified(f),
            )
            for f in items
        )
    ras = tuple(
        LiveRoleAssignment(
            id=f"{r['scope']}/providers/Microsoft.Authorization/roleAssignments/{r['name']}", name=r["name"],
            scope=r["scope"], role_definition_id=r["roleDefinitionId"], principal_id=r["principalId"],
            principal_type=r.get("principalType"), description=r.get("description"),
            condition=r.get("condition"), condition_version=r.get("conditionVersion"), modified=_modified(r),
        )
        for r in data.get("roleAssignments", [])
    )
    groups = frozenset((s.lower(), rg.lower()) for s, rg in data.get("resourceGroups", []))
    return LiveState(
        identities=identities, federated_credentials=fics, role_assignments=ras,
        subscriptions=frozenset(s for s, _ in groups), resource_groups=groups,
    )


def plan_for(case: str) -> Plan:
    folder = GOLDEN / case
    desired = load_desired(json.loads((folder / "desired.json").read_text("utf-8")))
    live = load_live(json.loads((folder / "live.json").read_text("utf-8")))
    options_file = folder / "options.json"
    options = PlanOptions(**json.loads(options_file.read_text("utf-8"))) if options_file.is_file() else None
    return make_plan(desired, live, RoleCatalog().name_of, options)


# ----------------------------------------------------------------------------- tests


def test_every_case_folder_is_complete() -> None:
    # A case without expected files would otherwise be skipped silently, not compared.
    assert len(CASES) >= 9
    for case in CASES:
        for name in ("live.json", "expected.txt", "expected.md", "expected.json"):
            assert (GOLDEN / case / name).is_file(), f"{case}/{name} is missing"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("filename", "render"), [
    ("expected.txt", lambda plan: render_text(plan)),
    ("expected.md", lambda plan: render_markdown(plan, full_plan_hint=HINT)),
    ("expected.json", lambda plan: plan.dumps()),
], ids=["text", "markdown", "json"])
def test_golden(case: str, filename: str, render: Callable[[Plan], str]) -> None:
    actual = render(plan_for(case))
    expected_file = GOLDEN / case / filename
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_text(actual, "utf-8")
    assert actual == expected_file.read_text("utf-8"), f"{case}/{filename} differs; see the module docstring"


@pytest.mark.parametrize("case", CASES)
def test_every_change_says_why_in_a_reason_code(case: str) -> None:
    plan = plan_for(case)
    assert plan.changes
    for change in plan.changes:
        assert change.reason_code is not None, f"{case}: {change.address} has no reason code"
        # The code and the action tell one story: in sync is a no-op, creation means absent.
        assert (change.reason_code is ReasonCode.IN_SYNC) == (change.action is Action.NOOP and change.drift is None)
        if change.reason_code is ReasonCode.NOT_IN_AZURE:
            assert change.action is Action.CREATE and change.before is None
    assert Plan.from_json(json.loads(plan.dumps())) == plan  # what is written reads back as it was
