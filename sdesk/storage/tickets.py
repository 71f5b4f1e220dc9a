"""Tickets: reading them, and the lifecycle writes on one ticket (move, comment, update,
link), each in one transaction of the store that appends the events explaining it."""

from __future__ import annotations

import builtins  # `list` in this class's annotations is its method
import functools
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson

from ..domain import lifecycle
from ..domain.lifecycle import more_urgent
from ..domain.redact import might_hold_secrets, redact_strings
from ..errors import BadInput, Conflict, NotFound
from .migrations import OPEN_SQL
from .rows import JSON_FIELDS, Db, Tx, event_row, insert_rows, ticket_row, to_json

CREATE_FIELDS = (
    "kind", "title", "description", "priority", "impact", "urgency", "category", "service",
    "ci", "queue", "team", "requester", "fingerprint", "assignee", "parent_id", "suppressed", "runbook", "group_key",
)

TEXT_FIELDS = ("title", "description", "category", "service", "ci", "queue", "requester")

UPDATE_FIELDS = (
    "title", "description", "kind", "priority", "impact", "urgency", "category", "service",
    "ci", "queue", "team", "requester", "labels", "tags",
)

SETTABLE = frozenset((*CREATE_FIELDS, *JSON_FIELDS))  # what a created event's `set` may hold

@functools.lru_cache(maxsize=64)
def _ticket_columns(fields: tuple[str, ...]) -> tuple[str, str]:
    return (f"tickets (id, {', '.join(fields)}, labels, tags, status, source, created_at, updated_at, occurrences)",
            f"(?, {', '.join('?' * len(fields))}, ?, ?, 'new', ?, ?, ?, ?)")

SORT_COLUMNS = {
    "id": "id", "priority": "priority", "status": "status", "created": "created_at",
    "updated": "updated_at", "title": "title", "assignee": "assignee", "queue": "queue",
    "service": "service", "kind": "kind",
}


ALERT_COLUMNS = ("alerts (source, fingerprint, status, action, labels, annotations, received_at, ticket_id)",
                 "(?, ?, ?, ?, ?, ?, ?, ?)")


def ticket_text(t: dict[str, Any]) -> str:
    """The free text of a new ticket, in one string for the secrets pre-check (a flat join is
    cheaper than walking the dict, at one call per ticket stored)."""
    parts = [v for v in t.values() if v.__class__ is str]
    labels = t.get("labels")
    if labels:
        parts += labels  # the keys: a label's name can hold a secret too
        parts += labels.values()
    parts += t.get("tags") or ()
    return "\n".join(parts)


class TicketStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    def get(self, *, ticket_id: int) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return ticket_row(row) if row else None
    def brief(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """What a list of search results shows of each ticket, by id (missing ids left out)."""
        out: dict[int, dict[str, Any]] = {}
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for r in self.db.conn.execute(
                    "SELECT id, kind, title, status, priority, ci, service, queue, resolution, resolution_code, "
                    "created_at, resolved_at, problem_id FROM tickets "
                    f"WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                out[r[0]] = dict(zip(("id", "kind", "title", "status", "priority", "ci", "service", "queue", "resolution",
                                      "resolution_code", "created_at", "resolved_at", "problem_id"), r))
        return out

    def get_or_raise(self, *, ticket_id: int) -> dict[str, Any]:
        ticket = self.get(ticket_id=ticket_id)
        if ticket is None:
            raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
        return ticket
    def events(self, *, ticket_id: int) -> list[dict[str, Any]]:
        rows = self.db.conn.execute("SELECT * FROM events WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [event_row(r) for r in rows]
    def last_event_id(self) -> int:
        """The id of the newest event ever written (0 on a new desk): a cheap "has anything
        changed?" for screens that poll (one row read)."""
        return self.db.dialect.last_id(self.db.conn, "events")
    @property
    def pushes_changes(self) -> bool:
        """Whether this desk tells a listening store of ticket changes (PostgreSQL: listen, then
        changes); else a screen polls last_event_id (SQLite)."""
        return self.db.dialect.pushes_changes
    def listen(self) -> int:
        """From now on, have this store told of every ticket made, changed or purged and every event
        about one that anyone commits (read with changes(); where pushes_changes). Returns
        last_event_id() as of then: a screen that loaded at an older one missed a change. The store
        is then for waiting only: give it a connection of its own (Desk.connect)."""
        self.db.dialect.listen(self.db.conn)
        return self.last_event_id()
    def changes(self, *, timeout: float) -> set[int]:
        """The ids of the tickets changed since the last call (after listen()), waiting up to
        `timeout` seconds for the first change; empty when none came. The ids only: read the
        tickets for anything else."""
        return self.db.dialect.changes(self.db.conn, timeout)
    def children(self, *, ticket_id: int) -> list[dict[str, Any]]:
        rows = self.db.conn.execute("SELECT * FROM tickets WHERE parent_id = ? ORDER BY id", (ticket_id,))
        return [ticket_row(r) for r in rows]
    def list(
        self,
        *,
        statuses: Iterable[str] = (),
        open_only: bool = True,
        queue: str | None = None,
        priorities: Iterable[str] = (),
        assignee: str | None = None,
        service: str | None = None,
        ci: str | None = None,
        problem_id: int | None = None,
        tag: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        suppressed: bool | None = None,
        sort: str | None = None,
        limit: int | None = 50,
        after: tuple[str, int] | None = None,
        unassigned: bool = False,
        count_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Tickets matching every filter given. The default order is the work queue (priority,
        then oldest first) when only open tickets are asked for, and newest first otherwise.
        `suppressed`: True for only the tickets a silence or rule kept out of the queue, False
        for none of them (the queue), None for both. `after` (priority, id): the page after that
        ticket, in the queue order."""
        where: list[str] = [] if suppressed is None else ["suppressed IS NOT NULL" if suppressed else "suppressed IS NULL"]
        args: list[Any] = []
        statuses, priorities = list(statuses), list(priorities)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += statuses
        elif open_only:
            where.append(OPEN_SQL)
        if priorities:
            where.append(f"priority IN ({','.join('?' * len(priorities))})")
            args += priorities
        for column, value in (("queue", queue), ("assignee", assignee), ("service", service), ("ci", ci),
                              ("problem_id", problem_id), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if tag is not None:
            where.append(self.db.dialect.json_array_has("tickets.tags", "?"))
            args.append(tag)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            like = self.db.dialect.like  # ASCII letters in any case, as SQLite's LIKE
            where.append(f"(title {like} ? ESCAPE '\\' OR description {like} ? ESCAPE '\\')")
            args += [pattern, pattern]
        if unassigned:
            where.append("assignee IS NULL")
        if after is not None:  # the next page of the queue order (priority, id), by the index
            where.append("(priority, id) > (?, ?)")
            args += list(after)
        if count_only:  # count(): how many match (up to `limit`), not which
            return self.db.conn.execute("SELECT count(*) FROM (SELECT 1 FROM tickets" + (
                " WHERE " + " AND ".join(where) if where else "") + " LIMIT ?) AS matched", [*args, limit]).fetchone()[0]
        queue_view = all(s in lifecycle.OPEN for s in statuses) if statuses else open_only
        order = self._order_by(sort or ("priority,id" if queue_view else "-id"))
        sql = "SELECT * FROM tickets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [ticket_row(r) for r in self.db.conn.execute(sql, args)]
    @staticmethod
    def _order_by(sort: str) -> str:
        terms = []
        for item in sort.split(","):
            name = item.strip()
            desc = name.startswith("-")
            column = SORT_COLUMNS.get(name.lstrip("-"))
            if column is None:
                raise BadInput(f"--sort: unknown field {name.lstrip('-')!r}; choose from {', '.join(SORT_COLUMNS)}")
            terms.append(f"{column} DESC" if desc else column)
        if "id" not in {t.split()[0] for t in terms}:
            terms.append("id DESC" if sort.strip().startswith("-") else "id")
        return ", ".join(terms)
    COUNT_CAP = 100_000
    def count(self, **filters: Any) -> int:
        """How many tickets match the filters of list() (a capped list says "50 of 50,000"),
        counted up to COUNT_CAP + 1: a bounded cost on a desk of millions."""
        return self.list(**filters, limit=self.COUNT_CAP + 1, count_only=True)  # type: ignore[return-value]
    def count_alerts(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
    def count_by(self, field: str) -> dict[str, int]:
        column = SORT_COLUMNS[field]
        rows = self.db.conn.execute(f"SELECT {column}, count(*) FROM tickets GROUP BY {column} ORDER BY {column}")
        return {str(k): n for k, n in rows}
    def recent_on(self, *, ci: str, since: str, limit: int) -> builtins.list[dict[str, Any]]:
        """Tickets on a CI that are open or were resolved since `since`, newest first."""
        rows = self.db.conn.execute(
            f"SELECT id, title, status, resolved_at FROM tickets WHERE ci = ? "
            f"AND ({OPEN_SQL} OR resolved_at >= ?) ORDER BY id DESC LIMIT ?", (ci, since, limit))
        return [dict(r) for r in rows]
    def context(self, *, ticket_id: int) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT data FROM ticket_context WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return orjson.loads(row[0]) if row else None
    def move(self, *, ticket_id: int, action: str, actor: str, assignee: str | None = None,
             resolution: str | None = None, code: str | None = None) -> dict[str, Any]:
        """Apply a lifecycle action (see lifecycle.MOVES) and record why."""
        with self.db.write(actor) as tx:
            self._move(tx, self._current(tx, ticket_id), action, assignee=assignee, resolution=resolution, code=code)
        return self.get_or_raise(ticket_id=ticket_id)
    def _move(self, tx: Tx, t: dict[str, Any], action: str, *, assignee: str | None = None,
              resolution: str | None = None, code: str | None = None, extra: dict[str, Any] | None = None,
              claim: bool = True) -> None:
        """`claim`: an ack or start by a person assigns an unassigned ticket to them; False for a
        source's ack, which leaves it unassigned."""
        ticket_id = t["id"]
        target = lifecycle.next_status(t["status"], action, ticket_id=ticket_id)
        at = tx.at
        sets: dict[str, Any] = {"status": target, "updated_at": at}
        data: dict[str, Any] = {"from": t["status"], "to": target, "action": action}
        if action == "assign":
            if not assignee:
                raise BadInput("assign: a user is required")
            # Every way to assign (the CLI with or without --force, --auto, the TUI) ends here.
            assignee = lifecycle.check_name(assignee, "assign")
            sets["assignee"] = assignee
            data["assignee"] = assignee
            if t["assignee"]:
                data["previous_assignee"] = t["assignee"]
        if action in ("ack", "start"):
            sets["acknowledged_at"] = t["acknowledged_at"] or at
            if not t["assignee"]:
                sets["assignee"] = tx.actor if claim else None
                data["assignee"] = sets["assignee"]  # the event says whom it assigned (audit verify rebuilds it)
        if action == "resolve":
            if not resolution or lifecycle.blank(resolution):
                raise BadInput("resolve: --resolution must say what fixed it")
            resolution = tx.clean(resolution.strip(), ticket_id)
            sets.update(resolved_at=at, resolution=resolution, resolution_code=code)
            data.update(resolution=resolution, code=code)
        if action == "close":
            sets["closed_at"] = at
        if action == "reopen":
            if t["fingerprint"]:
                holder = self.open_fingerprints(tx.conn, fingerprints={t["fingerprint"]}).get(t["fingerprint"])
                if holder:
                    raise Conflict(f"cannot reopen {lifecycle.ref(ticket_id)}: {lifecycle.ref(holder[0])} is open "
                                   "with the same fingerprint; work that one (or link this one under it)")
            sets.update(reopen_count=t["reopen_count"] + 1, resolved_at=None, closed_at=None)
        self._set(tx, ticket_id, sets)
        tx.event(ticket_id, "assigned" if action == "assign" else "status_changed", {**data, **(extra or {})})
        if action in ("resolve", "close"):
            self._cancel_request(tx, ticket_id)
        if action == "reopen":
            self._reopened_after_runbook(tx, ticket_id)
    def comment(self, *, ticket_id: int, text: str, actor: str, acting: str | None = None) -> None:
        """A comment; `acting`: a requester's own words on the portal (portal:ADDRESS), written by
        the serving account, as a mail reply is by the receiving one."""
        if lifecycle.blank(text):  # only spaces, or only U+FEFF: nothing to read
            raise BadInput("comment: the text is empty")
        with self.db.write(actor) as tx, tx.acting(acting) as delivered:
            self._current(tx, ticket_id)
            self._set(tx, ticket_id, {"updated_at": tx.at})
            tx.event(ticket_id, "commented", {"text": tx.clean(text, ticket_id), **delivered})

    def reply(self, *, ticket_id: int, text: str, actor: str) -> int:
        """A public answer (a `replied` event): notify.yaml's rules send it to the requester and
        watchers, in this transaction's outbox rows. Returns how many messages it queued."""
        if lifecycle.blank(text):
            raise BadInput("reply: the text is empty")
        with self.db.write(actor) as tx:
            self._current(tx, ticket_id)
            self._set(tx, ticket_id, {"updated_at": tx.at})
            tx.event(ticket_id, "replied", {"text": tx.clean(text, ticket_id)})
        return tx.queued

    def update(self, *, ticket_id: int, changes: dict[str, Any], actor: str,
               set_labels: dict[str, str] | None = None, remove_labels: Collection[str] = (),
               add_tags: Iterable[str] = (), remove_tags: Collection[str] = ()) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Change fields; records old and new values of what really changed (nothing, no event).
        Labels and tags may be edited rather than replaced: the edits apply to the ticket as this
        transaction reads it, so two concurrent edits both stay. Returns the ticket and the fields
        that changed."""
        unknown = set(changes) - set(UPDATE_FIELDS)
        if unknown:
            raise BadInput(f"update: unknown field {sorted(unknown)[0]!r}")
        edits_labels, edits_tags = bool(set_labels or remove_labels), bool(add_tags or remove_tags)
        if (edits_labels and "labels" in changes) or (edits_tags and "tags" in changes):
            raise BadInput("update: labels or tags are either replaced or edited, not both")
        with self.db.write(actor) as tx:
            t = self._current(tx, ticket_id)
            if edits_labels:
                labels = {k: v for k, v in t["labels"].items() if k not in remove_labels}
                changes = {**changes, "labels": {**labels, **(set_labels or {})}}
            if edits_tags:
                tags = [x for x in t["tags"] if x not in remove_tags]
                changes = {**changes, "tags": tags + [x for x in dict.fromkeys(add_tags) if x not in tags]}
            changes = tx.clean(changes, ticket_id)
            diff = {f: [t[f], v] for f, v in changes.items() if t[f] != v}
            if diff:
                sets = {f: to_json(v) if f in JSON_FIELDS else v
                        for f, (_, v) in diff.items()}
                self._set(tx, ticket_id, {**sets, "updated_at": tx.at})
                tx.event(ticket_id, "updated", diff)
                if "priority" in diff:
                    self.raise_parent(tx, ticket_id)
                corrected: dict[str, Any] = {f: diff[f] for f in ("category", "queue")
                                             if f in diff and diff[f][0] is not None}
                if corrected and self._was_triaged(tx, ticket_id):
                    # A person overruling triage: the reassignment rate is how often triage is wrong.
                    tx.event(ticket_id, "triage_corrected", corrected)
        return self.get_or_raise(ticket_id=ticket_id), tuple(diff)
    @staticmethod
    def _was_triaged(tx: Tx, ticket_id: int) -> bool:
        return tx.conn.execute(
            "SELECT 1 FROM events WHERE ticket_id = ? AND (kind = 'triaged' OR (kind = 'created' "
            f"AND {tx.dialect.json_get('data', '$.triage')} IS NOT NULL)) LIMIT 1",
            (ticket_id,)).fetchone() is not None
    def link(self, *, ticket_id: int, parent_id: int, actor: str) -> None:
        if ticket_id == parent_id:
            raise BadInput(f"cannot link {lifecycle.ref(ticket_id)} to itself")
        with self.db.write(actor) as tx:
            t = self._current(tx, ticket_id)
            self._current(tx, parent_id)
            ancestor: int | None = parent_id
            while ancestor is not None:
                if ancestor == ticket_id:
                    raise Conflict(f"cannot link {lifecycle.ref(ticket_id)} under {lifecycle.ref(parent_id)}: "
                                   "that would make a cycle")
                ancestor = tx.conn.execute("SELECT parent_id FROM tickets WHERE id = ?", (ancestor,)).fetchone()[0]
            self._set(tx, ticket_id, {"parent_id": parent_id, "updated_at": tx.at})
            tx.event(ticket_id, "linked", {"parent_id": parent_id, "previous_parent_id": t["parent_id"]})
            self.raise_parent(tx, ticket_id)
    def _current(self, tx: Tx, ticket_id: int) -> dict[str, Any]:
        """The ticket a write changes; the actor's role on its queue must allow the write."""
        row = tx.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
        tx.check(row["queue"], ticket_id)
        return ticket_row(row)
    @staticmethod
    def _cancel_request(tx: Tx, ticket_id: int) -> None:
        """A catalog request still waiting for approval ends with its ticket (an agent resolved
        it): nobody is asked any more, and reopening it does not wake a stale expiry. Here, not in
        storage/requests.py, which builds on this part: every resolution passes through _move."""
        pending = [a for (a,) in tx.conn.execute("SELECT id FROM approvals WHERE ticket_id = ? AND state = 'pending'",
                                                 (ticket_id,))]
        if not pending:
            return
        tx.conn.execute("UPDATE approvals SET state = 'cancelled', decided_at = ? WHERE ticket_id = ? AND state = 'pending'",
                        (tx.at, ticket_id))
        tx.conn.execute("UPDATE requests SET state = 'cancelled', stage = NULL, updated_at = ? WHERE ticket_id = ?",
                        (tx.at, ticket_id))
        tx.event(ticket_id, "request_cancelled", {"approvals": pending})

    @staticmethod
    def _set(tx: Tx, ticket_id: int, sets: dict[str, Any]) -> None:
        # Identifier columns too (an assignee given as free text): the event saying the change is
        # redacted, and the row must say the same (audit verify rebuilds it from the events).
        sets = {c: tx.clean(v, ticket_id) if v.__class__ is str else v for c, v in sets.items()}
        assignments = ", ".join(f"{column} = ?" for column in sets)
        tx.conn.execute(f"UPDATE tickets SET {assignments} WHERE id = ?", (*sets.values(), ticket_id))

    def raise_parent(self, tx: Tx, ticket_id: int) -> None:
        """Raise the open, unacknowledged incidents above a ticket to its priority where it is more
        urgent (a `priority_raised` event on each), after intake, a link, or a change of its
        priority. An acknowledged parent stops the climb: the child pages on its own."""
        child = tx.conn.execute("SELECT priority, parent_id FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        priority, parent, seen = child[0], child[1], {ticket_id}
        while parent is not None and parent not in seen:  # (link refuses cycles; bounded all the same)
            seen.add(parent)
            row = tx.conn.execute(f"SELECT priority, parent_id FROM tickets WHERE id = ? AND {OPEN_SQL} "
                                  "AND acknowledged_at IS NULL", (parent,)).fetchone()
            if row is None:
                return
            if more_urgent(priority, row[0]):
                tx.conn.execute("UPDATE tickets SET priority = ?, updated_at = ? WHERE id = ?", (priority, tx.at, parent))
                tx.event(parent, "priority_raised", {"priority": [row[0], priority], "child": ticket_id})
            parent = row[1]

    def _reopened_after_runbook(self, tx: Tx, ticket_id: int) -> None:
        """A ticket that a runbook resolved, reopened: that run misfired."""
        row = tx.conn.execute("SELECT id, runbook FROM runbook_runs WHERE ticket_id = ? AND resolved = 1 "
                              "AND misfire IS NULL ORDER BY id DESC LIMIT 1", (ticket_id,)).fetchone()
        if row is not None:
            tx.conn.execute("UPDATE runbook_runs SET misfire = 'reopened' WHERE id = ?", (row[0],))
            tx.event(ticket_id, "automation_misfire", {"run": row[0], "runbook": row[1], "reason": "reopened"})

    def open_fingerprints(self, conn: sqlite3.Connection, *, fingerprints: set[str]) -> dict[str, builtins.list]:
        """fingerprint -> [id, occurrences, suppressed] of the open tickets that carry one of them."""
        found: dict[str, list] = {}
        for condition, part in self.db.dialect.one_of("fingerprint", list(fingerprints)):
            rows = conn.execute(
                f"SELECT fingerprint, id, occurrences, suppressed FROM tickets WHERE {condition} AND {OPEN_SQL}", part)
            found.update((fp, [tid, n, sup]) for fp, tid, n, sup in rows)
        return found

    # -- intake's writes: the intake service decides, these write (inside its transaction) ----

    @staticmethod
    def next_id(tx: Tx) -> int:
        """The id the next new ticket gets: ids are intake's to give while it holds the write lock."""
        return tx.dialect.last_id(tx.conn, "tickets") + 1

    @staticmethod
    def insert_new(tx: Tx, fields: tuple[str, ...], *, rows: builtins.list[tuple]) -> None:
        """New tickets' rows: (id, *fields, labels, tags, source, created_at, updated_at, occurrences).
        The INSERT names only the columns the batch sets: Python's sqlite3 binds each None
        through an adapter lookup, which cost more than the rest of an alert's ticket row."""
        insert_rows(tx.conn, _ticket_columns(fields), rows, tx.dialect)
        if rows:
            tx.dialect.ids_given(tx.conn, "tickets", max(row[0] for row in rows))

    @staticmethod
    def add_contexts(tx: Tx, contexts: builtins.list[tuple[int, str]]) -> None:
        """(ticket id, context JSON): what enrichment found for new tickets."""
        tx.conn.executemany("INSERT INTO ticket_context (ticket_id, data) VALUES (?, ?)", contexts)

    @staticmethod
    def count_occurrences(tx: Tx, counts: builtins.list[tuple[int, int]]) -> None:
        """(ticket id, occurrences so far) for open tickets an alert arrived for again."""
        tx.conn.executemany("UPDATE tickets SET occurrences = ?, updated_at = ? WHERE id = ?",
                            [(n, tx.at, ticket_id) for ticket_id, n in counts])

    @staticmethod
    def insert_alerts(tx: Tx, rows: builtins.list[tuple]) -> None:
        """Every alert as it arrived (ALERT_COLUMNS), with what intake did with it."""
        insert_rows(tx.conn, ALERT_COLUMNS, rows, tx.dialect)

    @staticmethod
    def queue_of(tx: Tx, ticket_id: int) -> str | None:
        row = tx.conn.execute("SELECT queue FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return row[0] if row else None

    def exists(self, ticket_id: int) -> bool:
        return self.db.conn.execute("SELECT 1 FROM tickets WHERE id = ?", (ticket_id,)).fetchone() is not None

    def create(self, tx: Tx, t: dict[str, Any], *, source: str) -> int:
        """Open one ticket as given, without enrichment or triage (a problem record), with the
        `created` event audit verify rebuilds it from, as intake writes it."""
        ticket_id = self.next_id(tx)
        redacted: list[str] = []
        if might_hold_secrets(ticket_text(t)):
            clean, redacted = redact_strings(t, False)
            if redacted:
                t = {**clean, "fingerprint": t.get("fingerprint"), "requester": t.get("requester")}
        created = {k: v for k, v in t.items() if v is not None}
        tx.check(t.get("queue"))
        tx.event(ticket_id, "created", {**created, "source": source}, clean=True)
        if redacted:
            tx.event(ticket_id, "redacted", {"kinds": sorted(set(redacted))}, clean=True)
        fields = tuple(f for f in CREATE_FIELDS if f in created)
        self.insert_new(tx, fields, rows=[(ticket_id, *map(t.get, fields), to_json(t.get("labels") or {}),
                                      to_json(t.get("tags") or []), source, tx.at, tx.at, 1)])
        return ticket_id
