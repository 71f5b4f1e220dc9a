"""The portal's sign-in: single-use email links and sessions. Only the sha256 of a link or a
session token is kept, so a copy of the database signs nobody in; a link is used once and lives
LINK_TTL; a session ends at sign-out (its row kept as ended) or after SESSION_TTL. These rows are
not on the event chain: they are who is signed in, not what the desk did."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from ..domain import clock
from ..errors import Conflict
from .rows import Db

LINK_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(hours=12)
LINKS_PER_ADDRESS = 3  # links asked for one address in LINK_TTL
LINKS_PER_CLIENT = 10  # links asked from one client address in LINK_TTL


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class PortalStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    def link_create(self, email: str, *, client: str, actor: str) -> str:
        """A new sign-in link's token for `email`, or Conflict when too many were asked for lately
        (per address and per client). Old links are swept here."""
        token = secrets.token_urlsafe(32)
        with self.db.write(actor, need="viewer", what="portal sign-in") as tx:
            now = clock.parse(tx.at)
            since = clock.iso(now - LINK_TTL)
            tx.conn.execute("DELETE FROM portal_links WHERE created_at < ?", (clock.iso(now - timedelta(days=1)),))
            for column, value, most in (("email", email, LINKS_PER_ADDRESS), ("client", client, LINKS_PER_CLIENT)):
                n = tx.conn.execute(f"SELECT count(*) FROM portal_links WHERE {column} = ? AND created_at >= ?",
                                    (value, since)).fetchone()[0]
                if n >= most:
                    raise Conflict(f"too many sign-in links asked for {'this address' if column == 'email' else 'from here'}"
                                   f" lately: try again in {int(LINK_TTL.total_seconds() // 60)} minutes")
            tx.conn.execute("INSERT INTO portal_links (hash, email, client, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                            (digest(token), email, client, tx.at, clock.iso(now + LINK_TTL)))
        return token

    def link_use(self, token: str, *, actor: str) -> str | None:
        """The address a link signs in, marking it used; None when it is unknown, used or expired."""
        if not token or len(token) > 200:
            return None
        with self.db.write(actor, need="viewer", what="portal sign-in") as tx:
            row = tx.conn.execute("SELECT email FROM portal_links WHERE hash = ? AND used_at IS NULL AND expires_at > ?",
                                  (digest(token), tx.at)).fetchone()
            if row is None:
                return None
            tx.conn.execute("UPDATE portal_links SET used_at = ? WHERE hash = ?", (tx.at, digest(token)))
            return str(row[0])

    def session_create(self, *, email: str | None, user: str | None, actor: str,
                       api_token: str | None = None) -> tuple[str, str]:
        """(session token, CSRF token) of a new session for an address and/or a desk user;
        `api_token`: the sha256 of the API token it was opened with (revoked, the session ends)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self.db.write(actor, need="viewer", what="portal sign-in") as tx:
            now = clock.parse(tx.at)
            tx.conn.execute("DELETE FROM portal_sessions WHERE expires_at < ?", (clock.iso(now - timedelta(days=7)),))
            tx.conn.execute("INSERT INTO portal_sessions (hash, email, user_name, token, csrf, created_at, expires_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (digest(token), email, user, api_token, csrf, tx.at,
                                                            clock.iso(now + SESSION_TTL)))
        return token, csrf

    def session(self, token: str) -> dict[str, Any] | None:
        """The live session of a token: {email, user_name, csrf}, or None; one opened with an API
        token lives only while that token does (`sdesk user revoke`, `user remove`)."""
        if not token or len(token) > 200:
            return None
        row = self.db.conn.execute(
            "SELECT s.email, s.user_name, s.csrf FROM portal_sessions s WHERE s.hash = ? AND s.ended_at IS NULL "
            "AND s.expires_at > ? AND (s.token IS NULL OR EXISTS (SELECT 1 FROM api_tokens t JOIN users u USING (key) "
            "WHERE t.hash = s.token AND t.revoked_at IS NULL))", (digest(token), clock.now_iso())).fetchone()
        return dict(row) if row else None

    def session_end(self, token: str, *, actor: str) -> None:
        with self.db.write(actor, need="viewer", what="portal sign-out") as tx:
            tx.conn.execute("UPDATE portal_sessions SET ended_at = ? WHERE hash = ? AND ended_at IS NULL",
                            (tx.at, digest(token)))

    # -- what a requester sees ------------------------------------------------------------------------

    def tickets_of(self, email: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The tickets `email` asked for or watches, newest first (the requester index)."""
        rows = self.db.conn.execute(
            "SELECT id, title, status, priority, kind, created_at, updated_at, resolved_at FROM tickets "
            "WHERE requester = ? UNION SELECT t.id, t.title, t.status, t.priority, t.kind, t.created_at, t.updated_at, "
            "t.resolved_at FROM tickets t JOIN watchers w ON w.ticket_id = t.id WHERE w.who = ? "
            "ORDER BY id DESC LIMIT ?", (email, email, limit)).fetchall()
        return [dict(r) for r in rows]

    def may_see(self, ticket_id: int, *, email: str) -> bool:
        """Whether `email` asked for the ticket or watches it (else the portal answers 404)."""
        return self.db.conn.execute(
            "SELECT 1 FROM tickets WHERE id = ? AND requester = ? UNION SELECT 1 FROM watchers WHERE ticket_id = ? "
            "AND who = ?", (ticket_id, email, ticket_id, email)).fetchone() is not None
