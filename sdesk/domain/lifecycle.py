"""Kinds, priorities, statuses and the ticket state machine.

Plain enums with no pydantic, so that hot commands (`sdesk new`, `list`, `show`) can use them
without paying pydantic's import (about 1.3x the floor of the CLI, see DESIGN.md).
`sdesk.domain.models` builds the pydantic models on these same enums.
"""

from enum import StrEnum

from ..errors import BadInput, InvalidTransition


class Kind(StrEnum):
    INCIDENT = "incident"
    REQUEST = "request"
    PROBLEM = "problem"
    CHANGE = "change"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Status(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"


DONE = frozenset({Status.RESOLVED, Status.CLOSED})
OPEN = frozenset(Status) - DONE

# action -> (statuses it may start from, status it leads to). Shortcuts people expect are
# allowed (ack a new ticket, resolve an acknowledged one); going back is only via reopen.
MOVES: dict[str, tuple[frozenset[Status], Status]] = {
    "triage": (frozenset({Status.NEW}), Status.TRIAGED),
    "assign": (OPEN, Status.ASSIGNED),
    "ack": (frozenset({Status.NEW, Status.TRIAGED, Status.ASSIGNED}), Status.ACKNOWLEDGED),
    "start": (
        frozenset({Status.NEW, Status.TRIAGED, Status.ASSIGNED, Status.ACKNOWLEDGED, Status.WAITING}),
        Status.IN_PROGRESS,
    ),
    "wait": (frozenset({Status.ACKNOWLEDGED, Status.IN_PROGRESS}), Status.WAITING),
    "resolve": (OPEN, Status.RESOLVED),
    "close": (frozenset({Status.RESOLVED}), Status.CLOSED),
    "reopen": (DONE, Status.IN_PROGRESS),
}

DEFAULT_KIND = Kind.INCIDENT
DEFAULT_PRIORITY = Priority.P3
TITLE_MAX = 1000
NAME_MAX = 200  # services, queues, label keys, tags...
FINGERPRINT_MAX = 512
ID_PREFIX = "SD-"
# The longest time span a setting may give (a correlation window, an SLA target, a rotation, an
# intake look-back): ten years. Any more is a typo, and it keeps `now +/- span` inside the
# dates Python and SQLite can hold, so no later use overflows.
MAX_SETTING_DAYS = 3660
# What pydantic's str_strip_whitespace strips (Unicode White_Space): Python's str.strip() also
# strips the separators U+001C..U+001F, so `sdesk new TITLE` strips with this set to agree.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# Characters that show nothing: controls, format characters (U+FEFF, zero-width spaces and
# joiners, direction marks), space and line separators, and combining marks (U+0301 alone has
# nothing to sit on). Text of only these is empty.
INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
# And letters and symbols that are drawn as nothing: Unicode's Default_Ignorable_Code_Point
# (the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the grapheme joiner U+034F, variation
# selectors, tags...) outside the categories above, and the braille blank U+2800.
BLANK_RANGES = ((0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2800, 0x2800),
                (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
                (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))


def blank(text: str) -> bool:
    """Whether `text` shows nothing: empty once white space and invisible characters are taken
    out. A comment of only U+FEFF, a Hangul filler or a lone accent is as empty as one of spaces.
    Stops at the first character that shows: ordinary text costs one or two steps."""
    for c in text.strip():  # white space, at C speed
        if c.isascii():
            if c.isprintable() and c != " ":
                return False
        elif not _shows_nothing(c):
            return False
    return True


def check_name(text: str, what: str) -> str:
    """A name that identifies a person (a user, an assignee), trimmed: 1 to NAME_MAX characters,
    each of which shows (a name is read on screens and compared by eye). Refused (BadInput): a
    blank name, a longer one, and any control, format (bidi overrides, zero-width), separator
    other than the space, unassigned or private-use character, or a letter drawn as nothing.
    The name is not quoted back: it may be what is wrong with the terminal's line."""
    name = text.strip()
    if blank(name):
        raise BadInput(f"{what}: a name must not be empty")
    if len(name) > NAME_MAX:
        raise BadInput(f"{what}: a name is at most {NAME_MAX} characters (this one has {len(name):,})")
    if not name.isprintable() or not name.isascii() and any(
            a <= ord(c) <= b for c in name for a, b in BLANK_RANGES):
        at, c = next((i, c) for i, c in enumerate(name, 1)
                     if not c.isprintable() or any(a <= ord(c) <= b for a, b in BLANK_RANGES))
        raise BadInput(f"{what}: a name cannot hold U+{ord(c):04X} (character {at}): "
                       "no control, direction or invisible characters")
    return name


def _shows_nothing(c: str) -> bool:
    import unicodedata

    code = ord(c)
    return unicodedata.category(c) in INVISIBLE or any(a <= code <= b for a, b in BLANK_RANGES)


def allowed_actions(status: str) -> list[str]:
    return [action for action, (sources, _) in MOVES.items() if status in sources]


def next_status(status: str, action: str, *, ticket_id: int | None = None) -> Status:
    """The status `action` leads to from `status`, or InvalidTransition naming the allowed moves."""
    sources, target = MOVES[action]
    if status in sources:
        return target
    what = f"{ID_PREFIX}{ticket_id}" if ticket_id is not None else "ticket"
    allowed = ", ".join(allowed_actions(status)) or "nothing"
    raise InvalidTransition(f"cannot {action} {what}: it is {status}; from {status} you can: {allowed}")


def parse_ref(text: str | int, prefix: str, what: str) -> int:
    """Accept `42`, `<prefix>42` in any case (SD-42, KB-7, CH-3): a positive id SQLite can hold."""
    raw = str(text).strip()
    digits = raw[len(prefix):] if raw.upper().startswith(prefix) else raw
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18 or int(digits) == 0:
        raise BadInput(f"{raw!r} is not {what} (expected 42 or {prefix}42)")
    return int(digits)


def parse_id(text: str | int) -> int:
    return parse_ref(text, ID_PREFIX, "a ticket id")


def ref(ticket_id: int) -> str:
    return f"{ID_PREFIX}{ticket_id}"


def more_urgent(priority: str | None, than: str | None) -> bool:
    """P1 is more urgent than P2 (and than no priority: a parent without one is not raised)."""
    return bool(priority and than and priority < than)
