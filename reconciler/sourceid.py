"""The source id: which repository an identity was created from, recorded as the tag
`reconciler-source` so that a plan can tell "an owner this repository used to manage" (all its
manifests deleted) from "another repository's owner" in a shared subscription. Stateless: the
id is computed on every run and stored nowhere but on the identities.

`RECONCILER_SOURCE` sets it explicitly (e.g. `contoso/platform-identities`). Without it, it is
the manifest paths relative to the root of the repository that holds them (the nearest folder
with a `.git` entry; only its existence is checked, git is never run), else their last path
component: `manifests` whatever the working directory or checkout location, so CI jobs and
people agree."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV_VAR = "RECONCILER_SOURCE"
# ARM tag values hold at most 256 characters.
MAX_LENGTH = 256


def _repository_relative(path: Path) -> str:
    for parent in path.parents:
        if (parent / ".git").exists():
            return path.relative_to(parent).as_posix()
    return path.name


def source_id(paths: Sequence[str], environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_VAR, "").strip()
    if explicit:
        return explicit[:MAX_LENGTH]
    names = {_repository_relative(Path(p).resolve()) for p in paths}
    return ",".join(sorted(n for n in names if n))[:MAX_LENGTH] or None
