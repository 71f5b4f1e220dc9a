"""The filter bar's language, the same filters as `sdesk list`: words to match in the title or
description, and `key:value` terms (pure; tested with hypothesis).

    p:P1 p:P2 q:dba a:me disk full       # P1 or P2, queue dba, assigned to me, "disk full"
    status:waiting service:checkout all  # `all`: closed tickets too
"""

from __future__ import annotations

from typing import Any

from ..domain.lifecycle import Kind, Priority, Status
from ..errors import BadInput

KEYS = {"p": "priority", "priority": "priority", "s": "status", "status": "status", "q": "queue", "queue": "queue",
        "a": "assignee", "assignee": "assignee", "service": "service", "ci": "ci", "t": "tag", "tag": "tag",
        "kind": "kind"}


def parse(text: str, me: str) -> dict[str, Any]:
    """Keyword arguments of Store.list for a filter; BadInput says which term is wrong."""
    out: dict[str, Any] = {"priorities": [], "statuses": [], "open_only": True}
    words = []
    for term in text.split():
        if term == "all":
            out["open_only"] = False
            continue
        key, sep, value = term.partition(":")
        if not sep:
            words.append(term)
            continue
        field = KEYS.get(key.lower())
        if field is None:
            raise BadInput(f"filter: unknown key {key!r} (keys: p, s, q, a, service, ci, t, kind, or all)")
        if not value:
            raise BadInput(f"filter: {key}: needs a value, e.g. {key}:something")
        if field == "priority":
            if value.upper() not in Priority.__members__:
                raise BadInput(f"filter: priority {value!r}: expected P1-P4")
            out["priorities"].append(value.upper())
        elif field == "status":
            if value.lower() not in {s.value for s in Status}:
                raise BadInput(f"filter: status {value!r}: expected one of {', '.join(s.value for s in Status)}")
            out["statuses"].append(value.lower())
        elif field == "kind":
            if value.lower() not in {k.value for k in Kind}:
                raise BadInput(f"filter: kind {value!r}: expected one of {', '.join(k.value for k in Kind)}")
            out["kind"] = value.lower()
        else:
            out[field] = me if field == "assignee" and value == "me" else value
    if words:
        out["text"] = " ".join(words)
    return out
