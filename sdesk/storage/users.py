"""Users, their roles and API tokens (roles.py decides what a role may do)."""

from __future__ import annotations

import hashlib
import sqlite3
from itertools import chain
from typing import TYPE_CHECKING, Any

from ..domain.lifecycle import NAME_MAX, blank, check_name
from ..domain.roles import RANK, Access, check_role, desk_role_of_queue_user, known_assignee, user_key
from ..errors import BadInput, Conflict, NotFound
from .rows import Db

if TYPE_CHECKING:
    from ..domain.routing import OnCall
    from .rows import Tx as _Tx

TOKEN_PREFIX = "sdk_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()




class UsersStore:
    def __init__(self, db: Db) -> None:
        self.db = db


    def access(self, actor: str, *, conn: sqlite3.Connection | None = None) -> Access:
        """Who `actor` is to this desk (see roles.py)."""
        conn = conn or self.db.conn
        key = user_key(actor)
        row = conn.execute("SELECT role FROM users WHERE key = ?", (key,)).fetchone()
        if row is None:
            if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None:
                return Access(actor, "admin", listed=False)  # an open desk: no users yet
            return Access(actor, self.db.default_role, listed=False)
        queues = dict(conn.execute("SELECT queue, role FROM user_queue_roles WHERE key = ?", (key,)).fetchall())
        return Access(actor, row[0], queues)

    def user_of_login(self, login: str) -> str | None:
        """The name of the user whose OS login this is, if any."""
        row = self.db.conn.execute("SELECT name FROM users WHERE login = ?", (user_key(login),)).fetchone()
        return row[0] if row else None

    @staticmethod
    def has_email(tx: _Tx, address: str) -> bool:
        """Whether a user of the desk has this email address (casefolded)."""
        return tx.conn.execute("SELECT 1 FROM users WHERE email = ?", (address,)).fetchone() is not None

    def users(self) -> list[dict[str, Any]]:
        queues: dict[str, dict[str, str]] = {}
        for key, queue, role in self.db.conn.execute("SELECT key, queue, role FROM user_queue_roles ORDER BY queue"):
            queues.setdefault(key, {})[queue] = role
        tokens = dict(self.db.conn.execute("SELECT key, count(*) FROM api_tokens WHERE revoked_at IS NULL GROUP BY key"))
        return [{"name": r["name"], "role": r["role"], "team": r["team"], "queues": queues.get(r["key"], {}),
                 "login": r["login"], "email": r["email"], "chat": r["chat"], "manager": r["manager"],
                 "tokens": tokens.get(r["key"], 0), "added_by": r["added_by"], "added_at": r["added_at"]}
                for r in self.db.conn.execute("SELECT * FROM users ORDER BY key")]

    def known_assignee(self, user: str, *, config: OnCall) -> str:
        """`user` as the desk knows them: a desk user, or a member of a team in oncall.yaml
        (roles.known_assignee decides); bad input (exit 2) before "no such user" (exit 3)."""
        user = check_name(user, "assign")
        desk = [name for (name,) in self.db.conn.execute("SELECT name FROM users ORDER BY key")]
        return known_assignee(user, chain(desk, *(team.members for team in config.teams.values())))

    def user_add(self, name: str, *, role: str, team: str | None, queue: str | None,
                 actor: str, login: str | None = None, email: str | None = None,
                 chat: str | None = None) -> dict[str, Any]:
        """Add a user, or change their role (on the desk, or with `queue` on that queue), team,
        login (OS, or on PostgreSQL database), email and chat handle. A new user's login is their name, except
        the desk's first user's: the login adding them (else nobody could act as them and manage
        the desk after). On PostgreSQL the login gets the matching database role (pg_roles); the
        returned user then holds `database_sql` when this login may not grant it: what an
        administrator must run."""
        name, role = name.strip(), check_role(role)
        name = check_name(name, "user")  # (the same rule as an assignee's)
        for what, value in (("--login", login), ("--email", email), ("--chat", chat)):
            if value is not None and (blank(value) or len(value) > NAME_MAX or not value.isprintable()):
                raise BadInput(f"user: {what} must be 1 to {NAME_MAX} printable characters")
        if email is not None:
            from ..domain.notify import ADDRESS

            if not ADDRESS.match(email.strip()):
                raise BadInput(f"user: --email {email!r} is not an email address")
        chat = chat.strip() if chat is not None else None
        login = user_key(login) if login is not None else None
        email = email.strip().casefold() if email is not None else None
        key = user_key(name)
        old_sql: list[str] | None = None
        with self.db.write(actor, need="admin", what="managing users") as tx:
            # Names are identifiers, kept as given, while every event is redacted (_Tx.event): a
            # name that holds a secret would be stored, and be another name in its event.
            for what, value in (("name", name), ("--login", login), ("--email", email), ("--chat", chat),
                                ("--team", team)):
                if value and tx.clean(value) != value:
                    raise BadInput(f"user: the {what} looks like it holds a secret; choose another")
            row = tx.conn.execute("SELECT * FROM users WHERE key = ?", (key,)).fetchone()
            first = tx.conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None
            if first and (role != "admin" or queue):
                raise Conflict("the desk's first user must be an admin, or nobody could manage users after: "
                               f"sdesk user add {actor} --role admin")
            for column, value in (("login", login), ("email", email)):
                other = value and tx.conn.execute(f"SELECT name FROM users WHERE {column} = ? AND key != ?",
                                                  (value, key)).fetchone()
                if other:
                    raise Conflict(f"{column} {value} is already {other[0]}'s")
            if row is None:
                # A role on one queue is that queue only (roles.py): the desk role is not the default.
                desk_role = desk_role_of_queue_user(role, self.db.default_role) if queue else role
                login = login or (user_key(tx.login) if first else key)
                if tx.conn.execute("SELECT name FROM users WHERE login = ?", (login,)).fetchone():
                    raise Conflict(f"login {login} is already another user's: give {name} theirs with --login")
                tx.conn.execute("INSERT INTO users (key, name, role, team, added_by, added_at, login, email, chat) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (key, name, desk_role, team, actor, tx.at, login, email, chat))
                tx.event(None, "user_added", {"user": name, "role": desk_role, "team": team, "login": login,
                                              "email": email, **({"chat": chat} if chat else {})})
            elif not queue and (row["role"] != role or (team is not None and row["team"] != team)):
                if row["role"] == "admin" and role != "admin":
                    self._keep_an_admin(tx.conn, key)
                tx.conn.execute("UPDATE users SET role = ?, team = coalesce(?, team) WHERE key = ?", (role, team, key))
                tx.event(None, "user_changed", {"user": row["name"], "role": [row["role"], role],
                                                "team": [row["team"], team if team is not None else row["team"]]})
            if row is not None:
                for column, value in (("login", login), ("email", email), ("chat", chat)):
                    if value is not None and row[column] != value:
                        if column == "login" and row[column]:  # the old login leaves the database roles
                            old_sql = tx.dialect.grant_login(tx.conn, row[column], None)
                        tx.conn.execute(f"UPDATE users SET {column} = ? WHERE key = ?", (value, key))
                        tx.event(None, "user_changed", {"user": row["name"], column: [row[column], value]})
            if queue:
                tx.conn.execute("INSERT INTO user_queue_roles (key, queue, role) VALUES (?, ?, ?) "
                                "ON CONFLICT (key, queue) DO UPDATE SET role = excluded.role", (key, queue, role))
                tx.event(None, "user_queue_role", {"user": name, "queue": queue, "role": role})
            sql = (old_sql or []) + (self._grant(tx, key) or [])
        user = next(u for u in self.users() if user_key(u["name"]) == key)
        if sql:
            user["database_sql"] = sql
        return user

    @staticmethod
    def _grant(tx: _Tx, key: str, *, remove: bool = False) -> list[str] | None:
        """Where the database has roles (PostgreSQL): the user's login gets the database role of
        the highest of their roles (the server's grants are per table; sdesk's roles per queue),
        or none when they leave. The SQL an administrator must run when this login may not."""
        row = tx.conn.execute("SELECT login, role FROM users WHERE key = ?", (key,)).fetchone()
        if row is None or not row[0]:
            return None
        roles = [row[1], *(r for (r,) in tx.conn.execute("SELECT role FROM user_queue_roles WHERE key = ?", (key,)))]
        return tx.dialect.grant_login(tx.conn, row[0], None if remove else max(roles, key=RANK.__getitem__))

    def user_remove(self, name: str, *, actor: str) -> list[str] | None:
        """Remove a user; on PostgreSQL their login leaves the desk's database roles (the SQL an
        administrator must run for that when this login may not; else None)."""
        key = user_key(name)
        with self.db.write(actor, need="admin", what="managing users") as tx:
            row = tx.conn.execute("SELECT * FROM users WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(f"no user {name!r}")
            if row["role"] == "admin":
                self._keep_an_admin(tx.conn, key)
            sql = self._grant(tx, key, remove=True)
            tx.conn.execute("DELETE FROM users WHERE key = ?", (key,))
            tx.event(None, "user_removed", {"user": row["name"], "role": row["role"]})
        return sql

    @staticmethod
    def _keep_an_admin(conn: sqlite3.Connection, leaving: str) -> None:
        others = conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND key != ?", (leaving,)).fetchone()[0]
        remaining = conn.execute("SELECT count(*) FROM users WHERE key != ?", (leaving,)).fetchone()[0]
        if remaining and not others:
            raise Conflict("the desk would have no admin left: make someone else an admin first")

    # -- who is whose (catalog approvals) ---------------------------------------------------------

    def manager_of(self, who: str) -> str | None:
        """The manager of the user whose name or email `who` is."""
        row = self.db.conn.execute("SELECT manager FROM users WHERE key = ? OR email = ?",
                                   (user_key(who), who.strip().casefold())).fetchone()
        return row[0] if row and row[0] else None

    def user_of(self, who: str) -> str | None:
        """The name of the user whose name or email `who` is."""
        row = self.db.conn.execute("SELECT name FROM users WHERE key = ? OR email = ?",
                                   (user_key(who), who.strip().casefold())).fetchone()
        return row[0] if row else None

    def reachable(self, names: list[str]) -> list[str]:
        """Those of `names` who are users of the desk with an email address (mailed, and able to
        sign in to the portal)."""
        keys = {user_key(n): n for n in names}
        if not keys:
            return []
        found = {k for (k,) in self.db.conn.execute(
            f"SELECT key FROM users WHERE email IS NOT NULL AND key IN ({','.join('?' * len(keys))})", list(keys))}
        return [n for k, n in keys.items() if k in found]

    def users_with(self, *, role: str | None = None, team: str | None = None) -> list[str]:
        """The desk's users with at least `role` (roles.RANK), or of `team` (users.team)."""
        rows = self.db.conn.execute("SELECT name, role, team FROM users ORDER BY key").fetchall()
        if role is not None:
            return [r[0] for r in rows if RANK.get(r[1], -1) >= RANK[role]]
        return [r[0] for r in rows if team is not None and (r[2] or "").casefold() == team.casefold()]

    def set_manager(self, name: str, *, manager: str | None, actor: str) -> None:
        with self.db.write(actor, need="admin", what="managing users") as tx:
            row = tx.conn.execute("SELECT name, manager FROM users WHERE key = ?", (user_key(name),)).fetchone()
            if row is None:
                raise NotFound(f"no user {name!r}")
            if manager is not None:
                boss = tx.conn.execute("SELECT name FROM users WHERE key = ?", (user_key(manager),)).fetchone()
                if boss is None:
                    raise NotFound(f"--manager: no user {manager!r} (add them first)")
                if user_key(boss[0]) == user_key(row[0]):
                    raise BadInput("--manager: a user cannot be their own manager")
                manager = boss[0]
            if row[1] != manager:
                tx.conn.execute("UPDATE users SET manager = ? WHERE key = ?", (manager, user_key(name)))
                tx.event(None, "user_changed", {"user": row[0], "manager": [row[1], manager]})

    # -- API tokens (sdesk serve) -------------------------------------------------------------

    def token_add(self, name: str, *, label: str | None, actor: str) -> tuple[int, str]:
        """A new token for user `name`: (its id, the token, shown only now)."""
        import secrets  # here: it imports random, base64 and hmac, which no other command needs

        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.write(actor, need="admin", what="managing API tokens") as tx:
            row = tx.conn.execute("SELECT name FROM users WHERE key = ?", (user_key(name),)).fetchone()
            if row is None:
                raise NotFound(f"no user {name!r}: add them first (sdesk user add {name} --role agent)")
            label = tx.clean(label)
            token_id = tx.conn.execute(
                "INSERT INTO api_tokens (key, label, hash, created_by, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (user_key(name), label, token_hash(token), actor, tx.at)).fetchone()[0]
            # The token's sha256 (as the table keeps it, never the token): audit verify rebuilds
            # the table from these events, so a token row inserted by hand is caught.
            tx.event(None, "token_added", {"token": token_id, "user": row[0], "label": label,
                                           "hash": token_hash(token)})
        return token_id, token

    def token_revoke(self, token_id: int, *, actor: str) -> None:
        with self.db.write(actor, need="admin", what="managing API tokens") as tx:
            row = tx.conn.execute("SELECT revoked_at FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                raise NotFound(f"no API token {token_id}")
            if row[0] is None:
                tx.conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (tx.at, token_id))
                tx.event(None, "token_revoked", {"token": token_id})

    def tokens(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.conn.execute(
            "SELECT t.id, u.name AS user, t.label, t.created_by, t.created_at, t.revoked_at "
            "FROM api_tokens t JOIN users u USING (key) ORDER BY t.id")]

    def any_tokens(self) -> bool:
        """Whether an API token was ever made (revoked ones count: revoking the last must not
        open the receiver to anyone)."""
        return self.db.conn.execute("SELECT 1 FROM api_tokens LIMIT 1").fetchone() is not None

    def live_tokens(self) -> dict[str, str]:
        """sha256 of each live token -> its user's name."""
        return dict(self.db.conn.execute("SELECT t.hash, u.name FROM api_tokens t JOIN users u USING (key) "
                                      "WHERE t.revoked_at IS NULL"))
