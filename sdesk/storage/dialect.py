"""What differs between SQL databases, behind one object: the store writes portable SQL
(`ON CONFLICT`, `RETURNING`, `CASE`, subqueries) and asks its dialect for the rest. `Dialect`
says what a backend must provide; `SQLite` is the one there is (PostgreSQL comes next on this
seam). Methods return SQL fragments or do the operation; no query building beyond that.
Below the store (store.py, storage/rows.py, the parts, desk_file.py); imports nothing of theirs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
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

    def ids_given(self, conn: Any, table: str, last: int) -> None:
        """Rows of `table` were inserted with ids of their own up to `last` (the hash chain's
        events): the next id given must be above it."""
        raise NotImplementedError

    # -- transactions
    def begin_write(self, conn: Any) -> None:
        """Begin a write transaction that holds the desk's one write lock until it ends: writers
        take turns, so the hash chain's next id and previous hash stay theirs."""
        raise NotImplementedError

    def begin_read(self, conn: Any) -> None:
        """Begin a read transaction that sees one snapshot whatever others commit meanwhile."""
        raise NotImplementedError

    @contextmanager
    def reading(self, conn: Any) -> Iterator[None]:
        """The block's reads in one snapshot (begin_read), ended after it; inside a transaction
        already, that one."""
        if conn.in_transaction:
            yield
            return
        self.begin_read(conn)
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def defer_constraints(self, conn: Any) -> None:
        """Inside a transaction: foreign keys are checked at foreign_key_violation or the commit,
        not row by row (an import loads tables in name order)."""
        raise NotImplementedError

    def rowid(self, conn: Any, table: str) -> str | None:
        """The column an export orders `table` by and keeps as each row's rowid, or None (a
        table keyed by its primary key alone)."""
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

    # -- full-text search: kb_fts (the knowledge base; key = article id) and ticket_fts (the search
    # index of tickets, key = ticket id), both with the columns title, body, tags, cis
    def fts_rank(self, table: str = "kb_fts") -> str:
        """The rank expression of a match (lower is better), title and tags weighted over the body."""
        raise NotImplementedError

    def fts_match(self, table: str = "kb_fts") -> str:
        """A condition: the article matches the query bound to one placeholder."""
        raise NotImplementedError

    def fts_snippet(self, open_mark: str, close_mark: str, table: str = "kb_fts") -> str:
        """An excerpt of the body around the match, the matched words between the marks."""
        raise NotImplementedError

    def fts_key(self) -> str:
        """The column of kb_fts that is the article id."""
        raise NotImplementedError

    # How many times fts_rank() and fts_snippet() each bind the query (before fts_match's own).
    fts_binds = 0
    # The operator that matches a LIKE pattern with ASCII letters in either case.
    like = "LIKE"

    # -- percentiles
    # Whether GROUP BY GROUPING SETS is understood: several groupings' sums in one pass.
    grouping_sets = False

    def percentiles(self, conn: Any, table: str, group: str, value: str,
                    wanted: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
        """Nearest-rank percentiles of `value` (not NULL) in `table` by `group`: group -> label ->
        value, where `wanted` says which 1-based ranks of each group's sorted values to read
        (group, as text -> label -> rank; a group not in it is not read)."""
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

    # -- knowledge (the KB's search): the query as the backend reads it
    def fts_query(self, match: str) -> str | None:
        """What fts_match, fts_rank and fts_snippet bind for the FTS5 expression `match` (the
        query language of kb_search on both backends), or None when it can match nothing.
        BadInput when it is malformed or has no reading here."""
        raise NotImplementedError

    # -- desk files (export, import, backup, restore): area deskfiles
    def clear_tables(self, conn: Any, tables: list[str]) -> None:
        """Inside the caller's write transaction: every row of `tables` deleted, the events'
        append-only guard passed by (a restore replaces the whole desk), id counters too."""
        raise NotImplementedError

    def server_version(self, conn: Any) -> str | None:
        """The server's version, or None for a database in a file (sdesk doctor)."""
        raise NotImplementedError

    # -- identity (issue 21's identity and roles): who is writing, and the server's roles
    login_kind = "OS login"  # what the login an event records is, in messages

    def session_login(self, conn: Any) -> str | None:
        """The login the database itself authenticated for this connection (PostgreSQL's
        session_user), recorded on each event and checked against the actor claimed; None when
        the database has none (SQLite: the OS login is the identity)."""
        raise NotImplementedError

    def grant_login(self, conn: Any, login: str, role: str | None) -> list[str] | None:
        """Inside a write transaction: give database login `login` the database role of sdesk
        role `role` (None: take them away), where the database has roles (storage/pg_roles.py).
        Returns the SQL an administrator must run when this login may not, else None."""
        raise NotImplementedError

    # -- live updates (issue 21, live): a screen told of ticket changes instead of polling for them
    # Whether the backend tells a listening connection of the ticket changes others commit (listen,
    # changes); where it does not, a screen polls (tickets.last_event_id).
    pushes_changes = False

    def listen(self, conn: Any) -> None:
        """From now until `conn` closes, have it told of every ticket made, changed or purged and
        every event about one that any connection commits (read with changes())."""
        raise NotImplementedError(f"{self.name} does not tell of changes: poll tickets.last_event_id")

    def changes(self, conn: Any, timeout: float) -> set[int]:
        """The ids of the tickets changed since the last call on `conn` (after listen), waiting up to
        `timeout` seconds for the first change; empty when none came."""
        raise NotImplementedError(f"{self.name} does not tell of changes: poll tickets.last_event_id")

    # -- intake (area: intake): a stream's rows in bulk
    def bulk_insert(self, conn: Any, columns: tuple[str, str], rows: list[tuple]) -> bool:
        """Insert `rows` into `columns` (rows.insert_rows': the target "table (col, ...)" and the
        template of one row, "(?, ?, 'literal', ...)") the backend's fastest way and say True; False
        leaves them to rows.insert_rows' multi-row INSERTs (SQLite: those are its fastest way)."""
        return False

    def one_of(self, column: str, values: list[Any]) -> list[tuple[str, list[Any]]]:
        """`column` is one of `values` (a stream's fingerprints), as conditions with their
        parameters: one per chunk of values the backend takes in one statement."""
        raise NotImplementedError

    # -- clocks (on-call, SLA, KPIs)
    # What ends a correlated EXISTS subquery that should run per row by its index: PostgreSQL
    # otherwise may hash it over the whole table once (a report's window reads all history).
    per_row = ""

    def stream(self, conn: Any, sql: str, params: tuple | Mapping[str, Any] = ()) -> Iterator[tuple]:
        """The rows of a query as tuples, read as they are consumed rather than all at once
        (an export of a million rows), inside the caller's transaction; the connection runs no
        other query until the last row is read."""
        raise NotImplementedError


_OURS = r"name NOT LIKE 'sqlite\_%' ESCAPE '\'"  # sqlite_sequence, sqlite_stat1: SQLite's own tables


class SQLite(Dialect):
    """SQLite >= 3.38 (unixepoch; RETURNING and ON CONFLICT upserts are older)."""

    name = "sqlite"

    def last_id(self, conn: sqlite3.Connection, table: str) -> int:
        # AUTOINCREMENT keeps the high-water mark here: one row, cheaper than max(id)
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return seq[0] if seq else 0

    def ids_given(self, conn: sqlite3.Connection, table: str, last: int) -> None:
        pass  # AUTOINCREMENT keeps sqlite_sequence at the highest id inserted

    def begin_write(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the database's write lock, taken now

    def begin_read(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")  # WAL: a read transaction is a snapshot from its first read

    def defer_constraints(self, conn: sqlite3.Connection) -> None:
        pass  # import_lines turned foreign keys off before its transaction (foreign_keys)

    def rowid(self, conn: sqlite3.Connection, table: str) -> str | None:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        return None if sql and sql[0] and "WITHOUT ROWID" in sql[0].upper() else "rowid"

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

    def fts_rank(self, table: str = "kb_fts") -> str:
        return f"bm25({table}, 10.0, 1.0, 5.0, 3.0)"

    def fts_match(self, table: str = "kb_fts") -> str:
        return f"{table} MATCH ?"

    def fts_snippet(self, open_mark: str, close_mark: str, table: str = "kb_fts") -> str:
        return f"snippet({table}, 1, '{open_mark}', '{close_mark}', '…', 16)"

    def fts_key(self) -> str:
        return "rowid"

    def percentiles(self, conn: sqlite3.Connection, table: str, group: str, value: str,
                    wanted: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
        # The values copied once in sorted order into a table whose rowids are their ranks, then
        # each percentile read by rowid (SQLite's window functions take seconds over a million rows).
        if not wanted:
            return {}
        conn.execute("DROP TABLE IF EXISTS temp.report_sorted")
        conn.execute(f"CREATE TEMP TABLE report_sorted AS SELECT {group} AS g, {value} AS v FROM {table} "
                     f"WHERE {value} IS NOT NULL ORDER BY {group}, {value}")
        try:
            out: dict[str, dict[str, Any]] = {}
            for g, first in conn.execute("SELECT g, min(rowid) FROM report_sorted GROUP BY g").fetchall():
                out[str(g)] = {label: conn.execute("SELECT v FROM report_sorted WHERE rowid = ?",
                                                   (first + rank - 1,)).fetchone()[0]
                               for label, rank in wanted.get(str(g), {}).items()}
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

    # -- knowledge
    def fts_query(self, match: str) -> str | None:
        from .fts import parse

        parse(match)  # refused here as on PostgreSQL, in the same words
        return match

    # -- desk files (export, import, backup, restore): area deskfiles
    def clear_tables(self, conn: sqlite3.Connection, tables: list[str]) -> None:
        with self.triggers_off(conn, "events"):
            for table in tables:
                conn.execute(f'DELETE FROM "{table}"')
        conn.execute("DELETE FROM sqlite_sequence")

    def server_version(self, conn: sqlite3.Connection) -> str | None:
        return None

    # -- identity (issue 21's identity and roles)
    def session_login(self, conn: sqlite3.Connection) -> str | None:
        return None  # a file has no logins: the OS login is who writes

    def grant_login(self, conn: sqlite3.Connection, login: str, role: str | None) -> list[str] | None:
        return None  # no roles in a file: sdesk's role check is the only one

    # -- live updates (issue 21, live): no server to tell of a change; the TUI polls last_event_id
    pushes_changes = False

    # -- intake (area: intake)
    def one_of(self, column: str, values: list[Any]) -> list[tuple[str, list[Any]]]:
        # IN lists of 500: SQLite before 3.32 takes at most 999 variables a statement
        return [(f"{column} IN ({','.join('?' * len(values[i:i + 500]))})", values[i:i + 500])
                for i in range(0, len(values), 500)]

    # -- clocks (on-call, SLA, KPIs)
    def stream(self, conn: sqlite3.Connection, sql: str, params: tuple | Mapping[str, Any] = ()) -> Iterator[tuple]:
        yield from conn.execute(sql, params)  # SQLite steps through the rows as they are read


SQLITE = SQLite()


def _json_steps(path: str) -> list[str] | None:
    """A path of ours ('$.a.b', '$.a[1]') as the keys and indexes of PostgreSQL's #>> (['a', '1']),
    or None when it is anything else."""
    import re

    if not re.fullmatch(r"\$(?:\.\w+|\[\d+\])+", path):
        return None
    return re.findall(r"\w+", path[1:])


# The one advisory lock every write transaction of a PostgreSQL desk takes (SQLite's write lock):
# "SDSK" as a number. Held until the transaction ends.
WRITE_LOCK = 0x5344534B


class PostgreSQL(Dialect):
    """PostgreSQL >= 13 through psycopg 3 (storage/pg.py): time stamps are timestamptz (read back as
    the ISO text SQLite stores), JSON columns hold the writer's JSON text (the hash chain covers
    those exact bytes, and an export must give them back as written; jsonb would reorder keys), read
    as jsonb where a query looks inside. Full-text search is PostgreSQL's own (tsvector, GIN)."""

    name = "postgresql"
    fts_binds = 1
    like = "ILIKE"

    def last_id(self, conn: Any, table: str) -> int:
        counters = self._snapshot_counters(conn)
        if counters is not None:
            return counters.get(table, 0)
        given = conn.execute("SELECT last FROM sdesk_counters WHERE name = ?", (table,)).fetchone()
        if given is not None:
            return given[0]
        last, called = conn.execute(f'SELECT last_value, is_called FROM "{table}_id_seq"').fetchone()
        return last if called else 0

    def ids_given(self, conn: Any, table: str, last: int) -> None:
        # The counter of ids sdesk gives itself (the chain's events, intake's tickets) is a row,
        # written in the transaction: a sequence is not, and a commit lost after setval would
        # leave it ahead of the rows, an id "missing" from the chain that nobody deleted. The
        # sequence follows too, for the rows numbered by default (never below: no id twice).
        conn.execute("INSERT INTO sdesk_counters (name, last) VALUES (?, ?) ON CONFLICT (name) "
                     "DO UPDATE SET last = greatest(sdesk_counters.last, excluded.last)", (table, last))
        conn.execute(f"SELECT setval('\"{table}_id_seq\"', greatest(?, (SELECT last_value FROM \"{table}_id_seq\")))",
                     (last,))

    def begin_write(self, conn: Any) -> None:
        conn.__dict__.pop("snapshot_counters", None)
        conn.execute("BEGIN")
        conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    def begin_read(self, conn: Any) -> None:
        # A sequence is outside every snapshot (its value is the newest, whoever committed since):
        # the counters are read with the snapshot, while no writer is mid-transaction (the write
        # lock held a moment), and last_id and sequences answer from them until the next
        # transaction, so that verify and export see the counters of the rows they read.
        conn.__dict__.pop("snapshot_counters", None)
        conn.execute(f"SELECT pg_advisory_lock({WRITE_LOCK})")
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            counters = dict(self._sequences(conn))  # its first statement takes the snapshot
        finally:
            conn.execute(f"SELECT pg_advisory_unlock({WRITE_LOCK})")
        conn.__dict__["snapshot_counters"] = counters

    @staticmethod
    def _snapshot_counters(conn: Any) -> dict[str, int] | None:
        """The counters begin_read read, while in that read transaction (None: read them live)."""
        counters = conn.__dict__.get("snapshot_counters")
        if counters is not None and not conn.in_transaction:
            conn.__dict__.pop("snapshot_counters", None)
            return None
        return counters

    def defer_constraints(self, conn: Any) -> None:
        conn.execute("SET CONSTRAINTS ALL DEFERRED")

    def rowid(self, conn: Any, table: str) -> str | None:
        # The hidden rowid column pg.ddl gives a table SQLite gives a rowid to; else its key when
        # that is one whole-number column (SQLite's INTEGER PRIMARY KEY is the rowid itself: id,
        # ticket_id); else none (SQLite's WITHOUT ROWID tables).
        keys = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = CAST(? AS regclass) AND a.attnum > 0 AND NOT a.attisdropped AND (a.attname = 'rowid' "
            "OR a.attnum IN (SELECT unnest(i.indkey) FROM pg_index i WHERE i.indrelid = a.attrelid "
            "AND i.indisprimary AND i.indnatts = 1)) ORDER BY a.attname = 'rowid' DESC",
            (f'"{table}"',)).fetchall()
        if keys and (keys[0][0] == "rowid" or keys[0][1] == "bigint"):
            return keys[0][0]
        return None

    def json_get(self, column: str, path: str) -> str:
        if path == "?":
            return f"(jsonb_path_query_first(({column})::jsonb, CAST(? AS jsonpath)) #>> '{{}}')"
        steps = _json_steps(path)
        if steps is not None:  # as the partial indexes on JSON say it (pg.ddl), so that a query uses them
            return f"(({column})::jsonb #>> '{{{','.join(steps)}}}')"
        literal = "'" + path.replace("'", "''") + "'"
        return f"(jsonb_path_query_first(({column})::jsonb, {literal}) #>> '{{}}')"

    def json_array_has(self, column: str, value: str, *, lower: bool = False) -> str:
        item, wanted = ("lower(value)", f"lower({value})") if lower else ("value", value)
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements_text(({column})::jsonb) AS item(value) WHERE {item} = {wanted})"

    def epoch(self, expr: str) -> str:
        return f"floor(extract(epoch FROM CAST({expr} AS timestamptz)))::bigint"

    def plus_days(self, expr: str, days: str) -> str:
        return f"(CAST({expr} AS timestamptz) + ({days}) * interval '1 day')"

    def stamp(self, expr: str) -> str:
        return f"CAST({expr} AS timestamptz)"

    def week_start(self, expr: str) -> str:
        return f"(date_trunc('week', CAST({expr} AS timestamptz) AT TIME ZONE 'UTC'))::date"

    # kb_fts.doc: title (A), tags (B), CIs (C) and body (D), english stemming without stop words
    # (sdesk_english: FTS5's porter unicode61 has none); the query is fts_query's to_tsquery text.
    # The weights in the rank are bm25's in SQLite (title 10, tags 5, CIs 3, body 1).
    def fts_rank(self, table: str = "kb_fts") -> str:
        return f"(-ts_rank('{{0.1, 0.3, 0.5, 1.0}}', {table}.doc, to_tsquery('sdesk_english', ?), 1))"

    def fts_match(self, table: str = "kb_fts") -> str:
        return f"{table}.doc @@ to_tsquery('sdesk_english', ?)"

    def fts_snippet(self, open_mark: str, close_mark: str, table: str = "kb_fts") -> str:
        options = f"StartSel={open_mark}, StopSel={close_mark}, MaxWords=16, MinWords=8, FragmentDelimiter=…"
        return f"ts_headline('sdesk_english', {table}.body, to_tsquery('sdesk_english', ?), '{options}')"

    def fts_key(self) -> str:
        return "rowid"

    grouping_sets = True

    def percentiles(self, conn: Any, table: str, group: str, value: str,
                    wanted: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
        # One sort of the values of every group (a window numbering each group's values), the
        # ranks any group wants read from it: one pass, not one per group.
        if not wanted:
            return {}
        ranks = sorted({rank for by_label in wanted.values() for rank in by_label.values()})
        out: dict[str, dict[str, Any]] = {}
        for g, rank, v in conn.execute(
                f"SELECT g, r, v FROM (SELECT {group} AS g, {value} AS v, row_number() OVER (PARTITION BY {group} "
                f"ORDER BY {value}) AS r FROM {table} WHERE {value} IS NOT NULL) AS s WHERE r = ANY(?)", (ranks,)):
            for label, want in wanted.get(str(g), {}).items():
                if want == rank:
                    out.setdefault(str(g), {})[label] = v
        return out

    def configure(self, conn: Any) -> None:
        pass  # durability is the server's (synchronous_commit); the session is in UTC (pg.connect)

    def foreign_keys(self, conn: Any, on: bool) -> None:
        pass  # always enforced; an import defers them (defer_constraints)

    def foreign_key_violation(self, conn: Any) -> Any:
        import re

        try:
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        except sqlite3.IntegrityError as e:
            tables = re.findall(r'table "([^"]+)"', str(e.__cause__ or e))
            return (tables[0] if tables else "a table", None, tables[-1] if len(tables) > 1 else "another table")
        return None

    def use_wal(self, conn: Any) -> None:
        pass

    def single_file(self, conn: Any) -> None:
        pass

    def checkpoint(self, conn: Any, mode: str = "FULL") -> tuple[int, int, int]:
        return (0, 0, 0)  # the server's own

    def application_id(self, conn: Any) -> int:
        return self.header(conn)[0]

    def set_application_id(self, conn: Any, value: int) -> None:
        conn.execute("UPDATE sdesk_schema SET application_id = ?", (int(value),))

    def schema_version(self, conn: Any) -> int:
        return self.header(conn)[1]

    def journal_mode(self, conn: Any) -> str:
        return "postgresql"

    def data_version(self, conn: Any) -> int:
        # The newest transaction id the server has handed out: it moves when anyone writes.
        return conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()[0]

    def integrity_check(self, conn: Any, limit: int = 100) -> list[str]:
        return ["ok"]  # the server checks its own pages (data checksums, amcheck): not sdesk's to read

    def columns(self, conn: Any, table: str) -> list[tuple]:
        # As SQLite's table_info: (position, name, type, not null, default, primary key position);
        # the rowid column a table has for its export order is not one of its columns there.
        return conn.execute(
            "SELECT c.ordinal_position - 1, c.column_name, c.data_type, (c.is_nullable = 'NO')::int, "
            "c.column_default, coalesce(k.ordinal_position, 0) FROM information_schema.columns c "
            "LEFT JOIN (SELECT kcu.column_name, kcu.ordinal_position FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name "
            "AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() AND tc.table_name = ?) k "
            "ON k.column_name = c.column_name WHERE c.table_schema = current_schema() AND c.table_name = ? "
            "AND c.column_name <> 'rowid' AND c.is_generated = 'NEVER' ORDER BY c.ordinal_position",
            (table, table)).fetchall()

    def foreign_keys_of(self, conn: Any, table: str) -> list[tuple[str, str, str | None]]:
        return conn.execute(
            "SELECT ccu.table_name, kcu.column_name, ccu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name "
            "AND kcu.table_schema = tc.table_schema "
            "JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name "
            "AND ccu.table_schema = tc.table_schema "
            "WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema() AND tc.table_name = ?",
            (table,)).fetchall()

    def tables(self, conn: Any) -> list[str]:
        return [t for t, _ in self.definitions(conn)]

    def definitions(self, conn: Any) -> list[tuple[str, str | None]]:
        # No CREATE statement is kept; a table without a rowid column is keyed by its primary key
        # alone (SQLite's WITHOUT ROWID), which is what an export asks of the definition.
        return [(t, None) for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename NOT IN ('sdesk_schema', 'sdesk_counters') "
            "ORDER BY tablename COLLATE \"C\"")]

    def header(self, conn: Any) -> tuple[int, int, int]:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()[0]
        if not conn.execute("SELECT to_regclass('sdesk_schema') IS NOT NULL").fetchone()[0]:
            return (0, 0, tables)
        row = conn.execute("SELECT application_id, version FROM sdesk_schema").fetchone()
        return (row[0], row[1], tables) if row else (0, 0, tables)

    def file_size(self, conn: Any) -> int:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]

    def table_columns(self, conn: Any, table: str) -> list[str]:
        return [c[1] for c in self.columns(conn, table)]

    @contextmanager
    def triggers_off(self, conn: Any, table: str) -> Iterator[None]:
        # Inside the caller's transaction: undone with it if it fails (the table's owner only).
        conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        yield
        conn.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')

    def sequences(self, conn: Any) -> list[tuple[str, int]]:
        counters = self._snapshot_counters(conn)
        return sorted(counters.items()) if counters is not None else self._sequences(conn)

    def _sequences(self, conn: Any) -> list[tuple[str, int]]:
        # The tables SQLite keeps a counter for (AUTOINCREMENT: a serial here) once an id was given.
        out = []
        for table, sequence in conn.execute(
                "SELECT t.relname, s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
                "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = s.relnamespace "
                "WHERE s.relkind = 'S' AND d.deptype = 'a' AND n.nspname = current_schema() "
                "ORDER BY t.relname COLLATE \"C\"").fetchall():
            last, called = conn.execute(f'SELECT last_value, is_called FROM "{sequence}"').fetchone()
            if called:
                out.append((table, last))
        given = dict(conn.execute("SELECT name, last FROM sdesk_counters").fetchall())  # where sdesk gave the ids
        return sorted({**dict(out), **given}.items())

    def set_sequences(self, conn: Any, sequences: list[tuple[str, int]]) -> None:
        given = dict(sequences)
        conn.execute("DELETE FROM sdesk_counters")
        for table in ("events", "tickets"):  # the ids sdesk gives itself (ids_given)
            if table in given:
                conn.execute("INSERT INTO sdesk_counters (name, last) VALUES (?, ?)", (table, given[table]))
        for table, sequence, deptype in conn.execute(
                "SELECT t.relname, s.relname, d.deptype FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
                "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = s.relnamespace "
                "WHERE s.relkind = 'S' AND d.deptype IN ('a', 'i') AND n.nspname = current_schema()").fetchall():
            column = "rowid" if self.rowid(conn, table) == "rowid" else "id"
            top = conn.execute(f'SELECT max("{column}") FROM "{table}"').fetchone()[0]
            if deptype == "a" and table in given:
                conn.execute(f"SELECT setval('\"{sequence}\"', ?)", (given[table],))
            elif deptype == "a" and column == "id":  # no counter: no id was ever given
                conn.execute(f"SELECT setval('\"{sequence}\"', 1, false)")
            elif top is not None:
                conn.execute(f"SELECT setval('\"{sequence}\"', ?)", (top,))

    def backup(self, source: Any, target: Any) -> None:
        raise NotImplementedError("a PostgreSQL desk is backed up as an export into an SQLite file (Store.backup_to)")

    # -- desk files (export, import, backup, restore): area deskfiles
    def clear_tables(self, conn: Any, tables: list[str]) -> None:
        # TRUNCATE fires no row trigger (the append-only guard is on updates and deletes) and is
        # undone with the transaction; the table's owner only.
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in [*tables, "sdesk_counters"]) + " RESTART IDENTITY")

    def server_version(self, conn: Any) -> str | None:
        return conn.execute("SELECT current_setting('server_version')").fetchone()[0]

    # -- knowledge
    def fts_query(self, match: str) -> str | None:
        from .fts import to_tsquery

        return to_tsquery(match)

    # -- identity (issue 21's identity and roles)
    login_kind = "database login"

    def session_login(self, conn: Any) -> str | None:
        return conn.execute("SELECT session_user").fetchone()[0]

    def grant_login(self, conn: Any, login: str, role: str | None) -> list[str] | None:
        from .pg_roles import grant_login

        return grant_login(conn, login, role)

    # -- live updates (issue 21, live): LISTEN/NOTIFY. The triggers of migrations' m013 notify, at
    # commit, on the channel 'sdesk:' || the desk's schema (cut to 63 bytes), with ticket ids (one,
    # or several separated by commas).
    pushes_changes = True

    def listen(self, conn: Any) -> None:
        # Outside a transaction (the session autocommits): told of changes as each commits.
        # The listening session says so in pg_stat_activity (its application_name, "sdesk live"),
        # for whoever looks at the server's sessions.
        channel = conn.execute("SELECT left('sdesk:' || current_schema(), 63), "
                               "set_config('application_name', left(current_setting('application_name') "
                               "|| ' live', 63), false)").fetchone()[0]
        conn.execute('LISTEN "' + channel.replace('"', '""') + '"')

    def changes(self, conn: Any, timeout: float) -> set[int]:
        return {int(i) for payload in conn.notifications(timeout) for i in payload.split(",") if i.isdigit()}

    # -- intake (area: intake)
    def bulk_insert(self, conn: Any, columns: tuple[str, str], rows: list[tuple]) -> bool:
        # COPY: no statement to parse nor parameters to bind per row (a stream's 100k alerts)
        conn.copy_rows(columns[0], columns[1], rows)
        return True

    def one_of(self, column: str, values: list[Any]) -> list[tuple[str, list[Any]]]:
        # One JSON array, one statement: 500 placeholders are parsed again at each call (psycopg
        # caches statements of at most 50), and a list bound as an array is dumped value by value
        # in Python; both cost a stream more than the query. ARRAY(SELECT ...) keeps the index
        # (the planner cannot count the array's values: it expects few).
        import orjson

        return [(f"{column} = ANY(ARRAY(SELECT json_array_elements_text(?::json)))",
                 [orjson.dumps(values).decode()])] if values else []

    # -- clocks (on-call, SLA, KPIs)
    per_row = " LIMIT 1 OFFSET 0"  # an OFFSET keeps the planner from hashing an EXISTS subquery

    def stream(self, conn: Any, sql: str, params: tuple | Mapping[str, Any] = ()) -> Iterator[tuple]:
        # libpq's chunked rows (a client-side cursor holds the whole result in memory before its
        # first row): the server goes on computing while the rows are read, and a FETCH's round
        # trip per batch is saved. libpq before 17 has only single rows. Its errors as the store's
        # DB-API classes, as pg.Connection raises them.
        import psycopg

        from .pg import _as_dbapi, for_psycopg

        try:
            with conn.raw.cursor() as cursor:
                yield from cursor.stream(for_psycopg(sql, params), params or None, size=2000 if psycopg.pq.version() >= 170000 else 1)
        except psycopg.Error as e:
            raise _as_dbapi(e) from e


POSTGRESQL = PostgreSQL()
