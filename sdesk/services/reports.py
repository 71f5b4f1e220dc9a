"""Reports: the KPIs of a window gathered from the store (storage/metrics.py) and computed by
metrics.py, as one dict that the CLI renders as tables and charts, JSON, CSV or Prometheus
text; and the postmortem draft of an incident."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from ..domain import clock, metrics
from ..domain.plain import controls
from ..errors import BadInput, NotFound

if TYPE_CHECKING:
    from ..domain.sla import Calendar, SlaConfig
    from ..store import Store


def office_hours() -> Calendar:
    """Monday to Friday, 09:00-17:00 in the machine's time zone: out of hours for pages when
    metrics.yaml names no calendar."""
    from ..domain.sla import Calendar

    zone = datetime.now().astimezone().tzinfo
    return Calendar("office hours", zone, ((time(9), time(17)),) * 5 + (None, None), frozenset())


def business_hours(config: metrics.MetricsConfig, sla: SlaConfig) -> Calendar:
    if config.out_of_hours is None:
        return office_hours()
    for policy in sla.policies:
        if policy.calendar is not None and policy.calendar.name == config.out_of_hours:
            return policy.calendar
    raise BadInput(f"metrics.yaml: out_of_hours: no calendar {config.out_of_hours!r} used by a policy in sla.yaml")


def service_scope(store: Store, name: str) -> tuple[str, list[str]]:
    """What `report service NAME` covers: the CI NAME names in the CMDB (by name or alias) with
    all its names, and NAME itself as tickets' service; as (the name to show, the lower-case names
    a ticket's service or CI may have). A name that no ticket and no CI has is NotFound, with the
    close matches: an empty report would look like a quiet service."""
    from difflib import get_close_matches

    from ..domain.lifecycle import NAME_MAX, WHITESPACE

    shown = name.strip(WHITESPACE)
    key = shown.lower()
    if not key or len(key) > NAME_MAX:
        raise BadInput(f"report service: expected the name of a service or CI (1 to {NAME_MAX} characters)")
    keys = {shown, key}  # as given too: SQLite's lower() folds only ASCII
    ci = store.cmdb.ci_find([key])
    if ci is not None:
        shown = ci["name"]
        [record] = store.cmdb.ci_records(names=[ci["name"]])
        keys |= {ci["name"].lower(), *record["aliases"]}
    elif not store.metrics.service_known(sorted(keys)):
        close = get_close_matches(key, store.metrics.service_names(), n=5, cutoff=0.5)
        close += [n for n in store.metrics.service_names() if key in n and n not in close][:5 - len(close)]
        raise NotFound(f"no service or CI named {controls(name, one_line=True)!r}"
                       + (f"; close: {', '.join(close)}" if close else " (sdesk cmdb list shows the CIs)"))
    return shown, sorted(keys)


def build(store: Store, config: metrics.MetricsConfig, sla: SlaConfig, since: datetime, until: datetime,
          by: str = "priority", sections: frozenset[str] = frozenset({"all"}), service: list[str] | None = None
          ) -> dict[str, Any]:
    """Every KPI of the window [since, until): ticket KPIs for the desk and by `by` (time
    targets apply by priority); only `sections` (trend, sla, csat, kb, alerts, pager, slo,
    cost) when not all; only one service's tickets with `service` (the names service_scope
    gives)."""
    from ..domain.sla import budget, pauses, working_at

    if until <= since:
        raise BadInput("--until must be after --since")
    until = min(until, clock.now() + timedelta(seconds=1))  # what has not happened yet counts as nothing
    a, b = clock.iso(since), clock.iso(until)
    window = until - since
    targets = config.targets

    def want(name: str) -> bool:
        return "all" in sections or name in sections

    report: dict[str, Any] = {"window": {"since": a, "until": b, "days": round(window / timedelta(days=1), 2)},
                              "by": by, "targets": targets._asdict()}
    # Weeks are for the trend charts: their means, not percentiles (each is a sort of the window).
    sums = store.metrics.ticket_sums(a, until=b, groupings=(None, by, *(["week"] if want("trend") else [])),
                                     service=service, ranked=(None, by))
    desk = sums[None].get("all") or _empty_sums()
    report["tickets"] = {"all": metrics.ticket_kpis(desk, targets)}
    report["tickets"].update({g: metrics.ticket_kpis(s, targets, g if by == "priority" else None)
                              for g, s in sums[by].items()})
    report["automation"] = {"misfires": store.metrics.misfires(a, until=b)}
    if want("trend"):
        weeks = sums["week"]
        report["trend"] = [{"week": week, "created": weeks[week]["created"] if week in weeks else 0,
                            "resolved": weeks[week]["resolved"] if week in weeks else 0,
                            "ttr_mean": weeks[week]["ttr"]["mean"] if week in weeks else None}
                           for week in _mondays(since, until)]
    if want("sla"):
        sla_rows = store.metrics.sla_window(a, until=b, pause=pauses(sla), service=service)
        by_policy, by_service = metrics.sla_counts(sla, sla_rows, since, until)
        report["sla"] = metrics.sla_kpis(by_policy, targets)
        report["sla_by_service"] = metrics.sla_kpis(by_service, targets, "service")[1:]
    if want("csat"):
        report["csat"] = metrics.csat_kpis(store.metrics.csat_distribution(a, until=b), desk["resolved"], targets)
    if want("kb"):
        report["kb"] = metrics.kb_kpis(store.metrics.kb_freshness(a, until=b))
    if want("alerts"):
        report["alerts"] = metrics.alert_kpis(*store.metrics.intake_by_source(a, until=b))
    pages = store.metrics.pages_sent(a, until=b) if want("pager") or want("cost") else []
    if want("pager"):
        hours = business_hours(config, sla)
        by_user: dict[str, list[int]] = {}
        for user, due in pages:
            counts = by_user.setdefault(user, [0, 0])
            counts[0] += 1
            counts[1] += not working_at(hours, clock.parse(due))
        report["pager"] = metrics.pager_kpis({u: (n, o) for u, (n, o) in by_user.items()}, window, targets,
                                             undeliverable=store.metrics.pages_unreached(a, until=b))
    if want("slo"):
        report["slo"] = [budget(slo, store.sla.slo_incidents(slo, now=until), until) for slo in sla.slos.values()]
    if want("cost"):
        report["cost"] = metrics.cost_kpis(config.cost, store.metrics.minutes_worked(a, until=b), len(pages), window,
                                           desk["created"])
    return report


def _mondays(since: datetime, until: datetime) -> list[str]:
    """The weeks (their Mondays, UTC) the window touches: a week without tickets is a zero."""
    day = since.date() - timedelta(days=since.weekday())
    weeks = []
    while day < until.date() + timedelta(days=1) and len(weeks) < 1000:
        weeks.append(day.isoformat())
        day += timedelta(weeks=1)
    return weeks


def _empty_sums() -> dict[str, Any]:
    stats = {"n": 0, "mean": None, **{label: None for label in metrics.PERCENTILES}}
    return {"created": 0, "resolved": 0, "reopened": 0, "escalated": 0, "reassigned": 0, "fcr": 0, "automated": 0,
            "tta": dict(stats), "ttr": dict(stats)}


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of a report as flat rows (section, group, kpi, labels, value, target, ok):
    the CSV, and what the Prometheus text is made from."""
    out = []
    for group, kpis in report["tickets"].items():
        out += [{"section": "tickets", "group": group, **k} for k in kpis]
    for section in ("sla", "sla_by_service", "csat", "kb", "alerts", "pager", "cost"):  # desk-wide
        out += [{"section": section, "group": "all", **k} for k in report.get(section, [])]
    for reason, n in report["automation"]["misfires"].items():
        out.append({"section": "automation", "group": "all", **metrics.kpi("automation_misfires", n, "count"),
                    "reason": reason})
    for slo in report.get("slo", []):
        out.append({"section": "slo", "group": "all", **metrics.kpi("slo_budget_used", slo["used_share"], "ratio",
                                                                    1.0, most=True), "ci": slo["ci"]})
        out += [{"section": "slo", "group": "all", **metrics.kpi("slo_burn_rate", rate, "ratio"), "ci": slo["ci"],
                 "over": over} for over, rate in slo["burn"].items()]
    return out


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m" if hours else f"{minutes}m" if minutes \
        else f"{seconds}s"


