"""What the web portal asks of the desk: sign-in (links by mail, API tokens), the catalog and the
published KB searched together, a requester's own tickets and their public timeline, and the
dashboards of leads and agents. The portal (sdesk/portal/) only renders what these return."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..domain import clock, lifecycle
from ..domain.catalog import Catalog, RequestType
from ..domain.roles import RANK
from ..errors import BadInput, NotFound
from ..store import Store

_WORD = re.compile(r"\w+")
MAX_QUERY = 200
# The events a requester's timeline shows: what was done for them, never the desk's notes.
PUBLIC_EVENTS = ("created", "replied", "status_changed", "request_submitted", "approval_requested", "approval_voted",
                 "request_approved", "request_rejected", "request_expired", "request_fulfilled", "fulfilment_failed",
                 "approval_expired", "csat")


# -- who is signed in ------------------------------------------------------------------------------


def identity(store: Store, session: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """{email, user, role} of a live session: a desk user's role, else a requester (no role)."""
    if session is None:
        return None
    user = session.get("user_name")
    email = session.get("email")
    role = None
    if user:
        access = store.users.access(user)
        role = access.role if access.listed else None
        if not email:
            email = next((u["email"] for u in store.users.users() if u["name"] == user), None)
    return {"email": email, "user": user, "role": role, "csrf": session["csrf"]}


def may(who: Mapping[str, Any] | None, role: str) -> bool:
    return bool(who and who.get("role") and RANK[who["role"]] >= RANK[role])


def user_of_email(store: Store, email: str) -> str | None:
    return store.users.user_of(email) if "@" in email else None


def user_of_token(store: Store, token: str) -> tuple[str, str] | None:
    """(the user whose live API token this is, the token's sha256), or None."""
    from ..storage.users import token_hash

    if not token or len(token) > 200 or not token.isascii():
        return None
    hashed = token_hash(token.strip())
    user = store.users.live_tokens().get(hashed)
    return (user, hashed) if user else None


def send_link(store: Store, notify: Any, catalog: Catalog, email: str, *, client: str, url: str, actor: str,
              next_path: str = "/") -> None:
    """Mail a single-use sign-in link to `email` (rate-limited per address and per client), when
    catalog.yaml's portal.sign_in lets that address in; it leads back to `next_path` (a path of
    the portal). An address not let in gets nothing, and the page says the same either way."""
    from urllib.parse import quote

    from ..domain.notify import ADDRESS
    from .outbound import sign_in_mail

    email = email.strip().casefold()
    if not ADDRESS.match(email):
        raise BadInput("that is not an email address")
    channel = next((c for c in (notify.channels.values() if notify else ()) if c.email), None)
    if channel is None:
        raise BadInput("this desk sends no mail (no email channel in notify.yaml): agents sign in with an API token")
    if not catalog.may_sign_in(email, is_user=store.users.user_of(email) is not None):
        return
    token = store.portal.link_create(email, client=client, actor=actor)
    back = f"&next={quote(next_path, safe='/')}" if next_path != "/" else ""
    sign_in_mail(notify, channel.name, email, f"{url.rstrip('/')}/login/link?t={token}{back}")


# -- searching ------------------------------------------------------------------------------------


def search(store: Store, catalog: Catalog, query: str, *, kb: bool) -> dict[str, Any]:
    """The request types and (`kb`) published articles matching the words of `query`."""
    words = [w.casefold() for w in _WORD.findall(query[:MAX_QUERY])][:8]
    if not words:
        return {"query": query[:MAX_QUERY], "types": [], "articles": []}
    scored = []
    for t in catalog.types.values():
        title = t.title.casefold()
        text = " ".join([t.id, t.description, t.category, *(f.label for f in t.fields)]).casefold()
        score = sum(3 * (w in title) + (w in text) for w in words)
        if score:
            scored.append((-score, t.title, t))
    articles: list[dict[str, Any]] = []
    if kb and store.kb.has_articles():
        # By words and meaning when the semantic index is built ("forgot my passcode" finds the
        # password article). Articles only: other people's tickets are not a requester's to see.
        from .semantic import search_kb

        try:
            articles, _ = search_kb(store, " ".join(words), tag=catalog.kb_tag, limit=8)
        except BadInput:  # only stop words
            articles = []
    for a in articles:
        a["parts"] = _marked(a.pop("snippet", ""))
    return {"query": query[:MAX_QUERY], "types": [t for _, _, t in sorted(scored, key=lambda s: s[:2])][:12],
            "articles": articles}


