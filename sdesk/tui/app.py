"""`sdesk tui`: the queue, a ticket, and the actions an agent takes, by keyboard.

Every read and write runs in a thread worker with its own connection (a database another
process is writing never freezes the screen); errors from the domain come back as
notifications. The queue loads a page at a time in the queue order (priority, then oldest),
and refreshes when a ticket changes: told so by the database where it tells (PostgreSQL's
LISTEN/NOTIFY: live.py), else when a poll sees the events table grow (every change appends one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, Input, Label, Static
from textual.worker import get_current_worker

from ..desk import Desk
from ..domain.lifecycle import ref
from ..domain.plain import controls, plural
from ..errors import SdeskError
from ..render import PRIORITY_STYLE, STATUS_STYLE, age
from .columns import layout
from .keybar import KeyBar
from .live import Listener
from .reported import reported
from .screens import LINE_BINDINGS, Page

PAGE = 100  # rows a page of the queue loads
POLL_SECONDS = 2.0

ACTION_BINDINGS = [Binding(key, f"ticket_action('{action}')", label) for key, action, label in (
    ("a", "ack", "Ack"), ("s", "start", "Start"), ("c", "comment", "Note"), ("m", "reply", "Reply"),
    ("A", "assign", "Assign"),
    ("r", "resolve", "Resolve"), ("o", "reopen", "Reopen"), ("P", "priority", "Priority"),
    ("e", "escalate", "Escalate"), ("L", "link", "Link"), ("C", "csat", "CSAT"), ("R", "runbook", "Runbook"),
    ("Q", "queue", "Queue"), ("V", "decide", "Approve"))]

VIEWS = {  # key -> (name, filter text)
    "1": ("open queue", ""),
    "2": ("my tickets", "a:me"),
    "3": ("unassigned", "a:-"),
    "4": ("P1/P2", "p:P1 p:P2"),
    "5": ("by queue", "sort:queue"),
    "6": ("breaching", "sla:breaching"),
}


class SdeskApp(App):
    """The TUI over one database; `make_app` builds it (for `sdesk tui` and for tests)."""

    TITLE = "sdesk"
    CSS = """
    #filter { display: none; }
    #filter.shown { display: block; }
    #status { height: 1; color: $text-muted; padding: 0 1; }
    Modal > Vertical { width: 70; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
    """
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("question_mark", "help", "Help"),
                Binding("K", "screen('kb')", "KB", show=False), Binding("O", "screen('oncall')", "On call", show=False),
                Binding("D", "screen('dashboard')", "Dashboard", show=False)]

    def __init__(self, desk: Desk, page: int = PAGE, poll: float = POLL_SECONDS):
        super().__init__()
        self.settings = desk  # the desk and its config files, as the CLI reads them
        desk.store()  # opened here, in the app's own thread; each worker connects on its own (store())
        self.actor = desk.actor
        self.page = page
        self.poll = poll
        self.may_act: bool | None = None  # may the actor work tickets anywhere (agent or more); read with the queue

    def offers(self, action: str) -> bool:
        """Whether the key bar offers a binding's action: a viewer is not offered ticket actions
        (pressing one anyway is one refusal, as the CLI's; see ticket_action)."""
        return not action.startswith("ticket_action") or bool(self.may_act)

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Every notification is plain text: messages carry stored text (a title, a user's name, a
        filter typed in), which Textual would otherwise read as markup ([@click=...] runs an
        action) and whose control characters would reach the terminal."""
        super().notify(controls(message), title=controls(title, one_line=True), severity=severity, timeout=timeout,
                       markup=False)

    def report(self, error: SdeskError, *, title: str = "", severity: Any = "error", then: str = "") -> None:
        """The one way the TUI shows an sdesk error, from its own thread or a worker's: a
        notification with the line the CLI prints (`error: <message>`; `then` says what the TUI
        does instead), and the app goes on. Actions and workers get it with @reported."""
        message = f"error: {error}" + (f"; {then}" if then else "")
        if threading.get_ident() == self._thread_id:
            self.notify(message, title=title, severity=severity)
        else:
            self.call_from_thread(self.notify, message, title=title, severity=severity)

    def sla_config(self):
        """sla.yaml of the desk config, once (a broken file: no SLA column, and a notification)."""
        if not hasattr(self, "_sla"):
            from ..domain.sla import SlaConfig

            try:
                self._sla = self.settings.sla_config()
            except SdeskError as e:
                self.report(e, severity="warning", then="SLA clocks left out")
                self._sla = SlaConfig()
        return self._sla

    def store(self):
        """A store for the calling thread (a connection is used by the thread that made it)."""
        return self.settings.connect()  # the TUI's writes are held to the OS login check, as the CLI's

    def on_mount(self) -> None:
        self.push_screen(QueueScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def open_ticket(self, ticket_id: int, closed: Callable[[Any], None]) -> None:
        """The ticket's screen, once its data is read: it is then laid out and drawn once, not
        once empty and again filled. One ticket screen is made and shown again for each ticket,
        since composing a new screen costs more than the ticket itself."""
        self._fetch_ticket(ticket_id, self.screen, closed)

    @work(thread=True, exclusive=True, group="open-ticket")
    @reported()
    def _fetch_ticket(self, ticket_id: int, asked_from: Screen, closed: Callable[[Any], None]) -> None:
        with self.store() as store:
            data = ticket_data(store, ticket_id, self.sla_config())
        if not get_current_worker().is_cancelled:  # a later open replaced this one
            self.call_from_thread(self._show_ticket, asked_from, data, closed)

    def _show_ticket(self, asked_from: Screen, data: Any, closed: Callable[[Any], None]) -> None:
        """Push the ticket screen, unless the screen that asked is no longer the one shown
        (the user went elsewhere while the ticket was read)."""
        if self.screen is not asked_from:
            return
        ticket_id = data[0]["id"]
        if not self.is_screen_installed("ticket"):
            self.install_screen(TicketScreen(ticket_id), "ticket")
        screen = self.get_screen("ticket")
        screen.workers.cancel_node(screen)  # a reload of the ticket shown before must not land on this one
        screen.ticket_id, screen.ready = ticket_id, data
        self.push_screen("ticket", closed)

    def action_screen(self, name: str) -> None:
        from .screens import DashboardScreen, KbScreen, OnCallScreen

        if name == "oncall":  # without schedules, say so now rather than open an empty screen
            try:
                schedules = self.settings.oncall_config().schedules
            except SdeskError as e:
                self.report(e, title="on call")
                return
            if not schedules:
                where = self.settings.config
                self.notify(f"no on-call schedules: add oncall.yaml to {where}" if where else
                            "no desk config, so no on-call schedules: start the TUI with --config DIR",
                            severity="warning", title="on call")
                return
        self.push_screen({"kb": KbScreen, "oncall": OnCallScreen, "dashboard": DashboardScreen}[name]())

    def act(self, what: Callable[[Any], Any], done: str, after: Callable[[], None] | None = None) -> None:
        """Run a write in a worker; a notification says what happened or why not."""
        self._act(what, done, after)

    @work(thread=True, group="writes")
    @reported(title="not done")
    def _act(self, what: Callable[[Any], Any], done: str, after: Callable[[], None] | None) -> None:
        with self.store() as store:
            what(store)
        self.call_from_thread(self.notify, done)
        if after is not None:
            self.call_from_thread(after)


def make_app(db: Path, actor: str, config: Path | None = None, **options: Any) -> SdeskApp:
    """The app on the desk at `db` (tests and tools; `sdesk tui` passes the CLI's own Desk)."""
    from ..desk import Desk

    return SdeskApp(Desk(db, actor, config), **options)


# -- the queue --------------------------------------------------------------------------------------


class QueueScreen(Screen):
    BINDINGS = [
        Binding("j", "cursor(1)", "Down", show=False), Binding("k", "cursor(-1)", "Up", show=False),
        Binding("g", "top", "Top", show=False), Binding("G", "bottom", "Bottom", show=False),
        Binding("enter", "open", "Open"), Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        *[Binding(key, f"view('{key}')", name, show=False) for key, (name, _) in VIEWS.items()],
        *ACTION_BINDINGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.rows: list[dict[str, Any]] = []
        self.clocks: dict[int, Text] = {}  # SLA time left, by ticket
        self.shown_columns: list[tuple[str, int]] = []
        self.widest: dict[str, int] = {}  # each column's widest cell among the rows shown
        self.more = False
        self.seen = None  # the events sequence last loaded at
        self.listener: Listener | None = None  # where the desk tells of changes (live.py); else a poll
        self.told_from: int | None = None  # the events sequence as of when the listener began
        self.generation = 0  # loads for an older filter or view are dropped when they arrive

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: p:P1 q:dba a:me s:waiting service:x t:tag all words...", id="filter")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="queue")
        yield Label("", id="status")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self.app.sla_config()  # read in this thread, before the workers need it
        self._columns(table, layout(self._width(table), {}, "sort:queue" in self.filter_text.split()))
        table.focus()
        self.load()
        if self.app.settings.store().tickets.pushes_changes:  # PostgreSQL: told of each change, no poll
            self.listener = Listener(self.app, self.load, self._listening)
            self.listener.start()
        else:
            self.set_interval(self.app.poll, self.check_changes)

    def on_unmount(self) -> None:
        if self.listener is not None:
            self.listener.stop()

    # loading

    def filters(self) -> dict[str, Any]:
        return filters_of(self.filter_text, self.app.actor)

    def load(self, keep: int | None = None) -> None:
        """(Re)load the first pages: as many rows as are shown, at least one page."""
        try:
            args = self.filters()
        except SdeskError as e:
            self.app.report(e, title="filter")
            return
        self._load(args, max(len(self.rows), self.app.page), keep, None, self.generation)

    def reset(self) -> None:
        """A new filter or view: what is loaded belongs to the old one."""
        self.generation += 1
        self.rows = []
        self.more = False

    @work(thread=True, exclusive=True, group="queue")
    @reported()
    def _load(self, args: dict[str, Any], limit: int, keep: int | None, after: tuple[str, int] | None,
              generation: int) -> None:
        breaching = args.pop("sla:breaching", False)
        sla = self.app.sla_config()
        with self.app.store() as store:
            seen = store.tickets.last_event_id()
            may = _may_act(store, self.app.actor) if self.app.may_act is None else None
            paged = not breaching and "sort" not in args and args.get("open_only", True) and not args.get("statuses")
            if breaching:
                rows = _breaching(store, sla, limit)
            else:
                rows = store.tickets.list(**args, suppressed=False, limit=limit + 1,
                                  **({"after": after} if after and paged else {}))
            clocks = _sla_left(store, sla, rows[:limit])
        more = len(rows) > limit
        self.app.call_from_thread(self._show, rows[:limit], clocks, more, paged, keep, after is not None,
                                  seen, generation, may)

    def _show(self, rows: list[dict[str, Any]], clocks: dict[int, Text], more: bool, paged: bool, keep: int | None,
              append: bool, seen: int, generation: int, may: bool | None = None) -> None:
        if may is not None and self.app.may_act is None:
            self.app.may_act = may
            self.refresh_bindings()  # the key bar shows the ticket keys, or not
        if generation != self.generation:
            return  # loaded for a filter or view no longer shown
        table = self.query_one(DataTable)
        current = keep if keep is not None else self.current_id()
        index = table.cursor_row
        if not append:
            self.rows, self.clocks = [], {}
        self.rows += rows
        self.clocks.update(clocks)
        self._draw(table, rows if append else None)
        self.more = more and paged
        self.seen = seen
        if self.told_from is not None and seen < self.told_from:
            self.load()  # read before the listener began: a change it was not told of may be missing
        if current is not None and not append and self.rows:
            # The same ticket; if it left the queue, the row where it was.
            at = next((i for i, t in enumerate(self.rows) if t["id"] == current), min(index, len(self.rows) - 1))
            table.move_cursor(row=at)
        view = next((name for key, (name, text) in VIEWS.items() if text == self.filter_text), None)
        tail = " (more below)" if self.more else f" (the first {len(self.rows)}: narrow the filter)" if more else ""
        self.query_one("#status", Label).update(Text(controls(  # the filter and the actor are typed text
            f"{view or 'filter: ' + self.filter_text} · {plural(len(self.rows), 'ticket')}{tail} · as {self.app.actor}",
            one_line=True)))

    # drawing: the columns share the width (columns.py), laid out again when it or the rows change

    def _width(self, table: DataTable) -> int:
        """The cells' width: the screen's (the table spans it), less a vertical scroll bar (kept
        free even before one shows, so that a long queue does not push the last column off)."""
        return (self.size.width or self.app.size.width) - table.styles.scrollbar_size_vertical

    def _columns(self, table: DataTable, columns: list[tuple[str, int]]) -> None:
        table.clear(columns=True)
        for name, width in columns:
            table.add_column(name, width=width, key=name)
        self.shown_columns = columns

    def _cells(self, t: dict[str, Any], now: Any) -> dict[str, Any]:
        """A row's cells, every one a Text (a str cell is markup to a DataTable) but the ID we made."""
        def cut(value: Any) -> Text:
            return Text(controls(value or "", one_line=True), no_wrap=True, overflow="ellipsis")

        return {"ID": ref(t["id"]), "PRI": Text(t["priority"], style=PRIORITY_STYLE.get(t["priority"], "")),
                "STATUS": Text(t["status"], style=STATUS_STYLE.get(t["status"], "")), "QUEUE": cut(t["queue"]),
                "TITLE": cut(t["title"]), "SERVICE": cut(t["service"]), "ASSIGNEE": cut(t["assignee"]),
                "AGE": Text(age(t["created_at"], now)), "SLA": self.clocks.get(t["id"]) or Text("")}

    def _draw(self, table: DataTable, added: list[dict[str, Any]] | None = None) -> None:
        """Lay the rows out: all of them again when the columns change or `added` is None, else
        only the page just loaded (appended; the widths so far are kept, not measured again)."""
        from ..domain import clock

        now = clock.now()
        cells = [self._cells(t, now) for t in (self.rows if added is None else added)]
        if added is None:
            self.widest = {}
        for row in cells:
            for name, text in row.items():
                self.widest[name] = max(self.widest.get(name, 0), len(text) if isinstance(text, str) else text.cell_len)
        columns = layout(self._width(table), self.widest, "sort:queue" in self.filter_text.split())
        at = None
        if columns != self.shown_columns:
            if added is not None:  # a page appended changed the columns: every row again, the cursor kept
                at = table.cursor_row
                cells = [self._cells(t, now) for t in self.rows]
            self._columns(table, columns)
        elif added is None:
            table.clear()
        names = [name for name, _ in columns]
        for row in cells:
            table.add_row(*(row[name] for name in names))
        if at is not None:
            table.move_cursor(row=at)

    def on_resize(self, event: Any) -> None:
        table = self.query_one(DataTable)
        at = table.cursor_row
        self._draw(table)
        table.move_cursor(row=at)

    def _listening(self, last: int) -> None:
        """The listener is told of changes from now on (again, after a lost connection): one it was
        not told of (before it listened) is read now, or once the load under way has landed."""
        self.told_from = last
        if self.seen is not None and self.seen < last:
            self.load()

    def check_changes(self) -> None:
        """Poll (SQLite): reload when the events table grew."""
        self._check()

    @work(thread=True, exclusive=True, group="poll")
    def _check(self) -> None:
        try:
            with self.app.store() as store:
                last = store.tickets.last_event_id()
        except Exception:  # a locked or busy database: the next poll tries again
            return
        if self.seen is not None and last != self.seen:
            self.app.call_from_thread(self.load)

    # moving

    def current_id(self) -> int | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]["id"]

    @on(DataTable.RowHighlighted)
    def _near_the_end(self, event: DataTable.RowHighlighted) -> None:
        if self.more and self.rows and event.cursor_row >= len(self.rows) - 10:
            self.more = False
            last = self.rows[-1]
            try:
                args = self.filters()
            except SdeskError as e:  # (the filter was read when it was set: not seen)
                self.app.report(e, title="filter")
                return
            self._load(args, self.app.page, None, (last["priority"], last["id"]), self.generation)

    def action_cursor(self, step: int) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=max(0, table.cursor_row + step))

    def action_top(self) -> None:
        self.query_one(DataTable).move_cursor(row=0)

    def action_bottom(self) -> None:
        self.query_one(DataTable).move_cursor(row=max(0, len(self.rows) - 1))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        ticket = self.current_id()
        if ticket is not None:
            self.app.open_ticket(ticket, lambda _: self.load())

    # filtering

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.filter_text
        box.focus()

    def action_clear_filter(self) -> None:
        self.filter_text = ""
        self.query_one("#filter", Input).remove_class("shown")
        self.query_one(DataTable).focus()
        self.reset()
        self.load()

    @on(Input.Submitted, "#filter")
    def _filter(self, event: Input.Submitted) -> None:
        try:
            filters_of(event.value, self.app.actor)  # the same reading the load makes
        except SdeskError as e:
            self.app.report(e, title="filter")  # nothing changes
            return
        self.filter_text = event.value.strip()
        event.input.remove_class("shown")
        self.query_one(DataTable).focus()
        self.reset()
        self.load()

    def action_view(self, key: str) -> None:
        self.filter_text = VIEWS[key][1]
        self.reset()
        self.load()

    def action_ticket_action(self, action: str) -> None:
        ticket = self.current_id()
        if ticket is None:
            self.app.notify("no ticket selected", severity="warning")
            return
        ticket_action(self.app, ticket, action, self.load)


SPECIAL = ("sort:queue", "a:-", "sla:breaching")  # view words the filter language does not have


def filters_of(text: str, me: str) -> dict[str, Any]:
    """Store.list's arguments for the filter bar's text and the views' words."""
    from .filters import parse

    words = text.split()
    args = parse(" ".join(w for w in words if w not in SPECIAL), me)
    if "sort:queue" in words:
        args["sort"] = "queue,priority,id"
    if "a:-" in words:
        args["unassigned"] = True
    return args | ({"sla:breaching": True} if "sla:breaching" in words else {})


def _may_act(store: Any, actor: str) -> bool:
    """Whether `actor` is an agent (or more) on the desk or on some queue of it."""
    from ..domain.roles import RANK

    access = store.users.access(actor)
    return any(RANK[role] >= RANK["agent"] for role in (access.role, *access.queues.values()))


def _sla_left(store: Any, sla: Any, rows: list[dict[str, Any]], detail: bool = False) -> dict[int, Text]:
    """Time left on each open ticket's most urgent running SLA target (red when breached);
    with `detail`, every target of its policy, used and left. The clocks are sla.assess's, from
    the same events as `sdesk sla` (status changes and assignments), so both show one time."""
    from ..domain import clock
    from ..domain.sla import assess, row

    rows = [t for t in rows if t["status"] not in ("resolved", "closed")]
    if not sla.policies or not rows:
        return {}
    changes = store.sla.sla_changes([t["id"] for t in rows])
    out = {}
    for t, policy, targets in assess(sla, ((t, changes.get(t["id"], [])) for t in rows), clock.now()):
        r = row(t, policy, targets)
        style = {"breached": "bold red", "at_risk": "yellow"}.get(r["state"], "")
        if detail:
            parts = [f"{name} {x.state} ({_short(int(x.used.total_seconds()))} of {_short(int(x.target.total_seconds()))})"
                     for name, x in targets.items()]
            out[t["id"]] = Text(controls(f"SLA {policy.name}: " + ", ".join(parts), one_line=True), style=style)
            continue
        left = r["left_seconds"]
        out[t["id"]] = Text(("-" if left < 0 else "") + _short(abs(left)), style=style)
    return out


def _short(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _breaching(store: Any, sla: Any, limit: int) -> list[dict[str, Any]]:
    """Open tickets whose SLA target is breached or at risk, the least time left first."""
    from ..domain import clock
    from ..domain.sla import assess, pauses, row

    assessed = assess(sla, store.sla.sla_tickets(pauses(sla)), clock.now())
    found = sorted((row(t, policy, targets) for t, policy, targets in assessed), key=lambda r: r["left_seconds"])
    urgent = [r["id"] for r in found if r["state"] in ("breached", "at_risk")][:limit]
    return [t for t in (store.tickets.get(ticket_id=i) for i in urgent) if t is not None]


# -- a ticket ---------------------------------------------------------------------------------------


class TicketScreen(Page):
    """One ticket as `sdesk show` prints it, with its SLA clocks, alerts, `why` and runbook runs.
    Made once and shown again for each ticket (SdeskApp.open_ticket)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), *LINE_BINDINGS, *ACTION_BINDINGS]
    PAGE_ID = "ticket"

    def __init__(self, ticket_id: int):
        super().__init__()
        self.ticket_id = ticket_id
        self.ready: Any = None  # the ticket's data, read before the screen is shown

    def on_mount(self) -> None:
        pass  # drawn by on_screen_resume, each time

    def on_screen_resume(self) -> None:
        if self.ready is None:  # back from a screen opened from here: read it again
            self.load()
            return
        data, self.ready = self.ready, None
        self.query_one(VerticalScroll).scroll_home(animate=False)
        self._show(data)

    def fetch(self, store: Any) -> Any:
        return ticket_data(store, self.ticket_id, self.app.sla_config())

    def _show(self, data: Any) -> None:
        if data[0]["id"] == self.ticket_id:  # not a late read of the ticket shown before
            super()._show(data)

    def draw(self, data: Any) -> None:
        from ..render import console, print_ticket, print_why, text_line

        t, events, children, context, linked, why, runs, alerts, sla = data
        out = console()  # the page's, while it draws
        if sla:
            out.print(sla)
        print_ticket(t, events, children, context, linked)
        if alerts:
            out.print()
            out.print(text_line("alerts: " + "; ".join(f"{ref(a['ticket_id'])} {a['source']} {a['status']} x{a['count']} "
                                                       f"(last {a['last']})" for a in alerts)))
        if why.get("triage") or why.get("correlation") or why.get("suppressed"):
            out.print()
            print_why(why)
        if runs:
            out.print()
            out.print(text_line("runbook runs: " + ", ".join(f"{r['id']} {r['runbook']} {r['status']}" for r in runs)))
        self.title = controls(f"{ref(t['id'])} {t['title']}", one_line=True)

    def action_ticket_action(self, action: str) -> None:
        ticket_action(self.app, self.ticket_id, action, self.load)


def ticket_data(store: Any, ticket_id: int, sla: Any) -> tuple:
    """What the ticket screen shows, read in one go (TicketScreen.draw)."""
    from ..services.semantic import near

    t = store.tickets.get_or_raise(ticket_id=ticket_id)
    children = store.tickets.children(ticket_id=ticket_id)
    context, alike = store.tickets.context(ticket_id=ticket_id), near(store, ticket_id)
    if alike:  # resolved tickets and articles alike in meaning (the semantic index), under context
        context = {**(context or {}), "alike": alike}
    return (t, store.tickets.events(ticket_id=ticket_id), children, context,
            store.kb.kb_linked(ticket_id), store.triage.why(ticket_id=ticket_id), store.runbooks.runs(ticket_id=ticket_id),
            store.metrics.ticket_alerts([ticket_id, *(c["id"] for c in children)]),
            _sla_left(store, sla, [t], detail=True).get(t["id"]))


# -- actions ----------------------------------------------------------------------------------------


def ticket_action(app: SdeskApp, ticket: int, action: str, refresh: Callable[[], None]) -> None:
    """One key's action on a ticket: at once, or after a modal asks what it needs."""
    actor = app.actor
    name = ref(ticket)
    if app.may_act is False:  # a viewer: refused (and recorded) at once, not after a form is filled in
        def again() -> None:
            app.may_act = None  # allowed after all: the role changed since the queue read it
            refresh()

        app.act(lambda s: s.require(actor, need="agent", what=f"{action} on {name}"), "your role changed: press the key again",
                again)
        return
    if action in ("ack", "start", "reopen"):
        app.act(lambda s: s.tickets.move(ticket_id=ticket, action=action, actor=actor), f"{name}: {action}", refresh)
        return
    if action == "escalate":
        def escalate(s):
            s.oncall.escalate(ticket_id=ticket, config=app.settings.oncall_config(), actor=actor)

        app.act(escalate, f"{name}: escalated (the next tick pages)", refresh)
        return
    if action == "runbook":
        _runbooks_for(app, ticket)
        return
    if action == "priority":
        app.push_screen(PickModal(f"Priority of {name}", list(PRIORITIES.items())),
                        lambda values: values and app.act(_write(app, ticket, action, values), f"{name}: priority "
                                                          f"{values[0]}", refresh))
        return
    prompts = {
        "comment": ("Internal note (never sent) on", ["text"]),
        "reply": ("Reply to the requester (sent to them and the watchers) on", ["text"]),
        "assign": ("Assign to", ["user"]),
        "resolve": ("Resolve", ["what fixed it", "code (optional)", "draft a KB article from it? y/N"]),
        "queue": ("Move to queue", ["queue"]),
        "link": ("Link under parent", ["parent ticket (42 or SD-42)"]),
        "csat": ("CSAT", ["score 1-5"]),
        "decide": ("Approve or reject the request", ["approve or reject", "reason (needed to reject)"]),
    }
    title, fields = prompts[action]

    def submitted(values: list[str] | None) -> None:
        if values is None:
            return
        try:
            what = _write(app, ticket, action, values)
        except SdeskError as e:
            app.report(e, title="not done")
            return
        app.act(what, f"{name}: {action} done", refresh)

    people = _people(app) if action == "assign" else []
    if people:
        app.push_screen(PickModal(f"{title} {name}", people), submitted)
    else:
        app.push_screen(Modal(f"{title} {name}", fields), submitted)


def _write(app: SdeskApp, ticket: int, action: str, values: list[str]) -> Callable[[Any], Any]:
    """The store call for a modal's values, checked first (BadInput: nothing is sent)."""
    from ..domain.lifecycle import Priority, parse_id
    from ..errors import BadInput

    actor = app.actor
    first = values[0].strip()
    if not first:
        raise BadInput(f"{action}: a value is required")
    if action == "comment":
        return lambda s: s.tickets.comment(ticket_id=ticket, text=first, actor=actor)
    if action == "reply":
        return lambda s: s.tickets.reply(ticket_id=ticket, text=first, actor=actor)
    if action == "assign":  # from the picker when oncall.yaml has teams; anyone's name when it has none
        return lambda s: s.tickets.move(ticket_id=ticket, action="assign", assignee=first, actor=actor)
    if action == "resolve":
        code = values[1].strip() or None
        draft = values[2].strip().lower()
        if draft not in ("", "y", "yes", "n", "no"):
            raise BadInput(f"resolve: draft a KB article? answer y or n, not {values[2].strip()!r}")
        if draft.startswith("y"):
            return lambda s: s.kb.resolve_with_draft(ticket, resolution=first, code=code, actor=actor)
        return lambda s: s.tickets.move(ticket_id=ticket, action="resolve", resolution=first, code=code, actor=actor)
    if action == "priority":
        if first.upper() not in Priority.__members__:
            raise BadInput(f"priority: {first!r} is not P1-P4")
        return lambda s: s.tickets.update(ticket_id=ticket, changes={"priority": first.upper()}, actor=actor)
    if action == "queue":
        return lambda s: s.tickets.update(ticket_id=ticket, changes={"queue": first}, actor=actor)
    if action == "link":
        parent = parse_id(first)
        return lambda s: s.tickets.link(ticket_id=ticket, parent_id=parent, actor=actor)
    if action == "decide":  # a catalog request's approval: its fulfilment runs by serve or the next tick
        if first.lower() not in ("approve", "reject", "a", "r"):
            raise BadInput(f"decide: answer approve or reject, not {first!r}")
        approve, reason = first.lower().startswith("a"), values[1].strip() or None
        return lambda s: s.requests.decide(ticket, approver=actor, approve=approve, reason=reason, actor=actor)
    if not (first.isascii() and first.isdigit()):
        raise BadInput(f"csat: {first!r} is not a score from 1 to 5")
    return lambda s: s.metrics.csat_record(ticket_id=ticket, score=int(first), comment=None, actor=actor)


PRIORITIES = {"P1": "critical", "P2": "high", "P3": "moderate", "P4": "low"}


def _runbooks_for(app: SdeskApp, ticket: int) -> None:
    """`R`: a list of the runbooks whose applies_to the ticket meets (read in a worker), or a
    notification saying why there is none. The one picked opens on its dry run."""
    app.run_worker(lambda: _read_runbooks(app, ticket), thread=True, group="runbooks")


def _read_runbooks(app: SdeskApp, ticket: int) -> None:
    from ..domain import clock
    from ..triage import values_of
    from ..validated import load_runbooks as load_folder

    folder = app.settings.runbooks_folder()
    runbooks, broken = load_folder(folder)  # read again each time: runbooks are edited while the TUI runs
    try:
        with app.store() as store:
            t = store.tickets.get_or_raise(ticket_id=ticket)
            values = values_of(t, {}, store.tickets.context(ticket_id=ticket) or {}, clock.now())
    except SdeskError as e:
        app.report(e, title="runbook")
        return
    fits = [(name, rb.description) for name, rb in sorted(runbooks.items())
            if rb.applies is None or rb.applies(values)]
    if not fits:
        why = (f"none of the {plural(len(runbooks), 'runbook')} in {folder} applies to it" if runbooks
               else f"no runbooks in {folder}" if folder else "no desk config (--config DIR), so no runbooks")
        broken_note = f"; {plural(len(broken), 'runbook file')} do not load (sdesk runbook list)" if broken else ""
        app.call_from_thread(app.notify, f"{ref(ticket)}: {why}{broken_note}", severity="warning", title="runbook")
        return

    def picked(values: list[str] | None) -> None:
        from .screens import RunbookScreen

        if values:
            app.push_screen(RunbookScreen(ticket, values[0]))

    app.call_from_thread(app.push_screen, PickModal(f"Run a runbook on {ref(ticket)} (its dry run first)", fits),
                         picked)


def _people(app: SdeskApp) -> list[tuple[str, str]]:
    """(user, what they are) for the people oncall.yaml knows, whoever is on call now first
    (empty: no teams, and anyone may be assigned)."""
    from ..domain import clock

    try:
        oncall = app.settings.oncall_config()
        with app.store() as store:
            now = store.oncall.on_call_now(oncall, schedules=list(oncall.schedules.values()), when=clock.now())
    except SdeskError:
        return []
    holding = {r["user"]: r["schedule"] for r in now if r["user"]}
    teams: dict[str, list[str]] = {}
    for team in oncall.teams.values():
        for member in team.members:
            teams.setdefault(member, []).append(team.name)
    first = [(u, f"on call now ({holding[u]})") for u in sorted(holding) if u in teams]
    rest = [(u, ", ".join(teams[u])) for u in sorted(teams) if u not in holding]
    return first + rest


class Modal(ModalScreen[list[str] | None]):
    """Inputs for an action: enter submits, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[str]):
        super().__init__()
        self.heading = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(controls(self.heading, one_line=True)))
            for i, field in enumerate(self.fields):
                yield Input(placeholder=field, id=f"f{i}")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
            return
        self.dismiss([i.value for i in inputs])

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickModal(Modal):
    """Pick one of a list (a person, on call first; a priority; a runbook): enter picks, escape
    cancels. Only what is listed can be picked."""

    def __init__(self, title: str, people: list[tuple[str, str]]):
        super().__init__(title, [])
        self.people = people

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList

        with Vertical():
            yield Label(Text(controls(self.heading, one_line=True)))
            yield OptionList(*(Text(controls(f"{user}  ·  {what}" if what else user, one_line=True))
                               for user, what in self.people), id="people")

    def on_mount(self) -> None:
        self.query_one("#people").focus()

    def on_option_list_option_selected(self, event: Any) -> None:
        self.dismiss([self.people[event.option_index][0]])


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        keys = [("j / k, arrows", "move (on a ticket: scroll)"), ("g / G", "top / bottom"),
                ("enter", "open the ticket"),
                ("escape", "back"), ("/", "filter (p:P1 q:dba a:me s:waiting service:x t:tag all, words)"),
                *[(key, f"view: {name}") for key, (name, _) in VIEWS.items()],
                ("a", "acknowledge"), ("s", "start"), ("c", "internal note (never sent)"),
                ("m", "reply to the requester (sent)"), ("A", "assign"), ("r", "resolve"),
                ("o", "reopen"), ("P", "priority (a list)"), ("Q", "move to a queue"), ("e", "escalate"),
                ("L", "link under a parent"),
                ("C", "record CSAT"), ("R", "run a runbook that applies (dry run first, y for real)"),
                ("V", "approve or reject a catalog request waiting for you"),
                ("K", "knowledge base"),
                ("O", "on call now"), ("D", "dashboard"), ("?", "this help"), ("q", "quit")]
        with Vertical():
            yield Label("sdesk keys")
            yield Static("\n".join(f"{k:<16} {what}" for k, what in keys))
