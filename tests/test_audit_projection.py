"""Tickets, users, queue roles and API tokens are a projection of their events: `sdesk audit
verify` and `sdesk import` rebuild them from the chain, so an edit of the file that leaves the
chain alone is caught and named (ticket or table, column, stored and rebuilt value)."""

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import rawdb
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.errors import ExitCode
from sdesk.intake.service import Intake
from sdesk.storage.rows import GENESIS, event_hash
from sdesk.store import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def tamper(db, *statements, params=()):
    """SQL straight into the file (or the server's database), as someone with write access to it
    would (no triggers bypassed, foreign keys off as sqlite3 has them by default)."""
    rawdb.tamper(db, *statements, params=params)


def verify(cli, *args):
    return cli("audit", "verify", *args, ok=False)


@pytest.fixture
def desk(cli, monkeypatch, tmp_path):
    """The example desk's config (triage, on-call, runbooks) and its CMDB."""
    config = tmp_path / "desk"
    shutil.copytree(EXAMPLES / "desk", config)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli("cmdb", "import", str(config / "cmdb.yaml"))
    return cli


def alert(status="firing", **labels):
    return json.dumps({"version": "4", "status": status, "alerts": [
        {"status": status, "labels": {"alertname": "DiskFull", "severity": "critical", **labels},
         "annotations": {"summary": f"Disk full on {labels.get('instance', 'x')}"}}]})


def broad_mix(cli):
    """Most of what writes tickets, users and tokens, through the CLI."""
    a = cli.new("Printer on 3rd floor jams", "--priority", "P3", "--service", "printing")
    b = cli.new("Checkout returns 502", "--priority", "P1", "--service", "checkout")
    c = cli.new("VPN drops every hour")
    cli("new", "--format", "alertmanager", "-", input=alert(instance="db-billing-2:9100"))
    cli("new", "--format", "alertmanager", "-", input=alert(instance="db-billing-2:9100"))  # an occurrence
    cli("new", "--format", "alertmanager", "-", input=alert(instance="web-1:9100"))
    cli("new", "--format", "alertmanager", "-", input=alert("resolved", instance="web-1:9100"))  # auto-resolved
    cli("update", str(a), "--title", "Printer jams", "-p", "P2", "--urgency", "1", "--label", "floor=3",
        "--tag", "hw", "--impact", "2", "--queue", "dba", "--requester", "ann@example.com")
    cli("update", str(a), "--tag", "-hw", "--label", "floor=")
    cli("assign", str(a), "bob")
    cli("ack", str(b))
    cli("start", str(b))
    cli("wait", str(b))
    cli("start", str(b))
    cli("comment", str(b), "rolled back")
    cli("resolve", str(b), "-r", "rolled back the deploy", "--code", "rollback")
    cli("close", str(b))
    cli("reopen", str(b))
    cli("resolve", str(b), "-r", "fixed for real", "--kb")
    cli("csat", str(b), "5")
    cli("worklog", str(b), "30m")
    cli("link", str(c), "--parent", str(a))
    cli("start", str(c))  # ack by the actor: assigns them
    made = cli("problem", "new", "--from", str(a), "--root-cause", "worn roller")
    p = int(re.search(r"SD-(\d+)", made.stdout + made.stderr).group(1))
    d = cli.new("Printer jams again")
    cli("problem", "update", str(p), "--link", str(d))
    cli("problem", "resolve", str(p), "--fix", "new roller")
    cli("triage", "ticket", str(a))  # re-triage: undoes the hand-set urgency
    cli("triage", "ticket", str(d))  # re-triage: changes nothing
    cli("silence", "add", "-m", "instance=db-9:9100", "--for", "1h", "-c", "maintenance")
    cli("new", "--format", "alertmanager", "-", input=alert(instance="db-9:9100"))  # suppressed
    silence = cli.json("silence", "list")[0]["id"]
    cli("silence", "expire", str(silence))  # unsuppressed
    cli("escalate", str(cli.new("Payments down", "-p", "P1", "--queue", "payments")), ok=False)
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "vic", "--role", "viewer")
    cli("user", "add", "vic", "--role", "agent", "--team", "payments")
    cli("user", "add", "vic", "--role", "approver", "--queue", "dba")
    cli("user", "add", "gone", "--role", "agent")
    cli("user", "token", "gone", "--label", "ci")
    cli("user", "token", "vic", "--label", "alertmanager")
    cli("user", "token", "vic", "--label", "old")
    cli("user", "revoke", "3")
    cli("user", "remove", "gone")
    return a, b, c, d


