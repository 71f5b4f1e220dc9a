"""Issue 24, hostile: semantic search (`sdesk index`, `search`, `similar`, `problem suggest`,
hybrid `kb search`, the portal's box, `show`'s alike) fed what people and payloads really send.

Every query is data: FTS syntax is only words, a query with no word is one BAD_INPUT line,
random text never crashes. Stored text is shown as text (no ANSI, no Rich markup, no bidi
override reaches the terminal). Huge texts are bounded. The index is idempotent, takes every
change again (even one in the same second, or one made while a pass runs), forgets purged
tickets, refuses a viewer, and says in one line when the model is not installed."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import rawdb
from conftest import POSTGRES, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.domain.plain import controls
from sdesk.errors import ExitCode
from sdesk.store import Store

pytest.importorskip("numpy", reason="the semantic extra (numpy) is not installed")
pytest.importorskip("wordllama", reason="the semantic extra (wordllama) is not installed")

ROOT = Path(__file__).resolve().parents[1]




# -- helpers ------------------------------------------------------------------------------------


def one_error_line(result, code: ExitCode, *needles: str) -> None:
    """A refusal as the project's rules want it: the named exit code, one `error: ...` line on
    stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "", (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def import_examples(cli) -> None:
    cli("kb", "import", str(ROOT / "examples" / "kb"))


def small_desk(cli) -> dict[str, int]:
    t = {
        "disk": cli.new("Disk full on db-billing-2", "--ci", "db-billing-2", "-d", "/var/lib/postgresql is filling up"),
        "disk_old": cli.new("Disk almost full on db-billing-2 volume", "--ci", "db-billing-2"),
        "vpn": cli.new("VPN drops every few minutes from home"),
    }
    cli("resolve", str(t["disk_old"]), "-r", "Rotated the WAL archive")
    return t


def raw_count(db_path, sql: str, *params) -> int:
    with rawdb.opened(db_path) as conn:
        return conn.execute(sql, params).fetchone()[0]


def model() -> str:
    from sdesk import embedding

    return embedding.model_name()


# Hostile stored text: OSC (retitle), SGR colour, BEL, Rich markup and a link, a bidi override,
# an emoji code (rich turns ":fire:" into an emoji when emoji is on), a CR.
HOSTILE = ("disk full \x1b]0;pwned\x07 \x1b[31m[bold]red[/bold] [link=https://evil.example]click[/link] "
           "\u202egnp.exe :fire:\r end")
RAW = ("\x1b", "\x07", "\u202e", "\r")


def assert_shown_as_text(out: str, stored: str) -> None:
    for c in RAW:
        assert c not in out, (repr(c), out)
    assert "[bold]red[/bold]" in out and "[link=https://evil.example]click[/link]" in out, out
    assert ":fire:" in out and "\\x1b" in out and "\\u202e" in out, out
    assert controls(stored, one_line=True) in out, (controls(stored, one_line=True), out)


# -- queries: FTS syntax is only words ----------------------------------------------------------


@pytest.fixture
def indexed(cli):
    t = small_desk(cli)
    import_examples(cli)
    cli("index")
    return t


SYNTAX_WITH_ONE_WORD = ['disk"', "disk*", "^disk", "disk)", "(disk", "NOT disk", "disk OR", "AND disk", "d:isk", "disk'",
                        "disk;--", "{disk}", "disk:", "+disk", "disk^", "'disk'", '""disk""']
SYNTAX_WITH_WORDS = ["NEAR(disk", "title:disk", "{title}: disk", "'; DROP TABLE tickets; --", "NEAR(disk full, 2)", '"disk full', "disk* AND full*", "title:disk -body:full", "disk + full",
                     "disk NOT full", "(disk OR) full", "col:disk ^full", "disk & full | !vpn", "disk <-> full"]


@pytest.mark.parametrize("command", [["search"], ["kb", "search"]], ids=["search", "kb-search"])
@pytest.mark.parametrize("query", SYNTAX_WITH_ONE_WORD)
def test_fts_syntax_in_a_one_word_query_is_only_that_word(indexed, cli, command, query):
    result = cli(*command, "--json", "--", query, ok=False)
    assert result.exit_code == 0, (query, result.stderr)
    assert result.stderr.startswith("search: by words and meaning"), result.stderr
    assert isinstance(json.loads(result.stdout), list)


@pytest.mark.parametrize("query", SYNTAX_WITH_WORDS)
def test_fts_syntax_in_a_query_of_words_is_only_words_in_kb_search(indexed, cli, query):
    result = cli("kb", "search", "--json", "--", query, ok=False)
    assert result.exit_code == 0, (query, result.stderr)
    assert json.loads(result.stdout)


@pytest.mark.parametrize("query", SYNTAX_WITH_WORDS)
def test_fts_syntax_in_a_query_of_words_is_only_words_in_search(indexed, cli, query):
    result = cli("search", "--json", "--", query, ok=False)
    assert result.exit_code == 0, (query, result.stderr)
    found = json.loads(result.stdout)
    assert indexed["disk"] in [f["id"] for f in found]


def test_a_query_of_two_plain_words_finds_the_ticket_by_its_words(cli):
    """The plainest search there is, before and after the index is built."""
    ticket = cli.new("Disk full on db-billing-2")
    before = cli("search", "disk", "full", "--json", ok=False)
    assert before.exit_code == 0, before.stderr
    assert [f["id"] for f in json.loads(before.stdout)] == [ticket]
    cli("index")
    after = cli("search", "disk", "full", "--json", ok=False)
    assert after.exit_code == 0, after.stderr
    assert json.loads(after.stdout)[0]["id"] == ticket and json.loads(after.stdout)[0]["by"] == "both"


NO_WORD = ['"', "*", "^", "-", "AND OR", "NOT", "the and of", "!!!", "()", "(^)", "a b c", "", " ", "\x00",
           "\u200b\u200d", "\u202e", "🔥🔥", "ﷺ", "::", "'\"'\"", "%_%", "\\"]


@pytest.mark.parametrize("command", [["search"], ["kb", "search"]], ids=["search", "kb-search"])
@pytest.mark.parametrize("query", NO_WORD, ids=[repr(q) for q in NO_WORD])
def test_a_query_with_no_word_is_one_bad_input_line(indexed, cli, command, query):
    result = cli(*command, "--", query, ok=False)
    one_error_line(result, ExitCode.BAD_INPUT, "has no word to look for")


@pytest.mark.parametrize("command", [["search"], ["kb", "search"]], ids=["search", "kb-search"])
def test_a_query_starting_with_a_dash_after_double_dash_is_data(indexed, cli, command):
    assert cli(*command, "--", "-x", ok=False).exit_code == ExitCode.BAD_INPUT  # a one-letter word: none
    assert cli(*command, "--json", "--", "-disk", ok=False).exit_code == 0


QUERY_PIECES = st.sampled_from(["NEAR(", '"', "*", "AND", "OR", "NOT", "title:", "-", "^", "(", ")", "+", ":", "{", "}",
                                "disk", "full", "vpn", "password", "reset", "the", "of", "'", "\x00", "\u202e", "\u200b",
                                "\u200d", "🔥", "e\u0301", "مرحبا", "שלום", "日本語", "%", "_", "\\", "\n", "\t", " "])
QUERIES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=120),
    st.lists(QUERY_PIECES, max_size=12).map(" ".join),
    st.lists(st.one_of(QUERY_PIECES, st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)),
             max_size=12).map("".join),
)


