"""The Store: the only module that talks SQL.

Hot commands use the stdlib `sqlite3` connection directly; sqlite-utils is imported only to
migrate (see `migrations.py`). Every state change runs in one IMMEDIATE transaction that
writes the ticket and appends the events explaining it to the hash chain.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import shlex
import sqlite3
import stat
from datetime import timedelta
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from . import clock, lifecycle, migrations
from .errors import BadInput, Conflict, ExitCode, NotFound, PermissionDenied, SdeskError
from .migrations import OPEN_SQL
from .redact import might_hold_secrets, redact_strings
from .roles import DEFAULT_ROLE, RANK, Access, claim_refusal, refusal, user_key
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
_SETTABLE = frozenset((*CREATE_FIELDS, *JSON_FIELDS))  # what a created event's `set` may hold

@functools.lru_cache(maxsize=64)
def _ticket_columns(fields: tuple[str, ...]) -> tuple[str, str]:
    return (f"tickets (id, {', '.join(fields)}, labels, tags, status, source, created_at, updated_at, occurrences)",
            f"(?, {', '.join('?' * len(fields))}, ?, ?, 'new', ?, ?, ?, ?)")


EVENT_COLUMNS = ("events (id, ticket_id, at, actor, kind, data, prev_hash, hash, login)", "(?, ?, ?, ?, ?, ?, ?, ?, ?)")
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


class StoreFault(SdeskError):
    """The database file cannot take this write: the disk is full, it is damaged, or its files
    were deleted or replaced under this process."""


class ReadOnly(StoreFault):
    code = ExitCode.PERMISSION


class NotSdesk(SdeskError):
    pass


# The application_id of a desk that `sdesk doctor` found damaged: every open reads it anyway (no
# cost), and writes are refused until a restore (which brings the backup's header) or a doctor
# run that finds the file whole again. Running the integrity check on each open is not an
# option: it reads every page (seconds at 1M tickets).
DAMAGED_ID = 0x53445358  # "SDSX"


def _damaged(path: Path | str) -> StoreFault:
    return StoreFault(f"the database is damaged (sdesk doctor found its integrity check failing): {path}; writes "
                      "are refused. Restore a backup (sdesk restore), or repair it and run sdesk doctor again")


def explain(e: sqlite3.Error, path: Path | str | None, context: str = "database") -> SdeskError:
    """An SQLite error as the one line a user can act on (its primary result code decides)."""
    where = path or "the database"
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if code == 13:  # SQLITE_FULL: the file system (or max_page_count) has no room
        return StoreFault(f"disk full: the database {where} could not grow; the write in progress was undone "
                          "and everything stored before it was kept (free some space and run it again)")
    if getattr(e, "sqlite_errorcode", None) == 1032:  # SQLITE_READONLY_DBMOVED: SQLite saw the file go
        return StoreFault(f"the database file {where} was deleted or replaced while sdesk had it open: stopped")
    if code == 8:  # SQLITE_READONLY
        return ReadOnly(f"the database is read-only: {where} ({e})")
    if code in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB after the header was read
        return StoreFault(f"the database is damaged ({e}): {where}; writes are refused. Restore a backup "
                          "(sdesk restore) or see what is damaged with sdesk doctor")
    if code == 10:  # SQLITE_IOERR
        return StoreFault(f"cannot read or write the database {where}: {e} ({e.sqlite_errorname})")
    if code in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return StoreFault(f"the database {where} is busy: another process held its lock for 30 s ({e})")
    return SdeskError(f"{context}: {e}")


def _create(path: Path) -> None:
    """Make a new sdesk database at `path` whole or not at all: built beside it and linked into
    place, so that a file at the path is never a desk half made. That is what lets an empty
    file be refused as someone else's (concurrent first opens each build one; one wins)."""
    import secrets

    path = Path(os.path.realpath(path))  # a dangling symlink: the desk is made where it points
    from .files import make_folders

    make_folders(path.parent)  # all or none of them
    name = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.new"))
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # as SQLite makes them, less the umask
        conn = sqlite3.connect(name, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrations.apply(conn)
            # The schema is committed to the -wal, not the file: copy it into the file here, where
            # a failure raises (close() checkpoints too but swallows SQLITE_FULL, and a file
            # linked into place without its -wal is a desk half made that reads as damaged).
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            pages, size = conn.execute("SELECT * FROM pragma_page_count, pragma_page_size").fetchone()
            if busy or os.path.getsize(name) != pages * size or os.path.getsize(f"{name}-wal"):
                raise SdeskError(f"cannot make a new desk at {path}: its write-ahead log could not be "
                                 "copied into the file; nothing was left there")
        finally:
            conn.close()
        try:
            os.link(name, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the desk
        except OSError:  # a file system without hard links
            if not os.path.lexists(path):
                os.replace(name, path)
    finally:
        for leftover in (name, f"{name}-wal", f"{name}-shm"):
            with suppress(FileNotFoundError):
                os.unlink(leftover)


def _create_or_explain(path: Path) -> None:
    """_create, its faults as one line: a new desk is whole or absent, so a full disk here
    keeps nothing (the general message speaks of a write undone in a desk that exists)."""
    try:
        _create(path)
    except sqlite3.Error as e:
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) != 13:
            raise
        raise StoreFault(f"disk full: cannot make a new desk at {path}: nothing was left there "
                         "(free some space and run it again)") from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StoreFault(f"disk full: cannot make a new desk at {path}: nothing was left there "
                         "(free some space and run it again)") from None


def holds_a_desk(path: Path) -> bool:
    """Whether the database at `path` holds anything a desk was given (tickets, users, events,
    remembered state...): a fresh `sdesk init` holds nothing. Read through a read-only
    connection, so the file is left as it is (even one of an older schema, not upgraded), and
    no -wal or -shm is left beside it: immutable unless a -wal is there (a writer's, to be read)."""
    from urllib.parse import quote

    real = os.path.realpath(path)
    mode = "mode=ro" if os.path.exists(f"{real}-wal") else "immutable=1"
    conn = sqlite3.connect(f"file:{quote(real)}?{mode}", uri=True, timeout=30)
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if not name.startswith(("sqlite_", "_sqlite_")) and "_fts" not in name]
        return any(conn.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() for name in tables)
    except sqlite3.DatabaseError:
        return False  # not an SQLite file: opening it as a desk refuses it, naming what it is
    finally:
        conn.close()