def test_a_broad_mix_of_commands_verifies_clean(desk):
    broad_mix(desk)
    result = desk.json("audit", "verify")
    assert result["ok"] and result["differences"] == [] and result["not_compared"] == {}
    assert result["tickets"] == 9 and result["users"] == 2 and result["tokens"] == 2


def test_the_demo_desk_verifies_clean(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "demo.db"
    subprocess.run([sys.executable, "-m", "sdesk", "demo", "--db", str(db)], check=True, capture_output=True)
    with Store(db) as store:
        tables = store.audit.verify_tables()
    assert tables["count"] == 0 and tables["not_compared"] == {} and tables["tickets"] >= 10


def test_a_ticket_edited_in_the_file_fails_verify_and_names_the_columns(desk, db_path, tmp_path):
    """The issue's reproduction: `update tickets set status='closed', priority='P4'`."""
    ticket = desk.new("Checkout returns 502", "--priority", "P1")
    desk("ack", str(ticket))
    anchors = tmp_path / "anchors.jsonl"
    desk("audit", "anchor", "--out", str(anchors))
    tamper(db_path, f"UPDATE tickets SET status = 'closed', priority = 'P4' WHERE id = {ticket}")
    for args in ((), ("--anchors", str(anchors))):
        r = verify(desk, *args)
        assert r.exit_code == ExitCode.ERROR
        assert f"SD-{ticket}: status is 'closed', its events say 'acknowledged'" in r.stdout
        assert f"SD-{ticket}: priority is 'P4', its events say 'P1'" in r.stdout
        assert "2 stored values differ" in r.stderr
    shown = json.loads(verify(desk, "--json").stdout)
    assert not shown["ok"]
    assert {(d["ticket"], d["column"], d["stored"], d["rebuilt"]) for d in shown["differences"]} == {
        (ticket, "status", "closed", "acknowledged"), (ticket, "priority", "P4", "P1")}


ACCOUNT_TAMPERING = {
    "a viewer made an admin": ("UPDATE users SET role = 'admin' WHERE key = 'vic'", "users vic: role is 'admin'"),
    "a user inserted": ("INSERT INTO users (key, name, role, team, added_by, added_at, login, email) VALUES "
                        "('mallory', 'mallory', 'admin', NULL, 'tester', '2026-01-01', 'mallory', NULL)",
                        "users mallory: exists, but no event made it"),
    "a user deleted": ("DELETE FROM users WHERE key = 'vic'", "users vic: was deleted"),
    "a queue role inserted": ("INSERT INTO user_queue_roles VALUES ('vic', 'payments', 'admin')",
                              "user_queue_roles vic on payments: exists, but no event made it"),
    "an API token inserted": ("INSERT INTO api_tokens (key, label, hash, created_by, created_at) VALUES "
                              "('vic', 'x', 'ab', 'tester', '2026-01-01')",
                              "api_tokens 2: exists, but no event made it"),
    "a token's hash replaced": ("UPDATE api_tokens SET hash = 'ab' WHERE id = 1", "api_tokens 1: hash is 'ab'"),
    "a revoked token revived": ("UPDATE api_tokens SET revoked_at = NULL WHERE id = 1",
                                "api_tokens 1: revoked_at is None"),
    "a token given to another user": ("UPDATE api_tokens SET key = 'tester' WHERE id = 1",
                                      "api_tokens 1: key is 'tester', its events say 'vic'"),
}


@pytest.mark.parametrize("what", ACCOUNT_TAMPERING)
def test_users_roles_and_tokens_edited_in_the_file_fail_verify(cli, db_path, what):
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "vic", "--role", "viewer")
    token = cli("user", "token", "vic").stdout.strip()
    # The token's event names it by id (and sha256), never by the token itself.
    with rawdb.opened(db_path) as conn:
        assert token.startswith("sdk_") and token not in "".join(r[0] for r in conn.execute("SELECT data FROM events"))
    if what == "a revoked token revived":
        cli("user", "revoke", "1")
    assert verify(cli).exit_code == 0
    sql, message = ACCOUNT_TAMPERING[what]
    tamper(db_path, sql)
    r = verify(cli)
    assert r.exit_code == ExitCode.ERROR and message in r.stdout, r.stdout


def test_rows_inserted_or_deleted_in_the_file_fail_verify(cli, db_path):
    kept = cli.new("kept")
    gone = cli.new("deleted by hand")
    tamper(db_path, f"DELETE FROM tickets WHERE id = {gone}",
           "INSERT INTO tickets (kind, title, status, priority, source, created_at, updated_at) "
           "VALUES ('incident', 'made by hand', 'new', 'P1', 'cli', '2026-01-01', '2026-01-01')")
    r = verify(cli)
    assert r.exit_code == ExitCode.ERROR
    assert f"SD-{gone}: was deleted" in r.stdout and f"SD-{gone + 1}: exists, but no event made it" in r.stdout
    assert f"SD-{kept}" not in r.stdout


