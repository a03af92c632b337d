"""The plan's order (planner.in_plan_order) is identities, credentials, then role assignments,
each by its whole address, though grants are sorted by ranks of their address's parts."""

from __future__ import annotations

import random

from reconciler import addresses
from reconciler.model import IdentityKey
from reconciler.plan import Action, Change, ResourceType
from reconciler.planner import in_plan_order

SUB = "/subscriptions/00000000-0000-0000-0000-0000000000a1"
SCOPES = ["/", SUB, f"{SUB}/resourceGroups/rg", f"{SUB}/resourceGroups/rg-x", f"{SUB}/resourceGroups/rg0",
          f"{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv", f"{SUB}/resourceGroups/rg_a",
          "/providers/Microsoft.Management/managementGroups/mg"]
ROLES = ["acdd72a7-3385-48ef-bd42-f606fba81ae7", "b24988ac-6180-42a0-ab88-20f7382dd24c",
         "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"]
PRINCIPALS = [addresses.principal(IdentityKey("s", "rg", name), None) for name in ("a", "a-b", "ab", "a0", "b")] + [
    "0b0e1a3c-7d0f-4e43-9c54-000000000abc", "ffffffff-7d0f-4e43-9c54-000000000abc"]


def _change(address: str, type_: ResourceType) -> Change:
    return Change(address=address, type=type_, action=Action.CREATE)


def test_grants_come_in_the_order_of_their_whole_addresses_after_identities_and_credentials() -> None:
    rng = random.Random(7)
    grants = [_change(addresses.role_assignment(s, r, p), ResourceType.ROLE_ASSIGNMENT)
              for s in SCOPES for r in ROLES for p in PRINCIPALS]
    keys = [IdentityKey("s", rg, n) for rg in ("rg", "rg-x", "rg0") for n in ("a", "a-b", "b")]
    identities = [_change(addresses.identity(k), ResourceType.IDENTITY) for k in keys]
    credentials = [_change(addresses.federated_credential(k, f), ResourceType.FEDERATED_CREDENTIAL)
                   for k in keys for f in ("gh", "gh-main")]
    mixed = [*grants, *identities, *credentials]
    rng.shuffle(mixed)
    ordered = [c.address for c in in_plan_order(mixed)]
    assert ordered == [*sorted(c.address for c in identities), *sorted(c.address for c in credentials),
                       *sorted(c.address for c in grants)]
    # the prefix cases are what a sort by the parts alone would get wrong
    assert ordered.index(addresses.role_assignment(f"{SUB}/resourceGroups/rg-x", ROLES[0], PRINCIPALS[0])) < \
        ordered.index(addresses.role_assignment(f"{SUB}/resourceGroups/rg", ROLES[0], PRINCIPALS[0]))
