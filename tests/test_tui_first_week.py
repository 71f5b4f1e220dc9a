"""The TUI on the terminals people have (issue 19, item 19): the queue at 60-200 columns, the
by-queue view, scrolling a ticket, keys by role, pickers for runbooks and priorities, and the
on-call screen without a config. Driven by Textual's Pilot, checked on the drawn screen."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from test_tui import notified, pilot_test, settle, settle_until, status_of, tickets
from textual.widgets import DataTable

from sdesk.intake.service import Intake
from sdesk.store import Store
from sdesk.tui.app import make_app
from sdesk.tui.columns import PAD, TITLE_MIN, important, layout

IMPORTANT = ("ID", "PRI", "STATUS", "ASSIGNEE", "AGE", "SLA")


def screen_lines(app) -> list[str]:
    """The screen as drawn, one string per terminal line (exactly the terminal's width)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


@given(width=st.integers(60, 200), by_queue=st.booleans(),
       wanted=st.fixed_dictionaries({"ID": st.integers(4, 9), "STATUS": st.integers(3, 12), "ASSIGNEE": st.integers(0, 40),
                                     "QUEUE": st.integers(0, 40), "TITLE": st.integers(0, 300),
                                     "SERVICE": st.integers(0, 40), "AGE": st.integers(2, 4), "SLA": st.integers(0, 5)}))
@example(width=60, by_queue=True, wanted={"ID": 9, "STATUS": 12, "ASSIGNEE": 40, "QUEUE": 40, "TITLE": 300,
                                          "SERVICE": 40, "AGE": 4, "SLA": 5})  # the widest a desk has
def test_every_width_from_60_to_200_keeps_the_important_columns_and_fits(width, by_queue, wanted):
    columns = dict(layout(width, wanted, by_queue))
    assert sum(w + PAD for w in columns.values()) <= width  # nothing runs off the right edge
    for name in important(by_queue):
        floor = max(len(name), min(wanted.get(name, 0), {"ASSIGNEE": 8, "QUEUE": 5}.get(name, 99)))
        assert columns[name] >= floor, (name, columns)  # whole (or, below ~70 columns, cut to a few letters)
    if "SERVICE" in columns:  # the title shrinks first; SERVICE drops before it would go below TITLE_MIN
        assert columns["TITLE"] >= min(TITLE_MIN, max(5, wanted["TITLE"]))
    if not by_queue or width >= 66:
        assert columns["TITLE"] >= 1  # some of the title
    if width >= (90 if by_queue else 80):  # whole, with a title worth reading
        assert columns["TITLE"] >= min(TITLE_MIN, max(5, wanted["TITLE"]))
        assert all(columns[n] >= max(len(n), min(wanted.get(n, 0), 12)) for n in important(by_queue))


def desk(db_path):
    """Tickets with everything long: a title of 100 characters, services and assignees of 12."""
    with Store(db_path) as store:
        ids = [i for i, _ in Intake(store).intake([
            {"title": f"ticket {i} " + "a very long title that goes on " * 4, "kind": "incident", "priority": p,
             "service": "checkout-api", "queue": q} for i, (p, q) in enumerate(
                [("P1", "payments"), ("P2", "dba"), ("P3", "frontend-web")])], actor="t", source="cli")]
        store.tickets.move(ticket_id=ids[0], action="assign", assignee="bartholomew", actor="t")
        store.tickets.move(ticket_id=ids[0], action="ack", actor="bartholomew")
    return ids


SLA = "policies:\n  - {name: all, priority: P1, respond: 15m, resolve: 4h}\n" \
      "  - {name: rest, priority: P2, respond: 1h, resolve: 1d}\n  - {name: low, priority: P3, respond: 4h, resolve: 3d}\n"


@pilot_test
async def test_the_queue_shows_sla_age_and_assignee_at_every_width(db_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-02T10:00:00Z")  # ages and clocks do not move while it runs
    (tmp_path / "config" / "sla.yaml").write_text(SLA)
    ids = desk(db_path)
    app = make_app(db_path, "alice", tmp_path / "config", poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 3)
        table = app.screen.query_one(DataTable)
        # Each row's SLA, age and assignee as the table holds them: they must be on the screen.
        values = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(3)}
        for width in [*sorted({80, 100, 120, *range(60, 201, 10)}), 120, 90, 70]:  # wider, then narrower again
            await pilot.resize_terminal(width, 30)
            await pilot.pause(0.05)
            lines = screen_lines(app)
            header = next(line for line in lines if line.lstrip().startswith("ID "))
            for name in IMPORTANT:
                assert f" {name} " in header + " ", (width, name, header)
            assert table.max_scroll_x == 0, width  # no column beyond the right edge
            if width >= 100:
                assert " SERVICE " in header, (width, header)
            for ticket in ids:
                line = next(line for line in lines if line.lstrip().startswith(f"SD-{ticket} "))
                cells = values[f"SD-{ticket}"]
                sla, age = cells[-1].plain, cells[-2].plain
                assert sla and re.search(rf" {age} +{sla}$", line.rstrip()), (width, line)  # the last two, whole
                if ticket == ids[0]:
                    assert ("bartholomew" if width >= 70 else "bartho") in line, (width, line)
                assert "ticket" in line  # some of the title, always


@pilot_test
async def test_view_5_shows_the_queue_column_grouped_by_queue(db_path):
    ids = desk(db_path)
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 3)
        assert " QUEUE " not in screen_lines(app)[1]
        await pilot.press("5")
        await settle(pilot, app, 3)
        header = next(line for line in screen_lines(app) if line.lstrip().startswith("ID "))
        assert " QUEUE " in header
        table = app.screen.query_one(DataTable)
        queue = list(table.columns).index("QUEUE")
        assert [table.get_row_at(i)[queue].plain for i in range(3)] == ["dba", "frontend-web", "payments"]
        assert [table.get_row_at(i)[0] for i in range(3)] == [f"SD-{ids[1]}", f"SD-{ids[2]}", f"SD-{ids[0]}"]
        assert any("by queue · 3 tickets" in line for line in screen_lines(app))
        await pilot.press("1")  # back to the open queue: no queue column
        await settle(pilot, app, 3)
        assert "QUEUE" not in list(table.columns)


