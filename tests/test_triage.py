"""Triage: ordered rules with line-numbered errors, the impact x urgency matrix, silences,
correlation (one incident with children for a storm), flapping, replay, re-triage and `why`."""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import rawdb
from hypothesis import given
from hypothesis import strategies as st

from sdesk.errors import BadInput, ExitCode
from sdesk.triage import Stored, TriageConfig, decide, matches, parse_matcher, replay
from sdesk.validated import load_triage as load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # a Thursday


def rules(text: str) -> TriageConfig:
    return load("timezone: UTC\nrules:\n" + text, "triage.yaml")


def fired(config: TriageConfig, ticket: dict, now: datetime = NOON, **kw) -> list[str]:
    decision = decide(config, {"title": "t", "priority": "P3", "labels": {}, "tags": [], **ticket}, now=now, **kw)
    return [f["rule"] for f in decision.explanation.get("rules", ())]


# -- rules, pure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("match, ticket, hit", [
    ("{title: Disk full}", {"title": "Disk full"}, True),
    ("{title: Disk full}", {"title": "disk full"}, False),
    ("{labels.env: [prod, dr]}", {"labels": {"env": "dr"}}, True),
    ("{labels.env: [prod, dr]}", {"labels": {"env": "dev"}}, False),
    ("{title: {contains: DISK}}", {"title": "the disk is full"}, True),
    ("{title: {regex: '^Disk'}}", {"title": "the Disk"}, False),
    ("{labels.value: {gt: 90}}", {"labels": {"value": "91.5"}}, True),
    ("{labels.value: {gt: 90}}", {"labels": {"value": "high"}}, False),
    ("{labels.value: {gte: 90, lt: 95}}", {"labels": {"value": "95"}}, False),
    ("{service: {present: true}}", {"service": "api"}, True),
    ("{service: {missing: true}}", {}, True),
    ("{tags: db}", {"tags": ["db", "x"]}, True),
    ("{tags: {contains: db}}", {"tags": ["dbx"]}, False),
    ("{annotations.runbook: {present: true}}", {}, False),
    ("{any: [{title: a}, {title: b}]}", {"title": "b"}, True),
    ("{all: [{title: b}, {priority: P1}]}", {"title": "b"}, False),
    ("{not: {title: b}}", {"title": "c"}, True),
    ("{text: {regex: '(?i)outage'}}", {"title": "x", "description": "An OUTAGE"}, True),
    ("{tier: 1}", {}, True),
    ("{dependents: {gte: 5}}", {}, False),
])
def test_conditions(match, ticket, hit):
    config = rules(f"  - id: r\n    match: {match}\n    set: {{queue: q}}\n")
    assert (fired(config, ticket, context={"tier": 1, "dependents_total": 3}) == ["r"]) is hit


