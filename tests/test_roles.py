"""Roles: who may do what, refusals recorded, per-queue roles, API tokens for sdesk serve."""

import json

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from test_serve import Server

from sdesk.domain.roles import RANK, ROLES, Access
from sdesk.errors import ExitCode
from sdesk.intake.service import Intake
from sdesk.store import Store


def refusals(db):
    with Store(db) as store:  # (a file, or on the PostgreSQL run a URL)
        return [json.loads(d) for (d,) in store.conn.execute(
            "SELECT data FROM events WHERE kind = 'permission_denied' ORDER BY id")]


def stored_text(db) -> str:
    """Everything the database holds, as text: the file's bytes, or every row of every table."""
    if not isinstance(db, str):
        return db.read_bytes().decode("latin-1")
    with Store(db) as store:
        return "\n".join(repr(tuple(row)) for table in store.dialect.tables(store.conn)
                         for row in store.conn.execute(f'SELECT * FROM "{table}"'))


@pytest.fixture
def desk(cli):
    cli("--as", "root", "user", "add", "root", "--role", "admin")
    for name, role in [("vic", "viewer"), ("amy", "agent"), ("pat", "approver")]:
        cli("--as", "root", "user", "add", name, "--role", role)
    return cli


def test_an_open_desk_lets_everyone_act_as_admin(cli):
    ticket = cli.new("anyone can work an open desk")
    cli("--as", "whoever", "ack", str(ticket))
    cli("--as", "whoever", "runbook", "disable", "--all")
    assert cli.json("user", "list") == []


def test_the_first_user_must_be_an_admin(cli, db_path):
    r = cli("--as", "root", "user", "add", "bob", "--role", "agent", ok=False)
    assert r.exit_code == ExitCode.CONFLICT and "first user must be an admin" in r.stderr
    assert cli.json("user", "list") == []


def test_a_viewer_reads_but_changes_nothing_and_the_refusal_is_recorded(desk, db_path, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T09:00:00Z")  # one minute: the refusals count into one event
    ticket = desk.new("disk full on db-1")
    before = desk.json("show", str(ticket))
    assert desk("--as", "vic", "list").exit_code == 0
    for args in (["ack", str(ticket)], ["comment", str(ticket), "me too"], ["new", "a ticket"],
                 ["update", str(ticket), "--priority", "P1"]):
        r = desk("--as", "vic", *args, ok=False)
        assert r.exit_code == ExitCode.PERMISSION, args
        assert r.stderr.startswith("error: permission denied: vic is a viewer; ") and r.stderr.count("\n") == 1
        assert r.stderr.strip().endswith("needs the agent role")
    after = desk.json("show", str(ticket))
    assert after["status"] == before["status"] and after["priority"] == before["priority"]
    # The first refusal is on the ticket's timeline; the repeats within the minute (by the same
    # actor and OS login) only count, and the audit log says how many.
    assert [e["kind"] for e in after["events"][len(before["events"]):]] == ["permission_denied"]
    assert [r["need"] for r in refusals(db_path)] == ["agent"]
    [logged] = desk.json("audit", "log", "--kind", "permission_denied")
    assert (logged["actor"], logged["count"]) == ("vic", 4)
    assert desk("audit", "verify").exit_code == 0


def test_only_admins_manage_users_disable_automation_and_silence_broadly(desk, db_path):
    for actor in ("amy", "pat"):
        r = desk("--as", actor, "user", "add", "eve", "--role", "admin", ok=False)
        assert r.exit_code == ExitCode.PERMISSION and "managing users needs the admin role" in r.stderr
        r = desk("--as", actor, "runbook", "disable", "--all", ok=False)
        assert r.exit_code == ExitCode.PERMISSION
        for match in ("alertname=~.+", "kind=incident", "severity=critical"):
            r = desk("--as", actor, "silence", "add", "--match", match, "--for", "1h", ok=False)
            assert r.exit_code == ExitCode.PERMISSION and "an exact match on a label" in r.stderr
    desk("--as", "amy", "silence", "add", "--match", "alertname=DiskFull", "--for", "1h")
    desk("--as", "root", "silence", "add", "--match", "alertname=~.+", "--for", "1h")
    desk("--as", "root", "runbook", "disable", "--all")
    assert {u["name"] for u in desk.json("user", "list")} == {"root", "vic", "amy", "pat"}


def test_names_compare_trimmed_and_case_folded(desk):
    r = desk("--as", " VIC ", "new", "x", ok=False)
    assert r.exit_code == ExitCode.PERMISSION


def test_someone_not_listed_gets_the_default_role(desk, tmp_path):
    desk("--as", "stranger", "new", "agents may open tickets")  # agent by default
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "roles.yaml").write_text("default_role: viewer\n")
    r = desk("--as", "stranger", "new", "now they may not", ok=False)
    assert r.exit_code == ExitCode.PERMISSION and "not a listed user" in r.stderr
    (tmp_path / "config" / "roles.yaml").write_text("default_role: boss\n")
    r = desk("--as", "stranger", "list", ok=False)
    assert r.exit_code == ExitCode.BAD_INPUT and "unknown role 'boss'" in r.stderr