@pilot_test
async def test_j_and_k_scroll_the_ticket_screen(db_path):
    from textual.containers import VerticalScroll

    from sdesk.tui.app import TicketScreen

    [ticket] = tickets(db_path, 1)
    with Store(db_path) as store:  # a timeline three screens long
        for i in range(60):
            store.tickets.comment(ticket_id=ticket, text=f"note {i}", actor="t")
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, TicketScreen)
        scroll = app.screen.query_one(VerticalScroll)
        assert scroll.max_scroll_y > 10 and scroll.scroll_y == 0
        await pilot.press(*"jjjjj")
        await pilot.pause(0.1)
        assert scroll.scroll_y == 5
        await pilot.press("k", "k")
        await pilot.pause(0.1)
        assert scroll.scroll_y == 3


def key_bar(app) -> str:
    from sdesk.tui.keybar import KeyBar

    return str(app.screen.query_one(KeyBar).render())


@pilot_test
async def test_a_viewer_is_not_offered_the_keys_of_an_agent(db_path):
    from sdesk.tui.app import ACTION_BINDINGS, QueueScreen, TicketScreen

    [ticket] = tickets(db_path, 1)
    with Store(db_path) as store:
        store.users.user_add("root", role="admin", team=None, queue=None, actor="root")
        store.users.user_add("vic", role="viewer", team=None, queue=None, actor="root")
        store.users.user_add("bob", role="agent", team=None, queue=None, actor="root")
    before = status_of(db_path, ticket)
    app = make_app(db_path, "vic", poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        keys = key_bar(app)
        for binding in ACTION_BINDINGS:  # ack, assign, resolve, ... none offered
            assert f"{binding.key} {binding.description}" not in keys, keys
        assert "/ Filter" in keys and "q Quit" in keys and "⏎ Open" in keys
        for key in ("r", "A", "a"):  # pressed anyway: one refusal each, no form to fill in
            await pilot.press(key)
            await settle(pilot, app)
            assert isinstance(app.screen, QueueScreen)
        await settle_until(pilot, app, lambda: len(app._notifications) >= 3, "three refusals")
        messages = [n.message for n in app._notifications]
        assert len(messages) == 3 and all("vic is a viewer" in m for m in messages), messages
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, TicketScreen) and "r Resolve" not in key_bar(app) and "j Down" in key_bar(app)
    assert status_of(db_path, ticket) == before
    app = make_app(db_path, "bob", poll=5)  # an agent is offered them all
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        assert all(f"{b.key} {b.description}" in key_bar(app) for b in ACTION_BINDINGS), key_bar(app)


