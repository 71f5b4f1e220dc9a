"""Audit log and anchors, backups and restores, lossless export and import, and purge that keeps
the chain verifiable."""

import json
import sqlite3
import subprocess
import sys
import threading

import pytest

from sdesk.errors import ExitCode
from sdesk.storage.audit import ranges


@pytest.fixture(scope="module")
def demo_desk(tmp_path_factory):
    """The demo's desk: every kind of row (alerts, mail, KB revisions, CMDB, runs, pages). Made
    once: the demo takes seconds, and a copy of it is the same desk."""
    where = tmp_path_factory.mktemp("demo")
    db = where / "demo.db"
    subprocess.run([sys.executable, "-m", "sdesk", "demo", "--db", str(db)], check=True, capture_output=True, cwd=where)
    return db


@pytest.fixture
def demo_db(demo_desk, tmp_path):
    """A copy of the demo's desk for one test (SQLite's backup: whole, WAL and all)."""
    db = tmp_path / "demo.db"
    with sqlite3.connect(demo_desk) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    return db


def sdesk(db, *args, ok=True, env=None, input=None):
    import os

    # alice is the demo desk's admin.
    result = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), *args], capture_output=True,
                            env={**os.environ, "SDESK_USER": "alice", **(env or {})}, input=input)
    if ok:
        assert result.returncode == 0, result.stderr.decode()
    return result


def test_export_import_export_gives_the_same_bytes(demo_db, tmp_path):
    first = sdesk(demo_db, "export", "--jsonl").stdout
    tables = {json.loads(line)["table"] for line in first.splitlines()[1:] if b'"table"' in line}
    assert {"tickets", "events", "alerts", "kb_articles", "kb_revisions", "cis", "ci_relations",
            "runbook_runs", "runbook_steps", "mail_messages", "pages"} <= tables
    (tmp_path / "desk.jsonl").write_bytes(first)
    sdesk(tmp_path / "copy.db", "import", str(tmp_path / "desk.jsonl"))
    assert sdesk(tmp_path / "copy.db", "export", "--jsonl").stdout == first
    # The copy works: search finds the KB (rebuilt index), the chain verifies, ids go on.
    assert b"KB-" in sdesk(tmp_path / "copy.db", "kb", "search", "disk").stdout
    sdesk(tmp_path / "copy.db", "audit", "verify")
    new_id = int(sdesk(tmp_path / "copy.db", "new", "after the import").stdout.decode().strip().removeprefix("SD-"))
    assert new_id == 1 + max(json.loads(line)["rowid"] for line in first.splitlines()
                             if b'"table":"tickets"' in line)


def test_an_import_that_does_not_check_leaves_nothing(demo_db, tmp_path):
    lines = sdesk(demo_db, "export").stdout.splitlines()
    tampered = [line.replace(b"Disk", b"Dusk", 1) if b'"table":"events"' in line and b"Disk" in line else line
                for line in lines]
    assert tampered != lines
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(tampered) + b"\n")
    r = sdesk(tmp_path / "copy.db", "import", str(tmp_path / "bad.jsonl"), ok=False)
    assert r.returncode == ExitCode.ERROR and b"audit chain broken" in r.stderr
    assert sqlite3.connect(tmp_path / "copy.db").execute("SELECT count(*) FROM tickets").fetchone()[0] == 0
    (tmp_path / "cut.jsonl").write_bytes(b"\n".join(line for line in lines if b'"table":"cis"' not in line) + b"\n")
    r = sdesk(tmp_path / "copy.db", "import", str(tmp_path / "cut.jsonl"), ok=False)
    assert r.returncode == ExitCode.BAD_INPUT and b"not whole" in r.stderr
    r = sdesk(demo_db, "import", str(tmp_path / "cut.jsonl"), ok=False)
    assert r.returncode == ExitCode.CONFLICT and b"empty desk" in r.stderr
    (tmp_path / "junk.jsonl").write_text("hello\n")
    r = sdesk(tmp_path / "copy.db", "import", str(tmp_path / "junk.jsonl"), ok=False)
    assert r.returncode == ExitCode.BAD_INPUT and r.stderr.count(b"\n") == 1


def _edit(lines, table, change):
    """The export with the first row of `table` changed by `change(record)`."""
    out, done = [], False
    for line in lines:
        if not done and f'"table":"{table}"'.encode() in line:
            record = json.loads(line)
            change(record)
            line, done = json.dumps(record).encode(), True
        out.append(line)
    return out


BAD_EXPORTS = {
    "a list": lambda lines: lines[:1] + [b"[1, 2]"] + lines[1:],
    "null": lambda lines: lines[:1] + [b"null"] + lines[1:],
    "a sequence without a number": lambda lines: lines + [b'{"sequence": "events"}'],
    "a column that is SQL": lambda lines: _edit(lines, "tickets", lambda r: r["row"].update({'x") VALUES (1); --': 1})),
    "bad base64": lambda lines: _edit(lines, "tickets", lambda r: r["row"].update({"title": {"$base64": "!!!"}})),
    "an unknown role": lambda lines: _edit(lines, "users", lambda r: r["row"].update({"role": "superuser"})),
    "a counter below the ids": lambda lines: [b'{"seq":1,"sequence":"events"}' if b'"sequence":"events"' in line
                                              else line for line in lines],
}