def test_random_queries_never_crash_search_or_kb_search(cli):
    """Any text at all: exit 0 with a JSON list, or one BAD_INPUT line. Never 1, never a traceback."""
    small_desk(cli)
    import_examples(cli)
    cli("index")

    @settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(QUERIES)
    def run(query):
        for command in (["search"], ["kb", "search"]):
            result = cli(*command, "--json", "--", query, ok=False)
            if result.exit_code == 0:
                assert isinstance(json.loads(result.stdout), list)
            else:
                one_error_line(result, ExitCode.BAD_INPUT, "has no word to look for")

    run()


def test_random_queries_never_crash_the_portal_search(cli, db_path):
    """The portal's "What do you need?" box: whatever is typed, an answer (never an exception)."""
    from sdesk.desk import Desk
    from sdesk.services.portal import search

    import_examples(cli)
    cli("index")
    desk = Desk(db_path, "tester", ROOT / "examples" / "desk")
    store, catalog = desk.store(), desk.catalog()

    @settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.one_of(QUERIES, st.text(max_size=2000)))
    def run(query):
        found = search(store, catalog, query, kb=True)
        assert set(found) == {"query", "types", "articles"} and len(found["query"]) <= 200
        assert all("public" in a["tags"] for a in found["articles"])  # only what the portal publishes

    run()


