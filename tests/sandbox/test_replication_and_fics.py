"""Directory replication delay for new identities, and the FIC rules (limit, uniqueness, concurrency)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from reconciler.sandbox import SandboxServer

from .conftest import CONTRIBUTOR, READER, RG, SUB, Clients, raw, wait_for

RG_SCOPE = f"/subscriptions/{SUB}/resourceGroups/{RG}"


def ra_body(principal: str, role: str = READER, **extra: Any) -> dict[str, Any]:
    return {"role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            "principal_id": principal, **extra}


def fic(issuer: str = "https://issuer.example", subject: str = "sub") -> dict[str, Any]:
    return {"properties": {"issuer": issuer, "subject": subject, "audiences": ["api://AzureADTokenExchange"]}}


def test_new_identity_needs_principal_type_until_replicated(srv: SandboxServer, c: Clients) -> None:
    srv.configure(replication_delay_seconds=3600)
    ident = c.msi.user_assigned_identities.create_or_update(RG, "fresh", {"location": "westus"})
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.create(RG_SCOPE, "c0000000-0000-4000-8000-000000000001", ra_body(ident.principal_id))
    assert err.value.status_code == 400
    assert err.value.error is not None
    assert err.value.error.code == "PrincipalNotFound"
    assert err.value.error.message == (
        f"Principal {ident.principal_id} does not exist in the directory {srv.tenant_id}. Check that you have the "
        "correct principal ID. If you are creating this principal and then immediately assigning a role, this error "
        "might be related to a replication delay. In this case, set the role assignment principalType property to "
        "a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype")
    ok = c.auth.role_assignments.create(RG_SCOPE, "c0000000-0000-4000-8000-000000000001",
                                        ra_body(ident.principal_id, principal_type="ServicePrincipal"))
    assert ok.principal_type == "ServicePrincipal"


def test_principal_becomes_visible_once_the_delay_has_passed(srv: SandboxServer, c: Clients) -> None:
    srv.configure(replication_delay_seconds=0.3)
    ident = c.msi.user_assigned_identities.create_or_update(RG, "later", {"location": "westus"})
    name = "c0000000-0000-4000-8000-000000000002"
    first = raw(srv, "PUT", f"{RG_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{name}"
                            "?api-version=2022-04-01",
                {"properties": {"roleDefinitionId": ra_body("")["role_definition_id"],
                                "principalId": ident.principal_id}})
    assert first.status == 400 and first.body["error"]["code"] == "PrincipalNotFound"

    def assigned() -> bool:
        try:
            c.auth.role_assignments.create(RG_SCOPE, name, ra_body(ident.principal_id))
        except HttpResponseError as err:
            assert err.error is not None
            assert err.error.code == "PrincipalNotFound"
            return False
        return True

    wait_for(assigned)
    # ARM fills principalType from the directory when the caller left it out.
    assert c.auth.role_assignments.get(RG_SCOPE, name).principal_type == "ServicePrincipal"


def test_deleted_identity_principal_is_gone_from_the_directory(srv: SandboxServer, c: Clients) -> None:
    srv.configure(replication_delay_seconds=0)
    ident = c.msi.user_assigned_identities.create_or_update(RG, "brief", {"location": "westus"})
    c.msi.user_assigned_identities.delete(RG, "brief")
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.create(RG_SCOPE, "c0000000-0000-4000-8000-000000000003", ra_body(ident.principal_id))
    assert err.value.error is not None
    assert err.value.error.code == "PrincipalNotFound"
    # With principalType ServicePrincipal ARM does not look the principal up (terraform-provider-azurerm
    # PR #4168): the assignment is made, and later shows as "Unknown".
    made = c.auth.role_assignments.create(RG_SCOPE, "c0000000-0000-4000-8000-000000000004",
                                          ra_body(ident.principal_id, principal_type="ServicePrincipal"))
    assert made.principal_type == "ServicePrincipal"


def test_at_most_twenty_fics_per_identity(c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "many", {"location": "westus"})
    for n in range(20):
        c.msi.federated_identity_credentials.create_or_update(RG, "many", f"fic{n:02d}", fic(subject=f"s{n}"))
    with pytest.raises(HttpResponseError) as err:
        c.msi.federated_identity_credentials.create_or_update(RG, "many", "fic20", fic(subject="s20"))
    assert err.value.status_code == 400
    # Updating one of the twenty is still allowed.
    c.msi.federated_identity_credentials.create_or_update(RG, "many", "fic00", fic(subject="changed"))
    assert len(list(c.msi.federated_identity_credentials.list(RG, "many"))) == 20


def test_issuer_and_subject_are_unique_per_identity(c: Clients) -> None:
    for name in ("uniq1", "uniq2"):
        c.msi.user_assigned_identities.create_or_update(RG, name, {"location": "westus"})
    c.msi.federated_identity_credentials.create_or_update(RG, "uniq1", "first", fic())
    c.msi.federated_identity_credentials.create_or_update(RG, "uniq1", "first", fic())  # same name: update
    with pytest.raises(HttpResponseError) as err:
        c.msi.federated_identity_credentials.create_or_update(RG, "uniq1", "second", fic())
    assert err.value.status_code == 400
    assert err.value.error is not None
    assert err.value.error.message == "Issuer and subject combination already exists for this Managed Identity."
    c.msi.federated_identity_credentials.create_or_update(RG, "uniq2", "second", fic())  # other identity: fine


def test_overlapping_fic_writes_on_one_identity_conflict(srv: SandboxServer, c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "busy", {"location": "westus"})
    srv.configure(fic_write_window_seconds=1.0)
    results: dict[str, Any] = {}

    def write(name: str) -> None:
        try:
            results[name] = c.msi.federated_identity_credentials.create_or_update(
                RG, "busy", name, fic(subject=name))
        except HttpResponseError as err:
            results[name] = err

    first = threading.Thread(target=write, args=("fic-a",))
    first.start()
    wait_for(lambda: srv.request_counts().get("FederatedIdentityCredentials_CreateOrUpdate", 0) >= 1)
    write("fic-b")
    first.join()
    errors = [r for r in results.values() if isinstance(r, HttpResponseError)]
    assert len(errors) == 1
    assert errors[0].status_code == 409
    assert errors[0].error is not None and errors[0].error.message is not None
    assert errors[0].error.code == "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    assert "Concurrent Federated Identity Credentials writes under the same managed identity are not supported." \
        in errors[0].error.message


def test_a_serialising_client_never_conflicts(srv: SandboxServer, c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "serial", {"location": "westus"})
    c.msi.user_assigned_identities.create_or_update(RG, "other", {"location": "westus"})
    srv.configure(fic_write_window_seconds=0.2)
    for name in ("one", "two", "three"):
        c.msi.federated_identity_credentials.create_or_update(RG, "serial", f"fic-{name}", fic(subject=name))
    c.msi.federated_identity_credentials.delete(RG, "serial", "fic-one")
    assert sorted(f.name for f in c.msi.federated_identity_credentials.list(RG, "serial")) == ["fic-three", "fic-two"]


def test_writes_to_different_identities_do_not_conflict(srv: SandboxServer, c: Clients) -> None:
    for name in ("par1", "par2"):
        c.msi.user_assigned_identities.create_or_update(RG, name, {"location": "westus"})
    srv.configure(fic_write_window_seconds=0.5)
    errors: list[Exception] = []

    def write(identity: str) -> None:
        try:
            c.msi.federated_identity_credentials.create_or_update(RG, identity, "fic-x", fic())
        except HttpResponseError as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in ("par1", "par2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_contributor_role_is_known(c: Clients) -> None:
    # A guard for the constants the other tests rely on.
    assert c.auth.role_definitions.get(f"/subscriptions/{SUB}", CONTRIBUTOR).role_name == "Contributor"
