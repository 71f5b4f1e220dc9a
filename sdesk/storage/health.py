"""What `sdesk doctor` reads of a desk besides its integrity check (Store.integrity): the
schema, journal mode and size of the file, when the timed jobs last ran, open urgent tickets,
users and API tokens. Reads only."""

from __future__ import annotations

import os
import shutil
from typing import Any

from .oncall import COVERED
from .rows import Db


class HealthStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    def facts(self, *, since: str = "") -> dict[str, Any]:
        """`since`: an ISO time; P1/P2 pages due from then that did not get through are counted."""
        return _facts(self.db, since)


def _facts(store: Db, since: str) -> dict[str, Any]:
    conn = store.conn
    one = lambda sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
    server = store.dialect.server_version(conn)
    free: int | None = None
    if server is None:  # a file
        size = sum(os.path.getsize(p) for p in (store.path, f"{store.path}-wal") if os.path.exists(p))
        try:
            free = shutil.disk_usage(os.path.dirname(os.path.realpath(store.path)) or ".").free
        except OSError:
            free = None
    else:  # a server's: the database's size, its disk not ours to see
        size = store.dialect.file_size(conn)
    return {
        "server": server,
        "schema": store.dialect.schema_version(conn),
        "journal": store.dialect.journal_mode(conn),
        "size": size,
        "free": free,
        "state": store.desk_state(),
        # What tick pages for (as page_due): P1/P2 tickets nobody acknowledged, in the queue (not
        # held by a silence or a rule), that no parent covers.
        "urgent_open": one("SELECT count(*) FROM tickets WHERE status IN ('new', 'triaged', 'assigned') "
                           f"AND acknowledged_at IS NULL AND priority IN ('P1', 'P2') AND suppressed IS NULL AND NOT {COVERED}"),
        # Pages that reached nobody: given up on, undeliverable, or retrying after an error.
        "pages_failing": one("SELECT count(*) FROM pages p JOIN tickets t ON t.id = p.ticket_id "
                             "WHERE p.due_at >= ? AND t.priority IN ('P1', 'P2') AND (p.status IN "
                             "('failed', 'undeliverable') OR (p.status IN ('pending', 'sending') "
                             "AND p.error IS NOT NULL))", since),
        "users": one("SELECT count(*) FROM users"),
        "admins": one("SELECT count(*) FROM users WHERE role = 'admin'"),
        "tokens_live": one("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL"),
        "tokens_revoked": one("SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL"),
        # A viewer's token is answered 403 on every post (serve takes in nothing for viewers).
        "viewer_tokens": [r[0] for r in conn.execute(
            "SELECT u.name FROM api_tokens t JOIN users u USING (key) WHERE t.revoked_at IS NULL "
            "AND u.role = 'viewer' ORDER BY t.id")],
    }
