"""`sdesk rules ...` (check and replay the triage rules) and `sdesk silence ...` (keep matching
alerts out of the queue for a while, without dropping them)."""

from typing import Annotated, Optional

import typer

from ..domain import clock
from ..errors import BadInput
from .common import Group, note, print_json, settings_of, store_of

app = typer.Typer(cls=Group, name="rules", no_args_is_help=True,
                  help="Triage rules (triage.yaml in the desk config): check them, replay them over history.\n\n"
                       "Example: sdesk rules check")
silence_app = typer.Typer(cls=Group, name="silence", no_args_is_help=True,
                          help="Silences: alerts that match are kept as suppressed tickets, out of the queue.\n\n"
                               "Example: sdesk silence add --match alertname=DiskFull --for 2h --comment \"CH-12 resize\"\n\n"
                               "Example: sdesk silence list")


def _config(ctx: typer.Context):
    settings = settings_of(ctx)
    config = settings.triage_config()
    if config is None:
        where = settings.config / "triage.yaml" if settings.config else "triage.yaml (give --config DIR or SDESK_CONFIG)"
        raise BadInput(f"no triage rules: {where} does not exist")
    return config


@app.command("check")
def check(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Validate triage.yaml: an unknown field, bad regex or unknown action names its file, line and rule.

    Example: sdesk --config examples/desk rules check
    """
    config = _config(ctx)
    rules = [{"id": r.id, "line": r.line, "set": r.sets, "stop": r.stop} for r in config.rules]
    if as_json:
        print_json({"ok": True, "rules": rules})
        return
    from ..domain.plain import plural, readable
    from ..render import table

    table(["line", "rule", "sets", "stop"],
          [[r["line"], r["id"], readable(r["set"]), "stop" if r["stop"] else ""] for r in rules], empty="no rules")
    note(f"{plural(len(rules), 'rule')} OK")




@app.command("test")
def test(
    ctx: typer.Context,
    replay: Annotated[bool, typer.Option("--replay", help="Re-run the rules over stored tickets.")] = False,
    since: Annotated[Optional[str], typer.Option("--since", help="Tickets created since: 30d, 12h, or an ISO time.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=10**9, help="Changed tickets shown (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show what the current rules would change, writing nothing: matches per rule, and the
    tickets whose queue, priority or category would differ.

    Example: sdesk rules test --replay --since 30d
    """
    from ..domain.plain import plural

    if not replay:
        raise BadInput("rules test needs --replay (re-run the rules over stored tickets)")
    config = _config(ctx)
    from ..triage import replay as run_replay

    store = store_of(ctx)
    tickets = store.triage.replay_tickets(clock.iso(clock.back(since, "--since")) if since else None)
    result = run_replay(config, tickets)
    if limit:
        result["changed"] = result["changed"][:limit]
    if as_json:
        print_json(result)
        return
    from ..domain.lifecycle import ref
    from ..render import table

    table(["rule", "matches"], [[rule, n] for rule, n in result["rules"].items()], empty="no rules")
    table(["ticket", "title", "would change"],
          [[ref(c["id"]), (c["title"] or "")[:50], "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in c["changes"].items())]
           for c in result["changed"]], empty="no ticket would change")
    note(f"{plural(result['tickets'], 'ticket')} replayed; {result['would_change']} would change"
         + (f" (first {limit} shown)" if limit and result["would_change"] > limit else ""))


# -- silences ------------------------------------------------------------------------------------


@silence_app.command("add")
def silence_add(
    ctx: typer.Context,
    match: Annotated[list[str], typer.Option("--match", "-m", help="key=value, key!=value, key=~regex, key!~regex; repeatable, all must hold. A key is a label, else a ticket field.", show_default=False)],
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d.", show_default=False)],
    comment: Annotated[Optional[str], typer.Option("--comment", "-c", help="Why (a change, a maintenance window).")] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="ISO 8601 (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Silence matching alerts: they are kept as suppressed tickets (sdesk list --suppressed), not paged.

    Example: sdesk silence add --match alertname=DiskFull --match instance=~"db-.*" --for 2h --comment "CH-12 resize"
    """
    from ..triage import parse_matcher

    matchers = [parse_matcher(m) for m in match]
    starts = clock.parse(start, what="--start") if start else clock.now()
    try:
        ends = starts + clock.span(duration, "--for")
    except OverflowError:
        raise BadInput(f"--for {duration!r}: ends after the year 9999") from None
    settings = settings_of(ctx)
    silence_id = settings.store().triage.silence_add(matchers, starts=starts, ends=ends, comment=comment,
                                              actor=settings.actor)
    if as_json:
        print_json(settings.store().triage.silence_list(silence_id=silence_id)[0])
    else:
        print(silence_id)
        note(f"silence {silence_id} until {clock.iso(ends)}")


@silence_app.command("list")
def silence_list(
    ctx: typer.Context,
    include_expired: Annotated[bool, typer.Option("--all", help="Also expired silences.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List silences in force (or all), with how many tickets each suppressed.

    Example: sdesk silence list --all --json
    """
    silences = store_of(ctx).triage.silence_list(include_expired=include_expired)
    if as_json:
        print_json(silences)
        return
    from ..render import local, table

    table(["id", "state", "matchers", "from", "until", "suppressed", "by", "comment"],
          [[s["id"], s["state"], " ".join(s["matchers"]), local(s["starts_at"]), local(s["ends_at"]), s["suppressed"],
            s["created_by"], s["comment"] or ""] for s in silences], empty="no silences")


@silence_app.command("expire")
def silence_expire(
    ctx: typer.Context,
    silence_id: Annotated[int, typer.Argument(help="The silence's id.", min=1, max=2 ** 63 - 1, show_default=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """End a silence now: alerts that match are queued again from the next one.

    Example: sdesk silence expire 3
    """
    settings = settings_of(ctx)
    silence = settings.store().triage.silence_expire(silence_id, actor=settings.actor)
    if as_json:
        print_json(silence)
    else:
        note(f"silence {silence_id} expired")