def _linked_by(events: list[dict[str, Any]], parent: int) -> str | None:
    """Who put a child under `parent` by a link (`sdesk link`, or intake linking a late email
    reply), or None when triage's correlation did."""
    for e in reversed(events):
        if e["kind"] == "linked" and e["data"].get("parent_id") == parent:
            return e["actor"]
    return None


def postmortem(store: Store, ticket_id: int, sla: SlaConfig) -> str:
    """A Markdown draft for an incident's postmortem, from what the desk recorded."""
    from ..domain.events import describe_event, reopened_at
    from ..domain.lifecycle import ref
    from ..domain.plain import plural
    from ..domain.sla import clocks

    t = store.tickets.get_or_raise(ticket_id=ticket_id)
    if t["kind"] not in ("incident", "problem"):
        raise BadInput(f"{ref(ticket_id)} is a {t['kind']}: postmortems are for incidents and problems")
    events = store.tickets.events(ticket_id=ticket_id)
    children = store.tickets.children(ticket_id=ticket_id)
    context = store.tickets.context(ticket_id=ticket_id) or {}
    created = clock.parse(t["created_at"])
    acked = clock.parse(t["acknowledged_at"]) if t["acknowledged_at"] else None
    resolved = clock.parse(t["resolved_at"]) if t["resolved_at"] else None

    def md(text: Any) -> str:  # what people and payloads wrote, kept from becoming Markdown or escape codes
        return controls(str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;"),
                        one_line=True)

    done = t["status"] in ("resolved", "closed")  # a reopened ticket's resolution is the previous one
    lines = [f"# Postmortem: {ref(ticket_id)} {md(t['title'])}", "",
             "_Draft generated by sdesk from the ticket's history. Edit freely; the facts below are from the record._",
             "", "## Summary", "",
             "| | |", "|---|---|",
             f"| Priority | {t['priority']} (impact {t['impact'] or '-'}, urgency {t['urgency'] or '-'}) |",
             f"| Status | {t['status']}{' (' + md(t['resolution_code']) + ')' if t['resolution_code'] and done else ''} |",
             f"| Service / CI | {md(t['service'] or '-')} / {md(t['ci'] or '-')} |",
             f"| Opened | {t['created_at']} |",
             f"| Acknowledged | {t['acknowledged_at'] or 'never'} (after {_span((acked - created).total_seconds()) if acked else '-'}) |",
             f"| Resolved | {t['resolved_at'] or 'not yet'} (after {_span((resolved - created).total_seconds()) if resolved else '-'}) |",
             f"| Assignee | {md(t['assignee'] or '-')} |",
             f"| Occurrences | {t['occurrences']} |", ""]
    if t["resolution"] and done:
        lines += [f"**Resolution:** {md(t['resolution'])}", ""]
    elif t["resolution"]:
        when = reopened_at(events)
        code = f" ({md(t['resolution_code'])})" if t["resolution_code"] else ""
        lines += [f"**Previous resolution**{code}, reopened" + (f" {when}" if when else "") + f": {md(t['resolution'])}",
                  ""]
    lines += ["## Impact", ""]
    if context.get("ci"):
        lines.append(f"- CI **{md(context['ci'])}** (tier {context.get('tier', '-')}, owner {md(context.get('team') or '-')})")
        dependents = context.get("dependents") or []
        total = context.get("dependents_total", len(dependents))
        if dependents:
            names = ", ".join(md(d["name"] if isinstance(d, dict) else d) for d in dependents[:20])
            lines.append(f"- {total} dependents: {names}" + (" ..." if total > 20 else ""))
    else:
        lines.append("- No CI recorded.")
    # Triage's correlation and a person's `sdesk link` are different evidence: say which is which.
    correlated, linked = [], []
    for c in children:
        by = _linked_by(store.tickets.events(ticket_id=c["id"]), ticket_id)
        (correlated if by is None else linked).append((c, by))
    if correlated:
        lines.append(f"- {plural(len(correlated), 'ticket')} correlated by triage: "
                     + ", ".join(f"{ref(c['id'])} {md(c['title'])}" for c, _ in correlated))
    for c, by in linked:
        lines.append(f"- {ref(c['id'])} {md(c['title'])}: linked by {md(by)}")
    policy = sla.policy_for(t["kind"], t["priority"])
    if policy is not None:
        changes = [(clock.parse(e["at"]), e["data"].get("to")) for e in events if e["kind"] == "status_changed"]
        for name, x in clocks(policy, created=created, acknowledged=acked, resolved=resolved, changes=changes,
                              now=clock.now()).items():
            lines.append(f"- SLA {md(policy.name)} {name}: {x.state}, {_span(x.used.total_seconds())} of "
                         f"{_span(x.target.total_seconds())}")
    alerts = store.metrics.ticket_alerts([ticket_id, *(c["id"] for c in children)])
    if alerts:
        lines += ["", "## Alerts", "", "| ticket | source | status | count | first | last |", "|---|---|---|---|---|---|"]
        lines += [f"| {ref(a['ticket_id'])} | {md(a['source'])} | {a['status']} | {a['count']} | {a['first']} | {a['last']} |"
                  for a in alerts]
    runs = store.runbooks.runs(ticket_id=ticket_id)
    if runs:
        lines += ["", "## Runbook runs", ""]
        lines += [f"- run {r['id']}: {md(r['runbook'])}{' (dry run)' if r['dry_run'] else ''} by {md(r['actor'])}: "
                  f"{r['status']}" + (f" ({md(r['reason'])})" if r["reason"] else "") for r in reversed(runs)]
    if t.get("problem_id"):
        problem = store.tickets.get(ticket_id=t["problem_id"])
        lines += ["", "## Problem", "", f"Linked to problem {ref(t['problem_id'])}"
                  + (f": {md(problem['title'])} ({problem['status']})" if problem else "")]
    lines += ["", "## Timeline (UTC)", "", "| time | who | what |", "|---|---|---|"]
    lines += [f"| {e['at']} | {md(e['actor'])} | {md(describe_event(e))} |" for e in events]
    lines += ["", "## What went well", "", "- ", "", "## What went wrong", "", "- ", "",
              "## Action items", "", "| action | owner | due | ticket |", "|---|---|---|---|", "| | | | |", ""]
    return "\n".join(lines)
