"""Turning raw input into validated tickets. Pure: reads text, returns models, stores nothing.

Each parser yields `Record`s: where the record came from (`line 3`, `record 2`), and either a
validated ticket (as the dict the store takes) or the reason it was rejected, so that one bad
record never costs the good ones around it.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pydantic import ValidationError

from .errors import BadInput
from .models import TicketCreate, describe


class Record(NamedTuple):
    where: str
    raw: str
    ticket: dict[str, Any] | None = None
    error: str | None = None


def _validate(where: str, raw: str, value: Any) -> Record:
    try:
        model = TicketCreate.model_validate_json(raw) if value is None else TicketCreate.model_validate(value)
    except ValidationError as e:
        return Record(where, raw, error=describe(e))
    # The validated fields as they are (enums are str subclasses): several times cheaper than
    # model_dump, which matters at tens of thousands of records a second.
    return Record(where, raw, ticket=vars(model))


def parse_jsonl(lines: Iterable[str], start: int = 1) -> Iterator[Record]:
    """One ticket object per line, numbered from `start`; blank lines are skipped."""
    for number, line in enumerate(lines, start=start):
        raw = line.rstrip("\r\n")
        if raw.strip():
            yield _validate(f"line {number}", raw, None)


def parse_json(text: str) -> Iterator[Record]:
    """One JSON document: a ticket object, or an array of them."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(doc, dict):
        yield _validate("record 1", text, doc)
    elif isinstance(doc, list):
        for number, item in enumerate(doc, start=1):
            yield _validate(f"record {number}", json.dumps(item, ensure_ascii=False), item)
    else:
        raise BadInput("expected a JSON object or an array of objects")
