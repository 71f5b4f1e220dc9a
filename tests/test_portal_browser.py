"""The portal (sdesk/portal/) in a real browser: Debian's chromium under Playwright against a real
`sdesk serve` subprocess, with the example catalog, its runbooks really running (they write under
the test's folder), and sign-in links really mailed to a real SMTP server on loopback. A requester
signs in by the link, finds a form, submits it wrong then right, follows it; an approver approves;
the runbook fulfils it; the requester rates it. What a page shows is text, another requester's
tickets are 404, the form's one script only hides what does not apply, and without JavaScript it
all still works. No request of any journey leaves 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_catalog import example_config
from test_talking_back import Mailbox, notify_yaml

from tests.browser import TIMEOUT_MS, RequestLog, open_context

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "desk"
REQUESTER, OTHER, APPROVER = "ann@example.com", "ben@example.com", "dave@example.com"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/login/link\?\S+")
XSS = "<script>alert(1)</script>"

pytestmark = pytest.mark.slow


class Serve:
    """`sdesk serve --port 0` in a subprocess with the test's environment (its SDESK_DB, SDESK_CONFIG):
    its URL, read from the line it prints once it listens; its stderr kept (a failure shows it)."""

    def __init__(self, tmp_path: Path):
        self.lines: list[str] = []
        self.url: str | None = None
        self.ready = threading.Event()
        self.proc = subprocess.Popen([sys.executable, "-m", "sdesk", "serve", "--port", "0",
                                      "--rejects", str(tmp_path / "rejects")],
                                     env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(120) or self.url is None:
            self.stop()
            raise AssertionError("sdesk serve did not say where it listens:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stderr:  # read to the end: a full pipe would stop the server
            self.lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found and self.url is None:
                self.url = found[1]
                self.ready.set()
        self.ready.set()  # it ended

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def portal(tmp_path, cli, mailbox):
    """The example desk (catalog, CMDB, on-call teams, SLA policies, the catalog's runbooks writing
    under tmp_path/out) whose mail goes to `mailbox`; users: tester (admin, serve's actor), dave
    (approver, with an address), carol and bob (agents); requesters ann and ben are only
    addresses. Then `sdesk serve` on it: its URL."""
    config = tmp_path / "config"
    example_config(config, tmp_path / "out")
    notify_yaml(config, smtp_port=mailbox.port)
    cli("init")
    cli("cmdb", "import", str(config / "cmdb.yaml"))
    cli("user", "add", "tester", "--role", "admin", "--email", "tester@example.com")
    cli("user", "add", "dave", "--role", "approver", "--email", APPROVER)
    cli("user", "add", "carol", "--role", "agent", "--email", "carol@example.com")
    cli("user", "add", "bob", "--role", "agent", "--email", "bob@example.com", "--manager", "carol")
    server = Serve(tmp_path)
    try:
        yield server.url
    finally:
        server.stop()
        print("sdesk serve said:\n" + "".join(server.lines), file=sys.stderr)  # shown when the test fails


def sign_in(page, mailbox: Mailbox, address: str, start: str = "/login") -> None:
    """Sign in as `address` the one way a requester can: ask the login page (/login, or where
    `start` sends a visitor) for a link, take it from the mail the SMTP server received, open it,
    click Sign in (the link's GET alone signs nobody in)."""
    from playwright.sync_api import expect

    page.goto(start)
    expect(page).to_have_url(re.compile(r"/login(\?|$)"))
    page.get_by_label("Email address").fill(address)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("status")).to_contain_text(f"If {address} may sign in here, a sign-in link is on its way")
    # The mail was accepted before the page answered (the portal sends it itself, not the outbox).
    mails = [m for m in mailbox.to(address) if m["Subject"].startswith("Sign in to")]
    assert mails, f"no sign-in mail to {address}: {[m['Subject'] for m in mailbox.messages]}"
    link = LINK.search(mails[-1].get_body(("plain",)).get_content())
    assert link, mails[-1].as_string()
    page.goto(link[0])
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("My requests")  # not yet
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text(address)
    expect(nav(page, "My requests")).to_be_visible()


def reload_until(page, check, timeout: float = TIMEOUT_MS / 1000) -> None:
    """Reload `page` until `check()` (an expect on it) passes: what another process does (serve's
    automation thread) shows only on a new page. Each look waits up to 2 s (expect's own polling)."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while True:
        try:
            # A new load of the URL rather than reload(): a reload that meets the page between two
            # loads ("not attached to an active page") is just tried again.
            page.goto(page.url)
            check(2_000)
            return
        except (AssertionError, PlaywrightError):
            if time.monotonic() > deadline:
                raise


def submit(page, *, status: int) -> None:
    """Click the form's Submit and check the status of the page the POST answered (at once: a
    500 shows no error to wait for)."""
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Submit").click()
    assert answer.value.status == status, (answer.value.status, answer.value.text()[:300])


def nav(page, name: str):
    """The link `name` of the page's main navigation (a page's body may have one of that name too)."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def ticket_id_of(page) -> int:
    found = re.search(r"/my/(\d+)", page.url)
    assert found, page.url
    return int(found[1])


