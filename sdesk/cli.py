"""The sdesk command line: parse, call the store and domain modules, render.

Start-up cost matters (see DESIGN.md): pydantic, rich and sqlite-utils are imported inside the
commands that need them, never at the top of this module.
"""

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from . import __version__
from .commands.common import (
    COMMAND_PATH,
    RootGroup,
    note,
    parse_labels,
    print_json,
    run_automation,
    settings_of,
    store_of,
)
from .desk import Desk
from .domain import lifecycle
from .domain.lifecycle import Kind, Priority, Status
from .domain.plain import controls
from .domain.signals import FORMATS, Signal
from .errors import BadInput, ExitCode, NotFound, SdeskError

if TYPE_CHECKING:
    from .intake.formats import Record

# sdesk uses no pydantic plugins; skipping their entry-point scan saves ~10 ms per command
# that imports pydantic.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


app = typer.Typer(
    cls=RootGroup,
    name="sdesk",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

RootGroup.lazy = {"cmdb": ("sdesk.commands.cmdb", "app"), "kb": ("sdesk.commands.kb", "app"),
                  "change": ("sdesk.commands.work", "change_app"), "problem": ("sdesk.commands.work", "problem_app"),
                  "triage": ("sdesk.commands.triage", "app"), "rules": ("sdesk.commands.rules", "app"),
                  "silence": ("sdesk.commands.rules", "silence_app"), "oncall": ("sdesk.commands.oncall", "app"),
                  "sla": ("sdesk.commands.sla", "app"), "slo": ("sdesk.commands.sla", "slo_app"), "tick": ("sdesk.commands.paging", "tick_app"),
                  "escalate": ("sdesk.commands.paging", "escalate_app"), "pages": ("sdesk.commands.paging", "pages_app"),
                  "runbook": ("sdesk.commands.runbook", "app"), "report": ("sdesk.commands.report", "app"),
                  "metrics": ("sdesk.commands.report", "metrics_app"), "csat": ("sdesk.commands.report", "csat_app"),
                  "worklog": ("sdesk.commands.report", "worklog_app"),
                  "postmortem": ("sdesk.commands.report", "postmortem_app"), "tui": ("sdesk.commands.tui", "app"),
                  "user": ("sdesk.commands.user", "app"), "audit": ("sdesk.commands.audit", "app"),
                  "backup": ("sdesk.commands.data", "backup_app"), "restore": ("sdesk.commands.data", "restore_app"),
                  "export": ("sdesk.commands.data", "export_app"), "import": ("sdesk.commands.data", "import_app"),
                  "purge": ("sdesk.commands.data", "purge_app"), "doctor": ("sdesk.commands.doctor", "app"),
                  "reply": ("sdesk.commands.talk", "reply_app"), "watch": ("sdesk.commands.talk", "watch_app"),
                  "unwatch": ("sdesk.commands.talk", "unwatch_app"), "status": ("sdesk.commands.talk", "status_app"),
                  "status-page": ("sdesk.commands.talk", "status_page_app"), "outbox": ("sdesk.commands.talk", "outbox_app"),
                  "notify": ("sdesk.commands.talk", "notify_app"), "catalog": ("sdesk.commands.catalog", "app"),
                  "request": ("sdesk.commands.catalog", "request_app"),
                  "approvals": ("sdesk.commands.catalog", "approvals_app"),
                  "approve": ("sdesk.commands.catalog", "approve_app"), "reject": ("sdesk.commands.catalog", "reject_app"),
                  "index": ("sdesk.commands.search", "index_app"), "search": ("sdesk.commands.search", "search_app"),
                  "similar": ("sdesk.commands.search", "similar_app")}

# `sdesk --help` lists the commands in these panels, in this order (a command not named here,
# such as a new one, is listed under "Commands" first).
RootGroup.panels = {
    **dict.fromkeys(("list", "show", "assign", "ack", "start", "wait", "resolve", "close", "reopen", "comment",
                     "update", "link", "tui"), "Tickets"),
    **dict.fromkeys(("reply", "watch", "unwatch", "status", "status-page", "outbox", "notify"), "Talking back"),
    **dict.fromkeys(("new", "serve", "silence"), "Intake"),
    **dict.fromkeys(("why", "triage", "rules"), "Triage & routing"),
    **dict.fromkeys(("oncall", "tick", "escalate", "pages", "sla", "slo"), "On-call & SLA"),
    "runbook": "Runbooks",
    **dict.fromkeys(("catalog", "request", "approvals", "approve", "reject"), "Self-service"),
    **dict.fromkeys(("search", "similar", "index", "kb", "cmdb", "change", "problem"), "Knowledge & CMDB"),
    **dict.fromkeys(("report", "metrics", "postmortem", "csat", "worklog"), "Reports"),
    **dict.fromkeys(("init", "doctor", "demo", "schema", "user", "audit", "backup", "restore", "export", "import",
                     "purge"), "Admin & data"),
}


def _version(value: bool) -> None:
    if value:
        print(f"sdesk {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[Optional[str], typer.Option("--db", envvar="SDESK_DB", metavar="PATH", help="Database file (default: your user data dir).", show_default=False)] = None,
    actor: Annotated[Optional[str], typer.Option("--as", envvar="SDESK_USER", help="Act as this user (default: your login).", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", envvar="SDESK_CONFIG", help="Desk configuration folder (YAML files, e.g. intake.yaml); default: the one `init --config` recorded.", show_default=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """A service desk in the terminal: tickets, alerts, triage, on-call and runbooks over one SQLite file.

    Example: sdesk new "Checkout returns 502" --priority P1 --service checkout
    """
    source, db_source = ctx.get_parameter_source("config"), ctx.get_parameter_source("db")
    settings = Desk(db, actor, config, "SDESK_CONFIG" if source is not None and source.name == "ENVIRONMENT" else "--config",
                        "SDESK_DB" if db_source is not None and db_source.name == "ENVIRONMENT" else "--db")
    settings.command = ctx.meta.setdefault(COMMAND_PATH, [])  # the same list, filled in as the groups resolve
    ctx.obj = settings
    ctx.call_on_close(settings.close)


# -- set-up ----------------------------------------------------------------------------------


@app.command()
def init(
    ctx: typer.Context,
    empty_ok: Annotated[bool, typer.Option("--empty-ok", help="Make the desk in an existing empty (0-byte) file, such as one from mktemp; any other file that is not an sdesk database is always refused.")] = False,
    example: Annotated[Optional[Path], typer.Option("--example", help="Write a commented starter desk config (a copy of examples/desk) to this new or empty folder, to edit; the database is not touched.", show_default=False)] = None,
) -> None:
    """Create the database (or upgrade it) and print its path. Safe to run again. With --config
    DIR, the desk records its config folder: later commands use it without --config or
    SDESK_CONFIG (which still override it).

    Example: sdesk init --example ./desk-config && sdesk init --config ./desk-config
    """
    settings = settings_of(ctx)
    given = ctx.find_root().get_parameter_source("config")
    if example is not None:
        from .services.starter import write_starter

        written = write_starter(example)
        print(controls(example, one_line=True))  # a name is data: its escapes are shown, not run
        note(f"wrote a starter desk config to {example}: {', '.join(written)}. Edit it (teams and users in "
             "oncall.yaml, the notifier, sla.yaml's calendars, notify.yaml's mail server: SMTP_HOST and "
             "SMTP_PORT, or edit it)"
             + ("" if given is not None and given.name == "COMMANDLINE" else f", then record it: sdesk init --config {example}"))
        if given is None or given.name != "COMMANDLINE":
            return  # the database is not touched: --example alone only writes the files
    store = settings.store(init_empty=empty_ok)
    print(controls(store.path, one_line=True))
    if given is not None and given.name == "COMMANDLINE" and settings.config is not None:
        folder = settings.config.resolve()
        if store.desk_state().get("config", (None,))[0] != str(folder):
            store.set_desk_state("config", value=str(folder), actor=settings.actor, need="admin", event="desk_configured")
        note(f"the desk's config folder is {folder}: commands use it without --config "
             "(--config or SDESK_CONFIG override it)")
        _warn_of_config_files(folder)


def _warn_of_config_files(folder: Path) -> None:
    """An empty folder may be recorded on purpose (to fill in later); a folder with no desk files,
    or with files sdesk never reads (oncall.yml, SLA.yaml), is said so: otherwise nothing pages
    and nobody is told why."""
    from .domain.plain import plural
    from .services.starter import config_files, meant

    found, unknown = config_files(folder)
    if not found:
        note(f"warning: {folder} holds no desk files (oncall.yaml, sla.yaml, triage.yaml, intake.yaml, "
             "metrics.yaml, roles.yaml, runbooks/): recorded all the same, but nothing pages and no SLA or "
             "triage rule applies until they are there (sdesk init --example DIR writes a starter set)")
    if unknown:
        names = ", ".join(f"{name} (meant {meant(name)}?)" if meant(name) else name for name in unknown[:10])
        more = f" and {plural(len(unknown) - 10, 'other')}" if len(unknown) > 10 else ""
        note(f"warning: sdesk never reads {names}{more} in {folder}: a desk file is named oncall.yaml, sla.yaml, "
             "triage.yaml, intake.yaml, metrics.yaml or roles.yaml")


@app.command()
def schema(ctx: typer.Context,
           name: Annotated[str, typer.Argument(help="ticket-create, ticket-update, ticket (a list --json item), ticket-shown (show --json), event, or request TYPE (a catalog request's answers).")],
           request_type: Annotated[Optional[str], typer.Argument(metavar="[TYPE]", help="With request: the catalog's request type.", show_default=False)] = None) -> None:
    """Print the JSON Schema of what sdesk reads or writes, for integrations.

    Example: sdesk schema ticket-create

    Example: sdesk schema request quota-increase
    """
    if name == "request":
        if not request_type:
            raise BadInput("schema request: give the request type (sdesk catalog list)")
        from .domain.catalog import json_schema
        from .services.requests import options
        from .services.requests import request_type as find

        settings: Desk = ctx.obj
        t = find(settings.catalog(), request_type)
        try:
            choices = options(settings.store(), t)
        except NotFound:  # no database yet: the CMDB's choices are not known
            choices = {}
        print_json(json_schema(t, choices))
        return
    from .domain.models import SCHEMAS

    if name not in SCHEMAS:
        raise BadInput(f"unknown schema {name!r}; choose from {', '.join(SCHEMAS)}, request TYPE")
    if request_type:
        raise BadInput(f"schema {name}: takes no TYPE (only schema request TYPE does)")
    print_json(SCHEMAS[name].model_json_schema())


# -- intake ----------------------------------------------------------------------------------


def ticket_from_flags(title: str, *, labels: list[str], **fields: Any) -> dict[str, Any]:
    """The ticket `sdesk new TITLE --flag ...` describes (checked without pydantic)."""
    from .domain.fields import check_ticket

    return check_ticket({"title": title, "labels": parse_labels(labels), **fields})


def _progress_bar(total: int | None):
    """A progress callback: a bar on stderr when it is a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return lambda advance: None, None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("intake", total=total)
    bar.start()
    return lambda advance: bar.advance(task, advance), bar


@app.command()
def new(
    ctx: typer.Context,
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[TITLE | PATH...]", help="The title of one ticket; or, with --format or --jsonl, files to read ('-' or none: stdin).", show_default=False)] = None,
    description: Annotated[Optional[str], typer.Option("--description", "-d", help="Longer text.")] = None,
    kind: Annotated[Optional[Kind], typer.Option(case_sensitive=False, help="Default: incident.", show_default=False)] = None,
    priority: Annotated[Optional[Priority], typer.Option("--priority", "-p", case_sensitive=False, help="Default: P3.", show_default=False)] = None,
    service: Annotated[Optional[str], typer.Option(help="Service affected.")] = None,
    ci: Annotated[Optional[str], typer.Option(help="Configuration item affected.")] = None,
    queue: Annotated[Optional[str], typer.Option("--queue", "-q", help="Queue to file into.")] = None,
    requester: Annotated[Optional[str], typer.Option(help="Who asked.")] = None,
    label: Annotated[list[str], typer.Option("--label", "-l", help="KEY=VALUE, repeatable.")] = [],
    tag: Annotated[list[str], typer.Option("--tag", "-t", help="Repeatable.")] = [],
    fingerprint: Annotated[Optional[str], typer.Option(help="Dedup key: an open ticket with the same one is bumped, not duplicated.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="Input format: auto (default for piped input), json, jsonl, alertmanager, pagerduty, grafana, opsgenie, email (a message, an mbox or a Maildir folder).", show_default=False)] = None,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One document per line, stored as it streams in.")] = False,
    record_resolved: Annotated[bool, typer.Option("--record-resolved", help="A resolved alert is only recorded on its ticket, not resolving it (per source: intake.yaml).")] = False,
    reopen_days: Annotated[Optional[int], typer.Option("--reopen-within", min=0, max=36500, help="An email reply reopens a ticket resolved or closed less than this many days ago (default 14, or intake.yaml).", show_default=False)] = None,
    rejects: Annotated[Optional[Path], typer.Option(help="Write rejected input records to this file.", dir_okay=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (one object per record for streams).")] = False,
) -> None:
    """Open a ticket, or take alerts and tickets from JSON payloads.

    An open ticket with the same fingerprint is not duplicated: its occurrence count goes up.
    A resolved alert resolves its ticket. Prints the id (SD-N) of each ticket on stdout.

    Example: sdesk new "Disk full on db-3" -p P2 --service billing --label host=db-3

    Example: curl -s localhost:9093/api/v2/alerts | sdesk new --format alertmanager

    Example: tail -f alerts.jsonl | sdesk new --jsonl --rejects bad.jsonl

    Example: sdesk new --format email ~/Maildir/support
    """
    settings = settings_of(ctx)
    args = args or []
    flags = {"description": description, "kind": kind, "priority": priority, "service": service, "ci": ci,
             "queue": queue, "requester": requester, "fingerprint": fingerprint}
    if fmt is not None and fmt not in FORMATS:
        raise BadInput(f"--format: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt or jsonl or args == ["-"] or (not args and not sys.stdin.isatty()):
        given = [f"--{k}" for k, v in flags.items() if v is not None] + ["--label"] * bool(label) + ["--tag"] * bool(tag)
        if given:
            raise BadInput(f"{given[0]} cannot be combined with JSON input; put it in the JSON")
        line_mode = jsonl or fmt == "jsonl"
        # --jsonl alone streams generic tickets (the fast path); --format auto detects per line.
        payload_format = "json" if fmt == "jsonl" else fmt or ("json" if line_mode else "auto")
        _new_from_payloads(settings, [None if a == "-" else Path(a) for a in args] or [None], fmt=payload_format,
                           line_mode=line_mode, record_resolved=record_resolved, reopen_days=reopen_days,
                           rejects=rejects, as_json=as_json)
        return
    if len(args) != 1:
        from .domain.plain import plural
        raise BadInput("a title is required (quote it if it has spaces), or '-' to read JSON from stdin"
                       if not args else f"one title, got {plural(len(args), 'word')}: quote it")
    ticket = ticket_from_flags(args[0], labels=label, tags=tag, **flags)
    _, options = settings.intake_options()
    from .intake.service import Intake

    [(ticket_id, outcome)] = Intake(settings.store()).receive([Signal("cli", "trigger", ticket=ticket)], actor=settings.actor,
                                                      **options)
    created = outcome == "created"
    run_automation(settings, options.get("automate", frozenset()))
    if not created:
        note(f"{lifecycle.ref(ticket_id)}: same fingerprint as this open ticket; occurrence recorded")
    if as_json:
        print_json({**settings.store().tickets.get_or_raise(ticket_id=ticket_id), "deduplicated": not created})
    else:
        print(lifecycle.ref(ticket_id))


def _new_from_payloads(settings: Desk, paths: list[Path | None], *, fmt: str, line_mode: bool,
                       record_resolved: bool, reopen_days: int | None, rejects: Path | None, as_json: bool) -> None:
    """Read each path (None: stdin; a folder: its messages) in `fmt`, whole or a document per
    line; report each record as it is stored."""
    from . import files
    from .errors import StoreFault
    from .intake.ingest import Summary, document_records, expand_paths, ingest, jsonl_chunks

    severity, options = settings.intake_options(record_all=record_resolved, reopen_days=reopen_days)

    if line_mode and fmt == "email":
        raise BadInput("--jsonl does not apply to email: give .eml files, an mbox or a Maildir folder")

    to_stdout = rejects is not None and str(rejects) == "-"  # - is stdout, as for every file a command writes
    reject_file = sys.stdout if to_stdout else files.open_output(rejects) if rejects else None  # a FIFO: no hang
    write = sys.stdout.write
    total = Summary()
    kept = [0, ""]  # records stored so far and where the last one was: said if the store fails
    try:
        for path in expand_paths(paths):
            name = str(path) if path else "stdin"
            # A file or a stream (a FIFO, <(tail -f ...)); never a device such as /dev/zero.
            stream = files.open_file(path, streams=True) if path else sys.stdin.buffer
            used = fmt

            def on_stored(record: "Record", ticket_id: int | None, outcome: str) -> None:
                kept[0], kept[1] = kept[0] + 1, f"{name}: {record.where}"
                if as_json:
                    write(json.dumps({"where": record.where, "format": used, "ticket": ticket_id, "action": outcome})
                          + "\n")
                elif ticket_id is not None:
                    write(f"{lifecycle.ID_PREFIX}{ticket_id}\n")

            def on_rejected(record: "Record") -> None:
                if as_json:
                    write(json.dumps({"where": record.where, "format": used, "ticket": None, "action": "rejected",
                                      "error": record.error}, ensure_ascii=False) + "\n")
                if len(total.rejected) < 20:
                    note(f"{name}: {record.where}: {record.error}")
                total.rejected.append(record)

            advance, bar = _progress_bar(path.stat().st_size if path and line_mode else None)
            try:
                with stream:
                    if line_mode:
                        chunks = jsonl_chunks(stream, advance, "jsonl" if fmt == "json" else fmt, severity)
                    else:
                        used, records = document_records(files.read_capped(stream, name, files.MAX_DOCUMENT), fmt,
                                                         severity)
                        chunks = [(records, False)]
                    summary = ingest(settings.store(), chunks, actor=settings.actor, on_stored=on_stored,
                                     on_rejected=on_rejected, on_batch=sys.stdout.flush, rejects=reject_file,
                                     options=options)
            finally:
                if bar is not None:
                    bar.stop()
            for outcome, n in summary.outcomes.items():
                total.outcomes[outcome] = total.outcomes.get(outcome, 0) + n
            counts = ", ".join(f"{n} {outcome}" for outcome, n in summary.outcomes.items())
            note(f"{name} ({used}): {counts or 'nothing'}" + (f", {len(summary.rejected)} rejected" if summary.rejected else ""))
    except StoreFault as e:
        raise type(e)(f"{e}; {kept[0]} records were stored and reported before it" + (f", the last {kept[1]}" if kept[0] else "")) from None
    finally:
        if reject_file and not to_stdout:
            reject_file.close()
    run_automation(settings, options.get("automate", frozenset()))
    if total.rejected:
        if rejects:
            note(f"{len(total.rejected)} rejected records written to {'stdout' if to_stdout else rejects}")
        raise typer.Exit(int(ExitCode.BAD_INPUT))


# -- reading ---------------------------------------------------------------------------------


@app.command("list")
def list_(
    ctx: typer.Context,
    text: Annotated[Optional[str], typer.Argument(help="Match in title or description.", show_default=False)] = None,
    status: Annotated[list[Status], typer.Option("--status", "-s", case_sensitive=False, help="Repeatable; overrides --open.")] = [],
    priority: Annotated[list[Priority], typer.Option("--priority", "-p", case_sensitive=False, help="Repeatable.")] = [],
    queue: Annotated[Optional[str], typer.Option("--queue", "-q")] = None,
    assignee: Annotated[Optional[str], typer.Option("--assignee", "-a")] = None,
    service: Annotated[Optional[str], typer.Option()] = None,
    ci: Annotated[Optional[str], typer.Option("--ci", help="Tickets on this CI (as enrichment named it).")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t")] = None,
    kind: Annotated[Optional[Kind], typer.Option(case_sensitive=False)] = None,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only open tickets, or every ticket.")] = True,
    suppressed: Annotated[bool, typer.Option("--suppressed", help="Only the tickets kept out of the queue by a silence or a rule.")] = False,
    sort: Annotated[Optional[str], typer.Option(help="Fields, '-' for descending: e.g. -updated,priority. Default: the queue order (priority, oldest first) for open tickets; newest first otherwise.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=10**9, help="0 for no limit.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per line.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header row.")] = False,
) -> None:
    """List tickets, the open queue by default.

    Example: sdesk list --priority P1 --priority P2 --queue ops

    Example: sdesk list --all --sort -updated --limit 10 --json

    Example: sdesk list --suppressed
    """
    if as_json + as_jsonl + as_csv > 1:
        raise BadInput("choose one of --json, --jsonl, --csv")
    filters = dict(
        statuses=[str(s) for s in status], open_only=open_only, queue=queue, priorities=[str(p) for p in priority],
        assignee=assignee, service=service, ci=ci, tag=tag, kind=str(kind) if kind else None, text=text,
        suppressed=suppressed,
    )
    store = store_of(ctx)
    tickets = store.tickets.list(**filters, sort=sort, limit=limit or None)
    if as_json or as_jsonl or as_csv:
        _capped(ctx, store, filters, limit, len(tickets))  # first: a pipe's reader may stop early
    if as_json:
        print_json(tickets)
    elif as_jsonl:
        from .domain.plain import json_text  # C1 and bidi controls as \u escapes: the same JSON, inert on a terminal

        sys.stdout.writelines(json_text(json.dumps(t, ensure_ascii=False)) + "\n" for t in tickets)
    elif as_csv:
        from .render import write_csv

        write_csv(tickets, sys.stdout)
    else:
        from .render import print_tickets

        print_tickets(tickets)
        _capped(ctx, store, filters, limit, len(tickets))


def _capped(ctx: typer.Context, store: Any, filters: dict[str, Any], limit: int, shown: int) -> None:
    """A capped list says so on stderr, in every format (stdout is the data): the default cap
    points at --limit; a limit the user gave is named as given."""
    if not limit or shown != limit:
        return
    from .domain.plain import plural

    total = store.tickets.count(**filters)
    if total > limit:
        many = f"{store.tickets.COUNT_CAP:,}+ tickets" if total > store.tickets.COUNT_CAP else plural(total, "ticket")
        source = ctx.get_parameter_source("limit")
        given = source is not None and source.name != "DEFAULT"
        note(f"{limit:,} of {many} shown " + (f"(--limit {limit}; 0 for all)" if given else "(use --limit)"))


@app.command()
def show(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42.")],
    as_json: Annotated[bool, typer.Option("--json", help="The ticket with its context and events.")] = False,
) -> None:
    """Show a ticket: its fields, its context (CI, blast radius, recent changes, KB articles,
    similar tickets) and the timeline of events.

    Example: sdesk show SD-42
    """
    store = store_of(ctx)
    ticket_id = lifecycle.parse_id(ticket)
    t = store.tickets.get_or_raise(ticket_id=ticket_id)
    t["watchers"] = store.outbox.watchers(ticket_id)  # who is copied on its public updates (sdesk watch)
    events = store.tickets.events(ticket_id=ticket_id)
    context, linked = store.tickets.context(ticket_id=ticket_id), store.kb.kb_linked(ticket_id)
    from .services.semantic import near

    alike = near(store, ticket_id)  # what the semantic index found like it (no model loaded)
    if as_json:
        print_json({**t, "context": context, "kb_linked": linked, "alike": alike, "events": events})
        return
    if alike:
        context = {**(context or {}), "alike": alike}
    from .render import print_ticket

    print_ticket(t, events, store.tickets.children(ticket_id=ticket_id), context, linked)


@app.command()
def why(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Explain a ticket's category, queue and priority: the rules that fired, the matrix cell
    and its inputs, the classifier's confidence, the correlation that linked it, and the
    people who changed them since.

    Example: sdesk why SD-42
    """
    explanation = store_of(ctx).triage.why(ticket_id=lifecycle.parse_id(ticket))
    if as_json:
        print_json(explanation)
    else:
        from .render import print_why

        print_why(explanation)


# -- working a ticket ------------------------------------------------------------------------


def _move(ctx: typer.Context, ticket: str, action: str, **kwargs: Any) -> None:
    settings = settings_of(ctx)
    t = settings.store().tickets.move(ticket_id=lifecycle.parse_id(ticket), action=action, actor=settings.actor, **kwargs)
    note(_state_line(t))


def _state_line(t: dict[str, Any]) -> str:
    """`SD-2 is assigned to bob`, `SD-2 is in_progress, assigned to bob`: one sentence."""
    if t["status"] == "assigned" and t["assignee"]:
        return f"{lifecycle.ref(t['id'])} is assigned to {t['assignee']}"
    return f"{lifecycle.ref(t['id'])} is {t['status']}" + (f", assigned to {t['assignee']}" if t["assignee"] else "")


TicketArg = Annotated[str, typer.Argument(help="42 or SD-42.", show_default=False)]


@app.command()
def assign(
    ctx: typer.Context,
    ticket: TicketArg,
    user: Annotated[Optional[str], typer.Argument(help="Who takes it.", show_default=False)] = None,
    auto: Annotated[bool, typer.Option("--auto", help="By the queue's strategy in oncall.yaml: oncall, round_robin or least_loaded.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Assign to someone neither a desk user nor in oncall.yaml.")] = False,
) -> None:
    """Assign a ticket to a user, or by its queue's strategy.

    The user must be a desk user (sdesk user add) or in an oncall.yaml team;
    --force assigns to anyone. A desk with neither takes any name.

    Example: sdesk assign SD-42 alice

    Example: sdesk assign SD-42 --auto
    """
    if auto:
        if user is not None:
            raise BadInput("assign: give a user or --auto, not both")
        settings = settings_of(ctx)
        done = settings.store().oncall.assign_auto(ticket_id=lifecycle.parse_id(ticket), config=settings.oncall_config(),
                                            actor=settings.actor)
        note(f"{lifecycle.ref(done['id'])} assigned to {done['assignee']}: {done['why']}")
        return
    if user is None or lifecycle.blank(user):
        raise BadInput("assign: give a user, or --auto")
    user = user.strip()
    if not force:
        settings = settings_of(ctx)
        user = settings.store().users.known_assignee(user, config=settings.oncall_config())
    _move(ctx, ticket, "assign", assignee=user)


# Lifecycle moves that take nothing but the ticket: action -> help (with its example).
PLAIN_MOVES = {
    "ack": "Acknowledge a ticket: you have seen it and own it (stops the acknowledge clock).\n\n"
           "Example: sdesk ack SD-42",
    "start": "Start work on a ticket (acknowledges it too if needed).\n\nExample: sdesk start SD-42",
    "wait": "Put a ticket on hold, waiting on the requester or a third party.\n\nExample: sdesk wait SD-42",
    "close": "Close a resolved ticket.\n\nExample: sdesk close SD-42",
    "reopen": "Reopen a resolved or closed ticket (counted in the reopen rate).\n\nExample: sdesk reopen SD-42",
}


def _plain_move(action: str) -> Any:
    def command(ctx: typer.Context, ticket: TicketArg) -> None:
        _move(ctx, ticket, action)

    return command


for _action, _help in PLAIN_MOVES.items():
    app.command(_action, help=_help)(_plain_move(_action))


@app.command()
def resolve(
    ctx: typer.Context,
    ticket: TicketArg,
    resolution: Annotated[str, typer.Option("--resolution", "-r", help="What fixed it.")],
    code: Annotated[Optional[str], typer.Option(help="A resolution code, e.g. fixed, workaround, duplicate.")] = None,
    kb: Annotated[bool, typer.Option("--kb", help="Also draft a KB article from the ticket, its context and the resolution, linked to it.")] = False,
) -> None:
    """Resolve a ticket with what fixed it.

    Example: sdesk resolve SD-42 -r "Rotated the expired TLS certificate" --code fixed

    Example: sdesk resolve SD-42 -r "Failed over to the replica" --kb
    """
    if not kb:
        _move(ctx, ticket, "resolve", resolution=resolution, code=code)
        return
    settings = settings_of(ctx)
    ticket_id = lifecycle.parse_id(ticket)
    article_id = settings.store().kb.resolve_with_draft(ticket_id, resolution=resolution, code=code, actor=settings.actor)
    note(f"{lifecycle.ref(ticket_id)} is resolved; drafted KB-{article_id} from it: review it with "
         f"sdesk kb edit KB-{article_id}")


@app.command()
def comment(ctx: typer.Context, ticket: TicketArg, text: Annotated[str, typer.Argument(help="The comment.")]) -> None:
    """Add a comment to a ticket's timeline.

    Example: sdesk comment SD-42 "Failover to the replica done, watching error rate"
    """
    settings = settings_of(ctx)
    ticket_id = lifecycle.parse_id(ticket)
    settings.store().tickets.comment(ticket_id=ticket_id, text=text, actor=settings.actor)
    note(f"{lifecycle.ref(ticket_id)}: comment added")  # on stderr, as ack and the other moves say theirs


@app.command()
def update(
    ctx: typer.Context,
    ticket: TicketArg,
    title: Annotated[Optional[str], typer.Option()] = None,
    description: Annotated[Optional[str], typer.Option("--description", "-d")] = None,
    kind: Annotated[Optional[Kind], typer.Option(case_sensitive=False)] = None,
    priority: Annotated[Optional[Priority], typer.Option("--priority", "-p", case_sensitive=False)] = None,
    impact: Annotated[Optional[int], typer.Option(help="1 high, 2 medium, 3 low.")] = None,
    urgency: Annotated[Optional[int], typer.Option(help="1 high, 2 medium, 3 low.")] = None,
    category: Annotated[Optional[str], typer.Option()] = None,
    service: Annotated[Optional[str], typer.Option()] = None,
    ci: Annotated[Optional[str], typer.Option()] = None,
    queue: Annotated[Optional[str], typer.Option("--queue", "-q")] = None,
    team: Annotated[Optional[str], typer.Option()] = None,
    requester: Annotated[Optional[str], typer.Option()] = None,
    label: Annotated[list[str], typer.Option("--label", "-l", help="KEY=VALUE sets, KEY= removes; repeatable.")] = [],
    tag: Annotated[list[str], typer.Option("--tag", "-t", help="Add a tag; -TAG removes it; repeatable.")] = [],
    as_json: Annotated[bool, typer.Option("--json", help="Print the updated ticket as JSON.")] = False,
) -> None:
    """Change a ticket's fields; the timeline records old and new values.

    Example: sdesk update SD-42 --priority P1 --queue sre --label region=eu-west-1
    """
    from pydantic import ValidationError

    from .domain.models import TicketUpdate, describe

    settings = settings_of(ctx)
    store = settings.store()
    ticket_id = lifecycle.parse_id(ticket)
    changes: dict[str, Any] = {
        k: v for k, v in {"title": title, "description": description, "kind": kind, "priority": priority,
                          "impact": impact, "urgency": urgency, "category": category, "service": service,
                          "ci": ci, "queue": queue, "team": team, "requester": requester}.items()
        if v is not None
    }
    # The edits, not the merged lists: the store merges them inside its write transaction, so a
    # concurrent update's labels and tags stay. A label given empty (KEY=) removes it; the last
    # mention of a tag (TAG or -TAG) says whether it stays.
    labels = parse_labels(label)
    tag_edits: dict[str, bool] = {}
    for t in tag:
        name = t[1:] if t.startswith("-") else t
        tag_edits.pop(name, None)
        tag_edits[name] = not t.startswith("-")
    if not changes and not label and not tag:
        raise BadInput("nothing to update: give at least one field option")
    try:
        valid = TicketUpdate.model_validate(
            {**changes, "labels": labels, "tags": [t for t, add in tag_edits.items() if add]}
        ).model_dump(mode="json", exclude_unset=True)
    except ValidationError as e:
        raise BadInput(describe(e)) from None
    labels, add_tags = valid.pop("labels"), valid.pop("tags")
    ticket, changed = store.tickets.update(
        ticket_id=ticket_id, changes=valid, actor=settings.actor,
        set_labels={k: v for k, v in labels.items() if v}, remove_labels={k for k, v in labels.items() if not v},
        add_tags=add_tags, remove_tags={t for t, add in tag_edits.items() if not add})
    note(f"{lifecycle.ref(ticket_id)} updated: {', '.join(changed)}" if changed
         else f"{lifecycle.ref(ticket_id)}: nothing changed (the values given are the current ones)")
    if as_json:
        print_json(ticket)


@app.command()
def link(
    ctx: typer.Context,
    ticket: TicketArg,
    parent: Annotated[str, typer.Option("--parent", help="The parent ticket (an incident's problem, a duplicate's original).")],
) -> None:
    """Link a ticket under a parent ticket.

    Example: sdesk link SD-43 --parent SD-42
    """
    settings = settings_of(ctx)
    ticket_id, parent_id = lifecycle.parse_id(ticket), lifecycle.parse_id(parent)
    settings.store().tickets.link(ticket_id=ticket_id, parent_id=parent_id, actor=settings.actor)
    note(f"{lifecycle.ref(ticket_id)} is linked under {lifecycle.ref(parent_id)}")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    token: Annotated[Optional[str], typer.Option(envvar="SDESK_SERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN'.", show_default=False)] = None,
    max_body: Annotated[int, typer.Option(min=1, help="Largest request body, in bytes (413 beyond).")] = 1 << 20,
    rejects: Annotated[Optional[Path], typer.Option(help="Folder for the raw bodies of rejected requests (default: beside the database file; for a PostgreSQL desk, in sdesk's data folder).", show_default=False)] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Listen on an address other than loopback with no token at all (refused otherwise).")] = False,
    public_url: Annotated[Optional[str], typer.Option("--public-url", envvar="SDESK_PUBLIC_URL", help="The portal's address as people reach it (behind a proxy: https://desk.example.com); sign-in links point there. Default: where serve listens.", show_default=False)] = None,
) -> None:
    """Receive webhooks over HTTP: Alertmanager, Grafana, PagerDuty Events v2, tickets and email;
    and serve the self-service portal at /.

    POST /alertmanager, /grafana, /tickets (JSON tickets), /email (a raw message), and
    /v2/enqueue, /v2/change/enqueue (answered like PagerDuty); GET /healthz; the portal's pages.
    Needs the serve extra: pip install 'sdesk\\[serve]'.

    Example: SDESK_SERVE_TOKEN=s3cret sdesk serve --port 9095
    """
    # (The docstring's backslash keeps "[serve]" in the help: help is rich markup, where it would vanish.)
    try:
        from . import serve as server
    except ImportError as e:
        raise SdeskError(f"sdesk serve needs the serve extra: pip install 'sdesk[serve]' ({e.name} is missing)") from None
    settings = settings_of(ctx)
    db = settings.store().path
    server.check_exposure(host, token=token, any_tokens=settings.store().users.any_tokens(), insecure=insecure)
    server.check_public_url(public_url)
    settings.store().check_claim(settings.actor)  # requests without a token act as this actor: the claim must hold
    settings.close()
    severity, options = settings.intake_options()
    server.run(settings, host=host, port=port, actor=settings.actor, token=token, max_body=max_body,
               rejects=rejects or _default_rejects(db), severity=severity, options=options,
               runbooks=settings.runbooks()[0], public_url=public_url)


def _default_rejects(db: Path | str) -> Path:
    """Where serve keeps rejected bodies unless --rejects: `rejects` beside the database file; a
    desk on a server (a postgresql:// URL) has no "beside": sdesk's data folder, where the default
    desk file would be."""
    if isinstance(db, Path):
        return db.parent / "rejects"
    from .store import default_db_path

    return default_db_path().parent / "rejects"


# -- demo --------------------------------------------------------------------------


@app.command()
def demo(ctx: typer.Context) -> None:
    """Walk a realistic desk from examples/ through intake and the lifecycle, then print the queue.

    Uses a fresh temporary database unless --db is given: a new or empty file, or an empty
    PostgreSQL database (--db postgresql:///demo after createdb demo).

    Example: sdesk demo
    """
    from .demo import run_demo

    # Only an explicit --db: a SDESK_DB in the environment is the user's real desk.
    source = ctx.find_root().get_parameter_source("db")
    run_demo(settings_of(ctx).db_path() if source is not None and source.name == "COMMANDLINE" else None)


def run() -> None:
    """Console entry point: also quiet when the reader of stdout goes away (`sdesk list | head`)."""
    try:
        app()
    except BrokenPipeError:
        sys.stderr.close()
        os._exit(int(ExitCode.ERROR))
    finally:
        # The interpreter's last collections at exit walk every object the imports made, none of
        # them garbage by now: frozen, they are skipped (30 ms of a command on a server desk,
        # whose driver brings 190 modules).
        import gc

        gc.freeze()
