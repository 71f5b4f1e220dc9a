"""A desk on PostgreSQL: what `--db postgresql://...` opens. psycopg 3 (the `pg` extra) is
imported here and only here, when a URL is given; the store's SQL reaches the server through
`Connection`, which takes the store's portable SQL as it is written for SQLite's driver (`?`
placeholders, rows read by name or position, `BEGIN`/`COMMIT` by hand) and gives back the same
Python values (time stamps as ISO 8601 text in UTC, whole numbers as int). Errors come out as
the DB-API classes the store already catches (sqlite3's), carrying the server's SQLSTATE, so the
store has one way to meet a database error. Below the store; imports nothing of its parts."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import BadInput, NotFound, NotSdesk, PermissionDenied, SdeskError, ServerUnavailable, StoreFault

# What --db may name on a server: a libpq URI (postgresql://host/db, postgresql:///db over the
# local socket, postgresql://?service=desk). postgres:// is libpq's other spelling.
_SCHEME = re.compile(r"postgres(?:ql)?://", re.I)
# A password written into the URL: `user:secret@` or a password= parameter.
_PASSWORD_IN_URL = re.compile(r"^[^/]*//[^/@?#]*:[^/@?#]*@|[?&]password=", re.I)


def is_url(text: str) -> bool:
    """Whether --db names a PostgreSQL database (and not a file)."""
    return bool(_SCHEME.match(text))


def check_url(url: str, given_as: str) -> str:
    """The URL, or BadInput when it carries a password: a command line is seen by everyone on the
    machine (ps, shell history); libpq reads it from ~/.pgpass, PGPASSWORD or the service file."""
    if _PASSWORD_IN_URL.search(url):
        raise BadInput(f"{given_as}: the PostgreSQL URL holds a password, which anyone on this machine could read "
                       "(ps, shell history): put it in ~/.pgpass, PGPASSWORD or a service file "
                       "(postgresql://?service=NAME) and leave it out of the URL; nothing was opened")
    return url


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise SdeskError("a PostgreSQL desk needs psycopg: pip install 'sdesk[pg]'") from None
    return psycopg


# -- rows: read by position or by name, as sqlite3.Row ---------------------------------------------

class Row(tuple):
    """A row that answers row[0] and row["name"], and dict(row) (keys()), like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _named_rows(cursor: Any) -> Any:
    names = tuple(c.name for c in cursor.description or ())
    return functools.partial(tuple.__new__, _row_class(names))  # no Python frame per row


# -- the SQL: '?' placeholders become psycopg's '%s' ------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@functools.lru_cache(maxsize=2048)
def placeholders(sql: str) -> str:
    """`sql` with each `?` outside quotes as `%s`, and each `%` as `%%`, inside quotes too: psycopg
    reads `%` everywhere (the store's SQL is its own text, never a user's: user text is always a
    bound value)."""
    return _TOKENS.sub(lambda m: "%s" if m.group() == "?" else m.group().replace("%", "%%"), sql)


_NAMED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<![:\w]):([A-Za-z_]\w*)|%")


@functools.lru_cache(maxsize=512)
def named(sql: str) -> str:
    """`sql` with each `:name` outside quotes (sqlite3's named style, bound from a dict) as
    psycopg's `%(name)s`, and each `%` as `%%` (a `::type` cast is not a name)."""
    return _NAMED.sub(lambda m: f"%({m.group(1)})s" if m.group(1) else m.group().replace("%", "%%"), sql)


