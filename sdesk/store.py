"""The Store: the only module that talks SQL.

Hot commands use the stdlib `sqlite3` connection directly; sqlite-utils is imported only to
migrate (see `migrations.py`). Every state change runs in one IMMEDIATE transaction that
writes the ticket and appends the events explaining it to the hash chain.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from datetime import timedelta
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import clock, lifecycle, migrations
from .errors import BadInput, Conflict, NotFound, PermissionDenied, SdeskError
from .migrations import OPEN_SQL
from .redact import might_hold_secrets, redact_strings
from .roles import DEFAULT_ROLE, Access, refusal
from .signals import Signal
from .store_audit import AuditStore
from .store_classifier import ClassifierStore
from .store_cmdb import CmdbStore
from .store_kb import KbStore
from .store_metrics import MetricsStore
from .store_oncall import OnCallStore
from .store_problems import ProblemStore
from .store_runbooks import RunbookStore, lock_key
from .store_sla import SlaStore
from .store_triage import TriageStore
from .store_users import UsersStore

if TYPE_CHECKING:
    from .enrich import EnrichOptions, Enricher
    from .signals import Alert
    from .store_triage import Triager
    from .triage import TriageConfig

GENESIS = "0" * 64

# Columns a new ticket may set, in insert order (team comes from enrichment; the last five
# from triage only).
CREATE_FIELDS = (
    "kind", "title", "description", "priority", "impact", "urgency", "category", "service",
    "ci", "queue", "team", "requester", "fingerprint", "assignee", "parent_id", "suppressed", "runbook", "group_key",
)
TEXT_FIELDS = ("title", "description", "category", "service", "ci", "queue", "requester")
UPDATE_FIELDS = (
    "title", "description", "kind", "priority", "impact", "urgency", "category", "service",
    "ci", "queue", "team", "requester", "labels", "tags",
)
JSON_FIELDS = ("labels", "tags")

@functools.lru_cache(maxsize=64)
def _ticket_columns(fields: tuple[str, ...]) -> tuple[str, str]:
    return (f"tickets (id, {', '.join(fields)}, labels, tags, status, source, created_at, updated_at, occurrences)",
            f"(?, {', '.join('?' * len(fields))}, ?, ?, 'new', ?, ?, ?, ?)")


EVENT_COLUMNS = ("events (id, ticket_id, at, actor, kind, data, prev_hash, hash)", "(?, ?, ?, ?, ?, ?, ?, ?)")
ALERT_COLUMNS = ("alerts (source, fingerprint, status, action, labels, annotations, received_at, ticket_id)",
                 "(?, ?, ?, ?, ?, ?, ?, ?)")

SORT_COLUMNS = {
    "id": "id", "priority": "priority", "status": "status", "created": "created_at",
    "updated": "updated_at", "title": "title", "assignee": "assignee", "queue": "queue",
    "service": "service", "kind": "kind",
}


def insert_rows(conn: sqlite3.Connection, columns: tuple[str, str], rows: list[tuple]) -> None:
    """INSERT INTO `columns[0]` the rows, each bound to the template `columns[1]`, many rows to
    a statement. A statement has fixed costs (with AUTOINCREMENT, a read and a write of
    sqlite_sequence) that executemany pays per row: a stream's inserts take a third fewer
    instructions this way (callgrind). The statements have one size, so that SQLite parses
    each once (Python's sqlite3 caches them)."""
    target, template = columns
    per = 999 // template.count("?")  # SQLite before 3.32 takes at most 999 variables
    whole = len(rows) - len(rows) % per
    if whole:
        conn.executemany(f"INSERT INTO {target} VALUES {','.join([template] * per)}",
                         [list(chain.from_iterable(rows[i:i + per])) for i in range(0, whole, per)])
    if whole < len(rows):
        conn.executemany(f"INSERT INTO {target} VALUES {template}", rows[whole:])


def default_db_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("sdesk", appauthor=False)) / "sdesk.db"


def to_json(value: Any) -> str:
    """Compact JSON as stored (the event hash covers this exact text)."""
    return orjson.dumps(value).decode()


def event_hash(prev_hash: str, event_id: int, ticket_id: int | None, at: str, actor: str, kind: str,
               data: str) -> str:
    """sha256 over the previous hash and the event's row. Text fields are length-prefixed so
    that no two different rows hash the same input."""
    row = f"{event_id}|{ticket_id}|{len(at)}:{at}|{len(actor)}:{actor}|{len(kind)}:{kind}|{data}"
    return hashlib.sha256((prev_hash + row).encode()).hexdigest()


