"""KPIs against a hand-built history with known answers: reopened tickets, tickets still open at
the window's end, a paused SLA clock, a ticket never acknowledged; the Prometheus output read
by the real parser of that format; CSAT, worklog, cost, postmortem and bad input."""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sdesk.domain.metrics import nearest_rank
from sdesk.errors import ExitCode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"
WINDOW = ["--since", "2026-11-02T00:00:00Z", "--until", "2026-11-03T00:00:00Z"]


@pytest.fixture
def history(cli, tmp_path, monkeypatch):
    """One day (2026-11-02, UTC) of a desk, each step at its own time."""
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    shutil.copy(EXAMPLES / "oncall.yaml", config)
    (config / "sla.yaml").write_text(
        "policies:\n  - {name: P1, priority: P1, respond: 15m, resolve: 1h}\n"
        "  - {name: rest, respond: 1h, resolve: 4h}\n")
    (config / "metrics.yaml").write_text("cost: {agent_hour: 60, page: 10, monthly_tooling: 300}\n")
    (config / "runbooks" / "fix.yaml").write_text("steps:\n  - resolve: Restarted it\n")
    monkeypatch.setenv("SDESK_CONFIG", str(config))

    def at(hhmm, *args, day="2026-11-02"):
        monkeypatch.setenv("SDESK_NOW", f"{day}T{hhmm}:00Z")
        return cli(*args)

    def new(hhmm, title, priority, *args, day="2026-11-02"):
        monkeypatch.setenv("SDESK_NOW", f"{day}T{hhmm}:00Z")
        return cli.new(title, "-p", priority, *args)

    before = new("23:00", "Old one", "P3", day="2026-11-01")  # before the window: left out
    t1 = new("10:00", "Checkout down", "P1", "--kind", "incident", "--service", "checkout")
    at("10:05", "ack", str(t1))
    at("10:40", "resolve", str(t1), "-r", "rolled back")
    t2 = new("11:00", "Payments slow", "P1", "--service", "payments")
    at("11:30", "ack", str(t2))  # late: P1 acknowledge target is 15m
    at("13:00", "resolve", str(t2), "-r", "scaled out")
    t3 = new("09:00", "Cert expiring", "P2", "--service", "checkout")
    at("09:20", "resolve", str(t3), "-r", "renewed")  # never acknowledged
    t4 = new("12:00", "VPN for Dana", "P3", "--kind", "request")
    at("12:10", "assign", str(t4), "bob")
    at("12:20", "assign", str(t4), "carol")  # reassigned
    at("14:00", "resolve", str(t4), "-r", "granted")
    at("14:30", "reopen", str(t4))  # reopened, still open at the window's end
    t5 = new("12:30", "Login errors", "P2", "--service", "auth")
    at("12:40", "escalate", str(t5))
    at("15:00", "resolve", str(t5), "-r", "fixed the IdP config")
    t6 = new("13:00", "Laptop slow", "P4", "--kind", "request")
    at("13:05", "ack", str(t6))
    at("13:10", "wait", str(t6))  # waits on the requester 3 hours: the clock pauses
    at("16:10", "start", str(t6))
    at("16:30", "resolve", str(t6), "-r", "replaced the disk")
    t7 = new("10:30", "Disk full", "P3", "--service", "checkout")
    at("10:31", "runbook", "run", "fix", "--ticket", str(t7), "--yes")
    t8 = new("17:00", "Printer jammed", "P4")  # open at the end
    at("17:10", "csat", str(t1), "5")
    at("17:11", "csat", str(t3), "3", "--comment", "slow")
    at("17:12", "worklog", str(t1), "1h30m")
    at("17:13", "worklog", str(t4), "30m")
    cli.ids = dict(before=before, t1=t1, t2=t2, t3=t3, t4=t4, t5=t5, t6=t6, t7=t7, t8=t8)
    cli.at = at
    monkeypatch.setenv("SDESK_NOW", "2026-11-03T09:00:00Z")
    return cli


