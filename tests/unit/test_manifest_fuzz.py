"""Property: whatever bytes a manifest holds, loading it either returns a DesiredState or
raises ManifestError with located diagnostics, never any other exception."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import ManifestError
from reconciler.manifest import load_manifests
from reconciler.model import DesiredState
from reconciler.roles import RoleCatalog

SUB = "11111111-1111-1111-1111-111111111111"

BASE: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "IdentitySet",
    "metadata": {"owner": "payments"},
    "spec": {
        "subscription": SUB,
        "defaults": {"resourceGroup": "rg-payments", "location": "westeurope", "tags": {"team": "payments"}},
        "identities": [
            {
                "name": "payments-api",
                "tags": {"component": "api"},
                "protect": False,
                "federatedCredentials": [
                    {
                        "name": "github-main",
                        "issuer": "https://token.actions.githubusercontent.com",
                        "subject": "repo:contoso/payments:ref:refs/heads/main",
                        "audiences": ["api://AzureADTokenExchange"],
                    }
                ],
                "roles": [
                    {"role": "Storage Blob Data Reader", "scope": f"/subscriptions/{SUB}/resourceGroups/rg-data"},
                    {"role": "Reader", "scope": {"identity": "payments-worker"}, "condition": "x"},
                ],
            },
            {"name": "payments-worker", "location": "northeurope"},
        ],
        "roleAssignments": [
            {
                "principal": {"objectId": "22222222-2222-2222-2222-222222222222", "type": "Group"},
                "role": "Managed Identity Operator",
                "scope": {"identity": "payments-api"},
            },
            {"principal": {"identity": "payments-worker"}, "role": "Reader", "scope": f"/subscriptions/{SUB}"},
        ],
    },
}


def emit(value: Any, indent: int = 0) -> str:
    """Block-style YAML (scalars as JSON, which YAML reads), so mutations keep a realistic
    layout without the tests depending on a YAML library."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        out = ""
        for key, item in value.items():
            head = f"{pad}{json.dumps(key)}:"
            nested = isinstance(item, dict | list) and item
            out += f"{head}\n{emit(item, indent + 2)}" if nested else f"{head} {scalar(item)}\n"
        return out
    if isinstance(value, list) and value:
        out = ""
        for item in value:
            nested = isinstance(item, dict | list) and item
            out += f"{pad}-\n{emit(item, indent + 2)}" if nested else f"{pad}- {scalar(item)}\n"
        return out
    return f"{pad}{scalar(value)}\n"


def scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)


BASE_TEXT = emit(BASE)

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**50, max_value=10**60)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["payments-api", "payments-worker", SUB, "Reader", "Group", "2.0", "managed-by", ""])
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """The valid document with a few structural edits: keys deleted or added, values
    replaced by anything (wrong types, huge numbers, random unicode), entries duplicated."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "add", "duplicate"]))
        if operation == "delete":
            del parent[last]
        elif operation == "replace":
            parent[last] = draw(json_values)
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        elif operation == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return emit(doc)


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    """The valid text with line-level edits: duplicated keys, deleted or moved lines, broken
    indentation, inserted unicode or YAML punctuation, truncation."""
    lines = BASE_TEXT.splitlines(keepends=True)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not lines:
            break
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        operation = draw(st.sampled_from(["duplicate", "delete", "indent", "insert", "swap", "truncate"]))
        if operation == "duplicate":
            lines.insert(index, lines[index])
        elif operation == "delete":
            del lines[index]
        elif operation == "indent":
            lines[index] = " " * draw(st.integers(0, 3)) + lines[index].lstrip(" ")
        elif operation == "insert":
            punctuation = ["&a ", "*a", "!!binary ", "? ", "{", "]", "\t", "<<: "]
            noise = draw(st.text(max_size=10) | st.sampled_from(punctuation))
            at = draw(st.integers(min_value=0, max_value=len(lines[index])))
            lines[index] = lines[index][:at] + noise + lines[index][at:]
        elif operation == "swap":
            other = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            text = "".join(lines)
            return text[: draw(st.integers(min_value=0, max_value=len(text)))]
    return "".join(lines)


yaml_noise = st.lists(
    st.sampled_from(
        ["apiVersion: reconciler/v1\n", "kind: IdentitySet\n", "spec:\n", "  identities:\n", "- ", "  ", "name: x",
         ": ", "\n", "---\n", "{", "}", "[", "]", ",", "&a ", "*a", "!!int ", "'", '"', "#", "|\n", ">-\n", "~",
         "9" * 30, "é", "\t", "? "]
    ),
    max_size=30,
).map("".join)


def check(file: Path, text_lines: int | None) -> None:
    try:
        state, warnings = load_manifests([str(file)], RoleCatalog())
    except ManifestError as exc:
        assert any(d.severity == "error" for d in exc.diagnostics)
        assert any(d.location is not None for d in exc.diagnostics)
        warnings = exc.diagnostics
    else:
        assert isinstance(state, DesiredState)
    for diagnostic in warnings:
        if diagnostic.location is not None and text_lines is not None:
            assert 1 <= diagnostic.location.line <= text_lines, diagnostic
            assert diagnostic.location.col >= 1, diagnostic


FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_base_document_is_valid(workdir: Path) -> None:
    file = workdir / "base.yaml"
    file.write_text(BASE_TEXT, encoding="utf-8")
    state, _ = load_manifests([str(file)], RoleCatalog())
    assert len(state.identities) == 2 and len(state.role_assignments) == 4


@FUZZ
@given(text=st.one_of(mutated_documents(), edited_text(), yaml_noise, st.text(max_size=200)))
def test_malformed_text_never_escapes_as_another_exception(workdir: Path, text: str) -> None:
    file = workdir / "m.yaml"
    file.write_text(text, encoding="utf-8")
    # YAML breaks lines at \r, NEL and the Unicode separators too; the bound only has to hold.
    check(file, sum(text.count(c) for c in "\n\r\x85\u2028\u2029") + 1)


@settings(FUZZ, max_examples=200)
@given(data=st.binary(max_size=200) | edited_text().map(lambda t: t.encode("utf-16")))
def test_malformed_bytes_never_escape_as_another_exception(workdir: Path, data: bytes) -> None:
    file = workdir / "b.yaml"
    file.write_bytes(data)
    check(file, None)


def test_nul_byte_after_a_multibyte_character_is_placed_on_its_line(workdir: Path) -> None:
    # Found by the fuzz test above: C3 85 ("Å") read as latin-1 ends in NEL, a YAML line break.
    file = workdir / "m.yaml"
    file.write_text("Å\x00", encoding="utf-8")
    with pytest.raises(ManifestError) as failed:
        load_manifests([str(file)], RoleCatalog())
    location = failed.value.diagnostics[0].location
    assert location is not None and (location.line, location.col) == (1, 2)