def _export_edited(lines, table, change):
    out, done = [], False
    for line in lines:
        if not done and f'"table":"{table}"'.encode() in line:
            record = json.loads(line)
            change(record["row"])
            line, done = json.dumps(record).encode(), True
        out.append(line)
    return b"\n".join(out) + b"\n"


@pytest.mark.parametrize("table, change", [
    ("tickets", lambda row: row.update(priority="P4" if row["priority"] != "P4" else "P1")),
    ("tickets", lambda row: row.update(status="closed")),
    ("users", lambda row: row.update(role="admin" if row["role"] != "admin" else "viewer")),
    ("api_tokens", lambda row: row.update(hash="ab" * 32)),
])
def test_an_import_of_an_edited_export_is_refused_and_leaves_the_target_empty(cli, tmp_path, table, change):
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "vic", "--role", "viewer")
    cli("user", "token", "vic")
    cli.new("Checkout returns 502", "--priority", "P1")
    export = cli("export").stdout_bytes
    (tmp_path / "edited.jsonl").write_bytes(_export_edited(export.splitlines(), table, change))
    target = tmp_path / "copy.db"
    r = cli("--db", str(target), "import", str(tmp_path / "edited.jsonl"), ok=False)
    assert r.exit_code == ExitCode.ERROR and "differ from what their events say" in r.stderr
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM events) + "
                        "(SELECT count(*) FROM users)").fetchone()[0] == 0
    (tmp_path / "whole.jsonl").write_bytes(export)
    cli("--db", str(target), "import", str(tmp_path / "whole.jsonl"))
    assert cli("--db", str(target), "export").stdout_bytes == export


def _rehash(db, change):
    """Rewrite every event's data with `change(kind, data)` and re-hash the chain: what a desk
    made before events said everything looks like (and what a forger who knows the format can
    do, which only anchors kept elsewhere catch)."""
    conn = rawdb.connect(db)
    rawdb.triggers_off(conn, "events")
    prev = GENESIS
    for event_id, ticket_id, at, actor, kind, data, login in conn.execute(
            "SELECT id, ticket_id, at, actor, kind, data, login FROM events ORDER BY id").fetchall():
        data = json.dumps(change(kind, json.loads(data)), separators=(",", ":"), ensure_ascii=False)
        h = event_hash(prev, event_id, ticket_id, at, actor, kind, data, login)
        conn.execute("UPDATE events SET data = ?, prev_hash = ?, hash = ? WHERE id = ?", (data, prev, h, event_id))
        prev = h
    conn.commit()
    conn.close()


def _legacy(kind, data):
    if kind == "created":
        data.pop("set", None)
    if kind in ("status_changed", "token_added"):
        data.pop("hash", None)
        if data.get("action") in ("ack", "start"):
            data.pop("assignee", None)
    return data


def test_a_desk_made_before_events_said_everything_still_verifies_and_says_what_it_could_not_compare(desk, db_path):
    a, b, c, d = broad_mix(desk)
    _rehash(db_path, _legacy)
    r = verify(desk)
    assert r.exit_code == 0, r.stdout + r.stderr
    # Triage's explanation says what it set, but for the correlation group; a token's hash is lost.
    assert "group_key of" in r.stderr and "api_tokens.hash of 2 rows not compared" in r.stderr
    assert "priority of" not in r.stderr and "queue of" not in r.stderr
    # What the old events do say is still checked: the reproduction too.
    tamper(db_path, f"UPDATE tickets SET title = 'x', status = 'closed', priority = 'P4' WHERE id = {c}")
    r = verify(desk)
    assert r.exit_code == ExitCode.ERROR and f"SD-{c}: title is 'x'" in r.stdout and f"SD-{c}: status" in r.stdout
    assert f"SD-{c}: priority is 'P4'" in r.stdout


def test_a_chain_rewritten_by_someone_who_knows_the_format_is_caught_only_by_anchors(desk, db_path, tmp_path):
    ticket = desk.new("Checkout returns 502", "--priority", "P1")
    anchors = tmp_path / "anchors.jsonl"
    desk("audit", "anchor", "--out", str(anchors))
    tamper(db_path, f"UPDATE tickets SET priority = 'P4' WHERE id = {ticket}")
    _rehash(db_path, lambda kind, data: {**data, "priority": "P4"} if kind == "created" else data)
    assert verify(desk).exit_code == 0  # consistent: the limit the README states
    r = verify(desk, "--anchors", str(anchors))
    assert r.exit_code == ExitCode.ERROR and "anchored hash" in r.stderr


