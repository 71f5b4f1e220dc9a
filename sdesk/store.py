"""The Store: the only module that talks SQL.

Hot commands use the stdlib `sqlite3` connection directly; sqlite-utils is imported only to
migrate (see `migrations.py`). Every state change runs in one IMMEDIATE transaction that
writes the ticket and appends the events explaining it to the hash chain.
"""

from __future__ import annotations

import errno
import os
import shlex
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .domain.roles import DEFAULT_ROLE, claim_refusal, user_key
from .errors import BadInput, NotFound, NotSdesk, PermissionDenied, ReadOnly, SdeskError, StoreFault
from .storage import migrations
from .storage.dialect import SQLITE, Dialect
from .storage.rows import Refused, Tx, os_login
from .storage.tickets import TicketStore
from .storage.users import UsersStore

if TYPE_CHECKING:
    from .domain.notify import NotifyConfig
    from .storage.audit import AuditStore
    from .storage.classifier import ClassifierStore
    from .storage.cmdb import CmdbStore
    from .storage.health import HealthStore
    from .storage.kb import KbStore
    from .storage.mail import MailStore
    from .storage.metrics import MetricsStore
    from .storage.oncall import OnCallStore
    from .storage.outbox import OutboxStore
    from .storage.portal import PortalStore
    from .storage.problems import ProblemStore
    from .storage.requests import RequestStore
    from .storage.runbooks import Processes, RunbookStore
    from .storage.sla import SlaStore
    from .storage.triage import TriageStore
    from .storage.vectors import VectorStore
    pass


# Columns a new ticket may set, in insert order (team comes from enrichment; the last five
# from triage only).



# The application_id of a desk that `sdesk doctor` found damaged: every open reads it anyway (no
# cost), and writes are refused until a restore (which brings the backup's header) or a doctor
# run that finds the file whole again. Running the integrity check on each open is not an
# option: it reads every page (seconds at 1M tickets).
DAMAGED_ID = 0x53445358  # "SDSX"


def _damaged(path: Path | str) -> StoreFault:
    return StoreFault(f"the database is damaged (sdesk doctor found its integrity check failing): {path}; writes "
                      "are refused. Restore a backup (sdesk restore), or repair it and run sdesk doctor again")


def _is_url(text: str) -> bool:
    from .storage.pg import is_url

    return is_url(text)


def explain(e: sqlite3.Error, path: Path | str | None, context: str = "database") -> SdeskError:
    """An SQLite error as the one line a user can act on (its primary result code decides); a
    PostgreSQL server's (it has an SQLSTATE) as pg.explain says."""
    where = path or "the database"
    if hasattr(e, "sqlstate"):
        from .storage.pg import explain as explain_pg

        return explain_pg(e.__cause__ or e, str(where))
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
            SQLITE.use_wal(conn)
            migrations.apply(conn)
            # The schema is committed to the -wal, not the file: copy it into the file here, where
            # a failure raises (close() checkpoints too but swallows SQLITE_FULL, and a file
            # linked into place without its -wal is a desk half made that reads as damaged).
            busy, _, _ = SQLITE.checkpoint(conn, "TRUNCATE")
            if busy or os.path.getsize(name) != SQLITE.file_size(conn) or os.path.getsize(f"{name}-wal"):
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


