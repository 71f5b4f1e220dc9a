"""The Store's knowledge base (a part of `Store`, split out to keep files small).

Each article's current text is in `kb_articles`, every version in `kb_revisions`, and its words
in the full-text table `kb_fts` (keyed by article id), kept in step in the same transaction.
"""

from __future__ import annotations

import re
import sqlite3
from typing import TYPE_CHECKING, Any

import orjson

from ..domain.lifecycle import parse_ref
from ..errors import BadInput, NotFound
from .rows import Db

if TYPE_CHECKING:
    from .cmdb import CmdbStore
    from .rows import Tx as _Tx
    from .tickets import TicketStore

CONTENT = ("title", "body", "tags", "cis", "owner", "review_days")
SNIPPET_OPEN, SNIPPET_CLOSE = "\x02", "\x03"  # marks around matched words in snippets
_WORDY = re.compile(r"[^\W_]")


def _article(row: sqlite3.Row) -> dict[str, Any]:
    a = dict(row)
    a["tags"] = orjson.loads(a["tags"])
    a["cis"] = orjson.loads(a["cis"])
    return a


def kb_ref(article_id: int) -> str:
    return f"KB-{article_id}"


def parse_kb_id(text: str) -> int:
    return parse_ref(text, "KB-", "an article id")




def _cut_marks(snippet: str, article_id: int, conn: Any) -> str:
    """The snippet with `…` where it cuts the body short, as FTS5's snippet() gives it
    (PostgreSQL's ts_headline does not mark a cut); one FTS5 made is left as it is."""
    plain = snippet.replace(SNIPPET_OPEN, "").replace(SNIPPET_CLOSE, "")
    if plain.startswith("…") or plain.endswith("…") or not plain.strip():
        return snippet
    body = conn.execute("SELECT body FROM kb_articles WHERE id = ?", (article_id,)).fetchone()[0]
    at = body.find(plain)
    if at < 0:
        return snippet
    before, after = body[:at], body[at + len(plain):]
    return ("…" if _WORDY.search(before) else "") + snippet + ("…" if _WORDY.search(after) else "")


