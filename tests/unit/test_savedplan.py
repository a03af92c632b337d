"""Saved plans' pure parts: the desired-state fingerprint, the commitment check, signing, the
recorded target and paths. The end-to-end attacks are in tests/security/."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.errors import ReconcilerError, SourceLocation, StalePlanError
from reconciler.model import DesiredIdentity, DesiredState
from reconciler.payloads import from_fields
from reconciler.plan import Action, Change, Plan, ReasonCode, ResourceType
from reconciler.savedplan import (
    check_fresh,
    desired_fingerprint,
    dumps_saved,
    read_plan,
    recorded_paths,
    recorded_target,
    saved_paths,
    saved_target,
    with_fingerprints,
)
from reconciler.target import TargetOptions

SUB = "11111111-1111-1111-1111-111111111111"


def ident(name: str, line: int, file: str = "m/a.yaml", **tags: str) -> DesiredIdentity:
    return DesiredIdentity("team", SUB, "rg-x", name, "westeurope", tags, source=SourceLocation(file, line, 5))


def state(*identities: DesiredIdentity) -> DesiredState:
    return DesiredState(identities=identities, owners=frozenset({"team"}), files=("m/a.yaml",))


def test_desired_fingerprint_ignores_layout_and_sees_content() -> None:
    a, b = ident("api", 3, env="prod"), ident("worker", 9)
    same = state(ident("worker", 40, "m/b.yaml"), ident("api", 12, env="prod"))  # moved, reordered, other lines
    assert desired_fingerprint(state(a, b)) == desired_fingerprint(same)
    assert desired_fingerprint(state(a, b)) != desired_fingerprint(state(ident("api", 3, env="dev"), b))
    assert desired_fingerprint(state(a, b)) != desired_fingerprint(state(a))
    assert desired_fingerprint(state(a)) != desired_fingerprint(replace(state(a), owners=frozenset({"team", "x"})))


def change(name: str, action: Action = Action.CREATE, **after: object) -> Change:
    fields = {"subscription": SUB, "resourceGroup": "rg-x", "name": name, "location": "westeurope",
              "tags": {"team": "a"}, **after}
    return Change(f"identity/{SUB}/rg-x/{name}", ResourceType.IDENTITY, action, owner="team",
                  after=from_fields("identity", fields), source=f"m/a.yaml:{len(name)}:5")


def test_check_fresh_names_the_file_entry_and_field_of_a_desired_change() -> None:
    desired = state(ident("api", 3))
    saved = with_fingerprints(Plan((change("api"),)), desired, {})
    check_fresh(saved, desired, Plan((replace(change("api"), source="m/a.yaml:30:5"),)))  # a line moved: fine
    edited = state(ident("api", 3, env="x"))
    with pytest.raises(StalePlanError, match=r"m/a.yaml: identity rg-x/api: tags changed"):
        check_fresh(saved, edited, Plan((change("api", tags={"team": "a", "env": "x"}),)))


def test_check_fresh_refuses_any_field_the_applier_reads() -> None:
    desired = state(ident("api", 3))
    fresh = Plan((change("api"),))
    for tampered in (change("api", location="eastus"), replace(change("api"), requires=("x",)),
                     replace(change("api"), action=Action.UPDATE), replace(change("api"), owner="other")):
        saved = with_fingerprints(Plan((tampered,)), desired, {})
        with pytest.raises(StalePlanError, match="differs from a fresh plan"):
            check_fresh(saved, desired, fresh)


def test_reason_codes_round_trip_are_compared_and_a_1_2_plan_still_loads(tmp_path: Path) -> None:
    desired = state(ident("api", 3))
    coded = replace(change("api"), reason="declared, not in Azure", reason_code=ReasonCode.NOT_IN_AZURE)
    path = tmp_path / "p.json"
    path.write_text(dumps_saved(with_fingerprints(Plan((coded,)), desired, {}), None))
    data = json.loads(path.read_text())
    assert data["format_version"] == "1.3"
    assert list(data["changes"][0])[3:5] == ["reason", "reason_code"]  # beside the prose
    saved = read_plan(path)
    assert saved.changes[0].reason_code is ReasonCode.NOT_IN_AZURE
    check_fresh(saved, desired, Plan((coded,)))
    with pytest.raises(StalePlanError, match="differs from a fresh plan in reason_code"):
        check_fresh(saved, desired, Plan((replace(coded, reason_code=ReasonCode.OWNER_TRANSFER),)))
    # A plan written by a reader of format 1.2: no codes; it loads, and is not stale for lacking them.
    del data["changes"][0]["reason_code"]
    path.write_text(json.dumps({**data, "format_version": "1.2"}))
    old = read_plan(path)
    assert old.changes[0].reason_code is None
    check_fresh(old, desired, Plan((coded,)))
    path.write_text(json.dumps({**data, "changes": [{**data["changes"][0], "reason_code": "because"}]}))
    with pytest.raises(ReconcilerError, match="invalid plan file at changes/0/reason_code"):
        read_plan(path)


def test_signature_covers_the_whole_plan_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(dumps_saved(Plan((change("api"),)), b"k1"))
    assert read_plan(path, key=b"k1").changes[0].address.endswith("/api")
    assert read_plan(path).changes  # `show` reads it without a key
    with pytest.raises(ReconcilerError, match="not valid"):
        read_plan(path, key=b"k2")
    data = json.loads(path.read_text())
    # key order and whitespace are not part of what is signed; content is
    path.write_text(json.dumps(dict(reversed(list(data.items())))))
    assert read_plan(path, key=b"k1")
    path.write_text(json.dumps({**data, "warnings": ["fine"]}))
    with pytest.raises(ReconcilerError, match="not valid"):
        read_plan(path, key=b"k1")
    path.write_text(dumps_saved(Plan((change("api"),)), None))
    with pytest.raises(ReconcilerError, match="not signed"):
        read_plan(path, key=b"k1")


def test_paths_are_recorded_relative_and_refused_outside(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert recorded_paths([str(tmp_path / "m"), "m/"], cwd=tmp_path) == ["m", "m"]
    with pytest.raises(ReconcilerError, match="outside the working directory"):
        recorded_paths([str(tmp_path.parent)], cwd=tmp_path)
    ok = Plan((), inputs={"paths": ["m", "./m/../m"]})
    assert saved_paths(ok, cwd=tmp_path) == ["m", "./m/../m"]
    for bad in (["../x"], ["/etc"], [str(tmp_path / ".." / "y")], [], [""]):
        with pytest.raises(ReconcilerError):
            saved_paths(Plan((), inputs={"paths": bad}), cwd=tmp_path)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(ReconcilerError, match="outside"):
        saved_paths(Plan((), inputs={"paths": ["link"]}), cwd=tmp_path)


def test_saved_target_is_the_recorded_one_unless_another_is_named(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sandbox = Plan((), inputs={"target_options": recorded_target(TargetOptions(sandbox_db=str(tmp_path / "a.db")))})
    assert sandbox.inputs["target_options"]["sandbox_db"] == "a.db"
    nothing = TargetOptions()
    assert saved_target(sandbox, nothing, frozenset()).sandbox_db == "a.db"
    assert saved_target(sandbox, TargetOptions(sandbox_db="./a.db"), frozenset({"sandbox_db"})).sandbox_db == "a.db"
    for given, names in ((TargetOptions(sandbox_db="b.db"), {"sandbox_db"}),
                         (TargetOptions(arm_endpoint="https://x"), {"arm_endpoint"}),
                         (TargetOptions(cloud="AzureCloud"), {"cloud"})):  # real Azure, said explicitly
        with pytest.raises(ReconcilerError, match=r"made against embedded sandbox \(a.db\)"):
            saved_target(sandbox, given, frozenset(names))
    endpoint = Plan((), inputs={"target_options": recorded_target(
        TargetOptions(arm_endpoint="https://h:1/", ca_cert="/ca.pem"))})
    got = saved_target(endpoint, TargetOptions(arm_endpoint="https://H:1", ca_cert="mine.pem"),
                       frozenset({"arm_endpoint", "ca_cert"}))
    assert (got.arm_endpoint, got.ca_cert) == ("https://h:1/", "mine.pem")  # trust may differ per machine
    with pytest.raises(ReconcilerError, match="older format"):
        saved_target(Plan((), inputs={"target": "AzureCloud"}), nothing, frozenset())


def test_the_schema_describes_every_reason_code_and_no_other() -> None:
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json").read_text())
    options = schema["$defs"]["change"]["properties"]["reason_code"]["anyOf"]
    described = {o["const"]: o["description"] for o in options if "const" in o}
    assert set(described) == {c.value for c in ReasonCode}
    assert all(len(text) > 20 for text in described.values())


def test_a_change_whose_fields_lack_what_its_type_has_is_refused_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(dumps_saved(Plan((change("api"),)), None))
    data = json.loads(path.read_text())
    del data["changes"][0]["after"]["location"]
    path.write_text(json.dumps(data))
    with pytest.raises(ReconcilerError, match="invalid plan file: the identity fields lack 'location'"):
        read_plan(path)
