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
from sdesk.domain.lifecycle import WHITESPACE
from sdesk.domain.models import TicketCreate
from sdesk.errors import BadInput

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
    assert "desk 16 7m" in report and "CSAT: 4.50 ✓ from 2 ratings" in report and "SLA compliance" in report
    assert "sdesk postmortem SD-1" in out and "# Postmortem: SD-1 Checkout API 5xx rate above 5% for 5m" in out
    # Self-service: a reset fulfilled at once; a quota approved by dave (mailed), then bob's manager.
    assert "no approval is needed, so the runbook reset-password runs at once: resolved" in out
    assert "dave's mail reads" in out and "[SD-17] approval needed (storage approver)" in out
    assert "the runbook grow-quota runs: resolved, “200 GB added to shop-checkout's quota”" in out
    assert "The portal: " in out
    if isinstance(db_path, str):  # SDESK_DB names a PostgreSQL database: the demo made no table in it
        from sdesk.storage import pg
        from sdesk.storage.dialect import POSTGRESQL

        conn = pg.connect(db_path)
        try:
            assert POSTGRESQL.header(conn)[2] == 0
        finally:
            conn.close()
    else:
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


def test_demo_fills_the_empty_database_given_and_refuses_one_that_holds_a_desk(cli, db_path):
    """--db naming the test's database (a new file, or on the PostgreSQL run an empty database on
    the server): the demo's morning is written there, its chain verifies, and a second demo into
    it is refused, leaving it as it was."""
    cli("demo", "--db", str(db_path))
    p1 = cli.json("show", "SD-1", "--db", str(db_path))
    assert p1["status"] == "resolved" and p1["occurrences"] == 3 and p1["team"] == "payments"
    assert p1["context"]["kb"][0]["title"] == "Checkout API returns 5xx"
    verified = cli.json("audit", "verify", "--db", str(db_path))
    assert verified["ok"]
    again = cli("demo", "--db", str(db_path), ok=False)
    assert again.exit_code == 4 and "already holds a desk" in again.stderr and "Traceback" not in again.stderr
    assert cli.json("audit", "verify", "--db", str(db_path)) == verified


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


# Direct imports of a few parsers and the domain's core; import-linter's contracts (pyproject.toml,
# run by .ci/run) hold the whole domain to this, transitively.
PURE = ["domain/models", "domain/lifecycle", "errors", "domain/clock", "intake/formats", "domain/fields",
        "domain/signals", "domain/redact", "intake/mail", "config"]


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


# -- issue 19: list at 80 columns, write commands that say what they did ------------------------