def test_time_of_day_wraps_midnight_and_weekdays_in_the_desk_zone():
    config = load("timezone: America/New_York\nrules:\n  - id: night\n    match: {time: '22:00-06:00', weekday: [thu]}\n"
                  "    set: {queue: night}\n", "t.yaml")
    # 03:00 UTC Friday is 22:00 Thursday in New York.
    assert fired(config, {}, now=datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)) == ["night"]
    assert fired(config, {}, now=datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)) == []


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59), st.integers(0, 1439))
def test_time_windows_match_their_definition(h1, m1, h2, m2, minute):
    config = rules(f"  - id: w\n    match: {{time: '{h1:02}:{m1:02}-{h2:02}:{m2:02}'}}\n    set: {{queue: q}}\n")
    now = datetime(2026, 11, 26, minute // 60, minute % 60, tzinfo=timezone.utc)
    start, end = h1 * 60 + m1, h2 * 60 + m2
    inside = start <= minute < end if start <= end else (minute >= start or minute < end)
    assert (fired(config, {}, now=now) == ["w"]) is inside


def test_later_rules_see_and_override_earlier_ones_and_stop_ends():
    config = rules("  - id: a\n    match: {title: x}\n    set: {queue: one, tags: [a]}\n"
                   "  - id: b\n    match: {queue: one}\n    set: {queue: two, tags: b}\n    stop: true\n"
                   "  - id: c\n    match: {title: x}\n    set: {queue: three}\n")
    decision = decide(config, {"title": "x", "priority": "P3", "labels": {}, "tags": []}, now=NOON)
    assert [f["rule"] for f in decision.explanation["rules"]] == ["a", "b"]
    assert decision.sets["queue"] == "two" and decision.sets["tags"] == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ("  - id: a\n    match: {colour: red}\n    set: {queue: q}\n", "triage.yaml:4: rules[a].match.colour: unknown field 'colour'"),
    ("  - id: a\n    match:\n      title: {regex: '('}\n    set: {queue: q}\n", "triage.yaml:5: rules[a].match.title.regex: bad regex '('"),
    ("  - id: a\n    match: {title: x}\n    set:\n      page: yes\n", "triage.yaml:6: rules[a].set.page: unknown action 'page'"),
    ("  - id: a\n    match: {title: {like: x}}\n    set: {queue: q}\n", "triage.yaml:4: rules[a].match.title.like: unknown operator 'like'"),
    ("  - id: a\n    match: {title: x}\n    set: {priority: P9}\n", "triage.yaml:5: rules[a].set.priority: expected one of P1, P2, P3, P4"),
    ("  - id: a\n    match: {time: '25:00-01:00'}\n    set: {queue: q}\n", "triage.yaml:4: rules[a].match.time: expected HH:MM-HH:MM"),
    ("  - id: a\n    match: {title: x}\n    set: {queue: q}\n  - id: a\n    match: {title: y}\n    set: {queue: q}\n",
     "triage.yaml:6: rules[a].id: the id is used twice"),
    ("  - match: {title: x}\n    set: {queue: q}\n", "triage.yaml:3: rules[0].id: an id is required"),
])
def test_bad_rules_name_file_line_and_rule(text, message):
    with pytest.raises(BadInput) as e:
        rules(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_example_rules_load():
    config = load((EXAMPLES / "triage.yaml").read_text(), "triage.yaml")
    assert len(config.rules) >= 5


# -- priority ---------------------------------------------------------------------------------------


def test_impact_from_tier_and_blast_radius_and_urgency_from_words():
    config = TriageConfig()
    tier2 = {"ci": "db", "tier": 2, "dependents_total": 3}
    d = decide(config, {"title": "slow queries", "priority": "P3", "labels": {}}, context=tier2, now=NOON)
    assert d.sets["priority"] == "P4" and d.explanation["priority"]["from"] == "matrix: impact 2 x urgency 3"
    wide = {**tier2, "dependents_total": 40}
    d = decide(config, {"title": "checkout is down", "priority": "P3", "labels": {}}, context=wide, now=NOON)
    assert d.explanation["priority"]["impact"] == 1 and d.explanation["priority"]["urgency"] == 2
    assert d.sets["priority"] == "P2" and "raised: 40 dependents" in d.explanation["priority"]["impact_from"]


def test_a_low_tier_ci_that_a_tier_1_service_needs_has_high_impact():
    context = {"ci": "redis-sessions", "tier": 3, "dependents_total": 2, "highest_tier_affected": 1}
    d = decide(TriageConfig(), {"title": "evictions", "priority": "P4", "labels": {}}, context=context, now=NOON)
    assert d.explanation["priority"]["impact"] == 1 and "a tier 1 CI depends on it" in d.explanation["priority"]["impact_from"]
    assert d.sets["priority"] == "P3"  # impact 1 x urgency 3


def test_unknown_impact_keeps_the_priority_given_and_a_rule_overrides_all():
    d = decide(TriageConfig(), {"title": "x", "priority": "P1", "labels": {}}, now=NOON)
    assert "priority" not in d.sets and d.explanation["priority"]["from"] == "as given: impact unknown"
    config = rules("  - id: calm\n    match: {title: x}\n    set: {priority: P4}\n")
    d = decide(config, {"title": "x", "priority": "P1", "labels": {}}, context={"ci": "a", "tier": 1}, now=NOON)
    assert d.sets["priority"] == "P4" and d.explanation["priority"]["from"] == "set by a rule"


def test_burn_rate_counts_only_for_services_with_an_slo():
    from sdesk.validated import load_sla

    config = TriageConfig(slos=load_sla("slos:\n  - {ci: checkout-api, objective: 99.9}\n", "sla.yaml").slos)
    hot = {"title": "errors", "priority": "P3", "labels": {"burn_rate": "15"}, "service": "checkout-api"}
    assert decide(config, hot, context={"ci": "checkout-api", "tier": 2}, now=NOON).sets["priority"] == "P2"
    other = {**hot, "service": "search"}
    assert decide(config, other, context={"ci": "search", "tier": 2}, now=NOON).sets["priority"] == "P4"


# -- silences, pure -------------------------------------------------------------------------------


def test_matchers_like_alertmanager():
    ticket = {"labels": {"alertname": "DiskFull", "instance": "db-1:9100"}, "service": "billing"}
    assert matches([parse_matcher("alertname=DiskFull"), parse_matcher("instance=~db-.*")], ticket)
    assert not matches([parse_matcher("instance=~db")], ticket)  # a regex matches the whole value
    assert matches([parse_matcher("service=billing"), parse_matcher("env!=prod")], ticket)
    assert not matches([parse_matcher('alertname!~"Disk.*"')], ticket)
    for bad in ("=x", "alertname", "a=~("):
        with pytest.raises(BadInput):
            parse_matcher(bad)


# -- through the store and CLI ----------------------------------------------------------------------


@pytest.fixture
def desk(cli, monkeypatch, tmp_path):
    """The example desk, with Alertmanager's groupKey grouping on."""
    config = tmp_path / "desk"
    config.mkdir(exist_ok=True)
    (config / "triage.yaml").write_text((EXAMPLES / "triage.yaml").read_text().replace("group_key: false", "group_key: true"))
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli("cmdb", "import", str(EXAMPLES / "cmdb.yaml"))
    return cli


def alerts(*items, group="{}:{alertname=~\"Postgres.*\"}", status="firing"):
    return json.dumps({"version": "4", "status": status, "groupKey": group, "alerts": [
        {"status": status, "labels": {"severity": "critical", **labels}, "annotations": {"summary": summary}}
        for labels, summary in items]})


def _new(cli, payload):
    out = cli("new", "--format", "alertmanager", "--json", input=payload).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_database_storm_is_one_incident_with_children(desk):
    results = _new(desk, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "payments-db down"),
                                ({"alertname": "ReplicationLag", "instance": "payments-db"}, "lag"),
                                ({"alertname": "HighErrorRate", "service": "checkout-api"}, "checkout 5xx"),
                                group="g1"))
    root, *children = [r["ticket"] for r in results]
    # A later alert from a dependent, in another group and another batch, joins by topology.
    [late] = _new(desk, alerts(({"alertname": "LatencyHigh", "service": "shop-checkout"}, "slow checkout"), group="g2"))
    shown = desk.json("show", str(root))
    assert shown["parent_id"] is None and shown["queue"] == "dba" and shown["priority"] == "P1"
    assert [c["parent_id"] for c in (desk.json("show", str(i)) for i in [*children, late["ticket"]])] == [root] * 3
    why = desk.json("why", str(late["ticket"]))
    assert why["triage"]["correlation"]["reason"] == "topology" and why["triage"]["correlation"]["via"] == "payments-db"
    assert why["triage"]["correlation"]["hops"] >= 1
    assert desk.json("why", str(children[0]))["triage"]["correlation"]["reason"] == "alert group"


