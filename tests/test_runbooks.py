"""Runbooks: real subprocesses for every step (true, false, sleep, a script that fails then
succeeds), approvals the requester cannot give, a ticket title that tries to inject a command,
an automation loop stopped by the throttle, rollback, redaction, and runs killed mid-step."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sdesk.domain.runbooks import resolve_params
from sdesk.errors import BadInput, Conflict, ExitCode, PermissionDenied
from sdesk.intake.service import Intake
from sdesk.services.runner import prepare, resume, start
from sdesk.store import Store
from sdesk.validated import parse_runbook as parse

PY = json.dumps(sys.executable)


@pytest.fixture
def desk(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    monkeypatch.setenv("SDESK_CONFIG", str(config))

    def runbook(name: str, text: str) -> Path:
        path = config / "runbooks" / f"{name}.yaml"
        path.write_text(text)
        return path

    cli.runbook = runbook
    cli.config = config
    cli.tmp = tmp_path
    return cli


def runs(cli, *args):
    return cli.json("runbook", "runs", *args)


def test_a_run_executes_real_steps_and_records_each_on_the_run_and_the_timeline(desk):
    marker = desk.tmp / "done"
    desk.runbook("touch", f"""
name: touch
params:
  target: {{default: {json.dumps(str(marker))}}}
steps:
  - check: [test, "!", -e, "{{target}}"]
  - id: make
    run: [touch, "{{target}}"]
  - id: say
    run: [echo, made, "{{target}}", for, "{{ticket}}"]
  - resolve: "Made {{target}}"
    code: scripted
""")
    ticket = desk.new("Something to touch", "--ci", "web-1")
    result = desk.json("runbook", "run", "touch", "--ticket", str(ticket), "--yes")
    assert result["status"] == "succeeded" and marker.exists()
    steps = result["steps"]
    assert [s["status"] for s in steps] == ["ok", "ok", "ok", "ok"]
    assert steps[2]["output"] == f"made {marker} for SD-{ticket}\n" and steps[1]["exit_code"] == 0
    t = desk.json("show", str(ticket))
    assert t["status"] == "resolved" and t["resolution_code"] == "scripted"
    kinds = [e["kind"] for e in t["events"]]
    assert kinds.count("runbook_step") == 4 and "runbook_started" in kinds and kinds[-1] == "runbook_finished"
    resolved = next(e for e in t["events"] if e["kind"] == "status_changed" and e["data"]["to"] == "resolved")
    assert resolved["data"]["automated"] is True and resolved["data"]["run"] == result["id"]
    assert desk("audit", "verify").exit_code == 0


def test_a_check_that_does_not_pass_stops_the_run_without_rollback(desk):
    marker = desk.tmp / "rolled-back"
    desk.runbook("stop", f"""
steps:
  - check: ["false"]
  - run: ["true"]
on_failure:
  - run: [touch, {json.dumps(str(marker))}]
""")
    ticket = desk.new("x")
    result = desk.json("runbook", "run", "stop", "--ticket", str(ticket), "--yes")
    assert result["status"] == "stopped" and len(result["steps"]) == 1 and not marker.exists()


def test_a_failing_step_rolls_back(desk):
    marker = desk.tmp / "rolled-back"
    desk.runbook("fails", f"""
steps:
  - run: ["true"]
  - id: breaks
    run: ["false"]
  - run: [touch, {json.dumps(str(desk.tmp / "never"))}]
on_failure:
  - id: undo
    run: [touch, {json.dumps(str(marker))}]
