"""`sdesk serve`: the HTTP receiver for webhooks (Starlette on uvicorn, the `serve` extra).

Every request is parsed (a small body on the event loop, a big one on a worker thread) and
handed to one writer thread that owns the database connection. The writer takes whatever
requests are waiting and stores them in one transaction (group commit), so a burst of webhooks
costs one commit, not one each; a batch that fails is retried request by request so that one
bad request cannot fail the others. Each request is answered once its records are committed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse as _StarletteJSON
from starlette.routing import Route

from .desk import Desk
from .errors import NotFound, PermissionDenied, SdeskError, StoreFault
from .intake.formats import SEVERITY, Record
from .intake.ingest import UNSTORABLE, document_records, kept_copy, receive_apart
from .intake.service import Intake
from .storage.users import token_hash
from .store import Store

ROUTES = {"/alertmanager": "alertmanager", "/grafana": "grafana", "/tickets": "json", "/email": "email",
          "/v2/enqueue": "pagerduty", "/v2/change/enqueue": "pagerduty"}
GROUP = 512  # requests per transaction at most
# Bodies up to this size are parsed on the event loop (a webhook of a few alerts parses in tens
# of microseconds, less than the hop to a worker thread); bigger ones on a worker, so that a
# large mailbox does not hold the other requests up.
INLINE_BODY = 16 * 1024
TOKENS_TTL = 2.0  # seconds: how soon a revoked API token is refused
# The rejects folder keeps at most this many bodies and bytes; the oldest go first.
REJECTS_MAX_FILES = 1000
REJECTS_MAX_BYTES = 8 << 20
LOG_EVERY = 60.0  # seconds: the least time between two log lines about dropped rejects
RETRY_AFTER = "5"  # seconds a sender is told to wait after a 503 (the database busy, unopenable or stopped)


def log(message: str) -> None:
    print(f"sdesk serve: {message}", file=sys.stderr, flush=True)


class JSONResponse(_StarletteJSON):
    """Rendered by orjson: the json module's encoder was a tenth of the time of a small post."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # text orjson cannot encode (a lone surrogate): escaped, never a 500
            return json.dumps(content).encode()


class Rejects:
    """The bodies of rejected requests, redacted (ingest.kept_copy), for a person to read and
    replay. Capped in files and bytes, the oldest removed first, so that no client (any token
    that may post, even a viewer's, can send bad bodies) can fill the disk; one log line when
    bodies go (at most one a minute, with the count since the last). Thread-safe: big bodies
    are kept from a worker thread."""

    def __init__(self, folder: Path, max_files: int = REJECTS_MAX_FILES, max_bytes: int = REJECTS_MAX_BYTES):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.max_files, self.max_bytes = folder, max_files, max_bytes
        # Bodies kept by earlier runs count too, oldest first.
        found = sorted((p.stat().st_mtime, p.name, p.stat().st_size) for p in folder.glob("*.body") if p.is_file())
        self.kept = collections.deque((name, size) for _, name, size in found)
        self.total = sum(size for _, size in self.kept)
        self.counter = iter(range(1, 1 << 62))
        self.lock = threading.Lock()
        self.dropped, self.dropped_bytes, self.said = 0, 0, -LOG_EVERY

    def keep(self, path: str, body: bytes) -> None:
        data = kept_copy(body.decode("utf-8", "backslashreplace")).encode()
        with self.lock:
            if len(data) > self.max_bytes:
                self._dropped(1, len(data))
            else:
                while self.kept and (len(self.kept) >= self.max_files or self.total + len(data) > self.max_bytes):
                    name, size = self.kept.popleft()
                    (self.folder / name).unlink(missing_ok=True)
                    self.total -= size
                    self._dropped(1, size)
                self._write(path, data)
            if self.dropped and time.monotonic() - self.said >= LOG_EVERY:
                log(f"rejects folder {self.folder} is full (at most {self.max_files} bodies, {self.max_bytes} bytes): "
                    f"dropped {self.dropped} bodies ({self.dropped_bytes} bytes), the oldest first")
                self.dropped, self.dropped_bytes, self.said = 0, 0, time.monotonic()

    def _write(self, path: str, data: bytes) -> None:
        stamp, route = time.strftime("%Y%m%dT%H%M%S"), path.strip("/").replace("/", "_")
        remade = False
        while True:
            name = f"{stamp}-{next(self.counter):06d}-{route}.body"
            try:
                with (self.folder / name).open("xb") as f:  # never over a body an earlier run kept
                    f.write(data)
                break
            except FileExistsError:
                continue
            except FileNotFoundError as e:
                # The folder was deleted while serve runs (a clean-up, say): made again, and
                # the bodies counted in it are gone with it.
                if remade:
                    log(f"cannot keep a rejected body in {self.folder}: {e.strerror}")
                    return
                try:
                    self.folder.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    log(f"cannot keep a rejected body in {self.folder}: {e.strerror}")
                    return
                log(f"rejects folder {self.folder} was missing: made again")
                self.kept.clear()
                self.total, remade = 0, True
            except OSError as e:
                log(f"cannot keep a rejected body in {self.folder}: {e.strerror}")
                return
        self.kept.append((name, len(data)))
        self.total += len(data)

    def _dropped(self, bodies: int, size: int) -> None:
        self.dropped += bodies
        self.dropped_bytes += size


