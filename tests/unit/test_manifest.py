"""Manifest loading: files -> DesiredState, or every error at its exact file:line:col."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import jsonschema
import pytest

from reconciler.errors import Diagnostic, ManifestError, SourceLocation
from reconciler.manifest import MAX_USER_TAGS, load_manifests, schema
from reconciler.manifest.yaml_source import parse
from reconciler.model import (
    DEFAULT_AUDIENCES,
    MAX_FICS_PER_IDENTITY,
    RESERVED_TAGS,
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    IdentityKey,
    PrincipalRef,
)
from reconciler.roles import Role, RoleCatalog

REPO = Path(__file__).resolve().parents[2]
SUB = "11111111-1111-1111-1111-111111111111"
GROUP = "22222222-2222-2222-2222-222222222222"
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"

VALID = f"""\
apiVersion: reconciler/v1
kind: IdentitySet
metadata:
  owner: payments
spec:
  subscription: {SUB}
  defaults: {{resourceGroup: rg-payments, location: westeurope, tags: {{team: payments}}}}
  identities:
    - name: payments-api
      tags: {{component: api}}
      federatedCredentials:
        - name: github-main
          issuer: https://token.actions.githubusercontent.com
          subject: repo:contoso/payments:ref:refs/heads/main
      roles:
        - role: Storage Blob Data Reader
          scope: /subscriptions/{SUB}/resourceGroups/rg-data
  roleAssignments:
    - principal: {{objectId: {GROUP}, type: Group}}
      role: Managed Identity Operator
      scope: {{identity: payments-api}}