""")
    ticket = desk.new("x")
    out = desk("runbook", "run", "fails", "--ticket", str(ticket), "--yes", "--json", ok=False)
    assert out.exit_code == ExitCode.ERROR
    result = json.loads(out.stdout)
    assert result["status"] == "failed" and result["reason"] == "step breaks failed (exit 1)"
    assert result["rollback"] == "succeeded" and marker.exists() and not (desk.tmp / "never").exists()
    assert [(s["step_id"], s["phase"], s["status"]) for s in result["steps"]][-2:] == [
        ("breaks", "main", "failed"), ("undo", "rollback", "ok")]
    # A person's run that fails is a failed run, not an automation misfire.
    assert result["misfire"] is None
    assert "automation_misfire" not in [e["kind"] for e in desk.json("show", str(ticket))["events"]]


def test_automation_runs_when_triage_attaches_a_safe_runbook_and_a_failure_is_a_misfire(desk):
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: disk\n    match: {labels.alertname: DiskFull}\n    set: {runbook: cleanup}\n"
        "  - id: cpu\n    match: {labels.alertname: CpuHigh}\n    set: {runbook: broken}\n")
    desk.runbook("cleanup", "safe_for_automation: true\nsteps:\n  - run: [echo, cleaned]\n  - resolve: Cleaned up\n")
    desk.runbook("broken", "safe_for_automation: true\nsteps:\n  - run: [\"false\"]\n")
    disk = desk.new("Disk full", "-l", "alertname=DiskFull")
    cpu = desk.new("CPU high", "-l", "alertname=CpuHigh")
    t = desk.json("show", str(disk))
    assert t["status"] == "resolved" and t["resolution_code"] == "automated"
    [cleanup] = runs(desk, "--ticket", str(disk))
    assert cleanup["automated"] and cleanup["actor"] == "automation" and cleanup["status"] == "succeeded"
    [broken] = runs(desk, "--ticket", str(cpu))
    assert broken["status"] == "failed" and broken["misfire"] == "failed"
    assert "automation_misfire" in [e["kind"] for e in desk.json("show", str(cpu))["events"]]
    # A runbook not marked safe is attached but never run by itself.
    desk.runbook("cleanup", "steps:\n  - run: [echo, cleaned]\n")
    manual = desk.new("Disk full again", "-l", "alertname=DiskFull")
    assert runs(desk, "--ticket", str(manual)) == [] and desk.json("show", str(manual))["status"] == "new"


def test_a_step_that_overruns_its_timeout_is_stopped(desk):
    desk.runbook("slow", """
steps:
  - id: sleeps
    run: [sleep, "30"]
    timeout: 500ms
""")
    ticket = desk.new("x")
    started = time.monotonic()
    out = desk("runbook", "run", "slow", "--ticket", str(ticket), "--yes", "--json", ok=False)
    assert time.monotonic() - started < 10
    result = json.loads(out.stdout)
    assert result["status"] == "failed" and "timed out after 0.5s" in result["reason"]
    assert result["steps"][0]["status"] == "timeout" and result["steps"][0]["exit_code"] is None


def test_retries_with_backoff_until_the_command_succeeds(desk):
    counter = desk.tmp / "count"
    script = desk.tmp / "flaky.py"
    script.write_text(f"import pathlib, sys\np = pathlib.Path({str(counter)!r})\nn = int(p.read_text()) if p.exists() else 0\n"
                      "p.write_text(str(n + 1))\nprint('attempt', n + 1)\nsys.exit(0 if n >= 2 else 3)\n")
    desk.runbook("flaky", f"""
steps:
  - id: flaky
    run: [{PY}, {json.dumps(str(script))}]
    retries: 3
    backoff: 0.1
""")
    ticket = desk.new("x")
    result = desk.json("runbook", "run", "flaky", "--ticket", str(ticket), "--yes")
    step = result["steps"][0]
    assert result["status"] == "succeeded" and step["attempts"] == 3 and counter.read_text() == "3"
    assert "attempt 3" in step["output"]


def test_expected_exit_codes(desk):
    desk.runbook("grep", """
steps:
  - run: [sh, -c, "exit 1"]
    exit_codes: [0, 1]
""")
    ticket = desk.new("x")
    assert desk.json("runbook", "run", "grep", "--ticket", str(ticket), "--yes")["status"] == "succeeded"


def test_an_approval_cannot_come_from_the_requester(desk):
    marker = desk.tmp / "approved-work"
    desk.runbook("gated", f"""
steps:
  - approve: "Go ahead?"
  - run: [touch, {json.dumps(str(marker))}]
  - resolve: "Done after approval"