def test_a_requester_asks_for_storage_an_approver_approves_the_runbook_fulfils_it_and_it_is_rated(
        chromium_browser, portal, mailbox, tmp_path):
    from playwright.sync_api import expect

    with open_context(chromium_browser, base_url=portal) as ann, open_context(chromium_browser, base_url=portal) as dave:
        logs = [RequestLog(ann), RequestLog(dave)]
        page = ann.new_page()

        # a. Signed in by the link the real SMTP server received.
        sign_in(page, mailbox, REQUESTER)

        # b. "storage" finds the form.
        nav(page, "Home").click()
        page.get_by_label("What do you need?").fill("storage")
        page.get_by_role("button", name="Search").click()
        expect(page).to_have_url(re.compile(r"/\?q=storage$"))
        results = page.get_by_role("region", name="Results for “storage”")
        expect(results.get_by_role("link")).to_have_text(["More storage for a service"])
        results.get_by_role("link", name="More storage for a service").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("More storage for a service")
        expect(page.get_by_text("Needs approval: storage approver, manager (when")).to_be_visible()

        # c. Wrong: each error beside its field (and said by it to a screen reader), what was typed kept.
        page.get_by_label("Extra storage (GB)").fill("900")
        page.get_by_label("Justification").fill("Logs for the November peak")
        submit(page, status=400)
        expect(page.get_by_role("alert")).to_have_text("Please correct the 2 fields marked below.")
        service, extra = page.get_by_label("Service"), page.get_by_label("Extra storage (GB)")
        expect(service).to_have_attribute("aria-invalid", "true")
        expect(service).to_have_accessible_description(re.compile(r"^Service .*required"))
        expect(extra).to_have_attribute("aria-invalid", "true")
        expect(extra).to_have_accessible_description("Extra storage (GB) must be at most 500")
        for field, error in ((service, "#e-service"), (extra, "#e-extra_gb")):  # each in its field's own box
            expect(page.locator(".field", has=field).locator(error)).to_be_visible()
        expect(extra).to_have_value("900")
        justification = page.get_by_label("Justification")
        expect(justification).to_have_value("Logs for the November peak")
        expect(justification).not_to_have_attribute("aria-invalid", "true")

        # ... then right, at most 100 GB: the storage approver alone.
        service.select_option("shop-checkout")
        extra.fill("40")
        submit(page, status=303)
        expect(page).to_have_url(re.compile(r"/my/\d+\?submitted=1$"))
        ticket = ticket_id_of(page)
        ref = f"SD-{ticket}"
        expect(page.get_by_role("status")).to_have_text(
            re.compile(rf"Your request {ref} is in\. Waiting for approval \(storage approver\): 1 of .*dave"))
        expect(page.get_by_role("heading", level=1)).to_have_text(f"{ref} 40 GB more for shop-checkout")
        expect(page.locator(".answers")).to_contain_text("Logs for the November peak")

        # d. In My requests.
        nav(page, "My requests").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("My requests")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=ref))
        expect(row).to_contain_text("40 GB more for shop-checkout")

        # e. The approver signs in by their own link and approves.
        approving = dave.new_page()
        sign_in(approving, mailbox, APPROVER)
        nav(approving, "Approvals").click()
        waiting = approving.get_by_role("region", name=ref)
        expect(waiting).to_contain_text("40 GB more for shop-checkout")
        expect(waiting).to_contain_text(f"asked by {REQUESTER}")
        waiting.get_by_label("Reason").fill("fits the plan")
        waiting.get_by_role("button", name="Approve").click()
        expect(approving.get_by_role("status")).to_have_text(f"{ref}: approved")
        expect(approving.get_by_text("Nothing waits for you.")).to_be_visible()

        # f. serve's automation runs grow-quota; the requester sees it resolved, and rates it.
        page.get_by_role("link", name=ref).click()
        timeline = page.locator(".timeline")

        def fulfilled(wait: int) -> None:  # the run resolves the ticket, then records the request fulfilled
            expect(page.locator("h1 + p .status")).to_have_text("resolved", timeout=wait)
            expect(timeline).to_contain_text("Fulfilled automatically", timeout=wait)

        reload_until(page, fulfilled)
        assert (tmp_path / "out" / "quotas" / "shop-checkout").read_text().strip() == "40"  # it really ran
        expect(page.locator(".resolution")).to_have_text("Resolution: 40 GB added to shop-checkout's quota")
        stage = page.get_by_role("listitem").filter(has_text=re.compile(r"^\s*storage approver: approved"))
        expect(stage).to_contain_text("dave approve")
        expect(stage).to_contain_text("fits the plan")
        for said in ("Request submitted", "Waiting for approval: storage approver", "Approved"):
            expect(timeline).to_contain_text(said)
        page.get_by_role("group", name="Rating").get_by_label("4").check()
        page.get_by_label("Comment").fill("Quick, thanks")
        page.get_by_role("button", name="Rate").click()
        expect(page).to_have_url(re.compile(rf"/my/{ticket}$"))
        expect(timeline).to_contain_text("Rated 4/5")
        nav(page, "My requests").click()
        expect(page.get_by_role("row").filter(has=page.get_by_role("link", name=ref))).to_contain_text("resolved")

        assert [log.outside() for log in logs] == [[], []]


