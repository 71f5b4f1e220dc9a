"""The TUI, driven by Textual's Pilot: every action checked in the database afterwards, a
ticket added by another process appearing in the open queue, and a large store opening on its
first page only."""

import asyncio
import functools
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from textual.widgets import DataTable, Static
from textual.worker import WorkerCancelled

from sdesk.errors import BadInput
from sdesk.intake.service import Intake
from sdesk.store import Store
from sdesk.tui.app import HelpScreen, TicketScreen, make_app
from sdesk.tui.filters import parse


def pilot_test(body):
    """A test driving the app in an event loop of its own (no plugin needed)."""
    @functools.wraps(body)
    def run(*args, **kwargs):
        asyncio.run(body(*args, **kwargs))

    return run


def tickets(db_path, n=3, **fields):
    with Store(db_path) as store:
        return [i for i, _ in Intake(store).intake([{"title": f"ticket {i}", "kind": "incident", "priority": fields.get(
            "priority", ["P1", "P2", "P3"][i % 3]), **{k: v for k, v in fields.items() if k != "priority"}}
            for i in range(n)], actor="t", source="cli")]


async def settle(pilot, app, rows=None):
    """Until the workers are done twice in a row on the same screen (a screen a key pushes starts
    its workers when it mounts, which a busy machine may delay past one pause), and the queue
    shows `rows` rows. Counted in rounds, not seconds: the suite runs on loaded machines."""
    quiet, screen = 0, None
    for _ in range(200):
        await pilot.pause(0.05)
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive reload replaced it: the next round waits for that one
            quiet = 0
            continue
        quiet, screen = (quiet + 1 if app.screen is screen else 1), app.screen
        if quiet >= 2 and (rows is None or app.screen.query_one(DataTable).row_count == rows):
            return
    raise AssertionError(f"the queue never showed {rows} rows")


async def settle_until(pilot, app, check, what: str):
    """settle() until `check()` holds: output a worker posts to a widget arrives a message later."""
    for _ in range(100):
        await settle(pilot, app)
        if check():
            return
    raise AssertionError(f"never: {what}")


async def notified(pilot, app, text: str) -> None:
    """settle() until a notification holds `text`: a worker's notice arrives a message after its
    worker is done, which a busy machine may delay past the settling."""
    await settle_until(pilot, app, lambda: any(text in n.message for n in app._notifications), f"a notice of {text!r}")


def status_of(db_path, ticket):
    with Store(db_path) as store:
        return store.tickets.get_or_raise(ticket_id=ticket)


