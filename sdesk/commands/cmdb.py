"""`sdesk cmdb ...`: configuration items, their relations, and impact analysis."""

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..desk import read_text
from .common import Group, note, print_json, settings_of, store_of

app = typer.Typer(cls=Group, name="cmdb", no_args_is_help=True,
                  help="The CMDB: configuration items, how they depend on each other, and what fails with them.\n\n"
                       "Example: sdesk cmdb import examples/desk/cmdb.yaml\n\nExample: sdesk cmdb impact db-billing-2")

NameArg = Annotated[str, typer.Argument(help="A CI's name or alias.", show_default=False)]


class EstateFormat(str, Enum):
    yaml = "yaml"
    csv = "csv"


class GraphFormat(str, Enum):
    tree = "tree"
    dot = "dot"
    mermaid = "mermaid"


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A YAML (cis: [...]) or CSV file; - for stdin.", show_default=False)],
    fmt: Annotated[Optional[EstateFormat], typer.Option("--format", help="Default: from the file's suffix (.csv), else YAML.", show_default=False)] = None,
    prune: Annotated[bool, typer.Option(help="Remove CIs that are not in the file (the file is the whole estate).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as JSON.")] = False,
) -> None:
    """Create or update CIs from a file, in one transaction; safe to run every hour.

    Example: sdesk cmdb import examples/desk/cmdb.yaml

    Example: discover-hosts --csv | sdesk cmdb import - --format csv --prune
    """
    from ..domain.cmdb import parse_estate

    stdin = str(path) == "-"
    if stdin:
        from ..files import stdin_text

        text, where = stdin_text(), "stdin"
    else:
        text, where = read_text(path), str(path)
    kind = fmt.value if fmt else "csv" if not stdin and path.suffix.lower() == ".csv" else "yaml"
    settings = settings_of(ctx)
    summary = settings.store().cmdb.cmdb_import(parse_estate(text, kind, where), actor=settings.actor, prune=prune)
    if as_json:
        print_json(summary)
    else:
        note(", ".join(f"{len(v)} {k}" for k, v in summary.items()))


@app.command()
def export(ctx: typer.Context) -> None:
    """Print the whole CMDB as YAML that `cmdb import` reads back unchanged.

    Example: sdesk cmdb export > cmdb-backup.yaml
    """
    from ..domain.cmdb import estate_yaml

    sys.stdout.write(estate_yaml(store_of(ctx).cmdb.ci_records()))


@app.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The CI's name.", show_default=False)],
    type_: Annotated[str, typer.Option("--type", help="service, host, database, queue, cache, network, ...")],
    tier: Annotated[Optional[int], typer.Option(min=1, max=4, help="1 (most critical) to 4.")] = None,
    team: Annotated[Optional[str], typer.Option(help="The owner team.")] = None,
    environment: Annotated[Optional[str], typer.Option("--env", help="prod, staging, ...")] = None,
    alias: Annotated[list[str], typer.Option("--alias", help="Another name monitoring uses; repeatable.")] = [],
    attribute: Annotated[list[str], typer.Option("--attr", help="KEY=VALUE; repeatable.")] = [],
) -> None:
    """Add one CI.

    Example: sdesk cmdb add orders-api --type service --tier 2 --team payments --alias orders
    """
    from ..domain.cmdb import check_ci
    from .common import parse_labels

    ci = check_ci({"name": name, "type": type_, "tier": tier, "team": team, "environment": environment,
                   "aliases": alias, "attributes": parse_labels(attribute)})
    settings = settings_of(ctx)
    settings.store().cmdb.ci_add(ci, actor=settings.actor)
    note(f"added {ci.name}")


def _relate(ctx: typer.Context, source: str, kind: str, target: str, unlink: bool) -> None:
    settings = settings_of(ctx)
    done = settings.store().cmdb.ci_link(source, kind=kind, target=target, actor=settings.actor, unlink=unlink)
    verb = "unlinked" if unlink else "linked"
    note(f"{verb}: {source} {kind} {target}" if done else f"nothing to do: {source} {kind} {target} "
         + ("is not recorded" if unlink else "is already recorded"))


