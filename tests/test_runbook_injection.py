"""Commands from ticket text (issue 18, item 1): a runbook parameter reaches a program only as
one whole argv element that no interpreter runs as code, never as an option; `runbook validate`
refuses every other use with the file, the line and a rewrite; and random argv shapes with
hostile titles never run anything but the intended program."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.errors import BadInput, ExitCode
from sdesk.runbooks import parse
from sdesk.runner import prepare, start
from sdesk.store import Store


@pytest.fixture
def desk(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli.config, cli.tmp = config, tmp_path
    return cli


# The shapes of the issue: each ran a `touch` from a ticket title, and validate accepted it.
ISSUE_SHAPES = [
    '[bash, -o, pipefail, -c, "echo checking {t} | tr a-z A-Z"]',
    '[sh, -c, --, "echo {t}"]',
    '[bash, +e, -c, "echo {t}"]',
    '[env, sh, -c, "echo {t}"]',
    '''[python3, -c, "print('{t}')"]''',
]


def test_the_printer_queue_email_runs_no_command_from_its_subject(desk):
    """The issue's reproduction, end to end: an email from a stranger, a triage rule, a runbook
    safe for automation. Its runbook no longer loads (validate says why, with the line), so the
    queued run is refused and nothing from the subject runs."""
    marker = desk.tmp / "PWNED"
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: printers\n    match: {title: {contains: printer}}\n    set: {runbook: printer-queue}\n")
    (desk.config / "runbooks" / "printer-queue.yaml").write_text(
        "name: printer-queue\nsafe_for_automation: true\nparams:\n  subject: {from: title}\nsteps:\n"
        "  - id: show-queue\n    run: [bash, -o, pipefail, -c, \"echo checking {subject} | tr a-z A-Z\"]\n")
    email = (f"From: stranger@internet.example\r\nSubject: printer broken; touch {marker} #\r\n"
             "Message-ID: <p1@x>\r\n\r\nhelp\r\n")
    desk("new", "--format", "email", "-", input=email, ok=False)
    assert not marker.exists()
    out = desk("runbook", "validate", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT
    assert "printer-queue.yaml:7: step show-queue: run: {subject}" in out.stderr
    assert '"$SDESK_PARAM_SUBJECT"' in out.stderr
    assert """[bash, -o, pipefail, -c, 'echo checking "$1" | tr a-z A-Z', bash, "{subject}"]""" in out.stderr


def test_the_rewritten_printer_queue_runs_the_subject_as_data(desk):
    """The rewrite validate suggests: the subject is $1 of the script, and the same email only
    prints its subject."""
    marker = desk.tmp / "PWNED"
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: printers\n    match: {title: {contains: printer}}\n    set: {runbook: printer-queue}\n")
    (desk.config / "runbooks" / "printer-queue.yaml").write_text(
        "name: printer-queue\nsafe_for_automation: true\nparams:\n  subject: {from: title}\nsteps:\n"
        "  - id: show-queue\n    run: [bash, -o, pipefail, -c, 'echo checking \"$1\" | tr a-z A-Z', bash, \"{subject}\"]\n"
        "  - id: from-env\n    run: [sh, -c, 'echo \"$SDESK_PARAM_SUBJECT\"']\n")
    assert desk.json("runbook", "validate")["ok"] is True
    email = (f"From: stranger@internet.example\r\nSubject: printer broken; touch {marker} #\r\n"
             "Message-ID: <p1@x>\r\n\r\nhelp\r\n")
    desk("new", "--format", "email", "-", input=email)
    [run] = desk.json("runbook", "runs")
    assert run["status"] == "succeeded" and run["automated"] and not marker.exists()
    steps = desk.json("runbook", "log", str(run["id"]))["steps"]
    assert steps[0]["output"] == f"CHECKING PRINTER BROKEN; TOUCH {str(marker).upper()} #\n"
    assert steps[1]["output"] == f"printer broken; touch {marker} #\n"


@pytest.mark.parametrize("shape", ISSUE_SHAPES)
def test_each_shape_of_the_issue_is_refused_with_its_line_and_never_runs(desk, shape):
    marker = desk.tmp / "M"
    (desk.config / "runbooks" / "rb.yaml").write_text(
        f"params:\n  t: {{from: title}}\nsteps:\n  - id: go\n    run: {shape}\n")
    out = desk("runbook", "validate", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "rb.yaml:5: step go: run: {t}" in out.stderr, out.stderr
    ticket = desk.new(f"x; touch {marker}; $(touch {marker}); print(__import__('os').system('touch {marker}'))")
    out = desk("runbook", "run", "rb", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "rb.yaml:5:" in out.stderr
    assert not marker.exists() and desk.json("runbook", "runs") == []