def holds_a_desk(path: Path | str) -> bool:
    """Whether the database at `path` holds anything a desk was given (tickets, users, events,
    remembered state...): a fresh `sdesk init` holds nothing. Read through a read-only
    connection, so the file is left as it is (even one of an older schema, not upgraded), and
    no -wal or -shm is left beside it: immutable unless a -wal is there (a writer's, to be read).
    A PostgreSQL URL: its tables read in a read-only transaction."""
    from urllib.parse import quote

    if isinstance(path, str) and _is_url(path):
        from .storage import pg
        from .storage.dialect import POSTGRESQL

        server = pg.connect(path)
        try:
            server.execute("BEGIN READ ONLY")
            tables = POSTGRESQL.tables(server)  # (not its bookkeeping: sdesk_schema, sdesk_counters)
            return any(server.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() for name in tables)
        except sqlite3.Error as e:
            raise explain(e, path, f"cannot open database {path}") from None
        finally:
            server.close()

    real = os.path.realpath(path)
    mode = "mode=ro" if os.path.exists(f"{real}-wal") else "immutable=1"
    conn = sqlite3.connect(f"file:{quote(real)}?{mode}", uri=True, timeout=30)
    try:
        tables = [name for name in SQLITE.tables(conn)
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
        SQLITE.tables(conn)  # reads the schema: fails here when the -shm cannot be made
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
        app_id, version, pages = SQLITE.header(conn)
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
    legacy = app_id == 0 and version > 0 and {"tickets", "events"} <= set(SQLITE.tables(conn))
    if not legacy:
        raise NotSdesk(f"{path} is not an sdesk database")
    current = migrations.check_version(conn, version)
    if current and not read_only:  # made before the id was set: stamped once (apply does it on upgrade)
        SQLITE.set_application_id(conn, migrations.APPLICATION_ID)
    return current, False


def _file_ids(path: Path) -> tuple[tuple[int, int] | None, ...]:
    ids: list[tuple[int, int] | None] = []
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






class Store:
    # The actor a command line claims (`--as`, SDESK_USER, or the login by default), set by the
    # CLI: its writes are checked against the OS login (_check_claim). None (serve, whose actors
    # come from API tokens, and the library): not checked.
    claimed: str | None = None
    # Where notify.yaml comes from (the Desk's loader), read at the first write with events: a
    # read command never parses it. Every write queues the messages its events call for in the
    # outbox, in the same transaction (storage/outbox.enqueue).
    notify_source: Callable[[], NotifyConfig | None] | None = None
    _notify: Any = False  # False: not read yet

    @property
    def notify(self) -> NotifyConfig | None:
        """notify.yaml (domain/notify.py), when the desk has one."""
        if self._notify is False:
            self._notify = self.notify_source() if self.notify_source is not None else None
        return self._notify

    @notify.setter
    def notify(self, value: NotifyConfig | None) -> None:
        self._notify = value

    def __init__(self, path: str | Path, default_role: str = DEFAULT_ROLE, *, init_empty: bool = False,
                 create: bool = True, processes: Processes | None = None):
        """Open the sdesk database at `path`, making it when there is no file there (unless not
        `create`: then that is NotFound, and nothing is made). Any other file (an empty one too,
        unless `init_empty`) is refused, never initialised. A file this process cannot write is
        opened read-only: reads work and writes are refused. `processes`: the runner's view of
        this host's processes (services/processes.LOCAL), for runs whose process died; without
        it no run is known to have died (storage/runbooks.NoProcesses). A `postgresql://` URL
        opens a desk on that server instead (_open_postgres)."""
        if isinstance(path, str) and _is_url(path):
            self._open_postgres(path, default_role, init_empty=init_empty, create=create, processes=processes)
            return
        self.path = Path(path)
        # Who is really writing, recorded on each event beside the actor and checked against the
        # actor claimed (_check_claim): the OS login here; on PostgreSQL, the database login.
        self.login = os_login()
        self.dialect: Dialect = SQLITE  # what is SQLite's own in the SQL (dialect.py); parts reach it as db.dialect
        self.default_role = default_role  # of someone who is not a user (roles.yaml)
        # The parts, one per area of the desk: each runs its SQL through this store's connection
        # and transactions (store.kb.kb_search(...), store.oncall.pages(...)).
        # Every command needs tickets and users (the role check); the other parts are made, and
        # their modules imported, when first used (below): `show` and `list` load two of fourteen.
        self.tickets = TicketStore(self)
        self.users = UsersStore(self)
        self._processes = processes
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
            self.dialect.foreign_keys(self.conn, True)
            try:
                current, self.damaged = _is_current(self.conn, self.path, init_empty, self.read_only)
            except BaseException:
                self.conn.close()
                raise
            if not current:
                if self.read_only:
                    raise ReadOnly(f"the database is read-only ({self.read_only}) and needs the upgrade "
                                   f"a writable copy gets on open: {self.path}")
                self.dialect.use_wal(self.conn)
                migrations.apply(self.conn)
            self.dialect.configure(self.conn)  # durability and cache
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

    def _open_postgres(self, url: str, default_role: str, *, init_empty: bool, create: bool,
                       processes: Processes | None) -> None:
        """Open the desk in the PostgreSQL database `url` names. sdesk never makes a database on a
        server (its administrator does: createdb); it makes the schema in an empty one when the
        command may create a desk (`create`), as it makes a file. A database with tables of its
        own and no sdesk schema is refused; a newer schema too."""
        from .storage import pg
        from .storage.dialect import POSTGRESQL

        self.path = url  # type: ignore[assignment]  # shown in messages (never holds a password: pg.check_url)
        self.dialect = POSTGRESQL
        self.default_role = default_role
        self.tickets = TicketStore(self)
        self.users = UsersStore(self)
        self._processes = processes
        self.stopped = None
        self.damaged = False
        self.read_only = None
        self._files = None
        self.conn = pg.connect(url)  # type: ignore[assignment]
        try:
            app_id, version, tables = POSTGRESQL.header(self.conn)
            if app_id == 0 and tables and version == 0:
                raise pg.not_sdesk(url)
            if app_id == 0 and not tables and not (create or init_empty):
                raise NotFound(f"no sdesk database at {url} (the database there is empty): nothing was made (check --db or "
                               f"SDESK_DB; to start a desk there: sdesk --db {shlex.quote(url)} init)")
            self.damaged = app_id == DAMAGED_ID
            if not migrations.check_version(self.conn, version):  # type: ignore[arg-type]
                migrations.apply_postgres(self.conn)  # type: ignore[arg-type]
            # The database login, whatever the OS account: the server authenticated it (identity).
            self.login = POSTGRESQL.session_login(self.conn) or os_login()
        except sqlite3.Error as e:
            self.conn.close()
            raise explain(e, url, f"cannot open database {url}") from None
        except BaseException:
            self.conn.close()
            raise

    # -- the parts made when first used (PARTS names them all) ---------------------------------

    PARTS = ("tickets", "users", "audit", "classifier", "cmdb", "health", "kb", "mail", "metrics", "oncall", "outbox",
             "portal", "problems", "requests", "runbooks", "sla", "triage")

    @cached_property
    def audit(self) -> AuditStore:
        from .storage.audit import AuditStore

        return AuditStore(self, tickets=self.tickets)

    @cached_property
    def classifier(self) -> ClassifierStore:
        from .storage.classifier import ClassifierStore

        return ClassifierStore(self)

    @cached_property
    def cmdb(self) -> CmdbStore:
        from .storage.cmdb import CmdbStore

        return CmdbStore(self)

    @cached_property
    def health(self) -> HealthStore:
        from .storage.health import HealthStore

        return HealthStore(self)

    @cached_property
    def vectors(self) -> VectorStore:
        from .storage.vectors import VectorStore

        return VectorStore(self)

    @cached_property
    def kb(self) -> KbStore:
        from .storage.kb import KbStore

        return KbStore(self, cmdb=self.cmdb, tickets=self.tickets)

    @cached_property
    def requests(self) -> RequestStore:
        from .storage.requests import RequestStore

        return RequestStore(self, tickets=self.tickets, runbooks=self.runbooks)

    @cached_property
    def portal(self) -> PortalStore:
        from .storage.portal import PortalStore

        return PortalStore(self)

    @cached_property
    def outbox(self) -> OutboxStore:
        from .storage.outbox import OutboxStore

        return OutboxStore(self)

    @cached_property
    def mail(self) -> MailStore:
        from .storage.mail import MailStore

        return MailStore()

    @cached_property
    def metrics(self) -> MetricsStore:
        from .storage.metrics import MetricsStore

        return MetricsStore(self, tickets=self.tickets)

    @cached_property
    def oncall(self) -> OnCallStore:
        from .storage.oncall import OnCallStore

        return OnCallStore(self, tickets=self.tickets)

    @cached_property
    def problems(self) -> ProblemStore:
        from .storage.problems import ProblemStore

        return ProblemStore(self, tickets=self.tickets)

    @cached_property
    def runbooks(self) -> RunbookStore:
        from .storage.runbooks import RunbookStore

        return RunbookStore(self, tickets=self.tickets, processes=self._processes)

    @cached_property
    def sla(self) -> SlaStore:
        from .storage.sla import SlaStore

        return SlaStore(self)

    @cached_property
    def triage(self) -> TriageStore:
        from .storage.triage import TriageStore

        return TriageStore(self, classifier=self.classifier, sla=self.sla, tickets=self.tickets)

    def close(self) -> None:
        self.conn.close()

    def integrity(self, limit: int = 20) -> list[str]:
        """SQLite's integrity check: its first `limit` findings, [] when the file is whole. It
        reads every page (29 ms at 10k tickets, seconds at 1M), so only `sdesk doctor` runs it;
        commands meet damage as SQLITE_CORRUPT on the pages they touch (explain). A damaged desk
        is marked so that every later write is refused (DAMAGED_ID); a whole one is unmarked."""
        try:
            found = self.dialect.integrity_check(self.conn, limit)
        except sqlite3.DatabaseError as e:
            found = [str(e)]
        problems = [] if found == ["ok"] else found
        if bool(problems) != self.damaged and not self.read_only:
            with suppress(sqlite3.Error):  # the header page may be what is damaged
                self.dialect.set_application_id(self.conn, DAMAGED_ID if problems else migrations.APPLICATION_ID)
                self.damaged = bool(problems)
        return problems

    def _still_marked(self) -> bool:
        """Whether the damaged mark is still in the header: a restore by another connection (or
        process) replaces the header with the backup's."""
        self.damaged = self.dialect.application_id(self.conn) == DAMAGED_ID
        return self.damaged

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self, actor: str, *, need: str = "agent", what: str = "changing the desk",
               claim: bool = True, damaged_ok: bool = False) -> Iterator[Tx]:
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
        self.dialect.begin_write(self.conn)
        try:
            tx = Tx(self.conn, actor, self.users.access(actor, conn=self.conn), need, what, dialect=self.dialect,
                    login=self.login)
            if claim and self.claimed is not None and user_key(actor) == user_key(self.claimed):
                self._check_claim(tx.conn, actor, tx.login)
            yield tx
            if not tx.checked:  # it touched no ticket: the role on the desk decides
                tx.check()
            if tx.events and self.notify is not None:
                from .storage.outbox import enqueue

                tx.queued = enqueue(tx, self.notify)
            tx.flush()
            self.conn.execute("COMMIT")
            self._check_files()
        except Refused as refused:
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
                busy, log, done = self.dialect.checkpoint(self.conn, "FULL")
                saved = not busy and log == done
            except sqlite3.Error:
                saved = False
            kept = ("every write so far (the last one too, not yet reported) was saved into the database file" if saved
                    else "the last writes may not be in the database file")
            self.stopped = f"{which} was deleted or replaced while sdesk was writing: stopped; {kept}"
        raise StoreFault(self.stopped)

    def require(self, actor: str, *, need: str, what: str) -> None:
        """Refuse (and record) unless `actor` has at least role `need` on the desk, for work
        that is not a store write of its own (a restore, an import)."""
        with self.write(actor, need=need, what=what, damaged_ok=True):
            pass

    def record(self, actor: str, *, kind: str, data: dict[str, Any]) -> None:
        """An event about the whole desk (a restore), on the chain."""
        with self.write(actor, need="viewer") as tx:
            tx.event(None, kind, data)

    def desk_state(self) -> dict[str, tuple[str, str]]:
        """What the desk remembers about itself: key -> (value, when it was set)."""
        return {key: (value, at) for key, value, at in self.conn.execute("SELECT key, value, at FROM desk_state")}

    def set_desk_state(self, key: str, *, value: str, actor: str, need: str = "viewer",
                       event: str | None = None) -> None:
        """Remember `value` under `key` (a time stamp for "tick ran", a path for the config);
        `event`: also record it on the chain as that kind (a change people should see)."""
        with self.write(actor, need=need, what=f"setting {key}") as tx:
            tx.conn.execute("INSERT INTO desk_state (key, value, at) VALUES (?, ?, ?) ON CONFLICT (key) "
                            "DO UPDATE SET value = excluded.value, at = excluded.at", (key, tx.clean(value), tx.at))
            if event:
                tx.event(None, event, {key: value})

    # -- the desk as files: the face picks the file and asks; the store reads and writes ------------

    def backup_to(self, target: Path) -> None:
        """A checked copy of the live database at `target` (see desk_file.backup). A desk on a
        server is copied into a new SQLite desk there: one snapshot of it, exported and imported
        (the import verifies the chain and the rows), so a backup is one file wherever the desk
        lives, that `sdesk --db FILE` reads and `sdesk restore` restores into either."""
        if self.dialect is SQLITE:
            from .storage.desk_file import backup

            backup(self.conn, target, self.dialect)
            return
        from .atomic import replaced
        from .storage.desk_file import check_file, export_lines

        with replaced(target) as partial:
            with Store(partial, init_empty=True) as copy:
                with self.dialect.reading(self.conn):
                    copy.import_from(export_lines(self.conn, migrations.SCHEMA_VERSION, dialect=self.dialect))
                SQLITE.single_file(copy.conn)
            check_file(partial, target)

    def restore_from(self, backup: Store, *, source: str, events: int, head: str, actor: str) -> None:
        """Replace this database with `backup` (an open, verified copy: events and head are what
        its verify said), and record the restore on the restored chain. On a server, the desk's
        rows are replaced by the backup's in one transaction, checked as an import is."""
        if self.dialect is SQLITE:
            self.dialect.backup(backup.conn, self.conn)
        else:
            from .storage.desk_file import export_lines, import_lines

            with backup.dialect.reading(backup.conn):
                import_lines(self.conn, export_lines(backup.conn, migrations.SCHEMA_VERSION, dialect=backup.dialect),
                             migrations.SCHEMA_VERSION, self.audit.verify, dialect=self.dialect, replace=True)
        self.record(actor, kind="restored", data={"from": source, "events": events, "head": head})

    def export_to(self, out: IO[bytes], *, since: str | None = None) -> int:
        """Write the desk (or the rows changed since `since`) to `out` as JSON lines, from one
        read snapshot whatever others write meanwhile; returns the table rows written (not the
        header line nor the id counters, as import counts them)."""
        from .storage.desk_file import export_lines, write_lines

        rows = 0

        def counted(lines: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal rows
            for line in lines:
                rows += line.startswith(b'{"row"')  # keys are sorted: a row line starts so, no other does
                yield line

        with self.dialect.reading(self.conn):
            write_lines(counted(export_lines(self.conn, migrations.SCHEMA_VERSION, since, dialect=self.dialect)), out)
        return rows

    def import_from(self, lines: Iterable[bytes]) -> dict[str, int]:
        """Load an export into this empty database in one transaction, checked as `audit verify`
        checks before it commits (see desk_file.import_lines); returns rows per table."""
        from .storage.desk_file import import_lines

        return import_lines(self.conn, lines, migrations.SCHEMA_VERSION, self.audit.verify, dialect=self.dialect)

    def check_claim(self, actor: str) -> None:
        """Refuse (and record) unless this process's OS login may act as `actor` (_check_claim),
        for work whose writes happen elsewhere (serve acting as `actor` for untokened requests)."""
        with self.write(actor, need="viewer"):
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
        raise Refused(claim_refusal(login, tuple(me) if me else None, actor, kind=self.dialect.login_kind),
                      None, None, "admin",
                       f"acting as {actor}", record_as=me[0] if me else f"login:{login}")

    def _record_refusal(self, actor: str, refused: Refused) -> None:
        """One permission_denied event per (actor, OS login, minute): a refusal repeated within
        the minute only counts, in `refusals`, so a loop of refused requests cannot flood the
        chain. The next window's event carries the previous window's final count, so every count
        but the current minute's is on the chain."""
        with self.write(actor, need="viewer", claim=False) as tx:
            minute = tx.at[:16]  # YYYY-MM-DDTHH:MM
            last = tx.conn.execute("SELECT minute, count, event_id FROM refusals WHERE actor = ? AND login = ?",
                                   (actor, tx.login)).fetchone()
            if last is not None and last[0] == minute:
                tx.conn.execute("UPDATE refusals SET count = count + 1 WHERE actor = ? AND login = ?", (actor, tx.login))
                return
            data: dict[str, Any] = {"need": refused.need, "what": refused.what, "queue": refused.queue,
                                    "message": str(refused)}
            if last is not None and last[1] > 1:
                data["before"] = {"event": last[2], "minute": last[0], "count": last[1]}
            event_id = tx._next_id
            tx.event(refused.ticket_id, "permission_denied", data)
            tx.conn.execute("INSERT INTO refusals (actor, login, minute, count, event_id) VALUES (?, ?, ?, 1, ?) "
                            "ON CONFLICT (actor, login) DO UPDATE SET minute = excluded.minute, count = 1, "
                            "event_id = excluded.event_id", (actor, tx.login, minute, event_id))

    # -- reads ---------------------------------------------------------------------------












    # -- writes --------------------------------------------------------------------------