@pilot_test
async def test_P_picks_a_priority_from_a_list(db_path):
    from sdesk.tui.app import PickModal

    [ticket] = tickets(db_path, 1, priority="P1")
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("P")
        assert isinstance(app.screen, PickModal)
        assert [value for value, _ in app.screen.people] == ["P1", "P2", "P3", "P4"]
        await pilot.press("down", "down", "enter")
        await settle(pilot, app)
        assert status_of(db_path, ticket)["priority"] == "P3"


def runbooks(config):
    folder = config / "runbooks"
    folder.mkdir(parents=True)
    (folder / "any.yaml").write_text("description: Say hello\nsteps:\n  - run: [echo, hello]\n")
    (folder / "disk.yaml").write_text("applies_to: {labels.alertname: DiskFull}\nsteps:\n  - run: [echo, disk]\n")
    (folder / "other.yaml").write_text("applies_to: {labels.alertname: Other}\nsteps:\n  - run: [echo, other]\n")
    # Applies to every DiskFull, but needs the alert's instance, which the ticket lacks: refused.
    (folder / "needs-host.yaml").write_text(
        "applies_to: {labels.alertname: DiskFull}\nparams:\n  host: {from: labels.instance}\n"
        "steps:\n  - run: [echo, '{host}']\n")


@pilot_test
async def test_R_picks_from_the_runbooks_that_apply_and_a_refused_run_leaves_no_screen(db_path, tmp_path):
    from sdesk.tui.app import PickModal, QueueScreen
    from sdesk.tui.screens import RunbookScreen

    config = tmp_path / "config"
    runbooks(config)
    with Store(db_path) as store:
        [(disk, _)] = Intake(store).intake([{"title": "disk full", "kind": "incident", "priority": "P1", "labels": {"alertname": "DiskFull"}}],
                                   actor="t", source="cli")
    [plain] = tickets(db_path, 1, priority="P2")
    app = make_app(db_path, "alice", config, poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("R")
        await settle(pilot, app)
        assert isinstance(app.screen, PickModal)
        assert [name for name, _ in app.screen.people] == ["any", "disk", "needs-host"]
        await pilot.press("down", "down", "enter")  # needs-host: its dry run is refused
        await settle(pilot, app)
        assert isinstance(app.screen, QueueScreen)  # no empty "run it for real" screen left behind
        await notified(pilot, app, "parameter host: no value")
        await pilot.press("j", "R")  # the plain ticket: only the runbook for any ticket
        await settle(pilot, app)
        assert [name for name, _ in app.screen.people] == ["any"]
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, RunbookScreen) and "y Run it for real" in key_bar(app)
    with Store(db_path) as store:
        assert [r["runbook"] for r in store.runbooks.runs(ticket_id=plain)] == ["any"]
        assert store.runbooks.runs(ticket_id=disk) == []


