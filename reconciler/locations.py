"""Azure's region names, shipped with the package (reconciler/data/locations.json: each region's
short name and display name), so `validate` catches a typo such as `westeruope` offline.

ARM's canonical form is the short name (`westeurope`); the display name (`West Europe`) is accepted
too, in any case and spacing, and normalised to the short name.
"""

from __future__ import annotations

import difflib
import functools
import json
from importlib import resources


def _key(text: str) -> str:
    return text.replace(" ", "").lower()


@functools.cache
def regions() -> dict[str, str]:
    """Short name -> display name, for every region in the shipped list."""
    raw = json.loads(resources.files("reconciler.data").joinpath("locations.json").read_text("utf-8"))
    return {r["name"]: r["displayName"] for r in raw}


@functools.cache
def _by_key() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, display in regions().items():
        out[_key(name)] = name
        out[_key(display)] = name
    return out


def canonical(location: str) -> str | None:
    """The region's short name ("West Europe" -> "westeurope"), or None if no region is called so."""
    return _by_key().get(_key(location))


def suggestion(location: str) -> str | None:
    """The closest region name to a typo, if one is close enough."""
    close = difflib.get_close_matches(_key(location), list(regions()), n=1, cutoff=0.75)
    return close[0] if close else None


def in_list(location: str, names: frozenset[str]) -> bool:
    """Whether `location` (short or display name) is one of `names` (short names, lower case)."""
    return (canonical(location) or _key(location)) in names
