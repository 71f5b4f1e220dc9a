"""Semantic search over the store: the index (`sdesk index`, and `tick` and `serve` in the
background), hybrid search of articles and tickets, similar tickets, and problem candidates.

Hybrid search ranks twice, by words (the full-text index's rank) and by meaning (the cosine of
the query's vector and each document's), and merges the two rankings by reciprocal rank fusion
(domain/semantic.fuse). It is used whenever the `semantic` extra is installed and the index holds
vectors of the current model; otherwise search is by words alone, and says so (`mode`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import embedding
from ..domain import clock
from ..domain import semantic as vec
from ..domain.kb import fts_query, terms
from ..errors import BadInput, NotFound

if TYPE_CHECKING:
    from ..store import Store

HYBRID, WORDS = "hybrid", "words"
CHUNK = 2000  # tickets embedded and written per transaction
NEAR_TICKETS, NEAR_ARTICLES = 5, 2
# Cosines under these are not "alike" enough to offer (measured on the example desk and the corpus:
# unrelated tickets score 0.1-0.4 with this model, rewordings of one problem 0.6 and up).
NEAR_FLOOR = 0.6
# An article is a long text and a ticket a short one: their cosines run lower (on the example desk
# the right article scores 0.4-0.75 against a ticket, the wrong ones mostly under 0.35).
NEAR_ARTICLE_FLOOR = 0.4
# Incidents on one CI whose cosine to a group's centroid reaches this are one group: rewordings of
# one problem score 0.6-0.95 with this model (the demo's replica lag: 0.62-0.86), different problems
# on one CI under 0.3 (and 0.45 when both titles name the CI).
CLUSTER_THRESHOLD = 0.6
CANDIDATES = 100  # each ranking's depth before fusion
# The ranking by meaning keeps any positive cosine: on the KB evaluation set a floor of 0.1 loses 5
# points of hit@1 on reworded questions (0.15: 20), whose right article often scores only 0.1-0.2.
MEANING_FLOOR = 0.0
Progress = Callable[[int, int], None]


def ticket_text(t: dict[str, Any]) -> str:
    """What a ticket's vector says: its problem (title and description), not how it ended."""
    return f"{t['title']}\n{t.get('description') or ''}"


def article_text(a: dict[str, Any]) -> str:
    return f"{a['title']}\n{' '.join(a.get('tags') or ())}\n{a['body']}"


# -- the index ----------------------------------------------------------------------------------


def index(store: Store, *, actor: str, progress: Progress | None = None, limit: int | None = None) -> dict[str, Any]:
    """Embed what the index lacks or holds stale (articles, then tickets in id order), `CHUNK`
    tickets per transaction; an open ticket also gets its nearest resolved tickets and articles.
    Returns counts and the rate. Safe to run beside intake: a ticket that changes meanwhile is
    taken again by the next run."""
    started = time.perf_counter()
    model = embedding.embedder()
    vectors = store.vectors
    # Events after `seen` are the next pass's: read before the tickets, so a change made while this
    # pass runs is taken again. The watermark moves only when a pass has taken everything stale;
    # a pass cut short (`limit`) leaves the rest to the next, which skips what this one did.
    watermark, seen = vectors.watermark(model.name), vectors.last_event()
    pending = vectors.pending_count(model.name)
    total = pending["tickets_pending"] if limit is None else min(limit, pending["tickets_pending"])
    n_articles = 0
    while batch := vectors.pending_articles(model.name, limit=CHUNK):
        packed = vec.pack(model.embed([article_text(a) for a in batch]))
        n_articles += vectors.put_articles([{**a, "vec": v} for a, v in zip(batch, packed)], model=model.name,
                                           actor=actor)
    kb_ids, kb_blobs = vectors.article_matrix(model.name)
    kb_matrix = [vec.unpack(kb_blobs, embedding.DIM)]
    resolved: Resolved | None = None
    done, after = 0, 0
    if progress:
        progress(0, total)
    while done < total:
        batch = vectors.pending_tickets(model.name, watermark=watermark, after=after, limit=min(CHUNK, total - done))
        if not batch:
            break
        matrix = model.embed([ticket_text(t) for t in batch])
        packed = vec.pack(matrix)
        is_open = [t["status"] not in ("resolved", "closed") for t in batch]
        if resolved is None and any(is_open):  # loaded once, only when an open ticket needs it
            resolved = Resolved(*vectors.ticket_matrix(model.name, resolved_only=True))
        if resolved is not None:  # this batch's resolved tickets are neighbours too
            resolved.add([t["id"] for t, o in zip(batch, is_open) if not o], matrix[[not o for o in is_open]])
        near = _near(matrix[is_open], [t["id"] for t, o in zip(batch, is_open) if o], resolved, kb_ids, kb_matrix) \
            if resolved is not None and any(is_open) else {}
        rows = [{**t, "vec": blob, "near": near.get(t["id"])} for t, blob in zip(batch, packed)]
        vectors.put_tickets(rows, model=model.name, seen=seen, actor=actor)
        done += len(batch)
        after = batch[-1]["id"]
        if progress:
            progress(done, total)
    if done >= pending["tickets_pending"] and seen > watermark:
        vectors.set_watermark(model.name, event_id=seen, actor=actor)
    seconds = time.perf_counter() - started
    return {"model": model.name, "tickets": done, "articles": n_articles, "seconds": round(seconds, 3),
            "tickets_per_second": round(done / seconds) if seconds and done else None,
            "pending": vectors.pending_count(model.name)["tickets_pending"]}


