"""Identity: every event records the OS login beside the actor; on a desk with users, `--as`
is checked against that login; per-queue roles are exact; refusals cannot flood the chain."""

import json
import os
import pwd
import sqlite3
import tempfile
from pathlib import Path

import pytest
from conftest import POSTGRES, examples
from hypothesis import given, settings
from hypothesis import strategies as st

from sdesk.domain.roles import ROLES, Access, claim_refusal, refusal
from sdesk.errors import ExitCode, PermissionDenied
from sdesk.storage import migrations
from sdesk.storage.rows import event_hash
from sdesk.store import Store

OS_LOGIN = pwd.getpwuid(os.getuid()).pw_name  # the OS login these tests run as
# The login a desk records and checks: the OS login; on PostgreSQL the database login the tests
# connect as (SDESK_TEST_PG's user; on a cluster the tests start, a login named as the OS login).
ME = dict(part.split("=", 1) for part in os.environ.get("SDESK_TEST_PG", "").split()).get("user", OS_LOGIN) \
    if POSTGRES else OS_LOGIN
KIND = "database login" if POSTGRES else "OS login"
NOW = "2026-11-26T09:00:00Z"


@pytest.fixture
def shell(cli, monkeypatch):
    """A CLI with no SDESK_USER: the actor is whatever --as claims, else the user this login is."""
    monkeypatch.delenv("SDESK_USER", raising=False)
    monkeypatch.setenv("SDESK_NOW", NOW)
    return cli


def remap(db: Path, **logins: str) -> None:
    """Give users other OS logins, as an admin would from their own session (the library does
    not check a claim: only the CLI and TUI make one)."""
    with Store(db) as store:
        for name, login in logins.items():
            [user] = [u for u in store.users.users() if u["name"] == name]
            store.users.user_add(name, role=user["role"], team=None, queue=None, actor="alice", login=login)


@pytest.fixture
def bobs_shell(shell, db_path, tmp_path):
    """alice (admin, her own login), bob (approver, whose login this is), dave (approver)."""
    (tmp_path / "config" / "runbooks").mkdir(parents=True)
    (tmp_path / "config" / "runbooks" / "restart.yaml").write_text(
        "description: restart\nsteps:\n  - approve: a human looks first\n  - run: [\"true\"]\n")
    shell("--as", "alice", "user", "add", "alice", "--role", "admin")  # the first user: this login, until remapped
    shell("--as", "alice", "user", "add", "bob", "--role", "approver")
    shell("--as", "alice", "user", "add", "dave", "--role", "approver")
    remap(db_path, alice="alice", bob=ME)
    return shell


# -- the OS login on every event ---------------------------------------------------------------


def test_every_event_records_the_real_os_login_not_the_environment(shell, monkeypatch):
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    ticket = shell.new("disk full")
    shell("--as", "someone", "comment", str(ticket), "looking")
    events = shell.json("show", str(ticket))["events"]
    assert [(e["actor"], e["login"]) for e in events] == [(ME, ME), ("someone", ME)]
    logged = shell.json("audit", "log")
    assert {e["login"] for e in logged} == {ME}
    table = shell("audit", "log").stdout
    assert "LOGIN" in table.upper() and ME in table
    assert shell("audit", "verify").exit_code == 0


def _old_desk(db: Path) -> None:
    """A desk at the schema before logins were recorded, with two events hashed the old way."""
    from sqlite_utils import Database, Migrations

    conn = sqlite3.connect(db, isolation_level=None)
    m = Migrations("sdesk")
    for step in migrations.STEPS[:10]:
        m()(step)
    m.apply(Database(conn))
    conn.execute("PRAGMA user_version = 10")
    prev = "0" * 64
    for event_id, kind in ((1, "restored"), (2, "restored")):
        data = json.dumps({"from": "old"}, separators=(",", ":"))
        h = event_hash(prev, event_id, None, NOW, "old", kind, data)
        conn.execute("INSERT INTO events (id, ticket_id, at, actor, kind, data, prev_hash, hash) "
                     "VALUES (?, NULL, ?, 'old', ?, ?, ?, ?)", (event_id, NOW, kind, data, prev, h))
        prev = h
    conn.close()


