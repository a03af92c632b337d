"""The PR-comment renderer: content, order, escaping, and the size limit at every plan size."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reconciler import addresses
from reconciler.model import (
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    PrincipalRef,
    identity_id,
    ownership_tags,
)
from reconciler.payloads import Payload, from_fields
from reconciler.plan import Action, Change, DriftClass, Plan, ResourceType
from reconciler.planner import make_plan
from reconciler.render.markdown import (
    MAX_DIAGRAM_EDGES,
    MIN_MAX_CHARS,
    md_code,
    md_text,
    mermaid_label,
    render_markdown,
)

SUB = "11111111-1111-1111-1111-111111111111"
RG = "rg-payments"
DATA = f"/subscriptions/{SUB}/resourceGroups/rg-data"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
GROUP = "22222222-2222-2222-2222-222222222222"
HINT = "full plan: artifact plan.json"
EVIL = '</details><img src=x onerror=alert(1)> ``` | x | @octo-org/admins #1 *b* [l](javascript:alert(1)) "q" $x$'


# ----------------------------------------------------------------------------- builders


def key(name: str) -> IdentityKey:
    return IdentityKey.of(SUB, RG, name)


def ident_fields(name: str, **kw: object) -> Payload:
    fields: dict[str, object] = {
        "id": identity_id(SUB, RG, name), "subscription": SUB, "resourceGroup": RG, "name": name,
        "location": "westeurope", "tags": {"team": "payments"}, "principalId": "p-" + name, "clientId": "c",
    }
    fields.update(kw)
    return from_fields("identity", fields)


def ra_fields(principal: dict[str, str], scope: str = DATA, role: str = "Reader", **kw: object) -> Payload:
    fields: dict[str, object] = {
        "id": None, "name": "n1", "scope": scope, "roleDefinitionId": READER, "roleName": role,
        "principalId": "0000", "principal": principal, "principalType": "ServicePrincipal",
        "description": None, "condition": None, "conditionVersion": None,
    }
    fields.update(kw)
    return from_fields("roleAssignment", fields)


def every_kind_plan() -> Plan:
    """One change per action and per drift class, built by hand (the planner emits no
    orphaned or foreign changes yet, but the plan format has them)."""
    a, b, c = key("app-a"), key("app-b"), key("app-c")
    replaced = addresses.identity(c)
    return Plan(changes=(
        Change(addresses.identity(a), ResourceType.IDENTITY, Action.CREATE, "declared, not in Azure",
               after=ident_fields("app-a", principalId=None, clientId=None), unknown=("principalId", "clientId"),
               drift=DriftClass.MISSING, source="manifests/a.yaml:3:5"),
        Change(addresses.identity(b), ResourceType.IDENTITY, Action.UPDATE, "tags differ",
               before=ident_fields("app-b"), after=ident_fields("app-b", tags={"team": "payments", "env": "prod"}),
               drift=DriftClass.CHANGED),
        Change(replaced, ResourceType.IDENTITY, Action.REPLACE, "location is immutable (westeurope -> northeurope)",
               before=ident_fields("app-c"), after=ident_fields("app-c", location="northeurope", principalId=None),
               unknown=("principalId",), drift=DriftClass.CHANGED),
        Change(addresses.federated_credential(c, "gh"), ResourceType.FEDERATED_CREDENTIAL, Action.CREATE,
               "re-created with its identity", consequence_of=replaced, drift=DriftClass.MISSING,
               after=from_fields("federatedCredential", {"identity": "app-c", "name": "gh", "issuer": "https://i",
                                                         "subject": "s", "audiences": ["x"]})),
        Change("ra-unmanaged", ResourceType.ROLE_ASSIGNMENT, Action.DELETE, "not in manifests; owned by payments",
               before=ra_fields({"objectId": GROUP}, principalType="Group"), drift=DriftClass.UNMANAGED),
        Change("ra-orphaned", ResourceType.ROLE_ASSIGNMENT, Action.DELETE, "its principal no longer exists",
               before=ra_fields({"objectId": "dead0000"}, role="Contributor"), drift=DriftClass.ORPHANED),
        Change("ra-foreign", ResourceType.ROLE_ASSIGNMENT, Action.NOOP, "owned by platform; shown for context",
               before=ra_fields({"objectId": "f0f0"}, role="Owner"), drift=DriftClass.FOREIGN),
        Change("ra-in-sync", ResourceType.ROLE_ASSIGNMENT, Action.NOOP, "in sync",
               before=ra_fields({"identity": addresses.identity(a)}, role="Quiet Role"),
               after=ra_fields({"identity": addresses.identity(a)}, role="Quiet Role")),
    ), warnings=("'Owner' at subscription scope lets its holder grant any access",))


def big_plan(n: int, *, warn_every: int = 10) -> Plan:
    """A realistic plan of exactly n changes from the planner: identities created with a
    credential and a grant, identities removed with their grants, identities with tag drift."""
    desired_ids: list[DesiredIdentity] = []
    fics: list[DesiredFederatedCredential] = []
    ras: list[DesiredRoleAssignment] = []
    live_ids: list[LiveIdentity] = []
    live_ras: list[LiveRoleAssignment] = []
    for i in range(n // 2 + 1):
        kind = i % 3
        # Every warn_every-th identity has a name too long for VMs: the plan carries warnings.
        name = f"id-{i:05d}" + ("-with-a-name-longer-than-vm-limit" if i % warn_every == 0 else "")
        principal = f"{i:08x}-0000-0000-0000-000000000000"
        if kind in (0, 2):
            tags = {"team": "payments", "n": str(i)}
            want = DesiredIdentity("payments", SUB, RG, name, "westeurope", tags)
            desired_ids.append(want)
            if kind == 0:
                fics.append(DesiredFederatedCredential("payments", want.key, "gh", "https://issuer", f"repo:x:{i}"))
                ras.append(DesiredRoleAssignment("payments", DATA, READER, "Reader", PrincipalRef(identity=want.key)))
                continue
        live_tags = {"team": "payments", **ownership_tags("payments")}
        live_ids.append(LiveIdentity(identity_id(SUB, RG, name), SUB, RG, name, "westeurope", live_tags,
                                     principal, "c", "t"))
        if kind == 1:
            live_ras.append(LiveRoleAssignment(f"{DATA}/providers/Microsoft.Authorization/roleAssignments/r{i}",
                                               f"r{i}", DATA, READER, principal, "ServicePrincipal"))
    desired = DesiredState(tuple(desired_ids), tuple(fics), tuple(ras), frozenset({"payments"}))
    live = LiveState({li.key: li for li in live_ids}, {li.key: () for li in live_ids}, tuple(live_ras))
    plan = make_plan(desired, live, lambda guid: "Reader")
    assert len(plan.actionable) >= n
    return Plan(changes=plan.actionable[:n], warnings=plan.warnings, owners=plan.owners)


# ----------------------------------------------------------------------------- structure checks


FENCE = re.compile(r"^ {0,3}(`{3,})(.*)$")


def outside_fences(md: str) -> Iterator[str]:
    """The lines of `md` that are not inside a fenced code block, by CommonMark's rule: a
    fence closes only on a line of at least as many backticks and nothing else."""
    open_fence = ""
    for line in md.split("\n"):
        match = FENCE.match(line)
        if open_fence:
            if match and len(match[1]) >= len(open_fence) and not match[2].strip():
                open_fence = ""
            continue
        if match:
            open_fence = match[1]
            continue
        yield line
    assert not open_fence, "a code fence is never closed"


CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)")


def assert_well_formed(md: str) -> None:
    depth = 0
    header_pipes = None
    for line in outside_fences(md):
        line = CODE_SPAN.sub("`code`", line)  # a code span is literal text, tags in it are not tags
        opens, closes = line.count("<details"), line.count("</details>")
        # Our own tags each stand at the start of a line; anything else would be injected.
        assert opens == (1 if line.startswith("<details") else 0), line
        assert closes == (1 if line == "</details>" else 0), line
        depth += opens - closes
        assert depth in (0, 1), "unbalanced or nested <details>"
        if line.startswith("|"):
            pipes = len(re.findall(r"(?<!\\)\|", line))
            header_pipes = header_pipes or pipes
            assert pipes == header_pipes, f"table row with a different number of cells: {line}"
        else:
            header_pipes = None
    assert depth == 0


def summary_counts(md: str) -> dict[str, int]:
    counts = {}
    for line in md.split("\n"):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[1].isdigit():
            counts[cells[0].split("` ")[-1]] = int(cells[1])
            counts[cells[2]] = int(cells[3])
    return counts


def mermaid_block(md: str) -> list[str]:
    lines = md.split("\n")
    if "```mermaid" not in lines:
        return []
    start = lines.index("```mermaid")
    return lines[start + 1: lines.index("```", start)]


# ----------------------------------------------------------------------------- content


def test_summary_table_counts_every_action_and_drift_class() -> None:
    md = render_markdown(every_kind_plan())
    assert summary_counts(md) == {
        "add": 2, "change": 1, "replace": 1, "destroy": 2, "unchanged": 2,
        "missing": 2, "changed": 2, "unmanaged": 1, "orphaned": 1, "foreign": 1,
    }
    assert md.startswith("### Plan: 2 to add, 1 to change, 1 to replace, 2 to destroy\n")


def test_every_action_is_shown_with_its_symbol_verb_reason_and_drift() -> None:
    md = render_markdown(every_kind_plan())
    assert ("`+` **identity rg-payments/app-a** will be created — declared, not in Azure "
            "<sub>missing · declared at `manifests/a.yaml:3:5`</sub>") in md
    assert "`~` **identity rg-payments/app-b** will be updated in place — tags differ <sub>changed</sub>" in md
    assert "`-/+` **identity rg-payments/app-c** must be replaced — location is immutable" in md
    assert "<sub>unmanaged</sub>" in md and "<sub>orphaned</sub>" in md
    # Reported drift (here a foreign grant, context) is listed as left alone; a plain no-op is not.
    assert ("`!` **role assignment 'Owner' to ServicePrincipal f0f0 at /subscriptions/11111111-1111-1111-1111-"
            "111111111111/resourceGroups/rg-data** is left unchanged — owned by platform; shown for context") in md
    assert "Quiet Role" not in md and "is in sync" not in md


def test_sections_come_in_the_order_reviewers_need() -> None:
    md = render_markdown(every_kind_plan(), full_plan_hint=HINT)
    order = ["### Plan:", "| Action | Count | Drift | Count |", "> [!WARNING]", "> [!CAUTION]",
             "<details", "```mermaid", f"<sub>{md_text(HINT)}</sub>"]
    positions = [md.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_deletions_and_replaces_are_called_out_with_reasons() -> None:
    md = render_markdown(every_kind_plan())
    caution = md[md.index("> [!CAUTION]"): md.index("<details")]
    assert "**2 to destroy, 1 to replace**" in caution
    assert "`-/+` **identity rg-payments/app-c** must be replaced — location is immutable" in caution
    assert "`-` **role assignment 'Reader' to Group 2222" in caution and "owned by payments" in caution
    assert "`-` **role assignment 'Contributor'" in caution and "its principal no longer exists" in caution
    assert "`+`" not in caution and "`~`" not in caution


def test_changes_are_grouped_by_identity_and_principal() -> None:
    md = render_markdown(every_kind_plan())
    sections = {
        m[1]: m[2] for m in re.finditer(r"<details[^>]*><summary><b>(.*?)</b>.*?</summary>(.*?)</details>", md, re.S)
    }
    assert set(sections) == {
        "identity <code>rg-payments/app-a</code>", "identity <code>rg-payments/app-b</code>",
        "identity <code>rg-payments/app-c</code>", f"Group <code>{GROUP}</code>",
        "ServicePrincipal <code>dead0000</code>", "ServicePrincipal <code>f0f0</code>",
    }
    replaced = sections["identity <code>rg-payments/app-c</code>"]
    # the credential goes with its identity, and says what it is a consequence of
    assert ("`+` **federated credential app-c/gh** will be created — re-created with its identity, "
            "because identity rg-payments/app-c must be replaced") in replaced
    assert "! principalId = \"p-app-c\" -> (known after apply)" in replaced
    assert "+ principalId = (known after apply)" in sections["identity <code>rg-payments/app-a</code>"]


def test_grant_at_an_identity_scope_goes_under_that_identity() -> None:
    a = key("app-a")
    at_identity = Change("ra", ResourceType.ROLE_ASSIGNMENT, Action.CREATE, "declared, not in Azure",
                         after=ra_fields({"objectId": GROUP}, scope=identity_id(SUB, RG.upper(), "APP-A"),
                                         role="Managed Identity Operator"))
    plan = Plan(changes=(
        Change(addresses.identity(a), ResourceType.IDENTITY, Action.UPDATE, "tags differ",
               before=ident_fields("app-a"), after=ident_fields("app-a", tags={})),
        at_identity,
    ))
    md = render_markdown(plan)
    assert md.count("<details") == 1
    assert "<summary><b>identity <code>rg-payments/app-a</code></b>: 2 to change</summary>" not in md
    assert "<summary><b>identity <code>rg-payments/app-a</code></b>: 1 to add, 1 to change</summary>" in md
    # in the diagram, the identity is the scope node of that grant
    assert any('-->|"+ Managed Identity Operator"| n' in line for line in mermaid_block(md))


def test_in_place_changes_use_the_diff_marker_github_colours() -> None:
    md = render_markdown(every_kind_plan())
    assert "```diff\n+ tags.env = \"prod\"\n```" in md
    assert "! location = \"westeurope\" -> \"northeurope\"" in md


def test_no_changes() -> None:
    md = render_markdown(Plan(changes=()), full_plan_hint=HINT)
    assert md.startswith("### No changes. Azure matches the manifests\n")
    assert summary_counts(md)["add"] == 0
    assert "<details" not in md and "```" not in md and "[!CAUTION]" not in md


def test_no_changes_with_reported_drift_does_not_claim_azure_matches() -> None:
    orphan = Change("ra", ResourceType.ROLE_ASSIGNMENT, Action.NOOP, "orphaned: its principal no longer exists",
                    before=ra_fields({"objectId": "dead"}), drift=DriftClass.ORPHANED,
                    modified={"by": "ops@contoso.com", "at": "2026-11-27T22:40:00Z", "byType": "User"})
    foreign = Change("id", ResourceType.IDENTITY, Action.NOOP, "owned by platform", before=ident_fields("dns"),
                     drift=DriftClass.FOREIGN)
    md = render_markdown(Plan(changes=(orphan, foreign)))
    assert md.startswith("### No changes. 1 drifted resource reported, left unchanged\n")
    assert "<sub>orphaned · last changed by `ops@contoso.com` at 2026-11-27T22:40:00Z</sub>" in md
    # Context alone (another owner's identity) is not drift: Azure does match.
    assert render_markdown(Plan(changes=(foreign,))).startswith("### No changes. Azure matches the manifests\n")


# ----------------------------------------------------------------------------- escaping


def test_md_text_and_md_code_neutralise_markup() -> None:
    assert md_text("a*b_c|d<e>&`f`") == r"a\*b\_c\|d&lt;e&gt;&amp;\`f\`"
    assert md_text("@octo-org and #12") == "@<!-- -->octo-org and #<!-- -->12"
    # GitHub would show :100: and :smile: as emoji; a time is no shortcode and stays whole
    assert md_text("a.yaml:100:13: a :smile: at 22:40:00") == "a.yaml:<!-- -->100:13: a :<!-- -->smile: at 22:40:00"
    assert md_text("two\nlines") == "two lines"
    assert md_code("a``b") == "```a``b```"
    assert md_code("`x`") == "`` `x` ``"
    assert md_code("a|b", in_table=True) == r"`a\|b`"


def test_mermaid_labels_cannot_break_out() -> None:
    label = mermaid_label('Reader"] --> X["pwn`<b>|#;')
    assert re.fullmatch(r"[A-Za-z0-9 ._/:+~\-#;]*", label)
    assert '"' not in label and "]" not in label and "|" not in label and "`" not in label
    assert mermaid_label("rg-a/id_1") == "rg-a/id_1"  # common names stay readable


def evil_plan() -> Plan:
    """Every user-supplied value a reviewer sees carries markup that must stay text."""
    evil_key = IdentityKey.of(SUB, RG, "id-" + EVIL)
    identity_address = addresses.identity(evil_key)
    return Plan(changes=(
        Change(identity_address, ResourceType.IDENTITY, Action.UPDATE, "tags differ " + EVIL,
               before=ident_fields("id-" + EVIL, tags={"k": "old"}),
               after=ident_fields("id-" + EVIL, tags={"k": EVIL, EVIL: "v"}), drift=DriftClass.CHANGED,
               source=f"manifests/{EVIL}.yaml:1:1", modified={"by": EVIL, "at": EVIL}),
        Change(addresses.federated_credential(evil_key, "f"), ResourceType.FEDERATED_CREDENTIAL, Action.DELETE,
               EVIL, before=from_fields("federatedCredential", {"identity": EVIL, "name": EVIL, "issuer": EVIL,
                                                              "subject": EVIL, "audiences": [EVIL]}),
               drift=DriftClass.UNMANAGED),
        Change("ra", ResourceType.ROLE_ASSIGNMENT, Action.CREATE, EVIL,
               after=ra_fields({"identity": identity_address}, scope=f"{DATA}/{EVIL}", role=EVIL, description=EVIL)),
        Change("ra2", ResourceType.ROLE_ASSIGNMENT, Action.DELETE, EVIL,
               before=ra_fields({"objectId": EVIL}, principalType=EVIL)),
    ), warnings=(EVIL,))


@pytest.mark.parametrize("max_chars", [60_000, 3_000])
def test_injection_in_values_is_escaped(max_chars: int) -> None:
    md = render_markdown(evil_plan(), max_chars=max_chars, full_plan_hint=EVIL)
    assert_well_formed(md)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    # No tag, link or image came from a value: the only tags are those we write.
    assert "<img" not in html and "<a " not in html and "javascript:" not in html.replace("javascript:alert", "")
    assert html.count("<details") == html.count("</details>") == md.count("<details")
    assert "@octo-org" not in html.replace("<code>", "\0").split("\0")[0]  # no mention before the first code
    for line in mermaid_block(md):
        # node: id + shape + one quoted label; edge: id arrow |"label"| id; or a style line
        assert re.fullmatch(
            r'flowchart LR|  n\d+(\(\[|\[/|\[)"[^"]*"(\]\)|/\]|\])|  n\d+ -\.?->\|"[^"]*"\| n\d+|  linkStyle .*',
            line,
        ), line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(min_size=1, max_size=40), value=st.text(max_size=40))
def test_any_text_in_values_keeps_the_structure(name: str, value: str) -> None:
    k = IdentityKey.of(SUB, RG, name)
    plan = Plan(changes=(
        Change(addresses.identity(k), ResourceType.IDENTITY, Action.DELETE, value,
               before=ident_fields(name, tags={value: value})),
        Change("ra", ResourceType.ROLE_ASSIGNMENT, Action.CREATE, value,
               after=ra_fields({"objectId": value or "x"}, role=name, description=value)),
    ), warnings=(value,))
    md = render_markdown(plan)
    assert_well_formed(md)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert html.count("<details") == html.count("</details>") == 2
    assert len(mermaid_block(md)) == 5  # header, two nodes, one edge, its style: no line injected


# ----------------------------------------------------------------------------- size


def test_a_2000_change_plan_fits_and_keeps_summary_and_deletions() -> None:
    plan = big_plan(2000)
    md = render_markdown(plan, full_plan_hint=HINT)
    assert len(md) < 60_000
    assert_well_formed(md)
    summary = plan.summary()
    assert summary_counts(md)["destroy"] == summary["delete"] > 0
    assert md.startswith(f"### Plan: {summary['create']} to add, {summary['update']} to change")
    # Every security-relevant change is listed, or counted exactly in the "not shown" note.
    fics = sum(1 for c in plan.actionable if c.type is ResourceType.FEDERATED_CREDENTIAL)
    grants = sum(1 for c in plan.actionable if c.type is ResourceType.ROLE_ASSIGNMENT
                 and c.action is not Action.DELETE)
    listed_fics = len(re.findall(r"^  - `\+` credential `gh` · issuer `https://issuer` · subject `repo:x:\d+`$",
                                 md, re.M))
    listed_grants = len(re.findall(rf"^  - `\+` `Reader` at `{DATA}`$", md, re.M))
    listed_deletes = md.count("\n> - `-` ")
    assert listed_fics > 10 and listed_grants > 10
    note = re.search(r"Not shown, for lack of space: (.*) — full plan: artifact plan\.json\.", md)
    assert note is not None, md[:3000]
    left_out = {kind: (int(n), int(total)) for n, total, kind in re.findall(r"(\d+) of (\d+) ([a-z ]+)", note[1])}
    assert left_out["federated credential changes"] == (fics - listed_fics, fics)
    assert left_out["role assignment changes"] == (grants - listed_grants, grants)
    assert left_out["deletions or replacements"] == (summary["delete"] - listed_deletes, summary["delete"])
    assert "only security-relevant changes are listed" in md and HINT in md
    assert "```mermaid" not in md and "```diff" not in md


@pytest.mark.parametrize("max_chars", [60_000, 12_000, MIN_MAX_CHARS])
@pytest.mark.parametrize("size", range(0, 3001, 250))
def test_every_size_fits_and_stays_well_formed(size: int, max_chars: int) -> None:
    plan = big_plan(size, warn_every=3)
    md = render_markdown(plan, max_chars=max_chars, full_plan_hint=HINT)
    assert len(md) < max_chars
    assert_well_formed(md)
    assert "| Action | Count | Drift | Count |" in md
    assert summary_counts(md)["add"] == plan.summary()["create"]
    if plan.summary()["delete"]:
        assert "> [!CAUTION]" in md


def test_degrades_in_steps_and_says_so() -> None:
    plan = big_plan(30)
    full = render_markdown(plan, max_chars=1_000_000, full_plan_hint=HINT)
    assert "```mermaid" in full and "```diff" in full and "abridged" not in full

    no_diagram = render_markdown(plan, max_chars=len(full), full_plan_hint=HINT)
    assert "```mermaid" not in no_diagram and "```diff" in no_diagram
    assert "the access diagram is omitted — full plan: artifact plan.json.\n" in no_diagram

    one_line = render_markdown(plan, max_chars=len(no_diagram), full_plan_hint=HINT)
    assert "```diff" not in one_line and "field-level details are omitted" in one_line
    for change in plan.actionable:  # still one line per change
        assert f"- `{change.action.symbol}` **" in one_line
    assert one_line.count("\n- `") == len(plan.actionable)

    for change in plan.actionable:  # a credential's line keeps who may use the identity
        if change.type is ResourceType.FEDERATED_CREDENTIAL:
            assert f"· issuer `https://issuer` · subject `{change.fields()['subject']}`" in one_line

    counts = render_markdown(plan, max_chars=len(one_line), full_plan_hint=HINT)
    assert "<details" not in counts and "only security-relevant changes are listed" in counts
    assert "Not shown" not in counts  # everything security-relevant fits
    for group in re.split(r"\n- identity ", counts[counts.index("#### Credentials and access"):])[1:]:
        name = group[1:group.index("`", 1)]
        changes = [c for c in plan.actionable if name.split("/")[1] in c.address.split("/")
                   and c.type is not ResourceType.IDENTITY and c.action is not Action.DELETE]
        for change in changes:
            if change.type is ResourceType.FEDERATED_CREDENTIAL:
                assert f"  - `+` credential `gh` · issuer `https://issuer` · subject " \
                       f"`{change.fields()['subject']}`" in group
            else:
                assert f"  - `+` `Reader` at `{DATA}`" in group
    assert counts.count("  - `+` ") == sum(1 for c in plan.actionable if c.type is not ResourceType.IDENTITY
                                           and c.action is not Action.DELETE)
    assert "| identity `rg-payments/id-00000-with-a-name-longer-than-vm-limit` | 3 | 0 | 0 | 0 | 0 |" in counts
    assert "| identity `rg-payments/id-00001` | 0 | 0 | 0 | 2 | 0 |" in counts

    without_hint = render_markdown(plan, max_chars=len(counts))
    assert "run `reconciler plan` for the full plan" in without_hint


def test_diagram_only_when_small_enough_to_read() -> None:
    small = render_markdown(big_plan(9))
    assert "```mermaid" in small and "flowchart LR" in small
    edges = [line for line in mermaid_block(small) if "->|" in line]
    assert len(edges) == sum(1 for c in big_plan(9).actionable if c.type is ResourceType.ROLE_ASSIGNMENT) > 0
    assert any('-->|"+ Reader"|' in e for e in edges) and any('-.->|"- Reader"|' in e for e in edges)

    big = big_plan(3 * MAX_DIAGRAM_EDGES + 10)
    assert sum(1 for c in big.actionable if c.type is ResourceType.ROLE_ASSIGNMENT) > MAX_DIAGRAM_EDGES
    md = render_markdown(big, max_chars=1_000_000)  # the size budget is not what drops it here
    assert "```mermaid" not in md and "Access diagram omitted" in md


def test_max_chars_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        render_markdown(Plan(changes=()), max_chars=MIN_MAX_CHARS - 1)
