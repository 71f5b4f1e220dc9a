"""`sdesk kb ...`: the knowledge base, its search, revisions and freshness."""

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..desk import read_text
from ..errors import BadInput, ExitCode, SdeskError
from .common import Group, note, print_json, settings_of, store_of

app = typer.Typer(cls=Group, name="kb", no_args_is_help=True,
                  help="The knowledge base: Markdown articles with revisions, full-text search and review dates.\n\n"
                       "Example: sdesk kb search replica lag\n\nExample: sdesk kb show KB-3")

IdArg = Annotated[str, typer.Argument(help="KB-12 or 12.", show_default=False)]


def _read_source(path: Optional[Path], initial: str) -> tuple[str, str]:
    """Text from a file, stdin (-, or piped), or $EDITOR on a terminal; and where it came from."""
    if path is not None and str(path) != "-":
        from ..domain.kb import MAX_BYTES

        return read_text(path, MAX_BYTES), str(path)
    if path is not None or not sys.stdin.isatty():
        from ..domain.kb import MAX_BYTES
        from ..files import stdin_text

        return stdin_text(MAX_BYTES), "stdin"
    return _edit(initial), "editor"


def _edit(initial: str) -> str:
    import shlex
    import subprocess
    import tempfile

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".md", encoding="utf-8", delete=False) as f:
        f.write(initial)
    try:
        if subprocess.call([*shlex.split(editor), f.name]) != 0:
            raise SdeskError(f"{editor} exited with an error; nothing saved")
        return Path(f.name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SdeskError(f"editor {editor!r} not found; set EDITOR, or give a file") from None
    finally:
        os.unlink(f.name)


def _overrides(title: Optional[str], tag: list[str], ci: list[str], owner: Optional[str],
               review_days: Optional[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if title is not None:
        out["title"] = title
    if tag:
        out["tags"] = tag
    if ci:
        out["cis"] = ci
    if owner is not None:
        out["owner"] = owner
    if review_days is not None:
        out["review_days"] = review_days
    return out


TitleOpt = Annotated[Optional[str], typer.Option("--title", help="Title (default: front matter or first # heading).")]
TagOpt = Annotated[list[str], typer.Option("--tag", help="Repeatable.")]
CiOpt = Annotated[list[str], typer.Option("--ci", help="A CI or service it is about; repeatable.")]
OwnerOpt = Annotated[Optional[str], typer.Option("--owner", help="The team that keeps it true.")]
ReviewOpt = Annotated[Optional[int], typer.Option("--review-days", min=1, max=3650, help="Review interval (default 180).")]


@app.command()
def add(
    ctx: typer.Context,
    path: Annotated[Optional[Path], typer.Argument(help="A Markdown file; - for stdin; none opens $EDITOR.", show_default=False)] = None,
    title: TitleOpt = None, tag: TagOpt = [], ci: CiOpt = [], owner: OwnerOpt = None, review_days: ReviewOpt = None,
) -> None:
    """Add an article (Markdown, optionally with front matter: title, tags, cis, owner, review_days).

    Example: sdesk kb add docs/disk-full.md --tag disk --ci db-billing-2
    """
    from ..domain.kb import check_article, parse_article

    text, where = _read_source(path, "---\ntitle: \ntags: []\n---\n\n")
    article = check_article({**parse_article(text, where), **_overrides(title, tag, ci, owner, review_days)}, where)
    settings = settings_of(ctx)
    article_id = settings.store().kb.kb_add(article, actor=settings.actor)
    print(f"KB-{article_id}")


@app.command()
def edit(
    ctx: typer.Context, article: IdArg,
    path: Annotated[Optional[Path], typer.Argument(help="New text (Markdown); - for stdin; none opens $EDITOR.", show_default=False)] = None,
    title: TitleOpt = None, tag: TagOpt = [], ci: CiOpt = [], owner: OwnerOpt = None, review_days: ReviewOpt = None,
) -> None:
    """Change an article; every change is kept as a revision. New text without front matter
    keeps the article's title, tags, CIs, owner and review days (a '# heading' retitles it).

    Example: sdesk kb edit KB-3 --tag postgres

    Example: sdesk kb edit KB-3 new-text.md
    """
    from ..domain.kb import FIELDS, check_article, parse_article, to_markdown
    from ..storage.kb import parse_kb_id

    settings = settings_of(ctx)
    store = settings.store()
    article_id = parse_kb_id(article)
    current = store.kb.kb_get(article_id)
    overrides = _overrides(title, tag, ci, owner, review_days)
    if path is not None or not overrides:
        text, where = _read_source(path, to_markdown(current))
        base = parse_article(text, where)
        # New text without front matter is a new body: the article keeps its fields. Without a
        # title (in front matter or a '# heading') it keeps its title.
        kept = {"title": current["title"]} if set(base) - {"title", "body"} else {k: current[k] for k in FIELDS}
        base = {**kept, **{k: v for k, v in base.items() if v is not None}}
    else:
        base, where = {k: current[k] for k in ("title", "body", "tags", "cis", "owner", "review_days")}, "article"
    updated, changed = store.kb.kb_edit(article_id, changes=check_article({**base, **overrides}, where),
                                        actor=settings.actor)
    note(f"KB-{article_id} is at revision {updated['revision']}" if changed else f"KB-{article_id}: no change")


@app.command()
def show(ctx: typer.Context, article: IdArg,
         as_json: Annotated[bool, typer.Option("--json", help="The article with its fields.")] = False) -> None:
    """Show an article, rendered.

    Example: sdesk kb show KB-3
    """
    from ..storage.kb import parse_kb_id

    a = store_of(ctx).kb.kb_get(parse_kb_id(article))
    if as_json:
        print_json(a)
        return
    from ..render import print_article

    print_article(a)


@app.command("list")
def list_(
    ctx: typer.Context,
    tag: Annotated[Optional[str], typer.Option(help="Only with this tag.")] = None,
    ci: Annotated[Optional[str], typer.Option(help="Only about this CI.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, max=10**9, help="0 for no limit.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array (without bodies).")] = False,
) -> None:
    """List articles.

    Example: sdesk kb list --tag postgres
    """
    _print_articles(store_of(ctx).kb.kb_list(tag=tag, ci=ci, limit=limit or None), as_json)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[list[str], typer.Argument(help="Words to find (all of them; any, when no article has all).", show_default=False)],
    tag: Annotated[Optional[str], typer.Option(help="Only with this tag.")] = None,
    ci: Annotated[Optional[str], typer.Option(help="Only about this CI.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array, best first, with snippets.")] = False,
) -> None:
    """Search articles, best match first, with the matching words highlighted: by words and by
    meaning when the semantic index is built (sdesk index), by words alone otherwise (it says which).

    Example: sdesk kb search replica lag

    Example: sdesk kb search "disk full" --ci db-billing-2 --json
    """
    from ..services.semantic import search_kb
    from .search import _mode_line, one_question

    one_question()
    found, mode = search_kb(store_of(ctx), " ".join(query), tag=tag, ci=ci, limit=limit)
    note(_mode_line(mode))
    if as_json:
        from ..storage.kb import SNIPPET_CLOSE, SNIPPET_OPEN

        print_json([{**a, "snippet": a["snippet"].replace(SNIPPET_OPEN, "«").replace(SNIPPET_CLOSE, "»")} for a in found])
        return
    from ..render import print_search

    print_search(found)


@app.command()
def review(ctx: typer.Context, article: IdArg) -> None:
    """Mark an article reviewed today: it is still true.

    Example: sdesk kb review KB-3
    """
    from ..domain.plain import plural
    from ..storage.kb import parse_kb_id

    settings = settings_of(ctx)
    a = settings.store().kb.kb_review(parse_kb_id(article), actor=settings.actor)
    note(f"KB-{a['id']} reviewed; next review due in {plural(a['review_days'], 'day')}")


@app.command()
def stale(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False) -> None:
    """Articles past their review date (KB rot), oldest review first.

    Example: sdesk kb stale
    """
    from ..domain import clock

    found = store_of(ctx).kb.kb_list(due_before=clock.now_iso())
    found.sort(key=lambda a: a["reviewed_at"])
    _print_articles(found, as_json, empty="no article is past its review date")


@app.command()
def link(ctx: typer.Context, article: IdArg,
         ticket: Annotated[str, typer.Option("--ticket", help="42 or SD-42.", show_default=False)]) -> None:
    """Link an article to a ticket (it helped, or it documents the fix).

    Example: sdesk kb link KB-3 --ticket SD-42
    """
    from ..domain.lifecycle import parse_id, ref
    from ..storage.kb import parse_kb_id

    settings = settings_of(ctx)
    ticket_id = parse_id(ticket)
    done = settings.store().kb.kb_link(parse_kb_id(article), ticket_id=ticket_id, actor=settings.actor)
    note(f"linked {article.upper()} to {ref(ticket_id)}" if done else "already linked")


@app.command()
def history(ctx: typer.Context, article: IdArg, as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False) -> None:
    """Every revision of an article: when, who, title.

    Example: sdesk kb history KB-3
    """
    from ..storage.kb import parse_kb_id

    revisions = store_of(ctx).kb.kb_history(parse_kb_id(article))
    if as_json:
        print_json(revisions)
        return
    from ..render import local, table

    table(["rev", "when", "who", "title"], [[r["revision"], local(r["at"]), r["actor"], r["title"]] for r in revisions])


@app.command()
def diff(
    ctx: typer.Context, article: IdArg,
    old: Annotated[Optional[int], typer.Argument(help="Revision (default: the one before NEW).", show_default=False)] = None,
    new: Annotated[Optional[int], typer.Argument(help="Revision (default: the latest).", show_default=False)] = None,
) -> None:
    """What changed between two revisions, as a unified diff.

    Example: sdesk kb diff KB-3

    Example: sdesk kb diff KB-3 1 4
    """
    from ..domain.kb import diff as unified
    from ..storage.kb import parse_kb_id

    revisions = {r["revision"]: r for r in store_of(ctx).kb.kb_history(parse_kb_id(article))}
    new = new if new is not None else max(revisions)
    old = old if old is not None else new - 1
    for n in (old, new):
        if n not in revisions:
            raise BadInput(f"{article}: no revision {n} (it has 1 to {max(revisions)})")
    from ..domain.plain import controls

    sys.stdout.write(controls(unified(revisions[old], revisions[new], f"revision {old}", f"revision {new}")))


@app.command("import")
def import_(ctx: typer.Context, folder: Annotated[Path, typer.Argument(help="A folder of .md files (searched recursively).", show_default=False)],
            as_json: Annotated[bool, typer.Option("--json", help="The summary as JSON.")] = False) -> None:
    """Load a folder of Markdown articles, matched by file path: new files are added, changed
    ones revised, the rest left alone, in one transaction. A bad article (front matter that is
    not valid, no title, an empty body) is skipped with a line naming the file and line, and so
    is anything but a regular file inside the folder (a symbolic link, a FIFO, a device) or a
    file over 4 MiB: the rest are imported, then exit code 2.

    Example: sdesk kb import ./runbooks
    """
    from .. import files
    from ..domain.kb import MAX_BYTES, check_article, parse_article

    if not folder.is_dir():
        raise BadInput(f"{folder}: not a folder")
    articles, skipped = [], []
    for relative, dir_fd, name in files.walk(folder, ".md"):
        shown = folder / relative
        try:
            text = files.read_text(name, shown=shown, dir_fd=dir_fd, follow=False, limit=MAX_BYTES)
            article = check_article(parse_article(text, str(shown)), str(shown))
        except BadInput as e:  # one bad file is skipped alone, with its line; the rest are imported
            note(f"skipped: {e}")
            skipped.append(Path(relative).as_posix())
            continue
        articles.append((Path(relative).with_suffix("").as_posix(), article))
    settings = settings_of(ctx)
    summary = settings.store().kb.kb_sync(sorted(articles), actor=settings.actor)
    if skipped:
        summary["skipped"] = skipped
    if as_json:
        print_json(summary)
    else:
        note(", ".join(f"{len(v)} {k}" for k, v in summary.items()))
    if skipped:
        raise typer.Exit(int(ExitCode.BAD_INPUT))


def _print_articles(articles: list[dict[str, Any]], as_json: bool, empty: str = "no articles") -> None:
    if as_json:
        print_json(articles)
        return
    from ..domain import clock
    from ..domain.kb import review_due
    from ..render import local, table

    now = clock.now()
    rows = []
    for a in articles:
        due = review_due(clock.parse(a["reviewed_at"]), a["review_days"])
        rows.append([f"KB-{a['id']}", a["title"], ", ".join(a["tags"]), a["owner"] or "", local(a["reviewed_at"]),
                     ("overdue " if due < now else "") + due.strftime("%Y-%m-%d")])
    table(["id", "title", "tags", "owner", "reviewed", "review due"], rows, empty=empty)
