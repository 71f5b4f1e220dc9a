"""Real payloads from ../shared/corpus through `sdesk new --format auto`, and the formats'
semantics: fingerprints, per-alert resolve, PagerDuty dedup_key, change events."""

import itertools
import json
from pathlib import Path

import pytest
import rawdb
from conftest import examples
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sdesk.errors import BadInput, ExitCode
from sdesk.intake.formats import SEVERITY, alertmanager_fingerprint, parse_document, parse_jsonl

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not found: the real-payload tests need ../shared/corpus beside the clone")
    return CORPUS


def payloads(folder: str) -> list[str]:
    return sorted(p.name for p in (CORPUS / folder).glob("*.json")) if CORPUS.is_dir() else ["(corpus absent)"]


def rows(db_path, sql, *args):
    with rawdb.opened(db_path) as conn:
        return [tuple(row) for row in conn.execute(sql, args).fetchall()]


def desk_made(db) -> bool:
    """Whether sdesk made the desk: its file, or on PostgreSQL its tables in the test's schema."""
    if not rawdb.is_pg(db):
        return db.exists()
    with rawdb.opened(db) as conn:
        return conn.execute("SELECT to_regclass('tickets') IS NOT NULL").fetchone()[0]


def ingest(cli, path, *extra, ok=True):
    result = cli("new", "--format", "auto", str(path), "--json", *extra, ok=ok)
    return result, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("name", payloads("alertmanager"))
def test_every_alertmanager_payload_is_taken_and_every_alert_kept(cli, db_path, corpus, name):
    doc = json.loads((corpus / "alertmanager" / name).read_text())
    _, results = ingest(cli, corpus / "alertmanager" / name)
    assert len(results) == len(doc["alerts"])
    assert {r["format"] for r in results} == {"alertmanager"}
    assert rows(db_path, "SELECT count(*) FROM alerts")[0][0] == len(doc["alerts"])
    firing = [a for a in doc["alerts"] if (a.get("status") or doc.get("status")) != "resolved"]
    assert sum(r["action"] in ("created", "deduplicated") for r in results) == len(firing)


@pytest.mark.parametrize("name", payloads("grafana"))
def test_every_grafana_payload_is_detected_and_taken(cli, corpus, name):
    _, results = ingest(cli, corpus / "grafana" / name)
    assert results and {r["format"] for r in results} == {"grafana"}
    assert all(r["action"] in ("created", "resolved", "ignored") for r in results)


@pytest.mark.parametrize("name", payloads("opsgenie"))
def test_every_opsgenie_request_is_taken(cli, corpus, name):
    _, [result] = ingest(cli, corpus / "opsgenie" / name)
    assert result["format"] == "opsgenie" and result["action"] == "created"


@pytest.mark.parametrize("name", payloads("pagerduty"))
def test_pagerduty_events_are_taken_and_api_responses_refused(cli, corpus, name):
    result, results = ingest(cli, corpus / "pagerduty" / name, ok=False)
    if name.startswith("pd_api_schema_response"):  # PagerDuty's answers, not events
        assert result.exit_code == ExitCode.BAD_INPUT and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2
    else:
        assert result.exit_code == 0, result.stderr
        assert {r["format"] for r in results} == {"pagerduty"}


@pytest.mark.parametrize("name", sorted(p.name for p in (CORPUS / "bad_input").glob("*.json*")) if CORPUS.is_dir() else ["-"])
def test_bad_input_is_taken_as_far_as_sensible_or_refused_in_one_line(cli, db_path, corpus, name):
    result, _ = ingest(cli, corpus / "bad_input" / name, ok=False)
    assert "Traceback" not in result.stderr
    if result.exit_code:
        assert result.exit_code == ExitCode.BAD_INPUT
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
        assert not desk_made(db_path) or rows(db_path, "SELECT count(*) FROM tickets")[0][0] == 0


