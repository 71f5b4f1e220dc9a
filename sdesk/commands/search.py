"""Finding what is alike: `sdesk index` (the semantic index), `sdesk search` (tickets, by words
and meaning) and `sdesk similar` (the tickets most like one)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .common import note, print_json, settings_of, store_of

index_app = typer.Typer()
search_app = typer.Typer()
similar_app = typer.Typer()


def one_question() -> None:
    """This process scores one question and exits: BLAS's worker threads, started as numpy loads,
    cost it more than they save (a third of a KB search's CPU at 100k articles). Set before numpy
    is imported, and only by these commands: `index`, `tick` and `serve` keep them."""
    import os

    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def progress_bar(label: str):
    """A callback (done, total) drawing a bar on stderr when it is a terminal; and a stop."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None)
    bar.start()
    return (lambda done, total: bar.update(task, completed=done, total=total)), bar.stop


@index_app.command("index")
def index(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--status", help="Only say how much is indexed and how much waits.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build or update the semantic index: a vector for each ticket and KB article that lacks
    one or changed since (incremental; a change of model re-indexes everything). `tick` and
    `serve` run it too; `sdesk new` and streamed intake never do. Needs the `semantic` extra.

    Example: sdesk index

    Example: sdesk index --status --json
    """
    from ..services import semantic

    settings = settings_of(ctx)
    store = settings.store()
    if check:
        found = semantic.status(store)
        if as_json:
            print_json(found)
        elif not found["installed"]:
            print("semantic search is not installed: search is by words only (pip install 'sdesk[semantic]')")
        else:
            print(f"model {found['model']}: {found['tickets_indexed']:,} tickets and {found['articles_indexed']:,} "
                  f"articles indexed; {found['tickets_pending']:,} tickets and {found['articles_pending']:,} articles wait")
        return
    advance, stop = progress_bar("indexing")
    try:
        done = semantic.index(store, actor=settings.actor, progress=advance)
    finally:
        stop()
    if as_json:
        print_json(done)
        return
    rate = f" ({done['tickets_per_second']:,} a second)" if done["tickets_per_second"] else ""
    note(f"indexed {done['tickets']:,} tickets{rate} and {done['articles']:,} articles with {done['model']}")


def _print_tickets(found: list[dict[str, Any]], *, empty: str) -> None:
    from ..render import print_found_tickets

    print_found_tickets(found, empty=empty)


@search_app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[list[str], typer.Argument(help="What to look for, in your own words.", show_default=False)],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array, best first.")] = False,
) -> None:
    """Search tickets by words and by meaning (hybrid; by words alone when the semantic index
    is not built), best first. Tickets not indexed yet are found by their words, after.

    Example: sdesk search "checkout page throws errors"

    Example: sdesk search replica behind --json
    """
    from ..services import semantic

    one_question()
    found, mode = semantic.search_tickets(store_of(ctx), " ".join(query), limit=limit)
    note(_mode_line(mode))
    if as_json:
        print_json(found)
        return
    _print_tickets(found, empty="no ticket matches")


def _mode_line(mode: str) -> str:
    from ..services.semantic import HYBRID

    return ("search: by words and meaning" if mode == HYBRID else
            "search: by words only (semantic index not built: sdesk index; or not installed: pip install 'sdesk[semantic]')")


@similar_app.command("similar")
def similar(
    ctx: typer.Context,
    ticket: Annotated[str, typer.Argument(help="42 or SD-42.", show_default=False)],
    resolved: Annotated[bool, typer.Option("--resolved", help="Only resolved or closed tickets, with how they were resolved.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array, most alike first.")] = False,
) -> None:
    """The tickets most like this one in meaning, with a score (the cosine: 1 is the same).
    Needs the `semantic` extra and the index (`sdesk index`).

    Example: sdesk similar SD-42 --resolved
    """
    from ..domain.lifecycle import parse_id
    from ..services import semantic

    one_question()
    found = semantic.similar(store_of(ctx), parse_id(ticket), resolved=resolved, limit=limit)
    if as_json:
        print_json(found)
        return
    _print_tickets(found, empty="no indexed ticket is alike (sdesk index builds the index)")
