"""The knowledge base (articles, revisions, search, freshness, folder sync, drafts at resolve)
and enrichment of arriving tickets from the CMDB, changes and the KB."""

import json
import sqlite3
from pathlib import Path

import pytest
import rawdb
from hypothesis import given
from hypothesis import strategies as st

from sdesk.domain.kb import fts_query, parse_article
from sdesk.errors import BadInput, ExitCode
from sdesk.storage import fts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARTICLE = """---
title: Disk full on a node
tags: [disk, linux]
cis: [db-billing-2]
owner: platform
review_days: 30
---
# Disk full

Find what grew with `du -xh / | sort -h | tail`. Rotate the logs and restart the writer.
"""


def add(cli, text: str, *args: str) -> int:
    return int(cli("kb", "add", "-", *args, input=text).stdout.strip().removeprefix("KB-"))


def test_add_show_and_front_matter(cli):
    article_id = add(cli, ARTICLE)
    a = cli.json("kb", "show", f"KB-{article_id}")
    assert a["title"] == "Disk full on a node" and a["tags"] == ["disk", "linux"] and a["review_days"] == 30
    assert a["body"].startswith("# Disk full") and a["revision"] == 1
    assert "Rotate the logs" in cli("kb", "show", str(article_id)).stdout


def test_title_from_heading_or_flag_and_bad_articles(cli, db_path):
    assert cli.json("kb", "show", str(add(cli, "# Restart the VPN gateway\n\nsteps")))["title"] == "Restart the VPN gateway"
    assert cli.json("kb", "show", str(add(cli, "no heading here", "--title", "Given")))["title"] == "Given"
    for text, message in [("---\ntitle: Empty\n---\n\n", "the article is empty"), ("just text", "no title"),
                          ("---\ntitle: [unclosed\n---\nbody", "front matter"), ("---\ncolour: red\n---\nbody", "colour: unknown")]:
        result = cli("kb", "add", "-", input=text, ok=False)
        assert result.exit_code == ExitCode.BAD_INPUT and message in result.stderr, (text, result.stderr)
    assert rawdb.connect(db_path).execute("SELECT count(*) FROM kb_articles").fetchone()[0] == 2


def test_edits_are_revisions_with_history_and_diff(cli):
    article_id = add(cli, ARTICLE)
    cli("kb", "edit", str(article_id), "--tag", "storage")
    cli("kb", "edit", str(article_id), "-", input=ARTICLE.replace("Rotate the logs", "Compress the logs"))
    assert "no change" in cli("kb", "edit", str(article_id), "-", input=ARTICLE.replace("Rotate the logs", "Compress the logs")).stderr
    history = cli.json("kb", "history", str(article_id))
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert history[1]["tags"] == ["storage"]
    diff = cli("kb", "diff", str(article_id)).stdout.splitlines()
    assert diff[:2] == ["--- revision 2", "+++ revision 3"]
    changed = [line for line in diff[2:] if line[:1] in "+-"]
    # The text replaced the tags too (storage -> disk, linux) and changed one line of the body.
    assert changed == ["-- storage", "+- disk", "+- linux",
                       "-Find what grew with `du -xh / | sort -h | tail`. Rotate the logs and restart the writer.",
                       "+Find what grew with `du -xh / | sort -h | tail`. Compress the logs and restart the writer."]
    assert cli("kb", "diff", str(article_id), "1", "9", ok=False).exit_code == ExitCode.BAD_INPUT


def test_search_ranks_highlights_and_filters(cli):
    cli("kb", "import", str(EXAMPLES / "kb"))
    found = cli.json("kb", "search", "replica", "lag")
    assert found and "replica" in found[0]["title"].lower()
    assert "«" in found[0]["snippet"]
    by_ci = cli.json("kb", "search", "disk", "--ci", "db-billing-2")
    assert by_ci and all("db-billing-2" in a["cis"] for a in by_ci)
    assert cli.json("kb", "search", "disk", "--tag", "no-such-tag") == []
    # No article has every word: the best articles with any of them.
    assert cli.json("kb", "search", "replica", "zebra")
    # FTS syntax from a user is only words.
    assert cli("kb", "search", 'NEAR(" OR *', ok=False).exit_code in (0, ExitCode.BAD_INPUT)
    assert cli("kb", "search", "--", "***", ok=False).exit_code == ExitCode.BAD_INPUT


