"""sdesk's roles as PostgreSQL roles, so that the server enforces them on whoever connects, with
sdesk or with psql (issue 21: identity and roles the database enforces).

Four group roles (NOLOGIN), each a member of the one before, so each may what those before it may:

- sdesk_viewer: SELECT on every table of the desk; on `events` INSERT too (a viewer's refused
  attempt is recorded on the chain, as every write is), and the counters and state a viewer's own
  commands write (`refusals`, `desk_state`); the sequences the chain and the tables number by;
- sdesk_agent: INSERT, UPDATE, DELETE on the working tables (tickets and everything beside them);
- sdesk_approver: what an agent may (approving is sdesk's rule, not the server's);
- sdesk_admin: also the tables of users, their queue roles and API tokens.

No one is granted UPDATE, DELETE or TRUNCATE on `events`: only the desk's owner (the login
that made the schema) may, and the append-only triggers refuse even it unless it turns them off
(purge, which therefore runs as the owner). A person's login is made a member of the group of
their sdesk role (`sdesk user add`), of the highest of their roles when they have one on a queue:
the server's grants are per table, sdesk's per queue.

Role names come from people (a login): every statement quotes them as identifiers (psycopg's
sql.Identifier), never pastes them. The group roles are the cluster's (roles are not a database's):
the grants are per desk (its schema's tables).
"""

from __future__ import annotations

from typing import Any

from ..domain.roles import ROLES

GROUPS = {role: f"sdesk_{role}" for role in ROLES}
# Tables only an admin's commands write (user add/remove, tokens); the schema's own table: the owner's.
ADMIN_TABLES = ("users", "user_queue_roles", "api_tokens", "event_tombstones")
# a refusal counted; `tick` and `backup` remembered; the chain's id counter (an event's)
VIEWER_WRITES = ("refusals", "desk_state", "sdesk_counters")
OWNER_ONLY = ("sdesk_schema",)
INSUFFICIENT_PRIVILEGE = "42501"


def _sql() -> Any:
    from psycopg import sql

    return sql


def _text(conn: Any, statement: Any) -> str:
    """A composed statement as text, quoted by the server's rules (the raw psycopg connection's)."""
    return statement.as_string(conn.raw)


def group_statements(conn: Any) -> list[str]:
    """CREATE ROLE for each group (a DO block that lets a concurrent maker win), and the
    membership chain viewer < agent < approver < admin."""
    sql = _sql()
    out = []
    for role in ROLES:
        out.append(_text(conn, sql.SQL(
            "DO $do$BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
            "END$do$").format(sql.Identifier(GROUPS[role]))))
    for lower, higher in zip(ROLES, ROLES[1:]):
        out.append(_text(conn, sql.SQL("GRANT {} TO {}").format(sql.Identifier(GROUPS[lower]),
                                                                sql.Identifier(GROUPS[higher]))))
    return out


def grant_statements(conn: Any) -> list[str]:
    """The grants on this desk's tables (its schema: current_schema()) to the group roles."""
    sql = _sql()
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    tables = [t for (t,) in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname").fetchall()]
    ident = sql.Identifier
    viewer, agent, admin = ident(GROUPS["viewer"]), ident(GROUPS["agent"]), ident(GROUPS["admin"])

    def on(names: list[str] | tuple[str, ...]) -> Any:
        return sql.SQL(", ").join(ident(schema, name) for name in names)

    working = [t for t in tables if t not in ADMIN_TABLES + OWNER_ONLY and t != "events"]
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), viewer),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident(schema), viewer),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(ident(schema), viewer),
        sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM PUBLIC").format(on(["events"])),
        sql.SQL("GRANT INSERT ON {} TO {}").format(on(["events"]), viewer),
    ]
    if viewer_writes := [t for t in VIEWER_WRITES if t in tables]:
        statements.append(sql.SQL("GRANT INSERT, UPDATE ON {} TO {}").format(on(viewer_writes), viewer))
    if working:
        statements.append(sql.SQL("GRANT INSERT, UPDATE, DELETE ON {} TO {}").format(on(working), agent))
    if admin_tables := [t for t in ADMIN_TABLES if t in tables]:
        statements.append(sql.SQL("GRANT INSERT, UPDATE, DELETE ON {} TO {}").format(on(admin_tables), admin))
    return [_text(conn, s) for s in statements]