class Writer:
    """The one thread that writes: group commit of whatever requests are waiting."""

    def __init__(self, desk: Desk, options: dict[str, Any]):
        self.desk, self.options = desk, options
        self.queue: queue.Queue[tuple[list[Any], str, Future]] = queue.Queue()
        self._tokens: dict[str, str] = {}
        self._any_tokens = False  # once a token was made, requests need one, even after all are revoked
        self._tokens_read = -TOKENS_TTL
        self._intake: dict[str, bool] = {}  # who may take in tickets, read again with the tokens
        self.ready = threading.Event()
        self.error: Exception | None = None
        self.stopped: StoreFault | None = None  # the database cannot take writes: the server stops
        self.on_stop: Any = lambda: None  # ends the server (run() sets it)
        self.on_stored: Any = lambda: None  # after each commit: automation looks for queued runs
        threading.Thread(target=self._run, name="sdesk-writer", daemon=True).start()
        self.ready.wait()
        if self.error:
            raise self.error

    def submit(self, signals: list[Any], actor: str) -> Future:
        future: Future = Future()
        self.queue.put((signals, actor, future))
        return future

    def tokens(self) -> dict[str, str]:
        """sha256 of each live API token -> its user, read again at most every TOKENS_TTL seconds."""
        now = time.monotonic()
        if now - self._tokens_read > TOKENS_TTL:
            with self.desk.connect(claimed=False) as store:
                self._tokens, self._any_tokens = store.users.live_tokens(), store.users.any_tokens()
            self._tokens_read, self._intake = now, {}
        return self._tokens

    async def check_intake(self, actor: str) -> None:
        """Raise PermissionDenied unless `actor` may take in tickets, before its body is parsed
        or kept: a viewer's token must not fill rejects/ with malformed bodies. The answer is
        cached with the tokens; a no is confirmed by the writer (an empty intake, which records
        the refusal as every refused write does), so a user just promoted is not refused."""
        self.tokens()
        allowed = self._intake.get(actor)
        if allowed is None:
            with self.desk.connect(claimed=False) as store:
                allowed = self._intake[actor] = store.users.access(actor).allows("agent")
        if not allowed:
            await asyncio.wrap_future(self.submit([], actor))

    def tokens_required(self) -> bool:
        self.tokens()
        return self._any_tokens

    def _run(self) -> None:
        try:
            store = self.desk.connect(claimed=False)
        except SdeskError as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        while True:
            group = [self.queue.get()]
            while len(group) < GROUP:
                try:
                    group.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            by_actor: dict[str, list[tuple[list[Any], Future]]] = {}
            for signals, actor, future in group:
                by_actor.setdefault(actor, []).append((signals, future))
            for actor, requests in by_actor.items():
                self._store(store, actor, requests)

    def _store(self, store: Store, actor: str, requests: list[tuple[list[Any], Future]]) -> None:
        try:
            results = Intake(store).receive([s for signals, _ in requests for s in signals], actor=actor, **self.options)
        except PermissionDenied as e:  # the same actor for all of them: each would be refused (and recorded) again
            for _, future in requests:
                future.set_exception(e)
            return
        except Exception:  # noqa: BLE001 - find the request that failed; the others still land
            def receive(signals: list[Any]) -> list[tuple[int | None, str]]:
                return Intake(store).receive(signals, actor=actor, **self.options)

            for signals, future in requests:
                try:  # and within it, the signals that cannot be stored (None), if that was it
                    stored = receive_apart(receive, signals)
                    self.on_stored()
                    future.set_result(stored)
                except Exception as e:  # noqa: BLE001
                    future.set_exception(e)
            if store.stopped and self.stopped is None:
                # The database's files were deleted or replaced under the writer: each request
                # is answered 503 (senders retry) and the server ends, exiting 1 with this error
                # once the answers are out; restarted, it opens the database afresh.
                self.stopped = StoreFault(store.stopped)
                self.on_stop()
            return
        self.on_stored()  # before the answers: what a sender sees stored is already in automation's hands
        for signals, future in requests:
            future.set_result(results[:len(signals)])
            results = results[len(signals):]