def test_signing_in_from_a_form_comes_back_to_it_and_a_plain_sign_in_lands_on_my_requests(
        chromium_browser, portal, mailbox):
    from playwright.sync_api import expect

    with open_context(chromium_browser, base_url=portal) as ann:
        log = RequestLog(ann)
        page = ann.new_page()
        sign_in(page, mailbox, REQUESTER, start="/request/quota-increase")  # sent to /login?next=...
        assert page.url == f"{portal}/request/quota-increase"  # (the page has loaded: sign_in saw it)
        expect(page.get_by_role("heading", level=1)).to_have_text("More storage for a service")
        assert log.outside() == []
    with open_context(chromium_browser, base_url=portal) as ben:
        page = ben.new_page()
        sign_in(page, mailbox, OTHER)
        assert page.url == f"{portal}/my"


def test_search_shows_the_published_articles_snippets_as_plain_text(chromium_browser, portal, cli):
    from playwright.sync_api import expect

    cli("kb", "import", str(EXAMPLE.parent / "kb"))
    with open_context(chromium_browser, base_url=portal) as visitor:  # kb_public: no sign-in needed
        log = RequestLog(visitor)
        page = visitor.new_page()
        page.goto("/")
        page.get_by_label("What do you need?").fill("password")
        page.get_by_role("button", name="Search").click()
        results = page.get_by_role("region", name="Results for “password”")
        expect(results.get_by_role("link", name="Customer account password reset")).to_be_visible()
        assert log.outside() == []
        snippet = results.get_by_role("listitem").filter(has_text="Customer account password reset").locator("p")
        said = snippet.inner_text()
        assert "password" in said and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", said), repr(said)