"""


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def failures(*paths: str | Path, catalog: RoleCatalog | None = None) -> list[Diagnostic]:
    with pytest.raises(ManifestError) as info:
        load_manifests(list(paths), catalog or RoleCatalog())
    return info.value.diagnostics


def errors_of(tmp_path: Path, text: str) -> list[tuple[int, int, str]]:
    """(line, col, message) of every error in `text`, which must fail to load."""
    file = write(tmp_path, "m.yaml", text)
    found = failures(file)
    assert all(d.location is not None and d.location.file == file for d in found), found
    return [(d.location.line, d.location.col, d.message) for d in found if d.location and d.severity == "error"]


def hint_of(tmp_path: Path, text: str, message_part: str) -> str:
    found = failures(write(tmp_path, "m.yaml", text))
    matching = [d for d in found if message_part in d.message]
    assert len(matching) == 1, found
    assert matching[0].hint is not None
    return matching[0].hint


def replace(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# ----------------------------------------------------------------------------- valid


def test_valid_document_loads_to_the_expected_state(tmp_path: Path) -> None:
    file = write(tmp_path, "payments.yaml", VALID)
    state, warnings = load_manifests([file], RoleCatalog())
    key = IdentityKey(SUB, "rg-payments", "payments-api")
    assert warnings == []
    assert state.identities == (
        DesiredIdentity(
            owner="payments", subscription=SUB, resource_group="rg-payments", name="payments-api",
            location="westeurope", tags={"team": "payments", "component": "api"}, protect=False,
            source=SourceLocation(file, 9, 7),
        ),
    )
    assert state.federated_credentials == (
        DesiredFederatedCredential(
            owner="payments", identity=key, name="github-main",
            issuer="https://token.actions.githubusercontent.com",
            subject="repo:contoso/payments:ref:refs/heads/main", audiences=DEFAULT_AUDIENCES,
            source=SourceLocation(file, 12, 11),
        ),
    )
    assert state.role_assignments == (
        DesiredRoleAssignment(
            owner="payments", scope=f"/subscriptions/{SUB}/resourceGroups/rg-data",
            role_definition_id=BLOB_READER, role_name="Storage Blob Data Reader",
            principal=PrincipalRef(identity=key, principal_type="ServicePrincipal"),
            source=SourceLocation(file, 16, 11),
        ),
        DesiredRoleAssignment(
            owner="payments",
            scope=f"/subscriptions/{SUB}/resourceGroups/rg-payments/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/payments-api",
            role_definition_id=MI_OPERATOR, role_name="Managed Identity Operator",
            principal=PrincipalRef(object_id=GROUP, principal_type="Group"),
            source=SourceLocation(file, 19, 7),
        ),
    )
    assert state.owners == frozenset({"payments"})
    assert state.files == (file,)


def test_identity_values_override_defaults_and_tags_merge_case_insensitively(tmp_path: Path) -> None:
    text = replace(
        "      tags: {component: api}\n",
        "      resourceGroup: rg-other\n      location: northeurope\n"
        "      tags: {Team: api-team, component: api}\n      protect: true\n",
    )
    state, _ = load_manifests([write(tmp_path, "m.yaml", text)], RoleCatalog())
    (identity,) = state.identities
    assert (identity.resource_group, identity.location, identity.protect) == ("rg-other", "northeurope", True)
    assert identity.tags == {"Team": "api-team", "component": "api"}
    # the `{identity: ...}` scope follows the identity's own resource group
    assert state.role_assignments[1].scope.endswith("/resourceGroups/rg-other/providers/"
                                                    "Microsoft.ManagedIdentity/userAssignedIdentities/payments-api")


def test_role_forms_condition_and_identity_principal(tmp_path: Path) -> None:
    text = VALID + textwrap.indent(
        textwrap.dedent(f"""\
        - principal: {{identity: PAYMENTS-API}}
          role: {READER.upper()}
          scope: /subscriptions/{SUB}
        - principal: {{identity: payments-api}}
          role: /providers/Microsoft.Authorization/roleDefinitions/{MI_OPERATOR}
          scope: /subscriptions/{SUB}/resourcegroups/rg-x
          description: attach it
          condition: "@Resource[x] StringEquals 'y'"
        """),
        "    ",
    )
    state, _ = load_manifests([write(tmp_path, "m.yaml", text)], RoleCatalog())
    reader, operator = state.role_assignments[2:]
    key = IdentityKey(SUB, "rg-payments", "payments-api")
    assert (reader.role_definition_id, reader.role_name, reader.principal) == (
        READER, "Reader", PrincipalRef(identity=key, principal_type="ServicePrincipal"))
    assert (operator.role_definition_id, operator.description, operator.condition_version) == (
        MI_OPERATOR, "attach it", "2.0")
    assert operator.condition == "@Resource[x] StringEquals 'y'"
    assert reader.condition is None and reader.condition_version is None


def test_example_manifests_validate_clean() -> None:
    state, warnings = load_manifests([str(REPO / "manifests")], RoleCatalog())
    assert warnings == []
    assert state.owners == frozenset({"payments", "platform"})
    assert len(state.files) == 2
    assert 3 <= len(state.identities) <= 4
    assert {ra.principal.principal_type for ra in state.role_assignments} >= {"Group", "ServicePrincipal"}
    scopes = {ra.scope.count("/") for ra in state.role_assignments}
    assert {2, 4, 8} <= scopes  # subscription, resource group and identity scopes
    for file in (REPO / "manifests").glob("*.yaml"):
        first = file.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/manifest.schema.json"


def test_multiple_documents_and_files_keep_file_then_document_order(tmp_path: Path) -> None:
    second = replace("owner: payments", "owner: platform").replace("payments-api", "platform-api")
    third = replace("owner: payments", "owner: data").replace("payments-api", "data-api")
    write(tmp_path, "b.yaml", second + "---\n" + third)
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "nested/deeper/c.yml", VALID.replace("payments-api", "c-api"))
    write(tmp_path, ".git/ignored.yaml", "not: a manifest")
    write(tmp_path, "README.md", "# not yaml")
    state, _ = load_manifests([str(tmp_path)], RoleCatalog())
    assert [i.name for i in state.identities] == ["payments-api", "platform-api", "data-api", "c-api"]
    assert [Path(f).name for f in state.files] == ["a.yaml", "b.yaml", "c.yml"]
    assert state.owners == frozenset({"payments", "platform", "data"})


def test_paths_are_reported_as_given_and_files_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "dir/m.yaml", replace("owner: payments", "owner: Bad"))
    monkeypatch.chdir(tmp_path)
    found = failures("dir", "dir/m.yaml", "./dir")
    assert [str(d.location) for d in found] == ["dir/m.yaml:4:10"]


# ----------------------------------------------------------------------------- paths


def test_empty_missing_and_manifestless_paths_are_errors_not_an_empty_state(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path, "other/notes.txt", "x")
    found = failures("", str(tmp_path / "empty"), str(tmp_path / "missing"), str(tmp_path / "other"))
    messages = [d.message for d in found]
    assert messages == [
        "empty manifest path given",
        f"{tmp_path / 'empty'}: no *.yaml or *.yml manifests in this directory",
        f"{tmp_path / 'missing'}: no such file or directory",
        f"{tmp_path / 'other'}: no *.yaml or *.yml manifests in this directory",
    ]
    assert "delete everything" in (found[1].hint or "")
    assert [d.message for d in failures()] == ["no manifest paths given"]


def test_empty_and_comment_only_files_are_errors(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "# nothing here\n") == [
        (1, 1, "file contains no manifest (it is empty or only comments)")
    ]
    assert errors_of(tmp_path, "") == [(1, 1, "file contains no manifest (it is empty or only comments)")]


def test_an_empty_document_next_to_a_real_one_is_a_warning(tmp_path: Path) -> None:
    file = write(tmp_path, "m.yaml", VALID + "---\n# nothing\n")
    state, warnings = load_manifests([file], RoleCatalog())
    assert len(state.identities) == 1
    assert [(str(w.location), w.message, w.severity) for w in warnings] == [
        (f"{file}:22:1", "empty document ignored", "warning")
    ]


# ----------------------------------------------------------------------------- structure


def test_unknown_field_points_at_the_key_and_suggests_the_closest(tmp_path: Path) -> None:
    text = replace("      tags: {component: api}\n", "      resourcegroup: rg-x\n      tagz: {}\n")
    assert errors_of(tmp_path, text) == [
        (10, 7, "unknown field 'resourcegroup' in identity"),
        (11, 7, "unknown field 'tagz' in identity"),
    ]
    hint = hint_of(tmp_path, text, "'resourcegroup'")
    assert hint.startswith("did you mean 'resourceGroup'? identity allows: name, resourceGroup, location")


def test_wrong_types_say_expected_and_got_with_quote_hints(tmp_path: Path) -> None:
    text = replace("      tags: {component: api}\n", "      tags: {component: 1.10, on: yes}\n      protect: 'no'\n")
    assert errors_of(tmp_path, text) == [
        (10, 25, "spec.identities[0].tags.component must be a string, got number 1.1"),
        (10, 35, "spec.identities[0].tags.on must be a string, got boolean true"),
        (11, 16, "spec.identities[0].protect must be true or false, got string 'no'"),
    ]
    assert hint_of(tmp_path, text, "tags.component") == 'quote it: "1.10" (YAML reads 1.10 as a number)'
    assert hint_of(tmp_path, text, "tags.on") == 'quote it: "yes" (YAML reads yes as a boolean)'


def test_non_mapping_and_foreign_documents(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "- a\n- b\n---\nplain text\n---\nname: x\n") == [
        (1, 1, "document must be a mapping, got list [\"a\", \"b\"]"),
        (4, 1, "document must be a mapping, got string 'plain text'"),
        (6, 1, "document is not a reconciler manifest (it has no apiVersion, kind, metadata or spec)"),
    ]


def test_a_manifest_without_its_header_still_gets_every_error(tmp_path: Path) -> None:
    text = VALID.replace("apiVersion: reconciler/v1\nkind: IdentitySet\n", "").replace("owner: payments", "owner: P")
    assert errors_of(tmp_path, text) == [
        (1, 1, "IdentitySet document is missing required field 'apiVersion'"),
        (1, 1, "IdentitySet document is missing required field 'kind'"),
        (2, 10, "metadata.owner 'P' is not a valid owner"),
    ]


def test_missing_required_fields_and_wrong_constants(tmp_path: Path) -> None:
    text = replace("apiVersion: reconciler/v1", "apiVersion: reconciler/v2").replace(
        "metadata:\n  owner: payments\n", "metadata: {}\n"
    )
    assert errors_of(tmp_path, text) == [
        (1, 13, "apiVersion must be 'reconciler/v1', got 'reconciler/v2'"),
        (3, 1, "metadata is missing required field 'owner'"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("owner: payments", "owner: Payments", (4, 10, "metadata.owner 'Payments' is not a valid owner")),
        (f"subscription: {SUB}", "subscription: 1111-2222",
         (6, 17, "spec.subscription '1111-2222' is not a valid GUID")),
        ("- name: github-main", "- name: gh.main",
         (12, 17, "spec.identities[0].federatedCredentials[0].name 'gh.main' is not a valid "
                  "federated credential name")),
        ("issuer: https://token", "issuer: http://token",
         (13, 19, "spec.identities[0].federatedCredentials[0].issuer 'http://token.actions."
                  "githubusercontent.com' is not a valid issuer")),
        (f"scope: /subscriptions/{SUB}/resourceGroups/rg-data", "scope: /subscriptions/xyz/resourceGroups/rg",
         (17, 18, "spec.identities[0].roles[0].scope '/subscriptions/xyz/resourceGroups/rg' is not a valid "
                  "ARM scope")),
        (f"objectId: {GROUP}", "objectId: not-a-guid",
         (19, 29, "spec.roleAssignments[0].principal.objectId 'not-a-guid' is not a valid GUID")),
        ("type: Group", "type: group",
         (19, 73, 'spec.roleAssignments[0].principal.type must be one of "User", "Group", '
                  '"ServicePrincipal", "ForeignGroup", "Device"; got string \'group\'')),
    ],
)
def test_pattern_and_enum_errors_are_located_and_worded(
    tmp_path: Path, old: str, new: str, expected: tuple[int, int, str]
) -> None:
    assert errors_of(tmp_path, replace(old, new)) == [expected]


def test_references_to_an_identity_with_an_unreadable_name_are_not_reported_again(tmp_path: Path) -> None:
    assert errors_of(tmp_path, replace("- name: payments-api", "- name: ab")) == [
        (9, 13, "spec.identities[0].name 'ab' is not a valid identity name"),
    ]


def test_a_reference_to_a_name_used_in_two_resource_groups_is_ambiguous(tmp_path: Path) -> None:
    text = replace("  roleAssignments:", "    - {name: payments-api, resourceGroup: rg-other}\n  roleAssignments:")
    assert errors_of(tmp_path, text) == [
        (22, 25, "'payments-api' names 2 identities of this IdentitySet (in different resource groups)")
    ]


def test_pattern_hint_states_the_rule_in_words(tmp_path: Path) -> None:
    hint = hint_of(tmp_path, replace("- name: payments-api", "- name: ab"), "valid identity name")
    assert hint == "3-128 characters: letters, digits, '-' and '_', starting with a letter or digit."
    hint = hint_of(tmp_path, replace("type: Group", "type: group"), "principal.type")
    assert hint == "did you mean 'Group'?"


def test_a_trailing_line_break_does_not_pass_a_name_pattern(tmp_path: Path) -> None:
    text = replace("    - name: payments-api\n", "    - name: |\n        payments-api\n")
    assert errors_of(tmp_path, text)[0] == (
        9, 13, "spec.identities[0].name 'payments-api\\n' is not a valid identity name"
    )


def test_one_of_reports_the_alternative_that_was_meant(tmp_path: Path) -> None:
    text = replace(f"principal: {{objectId: {GROUP}, type: Group}}", "principal: {identity: payments-api, type: Group}")
    assert errors_of(tmp_path, text) == [(19, 43, "unknown field 'type' in identity reference")]
    text = replace("scope: {identity: payments-api}", "scope: 42")
    assert errors_of(tmp_path, text) == [
        (21, 14, "spec.roleAssignments[0].scope must be one of: ARM scope, identity reference; got number 42")
    ]
    text = replace(f"principal: {{objectId: {GROUP}, type: Group}}", "principal: {}")
    assert errors_of(tmp_path, text) == [
        (19, 18, "spec.roleAssignments[0].principal must be one of: directory principal, identity "
                 "reference, group by name, user by UPN, service principal by app id or name; got mapping {}")
    ]


def test_condition_version_must_be_quoted_and_needs_a_condition(tmp_path: Path) -> None:
    text = replace("      scope: {identity: payments-api}\n", "      scope: {identity: payments-api}\n"
                   "      conditionVersion: 2.0\n")
    assert errors_of(tmp_path, text) == [
        (22, 7, "conditionVersion needs condition in the same entry"),
        (22, 25, 'spec.roleAssignments[0].conditionVersion must be one of "2.0"; got number 2.0'),
    ]
    assert hint_of(tmp_path, text, "must be one of") == 'quote it: "2.0" (YAML reads 2.0 as a number)'


def test_tag_limits(tmp_path: Path) -> None:
    long_value = "v" * 257
    text = replace("tags: {component: api}", f"tags: {{'a/b': x, c: {long_value}}}")
    assert errors_of(tmp_path, text) == [
        (10, 14, "spec.identities[0].tags has an invalid tag name 'a/b'"),
        (10, 27, "spec.identities[0].tags.c is 257 characters long; at most 256 allowed"),
    ]


def test_size_bounds_name_the_count_and_the_limit(tmp_path: Path) -> None:
    # maxProperties, minItems and minLength: each keyword of the schema error mapper has its words.
    tags = ", ".join(f"t{i}: v" for i in range(MAX_USER_TAGS + 1))
    text = replace("tags: {component: api}", f"tags: {{{tags}}}")
    text = replace("subject: repo:contoso/payments:ref:refs/heads/main",
                   "subject: repo:contoso/payments:ref:refs/heads/main\n          audiences: []", text)
    text = replace(f"principal: {{objectId: {GROUP}, type: Group}}", 'principal: {group: ""}', text)
    assert errors_of(tmp_path, text) == [
        (10, 13, f"spec.identities[0].tags has {MAX_USER_TAGS + 1} entries; at most {MAX_USER_TAGS} allowed"),
        (15, 22, "spec.identities[0].federatedCredentials[0].audiences has 0 entries; at least 1 allowed"),
        (20, 26, "spec.roleAssignments[0].principal.group is 0 characters long; at least 1 allowed"),
    ]


def test_too_many_tags_after_merging_defaults(tmp_path: Path) -> None:
    own = ", ".join(f"t{i}: v" for i in range(MAX_USER_TAGS))
    text = replace("tags: {component: api}", f"tags: {{{own}}}")
    assert errors_of(tmp_path, text) == [
        (10, 13, f"identity 'payments-api' has {MAX_USER_TAGS + 1} tags with spec.defaults.tags merged in; "
                 f"at most {MAX_USER_TAGS} are allowed")
    ]
    # the schema's own bound for one tags mapping is the same number
    assert schema()["$defs"]["tags"]["maxProperties"] == MAX_USER_TAGS == 50 - len(RESERVED_TAGS)


@pytest.mark.parametrize("reserved", sorted(RESERVED_TAGS))
def test_reserved_tags_are_rejected_with_a_hint(tmp_path: Path, reserved: str) -> None:
    text = replace("tags: {component: api}", f"tags: {{component: api, {reserved.upper()}: x}}")
    assert errors_of(tmp_path, text) == [(10, 30, f"tag '{reserved.upper()}' is reserved")]
    assert "metadata.owner" in hint_of(tmp_path, text, "is reserved")


def test_tag_names_differing_only_in_case_are_rejected(tmp_path: Path) -> None:
    text = replace("tags: {component: api}", "tags: {Component: api, component: api}")
    assert errors_of(tmp_path, text) == [
        (10, 30, "tag 'component' repeats tag 'Component'; Azure tag names are case-insensitive")
    ]


def test_location_and_resource_group_are_required_after_defaults(tmp_path: Path) -> None:
    text = replace("defaults: {resourceGroup: rg-payments, location: westeurope, tags: {team: payments}}",
                   "defaults: {tags: {team: payments}}")
    assert errors_of(tmp_path, text) == [
        (9, 13, "identity 'payments-api' has no resource group"),
        (9, 13, "identity 'payments-api' has no location"),
    ]


# ----------------------------------------------------------------------------- semantics


def test_unknown_role_suggests_built_ins_and_explains_custom_roles(tmp_path: Path) -> None:
    text = replace("role: Storage Blob Data Reader", "role: Storage Blob Data Reeder")
    assert errors_of(tmp_path, text) == [(16, 17, "unknown role 'Storage Blob Data Reeder'")]
    hint = hint_of(tmp_path, text, "unknown role")
    assert hint.startswith("did you mean 'Storage Blob Data Reader'")
    assert "custom roles are resolved only online" in hint


def test_offline_an_unknown_role_guid_is_accepted_online_it_must_exist(tmp_path: Path) -> None:
    custom = "99999999-9999-4999-8999-999999999999"
    file = write(tmp_path, "m.yaml", replace("role: Storage Blob Data Reader", f"role: {custom}"))
    state, _ = load_manifests([file], RoleCatalog())
    assert state.role_assignments[0].role_definition_id == custom

    asked: list[tuple[str, str]] = []

    def lookup(subscription: str, text: str) -> Role | None:
        asked.append((subscription, text))
        return Role(custom, "Invoice Reader") if text in (custom, "Invoice Reader") else None

    state, _ = load_manifests([file], RoleCatalog(lookup))
    assert (state.role_assignments[0].role_definition_id, state.role_assignments[0].role_name) == (
        custom, "Invoice Reader")
    assert asked == [(SUB, custom)]
    found = failures(write(tmp_path, "m.yaml", replace("role: Storage Blob Data Reader", "role: Nope Role")),
                     catalog=RoleCatalog(lookup))
    assert [(d.message, d.hint) for d in found] == [
        ("unknown role 'Nope Role'", f"no built-in or custom role with this name or id exists in subscription {SUB}")
    ]


def test_reference_to_a_missing_identity(tmp_path: Path) -> None:
    text = replace("scope: {identity: payments-api}", "scope: {identity: payments-apl}")
    assert errors_of(tmp_path, text) == [(21, 25, "no identity named 'payments-apl' in this IdentitySet")]
    assert hint_of(tmp_path, text, "no identity named").startswith("did you mean 'payments-api'?")


def test_references_are_case_insensitive_and_may_point_forward(tmp_path: Path) -> None:
    text = replace(f"          scope: /subscriptions/{SUB}/resourceGroups/rg-data\n",
                   "          scope: {identity: Z-LATER}\n")
    text = replace("  roleAssignments:", "    - name: z-later\n  roleAssignments:", text)
    state, _ = load_manifests([write(tmp_path, "m.yaml", text)], RoleCatalog())
    assert state.role_assignments[0].scope.endswith("/userAssignedIdentities/z-later")


def test_duplicate_identities_across_files_report_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    other = replace("owner: payments", "owner: other").replace("- name: payments-api", "- name: PAYMENTS-API")
    other = other.replace("resourceGroup: rg-payments", "resourceGroup: RG-Payments")
    second = write(tmp_path, "b.yaml", other[: other.index("      federatedCredentials:")])
    found = [d for d in failures(str(tmp_path)) if d.severity == "error"]
    assert [(str(d.location), d.message) for d in found] == [
        (f"{second}:9:13", f"identity 'PAYMENTS-API' (resource group RG-Payments, subscription {SUB}) is "
                           f"declared twice; first at {first}:9:13"),
    ]


def test_duplicate_role_assignments_after_resolution(tmp_path: Path) -> None:
    again = textwrap.indent(
        textwrap.dedent(f"""\
        - principal: {{objectId: {GROUP.upper()}, type: Group}}
          role: {MI_OPERATOR}
          scope: /subscriptions/{SUB}/resourcegroups/RG-PAYMENTS/providers/{{provider}}/Payments-Api
        """),
        "    ",
    ).replace("{provider}", "Microsoft.ManagedIdentity/userAssignedIdentities")
    file = write(tmp_path, "m.yaml", VALID + again)
    found = failures(file)
    assert [(str(d.location), d.message) for d in found] == [
        (f"{file}:22:7", f"role 'Managed Identity Operator' on /subscriptions/{SUB}/resourcegroups/RG-PAYMENTS/"
                         "providers/Microsoft.ManagedIdentity/userAssignedIdentities/Payments-Api is granted to "
                         f"the same principal twice; first at {file}:19:7"),
    ]


def test_federated_credential_duplicates_and_limit(tmp_path: Path) -> None:
    fic = "        - name: {n}\n          issuer: https://issuer.example\n          subject: {s}\n"
    extra = fic.format(n="GITHUB-MAIN", s="a") + fic.format(n="other", s="a")
    text = replace("      roles:\n", extra + "      roles:\n")
    assert errors_of(tmp_path, text) == [
        (15, 17, f"federated credential name 'GITHUB-MAIN' is used twice on this identity; first at "
                 f"{tmp_path / 'm.yaml'}:12:17"),
        (20, 20, f"federated credential 'other' repeats the issuer and subject of the one at "
                 f"{tmp_path / 'm.yaml'}:17:20"),
    ]
    many = "".join(fic.format(n=f"fic-{i:02}", s=f"s{i}") for i in range(20))
    text = replace("      roles:\n", many + "      roles:\n")
    assert errors_of(tmp_path, text) == [
        (12, 9, "spec.identities[0].federatedCredentials has 21 entries; at most 20 allowed")
    ]


def test_long_identity_names_are_a_warning_not_an_error(tmp_path: Path) -> None:
    long_name = "payments-api-with-a-long-name"  # 29 characters
    file = write(tmp_path, "m.yaml", VALID.replace("payments-api", long_name))
    state, warnings = load_manifests([file], RoleCatalog())
    assert state.identities[0].name == long_name
    assert [(str(w.location), w.severity) for w in warnings] == [(f"{file}:9:13", "warning")]
    assert "29 characters" in warnings[0].message and "virtual machines" in warnings[0].message


def test_every_error_is_reported_with_the_warnings(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", replace("owner: payments", "owner: Bad").replace(
        "- name: payments-api", "- name: payments-api-with-a-long-name").replace(
        "scope: {identity: payments-api}", "scope: {identity: payments-api-with-a-long-name}"))
    write(tmp_path, "b.yaml", replace("role: Managed Identity Operator", "role: Nope").replace(
        "type: Group", "type: Grp"))
    write(tmp_path, "c.yaml", "a: [1\n")
    found = failures(str(tmp_path))
    summary = [(Path(d.location.file).name, d.location.line, d.severity) for d in found if d.location]
    assert summary == [
        ("a.yaml", 4, "error"),
        ("a.yaml", 9, "warning"),
        ("b.yaml", 19, "error"),
        ("b.yaml", 20, "error"),
        ("c.yaml", 2, "error"),
    ]
    with pytest.raises(ManifestError, match=r"^4 error\(s\) in manifests$"):
        load_manifests([str(tmp_path)], RoleCatalog())


# ----------------------------------------------------------------------------- yaml source


def test_positions_of_keys_values_and_items() -> None:
    docs, diags = parse("a:\n  b: [x, {c: 1}]\n---\n- y\n", "f.yaml")
    assert diags == []
    first, second = docs
    assert first.data == {"a": {"b": ["x", {"c": 1}]}}
    assert first.keys[("a", "b")] == (2, 3)
    assert first.values[("a", "b")] == (2, 6)
    assert first.values[("a", "b", 1, "c")] == (2, 14)
    assert str(first.location(("a", "b", 1, "missing"))) == "f.yaml:2:10"
    assert (second.index, second.data, second.start) == (1, ["y"], (4, 1))


def test_duplicate_keys_report_both_positions() -> None:
    _, diags = parse("a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml")
    assert [(str(d.location), d.message) for d in diags] == [
        ("f.yaml:4:3", "duplicate key 'c' (first written at f.yaml:3:3)")
    ]


def test_aliases_tags_and_complex_keys_are_refused() -> None:
    assert [str(d) .splitlines()[0] for d in parse("a: &x [1]\nb: *x\n", "f")[1]] == [
        "f:2:4: YAML alias '*x' is not supported"
    ]
    _, diags = parse("a: !!python/object:os.system x\nb: !!binary aGk=\n? [1]\n: 2\nc: !Ref y\n", "f")
    assert [(str(d.location), d.message) for d in diags] == [
        ("f:1:4", "unsupported YAML tag tag:yaml.org,2002:python/object:os.system"),
        ("f:2:4", "unsupported YAML tag tag:yaml.org,2002:binary"),
        ("f:3:3", "mapping keys must be plain strings, not lists or mappings"),
        ("f:5:4", "unsupported YAML tag !Ref"),
    ]


def test_scalars_become_json_values_and_keys_stay_as_written() -> None:
    docs, diags = parse("on: yes\nd: 2024-01-02\nn: ~\nf: 1.5\ni: 0x10\n", "f")
    assert diags == []
    assert docs[0].data == {"on": True, "d": "2024-01-02", "n": None, "f": 1.5, "i": 16}
    assert docs[0].raw[("on",)] == "yes"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a: 1\nb: \xff\n", "m.yaml:2:4: file is not valid UTF-8 (byte 0xff)"),
        (b"a: 1\n\x00\x01", "m.yaml:2:1: file is binary (contains a NUL byte), not a YAML manifest"),
        (b"a: \x07\n", "m.yaml:1:4: file contains a character YAML does not allow (U+0007)"),
        (b"a: [1, 2\nb: 3\n", "m.yaml:2:2: YAML syntax error: expected ',' or ']', but got ':' "
                               "(while parsing a flow sequence)"),
        (b"a: " + b"9" * 5000 + b"\n", "m.yaml:1:4: cannot read '9999999999999999999999999999999999999...' "
                                       "as an int"),
        (b"a: " + b"[" * 1500 + b"]" * 1500, "m.yaml:1:68: value nested deeper than 64 levels"),
        (b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 80)), "m.yaml:66:131: value nested deeper "
                                                                        "than 64 levels"),
    ],
)
def test_bad_bytes_become_located_diagnostics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_bytes(content)
    found = failures("m.yaml")
    assert expected in [str(d).splitlines()[0] for d in found]


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    file = tmp_path / "m.yaml"
    file.write_bytes(VALID.encode("utf-16"))
    state, _ = load_manifests([str(file)], RoleCatalog())
    assert state.identities[0].name == "payments-api"


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    (tmp_path / "b.yaml").symlink_to(tmp_path / "gone.yaml")  # listed, but cannot be opened
    found = failures(str(tmp_path))
    assert [(str(d.location), d.message) for d in found] == [
        (f"{tmp_path / 'b.yaml'}:1:1", "cannot read file: No such file or directory")
    ]


def test_json_style_surrogate_pairs_are_joined_and_lone_ones_rejected() -> None:
    docs, diags = parse('a: "\\ud83d\\ude00"\nb: "\\ud800x"\n', "f")
    assert docs[0].data["a"] == "\U0001F600"
    assert [(str(d.location), d.message) for d in diags] == [
        ("f:2:4", "string contains an invalid \\u escape (a lone surrogate)")
    ]


def test_control_characters_in_messages_are_escaped(tmp_path: Path) -> None:
    text = replace("      tags: {component: api}\n", '      "\\e[31mred": x\n')
    found = failures(write(tmp_path, "m.yaml", text))
    assert [d.message for d in found] == ["unknown field '\\x1b[31mred' in identity"]


def test_only_the_manifest_package_imports_yaml() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "reconciler").rglob("*.py")
        if "manifest" not in path.relative_to(REPO / "reconciler").parts
        and any(line.strip().startswith(("import yaml", "from yaml")) for line in path.read_text("utf-8").splitlines())
    ]
    assert offenders == []


# ----------------------------------------------------------------------------- schema file


def test_schema_is_valid_2020_12_and_shipped_through_a_relative_symlink() -> None:
    link = REPO / "reconciler" / "data" / "manifest.schema.json"
    assert link.is_symlink() and os.readlink(link) == "../../schemas/manifest.schema.json"
    on_disk = json.loads((REPO / "schemas" / "manifest.schema.json").read_text(encoding="utf-8"))
    assert schema() == on_disk
    jsonschema.Draft202012Validator.check_schema(on_disk)


def _objects(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


def test_schema_objects_are_closed_and_every_definition_is_described() -> None:
    loaded = schema()
    for obj in _objects(loaded):
        # tags are the only open mapping; their values are constrained instead
        assert obj.get("additionalProperties") is False or obj is loaded["$defs"]["tags"], obj.get("title")
    for name, definition in loaded["$defs"].items():
        assert definition.get("description"), name


def test_schema_examples_match_their_own_schema() -> None:
    loaded = schema()
    for name, definition in loaded["$defs"].items():
        validator = jsonschema.Draft202012Validator({**definition, "$defs": loaded["$defs"]})
        for example in definition.get("examples", []):
            assert not list(validator.iter_errors(example)), (name, example)


def test_schema_identity_pattern_matches_the_arm_name_rule() -> None:
    import re

    pattern = schema()["$defs"]["identityName"]["pattern"]
    assert re.fullmatch(pattern, "a" * 128) and not re.fullmatch(pattern, "a" * 129)
    assert re.fullmatch(pattern, "a_-") and not re.fullmatch(pattern, "_ab")
    fic = schema()["$defs"]["federatedCredential"]["properties"]["name"]["pattern"]
    assert fic == "^[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}$"
    fics = schema()["$defs"]["identity"]["properties"]["federatedCredentials"]["maxItems"]
    assert fics == MAX_FICS_PER_IDENTITY


def test_nul_byte_position_counts_utf8_characters(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_bytes("a: Å\0".encode())
    with pytest.raises(ManifestError) as caught:
        load_manifests([str(tmp_path / "m.yaml")], RoleCatalog())
    assert [(d.location.line, d.location.col) for d in caught.value.diagnostics if d.location] == [(1, 5)]


# ----------------------------------------------------------------------------- regions and FIC limits


def test_a_location_typo_is_an_error_at_the_value_with_a_suggestion(tmp_path: Path) -> None:
    text = replace("location: westeurope", "location: westeruope")
    file = write(tmp_path, "m.yaml", text)
    found = [d for d in failures(file) if d.severity == "error"]
    assert [(str(d.location), d.message) for d in found] == [(f"{file}:7:52", "unknown Azure region 'westeruope'")]
    assert found[0].hint is not None and found[0].hint.startswith("did you mean 'westeurope'?")


def test_an_identitys_own_location_typo_is_reported_there_and_once_per_value(tmp_path: Path) -> None:
    text = replace("      tags: {component: api}\n", "      tags: {component: api}\n      location: Wset Europe\n")
    assert errors_of(tmp_path, text) == [(11, 17, "unknown Azure region 'Wset Europe'")]


def test_display_names_are_accepted_and_normalised(tmp_path: Path) -> None:
    file = write(tmp_path, "m.yaml", replace("location: westeurope", "location: West Europe"))
    desired, _ = load_manifests([file], RoleCatalog())
    assert [i.location for i in desired.identities] == ["westeurope"]


@pytest.mark.parametrize(("old", "new", "field"), [
    ("subject: repo:contoso/payments:ref:refs/heads/main",
     "subject: repo:contoso/payments:ref:refs/heads/main\n          audiences: [api://AzureADTokenExchange, api://b]",
     "audiences"),
    ("subject: repo:contoso/payments:ref:refs/heads/main", "subject: 'repo:contoso/*'", "subject"),
    ("subject: repo:contoso/payments:ref:refs/heads/main", "subject: ' repo:contoso/payments'", "subject"),
    ("subject: repo:contoso/payments:ref:refs/heads/main", "subject: " + "s" * 601, "subject"),
])
def test_fic_fields_azure_refuses_are_located_errors(tmp_path: Path, old: str, new: str, field: str) -> None:
    file = write(tmp_path, "m.yaml", replace(old, new))
    found = [d for d in failures(file) if d.severity == "error"]
    assert len(found) == 1 and found[0].location is not None and found[0].location.line in (14, 15), found
    assert field in found[0].message or field.rstrip("s") in found[0].message, found[0].message


def test_principals_by_name_load_offline_and_duplicates_by_name_are_located(tmp_path: Path) -> None:
    text = VALID + "".join(
        f"    - principal: {{{form}}}\n      role: Reader\n      scope: /subscriptions/{SUB}/resourceGroups/rg-data\n"
        for form in ("group: sg-payments-admins", "user: alice@contoso.com",
                     "servicePrincipal: 00000000-0000-0000-0000-0000000000aa", "servicePrincipal: billing-api"))
    desired, _ = load_manifests([write(tmp_path, "m.yaml", text)], RoleCatalog())  # no directory: no lookups
    named = [ra.principal for ra in desired.role_assignments if ra.principal.name is not None]
    assert named == [
        PrincipalRef(principal_type="Group", name=("group", "sg-payments-admins")),
        PrincipalRef(principal_type="User", name=("user", "alice@contoso.com")),
        PrincipalRef(principal_type="ServicePrincipal",
                     name=("servicePrincipal", "00000000-0000-0000-0000-0000000000aa")),
        PrincipalRef(principal_type="ServicePrincipal", name=("servicePrincipal", "billing-api")),
    ]
    assert not any(p.resolved for p in named) and named[0].label() == "group 'sg-payments-admins'"
    twice = VALID + (f"    - principal: {{group: SG-Admins}}\n      role: Reader\n      scope: /subscriptions/{SUB}\n"
                     f"    - principal: {{group: sg-admins}}\n      role: Reader\n      scope: /subscriptions/{SUB}\n")
    assert [e[:2] for e in errors_of(tmp_path, twice)] == [(25, 7)]


def test_principal_name_forms_are_validated_by_the_schema(tmp_path: Path) -> None:
    text = replace(f"principal: {{objectId: {GROUP}, type: Group}}", "principal: {user: alice}")
    assert errors_of(tmp_path, text)[0][:2] == (19, 25)
    text = replace(f"principal: {{objectId: {GROUP}, type: Group}}", "principal: {group: sg-a, type: Group}")
    assert errors_of(tmp_path, text) == [(19, 32, "unknown field 'type' in group by name")]
