"""Proof that load, crashes, hostile input and planted secrets lose nothing and leak nothing.

Sized for CI (a few minutes in all); SDESK_PROOF_SECONDS and SDESK_PROOF_KILLS make them
longer. The figures are printed (pytest -s) for the README's reliability section.
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve import Server

LOAD_SECONDS = float(os.environ.get("SDESK_PROOF_SECONDS", "30"))
KILLS = int(os.environ.get("SDESK_PROOF_KILLS", "20"))


def _env(db: Path, actor: str = "proof") -> dict:
    return {**os.environ, "SDESK_DB": str(db), "SDESK_USER": actor}


def _alerts(prefix: str, n: int) -> str:
    return "".join(json.dumps({"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"alertname": "Load", "instance": f"{prefix}-{i}"},
        "annotations": {"summary": f"{prefix} alert {i}"}}]}) + "\n" for i in range(n))


# -- load --------------------------------------------------------------------------------------

WORKER = r"""
import json, random, subprocess, sys, time
kind, worker, seconds, db = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + seconds
acked, n = [], 0
def sdesk(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "sdesk", *args], input=stdin, capture_output=True, text=True)
while time.monotonic() < deadline:
    n += 1
    if kind == "intake":
        lines = "".join(json.dumps({"status": "firing", "alerts": [{"labels": {"alertname": "Load",
                        "instance": f"{worker}-{n}-{i}"}}]}) + "\n" for i in range(50))
        r = sdesk("new", "--jsonl", "--format", "alertmanager", "--json", stdin=lines)
        ok = [json.loads(l) for l in r.stdout.splitlines()]
        acked += [("alert", f"{worker}-{n}-{i}", o["ticket"]) for i, o in enumerate(ok)]
    elif kind == "lifecycle":
        r = sdesk("new", f"{worker} ticket {n}", "--json")
        if r.returncode == 0:
            t = json.loads(r.stdout)["id"]
            acked.append(("ticket", f"{worker} ticket {n}", t))
            r = sdesk("comment", str(t), f"comment {n}")
            if r.returncode == 0:
                acked.append(("comment", f"comment {n}", t))
            r = sdesk("ack", str(t))
    else:
        r = sdesk("tick")
        time.sleep(0.2)
    if r.returncode != 0:
        print(f"{kind} {worker}: exit {r.returncode}: {r.stderr.strip()}", file=sys.stderr)
        sys.exit(1)