def for_psycopg(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> str:
    """The store's SQL as psycopg reads it: named (`:name`) for a dict of parameters, else `?`."""
    if not params:
        return sql
    return named(sql) if isinstance(params, Mapping) else placeholders(sql)


# -- errors -------------------------------------------------------------------------------------

def _as_dbapi(e: Exception) -> sqlite3.Error:
    """A psycopg error as the DB-API class the store catches (sqlite3's), its SQLSTATE kept."""
    state = getattr(e, "sqlstate", None) or ""
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    cls: type[sqlite3.Error]
    if state.startswith("23"):
        cls = sqlite3.IntegrityError
    elif state.startswith(("22", "42")):
        cls = sqlite3.ProgrammingError if state.startswith("42") else sqlite3.DataError
    else:
        cls = sqlite3.OperationalError
    error = cls(message)
    error.sqlstate = state  # type: ignore[union-attr]
    return error


# The server's own words wrapped by libpq and psycopg around the reason ("connection failed:
# connection to server on socket "/run/...s.PGSQL.5432" failed: FATAL:  ..."): the reason alone.
_WRAPPING = re.compile(r"^(?:connection (?:failed|is bad):\s*|connection to server .*? failed:\s*|(?:FATAL|ERROR):\s+)",
                       re.I)
# A session the server ended, or one that cannot start (no server at the address, the server
# starting up or shutting down): the connection's fault, not the command's.
_LOST = ("57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006")
_BAD_VALUE = re.compile(r"invalid \w+ (?:value|number)")
_UNTRUSTED = ("root certificate file", "certificate verify failed", "does not match host name",
              "server does not support ssl", "could not read root certificate", "certificate present, but not private key")
_UNREACHABLE = ("no such file or directory", "connection refused", "could not connect", "could not translate host",
                "timeout expired", "network is unreachable", "no route to host", "is the server running")
_GONE = ("server closed the connection", "terminating connection", "connection is closed", "consuming input failed",
         "the connection is lost", "the database system is", "connection already closed", "ssl syscall",
         "server conn crashed", "lost synchronization", "sending query failed", "connection is bad")


def _reason(text: str) -> str:
    """The first line of a server's or libpq's message, without the wrapping of the connection."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    for _ in range(3):  # "connection is bad: connection to server ... failed: FATAL:  ..."
        shorter = _WRAPPING.sub("", first, count=1).strip()
        if shorter == first:
            break
        first = shorter
    return first.rstrip(".") or "the connection failed"


def explain(e: BaseException, where: str, *, connecting: bool = False) -> SdeskError:
    """A server's refusal or fault as one line a user can act on (its SQLSTATE decides, or, for
    what libpq says before a session has one, its words). `connecting`: before any command ran."""
    state = getattr(e, "sqlstate", None) or ""
    text = str(e).strip()
    first = _reason(text) if text else type(e).__name__
    lowered = text.lower()
    connecting = connecting and isinstance(e, _driver().OperationalError)  # not a URL libpq refused to read
    if not state and "cannot contain nul" in lowered:  # said by psycopg before anything was sent
        return BadInput("a text holds a NUL character (0x00), which PostgreSQL cannot store in text (an SQLite "
                        f"desk keeps it): take it out; nothing was written ({where})")
    if state == "3D000" or (not state and "database" in lowered and "does not exist" in lowered):
        return NotFound(f"{first} on the PostgreSQL server ({where}): sdesk never makes a database on a server; "
                        "an administrator makes it (createdb NAME), then `sdesk --db URL init` fills it")
    if state in ("28P01", "28000") or (not state and (
            "password authentication failed" in lowered or "no password supplied" in lowered
            or ("role" in lowered and "does not exist" in lowered) or "no pg_hba.conf entry" in lowered
            or "authentication failed" in lowered)):
        hint = ("; the password comes from ~/.pgpass, PGPASSWORD or the service file, never the URL"
                if "password" in lowered else "")
        return PermissionDenied(f"PostgreSQL refused the login ({where}): {first}{hint}")
    if state.startswith("42501") or state == "42501":
        hint = (" (the desk's schema is made by the database's owner: createdb --owner LOGIN NAME, or GRANT CREATE "
                "ON SCHEMA public TO LOGIN)" if "permission denied for schema" in lowered else "")
        return PermissionDenied(f"PostgreSQL refused it ({where}): {first}{hint}")
    # Mistakes in the URL or the TLS set-up, which running the command again would not mend (not
    # UNAVAILABLE): a value libpq cannot read, a server whose certificate cannot be checked.
    if connecting and _BAD_VALUE.search(lowered):
        return BadInput(f"cannot read the PostgreSQL URL {where}: {first}")
    if connecting and any(w in lowered for w in _UNTRUSTED):
        return PermissionDenied(f"cannot verify the PostgreSQL server ({where}): {first} (sslmode=verify-full checks "
                                "the server's certificate against ~/.postgresql/root.crt or the URL's sslrootcert, "
                                "and that it names the URL's host)")
    if state in _LOST or (not state and (connecting or any(w in lowered for w in _UNREACHABLE + _GONE))):
        if connecting or (not state and any(w in lowered for w in _UNREACHABLE)):
            where_to = re.sub(r"^connection (?:failed|is bad):\s*", "", text.splitlines()[0] if text else first)
            return ServerUnavailable(f"cannot reach the PostgreSQL server ({where}): {where_to}; nothing was read or "
                                     "written (is the server running, and is the URL's host right?)")
        return ServerUnavailable(f"the PostgreSQL server ended the connection ({where}): {first}; the write in "
                                 "progress, if any, was undone, and what was reported done is kept "
                                 "(run it again once the server is back: repeats are recognised)")
    if state.startswith("53"):
        return StoreFault(f"the PostgreSQL server is out of resources ({where}): {first}; the write in progress "
                          "was undone")
    return SdeskError(f"database ({where}): {first}")


# -- the connection -------------------------------------------------------------------------------

class Cursor:
    """A psycopg cursor read as sqlite3's: fetchone, fetchall, iteration, rowcount."""

    def __init__(self, cursor: Any):
        self._cursor = cursor

    @property
    def row_factory(self) -> Any:
        return self._cursor.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        from psycopg.rows import tuple_row

        self._cursor.row_factory = tuple_row if factory is None else _named_rows

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        try:
            self._cursor.execute(for_psycopg(sql, params), params or None)
        except _driver().Error as e:
            raise _as_dbapi(e) from e
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return self._rows() if self._cursor.description else iter(())

    def _rows(self) -> Iterator[Any]:
        # In batches: psycopg's own iteration costs a Python call per row (a second of a
        # million-ticket report); fetchmany makes a batch's rows in one.
        fetch = self._cursor.fetchmany
        while rows := fetch(1000):
            yield from rows

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def close(self) -> None:
        self._cursor.close()