def test_list_keeps_the_occurrence_marker_of_a_cut_title_and_says_when_it_is_capped(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    long_title = "Disk almost full on the primary database host of the billing cluster in eu-west-1"
    for _ in range(12):
        cli("new", long_title, "--fingerprint", "disk-billing")
    cli.new("Printer on floor 3 jams")
    cli.new("VPN drops every hour")
    out = cli("list")
    [row] = [line for line in out.stdout.splitlines() if "SD-1 " in line]
    assert "…" in row and "×12" in row, row  # the title gives way, the marker stays
    assert all(len(line) <= 80 for line in out.stdout.splitlines())

    capped = cli("list", "--limit", "2")
    assert "2 of 3 tickets shown (--limit 2; 0 for all)" in capped.stderr  # not "use --limit": it was used
    assert "shown" not in capped.stdout and capped.stdout.count("SD-") == 2
    assert cli("list", "--limit", "3").stderr == ""  # everything shown: nothing to say
    as_json = cli("list", "-n", "2", "--json")
    assert len(json.loads(as_json.stdout)) == 2
    assert as_json.stderr == "2 of 3 tickets shown (--limit 2; 0 for all)\n"


@pytest.mark.parametrize("fmt", ["", "--json", "--jsonl", "--csv"])
def test_a_list_capped_by_default_says_so_in_every_format_and_stdout_is_only_the_data(cli, fmt):
    payload = "".join(json.dumps({"title": f"disk full on db-{i}"}) + "\n" for i in range(53))
    cli("new", "--jsonl", "-", input=payload)
    out = cli("list", *([fmt] if fmt else []))
    assert out.stderr == "50 of 53 tickets shown (use --limit)\n"
    assert "shown" not in out.stdout
    if fmt == "--json":
        assert len(json.loads(out.stdout)) == 50
    elif fmt:
        assert len(out.stdout.splitlines()) == 50 + (fmt == "--csv")
    assert cli("list", "-n", "0", *([fmt] if fmt else [])).stderr == ""


def test_an_empty_list_says_so_on_stderr(cli):
    cli.new("Printer on floor 3 jams")
    out = cli("list", "--status", "closed")
    assert out.stdout == "" and "no tickets match" in out.stderr


def test_write_commands_say_what_they_did_in_one_sentence(cli):
    a, b = cli.new("Checkout returns 502"), cli.new("Cart is slow")
    assert cli("assign", f"SD-{a}", "bob").stderr.strip() == f"SD-{a} is assigned to bob"
    assert cli("ack", f"SD-{a}").stderr.strip() == f"SD-{a} is acknowledged, assigned to bob"
    assert cli("comment", f"SD-{a}", "failover done").stderr.strip() == f"SD-{a}: comment added"
    out = cli("update", f"SD-{a}", "--priority", "P1", "--queue", "sre")
    assert out.stdout == "" and out.stderr.strip() == f"SD-{a} updated: priority, queue"
    assert "nothing changed" in cli("update", f"SD-{a}", "--priority", "P1").stderr
    assert cli("link", f"SD-{b}", "--parent", f"SD-{a}").stderr.strip() == f"SD-{b} is linked under SD-{a}"


# -- issue 19 item 21: every event kind the code writes reads as a sentence, never a dict -----------

SDESK = Path(__file__).resolve().parent.parent / "sdesk"
# Call sites whose kind is computed: (file, the kind argument as written) -> the kinds it can be.
DYNAMIC_KINDS = {
    ("runbooks.py", "f'runbook_{status}'"): {"runbook_approved", "runbook_confirmed"},
    ("requests.py", "f'request_{state}'"): {"request_rejected", "request_expired"},
    ("sla.py", "kind"): {"sla_warning", "sla_breached"},
    ("store.py", "kind"): set(),  # Store.record(actor, kind, data): its callers name the kind
    ("store.py", "event"): set(),  # Store.set_desk_state(..., event=KIND): its callers name the kind
}


def _kinds_written() -> tuple[set[str], set[tuple[str, str]]]:
    """Every event kind sdesk/ can write (tx.event(ticket, KIND, ...), store.record(actor, KIND,
    ...), set_desk_state(..., event=KIND)), and the call sites whose kind is not written out."""
    kinds: set[str] = set()
    unknown: set[tuple[str, str]] = set()

    def take(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            kinds.add(node.value)
        elif isinstance(node, ast.IfExp):
            take(node.body, where)
            take(node.orelse, where)
        elif not (isinstance(node, ast.Constant) and node.value is None):
            site = (where, ast.unparse(node))
            kinds.update(DYNAMIC_KINDS.get(site, ()))
            if site not in DYNAMIC_KINDS:
                unknown.add(site)

    for path in SDESK.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in ("event", "record") and len(node.args) >= 2:
                take(node.args[1], path.name)
            for keyword in node.keywords:
                if keyword.arg == "event" and name != "event":
                    take(keyword.value, path.name)
    return kinds, unknown


KINDS, UNKNOWN_SITES = _kinds_written()
# Text as people and payloads write it: markup, escapes, quotes, commas.
H = "[red]db-1[/red] \x1b]0;x\x07 it's, \"odd\""
SAMPLES: dict[str, dict] = {
    "created": {"source": "alertmanager", "title": H, "occurrences": 3, "labels": {"alertname": H}},
    "occurrence": {"occurrences": 4, "repeats": 2, "source": "grafana"},
    "status_changed": {"from": "new", "to": "resolved", "resolution": H, "code": "fixed"},
    "assigned": {"assignee": "bob", "previous_assignee": H},
    "auto_assigned": {"assignee": "bob", "queue": "sre", "why": "on call in primary"},
    "commented": {"text": H},
    "replied": {"text": H},
    "watched": {"who": H},
    "unwatched": {"who": H},
    "incident_update": {"state": "identified", "text": H},
    "request_submitted": {"type": "quota-increase", "answers": {"service": H, "extra_gb": 20}},
    "approval_requested": {"approval": 1, "stage": H, "approvers": ["dave", H], "need": 1, "note": H},
    "approval_voted": {"approval": 1, "stage": "storage", "approver": "dave", "decision": "rejected", "reason": H,
                       "approvals": 0, "need": 1},
    "approval_reminder": {"approval": 1, "stage": "storage", "approvers": [H], "expires_at": "2026-12-10T00:00:00Z"},
    "approval_expired": {"approval": 1, "stage": H, "approvers": ["dave"]},
    "request_approved": {"fulfil": "grow-quota"},
    "request_rejected": {"reason": H},
    "request_expired": {"reason": H},
    "request_fulfilled": {"run": 3, "runbook": "grow-quota"},
    "request_cancelled": {"approvals": [1, 2]},
    "fulfilment_failed": {"run": 3, "runbook": "grow-quota", "status": "failed", "reason": H, "next": "left in its queue"},
    "updated": {"title": ["old one", H], "labels": [{"a": "b"}, {"a": "c", "host": H}], "tags": [["x"], ["x", "y"]],
                "priority": ["P3", "P1"], "queue": [None, "sre"]},
    "triage_corrected": {"queue": ["dba", "sre"], "category": ["db", {"k": "v"}]},
    "triaged": {"triage": {"rules": [{"rule": "r1", "set": {"queue": "sre"}}], "priority": {"result": "P1"}},
                "changes": {"queue": ["dba", "sre"], "tags": [["a"], ["a", "b"]]}},
    "linked": {"parent_id": 1, "previous_parent_id": 2},
    "redacted": {"kinds": ["password", "aws_key"]},
    "attachments": {"files": [{"name": H, "content_type": "text/plain", "size": 1200, "sha256": "ab"}]},
    "alert_resolved": {"source": "alertmanager"},
    "unsuppressed": {"was": "silence 3", "reason": "the silence is over"},
    "enriched": {"ci": "db-1", "dependents_total": 3, "changes": 1, "kb": [{"id": 1}], "similar": [{"id": 2}],
                 "set": {"service": "billing", "labels": {"tier": "1"}}},
    "kb_linked": {"article": 3, "title": H, "drafted": True},
    "kb_created": {"article": 3, "title": H, "slug": "x"},
    "kb_revised": {"article": 3, "revision": 2, "fields": ["title", "body"]},
    "kb_reviewed": {"article": 3},
    "problem_linked": {"problem_id": 5},
    "problem_updated": {"root_cause": H, "known_error": 1},
    "problem_fixed": {"problem_id": 5, "fix": H},
    "runbook_queued": {"run": 1, "runbook": "restart"},
    "runbook_started": {"run": 1, "runbook": "restart", "dry_run": False, "automated": True,
                        "params": {"host": H, "count": 3}},
    "runbook_step": {"run": 1, "step": "s1", "kind": "command", "status": "ok", "exit_code": 0, "duration_ms": 12,
                     "phase": "rollback", "output": H},
    "runbook_waiting": {"run": 1, "step": "s2", "for": "approval"},
    "runbook_approved": {"run": 1, "step": "s2"},
    "runbook_confirmed": {"run": 1, "step": "s2"},
    "runbook_approval_refused": {"run": 1, "step": "s2", "reason": "the requester cannot approve"},
    "runbook_rejected": {"run": 1, "reason": H},
    "runbook_refused": {"run": 1, "runbook": "restart", "reason": "applies_to: labels.alertname=DiskFull"},
    "runbook_finished": {"run": 1, "runbook": "restart", "status": "failed", "dry_run": False, "reason": H,
                         "rollback": "ok"},
    "runbook_disabled": {"runbook": "restart", "all": False, "reason": H},
    "runbook_enabled": {"runbook": None, "all": True, "reason": None},
    "automation_misfire": {"run": 1, "runbook": "restart", "reason": "reopened"},
    "paged": {"policy": "p1", "round": 1, "level": 1, "users": ["bob", H], "due_at": "2026-11-26T10:00:00Z"},
    "escalated": {"policy": "p1", "round": 1, "level": 2, "users": ["carol"], "due_at": "2026-11-26T10:00:00Z"},
    "page_delivered": {"page": 1, "user": "bob", "attempts": 1},
    "page_failed": {"page": 1, "user": "bob", "attempts": 2, "error": H},
    "page_undeliverable": {"round": 1, "level": 1, "user": None, "reason": H},
    "priority_raised": {"priority": ["P3", "P1"], "child": 2},
    "escalation_requested": {"step": 2},
    "oncall_override": {"id": 1, "schedule": "primary", "user": "bob", "starts_at": "2026-11-26T10:00:00Z",
                        "ends_at": "2026-11-27T10:00:00Z", "reason": H},
    "sla_warning": {"target": "respond", "policy": "p1", "target_seconds": 900, "used_seconds": 800},
    "sla_breached": {"target": "resolve", "policy": "p1", "target_seconds": 900, "used_seconds": 1000},
    "silence_added": {"silence": 2, "matchers": [["service", "=", "billing"], ["labels.host", "~", H]],
                      "starts_at": "2026-11-26T10:00:00Z", "ends_at": "2026-11-26T12:00:00Z", "comment": H},
    "silence_expired": {"silence": 2},
    "csat": {"score": 4, "comment": H},
    "worked": {"minutes": 30, "note": H},
    "permission_denied": {"what": "resolving SD-1", "need": "agent", "queue": "sre"},
    "user_added": {"user": "bob", "role": "agent", "team": "sre", "login": "bob", "email": None},
    "user_changed": {"user": "bob", "role": ["agent", "admin"], "team": ["sre", "dba"]},
    "user_queue_role": {"user": "bob", "queue": "sre", "role": "approver"},
    "user_removed": {"user": "bob", "role": "agent"},
    "token_added": {"token": 1, "user": "bob", "label": H, "hash": "ab"},
    "token_revoked": {"token": 1},
    "ci_added": {"name": "db-1", "type": "database", "tier": 1, "team": "dba", "environment": "prod",
                 "aliases": ["db1"], "attributes": {"ip": "10.0.0.1"}, "relations": {"runs_on": ["host-1"]}},
    "ci_linked": {"source": "api", "kind": "depends_on", "target": "db-1"},
    "ci_unlinked": {"source": "api", "kind": "depends_on", "target": "db-1"},
    "cmdb_imported": {"created": 3, "updated": 1, "unchanged": 0},
    "change_recorded": {"change": 4, "title": H, "ci": "db-1", "status": "planned"},
    "change_status": {"change": 4, "from": "planned", "to": "in_progress"},
    "classifier_trained": {"field": "category", "classes": ["db", "network"], "docs": 120, "terms": 900},
    "purged": {"before": "2026-01-01", "tickets": 12, "events": 80},
    "restored": {"from": "/backups/desk.db", "events": 1200, "head": "ab"},
    "desk_configured": {"config": "/srv/desk-config"},
}
PYTHON_REPR = re.compile(r"\{'|\['|': '|\{\"|\[\"|\": \"|\bNone\b|\bTrue\b|\bFalse\b")


class TestEveryEventKindReadsAsASentence:
    def test_every_kind_the_code_writes_is_known_here(self):
        assert not UNKNOWN_SITES, f"add these call sites to DYNAMIC_KINDS: {UNKNOWN_SITES}"
        assert len(KINDS) > 50  # the scan found the call sites
        assert KINDS <= set(SAMPLES), f"add a sample (and a sentence in domain/events.py describe_event) for {KINDS - set(SAMPLES)}"

    @pytest.mark.parametrize("kind", sorted(SAMPLES))
    def test_each_kind_has_its_own_sentence(self, kind):
        from sdesk.domain.events import describe_event, event_sentence_fallback

        sentence = describe_event({"kind": kind, "data": SAMPLES[kind]})
        assert sentence != event_sentence_fallback(kind, SAMPLES[kind]), f"{kind} has no sentence of its own"
        assert not PYTHON_REPR.search(sentence), sentence
        # An old event may lack keys a newer sdesk writes: still a line, never a KeyError.
        assert isinstance(describe_event({"kind": kind, "data": {}}), str)

    def test_a_kind_from_a_newer_sdesk_is_words_too(self):
        from sdesk.domain.events import describe_event

        assert describe_event({"kind": "desk_moved", "data": {"config": ["/a", "/b"], "n": {"x": 1}}}) == \
            "desk moved: config: /a, /b; n: (x=1)"

    def test_show_and_audit_print_every_kind_without_python(self, cli, db_path, monkeypatch):
        from sdesk.store import Store

        monkeypatch.setenv("COLUMNS", "80")
        ticket = cli.new("Disk full on db-1")
        with Store(db_path) as store, store.write("tester") as tx:
            for kind, data in SAMPLES.items():
                tx.event(ticket, kind, data)
        shown = cli("show", f"SD-{ticket}").stdout
        audit = cli("audit", "log", "--limit", "500").stdout
        for out in (shown, audit):
            bad = [line for line in out.splitlines() if PYTHON_REPR.search(line)]
            assert not bad, "\n".join(bad)
        assert "secrets removed before storing: password, aws_key" in shown
        assert "runbook restart disabled" in " ".join(shown.split())
        assert "\x1b" not in shown and "[red]db-1[/red]" in shown  # data shown as written, never run


def test_runbook_messages_say_conditions_in_words(cli, tmp_path):
    cli("init")
    folder = tmp_path / "config" / "runbooks"
    folder.mkdir()
    (folder / "disk.yaml").write_text(
        "name: disk\ndescription: Look at a full disk.\n"
        "applies_to: {labels.alertname: DiskFull, priority: {in: [P1, P2]}}\n"
        "steps:\n  - id: look\n    run: [df, -h]\n")
    shown = cli("runbook", "show", "disk").stdout
    assert "applies to: labels.alertname=DiskFull; priority: (in: P1, P2)" in shown
    other = cli.new("Printer jammed")
    out = cli("runbook", "run", "disk", "--ticket", str(other), "--dry-run", ok=False)
    assert "does not apply to SD-1 (applies_to: labels.alertname=DiskFull; priority: (in: P1, P2))" in out.stderr
    cli("runbook", "disable", "disk", "--reason", "loops on db hosts")
    assert "runbook disk disabled: loops on db hosts" in " ".join(cli("audit", "log").stdout.split())
    for text in (shown, out.stderr):
        assert not PYTHON_REPR.search(text), text


# -- issue 19 item 22: the help of every command and group reads well at 80 columns -----------------


def _all_commands(group=None, prefix=()):
    """Every group and command, the groups too (COMMANDS has the leaves)."""
    group = group or typer.main.get_command(app)
    ctx = typer.Context(group)
    yield prefix
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "commands"):
            yield from _all_commands(command, prefix + (name,))
        else:
            yield prefix + (name,)


class TestHelpAt80Columns:
    @pytest.mark.parametrize("command", list(_all_commands()), ids=lambda c: " ".join(c) or "sdesk")
    def test_help_has_an_example_and_no_noise(self, cli, monkeypatch, command):
        monkeypatch.setenv("COLUMNS", "80")
        out = cli(*command, "--help").stdout
        assert re.search(r"^\s*│?\s*Example: .*sdesk\b", out, re.M), out
        assert ("--install-completion" in out) == (command == ()), "completion is offered by `sdesk --help` only"
        assert not re.search(r"\bp[1-4]\b", out), "priorities are spelt P1..P4"
        for package in re.findall(r"pip install '([^']*)'", out):
            assert "[" in package and "]" in package, f"rich ate the extra: pip install '{package}'"
        assert all(len(line) <= 80 for line in out.splitlines())
        # No word split across lines (<planned|in_progress|co / mpleted|...>): every word at 80
        # columns is a word of the same help at 400, where nothing wraps.
        monkeypatch.setenv("COLUMNS", "400")
        whole = set(re.findall(r"\w+", cli(*command, "--help").stdout))
        split = [w for w in re.findall(r"\w+", out) if w not in whole]
        assert not split, f"words split across lines at 80 columns: {split}\n{out}"

    def test_top_level_help_groups_the_commands_in_panels(self, cli, monkeypatch):
        monkeypatch.setenv("COLUMNS", "80")
        out = cli("--help").stdout
        panels = re.findall(r"╭─ (.+?) ─", out)
        assert panels[:2] == ["Options", "Tickets"] and len(panels) >= 8 and "Commands" not in panels, panels
        # No sentence broken where the docstring's source line ended: each row continues one.
        rows = [line.strip("│ ") for line in out.split("╭─ Tickets")[1].splitlines() if line.startswith("│")]
        assert "show         Show a ticket: its fields, its context (CI, blast radius," in rows
        assert "recent changes, KB articles, similar tickets) and the timeline" in rows


def test_counts_of_one_are_singular(cli, monkeypatch):
    """Item 23: every count these commands print agrees with its noun ("1 minute", not "1 minutes")."""
    monkeypatch.setenv("COLUMNS", "80")
    incident = cli.new("Checkout returns 502", "--ci", "checkout-api")
    said = [cli("worklog", f"SD-{incident}", "1m").stderr]
    problem = cli("problem", "new", "--from", str(incident), "--title", "Replica lag").stdout.strip()
    said.append(cli("problem", "resolve", problem, "--fix", "Moved the batch").stderr)
    cli("cmdb", "add", "checkout-api", "--type", "service")
    cli("cmdb", "add", "payments-db", "--type", "database")
    cli("cmdb", "link", "checkout-api", "depends_on", "payments-db")
    said.append(cli("cmdb", "impact", "payments-db").stdout)
    said.append(cli("list", "--limit", "1").stderr)
    for text in said:
        assert not re.search(r"\b1 (minutes|incidents|CIs|tickets)\b", text), text
    assert "1 minute worked" in said[0] and "1 incident" in said[1] and "1 CI is affected" in said[2]


def test_rules_check_shows_what_rules_set_in_words(cli, tmp_path):
    (tmp_path / "config" / "triage.yaml").write_text(
        "rules:\n  - id: staging\n    match: {labels.env: staging}\n    set: {urgency: 3, tags: [staging, low]}\n")
    out = cli("rules", "check")
    assert "urgency=3; tags: staging, low" in out.stdout and not PYTHON_REPR.search(out.stdout), out.stdout
    assert "1 rule OK" in out.stderr
