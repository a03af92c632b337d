"""The fast readers (libyaml composition, the compiled schema check) answer exactly as the
careful ones whenever they answer at all: they only ever take a shortcut to the same result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.workload import Estate
from reconciler.manifest import yaml_source
from reconciler.manifest.schema import _validator, schema
from reconciler.manifest.schema_check import surely_valid
from tests.unit.test_manifest_fuzz import BASE, BASE_TEXT, edited_text, mutated_documents, yaml_noise

EXAMPLES = sorted(Path(__file__).parents[2].joinpath("examples").rglob("*.yaml"))
SMALL_ESTATE = Estate(subscriptions=1, groups_per_subscription=1, identities_per_group=30, roles_per_identity=2,
                      operator_grants=True, fic_every=3)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _as_tuple(doc: yaml_source.YamlDocument) -> tuple[Any, ...]:
    return (doc.file, doc.index, doc.data, doc.start, dict(doc.values), dict(doc.keys), dict(doc.raw))


def _same_as_careful(text: str) -> bool:
    """Whether the fast reader answered; asserts its answer is the careful reader's."""
    fast = yaml_source._fast_parse(text, "m.yaml")
    if fast is None:
        return False
    careful, diagnostics = yaml_source._careful_parse(text, "m.yaml")
    assert diagnostics == []
    assert [_as_tuple(d) for d in fast] == [_as_tuple(d) for d in careful]
    return True


def test_ordinary_manifests_take_the_fast_path_with_identical_positions() -> None:
    texts = [BASE_TEXT, yaml.safe_dump(SMALL_ESTATE.documents()[0][1], sort_keys=False)]
    texts += [p.read_text(encoding="utf-8") for p in EXAMPLES]
    texts.append("a: 1\n---\nb: [x, {c: 'd'}]\n...\n--- {e: 'f'}\n--- |\n  text\n")
    for text in texts:
        assert _same_as_careful(text), text[:200]


def test_unusual_input_goes_to_the_careful_reader() -> None:
    for text in ("a: &x 1\nb: *x\n", "a: !!binary aGk=\n", "a: [1\n", "---\n", "a: \x07\n", "a: 1\na: 2\n",
                 "a: " + "9" * 5000 + "\n", "a: \"\\ud800\"\n",
                 "[" * 1100 + "]" * 1100, "---\n" * (yaml_source.MAX_DOCUMENTS + 1)):
        assert yaml_source._fast_parse(text, "m.yaml") is None, text[:40]
    too_many = "a: [" + "1," * (yaml_source.MAX_NODES // 3) + "]\n"
    assert yaml_source._fast_parse(too_many, "m.yaml") is None


@FAST
@given(st.one_of(mutated_documents(), edited_text(), yaml_noise))
def test_fast_reader_agrees_with_careful_reader(text: str) -> None:
    _same_as_careful(text)


def test_schema_check_passes_valid_documents() -> None:
    assert surely_valid(schema(), json.loads(json.dumps(BASE)))
    for _, doc in SMALL_ESTATE.documents():
        assert surely_valid(schema(), doc)


@FAST
@given(mutated_documents())
def test_schema_check_never_passes_what_jsonschema_refuses(text: str) -> None:
    docs, _ = yaml_source.parse(text, "m.yaml")
    for doc in docs:
        errors = list(_validator().iter_errors(doc.data))
        if surely_valid(schema(), doc.data):
            assert errors == []