def _ticket_text(t: dict[str, Any]) -> str:
    """The free text of a new ticket, in one string for the secrets pre-check (a flat join is
    cheaper than walking the dict, at one call per ticket stored)."""
    parts = [v for f in TEXT_FIELDS if (v := t.get(f))]
    parts += (t.get("labels") or {}).values()
    parts += t.get("tags") or ()
    return "\n".join(parts)


@functools.lru_cache(maxsize=4096)
def _redacted_json(text: str, mask_pii: bool) -> str:
    """An alert's labels or annotations as stored: repeats of an alert send the same ones, so
    the answer is cached by their JSON."""
    if not mask_pii and not might_hold_secrets(text):
        return text
    return to_json(redact_strings(orjson.loads(text), mask_pii)[0])


def _ticket(row: sqlite3.Row) -> dict[str, Any]:
    t = dict(row)
    for field in JSON_FIELDS:
        t[field] = orjson.loads(t[field])
    return t


def _event(row: sqlite3.Row) -> dict[str, Any]:
    e = dict(row)
    e["data"] = orjson.loads(e["data"])
    return e


class _Refused(Exception):
    """A role that is not enough: the transaction is undone and the refusal recorded instead."""

    def __init__(self, message: str, queue: str | None, ticket_id: int | None, need: str, what: str):
        super().__init__(message)
        self.queue, self.ticket_id, self.need, self.what = queue, ticket_id, need, what


class _Tx:
    """One write transaction: the connection, its time, and the events it appends."""

    def __init__(self, conn: sqlite3.Connection, actor: str, access: Access | None = None, need: str = "agent",
                 what: str = ""):
        self.conn = conn
        self.actor = actor
        self.access, self.need, self.what = access, need, what
        # Whether the role was checked on what this transaction changes: on each ticket it
        # touches (Store._current, new tickets), or on the desk for writes beside tickets.
        self.checked = False
        self.at = clock.now_iso()
        last = conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        self._prev = last[0] if last else GENESIS
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        self._next_id = (seq[0] if seq else 0) + 1
        self.events: list[tuple] = []

    def event(self, ticket_id: int | None, kind: str, data: dict[str, Any]) -> None:
        text = to_json(data)
        h = event_hash(self._prev, self._next_id, ticket_id, self.at, self.actor, kind, text)
        self.events.append((self._next_id, ticket_id, self.at, self.actor, kind, text, self._prev, h))
        self._prev, self._next_id = h, self._next_id + 1

    def check(self, queue: str | None = None, ticket_id: int | None = None, need: str | None = None,
              what: str | None = None) -> None:
        """Refuse (see Store._write) unless the actor's role, on `queue` when given, is at least
        `need` (the transaction's own by default)."""
        if need:
            self.need, self.what = need, what or self.what
        self.checked = True
        if self.access is not None and not self.access.allows(self.need, queue):
            raise _Refused(refusal(self.access, self.need, self.what, queue), queue, ticket_id, self.need, self.what)

    def flush(self) -> None:
        insert_rows(self.conn, EVENT_COLUMNS, self.events)
        self.events.clear()


