"""The web portal (sdesk/portal/) over real HTTP: one real `sdesk serve` for the module, on its own
desk (the example's catalog, CMDB, on-call, SLA and KB; a few users with API tokens), with a real
SMTP server (test_talking_back's Mailbox) taking the sign-in mails. Requests are sent by hand
(http.client): each "browser" keeps its own cookies and follows no redirect, so every status,
header and cookie attribute is seen as the server sent it.

Sign-in by mailed link and by API token, the rate limit on links, CSRF on every form, a request
form's labels, errors and kept values, requesters kept apart (404, never 403), output escaping,
no open redirect, sign-out ending the session on the server, the security headers and page
weight, approvals and the dashboards' roles, the published KB, and hostile input as a class.

The server's one client address (127.0.0.1) may ask for at most 10 sign-in links in 15 minutes
(storage/portal.py LINKS_PER_CLIENT): the module asks for 9 at most (anna, ben, cleo, dave's
address, an unknown one, 3 for the rate limit, one with a forged Host); every other sign-in is by
API token."""

from __future__ import annotations

import email.message
import http.client
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import pytest
from conftest import POSTGRES, pg_url
from test_catalog import example_config
from test_talking_back import Mailbox, notify_yaml
from typer.testing import CliRunner

from sdesk.cli import app

pytestmark = pytest.mark.slow  # every test here talks to a real server

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120.0  # seconds for any one answer: generous, the suite passes with the CPUs busy
PAGE_WEIGHT_MAX = 50 * 1024
SCRIPT = "<script>alert(1)</script>"


# -- HTML, read as a browser would --------------------------------------------------------------


class Element(dict):
    """A start tag's attributes, with its tag name (`tag`), its text (`text`: all the text inside
    it, entities decoded) and, for a form, its controls (`controls`: the elements inside it)."""

    tag: str
    text: str
    controls: list[Element]


VOID = {"input", "meta", "link", "br", "img", "hr", "source", "area", "base", "col", "embed", "wbr"}


class Html(HTMLParser):
    """Every element of a page, in order; text and form controls gathered as the parser sees them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []
        self.form: Element | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        e = Element({k: v if v is not None else "" for k, v in attrs})
        e.tag, e.text, e.controls = tag, "", []
        self.elements.append(e)
        if tag == "form":
            self.form = e
        elif tag in ("input", "select", "textarea", "button") and self.form is not None:
            self.form.controls.append(e)
        if tag not in VOID:
            self.open.append(e)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                break

    def handle_data(self, data: str) -> None:
        for e in self.open:
            e.text += data

    def find(self, tag: str, **attrs: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and all(e.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def one(self, tag: str, **attrs: str) -> Element:
        found = self.find(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} {attrs}>"
        return found[0]

    def forms(self, action: str) -> list[Element]:
        return self.find("form", action=action)

    def fields(self, form: Element) -> dict[str, str]:
        """What the form posts as it is (hidden inputs and filled-in text inputs)."""
        return {c["name"]: c.get("value", "") for c in form.controls
                if c.tag == "input" and c.get("name") and c.get("type", "text") not in ("checkbox", "radio")}


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: str
    set_cookies: list[str]

    @property
    def html(self) -> Html:
        return Html(self.body)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def cookie(self, name: str) -> dict[str, str] | None:
        """The Set-Cookie of `name`: {"value": ..., attribute (lower case): value or ""}."""
        for raw in self.set_cookies:
            first, *attrs = [part.strip() for part in raw.split(";")]
            key, _, value = first.partition("=")
            if key == name:
                out = {"value": value}
                for attr in attrs:
                    k, _, v = attr.partition("=")
                    out[k.strip().lower()] = v.strip()
                return out
        return None

    def csrf(self) -> str:
        """The CSRF token of the page's forms (each carries the same one)."""
        tokens = {c["value"] for c in self.html.find("input", name="csrf")}
        assert len(tokens) == 1, f"{len(tokens)} CSRF tokens on the page"
        return tokens.pop()


