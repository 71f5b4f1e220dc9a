"""`sdesk change ...` and `sdesk problem ...`: change records that enrichment reads ("deployed
20 minutes before the alert"), and problem records that gather incidents with a common cause."""

from enum import Enum
from typing import Annotated, Optional

import typer

from ..domain import clock
from ..errors import BadInput
from .common import Group, note, print_json, settings_of, store_of

change_app = typer.Typer(cls=Group, name="change", no_args_is_help=True, help="Change records: deploys, config pushes, maintenance.\n\n"
                          "Example: sdesk change new --ci checkout-api --title \"Deploy checkout-api v2.14\"\n\n"
                          "Example: sdesk change list")
problem_app = typer.Typer(cls=Group, name="problem", no_args_is_help=True, help="Problems: the common cause behind several incidents.\n\n"
                           "Example: sdesk problem new --from 12,13,14 --title \"Billing replica falls behind\"\n\n"
                           "Example: sdesk problem list")


class ChangeStatus(str, Enum):
    planned = "planned"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    rolled_back = "rolled_back"
    cancelled = "cancelled"


class Risk(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"


def _change_id(text: str) -> int:
    from ..domain.lifecycle import parse_ref

    return parse_ref(text, "CH-", "a change id")


ChangeArg = Annotated[str, typer.Argument(help="CH-7 or 7.", show_default=False)]


@change_app.command("new")
def change_new(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title", help="What changes.", show_default=False)],
    ci: Annotated[Optional[str], typer.Option("--ci", help="The CI it changes (name or alias).")] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="ISO 8601 (default: now).")] = None,
    end: Annotated[Optional[str], typer.Option("--end", help="ISO 8601.")] = None,
    risk: Annotated[Optional[Risk], typer.Option("--risk")] = None,
    status: Annotated[ChangeStatus, typer.Option("--status")] = ChangeStatus.completed,
    force: Annotated[bool, typer.Option("--force", help="Record it even on a CI frozen by its SLO.")] = False,
) -> None:
    """Record a change; prints its id. On a CI whose SLO budget is spent it warns, or refuses.

    Example: sdesk change new --ci checkout-api --title "Deploy checkout-api v2.14" --risk medium

    Example: sdesk change new --ci payments-db --title "Postgres 16 upgrade" --start 2026-12-01T22:00Z --end 2026-12-01T23:30Z --status planned
    """
    from ..domain.lifecycle import blank

    title = title.strip()
    if blank(title):
        raise BadInput("--title: must not be empty")
    begins = clock.iso(clock.parse(start, what="--start")) if start else clock.now_iso()
    ends = clock.iso(clock.parse(end, what="--end")) if end else None
    if ends and ends < begins:
        raise BadInput("--end: before --start")
    settings = settings_of(ctx)
    if ci:
        _check_freeze(settings, ci, force)
    change_id = settings.store().cmdb.change_add(title=title, ci=ci, start=begins, end=ends, risk=risk.value if risk else None,
                                            status=status.value, actor=settings.actor)
    print(f"CH-{change_id}")


def _check_freeze(settings, ci: str, force: bool) -> None:
    """A CI whose SLO's error budget is spent (or burning at twice its pace) is frozen: by its
    `freeze` setting, a change on it is refused (unless --force) or warned about."""
    from ..domain.sla import budget
    from ..errors import Conflict

    config = settings.sla_config()
    if not config.slos:
        return
    store = settings.store()
    found = store.cmdb.ci_find([ci.strip().lower()])
    slo = config.slos.get(found["name"] if found else ci.strip())
    if slo is None or slo.freeze == "off":
        return
    now = clock.now()
    state = budget(slo, store.sla.slo_incidents(slo, now=now), now)
    if state["status"] != "frozen":
        return
    why = (f"{slo.ci} is frozen: {state['used_share']:.0%} of its error budget spent, "
           f"burning at {state['burn']['6h']:g}x its pace over 6h (sdesk slo)")
    if slo.freeze == "refuse" and not force:
        raise Conflict(f"{why}; give --force to record the change anyway")
    note(f"warning: {why}")


