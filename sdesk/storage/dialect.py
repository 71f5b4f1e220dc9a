"""What differs between SQL databases, behind one object: the store writes portable SQL
(`ON CONFLICT`, `RETURNING`, `CASE`, subqueries) and asks its dialect for the rest. `Dialect`
says what a backend must provide; `SQLite` is the one there is (PostgreSQL comes next on this
seam). Methods return SQL fragments or do the operation; no query building beyond that.
Below the store (store.py, storage/rows.py, the parts, desk_file.py); imports nothing of theirs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class Dialect:
    """What a backend provides. Fragments take SQL expressions (column names, placeholders)
    and return an expression; the connection methods run on a DB-API connection of the backend.
    Time stamps are ISO 8601 text in UTC (clock.iso), JSON columns hold JSON text."""

    name = "abstract"

    # -- ids: the hash chain hashes each event's id, so the next id must be known before the insert
    def last_id(self, conn: Any, table: str) -> int:
        """The largest id ever given in `table` (0 if none), deleted rows included: ids are never reused."""
        raise NotImplementedError

    # -- JSON
    def json_get(self, column: str, path: str) -> str:
        """The scalar at `path` in JSON `column`: a path of ours ('$.a.b', '$.a[1]', inlined
        as a literal) or a placeholder ('?') bound to one."""
        raise NotImplementedError

    def json_array_has(self, column: str, value: str, *, lower: bool = False) -> str:
        """A condition: the JSON array in `column` holds `value` (case-insensitively with `lower`)."""
        raise NotImplementedError

    # -- time
    def epoch(self, expr: str) -> str:
        """Seconds since 1970 of the time stamp `expr` (NULL stays NULL)."""
        raise NotImplementedError

    def plus_days(self, expr: str, days: str) -> str:
        """The time stamp `expr` plus `days` (an integer expression) days, comparable with `stamp()`."""
        raise NotImplementedError

    def stamp(self, expr: str) -> str:
        """The time stamp `expr` in the form plus_days returns (to compare the two)."""
        raise NotImplementedError

    def week_start(self, expr: str) -> str:
        """The Monday (a date, UTC) that starts the week of the time stamp `expr`."""
        raise NotImplementedError

    # -- full-text search over the knowledge base (kb_fts: title, body, tags, cis; key = article id)
    def fts_rank(self) -> str:
        """The rank expression of a match (lower is better), title and tags weighted over the body."""
        raise NotImplementedError

    def fts_match(self) -> str:
        """A condition: the article matches the query bound to one placeholder."""
        raise NotImplementedError

    def fts_snippet(self, open_mark: str, close_mark: str) -> str:
        """An excerpt of the body around the match, the matched words between the marks."""
        raise NotImplementedError

    def fts_key(self) -> str:
        """The column of kb_fts that is the article id."""
        raise NotImplementedError

    # -- percentiles
    def percentiles(self, conn: Any, table: str, group: str, value: str,
                    ranks: Callable[[int], Mapping[str, int]]) -> dict[Any, dict[str, Any]]:
        """Nearest-rank percentiles of `value` in `table` by `group`: group -> label -> value,
        where `ranks(n)` says which 1-based ranks of n sorted values to read (label -> rank)."""
        raise NotImplementedError

    # -- settings and the file
    def configure(self, conn: Any) -> None:
        """Per-connection settings every connection of the store gets once it is open and current
        (durability, cache); foreign keys are turned on first, by foreign_keys()."""
        raise NotImplementedError

    def use_wal(self, conn: Any) -> None:
        """Concurrent readers beside one writer (persistent in the database where it applies)."""
        raise NotImplementedError

    def checkpoint(self, conn: Any, mode: str = "FULL") -> tuple[int, int, int]:
        """Copy the log into the database: (busy, log pages, pages copied)."""
        raise NotImplementedError

    def application_id(self, conn: Any) -> int:
        raise NotImplementedError

    def set_application_id(self, conn: Any, value: int) -> None:
        raise NotImplementedError

    def schema_version(self, conn: Any) -> int:
        raise NotImplementedError

    def journal_mode(self, conn: Any) -> str:
        raise NotImplementedError

    def data_version(self, conn: Any) -> int:
        """A number that changes when another connection committed (a cache key)."""
        raise NotImplementedError

    def integrity_check(self, conn: Any, limit: int = 100) -> list[str]:
        """The database's own consistency check: ["ok"] or its first `limit` findings."""
        raise NotImplementedError

    def backup(self, source: Any, target: Any) -> None:
        """A consistent online copy of `source` into the connection `target`."""
        raise NotImplementedError

    # -- what export, import and purge read of the schema
    def foreign_keys(self, conn: Any, on: bool) -> None:
        """Foreign keys enforced or not, for the connection (an import checks them at its end)."""
        raise NotImplementedError

    def foreign_key_violation(self, conn: Any) -> Any:
        """A row that breaks a foreign key (the first), or None."""
        raise NotImplementedError

    def single_file(self, conn: Any) -> None:
        """Make the copy `conn` self-contained (no log beside it), where that applies."""
        raise NotImplementedError

    def columns(self, conn: Any, table: str) -> list[tuple]:
        """The columns of `table`: (position, name, type, not null, default, primary key) rows."""
        raise NotImplementedError

    def foreign_keys_of(self, conn: Any, table: str) -> list[tuple[str, str, str | None]]:
        """The foreign keys of `table`: (parent table, column, parent column or None for its key)."""
        raise NotImplementedError

    def tables(self, conn: Any) -> list[str]:
        """The names of the database's tables (not the backend's own)."""
        raise NotImplementedError

    def definitions(self, conn: Any) -> list[tuple[str, str | None]]:
        """(table, the statement that made it), by name (not the backend's own tables)."""
        raise NotImplementedError

    def header(self, conn: Any) -> tuple[int, int, int]:
        """(application id, schema version, pages): one read of what an open checks first."""
        raise NotImplementedError

    def file_size(self, conn: Any) -> int:
        """The bytes the database's pages take (what its file should measure once checkpointed)."""
        raise NotImplementedError

    def table_columns(self, conn: Any, table: str) -> list[str]:
        """The names of `table`'s columns, in order."""
        raise NotImplementedError

    def triggers_off(self, conn: Any, table: str) -> Any:
        """A context in which `table`'s triggers do not fire (inside the caller's transaction)."""
        raise NotImplementedError

    def sequences(self, conn: Any) -> list[tuple[str, int]]:
        """Every table's id high-water mark, (table, last id), by table (an export keeps them)."""
        raise NotImplementedError

    def set_sequences(self, conn: Any, sequences: list[tuple[str, int]]) -> None:
        """Set the high-water marks `sequences` says, and only those (an import)."""
        raise NotImplementedError


