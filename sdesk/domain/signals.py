"""What a source asks of the desk: the common shape of every intake format (pure data)."""

from typing import Any, NamedTuple

import orjson

# The input formats `sdesk new --format` takes (parsers in intake.py).
FORMATS = ("auto", "json", "jsonl", "alertmanager", "pagerduty", "grafana", "opsgenie", "email")
# Tickets in the generic schema, typed or written by a script: whoever delivered them wrote
# them. Every other source (a monitoring tool, a mail sender) acts for itself.
WRITTEN = frozenset({"cli", "json", "jsonl"})


class Alert(NamedTuple):
    """An alert as it arrived, for the alerts table: its status, and its labels and
    annotations as JSON text, made once by the parser (alert parsers see each distinct alert
    once; its repeats share it)."""

    status: str
    labels: str
    annotations: str
    group: str | None = None  # the sender's group key (Alertmanager's groupKey), for correlation

    @classmethod
    def of(cls, status: str, labels: dict[str, str], annotations: dict[str, str], group: str | None = None) -> "Alert":
        return cls(status, orjson.dumps(labels).decode(), orjson.dumps(annotations).decode(), group)


class Signal(NamedTuple):
    """Open a ticket (`trigger`), resolve or acknowledge the open ticket with `fingerprint`,
    record a `change`, or nothing (`ignore`). `alert` is set for what arrived as an alert
    (status, labels, annotations), which the alerts table keeps whatever becomes of it.
    `thread` is set for email: a message that replies to a known ticket becomes a comment on
    it (see Store.receive)."""

    source: str
    action: str
    ticket: dict[str, Any] | None = None
    fingerprint: str | None = None
    alert: Alert | None = None
    change: dict[str, Any] | None = None
    thread: dict[str, Any] | None = None  # email: message_id, references, ticket ([SD-42]), from, body...
    # The parser found no hint of a secret in any text this signal carries, so the store need
    # not look again (alert parsers check each distinct alert once; its repeats share the answer).
    secret_free: bool = False

    @property
    def actor(self) -> str | None:
        """Who the events of what this signal does are recorded as: the source itself
        (`pagerduty`, `mail:ann@example.com`), the account that delivered it being kept as
        `received_by`; None for a ticket in the generic schema, the delivering account's own."""
        if self.source in WRITTEN:
            return None
        if self.thread is not None:
            return f"mail:{(self.thread.get('from') or 'unknown sender')[:200]}"
        return self.source

    @property
    def key(self) -> str | None:
        """The fingerprint this signal is about (a trigger carries it in its ticket)."""
        return self.fingerprint or (self.ticket or {}).get("fingerprint")
