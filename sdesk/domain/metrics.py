"""Service-desk KPIs: what each one means, its target, and the arithmetic from the sums the
store aggregates in SQL (storage/metrics.py). Pure: no I/O.

Definitions (also in the README, next to `sdesk report`):
- The window selects tickets *created* in it (suppressed tickets left out); what happened to
  them counts up to the window's end. A ticket still open then has no time to resolve.
- Time to acknowledge: acknowledged_at - created_at; to resolve: resolved_at - created_at (a
  reopened ticket counts to its last resolution). Mean, and nearest-rank median, p90 and p99.
- First-contact resolution: resolved tickets never escalated nor reassigned, over resolved.
- Automated resolution: resolved tickets whose resolution came from a runbook's resolve step
  (and was not undone), over resolved; misfires (automated runs that failed, runbook
  resolutions reopened) are counted apart.
- Reopen, escalation and reassignment rates: tickets reopened at least once, escalated at least
  one level, moved to another assignee or corrected queue/category, over tickets created.
- SLA compliance, per policy and target: targets met over targets decided (met, missed, or
  breached by the window's end; a running clock within its target is not decided yet).
- CSAT: the average rating (1-5), its distribution, and ratings over resolved tickets.
- KB freshness: articles reviewed within their interval at the window's end, stale ones,
  revisions in the window.
- Alert-to-ticket ratio: alerts received in the window over tickets created, by source.
- Pager load: pages sent in the window per responder per week (a window under a week: the
  count, not scaled up), and those out of hours.
- Cost per ticket: (hours worked x agent_hour + pages x page + monthly_tooling x months in the
  window) over tickets created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from ..errors import BadInput

GROUPS = ("priority", "kind", "queue", "team", "service", "assignee", "week")
MAX_RATE = 1e12  # a cost rate: more is a typo, and float() of a longer int overflows
PERCENTILES = {"median": (1, 2), "p90": (9, 10), "p99": (99, 100)}  # as fractions: ranks in integers


def nearest_rank(n: int, fraction: tuple[int, int]) -> int:
    """The 1-based rank of a percentile of n sorted values (nearest-rank: ceil(p x n))."""
    num, den = fraction
    return max(1, (num * n + den - 1) // den)


class Targets(NamedTuple):
    acknowledge: Mapping[str, float] = {"P1": 15 * 60}  # seconds, by priority
    resolve: Mapping[str, float] = {"P1": 3600, "P2": 4 * 3600}
    fcr: float = 0.60
    automated: float = 0.20
    reopen: float = 0.05  # at most
    escalation: float = 0.15  # at most
    sla: float = 0.95
    csat: float = 4.0
    pages_per_week: float = 5  # per responder, at most


class CostModel(NamedTuple):
    agent_hour: float
    page: float
    monthly_tooling: float


class MetricsConfig(NamedTuple):
    targets: Targets = Targets()
    cost: CostModel | None = None
    out_of_hours: str | None = None  # a calendar of sla.yaml: pages outside it are out of hours


def build(data: Any) -> MetricsConfig:
    """The MetricsConfig of metrics.yaml's data, which its model accepted."""
    from .sla import duration

    data = data or {}
    raw = data.get("targets") or {}
    targets: dict[str, Any] = {}
    for name in ("acknowledge", "resolve"):
        if raw.get(name) is not None:
            targets[name] = {str(p): duration(v, name, BadInput).total_seconds() for p, v in raw[name].items()}
    names = {"fcr": "fcr", "automated_resolution": "automated", "reopen": "reopen", "escalation": "escalation",
             "sla": "sla", "csat": "csat", "pages_per_responder_week": "pages_per_week"}
    for key, field in names.items():
        if raw.get(key) is not None:
            targets[field] = share(raw[key], BadInput) if field not in ("csat", "pages_per_week") else float(raw[key])
    cost = CostModel(**{k: float(data["cost"][k]) for k in CostModel._fields}) if data.get("cost") is not None else None
    return MetricsConfig(Targets()._replace(**targets), cost, data.get("out_of_hours"))


