"""Self-service from the terminal: `sdesk catalog list|show|check`, `sdesk request TYPE`,
`sdesk approvals`, `sdesk approve ID` and `sdesk reject ID --reason`."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import BadInput, ExitCode
from .common import Group, note, print_json, settings_of

app = typer.Typer(cls=Group, name="catalog", no_args_is_help=True,
                  help="The service catalog (catalog.yaml): what people may ask for, as typed forms with approvals "
                       "and automated fulfilment.\n\nExample: sdesk catalog list\n\nExample: sdesk catalog show "
                       "quota-increase")
request_app = typer.Typer()
approve_app = typer.Typer()
reject_app = typer.Typer()
approvals_app = typer.Typer()
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TicketArg = Annotated[str, typer.Argument(help="42 or SD-42: the request's ticket.", show_default=False)]


def _catalog(ctx: typer.Context) -> Any:
    return settings_of(ctx).catalog()


def _teams(settings: Any) -> dict[str, list[str]]:
    from ..services.requests import teams_of

    return teams_of(settings.oncall_config())


@app.command("list")
def catalog_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The request types, by category.

    Example: sdesk catalog list --json
    """
    catalog = _catalog(ctx)
    rows = [{"id": t.id, "title": t.title, "category": t.category, "queue": t.queue, "priority": t.priority,
             "fields": len(t.fields), "approval": [s.name for s in t.stages], "fulfil": t.runbook}
            for t in catalog.types.values()]
    if as_json:
        print_json(rows)
        return
    from ..render import table

    table(["id", "title", "category", "approval", "fulfil"],
          [[r["id"], r["title"], r["category"], " > ".join(r["approval"]) or "-", r["fulfil"] or "a person"]
           for r in sorted(rows, key=lambda r: (r["category"], r["id"]))],
          empty="no catalog.yaml in the desk config (sdesk init --example DIR writes one to start from)")


@app.command("show")
def catalog_show(ctx: typer.Context, type_id: Annotated[str, typer.Argument(metavar="TYPE", help="A request type's id.")],
                 as_json: JsonOption = False) -> None:
    """A request type: its fields, approval chain and fulfilment.

    Example: sdesk catalog show access-grant
    """
    from ..domain.runbooks import window_text
    from ..services.requests import request_type

    t = request_type(_catalog(ctx), type_id)
    fields = [{"name": f.name, "label": f.label, "type": f.type, "required": f.required, "help": f.help or None,
               "choices": list(f.choices) or f.choices_from, "min": f.minimum, "max": f.maximum,
               "pattern": f.pattern.pattern if f.pattern else None,
               "show_when": f.show_when.text() if f.show_when else None} for f in t.fields]
    stages = [{"name": s.name, "approvers": s.approvers, "need": s.need or "all",
               "when": s.when.text() if s.when else None} for s in t.stages]
    shown = {"id": t.id, "title": t.title, "description": t.description, "category": t.category, "queue": t.queue,
             "priority": t.priority, "sla": t.sla, "fields": fields, "approval": stages, "expires": str(t.expires),
             "fulfil": {"runbook": t.runbook, "params": dict(t.params)} if t.runbook else None}
    if as_json:
        print_json(shown)
        return
    from ..render import table

    print(f"{t.id}: {t.title}  [{t.category}; queue {t.queue or '-'}, {t.priority}]")
    if t.description:
        print(f"  {t.description}")
    table(["field", "label", "type", "rules"],
          [[f["name"], f["label"], f["type"], "; ".join(x for x in (
              "required" if f["required"] else "optional",
              f"one of {', '.join(f['choices'])}" if isinstance(f["choices"], list) else
              f"from the CMDB ({f['choices']})" if f["choices"] else "",
              f"min {f['min']}" if f["min"] is not None else "", f"max {f['max']}" if f["max"] is not None else "",
              f"pattern {f['pattern']}" if f["pattern"] else "",
              f"shown when {f['show_when']}" if f["show_when"] else "") if x)] for f in fields])
    if stages:
        print("approval: " + " > ".join(f"{s['name']} ({s['approvers']}, need {s['need']}"
                                         + (f", when {s['when']}" if s["when"] else "") + ")" for s in stages)
              + f"; each waits {window_text(t.expires)}, reminded after {window_text(t.remind)}")
    print(f"fulfil: runbook {t.runbook}" if t.runbook else "fulfil: a person (no runbook)")


@app.command("check")
def catalog_check(ctx: typer.Context) -> None:
    """Check catalog.yaml against the desk: runbooks (present, safe for automation, parameters
    given), SLA policies, queues, users and teams. Exits 2 with one line per problem.

    Example: sdesk catalog check
    """
    from ..services.requests import problems

    settings = settings_of(ctx)
    catalog = settings.catalog()
    runbooks, errors = settings.runbooks()
    oncall = settings.oncall_config()
    found = problems(_store_if_any(settings), catalog, runbooks=runbooks, runbook_errors=errors, sla=settings.sla_config(),
                     teams=_teams(settings), queues=set(oncall.queues))
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if found:
        raise typer.Exit(int(ExitCode.BAD_INPUT))
    note(f"catalog OK: {len(catalog.types)} request type{'s' if len(catalog.types) != 1 else ''}")


