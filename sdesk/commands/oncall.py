"""`sdesk oncall ...`: who is on call now, the calendar of shifts, and overrides."""

from typing import Annotated, Optional

import typer

from ..errors import BadInput
from .common import Group, note, print_json, settings_of

app = typer.Typer(cls=Group, name="oncall", no_args_is_help=True,
                  help="On call: who holds each team's pager now, the calendar of shifts, overrides (oncall.yaml).\n\n"
                       "Example: sdesk oncall now\n\nExample: sdesk oncall show --team payments")


def _schedules(config, team: Optional[str], schedule: Optional[str]) -> list:
    if schedule is not None:
        if schedule not in config.schedules:
            raise BadInput(f"--schedule: unknown schedule {schedule!r} (schedules: {', '.join(config.schedules) or 'none'})")
        return [config.schedules[schedule]]
    if team is not None:
        found = config.teams.get(team)
        if found is None:
            raise BadInput(f"--team: unknown team {team!r} (teams: {', '.join(config.teams) or 'none'})")
        if found.schedule is None:
            raise BadInput(f"team {team} has no on-call schedule")
        return [config.schedules[found.schedule]]
    if not config.schedules:
        raise BadInput("no on-call schedules: add oncall.yaml to the desk config (--config DIR or SDESK_CONFIG)")
    return list(config.schedules.values())


def _when(text: Optional[str], what: str):
    from ..domain import clock

    return clock.parse(text, what=what) if text else clock.now()


@app.command("now")
def now(
    ctx: typer.Context,
    team: Annotated[Optional[str], typer.Option("--team", "-t", help="Only this team's schedule.")] = None,
    at: Annotated[Optional[str], typer.Option("--at", help="Another time (ISO 8601) instead of now.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who is on call for each schedule (or a team's), and until when.

    Example: sdesk oncall now --team platform
    """
    settings = settings_of(ctx)
    config = settings.oncall_config()
    rows = settings.store().oncall.on_call_now(config, schedules=_schedules(config, team, None), when=_when(at, "--at"))
    if as_json:
        print_json(rows)
        return
    from ..render import local, table

    table(["schedule", "teams", "on call", "layer", "until"],
          [[r["schedule"], ", ".join(r["teams"]), r["user"] or "nobody", r["from"] or "", local(r["until"])] for r in rows])


@app.command("show")
def show(
    ctx: typer.Context,
    team: Annotated[Optional[str], typer.Option("--team", "-t")] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", "-s")] = None,
    since: Annotated[Optional[str], typer.Option("--from", help="ISO 8601 (default: now).", show_default=False)] = None,
    until: Annotated[Optional[str], typer.Option("--to", help="ISO 8601 (default: a week after --from).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The shifts of each schedule (or one) over a period: who, from when to when, by which layer.

    Example: sdesk oncall show --team payments --from 2026-11-30 --to 2026-12-07
    """
    from datetime import timedelta

    from ..domain import clock
    from ..domain.routing import shifts

    settings = settings_of(ctx)
    config = settings.oncall_config()
    start = _when(since, "--from")
    end = clock.parse(until, what="--to") if until else start + timedelta(days=7)
    if end <= start:
        raise BadInput("--to must be after --from")
    if end - start > timedelta(days=366):
        raise BadInput("show at most a year at a time")
    out = []
    for s in _schedules(config, team, schedule):
        overrides = settings.store().oncall.overrides(schedule=s.name, since=start, until=end)
        out.append({"schedule": s.name, "timezone": str(s.zone), "shifts": [
            {"from": clock.iso(x.start), "to": clock.iso(x.end), "user": x.user, "layer": x.source or None}
            for x in shifts(s, overrides, start, end)]})
    if as_json:
        print_json(out)
        return
    from ..render import print_shifts

    # The table shows this machine's local time (--json: the schedule's zone and UTC): say which.
    here = start.astimezone()
    name = here.tzname() or ""
    zone = name if name and name[0] not in "+-" else f"UTC{here:%z}"
    for s in out:
        print_shifts(f"{s['schedule']} (times in {zone})", s["shifts"])


@app.command("override")
def override(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="Who covers.", show_default=False)],
    since: Annotated[str, typer.Option("--from", help="ISO 8601.", show_default=False)],
    until: Annotated[str, typer.Option("--to", help="ISO 8601.", show_default=False)],
    schedule: Annotated[Optional[str], typer.Option("--schedule", "-s")] = None,
    team: Annotated[Optional[str], typer.Option("--team", "-t", help="Its team's schedule.")] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", "-r")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Put someone on call for a schedule for a while, over its rotation; overlaps are refused.

    Example: sdesk oncall override --team platform --user erin --from 2026-12-24T18:00Z --to 2026-12-27T09:00Z -r "covering alice"
    """
    from ..domain import clock
    from ..domain.routing import Override

    if (schedule is None) == (team is None):
        raise BadInput("give --schedule or --team")
    settings = settings_of(ctx)
    config = settings.oncall_config()
    [target] = _schedules(config, team, schedule)
    data = settings.store().oncall.override_add(
        Override(target.name, user, clock.parse(since, what="--from"), clock.parse(until, what="--to")), config=config,
        reason=reason, actor=settings.actor)
    if as_json:
        print_json(data)
    else:
        note(f"{user} is on call for {target.name} from {data['starts_at']} to {data['ends_at']}")
