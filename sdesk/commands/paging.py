"""`sdesk tick` (time-based work: escalations, page delivery, ended silences), `sdesk escalate`
and `sdesk pages`."""

from typing import Annotated, Optional

import typer

from .common import note, print_json, run_automation, settings_of

tick_app = typer.Typer()
escalate_app = typer.Typer()
pages_app = typer.Typer()


@tick_app.command("tick")
def tick(
    ctx: typer.Context,
    watch: Annotated[Optional[int], typer.Option("--watch", min=1, max=86400, help="Run every N seconds until interrupted.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Do what time makes due: page and escalate unacknowledged tickets, deliver pages (retrying
    failed ones), bring back tickets whose silence ended, record SLA warnings and breaches, end
    runbook runs whose process died, and run the runbooks triage queued for automation.
    Idempotent: safe from cron every minute.

    Example: sdesk tick --json

    Example: sdesk tick --watch 30
    """
    import time

    settings = settings_of(ctx)
    while True:
        summary = _tick_once(settings)
        if as_json:
            print_json(summary)
        else:
            note(f"tick: {len(summary['paged'])} pages raised, {summary['delivered']} delivered, "
                 f"{summary['failed']} failed (will retry), {summary['unsuppressed']} tickets back from silences, "
                 f"{summary['sla_warnings']} SLA warnings, {summary['sla_breaches']} breaches, "
                 f"{len(summary['automation'])} automated runbook runs")
        if watch is None:
            return
        time.sleep(watch)


def _tick_once(settings) -> dict:
    from .. import clock
    from ..tick import tick as run

    summary = run(settings.store(), settings.oncall_config(), settings.sla_config(), clock.now(), actor=settings.actor)
    settings.store().reap_runs(actor=settings.actor)
    summary["automation"] = [{"run": r["id"], "runbook": r["runbook"], "ticket": r["ticket_id"], "status": r["status"]}
                             for r in run_automation(settings)]
    settings.store().set_desk_state("tick", clock.now_iso(), actor=settings.actor)  # for sdesk doctor: cron alive
    return summary


@escalate_app.command("escalate")
def escalate(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42.", show_default=False)],
) -> None:
    """Move a ticket to its next escalation level now; the next `sdesk tick` pages it.

    Example: sdesk escalate SD-42 && sdesk tick
    """
    from ..lifecycle import parse_id, ref

    settings = settings_of(ctx)
    step = settings.store().escalate(ticket_id=parse_id(ticket), config=settings.oncall_config(), actor=settings.actor)
    note(f"{ref(parse_id(ticket))}: escalation step {step} is due now")


@pages_app.command("pages")
def pages(
    ctx: typer.Context,
    ticket: Annotated[Optional[str], typer.Option("--ticket", help="42 or SD-42.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pages on record: who was paged for which ticket, at which level, and their delivery.

    Example: sdesk pages --ticket SD-42
    """
    from ..lifecycle import parse_id, ref

    found = settings_of(ctx).store().pages(ticket_id=parse_id(ticket) if ticket else None)
    if as_json:
        print_json(found)
        return
    from ..render import local, table

    table(["page", "ticket", "round", "level", "user", "due", "status", "attempts", "error"],
          [[p["id"], ref(p["ticket_id"]), p["round"], p["level"], p["user"], local(p["due_at"]), p["status"],
            p["attempts"], p["error"] or ""] for p in found], empty="no pages")