def kpis(report, group="all"):
    return {k["kpi"]: k for k in report["tickets"][group]}


def test_the_ticket_kpis_of_a_known_history(history):
    r = history.json("report", *WINDOW)
    k = kpis(r)
    assert k["tickets_created"]["value"] == 8 and k["tickets_resolved"]["value"] == 6
    assert k["tickets_open_at_end"]["value"] == 2  # the reopened VPN request and the printer
    # Acknowledged: t1 5m, t2 30m, t6 5m; t3 never (resolved directly), t7 by its runbook only.
    assert k["time_to_acknowledge_mean"]["value"] == pytest.approx((5 + 30 + 5) * 60 / 3, abs=0.1)
    assert k["time_to_acknowledge_median"]["value"] == 5 * 60 and k["time_to_acknowledge_p90"]["value"] == 30 * 60
    # Resolved: t7 1m, t3 20m, t1 40m, t2 2h, t5 2h30m, t6 3h30m (pauses do not change time to resolve).
    ttr = sorted([1, 20, 40, 120, 150, 210])
    assert k["time_to_resolve_mean"]["value"] == pytest.approx(sum(ttr) * 60 / 6, abs=0.1)
    assert k["time_to_resolve_median"]["value"] == ttr[nearest_rank(6, (1, 2)) - 1] * 60 == 40 * 60
    assert k["time_to_resolve_p90"]["value"] == k["time_to_resolve_p99"]["value"] == 210 * 60
    # First contact: resolved, never escalated (t5) nor reassigned (t4 is not resolved now anyway).
    assert k["first_contact_resolution"]["value"] == pytest.approx(5 / 6)
    assert k["automated_resolution"]["value"] == pytest.approx(1 / 6) and k["automated_resolution"]["ok"] is False
    assert k["reopen_rate"]["value"] == pytest.approx(1 / 8) and k["reopen_rate"]["ok"] is False
    assert k["escalation_rate"]["value"] == pytest.approx(1 / 8) and k["escalation_rate"]["ok"] is True
    assert k["reassignment_rate"]["value"] == pytest.approx(1 / 8)
    # By priority, the time targets apply: P1 acknowledge 15m (median of 5m and 30m is 5m).
    p1 = kpis(r, "P1")
    assert p1["time_to_acknowledge_mean"]["value"] == pytest.approx(17.5 * 60) and p1["time_to_acknowledge_mean"]["ok"] is False
    assert p1["time_to_acknowledge_median"]["ok"] is True
    assert p1["time_to_resolve_mean"]["value"] == 80 * 60 and p1["time_to_resolve_mean"]["ok"] is False


def test_sla_compliance_counts_paused_clocks_and_leaves_running_ones_undecided(history):
    sla = {(k["policy"], k["target_name"]): k for k in history.json("report", *WINDOW)["sla"]}
    # P1: t1 met both; t2 responded in 30m (missed) and resolved in 2h (missed).
    assert (sla["P1", "respond"]["met"], sla["P1", "respond"]["missed"]) == (1, 1)
    assert (sla["P1", "resolve"]["met"], sla["P1", "resolve"]["missed"]) == (1, 1)
    # rest (1h respond, 4h resolve): t3, t5, t6, t7 and t4 resolve... t6 waited 3h of its 3h30m: met.
    # t8 (open, 7h old at the end) has breached both; t4 (reopened at 14:30, 12h at the end) breached resolve.
    rest = sla["rest", "resolve"]
    assert (rest["met"], rest["missed"]) == (4, 2)
    assert sla["all", "all"]["met"] + sla["all", "all"]["missed"] == sum(
        k["met"] + k["missed"] for key, k in sla.items() if key != ("all", "all"))