_TEMPLATE_ITEM = re.compile(r"\s*(\?|'(?:[^']|'')*'|NULL|-?\d+)\s*(?:,|$)")


@functools.lru_cache(maxsize=64)
def _copy_template(template: str) -> tuple[slice | tuple[Any, ...], ...] | None:
    """One row's template "(?, ?, 'new', ?)" as the pieces of the row COPY is given: slices of
    the bound row and tuples of the literals' values between them ((slice(0, 2), ('new',),
    slice(2, None))); None when every column is bound (the row as it is)."""
    body = template.strip()
    if not (body.startswith("(") and body.endswith(")")):
        raise ValueError(f"not a row template: {template}")
    pieces: list[slice | tuple[Any, ...]] = []
    body, at, bound, start = body[1:-1], 0, 0, 0
    while at < len(body):
        item = _TEMPLATE_ITEM.match(body, at)
        if item is None:
            raise ValueError(f"a row template holds only ?, 'text', NULL and whole numbers: {template}")
        text = item.group(1)
        if text == "?":
            bound += 1
        else:
            if bound > start:
                pieces.append(slice(start, bound))
            start = bound
            value = None if text == "NULL" else text[1:-1].replace("''", "'") if text.startswith("'") else int(text)
            pieces.append((value,))
        at = item.end()
    if start == 0 and not pieces:
        return None
    pieces.append(slice(start, None))
    return tuple(pieces)