class Resolved:
    """The resolved tickets' vectors as the index goes: float16 blocks (what the store held, then
    each batch's), their ids in the same order."""

    def __init__(self, ids: list[int], blobs: list[bytes]):
        self.ids = list(ids)
        self.blocks = [vec.unpack(blobs, embedding.DIM).astype("<f2")] if blobs else []
        self.known = set(self.ids)

    def add(self, ids: list[int], matrix: Any) -> None:
        new = [i for i, ticket_id in enumerate(ids) if ticket_id not in self.known]
        if new:
            self.blocks.append(matrix[new].astype("<f2"))
            self.ids += [ids[i] for i in new]
            self.known.update(ids[i] for i in new)


def _near(matrix: Any, ids: list[int], resolved: Resolved, kb_ids: list[int],
          kb_matrix: list[Any]) -> dict[int, dict[str, Any]]:
    """For open tickets (their vectors, their ids): the resolved tickets and articles most like each."""
    # One more than shown: a reopened ticket is still among the resolved ones, and is not its own neighbour.
    tickets = vec.nearest_many(resolved.blocks, matrix, k=NEAR_TICKETS + 1, floor=NEAR_FLOOR)
    articles = vec.nearest_many(kb_matrix, matrix, k=NEAR_ARTICLES, floor=NEAR_ARTICLE_FLOOR)
    return {ticket_id: {"tickets": [(resolved.ids[p], round(s, 3)) for p, s in t
                                    if resolved.ids[p] != ticket_id][:NEAR_TICKETS],
                        "articles": [(kb_ids[p], round(s, 3)) for p, s in a]}
            for ticket_id, t, a in zip(ids, tickets, articles)}


def status(store: Store) -> dict[str, Any]:
    """How much of the desk the index holds (no model loaded)."""
    if not embedding.available():
        return {"installed": False, "model": None}
    return {"installed": True, "model": embedding.model_name(), **store.vectors.pending_count(embedding.model_name())}


BACKGROUND_SHARE = 20000  # tickets a tick (or serve's pass) indexes at most, about 10 s: the rest next time


def index_in_background(store: Store, *, actor: str) -> dict[str, Any] | None:
    """One pass for `tick` and `serve`: nothing when the extra is not installed."""
    if not embedding.available():
        return None
    return index(store, actor=actor, limit=BACKGROUND_SHARE)


# -- search ---------------------------------------------------------------------------------------


def _query_vector(text: str) -> Any:
    return embedding.embedder().embed([text])[0]


CACHE_FROM = 5000  # articles: under this, reading their vectors from the desk is as quick as the cache