@pytest.mark.parametrize("what", BAD_EXPORTS)
def test_a_bad_export_is_refused_in_one_line_and_imports_nothing(demo_db, tmp_path, what):
    lines = sdesk(demo_db, "export").stdout.splitlines()
    bad = BAD_EXPORTS[what](lines)
    assert bad != lines
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(bad) + b"\n")
    r = sdesk(tmp_path / "copy.db", "import", str(tmp_path / "bad.jsonl"), ok=False)
    assert r.returncode == ExitCode.BAD_INPUT and r.stderr.startswith(b"error: ") and r.stderr.count(b"\n") == 1, r.stderr
    conn = sqlite3.connect(tmp_path / "copy.db")
    assert conn.execute("SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM users)").fetchone()[0] == 0


def test_a_backup_taken_while_others_write_is_consistent_and_restores(demo_db, tmp_path):
    stop = threading.Event()

    def write():
        while not stop.is_set():
            sdesk(demo_db, "new", "written during the backup")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for n in range(3):
            sdesk(demo_db, "backup", str(tmp_path / f"b{n}.db"))
    finally:
        stop.set()
        writer.join()
    for n in range(3):
        copy = sqlite3.connect(tmp_path / f"b{n}.db")
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sdesk(tmp_path / f"b{n}.db", "audit", "verify")
    assert sdesk(demo_db, "backup", str(tmp_path / "b0.db"), ok=False).returncode == ExitCode.CONFLICT
    before = sqlite3.connect(tmp_path / "b0.db").execute("SELECT count(*) FROM tickets").fetchone()[0]
    sdesk(demo_db, "restore", str(tmp_path / "b0.db"), "--yes")
    assert sqlite3.connect(demo_db).execute("SELECT count(*) FROM tickets").fetchone()[0] == before
    out = json.loads(sdesk(demo_db, "audit", "log", "--kind", "restored", "--json").stdout)
    assert out[0]["data"]["from"] == str(tmp_path / "b0.db")
    sdesk(demo_db, "audit", "verify")


