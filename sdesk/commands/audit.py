"""`sdesk audit`: verify the hash chain (and anchors kept outside), read who did what, anchor it."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import AuditBroken, BadInput
from .common import Group, note, print_json, settings_of, store_of

app = typer.Typer(cls=Group, name="audit", no_args_is_help=True,
                  help="The tamper-evident event history: verify it, read it, anchor it.\n\n"
                       "Example: sdesk audit verify\n\nExample: sdesk audit log --actor bob --since 7d")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _anchors(path: Path) -> list[tuple[int, str]]:
    """The anchors in a file written by `sdesk audit anchor --out`: one JSON object a line."""
    import json

    from ..files import read_text

    lines = read_text(path).splitlines()  # a regular file within a size
    anchors = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            anchors.append((int(value["event"]), str(value["hash"])))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # RecursionError: [[[[...
            raise BadInput(f"{path}:{number}: not an anchor (expected {{\"event\": N, \"hash\": \"...\"}})") from None
    return anchors


@app.command("verify")
def verify(
    ctx: typer.Context,
    anchors: Annotated[Optional[Path], typer.Option(
        "--anchors", help="Also check anchors kept outside (a file of `sdesk audit anchor` lines).",
        show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the hash chain of every event, then rebuild every ticket, user, queue role and API
    token from its events and compare it with the stored row; exits non-zero at the first
    altered or deleted event, or after listing each stored row its events do not explain
    (ticket or table, column, stored and rebuilt value). With --anchors, each anchored event
    must still have the hash the outside copy holds, so a history rewritten and re-hashed from
    scratch is caught too.

    Example: sdesk audit verify --anchors /backup/sdesk-anchors.jsonl
    """
    store = store_of(ctx)
    with store.audit.snapshot():  # one state of the desk, whatever others write meanwhile
        count, head, tombstones = store.audit.verify_chain()
        checked = 0
        for event_id, expected in _anchors(anchors) if anchors else []:
            if event_id == 0:
                continue  # anchored an empty desk
            if store.audit.chain_hash(event_id) != expected:
                raise AuditBroken(f"audit chain broken: event {event_id} no longer has the anchored hash "
                                  f"{expected[:16]}")
            checked += 1
        tables = store.audit.verify_tables()
    if as_json:
        print_json({"ok": not tables["count"], "events": count, "purged_events": tombstones, "head": head,
                    "anchors": checked, "tickets": tables["tickets"], "users": tables["users"],
                    "tokens": tables["tokens"], "differences": tables["differences"],
                    "differences_total": tables["count"], "not_compared": tables["not_compared"]})
    else:
        from ..domain.plain import plural
        from ..domain.projection import describe

        for d in tables["differences"]:
            print(describe(d))
        if tables["count"] > len(tables["differences"]):
            print(f"... and {tables['count'] - len(tables['differences'])} more")
        for column, rows in tables["not_compared"].items():
            note(f"note: {column} of {plural(rows, 'row')} not compared: no event of theirs records it")
        if not tables["count"]:
            purged = f" ({tombstones} purged, their places kept)" if tombstones else ""
            anchored = f", {plural(checked, 'anchor')} {'matches' if checked == 1 else 'match'}" if anchors else ""
            print(f"ok: {plural(count, 'event')}{purged}, chain intact{anchored}, head {head[:16]}; "
                  f"{plural(tables['tickets'], 'ticket')}, {plural(tables['users'], 'user')} and "
                  f"{plural(tables['tokens'], 'API token')} match their events")
    if tables["count"]:
        raise AuditBroken(f"{tables['count']} stored values differ from what their events say: the database "
                          "was edited outside sdesk")


@app.command("log")
def log(
    ctx: typer.Context,
    actor: Annotated[Optional[str], typer.Option("--actor", help="Only this actor's events.", show_default=False)] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="From: 7d, 12h, 2w back, or an ISO time.",
                                                 show_default=False)] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only this kind (e.g. permission_denied).",
                                                show_default=False)] = None,
    ticket: Annotated[Optional[str], typer.Option("--ticket", help="Only this ticket's events.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=2**63 - 1, help="The latest N events.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Who did what: the latest events of the whole desk, oldest first.

    Example: sdesk audit log --actor bob --since 7d
    """
    from ..domain import clock, lifecycle

    store = store_of(ctx)
    events = store.audit.audit_log(actor=actor, kind=kind, limit=limit,
                             since=clock.iso(clock.back(since, "--since")) if since else None,
                             ticket_id=lifecycle.parse_id(ticket) if ticket else None)
    if as_json:
        print_json(events)
        return
    from ..domain.events import describe_event
    from ..render import local, table

    table(["event", "at", "actor", "login", "ticket", "what"],
          [[e["id"], local(e["at"]), e["actor"], e["login"] or "", lifecycle.ref(e["ticket_id"]) if e["ticket_id"] else "",
            describe_event(e) + (f" (x{e['count']} that minute)" if e.get("count", 1) > 1 else "")]
           for e in events], empty="no events match")


@app.command("anchor")
def anchor(
    ctx: typer.Context,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Append the anchor to this file (keep it somewhere the desk's users cannot write).",
        show_default=False)] = None,
) -> None:
    """Print the chain's head (event id and hash) as one JSON line, for an outside system to keep.
    Run it from cron; `sdesk audit verify --anchors FILE` later proves the history up to each
    anchor is unchanged.

    Example: sdesk audit anchor --out /mnt/worm/sdesk-anchors.jsonl
    """
    import json
    import os

    store = store_of(ctx)
    head = store.audit.anchor()
    line = json.dumps(head)
    if out is not None and str(out) != "-":  # - is stdout, where the line goes anyway
        try:
            with out.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise BadInput(f"cannot write {out}: {e.strerror}") from None
        note(f"anchor appended to {out}")
    print(line)
    if not store.read_only:  # for sdesk doctor; a read-only desk is anchored all the same
        store.set_desk_state("anchor", value=str(head["event"]), actor=settings_of(ctx).actor)
