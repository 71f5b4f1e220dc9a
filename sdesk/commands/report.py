"""`sdesk report` (every KPI of a window, and the executive, on-call and service views),
`sdesk metrics --prom`, `sdesk csat`, `sdesk worklog` and `sdesk postmortem`."""

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import BadInput
from .common import Group, note, print_json, settings_of

# Its help is the callback's docstring (what it reports, with examples); sdesk --help lists this.
app = typer.Typer(cls=Group, name="report", invoke_without_command=True,
                  short_help="Service-desk KPIs over a window: tables and charts, --json or --csv.")
metrics_app = typer.Typer()
csat_app = typer.Typer()
worklog_app = typer.Typer()
postmortem_app = typer.Typer()

SinceOption = Annotated[str, typer.Option("--since", help="Start of the window: 30d, 12h, 2w back, or an ISO time.")]
UntilOption = Annotated[Optional[str], typer.Option("--until", help="End of the window (default: now).",
                                                    show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json")]


def _window(since: str, until: Optional[str]):
    from datetime import timedelta

    from ..domain import clock

    # The window ends after now, so that what happens in this second counts.
    end = clock.back(until, "--until") if until else clock.now() + timedelta(seconds=1)
    return clock.back(since, "--since"), end


def _build(ctx: typer.Context, since: str, until: Optional[str], by: str = "priority", **options: Any):
    from ..services.reports import build

    settings = settings_of(ctx)
    config, sla = settings.metrics_config(), settings.sla_config()
    start, end = _window(since, until)
    return build(settings.store(), config, sla, start, end, by, **options)


def _csv(report: dict) -> None:
    import csv

    from ..domain.plain import csv_cell
    from ..services.reports import rows

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["section", "group", "kpi", "labels", "value", "unit", "target", "ok"])
    for r in rows(report):
        labels = ";".join(f"{k}={r[k]}" for k in ("policy", "target_name", "source", "user", "ci", "over", "reason")
                          if r.get(k) is not None)
        # Groups and labels are names people and payloads gave: no cell may become a formula.
        writer.writerow([csv_cell(c) for c in (r["section"], r["group"], r["kpi"], labels,
                                               "" if r["value"] is None else r["value"], r["unit"],
                                               "" if r["target"] is None else r["target"], "" if r["ok"] is None else r["ok"])])


@app.callback()
def report(
    ctx: typer.Context,
    since: SinceOption = "30d",
    until: UntilOption = None,
    by: Annotated[str, typer.Option("--by", help="Group ticket KPIs by priority, kind, queue, team, service, assignee or week.")] = "priority",
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Every figure as CSV rows.")] = False,
) -> None:
    """Every KPI of the window: volumes, times to acknowledge and resolve (mean, median, p90,
    p99), first-contact and automated resolution, reopen, escalation and reassignment rates,
    SLA compliance, CSAT, KB freshness, alerts per ticket, pager load, SLO burn and cost, each
    against its target (metrics.yaml), with weekly charts.

    Example: sdesk report --since 30d --by queue

    Example: sdesk report executive
    """
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise BadInput("--json and --csv: choose one")
    data = _build(ctx, since, until, by)
    if as_json:
        print_json(data)
    elif as_csv:
        _csv(data)
    else:
        from ..render_report import print_report

        print_report(data)


@app.command("executive")
def executive(ctx: typer.Context, since: SinceOption = "90d", until: UntilOption = None,
              as_json: JsonOption = False) -> None:
    """For leadership: SLA compliance by service, error-budget burn, the volume trend and CSAT.

    Example: sdesk report executive --since 90d
    """
    data = _build(ctx, since, until, sections=frozenset({"trend", "sla", "slo", "csat"}))
    if as_json:
        print_json(data)
        return
    from ..render_report import print_executive

    print_executive(data)


@app.command("oncall")
def oncall(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """For the next responder: open P1/P2 and who holds them, pages of the last 24 hours, and
    changes of the last 24 hours on the CIs those tickets are on.

    Example: sdesk report oncall
    """
    from datetime import timedelta

    from ..domain import clock

    settings = settings_of(ctx)
    store = settings.store()
    now = clock.now()
    since = clock.iso(now - timedelta(hours=24))
    urgent = store.tickets.list(priorities=["P1", "P2"], suppressed=False, limit=None)
    cis = sorted({t["ci"] for t in urgent if t["ci"]})
    data = {"open": [{k: t[k] for k in ("id", "priority", "status", "title", "ci", "service", "assignee", "created_at")}
                     for t in urgent],
            "pages": [{"user": u, "due_at": d}
                      for u, d in store.metrics.pages_sent(since, until=clock.iso(now + timedelta(seconds=1)))],
            "changes": store.cmdb.change_list(cis=cis, since=since) if cis else []}
    if as_json:
        print_json(data)
        return
    from ..render_report import print_oncall

    print_oncall(data)


@app.command("service")
def service(ctx: typer.Context, name: Annotated[str, typer.Argument(help="A service as tickets name it, or a CI by name or alias.")],
            since: SinceOption = "30d", until: UntilOption = None, as_json: JsonOption = False) -> None:
    """One service: its tickets' KPIs, its alerts, the changes on it and its SLO. Tickets match
    by their service or CI, through the CI's name and aliases in the CMDB (checkout finds the
    tickets on checkout-api when that is its alias); a name nothing has is an error (exit 3).

    Example: sdesk report service checkout --since 14d
    """
    from ..domain import clock
    from ..services.reports import service_scope

    settings = settings_of(ctx)
    store = settings.store()
    shown, names = service_scope(store, name)
    data = _build(ctx, since, until, sections=frozenset({"trend", "sla"}), service=names)
    a, b = data["window"]["since"], data["window"]["until"]
    data["service"] = shown
    data["matched"] = names  # the service, CI names and aliases a ticket's service or CI matched
    data["alerts_received"] = store.metrics.service_alerts(names, since=a, until=b)
    data["changes"] = store.cmdb.change_list(cis=sorted({shown, name, *names}), since=a, until=b)
    slo = settings.sla_config().slos.get(shown)
    if slo is not None:
        from ..domain.sla import budget

        data["slo"] = [budget(slo, store.sla.slo_incidents(slo, now=clock.parse(b)), clock.parse(b))]
    if as_json:
        print_json(data)
        return
    from ..render_report import print_service

    print_service(data)


@metrics_app.command("metrics")
def metrics_command(
    ctx: typer.Context,
    prom: Annotated[bool, typer.Option("--prom", help="The Prometheus text exposition format (the default).")] = False,
    file: Annotated[Optional[Path], typer.Argument(help="Write here (atomically, for node_exporter's textfile collector); default or -: stdout.", show_default=False)] = None,
    since: SinceOption = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="The same figures as JSON rows.")] = False,
) -> None:
    """Every KPI as Prometheus gauges (sdesk_*), ticket KPIs by priority, with HELP and TYPE lines.

    Example: sdesk metrics --prom /var/lib/node_exporter/textfile/sdesk.prom
    """
    from ..domain.metrics import prometheus
    from ..services.reports import rows

    if prom and as_json:
        raise BadInput("--prom and --json: choose one")
    flat = rows(_build(ctx, since, None, sections=frozenset({"sla", "csat", "kb", "alerts", "pager", "slo", "cost"})))
    if as_json:
        print_json(flat)
        return
    text = prometheus(flat, "priority")
    if file is None or str(file) == "-":  # - is stdout, as for every file a command writes
        sys.stdout.write(text)
        return
    from ..atomic import replaced

    with replaced(file) as tmp:
        tmp.write_text(text, encoding="utf-8")
    note(f"wrote {file}")


