"""`python tests/paced_cli.py ARGS`: `python -m reconciler ARGS` for subprocess tests against a sandbox
with loosened FIC limits (tests/e2e/support.py's E2E_CONFIG).

The CLI paces FIC writes at Azure's rates (one per identity every 4 s) for any `--arm-endpoint`:
right for Azure and for `reconciler sandbox serve` with its defaults, but 40 times slower than an
E2E_CONFIG sandbox needs. With RECONCILER_TEST_PACE="URL SCALE" in the environment, the client
budget for URL paces FIC calls at SCALE times Azure's rates (reconciler/azure/transports.py), as
the embedded sandbox's budget follows its own scale; everything else, HTTPS included, is the CLI
as it ships. test_fic_pacing keeps Azure's real limits on both sides.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reconciler.azure import transports
from reconciler.cli import main

PACE_ENV = "RECONCILER_TEST_PACE"
PACED_CLI = Path(__file__).resolve()


def pace_env(url: str, fic_scale: float) -> dict[str, str]:
    """The environment that makes this script pace FIC calls to `url` at `fic_scale`."""
    return {PACE_ENV: f"{url} {fic_scale}"}


if __name__ == "__main__":
    pace = os.environ.get(PACE_ENV)
    if pace:
        url, scale = pace.split()
        transports.register(url, None, fic_scale=float(scale))
    raise SystemExit(main(sys.argv[1:]))