@request_app.command("request")
def request(
    ctx: typer.Context,
    type_id: Annotated[str, typer.Argument(metavar="TYPE", help="A request type (sdesk catalog list).")],
    fields: Annotated[Optional[list[str]], typer.Option("--field", "-f", metavar="NAME=VALUE",
                                                        help="An answer; repeat for each field.")] = None,
    from_stdin: Annotated[bool, typer.Option("--stdin", help="Read the answers as a JSON object on stdin.")] = False,
    requester: Annotated[Optional[str], typer.Option(
        "--requester", help="Who asks (an email address or a user); default: you.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask for something in the catalog: the answers are checked as the portal checks them, the
    approval chain starts (or, with none, the fulfilment runbook runs now).

    Example: sdesk request password-reset --field account=jdoe

    Example: echo '{"service": "shop-checkout", "extra_gb": 50, "justification": "growth"}' | sdesk request quota-increase --stdin
    """
    from ..services.requests import next_step, submit

    answers: dict[str, Any] = {}
    if from_stdin:
        import orjson

        try:
            data = orjson.loads(sys.stdin.buffer.read(1 << 20))
        except orjson.JSONDecodeError as e:
            raise BadInput(f"request --stdin: not JSON ({e})") from None
        if not isinstance(data, dict):
            raise BadInput("request --stdin: expected a JSON object of field names and values")
        answers.update(data)
    for pair in fields or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"--field {pair[:60]!r}: expected NAME=VALUE")
        answers[name.strip()] = value
    settings = settings_of(ctx)
    who = requester or _me(settings)
    shown = submit(settings.store(), settings.catalog(), type_id, answers, requester=who, actor=settings.actor,
                   teams=lambda: _teams(settings))
    if shown["state"] == "fulfilling":
        shown = _fulfil(settings, shown)
    if as_json:
        print_json(shown)
        return
    print(shown["id"])
    note(f"{shown['id']}: {shown['title']} - {next_step(shown)}")


def _fulfil(settings: Any, shown: dict[str, Any]) -> dict[str, Any]:
    """Run the request's fulfilment now, here, as serve's automation would (that run alone: other
    queued runs are automation's or the next tick's); the request as it then stands."""
    from ..services.requests import shown as again
    from ..services.runner import run_queued

    for run in run_queued(settings.store(), settings.runbooks()[0], actor="automation", echo=note, only=shown["run_id"]):
        note(f"automation: run {run['id']} ({run['runbook']}) on {shown['id']}: {run['status']}")
    return again(settings.store(), shown["ticket_id"])


def _store_if_any(settings: Any) -> Any:
    """The desk's store, or None where there is no database yet (the files are checked alone)."""
    from ..errors import NotFound

    try:
        return settings.store()
    except NotFound:
        return None


def _me(settings: Any) -> str:
    """The requester the actor is: their email when the desk knows it, else their name."""
    users = {u["name"].casefold(): u for u in settings.store().users.users()}
    me = users.get(settings.actor.strip().casefold())
    return (me or {}).get("email") or settings.actor


@approvals_app.command("approvals")
def approvals(ctx: typer.Context, user: Annotated[Optional[str], typer.Option(
        "--user", help="Whose (default: yours).", show_default=False)] = None, as_json: JsonOption = False) -> None:
    """The approvals waiting for you.

    Example: sdesk approvals --json
    """
    from ..domain.lifecycle import ref

    settings = settings_of(ctx)
    rows = settings.store().requests.pending_for(user or settings.actor)
    if as_json:
        print_json([{**r, "id": ref(r["ticket_id"])} for r in rows])
        return
    from ..render import table

    table(["ticket", "type", "title", "stage", "requester", "expires"],
          [[ref(r["ticket_id"]), r["type"], r["title"], r["name"], r["requester"], r["expires_at"][:16]] for r in rows],
          empty="no approvals wait for you")


def _decide(ctx: typer.Context, ticket: str, approve: bool, reason: Optional[str], as_json: bool) -> None:
    from ..domain.lifecycle import parse_id
    from ..services.requests import decide, next_step

    settings = settings_of(ctx)
    shown = decide(settings.store(), parse_id(ticket), approver=settings.actor, approve=approve, reason=reason,
                   actor=settings.actor)
    if shown["state"] == "fulfilling":
        shown = _fulfil(settings, shown)
    if as_json:
        print_json(shown)
        return
    note(f"{shown['id']}: {'approved' if approve else 'rejected'} - {next_step(shown)}")


@approve_app.command("approve")
def approve(ctx: typer.Context, ticket: TicketArg,
            reason: Annotated[Optional[str], typer.Option("--reason", help="A note for the requester.")] = None,
            as_json: JsonOption = False) -> None:
    """Approve the stage a request waits on (you must be one of its approvers).

    Example: sdesk approve SD-42
    """
    _decide(ctx, ticket, True, reason, as_json)


@reject_app.command("reject")
def reject(ctx: typer.Context, ticket: TicketArg,
           reason: Annotated[str, typer.Option("--reason", help="Why (the requester reads it).")],
           as_json: JsonOption = False) -> None:
    """Reject a request at the stage it waits on: it ends, its ticket resolved with the reason.

    Example: sdesk reject SD-42 --reason "Use the shared bucket instead"
    """
    _decide(ctx, ticket, False, reason, as_json)
