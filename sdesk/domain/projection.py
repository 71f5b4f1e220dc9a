"""Tickets, users, queue roles and API tokens rebuilt from their events (pure: no SQL).

The tables are a projection of the hash chain: each write appends the events that say what it
set, so `sdesk audit verify` (and `import`, before it commits) can rebuild every row from the
chain and name each column a direct edit of the file changed. One ticket is rebuilt at a time,
from its own events in order, so a desk of any size is checked in constant memory.

Events written before an event said everything: a `created` event of a triaged ticket that does
not carry what triage set (`set`: its explanation says all of it but the correlation group), an
`enriched` event without `set`, a `token_added` without the token's hash. Those columns cannot
be rebuilt; they are left out of the comparison for that row until a later event sets them, and
verify says how many were left out.

So any new write of a ticket, user, queue-role or token column (a command, a migration that
backfills) must append an event that says the new value, and be taught to `Rebuilt.apply` or
`Accounts.apply`; test_audit_projection's broad mix and property tests catch one that is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from .roles import user_key

# Every column of `tickets` but its id, with the value a new row has when nothing sets it.
TICKET_DEFAULTS: dict[str, Any] = {
    "kind": None, "title": None, "description": None, "status": "new", "priority": None, "impact": None,
    "urgency": None, "category": None, "queue": None, "team": None, "assignee": None, "service": None, "ci": None,
    "requester": None, "source": None, "fingerprint": None, "occurrences": 1, "labels": {}, "tags": [],
    "parent_id": None, "resolution": None, "resolution_code": None, "created_at": None, "updated_at": None,
    "acknowledged_at": None, "resolved_at": None, "closed_at": None, "reopen_count": 0, "escalation_level": 0,
    "problem_id": None, "suppressed": None, "runbook": None, "group_key": None,
}
TICKET_COLUMNS = tuple(TICKET_DEFAULTS)
JSON_COLUMNS = ("labels", "tags")
_LABELS, _TAGS = TICKET_COLUMNS.index("labels"), TICKET_COLUMNS.index("tags")
# What a `created` event's input may set (the rest of its keys explain, e.g. `triage`).
_CREATED = frozenset(TICKET_COLUMNS) - {"status", "created_at", "updated_at", "reopen_count", "escalation_level"}
# What triage's rules, matrix and classifier may set (Decision.sets).
_DECIDED = frozenset({"kind", "priority", "impact", "urgency", "category", "queue", "team", "assignee", "tags"})
# Events that change a ticket's row (the others, e.g. comments' text or pages, only explain). A
# write that sets a column writes updated_at too, except where noted in `apply`.
TICKET_KINDS = ("created", "enriched", "occurrence", "unsuppressed", "status_changed", "assigned", "commented", "replied",
                "updated", "linked", "escalation_requested", "problem_linked", "triaged",
                "priority_raised")
_NO_DATA = frozenset({"commented", "replied", "unsuppressed"})  # their data need not be read (a comment can be long)

USER_KINDS = ("user_added", "user_changed", "user_queue_role", "user_removed", "token_added", "token_revoked")
USER_COLUMNS = ("name", "role", "team", "added_by", "added_at", "login", "email", "chat", "manager")
TOKEN_COLUMNS = ("key", "label", "hash", "created_by", "created_at", "revoked_at")


class Rebuilt:
    """One ticket as its events make it: `row`, and the columns they cannot explain."""

    __slots__ = ("row", "unknown", "final", "legacy")

    def __init__(self) -> None:
        self.row: dict[str, Any] | None = None  # None until a `created` event
        self.unknown: set[str] = set()
        self.final = False  # the created event said what triage and enrichment set
        self.legacy: dict[str, Any] = {}  # what triage set, read from an older created event's explanation

    def _set(self, column: str, value: Any) -> None:
        self.row[column] = value  # type: ignore[index]
        if self.unknown:
            self.unknown.discard(column)

    def apply(self, kind: str, at: str, actor: str, text: str | None) -> None:
        """One event of the ticket, in chain order. The commonest kinds are tested first: this
        runs once per event of the desk."""
        if kind == "created":
            self.row, self.unknown, self.final, self.legacy = dict(TICKET_DEFAULTS), set(), False, {}
        elif self.row is None:
            return  # an event before any `created`: there is nothing to rebuild (reported as such)
        d: dict[str, Any] = {} if kind in _NO_DATA or not text else orjson.loads(text)
        row = self.row
        if kind == "status_changed" or kind == "assigned":
            self._move(d, at, actor)
        elif kind == "created":
            for column, value in d.items():
                if column in _CREATED:
                    row[column] = value
            row["created_at"] = at
            if "set" in d:
                row.update((c, v) for c, v in d["set"].items() if c in _CREATED)
                self.final = True
            elif "triage" in d:
                self.legacy = _triage_sets(d["triage"])
                row.update(self.legacy)
                self.unknown.add("group_key")  # correlation's group: in no event before `set`
        elif kind == "occurrence":
            self._set("occurrences", d["occurrences"])
            if d.get("flapping"):
                self._set("suppressed", d.get("suppressed"))
        elif kind == "updated":
            self._changes(d)
        elif kind == "enriched":
            if self.final:
                return  # the created event's `set` already holds what enrichment set
            if "set" in d:
                for column, value in d["set"].items():
                    self._set(column, value)
                if self.legacy:
                    row.update(self.legacy)  # triage ran after enrichment: its choices win
            else:
                self.unknown |= {"ci", "team", "queue"}
            return  # same transaction as `created`: updated_at is already its time
        elif kind == "unsuppressed":
            self._set("suppressed", None)
            return  # a silence ending is not an edit of the ticket
        elif kind == "linked":
            self._set("parent_id", d["parent_id"])
        elif kind == "escalation_requested":
            self._set("escalation_level", d["step"])
        elif kind == "problem_linked":
            self._set("problem_id", d["problem_id"])
        elif kind == "priority_raised":  # by a more urgent child
            self._changes(d)
        elif kind == "triaged":
            self._changes(d.get("changes") or {})
            if not d.get("changes"):
                return  # a re-triage that changed nothing writes nothing
        row["updated_at"] = at

    def _changes(self, d: dict[str, Any]) -> None:
        """{column: [old, new]}; other keys (what else the event says) are not columns."""
        for column, change in d.items():
            if column in TICKET_DEFAULTS and isinstance(change, list) and len(change) == 2:
                self._set(column, change[1])

    def _move(self, d: dict[str, Any], at: str, actor: str) -> None:
        row, action = self.row, d.get("action")
        assert row is not None
        self._set("status", d["to"])
        if action == "assign":
            self._set("assignee", d["assignee"])
        elif action in ("ack", "start"):
            row["acknowledged_at"] = row["acknowledged_at"] or at
            if "assignee" in d:
                self._set("assignee", d["assignee"])
            elif not row["assignee"] and "assignee" not in self.unknown:
                row["assignee"] = actor  # events before the move said whom it assigned: its actor
        elif action == "resolve":
            row["resolved_at"] = at
            self._set("resolution", d.get("resolution"))
            self._set("resolution_code", d.get("code"))
        elif action == "close":
            row["closed_at"] = at
        elif action == "reopen":
            row.update(reopen_count=row["reopen_count"] + 1, resolved_at=None, closed_at=None)


def _triage_sets(explanation: dict[str, Any]) -> dict[str, Any]:
    """What triage set at intake, from the explanation a `created` event carried before it
    carried `set` (triage.decide and store_triage.Triager.apply): the decision's fields, the
    runbook of the last rule that named one, the assignee a queue strategy picked, the
    suppression and the parent. Only the correlation group is not in it."""
    sets = {k: v for k, v in (explanation.get("set") or {}).items() if k in _DECIDED}
    for fired in explanation.get("rules") or ():
        if "runbook" in (fired.get("set") or {}):
            sets["runbook"] = fired["set"]["runbook"]
    if "assigned" in explanation:
        sets["assignee"] = explanation["assigned"].get("assignee")
    if explanation.get("suppressed"):
        sets["suppressed"] = explanation["suppressed"]
    if "parent" in (explanation.get("correlation") or {}):
        sets["parent_id"] = explanation["correlation"]["parent"]
    return sets


def rebuild_ticket(events: Iterable[tuple[str, str, str, str | None]]) -> Rebuilt:
    """A ticket from its events (kind, at, actor, data as stored), oldest first."""
    rebuilt = Rebuilt()
    for kind, at, actor, text in events:
        rebuilt.apply(kind, at, actor, text)
    return rebuilt


def ticket_differences(stored: tuple, rebuilt: Rebuilt) -> list[tuple[str, Any, Any]]:
    """(column, stored, rebuilt) for each column of the stored row (its values in TICKET_COLUMNS
    order, JSON columns as text) that its events do not explain."""
    if rebuilt.row is None:
        return [("*", "a row", "no created event")]
    row = rebuilt.row
    if not rebuilt.unknown:  # the common case, in one comparison
        expected = list(row.values())
        expected[_LABELS] = orjson.dumps(expected[_LABELS]).decode()
        expected[_TAGS] = orjson.dumps(expected[_TAGS]).decode()
        if tuple(expected) == stored:
            return []
    out = []
    for column, value in zip(TICKET_COLUMNS, stored):
        if column in rebuilt.unknown:
            continue
        expected = row[column]
        if column in JSON_COLUMNS:
            if value == orjson.dumps(expected).decode():
                continue
            try:
                if orjson.loads(value) == expected:
                    continue
            except (orjson.JSONDecodeError, TypeError):
                pass
        elif value == expected and type(value) is type(expected):
            continue
        out.append((column, value, expected))
    return out


class Accounts:
    """Users, their queue roles and API tokens as their events make them."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.queue_roles: dict[tuple[str, str], str] = {}
        self.tokens: dict[int, dict[str, Any]] = {}
        self.unhashed: set[int] = set()  # tokens whose event is older than recording the hash

    def apply(self, kind: str, at: str, actor: str, text: str) -> None:
        d = orjson.loads(text)
        if kind == "user_added":
            key = user_key(d["user"])
            # A user added before logins were recorded got their key as login (migration m011).
            self.users[key] = {"name": d["user"], "role": d["role"], "team": d.get("team"), "added_by": actor,
                               "added_at": at, "login": d.get("login", key), "email": d.get("email"),
                               "chat": d.get("chat"), "manager": None}
        elif kind == "user_changed":
            user = self.users.get(user_key(d["user"]))
            if user is not None:
                for column in ("role", "team", "login", "email", "chat", "manager"):  # each change is [old, new]
                    if column in d:
                        user[column] = d[column][1]
        elif kind == "user_queue_role":
            self.queue_roles[(user_key(d["user"]), d["queue"])] = d["role"]
        elif kind == "user_removed":
            key = user_key(d["user"])
            self.users.pop(key, None)
            self.queue_roles = {k: r for k, r in self.queue_roles.items() if k[0] != key}
            for token_id in [i for i, t in self.tokens.items() if t["key"] == key]:
                del self.tokens[token_id]
        elif kind == "token_added":
            self.tokens[d["token"]] = {"key": user_key(d["user"]), "label": d.get("label"), "hash": d.get("hash"),
                                       "created_by": actor, "created_at": at, "revoked_at": None}
            if "hash" not in d:
                self.unhashed.add(d["token"])
        elif kind == "token_revoked":
            if d["token"] in self.tokens:
                self.tokens[d["token"]]["revoked_at"] = at

    def differences(self, users: dict[str, dict[str, Any]], queue_roles: dict[tuple[str, str], str],
                    tokens: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row of the stored tables that the events do not explain, and each row the events
        made that is missing."""
        out: list[dict[str, Any]] = []
        for key in sorted(users.keys() | self.users.keys()):
            out += _rows("users", key, users.get(key), self.users.get(key), USER_COLUMNS)
        for pair in sorted(queue_roles.keys() | self.queue_roles.keys()):
            out += _rows("user_queue_roles", f"{pair[0]} on {pair[1]}", _role(queue_roles.get(pair)),
                         _role(self.queue_roles.get(pair)), ("role",))
        for token_id in sorted(tokens.keys() | self.tokens.keys()):
            columns = tuple(c for c in TOKEN_COLUMNS if c != "hash" or token_id not in self.unhashed)
            out += _rows("api_tokens", token_id, tokens.get(token_id), self.tokens.get(token_id), columns)
        return out


def _role(role: str | None) -> dict[str, Any] | None:
    return None if role is None else {"role": role}


def _rows(table: str, key: Any, stored: dict[str, Any] | None, rebuilt: dict[str, Any] | None,
          columns: tuple[str, ...]) -> list[dict[str, Any]]:
    if stored is None:
        return [{"table": table, "row": key, "column": "*", "stored": None, "rebuilt": "a row"}]
    if rebuilt is None:
        return [{"table": table, "row": key, "column": "*", "stored": "a row", "rebuilt": None}]
    return [{"table": table, "row": key, "column": c, "stored": stored[c], "rebuilt": rebuilt[c]}
            for c in columns if stored[c] != rebuilt[c]]


def describe(d: dict[str, Any]) -> str:
    """A difference as one line a person can act on: which row, which column, stored vs rebuilt."""
    from .lifecycle import ref

    where = ref(d["ticket"]) if "ticket" in d else f"{d['table']} {d['row']}"
    if d["column"] == "*":
        made = d["stored"] is not None
        return f"{where}: " + ("exists, but no event made it" if made else "was deleted, but its events say it exists")
    return f"{where}: {d['column']} is {d['stored']!r}, its events say {d['rebuilt']!r}"


APPROVAL_KINDS = ("approval_requested", "approval_voted", "approval_expired", "request_cancelled")


class Approvals:
    """Catalog requests' approvals and votes as their events make them: who each stage asked and
    how many must approve, each vote, and so each stage's state."""

    def __init__(self) -> None:
        self.approvals: dict[int, dict[str, Any]] = {}
        self.votes: dict[tuple[int, str], str] = {}

    def apply(self, kind: str, data: str | dict[str, Any]) -> None:
        d = orjson.loads(data) if isinstance(data, str) else data
        if kind == "request_cancelled":
            for approval_id in d.get("approvals") or ():
                if approval_id in self.approvals:
                    self.approvals[approval_id]["state"] = "cancelled"
            return
        approval = int(d.get("approval") or 0)
        if kind == "approval_requested":
            self.approvals[approval] = {"approvers": list(d.get("approvers") or []), "need": d.get("need"),
                                        "state": "pending"}
            return
        a = self.approvals.get(approval)
        if a is None:
            return
        if kind == "approval_expired":
            a["state"] = "expired"
        elif kind == "approval_voted":
            self.votes[(approval, user_key(str(d.get("approver"))))] = str(d.get("decision"))
            if d.get("decision") == "rejected":
                a["state"] = "rejected"
            elif d.get("approvals", 0) >= (a["need"] or 0):
                a["state"] = "approved"

    def differences(self, approvals: dict[int, dict[str, Any]], votes: dict[tuple[int, str], str]
                    ) -> list[dict[str, Any]]:
        """Each stored approval or vote its events do not explain, and each one they made that is missing."""
        out: list[dict[str, Any]] = []
        for approval_id in sorted(approvals.keys() | self.approvals.keys()):
            out += _rows("approvals", approval_id, approvals.get(approval_id), self.approvals.get(approval_id),
                         ("approvers", "need", "state"))
        for key in sorted(votes.keys() | self.votes.keys()):
            stored, rebuilt = votes.get(key), self.votes.get(key)
            out += _rows("approval_votes", f"{key[1]} on approval {key[0]}",
                         None if stored is None else {"decision": stored},
                         None if rebuilt is None else {"decision": rebuilt}, ("decision",))
        return out
