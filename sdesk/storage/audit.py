"""The audit trail: verifying the hash chain, reading it, anchoring it, and purging old tickets
without breaking it.

Every event's hash covers the previous hash and its own row (store.event_hash). `sdesk purge`
deletes closed tickets past retention with their events, keeping each purged event's place in
the chain (id, ticket, previous hash, hash) as a tombstone, and appends a `purged` event that
names the tickets and event ids it removed and the chain's head before it. The chain then still
verifies from the first event to the last, and an anchor taken before the purge still checks
against the tombstone.
"""

from __future__ import annotations

import bisect
import heapq
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from ..domain import clock
from ..errors import AuditBroken
from .rows import Db, event_row

if TYPE_CHECKING:
    from .dialect import Dialect
    from .tickets import TicketStore


# Rows kept when their ticket is purged, without it: a message id, so that a mailbox read again
# does not bring the purged ticket back.
UNLINKED = frozenset({"mail_messages"})


def ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as [first, last] runs: what a purge names, compactly."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def _within(ranges_: list[list[int]], i: int) -> bool:
    at = bisect.bisect_right(ranges_, [i, float("inf")]) - 1
    return at >= 0 and ranges_[at][0] <= i <= ranges_[at][1]




class AuditStore:
    def __init__(self, db: Db, *, tickets: TicketStore) -> None:
        self.db = db
        self.tickets = tickets

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction around several reads: what verify checks is one state of the
        desk, whatever other processes commit meanwhile (otherwise an event appended between
        reading the chain and its counter would look like a deleted one). Inside a transaction
        already (import's), that one."""
        with self.db.dialect.reading(self.db.conn):
            yield

    def verify_chain(self) -> tuple[int, str, int]:
        """Check every event against the chain: (events checked, head hash, tombstones passed);
        raises AuditBroken naming the first event altered, inserted or deleted."""
        with self.snapshot():
            return self._verify_chain()

    def _verify_chain(self) -> tuple[int, str, int]:
        from .rows import GENESIS, event_hash

        purges = [(pid, orjson.loads(data)) for pid, data in
                  self.db.conn.execute("SELECT id, data FROM events WHERE kind = 'purged' ORDER BY id")]
        heads = {p["head_before"]["event"]: (pid, p["head_before"]["hash"]) for pid, p in purges}
        gone: dict[int, bool] = {}  # ticket id -> no longer there (as a purged ticket must be)
        prev, expected_id, count, tombstones = GENESIS, 1, 0, 0
        for event_id, ticket_id, at, actor, kind, data, prev_hash, stored, login in self._chain():
            if event_id != expected_id:
                raise AuditBroken(f"audit chain broken: event {expected_id} is missing (deleted)")
            if prev_hash != prev:
                raise AuditBroken(f"audit chain broken at event {event_id}: it does not follow event {event_id - 1}")
            if kind is None:  # a tombstone: its hash is taken as recorded, if a later purge names it
                if not any(pid > event_id and _within(p["event_ranges"], event_id) and
                           _within(p["ticket_ranges"], ticket_id) and event_id <= p["head_before"]["event"]
                           for pid, p in purges) or not gone.setdefault(ticket_id, self.tickets.get(ticket_id=ticket_id) is None):
                    raise AuditBroken(f"audit chain broken: event {event_id} was deleted without a purge record")
                tombstones += 1
            elif event_hash(prev, event_id, ticket_id, at, actor, kind, data, login) != stored:
                raise AuditBroken(f"audit chain broken at event {event_id}: its row was altered")
            else:
                count += 1
            if event_id in heads and heads[event_id][1] != stored:
                raise AuditBroken(f"audit chain broken: purge event {heads[event_id][0]} names a head the chain "
                                  f"never had (event {event_id})")
            prev, expected_id = stored, expected_id + 1
        if self.db.dialect.last_id(self.db.conn, "events") >= expected_id:
            raise AuditBroken(f"audit chain broken: event {expected_id} is missing (deleted)")
        return count, prev, tombstones

    def verify_tables(self, keep: int = 1000) -> dict[str, Any]:
        """Rebuild every ticket, user, queue role and API token from its events (projection.py)
        and compare with the stored rows: {"differences": the first `keep` (ticket or table, row,
        column, stored, rebuilt), "count": how many in all, "tickets": rows checked, "not_compared":
        column -> rows whose events are too old to rebuild it}. Tickets are read in id order
        beside their events in (ticket, id) order, one ticket at a time."""
        with self.snapshot():
            return self._verify_tables(keep)

    def _verify_tables(self, keep: int) -> dict[str, Any]:
        from ..domain import projection as p

        differences: list[dict[str, Any]] = []
        count, checked = 0, 0
        not_compared: dict[str, int] = {}

        def differ(entry: dict[str, Any]) -> None:
            nonlocal count
            count += 1
            if len(differences) < keep:
                if isinstance(entry["stored"], bytes):  # a BLOB written by hand: shown, not decoded
                    entry["stored"] = f"<{len(entry['stored'])} bytes>"
                differences.append(entry)

        kinds = ", ".join(f"'{k}'" for k in p.TICKET_KINDS)
        events = self._tuples(
            "SELECT ticket_id, kind, at, actor, CASE WHEN kind IN ('commented', 'replied', 'unsuppressed') THEN NULL "
            f"ELSE data END FROM events WHERE ticket_id IS NOT NULL AND kind IN ({kinds}) ORDER BY ticket_id, id")
        columns = ", ".join(p.TICKET_COLUMNS)
        tickets = self._tuples(f"SELECT id, {columns} FROM tickets ORDER BY id")
        # Merge the two id-ordered streams: a ticket's events come as one group.
        groups = groupby(events, key=itemgetter(0))
        group = next(groups, None)
        for row in tickets:
            ticket_id = row[0]
            while group is not None and group[0] < ticket_id:  # events of a ticket whose row is gone
                differ({"ticket": group[0], "column": "*", "stored": None, "rebuilt": "a row"})
                group = next(groups, None)
            rebuilt = p.Rebuilt()
            if group is not None and group[0] == ticket_id:
                for _, kind, at, actor, data in group[1]:
                    rebuilt.apply(kind, at, actor, data)
                group = next(groups, None)
            checked += 1
            for column, value, expected in p.ticket_differences(row[1:], rebuilt):
                differ({"ticket": ticket_id, "column": column, "stored": value, "rebuilt": expected})
            if rebuilt.unknown and rebuilt.row is not None:
                for column in rebuilt.unknown:
                    not_compared[column] = not_compared.get(column, 0) + 1
        while group is not None:
            differ({"ticket": group[0], "column": "*", "stored": None, "rebuilt": "a row"})
            group = next(groups, None)

        accounts = p.Accounts()
        kinds = ", ".join(f"'{k}'" for k in p.USER_KINDS)
        for kind, at, actor, data in self.db.conn.execute(
                f"SELECT kind, at, actor, data FROM events WHERE ticket_id IS NULL AND kind IN ({kinds}) ORDER BY id"):
            accounts.apply(kind, at, actor, data)
        users = {r[0]: dict(zip(p.USER_COLUMNS, r[1:])) for r in self.db.conn.execute(
            f"SELECT key, {', '.join(p.USER_COLUMNS)} FROM users")}
        queue_roles = {(k, q): r for k, q, r in self.db.conn.execute("SELECT key, queue, role FROM user_queue_roles")}
        tokens = {r[0]: dict(zip(p.TOKEN_COLUMNS, r[1:])) for r in self.db.conn.execute(
            f"SELECT id, {', '.join(p.TOKEN_COLUMNS)} FROM api_tokens")}
        for entry in accounts.differences(users, queue_roles, tokens):
            differ(entry)
        # Catalog requests' approvals and votes: who decided what is on the chain.
        approvals = p.Approvals()
        kinds = ", ".join(f"'{k}'" for k in p.APPROVAL_KINDS)
        for kind, data in self.db.conn.execute(f"SELECT kind, data FROM events WHERE kind IN ({kinds}) ORDER BY id"):
            approvals.apply(kind, data)
        stored = {r[0]: {"approvers": orjson.loads(r[1]), "need": r[2], "state": r[3]} for r in self.db.conn.execute(
            "SELECT id, approvers, need, state FROM approvals")}
        votes = {(r[0], r[1]): r[2] for r in self.db.conn.execute("SELECT approval_id, approver, decision FROM approval_votes")}
        for entry in approvals.differences(stored, votes):
            differ(entry)
        # A column a later migration adds, that the projection was not taught: said, not hidden.
        for column in self.db.dialect.table_columns(self.db.conn, "tickets"):
            if column != "id" and column not in p.TICKET_DEFAULTS and checked:
                not_compared[column] = checked
        if accounts.unhashed:
            not_compared["api_tokens.hash"] = len(accounts.unhashed & tokens.keys())
        return {"differences": differences, "count": count, "tickets": checked, "users": len(users),
                "tokens": len(tokens), "not_compared": dict(sorted(not_compared.items()))}

    def verify(self) -> tuple[int, str, int]:
        """The chain, then every table rebuilt from it (what import and restore check first):
        verify_chain's answer, or AuditBroken naming the first difference."""
        from ..domain.projection import describe

        with self.snapshot():
            chain = self.verify_chain()
            tables = self.verify_tables(keep=1)
        if tables["count"]:
            raise AuditBroken(f"{tables['count']} stored values differ from what their events say, "
                              f"first {describe(tables['differences'][0])}")
        return chain

    def _tuples(self, sql: str) -> sqlite3.Cursor:
        """Rows as plain tuples (the store's sqlite3.Row costs a third more over a whole table)."""
        cursor = self.db.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql)

    def _chain(self) -> Iterator[tuple]:
        """Events and tombstones in id order (a tombstone's kind is None)."""
        events = self._tuples("SELECT id, ticket_id, at, actor, kind, data, prev_hash, hash, login FROM events ORDER BY id")
        if self.db.conn.execute("SELECT 1 FROM event_tombstones LIMIT 1").fetchone() is None:
            yield from events
            return
        tombstones = self.db.conn.execute(
            "SELECT id, ticket_id, NULL, NULL, NULL, NULL, prev_hash, hash, NULL FROM event_tombstones ORDER BY id")
        yield from heapq.merge(events, tombstones, key=lambda row: row[0])

    def chain_hash(self, event_id: int) -> str | None:
        """The hash of event `event_id` (or of its tombstone)."""
        row = self.db.conn.execute("SELECT hash FROM events WHERE id = ? UNION ALL "
                                "SELECT hash FROM event_tombstones WHERE id = ?", (event_id, event_id)).fetchone()
        return row[0] if row else None

    def anchor(self) -> dict[str, Any]:
        """The chain's head, for an outside system to keep: proof of the history up to now."""
        row = self.db.conn.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        return {"event": row[0] if row else 0, "hash": row[1] if row else None, "at": clock.now_iso()}

    def audit_log(self, *, actor: str | None = None, since: str | None = None, kind: str | None = None,
                  ticket_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest `limit` events that match, oldest first."""
        where, args = [], []
        for column, value in (("actor", actor), ("kind", kind), ("ticket_id", ticket_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since:
            where.append("at >= ?")
            args.append(since)
        sql = (f"SELECT id, ticket_id, at, actor, login, kind, data FROM events "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC LIMIT ?")
        events = [event_row(r) for r in reversed(self.db.conn.execute(sql, (*args, limit)).fetchall())]
        # A permission_denied event stands for every refusal of its actor and login that minute.
        denied = [e for e in events if e["kind"] == "permission_denied"]
        if denied:
            counts = self.refusal_counts([e["id"] for e in denied])
            for e in events:
                if e["kind"] == "permission_denied" and isinstance(e["data"].get("before"), dict):
                    counts.setdefault(e["data"]["before"].get("event"), e["data"]["before"].get("count"))
            for e in denied:
                e["count"] = counts.get(e["id"], 1)
        return events

    # -- retention ---------------------------------------------------------------------------

    def purge(self, *, before: str, dry_run: bool, actor: str) -> dict[str, Any]:
        """Delete the tickets closed before `before`, with everything that hangs off them, and
        tombstone their events (see the module's docstring). A ticket another kept ticket
        points to (as parent or problem) is kept. With dry_run, only counts."""
        with self.db.write(actor, need="admin", what="purging tickets") as tx:
            conn = tx.conn
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS purge_ids (id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM purge_ids")
            conn.execute("INSERT INTO purge_ids SELECT id FROM tickets WHERE status = 'closed' AND closed_at < ?",
                         (before,))
            while conn.execute(  # keep what a kept ticket points to, until nothing changes
                    "DELETE FROM purge_ids WHERE id IN (SELECT parent_id FROM tickets WHERE id NOT IN (SELECT id FROM purge_ids) "
                    "UNION SELECT problem_id FROM tickets WHERE id NOT IN (SELECT id FROM purge_ids))").rowcount:
                pass
            tickets = [r[0] for r in conn.execute("SELECT id FROM purge_ids ORDER BY id")]
            events = [r[0] for r in conn.execute(
                "SELECT id FROM events WHERE ticket_id IN (SELECT id FROM purge_ids) ORDER BY id")]
            head = self.anchor()
            summary = {"before": before, "tickets": len(tickets), "events": len(events), "dry_run": dry_run,
                       "ticket_ranges": ranges(tickets), "event_ranges": ranges(events),
                       "head_before": {"event": head["event"], "hash": head["hash"]}}
            if dry_run or not tickets:
                conn.execute("DELETE FROM purge_ids")
                return summary
            self._delete_purged(conn, tx.dialect)
            tx.event(None, "purged", {k: v for k, v in summary.items() if k != "dry_run"})
        return summary

    @staticmethod
    def _delete_purged(conn: sqlite3.Connection, dialect: Dialect) -> None:
        """Every row that refers to a ticket in purge_ids (found from the schema's foreign keys,
        so a table added later is covered), then the tickets; events become tombstones."""
        conn.execute("INSERT INTO event_tombstones SELECT id, ticket_id, prev_hash, hash FROM events "
                     "WHERE ticket_id IN (SELECT id FROM purge_ids)")
        with dialect.triggers_off(conn, "events"):
            AuditStore._delete_rows(conn, dialect)

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, dialect: Dialect) -> None:
        purged = "(SELECT id FROM purge_ids)"
        refs = {t: dialect.foreign_keys_of(conn, t) for t in dialect.tables(conn)}
        for table, keys in refs.items():
            for target, column, _ in keys:
                if target != "tickets" or table == "tickets":
                    continue
                if table in UNLINKED:
                    conn.execute(f'UPDATE "{table}" SET "{column}" = NULL WHERE "{column}" IN {purged}')
                    continue
                for child, child_keys in refs.items():  # rows that hang off these rows
                    for child_target, child_column, parent_column in child_keys:
                        if child_target == table and child != "tickets":
                            conn.execute(f'DELETE FROM "{child}" WHERE "{child_column}" IN '
                                         f'(SELECT "{parent_column or "rowid"}" FROM "{table}" WHERE "{column}" IN {purged})')
                conn.execute(f'DELETE FROM "{table}" WHERE "{column}" IN {purged}')
        # The search index's words of a ticket: an FTS5 table has no foreign key to find it by.
        conn.execute(f"DELETE FROM ticket_fts WHERE rowid IN {purged}")
        conn.execute(f"DELETE FROM tickets WHERE id IN {purged}")
        conn.execute("DELETE FROM purge_ids")

    def refusal_counts(self, event_ids: Collection[int]) -> dict[int, int]:
        """How many refusals each of these permission_denied events stands for, in its minute so
        far (1 when nothing repeated it)."""
        ids = list(event_ids)[:500]
        if not ids:
            return {}
        return dict(self.db.conn.execute(f"SELECT event_id, count FROM refusals WHERE event_id IN ({','.join('?' * len(ids))})", ids))
