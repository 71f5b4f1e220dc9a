"""Regular expressions written by users (silence matchers, triage rules, runbook parameter
patterns): compiled with RE2, whose matching time is linear in the input whatever the pattern.
Python's `re` backtracks: a silence `instance=~(a+)+$`, which any agent may add, held serve's
one writer thread for seconds per alert. RE2 is also what Alertmanager's matchers use (Go's
regexp has its syntax), so a matcher means here what it means there. What RE2 refuses
(backreferences, lookaround) is refused with one line naming the pattern. The desk's own
constant patterns stay on `re`."""

from __future__ import annotations

import functools
from typing import Any

from ..errors import PatternError

MAX_LENGTH = 4096  # characters of one pattern: a long list of host names fits; a pasted file does not


class Pattern:
    """A compiled user pattern: `fullmatch` (Alertmanager's anchored match) and `search`
    (anywhere), each a bool. Text is matched as UTF-8, a lone surrogate read as "?" rather
    than failing the alert."""

    __slots__ = ("pattern", "_match", "_both", "_anywhere")

    def __init__(self, pattern: str, program: Any, anchors: Any):
        self.pattern = pattern
        # RE2's own Match on UTF-8 bytes, for a yes or no: the wrapper's fullmatch builds a
        # match object with character offsets, 1.2 us a match against 9 us (a silence is
        # tried on every alert of a stream).
        self._match = program._regexp.Match
        self._both, self._anywhere = anchors.ANCHOR_BOTH, anchors.UNANCHORED

    def fullmatch(self, value: str) -> bool:
        return self._run(self._both, value)

    def search(self, value: str) -> bool:
        return self._run(self._anywhere, value)

    def _run(self, anchor: Any, value: str) -> bool:
        data = value.encode("utf-8", "replace")
        return self._match(anchor, data, 0, len(data))[0][0] >= 0

    def __repr__(self) -> str:
        return f"patterns.compile({self.pattern!r})"


@functools.lru_cache(maxsize=512)
def compile(pattern: str) -> Pattern:  # noqa: A001 (read as patterns.compile, like re.compile)
    """The RE2 program of `pattern`, cached: silences are matched against every alert."""
    if len(pattern) > MAX_LENGTH:
        raise PatternError(f"longer than {MAX_LENGTH} characters")
    import re2  # a 5 ms import, only where a user pattern is used

    options = re2.Options()
    options.log_errors = False  # RE2 would also log the error on stderr; ours is the one line
    options.never_capture = True  # only whether it matches is asked
    try:
        return Pattern(pattern, re2.compile(pattern, options), re2._Anchor)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid"
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise PatternError(f"{reason} (RE2 syntax, as Alertmanager's: no backreferences or lookaround)") from None
    except (TypeError, ValueError) as e:  # a NUL or a lone surrogate in the pattern
        raise PatternError(str(e)) from None


def shown(text: str, limit: int = 80) -> str:
    """A pattern (or the option holding it) as an error quotes it: a refused 12 KB pattern is
    named by its start, so that the error stays one readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def fullmatch(pattern: str, value: str) -> bool:
    """Whether the whole of `value` matches (Alertmanager anchors its regex matchers)."""
    return compile(pattern).fullmatch(value)