def test_csat_cost_alerts_and_the_window_edges(history):
    r = history.json("report", *WINDOW)
    csat = {k["kpi"]: k for k in r["csat"]}
    assert csat["csat_average"]["value"] == 4.0 and csat["csat_average"]["distribution"] == {
        "1": 0, "2": 0, "3": 1, "4": 0, "5": 1}
    assert csat["csat_response_rate"]["value"] == pytest.approx(2 / 6)
    cost = {k["kpi"]: k for k in r["cost"]}
    # 2 hours at 60, no pages (nobody paged in this history), 300 a month for 1 of 30 days.
    assert cost["cost_total"]["value"] == pytest.approx(120 + 10)
    assert cost["cost_per_ticket"]["value"] == pytest.approx(130 / 8, abs=0.01)
    alerts = r["alerts"][0]
    assert alerts["tickets"] == 8 and alerts["alerts"] == 0 and alerts["value"] == 0


def test_an_empty_window_is_zeros_not_a_crash(history):
    r = history.json("report", "--since", "2020-01-01T00:00:00Z", "--until", "2020-02-01T00:00:00Z")
    k = kpis(r)
    assert k["tickets_created"]["value"] == 0 and k["time_to_resolve_mean"]["value"] is None
    assert k["first_contact_resolution"]["value"] is None and k["first_contact_resolution"]["ok"] is None
    assert "NaN" not in json.dumps(r)
    history("report", "--since", "2020-01-01T00:00:00Z", "--until", "2020-02-01T00:00:00Z")  # renders too


def test_grouping_by_every_field(history):
    for field in ("priority", "kind", "queue", "team", "service", "assignee", "week"):
        r = history.json("report", *WINDOW, "--by", field)
        assert sum(kpis(r, g)["tickets_created"]["value"] for g in r["tickets"] if g != "all") == 8
    assert set(history.json("report", *WINDOW, "--by", "service")["tickets"]) == {
        "all", "(none)", "auth", "checkout", "payments"}
    assert list(history.json("report", *WINDOW, "--by", "week")["tickets"]) == ["all", "2026-11-02"]


