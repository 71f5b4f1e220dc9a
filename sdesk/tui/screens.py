"""The TUI's other screens: KB search with the article, who is on call now, a dashboard of the
key metrics, and a runbook run (the dry-run plan first, then the real run's steps, live). Each
shows what the matching CLI command prints, from the same store and domain calls."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Log, Static

from ..domain.lifecycle import ref
from ..domain.plain import controls
from ..errors import SdeskError
from .keybar import KeyBar
from .reported import reported


def _printed(width: int, draw: Callable[[Any], None]) -> Text:
    """What render's print_* functions print, as text for a Static."""
    from ..render import captured

    with captured(max(60, width - 4)) as out:
        draw(out)
        return Text.from_ansi(out.file.getvalue())


# j/k scroll a page as they move the queue's cursor (the arrows and page keys scroll too)
LINE_BINDINGS = [Binding("j", "line(1)", "Down"), Binding("k", "line(-1)", "Up")]


class Page(Screen):
    """A screen that shows one printed page, loaded in a worker."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), *LINE_BINDINGS]
    TITLE = ""
    PAGE_ID = "page"  # the Static it prints into

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading...", id=self.PAGE_ID)
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = self.TITLE
        self.load()

    def load(self) -> None:
        self._load()

    def action_line(self, step: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=step, animate=False)

    @work(thread=True, exclusive=True)
    @reported()
    def _load(self) -> None:
        with self.app.store() as store:
            data = self.fetch(store)
        self.app.call_from_thread(self._show, data)

    def _show(self, data: Any) -> None:
        self.query_one(f"#{self.PAGE_ID}", Static).update(_printed(self.size.width, lambda out: self.draw(data)))

    def fetch(self, store: Any) -> Any:
        raise NotImplementedError

    def draw(self, data: Any) -> None:
        raise NotImplementedError


class OnCallScreen(Page):
    TITLE = "on call now"

    def fetch(self, store: Any) -> Any:
        from ..domain import clock

        config = self.app.settings.oncall_config()
        if not config.schedules:
            raise SdeskError("no on-call schedules: add oncall.yaml to the desk config")
        return store.oncall.on_call_now(config, schedules=list(config.schedules.values()), when=clock.now())

    def draw(self, rows: Any) -> None:
        from ..render import local, table

        table(["schedule", "teams", "on call", "layer", "until"],
              [[r["schedule"], ", ".join(r["teams"]), r["user"] or "nobody", r["from"] or "", local(r["until"])]
               for r in rows])


class DashboardScreen(Page):
    TITLE = "dashboard: the last 7 days"

    def fetch(self, store: Any) -> Any:
        from datetime import timedelta

        from ..domain import clock
        from ..services.reports import build

        now = clock.now()
        return build(store, self.app.settings.metrics_config(), self.app.settings.sla_config(), now - timedelta(days=7),
                     now + timedelta(seconds=1),
                     sections=frozenset({"sla", "pager", "slo", "csat"}))

    def draw(self, report: Any) -> None:
        from ..render_report import print_report

        print_report(report)


class ArticleScreen(Page):
    def __init__(self, article_id: int):
        super().__init__()
        self.article_id = article_id
        self.TITLE = f"KB-{article_id}"

    def fetch(self, store: Any) -> Any:
        return store.kb.kb_get(self.article_id)

    def draw(self, article: Any) -> None:
        from ..render import print_article

        print_article(article)


class KbScreen(Screen):
    """Search the knowledge base; enter opens an article."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("slash", "search", "Search")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search the KB: words (all of them; any, when no article has all)", id="query")
        yield DataTable(cursor_type="row", id="results")
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "knowledge base"
        table = self.query_one(DataTable)
        table.add_column("ARTICLE", width=8)
        table.add_column("TITLE")
        table.add_column("TAGS", width=24)
        self.found: list[dict[str, Any]] = []
        self.query_one(Input).focus()

    def action_search(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted, "#query")
    def _submitted(self, event: Input.Submitted) -> None:
        self._search(event.value)

    @work(thread=True, exclusive=True)
    @reported(title="search")
    def _search(self, text: str) -> None:
        from ..domain.kb import fts_query
        from ..errors import BadInput

        every = fts_query(text)
        if every is None:
            raise BadInput(f"search: {text!r} has no word to look for")
        with self.app.store() as store:
            found = store.kb.kb_search(every) or store.kb.kb_search(fts_query(text, any_term=True) or every)
        self.app.call_from_thread(self._show, found)

    def _show(self, found: list[dict[str, Any]]) -> None:
        self.found = found
        table = self.query_one(DataTable)
        table.clear()
        for a in found:
            table.add_row(f"KB-{a['id']}", Text(controls(a["title"], one_line=True)),  # a str cell is markup
                          Text(controls(", ".join(a["tags"]), one_line=True)))
        if found:
            table.focus()
        else:
            self.app.notify("no article matches", severity="warning")

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(ArticleScreen(self.found[event.cursor_row]["id"]))


