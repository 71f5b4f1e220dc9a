import json
import sqlite3
import subprocess
import sys

import pytest
import rawdb

from sdesk.errors import ExitCode
from sdesk.intake.service import Intake
from sdesk.storage import migrations
from sdesk.store import Store


def _tamper(db_path, sql, *args):
    """What someone with write access to the file (or owning the database) could do: drop (or
    disable) the guard, change history."""
    rawdb.tamper(db_path, sql, params=args, guards_off=True)


@pytest.fixture
def desk(cli):
    for title in ("a", "b", "c"):
        tid = str(cli.new(title))
        cli("ack", tid)
        cli("comment", tid, f"note on {title}")
    return cli


def test_verify_ok(desk):
    out = desk.json("audit", "verify")
    assert out["ok"] is True and out["events"] == 9 and len(out["head"]) == 64
    assert desk("audit", "verify").stdout.startswith("ok: 9 events")


def test_edited_event_is_caught(desk, db_path):
    _tamper(db_path, "UPDATE events SET actor = 'mallory' WHERE id = 5")
    result = desk("audit", "verify", ok=False)
    assert result.exit_code == ExitCode.ERROR
    assert result.stderr == "error: audit chain broken at event 5: its row was altered\n"


def test_deleted_event_is_caught(desk, db_path):
    _tamper(db_path, "DELETE FROM events WHERE id = 4")
    assert "event 4 is missing" in desk("audit", "verify", ok=False).stderr


def test_deleted_last_event_is_caught(desk, db_path):
    _tamper(db_path, "DELETE FROM events WHERE id = 9")
    assert "event 9 is missing" in desk("audit", "verify", ok=False).stderr


def test_events_are_append_only(desk, db_path):
    conn = rawdb.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET actor = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")


def test_migrations_on_a_blank_database_of_either_backend(db_path):
    with Store(db_path) as store:
        assert store.dialect.schema_version(store.conn) == migrations.SCHEMA_VERSION
        assert {"tickets", "events"} <= set(store.dialect.tables(store.conn))
    # Opening again applies nothing and keeps the data.
    with Store(db_path) as store:
        again = migrations.apply(store.conn) if store.dialect.name == "sqlite" else migrations.apply_postgres(store.conn)
        assert again == []


@pytest.mark.sqlite_only("SQLite's header (user_version), WAL, foreign_keys pragma and sqlite-utils' migrations table")
def test_migrations_on_a_blank_database(db_path):
    with Store(db_path) as store:
        conn = store.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
        assert applied == [step.__name__ for step in migrations.STEPS]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"tickets", "events"} <= tables
    # Opening again applies nothing and keeps the data.
    with Store(db_path) as store:
        assert migrations.apply(store.conn) == []


def test_init_is_idempotent(cli, db_path):
    assert cli("init").stdout.strip() == str(db_path)
    cli.new("keep me")
    assert cli("init").stdout.strip() == str(db_path)
    assert len(cli.json("list")) == 1


def test_a_newer_schema_is_refused(cli, db_path):
    cli("init")
    if rawdb.is_pg(db_path):  # what SQLite keeps in its header, sdesk_schema holds on PostgreSQL
        rawdb.tamper(db_path, "UPDATE sdesk_schema SET version = ?", params=(migrations.SCHEMA_VERSION + 1,))
    else:
        conn = sqlite3.connect(db_path)
        conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
        conn.close()
    result = cli("list", ok=False)
    assert result.exit_code == ExitCode.ERROR
    assert "newer than this sdesk understands" in result.stderr


def test_not_a_database(cli, db_path):
    if rawdb.is_pg(db_path):  # a database of someone else's: tables of its own, no sdesk schema
        rawdb.tamper(db_path, "CREATE TABLE notes (line TEXT)", "INSERT INTO notes VALUES ('hello, I am a table')")
    else:
        db_path.write_text("hello, I am a text file\n" * 100)
    result = cli("list", ok=False)
    assert result.exit_code == ExitCode.ERROR
    assert result.stderr.startswith(f"error: {db_path} is not an sdesk database")
    assert "Traceback" not in result.stderr