@pilot_test
async def test_R_with_no_runbook_that_applies_says_so(db_path, tmp_path):
    from sdesk.tui.app import QueueScreen

    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    (config / "runbooks" / "disk.yaml").write_text("applies_to: {labels.alertname: DiskFull}\nsteps:\n  - run: [echo]\n")
    tickets(db_path, 1)
    app = make_app(db_path, "alice", config, poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("R")
        await settle(pilot, app)
        assert isinstance(app.screen, QueueScreen)
        await notified(pilot, app, "none of the 1 runbook in")


@pilot_test
async def test_O_without_schedules_says_so_at_once(db_path, tmp_path):
    from sdesk.tui.app import QueueScreen

    tickets(db_path, 1)
    for config in (None, tmp_path / "config"):
        app = make_app(db_path, "alice", config, poll=5)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app, 1)
            await pilot.press("O")  # no wait for a worker: the notice is there when the key is handled
            assert isinstance(app.screen, QueueScreen)
            assert [n.message for n in app._notifications] == [
                f"no on-call schedules: add oncall.yaml to {config}" if config else
                "no desk config, so no on-call schedules: start the TUI with --config DIR"]


@pilot_test
async def test_the_sla_column_agrees_with_sdesk_sla(db_path, tmp_path, monkeypatch, cli):
    """The TUI's clocks read what `sdesk sla` reads: a ticket that waited and then was assigned
    (an `assigned` event, not a status change) runs again from the assignment."""
    from sdesk.tui.app import _short

    (tmp_path / "config" / "sla.yaml").write_text(SLA)
    monkeypatch.setenv("SDESK_NOW", "2026-11-02T09:00:00Z")
    waited, plain, late = tickets(db_path, 3, priority="P2")
    with Store(db_path) as store:
        store.tickets.move(ticket_id=waited, action="ack", actor="t")
        store.tickets.move(ticket_id=waited, action="wait", actor="t")
        monkeypatch.setenv("SDESK_NOW", "2026-11-02T10:00:00Z")
        store.tickets.move(ticket_id=waited, action="assign", assignee="bob", actor="t")  # the clock runs again
        store.tickets.move(ticket_id=late, action="assign", assignee="bob", actor="t")
    monkeypatch.setenv("SDESK_NOW", "2026-11-02T13:00:00Z")
    expected = {f"SD-{r['id']}": ("-" if r["left_seconds"] < 0 else "") + _short(abs(r["left_seconds"]))
                for r in cli.json("sla", "--config", str(tmp_path / "config"))}
    assert len(set(expected.values())) == 2  # the one that waited has an hour more
    app = make_app(db_path, "alice", tmp_path / "config", poll=5)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app, 3)
        table = app.screen.query_one(DataTable)
        sla = list(table.columns).index("SLA")
        assert {table.get_row_at(i)[0]: table.get_row_at(i)[sla].plain for i in range(3)} == expected


@pilot_test
async def test_the_key_bar_never_splits_a_key_from_its_label(db_path):
    from textual.binding import Binding

    from sdesk.tui.app import QueueScreen, SdeskApp

    tickets(db_path, 1)
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(80, 30)) as pilot:
        await settle(pilot, app, 1)
        assert any("open queue · 1 ticket · as alice" in line for line in screen_lines(app))  # not "1 tickets"
        for width in (60, 80, 100, 120):
            await pilot.resize_terminal(width, 30)
            await pilot.pause(0.05)
            lines = screen_lines(app)
            for b in Binding.make_bindings([*SdeskApp.BINDINGS, *QueueScreen.BINDINGS]):
                shown = f"{app.get_key_display(b)} {b.description}"
                assert any(shown in line for line in lines), (width, shown)


@pilot_test
async def test_a_page_that_widens_a_column_keeps_the_cursor_and_every_row(db_path):
    """The next page brings a longer assignee: the columns are laid out again, rows kept in order."""
    ids = tickets(db_path, 150, priority="P3")
    with Store(db_path) as store:
        store.tickets.move(ticket_id=ids[-1], action="assign", assignee="maximiliana", actor="t")
    app = make_app(db_path, "alice", page=100, poll=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, 100)
        table = app.screen.query_one(DataTable)
        assert table.columns["ASSIGNEE"].width == len("ASSIGNEE")
        await pilot.press("G")
        await settle(pilot, app, 150)
        assert table.columns["ASSIGNEE"].width == len("maximiliana")
        assert table.cursor_row == 99
        assert [table.get_row_at(i)[0] for i in range(150)] == [f"SD-{i}" for i in ids]