def test_a_silenced_alert_is_kept_suppressed_and_out_of_the_queue(desk):
    silence = int(desk("silence", "add", "--match", "alertname=DiskFull", "--match", "instance=~db-.*", "--for", "2h",
                       "--comment", "resize").stdout)
    [r] = _new(desk, alerts(({"alertname": "DiskFull", "instance": "db-9"}, "disk"), group="x"))
    assert r["action"] == "created"
    assert [t["id"] for t in desk.json("list", "--suppressed")] == [r["ticket"]]
    assert r["ticket"] not in [t["id"] for t in desk.json("list")]
    assert desk.json("why", str(r["ticket"]))["suppressed"] == f"silence {silence}"
    [listed] = desk.json("silence", "list")
    assert listed["suppressed"] == 1 and listed["state"] == "active"
    [repeat] = _new(desk, alerts(({"alertname": "DiskFull", "instance": "db-9"}, "disk"), group="x"))
    assert repeat == {**r, "action": "deduplicated"}
    desk("silence", "expire", str(silence))
    assert desk.json("silence", "list") == []
    [other] = _new(desk, alerts(({"alertname": "DiskFull", "instance": "db-10"}, "disk"), group="y"))
    assert other["ticket"] in [t["id"] for t in desk.json("list")]


@pytest.mark.parametrize("args, message", [
    (["--match", "alertname", "--for", "2h"], "expected key=value"),
    (["--match", "a=b", "--for", "soon"], "expected a duration"),
    (["--match", "a=~(", "--for", "1h"], "bad regex"),
])
def test_bad_silences_are_one_line_errors(desk, args, message):
    result = desk("silence", "add", *args, ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_flapping_alert_reopens_its_ticket(desk):
    firing = alerts(({"alertname": "Flappy", "instance": "x"}, "flap"), group="f")
    [first] = _new(desk, firing)
    [resolved] = _new(desk, firing.replace('"firing"', '"resolved"'))
    assert resolved["action"] == "resolved"
    [again] = _new(desk, firing)
    assert again == {**first, "action": "reopened"}
    t = desk.json("show", str(first["ticket"]))
    assert t["status"] == "in_progress" and t["reopen_count"] == 1 and t["occurrences"] == 2
    # The reopening is the source's doing, received by whoever ran `sdesk new` (as every source's action).
    assert [(e["kind"], e["actor"], e["data"].get("received_by")) for e in t["events"] if e["kind"] != "triaged"][-2:] == [
        ("status_changed", "alertmanager", "tester"), ("occurrence", "alertmanager", "tester")]


def test_without_triage_config_nothing_is_triaged(cli):
    [r] = _new(cli, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "down"), group="g"))
    assert cli.json("why", str(r["ticket"]))["triage"] is None
    assert "not triaged" in cli("why", str(r["ticket"])).stdout


