"""`sdesk serve` as a real server on loopback: routes, auth, limits, rejects, PagerDuty answers,
and the real Alertmanager (Debian's prometheus-alertmanager) posting to it."""

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sdesk.errors import (
    AuditBroken,
    BadInput,
    Conflict,
    InvalidTransition,
    NotFound,
    NotSdesk,
    PatternError,
    PermissionDenied,
    ReadOnly,
    SchemaTooNew,
    SdeskError,
    StoreFault,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    def __init__(self, db: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sdesk", "--db", str(db), "serve", "--port", str(self.port), *args],
            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def up():
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode()
                return False

        wait_for(up, what="sdesk serve to listen")

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.status, json.loads(r.read())

    def post(self, path, body: bytes, headers=None):
        return self.send(path, body, headers)[:2]

    def send(self, path, body: bytes | None, headers=None, method="POST"):
        """(status, the JSON answer, the response's headers)"""
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read()), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), e.headers

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def server(db_path, tmp_path):
    # Rejected bodies go beside the database file; a desk on a server has no "beside" (they would
    # go to sdesk's data folder): the test's own folder, named.
    s = Server(db_path, *(("--rejects", str(tmp_path / "rejects")) if isinstance(db_path, str) else ()))
    yield s
    s.stop()


def rows(db, sql):
    """The rows `sql` reads from the desk `db`: its SQLite file, or its PostgreSQL database (a URL),
    through sdesk's adapter (the same SQL, `?` placeholders)."""
    if isinstance(db, str) and db.startswith("postgresql:"):
        from sdesk.storage import pg

        conn = pg.connect(db)
    else:
        conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def json_get(db, column, path):
    """SQL for a JSON field of `column` on the desk's backend (the dialect's own)."""
    from sdesk.storage.dialect import POSTGRESQL, SQLITE

    postgres = isinstance(db, str) and db.startswith("postgresql:")
    return (POSTGRESQL if postgres else SQLITE).json_get(column, path)


def count(db, sql):
    return rows(db, sql)[0][0]


def test_routes_take_each_format(server):
    alert = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Down", "instance": "web-1", "severity": "critical"},
         "annotations": {"summary": "web-1 is down"}}]}
    status, body = server.post("/alertmanager", json.dumps(alert).encode())
    assert status == 200 and body["results"][0]["action"] == "created"
    status, body = server.post("/tickets", json.dumps({"title": "From a script", "priority": "P2"}).encode())
    assert status == 200 and body["results"][0]["action"] == "created"
    mail = b"From: ann@example.com\nSubject: Need a monitor\nMessage-ID: <m1@x>\n\nA second screen please.\n"
    status, body = server.post("/email", mail)
    assert status == 200 and body["results"][0]["format"] == "email"
    grafana = {"ruleName": "CPU", "ruleId": 7, "state": "alerting", "message": "cpu high"}
    assert server.post("/grafana", json.dumps(grafana).encode())[0] == 200
    assert count(server.db, "SELECT count(*) FROM tickets") == 4
    assert count(server.db, "SELECT count(*) FROM alerts") == 2


