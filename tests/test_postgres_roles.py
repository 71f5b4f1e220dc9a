"""Identity and roles the PostgreSQL server enforces: each person's own database login, sdesk's
roles as the server's group roles, `--as` only for an admin's login, and events that no one but
the owner may change. Runs wherever a PostgreSQL server is at hand (the conftest's throwaway
cluster, whose superuser `postgres` logs in by trust on its socket, so `user=bob` logs in as bob);
skipped where there is none."""

import itertools
import os
import shutil
import subprocess
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from sdesk.errors import ExitCode
from sdesk.store import Store

_numbers = itertools.count(1)


def login_name(who: str) -> str:
    """A login of this test's own: logins are the cluster's, shared by every test and worker."""
    return f"{who}_{os.getpid()}_{next(_numbers)}"


def as_login(url: str, login: str) -> str:
    """The desk's URL, logging in as `login`."""
    base, _, query = url.partition("?")
    return f"{base}?{urlencode({**dict(parse_qsl(query)), 'user': login})}"


def conninfo(url: str) -> dict[str, str]:
    """psycopg's connect() keywords for a desk URL (database, host, user, options)."""
    parts = urlsplit(url)
    return {"dbname": parts.path.lstrip("/"), **dict(parse_qsl(parts.query))}


def server_says(url: str, sql: str) -> str | None:
    """Run `sql` as the URL's login; None when done, else the server's SQLSTATE."""
    import psycopg

    with psycopg.connect(**conninfo(url), autocommit=True) as conn:
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            return e.sqlstate
    return None


def members_of(url: str, login: str) -> set[str]:
    import psycopg

    with psycopg.connect(**conninfo(url), autocommit=True) as conn:
        return {name for (name,) in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (login,))}


@pytest.fixture
def team(cli, fresh_pg, monkeypatch):
    """A desk made by the owner (the cluster's superuser, who may make logins), run by root (an
    sdesk admin whose login is the owner's), with alice (admin), bob (agent) and vic (viewer) on
    logins of their own, which `sdesk user add` made and granted."""
    monkeypatch.delenv("SDESK_USER", raising=False)  # each acts as the user their login is
    owner = fresh_pg()
    cli("--db", owner, "init")
    cli("--db", owner, "user", "add", "root", "--role", "admin")  # the first user: the owner's login
    logins = {name: login_name(name) for name in ("alice", "bob", "vic")}
    for name, role in (("alice", "admin"), ("bob", "agent"), ("vic", "viewer")):
        cli("--db", owner, "user", "add", name, "--role", role, "--login", logins[name])
    urls = {name: as_login(owner, login) for name, login in logins.items()}
    return {"owner": owner, "logins": logins, **urls}


def test_user_add_makes_each_login_a_member_of_its_roles_group(team):
    for name, group in (("alice", "sdesk_admin"), ("bob", "sdesk_agent"), ("vic", "sdesk_viewer")):
        assert members_of(team["owner"], team["logins"][name]) == {group}


def test_a_viewer_connecting_with_psql_cannot_write_a_ticket(cli, team):
    cli("--db", team["bob"], "new", "disk full on db-1")
    insert = ("INSERT INTO tickets (title, status, priority, created_at, updated_at) "
              "VALUES ('from psql', 'new', 'P3', now(), now())")
    assert server_says(team["vic"], "SELECT count(*) FROM tickets") is None  # reading is a viewer's
    assert server_says(team["vic"], insert) == "42501"  # insufficient_privilege
    assert server_says(team["vic"], "UPDATE tickets SET priority = 'P1'") == "42501"
    assert server_says(team["vic"], "DELETE FROM tickets") == "42501"
    if shutil.which("psql"):  # and the same with psql itself, as a person would
        info = conninfo(team["vic"])
        env = {**os.environ, "PGOPTIONS": info.get("options", "")}
        run = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", info["host"], "-U", info["user"],
                              "-d", info["dbname"], "-c", insert], capture_output=True, text=True, env=env)
        assert run.returncode != 0 and "permission denied for table tickets" in run.stderr
    with Store(team["owner"]) as store:
        assert [t for (t,) in store.conn.execute("SELECT title FROM tickets")] == ["disk full on db-1"]
    # Through sdesk the viewer reads, and is refused a write by sdesk (recorded with the login).
    assert cli("--db", team["vic"], "list").exit_code == 0
    r = cli("--db", team["vic"], "new", "a ticket", ok=False)
    assert r.exit_code == ExitCode.PERMISSION and r.stderr.count("\n") == 1
    [denied] = cli.json("--db", team["owner"], "audit", "log", "--kind", "permission_denied")
    assert (denied["actor"], denied["login"]) == ("vic", team["logins"]["vic"])
    assert cli("--db", team["owner"], "audit", "verify").exit_code == 0