@change_app.command("list")
def change_list(
    ctx: typer.Context,
    ci: Annotated[Optional[str], typer.Option("--ci", help="Only on this CI.")] = None,
    since: Annotated[Optional[str], typer.Option(help="ISO 8601 time, or an age like 24h, 7d.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=10**9, help="0 for no limit.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False,
) -> None:
    """List changes, newest first.

    Example: sdesk change list --since 24h
    """
    store = store_of(ctx)
    changes = store.cmdb.change_list(cis=[store.cmdb.ci_name(ci)] if ci else None,
                                since=clock.iso(clock.back(since, "--since")) if since else None, limit=limit or None)
    if as_json:
        print_json(changes)
        return
    from ..render import local, table

    table(["id", "start", "ci", "status", "risk", "title"],
          [[f"CH-{c['id']}", local(c["happened_at"]), c["ci"] or c["service"] or "", c["status"], c["risk"] or "",
            c["summary"]] for c in changes], empty="no changes")


@change_app.command("show")
def change_show(ctx: typer.Context, change: ChangeArg,
                as_json: Annotated[bool, typer.Option("--json", help="The change as JSON.")] = False) -> None:
    """Show a change.

    Example: sdesk change show CH-7
    """
    c = store_of(ctx).cmdb.change_get(_change_id(change))
    if as_json:
        print_json(c)
        return
    from ..render import local, table

    table(["field", "value"], [[k, local(v) if k in ("happened_at", "ends_at", "received_at") else v]
                               for k, v in c.items() if v not in (None, "", {})])


@change_app.command("status")
def change_status(ctx: typer.Context, change: ChangeArg, status: Annotated[ChangeStatus, typer.Argument()]) -> None:
    """Move a change to a new status: planned -> in_progress -> completed, failed or
    rolled_back; planned -> cancelled; completed or failed -> rolled_back.

    Example: sdesk change status CH-7 rolled_back
    """
    settings = settings_of(ctx)
    c = settings.store().cmdb.change_status(_change_id(change), status=status.value, actor=settings.actor)
    note(f"CH-{c['id']} is {c['status']}")


# -- problems ------------------------------------------------------------------------------------


def _ids(text: str) -> list[int]:
    from ..domain.lifecycle import parse_id

    ids = [parse_id(part) for part in text.replace(" ", ",").split(",") if part.strip()]
    if not ids:
        raise BadInput("--from: give the incidents, e.g. --from 12,13,14")
    return list(dict.fromkeys(ids))


@problem_app.command("new")
def problem_new(
    ctx: typer.Context,
    from_: Annotated[str, typer.Option("--from", help="Incidents it explains: 12,13,14.", show_default=False)],
    title: Annotated[Optional[str], typer.Option("--title", help="Default: the first incident's title.")] = None,
    root_cause: Annotated[Optional[str], typer.Option("--root-cause")] = None,
    workaround: Annotated[Optional[str], typer.Option("--workaround")] = None,
    known_error: Annotated[bool, typer.Option("--known-error", help="The cause is known and a workaround exists.")] = False,
) -> None:
    """Open a problem for incidents that share a cause, and link them to it; prints its id.

    Example: sdesk problem new --from 12,13,14 --title "Billing replica falls behind under batch load"
    """
    settings = settings_of(ctx)
    problem_id = settings.store().problems.problem_new(_ids(from_), title=title, root_cause=root_cause, workaround=workaround,
                                              known_error=known_error, actor=settings.actor)
    from ..domain.lifecycle import ref

    print(ref(problem_id))


@problem_app.command("update")
def problem_update(
    ctx: typer.Context,
    problem: Annotated[str, typer.Argument(help="The problem ticket: 42 or SD-42.", show_default=False)],
    link: Annotated[Optional[str], typer.Option("--link", help="More incidents: 15,16.")] = None,
    root_cause: Annotated[Optional[str], typer.Option("--root-cause")] = None,
    workaround: Annotated[Optional[str], typer.Option("--workaround")] = None,
    known_error: Annotated[Optional[bool], typer.Option("--known-error/--not-known-error")] = None,
) -> None:
    """Record the root cause or workaround, flag a known error, link more incidents.

    Example: sdesk problem update SD-50 --root-cause "Nightly batch saturates replica IO" --known-error
    """
    from ..domain.lifecycle import parse_id

    settings = settings_of(ctx)
    settings.store().problems.problem_update(parse_id(problem), link=_ids(link) if link else [], root_cause=root_cause,
                                    workaround=workaround, known_error=known_error, actor=settings.actor)
    note("problem updated")


@problem_app.command("resolve")
def problem_resolve(
    ctx: typer.Context,
    problem: Annotated[str, typer.Argument(help="The problem ticket.", show_default=False)],
    fix: Annotated[str, typer.Option("--fix", help="What removed the cause.", show_default=False)],
    note_linked: Annotated[bool, typer.Option("--note-linked/--no-note-linked", help="Comment the fix on every linked incident.")] = True,
) -> None:
    """Resolve a problem with its fix (and note the fix on its incidents).

    Example: sdesk problem resolve SD-50 --fix "Moved the batch to the analytics replica"
    """
    from ..domain.lifecycle import parse_id

    settings = settings_of(ctx)
    noted = settings.store().problems.problem_resolve(parse_id(problem), fix=fix, note_linked=note_linked, actor=settings.actor)
    from ..domain.plain import plural
    note(f"problem resolved; fix noted on {plural(noted, 'incident')}")


@problem_app.command("show")
def problem_show(ctx: typer.Context, problem: Annotated[str, typer.Argument(help="The problem ticket.", show_default=False)],
                 as_json: Annotated[bool, typer.Option("--json", help="The problem and its incidents.")] = False) -> None:
    """Show a problem: root cause, workaround, and the incidents linked to it with their impact.

    Example: sdesk problem show SD-50
    """
    from ..domain.lifecycle import parse_id

    store = store_of(ctx)
    p = store.problems.problem_get(parse_id(problem))
    if as_json:
        print_json(p)
        return
    from ..render import print_problem

    print_problem(p)


@problem_app.command("list")
def problem_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False) -> None:
    """List problems, open ones first.

    Example: sdesk problem list
    """
    problems = store_of(ctx).problems.problem_list()
    if as_json:
        print_json(problems)
        return
    from ..domain.lifecycle import ref
    from ..render import table

    table(["id", "status", "known error", "incidents", "title"],
          [[ref(p["id"]), p["status"], "yes" if p["known_error"] else "", p["incidents"], p["title"]] for p in problems],
          empty="no problems")


@problem_app.command("suggest")
def problem_suggest(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="How far back: 30d, 12h, 2w, or a time (ISO 8601).")] = "30d",
    min_size: Annotated[int, typer.Option("--min-size", min=2, max=1000, help="Incidents a suggestion needs.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array, most costly first.")] = False,
) -> None:
    """Suggest problems: recent incidents alike in meaning and on the same CI (or service), not
    yet under a problem, grouped, most costly first (the hours they were open). Each comes with
    the command that opens it. Needs the `semantic` extra and the index (`sdesk index`).

    Example: sdesk problem suggest --since 14d
    """
    from ..domain.lifecycle import ref
    from ..services.semantic import suggest_problems

    found = suggest_problems(store_of(ctx), since=clock.back(since, "--since"), min_size=min_size)
    if as_json:
        print_json(found)
        return
    if not found:
        note(f"no suggestion: no {min_size} incidents since {since} are alike (sdesk index keeps the index current)")
        return
    from ..render import print_suggestions

    print_suggestions(found, ref)