class Connection:
    """One session with the server, in autocommit mode: the store opens and ends its
    transactions with BEGIN/COMMIT/ROLLBACK, as it does on SQLite."""

    def __init__(self, raw: Any, where: str):
        self.raw = raw
        self.where = where  # the URL as shown in messages (it never holds a password: check_url)
        self.row_factory: Any = sqlite3.Row

    def cursor(self) -> Cursor:
        cursor = self.raw.cursor(row_factory=_named_rows)
        return Cursor(cursor)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        cursor = self.cursor()
        try:
            cursor._cursor.executemany(placeholders(sql), list(rows))
        except _driver().Error as e:
            raise _as_dbapi(e) from e
        return cursor

    def copy_rows(self, target: str, template: str, rows: Iterable[Sequence[Any]]) -> None:
        """The rows into `target` ("table (col, ...)") by COPY, each row bound to `template` (one
        row of a multi-row INSERT: "(?, ?, 'literal', ...)"), as rows.insert_rows would insert them.
        No statement is parsed and no parameter bound per row: a stream's bulk (Dialect.bulk_insert)."""
        pieces = _copy_template(template)
        try:
            with self.raw.cursor().copy(f"COPY {target} FROM STDIN") as copy:
                write = copy.write_row
                if pieces is None:
                    for row in rows:
                        write(row)
                elif len(pieces) == 3 and isinstance(pieces[1], tuple):  # one literal among bound values
                    head, literal, tail = pieces
                    for row in rows:
                        row = tuple(row)
                        write(row[head] + literal + row[tail])  # type: ignore[index,operator]
                else:
                    for row in rows:
                        row = tuple(row)
                        write(sum((row[p] if isinstance(p, slice) else p for p in pieces), ()))
        except _driver().Error as e:
            raise _as_dbapi(e) from e

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (a failed one too: it needs its ROLLBACK); not on a lost
        connection, where a ROLLBACK would only hide the error that lost it."""
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR,
                                                    TransactionStatus.ACTIVE)

    def close(self) -> None:
        self.raw.close()

    def commit(self) -> None:  # DB-API; the store commits by statement
        if self.in_transaction:
            self.execute("COMMIT")

    def notifications(self, timeout: float) -> list[str]:
        """The payloads of the notifications (LISTEN) this session was sent, waiting up to
        `timeout` seconds for the first, then taking those already here; [] when none came.
        (Live updates: dialect.PostgreSQL.changes.)"""
        try:
            payloads = [n.payload for n in self.raw.notifies(timeout=timeout, stop_after=1)]
            if payloads:
                payloads += [n.payload for n in self.raw.notifies(timeout=0)]
        except _driver().Error as e:
            raise _as_dbapi(e) from e
        return payloads


def _iso(text: str) -> str:
    """timestamptz in the server's text form, the session in UTC ('2026-12-07 11:16:18+00'), as the
    store writes time stamps ('2026-12-07T11:16:18Z', clock.iso)."""
    if len(text) == 22 and text.endswith("+00"):
        return f"{text[:10]}T{text[11:19]}Z"
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loaders(raw: Any) -> None:
    """Values as the store reads them from SQLite: time stamps as ISO text, numbers as int where
    whole (sum() of integers is numeric on PostgreSQL), dates as 'YYYY-MM-DD'."""
    from psycopg.adapt import Dumper, Loader

    class Stamp(Loader):
        def load(self, data: Any) -> str:
            return _iso(bytes(data).decode())

    class Number(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            if "." in text or "e" in text.lower() or text in ("NaN", "Infinity", "-Infinity"):
                return float(text)
            return int(text)

    class Day(Loader):
        def load(self, data: Any) -> str:
            return bytes(data).decode()

    class Flag(Dumper):  # True and False are stored as 1 and 0 (INTEGER columns), as sqlite3 binds them
        oid = 20  # int8

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    raw.adapters.register_dumper(bool, Flag)
    raw.adapters.register_loader("timestamptz", Stamp)
    raw.adapters.register_loader("numeric", Number)
    raw.adapters.register_loader("date", Day)


def connect(url: str) -> Connection:
    """A session with the server `url` names, in UTC; faults as one line (explain)."""
    psycopg = _driver()
    try:
        from psycopg.conninfo import conninfo_to_dict

        # The session in UTC, beside the URL's own options (a search_path, say), which it keeps.
        given = conninfo_to_dict(url)
        own = given.get("options") or ""
        # Ten seconds to connect unless the URL says; the sessions show as sdesk's in
        # pg_stat_activity unless the URL names them otherwise.
        timeout = {} if "connect_timeout" in given else {"connect_timeout": 10}
        raw = psycopg.connect(url, autocommit=True, fallback_application_name="sdesk", **timeout,
                              options=f"-c TimeZone=UTC -c client_min_messages=warning -c jit=off {own}".strip())
    except psycopg.ProgrammingError as e:  # a URL libpq reads but refuses (an unknown parameter)
        raise BadInput(f"cannot read the PostgreSQL URL {url}: {_reason(str(e))}") from None
    except psycopg.Error as e:
        raise explain(e, url, connecting=True) from None
    except (ValueError, TypeError) as e:  # a URL libpq cannot parse: said before any connection
        raise BadInput(f"cannot read the PostgreSQL URL {url}: {e}") from None
    _loaders(raw)
    return Connection(raw, url)


def not_sdesk(where: str) -> NotSdesk:
    return NotSdesk(f"{where} is not an sdesk database (it has tables of its own and no sdesk schema)")


# -- the schema: migrations' SQLite DDL, read as PostgreSQL's ---------------------------------------

_RULES = [
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),  # a counter export keeps
    (re.compile(r"\bid INTEGER PRIMARY KEY\b"), "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\b(at|\w+_at) TEXT\b"), r"\1 TIMESTAMPTZ"),  # time stamps: every column named at or *_at
    (re.compile(r'(?<!["\w.])user\b(?!["\w])'), '"user"'),  # a reserved word on PostgreSQL
    (re.compile(r"(REFERENCES \w+\(\w+\)(?: ON DELETE CASCADE)?)"), r"\1 DEFERRABLE"),  # an import defers them
    (re.compile(r"json_extract\((\w+), '\$\.(\w+)'\)"), r"(\1::jsonb #>> '{\2}')"),
]
_INTEGER_KEY = re.compile(r"\b\w+ (?:BIGSERIAL|BIGINT)(?: GENERATED BY DEFAULT AS IDENTITY)? PRIMARY KEY")
_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE (\w+) \((.*)\)\s*(WITHOUT ROWID)?\s*$", re.S)


def ddl(sql: str) -> str:
    """One of migrations.py's statements (its own text, SQLite's dialect) as PostgreSQL's. A table
    SQLite gives a hidden rowid and that has no integer key of its own gets a `rowid` column, so
    that an export orders and numbers its rows as SQLite's does; WITHOUT ROWID tables have none."""
    for pattern, replacement in _RULES:
        sql = pattern.sub(replacement, sql)
    table = _CREATE_TABLE.match(sql)
    if table:
        name, body, without_rowid = table.groups()
        if not without_rowid and not _INTEGER_KEY.search(body):
            body = body.rstrip() + ",\n    rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE"
        sql = f"CREATE TABLE {name} ({body})"
    return sql


class Schema:
    """What a migration step is given on PostgreSQL in place of sqlite_utils' Database: execute()
    takes the step's SQLite DDL and runs it as PostgreSQL's (ddl); `postgres` tells the few steps
    whose SQL has no such reading (triggers, full-text search, ANALYZE) to run their own."""

    postgres = True

    def __init__(self, conn: Connection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        return self.conn.execute(ddl(sql), params)