def test_firing_then_resolved_resolves_the_ticket(cli, corpus):
    _, [fired] = ingest(cli, corpus / "alertmanager" / "alertmanager_bot_pair_firing.json")
    _, [resolved] = ingest(cli, corpus / "alertmanager" / "alertmanager_bot_pair_resolved.json")
    assert resolved == {**fired, "where": resolved["where"], "action": "resolved"}
    t = cli.json("show", str(fired["ticket"]))
    assert t["status"] == "resolved" and t["resolution_code"] == "auto-resolved"
    assert (t["events"][-1]["actor"], t["events"][-1]["data"]["received_by"]) == ("alertmanager", "tester")


def test_record_resolved_only_notes_it(cli, corpus):
    _, [fired] = ingest(cli, corpus / "alertmanager" / "alertmanager_bot_pair_firing.json")
    _, [resolved] = ingest(cli, corpus / "alertmanager" / "alertmanager_bot_pair_resolved.json", "--record-resolved")
    assert resolved["action"] == "recorded"
    t = cli.json("show", str(fired["ticket"]))
    assert t["status"] == "new" and t["events"][-1]["kind"] == "alert_resolved"


def test_a_resolved_alert_inside_a_firing_group_is_not_opened(cli, db_path, corpus):
    _, results = ingest(cli, corpus / "alertmanager" / "issue1051_group_mixed_firing_resolved.json")
    assert [r["action"] for r in results] == ["created", "ignored"]
    assert rows(db_path, "SELECT status, action FROM alerts ORDER BY id") == [("firing", "created"),
                                                                              ("resolved", "ignored")]


def test_fingerprint_is_alertmanagers_own(cli, corpus):
    path = corpus / "alertmanager" / "issue2447_raw_body_am0.21_fingerprint_truncatedAlerts.json"
    given_fp = json.loads(path.read_text())["alerts"][0]["fingerprint"]
    _, [result] = ingest(cli, path)
    t = cli.json("show", str(result["ticket"]))
    assert t["fingerprint"] == f"alertmanager:{given_fp}"
    assert t["title"] == "This is a demo" and t["priority"] == "P1" and t["labels"]["server"] == "ni3"


# GET /api/v2/alerts of Alertmanager 0.25 (Debian's prometheus-alertmanager), as served: one
# alert active, one silenced. `curl -s localhost:9093/api/v2/alerts | sdesk new` is in the README.
ALERTMANAGER_API = [
    {
        "annotations": {
            "summary": "Disk full on db-1"
        },
        "endsAt": "2026-12-07T03:46:34.000Z",
        "fingerprint": "9556f853bb27ef8b",
        "receivers": [
            {
                "name": "none"
            }
        ],
        "startsAt": "2026-12-07T02:46:34.000Z",
        "status": {
            "inhibitedBy": [],
            "silencedBy": [],
            "state": "active"
        },
        "updatedAt": "2026-12-07T02:46:34.394Z",
        "generatorURL": "http://prometheus:9090/graph",
        "labels": {
            "alertname": "DiskFull",
            "instance": "db-1",
            "severity": "critical"
        }
    },
    {
        "annotations": {
            "summary": "p99 latency high on web-2"
        },
        "endsAt": "2026-12-07T03:46:34.000Z",
        "fingerprint": "cdc6e808b2da7b8f",
        "receivers": [
            {
                "name": "none"
            }
        ],
        "startsAt": "2026-12-07T02:46:34.000Z",
        "status": {
            "inhibitedBy": [],
            "silencedBy": [
                "b6a458ce-48ab-4ccb-aa86-5bf4505aa9e6"
            ],
            "state": "suppressed"
        },
        "updatedAt": "2026-12-07T02:46:34.394Z",
        "labels": {
            "alertname": "HighLatency",
            "instance": "web-2",
            "severity": "warning"
        }
    }
]