@csat_app.command("csat")
def csat(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42 (resolved or closed).", show_default=False)],
    score: Annotated[int, typer.Argument(help="1 (very unhappy) to 5 (very happy).", show_default=False)],
    comment: Annotated[Optional[str], typer.Option("--comment", "-c", help="What the requester said.")] = None,
) -> None:
    """Record the requester's satisfaction with a resolved ticket (a new rating replaces the last).

    Example: sdesk csat SD-42 5 --comment "fixed before I noticed"
    """
    from ..domain.lifecycle import parse_id, ref

    settings, ticket_id = settings_of(ctx), parse_id(ticket)
    settings.store().metrics.csat_record(ticket_id=ticket_id, score=score, comment=comment, actor=settings.actor)
    note(f"{ref(ticket_id)}: CSAT {score}")


@worklog_app.command("worklog")
def worklog(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42.", show_default=False)],
    spent: Annotated[str, typer.Argument(help="Time worked: 30m, 1h, 1h30m.", show_default=False)],
    note_text: Annotated[Optional[str], typer.Option("--note", "-n", help="What was done.")] = None,
) -> None:
    """Record time worked on a ticket (the cost model's agent hours).

    Example: sdesk worklog SD-42 45m --note "rebuilt the replica"
    """
    import re

    from ..domain.lifecycle import parse_id, ref

    found = re.fullmatch(r"\s*(?:(\d{1,3})h)?\s*(?:(\d{1,4})m)?\s*", spent)
    if not found or not any(found.groups()):
        raise BadInput(f"worklog: {spent!r} is not a time like 30m, 2h or 1h30m")
    minutes = int(found.group(1) or 0) * 60 + int(found.group(2) or 0)
    settings, ticket_id = settings_of(ctx), parse_id(ticket)
    settings.store().metrics.worklog_add(ticket_id=ticket_id, minutes=minutes, note=note_text, actor=settings.actor)
    from ..domain.plain import plural
    note(f"{ref(ticket_id)}: {plural(minutes, 'minute')} worked")


@postmortem_app.command("postmortem")
def postmortem(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42: the incident.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the Markdown here (default or -: stdout).")] = None,
) -> None:
    """A Markdown postmortem draft: summary, timeline from events, impacted CIs and dependents,
    alerts, SLA impact, runbook runs, linked problem, and action items to fill in.

    Example: sdesk postmortem SD-42 -o postmortems/SD-42.md
    """
    from ..domain.lifecycle import parse_id
    from ..services.reports import postmortem as draft

    settings = settings_of(ctx)
    sla = settings.sla_config()
    text = draft(settings.store(), parse_id(ticket), sla)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise BadInput(f"cannot write {output}: {e.strerror or e}") from None
    note(f"wrote {output}")