def test_restore_refuses_a_damaged_or_altered_backup(demo_db, tmp_path):
    sdesk(demo_db, "backup", str(tmp_path / "b.db"))
    data = bytearray((tmp_path / "b.db").read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = b"\xff" * 4096
    (tmp_path / "torn.db").write_bytes(bytes(data))
    r = sdesk(demo_db, "restore", str(tmp_path / "torn.db"), "--yes", ok=False)
    assert r.returncode != 0 and r.stderr.startswith(b"error: ") and r.stderr.count(b"\n") == 1
    altered = sqlite3.connect(tmp_path / "b.db")
    altered.execute("DROP TRIGGER events_no_update")
    altered.execute("UPDATE events SET actor = 'mallory' WHERE id = 3")
    altered.commit()
    altered.close()
    r = sdesk(demo_db, "restore", str(tmp_path / "b.db"), "--yes", ok=False)
    assert b"audit chain broken at event 3" in r.stderr
    (tmp_path / "text.db").write_text("not a database")
    assert sdesk(demo_db, "restore", str(tmp_path / "text.db"), "--yes", ok=False).returncode == ExitCode.BAD_INPUT
    sdesk(demo_db, "audit", "verify")


def test_audit_log_and_anchors(demo_db, tmp_path):
    events = json.loads(sdesk(demo_db, "audit", "log", "--actor", "alice", "--limit", "5", "--json").stdout)
    assert 0 < len(events) <= 5 and {e["actor"] for e in events} == {"alice"}
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    anchors = tmp_path / "anchors.jsonl"
    sdesk(demo_db, "audit", "anchor", "--out", str(anchors))
    sdesk(demo_db, "new", "after the anchor")
    sdesk(demo_db, "audit", "anchor", "--out", str(anchors))
    assert len(anchors.read_text().splitlines()) == 2
    assert json.loads(sdesk(demo_db, "audit", "verify", "--anchors", str(anchors), "--json").stdout)["anchors"] == 2
    # History rewritten and re-hashed from scratch verifies on its own, but not against an anchor.
    from sdesk.storage.rows import GENESIS, event_hash

    conn = sqlite3.connect(demo_db)
    conn.execute("DROP TRIGGER events_no_update")
    prev = GENESIS
    for event_id, ticket_id, at, actor, kind, data, login in conn.execute(
            "SELECT id, ticket_id, at, actor, kind, data, login FROM events ORDER BY id").fetchall():
        actor = "mallory" if event_id == 2 else actor
        h = event_hash(prev, event_id, ticket_id, at, actor, kind, data, login)
        conn.execute("UPDATE events SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?", (actor, prev, h, event_id))
        prev = h
    conn.commit()
    sdesk(demo_db, "audit", "verify")
    r = sdesk(demo_db, "audit", "verify", "--anchors", str(anchors), ok=False)
    assert r.returncode == ExitCode.ERROR and b"no longer has the anchored hash" in r.stderr


def test_purge_removes_old_closed_tickets_and_the_chain_still_verifies(demo_db, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    sdesk(demo_db, "audit", "anchor", "--out", str(anchors))
    conn = sqlite3.connect(demo_db)
    open_ids = [r[0] for r in conn.execute(
        "SELECT id FROM tickets WHERE status NOT IN ('resolved', 'closed') AND id NOT IN "
        "(SELECT coalesce(parent_id, 0) FROM tickets UNION SELECT coalesce(problem_id, 0) FROM tickets)")]
    old = open_ids[:3]
    for ticket in old:
        sdesk(demo_db, "resolve", str(ticket), "--resolution", "fixed")
        sdesk(demo_db, "close", str(ticket))
    later = {"SDESK_NOW": "2028-06-01T00:00:00Z"}
    dry = json.loads(sdesk(demo_db, "purge", "--older-than", "365d", "--dry-run", "--json", env=later).stdout)
    assert dry["dry_run"] and dry["tickets"] >= 3
    assert sdesk(demo_db, "purge", "--older-than", "365d", env=later, ok=False).returncode == ExitCode.BAD_INPUT
    assert conn.execute("SELECT count(*) FROM tickets WHERE id IN (%s)" % ",".join(map(str, old))).fetchone()[0] == 3
    done = json.loads(sdesk(demo_db, "purge", "--older-than", "365d", "--yes", "--json", env=later).stdout)
    assert done["tickets"] == dry["tickets"] and not done["dry_run"]
    assert conn.execute("SELECT count(*) FROM tickets WHERE id IN (%s)" % ",".join(map(str, old))).fetchone()[0] == 0
    for table in ("events", "alerts", "runbook_runs", "mail_messages", "kb_links"):
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE ticket_id IN (%s)" % ",".join(map(str, old))).fetchone()[0] == 0
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    verified = json.loads(sdesk(demo_db, "audit", "verify", "--anchors", str(anchors), "--json").stdout)
    assert verified["purged_events"] == done["events"] and verified["anchors"] == 1
    purged = json.loads(sdesk(demo_db, "audit", "log", "--kind", "purged", "--json").stdout)[0]["data"]
    assert purged["head_before"]["event"] > 0 and purged["tickets"] == done["tickets"]
    # An event deleted as if purged, when no purge names it (its ticket is still there), breaks the chain.
    conn.execute("DROP TRIGGER events_no_delete")
    victim = conn.execute("SELECT id FROM events WHERE ticket_id = ? LIMIT 1", (open_ids[-1],)).fetchone()[0]
    conn.execute("INSERT INTO event_tombstones SELECT id, ticket_id, prev_hash, hash FROM events WHERE id = ?", (victim,))
    conn.execute("DELETE FROM events WHERE id = ?", (victim,))
    conn.commit()
    r = sdesk(demo_db, "audit", "verify", ok=False)
    assert f"event {victim} was deleted without a purge record".encode() in r.stderr


def test_only_an_admin_purges_restores_or_imports(demo_db, tmp_path):
    sdesk(demo_db, "backup", str(tmp_path / "b.db"))
    for args in (["purge", "--older-than", "1d", "--yes"], ["restore", str(tmp_path / "b.db"), "--yes"]):
        r = sdesk(demo_db, "--as", "amy", *args, ok=False)
        assert r.returncode == ExitCode.PERMISSION and b"needs the admin role" in r.stderr


def test_an_export_since_holds_only_recent_rows_and_does_not_import(demo_db, tmp_path):
    whole = sdesk(demo_db, "export").stdout.splitlines()
    later = {"SDESK_NOW": "2030-01-01T00:00:00Z"}
    sdesk(demo_db, "new", "written in 2030", env=later)
    recent = sdesk(demo_db, "export", "--since", "1d", env=later).stdout.splitlines()
    header = json.loads(recent[0])
    assert header["since"] == "2029-12-31T00:00:00Z" and len(recent) < len(whole) / 4
    tickets = [json.loads(line)["row"]["title"] for line in recent if b'"table":"tickets"' in line]
    assert tickets == ["written in 2030"]
    (tmp_path / "recent.jsonl").write_bytes(b"\n".join(recent) + b"\n")
    r = sdesk(tmp_path / "copy.db", "import", str(tmp_path / "recent.jsonl"), ok=False)
    assert r.returncode == ExitCode.BAD_INPUT and b"import needs a whole desk" in r.stderr


def test_ranges():
    assert ranges([1, 2, 3, 7, 9, 10]) == [[1, 3], [7, 7], [9, 10]]
    assert ranges([]) == []
