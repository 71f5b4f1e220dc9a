"""One bad record never costs the good ones (issue 18, item 3).

Text that cannot be stored as text (a lone surrogate, which is valid JSON as `\\ud800`; a NUL
character; bytes that are not UTF-8), in any field or key of any format, is rejected with its
record alone: on the command line (a stream, a stream parsed by the helpers, a document), and
over HTTP on every route, where it is a 400 or the rejected record of a 200, never a 500.
Rejected records are kept redacted, and serve's rejects folder is capped.
"""

import io
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import rawdb
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve import Server, count

RUNS = itertools.count()
BAD_CHARS = ["\ud800", "\udbff", "\udc80", "\udfff", "\x00"]
SECRET = "password=hunter2hunter2"
AWS_KEY = "AKIAIOSFODNN7EXAMPLQ"


def _env(db: Path) -> dict:
    return {**os.environ, "SDESK_DB": str(db), "SDESK_USER": "tester"}


def sdesk(db: Path, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdesk", *args], input=input, env=_env(db), capture_output=True)


def _results(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


# -- the reproduction of the issue ------------------------------------------------------------


def test_a_lone_surrogate_rejects_its_line_alone(tmp_path):
    db, rejects = tmp_path / "desk.db", tmp_path / "rej.jsonl"
    lines = ['{"alerts":[{"labels":{"alertname":"A","instance":"h1"}}]}',
             '{"alerts":[{"labels":{"alertname":"bad\\ud800"}}]}',
             '{"alerts":[{"labels":{"alertname":"A","instance":"h3"}}]}']
    r = sdesk(db, "new", "--jsonl", "--format", "alertmanager", "--rejects", str(rejects),
              input="\n".join(lines).encode() + b"\n")
    assert r.returncode == 2 and b"Traceback" not in r.stderr, r.stderr
    assert b"line 2 alert 1: labels.alertname: a lone surrogate (\\ud800) is not text" in r.stderr, r.stderr
    assert count(db, "SELECT count(*) FROM tickets") == 2
    assert rejects.read_text() == lines[1] + "\n"


def _alert_line(i: int) -> str:
    return json.dumps({"status": "firing", "alerts": [{"status": "firing", "labels": {
        "alertname": "DiskFull", "instance": f"host-{i}:9100"}, "annotations": {"summary": f"disk {i}"}}]})


@pytest.mark.parametrize("via", ["file", "pipe"])
def test_a_lone_surrogate_in_bulk_input_costs_only_its_line(tmp_path, via):
    """20,000 lines, enough that the parse helpers take them; the bad one in the middle."""
    lines = [_alert_line(i) for i in range(20_000)]
    lines[10_000] = '{"alerts":[{"labels":{"alertname":"bad\\ud800","instance":"x"}}]}'
    source, db, rejects = tmp_path / "alerts.jsonl", tmp_path / "desk.db", tmp_path / "rej.jsonl"
    source.write_text("\n".join(lines) + "\n")
    args, data = ([str(source)], b"") if via == "file" else ([], source.read_bytes())
    r = sdesk(db, "new", "--jsonl", "--format", "alertmanager", "--json", "--rejects", str(rejects), *args, input=data)
    assert r.returncode == 2 and b"Traceback" not in r.stderr, r.stderr[-2000:]
    results = _results(r)
    assert len(results) == 20_000
    assert [x["where"] for x in results if x["action"] == "rejected"] == ["line 10001 alert 1"]
    assert count(db, "SELECT count(*) FROM tickets") == 19_999
    assert rejects.read_text() == lines[10_000] + "\n"


def test_text_that_no_parser_caught_is_found_in_its_batch_and_rejected_alone(db_path):
    """The store refuses a lone surrogate mid-batch (sqlite3, orjson, hashing); ingest then finds
    the records that cannot be stored by halves and keeps the rest."""
    from sdesk.domain.fields import check_ticket
    from sdesk.domain.signals import Signal
    from sdesk.intake.formats import Record
    from sdesk.intake.ingest import UNSTORABLE, ingest
    from sdesk.store import Store

    titles = [f"ticket {n}" for n in range(9)]
    titles[2], titles[6] = "bad \ud800", "also \udfff bad"
    records = [Record(f"line {n + 1}", f"raw {n + 1}", Signal("test", "trigger", ticket=check_ticket({"title": t})))
               for n, t in enumerate(titles)]
    stored, rejected, kept = [], [], io.StringIO()
    with Store(db_path) as store:
        summary = ingest(store, [(records, False)], actor="tester", rejects=kept,
                         on_stored=lambda r, ticket, outcome: stored.append(r.where),
                         on_rejected=lambda r: rejected.append((r.where, r.error)))
    assert rejected == [("line 3", UNSTORABLE), ("line 7", UNSTORABLE)]
    assert len(stored) == 7 and summary.outcomes == {"created": 7}
    assert kept.getvalue() == "raw 3\nraw 7\n"
    assert rawdb.connect(db_path).execute("SELECT count(*) FROM tickets").fetchone()[0] == 7


def test_a_rejected_records_reason_is_redacted_where_it_is_printed(tmp_path):
    r = sdesk(tmp_path / "desk.db", "new", "--jsonl", "--json", input=f'{{"title": "x", "{SECRET}": 1}}\n'.encode())
    assert r.returncode == 2 and b"unknown field" in r.stderr, r.stderr
    assert b"hunter2hunter2" not in r.stderr + r.stdout


def test_a_parser_that_fails_on_one_line_costs_only_that_line(monkeypatch):
    """A fault no input is known to cause (a parser's bug), so the parser is replaced."""
    from sdesk.intake import formats as intake

    real = intake.PARSERS["opsgenie"]

    def parser(doc, raw, severity):
        if doc.get("message") == "boom":
            raise ValueError("a bug\ud800")
        return real(doc, raw, severity)

    monkeypatch.setitem(intake.PARSERS, "opsgenie", parser)
    lines = [json.dumps({"message": m, "alias": m}) for m in ("one", "boom", "three")]
    records = list(intake.parse_jsonl(lines, fmt="opsgenie"))
    assert [(r.where, r.error) for r in records] == [
        ("line 1 alert 1", None), ("line 2", "cannot be parsed: ValueError: a bug\\ud800"), ("line 3 alert 1", None)]


# -- bytes that are not UTF-8 -----------------------------------------------------------------


def test_invalid_utf8_in_a_stream_rejects_its_line(tmp_path):
    db, rejects = tmp_path / "desk.db", tmp_path / "rej.jsonl"
    data = b'{"title": "one"}\n{"title": "caf\xe9 \xff"}\n{"title": "three"}\n'
    r = sdesk(db, "new", "--jsonl", "--rejects", str(rejects), input=data)
    assert r.returncode == 2, r.stderr
    assert b"line 2: not valid UTF-8 (byte 0xe9 at column 15)" in r.stderr, r.stderr
    titles = [t for (t,) in sqlite3.connect(db).execute("SELECT title FROM tickets ORDER BY id")]
    assert titles == ["one", "three"]  # nothing stored with U+FFFD in it
    assert rejects.read_text() == '{"title": "caf\\xe9 \\xff"}\n'  # the bytes, shown


def test_invalid_utf8_in_a_document_rejects_its_record(tmp_path):
    db = tmp_path / "desk.db"
    data = b'[{"title": "one"},\n {"title": "bad \xff"},\n {"title": "three"}]'
    r = sdesk(db, "new", "-", "--json", input=data)
    assert r.returncode == 2, r.stderr
    assert [x["action"] for x in _results(r)] == ["created", "rejected", "created"]
    assert b"record 2: title: not valid UTF-8 (byte 0xff)" in r.stderr, r.stderr
    assert count(db, "SELECT count(*) FROM tickets WHERE title LIKE '%' || char(65533) || '%'") == 0
    r = sdesk(db, "new", "--format", "alertmanager", input=b'{"alerts": [{"labels": {"alertname": "\xc3"}}]}')
    assert r.returncode == 2 and b"alert 1: labels.alertname: not valid UTF-8 (byte 0xc3)" in r.stderr, r.stderr


# -- rejects hold redacted copies -------------------------------------------------------------


def test_the_rejects_file_holds_redacted_copies(tmp_path):
    db, rejects = tmp_path / "desk.db", tmp_path / "rej.jsonl"
    data = (f'{{"title": "ok"}}\n{{"title": "x", "priority": "P9", "description": "{SECRET} {AWS_KEY}"}}\n'
            f'{{"alerts": "{SECRET}"}}\n').encode()
    r = sdesk(db, "new", "--jsonl", "--format", "auto", "--rejects", str(rejects), input=data)
    assert r.returncode == 2, r.stderr
    kept = rejects.read_text()
    assert kept.count("\n") == 2 and "hunter2hunter2" not in kept and AWS_KEY not in kept
    assert "[REDACTED:" in kept
    assert b"hunter2hunter2" not in r.stderr and AWS_KEY.encode() not in r.stderr


# -- the class: every format, every field and key ---------------------------------------------


def _payload(kind: str, i: int) -> dict:
    """A valid document of `kind` whose records are all stored (one per alert)."""
    return {
        "alertmanager": lambda: {"status": "firing", "groupKey": "{}:{}", "receiver": "sdesk", "alerts": [
            {"status": "firing", "labels": {"alertname": "A", "instance": f"h{i}", "severity": "critical"},
             "annotations": {"summary": f"s {i}", "description": "d"}, "fingerprint": f"fp{i}"}]},
        "grafana": lambda: {"orgId": 1, "title": "t", "state": "alerting", "alerts": [
            {"status": "firing", "labels": {"alertname": "G", "instance": f"h{i}"},
             "annotations": {"summary": f"g {i}"}, "values": {"A": 1}}]},
        "grafana-legacy": lambda: {"ruleId": i, "ruleName": f"rule {i}", "state": "alerting", "message": "m",
                                   "tags": {"team": "x"}, "evalMatches": [{"metric": "m", "tags": {"host": f"h{i}"}}]},
        "pagerduty": lambda: {"routing_key": "k", "event_action": "trigger", "dedup_key": f"k{i}", "payload": {
            "summary": f"p {i}", "source": "s", "severity": "critical", "component": "c", "custom_details": {"a": "b"}}},
        "pagerduty-change": lambda: {"routing_key": "k", "links": [{"href": "http://x", "text": "t"}], "payload": {
            "summary": f"change {i}", "source": "s", "timestamp": "2026-11-26T10:00:00Z", "custom_details": {"a": "b"}}},
        "pagerduty-v1": lambda: {"messages": [{"type": "incident.trigger", "data": {"incident": {
            "incident_key": f"k{i}", "service": {"name": "svc"}, "trigger_summary_data": {"subject": f"v1 {i}"}}}}]},
        "opsgenie": lambda: {"message": f"o {i}", "alias": f"a{i}", "description": "d", "priority": "P2",
                             "details": {"k": "v"}, "tags": ["t"], "source": "s"},
        "json": lambda: {"title": f"t {i}", "description": "d", "labels": {"k": "v"}, "tags": ["x"],
                         "service": "svc", "fingerprint": f"f{i}"},
    }[kind]()


KINDS = ["alertmanager", "grafana", "grafana-legacy", "pagerduty", "pagerduty-change", "pagerduty-v1", "opsgenie",
         "json"]
FORMAT = {"grafana-legacy": "grafana", "pagerduty-change": "pagerduty", "pagerduty-v1": "pagerduty"}


def _places(value, path=()):
    """Every text in a JSON value, as (path, is a key)."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, dict):
        for k, v in value.items():
            yield (*path, k), True
            yield from _places(v, (*path, k))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            yield from _places(v, (*path, n))


def _spoil(doc, place, char: str, at: int):
    """doc with `char` put into the text at `place` (a key or a value), `at` characters in."""
    (path, is_key) = place
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1] if path else None
    if is_key:
        key = str(last)
        new = key[:at % (len(key) + 1)] + char + key[at % (len(key) + 1):]
        parent[new] = parent.pop(last)
    elif path:
        text = parent[last]
        parent[last] = text[:at % (len(text) + 1)] + char + text[at % (len(text) + 1):]
    return doc


@st.composite
def spoiled(draw, kinds=KINDS):
    kind = draw(st.sampled_from(kinds))
    doc = _payload(kind, 2)
    place = draw(st.sampled_from(list(_places(doc))))
    return kind, _spoil(doc, place, draw(st.sampled_from(BAD_CHARS)), draw(st.integers(0, 50)))


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=spoiled())
def test_bad_text_anywhere_in_a_stream_costs_only_its_line(cli, tmp_path, case):
    kind, doc = case
    lines = [json.dumps(_payload(kind, 1)), json.dumps(doc), json.dumps(_payload(kind, 3))]
    fmt = ["--jsonl"] if kind == "json" else ["--jsonl", "--format", FORMAT.get(kind, kind)]
    rejects = tmp_path / "rejects.jsonl"
    r = cli("new", *fmt, "--json", "--rejects", str(rejects), "--db", str(tmp_path / f"{kind}.db"),
            input="\n".join(lines) + "\n", ok=False)
    assert r.exit_code == 2, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert {x["action"] == "rejected" for x in results if x["where"].startswith("line 2")} == {True}
    assert {x["action"] != "rejected" for x in results if not x["where"].startswith("line 2")} == {True}
    assert len(results) == 3
    assert rejects.read_text() == lines[1] + "\n"


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(["alertmanager", "grafana", "pagerduty-v1", "json"]), data=st.data())
def test_bad_text_in_one_record_of_a_document_costs_only_that_record(cli, tmp_path, kind, data):
    docs = [_payload(kind, i) for i in range(3)]
    units = {"alertmanager": "alerts", "grafana": "alerts", "pagerduty-v1": "messages"}.get(kind)
    whole = [d for d in docs] if units is None else {**docs[0], units: [d[units][0] for d in docs]}
    target = whole[1] if units is None else whole[units][1]
    place = data.draw(st.sampled_from(list(_places(target))))
    _spoil(target, place, data.draw(st.sampled_from(BAD_CHARS)), data.draw(st.integers(0, 50)))
    r = cli("new", "--format", FORMAT.get(kind, kind), "--json", "--db", str(tmp_path / f"doc-{next(RUNS)}.db"),
            input=json.dumps(whole), ok=False)
    assert r.exit_code == 2, r.stderr
    assert [json.loads(line)["action"] for line in r.stdout.splitlines()] == ["created", "rejected", "created"]


# -- email: decoded defensively, never a lost message -----------------------------------------

MAIL_SPOILERS = [
    b"Subject: =?utf-7?B?K0RnQS0=?= broken\r\n",  # utf-7 of a lone surrogate
    b"Subject: nul \x00 here\r\n",
    b"Subject: =?utf-8?Q?a=00b?=\r\n",
    b"Subject: =?unicode_escape?Q?\\ud800?=\r\n",
    b"X-Note: \xed\xa0\x80\r\n",
]


@pytest.mark.parametrize("spoiler", MAIL_SPOILERS + [b"BODY-UTF7", b"BODY-NUL"])
def test_an_email_with_text_that_cannot_be_stored_is_kept_with_it_replaced(tmp_path, spoiler):
    headers, body, ctype = b"", b"hello", b"text/plain; charset=utf-8"
    if spoiler == b"BODY-UTF7":
        body, ctype = b"a +2AA- b", b"text/plain; charset=utf-7"
    elif spoiler == b"BODY-NUL":
        body = b"a \x00 b"
    else:
        headers = spoiler
    messages = []
    for n in range(3):
        extra = headers if n == 1 else b"Subject: fine\r\n"
        messages.append(b"From sender@x Thu Nov 26 10:00:00 2026\r\nFrom: a%d@x.example\r\n" % n + extra +
                        b"Message-ID: <m%d@x>\r\nContent-Type: " % n + ctype + b"\r\n\r\n" + (body if n == 1 else b"hi")
                        + b"\r\n\r\n")
    db = tmp_path / "desk.db"
    r = sdesk(db, "new", "--format", "email", input=b"".join(messages))
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    assert count(db, "SELECT count(*) FROM tickets") == 3
    texts = sqlite3.connect(db).execute("SELECT title || coalesce(description, '') FROM tickets").fetchall()
    assert all("\x00" not in t for (t,) in texts)


# -- serve --------------------------------------------------------------------------------------

ROUTE = {"alertmanager": "/alertmanager", "grafana": "/grafana", "grafana-legacy": "/grafana",
         "pagerduty": "/v2/enqueue", "pagerduty-change": "/v2/change/enqueue", "pagerduty-v1": "/v2/enqueue",
         "json": "/tickets", "opsgenie": "/tickets"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    server = Server(folder / "desk.db")
    yield server, folder
    server.stop()


def test_serve_answers_a_lone_surrogate_with_400_not_500(served):
    server, _ = served
    body = b'{"alerts":[{"labels":{"alertname":"bad\\ud800"}}]}'
    for route in ("/alertmanager", "/grafana"):
        status, answer = server.post(route, body)
        assert status == 400 and answer["errors"] == [
            "alert 1: labels.alertname: a lone surrogate (\\ud800) is not text"], answer
    event = b'{"event_action":"trigger","payload":{"summary":"x\\udc00","source":"s","severity":"critical"}}'
    status, answer = server.post("/v2/enqueue", event)
    assert status == 400 and answer["status"] == "invalid event" and "\\udc00" in answer["message"], answer


def test_serve_stores_the_good_alerts_of_a_partly_bad_request(served):
    """A sender that retries on errors (Alertmanager does on 5xx, not 4xx) gets a 200 for what
    was stored; the answer names the alert that was not."""
    server, _ = served
    body = json.dumps({"alerts": [{"labels": {"alertname": "P", "instance": "ok-1"}},
                                  {"labels": {"alertname": "P\ud800", "instance": "bad"}},
                                  {"labels": {"alertname": "P", "instance": "ok-3"}}]}).encode()
    status, answer = server.post("/alertmanager", body)
    assert status == 200, answer
    assert [x["action"] for x in answer["results"]] == ["created", "rejected", "created"]
    assert answer["results"][1]["error"] == "labels.alertname: a lone surrogate (\\ud800) is not text"


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=spoiled(kinds=[k for k in KINDS if k != "opsgenie"]))
def test_bad_text_anywhere_on_any_route_is_a_400_that_names_it(served, case):
    server, _ = served
    kind, doc = case
    status, answer = server.post(ROUTE[kind], json.dumps(doc).encode())
    assert status == 400, answer
    message = answer.get("error") or answer.get("message")
    assert "\n" not in message and ("surrogate" in message or "NUL" in message), answer


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(subject=st.binary(max_size=40) | st.sampled_from(MAIL_SPOILERS), charset=st.sampled_from(
    [b"utf-8", b"utf-7", b"unicode_escape", b"utf-16", b"latin-1", b"x-unknown\x00"]), body=st.binary(max_size=60),
    name=st.binary(max_size=20))
def test_email_with_any_bytes_is_stored_over_http(served, subject, charset, body, name):
    server, _ = served
    subject = subject.replace(b"\r", b"").replace(b"\n", b"").removeprefix(b"Subject: ")
    name = name.replace(b"\r", b"").replace(b"\n", b"").replace(b'"', b"")
    mail = (b"From: someone@x.example\r\nSubject: " + subject + b"\r\nContent-Type: multipart/mixed; boundary=b\r\n"
            b"\r\n--b\r\nContent-Type: text/plain; charset=" + charset + b"\r\n\r\n" + body + b"\r\n--b\r\n"
            b"Content-Type: application/x-\xff\x00; name=\"" + name + b"\"\r\nContent-Disposition: attachment\r\n\r\n"
            b"data\r\n--b--\r\n")
    status, answer = server.post("/email", mail)
    assert status == 200 and answer["results"][0]["action"] in ("created", "ignored"), answer


def test_serve_rejects_invalid_utf8_by_record(served):
    server, _ = served
    status, answer = server.post("/tickets", b'[{"title": "fine u8"}, {"title": "bad \xff"}]')
    assert status == 200 and [x["action"] for x in answer["results"]] == ["created", "rejected"], answer
    assert answer["results"][1]["error"] == "title: not valid UTF-8 (byte 0xff)"


def test_serve_keeps_rejects_redacted(tmp_path):
    server = Server(tmp_path / "desk.db")
    try:
        body = json.dumps({"alerts": [{"labels": {"alertname": "ok", "note": f"{SECRET} {AWS_KEY}"}},
                                      {"labels": {"alertname": "bad\ud800"}}]}).encode()
        assert server.post("/alertmanager", body)[0] == 200
        assert server.post("/tickets", f'{{"title": "t", "priority": "P9", "d": "{SECRET}"}}'.encode())[0] == 400
    finally:
        server.stop()
    kept = sorted((tmp_path / "rejects").iterdir())
    assert len(kept) == 2
    for path in kept:
        text = path.read_text()
        assert "hunter2hunter2" not in text and AWS_KEY not in text and "[REDACTED:" in text


def test_serve_rejects_folder_is_capped(tmp_path):
    """20 bad bodies of 1 MiB (any token that may take in tickets can send them) leave at most the cap."""
    from sdesk.serve import REJECTS_MAX_BYTES

    server = Server(tmp_path / "desk.db", "--max-body", str(2 << 20))
    try:
        for n in range(20):
            body = b'{"alerts": "' + b"%02d" % n + b"x" * ((1 << 20) - 16) + b'"}'
            assert server.post("/alertmanager", body)[0] == 400
    finally:
        server.stop()
    kept = list((tmp_path / "rejects").iterdir())
    total = sum(p.stat().st_size for p in kept)
    assert 0 < total <= REJECTS_MAX_BYTES < 20 << 20
    newest = max(kept, key=lambda p: p.name)
    assert newest.read_bytes()[12:14] == b"19"  # the oldest went, the newest stayed
    log = server.proc.stderr.read().decode()
    assert "Traceback" not in log
    dropped = [line for line in log.splitlines() if "rejects" in line and "dropped" in line]
    assert 1 <= len(dropped) < 10, log


# -- serve: who may have a body kept ------------------------------------------------------------


def _desk_with_tokens(db: Path) -> dict[str, str]:
    """A desk with a viewer (vic) and an agent (amy), and an API token each."""
    for args in (("tester", "admin"), ("vic", "viewer"), ("amy", "agent")):
        assert sdesk(db, "user", "add", args[0], "--role", args[1]).returncode == 0
    return {who: "Bearer " + sdesk(db, "user", "token", who).stdout.decode().strip() for who in ("vic", "amy")}


@pytest.fixture(scope="module")
def served_with_tokens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served-tokens")
    tokens = _desk_with_tokens(folder / "desk.db")
    server = Server(folder / "desk.db")
    yield server, folder, tokens
    server.stop()


BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b'{"alerts": [', b"[]", b'{"title": "x"}', b'[{"title": "ok"}, {"title": ""}]',
                     b'{"alerts": [{"labels": {"alertname": "A"}}, {"labels": {"alertname": "bad\\ud800"}}]}',
                     b"From: a@b.example\nSubject: hi\n\nbody\n", b'{"event_action": "trigger"}']),
    st.builds(lambda doc: json.dumps(doc).encode(), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=20)))


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(["/alertmanager", "/grafana", "/tickets", "/email", "/v2/enqueue", "/v2/change/enqueue"]),
       body=BODIES)
def test_a_viewer_token_is_refused_whatever_the_body_and_nothing_is_kept(served_with_tokens, route, body):
    """A viewer's well-formed post was 403 but a malformed one was parsed first, answered 400 and
    its body kept: a viewer could fill rejects/ and evict the bodies other senders' need."""
    server, folder, tokens = served_with_tokens
    status, answer = server.post(route, body, {"Authorization": tokens["vic"]})
    assert status == 403, answer
    assert answer["error"].startswith("permission denied: vic is a viewer; "), answer
    assert not (folder / "rejects").exists() or list((folder / "rejects").iterdir()) == []
    assert count(server.db, "SELECT count(*) FROM tickets") == 0


def test_a_viewer_cannot_evict_the_bodies_kept_for_others(tmp_path):
    """The reproduction: an agent's bad body is kept, then a viewer sends 100 bad bodies of
    100 KB, more than the folder's cap (8 MiB); the agent's body is still there, alone."""
    tokens = _desk_with_tokens(tmp_path / "desk.db")
    server = Server(tmp_path / "desk.db")
    try:
        assert server.post("/alertmanager", b'{"alerts": [', {"Authorization": tokens["amy"]})[0] == 400
        big = b'{"alerts": "' + b"x" * 100_000
        for _ in range(100):
            assert server.post("/alertmanager", big, {"Authorization": tokens["vic"]})[0] == 403
        # and the folder still takes an agent's next one
        assert server.post("/tickets", b"{", {"Authorization": tokens["amy"]})[0] == 400
    finally:
        server.stop()
    kept = sorted(p.read_bytes() for p in (tmp_path / "rejects").iterdir())
    assert kept == [b"{", b'{"alerts": [']
    assert "Traceback" not in server.proc.stderr.read().decode()


def test_a_viewer_promoted_while_serve_runs_is_taken_in(tmp_path):
    """Who may take in tickets is cached with the tokens (2 s): a cached no is confirmed by the
    writer, so a promotion works at once, and a refusal is recorded as any other."""
    db = tmp_path / "desk.db"
    tokens = _desk_with_tokens(db)
    server = Server(db)
    try:
        assert server.post("/tickets", b'{"title": "x"}', {"Authorization": tokens["vic"]})[0] == 403
        assert sdesk(db, "user", "add", "vic", "--role", "agent").returncode == 0
        status, answer = server.post("/tickets", b'{"title": "now an agent"}', {"Authorization": tokens["vic"]})
        assert status == 200 and answer["results"][0]["action"] == "created", answer
    finally:
        server.stop()
    denied = json.loads(sdesk(db, "audit", "log", "--kind", "permission_denied", "--json").stdout)
    assert [e["actor"] for e in denied] == ["vic"]


def test_a_rejects_folder_deleted_while_serve_runs_is_made_again(tmp_path):
    """It was never made again: every later rejected body was lost ("cannot keep a rejected body
    ...: No such file or directory")."""
    import shutil

    server = Server(tmp_path / "desk.db")
    try:
        assert server.post("/alertmanager", b'{"alerts": [')[0] == 400
        shutil.rmtree(tmp_path / "rejects")
        assert server.post("/tickets", b'{"title": ')[0] == 400
        assert server.post("/grafana", b"[")[0] == 400
    finally:
        server.stop()
    assert sorted(p.read_bytes() for p in (tmp_path / "rejects").iterdir()) == [b"[", b'{"title": ']
    log = server.proc.stderr.read().decode()
    assert "cannot keep" not in log and "Traceback" not in log, log
    assert "was missing: made again" in log


# -- serve: hostile headers and clients that go away ------------------------------------------


def _raw_request(server, head: bytes, body: bytes = b"", close_early: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + body)
        if close_early:
            return b""
        s.shutdown(socket.SHUT_WR)  # a Content-Length beyond the body must not keep the server waiting
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def test_a_non_ascii_authorization_header_is_401(tmp_path):
    server = Server(tmp_path / "desk.db", env={"SDESK_SERVE_TOKEN": "s3cret"})
    try:
        body = b'{"title": "x"}'
        for value in ("Bearer s3cr\xe9t".encode("latin-1"), "Bearer ünïcode".encode(), b"\xff\xfe"):
            answer = _raw_request(server, b"POST /tickets HTTP/1.1\r\nHost: x\r\nAuthorization: " + value +
                                  b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body), body)
            assert answer.startswith(b"HTTP/1.1 401"), answer
    finally:
        server.stop()
    log = server.proc.stderr.read().decode()
    assert "Traceback" not in log, log


def test_a_client_that_goes_away_mid_request_is_one_line(tmp_path):
    server = Server(tmp_path / "desk.db")
    try:
        _raw_request(server, b"POST /tickets HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b'{"title": ',
                     close_early=True)
        assert server.post("/tickets", b'{"title": "after"}')[0] == 200  # and it is still serving
    finally:
        server.stop()
    log = server.proc.stderr.read().decode()
    assert "Traceback" not in log, log
    assert len([line for line in log.splitlines() if "went away" in line]) == 1, log


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server that needs a token, watched for tracebacks over every request sent to it."""
    server = Server(tmp_path_factory.mktemp("guarded") / "desk.db", env={"SDESK_SERVE_TOKEN": "s3cret"})
    yield server
    server.stop()
    log = server.proc.stderr.read().decode()
    assert "Traceback" not in log, log


HEADER_VALUES = st.binary(min_size=0, max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
ANSWERED = []


# Derandomized: whether an answer comes depends on the header drawn (the HTTP parser drops some
# connections unanswered), so the share asserted below varied from run to run (about 1 in 10 quick
# runs drew half or fewer answered); the same examples each run make it a fact, not a draw.
@settings(max_examples=examples(150), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from([b"Authorization", b"Content-Length", b"Content-Type", b"Transfer-Encoding",
                             b"X-Forwarded-For", b"Host", b"Cookie", b"Expect"]),
       value=st.one_of(HEADER_VALUES, st.text(max_size=30).map(lambda t: b"Bearer " + t.encode()[:60])))
def test_hostile_headers_get_an_answer_never_a_500(guarded, name, value):
    value = value.replace(b"\r", b"").replace(b"\n", b"")
    body = b'{"title": "headers"}'
    head = b"POST /tickets HTTP/1.1\r\n" + (b"" if name == b"Host" else b"Host: x\r\n") + \
        (b"" if name == b"Authorization" else b"Authorization: Bearer s3cret\r\n") + name + b": " + value + b"\r\n" + \
        (b"" if name in (b"Content-Length", b"Transfer-Encoding") else b"Content-Length: %d\r\n" % len(body)) + \
        b"Connection: close\r\n\r\n"
    try:
        answer = _raw_request(guarded, head, body)
    except ConnectionResetError:
        return  # refused by the HTTP parser before any of sdesk ran
    assert not answer.startswith(b"HTTP/1.1 5"), answer
    if name == b"Authorization" and answer:
        assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 400")), answer
    ANSWERED.append(bool(answer))
    assert guarded.get("/healthz")[0] == 200


def test_hostile_headers_were_answered():
    """(The property above is about answers: most requests must have had one.)"""
    assert len(ANSWERED) >= examples(150) * 2 // 3 and sum(ANSWERED) > len(ANSWERED) / 2, (sum(ANSWERED), len(ANSWERED))


# -- arguments that are not UTF-8 -----------------------------------------------------------------

# Each write that stores an argument's text. A terminal in another encoding, or a script passing
# raw bytes, gives Python arguments with lone surrogates; they reached orjson as a traceback.
ARGUMENT_WRITES = [
    ("new", "{}"), ("comment", "1", "{}"), ("update", "1", "--title", "{}"), ("assign", "1", "{}"),
    ("resolve", "1", "-r", "{}"), ("update", "1", "-l", "k={}"), ("update", "1", "-t", "{}"),
    ("new", "x", "--service", "{}"), ("new", "x", "--requester", "{}"), ("list", "--queue", "{}"),
]


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# (No NUL: an argument cannot hold one; the kernel's argv is C strings.)
@given(bad=st.binary(min_size=1, max_size=4).filter(lambda b: b"\x00" not in b and not _utf8(b)),
       where=st.sampled_from(ARGUMENT_WRITES))
def test_an_argument_that_is_not_utf8_is_one_line_and_changes_nothing(tmp_path, bad, where):
    db = tmp_path / f"args-{next(RUNS)}.db"
    assert sdesk(db, "new", "first").returncode == 0
    before = sdesk(db, "export").stdout
    argv = [os.fsencode(a).replace(b"{}", b"ok" + bad) for a in where]
    proc = subprocess.run([sys.executable, "-m", "sdesk", *argv], env=_env(db), capture_output=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode().startswith("error: ") and proc.stderr.count(b"\n") == 1, proc.stderr
    assert sdesk(db, "export").stdout == before


def _utf8(b: bytes) -> bool:
    try:
        b.decode()
        return True
    except UnicodeDecodeError:
        return False
