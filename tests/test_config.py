"""The desk config (intake.yaml) changes intake as documented; a bad file is one clear line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.errors import ExitCode


@pytest.fixture
def config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    monkeypatch.setenv("SDESK_CONFIG", str(folder))
    return folder


def alert(status, severity="warning", name="DiskFull"):
    return json.dumps({"version": "4", "status": status, "alerts": [
        {"status": status, "labels": {"alertname": name, "instance": "db-1", "severity": severity},
         "annotations": {"summary": f"{name} on db-1", "description": "Ping ops@example.com or +44 20 7946 0958"}}]})


def take(cli, payload, fmt="alertmanager"):
    return json.loads(cli("new", "--format", fmt, "--json", input=payload).stdout)


def test_defaults_without_a_config_file(cli, config):
    t = cli.json("show", str(take(cli, alert("firing", "warning"))["ticket"]))
    assert t["priority"] == "P3" and "ops@example.com" in t["description"]


def test_severity_words_resolve_policy_and_pii(cli, config):
    (config / "intake.yaml").write_text(
        "severity:\n  Warning: P2\n  wake-me-up: P1\nrecord_resolved: [alertmanager]\nmask_pii: true\n")
    first = take(cli, alert("firing", "warning"))
    assert cli.json("show", str(first["ticket"]))["priority"] == "P2"
    second = take(cli, alert("firing", "wake-me-up", name="Down"))
    t = cli.json("show", str(second["ticket"]))
    assert t["priority"] == "P1"
    assert "ops@example.com" not in t["description"] and "[REDACTED:email]" in t["description"]
    assert "[REDACTED:phone]" in t["description"]
    assert take(cli, alert("resolved", "warning"))["action"] == "recorded"
    assert cli.json("show", str(first["ticket"]))["status"] == "new"


def test_email_requester_is_kept_when_pii_is_masked(cli, config):
    (config / "intake.yaml").write_text("mask_pii: true\n")
    mail = "From: Ann <ann@example.com>\nSubject: VPN\nMessage-ID: <v1@x>\n\nCall me on +1 415 555 0100\n"
    t = cli.json("show", str(take(cli, mail, "email")["ticket"]))
    assert t["requester"] == "ann@example.com" and "[REDACTED:phone]" in t["description"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("severity:\n  sev0: P0\n", "intake.yaml:2: severity.sev0: Input should be 'P1', 'P2', 'P3' or 'P4'"),
        ("mask_pii: true\nmask_pi: true\n", "intake.yaml:2: mask_pi: unknown setting"),
        ("severity: [\n", "intake.yaml:2: "),
        ("reopen_within_days: -1\n", "intake.yaml:1: reopen_within_days: Input should be greater than or equal to 0"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_file_and_line(cli, config, text, message):
    (config / "intake.yaml").write_text(text)
    result = cli("new", "--format", "alertmanager", input=alert("firing"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith(f"error: {config / 'intake.yaml'}") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_enrichment_settings_are_read_and_checked(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "intake.yaml").write_text("enrich:\n  enabled: false\n")
    cli("cmdb", "add", "api", "--type", "service", "--team", "web")
    t = cli.json("new", "API down", "--service", "api")
    assert t["ci"] is None and t["team"] is None
    (config / "intake.yaml").write_text("enrich:\n  labels: [svc]\n  change_window_hours: -1\n")
    result = cli("new", "x", ok=False)
    assert result.exit_code == 2 and "intake.yaml:3: enrich.change_window_hours" in result.stderr
    (config / "intake.yaml").write_text("enrich:\n  labels: [svc]\n")
    assert cli.json("new", "API slow", "-l", "svc=api")["ci"] == "api"


# -- numbers in config: a range checked when the file is read -------------------------------------

LONG = "9" * 5000  # over Python's 4,300-digit limit on str -> int

# One numeric setting of each config file, `{v}` standing for its value, and the commands that
# read it (the file's check command and `new`, which reads most of them on every ticket).
ONCALL = ("teams: [{{name: ops, schedule: s, escalation: e, members: [al]}}]\ndefault_team: ops\n"
          "schedules: [{{name: s, timezone: UTC, layers: [{{start: 2026-01-05T09:00, length: {len}, users: [al]}}]}}]\n"
          "escalation: [{{name: e, repeat: {repeat}, levels: [{{targets: ['user:al'], delay: {delay}}}]}}]\n"
          "notifier: {{command: [/bin/true], timeout: {timeout}, max_per_hour: {mph}}}\n")
ONCALL_OK = {"len": "1w", "repeat": 0, "delay": "5m", "timeout": 10, "mph": 5}
NUMERIC_SETTINGS = [
    ("triage.yaml", "correlation: {{window_minutes: {v}}}\n", [["rules", "check"], ["new", "x"]]),
    ("triage.yaml", "correlation: {{flap_minutes: {v}}}\n", [["rules", "check"], ["new", "x"]]),
    ("triage.yaml", "classifier: {{threshold: {v}}}\n", [["rules", "check"], ["new", "x"]]),
    ("triage.yaml", "priority: {{blast_radius: {v}}}\n", [["rules", "check"], ["new", "x"]]),
    ("triage.yaml", "rules: [{{id: r, match: {{urgency: {{gt: {v}}}}}, set: {{priority: P1}}}}]\n",
     [["rules", "check"], ["new", "x"]]),
    ("intake.yaml", "reopen_within_days: {v}\n", [["new", "x"]]),
    ("intake.yaml", "enrich: {{change_window_hours: {v}}}\n", [["new", "x"]]),
    ("intake.yaml", "enrich: {{kb_articles: {v}}}\n", [["new", "x"]]),
    ("intake.yaml", "enrich: {{similar_tickets: {v}}}\n", [["new", "x"]]),
    ("intake.yaml", "enrich: {{similar_within_days: {v}}}\n", [["new", "x"]]),
    ("sla.yaml", "policies: [{{name: p, respond: {v}}}]\n", [["sla"], ["new", "x"]]),
    ("sla.yaml", "policies: [{{name: p, resolve: {v}m}}]\n", [["sla"], ["new", "x"]]),
    ("sla.yaml", "policies: [{{name: p, respond: 1h, warn_at: {v}}}]\n", [["sla"], ["new", "x"]]),
    ("sla.yaml", "slos: [{{ci: db, objective: {v}}}]\n", [["slo"], ["new", "x"]]),
    ("sla.yaml", "slos: [{{ci: db, objective: 99, window: {v}d}}]\n", [["slo"], ["new", "x"]]),
    ("metrics.yaml", "targets: {{acknowledge: {{P1: {v}h}}}}\n", [["metrics"], ["report", "executive"]]),
    ("metrics.yaml", "targets: {{csat: {v}}}\n", [["metrics"]]),
    ("metrics.yaml", "targets: {{fcr: {v}}}\n", [["metrics"]]),
    ("metrics.yaml", "cost: {{agent_hour: {v}, page: 1, monthly_tooling: 1}}\n", [["metrics"], ["report", "executive"]]),
    *[("oncall.yaml", ONCALL.format(**{**ONCALL_OK, key: value}).replace("{", "{{").replace("}", "}}").replace("{{v}}", "{v}"),
       [["oncall", "show"], ["oncall", "now"], ["new", "x", "-p", "P1"], ["tick"]])
      for key, value in (("len", "{v}w"), ("len", "{v}h"), ("repeat", "{v}"), ("delay", "{v}m"), ("timeout", "{v}"),
                         ("mph", "{v}"))],
]
NUMBERS = st.one_of(
    st.sampled_from(["99999999999999999999999", "10000000000", "-1", "0", "1.5", ".nan", ".inf", "-.inf", "1e400",
                     LONG, "-" + LONG, "0x" + "f" * 40, "1_000_000_000_000", "5270400", "5270401"]),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr).map(lambda r: {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}.get(r, r)),
)


def test_a_number_too_long_is_one_line_naming_file_and_line(cli, config):
    (config / "triage.yaml").write_text(f"# rules\nrules: [{{id: r, match: {{urgency: {{gt: {LONG}}}}}, set: {{priority: P1}}}}]\n")
    for command in (["new", "x"], ["rules", "check"]):
        result = cli(*command, ok=False)
        assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
        assert result.stderr == f"error: {config / 'triage.yaml'}:2: a number longer than 4,300 digits\n"


def test_a_correlation_window_too_long_is_refused_when_the_file_is_read(cli, config):
    for value in ("99999999999999999999999", "10000000000"):
        (config / "triage.yaml").write_text(f"correlation:\n  window_minutes: {value}\n")
        for command in (["new", "x"], ["rules", "check"]):
            result = cli(*command, ok=False)
            assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
            assert result.stderr.startswith(f"error: {config / 'triage.yaml'}:2: correlation.window_minutes: ")
    (config / "triage.yaml").write_text("correlation:\n  window_minutes: 5270400\n")  # ten years: allowed
    cli.new("x")
    cli.new("y")


def _no_desk(file: Path) -> None:
    """The test's desk gone: its SQLite file (and -wal, -shm), or on the PostgreSQL run its schema
    emptied (dropped and made again, as the test's fixture made it)."""
    db = os.environ["SDESK_DB"]
    if not db.startswith("postgresql:"):
        for old in file.parent.glob(file.name + "*"):
            old.unlink()
        return
    from sdesk.storage import pg

    conn = pg.connect(db)
    try:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        conn.close()


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(setting=st.sampled_from(NUMERIC_SETTINGS), value=NUMBERS)
def test_every_numeric_setting_is_accepted_or_one_bad_input_line(cli, config, setting, value):
    name, template, commands = setting
    # Each example gets a new desk: a page one example left failing must not fail the next.
    _no_desk(config.parent / "desk.db")
    cli("init")  # a read (metrics) may be drawn before any write made the desk: a missing one is an error
    for old in config.iterdir():
        old.unlink()
    (config / name).write_text(template.format(v=value))
    for command in commands:
        result = cli(*command, ok=False)
        assert "Traceback" not in result.stderr and "Error:" not in result.stderr, (name, value, result.stderr)
        assert result.exit_code in (0, ExitCode.BAD_INPUT), (name, value, command, result.exit_code, result.stderr)
        if result.exit_code:
            assert result.stderr.startswith(f"error: {config / name}:") and result.stderr.count("\n") == 1, result.stderr


# -- issue 20: every desk file is validated one way (its pydantic model in config.py) ------------

DESK_FILE_ERRORS = [
    # (file, text, what it is read by, the error's file line, setting and message)
    ("roles.yaml", "# who is not a user\ndefault_role: boss\n", ("list",),
     "roles.yaml:2: default_role: unknown role 'boss': expected one of viewer, agent, approver, admin"),
    ("roles.yaml", "default_role: viewer\ndefualt_role: agent\n", ("list",), "roles.yaml:2: defualt_role: unknown setting"),
    ("roles.yaml", "- viewer\n", ("list",), "roles.yaml:1: file: expected a mapping of settings"),
    ("metrics.yaml", "targets:\n  acknowledge:\n    P1: 15m\n    P2: soon\n", ("report",),
     "metrics.yaml:4: targets.acknowledge.P2: expected a duration like 30m, 4h, 2d, 1w"),
    ("metrics.yaml", "cost:\n  agent_hour: 60\n  page: 10\n  monthly_tooling: 300\n  coffee: 2\n", ("report",),
     "metrics.yaml:5: cost.coffee: unknown setting (expected agent_hour, page or monthly_tooling)"),
    ("sla.yaml", "calendars:\n  - name: office\n    timezone: UTC\n    hours: {mon-fri: '09:00-17:00'}\n"
                 "    holidays: [2026-12-25, xmas]\n", ("sla",),
     "sla.yaml:5: calendars[office].holidays[1]: expected dates, e.g. 2026-12-25"),
    ("sla.yaml", "policies:\n  - name: gold\n    respond: 1h\n  - name: gold\n    resolve: 1d\n", ("sla",),
     "sla.yaml:4: policies[gold].name: the name is used twice"),
    ("sla.yaml", "policies:\n  - name: gold\n    respond: 1h\n    colour: red\n", ("sla",),
     "sla.yaml:4: policies[gold].colour: unknown setting (expected name, kind, priority, respond, resolve, calendar, "
     "pause or warn_at)"),
    ("oncall.yaml", "teams:\n  - name: ops\n    members: [ann]\nqueues:\n  - name: db\n    team: dba\n", ("oncall", "show"),
     "oncall.yaml:6: queues[db].team: unknown team 'dba'"),
    ("oncall.yaml", "teams:\n  - name: ops\n    members: [ann, {user: 'b c'}]\n", ("oncall", "show"),
     "oncall.yaml:3: teams[ops].members[1].user: expected a name (letters, digits, . _ @ + -)"),
    ("runbooks/rb.yaml", "params:\n  folder: {from: labels.mount, pattern: '(a'}\nsteps:\n  - run: [ls, '{folder}']\n",
     ("runbook", "show", "rb"), "runbooks/rb.yaml:2: params.folder.pattern: bad pattern: missing ): (a"),
    ("runbooks/rb.yaml", "throttle: {runs: 0, per: 1h}\nsteps:\n  - run: [ls]\n", ("runbook", "show", "rb"),
     "runbooks/rb.yaml:1: throttle.runs: expected a whole number, at least 1"),
    ("triage.yaml", "rules:\n  - id: db\n    match:\n      labels.alertname: {regex: '(a'}\n    set: {queue: dba}\n",
     ("rules", "check"), "triage.yaml:4: rules[db].match.labels.alertname.regex: bad regex '(a'"),
    ("triage.yaml", "correlation:\n  window_minutes: 30\n  flap_minutes: -1\n", ("rules", "check"),
     "triage.yaml:3: correlation.flap_minutes: expected minutes, 0 (off) to"),
    ("triage.yaml", "classifier:\n  treshold: 0.5\n", ("rules", "check"),
     "triage.yaml:2: classifier.treshold: unknown setting (expected threshold or triage_queue)"),
    ("metrics.yaml", "targets:\n  csat: true\n", ("report",), "metrics.yaml:2: targets.csat: expected a number from 1 to 5"),
]


@pytest.mark.parametrize(("name", "text", "command", "message"), DESK_FILE_ERRORS,
                         ids=[f"{case[0]}-{i}" for i, case in enumerate(DESK_FILE_ERRORS)])
def test_a_bad_desk_file_is_one_line_naming_file_line_and_setting(cli, config, name, text, command, message):
    (config / name).parent.mkdir(exist_ok=True)
    (config / name).write_text(text)
    result = cli(*command, ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith(f"error: {config / message}") and result.stderr.count("\n") == 1


def test_new_with_desk_files_skips_pydantic_once_they_were_validated(tmp_path, config):
    """`sdesk new` reads the desk files that shape a ticket (roles, triage and what it borrows:
    sla, oncall, runbooks); pydantic (1.3 F of new's 1.5 F) is imported to validate a file the
    first time its text is seen, not on each new."""
    example = Path(__file__).parent.parent / "examples" / "desk"
    shutil.copytree(example, config, dirs_exist_ok=True, ignore=shutil.ignore_patterns("intake.yaml"))
    code = ("import sys; from sdesk.cli import app\n"
            "try: app(['new', 'x'])\n"
            "except SystemExit as e: print(e.code, file=sys.stderr)\n"
            "print('pydantic' in sys.modules, file=sys.stderr)\n")
    env = {**os.environ, "SDESK_CONFIG": str(config)}  # SDESK_DB: the test's desk, on its backend

    def run():
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return proc.stderr.strip().splitlines()

    assert run()[-2:] == ["0", "True"]  # validated, and remembered
    assert run()[-2:] == ["0", "False"]
    (config / "roles.yaml").write_text("default_role: boss\n")  # changed: validated again
    lines = run()
    assert lines[-2:] == ["2", "True"] and "roles.yaml:1: default_role: unknown role 'boss'" in lines[0]
    (config / "roles.yaml").write_text("default_role: agent\n")
    with (config / "sla.yaml").open("a") as f:
        f.write("  - {ci: db, objective: 100}\n")  # what triage borrows is checked too, and only warns
    lines = run()
    assert lines[-2:] == ["0", "True"] and any("objective: expected a percentage" in line for line in lines)