# -- every column of every ticket --------------------------------------------------------------

VALUES = st.one_of(st.none(), st.integers(-5, 10**6), st.text(max_size=12), st.binary(max_size=4), st.sampled_from(
    ["new", "closed", "resolved", "P1", "P4", "incident", "problem", "dba", "bob", "tester", "{}", "[]",
     '{"a":"b"}', '["x"]', "2026-01-01T00:00:00Z"]))


@pytest.fixture(scope="module")
def mixed_desk(tmp_path_factory):
    """One desk of the broad mix, copied per example."""
    from conftest import Cli

    root = tmp_path_factory.mktemp("mixed")
    mp = pytest.MonkeyPatch()
    shutil.copytree(EXAMPLES / "desk", root / "desk")
    mp.setenv("SDESK_DB", str(root / "desk.db"))
    mp.setenv("SDESK_CONFIG", str(root / "desk"))
    mp.setenv("SDESK_USER", "tester")
    try:
        cli = Cli()
        cli("cmdb", "import", str(root / "desk" / "cmdb.yaml"))
        broad_mix(cli)
    finally:
        mp.undo()
    return root / "desk.db"


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_edit_of_any_ticket_column_is_detected(mixed_desk, data):
    from sdesk.domain.projection import TICKET_COLUMNS

    with Store(mixed_desk) as store:
        conn = store.conn
        ids = [r[0] for r in conn.execute("SELECT id FROM tickets ORDER BY id")]
        ticket = data.draw(st.sampled_from(ids), "ticket")
        column = data.draw(st.sampled_from(TICKET_COLUMNS), "column")
        value = data.draw(VALUES, "value")
        before = conn.execute(f"SELECT {column}, typeof({column}) FROM tickets WHERE id = ?", (ticket,)).fetchone()
        conn.execute("BEGIN")
        try:
            try:
                conn.execute(f"UPDATE tickets SET {column} = ? WHERE id = ?", (value, ticket))
            except sqlite3.IntegrityError:
                return  # NOT NULL or the open-fingerprint index: not an edit the file takes
            after = conn.execute(f"SELECT {column}, typeof({column}) FROM tickets WHERE id = ?", (ticket,)).fetchone()
            if tuple(after) == tuple(before) or (column in ("labels", "tags") and _same_json(after[0], before[0])):
                return  # no change
            tables = store.audit.verify_tables()
        finally:
            conn.execute("ROLLBACK")
    assert [(d["ticket"], d["column"]) for d in tables["differences"]] == [(ticket, column)]
    json.dumps(tables)  # what `audit verify --json` prints, whatever the file holds


@pytest.mark.sqlite_only("SQLite's dynamic typing: a BLOB stored in a TEXT column")
def test_verify_json_shows_a_blob_written_by_hand(cli, db_path):
    ticket = cli.new("Checkout returns 502")
    tamper(db_path, f"UPDATE tickets SET title = X'1b5d303b' WHERE id = {ticket}")
    r = verify(cli, "--json")
    assert r.exit_code == ExitCode.ERROR
    assert json.loads(r.stdout)["differences"] == [
        {"ticket": ticket, "column": "title", "stored": "<4 bytes>", "rebuilt": "Checkout returns 502"}]


def _same_json(a, b):
    try:
        return json.loads(a) == json.loads(b)
    except (TypeError, ValueError):
        return False


def test_a_backup_whose_rows_were_edited_does_not_restore(cli, db_path, tmp_path):
    ticket = cli.new("Checkout returns 502", "--priority", "P1")
    backup = tmp_path / "backup.db"
    cli("backup", str(backup))
    tamper(backup, f"UPDATE tickets SET priority = 'P4' WHERE id = {ticket}")
    r = cli("restore", str(backup), "--yes", ok=False)
    assert r.exit_code == ExitCode.ERROR and f"SD-{ticket}: priority is 'P4'" in r.stderr
    assert cli.json("show", str(ticket))["priority"] == "P1"


# -- every sequence of writes verifies -----------------------------------------------------------