def test_what_pages_show_is_text_and_another_requesters_tickets_are_not_found(chromium_browser, portal, mailbox, cli):
    from playwright.sync_api import expect

    mine = cli.new(XSS, "--kind", "request", "-p", "P4", "--requester", REQUESTER)
    theirs = [cli.new("Ben's laptop", "--kind", "request", "-p", "P4", "--requester", OTHER),
              cli.json("request", "password-reset", "--field", "account=ben", "--requester", OTHER)["ticket_id"]]
    with open_context(chromium_browser, base_url=portal) as ann:
        log = RequestLog(ann)
        page = ann.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        sign_in(page, mailbox, REQUESTER)

        # g. A title, a reply and a search of markup are shown as the text they are.
        nav(page, "My requests").click()
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"SD-{mine}"))
        expect(row.get_by_role("cell", name=XSS)).to_have_text(XSS)
        expect(page.get_by_role("row")).to_have_count(2)  # the header and ann's one ticket: none of ben's
        row.get_by_role("link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"SD-{mine} {XSS}")
        said = f"Still broken {XSS} <img src=x onerror=alert(2)>"
        page.get_by_label("Message").fill(said)
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".timeline")).to_contain_text(f"you: {said}")
        expect(page.locator("main script, main img")).to_have_count(0)
        page.goto("/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        expect(page.get_by_role("heading", name="Results for")).to_have_text(f"Results for “{XSS}”")
        expect(page.get_by_label("What do you need?")).to_have_value(XSS)
        expect(page.locator("main script, main img")).to_have_count(0)
        assert dialogs == []

        # h. Each of ben's tickets is a 404, the same page as a ticket that does not exist.
        for number in [*theirs, 9999]:
            answer = page.goto(f"/my/{number}")
            assert answer is not None and answer.status == 404, number
            expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
            expect(page.locator("main")).to_have_text(re.compile(r"^\s*Not found\s*There is no such ticket\."))
        # ... and writing to one or rating it, with ann's own valid form token, too.
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        for form in ({"action": "reply", "text": "mine now"}, {"action": "rate", "score": "1", "comment": ""}):
            answer = ann.request.post(f"/my/{theirs[0]}", form={"csrf": csrf, **form}, max_redirects=0)
            assert answer.status == 404, (form, answer.status)
        assert dialogs == []
        assert log.outside() == []
    events = cli.json("show", f"SD-{theirs[0]}")["events"]
    assert [e["kind"] for e in events if e["kind"] in ("commented", "replied", "csat")] == []


def test_the_form_script_only_hides_what_does_not_apply_and_without_javascript_all_still_works(
        chromium_browser, portal, mailbox):
    from playwright.sync_api import expect

    with open_context(chromium_browser, base_url=portal) as ann:
        log = RequestLog(ann)
        page = ann.new_page()
        sign_in(page, mailbox, REQUESTER)
        page.goto("/request/access-grant")
        why, level = page.get_by_label("Why admin access"), page.get_by_label("Access level")
        expect(why).to_be_hidden()
        level.select_option("admin")
        expect(why).to_be_visible()
        expect(page.get_by_text("Only when")).to_be_hidden()  # the script says it by showing it
        level.select_option("read")
        expect(why).to_be_hidden()
        assert log.outside() == []

    # i. Without JavaScript: sign in by the link, find the form, submit it, see it in My requests.
    with open_context(chromium_browser, base_url=portal, java_script_enabled=False) as ben:
        log = RequestLog(ben)
        page = ben.new_page()
        sign_in(page, mailbox, OTHER)
        nav(page, "Home").click()
        page.get_by_label("What do you need?").fill("access")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("region", name="Results for “access”").get_by_role("link", name="Access to a system").click()
        why = page.get_by_label("Why admin access")
        expect(why).to_be_visible()  # no script: every field shows, and says when it applies
        expect(page.get_by_text(re.compile(r"^Only when .*level is admin\.$"))).to_be_visible()
        page.get_by_label("System").select_option("checkout-api")
        page.get_by_label("Access level").select_option("admin")
        page.get_by_label("Until").fill("2999-01-31")
        submit(page, status=400)  # admin, and no reason: the server checks what the script would hide
        expect(page.get_by_role("alert")).to_have_text("Please correct the 1 field marked below.")
        expect(why).to_have_accessible_description(re.compile(r"^Why admin access .*required"))
        expect(page.get_by_label("Until")).to_have_value("2999-01-31")
        expect(page.get_by_label("Access level")).to_have_value("admin")
        why.fill("Rotate the payment keys")
        submit(page, status=303)
        expect(page).to_have_url(re.compile(r"/my/\d+\?submitted=1$"))
        ref = f"SD-{ticket_id_of(page)}"
        expect(page.get_by_role("status")).to_contain_text(f"Your request {ref} is in. Waiting for approval (owner team)")
        nav(page, "My requests").click()
        expect(page.get_by_role("row").filter(has=page.get_by_role("link", name=ref))).to_contain_text(
            "admin access to checkout-api until 2999-01-31")
        assert log.outside() == []
        assert not any(url.endswith("/assets/portal.js") for url in log.urls)  # it really ran without