""")
    ticket = desk.new("x", "--ci", "db-1")
    waiting = desk.json("--as", "alice", "runbook", "run", "gated", "--ticket", str(ticket), "--yes")
    assert waiting["status"] == "waiting" and waiting["waiting_for"] == "approval" and not marker.exists()
    refused = desk("--as", "alice", "runbook", "approve", str(waiting["id"]), ok=False)
    assert refused.exit_code == ExitCode.PERMISSION and "must come from someone else" in refused.stderr
    assert not marker.exists() and desk.json("runbook", "log", str(waiting["id"]))["status"] == "waiting"
    done = desk.json("--as", "bob", "runbook", "approve", str(waiting["id"]))
    assert done["status"] == "succeeded" and marker.exists()
    assert [(s["step_id"], s["status"], s["actor"]) for s in done["steps"]][0] == ("approve-1", "approved", "bob")
    events = desk.json("show", str(ticket))["events"]
    refusal = next(e for e in events if e["kind"] == "runbook_approval_refused")
    assert refusal["actor"] == "alice"
    assert desk.json("show", str(ticket))["status"] == "resolved"
    again = desk("--as", "bob", "runbook", "approve", str(waiting["id"]), ok=False)
    assert again.exit_code == ExitCode.CONFLICT


def test_a_runbook_edited_while_a_run_waits_is_not_run_unseen(desk):
    path = desk.runbook("gated", "steps:\n  - approve: Go?\n  - run: [echo, planned]\n")
    ticket = desk.new("x")
    waiting = desk.json("--as", "alice", "runbook", "run", "gated", "--ticket", str(ticket), "--yes")
    path.write_text("steps:\n  - approve: Go?\n  - run: [echo, something else]\n")
    out = desk("--as", "bob", "runbook", "approve", str(waiting["id"]), ok=False)
    assert out.exit_code == ExitCode.CONFLICT and "changed since run 1 was planned" in out.stderr
    assert desk.json("runbook", "log", str(waiting["id"]))["status"] == "waiting"


def test_a_rejected_run_ends_and_releases_its_lock(desk):
    desk.runbook("gated", """
steps:
  - approve: "Go?"
  - run: ["true"]
""")
    first, second = desk.new("a", "--ci", "db-1"), desk.new("b", "--ci", "db-1")
    waiting = desk.json("runbook", "run", "gated", "--ticket", str(first), "--yes")
    # The waiting run holds db-1: a second run on the same CI is refused, and the refusal recorded.
    locked = desk("runbook", "run", "gated", "--ticket", str(second), "--yes", ok=False)
    assert locked.exit_code == ExitCode.CONFLICT and f"locked: run {waiting['id']}" in locked.stderr
    assert runs(desk, "--ticket", str(second))[0]["status"] == "refused"
    desk("runbook", "reject", str(waiting["id"]), "--reason", "not now")
    assert desk.json("runbook", "log", str(waiting["id"]))["status"] == "rejected"
    assert desk.json("runbook", "run", "gated", "--ticket", str(second), "--yes")["status"] == "waiting"


def test_a_ticket_title_cannot_inject_a_command(desk):
    pwned = desk.tmp / "pwned"
    desk.runbook("echo", """
params:
  title: {from: title}
steps:
  - id: argv
    run: [echo, "{title}"]
  - id: shell
    shell: true
    run: 'printf "%s\\n" "$SDESK_PARAM_TITLE"'
""")
    title = f'x"; touch {pwned}; echo "$(touch {pwned})`touch {pwned}`'
    ticket = desk.new(title)
    result = desk.json("runbook", "run", "echo", "--ticket", str(ticket), "--yes")
    assert result["status"] == "succeeded" and not pwned.exists()
    assert [s["output"] for s in result["steps"]] == [title + "\n", title + "\n"]


def test_a_parameter_that_looks_like_an_option_is_refused(desk):
    desk.runbook("rm", """
params:
  name: {from: title}
steps:
  - run: [echo, "{name}"]
""")
    ticket = desk.json("new", "-", input=json.dumps({"title": "--recursive"}))["ticket"]
    out = desk("runbook", "run", "rm", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "starts with '-'" in out.stderr
    assert runs(desk) == []


def test_shell_strings_may_not_paste_parameters():
    with pytest.raises(BadInput, match=r"rb.yaml:5: .*would paste a value into a shell script"):
        parse("params:\n  host: {default: a}\nsteps:\n  - shell: true\n"
              "    run: >-\n      ssh {host} uptime\n", "rb.yaml", "rb")


@pytest.mark.parametrize("text, message", [
    ("steps:\n  - run: [echo, '{nope}']\n", r"rb.yaml:2: steps\[0\]\.run\[1\]: unknown parameter \{nope\}"),
    ("steps:\n  - run: echo hi\n", r"rb.yaml:2: .*a string runs only with shell: true"),
    ("steps:\n  - run: [echo]\n    retry: 3\n", r"rb.yaml:3: steps\[0\]\.retry: unknown setting for a run step"),
    ("steps:\n  - run: ['{x}']\nparams: {x: {default: ls}}\n", r"rb.yaml:2: .*the command itself cannot come"),
    ("steps: []\n", r"rb.yaml:1: steps: a runbook needs at least one step"),
    ("name: x\nsteps:\n  - run: [true]\n    timeout: forever\n", r"rb.yaml:4: steps\[0\]\.timeout: expected seconds"),
    ("steps:\n  - run: [true]\n  foo: [", r"rb.yaml:3: "),
    ("params:\n  n: {type: int, default: many}\nsteps:\n  - run: [true]\n", r"rb.yaml:2: params\.n\.default: parameter n: 'many' is not an integer"),
    ("secrets:\n  TOKEN: hunter2\nsteps:\n  - run: [true]\n", r"rb.yaml:2: secrets\.TOKEN: expected \{env"),
])
def test_a_malformed_runbook_is_one_error_with_its_line(text, message):
    with pytest.raises(BadInput, match=message):
        parse(text, "rb.yaml", "rb")


@settings(max_examples=examples(200), deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["name", "steps", "run", "check", "params", "default", "type", "shell",
                                         "dry_run", "timeout", "retries", "resolve", "approve", "from", "env",
                                         "on_failure", "secrets", "applies_to", "throttle", "x"]), inner, max_size=4),
                    max_leaves=12))
def test_the_loader_never_fails_other_than_with_bad_input(data):
    try:
        parse(json.dumps(data), "fuzz.yaml", "fuzz")
    except BadInput as e:
        assert str(e).startswith("fuzz.yaml:")


def test_a_broken_file_or_missing_command_is_refused_before_any_step_runs(desk):
    marker = desk.tmp / "first-step-ran"
    desk.runbook("missing", f"""
