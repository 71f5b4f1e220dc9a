"""Reports for people: KPI tables marked against their targets, and bar charts of the weekly
trend and the pager load, because people would rather look than read."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from .domain.lifecycle import ref
from .domain.plain import controls, plural
from .render import PRIORITY_STYLE, age, console, local, plain, text_line
from .services.reports import _span

BAR = "█"


def _value(k: dict[str, Any] | None) -> Text:
    """A KPI's value as people read it, green when it meets its target and red when not."""
    if k is None or k["value"] is None:
        return Text("-", style="dim")
    v, unit = k["value"], k["unit"]
    text = _span(v).replace(" ", "") if unit == "seconds" else f"{v:.0%}" if unit == "ratio" else f"{v:.2f}" if unit in (
        "score", "per week", "currency", "per ticket") else f"{v:,}"
    style = "" if k["ok"] is None else "green" if k["ok"] else "bold red"
    mark = "" if k["ok"] is None else " ✓" if k["ok"] else " ✗"
    return Text(text + mark, style=style)


def _target(k: dict[str, Any]) -> str:
    if k.get("target") is None:
        return ""
    t, unit = k["target"], k["unit"]
    shown = _span(t) if unit == "seconds" else f"{t:.0%}" if unit == "ratio" else f"{t:g}"
    return ("≤ " if k.get("target_is") == "at most" else "≥ ") + shown


def _by_name(kpis: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k["kpi"]: k for k in kpis}


def _bars(out: Any, title: str, items: list[tuple[str, float | None, str]], width: int = 40) -> None:
    """A horizontal bar chart: (label, value, shown)."""
    values = [v for _, v, _ in items if v]
    if not values:
        return
    top = max(values)
    chart = Table(box=None, pad_edge=False, show_header=False, title=title, title_justify="left", title_style="bold")
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True, justify="right", style="dim")
    for label, value, shown in items:
        length = round((value or 0) / top * width)
        chart.add_row(plain(label, one_line=True), Text(BAR * length or ("▏" if value else ""), style="cyan"), shown)
    out.print(chart)


TIMES = [("created", "tickets_created"), ("MTTA", "time_to_acknowledge_mean"),
         ("TTA p50", "time_to_acknowledge_median"), ("MTTR", "time_to_resolve_mean"),
         ("TTR p50", "time_to_resolve_median"), ("TTR p90", "time_to_resolve_p90"), ("TTR p99", "time_to_resolve_p99")]
RATES = [("resolved", "tickets_resolved"), ("open", "tickets_open_at_end"), ("FCR", "first_contact_resolution"),
         ("auto", "automated_resolution"), ("reopen", "reopen_rate"), ("escalate", "escalation_rate"),
         ("reassign", "reassignment_rate")]


def _ticket_table(out: Any, r: dict[str, Any], columns: list[tuple[str, str]]) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(r["by"][:8].upper(), no_wrap=True)
    for header, _ in columns:
        table.add_column(header.upper(), justify="right", no_wrap=True)
    for group, kpis in r["tickets"].items():
        named = _by_name(kpis)
        label = Text("desk", style="bold") if group == "all" else Text(controls(group, one_line=True), style=PRIORITY_STYLE.get(group, ""))
        table.add_row(label, *(_value(named.get(key)) for _, key in columns))
    out.print(table)


def _pager_title(rows: list[dict[str, Any]]) -> str:
    """A window under a week shows counts (metrics.pager_kpis): the title says so."""
    days = rows[0].get("window_days") if rows else None
    if days is None:
        return "Pages per responder per week"
    span = plural(days, "day") if days >= 1 else plural(round(days * 24, 1), "hour")
    return f"Pages per responder ({span} window, not scaled to a week)"


