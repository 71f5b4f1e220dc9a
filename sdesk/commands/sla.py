"""`sdesk sla`: every open ticket's SLA clocks, computed from its history."""

from typing import Annotated, Optional

import typer

from ..errors import BadInput
from .common import print_json, settings_of

STATES = ("breached", "at_risk", "ok")

app = typer.Typer()


@app.command("sla")
def sla(
    ctx: typer.Context,
    at_risk: Annotated[bool, typer.Option("--at-risk", help="Only tickets at risk or breached.")] = False,
    breached: Annotated[bool, typer.Option("--breached", help="Only breached tickets.")] = False,
    at: Annotated[Optional[str], typer.Option("--at", help="Another time (ISO 8601) instead of now.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=10**9, help="0 for no limit.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open tickets with their SLA targets (sla.yaml): time used, time left or overdue, most urgent first.

    Example: sdesk sla --at-risk

    Example: sdesk sla --breached --json
    """
    from ..domain import clock
    from ..domain.sla import assess, pauses, row

    settings = settings_of(ctx)
    config = settings.sla_config()
    if not config.policies:
        raise BadInput("no SLA policies: add sla.yaml to the desk config (--config DIR or SDESK_CONFIG)")
    now = clock.parse(at, what="--at") if at else clock.now()
    wanted = {"breached"} if breached else {"breached", "at_risk"} if at_risk else set(STATES)
    found = []  # (time left, ticket, policy, targets): kept light, details only for what is shown
    for t, policy, targets in assess(config, settings.store().sla.sla_tickets(pauses(config)), now):
        running = [(x.left, name) for name, x in targets.items() if not x.done]
        if running:
            left, name = min(running)
            if targets[name].state in wanted:
                found.append((left, t["id"], name, t, policy, targets))
    found.sort(key=lambda f: (f[0], f[1]))
    if limit:
        found = found[:limit]
    details = settings.store().sla.sla_details([f[1] for f in found])
    rows = [row({**t, **details[ticket_id]}, policy, targets) for _, ticket_id, _, t, policy, targets in found]
    if as_json:
        print_json(rows)
        return
    from ..render import print_sla

    print_sla(rows)


slo_app = typer.Typer()


@slo_app.command("slo")
def slo(
    ctx: typer.Context,
    at: Annotated[Optional[str], typer.Option("--at", help="Another time (ISO 8601) instead of now.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Each SLO's error budget (sla.yaml `slos`): spent by root incidents on its CI, burn rates
    over 1h, 6h and 3d as a share of budget pace, and whether changes are frozen.

    Example: sdesk slo --json
    """
    from ..domain import clock
    from ..domain.sla import budget

    settings = settings_of(ctx)
    config = settings.sla_config()
    if not config.slos:
        raise BadInput("no SLOs: add `slos` to sla.yaml in the desk config (--config DIR or SDESK_CONFIG)")
    now = clock.parse(at, what="--at") if at else clock.now()
    store = settings.store()
    rows = [budget(s, store.sla.slo_incidents(s, now=now), now) for s in config.slos.values()]
    if as_json:
        print_json(rows)
        return
    from ..render import table

    table(["ci", "slo", "window", "spent", "1h", "6h", "3d", "status"],
          [[r["ci"], f"{r['objective']:g}%", f"{r['window_days']:g}d", f"{r['used_share']:.0%}",
            *(f"{r['burn'][w]:g}x" for w in ("1h", "6h", "3d")), r["status"]] for r in rows])