@pytest.mark.parametrize("fmt", ["auto", "alertmanager"])
def test_alertmanagers_api_output_is_taken(cli, db_path, fmt):
    """Alertmanager's API lists its alerts as a JSON array (status an object, no group), not a
    webhook body: the active one opens a ticket with Alertmanager's fingerprint (the webhook's
    later alerts deduplicate onto it), the silenced one is kept as an alert and opens none."""
    result = cli("new", "--format", fmt, "--json", "-", input=json.dumps(ALERTMANAGER_API))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["format"], r["action"]) for r in lines] == [("alertmanager", "created"), ("alertmanager", "ignored")]
    t = cli.json("show", str(lines[0]["ticket"]))
    assert (t["title"], t["priority"]) == ("Disk full on db-1", "P1")
    assert t["fingerprint"] == "alertmanager:9556f853bb27ef8b" == \
        "alertmanager:" + alertmanager_fingerprint(ALERTMANAGER_API[0]["labels"])
    assert rows(db_path, "SELECT status, action FROM alerts ORDER BY id") == [("firing", "created"), ("firing", "ignored")]
    webhook = {"version": "4", "status": "firing", "alerts": [{**ALERTMANAGER_API[0], "status": "firing"}]}
    again = json.loads(cli("new", "--json", "-", input=json.dumps(webhook)).stdout)
    assert (again["ticket"], again["action"]) == (t["id"], "deduplicated")


def _api_alert(i: int) -> dict:
    return {**ALERTMANAGER_API[0], "fingerprint": f"{i:016x}", "labels": {"alertname": "DiskFull", "instance": f"db-{i}"},
            "annotations": {"summary": f"Disk full on db-{i}"}}


_DESKS = itertools.count()
_NOT_A_TICKET = st.text(max_size=8).filter(lambda k: k not in ("labels", "title"))
# What a hostile or broken list may hold beside its alerts: anything JSON but an alert object.
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.lists(st.integers(), max_size=3), st.dictionaries(_NOT_A_TICKET, st.integers() | st.text(max_size=5), max_size=3),
    st.builds(lambda v: {"labels": v, "startsAt": "2026-12-07T02:46:34Z"}, st.none() | st.text(max_size=5) | st.just({})
              | st.lists(st.text(max_size=3), max_size=2)))


def _holds_no_text(value) -> bool:
    """Whether any string in `value` (keys too) holds what is not text: a NUL or a lone surrogate."""
    if isinstance(value, str):
        return any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_holds_no_text(k) or _holds_no_text(v) for k, v in value.items())
    return isinstance(value, list) and any(_holds_no_text(v) for v in value)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=st.lists(st.tuples(st.sampled_from(["good", "junk", "nul", "surrogate"]), JUNK), min_size=1, max_size=8),
       fmt=st.sampled_from(["auto", "alertmanager"]))
@example(items=[("junk", {"\x00": 0})], fmt="auto")  # found on a CI run: a NUL in a junk item's key
def test_an_api_list_mixing_alerts_and_junk_stores_exactly_the_alerts(cli, tmp_path, items, fmt):
    """Any list of Alertmanager's API alerts among junk (numbers, null, text, {}, objects without
    labels) and alerts holding a NUL or a lone surrogate: each good alert is stored, each other
    item is rejected alone, junk by its index in the list, and the exit is 2 when any was."""
    if not any(kind == "good" for kind, _ in items):
        items = [*items, ("good", None)]
    doc = []
    for i, (kind, junk) in enumerate(items):
        if kind == "junk":
            doc.append(junk)
        else:
            alert = _api_alert(i)
            spoil = {"nul": "\x00", "surrogate": "\ud800"}.get(kind, "")
            doc.append({**alert, "annotations": {"summary": f"Disk full{spoil} on db-{i}"}})
    db = tmp_path / f"{next(_DESKS)}.db"  # a fresh desk for each example (hypothesis replays some)
    r = cli("new", "--format", fmt, "--json", "--db", str(db), "-", input=json.dumps(doc), ok=False)
    good = [i for i, (kind, _) in enumerate(items) if kind == "good"]
    assert r.exit_code == (0 if len(good) == len(items) else 2), r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["where"] for x in results] == [f"alert {i + 1}" for i in range(len(items))]
    assert [i for i, x in enumerate(results) if x["action"] == "created"] == good
    for i, (kind, junk) in enumerate(items):
        if kind == "junk" and _holds_no_text(junk):  # a NUL in a key: rejected for that first, alone all the same
            assert "not text" in results[i]["error"], results[i]
        elif kind == "junk":
            assert results[i]["error"].startswith(f"[{i}]: expected an alert object"), results[i]
        elif kind != "good":
            assert "not text" in results[i]["error"], results[i]
    titles = [t for (t,) in rows(db, "SELECT title FROM tickets ORDER BY id")] if good else []
    assert titles == [f"Disk full on db-{i}" for i in good]


