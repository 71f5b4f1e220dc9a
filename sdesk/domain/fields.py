"""What a ticket may hold: the checks that CLI flags and alert parsers share. Pure, no pydantic.

`models.TicketCreate` states the same rules for arbitrary JSON (tests hold the two to the same
result); this copy exists because importing pydantic and building a model costs more than the
whole start-up budget of `sdesk new` (DESIGN.md), and alert payloads arrive tens of thousands
a second.
"""

from typing import Any

from ..errors import BadInput
from .lifecycle import (
    DEFAULT_KIND,
    DEFAULT_PRIORITY,
    FINGERPRINT_MAX,
    NAME_MAX,
    TITLE_MAX,
    WHITESPACE,
    Kind,
    Priority,
    blank,
)

NAMES = ("category", "service", "ci", "queue", "requester")
KINDS = frozenset(Kind)
PRIORITIES = frozenset(Priority)


def _text(name: str, value: Any, limit: int | None, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{name}: must be text")
    value = value.strip(WHITESPACE)
    # Empty, or only invisible characters ("\ufeff", a Hangul filler, a lone accent); stripped
    # printable ASCII is never blank (a Hangul filler is printable, so only ASCII is skipped).
    if not empty_ok and (not value or not (value.isascii() and value.isprintable()) and blank(value)):
        raise BadInput(f"{name}: must not be empty")
    if limit and len(value) > limit:
        raise BadInput(f"{name}: must be at most {limit} characters")
    return value


def _labels(labels: Any) -> dict[str, str]:
    # One pass for the common case (alerts carry a dozen labels): strip all, then check.
    try:
        clean = {k.strip(WHITESPACE): v.strip(WHITESPACE) for k, v in labels.items()}
    except AttributeError:
        raise BadInput("labels: must be an object of text values") from None
    keys = "".join(clean)
    if "" in clean or not (keys.isascii() and keys.isprintable()) and any(map(blank, clean)):
        raise BadInput("labels: a key must not be empty")
    if clean and max(map(len, clean)) > NAME_MAX:
        raise BadInput(f"labels: a key must be at most {NAME_MAX} characters")
    return clean


def check_ticket(fields: dict[str, Any]) -> dict[str, Any]:
    """A new ticket's fields, stripped and checked; BadInput names the first bad field.
    None means absent."""
    fields = {k: v for k, v in fields.items() if v is not None}
    ticket: dict[str, Any] = {"title": _text("title", fields.pop("title", None), TITLE_MAX)}
    if "description" in fields:
        ticket["description"] = _text("description", fields.pop("description"), None, empty_ok=True)
    kind = str(fields.pop("kind", DEFAULT_KIND))
    priority = str(fields.pop("priority", DEFAULT_PRIORITY)).upper()
    if kind not in KINDS:
        raise BadInput(f"kind: must be one of {', '.join(KINDS)}")
    if priority not in PRIORITIES:
        raise BadInput(f"priority: must be one of {', '.join(sorted(PRIORITIES))}")
    ticket.update(kind=kind, priority=priority)
    for name in ("impact", "urgency"):
        if name in fields:
            level = fields.pop(name)
            if type(level) is not int or not 1 <= level <= 3:
                raise BadInput(f"{name}: must be 1, 2 or 3")
            ticket[name] = level
    for name in NAMES:
        if name in fields:
            ticket[name] = _text(name, fields.pop(name), NAME_MAX)
    if "fingerprint" in fields:
        ticket["fingerprint"] = _text("fingerprint", fields.pop("fingerprint"), FINGERPRINT_MAX)
    ticket["labels"] = _labels(fields.pop("labels", {}))
    tags = fields.pop("tags", [])
    if not isinstance(tags, list):
        raise BadInput("tags: must be a list of text")
    ticket["tags"] = list(dict.fromkeys(_text("tags", t, NAME_MAX) for t in tags)) if tags else []
    if fields:
        raise BadInput(f"{sorted(fields)[0]}: unknown field")
    return ticket