def test_rules_check_and_a_broken_file(desk, tmp_path):
    checked = desk.json("rules", "check")
    assert checked["ok"] and checked["rules"][0]["id"] == "staging-is-never-urgent"
    (tmp_path / "triage.yaml").write_text("rules:\n  - id: x\n    match: {nope: 1}\n    set: {queue: q}\n")
    result = desk("--config", str(tmp_path), "rules", "check", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.strip().startswith("error: ") and "triage.yaml:3: rules[x].match.nope: unknown field 'nope'" in result.stderr


def test_replay_shows_what_new_rules_would_change_and_writes_nothing(desk, tmp_path, db_path):
    _new(desk, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "down"),
                      ({"alertname": "DiskFull", "instance": "search-es"}, "disk"), group="r"))
    config = tmp_path / "cfg"
    config.mkdir(exist_ok=True)
    (config / "triage.yaml").write_text((EXAMPLES / "triage.yaml").read_text().replace("set: {queue: dba,", "set: {queue: storage,"))
    before = rawdb.connect(db_path).execute("SELECT count(*), max(id) FROM events").fetchone()
    result = desk.json("--config", str(config), "rules", "test", "--replay")
    assert result["tickets"] == 2 and result["rules"]["database-alerts-to-dba"] == 2
    assert {c["changes"]["queue"][1] for c in result["changed"]} == {"storage"}
    assert rawdb.connect(db_path).execute("SELECT count(*), max(id) FROM events").fetchone() == before
    assert desk("rules", "test", ok=False).exit_code == ExitCode.BAD_INPUT  # --replay is required


def test_retriage_applies_current_rules_and_corrections_are_recorded(desk, tmp_path):
    [r] = _new(desk, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "down"), group="t"))
    ticket = str(r["ticket"])
    desk("update", ticket, "--queue", "storage")
    why = desk.json("why", ticket)
    assert why["queue"] == "storage" and why["corrections"][0]["changed"] == {"queue": ["dba", "storage"]}
    events = [e["kind"] for e in desk.json("show", ticket)["events"]]
    assert "triage_corrected" in events
    out = desk.json("triage", ticket)
    assert out["changes"]["queue"] == ["storage", "dba"]
    assert desk.json("why", ticket)["corrections"] == [] and desk.json("show", ticket)["queue"] == "dba"


def test_replay_is_pure_over_many_tickets():
    config = load((EXAMPLES / "triage.yaml").read_text(), "t.yaml")
    tickets = []
    for i in range(1, 101):
        arrived = {"title": "password reset" if i % 2 else "x", "priority": "P3", "labels": {}, "tags": []}
        # As stored after an intake without the password rule: urgency set, no queue.
        tickets.append(Stored({**arrived, "id": i, "queue": None, "urgency": 3}, arrived, {}, {}, NOON))
    result = replay(config, tickets)
    assert result["rules"]["password-resets"] == 50 and result["would_change"] == 50


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8),
                     st.sampled_from(["title", "labels.env", "P1", "regex", "in", "gt", "22:00-06:00", "(", "mon"]))
_yaml_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["id", "match", "set", "stop", "title", "queue", "any", "not", "all", "regex",
                                     "in", "gt", "tags", "priority", "suppress", "time", "weekday", "labels.x", "?"]),
                    inner, max_size=4)), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["rules", "priority", "correlation", "classifier", "timezone", "x"]),
                       _yaml_values, max_size=4))
def test_any_triage_file_loads_or_is_one_bad_input_line(doc):
    """Whatever the YAML holds, loading gives a config or a one-line BadInput, never a crash;
    a config it gives can decide."""
    _load_or_one_line(doc)


def _load_or_one_line(doc):
    import yaml

    text = yaml.safe_dump(doc)
    try:
        config = load(text, "fuzz.yaml")
    except BadInput as e:
        assert str(e).startswith("fuzz.yaml:") and "\n" not in str(e)
        return
    decide(config, {"title": "x", "priority": "P3", "labels": {"x": "1"}, "tags": ["a"]}, now=NOON)


_conditions = st.dictionaries(
    st.sampled_from(["title", "labels.env", "tags", "tier", "text", "any", "not", "all", "time", "weekday", "bogus"]),
    st.one_of(_scalars, st.lists(_scalars, max_size=3),
              st.dictionaries(st.sampled_from(list(("equals", "in", "regex", "contains", "gt", "lte", "present",
                                                    "missing", "like"))), _yaml_values, max_size=2),
              st.lists(st.dictionaries(st.sampled_from(["title", "labels.env"]), _scalars, min_size=1, max_size=2),
                       max_size=2)), max_size=3)