# FTS5 expressions kb_search takes, and what the two backends must agree on: the articles found
# (not their order: bm25 and ts_rank weigh alike but differ; nor words whose stems differ between
# SQLite's porter and PostgreSQL's snowball, as FTS5's "one" -> "on" or a stemmed prefix "dis*").
SAME_QUERIES = ["replica lag", "replica OR lag", "replica NOT lag", "disk", "disk*", '"disk full"', '"replica lag"',
                "title: disk", "{title tags}: disk", "-body: disk", "body: restart", "restart OR rotate",
                "(disk OR replica) AND restart", "log*", "rotat*", "db", "billing", "db + billing", "checkout",
                "example", "var", "the", "out", "and", "restarting", "postgres", "cis: db", "tags: postgres",
                "2", "9100", "full NOT disk", "restart NOT disk", '""', '"" OR disk', 'disk NOT ""', "zebra",
                "replica lag OR disk NOT full", "Disk AND (NOT_A_WORD OR gateway)", "vpn*  OR  \"payment gateway\""]
BAD_QUERIES = ["NOT disk", "disk AND NOT full", "(disk", "disk)", '"disk', "disk OR", "db-billing", "x.y", "*",
               "disk**", "colour: red", "{title colour}: x", "o'k", ""]


def _searches(db, queries):
    from sdesk.store import Store

    out = []
    with Store(db) as store:
        for q in queries:
            try:
                out.append(sorted(a["id"] for a in store.kb.kb_search(q, limit=1000)))
            except BadInput as e:
                out.append(str(e))
    return out


def test_search_reads_the_same_queries_as_sqlites_fts5(cli, tmp_path, db_path):
    """The query language of kb_search is FTS5's on both backends: the test's desk (PostgreSQL on
    that run) finds what a SQLite desk finds for the same articles, and refuses the same
    malformed queries with the same line."""
    reference = tmp_path / "reference.db"
    host = "# Checkout host\n\nLogs at /var/log/checkout.log on checkout.example.com, db-billing-2:9100.\n" \
           "Disk out of space; restarting the writer."
    for db in (str(db_path), str(reference)):
        cli("--db", db, "kb", "import", str(EXAMPLES / "kb"))
        cli("--db", db, "kb", "add", "-", "--tag", "postgres", input=host)
    found = _searches(db_path, SAME_QUERIES)
    assert found == _searches(reference, SAME_QUERIES)
    assert all(isinstance(f, list) for f in found) and found[SAME_QUERIES.index('""')] == []
    assert found[SAME_QUERIES.index("checkout")] and found[SAME_QUERIES.index("9100")] == [8]
    assert found[SAME_QUERIES.index("restart NOT disk")] and found[SAME_QUERIES.index("-body: disk")]
    refused = _searches(db_path, BAD_QUERIES)
    assert refused == _searches(reference, BAD_QUERIES)
    assert all(isinstance(r, str) and r.startswith("search: ") and "\n" not in r for r in refused), refused


@given(st.text(max_size=60))
def test_any_text_is_a_safe_query(text):
    query = fts_query(text)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'porter unicode61')")
    conn.execute("INSERT INTO t VALUES ('some body text')")
    if query is not None:
        conn.execute("SELECT * FROM t WHERE t MATCH ?", (query,)).fetchall()
        assert fts.to_tsquery(query)  # and PostgreSQL's reading of it has a word to look for


_PIECES = ["one", "two", "AND", "OR", "NOT", "NEAR", "(", ")", '"one two"', '"x"', '""', "*", "+", ":", "{", "}", "-",
           "^", ",", "5", "title", "body", "tags", "cis", "Tags", "colour", "and", "é", ".", "'"]


@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=7), st.booleans())
def test_the_query_parser_accepts_what_fts5_accepts(pieces, glued):
    """storage/fts.py reads FTS5's grammar (both backends refuse a query with its line): it
    accepts exactly what SQLite's FTS5 accepts."""
    text = ("" if glued else " ").join(pieces)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE kb_fts USING fts5(title, body, tags, cis, tokenize = 'porter unicode61')")
    try:
        conn.execute("SELECT * FROM kb_fts WHERE kb_fts MATCH ?", (text,)).fetchall()
        accepted = True
    except sqlite3.OperationalError:
        accepted = False
    try:
        fts.parse(text)
        assert accepted, text
    except BadInput as e:
        assert not accepted and str(e).startswith("search: ") and "\n" not in str(e), (text, str(e))