def share(value: Any, fail: Callable[[str], BadInput]) -> float:
    """60% or 0.6 as a share (a bare 60 is refused: 60 what?)."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise fail("expected a share like 60% or 0.6") from None
    if not 0 <= number <= 1:  # also NaN
        raise fail("expected a share from 0% to 100% (60% or 0.6)")
    return number


# -- figures ---------------------------------------------------------------------------------------


def ratio(part: float, whole: float) -> float | None:
    """part / whole, or None when there is nothing to divide (an empty window is not NaN)."""
    return part / whole if whole else None


def kpi(name: str, value: float | None, unit: str, target: float | None = None, most: bool = False,
        **extra: Any) -> dict[str, Any]:
    """A figure with its target: `most` when the target is a ceiling (reopen rate), else a floor."""
    ok = None if value is None or target is None else (value <= target if most else value >= target)
    return {"kpi": name, "value": value, "unit": unit, "target": target,
            **({"target_is": "at most" if most else "at least"} if target is not None else {}), "ok": ok, **extra}


def ticket_kpis(agg: Mapping[str, Any], targets: Targets, priority: str | None = None) -> list[dict[str, Any]]:
    """The ticket KPIs of one group from its sums (`store_metrics.ticket_sums`). Time targets
    apply when the group is one priority."""
    resolved, created = agg["resolved"], agg["created"]
    out = [kpi("tickets_created", created, "count"), kpi("tickets_resolved", resolved, "count"),
           kpi("tickets_open_at_end", created - resolved, "count")]
    for name, key, table in (("time_to_acknowledge", "tta", targets.acknowledge),
                             ("time_to_resolve", "ttr", targets.resolve)):
        stats = agg[key]
        target = table.get(priority) if priority else None
        out.append(kpi(f"{name}_mean", stats["mean"], "seconds", target, most=True, n=stats["n"]))
        for label in PERCENTILES:
            out.append(kpi(f"{name}_{label}", stats[label], "seconds", target if label == "median" else None,
                           most=True))
    out += [
        kpi("first_contact_resolution", ratio(agg["fcr"], resolved), "ratio", targets.fcr),
        kpi("automated_resolution", ratio(agg["automated"], resolved), "ratio", targets.automated),
        kpi("reopen_rate", ratio(agg["reopened"], created), "ratio", targets.reopen, most=True),
        kpi("escalation_rate", ratio(agg["escalated"], created), "ratio", targets.escalation, most=True),
        kpi("reassignment_rate", ratio(agg["reassigned"], created), "ratio"),
    ]
    return out


def sla_kpis(counts: Mapping[tuple[str, str], Mapping[str, int]], targets: Targets, by: str = "policy"
             ) -> list[dict[str, Any]]:
    """Compliance per policy (or service) and target from (name, target) -> {met, missed}, the
    first row all of them."""
    out = []
    met = decided = 0
    name = "sla_compliance" if by == "policy" else f"sla_{by}_compliance"
    for (key, target), c in sorted(counts.items()):
        met, decided = met + c["met"], decided + c["met"] + c["missed"]
        group: dict[str, Any] = {by: key}
        out.append(kpi(name, ratio(c["met"], c["met"] + c["missed"]), "ratio", targets.sla,
                       **group, target_name=target, met=c["met"], missed=c["missed"]))
    every: dict[str, Any] = {by: "all"}
    out.insert(0, kpi(name, ratio(met, decided), "ratio", targets.sla, **every, target_name="all",
                      met=met, missed=decided - met))
    return out


def csat_kpis(distribution: Mapping[int, int], resolved: int, targets: Targets) -> list[dict[str, Any]]:
    rated = sum(distribution.values())
    average = ratio(sum(score * n for score, n in distribution.items()), rated)
    return [kpi("csat_average", average, "score", targets.csat, ratings=rated,
                distribution={str(s): distribution.get(s, 0) for s in range(1, 6)}),
            kpi("csat_response_rate", ratio(rated, resolved), "ratio")]


def pager_kpis(pages: Mapping[str, tuple[int, int]], window: timedelta, targets: Targets, *,
               undeliverable: int = 0) -> list[dict[str, Any]]:
    """From user -> (pages, out of hours): per responder per week, and the desk's totals, with
    the pages that reached nobody (`undeliverable`: a P1 that paged nobody is not "0 pages").

    A window shorter than a week gives each responder's count, never scaled up: one page in a
    day is one page, not "7 a week" (the other six days are unknown, and a rate invented from one
    busy night misleads). Such a row carries `window_days`; its count is a floor of any week
    around it, so a count over the weekly target is over it (ok False), and one under it is
    undecided (ok None), not met."""
    weeks = max(window / timedelta(weeks=1), 1)
    short = {"window_days": round(window / timedelta(days=1), 2)} if window < timedelta(weeks=1) else {}
    out = [kpi("pages", sum(n for n, _ in pages.values()), "count"),
           kpi("pages_out_of_hours", sum(o for _, o in pages.values()), "count"),
           kpi("pages_undeliverable", undeliverable, "count", 0, most=True)]
    for user, (n, o) in sorted(pages.items()):
        row = kpi("pages_per_week", n / weeks, "per week", targets.pages_per_week, most=True, user=user,
                  out_of_hours=o, **short)
        if short and row["ok"]:
            row["ok"] = None
        out.append(row)
    return out


def cost_kpis(cost: CostModel | None, minutes: int, pages: int, window: timedelta, created: int) -> list[dict[str, Any]]:
    if cost is None:
        return []
    months = window / timedelta(days=30)
    total = minutes / 60 * cost.agent_hour + pages * cost.page + cost.monthly_tooling * months
    return [kpi("cost_total", round(total, 2), "currency", hours_worked=round(minutes / 60, 2), pages=pages),
            kpi("cost_per_ticket", None if not created else round(total / created, 2), "currency")]


def alert_kpis(alerts: Mapping[str, int], tickets: Mapping[str, int]) -> list[dict[str, Any]]:
    sources = sorted(set(alerts) | set(tickets))
    out = [kpi("alerts_per_ticket", ratio(sum(alerts.values()), sum(tickets.values())), "per ticket", source="all",
               alerts=sum(alerts.values()), tickets=sum(tickets.values()))]
    out += [kpi("alerts_per_ticket", ratio(alerts.get(s, 0), tickets.get(s, 0)), "per ticket", source=s,
                alerts=alerts.get(s, 0), tickets=tickets.get(s, 0)) for s in sources]
    return out


def kb_kpis(kb: Mapping[str, int]) -> list[dict[str, Any]]:
    return [kpi("kb_articles", kb["articles"], "count"),
            kpi("kb_fresh_rate", ratio(kb["articles"] - kb["stale"], kb["articles"]), "ratio"),
            kpi("kb_stale", kb["stale"], "count"), kpi("kb_edits", kb["edits"], "count")]


def sla_counts(config: Any, tickets: Iterable[tuple[tuple, list]], since: Any, until: Any
               ) -> tuple[dict[tuple[str, str], dict[str, int]], dict[tuple[str, str], dict[str, int]]]:
    """(policy, target) -> {met, missed}, and the same by (service, target), over tickets as
    `store_metrics.sla_window` reads them, at `until`: a running clock within its target is
    undecided, not counted. One pass, constant time per ticket (a calendar's working time from
    a running total): a year of tickets stays quick. A ticket that paused goes through
    sla.clocks."""
    from datetime import UTC, datetime

    from .sla import WorkingClock, clocks

    by_policy: dict[tuple[str, str], dict[str, int]] = {}
    by_service: dict[tuple[str, str], dict[str, int]] = {}
    plans: dict[tuple[str, str], Any] = {}  # (kind, priority) -> (policy, its targets, running total)
    totals: dict[str, Callable[[float], float]] = {}
    end = until.timestamp()

    def plan(kind: str, priority: str) -> Any:
        policy = config.policy_for(kind, priority)
        if policy is None:
            return None
        total = None
        if policy.calendar is not None:
            total = totals.get(policy.calendar.name)
            if total is None:
                total = totals[policy.calendar.name] = WorkingClock(policy.calendar, since, until).total
        targets = [(name, target.total_seconds()) for name, target in (("respond", policy.respond),
                                                                         ("resolve", policy.resolve)) if target]
        return policy, targets, total

    def when(epoch: float | None) -> datetime | None:
        return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None

    for (_, kind, priority, service, created, acked, resolved), changes in tickets:
        found = plans.get((kind, priority), False)
        if found is False:
            found = plans[kind, priority] = plan(kind, priority)
        if found is None:
            continue
        policy, targets, total = found
        if changes:
            outcomes = [(name, "met" if x.state == "met" else "missed" if x.state in ("missed", "breached") else None)
                        for name, x in clocks(policy, created=datetime.fromtimestamp(created, UTC), acknowledged=when(acked),
                                              resolved=when(resolved), changes=changes, now=until).items()]
        else:
            outcomes = []
            for name, limit in targets:
                stop = resolved if name == "resolve" else acked if acked is not None else resolved
                done = stop is not None and stop <= end
                upto = stop if done else end
                used = 0.0 if upto <= created else (upto - created if total is None else total(upto) - total(created))
                outcomes.append((name, ("met" if used <= limit else "missed") if done else
                                 "missed" if used > limit else None))
        for name, outcome in outcomes:
            if outcome:
                by_policy.setdefault((policy.name, name), {"met": 0, "missed": 0})[outcome] += 1
                by_service.setdefault((service or "(none)", name), {"met": 0, "missed": 0})[outcome] += 1
    return by_policy, by_service


# -- Prometheus text exposition ---------------------------------------------------------------------

STATS = ("mean", "median", "p90", "p99")
LABELS = {"policy": "policy", "service": "service", "target_name": "target", "source": "source", "user": "user",
          "ci": "ci", "over": "window", "reason": "reason"}
HELP = {
    "tickets_created": "Tickets created in the report window (suppressed ones left out).",
    "tickets_resolved": "Tickets created in the window and resolved by its end.",
    "tickets_open_at_end": "Tickets created in the window still open at its end.",
    "time_to_acknowledge": "Seconds from creation to acknowledgement, by statistic.",
    "time_to_resolve": "Seconds from creation to resolution, by statistic.",
    "first_contact_resolution": "Resolved tickets never escalated nor reassigned, over resolved.",
    "automated_resolution": "Resolved tickets a runbook resolved (not undone), over resolved.",
    "reopen_rate": "Tickets reopened at least once, over created.",
    "escalation_rate": "Tickets escalated at least one level, over created.",
    "reassignment_rate": "Tickets moved to another assignee or queue, over created.",
    "sla_compliance": "SLA targets met over targets decided, by policy and target.",
    "sla_service_compliance": "SLA targets met over targets decided, by service and target.",
    "csat_average": "Average customer satisfaction rating (1-5).",
    "csat_response_rate": "Ratings over resolved tickets.",
    "kb_articles": "Knowledge base articles.",
    "kb_fresh_rate": "Articles reviewed within their review interval, over all.",
    "kb_stale": "Articles past their review interval.",
    "kb_edits": "Article revisions in the window.",
    "alerts_per_ticket": "Alerts received over tickets created, by source.",
    "pages": "Pages sent in the window.",
    "pages_out_of_hours": "Pages sent outside business hours.",
    "pages_per_week": "Pages per week, by responder.",
    "pages_undeliverable": "Pages that reached nobody (nobody on call, or no notifier).",
    "cost_total": "Cost of the window from the cost model.",
    "cost_per_ticket": "Cost over tickets created.",
    "automation_misfires": "Automated runbook runs that failed, were interrupted or whose resolution was reopened.",
    "slo_budget_used": "Share of the SLO's error budget spent over its window.",
    "slo_burn_rate": "Error-budget burn over a window, as a share of budget pace.",
    "kpi_ok": "1 when the KPI meets its target, 0 when not.",
}
_UNIT_SUFFIX = {"seconds": "_seconds", "ratio": "_ratio"}


def _split(name: str) -> tuple[str, str | None]:
    for stat in STATS:
        if name.endswith("_" + stat) and name[:-len(stat) - 1] in ("time_to_acknowledge", "time_to_resolve"):
            return name[:-len(stat) - 1], stat
    return name, None


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus(flat: list[dict[str, Any]], by: str | None) -> str:
    """The report's rows (reports.rows) in the Prometheus text format, for node_exporter's
    textfile collector: one gauge family per KPI, with HELP and TYPE, stable names and labels."""
    families: dict[str, list[str]] = {}
    for row in flat:
        base, stat = _split(row["kpi"])
        labels = {}
        if row["group"] != "all" and by:
            labels[by] = row["group"]
        if stat:
            labels["stat"] = stat
        labels |= {LABELS[k]: row[k] for k in LABELS if row.get(k) is not None}
        text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        sample = f"{{{text}}}" if text else ""
        if row["value"] is not None:
            name = f"sdesk_{base}{_UNIT_SUFFIX.get(row['unit'], '')}"
            families.setdefault(name, []).append(f"{name}{sample} {float(row['value'])!r}")
        if row["ok"] is not None:
            ok_labels = f'kpi="{row["kpi"]}"' + (f",{text}" if text else "")
            families.setdefault("sdesk_kpi_ok", []).append(f"sdesk_kpi_ok{{{ok_labels}}} {int(row['ok'])}")
    out = []
    for name, samples in families.items():
        base = name[len("sdesk_"):]
        for suffix in _UNIT_SUFFIX.values():
            base = base.removesuffix(suffix)
        out += [f"# HELP {name} {HELP.get(base, base.replace('_', ' '))}", f"# TYPE {name} gauge", *samples]
    return "\n".join(out) + "\n"