class _Worker:
    """A thread of its own beside the writer, woken by `poke` (after each commit); `close` asks
    it to stop and waits for it. Pokes while it works make one more look, not one each."""

    def __init__(self, desk: Desk, name: str):
        self.desk = desk
        self.due = threading.Event()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def poke(self) -> None:
        self.due.set()

    def close(self) -> None:
        self.closing = True
        self.due.set()
        self.thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class Automation(_Worker):
    """Runs the runbooks that arrivals queued (runner.run_automation, as the CLI does after its
    intake), with its own connection: a runbook may run for minutes, and intake does not wait
    for it. Closing runs what is queued still: a run is not cut off by the server stopping."""

    def __init__(self, desk: Desk, runbooks: Mapping[str, Any], automate: frozenset[str]):
        self.runbooks, self.automate = runbooks, automate
        super().__init__(desk, "sdesk-automation")

    def _run(self) -> None:
        from .services.runner import run_automation

        while True:
            self.due.wait()
            self.due.clear()  # before the look: an arrival committed during a run pokes again
            try:
                with self.desk.connect(claimed=False) as store:
                    run_automation(store, lambda: self.runbooks, self.automate, echo=log)
            except Exception as e:  # noqa: BLE001 - said, and the next arrival tries again; intake goes on
                log(f"automation: {e}")
            if self.closing and not self.due.is_set():  # a last look after the last poke, then stop
                return


class Courier(_Worker):
    """Sends the outbox's messages (notify.yaml) as they are queued, by anyone (this server's
    intake, another process's `sdesk reply`): a look every POLL seconds, and at once when this
    server stored something. Its own connection; a message never waits on intake."""

    POLL = 0.2

    def __init__(self, desk: Desk, config: Any, actor: str):
        self.config, self.actor = config, actor
        super().__init__(desk, "sdesk-courier")

    def _run(self) -> None:
        from .services.outbound import deliver

        failures = 0
        with self.desk.connect(claimed=False) as store:
            while not self.closing:
                self.due.wait(self.POLL)
                self.due.clear()
                try:
                    while deliver(store, self.config, actor=self.actor)["sent"] and not self.closing:
                        pass
                    failures = 0
                except Exception as e:  # noqa: BLE001 - said (once a minute at most), and the next look tries again
                    if failures % 300 == 0:
                        log(f"outbox: {e}")
                    failures += 1


class Indexer(_Worker):
    """Keeps the semantic index up to date (services/semantic.py) when the extra is installed: a
    pass after this server stores something (at most one every GAP seconds, so that a stream of
    arrivals makes a pass every few seconds, not one each) and every POLL seconds for what other
    processes wrote; its own connection, the model loaded once. Intake never waits for it; a
    ticket it has not reached yet is found by its words."""

    POLL, GAP = 60.0, 2.0

    def __init__(self, desk: Desk, actor: str):
        self.actor = actor
        super().__init__(desk, "sdesk-indexer")

    def _run(self) -> None:
        from .services.semantic import index_in_background

        failures = 0
        with self.desk.connect(claimed=False) as store:
            while not self.closing:
                try:
                    done = index_in_background(store, actor=self.actor)
                    failures = 0
                    if done and done["pending"]:
                        continue  # more than a pass's share waits: the next share now
                except PermissionDenied as e:  # the server's actor may not write: no index from here
                    log(f"index: {e}; the semantic index is left to sdesk index or tick")
                    return
                except Exception as e:  # noqa: BLE001 - said (every tenth failure), and the next pass tries again
                    if failures % 10 == 0:
                        log(f"index: {e}")
                    failures += 1
                self.due.wait(self.POLL)
                if not self.closing:
                    time.sleep(self.GAP)  # let the arrivals that woke it gather
                self.due.clear()


