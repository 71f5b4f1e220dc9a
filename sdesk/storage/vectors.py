"""The search index: a vector per ticket and per KB article, and the tickets' words (a part of
`Store`).

Written only by `sdesk index` (and `tick`, `serve` in the background), never by intake: a
ticket is stale when it has no vector, one of another model, or an event after the one the desk
was at when its vector was made (`seen`). Every change to a ticket is an event, and event ids only
grow, so no change is missed, even one in the same second as a pass (time stamps are to the
second). The watermark (desk_state) is where a complete pass started: only the tickets of later
events need that check, so a pass over a quiet desk looks at few. Vectors are opaque bytes here
(float16, services/semantic.py packs them); the tickets' words go to `ticket_fts`, searched as
kb_fts is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from ..errors import BadInput
from .rows import Db

# The words of a ticket kept for search: a description is cut here (PostgreSQL's tsvector holds at
# most 1 MB; a 10 MB description would cost 60 MB of index on SQLite): the first 100,000 characters.
MAX_WORDS = 100_000
# A word of a query longer than this cannot be a ticket's (SQLite refuses a LIKE pattern over 50 kB).
MAX_WORD = 1000

WATERMARK = "semantic_index"  # desk_state key: "<model> <event id>"
KB_VERSION = "semantic_kb"  # desk_state key: "<model> <number>", a number new with each write of KB vectors

# A stale ticket: no vector, another model's, or an event of it after its vector was made; only
# tickets with events after the watermark can be the last (none yet: every ticket is checked).
_CHANGED = "EXISTS (SELECT 1 FROM events e WHERE e.ticket_id = t.id AND e.id > v.seen)"


def _stale(watermark: int) -> tuple[str, tuple[int, ...]]:
    """The condition (on tickets t LEFT JOIN ticket_vectors v) and its arguments after the model's."""
    if watermark:
        return (f"(v.ticket_id IS NULL OR v.model <> ? OR (t.id IN (SELECT ticket_id FROM events WHERE id > ?) "
                f"AND {_CHANGED}))", (watermark,))
    return f"(v.ticket_id IS NULL OR v.model <> ? OR {_CHANGED})", ()


def _remember(tx: Any, key: str, value: str) -> None:
    tx.conn.execute("INSERT INTO desk_state (key, value, at) VALUES (?, ?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET value = excluded.value, at = excluded.at", (key, value, tx.at))


class VectorStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    # -- tickets --------------------------------------------------------------------------------

    def watermark(self, model: str) -> int:
        """The last event a complete pass of this model had seen (0: none yet)."""
        row = self.db.conn.execute("SELECT value FROM desk_state WHERE key = ?", (WATERMARK,)).fetchone()
        name, _, event = (row[0] if row else "").rpartition(" ")
        return int(event) if name == model and event.isdigit() else 0

    def last_event(self) -> int:
        return self.db.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def set_watermark(self, model: str, *, event_id: int, actor: str) -> None:
        with self.db.write(actor, need="agent", what="indexing tickets") as tx:
            _remember(tx, WATERMARK, f"{model} {event_id}")

    def pending_count(self, model: str) -> dict[str, int]:
        """How many tickets and articles the index lacks or holds stale, and how many it holds."""
        conn = self.db.conn
        stale, args = _stale(self.watermark(model))
        tickets = conn.execute(f"SELECT count(*) FROM tickets t LEFT JOIN ticket_vectors v ON v.ticket_id = t.id "
                               f"WHERE {stale}", (model, *args)).fetchone()[0]
        articles = conn.execute("SELECT count(*) FROM kb_articles a LEFT JOIN kb_vectors v ON v.article_id = a.id "
                                "WHERE v.article_id IS NULL OR v.model <> ? OR v.revision <> a.revision",
                                (model,)).fetchone()[0]
        held = conn.execute("SELECT count(*) FROM ticket_vectors WHERE model = ?", (model,)).fetchone()[0]
        held_kb = conn.execute("SELECT count(*) FROM kb_vectors WHERE model = ?", (model,)).fetchone()[0]
        return {"tickets_pending": tickets, "articles_pending": articles, "tickets_indexed": held,
                "articles_indexed": held_kb}

    def pending_tickets(self, model: str, *, watermark: int, after: int = 0, limit: int = 2000) -> list[dict[str, Any]]:
        """The next stale tickets after id `after`, in id order, with what is indexed of them."""
        stale, args = _stale(watermark)
        rows = self.db.conn.execute(
            "SELECT t.id, t.kind, t.title, t.description, t.resolution, t.tags, t.ci, t.service, t.status "
            f"FROM tickets t LEFT JOIN ticket_vectors v ON v.ticket_id = t.id WHERE t.id > ? AND {stale} "
            "ORDER BY t.id LIMIT ?", (after, model, *args, limit)).fetchall()
        return [{"id": r[0], "kind": r[1], "title": r[2], "description": r[3] or "", "resolution": r[4] or "",
                 "tags": orjson.loads(r[5]) if r[5] else [], "ci": r[6], "service": r[7], "status": r[8]}
                for r in rows]

    def put_tickets(self, rows: Sequence[dict[str, Any]], *, model: str, seen: int, actor: str) -> int:
        """Store each ticket's vector (`vec`, bytes), its neighbours (`near`, or None) and its words,
        in one transaction; `seen`: the desk's last event before the tickets were read."""
        if not rows:
            return 0
        with self.db.write(actor, need="agent", what="indexing tickets") as tx:
            conn = tx.conn
            conn.executemany(
                "INSERT INTO ticket_vectors (ticket_id, model, seen, vec, near) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (ticket_id) DO UPDATE SET model = excluded.model, seen = excluded.seen, "
                "vec = excluded.vec, near = excluded.near",
                [(r["id"], model, seen, r["vec"],
                  orjson.dumps(r["near"]).decode() if r.get("near") is not None else None) for r in rows])
            ids = [r["id"] for r in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                conn.execute(f"DELETE FROM ticket_fts WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
            conn.executemany("INSERT INTO ticket_fts (rowid, title, body, tags, cis) VALUES (?, ?, ?, ?, ?)",
                             [(r["id"], r["title"][:MAX_WORDS],
                               "\n".join(x[:MAX_WORDS] for x in (r["description"], r["resolution"]) if x),
                               " ".join(r["tags"])[:MAX_WORDS], " ".join(x for x in (r["ci"], r["service"]) if x))
                              for r in rows])
        return len(rows)

    def ticket_matrix(self, model: str, *, resolved_only: bool = False,
                      kinds: Sequence[str] = (), since: str | None = None) -> tuple[list[int], list[bytes]]:
        """The ids and vectors of the indexed tickets (of this model), in id order."""
        where, args = ["v.model = ?"], [model]
        if resolved_only:
            where.append("t.status IN ('resolved', 'closed')")
        if kinds:
            where.append(f"t.kind IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        if since is not None:
            where.append("t.created_at >= ?")
            args.append(since)
        join = "" if len(where) == 1 else " JOIN tickets t ON t.id = v.ticket_id"
        rows = self.db.conn.execute(f"SELECT v.ticket_id, v.vec FROM ticket_vectors v{join} WHERE {' AND '.join(where)} "
                                    "ORDER BY v.ticket_id", args).fetchall()
        return [r[0] for r in rows], [bytes(r[1]) for r in rows]

    def ticket_vector(self, ticket_id: int, *, model: str) -> bytes | None:
        row = self.db.conn.execute("SELECT vec FROM ticket_vectors WHERE ticket_id = ? AND model = ?",
                                   (ticket_id, model)).fetchone()
        return bytes(row[0]) if row else None

    def near(self, ticket_id: int) -> dict[str, Any] | None:
        """What the index found like this ticket when it last indexed it (None: not indexed)."""
        row = self.db.conn.execute("SELECT near FROM ticket_vectors WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return orjson.loads(row[0]) if row and row[0] else None

    def search_tickets(self, match: str, *, limit: int) -> list[tuple[int, float]]:
        """Indexed tickets whose words match the FTS5 expression `match`, best first."""
        d = self.db.dialect
        query = d.fts_query(match)  # BadInput when malformed, the same on both backends
        if query is None:
            return []
        sql = (f"SELECT rowid, {d.fts_rank('ticket_fts')} AS score FROM ticket_fts WHERE {d.fts_match('ticket_fts')} "
               "ORDER BY score, rowid LIMIT ?")
        try:
            return [(r[0], r[1]) for r in self.db.conn.execute(sql, [*[query] * d.fts_binds, query, limit])]
        except sqlite3.OperationalError as e:
            raise BadInput(f"search: {e}") from None

    def unindexed_matching(self, words: Sequence[str], *, limit: int) -> list[int]:
        """Tickets not yet in the index whose title or description has every word (newest first):
        a ticket is found by its words before `sdesk index` reaches it."""
        like = self.db.dialect.like
        where, args = [], []
        for w in words[:8]:
            w = w[:MAX_WORD]
            pattern = "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(f"(t.title {like} ? ESCAPE '\\' OR t.description {like} ? ESCAPE '\\')")
            args += [pattern, pattern]
        if not where:
            return []
        rows = self.db.conn.execute(
            "SELECT t.id FROM tickets t LEFT JOIN ticket_vectors v ON v.ticket_id = t.id WHERE v.ticket_id IS NULL AND "
            + " AND ".join(where) + " ORDER BY t.id DESC LIMIT ?", (*args, limit)).fetchall()
        return [r[0] for r in rows]

    # -- the knowledge base ------------------------------------------------------------------

    def pending_articles(self, model: str, *, limit: int) -> list[dict[str, Any]]:
        """The first stale articles (none, another model's, or of an older revision), in id order."""
        rows = self.db.conn.execute(
            "SELECT a.id, a.revision, a.title, a.body, a.tags FROM kb_articles a "
            "LEFT JOIN kb_vectors v ON v.article_id = a.id "
            "WHERE v.article_id IS NULL OR v.model <> ? OR v.revision <> a.revision ORDER BY a.id LIMIT ?",
            (model, limit)).fetchall()
        return [{"id": r[0], "revision": r[1], "title": r[2], "body": r[3], "tags": orjson.loads(r[4])} for r in rows]

    def kb_version(self, model: str) -> tuple[int, str]:
        """A number that grows whenever the KB's vectors of this model change, and when it did (a
        cache's key: a restored desk with the same number has another time)."""
        row = self.db.conn.execute("SELECT value, at FROM desk_state WHERE key = ?", (KB_VERSION,)).fetchone()
        name, _, number = (row[0] if row else "").rpartition(" ")
        return (int(number), row[1]) if row and name == model and number.isdigit() else (0, "")

    def article_ids(self, *, tag: str) -> set[int]:
        return {r[0] for r in self.db.conn.execute(
            f"SELECT id FROM kb_articles a WHERE {self.db.dialect.json_array_has('a.tags', '?')}", (tag,))}

    def put_articles(self, rows: Sequence[dict[str, Any]], *, model: str, actor: str) -> int:
        if not rows:
            return 0
        with self.db.write(actor, need="agent", what="indexing articles") as tx:
            _remember(tx, KB_VERSION, f"{model} {self.kb_version(model)[0] + 1}")
            tx.conn.executemany(
                "INSERT INTO kb_vectors (article_id, model, revision, vec) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (article_id) DO UPDATE SET model = excluded.model, revision = excluded.revision, "
                "vec = excluded.vec", [(r["id"], model, r["revision"], r["vec"]) for r in rows])
        return len(rows)

    def article_matrix(self, model: str, *, tag: str | None = None) -> tuple[list[int], list[bytes]]:
        if tag is None:
            rows = self.db.conn.execute("SELECT article_id, vec FROM kb_vectors WHERE model = ? ORDER BY article_id",
                                        (model,)).fetchall()
        else:
            rows = self.db.conn.execute(
                "SELECT v.article_id, v.vec FROM kb_vectors v JOIN kb_articles a ON a.id = v.article_id "
                f"WHERE v.model = ? AND {self.db.dialect.json_array_has('a.tags', '?')} ORDER BY v.article_id",
                (model, tag)).fetchall()
        return [r[0] for r in rows], [bytes(r[1]) for r in rows]
