"""The desk as files: consistent online backups, integrity-checked restores, and a lossless
JSON-lines export that imports into an empty database.

The export is every row of every table, table by table in name order and row by row in rowid
order, with keys sorted: the same desk always exports to the same bytes, so an export, imported
and exported again, can be compared byte for byte. Schema bookkeeping (the migrations table)
and FTS5's internal tables are left out; the search index is rebuilt from its rows on import.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import BadInput, Conflict
from .dialect import SQLITE, Dialect

FORMAT = 1
SKIPPED = ("_sqlite_migrations", "sqlite_stat1", "sqlite_stat4")
BATCH = 5000


def _tables(conn: sqlite3.Connection, dialect: Dialect) -> list[str]:
    """The tables an export holds: real tables and FTS5 tables, not FTS5's shadow tables."""
    rows = dialect.definitions(conn)
    virtual = [name for name, sql in rows if sql and sql.upper().startswith("CREATE VIRTUAL TABLE")]
    shadow = {name for name, _ in rows for v in virtual if name.startswith(f"{v}_")}
    return [name for name, _ in rows if name not in SKIPPED and name not in shadow]


def _value(v: Any) -> Any:
    return {"$base64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v


def _unvalue(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) != {"$base64"}:
            raise ValueError("not a value")
        return base64.b64decode(v["$base64"], validate=True)  # binascii.Error is a ValueError
    if isinstance(v, list):
        raise ValueError("not a value")
    return v


def export_lines(conn: sqlite3.Connection, schema: int, since: str | None = None, *,
                 dialect: Dialect = SQLITE) -> Iterator[bytes]:
    """The export, line by line. With `since`, only rows whose time columns say they changed
    since then (for feeding other systems; such an export does not import)."""
    header = {"sdesk_export": FORMAT, "schema": schema, "since": since}
    yield _line(header)
    for table in _tables(conn, dialect):
        info = dialect.columns(conn, table)
        columns = [r[1] for r in info]
        where: str = ""
        args: tuple[str, ...] = ()
        times = [c for c in ("updated_at", "at", "received_at", "created_at", "started_at") if c in columns]
        if since and times:
            where, args = f' WHERE "{times[0]}" >= ?', (since,)
        elif since:
            continue
        key = dialect.rowid(conn, table)
        listed = ", ".join(f'"{c}"' for c in columns)
        if key is None:  # no rowid (SQLite's WITHOUT ROWID): ordered by its primary key
            order = ", ".join(f'"{r[1]}"' for r in sorted(info, key=lambda r: r[5]) if r[5])
            for row in dialect.stream(conn, f'SELECT {listed} FROM "{table}"{where} ORDER BY {order}', args):
                yield _line({"table": table, "row": dict(zip(columns, map(_value, row)))})
            continue
        # The rowid: SQLite's own, or the column that stands for it on another backend (an
        # integer key, or a hidden rowid column), so both export the same lines.
        for row in dialect.stream(conn, f'SELECT {key}, {listed} FROM "{table}"{where} ORDER BY {key}', args):
            yield _line({"table": table, "rowid": row[0], "row": dict(zip(columns, map(_value, row[1:])))})
    for name, seq in dialect.sequences(conn):
        yield _line({"sequence": name, "seq": seq})


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"


def import_lines(conn: sqlite3.Connection, lines: Iterable[bytes], schema: int,
                 check: Callable[[], object] = lambda: None, *, dialect: Dialect = SQLITE,
                 replace: bool = False) -> dict[str, int]:
    """Load an export into this (empty) database in one transaction; returns rows per table.
    Foreign keys are checked once at the end, since tables arrive in name order, and `check`
    (the audit chain, and the tables rebuilt from it) before the commit: a tampered export leaves
    nothing behind. `replace`: every row there is goes first, in the same transaction (a restore
    into a server's desk)."""
    if not replace and conn.execute("SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM events)").fetchone()[0]:
        raise Conflict("import goes into an empty desk: this database already has tickets or events")
    counts: dict[str, int] = {}
    pending: dict[str, list[tuple]] = {}
    statements: dict[str, str] = {}
    sequences: list[tuple[str, int]] = []
    tables = {t: {r[1] for r in dialect.columns(conn, t)} for t in _tables(conn, dialect)}
    dialect.foreign_keys(conn, False)  # only outside a transaction; checked at the end
    dialect.begin_write(conn)
    dialect.defer_constraints(conn)
    try:
        if replace:
            dialect.clear_tables(conn, list(tables))
        lines = iter(lines)
        header = _json(next(lines, b""), 1)
        if not isinstance(header, dict) or header.get("sdesk_export") != FORMAT:
            raise BadInput("not an sdesk export (its first line should be the export header)")
        if header.get("since"):
            raise BadInput("this export holds only what changed since "
                           f"{header['since']}: import needs a whole desk (sdesk export --jsonl)")
        if header.get("schema") != schema:
            raise BadInput(f"this export is of schema {header.get('schema')}, this sdesk writes {schema}: "
                           "export again with this version of sdesk")
        columns: dict[str, tuple[str, ...]] = {}
        keys: dict[str, str | None] = {}  # table -> what holds its rowid (dialect.rowid)
        for number, line in enumerate(lines, start=2):
            record = _json(line, number)
            if isinstance(record, dict) and set(record) == {"sequence", "seq"}:
                if not isinstance(record["sequence"], str) or type(record["seq"]) is not int:
                    raise BadInput(f"line {number}: a sequence needs a table name and a whole number")
                sequences.append((record["sequence"], record["seq"]))
                continue
            table, values = _row(record, number, tables)
            names = ("rowid", *record["row"]) if "rowid" in record else tuple(record["row"])
            if "rowid" in record:
                if table not in keys:
                    keys[table] = dialect.rowid(conn, table)
                if keys[table] is None:
                    raise BadInput(f"line {number}: {table} has no rowid")
                if keys[table] != "rowid":  # the rowid is a column here (the integer key): given once
                    if record["row"].get(keys[table]) != values[0]:
                        raise BadInput(f"line {number}: its rowid is not its {keys[table]}")
                    names, values = names[1:], values[1:]
            if table not in statements:
                _flush(conn, pending, statements)
                columns[table] = names
                quoted = ", ".join(f'"{name}"' for name in names)  # checked against the schema by _row
                statements[table] = f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join("?" * len(names))})'
            elif names != columns[table]:
                raise BadInput(f"line {number}: a row of {table} with other columns than its first")
            pending.setdefault(table, []).append(values)
            counts[table] = counts.get(table, 0) + 1
            if len(pending[table]) >= BATCH:
                _flush(conn, pending, statements)
        _flush(conn, pending, statements)
        _check_imported(conn, sequences, tables, dialect)
        # Inserting with AUTOINCREMENT made rows here; the export's counters replace them (ids
        # once used and deleted are never given again).
        dialect.set_sequences(conn, sequences)
        broken = dialect.foreign_key_violation(conn)
        if broken:
            raise BadInput(f"the export is not whole: a row of {broken[0]} refers to a missing row of {broken[2]}")
        check()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        dialect.foreign_keys(conn, True)
    return counts