def test_a_very_long_word_in_a_query_is_not_a_database_error(indexed, cli):
    for word in ("x" * 60_000, "é" * 30_000):
        result = cli("search", "--json", word, ok=False)
        assert result.exit_code in (0, ExitCode.BAD_INPUT), result.stderr
        assert "database" not in result.stderr


def test_a_long_query_of_many_words_is_bounded(indexed, cli):
    """200,000 words: the search looks for its first words, fast, by words and meaning."""
    words = " ".join(f"disk{i}" for i in range(200_000))
    for command in (["search"], ["kb", "search"]):
        result = cli(*command, "--json", "--", "disk " + words, ok=False)
        assert result.exit_code == 0, result.stderr
        assert isinstance(json.loads(result.stdout), list)


# -- stored text is shown as text ---------------------------------------------------------------


@pytest.fixture
def wide(monkeypatch):
    """A console wide enough that no title wraps (rich reads COLUMNS)."""
    monkeypatch.setenv("COLUMNS", "400")


def test_hostile_titles_are_text_in_search_similar_and_show(cli, wide):
    hostile = cli.new(HOSTILE, "-d", "the disk on db-1 is full")
    stored = cli.json("show", str(hostile))["title"]
    cli("resolve", str(hostile), "-r", "\x1b[2J[red]wiped[/red] the \u202elogs")
    open_one = cli.new(HOSTILE, "-d", "the disk on db-1 is full")  # alike enough to be offered by `show`
    cli("index")
    found = cli("search", "disk", "full")
    assert f"SD-{hostile}" in found.stdout
    assert_shown_as_text(found.stdout, stored)
    alike = cli("similar", str(open_one))
    assert f"SD-{hostile}" in alike.stdout
    assert_shown_as_text(alike.stdout, stored)
    assert "[red]wiped[/red]" in alike.stdout and "\\x1b[2J" in alike.stdout  # the resolution too
    resolved = cli("similar", str(open_one), "--resolved")
    assert_shown_as_text(resolved.stdout, stored)
    # `show` offers the resolved one (found when the open one was indexed): as text too.
    assert [t["id"] for t in cli.json("show", str(open_one))["alike"]["tickets"]] == [hostile]
    shown = cli("show", str(open_one)).stdout
    assert "resolved alike" in shown
    for c in RAW:
        assert c not in shown
    assert "[bold]red[/bold]" in shown
    # The JSON keeps the text exactly.
    assert [f["title"] for f in cli.json("search", "disk", "full") if f["id"] == hostile] == [stored]


def test_hostile_article_titles_are_text_in_hybrid_kb_search(cli, wide):
    cli("kb", "add", "-", "--title", HOSTILE, input="When the disk is full, rotate the logs [bold]now[/bold].\n")
    stored = cli.json("kb", "list")[0]["title"]
    cli("index")
    found = cli("kb", "search", "disk", "full")
    assert "by words and meaning" in found.stderr
    assert_shown_as_text(found.stdout, stored)
    assert "[bold]now" in found.stdout  # the snippet: PostgreSQL's ts_headline ends it at the word


def _three_alike(cli, title: str, *args: str) -> list[int]:
    made = [cli.new(title, *args) for _ in range(3)]
    cli("index")
    return made


def test_hostile_titles_are_text_in_problem_suggest(cli, wide):
    made = _three_alike(cli, HOSTILE, "--ci", "db-1")
    stored = cli.json("show", str(made[0]))["title"]
    [suggestion] = cli.json("problem", "suggest")
    assert sorted(suggestion["members"]) == made and suggestion["title"] == stored
    out = cli("problem", "suggest").stdout
    assert_shown_as_text(out, stored)