def test_a_role_on_a_queue_applies_to_that_queues_tickets_only(desk, tmp_path):
    dba = desk.new("slow query", "--queue", "dba")
    other = desk.new("printer", "--queue", "desk")
    desk("--as", "root", "user", "add", "vic", "--role", "agent", "--queue", "dba")
    desk("--as", "vic", "ack", str(dba))
    assert desk("--as", "vic", "ack", str(other), ok=False).exit_code == ExitCode.PERMISSION
    article = tmp_path / "a.md"
    article.write_text("# Disk full\n\nClean /tmp.\n")
    assert desk("--as", "vic", "kb", "add", str(article), ok=False).exit_code == ExitCode.PERMISSION
    # And the other way: an agent made a viewer on one queue.
    desk("--as", "root", "user", "add", "amy", "--role", "viewer", "--queue", "dba")
    assert desk("--as", "amy", "comment", str(dba), "hi", ok=False).exit_code == ExitCode.PERMISSION
    desk("--as", "amy", "comment", str(other), "hi")
    # A new ticket needs the role on its queue: amy (a viewer on dba) may not open one there, vic
    # (an agent on dba) may, and nowhere else; without a queue, the role on the desk decides.
    assert desk("--as", "amy", "new", "in dba", "--queue", "dba", ok=False).exit_code == ExitCode.PERMISSION
    desk("--as", "amy", "new", "on the desk")
    desk("--as", "vic", "new", "vic's own", "--queue", "dba")
    for where in (["--queue", "desk"], []):
        r = desk("--as", "vic", "new", "not vic's", *where, ok=False)
        assert r.exit_code == ExitCode.PERMISSION and "vic is a viewer" in r.stderr
    # An acknowledge vic may give, in one stream with triggers vic may not send: nothing is stored.
    fingerprint = desk.json("new", "paged", "--queue", "dba", "--fingerprint", "pagerduty:k0")["id"]
    stream = tmp_path / "pd.jsonl"
    stream.write_text("\n".join(json.dumps({"event_action": action, "routing_key": "r", "dedup_key": key,
                                            "payload": {"summary": "s", "source": "x", "severity": "error"}})
                                 for action, key in (("acknowledge", "k0"), ("trigger", "k1"), ("trigger", "k2"))))
    r = desk("--as", "vic", "new", "--jsonl", "--format", "pagerduty", str(stream), ok=False)
    assert r.exit_code == ExitCode.PERMISSION
    assert desk.json("show", str(fingerprint))["status"] == "new"
    assert {"in dba", "not vic's", "s"} & {t["title"] for t in desk.json("list", "--all")} == set()