steps:
  - run: [touch, {json.dumps(str(marker))}]
  - run: [no-such-command-sdesk, --now]
""")
    desk.runbook("broken", "steps:\n  - run: [true]\n    bogus: 1\n")
    ticket = desk.new("x")
    out = desk("runbook", "run", "missing", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "command not found: step run-2: no-such-command-sdesk" in out.stderr
    out = desk("runbook", "run", "broken", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "broken.yaml:3: steps[0].bogus: unknown setting for a run step" in out.stderr
    assert not marker.exists() and runs(desk) == []
    check = desk("runbook", "validate", "--json", ok=False)
    assert check.exit_code == ExitCode.BAD_INPUT
    problems = json.loads(check.stdout)["problems"]
    assert len(problems) == 2 and "no-such-command-sdesk" in problems[1]


def test_a_broken_runbook_file_is_named_by_list_and_by_tick_and_the_good_ones_still_show(desk):
    """Hostile finding 18: `runbook list` shows the good runbooks and the broken file's error,
    never "no runbooks"; tick warns of each broken file once, on stderr."""
    desk("init")
    desk.runbook("x", "steps: [\n")
    only_broken = desk("runbook", "list", ok=False)
    assert only_broken.exit_code == ExitCode.BAD_INPUT and "x.yaml" in only_broken.stderr
    assert "no runbooks" not in only_broken.stdout + only_broken.stderr
    desk.runbook("restart-api", "description: restart the api\nsteps:\n  - run: [true]\n")
    both = desk("runbook", "list", ok=False)
    assert "restart-api" in both.stdout and "x.yaml" in both.stderr and "no runbooks" not in both.stdout
    tick = desk("tick", ok=False)
    assert tick.stderr.count("x.yaml") == 1 and "warning: " in tick.stderr, tick.stderr
    assert "restart-api" not in tick.stderr


def test_unknown_and_missing_parameters(desk):
    desk.runbook("p", """
params:
  host: {from: labels.instance}
  days: {type: int, default: 7}
steps:
  - run: [echo, "{host}", "{days}"]
""")
    ticket = desk.new("x")
    out = desk("runbook", "run", "p", "--ticket", str(ticket), "--param", "hots=a", "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "--param hots: runbook p has no such parameter" in out.stderr
    out = desk("runbook", "run", "p", "--ticket", str(ticket), "--yes", ok=False)
    assert "parameter host: no value (the ticket has no labels.instance)" in out.stderr
    out = desk("runbook", "run", "p", "--ticket", str(ticket), "-p", "host=a", "-p", "days=soon", "--yes", ok=False)
    assert "parameter days: 'soon' is not an integer" in out.stderr
    labelled = desk.new("y", "--label", "instance=db-3:9100")
    result = desk.json("runbook", "run", "p", "--ticket", str(labelled), "--yes")
    assert result["steps"][0]["output"] == "db-3:9100 7\n"


def test_parameters_come_from_the_ticket_its_labels_and_its_ci():
    rb = parse("params:\n  host: {from: ci}\n  ip: {from: ci.ip}\n  tier: {from: ci.tier, type: int}\n"
               "  env: {from: labels.env}\n  p: {from: priority}\nsteps:\n  - run: [echo]\n", "rb.yaml", "rb")
    ticket = {"id": 4, "priority": "P2", "labels": {"env": "prod"}}
    ci = {"name": "db-3", "tier": 1, "attributes": {"ip": "10.0.0.3"}}
    assert resolve_params(rb, ticket, ci, {}) == {"host": "db-3", "ip": "10.0.0.3", "tier": 1, "env": "prod", "p": "P2"}


def test_a_dry_run_prints_the_plan_and_runs_only_dry_run_variants(desk):
    real, dry = desk.tmp / "real", desk.tmp / "dry"
    desk.runbook("plan", f"""