_actions = st.dictionaries(st.sampled_from(["queue", "priority", "tags", "impact", "suppress", "parent", "kind", "page"]),
                           _yaml_values, max_size=3)


@given(st.lists(st.fixed_dictionaries({"id": st.text(min_size=1, max_size=4), "match": _conditions, "set": _actions}),
                max_size=4))
def test_any_rule_list_loads_or_is_one_bad_input_line(rule_list):
    _load_or_one_line({"timezone": "UTC", "rules": rule_list})


def test_the_classifier_fills_what_no_rule_set_and_sends_doubt_to_triage(cli, tmp_path):
    pytest.importorskip("sklearn", reason="training needs the ml extra (scikit-learn)")
    words = {"printing": "printer toner paper jam tray", "access": "password login locked account reset",
             "storage": "disk quota share drive full"}
    rows = ["text,label"] + [f"{' '.join(v.split()[i % 5:] + v.split()[:i % 5])} request {i},{k}"
                             for i in range(40) for k, v in words.items()]
    (tmp_path / "labelled.csv").write_text("\n".join(rows) + "\n")
    cli("triage", "train", "--from-csv", str(tmp_path / "labelled.csv"), "--text", "text", "--label", "label")
    sure = cli.json("new", "printer paper jam in tray 2")["id"]
    unsure = cli.json("new", "hello there")["id"]
    why = cli.json("why", str(sure))
    assert why["category"] == "printing" and why["triage"]["classifier"]["category"]["applied"] is True
    doubt = cli.json("why", str(unsure))
    assert doubt["category"] is None and doubt["queue"] == "triage"
    assert doubt["triage"]["classifier"]["category"]["sent_to"] == "triage"
    assert "classifier category: printing" in cli("why", str(sure)).stdout


def test_the_same_alert_comes_back_when_its_silence_ends_or_is_expired(desk, monkeypatch):
    firing = alerts(({"alertname": "DiskFull", "instance": "db-9"}, "disk"), group="s")
    silence = desk("silence", "add", "--match", "alertname=DiskFull", "--for", "1h").stdout.strip()
    [r] = _new(desk, firing)
    assert desk.json("list", "--suppressed")[0]["id"] == r["ticket"]
    desk("silence", "expire", silence)
    assert [t["id"] for t in desk.json("list")] == [r["ticket"]] and desk.json("list", "--suppressed") == []
    # A silence that simply runs out: the next repeat brings the ticket back.
    desk("silence", "add", "--match", "alertname=Other", "--for", "1h")
    other = alerts(({"alertname": "Other", "instance": "x"}, "other"), group="o")
    [o] = _new(desk, other)
    assert desk.json("show", str(o["ticket"]))["suppressed"] is not None
    monkeypatch.setenv("SDESK_NOW", "2099-01-01T00:00:00Z")
    assert _new(desk, other)[0]["action"] == "deduplicated"
    t = desk.json("show", str(o["ticket"]))
    assert t["suppressed"] is None and t["events"][-1]["kind"] == "unsuppressed"


def test_a_flapping_alert_reopened_under_a_silence_stays_suppressed(desk):
    firing = alerts(({"alertname": "Flappy", "instance": "x"}, "flap"), group="f")
    [first] = _new(desk, firing)
    _new(desk, firing.replace('"firing"', '"resolved"'))
    desk("silence", "add", "--match", "alertname=Flappy", "--for", "1h")
    assert _new(desk, firing)[0]["action"] == "reopened"
    assert desk.json("show", str(first["ticket"]))["suppressed"] == "silence 1"


def test_replay_and_retriage_start_from_what_arrived(desk, tmp_path):
    calm = tmp_path / "calm"
    calm.mkdir(exist_ok=True)
    (calm / "triage.yaml").write_text("rules:\n  - id: calm\n    match: {labels.alertname: PostgresDown}\n"
                                      "    set: {urgency: 3}\n")
    [r] = _new(desk, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "x")))
    ticket = str(r["ticket"])
    # Re-triaged under a rule that calms it, then the rule goes away:
    desk("--config", str(calm), "triage", ticket)
    assert desk.json("show", ticket)["priority"] == "P3"
    (calm / "triage.yaml").write_text("rules: []\n")
    replayed = desk.json("--config", str(calm), "rules", "test", "--replay")
    assert replayed["changed"][0]["changes"]["priority"] == ["P3", "P1"]
    assert desk.json("--config", str(calm), "triage", ticket)["changes"]["priority"] == ["P3", "P1"]
    assert desk.json("show", ticket)["priority"] == "P1"