def kb_vectors(store: Store, model: str) -> tuple[Any, Any]:
    """The ids and vectors (one row each) of the KB's indexed articles. A big KB's are kept in the
    cache folder as two .npy files, the vectors in float32 and memory-mapped: 100,000 articles are
    100 MB that a search scores where they lie, where reading them from the desk and widening them
    costs a third of a second every time. The file's name holds the desk, the model and the KB's
    vector version, so any change writes a new one."""
    version, when = store.vectors.kb_version(model)
    if not version:  # no vectors of this model yet: nothing to import numpy for (a third of a search)
        return [], []
    import hashlib

    import numpy as np

    from ..files import cache_dir

    desk = hashlib.sha256(f"{store.path}\0{model}".encode()).hexdigest()[:16]
    key = f"{desk}-{hashlib.sha256(f'{version}@{when}'.encode()).hexdigest()[:16]}"
    folder = cache_dir() / "vectors"
    ids_file, matrix_file = folder / f"kb-{key}.ids.npy", folder / f"kb-{key}.npy"
    if ids_file.is_file() and matrix_file.is_file():
        try:
            ids, matrix = np.load(ids_file, allow_pickle=False), np.load(matrix_file, mmap_mode="r", allow_pickle=False)
            if matrix.shape == (len(ids), embedding.DIM) and matrix.dtype == np.dtype("<f4"):
                return ids, matrix
        except (OSError, ValueError):
            pass  # damaged or half-removed: made again below
    ids_list, blobs = store.vectors.article_matrix(model)
    ids, matrix = np.asarray(ids_list, dtype=np.int64), vec.unpack(blobs, embedding.DIM)
    if len(ids) >= CACHE_FROM:
        from ..atomic import replaced
        from ..errors import SdeskError

        try:
            folder.mkdir(parents=True, exist_ok=True)
            for older in folder.glob(f"kb-{desk}-*"):  # this desk's earlier versions
                older.unlink(missing_ok=True)
            for target, array in ((matrix_file, matrix), (ids_file, ids)):  # the ids last: they mark it whole
                with replaced(target) as tmp, open(tmp, "wb") as f:
                    np.save(f, array, allow_pickle=False)
        except (OSError, SdeskError):
            pass  # no cache folder to write: searched without one
    return ids, matrix


def search_kb(store: Store, text: str, *, tag: str | None = None, ci: str | None = None,
              limit: int = 10) -> tuple[list[dict[str, Any]], str]:
    """Articles for free text, best first, and the mode used (hybrid or words)."""
    every = fts_query(text)
    if every is None:
        raise BadInput(f"search: {text!r} has no word to look for")
    kb = store.kb
    model = embedding.model_name() if embedding.available() else None
    ids, matrix = kb_vectors(store, model) if model else ([], [])
    if tag is not None and len(ids):
        keep = store.vectors.article_ids(tag=tag)
        rows = [p for p, i in enumerate(ids.tolist()) if i in keep]
        ids, matrix = ids[rows], matrix[rows]
    if not len(ids):  # by words alone: all of them, or any when no article has all
        return (kb.kb_search(every, tag=tag, ci=ci, limit=limit)
                or kb.kb_search(fts_query(text, any_term=True) or every, tag=tag, ci=ci, limit=limit)), WORDS
    # Hybrid: the articles with every word, fused with the ranking by meaning. Not the any-word
    # fallback: on bench/semantic/kb_queries.yaml it pulls in articles that share one common word
    # and costs 12 points of hit@1 (0.63 against 0.75), where meaning already finds the rest.
    lexical = [i for i, _ in kb.kb_rank(every, tag=tag, ci=ci, limit=CANDIDATES)]
    meaning = [int(ids[p]) for p, _ in vec.nearest_many([matrix], _query_vector(text)[None, :], k=CANDIDATES,
                                                        floor=MEANING_FLOOR)[0]]
    if ci is not None:
        allowed = {a["id"] for a in kb.kb_list(ci=ci)}
        meaning = [i for i in meaning if i in allowed]
    fused = vec.fuse([meaning, lexical])[:limit]
    words = set(lexical)
    return [{**a, "by": _by(a["id"], words, meaning)} for a in kb.kb_shown(fused, match=every)], HYBRID


def _by(key: int, lexical: set[int], meaning: list[int]) -> str:
    words, means = key in lexical, key in meaning
    return "both" if words and means else "words" if words else "meaning"


def search_tickets(store: Store, text: str, *, limit: int = 20) -> tuple[list[dict[str, Any]], str]:
    """Tickets for free text: hybrid over the index, then tickets not indexed yet that have every
    word (found by their words until `sdesk index` reaches them)."""
    every = fts_query(text)
    if every is None:
        raise BadInput(f"search: {text!r} has no word to look for")
    vectors = store.vectors
    lexical = [i for i, _ in vectors.search_tickets(every, limit=CANDIDATES)]
    mode, meaning = WORDS, []
    if embedding.available():
        ids, blobs = vectors.ticket_matrix(embedding.model_name())
        if blobs:
            mode = HYBRID
            meaning = [ids[p] for p, _ in vec.nearest_many(vec.blocks_of(blobs, embedding.DIM),
                                                           _query_vector(text)[None, :], k=CANDIDATES,
                                                           floor=MEANING_FLOOR)[0]]
    if mode == WORDS and not lexical:
        lexical = [i for i, _ in vectors.search_tickets(fts_query(text, any_term=True) or every, limit=CANDIDATES)]
    fused = vec.fuse([meaning, lexical])[:limit]
    fresh = vectors.unindexed_matching(terms(text), limit=max(0, limit - len(fused)))
    brief = store.tickets.brief([i for i, _ in fused] + fresh)
    lexical_set = set(lexical)
    found = [{**brief[i], "score": round(s, 6), "by": _by(i, lexical_set, meaning)} for i, s in fused if i in brief]
    found += [{**brief[i], "score": None, "by": "not indexed"} for i in fresh if i in brief]
    return found, mode


