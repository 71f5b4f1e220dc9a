"""What a user meets first: help with examples, version, errors without tracebacks, the demo."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sdesk import __version__
from sdesk.cli import app, ticket_from_flags
from sdesk.errors import BadInput
from sdesk.lifecycle import WHITESPACE
from sdesk.models import TicketCreate

ROOT = Path(__file__).resolve().parent.parent


def _commands(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):  # lazily loaded groups too
        command = group.get_command(ctx, name)
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


COMMANDS = list(_commands())


def test_the_foundation_commands_exist():
    names = {" ".join(c) for c in COMMANDS}
    assert {"init", "new", "list", "show", "assign", "ack", "start", "wait", "comment", "resolve", "close",
            "reopen", "update", "link", "demo", "audit verify", "schema"} <= names
    assert {"cmdb import", "cmdb impact", "kb search", "kb diff", "change new", "problem new"} <= names


def test_command_groups_are_built_only_when_used():
    """Typer builds every command it knows at start-up: the groups load on demand instead."""
    code = ("import sys; from sdesk.cli import app\n"
            "from typer.testing import CliRunner\n"
            "CliRunner().invoke(app, ['list', '--json'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('sdesk.commands.') and m != 'sdesk.commands.common'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cli, command):
    out = cli(*command, "--help").stdout
    assert re.search(r"Example: .*sdesk\b.*\b" + re.escape(" ".join(command)) + r"\b", out), out


def test_version(cli):
    assert cli("--version").stdout == f"sdesk {__version__}\n"


def test_global_options_work_after_the_command(cli, tmp_path):
    other = tmp_path / "other.db"
    cli("new", "x", "--db", str(other), "--as", "alice")
    assert cli.json("show", "1", "--db", str(other))["events"][0]["actor"] == "alice"
    assert cli("list", ok=False).exit_code == 3  # the other desk only: none was made at SDESK_DB


def test_broken_pipe_is_quiet(db_path):
    env = {**os.environ, "SDESK_DB": str(db_path)}
    for i in range(3):
        subprocess.run([sys.executable, "-m", "sdesk", "new", f"t{i}"], env=env, check=True, capture_output=True)
    proc = subprocess.run(f"{sys.executable} -m sdesk list --jsonl | head -c 1", shell=True, env=env,
                          capture_output=True, text=True)
    assert "Traceback" not in proc.stderr


def test_demo_runs_on_a_temporary_database_and_leaves_sdesk_db_alone(cli, db_path):
    out = " ".join(cli("demo").stdout.split())  # as read, whatever the terminal width
    assert "The open queue" in out and "SD-1 (P1): acknowledged in 4 min, resolved in 22 min" in out
    assert "10 alerts and 2 emails came in" in out and "hash chain intact" in out
    assert "44 configuration items in the CMDB, 7 KB articles" in out and "18 min before" in out
    # The storm: one incident with children by topology, a silenced alert kept, and why.
    assert "5 alerts in one post become one incident SD-11 with 3 children (SD-12, SD-13, SD-14)" in out
    assert "the backup alert SD-15 is kept, suppressed by silence 1" in out
    assert "sdesk why SD-11 SD-11 P1 queue dba" in out and "impact 1: tier 1 CI payments-db" in out
    # Paging: the data team's on-call is paged, nobody acks in 5 minutes, platform's on-call is
    # paged and acknowledges; the response was within its 15 minutes.
    assert "on call for the data team; nobody acknowledges in 5 minutes, so it escalates to" in out
    assert "acknowledges SD-11: the escalation stops" in out
    sla = out.split("sdesk sla")[1].split("The open queue")[0]
    assert "SD-11 P1 payments-db" in sla and "resolve 7m 3h 53m ok" in sla
    assert "SD-15" not in out.split("The open queue")[1]  # suppressed: not in the queue
    # The disk-full runbook: a dry run lists what it would delete, the real run waits for
    # someone else's approval, then deletes the old files only and resolves the ticket.
    assert "alice runs it for real: it checks the folder, then waits for approval by someone else:" in out
    assert "dave approves run 2 (sdesk runbook approve 2); the rest of it runs:" in out
    assert "the 3 old files are deleted (in-use.tmp is kept) and SD-8 is resolved by automation (run 2: succeeded)" in out
    # The report over the morning and the P1's postmortem draft.
    report = out.split("sdesk report --since 1d")[1]
    assert "desk 14 7m" in report and "CSAT: 4.50 ✓ from 2 ratings" in report and "SLA compliance" in report
    assert "sdesk postmortem SD-1" in out and "# Postmortem: SD-1 Checkout API 5xx rate above 5% for 5m" in out
    assert not db_path.exists()


def test_demo_keeps_its_database_with_db(cli, tmp_path):
    kept = tmp_path / "demo.db"
    cli("demo", "--db", str(kept))
    p1 = cli.json("show", "SD-1", "--db", str(kept))
    assert p1["status"] == "resolved" and p1["occurrences"] == 3
    # The P1 arrived with its owner, blast radius, the deploy just before it and the runbook article.
    ctx = p1["context"]
    assert p1["team"] == "payments" and ctx["tier"] == 1 and ctx["dependents_total"] >= 3
    assert ctx["changes"][0]["summary"] == "Deploy checkout-api 2026.11.3" and ctx["changes"][0]["minutes_before"] == 18
    assert ctx["kb"][0]["title"] == "Checkout API returns 5xx"
    assert cli.json("audit", "verify", "--db", str(kept))["ok"]


labels = st.dictionaries(st.text(min_size=1).filter(lambda k: "=" not in k and k.strip(WHITESPACE)), st.text(),
                         max_size=3)


def test_whitespace_is_unicode_white_space_as_pydantic_strips_it():
    expected = {c for c in map(chr, range(0x110000)) if c.isspace()} - set("\x1c\x1d\x1e\x1f")
    assert set(WHITESPACE) == expected


@given(
    title=st.text(max_size=50),
    kind=st.sampled_from([None, "incident", "request", "problem", "change"]),
    priority=st.sampled_from([None, "P1", "P2", "P3", "P4"]),
    service=st.one_of(st.none(), st.text(max_size=10)),
    labels=labels,
    tags=st.lists(st.text(max_size=5), max_size=4),
)
def test_flags_and_json_make_the_same_ticket(title, kind, priority, service, labels, tags):
    """`sdesk new TITLE --flags` skips pydantic for speed; it must accept and build exactly what
    TicketCreate would from the same values."""
    pairs = [f"{k}={v}" for k, v in labels.items()]
    from_json = None
    try:
        body = {"title": title, "kind": kind, "priority": priority, "service": service,
                "labels": labels, "tags": tags}
        from_json = TicketCreate.model_validate({k: v for k, v in body.items() if v is not None}).model_dump(
            mode="json", exclude_none=True)
    except ValidationError:
        pass
    try:
        from_flags = ticket_from_flags(title, kind=kind, priority=priority, service=service, labels=pairs, tags=tags)
    except BadInput:
        from_flags = None
    if from_json is not None and len(set(k.strip() for k in labels)) < len(labels):
        return  # two keys equal after stripping: both keep one, which one is not the point here
    assert from_flags == from_json


PURE = ["models", "lifecycle", "errors", "clock", "intake", "fields", "signals", "redact", "mail", "config"]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_or_ui(module):
    tree = ast.parse((ROOT / "sdesk" / f"{module}.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    relative = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert not imported & {"typer", "rich", "textual", "sqlite_utils", "sqlite3", "click"}
    assert not relative & {"store", "cli", "render", "tui"}


def test_hot_commands_import_nothing_heavy(db_path):
    """`new`, `list --json` and `show --json` stay within budget by not importing pydantic,
    rich or sqlite-utils (each costs a large part of the start-up budget)."""
    code = (
        "import sys; from sdesk.cli import app\n"
        "for args in (['new', 'x'], ['list', '--json'], ['show', '1', '--json']):\n"
        "    try: app(args)\n"
        "    except SystemExit: pass\n"
        "heavy = sorted(m for m in ('pydantic', 'rich', 'sqlite_utils', 'textual') if m in sys.modules)\n"
        "print(heavy, file=sys.stderr)\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "SDESK_DB": str(db_path)}, check=True)
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SDESK_DB": str(db_path)},
                          capture_output=True, text=True, check=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_an_alert_payload_imports_nothing_heavy(db_path):
    """`sdesk new --format alertmanager < payload` (the webhook-per-process path) skips pydantic."""
    payload = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "Down"}}]})
    code = ("import sys; from sdesk.cli import app\n"
            "try: app(['new', '--format', 'alertmanager'])\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('pydantic', 'rich', 'sqlite_utils') if m in sys.modules), file=sys.stderr)\n")
    env = {**os.environ, "SDESK_DB": str(db_path)}
    subprocess.run([sys.executable, "-c", code], env=env, input=payload, text=True, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-c", code], env=env, input=payload, text=True, capture_output=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"
