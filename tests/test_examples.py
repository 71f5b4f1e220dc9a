"""Every example the project ships runs or loads, and says what it does (issue 19, items 24
and 25): the example runbooks validate, say where they run, and dry-run on a fresh machine
without ssh; the Grafana dashboard queries only metrics `sdesk metrics --prom` emits; the
README's `new --json` sample is the real output; roles.yaml and the docs' commands are real."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from sdesk.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DESK = EXAMPLES / "desk"


@pytest.fixture
def desk(cli, tmp_path, monkeypatch):
    """The example config on a fresh desk, with a DiskFull alert from db-billing-2:9100 (SD-1),
    and an `ssh` on PATH that records how it was called and fails (no ssh access here)."""
    monkeypatch.setenv("SDESK_CONFIG", str(DESK))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-calls"
    ssh = bin_dir / "ssh"
    ssh.write_text(f"#!{sys.executable}\nimport json, sys\n"
                   f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\nsys.exit(255)\n")
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cli("new", "--format", "alertmanager", str(EXAMPLES / "demo" / "alertmanager-firing.json"))
    cli.calls = lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return cli


def test_the_example_runbooks_validate_and_say_where_they_run(desk):
    assert desk.json("runbook", "validate")["ok"] is True
    local = (DESK / "runbooks" / "clean-tmp.yaml").read_text()
    remote = (DESK / "runbooks" / "clean-tmp-ssh.yaml").read_text()
    assert "on this machine" in local and "ssh" not in re.sub(r"#.*", "", local)
    # The remote one reaches the alert's host only through ssh, and its question names that host.
    assert "over ssh" in remote
    # Triage attaches the remote one to a disk-full alert: it is about that alert's host.
    assert desk.json("show", "SD-1")["runbook"] == "clean-tmp-ssh"


def test_the_local_runbook_dry_runs_on_a_fresh_machine_and_changes_nothing(desk, tmp_path):
    folder = tmp_path / "never-made" / "scratch"
    run = desk.json("runbook", "run", "clean-tmp", "--ticket", "SD-1", "--dry-run", "-p", f"folder={folder}")
    assert run["status"] == "succeeded" and not folder.parent.exists()
    default = desk.json("runbook", "run", "clean-tmp", "--ticket", "SD-1", "--dry-run")
    assert default["status"] == "succeeded"
    assert "on this machine" in desk("runbook", "show", "clean-tmp").stdout


def test_the_local_runbook_deletes_only_old_files_in_its_folder_after_approval(desk, tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    (folder / "old.tmp").write_text("x")
    os.utime(folder / "old.tmp", (1e9, 1e9))  # 2001: older than 7 days whatever the clock says
    (folder / "new.tmp").write_text("x")
    waiting = desk.json("--as", "alice", "runbook", "run", "clean-tmp", "--ticket", "SD-1", "-p", f"folder={folder}",
                        "--yes")
    assert waiting["status"] == "waiting" and (folder / "old.tmp").exists()
    done = desk.json("--as", "dave", "runbook", "approve", str(waiting["id"]))
    assert done["status"] == "succeeded" and sorted(p.name for p in folder.iterdir()) == ["new.tmp"]
    assert desk.json("show", "SD-1")["status"] == "resolved"


def test_the_ssh_runbook_dry_runs_without_ssh_and_sends_only_the_validated_host(desk):
    dry = desk("runbook", "run", "clean-tmp-ssh", "--ticket", "SD-1", "--dry-run")
    assert dry.exit_code == 0 and desk.calls() == []  # no ssh in a dry run
    assert "would run on db-billing-2 (over ssh)" in dry.stdout + dry.stderr
    # A real run goes as far as ssh (which fails here: no access), with the host alone as data.
    failed = desk("--as", "alice", "runbook", "run", "clean-tmp-ssh", "--ticket", "SD-1", "--yes", ok=False)
    assert failed.exit_code == ExitCode.ERROR and "failed: step usage-before (exit 255)" in failed.stderr
    [first, *_] = desk.calls()
    assert first[-2:] == ["db-billing-2", "df -h /var/tmp/scratch"] and first[-3] == "--"
    # A host that is not a host name never reaches ssh.
    bad = desk.new("disk full", "-l", "alertname=DiskFull", "-l", "instance=-oProxyCommand=touch x")
    before = len(desk.calls())
    refused = desk("runbook", "run", "clean-tmp-ssh", "--ticket", str(bad), "--dry-run", ok=False)
    assert refused.exit_code == ExitCode.BAD_INPUT and "host" in refused.stderr and len(desk.calls()) == before


# -- item 25: the Grafana dashboard, the README's `new --json`, roles.yaml, the docs -------------------------


def dashboard_queries():
    """Every PromQL expr of the shipped dashboard (panels in rows included)."""
    data = json.loads((EXAMPLES / "grafana" / "sdesk-dashboard.json").read_text())
    found = []

    def walk(panels):
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(data["panels"])
    return found


SELECTOR = re.compile(r"\b(sdesk_[a-z_]+)\s*(?:\{([^}]*)\})?")


def test_the_grafana_dashboard_queries_only_metrics_and_labels_sdesk_emits(cli, tmp_path, monkeypatch):
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setenv("SDESK_CONFIG", str(DESK))
    demo = tmp_path / "demo.db"
    cli("demo", "--db", str(demo))
    text = cli("--db", str(demo), "metrics", "--prom").stdout
    emitted = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            emitted.setdefault(sample.name, set()).update(sample.labels)
    queries = dashboard_queries()
    assert len(queries) >= 15
    used = set()
    for expr in queries:
        selectors = SELECTOR.findall(expr)
        assert selectors, f"{expr!r} names no sdesk metric"
        for name, matchers in selectors:
            assert name in emitted, f"{expr!r}: sdesk metrics --prom emits no {name}"
            labels = {m.split("=")[0].rstrip("!~").strip() for m in matchers.split(",") if m.strip()}
            # A matcher on a label sdesk never sets matches nothing ({priority=""} aside: "unset").
            for label in labels:
                assert label in emitted[name] or re.search(rf'\b{label}\s*=\s*""', matchers), \
                    f"{expr!r}: {name} has no label {label}"
            used.add(name)
    # The dashboard covers the KPIs people ask for first.
    assert {"sdesk_tickets_created", "sdesk_time_to_acknowledge_seconds", "sdesk_sla_compliance_ratio",
            "sdesk_pages_per_week", "sdesk_slo_budget_used_ratio"} <= used


def readme_new_json_sample():
    """The command and the output lines of the README's `new --json` doc-test block."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- doc-test: new --json", 1)[1].split("```console\n", 1)[1].split("```", 1)[0]
    [command, *output] = block.strip().splitlines()
    assert command.startswith("$ ")
    return command[2:], [json.loads(line) for line in output]


