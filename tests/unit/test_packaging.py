"""What `pip install` gives a user, who has neither this repository nor ../shared: the wheel
must carry every data file the tool reads at run time."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_the_role_table_and_both_schemas(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
                           str(REPO)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("reconciler-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in ("builtin_roles.json", "manifest.schema.json", "plan.schema.json", "locations.json"):
            assert f"reconciler/data/{name}" in names
        # the sandbox's own copy of the region list (it imports nothing from the core)
        assert "reconciler/sandbox/locations.json" in names
        # the schemas are real files in the wheel, equal to the ones in schemas/, not dangling links
        for name in ("manifest.schema.json", "plan.schema.json"):
            shipped = json.loads(z.read(f"reconciler/data/{name}"))
            assert shipped == json.loads((REPO / "schemas" / name).read_text())
        assert len(json.loads(z.read("reconciler/data/builtin_roles.json"))) > 900
        assert any(n.startswith("reconciler/sandbox/") for n in names)