def may_create_roles(conn: Any) -> bool:
    return bool(conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()[0])


def groups_exist(conn: Any) -> bool:
    found = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname IN (?, ?, ?, ?)",
                         tuple(GROUPS[r] for r in ROLES)).fetchone()[0]
    return found == len(ROLES)


def setup(conn: Any) -> bool:
    """Inside the migration's transaction: make the group roles when this login may (else
    leave them to the administrator: setup_sql) and grant them this desk's tables. Returns
    whether the grants were made."""
    if not groups_exist(conn):
        if not may_create_roles(conn):
            return False
        for statement in group_statements(conn):
            _racing(conn, statement)
    for statement in grant_statements(conn):
        _racing(conn, statement)
    return True


def _racing(conn: Any, statement: str) -> None:
    """Run a statement another session may be running on the same roles at the same moment (the
    groups and logins are the cluster's, shared by every desk on it): what the other made first
    is as good, and a catalog row it changed meanwhile is tried again (a savepoint keeps the
    transaction)."""
    for attempt in range(10):
        conn.execute("SAVEPOINT sdesk_groups")
        try:
            conn.execute(statement)
        except Exception as e:
            conn.execute("ROLLBACK TO SAVEPOINT sdesk_groups")
            state = getattr(e, "sqlstate", None) or ""
            if state in ("23505", "42710"):  # made meanwhile
                return
            if state == "XX000" and statement.startswith("REVOKE"):  # taken away meanwhile: as wanted
                return
            if state != "XX000" or attempt == 9:  # "tuple concurrently updated": again
                raise
            import time

            time.sleep(0.05 * (attempt + 1))
        else:
            conn.execute("RELEASE SAVEPOINT sdesk_groups")
            return


def setup_sql(conn: Any) -> list[str]:
    """What an administrator runs to make the groups and grant them this desk (the owner's
    grants: run it connected as the desk's owner or a superuser)."""
    return group_statements(conn) + grant_statements(conn)


def member_statements(conn: Any, login: str, role: str | None, *, create: bool) -> list[str]:
    """Make `login` (a person's database login) a member of exactly the group of `role` (None:
    of none: they left the desk); `create`: CREATE ROLE login LOGIN first (it does not exist)."""
    sql = _sql()
    who = sql.Identifier(login)
    out = []
    if create:
        out.append(sql.SQL("CREATE ROLE {} LOGIN").format(who))
    for other in ROLES:
        if other != role:
            out.append(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(GROUPS[other]), who))
    if role is not None:
        out.append(sql.SQL("GRANT {} TO {}").format(sql.Identifier(GROUPS[role]), who))
    return [_text(conn, s) for s in out]


def groups_of(conn: Any, login: str) -> set[str]:
    """The sdesk groups `login` is directly a member of."""
    return {name for (name,) in conn.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = ?", (login,)).fetchall()} & set(GROUPS.values())


def grant_login(conn: Any, login: str, role: str | None) -> list[str] | None:
    """Inside the caller's transaction: make database login `login` a member of the group of
    sdesk role `role` (None: of none), creating the login when absent and this login may. When
    this login may not (no CREATEROLE, no ADMIN on the groups), nothing is changed and the SQL
    an administrator must run is returned; None when it was done."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (login,)).fetchone() is not None
    if role is None and not exists:
        return None
    if exists and groups_of(conn, login) == ({GROUPS[role]} if role else set()):
        return None  # already so: nothing to grant (nor to print)
    needed: list[str] = [] if groups_exist(conn) else setup_sql(conn)
    statements = member_statements(conn, login, role, create=not exists)
    if needed or (not exists and not may_create_roles(conn)):
        return needed + statements
    conn.execute("SAVEPOINT sdesk_grant")
    try:
        for statement in statements:
            _racing(conn, statement)  # (another desk on this cluster may be making the same login)
    except Exception as e:  # (the store's DB-API error; its sqlstate tells a refusal from a fault)
        if getattr(e, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        conn.execute("ROLLBACK TO SAVEPOINT sdesk_grant")
        return statements
    conn.execute("RELEASE SAVEPOINT sdesk_grant")
    return None