@pytest.mark.sqlite_only("builds a desk file at the schema before logins, by hand with sqlite-utils")
def test_old_events_keep_verifying_and_new_ones_cover_their_login(shell, db_path):
    _old_desk(db_path)
    assert shell("audit", "verify").exit_code == 0  # upgraded on open; the old events have no login
    shell.new("after the upgrade")
    assert "3 events" in shell("audit", "verify").stdout
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT id, login FROM events ORDER BY id").fetchall() == [(1, None), (2, None), (3, ME)]
    # Changing (or removing) the login of a new event breaks the chain.
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET login = NULL WHERE id = 3")
    conn.commit()
    r = shell("audit", "verify", ok=False)
    assert r.exit_code != 0 and "event 3" in r.stderr


def test_export_and_import_keep_the_logins(shell, tmp_path):
    shell.new("one")
    export = tmp_path / "desk.jsonl"
    shell("export", "--jsonl", "--out", str(export))
    assert f'"login":"{ME}"' in export.read_text()
    other = tmp_path / "other.db"
    shell("--db", str(other), "import", str(export))
    again = tmp_path / "again.jsonl"
    shell("--db", str(other), "export", "--jsonl", "--out", str(again))
    assert again.read_bytes() == export.read_bytes()


# -- --as is checked against the OS login ----------------------------------------------------