@pilot_test
async def test_the_queue_opens_sorted_and_a_ticket_is_worked_end_to_end(db_path):
    ids = tickets(db_path)
    app = make_app(db_path, "alice", poll=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 3)
        table = app.screen.query_one(DataTable)
        assert [table.get_row_at(i)[1].plain for i in range(3)] == ["P1", "P2", "P3"]
        await pilot.press("a")  # acknowledge the P1 from the queue
        await settle(pilot, app)
        assert status_of(db_path, ids[0])["status"] == "acknowledged"
        await pilot.press("j", "enter")  # open the P2
        await settle(pilot, app)
        assert isinstance(app.screen, TicketScreen) and app.screen.ticket_id == ids[1]
        assert "ticket 1" in str(app.screen.query_one("#ticket", Static).render())
        await pilot.press("c", *"rolled back", "enter")
        await settle(pilot, app)
        assert status_of(db_path, ids[1])["status"] == "new"
        with Store(db_path) as store:
            assert store.tickets.events(ticket_id=ids[1])[-1]["data"]["text"] == "rolled back"
        await pilot.press("r", *"restarted the pod", "enter", *"fixed", "enter", "y", "enter")
        await settle(pilot, app)
        t = status_of(db_path, ids[1])
        assert t["status"] == "resolved" and t["resolution"] == "restarted the pod" and t["resolution_code"] == "fixed"
        with Store(db_path) as store:  # and the KB draft asked for, linked to it
            [draft] = store.kb.kb_linked(ids[1])
            assert "restarted the pod" in store.kb.kb_get(draft["id"])["body"]
        await pilot.press("C", "5", "enter")
        await settle(pilot, app)
        await pilot.press("o")
        await settle(pilot, app)
        assert status_of(db_path, ids[1])["status"] == "in_progress"
        await pilot.press("P", "enter")  # the picker's first: P1
        await settle(pilot, app)
        assert status_of(db_path, ids[1])["priority"] == "P1"
        await pilot.press("L", *f"SD-{ids[0]}", "enter")
        await settle(pilot, app)
        assert status_of(db_path, ids[1])["parent_id"] == ids[0]
        await pilot.press("A", *"bob", "enter")
        await settle(pilot, app)
        assert status_of(db_path, ids[1])["assignee"] == "bob"
        await pilot.press("escape")
        assert not isinstance(app.screen, TicketScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


@pilot_test
async def test_what_the_state_does_not_allow_is_a_notification_and_nothing_changes(db_path):
    [ticket] = tickets(db_path, 1)
    app = make_app(db_path, "alice", poll=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        before = status_of(db_path, ticket)
        await pilot.press("o")  # reopen a new ticket
        await notified(pilot, app, "reopen")
        for key in ("r", "enter", "enter", "enter"):  # an empty resolution, each key on the screen it is for
            await pilot.press(key)
            await settle(pilot, app)
        await notified(pilot, app, "a value is required")
        await pilot.press("P")  # the priority picker, left
        await settle(pilot, app)
        await pilot.press("escape")
        await settle(pilot, app)
        assert status_of(db_path, ticket) == before


@pilot_test
async def test_every_binding_is_in_the_key_bar(db_path):
    from sdesk.tui.app import ACTION_BINDINGS
    from sdesk.tui.keybar import KeyBar

    tickets(db_path, 1)
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot, app, 1)
        queue_keys = str(app.screen.query_one(KeyBar).render())
        for shown in ("j Down", "k Up", "g Top", "G Bottom", "⏎ Open", "/ Filter", "? Help", "q Quit",
                      "1 open queue", "6 breaching", "K KB", "O On call", "D Dashboard"):
            assert shown in queue_keys, (shown, queue_keys)
        assert "Focus Next" not in queue_keys
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, TicketScreen)
        ticket_keys = str(app.screen.query_one(KeyBar).render())
        for binding in ACTION_BINDINGS:
            assert f"{binding.key} {binding.description}" in ticket_keys, (binding.key, ticket_keys)
        assert "esc Back" in ticket_keys


@pilot_test
async def test_the_key_bar_follows_focus(db_path):
    from sdesk.tui.keybar import KeyBar

    tickets(db_path, 1)
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("slash")  # into the filter box: letters type, they are not keys
        await pilot.pause(0.1)
        keys = str(app.screen.query_one(KeyBar).render())
        assert "esc Clear filter" in keys and "a Ack" not in keys and "? Help" not in keys, keys


@pilot_test
async def test_a_ticket_opened_while_another_is_read_is_the_one_shown(db_path, monkeypatch):
    import time

    import sdesk.tui.app as tui

    first, second = tickets(db_path, 2, priority="P2")
    read = tui.ticket_data

    def slow_for_the_first(store, ticket_id, sla):
        if ticket_id == first:
            time.sleep(0.5)
        return read(store, ticket_id, sla)

    monkeypatch.setattr(tui, "ticket_data", slow_for_the_first)
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("enter", "j", "enter")  # the first (slow), then the second at once
        await pilot.pause(1.0)
        await settle(pilot, app)
        assert [type(s).__name__ for s in app.screen_stack].count("TicketScreen") == 1
        assert app.screen.ticket_id == second
        assert "ticket 1" in str(app.screen.query_one("#ticket", Static).render())


@pilot_test
async def test_start_and_escalate_by_key(db_path):
    [ticket] = tickets(db_path, 1)
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("e")  # no oncall.yaml: no policy to escalate by
        await settle(pilot, app)
        await notified(pilot, app, "no escalation policy covers it")
        assert status_of(db_path, ticket)["escalation_level"] == 0
        await pilot.press("s")
        await settle(pilot, app)
        t = status_of(db_path, ticket)
        assert t["status"] == "in_progress" and t["assignee"] == "alice"
    # With the example desk, a new P1 falls to the platform team's policy: escalated a level.
    [p1] = tickets(db_path, 1, priority="P1")
    examples = Path(__file__).resolve().parents[1] / "examples" / "desk"
    app = make_app(db_path, "alice", examples, poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 2)
        await pilot.press("j")  # the first row is the older P1, started above
        assert str(app.screen.query_one(DataTable).get_row_at(1)[0]) == f"SD-{p1}"
        await pilot.press("e")
        await settle(pilot, app)
        assert status_of(db_path, p1)["escalation_level"] == 1


