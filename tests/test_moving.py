"""Moving a desk between SQLite and PostgreSQL (issue 21): `sdesk export --jsonl` from one,
`sdesk --db ... import` into the other, and `export` again gives the identical file, with the
audit chain and every row verified there; backups of a PostgreSQL desk (an SQLite file) restore
on either; and `audit verify` catches on PostgreSQL what it catches in a file. These run on any
run where a PostgreSQL server is at hand (SDESK_TEST_PG, or one the session starts: conftest's
pg_server), and skip saying why where none is."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import rawdb

from sdesk.errors import ExitCode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"


def _sdesk(env, *args, ok=True):
    done = subprocess.run([sys.executable, "-m", "sdesk", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0 or not ok, done.stderr
    return done


@pytest.fixture(scope="module")
def demo_desk(tmp_path_factory):
    """A realistic SQLite desk: the demo's tickets, events, alerts, pages, runbook runs, KB (with a
    second revision), CMDB, change, users and silence, plus a problem, an API token, and a
    purge (tombstones in the chain, ids deleted for good)."""
    where = tmp_path_factory.mktemp("moving")
    config = where / "config"
    shutil.copytree(EXAMPLES, config)
    db = where / "demo.db"
    env = {**os.environ, "SDESK_DB": str(db), "SDESK_CONFIG": str(config), "SDESK_USER": "alice"}
    env.pop("SDESK_NOW", None)
    _sdesk(env, "demo", "--db", str(db))
    _sdesk(env, "problem", "new", "--from", "1,2", "--title", "Checkout 5xx after deploys")
    _sdesk(env, "user", "token", "alice", "--label", "ci")
    _sdesk(env, "kb", "edit", "KB-1", "--tag", "rollback")
    closed = json.loads(_sdesk(env, "new", "old printer jam", "--json").stdout)["id"]
    _sdesk(env, "resolve", str(closed), "-r", "cleared")
    _sdesk(env, "close", str(closed))
    later = {**env, "SDESK_NOW": "2099-01-01T00:00:00Z"}
    assert _sdesk(later, "purge", "--older-than", "1d", "--yes").stdout.startswith("purged ")  # not 0: 2 tickets
    return {"db": db, "config": config}


@pytest.fixture
def moving(cli, monkeypatch, demo_desk, fresh_pg, pg_server):
    """Desks on the server reached as a database login named as this OS login: the demo's admin
    (alice) has this OS login as hers, and on PostgreSQL the login an actor is held to is the
    database's, so a team moving its desk gives its people logins of the same names."""
    import psycopg
    from psycopg import sql

    from sdesk.storage.rows import os_login

    monkeypatch.setenv("SDESK_CONFIG", str(demo_desk["config"]))
    monkeypatch.setenv("SDESK_USER", "alice")  # the demo's admin
    login = os_login()
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DO $$BEGIN CREATE ROLE {} LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object "
                              "OR unique_violation THEN NULL; END$$").format(sql.Identifier(login)))
    return lambda: fresh_pg().replace("user=postgres", f"user={quote(login)}")


def _export(cli, db, tmp_path, name):
    out = tmp_path / name
    cli("--db", str(db), "export", "--jsonl", "--out", str(out))
    return out.read_bytes()


def _verified(cli, db):
    shown = cli.json("--db", str(db), "audit", "verify")
    assert shown["ok"] and shown["differences"] == [], shown
    return shown


def test_a_sqlite_desk_moves_to_postgresql_and_exports_the_identical_file(cli, moving, demo_desk, tmp_path):
    url = moving()
    first = _export(cli, demo_desk["db"], tmp_path, "sqlite.jsonl")
    assert b'"table":"event_tombstones"' in first and b'"table":"runbook_steps"' in first
    assert b'"table":"kb_fts"' in first and b'"table":"ci_relations"' in first and b'"sequence":"events"' in first
    imported = cli("--db", url, "import", str(tmp_path / "sqlite.jsonl"))
    assert "audit chain intact" in imported.stderr
    assert _export(cli, url, tmp_path, "pg.jsonl") == first
    moved, kept = _verified(cli, url), _verified(cli, demo_desk["db"])
    assert (moved["events"], moved["head"], moved["tickets"]) == (kept["events"], kept["head"], kept["tickets"])
    # The desk works there as it did: its queue, its search, its next ids.
    assert cli.json("--db", url, "list") == cli.json("--db", str(demo_desk["db"]), "list")
    assert [a["id"] for a in cli.json("--db", url, "kb", "search", "5xx")] == \
        [a["id"] for a in cli.json("--db", str(demo_desk["db"]), "kb", "search", "5xx")]
    made = cli.json("--db", url, "new", "after the move")
    assert made["id"] == _counter(first, "tickets") + 1
    _verified(cli, url)


def _counter(export: bytes, table: str) -> int:
    for line in export.splitlines():
        record = json.loads(line)
        if record.get("sequence") == table:
            return record["seq"]
    return 0