def test_group_by_labels_parent_and_runbook_actions(cli, tmp_path, monkeypatch):
    config = tmp_path / "g"
    config.mkdir(exist_ok=True)
    (config / "triage.yaml").write_text(
        "correlation: {group_by: [cluster]}\nrules:\n"
        "  - id: disk\n    match: {labels.alertname: DiskFull}\n    set: {runbook: clean-tmp}\n"
        "  - id: under-1\n    match: {labels.alertname: Child}\n    set: {parent: SD-1}\n")
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    first, second = _new(cli, alerts(({"alertname": "DiskFull", "cluster": "eu,1"}, "a"),
                                     ({"alertname": "Other", "cluster": "eu,1"}, "b"), group="x"))
    [third] = _new(cli, alerts(({"alertname": "Lone", "cluster": "us"}, "c"), group="y"))
    [child] = _new(cli, alerts(({"alertname": "Child"}, "d"), group="z"))
    assert cli.json("show", str(first["ticket"]))["runbook"] == "clean-tmp"
    assert cli.json("show", str(second["ticket"]))["parent_id"] == first["ticket"]
    assert cli.json("show", str(third["ticket"]))["parent_id"] is None
    assert cli.json("why", str(child["ticket"]))["triage"]["correlation"] == {"parent": 1, "reason": "set by a rule"}


def test_why_prints_what_payloads_wrote_as_text(desk):
    [r] = _new(desk, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "[bold]x[/oops]"), group="m"))
    desk("update", str(r["ticket"]), "--category", "[/oops]")
    out = desk("why", str(r["ticket"])).stdout
    assert "category [/oops]" in out


def test_a_trained_model_alone_turns_on_only_the_classifier(cli, tmp_path):
    pytest.importorskip("sklearn", reason="training needs the ml extra (scikit-learn)")
    rows = ["text,label"] + [f"printer toner jam {i},printing" for i in range(30)] + \
        [f"password locked reset {i},access" for i in range(30)]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    cli("triage", "train", "--from-csv", str(tmp_path / "l.csv"), "--text", "text", "--label", "label")
    ticket = cli.json("new", "printer jam", "-p", "P2")["id"]
    why = cli.json("why", str(ticket))
    assert why["priority"] == "P2" and why["triage"]["priority"]["from"].startswith("as given: no priority matrix")
    assert why["category"] == "printing"


# -- issue 19: a child more urgent than its parent, re-triage, why's text, reopened tickets ------------


def _notifier_desk(cli, monkeypatch, tmp_path, triage_text: str):
    """The example desk (cmdb, oncall.yaml) with the given triage.yaml, and a notifier that
    writes each page it gets to a file (as test_paging's desk)."""
    config = tmp_path / "paging"
    config.mkdir(exist_ok=True)
    log, script = tmp_path / "pages.log", tmp_path / "notify.py"
    script.write_text(f"import sys\nopen({str(log)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    oncall = (EXAMPLES / "oncall.yaml").read_text().replace(
        "# notifier:\n#   command: [./notify-chat.sh, \"#oncall\"]",
        f"notifier:\n  command: [{json.dumps(sys.executable)}, {json.dumps(str(script))}]\n#")
    assert "notifier:\n  command" in oncall
    (config / "oncall.yaml").write_text(oncall)
    (config / "triage.yaml").write_text(triage_text)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli("cmdb", "import", str(EXAMPLES / "cmdb.yaml"))
    cli.log = log
    cli.at = lambda when: monkeypatch.setenv("SDESK_NOW", when)
    return cli


def test_a_p1_child_of_a_p3_incident_raises_it_and_it_pages(cli, monkeypatch, tmp_path):
    desk = _notifier_desk(cli, monkeypatch, tmp_path, (EXAMPLES / "triage.yaml").read_text())
    desk.at("2026-11-10T12:00:00Z")
    warning = desk.new("checkout-api latency warning", "--ci", "checkout-api", "-p", "P3")
    outage = desk.new("production down outage, all users", "--ci", "checkout-api", "-p", "P3")
    child = desk.json("show", str(outage))
    assert child["parent_id"] == warning and child["priority"] == "P1"
    assert desk.json("show", str(warning))["priority"] == "P1"
    pages = []
    for when in ("2026-11-10T12:01:00Z", "2026-11-10T12:25:00Z"):
        desk.at(when)
        pages += desk.json("tick")["paged"]
    assert pages and {p["ticket"] for p in pages} == {warning}
    assert [json.loads(line)["ticket"] for line in desk.log.read_text().splitlines()][0] == warning
    # Both tickets' `why` say what happened, and why the incident (not the child) pages.
    parent_why, child_why = desk.json("why", str(warning)), desk.json("why", str(outage))
    assert [(r["from"], r["to"], r["child"]) for r in parent_why["raised"]] == [("P3", "P1", outage)]
    assert child_why["triage"]["correlation"]["raised"] == {"from": "P3", "to": "P1"}
    assert "priority raised P3 -> P1" in desk("why", str(warning)).stdout
    assert "raised SD-1 from P3 to P1" in desk("why", str(outage)).stdout
    assert "priority P3 → P1: raised" in " ".join(desk("show", str(warning)).stdout.split())
    assert desk.json("audit", "verify")["ok"]