@pytest.mark.parametrize("where", ["--ci", "--service"])
def test_hostile_ci_and_service_names_are_text_in_problem_suggest(cli, wide, where):
    name = "web-\x1b]0;pwned\x07\x1b[31m[red]1"
    made = _three_alike(cli, "checkout page returns 502 errors", where, name)
    [suggestion] = cli.json("problem", "suggest")
    assert sorted(suggestion["members"]) == made
    out = cli("problem", "suggest").stdout
    for c in RAW:
        assert c not in out, (repr(c), out)
    assert "web-\\x1b]0;pwned\\x07\\x1b[31m[red]1" in out


def test_the_suggested_command_is_one_runnable_line_for_a_long_title(cli):
    title = "checkout page returns 502 errors for customers in the EU region after the deploy " * 3
    made = _three_alike(cli, title.strip(), "--ci", "web-1")
    out = cli("problem", "suggest").stdout
    [line] = [line for line in out.splitlines() if "sdesk problem new --from" in line]
    argv = shlex.split(line)
    assert argv[argv.index("--from") + 1] == ",".join(map(str, made))
    assert argv[argv.index("--title") + 1] == title.strip()


def test_unicode_titles_are_indexed_found_and_shown(cli, wide):
    titles = {
        "rtl": "خطأ في الخادم checkout \u202bserver\u202c",
        "emoji": "🔥 checkout is on fire 🔥",
        "zero_width": "check\u200bout pay\u200dment fails",
        "combining": "cafe\u0301 checkout crème",
        "cjk": "结账页面 checkout 错误",
    }
    made = {k: cli.new(v) for k, v in titles.items()}
    cli("index")
    found = cli("search", "checkout", "--json", ok=False)
    assert found.exit_code == 0, found.stderr
    got = {f["id"]: f for f in json.loads(found.stdout)}
    for key in ("rtl", "emoji", "combining", "cjk"):  # the word `checkout` stands alone in these
        assert made[key] in got and got[made[key]]["by"] == "both", key
    assert cli.json("search", "结账页面")[0]["id"] == made["cjk"]
    human = cli("search", "checkout").stdout
    assert "\u202b" not in human and "\\u202b" in human and "🔥" in human
    for key, ticket in made.items():
        alike = cli("similar", str(ticket), "--json", ok=False)
        assert alike.exit_code == 0 and ticket not in [a["id"] for a in json.loads(alike.stdout)], key


# -- huge texts ---------------------------------------------------------------------------------


def _ten_megabytes_of_words() -> str:
    import random
    import string

    rng = random.Random(24)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(1_120_000))[:10_000_000]


@pytest.fixture
def huge(cli, db_path):
    """A ticket with a 10 MB description of distinct words (written behind intake's back: this
    is about the index, whatever intake admits), and a small one."""
    big = cli.new("Printer queue stuck on floor three")
    small = cli.new("Printer queue stuck on floor four")
    rawdb.tamper(db_path, "UPDATE tickets SET description = ? WHERE id = ?", params=(_ten_megabytes_of_words(), big))
    return big, small


@pytest.mark.slow
def test_a_10mb_description_is_indexed_and_found(cli, huge):
    big, small = huge
    done = cli.json("index")
    assert done["tickets"] == 2 and done["pending"] == 0
    assert cli.json("index")["tickets"] == 0
    # Its vector is its first MAX_CHARS: alike the small one, as its title says.
    assert cli.json("similar", str(small))[0]["id"] == big
    assert cli.json("search", "printer", "queue")[0]["id"] in (big, small)
    assert big in [f["id"] for f in cli.json("search", "printer")]


@pytest.mark.slow
def test_one_huge_ticket_does_not_stop_the_index_of_the_others(cli, db_path):
    """A poison ticket, through intake as any JSON sender can send it (a 2 MB description):
    whatever happens to its own words, the tickets beside it are indexed, and `tick`, which
    indexes in the background, does not stay behind."""
    small = cli.new("Printer queue stuck on floor four")
    poison = json.dumps({"title": "Printer queue stuck on floor three", "description": _ten_megabytes_of_words()[:2_000_000]})
    cli("new", "--jsonl", "-", input=poison + "\n")
    others = [cli.new(f"Printer queue stuck on floor {n}") for n in ("five", "six")]
    result = cli("index", "--json", ok=False)
    assert result.exit_code == 0, result.stderr
    with rawdb.opened(db_path) as conn:
        indexed = {r[0] for r in conn.execute("SELECT ticket_id FROM ticket_vectors").fetchall()}
    assert {small, *others} <= indexed
    later = cli.new("Printer queue stuck on floor seven")
    tick = cli("tick", "--json", ok=False)
    assert tick.exit_code == 0 and "semantic index was not updated" not in tick.stderr, tick.stderr
    assert cli.json("index", "--status")["tickets_pending"] == 0
    assert later in [f["id"] for f in cli.json("similar", str(small))]


