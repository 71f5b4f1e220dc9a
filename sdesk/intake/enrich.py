"""Context for a ticket as it arrives: its CI, owner, tier and blast radius from the CMDB,
recent changes on it or what it depends on, the KB articles most likely to help, and similar
tickets. The store calls this inside the intake transaction; lookups are cached for the length
of a batch, since a stream brings many tickets about the same few CIs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from ..domain import clock
from ..domain.cmdb import DEFAULT_MATCH_LABELS, match_keys
from ..domain.kb import fts_query, terms
from ..errors import BadInput

if TYPE_CHECKING:
    from ..store import Store


class EnrichOptions(NamedTuple):
    labels: tuple[str, ...] = DEFAULT_MATCH_LABELS  # where a ticket names its CI, best first
    change_window_hours: int = 24
    kb_articles: int = 3
    similar_tickets: int = 5
    similar_within_days: int = 14
    dependents_shown: int = 20
    # Bounds on the graph walks, so that a CI everything depends on (DNS, the network) costs a
    # new ticket milliseconds, not a walk of the whole estate.
    dependents_counted: int = 500
    upstream_depth: int = 3


class Enricher:
    def __init__(self, store: Store, options: EnrichOptions, *, has_cmdb: bool, has_kb: bool,
                 now: datetime | None = None):
        self.store = store
        self.options = options
        self.now = now or clock.now()
        self.has_cmdb = has_cmdb
        self.has_kb = has_kb
        self._ci: dict[tuple[str, ...], dict[str, Any] | None] = {}
        self._around: dict[str, dict[str, Any]] = {}
        self._kb: dict[str, list[dict[str, Any]]] = {}
        self._recent: dict[str, list[tuple[dict[str, Any], set[str]]]] = {}
        self._upstream: dict[str, list[tuple[str, int]]] = {}

    def context(self, ticket: dict[str, Any], ticket_id: int | None = None) -> dict[str, Any]:
        """What is known about the ticket's subject; empty when nothing is."""
        ctx: dict[str, Any] = {}
        ci = self._find_ci(ticket) if self.has_cmdb else None
        if ci is not None:
            ctx.update(ci=ci["name"], ci_type=ci["type"], tier=ci["tier"], team=ci["team"], **self._surroundings(ci["name"]))
        if self.has_kb:
            articles = self._articles(ticket, ci["name"] if ci else None)
            if articles:
                ctx["kb"] = articles
        similar = self._similar(ticket, ci["name"] if ci else None, ticket_id)
        if similar:
            ctx["similar"] = similar
        return ctx

    def _find_ci(self, ticket: dict[str, Any]) -> dict[str, Any] | None:
        keys = tuple(match_keys(ticket, self.options.labels))
        if keys not in self._ci:
            self._ci[keys] = self.store.cmdb.ci_find(list(keys))
        return self._ci[keys]

    def _surroundings(self, name: str) -> dict[str, Any]:
        """Who depends on the CI (its blast radius) and what changed on it or below it lately."""
        if name in self._around:
            return self._around[name]
        _, down, info = self.store.cmdb.ci_walk(name, upstream=False, limit=self.options.dependents_counted)
        tiers = [info[r.name]["tier"] for r in down if info[r.name]["tier"]]
        since = clock.iso(self.now - timedelta(hours=self.options.change_window_hours))
        _, up, _ = self.store.cmdb.ci_walk(name, upstream=True, depth=self.options.upstream_depth,
                                      limit=self.options.dependents_counted)
        self._upstream[name] = [(r.name, r.depth) for r in up]
        changes = self.store.cmdb.change_list(cis=[name, *(r.name for r in up)], since=since, until=clock.iso(self.now),
                                         limit=5)
        around = {
            "dependents": [r.name for r in down][:self.options.dependents_shown],
            "dependents_total": len(down),
            "dependents_capped": len(down) >= self.options.dependents_counted,
            "highest_tier_affected": min(tiers) if tiers else None,
            "changes": [{"id": c["id"], "summary": c["summary"], "ci": c["ci"] or c["service"],
                         "happened_at": c["happened_at"], "status": c["status"], "risk": c["risk"],
                         "minutes_before": self._minutes_before(c["happened_at"])}
                        for c in changes],
        }
        self._around[name] = around
        return around

    def upstream(self, name: str) -> list[tuple[str, int]]:
        """What the CI needs (name, hops), nearest first, as far as enrichment walked."""
        if name not in self._upstream:
            self._surroundings(name)
        return self._upstream.get(name, [])

    def _minutes_before(self, happened_at: str) -> int | None:
        try:
            return int((self.now - clock.parse(happened_at)).total_seconds() // 60)
        except BadInput:  # a time written before sdesk checked them: shown without the gap
            return None

    def _articles(self, ticket: dict[str, Any], ci: str | None) -> list[dict[str, Any]]:
        """The best matches for the ticket's text, those written about its CI first."""
        query = fts_query(" ".join(filter(None, [ticket.get("title"), ci, ticket.get("service")])), any_term=True)
        limit = self.options.kb_articles
        if query is None or limit <= 0:
            return []
        key = f"{ci}\0{query}"
        if key not in self._kb:
            found = self.store.kb.kb_search(query, ci=ci, limit=limit) if ci else []
            if len(found) < limit:
                seen = {a["id"] for a in found}
                found += [a for a in self.store.kb.kb_search(query, limit=limit) if a["id"] not in seen]
            self._kb[key] = [{"id": a["id"], "title": a["title"]} for a in found[:limit]]
        return self._kb[key]

    def _similar(self, ticket: dict[str, Any], ci: str | None, ticket_id: int | None) -> list[dict[str, Any]]:
        """Open or recently resolved tickets on the same CI whose titles share words with this one."""
        if self.options.similar_tickets <= 0 or ci is None:
            return []
        if ci not in self._recent:
            since = clock.iso(self.now - timedelta(days=self.options.similar_within_days))
            self._recent[ci] = [(c, set(terms(c["title"], limit=32)))
                                for c in self.store.tickets.recent_on(ci=ci, since=since, limit=200)]
        mine = set(terms(ticket.get("title") or "", limit=32))
        scored = []
        for c, theirs in self._recent[ci]:
            union = mine | theirs
            score = len(mine & theirs) / len(union) if union else 0.0
            if score >= 0.25 and c["id"] != ticket_id:
                scored.append((score, c))
        scored.sort(key=lambda sc: (-sc[0], -sc[1]["id"]))
        return [{"id": c["id"], "title": c["title"], "status": c["status"], "score": round(s, 2)}
                for s, c in scored[:self.options.similar_tickets]]