params:
  days: {{type: int, default: 7}}
steps:
  - id: change
    run: [touch, {json.dumps(str(real))}]
    dry_run: [touch, {json.dumps(str(dry))}]
  - id: no-variant
    run: [touch, {json.dumps(str(real))}]
  - approve: "Delete files older than {{days}} days?"
  - resolve: "Cleaned"
""")
    ticket = desk.new("x")
    out = desk("runbook", "run", "plan", "--ticket", str(ticket), "--dry-run", "-p", "days=3")
    plan = " ".join(out.stdout.split())
    assert "Dry run: runbook plan on SD-1" in plan and "param days = 3" in plan
    assert f"run: touch {dry}" in plan and "Delete files older than 3 days?" in plan
    assert dry.exists() and not real.exists()
    [run] = runs(desk)
    assert run["dry_run"] and run["status"] == "succeeded"
    log = desk.json("runbook", "log", str(run["id"]))
    assert [s["status"] for s in log["steps"]] == ["ok", "skipped", "skipped", "skipped"]
    assert desk.json("show", str(ticket))["status"] != "resolved"


def test_a_real_run_without_a_terminal_needs_yes(desk):
    desk.runbook("t", "steps:\n  - run: [true]\n")
    ticket = desk.new("x")
    out = desk("runbook", "run", "t", "--ticket", str(ticket), ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "add --yes" in out.stderr and runs(desk) == []


def test_output_is_capped_and_redacted_and_secrets_are_never_stored(desk, monkeypatch):
    monkeypatch.setenv("DEPLOY_TOKEN_SOURCE", "s3cr3t-value-1234")
    desk.runbook("leaky", f"""
secrets:
  TOKEN: {{env: DEPLOY_TOKEN_SOURCE}}
steps:
  - id: leak
    shell: true
    run: 'echo "$TOKEN"; echo "aws AKIAIOSFODNN7EXAMPLE"; echo "password=hunter2secret"'
  - id: flood
    run: [{PY}, -c, "print('x' * 300000)"]
""")
    ticket = desk.new("x")
    result = desk.json("runbook", "run", "leaky", "--ticket", str(ticket), "--yes")
    leak, flood = result["steps"]
    assert "s3cr3t-value-1234" not in leak["output"] and "[REDACTED:secret]" in leak["output"]
    assert "AKIAIOSFODNN7EXAMPLE" not in leak["output"] and "hunter2secret" not in leak["output"]
    assert len(flood["output"]) <= 64 * 1024 + 100
    dump = _dump(os.environ["SDESK_DB"])
    assert "s3cr3t-value-1234" not in dump and "hunter2secret" not in dump
    monkeypatch.delenv("DEPLOY_TOKEN_SOURCE")
    out = desk("runbook", "run", "leaky", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "DEPLOY_TOKEN_SOURCE is not set" in out.stderr


def test_the_kill_switch_and_per_runbook_disable(desk):
    desk.runbook("t", "steps:\n  - run: [true]\n")
    ticket = desk.new("x")
    desk("--as", "admin", "runbook", "disable", "--all", "--reason", "automation loop")
    out = desk("runbook", "run", "t", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.CONFLICT and "all runbooks are disabled (by admin: automation loop)" in out.stderr
    assert desk.json("runbook", "run", "t", "--ticket", str(ticket), "--dry-run")["status"] == "succeeded"
    desk("runbook", "enable", "--all")
    desk("runbook", "disable", "t")
    assert desk.json("runbook", "list")[0]["disabled"] is True
    assert desk("runbook", "run", "t", "--ticket", str(ticket), "--yes", ok=False).exit_code == ExitCode.CONFLICT
    desk("runbook", "enable", "t")
    assert desk.json("runbook", "run", "t", "--ticket", str(ticket), "--yes")["status"] == "succeeded"


def test_a_reopened_ticket_marks_the_run_that_resolved_it_as_a_misfire(desk):
    desk.runbook("fix", "steps:\n  - resolve: Restarted the service\n")
    ticket = desk.new("x")
    run = desk.json("runbook", "run", "fix", "--ticket", str(ticket), "--yes")
    assert run["resolved"] and run["misfire"] is None
    desk("reopen", str(ticket))
    assert desk.json("runbook", "log", str(run["id"]))["misfire"] == "reopened"


@pytest.mark.parametrize("refire", ["alert", "ticket"])
def test_an_automation_loop_is_stopped_by_the_throttle(desk, refire):
    """A runbook safe for automation resolves its ticket and re-fires its own alert (or opens a
    ticket like it, with no CI or fingerprint): each tick runs the new ticket's queued run,
    until the throttle refuses."""
    payload = desk.tmp / "alert.json"
    payload.write_text(json.dumps({"version": "4", "status": "firing", "receiver": "sdesk", "groupLabels": {},
                                   "alerts": [{"status": "firing", "labels": {"alertname": "Loop", "job": "x"},
                                               "annotations": {"summary": "looping alert"}}]}))
    (desk.config / "triage.yaml").write_text(
        "correlation: {flap_minutes: 0}\nrules:\n  - id: loop\n    match: {labels.alertname: Loop}\n"
        "    set: {runbook: refire}\n")
    desk.runbook("refire", f"""
