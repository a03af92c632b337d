"""Escaping of user-supplied values for GitHub-flavoured Markdown and its inline HTML."""

from __future__ import annotations

import html
import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def md(text: str) -> str:
    """Text that renders literally: no HTML, no emphasis, no links, no table breaks."""
    escaped = html.escape(text, quote=False).replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", escaped)
