"""What keeps a plan at estate scale small (docs/BENCHMARKS.md, plan memory): live records share
their repeated strings, in-sync changes point at the live record's `Modified`, and the in-process
memory bench builds the live state the way the plan worker reads it. No I/O beyond a temp dir."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from bench.plan_memory import in_sync_live
from bench.workload import Estate
from reconciler.azure.gateway import _live_assignment, _live_identity
from reconciler.in_sync import InSyncGrant, InSyncIdentity
from reconciler.manifest.loader import load_manifests
from reconciler.model import IdentityKey, Modified
from reconciler.payloads import RoleAssignmentValue, expect
from reconciler.plan import Action, Plan
from reconciler.planner import make_plan
from reconciler.roles import RoleCatalog

TINY = Estate(subscriptions=2, groups_per_subscription=2, identities_per_group=5, roles_per_identity=4,
              operator_grants=True, fic_every=4)


def _fresh(text: str) -> str:
    return "".join(list(text))  # an equal string that is not the same object, as the SDK gives one per record


def test_modified_is_the_mapping_a_plan_file_holds() -> None:
    m = Modified("0000-by", "2026-11-30T06:00:00+00:00")
    as_json = {"by": "0000-by", "at": "2026-11-30T06:00:00+00:00", "byType": None}
    assert dict(m) == as_json and m == as_json and as_json == m
    assert m.get("byName") is None and {**m, "byName": "x"}["byName"] == "x"
    assert hash(m) == hash(Modified("0000-by", "2026-11-30T06:00:00+00:00")) and m != Modified("0000-by", None)


def test_live_assignments_share_repeated_strings() -> None:
    scope = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg"
    role = f"{scope}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"

    def item(name: str) -> SimpleNamespace:
        return SimpleNamespace(id=f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}", name=name,
                               scope=_fresh(scope), role_definition_id=_fresh(role), principal_id=_fresh("ABC"),
                               principal_type=_fresh("ServicePrincipal"), description=None, condition=None,
                               condition_version=None, updated_by=_fresh("xyz"), updated_on=None)

    a, b = _live_assignment(item("n1")), _live_assignment(item("n2"))
    assert a.scope == scope and a.role_definition_id == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    assert a.principal_id == "abc"
    assert a.scope is b.scope and a.role_definition_id is b.role_definition_id
    assert a.principal_id is b.principal_id and a.principal_type is b.principal_type
    assert a.modified is not None and b.modified is not None and a.modified.by is b.modified.by


def test_live_identities_and_keys_share_repeated_strings() -> None:
    def item(name: str) -> SimpleNamespace:
        rid = f"/subscriptions/S1/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        return SimpleNamespace(id=_fresh(rid), name=name, location=_fresh("westeurope"),
                               tags={_fresh("managed-by"): _fresh("reconciler")}, principal_id="P", client_id="C",
                               tenant_id=_fresh("T"), system_data=None)

    a, b = _live_identity(item("one")), _live_identity(item("two"))
    assert a.subscription == "S1" and a.resource_group == "RG" and a.tags == {"managed-by": "reconciler"}
    assert a.subscription is b.subscription and a.resource_group is b.resource_group and a.location is b.location
    assert a.tenant_id is b.tenant_id and next(iter(a.tags)) is next(iter(b.tags))
    k1, k2 = IdentityKey.of(_fresh("S1"), _fresh("RG"), _fresh("One")), IdentityKey.of("s1", "rg", "one")
    assert k1 == k2 and k1.subscription is k2.subscription and k1.name is k2.name


def test_the_memory_bench_reads_an_in_sync_estate_and_changes_point_at_live_values(tmp_path: Path) -> None:
    desired, _ = load_manifests([TINY.write(tmp_path)], RoleCatalog())
    scopes = [ra.scope for ra in desired.role_assignments]
    assert len(set(scopes)) < len(scopes) and len({id(s) for s in scopes}) == len(set(scopes))  # one per scope
    live = in_sync_live(desired)
    plan = make_plan(desired, live, RoleCatalog().name_of)
    assert len(plan.changes) == len(desired.identities) + len(desired.federated_credentials) + len(
        desired.role_assignments)
    assert all(c.action is Action.NOOP for c in plan.changes)
    by_id = {ra.id: ra.modified for ra in live.role_assignments}
    grants = [c for c in plan.changes if c.type.value == "roleAssignment"]
    assert grants and all(c.before is not None and c.modified is by_id[str(c.before.id)] for c in grants)
    # Identities and grants in sync are compact records (reconciler/in_sync.py): one value for both
    # sides when read, built from the live record's own strings; read back from JSON, an equal plan.
    compact = [c for c in plan.changes if c.type.value != "federatedCredential"]
    assert compact and all(isinstance(c, InSyncIdentity | InSyncGrant) for c in compact)
    assert all(c.after is c.before or c.after == c.before for c in plan.changes)
    by_name = {ra.name: ra for ra in live.role_assignments}
    befores = [expect(c.before, RoleAssignmentValue) for c in grants]
    assert all(b.scope is by_name[str(b.name)].scope and b.id == by_name[str(b.name)].id for b in befores)
    data = json.loads(plan.dumps())
    assert data["changes"][-1]["modified"] == dict(grants[-1].modified or {})
    assert Plan.from_json(data) == plan and plan == Plan.from_json(data)
    in_order = sorted((c.address for c in plan.changes),
                      key=lambda a: (a.startswith("roleAssignment"), "/federatedCredential/" in a, a))
    assert [c.address for c in plan.changes] == in_order
