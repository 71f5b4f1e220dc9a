"""The real-browser plumbing itself (tests/browser.py): Debian's chromium opens a page served on
127.0.0.1, follows a link, submits a form, renders a screenshot, and reaches nothing else."""

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import RequestLog, is_local, open_context

INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>Plumbing</title></head><body>
<h1>Search the desk</h1>
<form action="result.html" method="get">
  <label>Words <input name="q"></label>
  <button type="submit">Search</button>
</form>
<a href="about.html">About</a>
</body></html>
"""
RESULT = """<!doctype html>
<html><head><meta charset="utf-8"><title>Results</title></head><body>
<h1>Results</h1><p>You asked for <span id="asked"></span>.</p>
<script>document.getElementById("asked").textContent = new URLSearchParams(location.search).get("q");</script>
</body></html>
"""
ABOUT = """<!doctype html>
<html><head><meta charset="utf-8"><title>About</title></head><body><h1>About</h1>
<a href="index.html">Back</a></body></html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # not on the test's stderr
        pass


@pytest.fixture
def site(tmp_path):
    """A real HTTP server on 127.0.0.1 (a free port) in a thread, serving three small pages;
    its base URL."""
    root = tmp_path / "site"
    root.mkdir()
    for name, text in {"index.html": INDEX, "result.html": RESULT, "about.html": ABOUT}.items():
        (root / name).write_text(text)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.slow
def test_a_real_browser_follows_a_link_submits_a_form_and_stays_on_this_machine(chromium_browser, site, tmp_path):
    from playwright.sync_api import expect

    with open_context(chromium_browser, base_url=site) as context:
        log = RequestLog(context)
        page = context.new_page()
        page.goto("/index.html")
        expect(page).to_have_title("Plumbing")

        page.get_by_role("link", name="About").click()
        expect(page).to_have_url(f"{site}/about.html")
        expect(page.get_by_role("heading")).to_have_text("About")
        page.get_by_role("link", name="Back").click()

        page.get_by_label("Words").fill("disk full & db-2")
        page.get_by_role("button", name="Search").click()
        expect(page).to_have_url(re.compile(re.escape(f"{site}/result.html?q=") + r"disk\+full\+%26\+db-2$"))
        expect(page.locator("#asked")).to_have_text("disk full & db-2")  # the page's script ran

        shot = tmp_path / "result.png"
        page.screenshot(path=shot, full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        assert log.outside() == []
        seen = {url.split("?")[0] for url in log.urls}
        assert {f"{site}/index.html", f"{site}/about.html", f"{site}/result.html"} <= seen

        # The log sees what leaves, too (the request is stopped here before it goes anywhere).
        context.route("http://192.0.2.1/**", lambda route: route.abort())
        with page.expect_request("http://192.0.2.1/probe"):
            page.evaluate("fetch('http://192.0.2.1/probe').catch(() => null)")
        assert log.outside() == ["http://192.0.2.1/probe"]

    assert all(map(is_local, ["http://localhost:8080/", "http://[::1]/x", "data:text/plain,hi", "about:blank",
                              f"blob:{site}/0d6e"]))
    assert not any(map(is_local, ["https://example.com/", "http://127.0.0.2/", "blob:https://cdn.example/1"]))