def test_foreign_keys_are_enforced(db_path):
    with Store(db_path) as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.conn.execute("INSERT INTO events (ticket_id, at, actor, kind, prev_hash, hash) "
                               "VALUES (999, '2026-01-01T00:00:00Z', 'x', 'x', 'x', 'x')")


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("SELECT * FROM tickets WHERE {open} ORDER BY priority, id LIMIT 50", "tickets_open_queue"),
        ("SELECT id FROM tickets WHERE fingerprint = 'x' AND {open}", "tickets_open_fingerprint"),
        ("SELECT * FROM events WHERE ticket_id = 1 ORDER BY id", "events_ticket"),
    ],
)
@pytest.mark.sqlite_only("SQLite's query planner (EXPLAIN QUERY PLAN); PostgreSQL plans by its statistics")
def test_hot_queries_use_an_index(db_path, query, index):
    with Store(db_path) as store:
        plan = " ".join(r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + query.format(open=migrations.OPEN_SQL)))
    assert index in plan and "TEMP B-TREE" not in plan


@pytest.mark.sqlite_only("SQLite's query planner (EXPLAIN QUERY PLAN) and its trace callback")
def test_the_store_query_plans_match(db_path):
    """The store's own queue query, not a copy of it, is served by the partial index."""
    with Store(db_path) as store:
        Intake(store).intake([{"title": "x", "kind": "incident", "priority": "P1"}], actor="t", source="t")
        seen = []
        store.conn.set_trace_callback(seen.append)
        store.tickets.list(limit=50)
        store.conn.set_trace_callback(None)
        [sql] = [s for s in seen if s.startswith("SELECT")]
        plan = " ".join(r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "tickets_open_queue" in plan and "TEMP B-TREE" not in plan


def test_sdesk_now_fixes_the_clock(cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-01-02T03:04:05+01:00")
    t = cli.json("new", "x")
    assert t["created_at"] == "2026-01-02T02:04:05Z"
    monkeypatch.setenv("SDESK_NOW", "yesterday")
    result = cli("new", "y", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "SDESK_NOW: 'yesterday' is not an ISO 8601 time" in result.stderr


def test_python_dash_m(db_path):
    out = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db_path), "new", "via -m", "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["title"] == "via -m"


def test_a_batch_of_varied_tickets_is_stored_whole(db_path):
    """One batch, spanning several multi-row statements and a remainder, where each ticket
    sets its own mix of fields (a column some tickets leave unset is NULL for them)."""
    from sdesk.domain.fields import check_ticket

    tickets = []
    for i in range(1000):
        t = {"title": f"ticket {i}", "labels": {"n": str(i)} if i % 2 else {}, "tags": [f"t{i % 3}"] if i % 5 else []}
        if i % 7 == 0:
            t["description"] = f"described {i}"
        if i % 3 == 0:
            t["service"] = f"svc{i % 4}"
        if i % 11 == 0:
            t["impact"] = 1 + i % 3
        tickets.append(check_ticket(t))
    with Store(db_path) as store:
        results = Intake(store).intake(tickets, actor="alice", source="json")
        assert [created for _, created in results] == [True] * 1000
        ids = [ticket_id for ticket_id, _ in results]
        assert ids == list(range(ids[0], ids[0] + 1000))
        for ticket_id, given in zip(ids, tickets):
            stored = store.tickets.get(ticket_id=ticket_id)
            assert {k: stored[k] for k in given} == given
            assert stored["description"] == given.get("description") and stored["impact"] == given.get("impact")
            assert [e["kind"] for e in store.tickets.events(ticket_id=ticket_id)] == ["created"]
        assert store.audit.verify_chain()[0] == 1000


def test_the_desk_remembers_state_beside_its_tickets(tmp_path):
    """desk_state keeps one value per key (the last set wins, with its time); a value holding a
    secret is redacted like any text; `event` also puts the change on the chain."""
    from sdesk.store import Store

    with Store(tmp_path / "d.db") as store:
        assert store.desk_state() == {}
        store.set_desk_state("tick", value="first", actor="cron")
        store.set_desk_state("tick", value="second", actor="cron")
        store.set_desk_state("config", value="/etc/desk token=ghp_" + "a" * 36, actor="admin", event="desk_configured")
        state = store.desk_state()
        assert state["tick"][0] == "second" and state["tick"][1].endswith("Z")
        assert "ghp_" not in state["config"][0]
        kinds = [r[0] for r in store.conn.execute("SELECT kind FROM events")]
        assert kinds == ["desk_configured", "redacted"]  # the secret taken out is itself recorded
