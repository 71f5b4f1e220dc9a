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
    runbook runs whose process died, run the runbooks triage queued for automation, and send the
    outbox's due messages (notify.yaml: replies, notices, stakeholder updates).
    Idempotent: safe from cron every minute. A P1 or P2 that can reach nobody (no oncall.yaml,
    no policy for it, nobody on call, no notifier), or whose page's delivery fails, is a warning
    on stderr and exit 1, every tick until it is delivered or acknowledged; so is a message dead
    after its tries (until sdesk outbox retry or drop). So is a desk file
    other than oncall.yaml that does not load: the pages still go.

    Example: sdesk tick --json

    Example: sdesk tick --watch 30
    """
    import time

    from ..domain.lifecycle import ref
    from ..domain.plain import plural

    settings = settings_of(ctx)
    while True:
        summary = _tick_once(settings)
        if as_json:
            print_json(summary)
        else:
            nobody = f" ({summary['raised_undeliverable']:,} undeliverable)" if summary["raised_undeliverable"] else ""
            reached = f" to {plural(summary['reached'], 'person', 'people')}" if summary["delivered"] else ""
            note(f"tick: {plural(summary['raised'], 'page')} raised{nobody}, {summary['delivered']:,} delivered"
                 f"{reached}, {summary['failed']:,} failed (will retry), "
                 f"{plural(summary['unsuppressed'], 'ticket')} back from silences, "
                 f"{plural(summary['sla_warnings'], 'SLA warning')}, "
                 f"{plural(summary['sla_breaches'], 'breach', 'breaches')}, "
                 f"{plural(len(summary['automation']), 'automated runbook run')}, "
                 f"{plural(summary['messages']['sent'], 'message')} sent"
                 + (f", {plural(summary['indexed'], 'ticket')} indexed" if summary["indexed"] else "")
                 + (f" ({summary['messages']['waiting']:,} waiting: sdesk outbox list)" if summary["messages"]["waiting"]
                    else ""))
        for problem in summary["config_errors"]:
            note(f"warning: {problem}")
        dead = {m["batch"] for m in summary["messages"]["dead"]}
        for e in summary["messages"]["errors"]:
            if e["message"] not in dead:  # (a dead one is said below, once)
                note(f"warning: message {e['message']} to {e['to']} over {e['channel']} not sent, will retry: "
                     f"{e['error']}")
        for m in summary["messages"]["dead"]:
            note(f"warning: message {m['id']} ({m['event']} on {m['ref']} to {m['recipient']} over {m['channel']}) "
                 f"is dead after {plural(m['attempts'], 'try', 'tries')}: {m['error']}; fix it, then sdesk outbox retry "
                 f"{m['id']} (or drop it)")
        nobody = {t["ticket"] for t in summary["undeliverable"]}
        for u in summary["unreachable"]:
            if u["ticket"] not in nobody:  # (a ticket that reaches nobody is said below, once)
                note(f"warning: {ref(u['ticket'])}: the page to {u['user']} is undeliverable: {u['reason']}")
        for t in summary["undeliverable"]:
            note(f"warning: {ref(t['ticket'])} ({t['priority']}) pages nobody: {t['reason']}")
        for p in summary["failing"]:
            note(f"warning: {ref(p['ticket'])} ({p['priority']}): page {p['page']} to {p['user']} not delivered "
                 f"({plural(p['attempts'], 'try', 'tries')}): {p['error']}; "
                 + ("retrying" if p["retrying"] else "given up: reach them another way, then acknowledge it"))
        if watch is None:
            break
        time.sleep(watch)
    if summary["undeliverable"] or summary["failing"] or summary["config_errors"] or summary["messages"]["dead"]:
        # Not an error in the input: the desk cannot reach a person for a P1/P2 (or a config file
        # it needs is broken), and cron (or whoever runs tick) must hear of it: the general failure.
        raise typer.Exit(ExitCode.ERROR)


def _tick_once(settings) -> dict:
    from ..domain import clock
    from ..services.tick import tick as run

    if settings.roles_fallback is None:
        settings.roles_fallback = []  # a broken roles.yaml: the built-in default role, and a warning
    oncall = settings.oncall_config()  # a broken oncall.yaml stops tick: nothing can page from it
    sla, problems = _config_problems(settings)
    notify = _notify_config(settings, problems)
    summary = run(settings.store(), oncall, sla, clock.now(), actor=settings.actor, notify=notify)
    settings.store().runbooks.reap_runs(actor=settings.actor)
    summary["automation"] = [{"run": r["id"], "runbook": r["runbook"], "ticket": r["ticket_id"], "status": r["status"]}
                             for r in run_automation(settings)]
    summary["config_errors"] = problems + [f"{e}; anyone not a user has the built-in default role meanwhile"
                                           for e in settings.roles_fallback]
    summary["messages"] = _deliver_messages(settings, notify)
    summary["indexed"] = _index(settings, problems)
    settings.store().set_desk_state("tick", value=clock.now_iso(), actor=settings.actor)  # for sdesk doctor: cron alive
    return summary


def _index(settings, problems: list[str]) -> int | None:
    """The semantic index brought up to date (a bounded share of it a tick), when the extra is
    installed: how many tickets it took; a failure is a warning, the rest of tick is done."""
    from ..errors import SdeskError
    from ..services.semantic import index_in_background

    try:
        done = index_in_background(settings.store(), actor=settings.actor)
    except SdeskError as e:
        problems.append(f"the semantic index was not updated: {e}")
        return None
    return None if done is None else done["tickets"]


def _notify_config(settings, problems: list[str]):
    """notify.yaml, or None (none, or broken: then one more problem, and pages still go by the rest)."""
    from ..errors import SdeskError

    try:
        return settings.notify_config()
    except SdeskError as e:
        problems.append(f"{e}; no messages are queued or sent, nor pages over its channels, until it loads")
        return None


def _deliver_messages(settings, config) -> dict:
    """The outbox's due messages sent (notify.yaml); what is dead is said every tick until retried or dropped."""
    from ..services.outbound import deliver

    store = settings.store()
    sent, errors = 0, []
    if config is not None:
        for _ in range(200):  # 500 a pass; a tick that finds more leaves them to the next one
            done = deliver(store, config, actor=settings.actor)
            sent, errors = sent + done["sent"], errors + done["errors"]
            if not done["sent"]:
                break
    return {"sent": sent, "failed": len(errors), "errors": errors, "dead": store.outbox.dead(),
            "waiting": store.outbox.counts().get("pending", 0)}