@pilot_test
async def test_the_tui_honours_roles(db_path, tmp_path):
    [ticket] = tickets(db_path, 1)
    with Store(db_path) as store:
        store.users.user_add("root", role="admin", team=None, queue=None, actor="root")
        store.users.user_add("vic", role="viewer", team=None, queue=None, actor="root")
    app = make_app(db_path, "vic", poll=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        before = status_of(db_path, ticket)
        await pilot.press("a")  # acknowledge
        await notified(pilot, app, "vic is a viewer")
        assert status_of(db_path, ticket) == before
    with Store(db_path) as store:
        assert [e["actor"] for e in store.audit.audit_log(kind="permission_denied")] == ["vic"]
    # Someone not listed gets roles.yaml's default role, in the TUI as in the CLI.
    config = tmp_path / "desk"
    config.mkdir(exist_ok=True)
    (config / "roles.yaml").write_text("default_role: viewer\n")
    app = make_app(db_path, "stranger", config, poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("a")
        await settle(pilot, app)
        await notified(pilot, app, "stranger is a viewer")
        assert status_of(db_path, ticket) == before


@pilot_test
async def test_the_filter_bar_and_views(db_path):
    tickets(db_path, 6)
    app = make_app(db_path, "alice", poll=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 6)
        await pilot.press("slash", *"p:P1", "enter")
        await settle(pilot, app, 2)
        await pilot.press("slash", *"x:1", "enter")  # does not parse: a notification, the rows stay
        await settle(pilot, app, 2)
        await notified(pilot, app, "unknown key 'x'")
        await pilot.press("escape", "escape")
        await settle(pilot, app, 6)
        await pilot.press("2")  # my tickets: none yet
        await settle(pilot, app, 0)
        await pilot.press("4")  # P1/P2
        await settle(pilot, app, 4)


@pilot_test
async def test_a_ticket_another_process_adds_appears_without_losing_the_cursor(db_path):
    tickets(db_path, 3, priority="P3")
    app = make_app(db_path, "alice", poll=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 3)
        await pilot.press("j", "j")
        table = app.screen.query_one(DataTable)
        before = table.get_row_at(table.cursor_row)[0]
        subprocess.run([sys.executable, "-m", "sdesk", "new", "Database on fire", "-p", "P1"],
                       env={**os.environ, "SDESK_DB": str(db_path)}, check=True, capture_output=True)
        await settle(pilot, app, 4)
        assert table.get_row_at(0)[3].plain == "Database on fire"
        assert table.get_row_at(table.cursor_row)[0] == before  # the same ticket, one row lower


@pilot_test
async def test_a_large_store_opens_on_its_first_page_and_loads_more_on_the_way_down(db_path):
    tickets(db_path, 2500, priority="P3")
    app = make_app(db_path, "alice", page=100, poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 100)
        await pilot.press("G")
        await settle(pilot, app, 200)
        table = app.screen.query_one(DataTable)
        ids = [int(table.get_row_at(i)[0].split("-")[1]) for i in range(200)]
        assert ids == sorted(ids) and len(set(ids)) == 200


@given(st.lists(st.sampled_from(["p:P1", "p:p2", "q:dba", "a:me", "s:waiting", "all", "disk", "full", "t:x",
                                 "kind:request", "service:api", "ci:db-1"]), max_size=8))
def test_filters_parse_what_list_takes(terms):
    args = parse(" ".join(terms), "alice")
    assert args["open_only"] == ("all" not in terms)
    assert args.get("assignee") in (None, "alice")
    assert set(args["priorities"]) <= {"P1", "P2"}


@given(st.text(max_size=30))
def test_any_filter_text_parses_or_says_why(text):
    try:
        parse(text, "alice")
    except BadInput as e:
        assert str(e).startswith("filter:")


@pilot_test
async def test_sla_time_left_and_the_breaching_view(db_path, tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "sla.yaml").write_text("policies:\n  - {name: P1, priority: P1, respond: 15m, resolve: 1h}\n")
    monkeypatch.setenv("SDESK_NOW", "2026-11-02T10:00:00Z")
    late, fresh = tickets(db_path, 2, priority="P1")
    with Store(db_path) as store:  # the first is 40 minutes old: its 15-minute response is breached
        store.conn.execute("UPDATE tickets SET created_at = '2026-11-02T09:20:00Z' WHERE id = ?", (late,))
    app = make_app(db_path, "alice", config, poll=5)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, app, 2)
        table = app.screen.query_one(DataTable)
        shown = {table.get_row_at(i)[0]: table.get_row_at(i)[7].plain for i in range(2)}
        assert shown == {f"SD-{late}": "-25m", f"SD-{fresh}": "15m"}
        await pilot.press("6")
        await settle(pilot, app, 1)
        assert table.get_row_at(0)[0] == f"SD-{late}"
        await pilot.press("enter")
        await settle(pilot, app)
        shown = str(app.screen.query_one("#ticket", Static).render())
        assert "SLA P1: respond breached (40m of 15m), resolve ok (40m of 1h)" in shown


@pilot_test
async def test_runbook_kb_oncall_and_dashboard_screens(db_path, tmp_path, monkeypatch):
    from pathlib import Path

    from textual.widgets import Log

    from sdesk.tui.screens import DashboardScreen, KbScreen, OnCallScreen, RunbookScreen

    examples = Path(__file__).resolve().parents[1] / "examples"
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    (config / "oncall.yaml").write_text((examples / "desk" / "oncall.yaml").read_text())
    marker = tmp_path / "ran"
    (config / "runbooks" / "touch.yaml").write_text(
        f"steps:\n  - run: [touch, {str(marker)!r}]\n    dry_run: [echo, would touch]\n  - resolve: Touched it\n")
    [ticket] = tickets(db_path, 1)
    with Store(db_path) as store:
        from sdesk.domain.kb import check_article, parse_article

        store.kb.kb_sync([(p.stem, check_article(parse_article(p.read_text()))) for p in sorted((examples / "kb").glob("*.md"))],
                      actor="t")
    app = make_app(db_path, "alice", config, poll=5)
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("R")  # the runbooks that apply: touch (no applies_to)
        await settle(pilot, app)
        await pilot.press("enter")
        await settle(pilot, app)
        await settle_until(pilot, app, lambda: isinstance(app.screen, RunbookScreen)
                           and "would touch" in "\n".join(app.screen.query_one(Log).lines), "the dry run's output")
        assert not marker.exists()
        await pilot.press("y")
        await settle(pilot, app)
        assert marker.exists() and status_of(db_path, ticket)["status"] == "resolved"
        await pilot.press("escape", "K", *"replica lag", "enter")
        await settle(pilot, app)
        assert isinstance(app.screen, KbScreen) and app.screen.query_one(DataTable).row_count >= 1
        await pilot.press("enter")
        await settle(pilot, app)
        assert "KB-" in str(app.screen.query_one("#page", Static).render())
        await pilot.press("escape", "escape", "O")
        await settle(pilot, app)
        assert isinstance(app.screen, OnCallScreen) and "on call" in str(app.screen.query_one("#page", Static).render()).lower()
        await pilot.press("escape", "D")
        await settle(pilot, app)
        assert isinstance(app.screen, DashboardScreen) and "Report" in str(app.screen.query_one("#page", Static).render())


@pilot_test
async def test_review_fixes_unassigned_view_odd_input_and_one_real_run(db_path, tmp_path):
    assigned = tickets(db_path, 150, priority="P1")
    free = tickets(db_path, 5, priority="P3")
    with Store(db_path) as store:
        for t in assigned:
            store.tickets.move(ticket_id=t, action="assign", assignee="bob", actor="t")
    app = make_app(db_path, "alice", poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 100)
        await pilot.press("3")  # unassigned: the 5 behind 150 assigned P1s
        await settle(pilot, app, 5)
        assert {app.screen.query_one(DataTable).get_row_at(i)[0] for i in range(5)} == {f"SD-{t}" for t in free}
        await pilot.press("slash", *"nomatch", "enter", "j", "j", "G")  # moving while it loads
        await settle(pilot, app, 0)
        await pilot.press("slash", *"p:P1sort:queue", "enter")
        await settle(pilot, app)
        await notified(pilot, app, "priority 'P1sort:queue'")
        assert app.is_running


@pilot_test
async def test_a_non_ascii_digit_for_csat_is_refused_and_y_runs_a_runbook_once(db_path, tmp_path):
    from sdesk.tui.screens import RunbookScreen

    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    (config / "runbooks" / "say.yaml").write_text("steps:\n  - run: [echo, hi]\n")
    [ticket] = tickets(db_path, 1)
    with Store(db_path) as store:
        store.tickets.move(ticket_id=ticket, action="resolve", resolution="done", actor="t")
    app = make_app(db_path, "alice", config, poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 0)  # resolved: not in the open queue
        await pilot.press("slash", *"all", "enter")
        await settle(pilot, app, 1)
        await pilot.press("C", "²", "enter")
        await settle(pilot, app)
        await notified(pilot, app, "is not a score")
        assert app.is_running
        await pilot.press("R")
        await settle(pilot, app)
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, RunbookScreen)
        await pilot.press("y")
        await settle(pilot, app)
        await pilot.press("y")
        await settle(pilot, app)
    with Store(db_path) as store:
        assert [(r["dry_run"], r["status"]) for r in store.runbooks.runs(ticket_id=ticket)] == [(False, "succeeded"),
                                                                                       (True, "succeeded")]