def form_body(pairs: dict[str, str] | list[tuple[str, str]]) -> bytes:
    """application/x-www-form-urlencoded, as a browser sends it (UTF-8; a lone surrogate as the
    bytes it would be, since a hostile client may send anything)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return "&".join(f"{quote_plus(k.encode('utf-8', 'surrogatepass'))}={quote_plus(v.encode('utf-8', 'surrogatepass'))}"
                    for k, v in items).encode("ascii")


class Browser:
    """One person's browser: its own cookies (set by the server's answers), no redirect followed."""

    def __init__(self, portal: Portal):
        self.portal = portal
        self.jar: dict[str, str] = {}

    def send(self, method: str, path: str, *, form: Any = None, body: bytes | None = None,
             content_type: str | None = None, jar: dict[str, str] | None = None,
             headers: dict[str, Any] | None = None) -> Answer:
        """`jar`: cookies sent instead of this browser's own (and the answer's are not kept)."""
        sent = dict(headers or {})
        cookies = self.jar if jar is None else jar
        if cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if form is not None:
            body = form_body(form)
            content_type = content_type or "application/x-www-form-urlencoded"
        if content_type is not None:
            sent["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", self.portal.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=sent)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        set_cookies = r.headers.get_all("Set-Cookie") or []
        answer = Answer(r.status, r.headers, data.decode("utf-8", "replace"), set_cookies)
        if jar is None:
            for raw in set_cookies:
                name = raw.split("=", 1)[0].strip()
                c = answer.cookie(name)
                assert c is not None
                if c.get("max-age") == "0" or not c["value"]:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = c["value"]
        return answer

    def get(self, path: str, **kw: Any) -> Answer:
        return self.send("GET", path, **kw)

    def post(self, path: str, form: Any = None, **kw: Any) -> Answer:
        return self.send("POST", path, form=form, **kw)

    @property
    def session(self) -> str | None:
        return self.jar.get("sdesk_session")

    def csrf(self, path: str = "/") -> str:
        page = self.get(path)
        assert page.status == 200, (path, page.status)
        return page.csrf()


# -- the server and its desk -----------------------------------------------------------------------


class Portal:
    """The module's desk and its `sdesk serve`: the URL, the mailbox, the users' API tokens."""

    def __init__(self, root: Path, db: str, mailbox: Mailbox):
        self.root, self.db, self.mailbox = root, db, mailbox
        self.config = root / "config"
        self.env = {"SDESK_DB": db, "SDESK_CONFIG": str(self.config), "SDESK_USER": "tester",
                    "SDESK_CACHE": str(root / "cache")}
        self.tokens: dict[str, str] = {}
        self.stderr: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.url = ""

    def sdesk(self, *args: str, ok: bool = True) -> Any:
        """sdesk ARGS on the module's desk, in this process (as conftest's Cli)."""
        result = CliRunner().invoke(app, list(args), env=self.env)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok and result.exit_code != 0:
            raise AssertionError(f"sdesk {' '.join(args)} exited {result.exit_code}: {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        import json

        return json.loads(self.sdesk(*args, "--json").stdout)

    def new(self, title: str, requester: str) -> int:
        return self.json("new", title, "--requester", requester)["id"]

    def tickets(self) -> list[dict[str, Any]]:
        return self.json("list", "--all", "-n", "1000")

    def events(self, ticket_id: int) -> list[str]:
        return [e["kind"] for e in self.json("show", str(ticket_id))["events"]]

    def start(self) -> None:
        env = {**os.environ, **self.env}
        for name in ("SDESK_NOW", "TEST_SMTP_PORT"):
            env.pop(name, None)
        rejects = ("--rejects", str(self.root / "rejects")) if POSTGRES else ()
        self.proc = subprocess.Popen([sys.executable, "-m", "sdesk", "serve", "--port", "0", *rejects], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:  # all of stderr, kept (a traceback there is a finding), never a full pipe
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"sdesk serve did not listen in {TIMEOUT} s: {''.join(self.stderr)}") from None
            assert line is not None, f"sdesk serve ended: {''.join(self.stderr)}"
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                return

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=TIMEOUT)

    def alive(self) -> bool:
        answer = Browser(self).get("/healthz")
        return answer.status == 200 and self.proc is not None and self.proc.poll() is None

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        with self.mailbox.lock:
            return [m for recipients, m in self.mailbox.received if address in recipients]

    def link_in(self, message: email.message.EmailMessage) -> str:
        """The sign-in link's token in a mail: the link is to this server, as the browser asked it."""
        body = message.get_body(preferencelist=("plain", "html"))
        assert body is not None
        found = re.findall(re.escape(self.url) + r"/login/link\?t=([A-Za-z0-9_-]+)", body.get_content())
        assert found, body.get_content()
        return found[0]

    def ask_link(self, browser: Browser, address: str) -> Answer:
        page = browser.get("/login")
        assert page.status == 200
        return browser.post("/login", {"csrf": page.csrf(), "next": "/", "email": address})

    def sign_in_by_link(self, address: str) -> Browser:
        b = Browser(self)
        before = len(self.mails_to(address))
        sent = self.ask_link(b, address)
        assert sent.status == 200 and "a sign-in link is on its way" in sent.body, sent.body
        mails = self.mails_to(address)
        assert len(mails) == before + 1
        shown = b.get(f"/login/link?t={self.link_in(mails[-1])}")
        [form] = shown.html.forms("/login/link")
        done = b.post("/login/link", shown.html.fields(form))
        assert done.status == 303 and b.session, (done.status, done.body)
        return b

    def sign_in_by_token(self, user: str, next_path: str = "/") -> Browser:
        b = Browser(self)
        done = b.post("/login", {"csrf": b.csrf("/login"), "next": next_path, "token": self.tokens[user]})
        assert done.status == 303 and b.session, (done.status, done.body)
        return b


def _database(request: pytest.FixtureRequest, root: Path) -> Iterator[str]:
    """The module's own desk: a SQLite file in its folder, or a schema of this process's
    PostgreSQL database (conftest gives each test its own; the server outlives a test)."""
    if not POSTGRES:
        yield str(root / "desk.db")
        return
    import psycopg

    server, database = request.getfixturevalue("pg_server"), request.getfixturevalue("pg_tests_database")
    schema = f"portal_{os.getpid()}"
    conninfo = server.replace("dbname=postgres", "") + f" dbname={database}"
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.execute(f'CREATE SCHEMA "{schema}"')
    yield pg_url(server, database, schema)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def portal(request, tmp_path_factory) -> Iterator[Portal]:
    """The example desk (catalog, CMDB, on-call, SLA, its runbooks writing under the module's
    folder, the KB of examples/kb), notify.yaml mailing the Mailbox; users: tester (admin, whom
    serve runs as), dave (approver), carol (agent), each with an API token; then `sdesk serve`."""
    root = tmp_path_factory.mktemp("portal")
    config = root / "config"
    config.mkdir()
    example_config(config, root / "out")
    # Links for any address (these tests' requesters are at example.org and example.net).
    catalog = config / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("sign_in: [example.com]", "sign_in: anyone"))
    mailbox = Mailbox()
    notify_yaml(config, smtp_port=mailbox.port)
    databases = _database(request, root)
    p = Portal(root, next(databases), mailbox)
    try:
        p.sdesk("init")
        p.sdesk("cmdb", "import", str(config / "cmdb.yaml"))
        p.sdesk("kb", "import", str(ROOT / "examples" / "kb"))
        for name, role in (("tester", "admin"), ("dave", "approver"), ("carol", "agent")):
            p.sdesk("user", "add", name, "--role", role, "--email", f"{name}@example.com")
            p.tokens[name] = p.sdesk("user", "token", name).stdout.split()[0]
        p.start()
        yield p
    finally:
        p.stop()
        mailbox.close()
        next(databases, None)


@pytest.fixture(scope="module")
def anna(portal) -> Browser:
    """A requester signed in by a mailed link (no desk user: an address)."""
    return portal.sign_in_by_link("anna@example.org")


@pytest.fixture(scope="module")
def ben(portal) -> Browser:
    return portal.sign_in_by_link("ben@example.org")


