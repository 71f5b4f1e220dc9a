"""SLA clocks from history: calendars with working hours, holidays and DST, pauses while
waiting, policy matching, and `sdesk sla` over the desk."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdesk.domain.sla import clocks, working_time
from sdesk.errors import BadInput, ExitCode
from sdesk.validated import load_sla as load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"
UTC = timezone.utc
CONFIG = load((EXAMPLES / "sla.yaml").read_text(), "sla.yaml")
OFFICE = CONFIG.policies[2].calendar  # london-office: mon-fri 08:00-18:00, Christmas off


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)


def test_working_time_skips_nights_weekends_and_holidays():
    # Friday 17:00 to Monday 09:00 London (GMT) is one hour on Friday and one on Monday.
    assert working_time(OFFICE, at("2026-11-27T17:00"), at("2026-11-30T09:00")) == timedelta(hours=2)
    # Christmas (Friday) and the 28th (Monday) are holidays.
    assert working_time(OFFICE, at("2026-12-24T17:00"), at("2026-12-29T09:00")) == timedelta(hours=2)
    # In summer London is UTC+1: 08:00 local is 07:00Z.
    assert working_time(OFFICE, at("2026-07-01T06:00"), at("2026-07-01T08:00")) == timedelta(hours=1)


@given(st.integers(0, 60 * 24 * 400), st.integers(0, 60 * 24 * 30), st.integers(0, 60 * 24 * 30))
def test_working_time_adds_up_and_never_exceeds_the_wall_clock(start, first, second):
    a = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=start)
    b, c = a + timedelta(minutes=first), a + timedelta(minutes=first + second)
    assert working_time(OFFICE, a, c) == working_time(OFFICE, a, b) + working_time(OFFICE, b, c)
    assert timedelta(0) <= working_time(OFFICE, a, c) <= c - a


def test_the_clock_stops_while_waiting_and_targets_change_state():
    p2 = CONFIG.policy_for("incident", "P2")  # respond 30m, resolve 8h, around the clock
    created = at("2026-11-26T10:00")
    changes = [(at("2026-11-26T10:10"), "acknowledged"), (at("2026-11-26T11:00"), "waiting"),
               (at("2026-11-26T15:00"), "in_progress")]
    c = clocks(p2, created=created, acknowledged=at("2026-11-26T10:10"), resolved=None, changes=changes,
               now=at("2026-11-26T16:00"))
    assert c["respond"].state == "met" and c["respond"].used == timedelta(minutes=10)
    assert c["resolve"].used == timedelta(hours=2) and c["resolve"].state == "ok"  # 6h minus 4h waiting
    late = clocks(p2, created=created, acknowledged=None, resolved=None, changes=[], now=at("2026-11-26T10:25"))
    assert late["respond"].state == "at_risk" and late["respond"].left == timedelta(minutes=5)
    missed = clocks(p2, created=created, acknowledged=at("2026-11-26T11:00"), resolved=None, changes=[],
                    now=at("2026-11-26T12:00"))
    assert missed["respond"].state == "missed" and missed["resolve"].state == "ok"


def test_first_matching_policy_applies():
    assert CONFIG.policy_for("incident", "P1").name == "P1 incidents"
    assert CONFIG.policy_for("incident", "P4").name == "other incidents"
    assert CONFIG.policy_for("request", "P2").name == "requests"
    assert CONFIG.policy_for("problem", "P1") is None


@pytest.mark.parametrize("text, message", [
    ("policies:\n  - name: x\n    kind: incdent\n    respond: 1h\n", "sla.yaml:3: policies[x].kind: 'incdent' is not one of incident, request"),
    ("policies:\n  - name: x\n    respond: soon\n", "sla.yaml:3: policies[x].respond: expected a duration"),
    ("policies:\n  - name: x\n", "sla.yaml:2: policies[x]: needs a respond or a resolve target"),
    ("policies:\n  - name: x\n    respond: 1h\n    calendar: office\n", "sla.yaml:4: policies[x].calendar: unknown calendar 'office'"),
    ("calendars:\n  - name: c\n    timezone: Nowhere/Land\n    hours: {mon-fri: '09:00-17:00'}\n",
     "sla.yaml:3: calendars[c].timezone: unknown time zone 'Nowhere/Land'"),
    ("calendars:\n  - name: c\n    timezone: UTC\n    hours: {mon-fry: '09:00-17:00'}\n", "sla.yaml:4: calendars[c].hours.mon-fry: expected days like mon-fri or sat,sun"),
    ("policies:\n  - name: x\n    respond: 1h\n    warn_at: 2\n", "sla.yaml:4: policies[x].warn_at: expected a share of the target"),
])
def test_bad_sla_files_name_the_line(text, message):
    with pytest.raises(BadInput) as e:
        load(text, "sla.yaml")
    assert str(e.value).startswith(message)


@pytest.fixture
def desk(cli, monkeypatch):
    monkeypatch.setenv("SDESK_CONFIG", str(EXAMPLES))
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:00:00Z")
    return cli


def test_sla_lists_open_tickets_most_urgent_first(desk, monkeypatch):
    p1 = desk.new("checkout down", "-p", "P1")
    p3 = desk.new("printer broken", "-p", "P3")
    waiting = desk.new("laptop please", "--kind", "request", "-p", "P4")
    done = desk.new("old one", "-p", "P2")
    desk("resolve", str(done), "-r", "fixed")
    desk("ack", str(waiting))
    desk("wait", str(waiting))
    rows = desk.json("sla", "--at", "2026-11-26T10:13:00Z")
    assert [r["id"] for r in rows] == [p1, p3, waiting]
    assert rows[0]["state"] == "at_risk" and rows[0]["left_seconds"] == 120
    # The request responded and waits on its requester: its resolve clock has not moved.
    assert rows[2]["target"] == "resolve" and rows[2]["targets"]["resolve"]["used_seconds"] == 0
    breached = desk.json("sla", "--breached", "--at", "2026-11-26T10:20:00Z")
    assert [r["id"] for r in breached] == [p1]
    assert desk.json("sla", "--at-risk", "--at", "2026-11-26T10:05:00Z") == []
    desk("ack", str(p1))
    assert [r["target"] for r in desk.json("sla", "--at", "2026-11-26T10:20:00Z") if r["id"] == p1] == ["resolve"]
    assert "printer broken" in desk("sla", "--at", "2026-11-26T10:20:00Z").stdout


@pytest.mark.parametrize("columns", [80, 100])
def test_the_sla_table_fits_the_terminal_and_never_cuts_a_state(desk, monkeypatch, columns):
    """At 80 and 100 columns, with a breached and an at-risk ticket and long titles: no line is
    wider than the terminal, every state is whole, and the title is what gives way."""
    monkeypatch.setenv("COLUMNS", str(columns))
    long = "checkout returns 502 for every user in the eu-west region since the deploy of 4411"
    p1 = desk.new(long, "-p", "P1")
    p2 = desk.new("cart is slow for some users in eu-west after the same deploy, not all", "-p", "P2")
    assert {r["id"]: r["state"] for r in desk.json("sla", "--at", "2026-11-26T10:25:00Z")} == \
        {p1: "breached", p2: "at_risk"}
    out = desk("sla", "--at", "2026-11-26T10:25:00Z").stdout
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines), [len(x) for x in lines]
    row = {r: next(line for line in lines if f"SD-{r} " in line).rstrip() for r in (p1, p2)}
    assert row[p1].endswith(" breached") and row[p2].endswith(" at risk"), lines
    assert "…" in row[p1] and long not in out  # the title gave way


def test_sla_without_policies_says_where_to_put_them(cli):
    result = cli("sla", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "add sla.yaml" in result.stderr


# -- SLOs and error budgets -----------------------------------------------------------------------


from sdesk.domain.sla import Slo, budget, impact_time  # noqa: E402


def test_impact_time_counts_overlapping_incidents_once():
    incidents = [(at("2026-11-26T10:00"), at("2026-11-26T11:00")), (at("2026-11-26T10:30"), at("2026-11-26T12:00")),
                 (at("2026-11-26T13:00"), None)]
    assert impact_time(incidents, at("2026-11-26T00:00"), at("2026-11-26T14:00")) == timedelta(hours=3)
    assert impact_time(incidents, at("2026-11-26T10:45"), at("2026-11-26T11:15")) == timedelta(minutes=30)


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300)), max_size=8), st.integers(0, 1200))
def test_impact_time_is_never_more_than_the_window_or_the_sum(spans, cut):
    start = at("2026-11-01T00:00")
    incidents = [(start + timedelta(minutes=a), start + timedelta(minutes=a + b)) for a, b in spans]
    window = (start, start + timedelta(minutes=cut))
    total = impact_time(incidents, *window)
    assert timedelta(0) <= total <= window[1] - window[0]
    assert total <= sum((min(e, window[1]) - max(s, window[0]) for s, e in incidents if e > window[0] and s < window[1]),
                        timedelta(0))


def test_budget_and_burn_levels():
    slo = Slo("checkout-api", 99.9, timedelta(days=30), frozenset({"P1"}), "refuse")  # 43.2 minutes a month
    now = at("2026-11-26T12:00")
    quiet = budget(slo, [(at("2026-11-20T10:00"), at("2026-11-20T10:20"))], now)
    assert quiet["budget_seconds"] == 2592 and quiet["used_seconds"] == 1200 and quiet["status"] == "ok"
    # An incident open for the last hour: the 1h window burns at 1000x the pace.
    hot = budget(slo, [(at("2026-11-26T11:00"), None)], now)
    assert hot["burn"]["1h"] == 1000 and hot["status"] == "frozen"
    spent = budget(slo, [(at("2026-11-01T00:00"), at("2026-11-01T01:00"))], now)
    assert spent["used_share"] > 1 and spent["burn"]["6h"] == 0 and spent["status"] == "frozen"


@pytest.fixture
def slo_desk(cli, monkeypatch, tmp_path):
    config = tmp_path / "desk"
    config.mkdir(exist_ok=True)
    for name in ("cmdb.yaml", "triage.yaml", "sla.yaml"):
        (config / name).write_text((EXAMPLES / name).read_text())
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli("cmdb", "import", str(config / "cmdb.yaml"))
    cli.config = config
    return cli


def test_a_burning_ci_is_frozen_for_changes_and_raises_urgency(slo_desk, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T08:00:00Z")
    slo_desk.new("checkout 5xx", "-p", "P1", "--service", "checkout-api")
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T12:00:00Z")
    [checkout] = [r for r in slo_desk.json("slo") if r["ci"] == "checkout-api"]
    assert checkout["status"] == "frozen" and checkout["used_seconds"] == 4 * 3600
    refused = slo_desk("change", "new", "--ci", "checkout-api", "--title", "deploy", ok=False)
    assert refused.exit_code == ExitCode.CONFLICT and "checkout-api is frozen" in refused.stderr
    assert slo_desk("change", "new", "--ci", "checkout-api", "--title", "hotfix", "--force").stdout.startswith("CH-")
    # payments-db warns only (freeze: warn); not frozen now anyway.
    assert slo_desk("change", "new", "--ci", "payments-db", "--title", "vacuum").exit_code == 0
    # A low-severity ticket on the burning CI is urgent all the same.
    minor = slo_desk.new("checkout slow for one customer", "-p", "P4", "--service", "checkout-api")
    why = slo_desk.json("why", str(minor))
    assert why["triage"]["priority"]["urgency_from"]["slo_burn"]["level"] == 1 and why["urgency"] == 1


def test_bad_slos_name_the_line():
    for text, message in [("slos:\n  - {ci: x, objective: 100}\n", "sla.yaml:2: slos[x].objective: expected a percentage"),
                          ("slos:\n  - {ci: x, objective: 99, freeze: maybe}\n", "sla.yaml:2: slos[x].freeze: expected off, warn or refuse"),
                          ("slos:\n  - {objective: 99}\n", "sla.yaml:2: slos[0].ci: missing (required)")]:
        with pytest.raises(BadInput) as e:
            load(text, "sla.yaml")
        assert str(e.value).startswith(message)


def test_assigning_a_waiting_ticket_restarts_its_clock(desk, monkeypatch):
    ticket = desk.new("printer broken", "-p", "P2")
    desk("ack", str(ticket))
    desk("wait", str(ticket))
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T11:00:00Z")
    desk("assign", str(ticket), "bob")  # back from waiting, as an assignment
    [row] = desk.json("sla", "--at", "2026-11-26T15:00:00Z")
    assert row["targets"]["resolve"]["used_seconds"] == 4 * 3600  # the hour of waiting does not count


def test_a_child_of_an_acknowledged_incident_runs_on_its_parents_clock(desk, monkeypatch, db_path):
    """Issue 19, item 9: a correlated child never pages, so it must not breach on its own: not in
    `sla --breached`, nor the TUI's breach view (the same store read), nor the report's P1 respond."""
    parent = desk.new("checkout down", "--kind", "incident", "-p", "P1")
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:05:00Z")
    desk("ack", str(parent))
    child = desk.new("checkout 502s", "--kind", "incident", "-p", "P1")
    desk("link", str(child), "--parent", str(parent))
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:40:00Z")  # past the child's 15m respond target
    assert desk.json("sla", "--breached") == []
    assert [r["id"] for r in desk.json("sla")] == [parent]  # the incident once: its parent
    from sdesk.store import Store

    with Store(db_path) as store:  # what the TUI's breach view (6) reads
        assert [t["id"] for t, _ in store.sla.sla_tickets(frozenset({"waiting"}))] == [parent]
    assert desk.json("tick")["sla_breaches"] == 0
    assert "sla_breached" not in [e["kind"] for e in desk.json("show", str(child))["events"]]
    report = desk.json("report", "--since", "2026-11-26T00:00:00Z", "--until", "2026-11-26T10:40:00Z")
    respond = {(k["policy"], k["target_name"]): k for k in report["sla"]}[("P1 incidents", "respond")]
    assert (respond["met"], respond["missed"], respond["value"]) == (1, 0, 1.0)


def test_a_child_of_an_unacknowledged_incident_keeps_its_own_clock(desk, monkeypatch):
    parent = desk.new("checkout slow", "--kind", "incident", "-p", "P3")
    child = desk.new("checkout down", "--kind", "incident", "-p", "P1")
    desk("link", str(child), "--parent", str(parent))
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:40:00Z")
    # Nobody answered either: the child breaches on its own clock, and so does the parent its
    # link raised to P1 (a raised priority's targets count from the ticket's creation).
    assert sorted(r["id"] for r in desk.json("sla", "--breached")) == [parent, child]
