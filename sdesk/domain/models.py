"""Pydantic models of what enters and leaves sdesk.

`TicketCreate` and `TicketUpdate` validate input from JSON and the CLI; `Ticket` and `Event`
are the contract of `--json` output (`sdesk schema NAME` prints them as JSON Schema).
The enums and the state machine live in `sdesk.domain.lifecycle` (pydantic-free, for hot paths).
"""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .lifecycle import (
    DEFAULT_KIND,
    DEFAULT_PRIORITY,
    FINGERPRINT_MAX,
    NAME_MAX,
    TITLE_MAX,
    Kind,
    Priority,
    Status,
    blank,
)


def _shows(text: str) -> str:
    """A character that shows: a title of only U+FEFF is empty. lifecycle.blank decides, the same
    function `sdesk new TITLE` uses: a regex in pydantic-core knows a newer Unicode than Python's
    unicodedata (a mark added in Unicode 16 is unassigned to one and invisible to the other), and
    the two ways in must accept the same titles. About 0.1 us a ticket."""
    if blank(text):
        raise PydanticCustomError("blank", "must not be empty")
    return text


_SHOWS = (AfterValidator(_shows), Field(description="Text with at least one visible character."))
Title = Annotated[str, StringConstraints(min_length=1, max_length=TITLE_MAX), *_SHOWS]
Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX), *_SHOWS]
Fingerprint = Annotated[str, StringConstraints(min_length=1, max_length=FINGERPRINT_MAX), *_SHOWS]
Level = Annotated[int, Field(ge=1, le=3, description="1 high, 2 medium, 3 low (ITIL)")]
# Scripts send numbers as label values: kept as text. Booleans are refused (true or "true"?).
LabelValue = Annotated[str, Field(coerce_numbers_to_str=True)]


def _unique(tags: list[str] | None) -> list[str] | None:
    return list(dict.fromkeys(tags)) if tags is not None and len(set(tags)) != len(tags) else tags


# Validation stays in pydantic-core, bar the cheap `_unique`: streamed intake checks tens of
# thousands of tickets a second, and a Python validator per field costs a visible share of that.
STRICT_INPUT = ConfigDict(extra="forbid", str_strip_whitespace=True)
# Models that intake does not use are built on first use: building a model's validator costs
# milliseconds, and `sdesk new` pays every one built at import.
LAZY = ConfigDict(defer_build=True)
# The output contract: exactly the keys sdesk prints, no more (a test validates real output).
EXACT = ConfigDict(defer_build=True, extra="forbid")


class TicketCreate(BaseModel):
    """A new ticket, as `sdesk new -` and `sdesk new --jsonl` accept it."""

    model_config = STRICT_INPUT

    title: Title
    description: str | None = None
    kind: Kind = DEFAULT_KIND
    priority: Priority = DEFAULT_PRIORITY
    impact: Level | None = None
    urgency: Level | None = None
    category: Name | None = None
    service: Name | None = None
    ci: Name | None = None
    queue: Name | None = None
    requester: Name | None = None
    fingerprint: Fingerprint | None = None
    # default_factory: a literal {} or [] default is deep-copied by pydantic for every instance.
    labels: dict[Name, LabelValue] = Field(default_factory=dict)
    tags: list[Name] = Field(default_factory=list)

    _unique = field_validator("tags")(_unique)


class TicketUpdate(BaseModel):
    """Fields `sdesk update` may change; only those given are changed."""

    model_config = STRICT_INPUT | LAZY

    title: Title | None = None
    description: str | None = None
    kind: Kind | None = None
    priority: Priority | None = None
    impact: Level | None = None
    urgency: Level | None = None
    category: Name | None = None
    service: Name | None = None
    ci: Name | None = None
    queue: Name | None = None
    team: Name | None = None
    requester: Name | None = None
    labels: dict[Name, LabelValue] | None = None
    tags: list[Name] | None = None

    _unique = field_validator("tags")(_unique)


class Event(BaseModel):
    """An event as `show --json` and `audit log --json` print it."""

    model_config = EXACT

    id: int
    ticket_id: int | None
    at: str
    actor: str
    kind: str
    data: dict[str, Any]
    prev_hash: str
    hash: str
    login: str | None = None  # the OS login of the process that wrote it (none before sdesk recorded it)


class Ticket(BaseModel):
    """A stored ticket as `sdesk list --json` prints it: every key, always present (`--csv` has
    the same columns, in this order)."""

    model_config = EXACT

    id: int
    kind: Kind
    title: str
    description: str | None
    status: Status
    priority: Priority
    impact: int | None
    urgency: int | None
    category: str | None
    queue: str | None
    team: str | None
    assignee: str | None
    service: str | None
    ci: str | None
    requester: str | None
    source: str
    fingerprint: str | None
    occurrences: int
    labels: dict[str, str]
    tags: list[str]
    parent_id: int | None
    resolution: str | None
    resolution_code: str | None
    created_at: str
    updated_at: str
    acknowledged_at: str | None
    resolved_at: str | None
    closed_at: str | None
    reopen_count: int
    escalation_level: int
    problem_id: int | None  # the problem record it is linked to
    suppressed: str | None  # what keeps it out of the queue (a silence, a rule), or null
    runbook: str | None  # the runbook a triage rule attached
    group_key: str | None  # the key alerts of one incident share (correlation.group_by)


class TicketShown(Ticket):
    """A ticket as `sdesk show --json` prints it: the listed keys, then who watches it, its intake
    context, the KB articles linked to it and its timeline."""

    watchers: list[str]  # email addresses and users copied on its public updates (sdesk watch)
    context: dict[str, Any] | None
    kb_linked: list[dict[str, Any]]
    # What the semantic index found like it when it indexed it: resolved tickets and articles with
    # their cosine (None: not indexed, or the `semantic` extra is not installed).
    alike: dict[str, Any] | None = None
    events: list[Event]


SCHEMAS: dict[str, type[BaseModel]] = {
    "ticket-create": TicketCreate,
    "ticket-update": TicketUpdate,
    "ticket": Ticket,
    "ticket-shown": TicketShown,
    "event": Event,
}


def describe(error: ValidationError) -> str:
    """One line naming each bad field: `priority: Input should be 'P1', 'P2', 'P3' or 'P4'`."""
    parts = []
    for e in error.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"]) or "input"
        msg = {"extra_forbidden": "unknown field", "model_type": "expected a JSON object"}.get(e["type"], e["msg"])
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