print(json.dumps(acked))
"""


@pytest.mark.slow
def test_eight_writers_at_once_lose_nothing(tmp_path):
    db = tmp_path / "load.db"
    subprocess.run([sys.executable, "-m", "sdesk", "init"], env=_env(db), check=True, capture_output=True)
    kinds = ["intake"] * 3 + ["lifecycle"] * 4 + ["tick"]
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, kind, f"w{i}", str(LOAD_SECONDS), str(db)],
                              env=_env(db, f"w{i}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, kind in enumerate(kinds)]
    results = [p.communicate(timeout=LOAD_SECONDS + 300) for p in procs]
    elapsed = time.monotonic() - start
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "locked" not in err, err
    conn = sqlite3.connect(db)
    acked = [tuple(a) for out, _ in results for a in json.loads(out)]
    by_kind = {k: [a for a in acked if a[0] == k] for k in ("alert", "ticket", "comment")}
    for _, instance, ticket in by_kind["alert"]:
        labels = conn.execute("SELECT labels FROM tickets WHERE id = ?", (ticket,)).fetchone()
        assert labels and json.loads(labels[0])["instance"] == instance
    for _, title, ticket in by_kind["ticket"]:
        assert conn.execute("SELECT title FROM tickets WHERE id = ?", (ticket,)).fetchone() == (title,)
    for _, text, ticket in by_kind["comment"]:
        assert conn.execute("SELECT 1 FROM events WHERE ticket_id = ? AND kind = 'commented' AND "
                            "json_extract(data, '$.text') = ?", (ticket, text)).fetchone()
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    verified = subprocess.run([sys.executable, "-m", "sdesk", "audit", "verify", "--json"], env=_env(db),
                              capture_output=True, text=True, check=True)
    assert json.loads(verified.stdout)["events"] == events
    assert len(by_kind["alert"]) > 0 and len(by_kind["ticket"]) > 0
    print(f"\nload: 8 processes for {elapsed:.0f} s: {len(acked)} acknowledged writes all present, "
          f"{events} events ({events / elapsed:.0f} events/s held), chain intact")


# -- crashes -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_bulk_intake_killed_at_random_points_loses_nothing_and_duplicates_nothing(tmp_path):
    """Each round streams 60,000 alerts, 5,000 of them new since the last round (so every round
    has work in progress), and is SIGKILLed at a random moment. Then the whole stream once more,
    to its end: every alert is there exactly once."""
    db = tmp_path / "crash.db"
    subprocess.run([sys.executable, "-m", "sdesk", "init"], env=_env(db), check=True, capture_output=True)
    # Each round's stream runs past the latest kill (2 s) on a fast machine too: 60,000 alerts.
    lines = _alerts("crash", KILLS * 5000 + 55_000).splitlines(keepends=True)
    rng = random.Random(20261127)
    reported: set[int] = set()
    midway = 0  # kills that found the intake still running
    for kill in range(KILLS):
        source, out = tmp_path / "alerts.jsonl", tmp_path / f"out{kill}"
        source.write_text("".join(lines[kill * 5000:kill * 5000 + 60_000]))
        with out.open("wb") as stdout:  # a file, not a pipe: a full pipe would hold the writer still
            proc = subprocess.Popen([sys.executable, "-m", "sdesk", "new", "--jsonl", "--format", "alertmanager",
                                     "--json", str(source)], env=_env(db), stdout=stdout, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 2.0))
            midway += proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for line in out.read_bytes().decode(errors="replace").splitlines():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written when the process died
            if result["ticket"] is not None:
                reported.add(result["ticket"])
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {r[0] for r in conn.execute("SELECT id FROM tickets")}
        assert reported <= stored, f"kill {kill}: tickets reported stored are missing"
        conn.close()
    assert midway >= KILLS // 2, f"only {midway} of {KILLS} kills found the intake running"
    source = tmp_path / "alerts.jsonl"
    source.write_text("".join(lines))
    subprocess.run([sys.executable, "-m", "sdesk", "new", "--jsonl", "--format", "alertmanager", str(source)],
                   env=_env(db), check=True, capture_output=True)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*), count(DISTINCT fingerprint) FROM tickets").fetchone() == (len(lines),) * 2
    subprocess.run([sys.executable, "-m", "sdesk", "audit", "verify"], env=_env(db), check=True, capture_output=True)
    print(f"\ncrash: {KILLS} SIGKILLs ({midway} mid-intake) survived: integrity ok each time, "
          f"{len(reported)} tickets reported stored all present, {len(lines)} alerts once each after the rerun")


# -- hostile input -----------------------------------------------------------------------------

ROUTES = ["/alertmanager", "/grafana", "/tickets", "/email", "/v2/enqueue"]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    server = Server(folder / "desk.db", "--max-body", "65536")
    yield server, folder
    server.stop()


HOSTILE = st.one_of(
    st.binary(max_size=2048),
    st.builds(_nested, st.integers(1, 100_000)),
    st.just(b"\xff\xfe" + b"\x00" * 100),
    st.just(json.dumps({"alerts": [{"labels": {"alertname": "X", "instance": "$(touch /tmp/pwned)"},
                                    "annotations": {"summary": "`rm -rf /`; ../../etc/passwd"}}]}).encode()),
    st.just(b"From: a@b\r\nSubject: hi\r\nBcc: victim@example.com\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
            b"--x\r\nContent-Disposition: attachment; filename=\"../../../etc/cron.d/evil\"\r\n\r\nboo\r\n--x--\r\n"),
    st.text(max_size=1000).map(str.encode),
    st.just(b"{" + b'"a":' * 5000 + b"1" + b"}" * 5000),
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=HOSTILE)
def test_hostile_bodies_get_an_answer_never_a_crash(hostile_server, route, body):
    server, _ = hostile_server
    status, answer = server.post(route, body)
    assert status in (200, 202, 400, 413), (status, answer)
    if status == 400:
        assert "\n" not in (answer.get("error") or answer.get("message"))


def test_hostile_input_writes_nothing_outside_the_desk(hostile_server, tmp_path):
    server, folder = hostile_server
    assert server.post("/tickets", b"x" * 100_000)[0] == 413
    assert server.get("/healthz")[0] == 200  # alive after everything above
    allowed = {"desk.db", "desk.db-wal", "desk.db-shm"}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        assert rel.parts[0] in allowed or rel.parts[0] == "rejects", rel
    assert not Path("/tmp/pwned").exists()
    names = sqlite3.connect(folder / "desk.db").execute("SELECT name FROM attachments").fetchall()
    assert all("/" not in n and ".." not in n for (n,) in names)


@pytest.mark.parametrize("fmt", ["json", "alertmanager", "grafana", "pagerduty", "auto", "jsonl", "email"])
def test_hostile_input_on_the_command_line_is_one_line_and_exit_2(tmp_path, fmt):
    deep = b"[" * 100_000 + b"]" * 100_000
    if fmt == "email":  # MIME parts nested 2,000 deep, and a header that tries to add a recipient
        deep = b"From: a@b.c\r\nSubject: hi\r\nBcc: x@y.z\r\n" + b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(2000))
    args = ["--jsonl"] if fmt == "jsonl" else ["--format", fmt]
    r = subprocess.run([sys.executable, "-m", "sdesk", "new", *args], input=deep, env=_env(tmp_path / "desk.db"),
                       capture_output=True)
    assert r.returncode == 2 and b"Traceback" not in r.stderr, r.stderr[-500:]
    db = sqlite3.connect(tmp_path / "desk.db")  # refused before the store opened, or nothing stored
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'tickets'").fetchone() or \
        db.execute("SELECT count(*) FROM tickets").fetchone()[0] == 0


# -- planted secrets ---------------------------------------------------------------------------

SECRETS = {
    "aws": "AKIAIOSFODNN7EXAMPLQ",
    "github": "ghp_" + "Zx9" * 12,
    "gitlab": "glpat-" + "Yw8Qv7Ut6Sr5Po4Nm3Lk",
    "slack": "xoxb-2426342-8841529-" + "Kq7Ws2Ed4Rf6Tg8Yh0Uj",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "url": "Pl4nt3dUrlPw",
    "pair": "Pl4nt3dPairPw",
    "card": "4111 1111 1111 1111",
    "key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7Pl4nt3d",
}


def _secret_text(tag: str) -> str:
    s = SECRETS
    return (f"{tag}: {s['aws']} {s['github']} {s['gitlab']} {s['slack']} token {s['jwt']} {s['stripe']} "
            f"postgres://app:{s['url']}@db:5432/x password={s['pair']} card {s['card']}\n"
            f"-----BEGIN PRIVATE KEY-----\n{s['key']}\n-----END PRIVATE KEY-----")


def test_planted_secrets_are_stored_nowhere_in_clear(tmp_path):
    db = tmp_path / "desk.db"
    env = _env(db)

    def sdesk(*args, stdin=None):
        r = subprocess.run([sys.executable, "-m", "sdesk", *args], input=stdin, env=env, capture_output=True)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout

    text = _secret_text
    first = json.loads(sdesk("new", text("title"), "-d", text("description"), "-l", f"note={text('label')}", "--json"))
    sdesk("comment", str(first["id"]), text("comment"))
    sdesk("update", str(first["id"]), "--description", text("update"))
    sdesk("new", stdin=json.dumps({"title": text("json"), "labels": {"k": text("json label")}}).encode())
    sdesk("new", "--jsonl", stdin=(json.dumps({"title": text("jsonl"), "fingerprint": "j1"}) + "\n").encode())
    alert = {"status": "firing", "alerts": [{"labels": {"alertname": "Leak", "dsn": text("am label")},
                                             "annotations": {"summary": text("am summary")}}]}
    sdesk("new", "--format", "alertmanager", stdin=json.dumps(alert).encode())
    sdesk("new", "--format", "grafana", stdin=json.dumps({**alert, "alerts": [{**alert["alerts"][0],
                                                                                "labels": {"alertname": "G", "x": text("grafana")}}]}).encode())
    sdesk("new", "--format", "pagerduty", stdin=json.dumps({"routing_key": "r", "event_action": "trigger", "payload": {
        "summary": text("pd summary"), "source": "s", "severity": "critical",
        "custom_details": {"d": text("pd details")}}}).encode())
    mail = (f"From: someone@example.com\r\nTo: desk@example.com\r\nSubject: {text('subject').splitlines()[0]}\r\n"
            f"Message-ID: <leak@example.com>\r\nContent-Type: text/plain\r\n\r\n{text('mail body')}\r\n")
    sdesk("new", "--format", "email", stdin=mail.encode())
    server = Server(db)
    try:
        assert server.post("/alertmanager", json.dumps(alert).encode())[0] == 200
        assert server.post("/tickets", json.dumps({"title": text("serve ticket")}).encode())[0] == 200
        assert server.post("/email", mail.replace("<leak@", "<leak2@").encode())[0] == 200
    finally:
        server.stop()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("desk.db*"))
    tickets = sqlite3.connect(db).execute("SELECT count(*) FROM tickets").fetchone()[0]
    assert tickets >= 8
    leaked = [name for name, value in SECRETS.items() if value.encode() in raw]
    assert not leaked, f"stored in clear: {leaked}"
    print(f"\nsecrets: {len(SECRETS)} kinds through 12 intake paths into {tickets} tickets: none in the file's bytes")
