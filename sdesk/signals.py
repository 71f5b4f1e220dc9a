"""What a source asks of the desk: the common shape of every intake format (pure data)."""

from typing import Any, NamedTuple

# The input formats `sdesk new --format` takes (parsers in intake.py).
FORMATS = ("auto", "json", "jsonl", "alertmanager", "pagerduty", "grafana", "opsgenie")


class Signal(NamedTuple):
    """Open a ticket (`trigger`), resolve or acknowledge the open ticket with `fingerprint`,
    record a `change`, or nothing (`ignore`). `alert` is set for what arrived as an alert
    (status, labels, annotations), which the alerts table keeps whatever becomes of it."""

    source: str
    action: str
    ticket: dict[str, Any] | None = None
    fingerprint: str | None = None
    alert: dict[str, Any] | None = None
    change: dict[str, Any] | None = None