def test_the_readme_new_json_sample_is_what_sdesk_prints(tmp_path):
    import subprocess

    command, shown = readme_new_json_sample()
    assert "sdesk new" in command and "--json" in command
    sdesk = Path(sys.executable).parent / "sdesk"
    runner = str(sdesk) if sdesk.exists() else f"{sys.executable} -m sdesk"
    env = {**os.environ, "SDESK_DB": str(tmp_path / "doc.db")}
    result = subprocess.run(["sh", "-c", command.replace("sdesk new", f"{runner} new", 1)], env=env,
                            capture_output=True, text=True, timeout=120)
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(p) for p in printed] == [list(s) for s in shown]  # the same keys, in the same order
    assert printed == shown  # a fresh desk: the same ids and actions too
    # The README's text names the same keys as the sample.
    keys = {k for record in shown for k in record}
    prose = (ROOT / "README.md").read_text().split("<!-- doc-test: new --json")[0][-800:]
    assert all(f"`{k}`" in prose for k in keys)


def test_the_example_roles_file_loads_and_its_default_applies(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    text = (DESK / "roles.yaml").read_text()
    (config / "roles.yaml").write_text(text)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli("--as", "root", "user", "add", "root", "--role", "admin")
    cli("--as", "stranger", "new", "the example's default: agent")
    # The file's own advice, taken: viewer makes strangers read-only.
    (config / "roles.yaml").write_text(text.replace("default_role: agent", "default_role: viewer"))
    assert cli("--as", "stranger", "new", "refused", ok=False).exit_code == ExitCode.PERMISSION
    assert "default_role: agent" in text and "sdesk user add" in text


DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_the_docs_link_to_files_that_exist_and_run_real_commands(cli, page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name}: link to missing {target}"
    commands = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = line.split("#")[0].split()
            while "sdesk" in words:
                words = words[words.index("sdesk") + 1:]
                while words and words[0] in ("--db", "--as", "--config"):
                    words = words[2:]
                if words and re.fullmatch(r"[a-z]+", words[0]):
                    sub = words[1] if len(words) > 1 and re.fullmatch(r"[a-z]+", words[1]) else None
                    commands.add((words[0], sub))
    assert commands or "```" not in text, f"{page.name}: code blocks but no sdesk command read from them"
    for command, sub in sorted(commands):
        if sub and cli(command, sub, "--help", ok=False).exit_code == 0:
            continue
        assert cli(command, "--help", ok=False).exit_code == 0, f"{page.name}: no command sdesk {command}"


def test_pyproject_cites_only_files_in_the_repository():
    text = (ROOT / "pyproject.toml").read_text()
    for cited in re.findall(r"\b([\w./-]+\.md)\b", text):
        assert (ROOT / cited).exists(), f"pyproject.toml cites {cited}, which is not in the repository"