def _config_problems(settings) -> tuple:
    """sla.yaml (an empty one when it does not load: no SLA is recorded meanwhile) and one line
    for each desk file that does not load (Desk.desk_files, as doctor reads them). Paging
    needs only oncall.yaml: a typo in another file must not stop the pages, and tick, which cron
    runs every minute, is where it is heard of."""
    from ..domain.sla import SlaConfig

    files = settings.desk_files(("sla", "triage", "metrics", "intake"))
    sla = files["sla"].value if "sla" in files and files["sla"].error is None else SlaConfig()
    problems = [f"{f.error}; " + ("no SLA warnings or breaches are recorded until it loads" if name == "sla"
                                  else "the commands that read it fail until it loads")
                for name, f in files.items() if f.error is not None]
    problems += [f"{e}; that runbook cannot run until it loads" for e in settings.runbooks()[1]]
    return sla, problems


@escalate_app.command("escalate")
def escalate(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42.", show_default=False)],
) -> None:
    """Move a ticket to its next escalation level now; the next `sdesk tick` pages it.

    Example: sdesk escalate SD-42 && sdesk tick
    """
    from ..domain.lifecycle import parse_id, ref

    settings = settings_of(ctx)
    round_, level = settings.store().oncall.escalate(ticket_id=parse_id(ticket), config=settings.oncall_config(),
                                              actor=settings.actor)
    note(f"{ref(parse_id(ticket))}: escalation to {round_}.{level} (round {round_}, level {level}) is due now; "
         "the next sdesk tick pages it")


@pages_app.command("pages")
def pages(
    ctx: typer.Context,
    ticket: Annotated[Optional[str], typer.Option("--ticket", help="42 or SD-42.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pages on record: who was paged for which ticket, at which step of its escalation (round.level),
    and their delivery: pending (not tried yet), failed, retrying (tried; the next tick tries
    again), delivered, failed (given up after 20 tries), cancelled, or undeliverable (nobody to
    page, or no notifier to reach them).

    Example: sdesk pages --ticket SD-42
    """
    from ..domain.lifecycle import parse_id, ref

    found = settings_of(ctx).store().oncall.pages(ticket_id=parse_id(ticket) if ticket else None)
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
                  local(p["due_at"]), plain(_status(p)), str(p["attempts"]))
    out.print(t)
    for p in found:
        if p["error"]:
            out.print(Text.assemble((f"page {p['id']} ({ref(p['ticket_id'])}): ", "dim"),
                                    plain(p["error"], one_line=True)))


def _status(page: dict) -> str:
    """As tick's summary counts it: a page whose delivery failed and waits for a retry is
    "failed, retrying", not "pending" (which is a page not tried yet)."""
    if page["status"] in ("pending", "sending") and page["error"] and page["attempts"]:
        return "failed, retrying"
    return page["status"]