def test_acting_as_someone_else_needs_an_admins_login(bobs_shell, db_path):
    ticket = bobs_shell.new("needs a restart")
    assert bobs_shell.json("show", str(ticket))["events"][0]["actor"] == "bob"  # this login is bob
    run = json.loads(bobs_shell("runbook", "run", "restart", "--ticket", str(ticket), "--yes", "--json").stdout)
    # bob may not approve his own run...
    r = bobs_shell("runbook", "approve", str(run["id"]), "--yes", ok=False)
    assert r.exit_code == ExitCode.PERMISSION and "--as" not in r.stderr
    # ...nor get it approved by claiming to be dave (the reported case).
    r = bobs_shell("--as", "dave", "runbook", "approve", str(run["id"]), "--yes", ok=False)
    assert r.exit_code == ExitCode.PERMISSION
    [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # (after the plan it shows)
    assert line == f"error: permission denied: {KIND} {ME} is bob, an approver; acting as dave needs an admin's login"
    assert bobs_shell.json("runbook", "runs", "--ticket", str(ticket))[0]["status"] == "waiting"
    denied = bobs_shell.json("audit", "log", "--kind", "permission_denied")
    [denied] = denied
    assert (denied["actor"], denied["login"], denied["data"]["what"]) == ("bob", ME, "acting as dave")
    # SDESK_USER is the same claim as --as; and claiming to be bob is being bob.
    os.environ["SDESK_USER"] = "dave"
    try:
        assert bobs_shell("comment", str(ticket), "hi", ok=False).exit_code == ExitCode.PERMISSION
    finally:
        del os.environ["SDESK_USER"]
    bobs_shell("--as", " BOB ", "comment", str(ticket), "me")
    # An admin's login may act as anyone: alice's, once this login is hers.
    remap(db_path, bob="bob-laptop", alice=ME)
    bobs_shell("--as", "dave", "runbook", "approve", str(run["id"]), "--yes")
    assert bobs_shell.json("runbook", "runs", "--ticket", str(ticket))[0]["status"] == "succeeded"
    assert bobs_shell("audit", "verify").exit_code == 0


def test_a_login_that_is_nobodys_acts_only_as_itself(bobs_shell, db_path):
    remap(db_path, bob="bob")  # this login is now no user's
    ticket = bobs_shell.new("from an unlisted login")  # as itself, with the default role (agent)
    assert bobs_shell.json("show", str(ticket))["events"][0]["actor"] == ME
    for name in ("alice", "bob", "dave", "anyone"):
        r = bobs_shell("--as", name, "comment", str(ticket), "hi", ok=False)
        assert r.exit_code == ExitCode.PERMISSION and "is not any user's login on this desk" in r.stderr
        assert "sdesk user add NAME --login LOGIN" in r.stderr  # how a login becomes a user's
    assert bobs_shell("--as", name, "list").exit_code == 0  # reading is anyone's


def test_an_open_desk_lets_the_operator_act_as_anyone(shell):
    ticket = shell.new("single operator")
    shell("--as", "whoever", "ack", str(ticket))
    assert [e["login"] for e in shell.json("show", str(ticket))["events"]] == [ME, ME]


def test_logins_and_emails_are_one_users_each(bobs_shell, db_path):
    r = bobs_shell("--as", "alice", "user", "add", "eve", "--role", "agent", "--login", "eve", ok=False)
    assert r.exit_code == ExitCode.PERMISSION  # this login is bob's, not an admin's
    remap(db_path, bob="bob", alice=ME)  # alice's session
    bobs_shell("user", "add", "dave", "--role", "approver", "--email", "dave@example.com")
    for flag, value in (("--login", "BOB"), ("--email", "Dave@Example.com")):
        r = bobs_shell("user", "add", "eve", "--role", "agent", flag, value, ok=False)
        assert r.exit_code == ExitCode.CONFLICT and "is already" in r.stderr
    [dave] = [u for u in bobs_shell.json("user", "list") if u["name"] == "dave"]
    assert (dave["login"], dave["email"]) == ("dave", "dave@example.com")


def test_serve_acting_as_a_claimed_user_is_checked(bobs_shell, db_path):
    r = bobs_shell("--as", "dave", "serve", "--port", "1", ok=False)
    assert r.exit_code == ExitCode.PERMISSION and "acting as dave" in r.stderr


@settings(max_examples=examples(40), deadline=None)
@given(my_role=st.sampled_from([*ROLES, None]), claim=st.sampled_from(["me", "ann", "zed", "nobody"]),
       ann_role=st.sampled_from(ROLES))
def test_a_claim_is_allowed_exactly_when_it_is_you_or_you_are_an_admin(my_role, claim, ann_role):
    """me: the user this login is (none when my_role is None); ann: another user; zed: nobody's name;
    nobody: this login's own name."""
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "d.db") as store:
        store.users.user_add("root-admin", role="admin", team=None, queue=None, actor="x", login="elsewhere")
        store.users.user_add("ann", role=ann_role, team=None, queue=None, actor="root-admin")
        if my_role is not None:  # (a desk file: its login is the OS login, whichever backend the suite runs)
            store.users.user_add("me", role=my_role, team=None, queue=None, actor="root-admin", login=OS_LOGIN)
        actor = {"nobody": OS_LOGIN}.get(claim, claim)
        store.claimed = actor
        allowed = (my_role == "admin" or (my_role is not None and claim == "me")
                   or (my_role is None and claim == "nobody"))
        try:
            store.check_claim(actor)
            assert allowed
        except PermissionDenied as e:
            assert not allowed
            assert "--as" not in str(e) and "SDESK_USER" not in str(e)


@settings(max_examples=examples(200), deadline=None)
@given(name=st.text(max_size=20), role=st.sampled_from(ROLES), need=st.sampled_from(ROLES),
       what=st.text(max_size=20), queue=st.one_of(st.none(), st.text(max_size=8)),
       me=st.one_of(st.none(), st.tuples(st.text(max_size=8), st.sampled_from(ROLES))))
def test_no_refusal_suggests_acting_as_someone_else(name, role, need, what, queue, me):
    for message in (refusal(Access(name, role, {}), need, what, queue), claim_refusal("login", me, name)):
        assert "--as" not in message.replace(name, "").replace(what, "")
        assert "SDESK_USER" not in message.replace(name, "").replace(what, "")


# -- a role on a queue is that queue only -----------------------------------------------------


# (command, whether it needs a ticket of its own: resolve and close take one each)
TICKET_COMMANDS = [
    ["ack"], ["start"], ["comment", "{t}", "hi"], ["update", "{t}", "--priority", "P2"], ["assign", "{t}", "vic"],
    ["resolve", "{t}", "-r", "fixed it"], ["worklog", "{t}", "15m"], ["link", "{t}", "--parent", "{p}"],
    ["triage"],
]