safe_for_automation: true
throttle: {{runs: 3, per: 1h}}
steps:
  - resolve: "Fixed (it says)"
  - run: {json.dumps([sys.executable, "-m", "sdesk", "new", "--format", "alertmanager", str(payload)]
                       if refire == "alert" else [sys.executable, "-m", "sdesk", "new", "looping", "-l", "alertname=Loop"])}
""")
    # The first arrives from outside; this command runs its runbook itself.
    desk(*(["new", "--format", "alertmanager", str(payload)] if refire == "alert" else ["new", "looping", "-l", "alertname=Loop"]))
    for _ in range(4):
        desk("tick")
    found = sorted(runs(desk), key=lambda r: r["id"])
    assert [r["status"] for r in found] == ["succeeded", "succeeded", "succeeded", "refused"]
    assert all(r["automated"] for r in found) and "throttled: 3 runs of refire" in found[-1]["reason"]
    assert len(desk.json("list", "--all")) == 4  # the loop made 4 tickets, then stopped


@pytest.mark.slow
def test_a_run_killed_mid_step_is_interrupted_and_its_lock_released(desk, db_path):
    desk.runbook("hang", """
steps:
  - id: hang
    run: [sleep, "20"]
""")
    first, second = desk.new("a", "--ci", "db-1"), desk.new("b", "--ci", "db-1")
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "runbook", "run", "hang", "--ticket", str(first), "--yes"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_step(db_path, "running")
    proc.kill()
    proc.wait()
    [run] = runs(desk)  # a read shows the dead run as ended (and records nothing: tests/test_reads_never_write.py)
    assert run["status"] == "interrupted" and f"pid {proc.pid}" in run["reason"]
    desk("tick")  # records it, and stops the command it left
    assert [(r["status"], r["reason"]) for r in runs(desk)] == [(run["status"], run["reason"])]
    [step] = desk.json("runbook", "log", str(run["id"]))["steps"]
    assert step["status"] == "interrupted" and _gone(step["pid"])
    # The CI's lock went with it: a new run there starts (and SIGTERM ends it, recorded).
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "runbook", "run", "hang", "--ticket", str(second), "--yes"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_step(db_path, "running", run_id=run["id"] + 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == ExitCode.INTERRUPTED == 130 and "Traceback" not in proc.stderr.read()
    latest = desk.json("runbook", "log", str(run["id"] + 1))
    assert latest["status"] == "interrupted" and "during step hang" in latest["reason"]
    # Ctrl-C (SIGINT) ends a run the same way: recorded, one line, exit 130 as a shell reports it.
    third = desk.new("c", "--ci", "db-1")
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "runbook", "run", "hang", "--ticket", str(third), "--yes"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # SIGINT not ignored, whatever started pytest (a background job ignores it)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_step(db_path, "running", run_id=run["id"] + 2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == ExitCode.INTERRUPTED and "Traceback" not in stderr, stderr
    assert "interrupted: the run is recorded as interrupted" in stderr
    last = desk.json("runbook", "log", str(run["id"] + 2))
    assert last["status"] == "interrupted" and last["steps"][0]["status"] == "interrupted"


def _gone(pid):
    """Whether a process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _connect(db):
    """A connection to the desk `db`: its SQLite file, or its PostgreSQL database (a URL, as
    db_path is on the PostgreSQL run) through sdesk's adapter, which takes the same SQL."""
    if isinstance(db, str) and db.startswith("postgresql:"):
        from sdesk.storage import pg

        return pg.connect(db)
    return sqlite3.connect(db)