@pilot_test
async def test_assign_picks_from_the_people_on_call_first_and_q_moves_the_queue(db_path, tmp_path):
    from pathlib import Path

    from sdesk.desk import Desk
    from sdesk.tui.app import PickModal

    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    examples = Path(__file__).resolve().parents[1] / "examples" / "desk"
    (config / "oncall.yaml").write_text((examples / "oncall.yaml").read_text())
    [ticket] = tickets(db_path, 1)
    oncall = Desk(db_path, "t", config).oncall_config()
    with Store(db_path) as store:
        from sdesk.domain import clock

        holders = {r["user"] for r in store.oncall.on_call_now(oncall, schedules=list(oncall.schedules.values()),
                                                               when=clock.now())}
    app = make_app(db_path, "alice", config, poll=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, 1)
        await pilot.press("A")
        assert isinstance(app.screen, PickModal)
        first = app.screen.people[0]
        assert first[0] in holders and first[1].startswith("on call now")
        await pilot.press("enter")
        await settle(pilot, app)
        assert status_of(db_path, ticket)["assignee"] == first[0]
        await pilot.press("Q", *"dba", "enter")
        await settle(pilot, app)
        assert status_of(db_path, ticket)["queue"] == "dba"


@pilot_test
async def test_a_failing_action_shows_the_clis_error_line_and_the_tui_goes_on(db_path, cli, monkeypatch):
    """Every sdesk error in the TUI goes through one handler (SdeskApp.report, @reported): the
    notification is the line the CLI prints for the same failure (each screen had its own way,
    without the `error: `), and the app keeps running: the next action works."""
    [ticket] = tickets(db_path, 1)
    with Store(db_path) as store:
        store.users.user_add("root", role="admin", team=None, queue=None, actor="root")
        store.users.user_add("alice", role="agent", team=None, queue=None, actor="root")
        store.users.user_add("vic", role="viewer", team=None, queue=None, actor="root")

    def cli_line(who, *args):
        monkeypatch.setenv("SDESK_USER", who)
        result = cli(*args, ok=False)
        assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.stderr
        return result.stderr.strip()

    # A viewer is refused before any form (ticket_action), naming the action: the CLI's refusal
    # of `sdesk ack` comes from the write itself and says "changing the desk" instead.
    viewer = f"error: permission denied: vic is a viewer; ack on SD-{ticket} needs the agent role"
    for who, key, line, after in (("alice", "o", cli_line("alice", "reopen", f"SD-{ticket}"), "acknowledged"),
                                  ("vic", "a", viewer, None)):
        app = make_app(db_path, who, poll=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, app, 1)
            before = status_of(db_path, ticket)
            await pilot.press(key)
            await settle(pilot, app)
            errors = [(n.message, n.severity) for n in app._notifications if n.severity == "error"]
            assert errors == [(line, "error")], errors
            assert errors[0][0].startswith("error: ") and app.is_running
            assert status_of(db_path, ticket) == before
            if after:
                await pilot.press("a")
                await settle(pilot, app)
                assert app.is_running and status_of(db_path, ticket)["status"] == after
                # refused in the app's own thread (a modal's value), not a worker's: the same way
                await pilot.press("c", "enter")
                await settle(pilot, app)
                assert list(app._notifications)[-1].message == "error: comment: a value is required" and app.is_running