def _marked(snippet: str) -> list[tuple[str, bool]]:
    """A KB snippet as (text, matched) parts, its search's marks taken out (the page marks the
    matched words itself) and a Markdown heading's #s too."""
    from ..storage.kb import SNIPPET_CLOSE, SNIPPET_OPEN

    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(snippet.lstrip("# ").split(SNIPPET_OPEN)):
        matched, _, rest = piece.partition(SNIPPET_CLOSE) if i else ("", "", piece)
        parts += [(matched, True)] if matched else []
        parts += [(rest.replace(SNIPPET_CLOSE, ""), False)] if rest else []
    return parts


def article(store: Store, catalog: Catalog, article_id: int) -> dict[str, Any]:
    """A published article (one with the portal's tag), else NotFound."""
    a = store.kb.kb_get(article_id)
    if catalog.kb_tag not in (a.get("tags") or []):
        raise NotFound(f"no article {article_id}")
    return a


def articles(store: Store, catalog: Catalog) -> list[dict[str, Any]]:
    return store.kb.kb_list(tag=catalog.kb_tag, limit=200)


# -- a requester's tickets --------------------------------------------------------------------------


def my_tickets(store: Store, who: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in _addresses(who):
        rows += store.portal.tickets_of(key)
    seen: dict[int, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r["id"], {**r, "ref": lifecycle.ref(r["id"])})
    return sorted(seen.values(), key=lambda r: -r["id"])


def _addresses(who: Mapping[str, Any]) -> list[str]:
    return [x for x in dict.fromkeys([who.get("email"), who.get("user")]) if x]


def ticket_view(store: Store, who: Mapping[str, Any], ticket_id: int) -> dict[str, Any]:
    """A ticket as its requester sees it: its public fields, public timeline (replies, status,
    approvals; never internal notes, except their own words), its request, whether they may
    rate it. NotFound for a ticket they did not ask for and do not watch, as for one that does
    not exist: an id tells nothing."""
    mine = _addresses(who)
    if not any(store.portal.may_see(ticket_id, email=x) for x in mine) or not store.tickets.exists(ticket_id):
        raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
    t = store.tickets.get_or_raise(ticket_id=ticket_id)
    own = {f"mail:{x}" for x in mine} | {f"portal:{x}" for x in mine}
    timeline = []
    for e in store.tickets.events(ticket_id=ticket_id):
        if e["kind"] in PUBLIC_EVENTS or e["kind"] == "commented" and e["actor"] in own:
            timeline.append({"at": e["at"], "kind": e["kind"], "by": _public_actor(e["actor"], own),
                             "text": _public_text(e)})
    request = store.requests.find(ticket_id)
    return {"ticket": {k: t.get(k) for k in ("id", "title", "status", "priority", "kind", "created_at", "updated_at",
                                             "resolved_at", "resolution", "description", "requester")},
            "ref": lifecycle.ref(ticket_id), "timeline": timeline, "request": request,
            "may_rate": t["status"] in lifecycle.DONE and str(t.get("requester") or "").casefold() in
            {x.casefold() for x in mine}}


def _public_actor(actor: str, own: set[str]) -> str:
    if actor in own:
        return "you"
    if actor.startswith(("mail:", "portal:")):
        return actor.split(":", 1)[1]
    return "the desk" if actor in ("automation", "cron", "portal") else actor


def _public_text(e: Mapping[str, Any]) -> str:
    d = e["data"]
    kind = e["kind"]
    if kind in ("replied", "commented"):
        return str(d.get("text") or "")
    if kind == "created":
        return "Opened"
    if kind == "status_changed":
        said = f"Status: {d.get('from')} → {d.get('to')}"
        return said + (f". {d['resolution']}" if d.get("resolution") else "")
    if kind == "request_submitted":
        return "Request submitted"
    if kind == "approval_requested":
        return f"Waiting for approval: {d.get('stage')}"
    if kind == "approval_voted":
        return f"{d.get('decision')} ({d.get('stage')})" + (f": {d['reason']}" if d.get("reason") else "")
    if kind == "request_approved":
        return "Approved"
    if kind in ("request_rejected", "request_expired"):
        return str(d.get("reason") or kind.removeprefix("request_"))
    if kind == "request_fulfilled":
        return "Fulfilled automatically"
    if kind == "fulfilment_failed":
        return "Automatic fulfilment failed: a person will take it from here"
    if kind == "approval_expired":
        return f"Approval expired ({d.get('stage')})"
    if kind == "csat":
        return f"Rated {d.get('score')}/5"
    return kind.replace("_", " ")


def reply(store: Store, who: Mapping[str, Any], ticket_id: int, text: str, *, actor: str) -> None:
    ticket_view(store, who, ticket_id)  # theirs, or NotFound
    text = text.strip()
    if not text:
        raise BadInput("write something to send")
    if len(text) > 20_000:
        raise BadInput("a message is at most 20,000 characters")
    store.tickets.comment(ticket_id=ticket_id, text=text, actor=actor, acting=f"portal:{_addresses(who)[0]}")


def rate(store: Store, who: Mapping[str, Any], ticket_id: int, score: str, comment: str, *, actor: str) -> None:
    """The requester's rating (a watcher sees the ticket but does not rate it: one rating a ticket)."""
    view = ticket_view(store, who, ticket_id)
    if not view["may_rate"]:
        raise BadInput("a ticket is rated once it is resolved, by whoever asked for it")
    if score not in ("1", "2", "3", "4", "5"):
        raise BadInput("choose a rating from 1 to 5")
    store.metrics.csat_record(ticket_id=ticket_id, score=int(score), comment=comment.strip()[:2000] or None, actor=actor,
                              acting=f"portal:{_addresses(who)[0]}")


# -- dashboards (agents and leads) -------------------------------------------------------------------


def dashboard(store: Store, *, metrics_config: Any, sla: Any, oncall: Any) -> dict[str, Any]:
    """The executive and on-call views: SLA compliance, error-budget burn, the weekly volume
    trend and CSAT over 90 days; the open backlog by priority, the tickets at risk, open P1/P2,
    and who is on call now."""
    from ..domain.sla import assess, pauses
    from .reports import build

    now = clock.now()
    # Up to the next second: times are kept to the second, and what happened in this one counts.
    report = build(store, metrics_config, sla, now - timedelta(days=90), now + timedelta(seconds=1),
                   sections=frozenset({"trend", "sla", "slo", "csat"}))
    backlog = {p: store.tickets.count(priorities=[p]) for p in ("P1", "P2", "P3", "P4")}
    at_risk = []
    if sla.policies:
        for t, policy, targets in assess(sla, store.sla.sla_tickets(pauses(sla)), now):
            running = [(x.left, name, x.state) for name, x in targets.items() if not x.done]
            if running:
                left, name, state = min(running)
                if state in ("at_risk", "breached"):
                    at_risk.append({"ref": lifecycle.ref(t["id"]), "id": t["id"], "target": name, "state": state,
                                    "left": left.total_seconds(), "priority": t["priority"]})
        at_risk.sort(key=lambda r: r["left"])
    urgent = store.tickets.list(priorities=["P1", "P2"], suppressed=False, limit=20)
    schedules = list(oncall.schedules.values())
    on_call = store.oncall.on_call_now(oncall, schedules=schedules, when=now) if schedules else []
    return {"at": clock.iso(now), "report": report, "backlog": backlog, "at_risk": at_risk[:15],
            "at_risk_count": len(at_risk),
            "urgent": [{"ref": lifecycle.ref(t["id"]), "priority": t["priority"], "status": t["status"],
                        "title": t["title"], "assignee": t["assignee"]} for t in urgent],
            "on_call": on_call, "requests_open": store.requests.open_count()}


def request_form(store: Store, t: RequestType) -> dict[str, Any]:
    """What a form needs beyond the type: the CMDB's choices."""
    from .requests import options

    return {"options": options(store, t)}