def _made_up(path: Path) -> bool:
    """Whether a file of size 0 has something to read (/proc/version, /sys/...): the kernel makes
    it up as it is read, and it is no place for a desk."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return bool(os.read(fd, 1))
    except OSError:
        return False
    finally:
        os.close(fd)


def _read_only_why(path: Path) -> str | None:
    """Why this process cannot write the database (None: it can). SQLite needs to write the
    file, and in WAL mode its -wal and -shm, which it creates in the folder."""
    if os.access(path, os.W_OK):
        if os.access(path.parent, os.W_OK):
            return None
        if all(os.access(f"{path}-{s}", os.W_OK) for s in ("wal", "shm")):
            return None
        return "cannot create files in its folder"
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "on a read-only file system"
    except OSError:
        pass
    return "no permission to write the file"


def _connect(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """A connection, and why it is read-only (None when it is not). Read-only is `mode=ro`,
    which reads a WAL database through its -shm (created if the folder allows, or an existing
    one), and `immutable=1` only when that fails: a folder that cannot hold a -shm has no
    writer using one, so nothing changes the file under an immutable read."""
    why = _read_only_why(path)
    if why is None:
        return sqlite3.connect(path, timeout=30, isolation_level=None), None
    from urllib.parse import quote

    uri = "file:" + quote(str(path.resolve()))
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        # An immutable read ignores the -wal: commits left there (by a writer killed before it
        # checkpointed) would be missing without a word, and the desk shown would not be the desk.
        try:
            wal = os.path.getsize(f"{os.path.realpath(path)}-wal")  # SQLite names it after the real file
        except OSError:
            wal = 0
        if wal:
            raise ReadOnly(f"{path} has a write-ahead log ({path}-wal) that this read-only open cannot read "
                           "without a -shm file: open it once where it is writable, or copy the folder to "
                           "a writable place")
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=30, isolation_level=None)
    return conn, why


def _is_current(conn: sqlite3.Connection, path: Path, init_empty: bool, read_only: str | None) -> tuple[bool, bool]:
    """Whether the file is an sdesk database of the current schema (False: an older one, or an
    empty file `init_empty` allows, to upgrade), and whether doctor marked it damaged; raises
    NotSdesk for any other file. One query of the header on every open."""
    try:
        app_id, version, pages = conn.execute(
            "SELECT * FROM pragma_application_id, pragma_user_version, pragma_page_count").fetchone()
    except sqlite3.DatabaseError as e:
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) == 26:  # SQLITE_NOTADB: no SQLite header
            raise NotSdesk(f"{path} is not an sdesk database") from None
        raise
    if app_id in (migrations.APPLICATION_ID, DAMAGED_ID):
        return migrations.check_version(conn, version), app_id == DAMAGED_ID
    if app_id == 0 and pages == 0:
        if init_empty:
            return False, False
        raise NotSdesk(f"{path} is not an sdesk database (it is an empty file; "
                       "`sdesk init --empty-ok` makes a desk in it)")
    legacy = app_id == 0 and version > 0 and conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('tickets', 'events')").fetchone()[0] == 2
    if not legacy:
        raise NotSdesk(f"{path} is not an sdesk database")
    current = migrations.check_version(conn, version)
    if current and not read_only:  # made before the id was set: stamped once (apply does it on upgrade)
        conn.execute(f"PRAGMA application_id = {migrations.APPLICATION_ID}")
    return current, False


def _file_ids(path: Path) -> tuple[tuple[int, int] | None, ...]:
    ids = []
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        try:
            st = os.stat(name)
            ids.append((st.st_dev, st.st_ino))
        except FileNotFoundError:
            ids.append(None)
    return tuple(ids)


def default_db_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("sdesk", appauthor=False)) / "sdesk.db"


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


def _ticket_text(t: dict[str, Any]) -> str:
    """The free text of a new ticket, in one string for the secrets pre-check (a flat join is
    cheaper than walking the dict, at one call per ticket stored)."""
    parts = [v for v in t.values() if v.__class__ is str]
    labels = t.get("labels")
    if labels:
        parts += labels  # the keys: a label's name can hold a secret too
        parts += labels.values()
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


def _event(row: sqlite3.Row) -> dict[str, Any]:
    e = dict(row)
    e["data"] = orjson.loads(e["data"])
    return e


class _Refused(Exception):
    """A role that is not enough: the transaction is undone and the refusal recorded instead."""

    def __init__(self, message: str, queue: str | None, ticket_id: int | None, need: str, what: str,
                 record_as: str | None = None):
        super().__init__(message)
        self.queue, self.ticket_id, self.need, self.what = queue, ticket_id, need, what
        self.record_as = record_as  # who the refusal is recorded as, when not the claimed actor


class _Tx:
    """One write transaction: the connection, its time, and the events it appends."""

    def __init__(self, conn: sqlite3.Connection, actor: str, access: Access | None = None, need: str = "agent",
                 what: str = ""):
        self.conn = conn
        self.actor = actor
        self.login = os_login()  # recorded on each event beside the actor
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
        self.redacted: dict[int | None, set[str]] = {}  # ticket (None: the desk) -> kinds of secret taken out

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
            raise _Refused(refusal(self.access, self.need, self.what, queue), queue, ticket_id, self.need, self.what)

    def flush(self) -> None:
        for ticket_id, kinds in self.redacted.items():
            self.event(ticket_id, "redacted", {"kinds": sorted(kinds)}, clean=True)
        self.redacted.clear()
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
        self.bumped: dict[int, list] = {}  # id -> [occurrences, repeats in this batch, last source, its actor]
        self.actors: dict[int, str] = {}  # id -> the source that opened it, when not the account (Signal.actor)
        seq = tx.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tickets'").fetchone()
        self.next_id = (seq[0] if seq else 0) + 1  # ids are ours to give: we hold the write lock

    def add(self, t: dict[str, Any], source: str, secret_free: bool = False,
            alert: Alert | None = None, actor: str | None = None) -> tuple[int, str]:
        fingerprint = t.get("fingerprint")
        hit = self.open.get(fingerprint) if fingerprint else None
        if hit:
            hit[1] += 1
            bump = self.bumped.get(hit[0])
            if bump:
                bump[0], bump[1], bump[2], bump[3] = hit[1], bump[1] + 1, source, actor
            else:
                self.bumped[hit[0]] = [hit[1], 1, source, actor]
            return hit[0], "deduplicated"
        ticket_id, self.next_id = self.next_id, self.next_id + 1
        if actor:
            self.actors[ticket_id] = actor
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
            actor = self.actors.get(ticket_id)
            if actor:
                created["received_by"] = tx.actor
            if bump:
                created["occurrences"] = bump[0]
            context = self.enricher.context(t, ticket_id) if self.enricher else None
            enriched = None
            if context:
                t, enriched = self._apply(t, context)
                contexts.append((ticket_id, to_json(context)))
            if self.triager is not None:
                t, created["triage"] = self.triager.apply(ticket_id, {**t, "source": source}, alert, context or {})
                # What the row holds beyond the input (enrichment's and triage's choices), so that
                # `audit verify` can rebuild it from this event.
                created["set"] = {k: v for k, v in t.items() if k in _SETTABLE and created.get(k) != v}
            if context or self.triager is not None:
                present.update(t)
            tx.check(t.get("queue"))  # (no queue: the desk's role; no ticket id on a refusal: it will not exist)
            # Clean already: add() redacted the ticket (or its parser found no hint of a secret);
            # the rest is the source's name, triage's explanation and counts.
            tx.event(ticket_id, "created", created, clean=True, actor=actor)
            if redacted:
                tx.event(ticket_id, "redacted", {"kinds": sorted(set(redacted))}, clean=True)
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
        if self.triager is not None:
            self.triager.raise_parents(tx, [ticket_id for ticket_id, t, _, _ in made if t.get("parent_id")])
        if runs:
            RunbookStore.queue_runs(tx, runs)
        for ticket_id, (occurrences, repeats, source, actor) in self.bumped.items():
            # Counts and the source's and account's names (as intake names them): nothing to redact.
            tx.event(ticket_id, "occurrence", {"occurrences": occurrences, "repeats": repeats, "source": source,
                                               **({"received_by": tx.actor} if actor else {})}, clean=True, actor=actor)
        tx.conn.executemany("UPDATE tickets SET occurrences = ?, updated_at = ? WHERE id = ?",
                            [(n, tx.at, ticket_id) for ticket_id, (n, *_) in self.bumped.items()])
        self._release(list(self.bumped))
        self.new.clear()
        self.bumped.clear()
        self.actors.clear()

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
    # The actor a command line claims (`--as`, SDESK_USER, or the login by default), set by the
    # CLI: its writes are checked against the OS login (_check_claim). None (serve, whose actors
    # come from API tokens, and the library): not checked.
    claimed: str | None = None

    def __init__(self, path: str | Path, default_role: str = DEFAULT_ROLE, *, init_empty: bool = False,
                 create: bool = True):
        """Open the sdesk database at `path`, making it when there is no file there (unless not
        `create`: then that is NotFound, and nothing is made). Any other file (an empty one too,
        unless `init_empty`) is refused, never initialised. A file this process cannot write is
        opened read-only: reads work and writes are refused."""
        self.path = Path(path)
        self.default_role = default_role  # of someone who is not a user (roles.yaml)
        self.stopped: str | None = None  # why writes stop for good (the files changed under us)
        self.damaged = False  # marked so by sdesk doctor (DAMAGED_ID)
        from .files import kind, status

        # A name too long, a folder that is a file, a loop of links: said so, never "no database".
        found = status(self.path, f"cannot open database {self.path}")
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise BadInput(f"cannot open database {self.path}: {kind(found.st_mode)}, not a regular file "
                           "(a desk is one SQLite file)")
        if found is not None and found.st_size == 0 and _made_up(self.path):  # SQLite would call it empty
            raise BadInput(f"cannot open database {self.path}: not a regular file (its size is 0, yet it reads "
                           "as text: the system makes it up, as in /proc)")
        try:
            if found is None:
                if not create:
                    raise NotFound(f"no sdesk database at {self.path}: nothing was created (check --db or "
                                   f"SDESK_DB; to start a desk there: sdesk --db {shlex.quote(str(self.path))} init)")
                _create_or_explain(self.path)
            self.conn, self.read_only = _connect(self.path)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            try:
                current, self.damaged = _is_current(self.conn, self.path, init_empty, self.read_only)
            except BaseException:
                self.conn.close()
                raise
            if not current:
                if self.read_only:
                    raise ReadOnly(f"the database is read-only ({self.read_only}) and needs the upgrade "
                                   f"a writable copy gets on open: {self.path}")
                self.conn.execute("PRAGMA journal_mode = WAL")
                migrations.apply(self.conn)
            # WAL with synchronous=NORMAL is durable across application crashes, and only the
            # last commits can be lost on power failure; it keeps a commit off the fsync path.
            self.conn.execute("PRAGMA synchronous = NORMAL")
            # 16 MiB of page cache (the default is 2): big stores keep their index pages hot
            # during a stream. It fills only with pages actually read.
            self.conn.execute("PRAGMA cache_size = -16384")
            # The files written: a commit into a log or a file that someone deleted or replaced
            # is lost at exit, so each commit checks that they are still these (_check_files).
            # SQLite names the -wal and -shm after the file a symlink points to.
            self._real = Path(os.path.realpath(self.path))
            self._files = None if self.read_only else _file_ids(self._real)
        except SdeskError:
            raise
        except sqlite3.Error as e:
            raise explain(e, self.path, f"cannot open database {self.path}") from None
        except OSError as e:
            raise SdeskError(f"cannot open database {self.path}: {e.strerror or e}") from None

    def close(self) -> None:
        self.conn.close()

    def integrity(self, limit: int = 20) -> list[str]:
        """SQLite's integrity check: its first `limit` findings, [] when the file is whole. It
        reads every page (29 ms at 10k tickets, seconds at 1M), so only `sdesk doctor` runs it;
        commands meet damage as SQLITE_CORRUPT on the pages they touch (explain). A damaged desk
        is marked so that every later write is refused (DAMAGED_ID); a whole one is unmarked."""
        try:
            found = [r[0] for r in self.conn.execute(f"PRAGMA integrity_check({int(limit)})")]
        except sqlite3.DatabaseError as e:
            found = [str(e)]
        problems = [] if found == ["ok"] else found
        if bool(problems) != self.damaged and not self.read_only:
            with suppress(sqlite3.Error):  # the header page may be what is damaged
                self.conn.execute(f"PRAGMA application_id = {DAMAGED_ID if problems else migrations.APPLICATION_ID}")
                self.damaged = bool(problems)
        return problems

    def _still_marked(self) -> bool:
        """Whether the damaged mark is still in the header: a restore by another connection (or
        process) replaces the header with the backup's."""
        self.damaged = self.conn.execute("PRAGMA application_id").fetchone()[0] == DAMAGED_ID
        return self.damaged

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, actor: str, need: str = "agent", what: str = "changing the desk",
               claim: bool = True, damaged_ok: bool = False) -> Iterator[_Tx]:
        """One write transaction by `actor`, whose role must be at least `need` (roles.py); on a
        ticket, their role on its queue (see _current). A refusal is recorded, with `what` they
        tried, and raised as PermissionDenied. When `actor` is the one the command line claimed,
        the OS login must be theirs or an admin's (_check_claim). `damaged_ok`: also on a desk
        doctor marked damaged (the check before a restore, which is the remedy)."""
        if self.read_only:
            raise ReadOnly(f"the database is read-only ({self.read_only}): {self.path}")
        if self.stopped:
            raise StoreFault(self.stopped)
        if self.damaged and not damaged_ok and self._still_marked():
            raise _damaged(self.path)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            tx = _Tx(self.conn, actor, self.access(actor, self.conn), need, what)
            if claim and self.claimed is not None and user_key(actor) == user_key(self.claimed):
                self._check_claim(tx.conn, actor, tx.login)
            yield tx
            if not tx.checked:  # it touched no ticket: the role on the desk decides
                tx.check()
            tx.flush()
            self.conn.execute("COMMIT")
            self._check_files()
        except _Refused as refused:
            self.conn.execute("ROLLBACK")
            self._record_refusal(refused.record_as or actor, refused)
            raise PermissionDenied(str(refused)) from None
        except sqlite3.Error as e:
            # SQLite undoes the transaction itself on some errors (SQLITE_FULL): a ROLLBACK then
            # fails and would hide the error that matters.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise explain(e, self.path) from None
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _check_files(self) -> None:
        """Stop (StoreFault) when the database file, its write-ahead log or its shared-memory
        index is no longer the file this connection opened: someone deleted or replaced it, and
        commits going to the old one vanish when this process ends. Three stats per transaction
        (a stream's is a batch); never per row. What was committed to a deleted log is copied
        into the database file first (a checkpoint reads the log through the handle still open)."""
        if self._files is None or _file_ids(self._real) == self._files:
            return
        main, wal, shm = _file_ids(self._real)
        if main != self._files[0]:
            self.stopped = (f"the database file {self.path} was deleted or replaced while sdesk was writing it: "
                             "stopped; what this process wrote since is not in the file now at that path")
        else:
            which = f"{self._real}-wal" if wal != self._files[1] else f"{self._real}-shm"
            try:
                busy, log, done = self.conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
                saved = not busy and log == done
            except sqlite3.Error:
                saved = False
            kept = ("every write so far (the last one too, not yet reported) was saved into the database file" if saved
                    else "the last writes may not be in the database file")
            self.stopped = f"{which} was deleted or replaced while sdesk was writing: stopped; {kept}"
        raise StoreFault(self.stopped)

    def require(self, actor: str, need: str, what: str) -> None:
        """Refuse (and record) unless `actor` has at least role `need` on the desk, for work
        that is not a store write of its own (a restore, an import)."""
        with self._write(actor, need, what, damaged_ok=True):
            pass

    def record(self, actor: str, kind: str, data: dict[str, Any]) -> None:
        """An event about the whole desk (a restore), on the chain."""
        with self._write(actor, "viewer") as tx:
            tx.event(None, kind, data)

    def desk_state(self) -> dict[str, tuple[str, str]]:
        """What the desk remembers about itself: key -> (value, when it was set)."""
        return {key: (value, at) for key, value, at in self.conn.execute("SELECT key, value, at FROM desk_state")}

    def set_desk_state(self, key: str, value: str, *, actor: str, need: str = "viewer",
                       event: str | None = None) -> None:
        """Remember `value` under `key` (a time stamp for "tick ran", a path for the config);
        `event`: also record it on the chain as that kind (a change people should see)."""
        with self._write(actor, need, f"setting {key}") as tx:
            tx.conn.execute("INSERT INTO desk_state (key, value, at) VALUES (?, ?, ?) ON CONFLICT (key) "
                            "DO UPDATE SET value = excluded.value, at = excluded.at", (key, tx.clean(value), tx.at))
            if event:
                tx.event(None, event, {key: value})

    # -- the desk as files: the face picks the file and asks; the store reads and writes ------------

    def backup_to(self, target: Path) -> None:
        """A checked copy of the live database at `target` (see desk_file.backup)."""
        from .desk_file import backup

        backup(self.conn, target)

    def restore_from(self, backup: Store, *, source: str, events: int, head: str, actor: str) -> None:
        """Replace this database with `backup` (an open, verified copy: events and head are what
        its verify said), and record the restore on the restored chain."""
        backup.conn.backup(self.conn)
        self.record(actor, "restored", {"from": source, "events": events, "head": head})

    def export_to(self, out: IO[bytes], *, since: str | None = None) -> int:
        """Write the desk (or the rows changed since `since`) to `out` as JSON lines, from one
        read snapshot whatever others write meanwhile; returns the table rows written (not the
        header line nor the id counters, as import counts them)."""
        from .desk_file import export_lines, write_lines

        rows = 0

        def counted(lines: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal rows
            for line in lines:
                rows += line.startswith(b'{"row"')  # keys are sorted: a row line starts so, no other does
                yield line

        self.conn.execute("BEGIN")
        try:
            write_lines(counted(export_lines(self.conn, migrations.SCHEMA_VERSION, since)), out)
        finally:
            self.conn.execute("COMMIT")
        return rows

    def import_from(self, lines: Iterable[bytes]) -> dict[str, int]:
        """Load an export into this empty database in one transaction, checked as `audit verify`
        checks before it commits (see desk_file.import_lines); returns rows per table."""
        from .desk_file import import_lines

        return import_lines(self.conn, lines, migrations.SCHEMA_VERSION, self.verify)

    def check_claim(self, actor: str) -> None:
        """Refuse (and record) unless this process's OS login may act as `actor` (_check_claim),
        for work whose writes happen elsewhere (serve acting as `actor` for untokened requests)."""
        with self._write(actor, "viewer"):
            pass

    def _check_claim(self, conn: sqlite3.Connection, actor: str, login: str) -> None:
        """On a desk with users, acting as `actor` needs the OS login to be theirs, or an
        admin's; an OS login that is nobody's may act only as itself, when that is nobody's
        name either (see roles.py). Refused as the login's user, or the login itself."""
        if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None:
            return  # an open desk: one operator, who may be anyone
        me = conn.execute("SELECT name, role FROM users WHERE login = ?", (user_key(login),)).fetchone()
        if me is not None and (me[1] == "admin" or user_key(me[0]) == user_key(actor)):
            return
        if me is None and user_key(actor) == user_key(login) and \
                conn.execute("SELECT 1 FROM users WHERE key = ?", (user_key(actor),)).fetchone() is None:
            return
        raise _Refused(claim_refusal(login, tuple(me) if me else None, actor), None, None, "admin",
                       f"acting as {actor}", record_as=me[0] if me else f"login:{login}")

    def _record_refusal(self, actor: str, refused: _Refused) -> None:
        """One permission_denied event per (actor, OS login, minute): a refusal repeated within
        the minute only counts, in `refusals`, so a loop of refused requests cannot flood the
        chain. The next window's event carries the previous window's final count, so every count
        but the current minute's is on the chain."""
        with self._write(actor, "viewer", claim=False) as tx:
            minute = tx.at[:16]  # YYYY-MM-DDTHH:MM
            last = tx.conn.execute("SELECT minute, count, event_id FROM refusals WHERE actor = ? AND login = ?",
                                   (actor, tx.login)).fetchone()
            if last is not None and last[0] == minute:
                tx.conn.execute("UPDATE refusals SET count = count + 1 WHERE actor = ? AND login = ?", (actor, tx.login))
                return
            data = {"need": refused.need, "what": refused.what, "queue": refused.queue, "message": str(refused)}
            if last is not None and last[1] > 1:
                data["before"] = {"event": last[2], "minute": last[0], "count": last[1]}
            event_id = tx._next_id
            tx.event(refused.ticket_id, "permission_denied", data)
            tx.conn.execute("INSERT INTO refusals (actor, login, minute, count, event_id) VALUES (?, ?, ?, 1, ?) "
                            "ON CONFLICT (actor, login) DO UPDATE SET minute = excluded.minute, count = 1, "
                            "event_id = excluded.event_id", (actor, tx.login, minute, event_id))

    def refusal_counts(self, event_ids: Collection[int]) -> dict[int, int]:
        """How many refusals each of these permission_denied events stands for, in its minute so
        far (1 when nothing repeated it)."""
        ids = list(event_ids)[:500]
        if not ids:
            return {}
        return dict(self.conn.execute(f"SELECT event_id, count FROM refusals WHERE event_id IN ({','.join('?' * len(ids))})", ids))

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

    def last_event_id(self) -> int:
        """The id of the newest event ever written (0 on a new desk): a cheap "has anything
        changed?" for screens that poll (one row of sqlite_sequence)."""
        seq = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return seq[0] if seq else 0

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
        if count_only:  # count(): how many match (up to `limit`), not which
            return self.conn.execute("SELECT count(*) FROM (SELECT 1 FROM tickets" + (
                " WHERE " + " AND ".join(where) if where else "") + " LIMIT ?)", [*args, limit]).fetchone()[0]
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

    COUNT_CAP = 100_000

    def count(self, **filters: Any) -> int:
        """How many tickets match the filters of list() (a capped list says "50 of 50,000"),
        counted up to COUNT_CAP + 1: a bounded cost on a desk of millions."""
        return self.list(**filters, limit=self.COUNT_CAP + 1, count_only=True)  # type: ignore[return-value]

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
            # Intake needs the agent role on the desk, and on each new ticket's queue (flush). Someone
            # with roles on particular queues (an agent on dba, a viewer elsewhere) needs it on the
            # queue of each ticket they open or touch instead, and on the desk for anything else.
            per_queue = tx.access is not None and bool(tx.access.queues)
            if not per_queue or tx.access.allows(tx.need):
                tx.check()
                per_queue = per_queue and any(RANK[role] < RANK[tx.need] for role in tx.access.queues.values())
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
                    result = batch.add(s.ticket, s.source, s.secret_free, s.alert, s.actor)
                elif s.action in ("resolve", "acknowledge"):
                    only_record = "*" in record_resolved or s.source in record_resolved
                    result = self._resolve_or_ack(tx, batch, s, only_record)
                elif s.action == "change":
                    self._change(tx, s, mask_pii)
                    result = (None, "recorded")
                else:
                    result = (None, "ignored")
                if per_queue:
                    self._check_intake(tx, batch, result)
                results.append(result)
                if s.alert is not None:
                    labels, annotations = s.alert.labels, s.alert.annotations
                    if mask_pii or not s.secret_free:
                        labels, annotations = _redacted_json(labels, mask_pii), _redacted_json(annotations, mask_pii)
                    alert_rows.append((s.source, key, s.alert.status, result[1], labels, annotations, tx.at, result[0]))
            batch.flush()
            insert_rows(tx.conn, ALERT_COLUMNS, alert_rows)
        return results

    @staticmethod
    def _check_intake(tx: _Tx, batch: _Triggers, result: tuple[int | None, str]) -> None:
        """For an actor whose role differs by queue: what one signal did needs their role on the
        queue of the ticket it touched (a new one's is checked when it is written, after triage
        chose it), or on the desk when it touched none."""
        ticket_id, _ = result
        if ticket_id is None:
            tx.check()
        elif ticket_id not in batch.new:  # (a stored ticket: those moved were checked by _current)
            row = tx.conn.execute("SELECT queue FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
            tx.check(row[0] if row else None, ticket_id)

    def _reopen_flapping(self, tx: _Tx, batch: _Triggers, ticket_id: int, s: Signal) -> tuple[int, str]:
        """A resolved alert firing again within the flap window: its ticket, reopened (and kept
        out of the queue if a silence matches it now)."""
        t = self._current(tx, ticket_id)
        with tx.acting(s.actor) as received:
            self._move(tx, t, "reopen", extra=received)
            occurrences = t["occurrences"] + 1
            silenced = batch.triager.silenced(t) if batch.triager is not None else None
            self._set(tx, ticket_id, {"occurrences": occurrences, "suppressed": silenced})
            tx.event(ticket_id, "occurrence", {"occurrences": occurrences, "repeats": 1, "source": s.source,
                                               "flapping": True, **({"suppressed": silenced} if silenced else {}),
                                               **received})
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
        summary, data = tx.clean([s.change["summary"], s.change.get("data") or {}], None, mask_pii)
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
        # A message without a Message-ID is known by a digest of it (mail.message_digest).
        seen = message_id or th.get("digest")
        if seen and conn.execute("SELECT 1 FROM mail_messages WHERE message_id = ?", (seen,)).fetchone():
            return None, "ignored"  # seen before: an mbox read twice takes nothing twice
        if s.action == "ignore":
            self._remember_mail(tx, message_id, None, [], seen)
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
        parent, why = None, None
        if target is not None:
            t = self._current(tx, target[0])
            # What a reply does is the sender's doing: its comment and reopening show them, not the
            # account that runs intake.
            with tx.acting(s.actor) as received:
                outcome = "commented"
                if not self._may_reply(conn, t, th.get("from")):
                    # Anyone can put [SD-1] in a subject or a known Message-ID in In-Reply-To: only the
                    # requester and the desk's users (by email) speak on a ticket; others open their own.
                    parent, why, outcome = t["id"], "a reply from someone not on the ticket", None
                elif t["status"] in lifecycle.DONE:
                    done_at = clock.parse(t["closed_at"] or t["resolved_at"])
                    if (clock.parse(tx.at) - done_at).days < reopen_days:
                        try:
                            self._move(tx, t, "reopen", extra=received)
                            outcome = "reopened"
                        except Conflict:
                            pass  # its fingerprint is open elsewhere: the reply is still kept
                    else:
                        parent, outcome = t["id"], None  # too old: a new ticket, linked to the old one
                if outcome:
                    text = tx.clean(th.get("body") or "(empty message)", t["id"], mask_pii)
                    self._set(tx, t["id"], {"updated_at": tx.at})
                    tx.event(t["id"], "commented", {"text": text, "from": th.get("from"), "via": "email",
                                                    "message_id": message_id, **received})
                    self._remember_mail(tx, message_id, t["id"], th.get("attachments") or [], seen)
                    return t["id"], outcome
                elif why is None:
                    why = "a reply to a ticket done too long ago"
        ticket_id, _ = batch.add(s.ticket, s.source, actor=s.actor)
        batch.flush()
        if parent is not None:
            self._set(tx, ticket_id, {"parent_id": parent})
            tx.event(ticket_id, "linked", {"parent_id": parent, "previous_parent_id": None, "why": why})
        self._remember_mail(tx, message_id, ticket_id, th.get("attachments") or [], seen)
        return ticket_id, "created"

    @staticmethod
    def _may_reply(conn: sqlite3.Connection, t: dict[str, Any], sender: str | None) -> bool:
        """Whether an email from `sender` may comment on (and reopen) ticket `t`: its requester,
        or a user of the desk with that email address. (Watchers too, once tickets have them.)"""
        sender = (sender or "").strip().casefold()
        if "@" not in sender:  # no one mailbox's address (mail.py): a stranger, whatever the text
            return False
        if (t.get("requester") or "").strip().casefold() == sender:
            return True
        return conn.execute("SELECT 1 FROM users WHERE email = ?", (sender,)).fetchone() is not None

    @staticmethod
    def _remember_mail(tx: _Tx, message_id: str | None, ticket_id: int | None, attachments: list[dict],
                       seen: str | None = None) -> None:
        """`seen`: the key the message is known by (its Message-ID, or its digest without one)."""
        if seen or message_id:
            tx.conn.execute("INSERT OR IGNORE INTO mail_messages (message_id, ticket_id, received_at) VALUES (?, ?, ?)",
                            (seen or message_id, ticket_id, tx.at))
        if ticket_id is not None and attachments:
            files = [{"name": a["name"], "content_type": a["content_type"], "size": a["size"], "sha256": a["sha256"]}
                     for a in attachments]
            files = tx.clean(files, ticket_id)
            tx.conn.executemany(
                "INSERT INTO attachments (ticket_id, message_id, name, content_type, size, sha256, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(ticket_id, message_id, f["name"], f["content_type"], f["size"], f["sha256"], tx.at) for f in files])
            tx.event(ticket_id, "attachments", {"files": files})

    def _resolve_or_ack(self, tx: _Tx, batch: _Triggers, s: Signal, only_record: bool) -> tuple[int | None, str]:
        batch.flush()  # a ticket opened earlier in this batch must exist before it can move
        hit = batch.open.get(s.fingerprint)
        if hit is None:
            return None, "ignored"
        t = self._current(tx, hit[0])
        # What a source does is its doing (Signal.actor), as a mail reply is its sender's (_mail),
        # not that of whoever runs `serve` or `sdesk new`; who delivered it is kept too.
        with tx.acting(s.actor) as received:
            if s.action == "resolve":
                if only_record:
                    tx.event(t["id"], "alert_resolved", {"source": s.source, **received})
                    return t["id"], "recorded"
                self._move(tx, t, "resolve", resolution=f"Resolved by {s.source}: the alert stopped firing",
                           code="auto-resolved", extra={"source": s.source, **received})
                del batch.open[s.fingerprint]
                return t["id"], "resolved"
            if "ack" not in lifecycle.allowed_actions(t["status"]):
                return t["id"], "ignored"
            # A source's acknowledgement (PagerDuty's) says someone saw it there, not who: the
            # ticket keeps its assignee (none is invented from the delivering account).
            self._move(tx, t, "ack", claim=False, extra={"source": s.source, **received})
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
        with self._write(actor) as tx:
            self._current(tx, ticket_id)
            self._set(tx, ticket_id, {"updated_at": tx.at})
            tx.event(ticket_id, "commented", {"text": tx.clean(text, ticket_id)})

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
        with self._write(actor) as tx:
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
                corrected = {f: diff[f] for f in ("category", "queue") if f in diff and diff[f][0] is not None}
                if corrected and self._was_triaged(tx, ticket_id):
                    # A person overruling triage: the reassignment rate is how often triage is wrong.
                    tx.event(ticket_id, "triage_corrected", corrected)
        return self.get_or_raise(ticket_id=ticket_id), tuple(diff)

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
            self.raise_parent(tx, ticket_id)

    def _current(self, tx: _Tx, ticket_id: int) -> dict[str, Any]:
        """The ticket a write changes; the actor's role on its queue must allow the write."""
        row = tx.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
        tx.check(row["queue"], ticket_id)
        return _ticket(row)

    @staticmethod
    def _set(tx: _Tx, ticket_id: int, sets: dict[str, Any]) -> None:
        # Identifier columns too (an assignee given as free text): the event saying the change is
        # redacted, and the row must say the same (audit verify rebuilds it from the events).
        sets = {c: tx.clean(v, ticket_id) if v.__class__ is str else v for c, v in sets.items()}
        assignments = ", ".join(f"{column} = ?" for column in sets)
        tx.conn.execute(f"UPDATE tickets SET {assignments} WHERE id = ?", (*sets.values(), ticket_id))