PRIORITY_RULES = "rules:\n" + "".join(
    f"  - id: want-{p}\n    match: {{labels.want: {p}}}\n    set: {{priority: {p}}}\n" for p in ("P1", "P2", "P3", "P4"))


@pytest.mark.parametrize("parent", ["P1", "P2", "P3", "P4"])
@pytest.mark.parametrize("child", ["P1", "P2", "P3", "P4"])
def test_a_parent_is_as_urgent_as_its_most_urgent_open_child(cli, monkeypatch, tmp_path, parent, child):
    desk = _notifier_desk(cli, monkeypatch, tmp_path, PRIORITY_RULES)
    desk.at("2026-11-10T12:00:00Z")
    # Correlated at intake (same CI, within the window)...
    root = desk.new("root", "--ci", "checkout-api", "-l", f"want={parent}")
    correlated = desk.new("child", "--ci", "checkout-api", "-l", f"want={child}")
    # ... linked by hand, and a child whose priority a person raises later.
    other = desk.new("other root", "--ci", "search-api", "-l", f"want={parent}")
    linked = desk.new("linked", "-p", child)
    desk("link", str(linked), "--parent", str(other))
    third = desk.new("third root", "--ci", "auth", "-l", f"want={parent}")
    later = desk.new("later", "-p", "P4")
    desk("link", str(later), "--parent", str(third))
    desk("update", str(later), "--priority", child)
    for top, kid in ((root, correlated), (other, linked), (third, later)):
        assert desk.json("show", str(kid))["parent_id"] == top
        assert desk.json("show", str(top))["priority"] == min(parent, child)
        raised = desk.json("why", str(top)).get("raised", [])
        assert [r["to"] for r in raised][-1:] == ([child] if child < parent else [])
    assert desk.json("audit", "verify")["ok"]


@pytest.fixture
def full_desk(cli, monkeypatch, tmp_path):
    """The example desk with rules, CMDB and SLOs, at a fixed time."""
    config = tmp_path / "full"
    config.mkdir(exist_ok=True)
    for name in ("cmdb.yaml", "triage.yaml", "sla.yaml"):
        (config / name).write_text((EXAMPLES / name).read_text())
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli("cmdb", "import", str(config / "cmdb.yaml"))
    cli.at = lambda when: monkeypatch.setenv("SDESK_NOW", when)
    cli.at("2026-11-26T12:00:00Z")
    return cli


def _rules_part(desk, tmp_path):
    return _new(desk, alerts(({"alertname": "PostgresDown", "instance": "payments-db"}, "down"), group="r"))[0]["ticket"]


def _correlation_part(desk, tmp_path):
    desk.new("checkout errors", "--ci", "checkout-api")
    return desk.new("checkout 5xx for everyone", "--ci", "checkout-api", "-p", "P2")


def _slo_burn_part(desk, tmp_path):
    desk.at("2026-11-26T08:00:00Z")
    desk.new("checkout 5xx", "-p", "P1", "--service", "checkout-api")
    desk.at("2026-11-26T12:00:00Z")
    return desk.new("checkout slow for one customer", "-p", "P4", "--service", "checkout-api")


def _classifier_part(desk, tmp_path):
    pytest.importorskip("sklearn", reason="training needs the ml extra (scikit-learn)")
    rows = ["text,label"] + [f"printer toner jam {i},printing" for i in range(30)] + \
        [f"password locked reset {i},access" for i in range(30)]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    desk("triage", "train", "--from-csv", str(tmp_path / "l.csv"), "--text", "text", "--label", "label")
    return desk.new("printer toner jam again")


def _silence_part(desk, tmp_path):
    desk("silence", "add", "--match", "alertname=DiskFull", "--match", "instance=db-9", "--for", "2h")
    return _new(desk, alerts(({"alertname": "DiskFull", "instance": "db-9"}, "disk"), group="s"))[0]["ticket"]


def _raised_parent_part(desk, tmp_path):
    parent = desk.new("checkout-api latency warning", "--ci", "checkout-api", "-p", "P3")
    desk.new("production down outage, all users", "--ci", "checkout-api")
    return parent


def _hand_linked_part(desk, tmp_path):
    parent = desk.new("checkout errors", "--ci", "checkout-api")
    child = desk.new("a customer cannot pay", "--service", "billing-web")
    desk("link", str(child), "--parent", str(parent))
    desk("update", str(child), "--queue", "payments")
    return child


