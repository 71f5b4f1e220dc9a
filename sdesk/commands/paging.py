"""`sdesk tick` (time-based work: escalations, page delivery, ended silences), `sdesk escalate`
and `sdesk pages`."""

from typing import Annotated, Optional

import typer

from ..errors import ExitCode
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
    Idempotent: safe from cron every minute. A P1 or P2 that can reach nobody (no oncall.yaml,
    no policy for it, nobody on call, no notifier) is a warning on stderr and exit 1.

    Example: sdesk tick --json

    Example: sdesk tick --watch 30
    """
    import time

    from ..lifecycle import ref
    from ..plain import plural

    settings = settings_of(ctx)
    while True:
        summary = _tick_once(settings)
        if as_json:
            print_json(summary)
        else:
            note(f"tick: {plural(len(summary['paged']), 'page')} raised, {summary['delivered']:,} delivered, "
                 f"{summary['failed']:,} failed (will retry), "
                 f"{plural(summary['unsuppressed'], 'ticket')} back from silences, "
                 f"{plural(summary['sla_warnings'], 'SLA warning')}, "
                 f"{plural(summary['sla_breaches'], 'breach', 'breaches')}, "
                 f"{plural(len(summary['automation']), 'automated runbook run')}")
        for t in summary["undeliverable"]:
            note(f"warning: {ref(t['ticket'])} ({t['priority']}) pages nobody: {t['reason']}")
        if watch is None:
            break
        time.sleep(watch)
    if summary["undeliverable"]:
        # Not an error in the input: the desk cannot reach a person for a P1/P2, and cron
        # (or whoever runs tick) must hear of it, so the exit is the general failure.
        raise typer.Exit(ExitCode.ERROR)


def _tick_once(settings) -> dict:
    from .. import clock
    from ..tick import tick as run

    summary = run(settings.store(), settings.oncall_config(), settings.sla_config(), clock.now(), actor=settings.actor)
    settings.store().reap_runs(actor=settings.actor)
    summary["automation"] = [{"run": r["id"], "runbook": r["runbook"], "ticket": r["ticket_id"], "status": r["status"]}
                             for r in run_automation(settings)]
    for error in settings.runbooks()[1]:  # a broken runbook never runs: cron's mail should say so
        note(f"warning: {error}; that runbook cannot run")
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
    """Pages on record: who was paged for which ticket, at which step of its escalation (round.level),
    and their delivery: pending, delivered, failed, cancelled, or undeliverable (nobody to page,
    or no notifier to reach them).

    Example: sdesk pages --ticket SD-42
    """
    from ..lifecycle import parse_id, ref

    found = settings_of(ctx).store().pages(ticket_id=parse_id(ticket) if ticket else None)
    if as_json:
        print_json(found)
        return
    _print_pages(found, ref)


def _print_pages(found: list[dict], ref) -> None:
    """Fits 80 columns: dates and statuses never wrap, round and level are one step (`-`: no
    policy covered the ticket), and errors (free text, often long) follow the table, a line each."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ..render import console, local, plain

    out = console()
    if not found:
        out.print("no pages", style="dim")
        return
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("page", "ticket", "step", "user", "due", "status", "tries"):
        t.add_column(header.upper(), no_wrap=True, overflow="ellipsis")
    for p in found:
        t.add_row(str(p["id"]), ref(p["ticket_id"]), f"{p['round']}.{p['level']}" if p["level"] else "-",
                  plain(p["user"], one_line=True) if p["user"] else Text("nobody", style="dim"),
                  local(p["due_at"]), plain(p["status"]), str(p["attempts"]))
    out.print(t)
    for p in found:
        if p["error"]:
            out.print(Text.assemble((f"page {p['id']} ({ref(p['ticket_id'])}): ", "dim"),
                                    plain(p["error"], one_line=True)))
