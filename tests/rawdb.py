"""The test's database as someone with direct access to it sees it, on either backend: a SQLite
file opened with sqlite3, or a PostgreSQL desk (a postgresql:// URL, as conftest's `db_path`
gives on the PostgreSQL run) through sdesk's own adapter, which takes the same SQL (`?`
placeholders) and raises sqlite3's error classes. For tests that edit a desk behind sdesk's back
(tampering) or read it raw."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def is_pg(db: Any) -> bool:
    return isinstance(db, str) and db.startswith("postgresql://")


def connect(db: Path | str) -> Any:
    """A connection to the desk `db` (a file, or a postgresql:// URL); on PostgreSQL it is in
    autocommit mode (each statement commits), as the owner of the desk's tables."""
    if is_pg(db):
        from sdesk.storage import pg

        return pg.connect(db)
    return sqlite3.connect(db)


def triggers_off(conn: Any, table: str = "events") -> None:
    """What whoever owns the database can do to a table's guards (the append-only triggers):
    dropped on SQLite, disabled on PostgreSQL (the owner's ALTER TABLE ... DISABLE TRIGGER)."""
    if isinstance(conn, sqlite3.Connection):
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                                    (table,)).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
    else:
        conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')


@contextmanager
def opened(db: Path | str):
    conn = connect(db)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def tamper(db: Path | str, *statements: str, params: tuple = (), guards_off: bool = False) -> None:
    """Run `statements` straight against the desk, behind sdesk's back, foreign keys unchecked
    (sqlite3's default; on PostgreSQL a superuser's replica session); `guards_off`: with the
    events table's append-only triggers dropped (SQLite) or disabled (PostgreSQL) first."""
    with opened(db) as conn:
        if is_pg(db):  # foreign keys unchecked, as sqlite3 leaves them by default (a superuser's session)
            conn.execute("SET session_replication_role = replica")
        if guards_off:
            triggers_off(conn)
        for sql in statements:
            conn.execute(sql, params)


def content(db: Path | str) -> list[str]:
    """What the desk holds, as lines to compare: SQLite's dump; on PostgreSQL every table's rows
    in order and every sequence's position (a read must move neither)."""
    if not is_pg(db):
        conn = sqlite3.connect(db)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()
    with opened(db) as conn:
        lines = []
        tables = [t for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}" AS t ORDER BY t::text'):
                lines.append(f"{table} {tuple(row)!r}")
        for (sequence,) in conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() "
                                        "ORDER BY sequencename"):
            lines.append(f"{sequence} {tuple(conn.execute(f'SELECT last_value, is_called FROM {sequence}').fetchone())}")
        return lines