def make_app(desk: Desk, *, actor: str, token: str | None, max_body: int, rejects: Path,
             severity: Mapping[str, str] = SEVERITY, options: dict[str, Any] | None = None,
             runbooks: Mapping[str, Any] | None = None, public_url: str | None = None) -> Starlette:
    """The receiver; `options` are Store.receive's (record_resolved, mask_pii, reopen_days,
    automate); `runbooks`, the desk's, run the ones triage queues (when `automate` names any)."""
    writer = Writer(desk, options or {})
    automate = (options or {}).get("automate")
    from .portal import Portal

    portal = Portal(desk, actor=actor)
    if public_url:
        portal.public_url = public_url.rstrip("/")
    # Automation runs what triage queues (automate) and what the catalog's approvals queue.
    fulfils = any(t.runbook for t in portal.catalog.types.values())
    automation = Automation(desk, runbooks or {}, automate if automate and not fulfils else None) \
        if automate or fulfils else None
    if automation is not None:
        portal.poke = automation.poke
    config = desk.store().notify
    courier = Courier(desk, config, actor) if config is not None else None
    from .embedding import available

    indexer = Indexer(desk, actor) if available() else None
    pokes = [c.poke for c in (automation, courier, indexer) if c is not None]
    if pokes:
        writer.on_stored = lambda: [poke() for poke in pokes]
    actor_default = actor
    kept = Rejects(rejects)

    async def keep_rejected(path: str, body: bytes) -> None:
        if len(body) <= INLINE_BODY:
            kept.keep(path, body)
        else:  # redacting a big body takes a while: not on the event loop
            await asyncio.to_thread(kept.keep, path, body)

    async def receive(request: Request) -> JSONResponse:
        path = request.url.path
        pagerduty = path.startswith("/v2/")
        actor = _actor(request.headers.get("authorization", ""), token, writer.tokens(), writer.tokens_required(),
                       actor_default)
        if actor is None:
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        declared = request.headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > max_body:
            return JSONResponse({"error": f"body larger than {max_body} bytes"}, status_code=413)
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return JSONResponse({"error": f"body larger than {max_body} bytes"}, status_code=413)
        except ClientDisconnect:  # nobody to answer: one line, not a traceback
            client = request.client
            log(f"POST {path}: the client{f' {client.host}:{client.port}' if client else ''} went away "
                f"after {len(body)} bytes of its body; nothing stored")
            return JSONResponse({"error": "the client went away"}, status_code=400)
        try:
            await writer.check_intake(actor)
        except PermissionDenied as e:
            return failed(e)
        except SdeskError as e:  # the database cannot be opened now (whatever the reason): a sender retries
            return failed(e, status=503)
        try:
            if len(body) <= INLINE_BODY:
                used, records = document_records(body, ROUTES[path], severity)
            else:
                used, records = await asyncio.to_thread(document_records, body, ROUTES[path], severity)
        except SdeskError as e:
            await keep_rejected(path, body)
            return failed(e, pagerduty=pagerduty)
        good = [r for r in records if r.signal is not None]
        if len(good) < len(records):
            await keep_rejected(path, body)
        if not good and records:
            return _invalid([f"{r.where}: {r.error}" for r in records], pagerduty)
        try:
            outcomes = iter(await asyncio.wrap_future(writer.submit([r.signal for r in good], actor)))
        except SdeskError as e:  # refused (403), the database stopped (503), ...: as its class says
            return failed(e)
        results = [_result(r, used, outcomes) for r in records]
        # A partly bad request is answered 200 (202) for what was stored, each rejected record
        # named in results: a sender that retries on errors would otherwise send it all again,
        # and one that gives up on a 4xx (Alertmanager) would lose the good alerts with it.
        rejected = [f"{r['where']}: {r['error']}" for r in results if r["action"] == "rejected"]
        if rejected and len(good) == len(records):  # refused by the store itself (receive_apart)
            await keep_rejected(path, body)
        if rejected and len(rejected) == len(results):
            return _invalid(rejected, pagerduty)
        if pagerduty:
            key = _dedup_key(good[0]) if good else None
            return JSONResponse({"status": "success", "message": "Event processed", "dedup_key": key}, 202)
        return JSONResponse({"results": results})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def no_route(request: Request, exc: Exception) -> Any:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return await portal.not_found(request)  # a person's browser: the portal's page
        # JSON as every other answer, naming the routes there are (a sender's URL is wrong)
        return failed(NotFound(f"no route {request.url.path}: sdesk serve takes POST to "
                               f"{', '.join(ROUTES)} (and GET /healthz, and the portal's pages at /)"))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 500)
        return JSONResponse({"error": str(getattr(exc, "detail", "") or status)}, status_code=status,
                            headers=getattr(exc, "headers", None))

    async def sdesk_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SdeskError)
        return failed(exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        portal.warm()  # the dashboards' figures, before anyone asks
        yield
        if automation is not None:  # stopping: the runs arrivals queued finish first
            await asyncio.to_thread(automation.close)
        if courier is not None:
            await asyncio.to_thread(courier.close)
        if indexer is not None:
            await asyncio.to_thread(indexer.close)

    routes = [Route(path, receive, methods=["POST"]) for path in ROUTES]
    app = Starlette(routes=[*routes, Route("/healthz", healthz, methods=["GET"]), *portal.routes()], lifespan=lifespan,
                    exception_handlers={404: no_route, HTTPException: http_error, SdeskError: sdesk_error})
    app.state.writer = writer
    app.state.portal = portal
    return app


def failed(e: SdeskError, *, pagerduty: bool = False, status: int | None = None) -> JSONResponse:
    """The answer to a request an sdesk error stopped: the error class's http_status (BadInput
    400, NotFound 404, PermissionDenied 403, Conflict 409, StoreFault 503, ...) unless `status`
    says otherwise, with its message; a 503 says when to try again. A PagerDuty sender gets its
    own shape for a 400."""
    status = status or e.http_status
    if pagerduty and status == 400:
        return _invalid([str(e)], pagerduty)
    return JSONResponse({"error": str(e)}, status_code=status,
                        headers={"Retry-After": RETRY_AFTER} if status == 503 else None)


def _invalid(errors: list[str], pagerduty: bool) -> JSONResponse:
    if pagerduty:
        return JSONResponse({"status": "invalid event", "message": errors[0], "errors": errors}, 400)
    return JSONResponse({"error": errors[0], "errors": errors}, status_code=400)


def _actor(authorization: str, token: str | None, tokens: Mapping[str, str], required: bool,
           default: str) -> str | None:
    """Who a request acts as: the user of its API token (sdesk user token), or `default` with
    the token of --token / SDESK_SERVE_TOKEN, or with none when the desk never had an API
    token and no --token is set; None: refused."""
    if not authorization.isascii():  # no token is anything but ASCII (compare_digest would raise)
        return None if required or token else default
    given = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
    # Looked up by hash: how long the lookup takes tells nothing about any token.
    user = tokens.get(token_hash(given)) if given else None
    if user is not None:
        return user
    if token:
        return default if hmac.compare_digest(authorization, f"Bearer {token}") else None
    return None if required else default


def _result(record: Record, fmt: str, outcomes: Any) -> dict[str, Any]:
    stored = next(outcomes) if record.signal is not None else None
    if stored is None:
        return {"where": record.where, "format": fmt, "ticket": None, "action": "rejected",
                "error": record.error or UNSTORABLE}
    ticket_id, outcome = stored
    return {"where": record.where, "format": fmt, "ticket": ticket_id, "action": outcome}


def _dedup_key(record: Record) -> str | None:
    fingerprint = record.signal.key if record.signal else None
    return fingerprint.removeprefix("pagerduty:") if fingerprint else None


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost). A name is
    not resolved: any other name counts as reachable from elsewhere."""
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, token: str | None, any_tokens: bool, insecure: bool) -> None:
    """Refuse to listen beyond loopback with no token of either kind: anyone who reaches the
    port could then file, resolve and page as the serving user."""
    check_token(token)
    if is_loopback(host) or token or any_tokens or insecure:
        return
    from .errors import BadInput

    raise BadInput(f"serve --host {host}: this desk has no API token and no --token is set, so anyone who can reach "
                   "the port could file and resolve tickets; make one (sdesk user token NAME), set "
                   "SDESK_SERVE_TOKEN, or give --insecure to listen without one")


def check_token(token: str | None) -> None:
    """A --token (or SDESK_SERVE_TOKEN) that a client can send: visible ASCII with no space. An
    empty one would turn auth off without a word, and one of spaces or control characters cannot
    be matched (clients trim a header value), locking every sender out."""
    if token is None:
        return
    from .errors import BadInput

    if not token.strip():
        raise BadInput("serve --token (or SDESK_SERVE_TOKEN) is empty or blank: give a token (letters, digits and "
                       "punctuation, no spaces), or none")
    if not all("!" <= c <= "~" for c in token):
        raise BadInput("serve --token (or SDESK_SERVE_TOKEN) holds a space, a control or a non-ASCII character, "
                       "which no client can send in an Authorization header: use letters, digits and punctuation")


def check_public_url(url: str | None) -> None:
    """--public-url: an http(s) URL with a host, that a sign-in mail can carry as it is."""
    if url is None:
        return
    from urllib.parse import urlsplit

    from .errors import BadInput

    parts = urlsplit(url.strip()) if len(url) <= 300 and url.isascii() and url.isprintable() else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or " " in url or parts.query \
            or parts.fragment:
        raise BadInput(f"serve --public-url {url[:80]!r}: expected the portal's address, e.g. https://desk.example.com")


def run(desk: Desk, *, host: str, port: int, actor: str, token: str | None, max_body: int, rejects: Path,
        severity: Mapping[str, str], options: dict[str, Any], runbooks: Mapping[str, Any] | None = None,
        public_url: str | None = None) -> None:
    import uvicorn

    db = desk.store().path
    app = make_app(desk, actor=actor, token=token, max_body=max_body, rejects=rejects, severity=severity,
                   options=options, runbooks=runbooks, public_url=public_url)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # said once bound: the port the system chose for --port 0, and never a false line
                where = listening(host, self.servers)
                if not public_url:  # the portal's sign-in links point here
                    app.state.portal.public_url = where.split(", ")[0]
                print(f"sdesk serve: listening on {where} (database {db})", file=sys.stderr, flush=True)

    # Keep-alive connections stay open 75 s (nginx's default) instead of uvicorn's 5: senders such
    # as Alertmanager (Go: idle connections kept 90 s) do not retry a POST on a connection the
    # server closed, and a busy moment of over 5 s between two posts closed them in the bench.
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                   timeout_keep_alive=75))
    app.state.writer.on_stop = lambda: setattr(server, "should_exit", True)  # a graceful end: answers go out
    try:
        server.run()
    except SystemExit:  # uvicorn's exit when it cannot bind (its code 3 is sdesk's "not found"): it said why
        if server.started:
            raise
    if not server.started:  # as uvicorn.run: it said why (the port is taken, say)
        raise SdeskError(f"sdesk serve could not listen on {host}:{port}")
    if app.state.writer.stopped is not None:
        raise app.state.writer.stopped



def listening(host: str, servers: Any) -> str:
    """Where the server listens, as URLs: the host as given with the port bound (`localhost` may
    be bound on two addresses, each with its own port when --port 0)."""
    bound = sorted({sock.getsockname()[:2] for server in servers for sock in server.sockets or ()})
    if len({port for _, port in bound}) == 1:
        return f"http://{f'[{host}]' if ':' in host else host}:{bound[0][1]}"
    return ", ".join(f"http://{f'[{address}]' if ':' in address else address}:{port}" for address, port in bound)
