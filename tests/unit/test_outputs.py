"""Pure rendering of identity outputs: shell-safe env lines, collision-free variable names."""

from __future__ import annotations

import json
import subprocess

from reconciler.outputs import IdentityOutput, env_prefixes, render_env, render_json


def out(rg: str, name: str, sub: str = "11111111-1111-1111-1111-111111111111", client: str = "c") -> IdentityOutput:
    return IdentityOutput(sub, rg, name, f"/subscriptions/{sub}/resourceGroups/{rg}/x/{name}", client, "p", "t")


def test_prefixes_are_names_unless_they_collide() -> None:
    assert env_prefixes([out("rg-a", "payments-api"), out("rg-a", "9lives")]) == ["PAYMENTS_API", "_9LIVES"]
    # The same name in two groups, and names that only differ by punctuation, get qualified.
    assert env_prefixes([out("rg-a", "api"), out("rg-b", "api"), out("rg-a", "web")]) == [
        "RG_A_API", "RG_B_API", "RG_A_WEB"]
    sub2 = "22222222-2222-2222-2222-222222222222"
    assert env_prefixes([out("rg", "api"), out("rg", "api", sub=sub2)]) == [
        "_11111111_1111_1111_1111_111111111111_RG_API", "_22222222_2222_2222_2222_222222222222_RG_API"]


def test_env_values_are_quoted_so_the_shell_runs_nothing() -> None:
    hostile = out("rg", "api", client="$(touch /tmp/pwned)'\"; echo")
    script = render_env([hostile]) + 'printf %s "$API_CLIENT_ID"'
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout == "$(touch /tmp/pwned)'\"; echo"


def test_json_shape() -> None:
    data = json.loads(render_json([out("rg", "api")]))
    assert set(data["identities"][0]) == {
        "subscription", "resourceGroup", "name", "id", "clientId", "principalId", "tenantId"}