def test_a_postgresql_desk_moves_to_sqlite_and_exports_the_identical_file(cli, moving, demo_desk, tmp_path,
                                                                           monkeypatch):
    url = moving()
    cli("--db", str(demo_desk["db"]), "export", "--out", str(tmp_path / "start.jsonl"))
    cli("--db", url, "import", str(tmp_path / "start.jsonl"))
    # Rows made on PostgreSQL itself: tickets, events, a comment, a KB article, a user and token,
    # and a purge (tombstones, deleted ids).
    ticket = cli.json("--db", url, "new", "made on the server", "-p", "P2")["id"]
    cli("--db", url, "comment", str(ticket), "written on PostgreSQL")
    cli("--db", url, "ack", str(ticket))
    cli("--db", url, "kb", "add", "-", "--title", "Server-side article", input="Restart the pod.\n")
    cli("--db", url, "user", "add", "dana", "--role", "agent")
    cli("--db", url, "user", "token", "dana")
    gone = cli.json("--db", url, "new", "purged on the server")["id"]
    cli("--db", url, "resolve", str(gone), "-r", "done")
    cli("--db", url, "close", str(gone))
    monkeypatch.setenv("SDESK_NOW", "2099-01-01T00:00:00Z")
    assert cli.json("--db", url, "purge", "--older-than", "1d", "--yes")["tickets"] >= 1  # tombstones made here
    monkeypatch.delenv("SDESK_NOW")
    _verified(cli, url)
    first = _export(cli, url, tmp_path, "pg.jsonl")
    target = tmp_path / "moved.db"
    cli("--db", str(target), "import", str(tmp_path / "pg.jsonl"))
    assert _export(cli, target, tmp_path, "sqlite.jsonl") == first
    assert _verified(cli, target)["head"] == _verified(cli, url)["head"]
    # And back again: the same file still.
    again = moving()
    cli("--db", again, "import", str(tmp_path / "sqlite.jsonl"))
    assert _export(cli, again, tmp_path, "again.jsonl") == first


def test_an_import_into_postgresql_that_fails_verify_leaves_it_empty(cli, moving, demo_desk, tmp_path):
    url = moving()
    lines = _export(cli, demo_desk["db"], tmp_path, "desk.jsonl").splitlines()
    edited = []
    for line in lines:
        record = json.loads(line)
        if record.get("table") == "tickets" and record["row"]["id"] == 1:
            record["row"]["priority"] = "P4"
            line = json.dumps(record).encode()
        edited.append(line)
    (tmp_path / "edited.jsonl").write_bytes(b"\n".join(edited) + b"\n")
    r = cli("--db", url, "import", str(tmp_path / "edited.jsonl"), ok=False)
    assert r.exit_code == ExitCode.ERROR and "SD-1: priority is 'P4'" in r.stderr
    with rawdb.opened(url) as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM events) + "
                            "(SELECT count(*) FROM users)").fetchone()[0] == 0


def test_a_backup_of_a_postgresql_desk_is_an_sqlite_desk_that_restores_on_either(cli, moving, demo_desk, tmp_path):
    url = moving()
    cli("--db", str(demo_desk["db"]), "export", "--out", str(tmp_path / "desk.jsonl"))
    cli("--db", url, "import", str(tmp_path / "desk.jsonl"))
    backup = tmp_path / "backup.db"
    cli("--db", url, "backup", str(backup))
    assert backup.read_bytes()[:16] == b"SQLite format 3\x00"
    assert not Path(f"{backup}-wal").exists()
    copy = _verified(cli, backup)
    # The backup holds the desk as it was: all but the note of the backup itself, made after it.
    assert [line for line in _export(cli, backup, tmp_path, "b.jsonl").splitlines() if b'"key":"backup"' not in line] \
        == [line for line in _export(cli, url, tmp_path, "p.jsonl").splitlines() if b'"key":"backup"' not in line]
    # What changes after the backup is gone after the restore, which is recorded on the chain.
    late = cli.json("--db", url, "new", "after the backup")["id"]
    cli("--db", url, "restore", str(backup), "--yes")
    restored = _verified(cli, url)
    assert restored["events"] == copy["events"] + 1
    assert cli("--db", url, "show", str(late), ok=False).exit_code == ExitCode.NOT_FOUND
    assert cli.json("--db", url, "audit", "log", "--kind", "restored")[-1]["data"]["from"] == str(backup)
    # The same file restores a SQLite desk too.
    elsewhere = tmp_path / "elsewhere.db"
    cli("--db", str(elsewhere), "init")
    cli("--db", str(elsewhere), "restore", str(backup), "--yes")
    assert _verified(cli, elsewhere)["events"] == copy["events"] + 1


def test_audit_verify_catches_tampering_on_postgresql(cli, moving, demo_desk, tmp_path):
    """What the owner of the database can do with psql: disable the append-only triggers and edit
    or delete events. The sequence keeps the last id given, as sqlite_sequence does."""
    for sql, said in (("UPDATE events SET actor = 'mallory' WHERE id = 5", "event 5: its row was altered"),
                      ("DELETE FROM events WHERE id = 4", "event 4 is missing"),
                      ("DELETE FROM events WHERE id = (SELECT max(id) FROM events)", "is missing (deleted)")):
        url = moving()
        cli("--db", str(demo_desk["db"]), "export", "--out", str(tmp_path / "desk.jsonl"))
        cli("--db", url, "import", str(tmp_path / "desk.jsonl"))
        last = cli.json("--db", url, "new", "the newest event")["id"]
        assert cli.json("--db", url, "audit", "verify")["ok"], last
        with rawdb.opened(url) as conn:
            with pytest.raises(Exception, match="append-only"):
                conn.execute("UPDATE events SET actor = 'x' WHERE id = 1")
        rawdb.tamper(url, sql, guards_off=True)
        r = cli("--db", url, "audit", "verify", ok=False)
        assert r.exit_code == ExitCode.ERROR and said in r.stderr, r.stderr
