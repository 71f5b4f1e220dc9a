"""What every part of the store shares: how tickets and events are stored as rows (JSON
columns, the hash chain), and `Tx`, the one write transaction each change runs in. Below
every part (store.py, store_*.py); imports nothing of theirs."""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..domain import clock
from ..domain.redact import might_hold_secrets, redact_strings
from ..domain.roles import Access, refusal
from .dialect import SQLITE, Dialect


class Db(Protocol):
    """What a part of the store needs of it: the connection and write transactions (Store)."""

    conn: sqlite3.Connection
    dialect: Dialect
    default_role: str
    path: Path

    def desk_state(self) -> dict[str, tuple[str, str]]: ...

    def write(self, actor: str, *, need: str = "agent", what: str = "changing the desk", claim: bool = True,
              damaged_ok: bool = False) -> AbstractContextManager[Tx]: ...


GENESIS = "0" * 64


JSON_FIELDS = ("labels", "tags")


EVENT_COLUMNS = ("events (id, ticket_id, at, actor, kind, data, prev_hash, hash, login)", "(?, ?, ?, ?, ?, ?, ?, ?, ?)")


def insert_rows(conn: sqlite3.Connection, columns: tuple[str, str], rows: list[tuple],
                dialect: Dialect = SQLITE) -> None:
    """INSERT INTO `columns[0]` the rows, each bound to the template `columns[1]`, many rows to
    a statement. A statement has fixed costs (with AUTOINCREMENT, a read and a write of
    the table's high-water mark) that executemany pays per row: a stream's inserts take a third fewer
    instructions this way (callgrind). The statements have one size, so that SQLite parses
    each once (Python's sqlite3 caches them). A backend with a faster way of its own
    (PostgreSQL's COPY) uses it: `dialect`.bulk_insert."""
    if rows and dialect.bulk_insert(conn, columns, rows):
        return
    target, template = columns
    per = 999 // template.count("?")  # SQLite before 3.32 takes at most 999 variables
    whole = len(rows) - len(rows) % per
    if whole:
        conn.executemany(f"INSERT INTO {target} VALUES {','.join([template] * per)}",
                         [list(chain.from_iterable(rows[i:i + per])) for i in range(0, whole, per)])
    if whole < len(rows):
        conn.executemany(f"INSERT INTO {target} VALUES {template}", rows[whole:])


def to_json(value: Any) -> str:
    """Compact JSON as stored (the event hash covers this exact text)."""
    return orjson.dumps(value).decode()


def event_hash(prev_hash: str, event_id: int, ticket_id: int | None, at: str, actor: str, kind: str,
               data: str, login: str | None = None) -> str:
    """sha256 over the previous hash and the event's row. Text fields are length-prefixed so
    that no two different rows hash the same input. The OS login is covered when there is one
    (events from before it was recorded have none, and keep the hash they were written with)."""
    row = f"{event_id}|{ticket_id}|{len(at)}:{at}|{len(actor)}:{actor}|{len(kind)}:{kind}|{data}"
    if login is not None:
        row += f"|{len(login)}:{login}"
    return hashlib.sha256((prev_hash + row).encode()).hexdigest()


def ticket_row(row: sqlite3.Row) -> dict[str, Any]:
    t = dict(row)
    for field in JSON_FIELDS:
        t[field] = orjson.loads(t[field])
    return t


@functools.cache
def os_login() -> str:
    """The OS account this process runs as, from its real uid (not $USER or $LOGNAME, which
    anyone can set): the identity an event records beside the actor it claims."""
    import os

    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # Windows; a uid with no passwd entry, as in some containers
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def event_row(row: sqlite3.Row) -> dict[str, Any]:
    e = dict(row)
    e["data"] = orjson.loads(e["data"])
    return e


class Refused(Exception):
    """A role that is not enough: the transaction is undone and the refusal recorded instead."""

    def __init__(self, message: str, queue: str | None, ticket_id: int | None, need: str, what: str,
                 record_as: str | None = None):
        super().__init__(message)
        self.queue, self.ticket_id, self.need, self.what = queue, ticket_id, need, what
        self.record_as = record_as  # who the refusal is recorded as, when not the claimed actor