def test_pagerduty_compatible_enqueue(server):
    event = {"routing_key": "k", "dedup_key": "disk-db1", "event_action": "trigger",
             "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "error"}}
    status, body = server.post("/v2/enqueue", json.dumps(event).encode())
    assert (status, body) == (202, {"status": "success", "message": "Event processed", "dedup_key": "disk-db1"})
    status, body = server.post("/v2/enqueue", json.dumps({"routing_key": "k", "event_action": "resolve"}).encode())
    assert status == 400 and body["status"] == "invalid event" and "dedup_key" in body["message"]


def test_pagerduty_acknowledge_assigns_nobody_and_names_its_source(tmp_path, db_path):
    """An acknowledge sent through `serve` says someone saw it in PagerDuty, not who: the ticket
    is acknowledged, stays unassigned (not given to the user `serve` runs as), and its history
    shows PagerDuty as who acknowledged it; audit verify rebuilds the same row from the events."""
    db = db_path
    s = Server(db, env={"SDESK_USER": "root"})
    try:
        def send(action, **extra):
            event = {"routing_key": "k", "dedup_key": "disk-db1", "event_action": action, **extra}
            return s.post("/v2/enqueue", json.dumps(event).encode())

        assert send("trigger", payload={"summary": "Disk full on db-1", "source": "db-1", "severity": "error"})[0] == 202
        assert send("acknowledge")[0] == 202
    finally:
        s.stop()
    env = {**os.environ, "SDESK_USER": "tester"}
    shown = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), "show", "SD-1", "--json"],
                           env=env, capture_output=True, text=True, check=True)
    t = json.loads(shown.stdout)
    assert t["status"] == "acknowledged" and t["acknowledged_at"]
    assert t["assignee"] is None, f"acknowledged through serve and assigned to {t['assignee']}"
    [(actor, data)] = [(actor, json.loads(d)) for actor, d in rows(db,
        f"SELECT actor, data FROM events WHERE kind = 'status_changed' AND {json_get(db, 'data', '$.action')} = 'ack'")]
    assert actor == "pagerduty" and data["assignee"] is None and data["received_by"] == "root"
    verified = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), "audit", "verify"],
                              env=env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_malformed_bodies_get_400_and_are_kept_for_replay(server, tmp_path):
    status, body = server.post("/alertmanager", b'{"alerts": [')
    assert status == 400 and body["error"].startswith("invalid JSON")
    kept = list((tmp_path / "rejects").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == b'{"alerts": ['
    assert count(server.db, "SELECT count(*) FROM tickets") == 0


def test_each_refusal_answers_its_error_classs_status_and_message_as_json(tmp_path, db_path):
    """serve answered 400 for every refusal it made, plain text for a wrong URL, and a 500 for an
    sdesk error it did not expect: each answer is now the error class's http_status (errors.py)
    with the message the CLI would print, as JSON."""
    db = db_path
    def sdesk(*args):
        return subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), *args], env={**os.environ,
                              "SDESK_USER": "tester"}, check=True, capture_output=True, text=True).stdout.strip()

    for name, role in (("tester", "admin"), ("vic", "viewer"), ("amy", "agent")):
        sdesk("user", "add", name, "--role", role)
    viewer, agent = ({"Authorization": f"Bearer {sdesk('user', 'token', who)}"} for who in ("vic", "amy"))
    s = Server(db)
    try:
        status, answer, _ = s.send("/alertmanagr", b"{}", agent)  # a sender's URL with a typo
        assert status == 404
        assert answer == {"error": "no route /alertmanagr: sdesk serve takes POST to /alertmanager, /grafana, "
                                   "/tickets, /email, /v2/enqueue, /v2/change/enqueue (and GET /healthz, and the portal's pages at /)"}
        status, answer, headers = s.send("/tickets", None, method="GET")
        assert status == 405 and answer == {"error": "Method Not Allowed"} and headers["Allow"] == "POST"
        status, answer, _ = s.send("/tickets", b'{"title": "x"}', viewer)
        assert status == 403 and answer["error"].startswith("permission denied: vic is a viewer; ")
        status, answer, _ = s.send("/tickets", b'{"title": ', agent)
        assert status == 400 and answer == {"error": "invalid JSON at line 1 column 11: Expecting value"}
        assert count(db, "SELECT count(*) FROM tickets") == 0
    finally:
        s.stop()


@pytest.mark.parametrize("error, status", [
    (BadInput("bad"), 400), (PatternError("bad"), 400), (NotFound("no ticket SD-9"), 404), (Conflict("taken"), 409),
    (InvalidTransition("cannot ack SD-1: it is resolved"), 409), (PermissionDenied("permission denied: vic"), 403),
    (StoreFault("the database is busy"), 503), (ReadOnly("read-only"), 503), (NotSdesk("not sdesk"), 503),
    (SchemaTooNew("newer"), 503), (AuditBroken("chain broken"), 500), (SdeskError("cannot"), 400)])
def test_every_error_class_has_the_status_serve_answers(error, status):
    """Every class of the one error tree (errors.py) answers its status with its message; a 503
    (the database busy, unopenable or stopped: not the request's fault) tells a sender when to
    retry. serve has no path that raises some of them (a Conflict) today: these hold the class."""
    from sdesk.serve import failed

    answer = failed(error)
    assert answer.status_code == status == error.http_status
    assert json.loads(answer.body) == {"error": str(error)}
    assert answer.headers.get("retry-after") == ("5" if status == 503 else None)


def test_token_and_size_limit(tmp_path, db_path):
    s = Server(db_path, "--max-body", "1000", env={"SDESK_SERVE_TOKEN": "s3cret"})
    try:
        body = json.dumps({"title": "x"}).encode()
        assert s.post("/tickets", body)[0] == 401
        assert s.post("/tickets", body, {"Authorization": "Bearer nope"})[0] == 401
        assert s.post("/tickets", body, {"Authorization": "Bearer s3cret"})[0] == 200
        status, answer = s.post("/tickets", b"x" * 5000, {"Authorization": "Bearer s3cret"})
        assert status == 413 and "1000 bytes" in answer["error"]
    finally:
        s.stop()


@pytest.mark.parametrize("folder", ["alertmanager", "grafana"])
def test_every_corpus_payload_through_http(server, folder):
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus not found: the real-payload tests need it beside the clone")
    for path in sorted((CORPUS / folder).glob("*.json")):
        status, body = server.post(f"/{folder}", path.read_bytes())
        assert status == 200, (path.name, body)


