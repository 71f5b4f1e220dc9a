"""Talking back: `sdesk reply` (public; `comment` stays internal), `watch`/`unwatch`, stakeholder
updates (`status`, `status-page`), the outbox (`outbox list|show|retry|drop|send`) and
`notify check|preview|test`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInput, ExitCode, NotFound
from .common import Group, note, print_json, settings_of

reply_app = typer.Typer()
watch_app = typer.Typer()
unwatch_app = typer.Typer()
status_app = typer.Typer()
status_page_app = typer.Typer()
outbox_app = typer.Typer(cls=Group, name="outbox", no_args_is_help=True,
                         help="What the desk sends (replies, notices, stakeholder updates): each message, its "
                              "delivery and its tries.\n\nExample: sdesk outbox list --status dead\n\n"
                              "Example: sdesk outbox retry 42")
notify_app = typer.Typer(cls=Group, name="notify", no_args_is_help=True,
                         help="notify.yaml: check it, preview what a ticket's event would send, test a channel.\n\n"
                              "Example: sdesk notify preview SD-42 --event resolved\n\n"
                              "Example: sdesk notify test email --to me@example.com")
TicketArg = Annotated[str, typer.Argument(help="42 or SD-42.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _config(ctx: typer.Context, need: bool = True):
    settings = settings_of(ctx)
    config = settings.notify_config()
    if config is None and need:
        raise NotFound("no notify.yaml in the desk config (sdesk init --example DIR writes one to start from)")
    return config


@reply_app.command("reply")
def reply(
    ctx: typer.Context,
    ticket: TicketArg,
    text: Annotated[Optional[str], typer.Argument(
        help="The answer; '-' reads it from stdin; none opens $EDITOR on a terminal.", show_default=False)] = None,
) -> None:
    """Answer the requester: a public reply, sent to them and to the ticket's watchers by
    notify.yaml's rules (`comment` is internal and never sent). Delivered by `sdesk tick` or
    `sdesk serve` from the outbox.

    Example: sdesk reply SD-42 "We have rotated the certificate; please try again."

    Example: sdesk reply SD-42 - < answer.txt
    """
    from ..domain.lifecycle import parse_id, ref

    ticket_id = parse_id(ticket)
    if text == "-":
        text = sys.stdin.read(1 << 20)
    elif text is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise BadInput("reply: give the text, or '-' to read it from stdin")
        edited = typer.edit(f"\n# Your reply to {ref(ticket_id)}; lines starting with # are left out.\n")
        text = "\n".join(line for line in (edited or "").splitlines() if not line.startswith("#")).strip()
        if not text:
            raise BadInput("reply: nothing written; nothing sent")
    settings = settings_of(ctx)
    # A reply is asked to be sent: with a notify.yaml that does not load it could not be, and
    # nothing would queue it later. Refused, nothing recorded (store() only warned of it).
    settings.notify_config()
    queued = settings.store().tickets.reply(ticket_id=ticket_id, text=text, actor=settings.actor)
    if queued:
        note(f"{ref(ticket_id)}: reply recorded; {queued} message{'s' if queued != 1 else ''} queued "
             "(sdesk tick or sdesk serve delivers them; sdesk outbox list shows them)")
    else:
        why = ("no notify.yaml in the desk config" if settings.store().notify is None
               else "no notify.yaml rule sends it to anyone (on: replied, to: requester)")
        note(f"{ref(ticket_id)}: reply recorded, but nobody was told: {why}")


def _watch(ctx: typer.Context, ticket: str, who: str, remove: bool) -> None:
    from ..domain.lifecycle import parse_id, ref

    settings = settings_of(ctx)
    changed = settings.store().outbox.watch(parse_id(ticket), who=who, actor=settings.actor, remove=remove)
    verb = "no longer watches" if remove else "watches"
    note(f"{ref(parse_id(ticket))}: {who} {verb} it" + ("" if changed else " (no change)"))


@watch_app.command("watch")
def watch(ctx: typer.Context, ticket: TicketArg,
          who: Annotated[str, typer.Argument(help="An email address or a user's name.", show_default=False)]) -> None:
    """Copy someone on a ticket's public updates (replies, resolution, stakeholder updates), as
    notify.yaml's rules for `watchers` say. They may answer by email too.

    Example: sdesk watch SD-42 carol@example.com
    """
    _watch(ctx, ticket, who, remove=False)


@unwatch_app.command("unwatch")
def unwatch(ctx: typer.Context, ticket: TicketArg,
            who: Annotated[str, typer.Argument(help="An email address or a user's name.", show_default=False)]) -> None:
    """Stop copying someone on a ticket's updates.

    Example: sdesk unwatch SD-42 carol@example.com
    """
    _watch(ctx, ticket, who, remove=True)


@status_app.command("status")
def status(
    ctx: typer.Context,
    ticket: TicketArg,
    state: Annotated[str, typer.Argument(help="investigating, identified, monitoring or resolved.", show_default=False)],
    text: Annotated[str, typer.Argument(help="What stakeholders should know.", show_default=False)],
) -> None:
    """Post a stakeholder update on an incident: recorded, sent to its subscribers (notify.yaml's
    `subscribers` of its service or CI, and its watchers), and shown on the status page.

    Example: sdesk status SD-42 identified "Root cause found: an expired certificate on the API gateway"
    """
    from ..domain.lifecycle import parse_id, ref

    settings = settings_of(ctx)
    ticket_id = parse_id(ticket)
    settings.store().outbox.incident_update(ticket_id, state=state.strip().lower(), text=text, actor=settings.actor)
    note(f"{ref(ticket_id)}: {state.strip().lower()} update posted")


@status_page_app.command("status-page")
def status_page(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="The folder to write index.html into (made if missing).",
                                      show_default=False)],
    days: Annotated[int, typer.Option("--days", min=1, max=3650, help="History shown.")] = 90,
    title: Annotated[Optional[str], typer.Option("--title", help="The page's title (default: the desk's name).",
                                                 show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a static HTML status page: current incidents per service with their updates, and the
    last DAYS days' history. Any web server can serve the folder; nothing runs. Re-run it after
    each update (cron, or a hook).

    Example: sdesk status-page --out /var/www/status
    """
    from datetime import timedelta

    from ..domain import clock
    from ..errors import SdeskError
    from ..services.status_page import page

    settings = settings_of(ctx)
    try:
        config = settings.notify_config()  # (the desk's name and its services: a broken file does not stop the page)
    except SdeskError as e:
        note(f"warning: {e}; the page is written without it")
        config = None
    incidents = settings.store().outbox.incidents_since(clock.now() - timedelta(days=days))
    services = sorted(config.subscribers.get("services", {})) if config else []
    name = title or (config.desk_name if config else "Service status")
    if as_json:
        print_json({"title": name, "incidents": incidents})
        return
    from ..atomic import replaced
    from ..files import make_folders

    make_folders(out)
    with replaced(out / "index.html") as tmp:
        tmp.write_text(page(name, incidents, services, clock.now(), days), encoding="utf-8")
    open_now = sum(1 for i in incidents if i["updates"][0]["state"] != "resolved" and not i["resolved_at"])
    note(f"wrote {out / 'index.html'}: {open_now} current incident{'s' if open_now != 1 else ''}, "
         f"{len(incidents) - open_now} more in the last {days} days")