def test_no_one_but_the_owner_may_update_or_delete_events(cli, team):
    cli("--db", team["bob"], "new", "an event to rewrite")
    for who in ("vic", "bob", "alice"):  # a viewer, an agent, an admin of the desk
        assert server_says(team[who], "UPDATE events SET actor = 'nobody'") == "42501", who
        assert server_says(team[who], "DELETE FROM events") == "42501", who
        assert server_says(team[who], "TRUNCATE events") == "42501", who
    # The owner passes the grants; the append-only trigger still refuses it (an error of its own).
    assert server_says(team["owner"], "UPDATE events SET actor = 'nobody'") not in (None, "42501")
    assert cli("--db", team["owner"], "audit", "verify").exit_code == 0


def test_as_needs_an_admins_login_and_both_are_recorded(cli, team):
    ticket = cli.json("--db", team["bob"], "new", "needs a look")["id"]
    r = cli("--db", team["bob"], "--as", "alice", "comment", str(ticket), "as alice", ok=False)
    assert r.exit_code == ExitCode.PERMISSION
    assert r.stderr == (f"error: permission denied: database login {team['logins']['bob']} is bob, an agent; "
                        "acting as alice needs an admin's login\n")
    cli("--db", team["alice"], "--as", "bob", "comment", str(ticket), "for bob")
    events = cli.json("--db", team["owner"], "show", str(ticket))["events"]
    assert [(e["actor"], e["login"]) for e in events] == [
        ("bob", team["logins"]["bob"]), ("bob", team["logins"]["alice"])]  # created; the comment for bob
    [denied] = cli.json("--db", team["owner"], "audit", "log", "--kind", "permission_denied")
    assert (denied["actor"], denied["login"], denied["data"]["what"]) == ("bob", team["logins"]["bob"],
                                                                          "acting as alice")
    assert cli("--db", team["owner"], "audit", "verify").exit_code == 0


def test_a_login_without_createrole_prints_the_sql_an_administrator_runs(cli, team):
    carol = login_name("carol")
    r = cli("--db", team["alice"], "user", "add", "carol", "--role", "viewer", "--login", carol)
    assert r.exit_code == 0
    assert "an administrator must run the SQL printed on stdout" in r.stderr
    assert r.stdout.splitlines() == [f'CREATE ROLE "{carol}" LOGIN;', *(
        f'REVOKE "sdesk_{role}" FROM "{carol}";' for role in ("agent", "approver", "admin")),
        f'GRANT "sdesk_viewer" TO "{carol}";']
    assert "carol" in {u["name"] for u in cli.json("--db", team["owner"], "user", "list")}  # sdesk's part is done
    assert server_says(team["owner"], "\n".join(r.stdout.splitlines())) is None  # the administrator runs it
    assert members_of(team["owner"], carol) == {"sdesk_viewer"}
    assert cli("--db", as_login(team["owner"], carol), "list").exit_code == 0
    again = cli("--db", team["alice"], "user", "add", "carol", "--role", "viewer")  # granted already: nothing to run
    assert (again.stdout, again.stderr) == ("carol: viewer\n", "")


def test_a_role_change_or_removal_moves_the_login_between_groups(cli, team):
    cli("--db", team["owner"], "user", "add", "bob", "--role", "viewer")
    assert members_of(team["owner"], team["logins"]["bob"]) == {"sdesk_viewer"}
    cli("--db", team["owner"], "user", "add", "bob", "--role", "agent", "--queue", "dba")  # the highest role
    assert members_of(team["owner"], team["logins"]["bob"]) == {"sdesk_agent"}
    cli("--db", team["owner"], "user", "remove", "bob")
    assert members_of(team["owner"], team["logins"]["bob"]) == set()


def test_a_login_is_quoted_never_pasted(cli, team):
    hostile = f'o\'hara"; drop table events; --{os.getpid()}_{next(_numbers)}'
    cli("--db", team["owner"], "user", "add", "ohara", "--role", "agent", "--login", hostile)
    assert members_of(team["owner"], hostile) == {"sdesk_agent"}
    assert cli("--db", team["owner"], "audit", "verify").exit_code == 0  # events is still there