# -- the real Alertmanager --------------------------------------------------------------------

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.mark.slow
def test_real_alertmanager_opens_and_resolves_tickets(server, tmp_path):
    if ALERTMANAGER is None:
        # CI installs it and sets SDESK_REQUIRE_ALERTMANAGER: there a missing binary is a failure.
        assert not os.environ.get("SDESK_REQUIRE_ALERTMANAGER"), "prometheus-alertmanager is not installed"
        pytest.skip("Alertmanager is not installed (apt-get install prometheus-alertmanager; .ci/run does)")
    am_port, cluster_port = free_port(), free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""
route:
  receiver: sdesk
  group_by: ['alertname', 'instance']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sdesk
    webhook_configs:
      - url: {server.url}/alertmanager
        send_resolved: true
""")
    am = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                           "--cluster.advertise-address=127.0.0.1:0"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    api = f"http://127.0.0.1:{am_port}/api/v2/alerts"

    def post_alerts(ends_at):
        alerts = [{"labels": {"alertname": "DiskFull", "instance": f"db-{i}", "severity": "critical"},
                   "annotations": {"summary": f"Disk full on db-{i}"},
                   "startsAt": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(), "endsAt": ends_at}
                  for i in (1, 2)]
        request = urllib.request.Request(api, data=json.dumps(alerts).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    def am_up():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{am_port}/-/ready", timeout=2).read()
            return True
        except OSError:
            assert am.poll() is None, am.stderr.read().decode()
            return False

    try:
        wait_for(am_up, what="Alertmanager to be ready")
        post_alerts((datetime.now(UTC) + timedelta(hours=1)).isoformat())
        wait_for(lambda: count(server.db, "SELECT count(*) FROM tickets WHERE status = 'new'") == 2, 60,
                 "Alertmanager to open two tickets")
        # Its API's own output, piped as the README shows (curl -s .../api/v2/alerts | sdesk new):
        # the same alerts, by the same fingerprints, on this desk; two new tickets on another.
        listed = urllib.request.urlopen(api, timeout=10).read()
        for db, action in ((server.db, "deduplicated"), (tmp_path / "other.db", "created")):
            piped = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), "new", "--json"], input=listed,
                                   capture_output=True, timeout=60)
            assert piped.returncode == 0, piped.stderr.decode()
            results = [json.loads(line) for line in piped.stdout.splitlines()]
            assert [(r["format"], r["action"]) for r in results] == [("alertmanager", action)] * 2, results
        assert count(tmp_path / "other.db", "SELECT count(*) FROM tickets WHERE status = 'new'") == 2
        post_alerts((datetime.now(UTC) - timedelta(seconds=1)).isoformat())
        wait_for(lambda: count(server.db, "SELECT count(*) FROM tickets WHERE status = 'resolved'") == 2, 60,
                 "Alertmanager's resolved notifications to resolve them")
        titles = {r[0] for r in rows(server.db, "SELECT title FROM tickets")}
        assert titles == {"Disk full on db-1", "Disk full on db-2"}
        assert count(server.db, "SELECT count(*) FROM alerts WHERE status = 'resolved'") >= 2
    finally:
        am.terminate()
        am.wait(timeout=10)


def source_events(db):
    """(kind, action, actor, received_by) of every event a source's signal wrote, in order."""
    return rows(db, f"SELECT kind, {json_get(db, 'data', '$.action')}, actor, {json_get(db, 'data', '$.received_by')} "
                "FROM events WHERE kind IN ('created', 'occurrence', 'status_changed', 'alert_resolved') ORDER BY id")