@pytest.mark.parametrize("spoil", ["\x00", "\ud800"])
def test_an_api_list_whose_only_alert_holds_a_nul_rejects_that_alert_for_it(cli, spoil):
    doc = [{**_api_alert(0), "annotations": {"summary": f"x{spoil}y"}}]
    r = cli("new", "-", input=json.dumps(doc), ok=False)
    assert r.exit_code == 2 and "stdin: alert 1: annotations.summary: a " in r.stderr, r.stderr
    assert "webhook body" not in r.stderr


def test_alertmanager_fingerprint_matches_its_algorithm():
    assert alertmanager_fingerprint({"alertname": "DemoAlert", "server": "ni3", "severity": "critical"}) == \
        "8a07086b74f3ba78"
    assert alertmanager_fingerprint({}) == "cbf29ce484222325"


def test_pagerduty_dedup_key_semantics(cli, tmp_path):
    def send(action, **extra):
        event = {"routing_key": "secret-integration-key", "dedup_key": "db-disk", "event_action": action, **extra}
        return json.loads(cli("new", "-", "--json", input=json.dumps(event)).stdout)

    payload = {"summary": "Disk 95% on db-1", "source": "db-1", "severity": "critical"}
    first = send("trigger", payload=payload)
    assert (first["format"], first["action"]) == ("pagerduty", "created")
    assert send("trigger", payload=payload)["action"] == "deduplicated"
    assert send("acknowledge")["action"] == "acknowledged"
    assert send("resolve")["action"] == "resolved"
    again = send("trigger", payload=payload)
    assert again["action"] == "created" and again["ticket"] != first["ticket"]
    t = cli.json("show", str(first["ticket"]))
    assert t["priority"] == "P1" and t["status"] == "resolved" and t["occurrences"] == 2
    assert "secret-integration-key" not in json.dumps(t)


def test_pagerduty_change_events_are_kept_for_enrichment(cli, db_path, corpus):
    _, [result] = ingest(cli, corpus / "pagerduty" / "pd_api_schema_change_event_example_git-change-event.json")
    assert result["action"] == "recorded" and result["ticket"] is None
    assert rows(db_path, "SELECT source, summary FROM changes") == [("pagerduty", "Merge Pull Request")]


def test_unknown_format_and_bad_format_name(cli):
    r = cli("new", "-", input='{"hello": 1}', ok=False)
    assert r.exit_code == ExitCode.BAD_INPUT and "give --format" in r.stderr
    r = cli("new", "--format", "nagios", ok=False, input="{}")
    assert r.exit_code == ExitCode.BAD_INPUT and "unknown format 'nagios'" in r.stderr


def test_alertmanager_stream_one_payload_per_line(cli, db_path, tmp_path):
    def payload(status, instance):
        return json.dumps({"version": "4", "status": status, "alerts": [
            {"status": status, "labels": {"alertname": "Down", "instance": instance}, "annotations": {}}]})

    src = tmp_path / "am.jsonl"
    src.write_text("\n".join([payload("firing", "a"), payload("firing", "a"), payload("firing", "b"),
                              payload("resolved", "a"), "not json"]) + "\n")
    result = cli("new", "--jsonl", "--format", "alertmanager", str(src), "--json", ok=False)
    actions = [json.loads(line)["action"] for line in result.stdout.splitlines()]
    assert actions == ["created", "deduplicated", "created", "resolved", "rejected"]
    assert result.exit_code == ExitCode.BAD_INPUT
    # A line equal to an earlier one is parsed once, and still reported under its own number.
    assert [json.loads(line)["where"] for line in result.stdout.splitlines()[:2]] == ["line 1 alert 1", "line 2 alert 1"]


