"""Read commands never write (issue 20): every command the CLI has is either a read, run here on a
populated desk (the demo's tickets, pages, runbook runs, KB, CMDB and changes, plus a problem, a
token, a silence and a run whose process was killed) and held to leave the database as it was, or
named below as a write. A new command must be placed in one list or the other."""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rawdb
import typer

from sdesk.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"

# Each read command with the arguments it needs on the desk below (SD-1 is the demo's P1).
READS = {
    "list": [], "show": ["SD-1"], "why": ["SD-1"], "silence list": [],
    "rules check": [], "rules test": ["--replay"],
    "oncall now": [], "oncall show": [], "sla": [], "slo": [], "pages": [],
    "runbook list": [], "runbook show": ["clean-tmp"], "runbook validate": [], "runbook runs": [],
    "runbook log": ["{run}"],  # the run whose process was killed
    "cmdb export": [], "cmdb list": [], "cmdb show": ["checkout-api"], "cmdb impact": ["checkout-api"],
    "kb show": ["KB-1"], "kb list": [], "kb search": ["5xx"], "kb stale": [], "kb history": ["KB-1"],
    "kb diff": ["KB-1"],
    "change list": [], "change show": ["CH-1"], "problem show": ["{problem}"], "problem list": [],
    "report": [], "report executive": [], "report oncall": [], "report service": ["checkout-api"],
    "metrics": [], "postmortem": ["SD-1", "-o", "postmortem.md"], "schema": ["ticket"],
    "audit verify": [], "audit log": [], "export": [], "doctor": [], "user list": [], "user tokens": [],
    "outbox list": [], "outbox show": ["1"], "notify check": [], "notify preview": ["SD-1", "--event", "resolved"],
    "status-page": ["--out", "status"],
    "catalog list": [], "catalog show": ["quota-increase"], "catalog check": [], "approvals": ["--user", "dave"],
    "search": ["checkout errors"], "similar": ["SD-1"], "problem suggest": ["--min-size", "2"],
}
# `doctor` exits 1 when a check fails (the demo's desk has no tick from cron, and pages that failed).
EXIT = {"doctor": 1}
WRITES = {
    "new", "assign", "ack", "start", "wait", "close", "reopen", "resolve", "comment", "update", "link",
    "silence add", "silence expire", "triage ticket", "triage train", "oncall override", "tick", "escalate",
    "runbook run", "runbook approve", "runbook reject", "runbook disable", "runbook enable",
    "cmdb import", "cmdb add", "cmdb link", "cmdb unlink",
    "kb add", "kb edit", "kb review", "kb link", "kb import",
    "change new", "change status", "problem new", "problem update", "problem resolve",
    "csat", "worklog", "init", "user add", "user remove", "user token", "user revoke", "audit anchor",
    "restore", "import", "purge",
    "backup",  # records when the last backup was made, which `doctor` reports
    "reply", "watch", "unwatch", "status", "outbox retry", "outbox drop", "outbox send",
    "request", "approve", "reject",
    "index",  # the semantic index: vectors and words of the tickets, derived from them
}
# Not run here: the TUI and the HTTP receiver have their own tests (and serve is a write);
# `demo` runs on a temporary database of its own; `triage eval` reads a labelled file, not the desk.
# `notify test` sends over a channel (tests/test_talking_back.py), without touching the desk.
ELSEWHERE = {"tui", "serve", "demo", "triage eval", "notify test"}


def _commands(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "commands"):
            if not getattr(command, "invoke_without_command", False):
                yield from _commands(command, prefix + (name,))
                continue
            yield prefix + (name,), command  # a group that is a command too (`sdesk report`)
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


COMMANDS = {" ".join(path): command for path, command in _commands()}


def test_every_command_is_a_read_or_a_write():
    assert set(COMMANDS) == set(READS) | WRITES | ELSEWHERE
    assert not set(READS) & WRITES and not (set(READS) | WRITES) & ELSEWHERE