def test_every_action_from_a_source_is_the_sources_and_received_by_the_account(tmp_path, db_path):
    """Trigger, repeat, acknowledge and resolve from PagerDuty, and firing, repeat and resolved from
    Alertmanager, through a real `serve`: each event names the source as its actor and the account
    `serve` runs as as received_by (none is recorded as that account's own doing), a typed ticket
    posted to /tickets stays the account's, and audit verify rebuilds the desk from the events."""
    db = db_path
    s = Server(db, env={"SDESK_USER": "root"})
    try:
        def pd(action, **extra):
            event = {"routing_key": "k", "dedup_key": "disk-db1", "event_action": action, **extra}
            assert s.post("/v2/enqueue", json.dumps(event).encode())[0] == 202

        def am(status):
            body = {"version": "4", "status": status, "alerts": [{"status": status, "labels": {
                "alertname": "Down", "instance": "web-1", "severity": "critical"}, "annotations": {"summary": "web-1 down"}}]}
            assert s.post("/alertmanager", json.dumps(body).encode())[0] == 200

        payload = {"summary": "Disk full on db-1", "source": "db-1", "severity": "error"}
        pd("trigger", payload=payload)
        pd("trigger", payload=payload)
        pd("acknowledge")
        pd("resolve")
        am("firing")
        am("firing")
        am("resolved")
        assert s.post("/tickets", json.dumps({"title": "typed by a script"}).encode())[0] == 200
    finally:
        s.stop()
    assert source_events(db) == [
        ("created", None, "pagerduty", "root"), ("occurrence", None, "pagerduty", "root"),
        ("status_changed", "ack", "pagerduty", "root"), ("status_changed", "resolve", "pagerduty", "root"),
        ("created", None, "alertmanager", "root"), ("occurrence", None, "alertmanager", "root"),
        ("status_changed", "resolve", "alertmanager", "root"),
        ("created", None, "root", None)]
    env = {**os.environ, "SDESK_USER": "tester"}
    verified = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), "audit", "verify"],
                              env=env, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_command_line_records_a_sources_actions_as_serve_does(tmp_path, db_path):
    """`sdesk new --format pagerduty` from a terminal records the same actors as `serve`: the
    source, received by the person who ran it; a ticket they type is theirs."""
    db = db_path
    env = {**os.environ, "SDESK_USER": "ann"}

    def sdesk(*args, stdin=None):
        done = subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), *args], input=stdin, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done

    payload = {"summary": "Disk full on db-1", "source": "db-1", "severity": "error"}
    for action in ("trigger", "trigger", "acknowledge", "resolve"):
        event = {"routing_key": "k", "dedup_key": "disk-db1", "event_action": action, "payload": payload}
        sdesk("new", "--format", "pagerduty", stdin=json.dumps(event))
    sdesk("new", "printer jammed")
    assert source_events(db) == [
        ("created", None, "pagerduty", "ann"), ("occurrence", None, "pagerduty", "ann"),
        ("status_changed", "ack", "pagerduty", "ann"), ("status_changed", "resolve", "pagerduty", "ann"),
        ("created", None, "ann", None)]
    sdesk("audit", "verify")


def test_an_api_list_with_junk_stores_its_alerts_and_names_each_bad_item(server):
    alert = {"labels": {"alertname": "Down", "instance": "web-1"}, "annotations": {"summary": "web-1 is down"},
             "startsAt": "2026-12-07T02:46:34Z", "status": {"state": "active"}}
    status, body = server.post("/alertmanager", json.dumps([alert, 1, "x", None, {}]).encode())
    assert status == 200, body
    assert [(r["action"], r.get("error")) for r in body["results"]] == [
        ("created", None), ("rejected", "[1]: expected an alert object, got a number"),
        ("rejected", "[2]: expected an alert object, got text"), ("rejected", "[3]: expected an alert object, got null"),
        ("rejected", "[4]: expected an alert object, got an object without labels")]
    assert count(server.db, "SELECT count(*) FROM tickets") == 1


def test_automation_that_an_alert_over_http_queues_runs_as_after_the_command_line(tmp_path, db_path):
    """A triage rule attaches a runbook safe for automation: the alert that arrives over HTTP has
    it run (by `automation`, resolving the ticket) as `sdesk new` does, not left queued for the
    next `sdesk tick`. serve, stopped, finishes the runs arrivals queued: no waiting on a clock."""
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True, exist_ok=True)
    (config / "triage.yaml").write_text(
        "rules:\n  - id: disk\n    match: {labels.alertname: DiskFull}\n    set: {runbook: cleanup}\n")
    (config / "runbooks" / "cleanup.yaml").write_text(
        "safe_for_automation: true\nsteps:\n  - run: [echo, cleaned]\n  - resolve: Cleaned up\n")
    s = Server(db_path, env={"SDESK_CONFIG": str(config)})
    try:
        alert = {"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db-1"},
             "annotations": {"summary": "Disk full on db-1"}}]}
        status, body = s.post("/alertmanager", json.dumps(alert).encode())
        assert status == 200 and body["results"][0]["action"] == "created", body
        ticket = body["results"][0]["ticket"]
    finally:
        s.stop()
    err = s.proc.stderr.read().decode()
    assert f"automation: run 1 (cleanup) on SD-{ticket}: succeeded" in err
    db = str(db_path)
    t = json.loads(subprocess.run([sys.executable, "-m", "sdesk", "--db", db, "show", str(ticket), "--json"],
                                  capture_output=True, text=True, check=True).stdout)
    assert t["status"] == "resolved" and t["resolution_code"] == "automated", t["status"]
    [run] = json.loads(subprocess.run([sys.executable, "-m", "sdesk", "--db", db, "runbook", "runs", "--ticket",
                                       str(ticket), "--json"], capture_output=True, text=True, check=True).stdout)
    assert run["automated"] and run["actor"] == "automation" and run["status"] == "succeeded"