class RunbookScreen(Screen):
    """A runbook on a ticket: the plan and its dry run first; `y` runs it for real, each step's
    output shown as it comes. A step that needs approval stops the run, as in the CLI."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("y", "run", "Run it for real")]

    def __init__(self, ticket_id: int, name: str):
        super().__init__()
        self.ticket_id = ticket_id
        self.runbook = name
        self.prepared: Any = None  # the dry run's plan: `y` runs it, once
        self.running = False
        # Output lines from the runner's thread, written to the log in batches by a timer: a
        # command printing fast must never wait on the screen (its timeout would run out).
        self.lines: collections.deque[str] = collections.deque()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="plan")
        yield Log(id="log", highlight=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = controls(f"runbook {self.runbook} on {ref(self.ticket_id)}", one_line=True)
        self.set_interval(0.1, self._flush)
        self._run(dry_run=True)

    def _flush(self) -> None:
        if self.lines:
            batch = [self.lines.popleft() for _ in range(min(len(self.lines), 2000))]
            self.query_one(Log).write_lines([controls(line) for line in batch])  # a command's output is data

    def offers(self, action: str) -> bool:
        return action != "run" or (self.prepared is not None and not self.running)

    def _leave(self) -> None:
        if self.app.screen is self:
            self.app.pop_screen()

    def action_run(self) -> None:
        if self.prepared is None or self.running:
            self.app.notify("it is running" if self.running else "nothing to run: open the runbook again for a new "
                            "dry run", severity="warning")
            return
        self.lines.append("--- the real run ---")
        self._run(dry_run=False)

    @work(thread=True, exclusive=True)
    def _run(self, dry_run: bool) -> None:
        from ..render import print_plan
        from ..services.runner import prepare, start
        from ..validated import find_runbook as find

        app = self.app  # the runner's thread must not look it up (the screen may be gone by then)
        self.running = True
        try:
            with app.store() as store:
                if dry_run:
                    runbook = find(app.settings.runbooks_folder(), self.runbook)
                    self.prepared = prepare(store, runbook, self.ticket_id, {})
                    plan = _printed(self.size.width, lambda out: print_plan(out, self.prepared.plan,
                                                                            self.prepared.ticket, True))
                    app.call_from_thread(self.query_one("#plan", Static).update, plan)
                prepared = self.prepared
                if not dry_run:
                    self.prepared = None  # a real run runs once; another needs a new dry run
                result = start(store, prepared, actor=app.actor, dry_run=dry_run, echo=self.lines.append)
        except SdeskError as e:
            app.report(e, title="runbook")
            if dry_run:  # refused before anything ran: no screen to run it from
                app.call_from_thread(self._leave)
            else:
                self.lines.append(f"--- not run: {e}")
            return
        finally:
            self.running = False
            app.call_from_thread(self.refresh_bindings)  # `y` is offered when there is a dry run to run
        self.lines.append(f"run {result['id']}: {result['status']}" + (f" ({result['reason']})" if result.get("reason")
                                                                       else ""))
        if dry_run:
            self.lines.append("press y to run it for real, escape to leave it")
