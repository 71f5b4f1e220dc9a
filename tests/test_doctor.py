"""`sdesk doctor` on a healthy desk and on each fault made for real; and the deployment files of
examples/deploy (every command and option they run is sdesk's, the units verify), and `serve`
refusing to listen beyond loopback with no token."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rawdb
from typer.main import get_command

from sdesk.cli import app
from sdesk.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "examples" / "deploy"
T0 = "2026-12-01T09:00:00Z"


def checks(cli, *args, ok=True) -> dict[str, list[tuple[str, str]]]:
    """doctor --json as check -> [(status, detail)], with the exit code it must have."""
    import json

    result = cli("doctor", "--json", *args, ok=ok)
    assert "Traceback" not in result.stderr
    found: dict[str, list[tuple[str, str]]] = {}
    for f in json.loads(result.stdout):
        assert set(f) == {"check", "status", "detail"} and f["status"] in ("ok", "warn", "fail"), f
        found.setdefault(f["check"], []).append((f["status"], f["detail"]))
    return found


def status(found, check: str) -> str:
    """The worst status of a check."""
    return max((s for s, _ in found[check]), key=("ok", "warn", "fail").index)


@pytest.fixture
def desk(cli, tmp_path, monkeypatch):
    """A healthy desk: the example config with a notifier, an admin, a tick and a backup."""
    config = tmp_path / "config"
    shutil.rmtree(config)
    shutil.copytree(ROOT / "examples" / "desk", config)
    oncall = config / "oncall.yaml"
    if not re.search(r"^notifier:", oncall.read_text(), re.M):
        oncall.write_text(oncall.read_text() + "\nnotifier:\n  command: [/bin/true]\n")
    monkeypatch.setenv("TZ", "Europe/London")
    cli("user", "add", "tester", "--role", "admin", "--email", "tester@example.com")
    cli("tick")
    cli("backup", str(tmp_path / "backup.db"))
    return config


def test_a_healthy_desk_is_all_ok_and_exits_0(cli, desk, db_path, tmp_path):
    found = checks(cli)
    assert {c: status(found, c) for c in found} == dict.fromkeys(found, "ok"), found
    assert {"database", "schema", "wal", "writable", "size", "config", "paging", "tick", "backup", "anchor", "roles",
            "tokens", "clock"} <= set(found)
    out = cli("doctor").stdout.splitlines()
    assert out[0] == f"ok: all {len(found)} checks ok"
    paths = (str(db_path), str(tmp_path))  # the desk's file or URL, the backup's file
    assert all(len(line) <= 80 or any(p in line for p in paths) for line in out), out  # only a path is not broken
    checks_at = next(i for i, line in enumerate(out) if line.startswith("ok    database"))
    assert all(re.match(r"ok {4}\w+ +\S| {16}\S", line) for line in out[checks_at:]), out  # one line a check


def _no_notifier(config, cli, monkeypatch):
    text = (config / "oncall.yaml").read_text()
    (config / "oncall.yaml").write_text(text[:text.index("\nnotifier:")] if "\nnotifier:" in text else text)


def _broken_yaml(config, cli, monkeypatch):
    (config / "sla.yaml").write_text("policies: [\n")


def _broken_oncall(config, cli, monkeypatch):
    (config / "oncall.yaml").write_text("teams:\n  - name: ops\n    members: []\n")


def _broken_roles(config, cli, monkeypatch):
    (config / "roles.yaml").write_text("default_role: boss\n")


def _broken_runbook(config, cli, monkeypatch):
    (config / "runbooks" / "broken.yaml").write_text("name: broken\nsteps: 3\n")


def _missing_config(config, cli, monkeypatch):
    monkeypatch.setenv("SDESK_CONFIG", str(config.parent / "no-such-config"))


def _stale_tick_with_a_p1(config, cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", T0)
    cli("tick")
    cli.new("checkout down", "-p", "P1")
    monkeypatch.setenv("SDESK_NOW", "2026-12-01T09:11:00Z")


def _old_backup(config, cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", T0)
    cli("backup", str(config.parent / "old.db"))
    cli("tick")
    monkeypatch.setenv("SDESK_NOW", "2026-12-08T09:05:00Z")
    cli("tick")


def _no_oncall_with_a_p2(config, cli, monkeypatch):
    (config / "oncall.yaml").unlink()
    cli.new("disk filling on db-3", "-p", "P2")


def _not_a_desk(config, cli, monkeypatch):
    if rawdb.is_pg(os.environ["SDESK_DB"]):  # a database of someone else's: tables of its own, no sdesk schema
        rawdb.tamper(os.environ["SDESK_DB"], "DROP TABLE sdesk_schema")
        return
    db = config.parent / "desk.db"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    db.write_text("notes, not a desk\n")


def _notifier_not_found(config, cli, monkeypatch):
    text = (config / "oncall.yaml").read_text()
    (config / "oncall.yaml").write_text(text.replace("command: [/bin/true]", "command: [/nonexistent/notify]"))


def _pages_not_getting_through(config, cli, monkeypatch):
    text = (config / "oncall.yaml").read_text()
    (config / "oncall.yaml").write_text(text.replace("command: [/bin/true]", "command: [/bin/false]"))
    monkeypatch.setenv("SDESK_NOW", T0)
    cli.new("checkout down", "-p", "P1", "--service", "checkout")
    cli("tick", ok=False)
    monkeypatch.setenv("SDESK_NOW", "2026-12-01T09:02:00Z")
    cli("tick", ok=False)


# fault -> (the check that must say so, its status)
FAULTS = {
    _not_a_desk: ("database", "fail"),
    _no_notifier: ("paging", "fail"),
    _broken_yaml: ("config", "fail"),
    _broken_roles: ("config", "fail"),
    _broken_oncall: ("paging", "fail"),
    _broken_runbook: ("config", "fail"),
    _missing_config: ("config", "fail"),
    _stale_tick_with_a_p1: ("tick", "fail"),
    _old_backup: ("backup", "fail"),
    _no_oncall_with_a_p2: ("paging", "fail"),
    _notifier_not_found: ("paging", "fail"),
    _pages_not_getting_through: ("paging", "fail"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=[f.__name__.strip("_") for f in FAULTS])
def test_each_fault_fails_its_check_and_exits_1(cli, desk, monkeypatch, fault):
    fault(desk, cli, monkeypatch)
    check, expected = FAULTS[fault]
    found = checks(cli, ok=False)
    assert status(found, check) == expected, found[check]
    result = cli("doctor", ok=False)
    assert result.exit_code == ExitCode.ERROR
    assert result.stdout.startswith("fail: ")
    # The headline sums up the checks and names the failing one; it is not the database's line.
    failing = [c for c in found if status(found, c) == "fail"]
    assert re.match(rf"fail: {len(failing)} of {len(found)} checks? failed: {', '.join(failing)}\b",
                    result.stdout), result.stdout
    assert "sdesk doctor" not in result.stdout  # doctor does not send its reader to doctor
    details = [d for check in found.values() for _, d in check]
    assert len(details) == len(set(details)), found  # one cause, one line
    assert re.search(rf"^fail  {check} ", result.stdout, re.M), result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and check in errors[0], result.stderr
    if fault in (_broken_roles, _missing_config):  # the desk still opens, so its other checks still run
        assert status(found, "database") == "ok" and "tick" in found


def _tick_late_nothing_urgent(config, cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", T0)
    cli("tick")
    cli("backup", str(config.parent / "b.db"))
    monkeypatch.setenv("SDESK_NOW", "2026-12-01T09:30:00Z")


def _no_users(config, cli, monkeypatch):
    cli("user", "remove", "tester")  # the only user, so the desk is open again


def _bogus_tz(config, cli, monkeypatch):
    monkeypatch.setenv("TZ", "Mars/Olympus_Mons")


def _viewer_token(config, cli, monkeypatch):
    cli("user", "add", "grafana", "--role", "viewer")
    cli("user", "token", "grafana")


def _misspelt_file(config, cli, monkeypatch):
    (config / "oncal.yaml").write_text((config / "oncall.yaml").read_text())


def _backup_late(config, cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", T0)
    cli("backup", str(config.parent / "b.db"))
    monkeypatch.setenv("SDESK_NOW", "2026-12-02T12:00:00Z")
    cli("tick")


def _not_wal(config, cli, monkeypatch):
    import sqlite3

    conn = sqlite3.connect(config.parent / "desk.db")
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    conn.close()


WARNINGS = {
    _not_wal: "wal",
    _tick_late_nothing_urgent: "tick",
    _no_users: "roles",
    _bogus_tz: "clock",
    _viewer_token: "tokens",
    _misspelt_file: "config",
    _backup_late: "backup",
}


@pytest.mark.parametrize("fault", [pytest.param(f, marks=pytest.mark.sqlite_only("SQLite's journal mode")) if f is _not_wal
                                   else f for f in WARNINGS], ids=[f.__name__.strip("_") for f in WARNINGS])
def test_what_works_but_needs_setting_up_warns_and_exits_0(cli, desk, monkeypatch, fault):
    fault(desk, cli, monkeypatch)
    found = checks(cli)
    assert status(found, WARNINGS[fault]) == "warn", found[WARNINGS[fault]]
    assert not any(s == "fail" for check in found.values() for s, _ in check), found


def test_a_fresh_desk_with_no_config_only_warns(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("SDESK_CONFIG")
    cli("init")
    found = checks(cli)
    assert status(found, "config") == "warn" and status(found, "paging") == "warn"
    assert status(found, "tick") == "warn" and status(found, "backup") == "warn"


def test_one_broken_file_is_one_config_line_and_one_file_loads(cli, tmp_path):
    """A folder holding only a broken oncall.yaml: its error, not also "no desk files in it"; a
    folder holding one good file says it "loads"; a warning is named in the headline."""
    cli("init")
    config = tmp_path / "config"
    (config / "oncall.yaml").write_text("teams: [\n")
    found = checks(cli, ok=False)
    assert [s for s, _ in found["config"]] == ["fail"], found["config"]
    (config / "oncall.yaml").unlink()
    (config / "sla.yaml").write_text("policies:\n  - {name: all, priority: P1, respond: 15m, resolve: 4h}\n")
    found = checks(cli)
    assert found["config"] == [("ok", f"{config}: sla.yaml loads")], found["config"]
    out = cli("doctor").stdout
    warned = [c for c in found if status(found, c) == "warn"]
    assert out.splitlines()[0].startswith(f"ok: {len(found) - len(warned)} of {len(found)} checks ok; "
                                          f"{len(warned)} warned: {warned[0]}"), out


@pytest.mark.parametrize("name", ["sla", "triage", "metrics", "intake"])
def test_tick_and_doctor_say_the_same_of_a_desk_file_that_does_not_load(cli, tmp_path, name):
    """One loading of the desk files (Desk.desk_files) for both: the line tick warns of (and
    exits 1 for, the pages still go) is the line doctor fails the config check with."""
    import json

    cli("init")
    (tmp_path / "config" / f"{name}.yaml").write_text("nonsense: [\n")
    ticked = cli("tick", "--json", ok=False)
    assert ticked.exit_code == ExitCode.ERROR and "Traceback" not in ticked.stderr
    [error] = json.loads(ticked.stdout)["config_errors"]
    failed = [detail for s, detail in checks(cli, ok=False)["config"] if s == "fail"]
    assert failed == [error.rsplit("; ", 1)[0]] and f"{name}.yaml" in error, (failed, error)


def test_tick_backup_and_anchor_record_when_they_ran(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", T0)
    cli("init")
    found = checks(cli)
    assert "never ran" in found["tick"][0][1] and "no backup" in found["backup"][0][1]
    cli("tick")
    cli("backup", str(tmp_path / "b.db"))
    cli("audit", "anchor")
    monkeypatch.setenv("SDESK_NOW", "2026-12-01T09:03:00Z")
    found = checks(cli)
    assert found["tick"] == [("ok", "sdesk tick last ran 3 minutes ago")]
    assert found["backup"] == [("ok", f"last backup 3 minutes ago (to {tmp_path / 'b.db'})")]
    assert found["anchor"] == [("ok", "last audit anchor 3 minutes ago")]


# -- deployment ---------------------------------------------------------------------------------


def _sdesk_commands(argv: list[str]) -> list[list[str]]:
    """The sdesk command lines in one ExecStart or cron command (through sh -c, after &&)."""
    if len(argv) >= 3 and argv[0].endswith("sh") and argv[1] == "-c":
        return _sdesk_commands(shlex.split(argv[2]))
    found, current, start = [], None, True
    for word in argv:
        if word in ("&&", "||", ";", "|"):
            current, start = None, True
        elif start and word == "exec":
            continue
        elif start and (word == "sdesk" or word.endswith("/bin/sdesk")):
            current, start = [], False
            found.append(current)
        else:
            start = False
            if current is not None:
                current.append(word)
    return found


def _deployed_commands() -> list[tuple[str, list[str]]]:
    lines = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("ExecStart", "ExecStartPre", "ExecStartPost"):
                lines.append((unit.name, shlex.split(value.lstrip("-@+!").replace("%%", "%"))))
    for line in (DEPLOY / "crontab").read_text().splitlines():
        if line.strip() and not line.startswith("#") and not re.match(r"^\w+=", line):
            fields = line.split(None, 5)
            lines.append(("crontab", shlex.split(fields[5].replace("\\%", "%"))))
    return [(where, command) for where, argv in lines for command in _sdesk_commands(argv)]


def test_every_deployed_command_and_option_is_sdesks(cli):
    deployed = _deployed_commands()
    assert {" ".join(c[:2]) if c[0] == "audit" else c[0] for _, c in deployed} >= {"tick", "serve", "backup",
                                                                                     "audit anchor"}
    root = get_command(app)
    for where, argv in deployed:
        command, path, rest = root, [], list(argv)
        options = {o for p in root.params for o in p.opts}
        while hasattr(command, "list_commands") and rest:  # a group (Typer's own click: no isinstance)
            if rest[0].startswith("-"):  # a global option before the command, and its value
                assert rest[0] in options, (where, argv)
                rest = rest[2:]
                continue
            sub = command.get_command(None, rest[0])  # Groups look names up without a context
            assert sub is not None, f"{where}: sdesk has no command {' '.join([*path, rest[0]])}"
            command, path, rest = sub, [*path, rest[0]], rest[1:]
        options |= {o for p in command.params for o in p.opts}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{where}: sdesk {' '.join(path)} has no option {word}"
        cli(*path, "--help")


def test_the_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    sdesk = Path(sys.executable).parent / "sdesk"
    if not sdesk.exists():
        pytest.skip(f"no sdesk script beside {sys.executable} to stand for /opt/sdesk/bin/sdesk")
    units = tmp_path / "units"
    units.mkdir()
    for unit in (DEPLOY / "systemd").iterdir():  # installed as the README says, at /opt/sdesk
        (units / unit.name).write_text(unit.read_text().replace("/opt/sdesk/bin/sdesk", str(sdesk)))
    result = subprocess.run([analyze, "verify", *sorted(str(p) for p in units.iterdir())],
                            capture_output=True, text=True, cwd=units)
    assert result.returncode == 0 and "Unknown" not in result.stderr, result.stderr
    timers = {p.stem for p in (DEPLOY / "systemd").glob("*.timer")}
    assert timers == {"sdesk-tick", "sdesk-backup", "sdesk-anchor"}
    assert "OnCalendar=*-*-* *:*:00" in (DEPLOY / "systemd" / "sdesk-tick.timer").read_text()  # every minute


def _serve(db: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sdesk", "--db", str(db), "serve", *args],
                            env={**os.environ, "SDESK_SERVE_TOKEN": ""}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "desk.example.com"])
def test_serve_beyond_loopback_without_a_token_is_refused_at_once(cli, db_path, host):
    from test_serve import free_port

    cli("init")
    port = free_port()
    proc = _serve(db_path, "--host", host, "--port", str(port))
    try:
        assert proc.wait(timeout=120) == ExitCode.BAD_INPUT  # it returns: it never started listening
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert stderr.startswith(f"error: serve --host {host}: this desk has no API token") and "--insecure" in stderr
    assert "listening" not in stderr and len(stderr.splitlines()) == 1, stderr


def test_serve_beyond_loopback_listens_with_a_token_or_insecure(cli, db_path, tmp_path):
    from test_serve import Server

    cli("init")
    server = Server(db_path, "--host", "0.0.0.0", "--insecure", env={"SDESK_SERVE_TOKEN": ""})
    try:
        assert server.get("/healthz")[0] == 200
    finally:
        server.stop()
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "token", "tester")
    server = Server(db_path, "--host", "0.0.0.0", env={"SDESK_SERVE_TOKEN": ""})
    try:
        assert server.post("/tickets", b'{"title": "x"}')[0] == 401  # tokens required
    finally:
        server.stop()
