"""Stored text made safe to show: control characters written out as escapes, never sent to
the terminal. Pure and import-free (no rich), so plain output paths and error lines use it too.

Titles, comments, labels, actors, CI names, KB text and runbook output come from people and
payloads that may be hostile. A raw ESC or C1 byte lets them retitle the terminal (OSC 0), write
the clipboard (OSC 52), clear the screen, plant OSC 8 links or hide text; a bidi override
(U+202E) reorders what people read; a CR overwrites the line. So every such character is shown
as `\\x1b`, `\\u202e`, `\\r` ... and never interpreted. Markup ([bold], [@click=...]) is handled
by the renderers: they give rich and Textual `Text`/`Content` objects for data, never markup
strings.
"""

from __future__ import annotations

import re

# C0 and DEL, C1, bidi embeddings/overrides/isolates and marks, line/paragraph separators, and
# lone surrogates (which cannot even be encoded for the terminal). Newline and tab are handled
# by the caller's choice: kept in multi-line text, escaped in one-line cells.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_MULTILINE = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[{_UNSAFE}\t\n]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def controls(text: object, one_line: bool = False) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\u202e`); with
    `one_line`, newlines and tabs too (a table cell, a title)."""
    s = text if isinstance(text, str) else str(text)
    pattern = _ONE_LINE if one_line else _MULTILINE
    return pattern.sub(_escape, s) if pattern.search(s) else s


def readable(value: object) -> str:
    """A value from data (a condition, a change, a label set) in words for people, never a
    Python repr: `labels.alertname=DiskFull`, `a, b`, `none`, `priority: (in: P1, P2)`."""
    if value is None or value == "" or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k}: ({readable(v)})" if isinstance(v, dict) and v else
                         f"{k}: {readable(v)}" if isinstance(v, (list, tuple)) and v else f"{k}={readable(v)}"
                         for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(f"({readable(v)})" if isinstance(v, (dict, list, tuple)) and v else readable(v) for v in value)
    return str(value)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ (or a tab or
    CR, which some strip first) gets a leading `'` (OWASP's advice); control characters other
    than newline are escaped. Numbers and empty cells are kept as they are."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(FORMULA_START):
        value = "'" + value
    return controls(value)


# JSON escapes C0 itself but writes C1 (U+0080-U+009F, a terminal's 8-bit CSI/OSC), DEL and the
# bidi controls raw. Inside a JSON string they may as well be \u escapes: the value read back is
# the same, and a terminal that shows the JSON does not act on them. (Outside strings JSON has
# only ASCII, so every match is inside a string.)
_JSON_UNSAFE = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_JSON_TEXT = re.compile(f"[{_JSON_UNSAFE}]")
# The same characters as UTF-8 byte sequences.
_JSON_BYTES = re.compile(rb"\x7f|\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8\xa9\xaa-\xae]|\xe2\x81[\xa6-\xa9]")


def json_text(text: str) -> str:
    """JSON text with C1, DEL and bidi controls as \\u escapes (the same JSON value)."""
    return _JSON_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _JSON_TEXT.search(text) else text


def json_bytes(data: bytes) -> bytes:
    """`json_text` for UTF-8 JSON bytes (orjson's output)."""
    if _JSON_BYTES.search(data) is None:
        return data
    return _JSON_BYTES.sub(lambda m: f"\\u{ord(m.group().decode()):04x}".encode(), data)


def plural(count: int | float, word: str, many: str | None = None) -> str:
    """`1 page`, `2 pages`, `1,200 tickets`: a count and its noun agreeing (`many`: an irregular
    plural, e.g. plural(n, "reply", "replies"))."""
    noun = word if count == 1 else many or word + "s"
    return f"{count:,} {noun}" if isinstance(count, int) else f"{count:g} {noun}"