PARTS = [_rules_part, _correlation_part, _slo_burn_part, _classifier_part, _silence_part, _raised_parent_part,
         _hand_linked_part]


def _key_paths(value, path=()):
    """Every key path of a JSON value (list items by position)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*path, k)
            yield from _key_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _key_paths(v, (*path, i))


def _leaves(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, key)
    else:
        yield key, value


def _shown(key, value) -> str:
    """A `why --json` leaf as the text shows it."""
    from sdesk.render import local

    if value is True:
        return key
    if key in ("at", "triaged_at"):
        return local(value)
    if key in ("id", "parent", "parent_id", "child") and isinstance(value, int):
        return f"SD-{value}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check_text_shows_json(desk, ticket):
    explained = desk.json("why", str(ticket))
    text = " ".join(desk("why", str(ticket)).stdout.split())  # a line rich wrapped reads as one
    missing = [(key, value) for key, value in _leaves(explained)
               if value not in (None, "", False) and " ".join(_shown(key, value).split()) not in text]
    assert missing == [], f"why's text leaves out {missing}:\n{text}"
    return explained


@pytest.mark.parametrize("part", PARTS, ids=lambda f: f.__name__.strip("_"))
def test_why_text_shows_every_part_of_the_json(full_desk, tmp_path, part):
    ticket = part(full_desk, tmp_path)
    _check_text_shows_json(full_desk, ticket)
    full_desk("triage", str(ticket))
    _check_text_shows_json(full_desk, ticket)


@pytest.mark.parametrize("part", PARTS, ids=lambda f: f.__name__.strip("_"))
def test_retriage_keeps_every_part_of_the_explanation_that_still_holds(full_desk, tmp_path, part):
    ticket = part(full_desk, tmp_path)
    before = full_desk.json("why", str(ticket))
    assert full_desk.json("triage", str(ticket))["changes"] == {}  # nothing changed...
    after = full_desk.json("why", str(ticket))
    # ... and nothing of the explanation is lost (figures such as the burn are computed anew).
    lost = set(_key_paths(before["triage"])) - set(_key_paths(after["triage"]))
    assert lost == set() and after["priority"] == before["priority"] and after["parent_id"] == before["parent_id"]
    assert {k: v for k, v in after.items() if k not in ("triage", "triaged_at", "raised")} == \
        {k: v for k, v in before.items() if k not in ("triage", "triaged_at", "raised")}


@pytest.mark.parametrize("done", [["resolve"], ["resolve", "close"]])
def test_a_reopened_ticket_shows_its_resolution_as_the_previous_one(full_desk, done):
    desk = full_desk
    ticket = str(desk.new("checkout errors", "--ci", "checkout-api"))
    desk("resolve", ticket, "--resolution", "rolled back the deploy", "--code", "rollback")
    if "close" in done:
        desk("close", ticket)
    desk.at("2026-11-26T14:00:00Z")
    desk("reopen", ticket)
    shown = [" ".join(line.split()) for line in desk("show", ticket).stdout.splitlines()]
    assert "previous resolution rolled back the deploy [rollback] (reopened since)" in shown
    assert not any(line.startswith("resolution ") for line in shown)
    assert any(line.startswith("reopened 1 time, last ") for line in shown)
    draft = desk("postmortem", ticket).stdout
    assert "| Status | in_progress |" in draft and "**Resolution:**" not in draft
    assert "**Previous resolution** (rollback), reopened 2026-11-26T14:00:00Z: rolled back the deploy" in draft
    desk("resolve", ticket, "--resolution", "fixed the pool size", "--code", "fixed")
    shown = [" ".join(line.split()) for line in desk("show", ticket).stdout.splitlines()]
    assert "resolution fixed the pool size [fixed]" in shown
    assert "| Status | resolved (fixed) |" in desk("postmortem", ticket).stdout


def test_a_postmortem_tells_hand_linked_tickets_from_correlated_ones(full_desk):
    desk = full_desk
    root = desk.new("checkout errors", "--ci", "checkout-api")
    correlated = desk.new("checkout 5xx", "--ci", "checkout-api")
    linked = desk.new("a customer cannot pay", "--service", "billing-web")
    desk("link", str(linked), "--parent", str(root))
    assert [desk.json("show", str(i))["parent_id"] for i in (correlated, linked)] == [root, root]
    draft = desk("postmortem", str(root)).stdout
    assert f"- 1 ticket correlated by triage: SD-{correlated} checkout 5xx" in draft
    assert f"- SD-{linked} a customer cannot pay: linked by tester" in draft
    assert f"SD-{linked} a customer cannot pay" not in draft.split("correlated by triage")[1].split("\n")[0]