def test_prometheus_output_parses_with_the_reference_parser(history, tmp_path):
    history.at("00:00", "metrics", "--prom", str(tmp_path / "sdesk.prom"), "--since", "30d", day="2026-11-03")
    text = (tmp_path / "sdesk.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["sdesk_tickets_created"].type == "gauge"
    created = {tuple(sorted(s.labels.items())): s.value for s in families["sdesk_tickets_created"].samples}
    assert created[()] == 9 and created[(("priority", "P1"),)] == 2
    ttr = {tuple(sorted(s.labels.items())): s.value for s in families["sdesk_time_to_resolve_seconds"].samples}
    assert ttr[(("priority", "P1"), ("stat", "mean"))] == 80 * 60
    assert "sdesk_sla_compliance_ratio" in families and "sdesk_kpi_ok" in families
    assert all(line.startswith(("# HELP", "# TYPE")) or not line.startswith("#") for line in text.splitlines())


def test_csv_has_a_row_per_figure(history):
    rows = list(csv.DictReader(io.StringIO(history("report", *WINDOW, "--csv").stdout)))
    created = next(r for r in rows if r["kpi"] == "tickets_created" and r["group"] == "all")
    assert created["value"] == "8" and {r["section"] for r in rows} >= {"tickets", "sla", "csat", "cost"}


def test_bad_input_is_one_line_and_records_nothing(history, tmp_path):
    ids = history.ids
    for args, code, message in [
        (["report", "--since", "last tuesday"], ExitCode.BAD_INPUT, "--since"),
        (["report", "--by", "colour"], ExitCode.BAD_INPUT, "--by: unknown field 'colour'"),
        (["report", "--since", "1d", "--until", "2d"], ExitCode.BAD_INPUT, "--until must be after --since"),
        (["csat", str(ids["t1"]), "6"], ExitCode.BAD_INPUT, "score 6 is not from 1 to 5"),
        (["csat", str(ids["t8"]), "4"], ExitCode.CONFLICT, "rate it once it is resolved"),
        (["worklog", str(ids["t8"]), "soon"], ExitCode.BAD_INPUT, "is not a time"),
    ]:
        out = history(*args, ok=False)
        assert out.exit_code == code and message in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert history.json("show", str(ids["t8"]))["events"][-1]["kind"] == "created"
    (tmp_path / "config" / "metrics.yaml").write_text("cost:\n  agent_hour: 60\n  monthly_tooling: 300\n")
    out = history("report", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "metrics.yaml:1: cost.page: missing" in out.stderr


def test_a_postmortem_draft_from_the_record(history):
    text = history("postmortem", str(history.ids["t2"])).stdout
    assert text.startswith(f"# Postmortem: SD-{history.ids['t2']} Payments slow")
    assert "| Acknowledged | 2026-11-02T11:30:00Z (after 30m) |" in text
    assert "SLA P1 respond: missed, 30m of 15m" in text and "## Timeline (UTC)" in text
    assert "| 2026-11-02T13:00:00Z | tester | acknowledged → resolved: scaled out |" in text
    assert "## Action items" in text


def test_nearest_rank():
    assert [nearest_rank(n, (1, 2)) for n in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert [nearest_rank(n, (9, 10)) for n in (1, 10, 11)] == [1, 9, 10]
    assert nearest_rank(100, (99, 100)) == 99 and nearest_rank(101, (99, 100)) == 100


def test_a_past_window_counts_tickets_as_they_stood_at_its_end(history):
    """t1 is reopened and escalated the next day: the report of 11-02 still shows it resolved,
    first-contact, never reopened."""
    t1 = history.ids["t1"]
    history.at("10:00", "reopen", str(t1), day="2026-11-03")
    before = kpis(history.json("report", *WINDOW))
    assert before["tickets_resolved"]["value"] == 6 and before["reopen_rate"]["value"] == pytest.approx(1 / 8)
    assert before["first_contact_resolution"]["value"] == pytest.approx(5 / 6)
    after = kpis(history.json("report", "--since", "2026-11-02T00:00:00Z", "--until", "2026-11-03T12:00:00Z"))
    assert after["tickets_resolved"]["value"] == 5 and after["reopen_rate"]["value"] == pytest.approx(2 / 8)


def test_escalations_by_tick_count_and_a_future_end_is_now(history, tmp_path):
    oncall = tmp_path / "config" / "oncall.yaml"  # a notifier: a page nobody can get fails the tick
    oncall.write_text(oncall.read_text() + f"notifier:\n  command: [{json.dumps(sys.executable)}, -c, 'pass']\n")
    history.at("08:00", "new", "Search is down", "-p", "P1", day="2026-11-04")
    for hhmm in ("08:00", "08:20", "08:40"):
        history.at(hhmm, "tick", day="2026-11-04")
    day = ["--since", "2026-11-04T00:00:00Z", "--until", "2026-11-05T00:00:00Z"]
    ticket = history.json("list", "--json")[0]["id"]
    assert "escalated" in [e["kind"] for e in history.json("show", str(ticket))["events"]]
    r = history.at("08:50", "report", "--json", *day, day="2026-11-04")
    k = kpis(json.loads(r.stdout))
    assert k["escalation_rate"]["value"] == 1.0
    # The window ends at 08:50 (now), not at midnight: the P1's 1h resolve target is still running.
    resolve = {(s["policy"], s["target_name"]): s for s in json.loads(r.stdout)["sla"]}.get(("P1", "resolve"))
    assert resolve is None or resolve["missed"] == 0


@pytest.mark.parametrize("text, message", [
    ("targets: {fcr: 150%}\n", "metrics.yaml:1: targets.fcr: expected a share from 0% to 100%"),
    ("targets: {reopen: 5}\n", "metrics.yaml:1: targets.reopen: expected a share from 0% to 100%"),
    ("cost: {agent_hour: .nan, page: 1, monthly_tooling: 1}\n", "metrics.yaml:1: cost.agent_hour: expected a number, 0 or more"),
    ("targets: {csat: 9}\n", "metrics.yaml:1: targets.csat: expected a number from 1 to 5"),
    ("colour: red\n", "metrics.yaml:1: colour: unknown setting (expected targets, cost or out_of_hours)"),
])
def test_a_bad_metrics_file_is_one_error_with_its_line(history, tmp_path, text, message):
    (tmp_path / "config" / "metrics.yaml").write_text(text)
    out = history("report", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and message in out.stderr and out.stderr.count("\n") == 1


def test_prometheus_series_are_unique_and_the_file_is_readable(history, tmp_path):
    target = tmp_path / "sdesk.prom"
    history("metrics", "--prom", str(target), "--since", "400d")
    seen = set()
    for family in text_string_to_metric_families(target.read_text()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)
    assert any(name == "sdesk_sla_service_compliance_ratio" for name, _ in seen)
    assert target.stat().st_mode & 0o044  # group and others may read it, as node_exporter must
    out = history("metrics", "--prom", str(tmp_path), ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "not a regular file" in out.stderr
    assert list(tmp_path.glob(".sdesk.prom.*")) == []


def test_postmortems_are_for_incidents(history):
    out = history("postmortem", str(history.ids["t4"]), ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "is a request: postmortems are for incidents" in out.stderr


def test_a_one_day_report_says_1_day(history):
    day = ["--since", "2026-11-02T00:00:00Z", "--until", "2026-11-03T00:00:00Z"]
    assert "(1 day)," in history("report", *day).stdout.splitlines()[0]
    assert "(1 day)" in history("report", "executive", *day).stdout.splitlines()[0]
    assert "(2 days)," in history("report", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-03T00:00:00Z").stdout


_windows = __import__("itertools").count()


@pytest.fixture
def desk_store(db_path):
    from sdesk.store import Store

    with Store(db_path) as store:
        yield store


# One desk for every example (each example's tickets are in a window of their own).
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tickets=st.lists(st.tuples(st.sampled_from(["P1", "P2", "P3"]), st.none() | st.integers(0, 50_000),
                                  st.none() | st.integers(0, 50_000)), max_size=40))
def test_the_sums_and_percentiles_of_every_group_are_those_of_its_tickets(desk_store, tickets, monkeypatch):
    """The whole desk's and each priority's counts, means and nearest-rank percentiles of the time
    to acknowledge and to resolve, as SQL gives them (one pass on PostgreSQL: grouping sets and a
    window over every group at once), equal those computed here from the tickets' own times."""
    from datetime import datetime, timedelta, timezone

    from sdesk.domain.metrics import PERCENTILES
    from sdesk.intake.service import Intake

    day = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(days=next(_windows))  # each example its own window
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    monkeypatch.setenv("SDESK_NOW", stamp(day))
    made = Intake(desk_store).intake([{"title": f"t{n}", "kind": "incident", "priority": p} for n, (p, _, _) in enumerate(tickets)],
                                     actor="tester", source="test")
    for (tid, _), (_, tta, ttr) in zip(made, tickets):
        desk_store.conn.execute(
            "UPDATE tickets SET acknowledged_at = ?, resolved_at = ?, status = ? WHERE id = ?",
            (None if tta is None else stamp(day + timedelta(seconds=tta)),
             None if ttr is None else stamp(day + timedelta(seconds=ttr)), "new" if ttr is None else "resolved", tid))
    desk_store.conn.commit()
    sums = desk_store.metrics.ticket_sums(stamp(day), until=stamp(day + timedelta(days=1)),
                                          groupings=(None, "priority"))
    groups = {"all": tickets, **{p: [t for t in tickets if t[0] == p] for p in {t[0] for t in tickets}}} \
        if tickets else {}
    assert set(sums[None]) == set(groups) & {"all"} and set(sums["priority"]) == set(groups) - {"all"}
    for group, members in groups.items():
        got = sums[None if group == "all" else "priority"][group]
        assert got["created"] == len(members)
        for metric, at in (("tta", 1), ("ttr", 2)):
            values = sorted(t[at] for t in members if t[at] is not None)
            assert got[metric]["n"] == len(values)
            for label, fraction in PERCENTILES.items():
                assert got[metric][label] == (values[nearest_rank(len(values), fraction) - 1] if values else None), \
                    (group, metric, label)
