"""The web portal on `sdesk serve`: requesters sign in by an emailed link, search the catalog
and the published KB, fill in request forms, follow their requests, reply and rate; approvers
decide; agents and leads see the dashboards. Server-rendered HTML (Jinja2, autoescaped) with
plain forms that work without JavaScript; one small script makes the forms nicer (fields shown
only when they apply). Nothing is fetched from another host (the Content-Security-Policy says
so to the browser too).

Security: every form carries a CSRF token (the session's; before sign-in, a double-submit
cookie); sessions and links are random tokens kept only as sha256 (storage/portal.py); the
session cookie is HttpOnly, SameSite=Lax, and Secure over TLS; `next` is only ever a path of
this site; a ticket a requester may not see is a 404 whatever its id. The database work runs on
worker threads, each with its own connection."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..desk import Desk
from ..domain import lifecycle
from ..domain.catalog import EMPTY, Catalog
from ..errors import BadInput, Conflict, NotFound, PermissionDenied, SdeskError
from ..services import portal as service
from ..services import requests as requests_service
from .svg import hbars, lines

HERE = Path(__file__).parent
SESSION_COOKIE, CSRF_COOKIE = "sdesk_session", "sdesk_csrf"
FORM_MAX = 64 * 1024  # bytes of a form's body
FIELDS_MAX = 200
DASH_TTL = 60.0  # seconds a dashboard is served from its last computation
APPROVALS_SHOWN = 30  # on one page, oldest first: a page stays small however many wait
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
ASSETS = {"portal.css": "text/css; charset=utf-8", "portal.js": "text/javascript; charset=utf-8"}


def safe_next(value: str | None) -> str:
    """A path of this site to go to after signing in, else /: never another host (`//evil`,
    `/\\evil`, `https://...`), never a control character."""
    if not value or len(value) > 300 or not value.startswith("/") or value.startswith(("//", "/\\")) \
            or any(c in value for c in "\\\r\n\t") or not value.isprintable():
        return "/"
    return value


class Portal:
    def __init__(self, desk: Desk, *, actor: str):
        import jinja2

        self.desk, self.actor = desk, actor
        self.local = threading.local()
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                                      trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        self.env.globals.update(ref=lifecycle.ref)
        self.assets = {name: (HERE / "assets" / name).read_bytes() for name in ASSETS}
        # Read once, when serve starts. A file that does not load must not stop the webhooks: it is
        # said once, and the portal goes on without it (no catalog; no sign-in mail).
        self.catalog: Catalog = EMPTY
        notify = None
        try:
            self.catalog = desk.catalog()
        except SdeskError as e:
            _log(f"{e}; the portal shows no catalog: fix it (sdesk catalog check) and restart serve")
        try:
            notify = desk.notify_config()
        except SdeskError as e:
            _log(f"{e}; the portal sends no sign-in mail: fix it (sdesk notify check) and restart serve")
        self.notify = notify
        self.desk_name = notify.desk_name if notify else "sdesk"
        self.env.globals["titles"] = {t.id: t.title for t in self.catalog.types.values()}
        self._dash: tuple[float, dict[str, Any]] | None = None
        self.poke: Callable[[], None] | None = None  # serve's automation, when it has one
        self.public_url = "http://127.0.0.1"  # where sign-in links point: serve sets it once bound
        self._dash_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------

    def store(self) -> Any:
        """This worker thread's own connection (made on its first request)."""
        store = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = self.desk.connect(claimed=False)
        return store

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args)` on a worker thread (it may use self.store(): that thread's connection)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(store, *args)` on a worker thread, with that thread's connection."""
        return await asyncio.to_thread(lambda: fn(self.store(), *args, **kwargs))

    def page(self, request: Request, name: str, who: dict[str, Any] | None, status: int = 200, **context: Any) -> Response:
        csrf = who["csrf"] if who else request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = self.env.get_template(name).render(desk=self.desk_name, who=who, csrf=csrf, path=request.url.path,
                                                  **context)
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        if not who and request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="lax", secure=_tls(request), path="/")
        return response

    def error(self, request: Request, who: dict[str, Any] | None, status: int, message: str) -> Response:
        return self.page(request, "error.html", who, status=status, status_code=status, message=message)

    async def who(self, request: Request) -> dict[str, Any] | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None

        def look() -> dict[str, Any] | None:
            store = self.store()
            return service.identity(store, store.portal.session(token))

        return await self.run(look)

    async def form(self, request: Request, who: dict[str, Any] | None) -> dict[str, str]:
        """The posted form (urlencoded, bounded), its CSRF token checked: the session's, or before
        sign-in the double-submit cookie's. BadInput when it is not one of ours."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise BadInput("expected a form (application/x-www-form-urlencoded)")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_MAX:
                raise BadInput(f"the form is larger than {FORM_MAX // 1024} KB")
        try:
            pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=FIELDS_MAX,
                              strict_parsing=False)
        except ValueError:
            raise BadInput(f"the form has more than {FIELDS_MAX} fields") from None
        data: dict[str, str] = {}
        for key, value in pairs:
            data.setdefault(key, value)
        expected = who["csrf"] if who else request.cookies.get(CSRF_COOKIE)
        given = data.pop("csrf", "")
        if not expected or not expected.isascii() or not given.isascii() or not hmac.compare_digest(given, expected):
            raise PermissionDenied("this form has expired or did not come from this site: reload the page and try again")
        if any("\0" in key or "\0" in value for key, value in data.items()):  # no text of ours holds one
            raise BadInput("the form holds a NUL character")
        return data

    # -- pages -------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        who = await self.who(request)
        q = request.query_params.get("q", "")[:service.MAX_QUERY]
        found = None
        if q.strip():
            found = await self.call(service.search, self.catalog, q, kb=bool(who) or self.catalog.kb_public)
        return self.page(request, "home.html", who, q=q, found=found, categories=self.catalog.categories())

    async def login(self, request: Request) -> Response:
        who = await self.who(request)
        next_path = safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return self.page(request, "login.html", who, next=next_path, sent=None, error=None, email="")
        try:
            data = await self.form(request, who)  # the page was drawn with the session's token, if any
        except SdeskError as e:
            return self.page(request, "login.html", who, status=e.http_status, next=next_path, sent=None,
                             error=said(e), email="")
        next_path = safe_next(data.get("next"))
        if data.get("token"):
            found = await self.call(service.user_of_token, data["token"])
            if found is None:
                return self.page(request, "login.html", None, status=400, next=next_path, sent=None,
                                 error="that API token is not a live one", email="")
            return await self.signed_in(request, None, found[0], next_path, api_token=found[1])
        email = data.get("email", "").strip()[:254]
        client = request.client.host if request.client else "unknown"
        try:
            # The link names this desk as serve was told (--public-url) or listens, never the
            # request's Host header: a forged Host would mail a victim a live link to another site.
            await self.call(service.send_link, self.notify, self.catalog, email, client=client, url=self.public_url,
                            actor=self.actor, next_path=next_path)
        except SdeskError as e:
            return self.page(request, "login.html", None, status=e.http_status if _shown(e) else 503, next=next_path,
                             sent=None, error=said(e), email=email)
        # The same answer whether or not the address is anyone's: the page tells nobody who asks.
        return self.page(request, "login.html", None, next=next_path, sent=email.casefold(), error=None, email="")

    async def link(self, request: Request) -> Response:
        """GET shows a button (mail scanners open links; only a person's click signs in); POST signs in."""
        if request.method == "GET":
            token = request.query_params.get("t", "")[:200]
            back = request.query_params.get("next")
            return self.page(request, "link.html", None, token=token, next=safe_next(back) if back else "")
        try:
            data = await self.form(request, None)
        except SdeskError as e:
            return self.error(request, None, e.http_status, said(e))
        email = await self.run(lambda: self.store().portal.link_use(data.get("t", ""), actor=self.actor))
        if email is None:
            return self.page(request, "login.html", None, status=400, next="/", sent=None, email="",
                             error="that sign-in link is used, expired or wrong: ask for a new one")
        user = await self.call(service.user_of_email, email)
        return await self.signed_in(request, email, user, safe_next(data.get("next")) if data.get("next") else "/my")

    async def signed_in(self, request: Request, email: str | None, user: str | None, next_path: str,
                        api_token: str | None = None) -> Response:
        token, _ = await self.run(lambda: self.store().portal.session_create(email=email, user=user, actor=self.actor,
                                                                             api_token=api_token))
        response = RedirectResponse(next_path, status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=_tls(request), path="/")
        return response

    async def logout(self, request: Request) -> Response:
        who = await self.who(request)
        if who is None:
            return RedirectResponse("/", status_code=303)
        try:
            await self.form(request, who)
        except SdeskError as e:
            return self.error(request, who, e.http_status, said(e))
        token = request.cookies.get(SESSION_COOKIE, "")
        await self.run(lambda: self.store().portal.session_end(token, actor=self.actor))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def needs_sign_in(self, request: Request) -> Response:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    async def request_form(self, request: Request) -> Response:
        who = await self.who(request)
        t = self.catalog.types.get(request.path_params["type"])
        if t is None:
            return self.error(request, who, 404, "There is no such request type.")
        if who is None:
            return self.needs_sign_in(request)
        extra = await self.call(service.request_form, t)
        if request.method == "GET":
            return self.page(request, "form.html", who, t=t, values={}, errors={}, **extra)
        try:
            data = await self.form(request, who)
        except SdeskError as e:
            return self.error(request, who, e.http_status, said(e))
        answers = {f.name: data[f.name] for f in t.fields if f.name in data}
        for f in t.fields:  # an unticked box is not sent: it says no
            if f.type == "yes_no" and f.name not in answers:
                answers[f.name] = "no"
        requester = who["email"] or who["user"]
        try:
            shown = await self.call(requests_service.submit, self.catalog, t.id, answers,
                                   requester=requester, actor=self.actor, teams=self.teams,
                                   source="portal", as_requester=f"portal:{requester}")
        except requests_service.FieldErrors as e:
            return self.page(request, "form.html", who, status=400, t=t, values=data, errors=e.errors, **extra)
        except SdeskError as e:
            return self.page(request, "form.html", who, status=e.http_status if _shown(e) else 503, t=t, values=data,
                             errors={"": said(e)}, **extra)
        if shown["state"] == "fulfilling":
            self.fulfil()  # no approval: its runbook runs now
        return RedirectResponse(f"/my/{shown['ticket_id']}?submitted=1", status_code=303)

    def teams(self) -> dict[str, list[str]]:
        return requests_service.teams_of(self.desk.oncall_config())

    async def my(self, request: Request) -> Response:
        who = await self.who(request)
        if who is None:
            return self.needs_sign_in(request)
        rows = await self.call(service.my_tickets, who)
        return self.page(request, "my.html", who, tickets=rows)

    async def ticket(self, request: Request) -> Response:
        who = await self.who(request)
        if who is None:
            return self.needs_sign_in(request)
        ticket_id = _id(request.path_params["id"])
        if ticket_id is None:
            return self.error(request, who, 404, "There is no such ticket.")
        error = None
        if request.method == "POST":
            try:
                data = await self.form(request, who)
            except SdeskError as e:
                return self.error(request, who, e.http_status, said(e))
            try:
                if data.get("action") == "rate":
                    await self.call(service.rate, who, ticket_id, data.get("score", ""),
                                   data.get("comment", ""), actor=self.actor)
                else:
                    await self.call(service.reply, who, ticket_id, data.get("text", ""), actor=self.actor)
                return RedirectResponse(f"/my/{ticket_id}", status_code=303)
            except NotFound:
                return self.error(request, who, 404, "There is no such ticket.")
            except SdeskError as e:
                error = said(e)
        try:
            view = await self.call(service.ticket_view, who, ticket_id)
        except NotFound:
            return self.error(request, who, 404, "There is no such ticket.")
        step = requests_service.next_step(view["request"]) if view["request"] else None
        return self.page(request, "ticket.html", who, status=400 if error else 200, v=view, step=step, error=error,
                         submitted=request.query_params.get("submitted") == "1")

    async def approvals(self, request: Request) -> Response:
        who = await self.who(request)
        if who is None:
            return self.needs_sign_in(request)
        error = done = None
        if request.method == "POST":
            try:
                data = await self.form(request, who)
            except SdeskError as e:
                return self.error(request, who, e.http_status, said(e))
        if not who["user"]:  # a requester who is no user of the desk approves nothing
            return self.page(request, "approvals.html", who, rows=[], more=False, error=None, done=None)
        if request.method == "POST":
            try:
                ticket_id = _id(data.get("ticket", ""))
                if ticket_id is None:
                    raise NotFound("no such request")
                approve = data.get("decision") == "approve"
                if not approve and not (data.get("reason") or "").strip():
                    raise BadInput("give a reason to reject: the requester reads it")
                await self.call(requests_service.decide, ticket_id, approver=who["user"],
                               approve=approve, reason=data.get("reason") or None, actor=who["user"])
                self.fulfil()
                done = f"{lifecycle.ref(ticket_id)}: {'approved' if approve else 'rejected'}"
            except SdeskError as e:
                error = said(e)
        rows = await self.run(lambda: self.store().requests.pending_for(who["user"], limit=APPROVALS_SHOWN + 1))
        more = len(rows) > APPROVALS_SHOWN  # the oldest first; the rest once these are decided
        return self.page(request, "approvals.html", who, status=400 if error else 200, rows=rows[:APPROVALS_SHOWN],
                         more=more, error=error, done=done)

    def fulfil(self) -> None:
        """Wake serve's automation thread, which runs the fulfilment a request queued."""
        if self.poke is not None:
            self.poke()

    async def kb(self, request: Request) -> Response:
        who = await self.who(request)
        if who is None and not self.catalog.kb_public:
            return self.needs_sign_in(request)
        article_id = request.path_params.get("id")
        if article_id is None:
            rows = await self.call(service.articles, self.catalog)
            return self.page(request, "kb.html", who, articles=rows)
        number = _id(article_id)
        try:
            if number is None:
                raise NotFound("no such article")
            a = await self.call(service.article, self.catalog, number)
        except NotFound:
            return self.error(request, who, 404, "There is no such article.")
        return self.page(request, "article.html", who, a=a)

    async def dash(self, request: Request) -> Response:
        who = await self.who(request)
        if who is None:
            return self.needs_sign_in(request)
        if not service.may(who, "agent"):
            return self.error(request, who, 403, "The dashboards are for the desk's agents and leads.")
        data = self.dashboard()
        if data is None:  # the first figures since serve started are on their way
            return self.page(request, "dash.html", who, d=None, charts={}, csat={})
        report = data["report"]
        trend = report.get("trend") or []
        charts = {
            "trend": lines([w["week"] for w in trend], [("created", [w["created"] for w in trend]),
                                                         ("resolved", [w["resolved"] for w in trend])],
                           title="Tickets per week, last 90 days"),
            "sla": hbars([(f"{'no service' if r['service'] == '(none)' else r['service']} ({r['target_name']})", (r["value"] or 0) * 100, f"{(r['value'] or 0) * 100:.1f}%")
                          for r in (report.get("sla_by_service") or [])[:12] if r.get("value") is not None],
                         title="SLA compliance by service", maximum=100,
                         target=(report["targets"].get("sla") or 0) * 100 or None),
            "burn": hbars([(s["ci"], min(2.0, s["used_share"]) * 100, f"{s['used_share'] * 100:.0f}% ({s['status']})")
                           for s in report.get("slo") or []], title="Error budget used (share of the window's budget)",
                          maximum=200, target=100),
            "backlog": hbars([(p, n, str(n)) for p, n in data["backlog"].items()], title="Open tickets by priority"),
        }
        csat = next((k for k in report.get("csat") or [] if k["kpi"] == "csat_average"), {})
        return self.page(request, "dash.html", who, d=data, charts=charts, csat=csat)

    def dashboard(self) -> dict[str, Any] | None:
        """The dashboards' figures, or None while the first are computed. A report over 90 days
        of a large desk takes longer than a page may (a second at 100k tickets), so the figures
        are computed on a thread of their own when serve starts, and again when a page finds them
        over DASH_TTL old; a page never waits for them."""
        cached = self._dash
        if cached is None or time.monotonic() - cached[0] > DASH_TTL:
            self.warm()
        return cached[1] if cached is not None else None

    def warm(self) -> None:
        """Compute the dashboards' figures on a thread of their own, unless one is at it."""
        if self._dash_lock.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="sdesk-dashboard", daemon=True).start()

    def _refresh(self) -> None:
        try:
            d = self.desk
            data = service.dashboard(self.store(), metrics_config=d.metrics_config(), sla=d.sla_config(),
                                     oncall=d.oncall_config())
            self._dash = (time.monotonic(), data)
        except Exception as e:  # noqa: BLE001 - said; the next page asks again
            _log(f"dashboard: {e}")
        finally:
            self._dash_lock.release()

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(self.assets[name], media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    async def not_found(self, request: Request) -> Response:
        return self.error(request, await self.who(request), 404, "There is no such page.")

    def routes(self) -> list[Route]:
        both = ["GET", "POST"]
        return [Route("/", self.home, methods=["GET"]), Route("/login", self.login, methods=both),
                Route("/login/link", self.link, methods=both), Route("/logout", self.logout, methods=["POST"]),
                Route("/request/{type}", self.request_form, methods=both), Route("/my", self.my, methods=["GET"]),
                Route("/my/{id}", self.ticket, methods=both), Route("/approvals", self.approvals, methods=both),
                Route("/kb", self.kb, methods=["GET"]), Route("/kb/{id}", self.kb, methods=["GET"]),
                Route("/dash", self.dash, methods=["GET"]), Route("/assets/{name}", self.asset, methods=["GET"])]


def _shown(e: SdeskError) -> bool:
    """Whether an error's own words may be shown to whoever is on the page: a refusal of what
    they sent or asked, not a fault of the desk (whose text may name the database's location)."""
    return isinstance(e, (BadInput, Conflict, NotFound, PermissionDenied))


def said(e: SdeskError) -> str:
    """What the page says of an error (the desk's own faults are logged, and said in general)."""
    if _shown(e):
        return str(e)
    _log(f"portal: {e}")
    return "The desk could not do that just now; please try again in a minute."


def _log(message: str) -> None:
    import sys

    print(f"sdesk serve: {message}", file=sys.stderr, flush=True)


def _id(text: str) -> int | None:
    try:
        return lifecycle.parse_id(text)
    except SdeskError:
        return None


def _tls(request: Request) -> bool:
    return request.url.scheme == "https"