def _row(record: Any, number: int, tables: dict[str, set[str]]) -> tuple[str, tuple]:
    """A row line's table and values (rowid first, when it has one), or why it is not one."""
    if not isinstance(record, dict) or record.get("table") not in tables or not isinstance(record.get("row"), dict) \
            or set(record) - {"table", "rowid", "row"}:
        raise BadInput(f"line {number}: not a row of a table of this desk")
    unknown = set(record["row"]) - tables[record["table"]]
    if unknown:
        raise BadInput(f"line {number}: {record['table']} has no column {sorted(unknown)[0]!r}")
    rowid = record.get("rowid")
    if "rowid" in record and type(rowid) is not int:
        raise BadInput(f"line {number}: its rowid is not a whole number")
    try:
        values = tuple(map(_unvalue, record["row"].values()))
    except (KeyError, ValueError, TypeError):
        raise BadInput(f"line {number}: a value is neither JSON text, a number nor {{\"$base64\": ...}}") from None
    return record["table"], ((rowid,) if "rowid" in record else ()) + values


def _check_imported(conn: sqlite3.Connection, sequences: list[tuple[str, int]], tables: Collection[str],
                    dialect: Dialect) -> None:
    """What the rows alone do not show: roles this sdesk knows, and id counters beyond every id."""
    from ..domain.roles import RANK

    for (role,) in conn.execute("SELECT role FROM users UNION SELECT role FROM user_queue_roles"):
        if role not in RANK:
            raise BadInput(f"the export gives a user the unknown role {role!r}")
    for name, seq in sequences:
        key = dialect.rowid(conn, name) if name in tables else None
        if key is None:
            raise BadInput(f"the export has an id counter for {name!r}, which is not a table with ids")
        top = conn.execute(f'SELECT max({key}) FROM "{name}"').fetchone()[0]
        if top is not None and seq < top:
            raise BadInput(f"the export's id counter for {name} ({seq}) is below its highest id ({top})")


def _flush(conn: sqlite3.Connection, pending: dict[str, list[tuple]], statements: dict[str, str]) -> None:
    for table, rows in pending.items():
        if rows:
            try:
                conn.executemany(statements[table], rows)
            except sqlite3.Error as e:
                raise BadInput(f"cannot import a row of {table}: {e}") from None
            rows.clear()


def _json(line: bytes, number: int) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise BadInput(f"line {number}: not JSON ({e})") from None


# -- backups ---------------------------------------------------------------------------------


def backup(conn: sqlite3.Connection, target: Path, dialect: Dialect = SQLITE) -> None:
    """A consistent copy of the live database (SQLite's online backup: other processes keep
    writing), written beside `target` and renamed into place only once complete and checked."""
    from ..atomic import replaced

    with replaced(target) as partial:
        copy = sqlite3.connect(partial)
        try:
            dialect.backup(conn, copy)
            dialect.single_file(copy)
        finally:
            copy.close()
        check_file(partial, target)


def check_file(path: Path, shown: Path | None = None) -> int:
    """That `path` is an intact SQLite database of sdesk; returns its schema version. `path` is
    a file of our own (a backup being written, a copy of one being restored): it is opened as
    it is, by name, with no URI parsing of its characters. Errors name `shown` (the user's file)."""
    shown = shown or path
    if not path.is_file():
        raise BadInput(f"{shown}: no such file")
    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise BadInput(f"{shown}: not an SQLite database")
        conn = sqlite3.connect(path)
        try:
            result = SQLITE.integrity_check(conn)[0]
            if result != "ok":
                raise BadInput(f"{shown}: failed its integrity check: {result}")
            if "events" not in SQLITE.tables(conn):
                raise BadInput(f"{shown}: not an sdesk database (no events table)")
            return SQLITE.schema_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise BadInput(f"{shown}: {e}") from None


def write_lines(lines: Iterable[bytes], out: IO[bytes]) -> int:
    n = 0
    for line in lines:
        out.write(line)
        n += 1
    return n