def print_report(r: dict[str, Any]) -> None:
    out = console()
    w = r["window"]
    out.print(text_line(("Report", "bold"), f" {local(w['since'])} → {local(w['until'])} ({plural(w['days'], 'day')}), "
                        f"tickets by {r['by']}"))
    _ticket_table(out, r, TIMES)
    _ticket_table(out, r, RATES)
    t = r["targets"]
    times = [f"{p} acknowledge ≤ {_span(s)}" for p, s in t["acknowledge"].items()]
    times += [f"{p} resolve ≤ {_span(s)}" for p, s in t["resolve"].items()]
    out.print(f"FCR: first-contact resolution; auto: resolved by a runbook. Targets (metrics.yaml; ✓ met, "
              f"✗ missed): {', '.join(times)} (median and mean); FCR ≥ "
              f"{t['fcr']:.0%}, auto ≥ {t['automated']:.0%}, reopen ≤ {t['reopen']:.0%}, escalate ≤ "
              f"{t['escalation']:.0%}, SLA ≥ {t['sla']:.0%}, CSAT ≥ {t['csat']:g}, pages ≤ {t['pages_per_week']:g} "
              "per responder per week", style="dim")
    misfires = r["automation"]["misfires"]
    if misfires:
        out.print(plain("automation misfires: " + ", ".join(f"{n} {reason}" for reason, n in sorted(misfires.items())),
                        one_line=True))
    _print_sla(out, r.get("sla", []), "SLA compliance")
    if r.get("csat"):
        _print_csat(out, r["csat"])
    if r.get("kb"):
        kb = _by_name(r["kb"])
        out.print(f"[bold]KB[/]: {plural(kb['kb_articles']['value'], 'article')}, {_value(kb['kb_fresh_rate'])} reviewed "
                  f"within their interval, {kb['kb_stale']['value']} stale, {plural(kb['kb_edits']['value'], 'edit')} in "
                  "the window")
    if r.get("alerts"):
        alerts = r["alerts"]
        parts = [f"{a['source']} {a['alerts']:,}/{a['tickets']:,}" for a in alerts[1:]]
        out.print(text_line(("Alerts per ticket", "bold"), f": {_value(alerts[0])} ({plural(alerts[0]['alerts'], 'alert')}, "
                            f"{plural(alerts[0]['tickets'], 'ticket')}; " + ", ".join(parts) + ")"))
    if r.get("pager"):
        totals, people = _by_name(r["pager"]), [k for k in r["pager"] if k["kpi"] == "pages_per_week"]
        nobody = totals["pages_undeliverable"]["value"] if "pages_undeliverable" in totals else 0
        out.print(f"[bold]Pages[/]: {totals['pages']['value']:,} sent, {totals['pages_out_of_hours']['value']:,} out of "
                  "hours" + (f"; [bold red]{nobody:,} undeliverable[/] (reached nobody: sdesk pages)" if nobody else ""))
        _bars(out, _pager_title(people), [(k["user"], k["value"], str(_value(k)) if k.get("window_days") is None
                                           else f"{k['value']:g}") for k in people])
    _print_slos(out, r.get("slo", []))
    if r.get("cost"):
        total, per = r["cost"]
        out.print(f"[bold]Cost[/]: {total['value']:,.2f} ({plural(total['hours_worked'], 'hour')} worked, {plural(total['pages'], 'page')}); "
                  f"per ticket {_value(per)}")
    _print_trend(out, r.get("trend", []))


def _print_sla(out: Any, kpis: list[dict[str, Any]], title: str, column: str = "POLICY") -> None:
    if not kpis or (kpis[0]["met"] + kpis[0]["missed"] == 0 and len(kpis) == 1):
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left", title_style="bold")
    for header in (column, "TARGET", "MET", "MISSED", "COMPLIANCE"):
        table.add_column(header, justify="right" if header in ("MET", "MISSED", "COMPLIANCE") else "left")
    for k in kpis:
        table.add_row(plain(k.get("policy") or k.get("service") or "", one_line=True), plain(k["target_name"]), str(k["met"]),
                      str(k["missed"]), _value(k))
    out.print(table)


def _print_csat(out: Any, kpis: list[dict[str, Any]]) -> None:
    average, response = kpis
    out.print(f"[bold]CSAT[/]: {_value(average)} from {average['ratings']} ratings (target {_target(average)}), "
              f"response rate {_value(response)}")
    if average["ratings"]:
        _bars(out, "", [(f"{score} ★", n, str(n)) for score, n in sorted(average["distribution"].items(), reverse=True)],
              width=30)