def test_folder_sync_is_idempotent_and_revises_changed_files(cli, tmp_path):
    folder = tmp_path / "runbooks"
    folder.mkdir(exist_ok=True)
    (folder / "disk.md").write_text(ARTICLE)
    (folder / "vpn.md").write_text("# VPN\n\nReconnect.")
    assert cli.json("kb", "import", str(folder)) == {"created": ["disk", "vpn"], "updated": [], "unchanged": []}
    (folder / "vpn.md").write_text("# VPN\n\nReconnect, then reset the profile.")
    assert cli.json("kb", "import", str(folder)) == {"created": [], "updated": ["vpn"], "unchanged": ["disk"]}
    (folder / "broken.md").write_text("---\ntitle: x\n---\n")
    result = cli("kb", "import", str(folder), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "broken.md" in result.stderr
    assert len(cli.json("kb", "list")) == 2


def test_stale_and_review(cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-01-01T00:00:00Z")
    article_id = add(cli, ARTICLE)  # review every 30 days
    add(cli, "# Fresh for long\n\nbody", "--review-days", "365")
    monkeypatch.setenv("SDESK_NOW", "2026-03-01T00:00:00Z")
    assert [a["id"] for a in cli.json("kb", "stale")] == [article_id]
    cli("kb", "review", f"KB-{article_id}")
    assert cli.json("kb", "stale") == []


def test_link_and_resolve_drafts_an_article(cli):
    cli("cmdb", "import", str(EXAMPLES / "desk" / "cmdb.yaml"))
    ticket = cli.new("Postgres replica lag on db-billing-2", "--service", "billing")
    article_id = add(cli, ARTICLE)
    cli("kb", "link", str(article_id), "--ticket", str(ticket))
    assert [a["id"] for a in cli.json("show", str(ticket))["kb_linked"]] == [article_id]
    cli("ack", str(ticket))
    result = cli("resolve", str(ticket), "-r", "Restarted replication after the batch job", "--kb")
    assert "drafted KB-" in result.stderr
    draft = cli.json("kb", "show", str(article_id + 1))
    assert draft["title"] == "Postgres replica lag on db-billing-2" and "Restarted replication" in draft["body"]
    assert draft["cis"] == ["billing"]
    assert len(cli.json("show", str(ticket))["kb_linked"]) == 2
    assert cli("kb", "link", "99", "--ticket", str(ticket), ok=False).exit_code == ExitCode.NOT_FOUND


def test_secrets_never_reach_the_kb(cli, db_path):
    add(cli, "# Connect\n\nUse postgres://admin:hunter2pw@db:5432/app to connect.")
    assert "hunter2pw" not in "\n".join(rawdb.content(db_path))


# -- enrichment -----------------------------------------------------------------------------------


@pytest.fixture
def desk(cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:00:00Z")
    cli("cmdb", "import", str(EXAMPLES / "desk" / "cmdb.yaml"))
    cli("kb", "import", str(EXAMPLES / "kb"))
    cli("change", "new", "--ci", "checkout-api", "--title", "Deploy checkout-api v2.14", "--start", "2026-11-26T09:40:00Z")
    cli("change", "new", "--ci", "checkout-api", "--title", "Old deploy", "--start", "2026-11-20T09:40:00Z")
    return cli


def test_an_alert_arrives_with_its_context(desk):
    payload = {"status": "firing", "alerts": [{"labels": {"alertname": "HighErrorRate", "service": "checkout-api-prod",
                                                          "severity": "critical"},
                                               "annotations": {"summary": "Checkout API 5xx rate above 5%"}}]}
    [result] = [json.loads(line) for line in desk("new", "--format", "alertmanager", "--json", input=json.dumps(payload)).stdout.splitlines()]
    t = desk.json("show", str(result["ticket"]))
    assert t["ci"] == "checkout-api" and t["team"] == "payments" and t["queue"] == "payments"
    ctx = t["context"]
    assert ctx["tier"] == 1 and "shop-checkout" in ctx["dependents"]
    assert [c["summary"] for c in ctx["changes"]] == ["Deploy checkout-api v2.14"]  # the old one is outside 24h
    assert ctx["changes"][0]["minutes_before"] == 20
    assert ctx["kb"][0]["title"] == "Checkout API returns 5xx"
    # Articles written about the CI come before those that only share words with the title.
    assert ctx["kb"][1]["title"] == "Payment gateway timeouts"
    enriched = [e for e in t["events"] if e["kind"] == "enriched"]
    assert enriched and enriched[0]["data"]["set"] == {"ci": "checkout-api", "team": "payments", "queue": "payments"}
    shown = desk("show", str(result["ticket"])).stdout
    assert "Deploy checkout-api v2.14" in shown and "20 min before" in shown


def test_a_queue_given_is_kept_and_an_instance_label_finds_its_host(desk):
    t = desk.json("new", "Disk almost full", "--queue", "dba", "-l", "instance=db-billing-2:9100")
    assert t["ci"] == "db-billing-2" and t["queue"] == "dba" and t["team"] == "data"
    assert "billing-db" in desk.json("show", str(t["id"]))["context"]["dependents"]


def test_similar_tickets_on_the_same_ci(desk):
    first = desk.new("Search latency high on search-api", "--service", "search")
    second = desk.new("Search latency high again", "--service", "search")
    similar = desk.json("show", str(second))["context"]["similar"]
    assert [s["id"] for s in similar] == [first]


def test_nothing_to_enrich_from_adds_nothing(cli):
    t = cli.json("new", "Printer jammed", "--service", "printing")
    shown = cli.json("show", str(t["id"]))
    assert shown["context"] is None and [e["kind"] for e in shown["events"]] == ["created"]


def test_article_parser_never_crashes(tmp_path):
    for text in ["", "---\n", "---\n---\n", "---\n- a\n---\nbody", "# \n"]:
        try:
            parse_article(text)
        except Exception as e:  # only our one-line errors
            assert type(e).__name__ == "BadInput", text


def test_editor_round_trip(tmp_path, monkeypatch):
    """$EDITOR gets a file with the current text and whatever it saves is the new text."""
    import sys

    from sdesk.commands.kb import _edit
    from sdesk.errors import SdeskError

    script = tmp_path / "editor.py"
    script.write_text("import sys; p = sys.argv[1]; t = open(p).read(); open(p, 'w').write(t.replace('old', 'new'))")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    assert _edit("# Title\n\nold text\n") == "# Title\n\nnew text\n"
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c 'raise SystemExit(1)'")
    with pytest.raises(SdeskError, match="exited with an error"):
        _edit("x")
    monkeypatch.setenv("EDITOR", "no-such-editor-anywhere")
    with pytest.raises(SdeskError, match="not found"):
        _edit("x")


def test_revisions_keep_owner_and_review_interval(cli):
    article_id = add(cli, ARTICLE)
    cli("kb", "edit", str(article_id), "--owner", "sre", "--review-days", "90")
    diff = cli("kb", "diff", str(article_id)).stdout
    assert "-owner: platform" in diff and "+owner: sre" in diff and "+review_days: 90" in diff
    result = cli("kb", "add", "-", input=ARTICLE.replace("review_days: 30", "review_days: 100000000"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "review_days" in result.stderr


def test_list_by_ci(desk):
    first = desk.new("Checkout slow", "--service", "checkout-api-prod")
    desk.new("Printer jammed")
    assert [t["id"] for t in desk.json("list", "--ci", "checkout-api")] == [first]


@pytest.mark.parametrize("via", ["stdin", "file"])
def test_edit_with_text_that_has_no_title_keeps_the_articles_title_and_fields(cli, tmp_path, via):
    """`kb edit KB-1 -` with a new body used to fail ("stdin: no title"): text without front
    matter is a new body, and the article keeps its title, tags, CIs, owner and review days;
    front matter without a title keeps the title and sets what it gives; a '# heading' or a
    front-matter title still renames it."""
    article_id = add(cli, ARTICLE)

    def edit(text):
        if via == "stdin":
            return cli("kb", "edit", str(article_id), "-", input=text)
        (tmp_path / "new.md").write_text(text)
        return cli("kb", "edit", str(article_id), str(tmp_path / "new.md"))

    edit("Check `df -h` first, then rotate the logs.\n")
    a = cli.json("kb", "show", str(article_id))
    assert (a["title"], a["tags"], a["cis"], a["owner"], a["review_days"]) == \
        ("Disk full on a node", ["disk", "linux"], ["db-billing-2"], "platform", 30)
    assert a["body"] == "Check `df -h` first, then rotate the logs.\n" and a["revision"] == 2
    edit("---\ntags: [storage]\n---\nMove the logs to the big volume.\n")
    a = cli.json("kb", "show", str(article_id))
    assert (a["title"], a["tags"], a["owner"], a["review_days"]) == ("Disk full on a node", ["storage"], None, 180)
    edit("# Disk full on a database host\n\nMove the logs.\n")
    assert cli.json("kb", "show", str(article_id))["title"] == "Disk full on a database host"