def test_users_list_their_roles_and_tokens_and_can_be_removed(desk):
    desk("--as", "root", "user", "add", "amy", "--role", "agent", "--team", "sre")
    desk("--as", "root", "user", "add", "amy", "--role", "viewer", "--queue", "dba")
    desk("--as", "root", "user", "token", "amy", "--label", "ci")
    [amy] = [u for u in desk.json("user", "list") if u["name"] == "amy"]
    assert (amy["role"], amy["team"], amy["queues"], amy["tokens"]) == ("agent", "sre", {"dba": "viewer"}, 1)
    [token] = desk.json("user", "tokens")
    assert (token["user"], token["label"], token["revoked_at"]) == ("amy", "ci", None)
    assert "sdk_" not in json.dumps(token)
    desk("--as", "root", "user", "remove", "AMY ")
    assert "amy" not in {u["name"] for u in desk.json("user", "list")}
    assert desk.json("user", "tokens") == []  # her tokens went with her
    assert desk("--as", "root", "user", "remove", "amy", ok=False).exit_code == ExitCode.NOT_FOUND
    r = desk("--as", "root", "user", "add", "zed", "--role", "boss", ok=False)
    assert r.exit_code == ExitCode.BAD_INPUT and "unknown role 'boss'" in r.stderr


def test_the_last_admin_cannot_leave(desk):
    for args in (["user", "remove", "root"], ["user", "add", "root", "--role", "agent"]):
        r = desk("--as", "root", *args, ok=False)
        assert r.exit_code == ExitCode.CONFLICT and "no admin left" in r.stderr
    desk("--as", "root", "user", "add", "pat", "--role", "admin")
    desk("--as", "pat", "user", "remove", "root")
    assert "root" not in {u["name"] for u in desk.json("user", "list")}


def test_api_tokens_map_requests_to_users(desk, db_path):
    agent_token = desk("--as", "root", "user", "token", "amy", "--label", "alertmanager").stdout.strip()
    viewer_token = desk("--as", "root", "user", "token", "vic").stdout.strip()
    assert agent_token.startswith("sdk_") and agent_token not in stored_text(db_path)
    server = Server(db_path)
    try:
        body = json.dumps({"title": "from a script"}).encode()
        assert server.post("/tickets", body)[0] == 401
        assert server.post("/tickets", body, {"Authorization": "Bearer sdk_wrong"})[0] == 401
        status, answer = server.post("/tickets", body, {"Authorization": f"Bearer {viewer_token}"})
        assert status == 403 and "vic is a viewer" in answer["error"]
        assert [r["need"] for r in refusals(db_path)] == ["agent"]  # once, not again on a retry
        status, answer = server.post("/tickets", body, {"Authorization": f"Bearer {agent_token}"})
        assert status == 200
        [result] = answer["results"]
        created = desk.json("show", str(result["ticket"]))["events"][0]
        assert created["actor"] == "amy"
        for token in desk.json("user", "tokens"):
            desk("--as", "root", "user", "revoke", str(token["id"]))
        from test_serve import wait_for
        wait_for(lambda: server.post("/tickets", body, {"Authorization": f"Bearer {agent_token}"})[0] == 401,
                 timeout=10, what="the revoked token to be refused")
        assert server.post("/tickets", body)[0] == 401  # all revoked is not open to anyone
    finally:
        server.stop()


def test_approving_needs_an_approver_other_than_the_requester(desk, db_path, tmp_path):
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    (config / "runbooks" / "restart.yaml").write_text(
        "description: restart\nsteps:\n  - approve: a human looks first\n  - run: [true]\n")
    ticket = desk.new("needs a restart")
    run = json.loads(desk("--as", "amy", "runbook", "run", "restart", "--ticket", str(ticket), "--yes", "--json").stdout)
    r = desk("--as", "amy", "runbook", "approve", str(run["id"]), "--yes", ok=False)
    assert r.exit_code == ExitCode.PERMISSION and "approver" in r.stderr
    r = desk("--as", "vic", "runbook", "approve", str(run["id"]), "--yes", ok=False)
    assert r.exit_code == ExitCode.PERMISSION
    desk("--as", "pat", "runbook", "approve", str(run["id"]), "--yes")
    assert desk.json("runbook", "runs", "--ticket", str(ticket))[0]["status"] == "succeeded"