# -- the outbox -------------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    status_: Annotated[Optional[str], typer.Option("--status", help="pending, delivered, dead or dropped.",
                                                   show_default=False)] = None,
    ticket: Annotated[Optional[str], typer.Option("--ticket", help="42 or SD-42.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest messages first: to whom, over which channel, for which event, and their delivery.

    Example: sdesk outbox list --status dead
    """
    from ..domain.lifecycle import parse_id

    rows = settings_of(ctx).store().outbox.messages(status=status_, ticket_id=parse_id(ticket) if ticket else None,
                                                    limit=limit)
    if as_json:
        print_json(rows)
        return
    from ..render import table

    # when: sent, or (waiting) when it is due: a retry's backoff, the coalescing window, the hour's share
    table(["id", "ticket", "event", "to", "channel", "status", "tries", "when"],
          [[r["id"], r["ref"] or "", r["event"], r["recipient"], r["channel"], r["status"], r["attempts"] or "",
            (r["sent_at"] or r["due_at"] or "")[:16].replace("T", " ")] for r in rows],
          empty="the outbox is empty")
    for r in rows:
        if r["error"] and r["status"] in ("pending", "dead"):  # why it waits, or gave up
            note(f"{r['id']}: {r['error']}")


@outbox_app.command("show")
def outbox_show(ctx: typer.Context, message: Annotated[int, typer.Argument(help="The message's id.")],
                as_json: JsonOption = False) -> None:
    """One message: its delivery, and what it says (rendered as it is sent).

    Example: sdesk outbox show 42
    """
    settings = settings_of(ctx)
    row = settings.store().outbox.message(message)
    config = settings.notify_config()
    rendered = None
    if config is not None and row["channel"] in config.channels:
        from ..services.outbound import preview

        rendered = preview([row], config)[0]
    if as_json:
        print_json({**row, "rendered": rendered})
        return
    from ..domain.plain import controls

    for name in ("id", "ref", "event", "rule", "channel", "recipient", "audience", "status", "attempts", "created_at",
                 "due_at", "sent_at", "message_id", "error"):
        if row.get(name) not in (None, ""):
            print(controls(f"{name + ':':<11} {row[name]}", one_line=True))
    if rendered:
        print()
        if rendered.get("subject"):
            print(controls(f"Subject: {rendered['subject']}", one_line=True))
        print(controls(rendered.get("text") or rendered.get("error") or ""))


def _ids(messages: list[int]) -> list[int]:
    if not messages:
        raise BadInput("give message ids (sdesk outbox list shows them)")
    return messages


@outbox_app.command("retry")
def outbox_retry(ctx: typer.Context,
                 messages: Annotated[Optional[list[int]], typer.Argument(help="Message ids.", show_default=False)] = None,
                 dead: Annotated[bool, typer.Option("--dead", help="Every dead message.")] = False) -> None:
    """Try dead messages again now, their tries counted afresh (after fixing a channel or a template).

    Example: sdesk outbox retry --dead
    """
    settings = settings_of(ctx)
    n = settings.store().outbox.retry(None if dead else _ids(messages or []), actor=settings.actor)
    note(f"{n} message{'s' if n != 1 else ''} due again (the next sdesk tick sends them)")


@outbox_app.command("drop")
def outbox_drop(ctx: typer.Context,
                messages: Annotated[list[int], typer.Argument(help="Message ids.", show_default=False)]) -> None:
    """Never send these messages (they stay on record as dropped).

    Example: sdesk outbox drop 42 43
    """
    settings = settings_of(ctx)
    n = settings.store().outbox.drop(_ids(messages), actor=settings.actor)
    note(f"{n} message{'s' if n != 1 else ''} dropped")


@outbox_app.command("send")
def outbox_send(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Deliver what is due now (what `sdesk tick` does with the outbox, and `sdesk serve` all the time).

    Example: sdesk outbox send
    """
    from ..services.outbound import deliver

    settings = settings_of(ctx)
    config = _config(ctx)
    total: dict = {"sent": 0, "failed": 0, "errors": []}
    while True:
        done = deliver(settings.store(), config, actor=settings.actor)
        total = {k: total[k] + done[k] for k in total}
        if not done["sent"]:
            break
    if not as_json:
        _failures(total["errors"])
    counts = settings.store().outbox.counts()
    if as_json:
        print_json({**total, "pending": counts.get("pending", 0), "dead": counts.get("dead", 0)})
    else:
        note(f"outbox: {total['sent']} sent, {total['failed']} failed, {counts.get('pending', 0)} waiting, "
             f"{counts.get('dead', 0)} dead")
    if counts.get("dead"):
        raise typer.Exit(ExitCode.ERROR)


def _failures(errors: list[dict]) -> None:
    for e in errors:
        note(f"warning: message {e['message']} to {e['to']} over {e['channel']} not sent (retried later, "
             f"or dead after its tries): {e['error']}")


# -- notify ---------------------------------------------------------------------------------------


@notify_app.command("check")
def notify_check(ctx: typer.Context) -> None:
    """Check notify.yaml and every template its rules use, rendered as each audience gets it (the
    public is given no internal fields): one line for the first mistake (file and line), exit 2.

    Example: sdesk notify check
    """
    from ..domain.notify import samples
    from ..services.outbound import render_batch, template_of

    config = _config(ctx)
    names = set()
    for event, template, audience, context in samples(config):
        row = {"template": template, "event": event, "audience": audience, "context": context, "ticket_id": 42}
        names.add(template_of(row, config))
        render_batch([row], config)
    note(f"notify.yaml: {len(config.rules)} rules, {len(config.channels)} channels, {len(names)} templates: fine")


@notify_app.command("preview")
def notify_preview(
    ctx: typer.Context,
    ticket: TicketArg,
    event: Annotated[str, typer.Option("--event", help="created, replied, resolved, incident_update, ...")] = "created",
    as_json: JsonOption = False,
) -> None:
    """Exactly what each recipient would get if EVENT happened on the ticket now; nothing is sent or queued.

    Example: sdesk notify preview SD-42 --event resolved
    """
    from ..domain.lifecycle import parse_id
    from ..domain.notify import EVENTS
    from ..services.outbound import preview

    if event not in EVENTS:
        raise BadInput(f"--event {event!r}: expected one of {', '.join(EVENTS)}")
    settings = settings_of(ctx)
    config = _config(ctx)
    rows = settings.store().outbox.preview(config, ticket_id=parse_id(ticket), on=event, actor=settings.actor)
    shown = preview(rows, config)
    if as_json:
        print_json(shown)
        if any(m.get("error") for m in shown):
            raise typer.Exit(ExitCode.BAD_INPUT)
        return
    from ..domain.plain import controls

    if not shown:
        note(f"no rule of notify.yaml sends anything on {event} for this ticket")
    for i, m in enumerate(shown):
        if i:
            print()
        print(controls(f"== to {m['to']} over {m['channel']} (rule {m['rule']}, {m.get('audience', '')})", one_line=True))
        if m.get("error"):
            print(controls(f"error: {m['error']}"))
            continue
        if m.get("subject"):
            print(controls(f"Subject: {m['subject']}", one_line=True))
        print(controls(m["text"].rstrip()))
    if any(m.get("error") for m in shown):
        raise typer.Exit(ExitCode.BAD_INPUT)


@notify_app.command("test")
def notify_test(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(help="A channel of notify.yaml.", show_default=False)],
    to: Annotated[Optional[str], typer.Option("--to", help="The address (email channels).", show_default=False)] = None,
) -> None:
    """Send one test message over a channel now, to see that it reaches people.

    Example: sdesk notify test email --to me@example.com
    """
    from ..services.outbound import test_message

    note(test_message(_config(ctx), channel, to))