def wait_for(predicate, what: str, timeout: float = TIMEOUT) -> None:
    """Polls until `predicate()` (the server's automation thread works on its own time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def quota_form(portal: Portal, who: Browser, gb: str = "5", justification: str = "more logs") -> int:
    """A quota-increase request submitted on the portal; its ticket id."""
    done = who.post("/request/quota-increase", {"csrf": who.csrf("/request/quota-increase"),
                                               "service": "shop-checkout", "extra_gb": gb,
                                               "justification": justification})
    assert done.status == 303, (done.status, done.body)
    found = re.fullmatch(r"/my/(\d+)\?submitted=1", done.location or "")
    assert found, done.location
    return int(found.group(1))


# -- 1. sign-in by a mailed link ------------------------------------------------------------------


def test_a_mailed_link_signs_in_once_with_a_strict_cookie(portal):
    b = Browser(portal)
    page = b.get("/login")
    assert page.status == 200
    cookie = page.cookie("sdesk_csrf")
    assert cookie is not None and cookie["value"] == page.csrf()  # double-submit: the field is the cookie
    assert "httponly" in cookie and cookie.get("samesite", "").lower() == "lax"
    sent = b.post("/login", {"csrf": page.csrf(), "next": "/", "email": "Cleo@Example.org"})
    assert sent.status == 200 and "a sign-in link is on its way" in sent.body
    assert not b.session
    [mail] = portal.mails_to("cleo@example.org")
    token = portal.link_in(mail)

    # Opening the link (as a mail scanner would) shows a button; only the click signs in.
    shown = b.get(f"/login/link?t={token}")
    assert shown.status == 200 and shown.cookie("sdesk_session") is None
    [form] = shown.html.forms("/login/link")
    assert form["method"] == "post"
    assert [c.text.strip() for c in form.controls if c.tag == "button"] == ["Sign in"]
    fields = shown.html.fields(form)
    assert fields["t"] == token and fields["csrf"] == b.jar["sdesk_csrf"]

    done = b.post("/login/link", fields)
    assert done.status == 303
    assert (done.location or "").startswith("/") and not (done.location or "").startswith("//")
    session = done.cookie("sdesk_session")
    assert session is not None and len(session["value"]) >= 32
    assert "httponly" in session and session.get("samesite", "").lower() == "lax" and session.get("path") == "/"
    assert "secure" not in session  # plain http on loopback: a Secure cookie would never come back
    mine = b.get("/my")
    assert mine.status == 200 and "cleo@example.org" in mine.body and "Sign out" in mine.body

    # Single use: the same link again, from this browser or another, signs nobody in.
    other = Browser(portal)
    for again, csrf in ((b, b.jar["sdesk_csrf"]), (other, other.csrf("/login"))):
        refused = again.post("/login/link", {**fields, "csrf": csrf})
        assert refused.status == 400 and refused.cookie("sdesk_session") is None
        assert "used, expired or wrong" in refused.body
    assert not other.session

    # A token nobody was sent.
    stranger = Browser(portal)
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 43, ""):
        refused = stranger.post("/login/link", {"csrf": stranger.csrf("/login"), "t": wrong, "next": "/"})
        assert refused.status == 400 and refused.cookie("sdesk_session") is None and not stranger.session


def test_an_unknown_address_gets_the_same_page_as_a_known_one(portal):
    b = Browser(portal)
    csrf = b.csrf("/login")
    known = b.post("/login", {"csrf": csrf, "next": "/", "email": "dave@example.com"})  # a desk user's
    unknown = b.post("/login", {"csrf": csrf, "next": "/", "email": "nobody-here@example.net"})
    assert known.status == unknown.status == 200
    assert known.body.replace("dave@example.com", "ADDRESS") == unknown.body.replace("nobody-here@example.net",
                                                                                      "ADDRESS")
    assert sorted(known.headers.keys()) == sorted(unknown.headers.keys())


def test_a_mailed_link_points_at_this_desk_whatever_host_the_request_names(portal):
    """The link's host is not the asker's to choose: a link to their host would hand them the token
    of whoever clicks it (the mail is the desk's own, to a real address)."""
    b = Browser(portal)
    page = b.get("/login")
    asked = b.post("/login", {"csrf": page.csrf(), "next": "/", "email": "victim@example.org"},
                   headers={"Host": "evil.example"})
    links = [m.get_body(preferencelist=("plain", "html")).get_content() for m in portal.mails_to("victim@example.org")]
    assert asked.status < 500
    assert not any("evil.example" in text for text in links), links
    assert all(re.search(r"(" + re.escape(portal.url) + r"|https://desk\.example\.com)/login/link\?t=", text)
               for text in links), links


# -- 2. the rate limit on links ------------------------------------------------------------------


def test_a_fourth_link_for_one_address_within_15_minutes_is_refused_and_not_mailed(portal):
    b = Browser(portal)
    address = "limit@example.org"
    for n in range(1, 4):
        sent = portal.ask_link(b, address)
        assert sent.status == 200 and "on its way" in sent.body
        assert len(portal.mails_to(address)) == n
    refused = portal.ask_link(b, address)
    assert refused.status == 409 and "too many sign-in links" in refused.body
    assert "on its way" not in refused.body
    refused_too = portal.ask_link(Browser(portal), "LIMIT@example.org")  # the same address, another case
    assert refused_too.status == 409
    assert len(portal.mails_to(address)) == 3 and portal.mails_to("LIMIT@example.org") == []


# -- 3. CSRF on every form ------------------------------------------------------------------------


CSRF_WAYS = ["missing", "wrong", "another session's"]


class Form(NamedTuple):
    who: Browser
    path: str
    data: dict[str, str]
    unchanged: Any  # () -> whether the post wrote nothing


@pytest.fixture(scope="module")
def csrf_forms(portal, anna) -> dict[str, Form]:
    """Every form a signed-in person posts, each with what it would write: a request (a ticket),
    a reply (an event), a rating of a resolved ticket (an event), an approval (an event), a
    sign-out (the session ends: a session of its own)."""
    ticket = portal.new("Anna's monitor flickers", "anna@example.org")
    done = portal.new("Anna's old monitor", "anna@example.org")
    portal.sdesk("resolve", str(done), "-r", "replaced")
    request_id = quota_form(portal, anna, justification="for the CSRF test")
    dave, leaving = portal.sign_in_by_token("dave"), portal.sign_in_by_token("carol")
    count = len(portal.tickets())
    events = {t: portal.events(t) for t in (ticket, done, request_id)}
    return {
        "/request": Form(anna, "/request/quota-increase",
                         {"service": "shop-checkout", "extra_gb": "7", "justification": "forged"},
                         lambda: len(portal.tickets()) == count),
        "/my/N reply": Form(anna, f"/my/{ticket}", {"action": "reply", "text": "forged reply"},
                            lambda: portal.events(ticket) == events[ticket]),
        "/my/N rate": Form(anna, f"/my/{done}", {"action": "rate", "score": "1"},
                           lambda: portal.events(done) == events[done]),
        "/approvals": Form(dave, "/approvals", {"ticket": str(request_id), "decision": "approve"},
                           lambda: portal.events(request_id) == events[request_id]),
        "/logout": Form(leaving, "/logout", {}, lambda: leaving.get("/my").status == 200),
    }


def _forged(form: Form, way: str, ben: Browser) -> Answer:
    token = {"missing": None, "wrong": "x" * 32, "another session's": ben.csrf("/my")}[way]
    return form.who.post(form.path, form.data if token is None else {**form.data, "csrf": token})


@pytest.mark.parametrize("way", CSRF_WAYS)
@pytest.mark.parametrize("name", ["/request", "/my/N reply", "/my/N rate", "/approvals", "/logout"])
def test_a_post_without_its_sessions_csrf_token_writes_nothing(csrf_forms, ben, name, way):
    form = csrf_forms[name]
    answer = _forged(form, way, ben)
    assert answer.status == 403 and answer.location is None, (answer.status, answer.location)
    assert "did not come from this site" in answer.body
    assert form.unchanged()
    assert form.who.session  # still signed in


@pytest.mark.parametrize("way", CSRF_WAYS)
@pytest.mark.parametrize("name", ["/request", "/logout", "/my/N reply", "/my/N rate", "/approvals"])
def test_a_post_without_its_sessions_csrf_token_is_403(csrf_forms, ben, name, way):
    assert _forged(csrf_forms[name], way, ben).status == 403


@pytest.mark.parametrize("name", ["/request", "/my/N reply", "/my/N rate", "/approvals", "/logout"])
def test_the_same_posts_with_the_sessions_token_do_write(csrf_forms, name):
    """The control: each refused post above would have written, its token right."""
    form = csrf_forms[name]
    answer = form.who.post(form.path, {**form.data, "csrf": form.who.csrf("/my")})
    assert answer.status in (200, 303), (answer.status, answer.body[-500:])
    assert not form.unchanged()


@pytest.mark.parametrize("way", ["no field", "no cookie", "wrong", "another browser's"])
def test_the_sign_in_forms_check_their_double_submit_cookie(portal, way):
    """Before sign-in the token is the sdesk_csrf cookie's: a form from another site (which
    cannot read or set that cookie) asks for no link and uses none."""
    b, other = Browser(portal), Browser(portal)
    own, theirs = b.csrf("/login"), other.csrf("/login")
    address = f"csrf-{way.replace(' ', '-').replace(chr(39), '')}@example.org"
    token = {"no field": None, "no cookie": own, "wrong": "y" * 32, "another browser's": theirs}[way]
    jar = {} if way == "no cookie" else None
    ask = {"next": "/", "email": address} | ({} if token is None else {"csrf": token})
    refused = b.post("/login", ask, jar=jar)
    assert refused.status == 403 and "did not come from this site" in refused.body
    assert portal.mails_to(address) == []
    use = {"t": "whatever", "next": "/"} | ({} if token is None else {"csrf": token})
    refused = b.post("/login/link", use, jar=jar)
    assert refused.status == 403 and refused.cookie("sdesk_session") is None
    token_login = {"token": portal.tokens["carol"], "next": "/"} | ({} if token is None else {"csrf": token})
    refused = b.post("/login", token_login, jar=jar)
    assert refused.status == 403 and refused.cookie("sdesk_session") is None and not b.session


# -- 4. a request form ---------------------------------------------------------------------------


def _control(html: Html, name: str) -> Element:
    [control] = [e for e in html.elements if e.get("name") == name and e.tag in ("input", "select", "textarea")]
    return control


def _block(html: Html, element: Element) -> Element | None:
    """The form field block (div.field) `element` is in: the last one opened before it."""
    index = next(i for i, e in enumerate(html.elements) if e is element)
    return next((e for e in reversed(html.elements[:index + 1])
                 if e.tag == "div" and "field" in e.get("class", "").split()), None)



def test_the_request_form_has_its_labels_and_a_submission_says_what_happens_next(portal, anna):
    page = anna.get("/request/quota-increase")
    assert page.status == 200
    html = page.html
    labels = {e["for"]: e.text.strip() for e in html.find("label") if "for" in e}
    for name, label in (("service", "Service"), ("extra_gb", "Extra storage (GB)"), ("justification", "Justification")):
        assert labels.get(_control(html, name).get("id")) == label, (name, labels)
    [form] = html.forms("/request/quota-increase")
    assert [c.text.strip() for c in form.controls if c.tag == "button" and c.get("type") == "submit"] == ["Submit"]
    assert "shop-checkout" in [o.text.strip() for o in html.find("option")]

    done = anna.post("/request/quota-increase", {"csrf": page.csrf(), "service": "shop-checkout", "extra_gb": "12",
                                                 "justification": "peak season"})
    assert done.status == 303
    found = re.fullmatch(r"/my/(\d+)\?submitted=1", done.location or "")
    assert found, done.location
    ticket = int(found.group(1))
    shown = anna.get(done.location)
    assert shown.status == 200
    assert f"SD-{ticket}" in shown.html.one("p", role="status").text
    assert "Waiting for approval" in shown.body
    t = portal.json("show", str(ticket))
    assert t["requester"] == "anna@example.org" and t["title"] == "12 GB more for shop-checkout"


def test_wrong_answers_are_a_400_with_each_error_by_its_field_and_the_values_kept(portal, anna):
    csrf = anna.csrf("/request/quota-increase")
    tickets_before = len(portal.tickets())
    wrong = anna.post("/request/quota-increase", {"csrf": csrf, "service": "nope", "extra_gb": "900",
                                                  "justification": ""})
    assert wrong.status == 400, wrong.status
    html = wrong.html
    for name, said in (("service", "Service expected one of"), ("extra_gb", "Extra storage (GB) must be at most 500"),
                       ("justification", "Justification is required")):
        control = _control(html, name)
        assert control.get("aria-invalid") == "true"
        error = html.one("p", id=control["aria-describedby"])  # the field says which error is its own
        assert said in error.text, error.text
        label = html.one("label", for_=control["id"])
        # next to it: in the field's own block, with its label and control
        assert _block(html, error) is _block(html, control) is _block(html, label) is not None
    assert html.one("input", name="extra_gb")["value"] == "900"

    kept = anna.post("/request/quota-increase", {"csrf": csrf, "service": "shop-checkout", "extra_gb": "0",
                                                 "justification": "peak <season> & more"})
    assert kept.status == 400
    html = kept.html
    assert [(p["id"], p.text) for p in html.find("p") if "field-error" in p.get("class", "").split()] == \
        [("e-extra_gb", "Extra storage (GB) must be at least 1")]
    assert html.one("input", name="extra_gb")["value"] == "0"
    assert [o.text for o in html.find("option") if "selected" in o] == ["shop-checkout"]
    assert html.one("textarea", name="justification").text == "peak <season> & more"
    assert "peak &lt;season&gt; &amp; more" in kept.body
    assert len(portal.tickets()) == tickets_before  # nothing was opened


# -- 5. requesters kept apart ---------------------------------------------------------------------


def test_a_requester_gets_404_for_anyone_elses_ticket_as_for_none(portal, anna, ben):
    bens = [portal.new("Ben's printer jams", "ben@example.org"), portal.new("Ben's badge", "ben@example.org")]
    annas = portal.new("Anna's keyboard", "anna@example.org")
    agents = portal.new("Internal: rotate certificates", "carol")
    before = {t: portal.events(t) for t in bens}
    csrf = anna.csrf("/my")
    missing = anna.get("/my/999999")
    assert missing.status == 404
    for t in [*bens, agents]:
        for answer in (anna.get(f"/my/{t}"), anna.get(f"/my/SD-{t}"),
                       anna.post(f"/my/{t}", {"csrf": csrf, "action": "reply", "text": "let me in"}),
                       anna.post(f"/my/{t}", {"csrf": csrf, "action": "rate", "score": "1"})):
            assert answer.status == 404, (t, answer.status)
            assert answer.body == missing.body  # an id tells nothing
        assert ben.get(f"/my/{t}").status == (200 if t in bens else 404)
    assert {t: portal.events(t) for t in bens} == before

    mine = anna.get("/my")
    assert mine.status == 200
    listed = {int(a["href"].rsplit("/", 1)[1]) for a in mine.html.find("a") if re.fullmatch(r"/my/\d+", a.get("href", ""))}
    assert annas in listed and not listed & {*bens, agents}
    titles = {e.text.strip() for e in mine.html.find("td")}
    assert "Anna's keyboard" in titles and not any(t.startswith(("Ben's", "Internal")) for t in titles)
    titles = {e.text.strip() for e in ben.get("/my").html.find("td")}
    assert {"Ben's printer jams", "Ben's badge"} <= titles and not any(t.startswith("Anna") for t in titles)

    # Her own ticket: she reads it and writes to the desk.
    assert anna.get(f"/my/{annas}").status == 200
    sent = anna.post(f"/my/{annas}", {"csrf": csrf, "action": "reply", "text": "It is the Q key."})
    assert sent.status == 303 and sent.location == f"/my/{annas}"
    assert portal.events(annas)[-1] == "commented"


# -- 6. output escaping ---------------------------------------------------------------------------


def test_a_title_of_markup_is_shown_as_text(portal, anna):
    ticket = portal.new(SCRIPT, "anna@example.org")
    csrf = anna.csrf("/my")
    said = '<img src=x onerror="alert(2)">'
    assert anna.post(f"/my/{ticket}", {"csrf": csrf, "action": "reply", "text": said}).status == 303
    for path in ("/my", f"/my/{ticket}"):
        page = anna.get(path)
        assert page.status == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body and SCRIPT not in page.body
        html = page.html
        assert [e.get("src") for e in html.find("script")] == ["/assets/portal.js"]  # no script but the page's own
        assert html.find("img") == []
        assert any(SCRIPT in e.text for e in html.elements if e.tag in ("td", "h1"))  # shown, as text
    assert any(said in e.text for e in html.find("span", **{"class": "text"}))  # her reply, as text


# -- 7. no open redirect -------------------------------------------------------------------------

HOSTILE_NEXT = ["//evil.example", "https://evil.example", "/\\evil.example", "\\\\evil.example", "///evil.example",
                "/\\/evil.example", "http:evil.example", "javascript:alert(1)", "/\t/evil.example",
                " //evil.example", "/%09/evil.example", "//evil.example/%2F..", "\u3002evil.example"]


def _local(location: str | None) -> bool:
    """A path of this site, as a browser resolves it (a backslash is a slash to a browser)."""
    if not location:
        return False
    as_browser = location.replace("\\", "/")
    resolved = urlsplit(urljoin("http://127.0.0.1:8080/login", as_browser.strip()))
    return location.startswith("/") and not as_browser.startswith("//") and resolved.netloc == "127.0.0.1:8080" \
        and all(c.isprintable() and not c.isspace() for c in location)


@pytest.mark.parametrize("next_path", HOSTILE_NEXT)
def test_next_never_sends_a_signed_in_browser_to_another_host(portal, next_path):
    b = Browser(portal)
    page = b.get(f"/login?next={quote(next_path, safe='')}")
    assert page.status == 200
    expected = next_path if next_path.startswith("/%") else "/"  # a path of this site stays, else /
    offered = {c["value"] for c in page.html.find("input", name="next")}
    assert offered == {expected}, offered  # the forms carry a safe path
    done = b.post("/login", {"csrf": page.csrf(), "next": next_path, "token": portal.tokens["carol"]})
    assert done.status == 303 and done.location == expected, done.location
    assert _local(done.location)
    link = Browser(portal).get(f"/login/link?t=whatever&next={quote(next_path, safe='')}")
    assert {c["value"] for c in link.html.find("input", name="next")} == {expected}


def test_a_local_next_is_kept(portal):
    b = Browser(portal)
    done = b.post("/login", {"csrf": b.csrf(f"/login?next={quote('/my?x=1')}"), "next": "/my?x=1",
                             "token": portal.tokens["carol"]})
    assert done.status == 303 and done.location == "/my?x=1"
    redirected = Browser(portal).get("/request/quota-increase")  # signed out: to sign-in, then back here
    assert redirected.status == 303 and redirected.location == "/login?next=/request/quota-increase"


def test_a_signed_in_person_may_use_the_sign_in_page_forms(portal):
    """Signed in as carol, the sign-in page's own token form signs in as dave: the server drew it."""
    b = portal.sign_in_by_token("carol")
    page = b.get("/login")
    assert page.status == 200
    [form] = [f for f in page.html.forms("/login") if any(c.get("name") == "token" for c in f.controls)]
    done = b.post("/login", {**page.html.fields(form), "token": portal.tokens["dave"]})
    assert done.status == 303, (done.status, done.body[-600:])
    assert "dave@example.com" in b.get("/approvals").body


# -- 8. sign-out ends the session on the server ----------------------------------------------------


def test_sign_out_ends_the_session_whatever_the_browser_keeps(portal):
    b = portal.sign_in_by_token("carol")
    old = b.session
    assert b.get("/my").status == 200
    out = b.post("/logout", {"csrf": b.csrf("/my")})
    assert out.status == 303 and out.location == "/"
    cookie = out.cookie("sdesk_session")
    assert cookie is not None and (cookie.get("max-age") == "0" or not cookie["value"])
    assert not b.session
    replay = {"sdesk_session": old}  # the old cookie, sent by hand
    mine = b.get("/my", jar=replay)
    assert mine.status == 303 and mine.location == "/login?next=/my"
    home = b.get("/", jar=replay)
    assert home.status == 200 and "Sign out" not in home.body and 'href="/login"' in home.body
    assert b.get("/dash", jar=replay).status == 303
    assert b.get("/approvals", jar=replay).status == 303


def test_revoking_the_api_token_a_session_was_opened_with_ends_it(portal):
    portal.sdesk("user", "add", "vic", "--role", "agent")
    portal.tokens["vic"] = portal.sdesk("user", "token", "vic").stdout.split()[0]
    vic = portal.sign_in_by_token("vic")
    assert vic.get("/dash").status == 200
    [token_id] = [t["id"] for t in json.loads(portal.sdesk("user", "tokens", "--json").stdout) if t["user"] == "vic"]
    portal.sdesk("user", "revoke", str(token_id))
    assert vic.get("/dash").location == "/login?next=/dash"  # signed out: the token it stood on is gone


# -- 9. headers and page weight --------------------------------------------------------------------


def _check_headers(answer: Answer, what: str) -> None:
    assert answer.headers.get("Content-Type", "").startswith("text/html"), what
    csp = answer.headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'none'"], (what, csp)
    sources = {s for values in directives.values() for s in values}
    assert sources <= {"'none'", "'self'", "data:"}, (what, csp)  # no other host, no wildcard, no inline
    assert answer.headers.get("X-Content-Type-Options") == "nosniff", what
    assert answer.headers.get("X-Frame-Options") == "DENY", what


def test_every_page_has_the_security_headers_and_weighs_under_50_kb(portal, anna):
    ticket = quota_form(portal, anna, justification="for the page weight")
    dave, carol = portal.sign_in_by_token("dave"), portal.sign_in_by_token("carol")
    anonymous = Browser(portal)
    article = next(a["href"] for a in anonymous.get("/kb").html.find("a") if re.fullmatch(r"/kb/\d+", a.get("href", "")))
    css = anonymous.get("/assets/portal.css")
    js = anonymous.get("/assets/portal.js")
    assert css.status == js.status == 200
    assert css.headers["Content-Type"].startswith("text/css") and js.headers["Content-Type"].startswith("text/javascript")
    assert css.headers.get("X-Content-Type-Options") == js.headers.get("X-Content-Type-Options") == "nosniff"
    assets = len(css.body.encode()) + len(js.body.encode())
    pages = [(anonymous, "/"), (anonymous, "/?q=storage"), (anonymous, "/login"), (anna, "/request/quota-increase"),
             (anna, "/my"), (anna, f"/my/{ticket}"), (anonymous, "/kb"), (anonymous, article), (dave, "/approvals"),
             (carol, "/dash"),
             (anonymous, "/login/link?t=x")]
    for who, path in pages:
        page = who.get(path)
        assert page.status == 200, (path, page.status)
        _check_headers(page, path)
        weight = len(page.body.encode()) + assets
        assert weight < PAGE_WEIGHT_MAX, (path, weight)
        # Nothing on the page comes from elsewhere: every src and stylesheet is this site's.
        for e in page.html.elements:
            for attr in ("src", "href", "action"):
                if attr in e and e.tag != "a":
                    assert e[attr].startswith("/") and not e[attr].startswith("//"), (path, e.tag, e[attr])
    for who, path, status in ((anna, "/my/999999", 404), (anna, "/dash", 403), (anonymous, "/kb/999999", 404),
                              (anonymous, "/request/no-such-type", 404)):
        page = who.get(path)
        assert page.status == status, (path, page.status)
        _check_headers(page, path)
    refused = Browser(portal).post("/login", {"email": "x@example.org"})  # a 403 page, too
    assert refused.status == 403
    _check_headers(refused, "POST /login without a token")
    lost = anonymous.get("/no/such/page", headers={"Accept": "text/html"})
    assert lost.status == 404
    _check_headers(lost, "an unknown path")


# -- 10. approvals and the dashboards' roles -----------------------------------------------------


def test_an_approver_decides_on_the_portal_and_a_non_approver_cannot(portal, anna):
    ticket = quota_form(portal, anna, gb="20", justification="for the approvals test")
    dave, carol = portal.sign_in_by_token("dave"), portal.sign_in_by_token("carol")
    waiting = dave.get("/approvals")
    assert waiting.status == 200
    [section] = [s for s in waiting.html.find("section") if s.get("aria-label") == f"SD-{ticket}"]
    assert "20 GB more for shop-checkout" in section.text and "anna@example.org" in section.text
    assert f"SD-{ticket}" not in carol.get("/approvals").body  # not hers to decide

    before = portal.events(ticket)
    refused = carol.post("/approvals", {"csrf": carol.csrf("/approvals"), "ticket": str(ticket), "decision": "approve"})
    assert refused.status in (400, 403)
    assert "not an approver" in refused.html.one("p", role="alert").text
    assert portal.events(ticket) == before
    assert "Waiting for approval" in anna.get(f"/my/{ticket}").body

    approved = dave.post("/approvals", {"csrf": dave.csrf("/approvals"), "ticket": str(ticket), "decision": "approve",
                                        "reason": "fine"})
    assert approved.status == 200
    assert approved.html.one("p", role="status").text.strip() == f"SD-{ticket}: approved"
    assert f"SD-{ticket}" not in dave.get("/approvals").body.replace(f"SD-{ticket}: approved", "")
    assert "request_approved" in portal.events(ticket)
    # The request moves on: serve's automation runs its fulfilment (grow-quota) on its own.
    wait_for(lambda: "request_fulfilled" in portal.events(ticket), "the quota's fulfilment")
    assert (portal.root / "out" / "quotas" / "shop-checkout").is_file()
    view = anna.get(f"/my/{ticket}")
    assert "Done." in view.body and "dave approved" in view.body


def test_the_dashboards_are_for_agents(portal, anna):
    refused = anna.get("/dash")
    assert refused.status == 403 and "Not allowed" in refused.body and "<svg" not in refused.body
    assert 'href="/dash"' not in anna.get("/my").body  # not offered to a requester either
    assert Browser(portal).get("/dash").location == "/login?next=/dash"
    carol = portal.sign_in_by_token("carol")
    dash = carol.get("/dash")
    for _ in range(600):  # the first figures are computed on a thread of their own: the page says so meanwhile
        if "being computed" not in dash.body:
            break
        assert dash.status == 200 and 'http-equiv="refresh"' in dash.body
        time.sleep(0.1)
        dash = carol.get("/dash")
    assert dash.status == 200 and "<svg" in dash.body
    assert dash.html.find("svg")


# -- 11. the published KB --------------------------------------------------------------------------


def test_only_articles_tagged_public_are_published_and_readable_signed_out(portal):
    articles = portal.json("kb", "list")
    public = {a["id"]: a["title"] for a in articles if "public" in a["tags"]}
    internal = {a["id"]: a["title"] for a in articles if "public" not in a["tags"]}
    assert len(public) == 2 and len(internal) == 5
    b = Browser(portal)
    kb = b.get("/kb")
    assert kb.status == 200
    listed = {int(a["href"].rsplit("/", 1)[1]): a.text.strip() for a in kb.html.find("a")
              if re.fullmatch(r"/kb/\d+", a.get("href", ""))}
    assert listed == public
    for number, title in public.items():
        page = b.get(f"/kb/{number}")
        assert page.status == 200 and page.html.one("h1").text.strip() == title
    none = b.get("/kb/999999")
    assert none.status == 404
    for number, title in internal.items():
        page = b.get(f"/kb/{number}")
        assert page.status == 404 and title not in page.body
        assert page.body == none.body
    found = b.get("/?q=password+vpn+disk+checkout")
    shown = {a.text.strip() for a in found.html.find("a") if re.fullmatch(r"/kb/\d+", a.get("href", ""))}
    assert shown <= set(public.values()) and shown
    assert not any(title in found.body for title in internal.values())


# -- 12. hostile input as a class ------------------------------------------------------------------

NASTY = ["\x00", "%00", "a\x00b", "\x01\x02\x1b[31m\x7f", "\r\nSet-Cookie: evil=1", "\u202egnp.exe", "\u2066\u2069x",
         "x" * 100_000, "\ud800", "\udfff\ud800", "\ufeff", "💥" * 50, "'\"><svg onload=alert(1)>", "{{ 7*7 }}",
         "../../../../etc/passwd", "SD-0", "-1", "99999999999999999999999999", "١٢٣", "NaN", "1e309", " ", ""]


def test_a_csrf_cookie_that_is_not_ascii_is_refused_not_a_500(portal):
    b = Browser(portal)
    for path, form in (("/login", {"csrf": "abc", "email": "x@example.org"}), ("/login/link", {"csrf": "abc", "t": "x"})):
        answer = b.send("POST", path, form=form, jar={}, headers={"Cookie": "sdesk_csrf=\u00e9t\u00e9".encode()})
        assert answer.status == 403, (path, answer.status)
    assert portal.alive()


class Findings:
    """Answers that are not a page: a 5xx, or an HTML answer cut short."""

    def __init__(self):
        self.failures: list[str] = []
        self.sent = 0

    def check(self, answer: Answer, what: str) -> None:
        self.sent += 1
        if answer.status >= 500:
            self.failures.append(f"{what}: {answer.status}")
        elif answer.headers.get("Content-Type", "").startswith("text/html") and "</html>" not in answer.body:
            self.failures.append(f"{what}: {answer.status} without a whole page")


def _short(value: str) -> str:
    return repr(value if len(value) < 20 else value[:8] + f"...({len(value)})")


def test_an_answer_never_says_where_the_desks_database_is(portal, anna):
    """What a requester or approver types is refused, if it must be, in their words: never with the
    database's location (its file, or its server, login and database)."""
    own = portal.new("Anna's resolved dock", "anna@example.org")
    portal.sdesk("resolve", str(own), "-r", "replaced")
    request_id = quota_form(portal, anna, justification="for the leak test")
    dave = portal.sign_in_by_token("dave")
    csrf, dave_csrf = anna.csrf("/my"), dave.csrf("/approvals")
    secret = {portal.db, str(portal.root), "postgresql:", "sdesk_tests_"}
    answers = []
    for value in ("a\x00b", "\x00", "x" * 30_000):
        answers += [anna.post(f"/my/{own}", {"csrf": csrf, "action": "reply", "text": value}),
                    anna.post(f"/my/{own}", {"csrf": csrf, "action": "rate", "score": "3", "comment": value})]
    answers.append(dave.post("/approvals", {"csrf": dave_csrf, "ticket": str(request_id), "decision": "reject",
                                            "reason": "no\x00"}))
    for answer in answers:
        assert answer.status < 500
        said = [x for x in secret if x in answer.body]
        assert not said, (answer.status, said, re.findall(r'role="alert">([^<]*)', answer.body))


def test_hostile_answers_to_a_request_form_get_a_page_never_a_500(portal, anna):
    csrf = anna.csrf("/request/quota-increase")
    found = Findings()
    before = len(portal.tickets())
    for value in NASTY:
        found.check(anna.post("/request/quota-increase", {"csrf": csrf, "service": value, "extra_gb": value,
                                                          "justification": value}), f"POST /request {_short(value)}")
        found.check(anna.post("/request/password-reset", {"csrf": csrf, "account": value}),
                    f"POST /request pw {_short(value)}")
    assert found.failures == [], "\n".join(found.failures)
    assert len(portal.tickets()) == before  # no value there is a valid answer
    assert portal.alive()


def test_hostile_input_gets_a_page_never_a_500_and_the_server_keeps_serving(portal, anna):
    own = portal.new("Anna's resolved laptop", "anna@example.org")
    portal.sdesk("resolve", str(own), "-r", "replaced")
    request_id = quota_form(portal, anna, justification="for the hostile test")
    dave = portal.sign_in_by_token("dave")
    anonymous = Browser(portal)
    anon_csrf = anonymous.csrf("/login")
    csrf, dave_csrf = anna.csrf("/my"), dave.csrf("/approvals")
    found = Findings()
    check = found.check

    for value in NASTY:
        short = _short(value)
        q = quote(value.encode("utf-8", "surrogatepass")[:6000], safe="")
        for path in (f"/?q={q}", f"/login?next={q}", f"/login/link?t={q}", f"/my/{q or 'x'}", f"/kb/{q or 'x'}",
                     f"/request/{q or 'x'}"):
            who = anna if path.startswith("/my") else anonymous
            check(who.get(path), f"GET {path[:40]} {short}")
        check(anonymous.post("/login", {"csrf": anon_csrf, "next": value, "email": value}), f"POST /login email {short}")
        check(anonymous.post("/login", {"csrf": anon_csrf, "next": value, "token": value}), f"POST /login token {short}")
        check(anonymous.post("/login/link", {"csrf": anon_csrf, "t": value, "next": value}), f"POST /login/link {short}")
        check(anna.post(f"/my/{own}", {"csrf": csrf, "action": "reply", "text": value}), f"POST reply {short}")
        check(anna.post(f"/my/{own}", {"csrf": csrf, "action": "rate", "score": "4", "comment": value}),
              f"POST rate {short}")
        check(anna.post(f"/my/{own}", {"csrf": csrf, "action": value, "score": value}), f"POST action {short}")
        check(dave.post("/approvals", {"csrf": dave_csrf, "ticket": value, "decision": value, "reason": value}),
              f"POST /approvals {short}")
    # A rejection whose reason is hostile: written, then shown to the requester.
    check(dave.post("/approvals", {"csrf": dave_csrf, "ticket": str(request_id), "decision": "reject",
                                   "reason": "no \x00\u202e <b>way</b>"}), "a hostile rejection")
    check(anna.get(f"/my/{request_id}"), "the rejected request")

    # Whole requests that are hostile.
    many = [("csrf", csrf)] + [("a", "")] * 10_000  # 30 KB: under the size limit, far over the field limit
    named = [("csrf", csrf)] + [(f"f{i}", "x") for i in range(10_000)]  # 80 KB
    huge_query = "/?q=" + "a" * 60_000
    for what, answer in (
        ("a form of 10,000 fields", anna.post("/request/quota-increase", many)),
        ("a form of 10,000 named fields", anna.post(f"/my/{own}", named)),
        ("a form of 10,000 fields to /login", anonymous.post("/login", [("csrf", anon_csrf)] + many[1:])),
        ("a form of 10,000 fields to /login/link", anonymous.post("/login/link", [("csrf", anon_csrf)] + many[1:])),
        ("a form of 10,000 fields to /my/N", anna.post(f"/my/{own}", many)),
        ("a form of 10,000 fields to /approvals", dave.post("/approvals", [("csrf", dave_csrf)] + many[1:])),
        ("a body of 1 MB", anna.post(f"/my/{own}", {"csrf": csrf, "action": "reply", "text": "x" * 1_000_000})),
        ("JSON", anna.send("POST", "/request/quota-increase", body=b'{"csrf": "%s"}' % csrf.encode(),
                           content_type="application/json")),
        ("multipart", anna.send("POST", f"/my/{own}", body=b"--b\r\n\r\n--b--", content_type="multipart/form-data; b=b")),
        ("no content type", dave.send("POST", "/approvals", body=form_body({"csrf": dave_csrf}))),
        ("no content type to /my/N", anna.send("POST", f"/my/{own}", body=form_body({"csrf": csrf, "text": "x"}))),
        ("bytes that are not UTF-8", anna.send("POST", f"/my/{own}", body=b"csrf=" + csrf.encode() + b"&text=\xff\xfe\xc0",
                                               content_type="application/x-www-form-urlencoded")),
        ("percent bytes that are not UTF-8", anna.send("POST", f"/my/{own}", body=b"csrf=" + csrf.encode()
                                                       + b"&action=reply&text=%ff%fe%c0%00",
                                                       content_type="application/x-www-form-urlencoded")),
        ("a long query string", anonymous.get(huge_query)),
        ("an enormous query string", anonymous.get("/?q=" + "%00" * 400_000)),
        ("an enormous path", anna.get("/my/" + "9" * 200_000)),
        ("a session cookie of junk", anonymous.get("/my", jar={"sdesk_session": "\x7f" * 300})),
        ("a session cookie of 4 KB", anonymous.get("/my", jar={"sdesk_session": "s" * 4000})),
        ("a session cookie that is not ASCII", anonymous.send("GET", "/my", jar={},
                                                              headers={"Cookie": "sdesk_session=\u00e9".encode()})),
    ):
        check(answer, what)
    assert found.sent < 400
    assert found.failures == [], "\n".join(found.failures)
    assert portal.alive()
    # A real requester still gets through after all that.
    assert anna.get("/my").status == 200


@pytest.mark.parametrize("url", ["", "ftp://desk.example.com", "desk.example.com", "https://", "https://desk.example.com/?q=1",
                                 "https://desk.example.com/#x", "https://desk .example.com", "https://dé.example.com",
                                 "https://desk.example.com/\n", "http://" + "a" * 400 + ".example"])
def test_a_public_url_that_no_mail_could_carry_is_refused_before_serving(cli, url):
    """--public-url is what every sign-in mail links to: one line and exit 2, and serve never starts."""
    cli("init")
    result = cli("serve", "--port", "0", "--public-url", url, ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "--public-url" in result.stderr
