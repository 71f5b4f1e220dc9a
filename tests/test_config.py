"""The desk config (intake.yaml) changes intake as documented; a bad file is one clear line."""

import json

import pytest

from sdesk.errors import ExitCode


@pytest.fixture
def config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
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