def similar(store: Store, ticket_id: int, *, resolved: bool = False, limit: int = 10) -> list[dict[str, Any]]:
    """The tickets most like this one, by meaning, with their cosine (and, for resolved ones, how
    they were resolved). A ticket not indexed yet is embedded now (the model is loaded)."""
    ticket = store.tickets.get_or_raise(ticket_id=ticket_id)
    if not embedding.available():
        raise embedding.ModelMissing(f"similar tickets need the semantic model: {embedding.INSTALL}")
    model = embedding.model_name()
    mine = store.vectors.ticket_vector(ticket_id, model=model)
    query = vec.unpack([mine], embedding.DIM)[0] if mine else _query_vector(ticket_text(ticket))
    ids, blobs = store.vectors.ticket_matrix(model, resolved_only=resolved)
    top = [(p, s) for p, s in vec.nearest_many(vec.blocks_of(blobs, embedding.DIM), query[None, :], k=limit + 1)[0]
           if ids[p] != ticket_id][:limit]  # one more: the ticket itself is among them
    brief = store.tickets.brief([ids[p] for p, _ in top])
    return [{**brief[ids[p]], "score": round(s, 3)} for p, s in top if ids[p] in brief]


def near(store: Store, ticket_id: int) -> dict[str, Any] | None:
    """What the index found like this ticket (resolved tickets and articles), without the model:
    for `show` and the TUI. None when the ticket is not indexed."""
    found = store.vectors.near(ticket_id)
    if found is None:
        return None
    brief = store.tickets.brief([i for i, _ in found.get("tickets", ())])
    articles = []
    for article_id, score in found.get("articles", ()):
        try:
            articles.append({"id": article_id, "title": store.kb.kb_get(article_id)["title"], "score": score})
        except NotFound:  # deleted since
            continue
    return {"tickets": [{**brief[i], "score": s} for i, s in found.get("tickets", ()) if i in brief],
            "articles": articles}


# -- problems -----------------------------------------------------------------------------------


def suggest_problems(store: Store, *, since: datetime | None = None, min_size: int = 3,
                     threshold: float = CLUSTER_THRESHOLD, now: datetime | None = None) -> list[dict[str, Any]]:
    """Incidents since `since` (30 days ago by default) that are alike in meaning and on the same CI (or service),
    not yet under a problem, grouped; each group of `min_size` or more is a suggested problem,
    with its members, CIs, a title (its most typical member's) and the hours its incidents were
    open, most costly first."""
    if not embedding.available():
        raise embedding.ModelMissing(f"problem suggestions need the semantic model: {embedding.INSTALL}")
    if min_size < 2:
        raise BadInput("--min-size: a problem explains at least 2 incidents")
    now = now or clock.now()
    since = since or now - timedelta(days=30)
    ids, blobs = store.vectors.ticket_matrix(embedding.model_name(), kinds=("incident",), since=clock.iso(since))
    brief = store.tickets.brief(ids)
    keep = [p for p, i in enumerate(ids) if i in brief and brief[i]["problem_id"] is None]
    if not keep:
        return []
    ids = [ids[p] for p in keep]
    matrix = vec.unpack([blobs[p] for p in keep], embedding.DIM)
    groups = [brief[i]["ci"] or brief[i]["service"] or "" for i in ids]
    found = []
    for members in vec.clusters(matrix, groups, threshold=threshold, min_size=min_size):
        tickets = [brief[ids[p]] for p in members]
        typical = brief[ids[vec.medoid(matrix, members)]]
        hours = sum(_open_hours(t, now) for t in tickets)
        found.append({"title": typical["title"], "members": [t["id"] for t in tickets],
                      "cis": sorted({t["ci"] for t in tickets if t["ci"]}),
                      "services": sorted({t["service"] for t in tickets if t["service"]}),
                      "open": sum(t["status"] not in ("resolved", "closed") for t in tickets),
                      "hours": round(hours, 1), "first": min(t["created_at"] for t in tickets),
                      "last": max(t["created_at"] for t in tickets)})
    found.sort(key=lambda s: (-s["hours"], -len(s["members"]), s["members"][0]))
    return found


def _open_hours(t: dict[str, Any], now: Any) -> float:
    end = clock.parse(t["resolved_at"]) if t["resolved_at"] else now
    return max(0.0, (end - clock.parse(t["created_at"])).total_seconds() / 3600)