class KbStore:
    def __init__(self, db: Db, *, cmdb: CmdbStore, tickets: TicketStore) -> None:
        self.db = db
        self.cmdb = cmdb
        self.tickets = tickets


    def has_articles(self) -> bool:
        return self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM kb_articles)").fetchone()[0] == 1

    def kb_add(self, article: dict[str, Any], *, actor: str, slug: str | None = None) -> int:
        with self.db.write(actor) as tx:
            return self._kb_insert(tx, article, slug)

    def kb_edit(self, article_id: int, *, changes: dict[str, Any], actor: str) -> tuple[dict[str, Any], bool]:
        """Apply `changes` (content fields); a new revision when anything differs."""
        with self.db.write(actor) as tx:
            before = self.kb_get(article_id)
            changed = self._kb_revise(tx, before, {**{k: before[k] for k in CONTENT}, **changes})
        return self.kb_get(article_id), changed

    def kb_sync(self, articles: list[tuple[str, dict[str, Any]]], *, actor: str) -> dict[str, list[str]]:
        """Upsert articles by slug (a file's name in a synced folder), all in one transaction."""
        summary: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
        with self.db.write(actor) as tx:
            for slug, article in articles:
                row = tx.conn.execute("SELECT * FROM kb_articles WHERE slug = ?", (slug,)).fetchone()
                if row is None:
                    self._kb_insert(tx, article, slug)
                    summary["created"].append(slug)
                elif self._kb_revise(tx, _article(row), article):
                    summary["updated"].append(slug)
                else:
                    summary["unchanged"].append(slug)
        return summary

    def kb_get(self, article_id: int) -> dict[str, Any]:
        row = self.db.conn.execute("SELECT * FROM kb_articles WHERE id = ?", (article_id,)).fetchone()
        if row is None:
            raise NotFound(f"no article {kb_ref(article_id)}")
        return _article(row)

    def kb_list(self, *, tag: str | None = None, ci: str | None = None, due_before: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        """Articles (without bodies), by id; due_before: only those whose review falls due before then."""
        where, args = self._kb_filters(tag, ci)
        if due_before:
            d = self.db.dialect
            where.append(f"{d.plus_days('reviewed_at', 'review_days')} < {d.stamp('?')}")
            args.append(due_before)
        sql = ("SELECT id, slug, title, tags, cis, owner, review_days, revision, created_at, updated_at, reviewed_at "
               "FROM kb_articles a" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_article(r) for r in self.db.conn.execute(sql, args)]

    def kb_search(self, match: str, *, tag: str | None = None, ci: str | None = None,
                  limit: int = 10) -> list[dict[str, Any]]:
        """Articles matching an FTS5 expression, best first (the dialect's rank: a word in the title
        or tags counts more than one in the body), each with a snippet of its body. Ranks first and
        makes snippets only for the articles shown: a common word matches thousands."""
        return self.kb_shown(self.kb_rank(match, tag=tag, ci=ci, limit=limit), match=match)

    def kb_rank(self, match: str, *, tag: str | None = None, ci: str | None = None,
                limit: int = 10) -> list[tuple[int, float]]:
        """(article id, score) of the articles matching an FTS5 expression, best first."""
        where, args = self._kb_filters(tag, ci)
        d = self.db.dialect
        rank, key, matches = d.fts_rank(), d.fts_key(), d.fts_match()
        query = d.fts_query(match)  # BadInput when malformed, the same on both backends
        if query is None:
            return []  # an empty phrase: FTS5's "" matches nothing
        # Equal scores in article order: the same order on both backends.
        if where:
            top_sql = (f"SELECT kb_fts.{key}, {rank} AS score FROM kb_fts JOIN kb_articles a ON a.id = kb_fts.{key} "
                       f"WHERE {matches} AND {' AND '.join(where)} ORDER BY score, kb_fts.{key} LIMIT ?")
        else:
            top_sql = f"SELECT {key}, {rank} AS score FROM kb_fts WHERE {matches} ORDER BY score, {key} LIMIT ?"
        try:
            ranked = [query] * d.fts_binds  # the rank's own binding of the query, where it has one
            return [(r[0], r[1]) for r in self.db.conn.execute(top_sql, [*ranked, query, *args, limit])]
        except sqlite3.OperationalError as e:
            raise BadInput(f"search: {e}") from None

    def kb_shown(self, top: list[tuple[int, float]], *, match: str | None) -> list[dict[str, Any]]:
        """The articles of (id, score) as a search shows them, each with a snippet of its body
        around the words of `match` (none when None, or when it does not match the article)."""
        d = self.db.dialect
        key, matches = d.fts_key(), d.fts_match()
        query = d.fts_query(match) if match else None
        ranked = [query] * d.fts_binds
        try:
            found = []
            for article_id, score in top:
                hit = self.db.conn.execute(
                    f"SELECT {d.fts_snippet(SNIPPET_OPEN, SNIPPET_CLOSE)} FROM kb_fts "
                    f"WHERE {matches} AND {key} = ?", (*ranked, query, article_id)).fetchone() if query else None
                row = self.db.conn.execute(
                    "SELECT id, title, tags, cis, owner, updated_at, reviewed_at, review_days FROM kb_articles "
                    "WHERE id = ?", (article_id,)).fetchone()
                if row is None:
                    continue  # deleted since it was ranked
                snippet = _cut_marks(hit[0], article_id, self.db.conn) if hit else ""
                found.append({**_article(row), "snippet": snippet, "score": score})
        except sqlite3.OperationalError as e:
            raise BadInput(f"search: {e}") from None
        return found

    def kb_history(self, article_id: int) -> list[dict[str, Any]]:
        self.kb_get(article_id)
        rows = self.db.conn.execute("SELECT * FROM kb_revisions WHERE article_id = ? ORDER BY revision", (article_id,))
        return [_article(r) for r in rows]

    def kb_review(self, article_id: int, *, actor: str) -> dict[str, Any]:
        with self.db.write(actor) as tx:
            self.kb_get(article_id)
            tx.conn.execute("UPDATE kb_articles SET reviewed_at = ? WHERE id = ?", (tx.at, article_id))
            tx.event(None, "kb_reviewed", {"article": article_id})
        return self.kb_get(article_id)

    def kb_link(self, article_id: int, *, ticket_id: int, actor: str) -> bool:
        with self.db.write(actor) as tx:
            article = self.kb_get(article_id)
            self.tickets._current(tx, ticket_id)
            done = tx.conn.execute("INSERT INTO kb_links VALUES (?, ?, ?) ON CONFLICT (article_id, ticket_id) DO NOTHING",
                                   (article_id, ticket_id, tx.at)).rowcount
            if done:
                tx.event(ticket_id, "kb_linked", {"article": article_id, "title": article["title"]})
        return bool(done)

    def kb_linked(self, ticket_id: int) -> list[dict[str, Any]]:
        rows = self.db.conn.execute(
            "SELECT a.id, a.title, a.tags, a.cis FROM kb_links l JOIN kb_articles a ON a.id = l.article_id "
            "WHERE l.ticket_id = ? ORDER BY l.at", (ticket_id,))
        return [_article(r) for r in rows]

    def resolve_with_draft(self, ticket_id: int, *, resolution: str, code: str | None, actor: str) -> int:
        """Resolve a ticket and draft a KB article from it, its context and the resolution,
        linked to it: one transaction. Returns the article's id."""
        from ..domain.kb import draft_from_ticket

        with self.db.write(actor) as tx:
            t = self.tickets._current(tx, ticket_id)
            draft = draft_from_ticket(t, self.tickets.context(ticket_id=ticket_id), resolution)
            self.tickets._move(tx, t, "resolve", resolution=resolution, code=code)
            article_id = self._kb_insert(tx, draft, None)
            tx.conn.execute("INSERT INTO kb_links VALUES (?, ?, ?)", (article_id, ticket_id, tx.at))
            tx.event(ticket_id, "kb_linked", {"article": article_id, "title": draft["title"], "drafted": True})
        return article_id

    # -- internals -----------------------------------------------------------------------

    def _kb_filters(self, tag: str | None, ci: str | None) -> tuple[list[str], list[Any]]:
        where, args = [], []
        if tag:
            where.append(self.db.dialect.json_array_has("a.tags", "?"))
            args.append(tag)
        if ci:
            where.append(self.db.dialect.json_array_has("a.cis", "?", lower=True))
            args.append(self._ci_or_self(ci))
        return where, args

    def _kb_clean(self, tx: _Tx, article: dict[str, Any]) -> dict[str, Any]:
        # Runbook docs get pasted from terminals: secrets out, as for tickets.
        clean = tx.clean({k: article[k] for k in CONTENT})
        # An article about `checkout` is about the CI of that name or alias, under its own name.
        clean["cis"] = list(dict.fromkeys(self._ci_or_self(name) for name in clean["cis"]))
        return clean

    def _ci_or_self(self, name: str) -> str:
        found = self.cmdb.ci_find([name.lower()])
        return found["name"] if found else name

    def _kb_insert(self, tx: _Tx, article: dict[str, Any], slug: str | None) -> int:
        a = self._kb_clean(tx, article)
        tags, cis = orjson.dumps(a["tags"]).decode(), orjson.dumps(a["cis"]).decode()
        article_id = tx.conn.execute(
            "INSERT INTO kb_articles (slug, title, body, tags, cis, owner, review_days, revision, created_at, "
            "updated_at, reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) RETURNING id",
            (slug, a["title"], a["body"], tags, cis, a["owner"], a["review_days"], tx.at, tx.at, tx.at)).fetchone()[0]
        self._kb_index(tx, article_id, a, tags, cis, revision=1)
        tx.event(None, "kb_created", {"article": article_id, "title": a["title"], "slug": slug})
        return article_id

    def _kb_revise(self, tx: _Tx, before: dict[str, Any], article: dict[str, Any]) -> bool:
        a = self._kb_clean(tx, article)
        if all(a[k] == before[k] for k in CONTENT):
            return False
        revision = before["revision"] + 1
        tags, cis = orjson.dumps(a["tags"]).decode(), orjson.dumps(a["cis"]).decode()
        # An edit is a review: whoever changed it has read it.
        tx.conn.execute(
            "UPDATE kb_articles SET title = ?, body = ?, tags = ?, cis = ?, owner = ?, review_days = ?, revision = ?, "
            "updated_at = ?, reviewed_at = ? WHERE id = ?",
            (a["title"], a["body"], tags, cis, a["owner"], a["review_days"], revision, tx.at, tx.at, before["id"]))
        tx.conn.execute(f"DELETE FROM kb_fts WHERE {tx.dialect.fts_key()} = ?", (before["id"],))
        self._kb_index(tx, before["id"], a, tags, cis, revision)
        tx.event(None, "kb_revised", {"article": before["id"], "revision": revision,
                                      "fields": [k for k in CONTENT if a[k] != before[k]]})
        return True

    @staticmethod
    def _kb_index(tx: _Tx, article_id: int, a: dict[str, Any], tags: str, cis: str, revision: int) -> None:
        tx.conn.execute(f"INSERT INTO kb_fts ({tx.dialect.fts_key()}, title, body, tags, cis) VALUES (?, ?, ?, ?, ?)",
                        (article_id, a["title"], a["body"], " ".join(a["tags"]), " ".join(a["cis"])))
        tx.conn.execute("INSERT INTO kb_revisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (article_id, revision, tx.at, tx.actor, a["title"], a["body"], tags, cis, a["owner"],
                         a["review_days"]))