def test_a_repeated_line_follows_the_severity_table_in_force():
    line = json.dumps({"status": "firing", "alerts": [{"labels": {"alertname": "Down", "severity": "sev-x"}}]})
    [default] = parse_jsonl([line], fmt="alertmanager")
    [mapped] = parse_jsonl([line], fmt="alertmanager", severity={**SEVERITY, "sev-x": "P1"})
    assert default.signal.ticket["priority"] == "P3" and mapped.signal.ticket["priority"] == "P1"


def test_repeats_in_one_batch_are_one_event_and_every_alert_is_kept(cli, db_path, tmp_path):
    firing = {"version": "4", "status": "firing", "alerts": [
        {"labels": {"alertname": "Down", "instance": "a"}, "annotations": {"summary": "a is down"}}]}
    src = tmp_path / "am.jsonl"
    src.write_text("\n".join([json.dumps(firing)] * 5) + "\n")
    cli("new", "--jsonl", "--format", "alertmanager", str(src))
    [ticket] = cli.json("list")
    assert ticket["occurrences"] == 5
    events = cli.json("show", str(ticket["id"]))["events"]
    assert [(e["kind"], e["data"].get("occurrences")) for e in events] == [("created", 5)]
    assert rows(db_path, "SELECT action, count(*) FROM alerts GROUP BY action ORDER BY action") == [("created", 1), ("deduplicated", 4)]
    # A later batch adds one event, with how many repeats it brought.
    cli("new", "--jsonl", "--format", "alertmanager", str(src))
    events = cli.json("show", str(ticket["id"]))["events"]
    assert [(e["kind"], e["data"].get("occurrences"), e["data"].get("repeats")) for e in events][1:] == \
        [("occurrence", 10, 5)]
    assert cli("audit", "verify").exit_code == 0


def test_an_alert_with_a_secret_is_redacted_even_when_repeated(cli, db_path, tmp_path):
    leaky = {"status": "firing", "alerts": [{"labels": {"alertname": "DbDown", "dsn": "postgres://app:hunter2pw@db:5432"},
                                             "annotations": {"summary": "token=ghp_" + "a" * 36}}]}
    src = tmp_path / "am.jsonl"
    src.write_text("\n".join([json.dumps(leaky)] * 3) + "\n")
    cli("new", "--jsonl", "--format", "alertmanager", str(src))
    dump = "\n".join(rawdb.content(db_path))
    assert "hunter2pw" not in dump and "ghp_aaaa" not in dump
    assert "[REDACTED:url_password]" in dump


# -- fuzzing ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_a_parser(text):
    for fmt in ("auto", "json", "alertmanager", "pagerduty", "grafana", "opsgenie"):
        try:
            parse_document(text, fmt)
        except BadInput:
            pass


@given(json_values)
def test_arbitrary_json_never_crashes_a_parser(value):
    text = json.dumps(value)
    for fmt in ("auto", "json", "alertmanager", "pagerduty", "grafana", "opsgenie"):
        try:
            _, records = parse_document(text, fmt)
        except BadInput:
            continue
        for r in records:
            assert (r.signal is None) != (r.error is None)


@settings(max_examples=examples(150))
@given(st.data())
def test_mutated_real_payloads_never_crash(data):
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus not found")
    files = sorted(CORPUS.glob("*/*.json"))
    doc = json.loads(data.draw(st.sampled_from(files)).read_text())
    # Replace one value somewhere in the document by an arbitrary JSON value.
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    if path:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = data.draw(json_values)
    try:
        parse_document(json.dumps(doc), "auto")
    except BadInput:
        pass