_OURS = r"name NOT LIKE 'sqlite\_%' ESCAPE '\'"  # sqlite_sequence, sqlite_stat1: SQLite's own tables


class SQLite(Dialect):
    """SQLite >= 3.38 (unixepoch; RETURNING and ON CONFLICT upserts are older)."""

    name = "sqlite"

    def last_id(self, conn: sqlite3.Connection, table: str) -> int:
        # AUTOINCREMENT keeps the high-water mark here: one row, cheaper than max(id)
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return seq[0] if seq else 0

    def json_get(self, column: str, path: str) -> str:
        literal = path if path == "?" else "'" + path.replace("'", "''") + "'"
        return f"json_extract({column}, {literal})"

    def json_array_has(self, column: str, value: str, *, lower: bool = False) -> str:
        item = "lower(value)" if lower else "value"
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE {item} = {f'lower({value})' if lower else value})"

    def epoch(self, expr: str) -> str:
        return f"unixepoch({expr})"

    def plus_days(self, expr: str, days: str) -> str:
        return f"datetime({expr}, '+' || {days} || ' days')"

    def stamp(self, expr: str) -> str:
        return f"datetime({expr})"

    def week_start(self, expr: str) -> str:
        return f"date({expr}, 'weekday 0', '-6 days')"

    def fts_rank(self) -> str:
        return "bm25(kb_fts, 10.0, 1.0, 5.0, 3.0)"

    def fts_match(self) -> str:
        return "kb_fts MATCH ?"

    def fts_snippet(self, open_mark: str, close_mark: str) -> str:
        return f"snippet(kb_fts, 1, '{open_mark}', '{close_mark}', '…', 16)"

    def fts_key(self) -> str:
        return "rowid"

    def percentiles(self, conn: sqlite3.Connection, table: str, group: str, value: str,
                    ranks: Callable[[int], Mapping[str, int]]) -> dict[Any, dict[str, Any]]:
        # The values copied once in sorted order into a table whose rowids are their ranks, then
        # each percentile read by rowid (SQLite's window functions take seconds over a million rows).
        conn.execute("DROP TABLE IF EXISTS temp.report_sorted")
        conn.execute(f"CREATE TEMP TABLE report_sorted AS SELECT {group} AS g, {value} AS v FROM {table} "
                     f"WHERE {value} IS NOT NULL ORDER BY {group}, {value}")
        try:
            out: dict[Any, dict[str, Any]] = {}
            for g, first, n in conn.execute("SELECT g, min(rowid), count(*) FROM report_sorted GROUP BY g").fetchall():
                out[g] = {label: conn.execute("SELECT v FROM report_sorted WHERE rowid = ?", (first + rank - 1,)).fetchone()[0]
                          for label, rank in ranks(n).items()}
            return out
        finally:
            conn.execute("DROP TABLE temp.report_sorted")

    def configure(self, conn: sqlite3.Connection) -> None:
        # WAL with synchronous=NORMAL is durable across application crashes, and only the
        # last commits can be lost on power failure; it keeps a commit off the fsync path.
        conn.execute("PRAGMA synchronous = NORMAL")
        # 16 MiB of page cache (the default is 2): big stores keep their index pages hot
        # during a stream. It fills only with pages actually read.
        conn.execute("PRAGMA cache_size = -16384")

    def foreign_keys(self, conn: sqlite3.Connection, on: bool) -> None:
        # only outside a transaction: SQLite ignores it inside
        conn.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")

    def foreign_key_violation(self, conn: sqlite3.Connection) -> Any:
        return conn.execute("PRAGMA foreign_key_check").fetchone()

    def use_wal(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")

    def single_file(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = DELETE")

    def checkpoint(self, conn: sqlite3.Connection, mode: str = "FULL") -> tuple[int, int, int]:
        assert mode in ("PASSIVE", "FULL", "RESTART", "TRUNCATE")
        return tuple(conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())  # type: ignore[return-value]

    def application_id(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA application_id").fetchone()[0]

    def set_application_id(self, conn: sqlite3.Connection, value: int) -> None:
        conn.execute(f"PRAGMA application_id = {int(value)}")

    def schema_version(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA user_version").fetchone()[0]

    def journal_mode(self, conn: sqlite3.Connection) -> str:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])

    def data_version(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA data_version").fetchone()[0]

    def integrity_check(self, conn: sqlite3.Connection, limit: int = 100) -> list[str]:
        return [r[0] for r in conn.execute(f"PRAGMA integrity_check({int(limit)})")]

    def columns(self, conn: sqlite3.Connection, table: str) -> list[tuple]:
        return conn.execute(f'PRAGMA table_info("{table}")').fetchall()

    def foreign_keys_of(self, conn: sqlite3.Connection, table: str) -> list[tuple[str, str, str | None]]:
        return [(fk[2], fk[3], fk[4]) for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")')]

    def tables(self, conn: sqlite3.Connection) -> list[str]:
        return [t for (t,) in conn.execute(f"SELECT name FROM sqlite_master WHERE type = 'table' AND {_OURS}")]

    def definitions(self, conn: sqlite3.Connection) -> list[tuple[str, str | None]]:
        return conn.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'table' AND {_OURS} ORDER BY name").fetchall()

    def header(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        return conn.execute("SELECT * FROM pragma_application_id, pragma_user_version, pragma_page_count").fetchone()

    def file_size(self, conn: sqlite3.Connection) -> int:
        pages, size = conn.execute("SELECT * FROM pragma_page_count, pragma_page_size").fetchone()
        return pages * size

    def table_columns(self, conn: sqlite3.Connection, table: str) -> list[str]:
        return [c for (c,) in conn.execute("SELECT name FROM pragma_table_info(?)", (table,))]

    @contextmanager
    def triggers_off(self, conn: sqlite3.Connection, table: str) -> Iterator[None]:
        # SQLite cannot disable a trigger: they are dropped and made again from their own SQL
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                                (table,)).fetchall()
        for name, _ in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        yield
        for _, sql in triggers:
            conn.execute(sql)

    def sequences(self, conn: sqlite3.Connection) -> list[tuple[str, int]]:
        return conn.execute("SELECT name, seq FROM sqlite_sequence ORDER BY name").fetchall()

    def set_sequences(self, conn: sqlite3.Connection, sequences: list[tuple[str, int]]) -> None:
        conn.execute("DELETE FROM sqlite_sequence")
        conn.executemany("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", sequences)

    def backup(self, source: sqlite3.Connection, target: sqlite3.Connection) -> None:
        source.backup(target)


SQLITE = SQLite()