def _args(command, t, p):
    if "{t}" not in command:
        command = [*command, "{t}"]
    return [a.format(t=t, p=p) for a in command]


def test_a_user_first_added_on_a_queue_only_reads_the_rest(cli):
    cli("--as", "root", "user", "add", "root", "--role", "admin")
    cli("--as", "root", "user", "add", "vic", "--role", "agent", "--queue", "dba")
    [vic] = [u for u in cli.json("user", "list") if u["name"] == "vic"]
    assert (vic["role"], vic["queues"]) == ("viewer", {"dba": "agent"})
    for command in TICKET_COMMANDS:
        mine, parent = cli.new("slow query", "--queue", "dba"), cli.new("parent", "--queue", "dba")
        theirs, other = cli.new("printer", "--queue", "desk"), cli.new("parent", "--queue", "desk")
        cli("--as", "vic", *_args(command, mine, parent))
        r = cli("--as", "vic", *_args(command, theirs, other), ok=False)
        assert r.exit_code == ExitCode.PERMISSION, command
        assert "vic is a viewer" in r.stderr
    cli("--as", "vic", "new", "in dba", "--queue", "dba")  # a new ticket: the role on its queue
    for where in (["--queue", "desk"], []):
        assert cli("--as", "vic", "new", "elsewhere", *where, ok=False).exit_code == ExitCode.PERMISSION
    # A viewer role on one queue for a new user: the desk's default role (agent) elsewhere.
    cli("--as", "root", "user", "add", "sam", "--role", "viewer", "--queue", "security")
    sec, desk = cli.new("phish", "--queue", "security"), cli.new("mouse", "--queue", "desk")
    assert cli("--as", "sam", "ack", str(sec), ok=False).exit_code == ExitCode.PERMISSION
    cli("--as", "sam", "ack", str(desk))


# -- a flood of refusals ------------------------------------------------------------------------


def test_a_thousand_refusals_make_one_event_per_actor_login_and_minute(shell, db_path, monkeypatch):
    shell("--as", "root", "user", "add", ME, "--role", "admin")
    shell("user", "add", "vic", "--role", "viewer")
    ticket = shell.new("flooded")
    with Store(db_path) as store:
        for _ in range(1000):
            with pytest.raises(PermissionDenied):
                store.tickets.comment(ticket_id=ticket, text="x", actor="vic")
        monkeypatch.setenv("SDESK_NOW", "2026-11-26T09:01:00Z")
        for _ in range(3):
            with pytest.raises(PermissionDenied):
                store.tickets.comment(ticket_id=ticket, text="x", actor="vic")
    denied = shell.json("audit", "log", "--kind", "permission_denied")
    assert [(e["actor"], e["count"]) for e in denied] == [("vic", 1000), ("vic", 3)]
    # The next window's event carries the last one's final count, on the chain.
    assert denied[1]["data"]["before"] == {"event": denied[0]["id"], "minute": "2026-11-26T09:00", "count": 1000}
    assert len(shell.json("show", str(ticket))["events"]) == 1 + 2
    assert shell("audit", "verify").exit_code == 0


@pytest.mark.slow
def test_a_viewer_token_posting_a_thousand_times_makes_a_bounded_number_of_events(shell, db_path):
    from test_serve import Server

    shell("--as", "root", "user", "add", ME, "--role", "admin")
    shell("user", "add", "vic", "--role", "viewer")
    token = shell("user", "token", "vic").stdout.strip()
    server = Server(db_path, env={"SDESK_NOW": NOW})
    try:
        body = json.dumps({"title": "x"}).encode()
        for _ in range(1000):
            assert server.post("/tickets", body, {"Authorization": f"Bearer {token}"})[0] == 403
    finally:
        server.stop()
    [denied] = shell.json("audit", "log", "--kind", "permission_denied")
    assert (denied["actor"], denied["count"]) == ("vic", 1000)
