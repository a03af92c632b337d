"""Making text from manifests, Azure and saved plans safe to print.

Two dangers, one module:

- Control characters. A file name, tag or ARM message may hold terminal escapes (`ESC[2J`,
  OSC 8 links, a bidi override that reorders what a reviewer reads) or a line break that
  starts a new output line — where a CI runner reads logging commands such as
  `##vso[task.setvariable …]` or `::warning::`. `one_line` makes every such character a
  visible escape (`\\n`, `\\x1b`, `\\u202e`), so a value can never start an output line or
  drive the terminal. `lines` does the same but keeps the line breaks of a message we
  composed ourselves (values inside it must already be `one_line`). Azure Pipelines reads
  `##vso[` anywhere in a line, not only at its start, so both also escape its first `#`
  (`\x23#vso[`), and `json_safe` does the same inside JSON (`\u0023`, the same string once
  parsed).
- Secrets. `scrub` replaces anything token-shaped (a JWT, a `Bearer …` credential) with
  `<redacted>`. It runs where errors leave the program (the CLI's error boundary) and where
  reports are written, so a token that an SDK or a server echoes never reaches a log.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidi controls
# (Trojan Source: they reorder what is displayed without changing what is there).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The Azure Pipelines agent finds this prefix anywhere in a line (GitHub's `::` commands must
# start one, which escaped line breaks already prevent).
_PIPELINE_COMMAND = re.compile(r"(?i)#(#vso\[)")

# Three base64url parts, the first starting with `eyJ` (`{"` encoded): the shape of every JWT,
# which is what ARM and Entra ID bearer tokens are.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# `Bearer <credential>` as it appears in headers, reprs and error messages.
# At least 16 characters, so that prose ("a bearer token is needed") is left alone.
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20)[^\s'\",;)\]}]{16,}")
REDACTED = "<redacted>"


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """`text` with every control character, line breaks included, shown as an escape, and no
    Azure Pipelines logging command."""
    return _PIPELINE_COMMAND.sub(r"\\x23\1", _CONTROL.sub(_escape, text))


def json_safe(text: str) -> str:
    """JSON text with no Azure Pipelines logging command in it (JSON strings already escape
    control characters)."""
    return _PIPELINE_COMMAND.sub(r"\\u0023\1", text)


def lines(text: str) -> str:
    """`text` with its line breaks kept and every other control character escaped."""
    return "\n".join(one_line(line) for line in text.split("\n"))


def quoted(text: str) -> str:
    """Multi-line text from outside (an SDK's message listing what it tried), kept readable:
    the first line as is, each further line behind `  | `, so no line of it is a line of its
    own to a CI runner (GitHub reads `::` after leading spaces too); all `one_line`."""
    first, *rest = text.expandtabs(4).splitlines() or [""]
    return "\n".join([one_line(first), *(f"  | {one_line(line)}" for line in rest)])


def scrub(text: str) -> str:
    """`text` with every token-shaped string (JWT, `Bearer …`) replaced by `<redacted>`."""
    text = _JWT.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def safe_message(text: str) -> str:
    """An error message fit to print: secrets scrubbed, control characters escaped."""
    return lines(scrub(text))
