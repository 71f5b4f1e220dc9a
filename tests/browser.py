"""Real-browser plumbing for the portal's tests: Debian's chromium, driven by Playwright.

Nothing is downloaded at run time, so Playwright never uses a browser of its own: it launches
Debian's `chromium` package by path (`.ci/run` installs it). conftest.py's `chromium_browser`
fixture is the way in; `open_context` gives a test its own cookies and storage with the suite's
timeouts, and `RequestLog` proves that a page reached nothing but the test's own server.

One rule: a sync Playwright marks its event loop as running on the thread that started it, for as
long as it is open, so `asyncio.run` (the TUI's tests, aiosmtpd, ...) fails on that thread until
it stops. The fixture is therefore per module, never per session: it is stopped before the next
module's tests run, and a browser test must not call asyncio itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Request, WebSocket

CHROMIUM = "/usr/bin/chromium"
# As root in a container: chromium refuses to start as root with its sandbox on (and the sandbox
# needs namespaces a container rarely grants), and a container's /dev/shm may be 64 MB, where
# chromium's shared memory runs out and its renderers crash; /tmp serves instead.
ARGS = ("--no-sandbox", "--disable-dev-shm-usage")
# Every wait (an action, a navigation, an `expect`) may take this long: the suite must pass with
# the CPUs busy (tests/test_suite_rules.py). A wait ends as soon as its condition holds, so a
# generous limit costs nothing when all goes well. Launching: Playwright's own 180 s.
TIMEOUT_MS = 60_000
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def chromium_path() -> str | None:
    """Debian's chromium (/usr/bin/chromium, else `chromium` on PATH), or None."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@contextlib.contextmanager
def open_browser() -> Iterator[Browser]:
    """Debian's chromium, headless, under a sync Playwright; both closed on the way out, on
    failure too. Raises RuntimeError where chromium is not installed (the fixture skips first)."""
    from playwright.sync_api import expect, sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    expect.set_options(timeout=TIMEOUT_MS)  # (expect's own default is 5 s)
    with sync_playwright() as playwright:  # stops the driver, and with it any browser left
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=list(ARGS))
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def open_context(browser: Browser, **options) -> Iterator[BrowserContext]:
    """A new context (its own cookies and storage: a new visitor) with the suite's timeouts;
    `options` go to Browser.new_context (base_url=..., locale=...). Closed on the way out."""
    context = browser.new_context(**options)
    try:
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        yield context
    finally:
        context.close()


def is_local(url: str) -> bool:
    """Whether a URL stays on this machine: its host is 127.0.0.1, localhost or [::1], or it
    names no host at all (data:, about:); a blob: URL by the origin it belongs to."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("data", "about"):
        return True
    if scheme == "blob":
        return is_local(url[len("blob:"):])
    return urlsplit(url).hostname in LOCAL_HOSTS


class RequestLog:
    """Every request a context's pages make (documents, scripts, images, fetches, ...) and every
    WebSocket they open, by URL, in order. Attach it before the first navigation:

        log = RequestLog(context)
        ...
        assert log.outside() == []
    """

    def __init__(self, context: BrowserContext):
        self.urls: list[str] = []
        context.on("request", self._request)
        # WebSockets are not requests to Playwright: they are seen per page.
        for page in context.pages:
            page.on("websocket", self._websocket)
        context.on("page", lambda page: page.on("websocket", self._websocket))

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _websocket(self, websocket: WebSocket) -> None:
        self.urls.append(websocket.url)

    def outside(self) -> list[str]:
        """The URLs that left this machine (see is_local), in order."""
        return [url for url in self.urls if not is_local(url)]