def _sdesk(env, *args):
    done = subprocess.run([sys.executable, "-m", "sdesk", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """The demo's desk, a problem, a token, a silence, and a run whose process was killed
    mid-step (recorded as running: only `tick` or the next run may record it ended)."""
    import os

    where = tmp_path_factory.mktemp("populated")
    config = where / "config"
    shutil.copytree(EXAMPLES, config)
    (config / "runbooks" / "hang.yaml").write_text("steps:\n  - id: hang\n    run: [sleep, \"120\"]\n")
    db = where / "desk.db"
    env = {**os.environ, "SDESK_DB": str(db), "SDESK_CONFIG": str(config), "SDESK_USER": "alice"}  # the demo's admin
    env.pop("SDESK_NOW", None)
    subprocess.run([sys.executable, "-m", "sdesk", "demo", "--db", str(db)], env=env, cwd=where,
                   capture_output=True, check=True)
    _sdesk(env, "problem", "new", "--from", "1,2", "--title", "Checkout 5xx after deploys")
    _sdesk(env, "user", "token", "alice", "--label", "ci")
    _sdesk(env, "kb", "edit", "KB-1", "--tag", "rollback")  # a second revision, for kb diff
    _sdesk(env, "silence", "add", "-m", "alertname=Noise", "--for", "1h", "--comment", "known")
    ticket = str(json.loads(_sdesk(env, "new", "hung job", "--json"))["id"])
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "runbook", "run", "hang", "--ticket", ticket, "--yes"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step_pid = _wait_for_running_step(db)
    proc.kill()
    proc.wait()
    with sqlite3.connect(db) as conn:
        [(problem,)] = conn.execute("SELECT id FROM tickets WHERE kind = 'problem'").fetchall()
    # The same desk as an export, for the PostgreSQL run: imported into each test's database.
    _sdesk(env, "export", "--out", str(where / "desk.jsonl"))
    yield {"db": db, "config": config, "run": str(_dead_run(db)), "problem": f"SD-{problem}",
           "export": where / "desk.jsonl"}
    try:
        os.killpg(step_pid, signal.SIGKILL)  # the step's command, which nobody reaped
    except ProcessLookupError:
        pass


def _wait_for_running_step(db) -> int:
    for _ in range(600):
        try:
            with sqlite3.connect(db) as conn:
                row = conn.execute("SELECT pid FROM runbook_steps WHERE status = 'running' AND pid IS NOT NULL").fetchone()
            if row:
                return row[0]
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError("the runbook's step never started")


def _dead_run(db) -> int:
    with sqlite3.connect(db) as conn:
        [(run,)] = conn.execute("SELECT id FROM runbook_runs WHERE status = 'running'").fetchall()
    return run


def _content(db) -> list[str]:
    """What the database holds, as SQL (on PostgreSQL: every row, every sequence). Not `PRAGMA
    data_version`: it also moves when a reader's connection checkpoints the WAL, which changes
    no content."""
    return rawdb.content(db)


def _copy(populated, db_path, cli):
    """The populated desk, as this test's database: a copy of the file, or on the PostgreSQL run
    the desk moved there (export, import)."""
    if rawdb.is_pg(db_path):
        cli("--db", db_path, "import", str(populated["export"]))
        return
    with sqlite3.connect(populated["db"]) as source, sqlite3.connect(db_path) as copy:
        source.backup(copy)


def _cases():
    for name, args in READS.items():
        yield pytest.param(name, args, id=name)
        if any("--json" in getattr(p, "opts", ()) for p in COMMANDS[name].params):
            yield pytest.param(name, [*args, "--json"], id=f"{name} --json")


def _given(args, populated):
    return [a.format(**populated) if a.startswith("{") else a for a in args]


@pytest.mark.parametrize(("name", "args"), list(_cases()))
def test_a_read_command_leaves_the_database_as_it_was(cli, populated, db_path, tmp_path, monkeypatch, name, args):
    _copy(populated, db_path, cli)
    monkeypatch.setenv("SDESK_CONFIG", str(populated["config"]))
    monkeypatch.chdir(tmp_path)
    before = _content(db_path)
    result = cli(*name.split(), *_given(args, populated), ok=False)
    assert result.exit_code == EXIT.get(name, 0), result.stderr
    after = _content(db_path)
    assert [line for line in after if line not in before] == [] and before == after


def test_a_run_whose_process_died_reads_as_interrupted_until_tick_records_it(cli, populated, db_path, monkeypatch):
    """Reads compute it (the run's process is gone); `tick` writes it, and stops the command the
    run left behind."""
    _copy(populated, db_path, cli)
    monkeypatch.setenv("SDESK_CONFIG", str(populated["config"]))
    run_id = int(populated["run"])
    [shown] = [r for r in cli.json("runbook", "runs") if r["id"] == run_id]
    logged = cli.json("runbook", "log", str(run_id))
    for run in (shown, logged):
        assert run["status"] == "interrupted" and "ended mid-run" in run["reason"], run
    assert [s["status"] for s in logged["steps"]] == ["interrupted"]
    with rawdb.opened(db_path) as conn:  # nothing recorded yet
        assert conn.execute("SELECT status FROM runbook_runs WHERE id = ?", (run_id,)).fetchone()[0] == "running"
    cli("tick", ok=False)  # the demo's pages may fail to deliver: tick says so with exit 1
    with rawdb.opened(db_path) as conn:
        assert conn.execute("SELECT status FROM runbook_runs WHERE id = ?", (run_id,)).fetchone()[0] == "interrupted"
        finished = [json.loads(data) for (data,) in conn.execute("SELECT data FROM events WHERE kind = 'runbook_finished'")]
        assert [e["run"] for e in finished].count(run_id) == 1