@app.command()
def link(ctx: typer.Context, source: NameArg, kind: Annotated[str, typer.Argument(help="depends_on, runs_on, part_of or connects_to.")],
         target: NameArg) -> None:
    """Record that SOURCE needs TARGET (so TARGET failing affects SOURCE).

    Example: sdesk cmdb link checkout-api depends_on payments-db
    """
    _relate(ctx, source, kind, target, unlink=False)


@app.command()
def unlink(ctx: typer.Context, source: NameArg, kind: Annotated[str, typer.Argument(help="The relation kind.")],
           target: NameArg) -> None:
    """Remove a relation.

    Example: sdesk cmdb unlink checkout-api depends_on legacy-db
    """
    _relate(ctx, source, kind, target, unlink=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    type_: Annotated[Optional[str], typer.Option("--type", help="Only this type.")] = None,
    team: Annotated[Optional[str], typer.Option(help="Only this owner team.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False,
) -> None:
    """List CIs.

    Example: sdesk cmdb list --type database
    """
    records = store_of(ctx).cmdb.ci_records(type_=type_, team=team)
    if as_json:
        print_json(records)
        return
    from ..render import table

    table(["name", "type", "tier", "team", "env", "aliases", "needs"],
          [[r["name"], r["type"], r["tier"] or "", r["team"] or "", r["environment"] or "", ", ".join(r["aliases"]),
            ", ".join(t for targets in r["relations"].values() for t in targets)] for r in records])


@app.command()
def show(ctx: typer.Context, name: NameArg,
         as_json: Annotated[bool, typer.Option("--json", help="The CI, its relations, open tickets and changes.")] = False) -> None:
    """Show a CI: attributes, relations both ways, open tickets and recent changes.

    Example: sdesk cmdb show billing-db
    """
    store = store_of(ctx)
    ci = store.cmdb.ci_get(name=name)
    tickets = store.tickets.list(statuses=[], open_only=True, ci=ci["name"], limit=20)
    changes = store.cmdb.change_list(cis=[ci["name"]], limit=10)
    if as_json:
        print_json({**ci, "open_tickets": tickets, "changes": changes})
        return
    from ..render import print_ci

    print_ci(ci, tickets, changes)


@app.command()
def impact(
    ctx: typer.Context,
    name: NameArg,
    depth: Annotated[Optional[int], typer.Option(min=1, help="Stop this many steps away (default: no limit).")] = None,
    upstream: Annotated[bool, typer.Option("--upstream", help="What NAME depends on, instead of what depends on it.")] = False,
    fmt: Annotated[GraphFormat, typer.Option("--format", help="tree (terminal), dot (Graphviz) or mermaid.")] = GraphFormat.tree,
    as_json: Annotated[bool, typer.Option("--json", help="Every CI reached, with its depth, path and tier.")] = False,
) -> None:
    """Everything affected if NAME fails (following dependencies upward), or with --upstream
    everything NAME needs; each with the path that leads to it.

    Example: sdesk cmdb impact db-billing-2

    Example: sdesk cmdb impact payments-db --format dot | dot -Tsvg > impact.svg
    """
    from ..domain.cmdb import to_dot, to_mermaid

    ci, reached, info = store_of(ctx).cmdb.ci_walk(name, upstream=upstream, depth=depth)
    start = ci["name"]
    tiers = [info[r.name]["tier"] for r in reached if info[r.name]["tier"]]
    if as_json:
        print_json({"ci": start, "direction": "upstream" if upstream else "impact", "count": len(reached),
                    "highest_tier": min(tiers) if tiers else None,
                    "reached": [{"name": r.name, "depth": r.depth, "via": r.via, "path": r.path,
                                 "type": info[r.name]["type"], "tier": info[r.name]["tier"], "team": info[r.name]["team"]}
                                for r in reached]})
    elif fmt is GraphFormat.dot:
        sys.stdout.write(to_dot(start, reached, upstream))
    elif fmt is GraphFormat.mermaid:
        sys.stdout.write(to_mermaid(start, reached, upstream))
    else:
        from ..render import print_impact

        print_impact(start, reached, info, upstream)