@settings(max_examples=examples(200), deadline=None)
@given(role=st.sampled_from(ROLES), queues=st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(ROLES)),
       need=st.sampled_from(ROLES), queue=st.sampled_from([None, "a", "b", "c"]))
def test_a_role_allows_exactly_what_its_rank_reaches(role, queues, need, queue):
    access = Access("x", role, queues)
    effective = queues.get(queue, role) if queue else role
    assert access.allows(need, queue) == (RANK[effective] >= RANK[need])


@settings(max_examples=examples(60), deadline=None)
@given(desk_role=st.sampled_from(ROLES), queue_roles=st.dictionaries(st.sampled_from(["dba", "net"]), st.sampled_from(ROLES)),
       queue=st.sampled_from(["dba", "net", "desk", None]), duplicate_of=st.sampled_from([None, "dba", "net", "desk"]))
def test_opening_a_ticket_needs_the_agent_role_on_its_queue(tmp_path_factory, desk_role, queue_roles, queue, duplicate_of):
    """A new ticket: the role on the queue it is filed into (the desk's role when none). An
    alert arriving again for an open ticket touches that ticket: the role on its queue."""
    from sdesk.domain.fields import check_ticket
    from sdesk.domain.signals import Signal
    from sdesk.errors import PermissionDenied
    from sdesk.store import Store

    with Store(tmp_path_factory.mktemp("desk") / "sdesk.db") as store:
        store.users.user_add("root", role="admin", team=None, queue=None, actor="root")
        store.users.user_add("dana", role=desk_role, team=None, queue=None, actor="root")
        for q, role in queue_roles.items():
            store.users.user_add("dana", role=role, team=None, queue=q, actor="root")
        access = store.users.access("dana")
        ticket = check_ticket({"title": "x", "queue": queue})
        if duplicate_of:
            Intake(store).receive([Signal("cli", "trigger", ticket=check_ticket(
                {"title": "first", "queue": duplicate_of, "fingerprint": "fp"}))], actor="root")
            ticket["fingerprint"] = "fp"
        before = store.conn.execute("SELECT count(*), sum(occurrences) FROM tickets").fetchone()
        touched = duplicate_of or queue
        try:
            [(_, outcome)] = Intake(store).receive([Signal("cli", "trigger", ticket=ticket)], actor="dana")
        except PermissionDenied as refused:
            assert not access.allows("agent", touched), refused
            assert store.conn.execute("SELECT count(*), sum(occurrences) FROM tickets").fetchone() == before
        else:
            assert access.allows("agent", touched)
            assert outcome == ("deduplicated" if duplicate_of else "created")


def test_a_new_ticket_triage_files_into_a_queue_needs_the_role_there(desk, tmp_path):
    """The queue that counts is the one the ticket is filed into, after triage's rules."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "triage.yaml").write_text(
        "timezone: UTC\nrules:\n  - id: db\n    match: {title: {contains: postgres}}\n    set: {queue: dba}\n")
    desk("--as", "root", "user", "add", "dana", "--role", "agent", "--queue", "dba")
    routed = desk.json("--as", "dana", "new", "postgres is slow")
    assert routed["queue"] == "dba"
    assert desk("--as", "dana", "new", "printer", ok=False).exit_code == ExitCode.PERMISSION
    # And the other way: an agent made a viewer on the queue triage files into.
    desk("--as", "root", "user", "add", "amy", "--role", "viewer", "--queue", "dba")
    assert desk("--as", "amy", "new", "postgres is down", ok=False).exit_code == ExitCode.PERMISSION
    assert "postgres is down" not in {t["title"] for t in desk.json("list", "--all")}