class _Triggers:
    """The tickets a batch opens or bumps, written at flush with one executemany per table and
    one event per ticket: `created` (with how often it arrived in the batch) or `occurrence`
    (how many more times it arrived). Monitoring resends a firing alert every few minutes; one
    event per resend would bury a ticket's history, and the alerts table keeps every arrival."""

    def __init__(self, tx: _Tx, open_by_fingerprint: dict[str, list], mask_pii: bool = False,
                 enricher: Enricher | None = None, triager: Triager | None = None, silences: set[str] = frozenset(),
                 automate: Collection[str] = ()):
        self.tx = tx
        self.automate = automate  # runbooks safe for automation: run when triage attaches them
        self.mask_pii = mask_pii
        self.enricher = enricher
        self.triager = triager
        self.silences = silences  # "silence N" of the silences in force
        self.open = open_by_fingerprint  # fingerprint -> [ticket id, occurrences, suppressed]
        # id -> ticket, source, redactions, the alert it came from
        self.new: dict[int, tuple[dict[str, Any], str, list[str], Alert | None]] = {}
        self.bumped: dict[int, list] = {}  # id -> [occurrences, repeats in this batch, last source]
        seq = tx.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tickets'").fetchone()
        self.next_id = (seq[0] if seq else 0) + 1  # ids are ours to give: we hold the write lock

    def add(self, t: dict[str, Any], source: str, secret_free: bool = False,
            alert: Alert | None = None) -> tuple[int, str]:
        fingerprint = t.get("fingerprint")
        hit = self.open.get(fingerprint) if fingerprint else None
        if hit:
            hit[1] += 1
            bump = self.bumped.get(hit[0])
            if bump:
                bump[0], bump[1], bump[2] = hit[1], bump[1] + 1, source
            else:
                self.bumped[hit[0]] = [hit[1], 1, source]
            return hit[0], "deduplicated"
        ticket_id, self.next_id = self.next_id, self.next_id + 1
        redacted: list[str] = []
        if self.mask_pii or (not secret_free and might_hold_secrets(_ticket_text(t))):
            clean, redacted = redact_strings(t, self.mask_pii)
        if redacted:
            # The fingerprint is the dedup key and the requester the address replies go to: both
            # are kept as sent.
            t = {**clean, "fingerprint": fingerprint, "requester": t.get("requester")}
        self.new[ticket_id] = (t, source, redacted, alert)
        if fingerprint:
            self.open[fingerprint] = [ticket_id, 1, None]
        return ticket_id, "created"

    def flush(self) -> None:
        tx, made, contexts, runs = self.tx, [], [], []
        present: set[str] = set()  # the fields some new ticket of the batch sets
        for ticket_id, (t, source, redacted, alert) in self.new.items():
            bump = self.bumped.pop(ticket_id, None)
            # The created event carries the whole input, so history can be rebuilt from events,
            # and triage's explanation of what it made of it.
            created = {k: v for k, v in t.items() if v is not None}
            present.update(created)
            created["source"] = source
            if bump:
                created["occurrences"] = bump[0]
            context = self.enricher.context(t, ticket_id) if self.enricher else None
            enriched = None
            if context:
                t, enriched = self._apply(t, context)
                contexts.append((ticket_id, to_json(context)))
            if self.triager is not None:
                t, created["triage"] = self.triager.apply(ticket_id, {**t, "source": source}, alert, context or {})
            if context or self.triager is not None:
                present.update(t)
            if t.get("queue"):
                tx.check(t["queue"])  # (no ticket id on a refusal: it will not exist)
            tx.event(ticket_id, "created", created)
            if redacted:
                tx.event(ticket_id, "redacted", {"kinds": sorted(set(redacted))})
            if enriched:
                tx.event(ticket_id, "enriched", enriched)
            if t.get("runbook") in self.automate and not t.get("suppressed"):
                runs.append((t["runbook"], ticket_id, lock_key(t.get("ci"), t.get("fingerprint"), ticket_id)))
            made.append((ticket_id, t, source, bump[0] if bump else 1))
        # The INSERT names only the columns the batch sets: Python's sqlite3 binds each None
        # through an adapter lookup, which cost more than the rest of an alert's ticket row
        # (9 of them; measured with callgrind).
        fields = tuple(f for f in CREATE_FIELDS if f in present)
        insert_rows(tx.conn, _ticket_columns(fields), [
            (ticket_id, *map(t.get, fields), to_json(t.get("labels") or {}), to_json(t.get("tags") or []), source,
             tx.at, tx.at, occurrences) for ticket_id, t, source, occurrences in made])
        tx.conn.executemany("INSERT INTO ticket_context (ticket_id, data) VALUES (?, ?)", contexts)
        if runs:
            RunbookStore.queue_runs(tx, runs)
        for ticket_id, (occurrences, repeats, source) in self.bumped.items():
            tx.event(ticket_id, "occurrence", {"occurrences": occurrences, "repeats": repeats, "source": source})
        tx.conn.executemany("UPDATE tickets SET occurrences = ?, updated_at = ? WHERE id = ?",
                            [(n, tx.at, ticket_id) for ticket_id, (n, _, _) in self.bumped.items()])
        self._release(list(self.bumped))
        self.new.clear()
        self.bumped.clear()

    def _release(self, bumped: list[int]) -> None:
        """A silenced alert firing after its silence ended joins the queue, as Alertmanager
        notifies again once a silence is over."""
        for hit in self.open.values():
            if hit[2] and hit[0] in bumped and hit[2].startswith("silence ") and hit[2] not in self.silences:
                self.tx.conn.execute("UPDATE tickets SET suppressed = NULL WHERE id = ?", (hit[0],))
                self.tx.event(hit[0], "unsuppressed", {"was": hit[2], "reason": "the silence is over"})
                hit[2] = None

    @staticmethod
    def _apply(t: dict[str, Any], context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The CI, its owner team, and that team's queue when nothing set one, from the context;
        and the summary the `enriched` event records."""
        sets = {}
        if context.get("ci") and t.get("ci") != context["ci"]:  # the CI's own name, not an alias
            sets["ci"] = context["ci"]
        if context.get("team") and not t.get("team"):
            sets["team"] = context["team"]
            if not t.get("queue"):
                sets["queue"] = context["team"]
        summary = {k: context[k] for k in ("ci", "tier", "dependents_total") if context.get(k) is not None}
        summary |= {"changes": len(context.get("changes", ())), "kb": [a["id"] for a in context.get("kb", ())],
                    "similar": [s["id"] for s in context.get("similar", ())], "set": sets}
        return {**t, **sets}, summary


class Store(CmdbStore, KbStore, ProblemStore, TriageStore, ClassifierStore, OnCallStore, SlaStore, RunbookStore,
            MetricsStore, UsersStore, AuditStore):
    def __init__(self, path: str | Path, default_role: str = DEFAULT_ROLE):
        self.path = Path(path)
        self.default_role = default_role  # of someone who is not a user (roles.yaml)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not migrations.check_version(self.conn):
                self.conn.execute("PRAGMA journal_mode = WAL")
                migrations.apply(self.conn)
            # WAL with synchronous=NORMAL is durable across application crashes, and only the
            # last commits can be lost on power failure; it keeps a commit off the fsync path.
            self.conn.execute("PRAGMA synchronous = NORMAL")
            # 16 MiB of page cache (the default is 2): big stores keep their index pages hot
            # during a stream. It fills only with pages actually read.
            self.conn.execute("PRAGMA cache_size = -16384")
        except SdeskError:
            raise
        except (sqlite3.Error, OSError) as e:
            raise SdeskError(f"cannot open database {self.path}: {e}") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, actor: str, need: str = "agent", what: str = "changing the desk") -> Iterator[_Tx]:
        """One write transaction by `actor`, whose role must be at least `need` (roles.py); on a
        ticket, their role on its queue (see _current). A refusal is recorded, with `what` they
        tried, and raised as PermissionDenied."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            tx = _Tx(self.conn, actor, self.access(actor, self.conn), need, what)
            yield tx
            if not tx.checked:  # it touched no ticket: the role on the desk decides
                tx.check()
            tx.flush()
            self.conn.execute("COMMIT")
        except _Refused as refused:
            self.conn.execute("ROLLBACK")
            self._record_refusal(actor, refused)
            raise PermissionDenied(str(refused)) from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def require(self, actor: str, need: str, what: str) -> None:
        """Refuse (and record) unless `actor` has at least role `need` on the desk, for work
        that is not a store write of its own (a restore, an import)."""
        with self._write(actor, need, what):
            pass

    def record(self, actor: str, kind: str, data: dict[str, Any]) -> None:
        """An event about the whole desk (a restore), on the chain."""
        with self._write(actor, "viewer") as tx:
            tx.event(None, kind, data)

    def _record_refusal(self, actor: str, refused: _Refused) -> None:
        with self._write(actor, "viewer") as tx:
            tx.event(refused.ticket_id, "permission_denied",
                     {"need": refused.need, "what": refused.what, "queue": refused.queue, "message": str(refused)})

    # -- reads ---------------------------------------------------------------------------

    def get(self, *, ticket_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return _ticket(row) if row else None

    def get_or_raise(self, *, ticket_id: int) -> dict[str, Any]:
        ticket = self.get(ticket_id=ticket_id)
        if ticket is None:
            raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
        return ticket

    def events(self, *, ticket_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM events WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [_event(r) for r in rows]

    def children(self, *, ticket_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM tickets WHERE parent_id = ? ORDER BY id", (ticket_id,))
        return [_ticket(r) for r in rows]

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
            where.append("EXISTS (SELECT 1 FROM json_each(tickets.tags) WHERE value = ?)")
            args.append(tag)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(title LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\')")
            args += [pattern, pattern]
        if unassigned:
            where.append("assignee IS NULL")
        if after is not None:  # the next page of the queue order (priority, id), by the index
            where.append("(priority, id) > (?, ?)")
            args += list(after)
        queue_view = all(s in lifecycle.OPEN for s in statuses) if statuses else open_only
        order = self._order_by(sort or ("priority,id" if queue_view else "-id"))
        sql = "SELECT * FROM tickets"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [_ticket(r) for r in self.conn.execute(sql, args)]

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

    def count_alerts(self) -> int:
        return self.conn.execute("SELECT count(*) FROM alerts").fetchone()[0]

    def count_by(self, field: str) -> dict[str, int]:
        column = SORT_COLUMNS[field]
        rows = self.conn.execute(f"SELECT {column}, count(*) FROM tickets GROUP BY {column} ORDER BY {column}")
        return {str(k): n for k, n in rows}

    # -- writes --------------------------------------------------------------------------

    def intake(self, tickets: Iterable[dict[str, Any]], *, actor: str, source: str) -> list[tuple[int, bool]]:
        """Open validated tickets (deduplicated by fingerprint, see `receive`); returns
        (ticket id, created) for each, in order."""
        results = self.receive([Signal(source, "trigger", ticket=t) for t in tickets], actor=actor)
        return [(ticket_id, outcome == "created") for ticket_id, outcome in results]

    def receive(self, signals: Iterable[Signal], *, actor: str, record_resolved: Collection[str] = (),
                reopen_days: int = 14, mask_pii: bool = False, enrich: EnrichOptions | bool = True,
                triage: TriageConfig | None = None, automate: Collection[str] = ()) -> list[tuple[int | None, str]]:
        """Apply what sources sent, in order and in one transaction, and keep every alert.

        A trigger opens a ticket, unless an open ticket (stored, or earlier in this batch) has
        its fingerprint: then that ticket's occurrences go up (one event per ticket and batch).
        A resolve resolves the open ticket with its fingerprint (or only records it on the ticket,
        for the sources in record_resolved; "*" is every source); an acknowledge acknowledges
        it; a change is kept for
        enrichment. An email that replies to a ticket is a comment on it, and reopens it when it
        was resolved or closed less than reopen_days ago. Returns (ticket id or None, outcome)
        for each signal: created, deduplicated, resolved, acknowledged, commented, reopened,
        recorded or ignored. With mask_pii, email addresses and phone numbers are masked too.
        A new ticket is enriched from the CMDB, changes and KB (enrich.py) unless enrich is False,
        then triaged (triage.py, store_triage.py) when a triage config is given: rules, the
        priority matrix, the classifier, silences and correlation. With triage, a trigger whose
        ticket was resolved within the flap window reopens it (outcome reopened). A runbook
        triage attaches is queued to run when it is in `automate` (safe for automation).

        Streams run through here at tens of thousands of alerts a second, so triggers are set
        based: one lookup of the batch's fingerprints, then one executemany per table."""
        signals = list(signals)
        results: list[tuple[int | None, str]] = []
        with self._write(actor, "agent", "taking in tickets and alerts") as tx:
            tx.check()  # intake needs the role on the desk; each new ticket, on its queue too
            triggers = any(s.action == "trigger" for s in signals)
            enricher = self._enricher(enrich) if triggers else None
            signal_keys = [s.key for s in signals]  # (a property: read once, for the lookup and the rows)
            keys = set(signal_keys) - {None}
            open_now = self._open_fingerprints(tx.conn, keys)
            triager, flapping = None, {}
            now = clock.parse(tx.at)
            silences = self.active_silences(now) if triggers else []
            if triage is None and triggers and (silences or self.has_classifier()):
                from .triage import UNCONFIGURED

                triage = UNCONFIGURED  # silences and a trained model apply on any desk
            if triage is not None and triggers:
                from .store_triage import Triager

                triager = Triager(self, triage, now, enricher, silences)
                if triage.flap_minutes and keys - open_now.keys():
                    flapping = self.recently_resolved(keys - open_now.keys(),
                                                      clock.iso(now - timedelta(minutes=triage.flap_minutes)))
            batch = _Triggers(tx, open_now, mask_pii, enricher, triager, {f"silence {i}" for i, _ in silences}, automate)
            alert_rows = []
            for s, key in zip(signals, signal_keys):
                if s.thread is not None:
                    result = self._mail(tx, batch, s, reopen_days, mask_pii)
                elif s.action == "trigger" and flapping and key in flapping and key not in batch.open:
                    result = self._reopen_flapping(tx, batch, flapping.pop(key), s)
                elif s.action == "trigger":
                    result = batch.add(s.ticket, s.source, s.secret_free, s.alert)
                elif s.action in ("resolve", "acknowledge"):
                    only_record = "*" in record_resolved or s.source in record_resolved
                    result = self._resolve_or_ack(tx, batch, s, only_record)
                elif s.action == "change":
                    self._change(tx, s, mask_pii)
                    result = (None, "recorded")
                else:
                    result = (None, "ignored")
                results.append(result)
                if s.alert is not None:
                    labels, annotations = s.alert.labels, s.alert.annotations
                    if mask_pii or not s.secret_free:
                        labels, annotations = _redacted_json(labels, mask_pii), _redacted_json(annotations, mask_pii)
                    alert_rows.append((s.source, key, s.alert.status, result[1], labels, annotations, tx.at, result[0]))
            batch.flush()
            insert_rows(tx.conn, ALERT_COLUMNS, alert_rows)
        return results

    def _reopen_flapping(self, tx: _Tx, batch: _Triggers, ticket_id: int, s: Signal) -> tuple[int, str]:
        """A resolved alert firing again within the flap window: its ticket, reopened (and kept
        out of the queue if a silence matches it now)."""
        t = self._current(tx, ticket_id)
        self._move(tx, t, "reopen")
        occurrences = t["occurrences"] + 1
        silenced = batch.triager.silenced(t) if batch.triager is not None else None
        self._set(tx, ticket_id, {"occurrences": occurrences, "suppressed": silenced})
        tx.event(ticket_id, "occurrence", {"occurrences": occurrences, "repeats": 1, "source": s.source,
                                           "flapping": True, **({"suppressed": silenced} if silenced else {})})
        batch.open[s.key] = [ticket_id, occurrences, silenced]
        return ticket_id, "reopened"

    def _enricher(self, enrich: EnrichOptions | bool) -> Enricher | None:
        """An enricher when there is something to enrich from (a CMDB or a KB)."""
        if enrich is False:
            return None
        has_cmdb, has_kb = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM cis), EXISTS (SELECT 1 FROM kb_articles)").fetchone()
        if not (has_cmdb or has_kb):
            return None
        from .enrich import EnrichOptions, Enricher

        return Enricher(self, enrich if isinstance(enrich, EnrichOptions) else EnrichOptions(),
                        has_cmdb=bool(has_cmdb), has_kb=bool(has_kb))

    def recent_on(self, *, ci: str, since: str, limit: int) -> list[dict[str, Any]]:
        """Tickets on a CI that are open or were resolved since `since`, newest first."""
        rows = self.conn.execute(
            f"SELECT id, title, status, resolved_at FROM tickets WHERE ci = ? "
            f"AND ({OPEN_SQL} OR resolved_at >= ?) ORDER BY id DESC LIMIT ?", (ci, since, limit))
        return [dict(r) for r in rows]

    def context(self, *, ticket_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT data FROM ticket_context WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def _change(self, tx: _Tx, s: Signal, mask_pii: bool) -> None:
        (summary, data), _ = redact_strings([s.change["summary"], s.change.get("data") or {}], mask_pii)
        service = s.change.get("service")
        # A source names the service as it knows it: the CI it is, when the CMDB knows that name.
        ci = s.change.get("ci") or (found["name"] if service and (found := self.ci_find([service.strip().lower()])) else None)
        tx.conn.execute(
            "INSERT INTO changes (source, summary, service, ci, happened_at, received_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.source, summary, service, ci, s.change.get("happened_at") or tx.at, tx.at, to_json(data)))

    def _mail(self, tx: _Tx, batch: _Triggers, s: Signal, reopen_days: int, mask_pii: bool) -> tuple[int | None, str]:
        th = s.thread or {}
        conn = tx.conn
        message_id = th.get("message_id")
        if message_id and conn.execute("SELECT 1 FROM mail_messages WHERE message_id = ?", (message_id,)).fetchone():
            return None, "ignored"  # seen before: an mbox read twice takes nothing twice
        if s.action == "ignore":
            self._remember_mail(tx, message_id, None, [])
            return None, "ignored"
        batch.flush()
        target = None
        if th.get("ticket"):
            target = conn.execute("SELECT id FROM tickets WHERE id = ?", (th["ticket"],)).fetchone()
        if target is None and th.get("references"):
            refs = th["references"][-500:]
            target = conn.execute(
                f"SELECT ticket_id FROM mail_messages WHERE message_id IN ({','.join('?' * len(refs))}) "
                "AND ticket_id IS NOT NULL ORDER BY rowid DESC LIMIT 1", refs).fetchone()
        parent = None
        if target is not None:
            t = self._current(tx, target[0])
            outcome = "commented"
            if t["status"] in lifecycle.DONE:
                done_at = clock.parse(t["closed_at"] or t["resolved_at"])
                if (clock.parse(tx.at) - done_at).days < reopen_days:
                    try:
                        self._move(tx, t, "reopen")
                        outcome = "reopened"
                    except Conflict:
                        pass  # its fingerprint is open elsewhere: the reply is still kept
                else:
                    parent, outcome = t["id"], None  # too old: a new ticket, linked to the old one
            if outcome:
                (text,), redacted = redact_strings([th.get("body") or "(empty message)"], mask_pii)
                self._set(tx, t["id"], {"updated_at": tx.at})
                tx.event(t["id"], "commented", {"text": text, "from": th.get("from"), "via": "email",
                                                "message_id": message_id})
                if redacted:
                    tx.event(t["id"], "redacted", {"kinds": sorted(set(redacted))})
                self._remember_mail(tx, message_id, t["id"], th.get("attachments") or [])
                return t["id"], outcome
        ticket_id, _ = batch.add(s.ticket, s.source)
        batch.flush()
        if parent is not None:
            self._set(tx, ticket_id, {"parent_id": parent})
            tx.event(ticket_id, "linked", {"parent_id": parent, "previous_parent_id": None})
        self._remember_mail(tx, message_id, ticket_id, th.get("attachments") or [])
        return ticket_id, "created"

    @staticmethod
    def _remember_mail(tx: _Tx, message_id: str | None, ticket_id: int | None, attachments: list[dict]) -> None:
        if message_id:
            tx.conn.execute("INSERT OR IGNORE INTO mail_messages (message_id, ticket_id, received_at) VALUES (?, ?, ?)",
                            (message_id, ticket_id, tx.at))
        if ticket_id is not None and attachments:
            tx.conn.executemany(
                "INSERT INTO attachments (ticket_id, message_id, name, content_type, size, sha256, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(ticket_id, message_id, redact_strings(a["name"])[0], a["content_type"], a["size"], a["sha256"], tx.at)
                 for a in attachments])
            tx.event(ticket_id, "attachments", {"files": [
                {"name": redact_strings(a["name"])[0], "content_type": a["content_type"], "size": a["size"],
                 "sha256": a["sha256"]} for a in attachments]})

    def _resolve_or_ack(self, tx: _Tx, batch: _Triggers, s: Signal, only_record: bool) -> tuple[int | None, str]:
        batch.flush()  # a ticket opened earlier in this batch must exist before it can move
        hit = batch.open.get(s.fingerprint)
        if hit is None:
            return None, "ignored"
        t = self._current(tx, hit[0])
        if s.action == "resolve":
            if only_record:
                tx.event(t["id"], "alert_resolved", {"source": s.source})
                return t["id"], "recorded"
            self._move(tx, t, "resolve", resolution=f"Resolved by {s.source}: the alert stopped firing",
                       code="auto-resolved")
            del batch.open[s.fingerprint]
            return t["id"], "resolved"
        if "ack" not in lifecycle.allowed_actions(t["status"]):
            return t["id"], "ignored"
        self._move(tx, t, "ack")
        return t["id"], "acknowledged"

    @staticmethod
    def _open_fingerprints(conn: sqlite3.Connection, fingerprints: set[str]) -> dict[str, list]:
        """fingerprint -> [id, occurrences, suppressed] of the open tickets that carry one of them."""
        found: dict[str, list] = {}
        chunk = list(fingerprints)
        for i in range(0, len(chunk), 500):
            part = chunk[i:i + 500]
            rows = conn.execute(
                f"SELECT fingerprint, id, occurrences, suppressed FROM tickets "
                f"WHERE fingerprint IN ({','.join('?' * len(part))}) AND {OPEN_SQL}", part)
            found.update((fp, [tid, n, sup]) for fp, tid, n, sup in rows)
        return found

    def move(self, *, ticket_id: int, action: str, actor: str, assignee: str | None = None,
             resolution: str | None = None, code: str | None = None) -> dict[str, Any]:
        """Apply a lifecycle action (see lifecycle.MOVES) and record why."""
        with self._write(actor) as tx:
            self._move(tx, self._current(tx, ticket_id), action, assignee=assignee, resolution=resolution, code=code)
        return self.get_or_raise(ticket_id=ticket_id)

    def _move(self, tx: _Tx, t: dict[str, Any], action: str, *, assignee: str | None = None,
              resolution: str | None = None, code: str | None = None, extra: dict[str, Any] | None = None) -> None:
        ticket_id = t["id"]
        target = lifecycle.next_status(t["status"], action, ticket_id=ticket_id)
        at = tx.at
        sets: dict[str, Any] = {"status": target, "updated_at": at}
        data: dict[str, Any] = {"from": t["status"], "to": target, "action": action}
        if action == "assign":
            if not assignee:
                raise BadInput("assign: a user is required")
            sets["assignee"] = assignee
            data["assignee"] = assignee
            if t["assignee"]:
                data["previous_assignee"] = t["assignee"]
        if action in ("ack", "start"):
            sets["acknowledged_at"] = t["acknowledged_at"] or at
            sets["assignee"] = t["assignee"] or tx.actor
        if action == "resolve":
            if not resolution or lifecycle.blank(resolution):
                raise BadInput("resolve: --resolution must say what fixed it")
            sets.update(resolved_at=at, resolution=resolution.strip(), resolution_code=code)
            data.update(resolution=resolution.strip(), code=code)
        if action == "close":
            sets["closed_at"] = at
        if action == "reopen":
            if t["fingerprint"]:
                holder = self._open_fingerprints(tx.conn, {t["fingerprint"]}).get(t["fingerprint"])
                if holder:
                    raise Conflict(f"cannot reopen {lifecycle.ref(ticket_id)}: {lifecycle.ref(holder[0])} is open "
                                   "with the same fingerprint; work that one (or link this one under it)")
            sets.update(reopen_count=t["reopen_count"] + 1, resolved_at=None, closed_at=None)
        self._set(tx, ticket_id, sets)
        tx.event(ticket_id, "assigned" if action == "assign" else "status_changed", {**data, **(extra or {})})
        if action == "reopen":
            self._reopened_after_runbook(tx, ticket_id)

    def comment(self, *, ticket_id: int, text: str, actor: str) -> None:
        if lifecycle.blank(text):  # only spaces, or only U+FEFF: nothing to read
            raise BadInput("comment: the text is empty")
        text, redacted = redact_strings(text)
        with self._write(actor) as tx:
            self._current(tx, ticket_id)
            self._set(tx, ticket_id, {"updated_at": tx.at})
            tx.event(ticket_id, "commented", {"text": text})
            if redacted:
                tx.event(ticket_id, "redacted", {"kinds": sorted(set(redacted))})

    def update(self, *, ticket_id: int, changes: dict[str, Any], actor: str) -> dict[str, Any]:
        """Change fields; records old and new values of what really changed (nothing, no event)."""
        unknown = set(changes) - set(UPDATE_FIELDS)
        if unknown:
            raise BadInput(f"update: unknown field {sorted(unknown)[0]!r}")
        changes, redacted = redact_strings(changes)
        with self._write(actor) as tx:
            t = self._current(tx, ticket_id)
            diff = {f: [t[f], v] for f, v in changes.items() if t[f] != v}
            if redacted:
                tx.event(ticket_id, "redacted", {"kinds": sorted(set(redacted))})
            if diff:
                sets = {f: to_json(v) if f in JSON_FIELDS else v
                        for f, (_, v) in diff.items()}
                self._set(tx, ticket_id, {**sets, "updated_at": tx.at})
                tx.event(ticket_id, "updated", diff)
                corrected = {f: diff[f] for f in ("category", "queue") if f in diff and diff[f][0] is not None}
                if corrected and self._was_triaged(tx, ticket_id):
                    # A person overruling triage: the reassignment rate is how often triage is wrong.
                    tx.event(ticket_id, "triage_corrected", corrected)
        return self.get_or_raise(ticket_id=ticket_id)

    @staticmethod
    def _was_triaged(tx: _Tx, ticket_id: int) -> bool:
        return tx.conn.execute(
            "SELECT 1 FROM events WHERE ticket_id = ? AND (kind = 'triaged' OR (kind = 'created' "
            "AND json_extract(data, '$.triage') IS NOT NULL)) LIMIT 1", (ticket_id,)).fetchone() is not None

    def link(self, *, ticket_id: int, parent_id: int, actor: str) -> None:
        if ticket_id == parent_id:
            raise BadInput(f"cannot link {lifecycle.ref(ticket_id)} to itself")
        with self._write(actor) as tx:
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

    def _current(self, tx: _Tx, ticket_id: int) -> dict[str, Any]:
        """The ticket a write changes; the actor's role on its queue must allow the write."""
        row = tx.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
        tx.check(row["queue"], ticket_id)
        return _ticket(row)

    @staticmethod
    def _set(tx: _Tx, ticket_id: int, sets: dict[str, Any]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in sets)
        tx.conn.execute(f"UPDATE tickets SET {assignments} WHERE id = ?", (*sets.values(), ticket_id))