@pytest.mark.slow
def test_the_words_indexed_of_a_10mb_description_are_bounded(cli, huge, db_path):
    big, _ = huge
    cli("index")
    assert raw_count(db_path, "SELECT length(body) FROM ticket_fts WHERE rowid = ?", big) <= 1_000_000


# -- ids and limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("ticket", ["abc", "", " ", "SD-", "SD-0", "0", "-1", "1.5", "1e3", "0x10", "SD-1x", "１",
                                    "99999999999999999999999", "1\x00", "SD-\u202e1", "[bold]1[/bold]", "\x1b[31m1"])
def test_similar_refuses_a_malformed_id_in_one_line(indexed, cli, ticket):
    result = cli("similar", "--", ticket, ok=False)
    one_error_line(result, ExitCode.BAD_INPUT, "is not a ticket id")
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr


@pytest.mark.parametrize("ticket", ["999", "SD-999", "sd-999", "999999999999999999"])
def test_similar_on_a_ticket_that_does_not_exist_is_not_found(indexed, cli, ticket):
    one_error_line(cli("similar", ticket, ok=False), ExitCode.NOT_FOUND, "no ticket SD-999")


@pytest.mark.parametrize("args", [["similar", "1"], ["search", "disk"], ["kb", "search", "disk"]])
@pytest.mark.parametrize("limit", ["0", "-1", "1001", "99999999999999999999999", "x", ""])
def test_a_limit_out_of_range_is_refused(indexed, cli, args, limit):
    result = cli(*args, "--limit", limit, ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "--limit" in result.stderr and result.stdout == ""


def test_the_largest_limit_is_taken_and_bounded_by_what_is_there(indexed, cli):
    assert len(cli.json("similar", "1", "--limit", "1000")) == 2
    assert 0 < len(cli.json("search", "disk", "--limit", "1000")) <= 3
    assert len(cli.json("similar", "1", "-n", "1")) == 1


@pytest.mark.parametrize("since", ["garbage", "99999999999d", "-5d", "5x", "", "2026-13-45"])
def test_problem_suggest_refuses_a_bad_since_in_one_line(indexed, cli, since):
    one_error_line(cli("problem", "suggest", "--since", since, ok=False), ExitCode.BAD_INPUT, "--since")


def test_problem_suggest_since_the_future_is_empty_not_an_error(indexed, cli):
    assert cli.json("problem", "suggest", "--since", "2999-01-01T00:00:00Z") == []


# -- the index: idempotent, takes every change again --------------------------------------------


def test_index_twice_indexes_nothing_the_second_time(cli, db_path):
    small_desk(cli)
    import_examples(cli)
    first = cli.json("index")
    assert (first["tickets"], first["articles"], first["pending"]) == (3, 7, 0)
    vectors = raw_count(db_path, "SELECT count(*) FROM ticket_vectors")
    words = raw_count(db_path, "SELECT count(*) FROM ticket_fts")
    for _ in range(2):
        again = cli.json("index")
        assert (again["tickets"], again["articles"], again["pending"]) == (0, 0, 0)
    assert raw_count(db_path, "SELECT count(*) FROM ticket_vectors") == vectors == 3
    assert raw_count(db_path, "SELECT count(*) FROM ticket_fts") == words == 3
    status = cli.json("index", "--status")
    assert (status["tickets_pending"], status["articles_pending"], status["tickets_indexed"],
            status["articles_indexed"]) == (0, 0, 3, 7)
    assert "indexed 0 tickets" in cli("index").stderr


def test_index_where_there_is_no_desk_is_one_line_and_makes_none(cli, db_path):
    one_error_line(cli("index", ok=False), ExitCode.NOT_FOUND, "no sdesk database")
    one_error_line(cli("search", "disk", ok=False), ExitCode.NOT_FOUND, "no sdesk database")
    if not POSTGRES:
        assert not Path(db_path).exists()
    ticket = cli.new("first ticket")
    assert cli.json("similar", str(ticket)) == []  # alone: nothing alike, and not an error
    assert cli.json("index")["tickets"] == 1


def test_an_edit_in_the_same_second_is_indexed_again(cli, monkeypatch):
    """Time stamps are to the second: an edit right after a pass must still be taken."""
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T09:00:00Z")
    ticket = cli.new("printer jammed on floor three")
    assert cli.json("index")["tickets"] == 1
    cli("update", str(ticket), "--title", "kubernetes pod crashloop in payments")
    assert cli.json("index", "--status")["tickets_pending"] == 1
    assert cli.json("index")["tickets"] == 1
    [found] = [f for f in cli.json("search", "kubernetes") if f["id"] == ticket]
    assert found["by"] == "both"  # its new words are in the index
    assert all(f["by"] == "meaning" for f in cli.json("search", "printer"))  # its old ones are not


def test_an_edit_during_an_index_pass_is_taken_by_the_next(cli, monkeypatch):
    """A ticket changed (in the same second) while a pass embeds it keeps its old vector for now,
    and the next pass takes it again."""
    from sdesk import embedding

    monkeypatch.setenv("SDESK_NOW", "2026-11-26T09:00:00Z")
    ticket = cli.new("printer jammed on floor three")
    real = embedding.Embedder.embed
    edited = []

    def embed_and_edit(self, texts):
        if not edited and any("printer" in t for t in texts):
            edited.append(subprocess.run([sys.executable, "-m", "sdesk", "update", str(ticket), "--title",
                                          "kubernetes pod crashloop in payments"], capture_output=True, text=True))
        return real(self, texts)

    monkeypatch.setattr(embedding.Embedder, "embed", embed_and_edit)
    assert cli.json("index")["tickets"] == 1
    assert edited and edited[0].returncode == 0, edited and edited[0].stderr
    assert cli.json("index", "--status")["tickets_pending"] == 1
    assert cli.json("index")["tickets"] == 1
    assert [f["by"] for f in cli.json("search", "kubernetes") if f["id"] == ticket] == ["both"]


# -- purge forgets ------------------------------------------------------------------------------


def test_purge_removes_the_purged_tickets_vectors_and_words(cli, db_path, monkeypatch):
    gone = cli.new("Printer on floor 3 jams on every page", "-d", "paper tray two")
    kept = cli.new("Printer on floor 3 jams on every page again", "-d", "paper tray two")
    cli("resolve", str(gone), "-r", "replaced the roller")
    cli("close", str(gone))
    cli("index")
    # Before: the closed one is everywhere the index shows.
    assert gone in [f["id"] for f in cli.json("search", "printer")]
    assert gone in [f["id"] for f in cli.json("similar", str(kept))]
    assert [t["id"] for t in cli.json("show", str(kept))["alike"]["tickets"]] == [gone]
    assert raw_count(db_path, "SELECT count(*) FROM ticket_vectors WHERE ticket_id = ?", gone) == 1
    assert raw_count(db_path, "SELECT count(*) FROM ticket_fts WHERE rowid = ?", gone) == 1

    monkeypatch.setenv("SDESK_NOW", "2099-01-01T00:00:00Z")
    assert cli.json("purge", "--older-than", "1d", "--yes")["tickets"] == 1
    monkeypatch.delenv("SDESK_NOW")

    assert raw_count(db_path, "SELECT count(*) FROM ticket_vectors WHERE ticket_id = ?", gone) == 0
    assert raw_count(db_path, "SELECT count(*) FROM ticket_fts WHERE rowid = ?", gone) == 0
    assert raw_count(db_path, "SELECT count(*) FROM ticket_fts") == 1
    with Store(db_path) as store:  # a new store: nothing cached
        ids, _ = store.vectors.ticket_matrix(model())
        assert ids == [kept]
        assert [i for i, _ in store.vectors.search_tickets('"printer"', limit=10)] == [kept]
    assert [f["id"] for f in cli.json("search", "printer")] == [kept]
    assert cli.json("similar", str(kept)) == []
    assert cli.json("show", str(kept))["alike"]["tickets"] == []
    assert "SD-" + str(gone) not in cli("show", str(kept)).stdout.split("events")[0]
    status = cli.json("index", "--status")
    assert (status["tickets_indexed"], status["tickets_pending"]) == (1, 0)
    assert cli.json("index")["tickets"] == 0


# -- who may build the index --------------------------------------------------------------------


@pytest.fixture
def roles(cli):
    cli("--as", "root", "user", "add", "root", "--role", "admin")
    cli("--as", "root", "user", "add", "vic", "--role", "viewer")
    return cli


def test_a_viewer_cannot_build_the_index_and_nothing_is_written(roles, db_path):
    cli = roles
    ticket = cli.json("--as", "root", "new", "Disk full on db-billing-2")["id"]
    import_examples(cli)
    result = cli("--as", "vic", "index", ok=False)
    one_error_line(result, ExitCode.PERMISSION, "vic is a viewer")
    assert raw_count(db_path, "SELECT count(*) FROM ticket_vectors") == 0
    assert raw_count(db_path, "SELECT count(*) FROM kb_vectors") == 0
    assert raw_count(db_path, "SELECT count(*) FROM ticket_fts") == 0
    status = cli.json("--as", "vic", "index", "--status")  # reading is a viewer's
    assert (status["tickets_pending"], status["articles_pending"]) == (1, 7)
    # A viewer reads: search (by words, nothing indexed yet), and similar of a ticket not indexed.
    assert [f["id"] for f in cli.json("--as", "vic", "search", "disk")] == [ticket]
    assert cli.json("--as", "vic", "similar", str(ticket)) == []
    assert cli.json("--as", "root", "index")["tickets"] == 1
    # Refused again with the tickets indexed and one changed since.
    cli("--as", "root", "comment", str(ticket), "still full")
    one_error_line(cli("--as", "vic", "index", ok=False), ExitCode.PERMISSION, "vic is a viewer")
    assert cli.json("--as", "vic", "index", "--status")["tickets_pending"] == 1


# -- without the model --------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    """The `semantic` extra as if not installed: its package cannot be found, nothing loaded."""
    from sdesk import embedding

    monkeypatch.setattr(embedding, "PACKAGE", "sdesk_no_such_model_package")
    monkeypatch.setattr(embedding, "_loaded", None)


def test_without_the_model_each_semantic_command_says_so_in_one_line(cli, db_path, monkeypatch):
    from sdesk import embedding

    t = small_desk(cli)
    cli("index")  # built with the model; then it is gone
    monkeypatch.setattr(embedding, "available", lambda: False)
    one_error_line(cli("similar", str(t["disk"]), ok=False), ExitCode.ERROR, "pip install 'sdesk[semantic]'")
    one_error_line(cli("similar", str(t["disk"]), "--resolved", "--json", ok=False), ExitCode.ERROR, "semantic")
    one_error_line(cli("problem", "suggest", ok=False), ExitCode.ERROR, "pip install 'sdesk[semantic]'")
    one_error_line(cli("similar", "SD-999", ok=False), ExitCode.NOT_FOUND)  # the id is checked first
    # Search falls back to words, and says so; show keeps what the index found.
    words = cli("search", "disk", "--json")
    assert "by words only" in words.stderr and t["disk"] in [f["id"] for f in json.loads(words.stdout)]
    assert "by words only" in cli("kb", "search", "disk", "--json").stderr
    assert cli.json("show", str(t["disk"]))["alike"]["tickets"][0]["id"] == t["disk_old"]


def test_index_without_the_model_is_one_line_and_writes_nothing(cli, db_path, no_model):
    small_desk(cli)
    import_examples(cli)
    one_error_line(cli("index", ok=False), ExitCode.ERROR, "pip install 'sdesk[semantic]'")
    one_error_line(cli("index", "--json", ok=False), ExitCode.ERROR, "semantic")
    assert raw_count(db_path, "SELECT count(*) FROM ticket_vectors") == 0
    assert raw_count(db_path, "SELECT count(*) FROM kb_vectors") == 0
    assert cli.json("index", "--status") == {"installed": False, "model": None}
    assert "not installed" in cli("index", "--status").stdout
    assert cli("tick", ok=False).exit_code == 0  # the background pass skips what is not installed
    assert raw_count(db_path, "SELECT count(*) FROM ticket_vectors") == 0
    found = cli("kb", "search", "forgot", "my", "passcode", "--json")
    assert "by words only" in found.stderr
