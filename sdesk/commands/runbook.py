"""`sdesk runbook ...`: runbooks from the desk config (runbooks/*.yaml), their plans and dry
runs, real runs with approvals, the runs on record, and the kill switch."""

import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import BadInput, ExitCode
from .common import Group, note, print_json, settings_of

app = typer.Typer(cls=Group, name="runbook", no_args_is_help=True,
                  help="Runbooks: plans, dry runs, approved runs with locks and throttles, and their audit.\n\n"
                       "Example: sdesk runbook list\n\nExample: sdesk runbook run clean-tmp --ticket SD-42 --dry-run")

RunArg = Annotated[int, typer.Argument(help="The run number (sdesk runbook runs).", min=1, max=2 ** 63 - 1,
                                       show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", help="Every runbook: the global kill switch.")]


def _folder(ctx: typer.Context):
    return settings_of(ctx).runbooks_folder()


@app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The runbooks in the desk config (runbooks/*.yaml), and which are safe for automation or disabled.

    Example: sdesk --config examples/desk runbook list
    """
    from ..domain.runbooks import summary
    from ..validated import load_runbooks as load_folder

    runbooks, errors = load_folder(_folder(ctx))
    for error in errors:
        note(f"error: {error}")
    disabled = settings_of(ctx).store().runbooks.runbook_switches()
    found = [summary(rb, disabled) for rb in runbooks.values()]
    if as_json:
        print_json(found)
    else:
        from ..render import table

        if found or not errors:  # a folder of broken files has runbooks: their errors are above
            table(["runbook", "steps", "automation", "status", "description"],
                  [[r["name"], len(r["steps"]), "safe" if r["safe_for_automation"] else "manual",
                    "disabled" if r["disabled"] else "enabled", r["description"]] for r in found],
                  empty="no runbooks (put them in runbooks/ of the desk config)")
        if "*" in disabled:
            note(f"all runbooks are disabled (by {disabled['*']['disabled_by']}): sdesk runbook enable --all")
    if errors:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The runbook's name.")],
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A runbook's parameters, secrets (by reference), steps and rollback.

    Example: sdesk --config examples/desk runbook show clean-tmp
    """
    from ..domain.runbooks import summary
    from ..validated import find_runbook as find

    found = summary(find(_folder(ctx), name), settings_of(ctx).store().runbooks.runbook_switches())
    if as_json:
        print_json(found)
        return
    from ..render import console, print_runbook

    print_runbook(console(), found)


@app.command("validate")
def validate(ctx: typer.Context, name: Annotated[Optional[str], typer.Argument(help="One runbook (default: all).")] = None,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check runbooks before they run: the schema, parameters used but not declared or placed where
    a program could run them as code or take them as an option, and commands not found on PATH.
    Exits 2 when any is wrong (with the file, the line and a rewrite).

    Example: sdesk --config examples/desk runbook validate
    """
    from ..domain.runbooks import missing_commands
    from ..validated import find_runbook as find
    from ..validated import load_runbooks as load_folder

    if name is not None:
        runbooks, errors = {name: find(_folder(ctx), name)}, []
    else:
        runbooks, errors = load_folder(_folder(ctx))
    problems = list(errors)
    warnings = []
    for rb in runbooks.values():
        problems += [f"{rb.path}: runbook {rb.name}: command not found: {m}" for m in missing_commands(rb)]
        # data_args is the author's word that a program takes data: shown, since sdesk does not check it.
        warnings += [f"{rb.path}: runbook {rb.name}: step {s.id}: data_args: true: the author, not sdesk, states that "
                     f"{(s.argv or ('?',))[0]} takes its arguments as data" for s in (*rb.steps, *rb.on_failure)
                     if s.data_args]
    if as_json:
        print_json({"ok": not problems, "runbooks": sorted(runbooks), "problems": problems, "warnings": warnings})
    else:
        for warning in warnings:
            note(f"warning: {warning}")
        for problem in problems:
            note(f"error: {problem}")
        if not problems:
            from ..domain.plain import plural
            note(f"{plural(len(runbooks), 'runbook')} OK: {', '.join(sorted(runbooks)) or 'none'}")
    if problems:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


def _params(pairs: list[str]) -> dict[str, str]:
    given = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--param {pair!r}: expected NAME=VALUE")
        given[key.strip()] = value
    return given


def _echo(message: str) -> None:
    from ..domain.plain import controls  # a step's output is data: its escape sequences are shown, not run

    print(controls(message), file=sys.stderr, flush=True)


def _confirm_step(text: str) -> bool:
    from ..domain.plain import controls  # the step's text may hold a ticket's title

    return typer.confirm(f"manual step: {controls(text)}\nDone?", default=False, err=True)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


@app.command("run")
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The runbook's name.")],
    ticket: Annotated[str, typer.Option("--ticket", "-t", help="42 or SD-42: the ticket it works on.", show_default=False)],
    param: Annotated[list[str], typer.Option("--param", "-p", help="NAME=VALUE, over what the ticket gives; repeatable.")] = [],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and run only the steps' dry_run variants.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run without asking (the plan is still printed).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON at the end.")] = False,
) -> None:
    """Run a runbook on a ticket: resolve its parameters, show the plan, ask (unless --yes), then
    run each step live. A step that needs approval stops the run until another user approves it.
    Two runs never overlap on one CI, and each runbook has a throttle per CI.

    Example: sdesk runbook run clean-tmp --ticket SD-42 --dry-run

    Example: sdesk runbook run clean-tmp --ticket SD-42 --param days=3 --yes
    """
    from ..domain.lifecycle import parse_id
    from ..render import console, print_plan
    from ..services.runner import prepare, start
    from ..validated import find_runbook as find

    settings = settings_of(ctx)
    store = settings.store()
    prepared = prepare(store, find(_folder(ctx), name), parse_id(ticket), _params(param))
    # stdout carries the plan of a dry run, unless it carries JSON
    print_plan(console(stderr=as_json or not dry_run), prepared.plan, prepared.ticket, dry_run)
    if not dry_run and not yes:
        if not _interactive():
            raise BadInput("a real run asks first: add --yes to run without a terminal (or --dry-run to try it)")
        if not typer.confirm("Run it?", default=False, err=True):
            note("not run")
            raise typer.Exit(int(ExitCode.ERROR))
    try:
        result = start(store, prepared, actor=settings.actor, dry_run=dry_run, echo=_echo,
                       confirm=_confirm_step if _interactive() else None)
    except KeyboardInterrupt:
        note("interrupted: the run is recorded as interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    _finish(result, as_json)


def _finish(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        from ..domain.plain import controls

        print(controls(f"run {result['id']}: {result['status']}" + (f" ({result['reason']})" if result.get("reason") else "")))
    if result["status"] == "failed":
        raise typer.Exit(int(ExitCode.ERROR))
    if result["status"] == "interrupted":
        raise typer.Exit(int(ExitCode.INTERRUPTED))


@app.command("approve")
def approve(
    ctx: typer.Context,
    run_id: RunArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve without asking (the plan is still printed).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve the step a run waits on (someone other than who started it), or confirm its
    manual step; the run then goes on in this terminal. Shows the plan first, and asks unless --yes.

    Example: sdesk runbook approve 7   (run by an approver other than who started it)
    """
    from ..render import console, print_plan
    from ..services.runner import resume
    from ..validated import find_runbook as find

    settings = settings_of(ctx)
    store = settings.store()
    waiting = store.runbooks.run_get(run_id)
    runbook = find(_folder(ctx), waiting["runbook"])
    if waiting["status"] == "waiting":
        print_plan(console(stderr=True), waiting["plan"], store.tickets.get_or_raise(ticket_id=waiting["ticket_id"]), False)
        note(f"run {run_id} waits for {waiting['waiting_for']} at step {waiting['step'] + 1}")
        if not yes and _interactive() and not typer.confirm("Approve and go on?", default=False, err=True):
            note("not approved")
            raise typer.Exit(int(ExitCode.ERROR))
    try:
        result = resume(store, runbook, run_id, actor=settings.actor, echo=_echo,
                        confirm=_confirm_step if _interactive() else None)
    except KeyboardInterrupt:
        note("interrupted: the run is recorded as interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    _finish(result, as_json)


@app.command("reject")
def reject(ctx: typer.Context, run_id: RunArg,
           reason: Annotated[Optional[str], typer.Option("--reason", "-r", help="Why, for the record.")] = None) -> None:
    """Reject a run that waits for approval (or is queued): it ends, and its CI lock is released.

    Example: sdesk runbook reject 7 --reason "not during the billing run"
    """
    settings = settings_of(ctx)
    settings.store().runbooks.run_reject(run_id, reason=reason, actor=settings.actor)
    note(f"run {run_id}: rejected")


@app.command("runs")
def runs(
    ctx: typer.Context,
    ticket: Annotated[Optional[str], typer.Option("--ticket", "-t", help="42 or SD-42.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10**9)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Runbook runs on record, newest first: who ran what on which ticket, and how it ended.

    Example: sdesk runbook runs --ticket SD-42
    """
    from ..domain.lifecycle import parse_id, ref

    found = settings_of(ctx).store().runbooks.runs(ticket_id=parse_id(ticket) if ticket else None, limit=limit)
    if as_json:
        print_json(found)
        return
    from ..render import local, table

    table(["run", "runbook", "ticket", "status", "by", "started", "note"],
          [[r["id"], r["runbook"] + (" (dry run)" if r["dry_run"] else ""), ref(r["ticket_id"]), r["status"],
            r["actor"] + (" (automation)" if r["automated"] else ""), local(r["started_at"] or r["created_at"]),
            "; ".join(filter(None, [r["reason"] or (f"waiting for {r['waiting_for']}" if r["waiting_for"] else ""),
                                    f"misfire: {r['misfire']}" if r["misfire"] else ""]))] for r in found],
          empty="no runs")


@app.command("log")
def log(ctx: typer.Context, run_id: RunArg, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One run in full: its plan, each step's exit code, duration and output (redacted).

    Example: sdesk runbook log 7
    """
    run = settings_of(ctx).store().runbooks.run_get(run_id)
    if as_json:
        print_json(run)
        return
    from ..render import console, print_run

    print_run(console(), run)


def _switch(ctx: typer.Context, name: Optional[str], every: bool, disabled: bool, reason: Optional[str]) -> None:
    if (name is None) == (not every):
        raise BadInput("name one runbook, or --all")
    settings = settings_of(ctx)
    target = "*" if every else name
    if disabled and not every:
        from ..validated import find_runbook as find

        find(_folder(ctx), name)
    changed = settings.store().runbooks.runbook_switch(target, disabled=disabled, reason=reason, actor=settings.actor)
    what = "all runbooks" if every else f"runbook {name}"
    state = "disabled" if disabled else "enabled"
    note(f"{what}: {state}" if changed else f"{what}: already {state}")


@app.command("disable")
def disable(ctx: typer.Context, name: Annotated[Optional[str], typer.Argument(help="The runbook's name.")] = None,
            every: AllOption = False,
            reason: Annotated[Optional[str], typer.Option("--reason", "-r", help="Why, for the record.")] = None) -> None:
    """Stop a runbook (or, with --all, every runbook: the kill switch) from running. Dry runs still work.

    Example: sdesk runbook disable --all --reason "automation loop on db hosts"
    """
    _switch(ctx, name, every, True, reason)


@app.command("enable")
def enable(ctx: typer.Context, name: Annotated[Optional[str], typer.Argument(help="The runbook's name.")] = None,
           every: AllOption = False) -> None:
    """Allow a disabled runbook (or, with --all, lift the kill switch) again.

    Example: sdesk runbook enable --all
    """
    _switch(ctx, name, every, False, None)