def _dump(db) -> str:
    """All the desk holds, as text: SQLite's dump; on PostgreSQL every row of every table."""
    conn = _connect(db)
    try:
        if isinstance(conn, sqlite3.Connection):
            return "\n".join(conn.iterdump())
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        assert "runbook_steps" in tables
        return "\n".join(row[0] for table in tables for row in conn.execute(f'SELECT t::text FROM "{table}" AS t'))
    finally:
        conn.close()


def _wait_for_step(db_path, status, run_id=1):
    """Until the run's step has that status and its command's process is recorded."""
    for _ in range(200):
        try:
            conn = _connect(db_path)
            try:
                if conn.execute("SELECT 1 FROM runbook_steps WHERE run_id = ? AND status = ? AND pid IS NOT NULL",
                                (run_id, status)).fetchone():
                    return
            finally:
                conn.close()
        except (sqlite3.OperationalError, sqlite3.ProgrammingError):  # not made yet
            pass
        time.sleep(0.05)
    raise AssertionError("the step never started")


def test_the_example_runbook_validates_and_applies_to_disk_full_only(cli, monkeypatch):
    examples = Path(__file__).resolve().parents[1] / "examples" / "desk"
    monkeypatch.setenv("SDESK_CONFIG", str(examples))
    assert cli.json("runbook", "validate")["ok"] is True
    other = cli.new("Printer jammed")
    out = cli("runbook", "run", "clean-tmp", "--ticket", str(other), "--dry-run", ok=False)
    assert out.exit_code == ExitCode.CONFLICT and "does not apply to SD-1" in out.stderr


class RunLifecycle(RuleBasedStateMachine):
    """Runs started, approved (by the requester or not), rejected, under the kill switch, on
    tickets that share a CI: whatever the order, one CI never has two active runs, a refused
    run runs nothing, and only an approval by someone else lets a run go on."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.store = Store(Path(self.dir.name) / "desk.db")
        self.runbook = parse("throttle: {runs: 4, per: 1h}\nsteps:\n  - approve: Go?\n  - run: [true]\n"
                             "  - resolve: done\n", "gated.yaml", "gated")
        self.tickets = [tid for tid, _ in Intake(self.store).intake(
            [{"title": t, "kind": "incident", "priority": "P3", "ci": ci} for t, ci in (("a", "db-1"), ("b", "db-1"), ("c", "web-1"))],
            actor="t", source="cli")]

    def teardown(self):
        self.store.close()
        self.dir.cleanup()

    @rule(ticket=st.integers(0, 2), user=st.sampled_from(["alice", "bob"]))
    def start(self, ticket, user):
        try:
            start(self.store, prepare(self.store, self.runbook, self.tickets[ticket], {}), actor=user, dry_run=False)
        except (Conflict, BadInput):
            pass

    @rule(user=st.sampled_from(["alice", "bob"]))
    def approve(self, user):
        for run in self.store.runbooks.runs():
            if run["status"] == "waiting":
                try:
                    resume(self.store, self.runbook, run["id"], actor=user)
                except (Conflict, PermissionDenied):
                    pass
                return

    @rule()
    def reject(self):
        waiting = [r for r in self.store.runbooks.runs() if r["status"] == "waiting"]
        if waiting:
            self.store.runbooks.run_reject(waiting[-1]["id"], reason=None, actor="carol")

    @rule(off=st.booleans())
    def kill_switch(self, off):
        self.store.runbooks.runbook_switch("*", disabled=off, reason=None, actor="admin")

    @invariant()
    def one_active_run_per_ci_and_approvals_by_someone_else(self):
        if not hasattr(self, "store"):
            return
        active = [r["lock_key"] for r in self.store.runbooks.runs(limit=1000) if r["status"] in ("running", "waiting")]
        assert len(active) == len(set(active))
        for summary in self.store.runbooks.runs(limit=1000):
            run = self.store.runbooks.run_get(summary["id"])
            kinds = [(s["kind"], s["status"], s["actor"]) for s in run["steps"]]
            if run["status"] == "refused":
                assert kinds == []
            if any(k == "run" for k, _, _ in kinds):
                assert kinds[0][0] == "approve" and kinds[0][1] == "approved" and kinds[0][2] != run["actor"]
            if run["status"] == "rejected":
                assert all(k == "approve" for k, _, _ in kinds) or kinds == []


TestRunLifecycle = RunLifecycle.TestCase
TestRunLifecycle.settings = settings(max_examples=examples(25), stateful_step_count=12, deadline=None)


def test_a_rejected_queued_run_never_runs(desk, monkeypatch):
    marker = desk.tmp / "ran"
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: disk\n    match: {labels.alertname: DiskFull}\n    set: {runbook: cleanup}\n")
    desk.runbook("cleanup", f"safe_for_automation: true\nsteps:\n  - run: [touch, {json.dumps(str(marker))}]\n")
    monkeypatch.setenv("SDESK_RUN", "1")  # as from inside a runbook step: queued, not run here
    ticket = desk.new("Disk full", "-l", "alertname=DiskFull")
    monkeypatch.delenv("SDESK_RUN")
    [queued] = runs(desk, "--ticket", str(ticket))
    assert queued["status"] == "queued"
    desk("runbook", "reject", str(queued["id"]))
    desk("tick")
    assert not marker.exists() and runs(desk)[0]["status"] == "rejected"


def test_the_kill_switch_stops_a_run_between_steps(desk):
    marker = desk.tmp / "second-step"
    desk.runbook("two", f"""