def _print_slos(out: Any, slos: list[dict[str, Any]]) -> None:
    if not slos:
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Error budgets", title_justify="left", title_style="bold")
    for header in ("CI", "OBJECTIVE", "BUDGET USED", "BURN 1H", "BURN 6H", "BURN 3D", "STATUS"):
        table.add_column(header)
    for s in slos:
        style = {"frozen": "bold red", "burning": "red", "elevated": "yellow"}.get(s["status"], "green")
        table.add_row(plain(s["ci"], one_line=True), f"{s['objective']}%", f"{s['used_share']:.0%}",
                      *(f"{s['burn'][w]:g}x" for w in ("1h", "6h", "3d")), Text(s["status"], style=style))
    out.print(table)


def _print_trend(out: Any, trend: list[dict[str, Any]]) -> None:
    if len(trend) < 2:
        return
    _bars(out, "Tickets created by week", [(f"week of {t['week']}", t["created"], f"{t['created']:,}") for t in trend][-26:])
    _bars(out, "Mean time to resolve by week", [(f"week of {t['week']}", t["ttr_mean"], _span(t["ttr_mean"]))
                                                for t in trend][-26:])


def print_executive(r: dict[str, Any]) -> None:
    out = console()
    w = r["window"]
    out.print(f"[bold]Executive report[/] {local(w['since'])} → {local(w['until'])} ({plural(w['days'], 'day')})")
    desk = _by_name(r["tickets"]["all"])
    out.print(f"{plural(desk['tickets_created']['value'], 'ticket')}, MTTR {_value(desk['time_to_resolve_mean'])}, "
              f"median {_value(desk['time_to_resolve_median'])}")
    _print_sla(out, r.get("sla_by_service", []), "SLA compliance by service", "SERVICE")
    _print_slos(out, r.get("slo", []))
    _print_trend(out, r.get("trend", []))
    if r.get("csat"):
        _print_csat(out, r["csat"])


def print_oncall(data: dict[str, Any]) -> None:
    out = console()
    out.print(f"[bold]Open P1/P2[/]: {len(data['open'])}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("ID", "PRI", "STATUS", "TITLE", "CI", "HOLDER", "AGE"):
        table.add_column(header)
    for t in data["open"]:
        table.add_row(ref(t["id"]), Text(t["priority"], style=PRIORITY_STYLE.get(t["priority"], "")), t["status"],
                      Text(controls(t["title"], one_line=True), overflow="ellipsis", no_wrap=True),
                      plain(t["ci"] or "", one_line=True),
                      Text(controls(t["assignee"] or "nobody", one_line=True), style="" if t["assignee"] else "bold red"),
                      age(t["created_at"]))
    if data["open"]:
        out.print(table)
    counts: dict[str, int] = {}
    for page in data["pages"]:
        counts[page["user"]] = counts.get(page["user"], 0) + 1
    out.print(f"[bold]Pages, last 24 hours[/]: {len(data['pages'])}")
    _bars(out, "", [(u, n, str(n)) for u, n in sorted(counts.items(), key=lambda x: -x[1])], width=30)
    out.print(f"[bold]Changes, last 24 hours, on those CIs[/]: {len(data['changes'])}")
    for c in data["changes"]:
        out.print(text_line(f"  {local(c['happened_at'])}  {c['ci'] or c['service'] or ''}  {c['summary']}"))


def print_service(data: dict[str, Any]) -> None:
    out = console()
    w = data["window"]
    out.print(text_line((f"Service {data['service']}", "bold"), f" {local(w['since'])} → {local(w['until'])}"))
    desk = _by_name(data["tickets"]["all"])
    out.print(f"{plural(desk['tickets_created']['value'], 'ticket')} ({desk['tickets_open_at_end']['value']} open), MTTA "
              f"{_value(desk['time_to_acknowledge_mean'])}, MTTR {_value(desk['time_to_resolve_mean'])}, reopen "
              f"{_value(desk['reopen_rate'])}")
    alerts = data["alerts_received"]
    out.print(text_line(f"alerts: {sum(alerts.values()):,}" + (f" ({', '.join(f'{n:,} {s}' for s, n in sorted(alerts.items()))})"
                                                              if alerts else "")))
    _print_sla(out, data.get("sla", []), "SLA compliance")
    _print_slos(out, data.get("slo", []))
    out.print(f"[bold]Changes[/]: {len(data['changes'])}")
    for c in data["changes"][:20]:
        out.print(text_line(f"  {local(c['happened_at'])}  {c['summary']}"))
    _print_trend(out, data.get("trend", []))