ACTIONS = ["triage", "assign", "ack", "start", "wait", "resolve", "close", "reopen"]
OPS = st.one_of(
    st.tuples(st.just("new"), st.sampled_from(["P1", "P2", "P3", "P4"]), st.sampled_from([None, "fp1", "fp2"])),
    st.tuples(st.just("move"), st.integers(0, 5), st.sampled_from(ACTIONS)),
    st.tuples(st.just("update"), st.integers(0, 5), st.sampled_from([
        {"priority": "P2"}, {"title": "renamed"}, {"queue": "dba"}, {"labels": {"env": "prod"}}, {"tags": ["x"]},
        {"impact": 1, "urgency": 3}, {"description": None}, {"kind": "request"}, {"requester": "ann@example.com"}])),
    st.tuples(st.just("comment"), st.integers(0, 5), st.just("noted")),
    st.tuples(st.just("link"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("resolve_alert"), st.sampled_from(["fp1", "fp2"]), st.just(None)),
)


@settings(max_examples=examples(40), deadline=None)
@given(ops=st.lists(OPS, min_size=1, max_size=25))
def test_any_sequence_of_writes_verifies_clean(tmp_path_factory, ops):
    """The class of the defect: a write whose events do not say what it set. Random sequences of
    intake (with repeats: occurrences), moves, updates, comments and links always verify."""
    from sdesk.domain.signals import Signal
    from sdesk.errors import SdeskError

    with Store(tmp_path_factory.mktemp("ops") / "desk.db") as store:
        ids: list[int] = []
        for op, a, b in ops:
            pick = ids[a % len(ids)] if ids and isinstance(a, int) else None
            try:
                if op == "new":
                    ticket = {"title": f"ticket {len(ids)}", "kind": "incident", "priority": a,
                              **({"fingerprint": b} if b else {})}
                    [(ticket_id, _)] = Intake(store).receive([Signal("bench", "trigger", ticket=ticket)], actor="tester")
                    ids.append(ticket_id)
                elif op == "resolve_alert":
                    Intake(store).receive([Signal("bench", "resolve", fingerprint=a)], actor="tester")
                elif pick is None:
                    continue
                elif op == "move":
                    store.tickets.move(ticket_id=pick, action=b, actor="tester", assignee="bob", resolution="fixed")
                elif op == "update":
                    store.tickets.update(ticket_id=pick, changes=b, actor="tester")
                elif op == "comment":
                    store.tickets.comment(ticket_id=pick, text=b, actor="tester")
                elif op == "link":
                    store.tickets.link(ticket_id=pick, parent_id=ids[b % len(ids)], actor="tester")
            except SdeskError:
                pass  # an impossible move or link is refused and changes nothing
        tables = store.audit.verify_tables()
    assert tables["count"] == 0, tables["differences"]
    assert tables["not_compared"] == {}


def test_verify_while_others_write_sees_one_consistent_desk(db_path):
    """A writer commits all along while verify runs: verify reads one snapshot (the chain, its
    counter and every table), so it never reports a ticket, an event or a counter that another
    writer added halfway through as tampering."""
    import subprocess
    import sys

    with Store(db_path) as store:
        Intake(store).intake([{"title": f"t{i}", "kind": "incident", "priority": "P3"} for i in range(2000)],
                     actor="tester", source="cli")
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom sdesk.store import Store\nfrom sdesk.intake.service import Intake\n"
        f"s = Store({str(db_path)!r})\n"
        "for i in range(400):\n"
        "    [(t, _)] = Intake(s).intake([{'title': f'w{i}', 'kind': 'incident', 'priority': 'P2'}], actor='w', source='cli')\n"
        "    s.tickets.move(ticket_id=t, action='ack', actor='w')\n"
        "    if i == 0: print('writing', flush=True)\n")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    rounds = 0
    with Store(db_path) as store:
        while writer.poll() is None or rounds == 0:
            store.audit.verify()  # raises AuditBroken on any difference
            rounds += 1
    assert writer.wait() == 0 and rounds >= 1


# A column kept as sent (an assignee, a requester, a service) while its event is redacted on the
# write path would make verify report an edit that nobody made: a hostile sender could make the
# desk cry wolf. Each such field, with a secret in it, must still verify clean (or be refused).
@pytest.mark.parametrize("secret", ["token=abcdefgh12345", "password=hunter2hunter2", "AKIAIOSFODNN7EXAMPLE"])
def test_a_secret_in_an_identifier_field_never_makes_verify_cry_wolf(cli, secret):
    a = cli.new("x", "--service", secret, "--requester", secret, "--ci", secret, "-q", secret)
    cli("assign", str(a), secret)
    cli("update", str(a), "--category", secret)
    cli("new", "--format", "alertmanager", "-", input=json.dumps({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": secret, "instance": secret, "service": secret}}]}))
    assert cli("user", "add", secret, "--role", "admin", ok=False).exit_code == ExitCode.BAD_INPUT
    r = verify(cli)
    assert r.exit_code == 0, r.stdout + r.stderr