steps:
  - run: [{PY}, -m, sdesk, runbook, disable, --all, --reason, mid-run]
  - run: [touch, {json.dumps(str(marker))}]
""")
    ticket = desk.new("x")
    result = desk.json("runbook", "run", "two", "--ticket", str(ticket), "--yes")
    assert result["status"] == "stopped" and "kill switch" in result["reason"] and not marker.exists()


@pytest.mark.parametrize("argv", [
    '[sh, -c, "systemctl restart {svc}"]',
    '[bash, -ec, "echo {svc}"]',
    '[ssh, -p, "22", db-1, systemctl, restart, "{svc}"]',
])
def test_a_parameter_may_not_reach_a_string_a_shell_reads(argv):
    refused = r"\{svc\} (is inside a longer argument|would be part of the remote command)"
    with pytest.raises(BadInput, match=refused):
        parse(f"params:\n  svc: {{from: title}}\nsteps:\n  - run: {argv}\n", "rb.yaml", "rb")
    # A pattern does not make it code-safe (whether a regex admits shell syntax is not checked).
    with pytest.raises(BadInput, match=refused):
        parse(f"params:\n  svc: {{from: title, pattern: '[a-z-]+'}}\nsteps:\n  - run: {argv}\n", "rb.yaml", "rb")
    # As an argument of its own (sh's $1, ssh's destination), it may.
    parse('params:\n  svc: {from: title}\nsteps:\n  - run: [sh, -c, \'echo "$1"\', sh, "{svc}"]\n'
          '  - run: [ssh, "{svc}", uptime]\n', "rb.yaml", "rb")


def test_values_that_would_be_options_secrets_or_out_of_range_are_refused(desk):
    desk.runbook("n", "params:\n  pid: {type: int, from: labels.pid}\n  url: {from: labels.url, required: false}\n"
                      "steps:\n  - run: [echo, '{pid}', '{url}']\n  - resolve: 'Signalled {pid}'\n")
    for label, message in [("pid=-1", "'-1' starts with '-'"), ("pid=99999999999999999999", "out of range"),
                           ("pid=12 url=https://u:hunter2pw@example.com/x", "parameter url: holds a secret")]:
        ticket = desk.new("x", *[arg for pair in label.split() for arg in ("-l", pair)])
        out = desk("runbook", "run", "n", "--ticket", str(ticket), "--yes", ok=False)
        assert out.exit_code == ExitCode.BAD_INPUT and message in out.stderr, out.stderr
    assert runs(desk) == []
    assert desk("runbook", "log", "99999999999999999999", ok=False).exit_code == ExitCode.BAD_INPUT


def test_an_approval_by_the_requester_under_another_spelling_is_refused(desk):
    desk.runbook("gated", "steps:\n  - approve: Go?\n  - run: [\"true\"]\n")
    ticket = desk.new("x")
    run = desk.json("--as", "alice", "runbook", "run", "gated", "--ticket", str(ticket), "--yes")
    assert desk("--as", " Alice", "runbook", "approve", str(run["id"]), ok=False).exit_code == ExitCode.PERMISSION


def test_one_huge_line_of_output_is_kept_within_the_cap(desk):
    desk.runbook("flood", f"steps:\n  - run: [{PY}, -c, \"import sys; sys.stdout.write('y' * 20_000_000)\"]\n")
    ticket = desk.new("x")
    [step] = desk.json("runbook", "run", "flood", "--ticket", str(ticket), "--yes")["steps"]
    assert step["output"].startswith("yyyy") and step["output"].endswith("yyyy")
    assert "bytes cut" in step["output"] and len(step["output"]) <= 64 * 1024 + 100