class Tx:
    """One write transaction: the connection, its time, and the events it appends."""

    def __init__(self, conn: sqlite3.Connection, actor: str, access: Access | None = None, need: str = "agent",
                 what: str = "", *, dialect: Dialect = SQLITE, login: str | None = None):
        self.conn = conn
        self.dialect = dialect
        self.actor = actor
        # Recorded on each event beside the actor: the OS login, or on PostgreSQL the database
        # login (the store's `login`).
        self.login = login or os_login()
        self.access, self.need, self.what = access, need, what
        # Whether the role was checked on what this transaction changes: on each ticket it
        # touches (Store._current, new tickets), or on the desk for writes beside tickets.
        self.checked = False
        self.at = clock.now_iso()
        last = conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        self._prev = last[0] if last else GENESIS
        self._next_id = dialect.last_id(conn, "events") + 1
        self.events: list[tuple] = []
        self.redacted: dict[int | None, set[str]] = {}  # ticket (None: the desk) -> kinds of secret taken out
        self.queued = 0  # messages its events queued in the outbox (Store.write, notify.yaml)

    def event(self, ticket_id: int | None, kind: str, data: dict[str, Any], *, clean: bool = False,
              actor: str | None = None) -> None:
        """Append an event. Every string in its data, keys too, is redacted here, so that no write
        can store a secret in the history by forgetting to; `clean=True` only where the data
        was redacted already (a stream's new tickets: scanning twice costs intake its speed).
        `actor`: a source acting through this transaction's account (Signal.actor)."""
        text = to_json(data)
        if not clean and might_hold_secrets(text):
            text = to_json(self.clean(data, ticket_id))
        actor = actor or self.actor
        h = event_hash(self._prev, self._next_id, ticket_id, self.at, actor, kind, text, self.login)
        self.events.append((self._next_id, ticket_id, self.at, actor, kind, text, self._prev, h, self.login))
        self._prev, self._next_id = h, self._next_id + 1

    @contextmanager
    def acting(self, actor: str | None) -> Iterator[dict[str, str]]:
        """Events written inside are `actor`'s (a source's: Signal.actor), and the data to add to
        them: who delivered it ({"received_by": account}); nothing changes when actor is None."""
        if not actor:
            yield {}
            return
        account, self.actor = self.actor, actor
        try:
            yield {"received_by": account}
        finally:
            self.actor = account

    def clean(self, value: Any, ticket_id: int | None = None, pii: bool = False) -> Any:
        """The one redacting helper of every store write: value (a text, or a JSON-like value:
        keys too) with each secret replaced by `[REDACTED:kind]`. The kinds found go on the
        ticket's timeline (or the desk's) as a `redacted` event when the transaction ends."""
        if value is None:
            return None
        clean, kinds = redact_strings(value, pii)
        if kinds and clean != value:  # (text redacted before, quoted again, is reported but unchanged)
            self.redacted.setdefault(ticket_id, set()).update(kinds)
        return clean

    def check(self, queue: str | None = None, ticket_id: int | None = None, need: str | None = None,
              what: str | None = None) -> None:
        """Refuse (see Store._write) unless the actor's role, on `queue` when given, is at least
        `need` (the transaction's own by default)."""
        if need:
            self.need, self.what = need, what or self.what
        self.checked = True
        if self.access is not None and not self.access.allows(self.need, queue):
            raise Refused(refusal(self.access, self.need, self.what, queue), queue, ticket_id, self.need, self.what)

    def flush(self) -> None:
        for ticket_id, kinds in self.redacted.items():
            self.event(ticket_id, "redacted", {"kinds": sorted(kinds)}, clean=True)
        self.redacted.clear()
        if self.events:
            insert_rows(self.conn, EVENT_COLUMNS, self.events, self.dialect)
            self.dialect.ids_given(self.conn, "events", self.events[-1][0])
        self.events.clear()

