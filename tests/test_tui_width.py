"""The TUI on the terminals people have (issue 19, item 19): the queue at 60-200 columns, the
by-queue view, scrolling a ticket, keys by role, pickers for runbooks and priorities, and the
on-call screen without a config. Driven by Textual's Pilot, checked on the drawn screen."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st
from textual.widgets import DataTable

from sdesk.store import Store
from sdesk.tui.app import make_app
from sdesk.tui.columns import PAD, TITLE_MIN, important, layout
from test_tui import pilot_test, settle

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
    if width >= 80:
        assert columns["TITLE"] >= min(TITLE_MIN, max(5, wanted["TITLE"]))
        assert all(columns[n] >= max(len(n), min(wanted.get(n, 0), 12)) for n in important(by_queue))


def desk(db_path):
    """Tickets with everything long: a title of 100 characters, services and assignees of 12."""
    with Store(db_path) as store:
        ids = [i for i, _ in store.intake([
            {"title": f"ticket {i} " + "a very long title that goes on " * 4, "kind": "incident", "priority": p,
             "service": "checkout-api", "queue": q} for i, (p, q) in enumerate(
                [("P1", "payments"), ("P2", "dba"), ("P3", "frontend-web")])], actor="t", source="cli")]
        store.move(ticket_id=ids[0], action="assign", assignee="bartholomew", actor="t")
        store.move(ticket_id=ids[0], action="ack", actor="bartholomew")
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
        for width in sorted({80, 100, 120, *range(60, 201, 10)}):
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
