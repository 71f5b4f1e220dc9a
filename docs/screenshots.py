"""Make docs/portal/*.png: the web portal of `sdesk serve` on a small demo desk, in Debian's chromium
(headless, under Playwright), 1000 px wide; and the request form at a phone's 375 px.

The desk is built in a temporary folder: the example catalog, CMDB, on-call teams, SLA policies
and published KB (examples/desk, examples/kb), the catalog's runbooks writing under that folder,
users (alice the admin, dave the storage approver, carol and bob agents), a few incidents, and
requests from ann@example.com in different states (fulfilled, approved and waiting on the
manager stage, waiting on the owner team). Sign-in links are mailed to an SMTP server on
loopback (aiosmtpd, the test extra) and opened from there, as a person would.

    python docs/screenshots.py                    # writes docs/portal/*.png
    python docs/screenshots.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import email
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from email import policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "desk"
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000
REQUESTER = "ann@example.com"
SHOTS = ("home.png", "search.png", "form-errors.png", "my-request.png", "approvals.png", "dashboard.png",
         "form-phone.png")


class Mailbox:
    """An SMTP server on loopback (aiosmtpd) that keeps what it is sent."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                box.messages.append(email.message_from_bytes(envelope.original_content, policy=policy.default))
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=30)
        self.controller.start()

    def link_for(self, address: str) -> str:
        for message in reversed(self.messages):
            if message["To"] == address and message["Subject"].startswith("Sign in to"):
                found = re.search(r"http://127\.0\.0\.1:\d+/login/link\?\S+", message.get_body(("plain",)).get_content())
                if found:
                    return found[0]
        raise SystemExit(f"no sign-in link reached {address}")

    def close(self) -> None:
        self.controller.stop()


def build_desk(tmp: Path, env: dict[str, str], smtp_port: int) -> None:
    """The demo desk in tmp (its config folder, database and the runbooks' output)."""
    config = tmp / "config"
    config.mkdir()
    for name in ("catalog.yaml", "cmdb.yaml", "oncall.yaml", "sla.yaml", "metrics.yaml"):
        shutil.copy(EXAMPLE / name, config / name)
    (config / "runbooks").mkdir()
    for name in ("reset-password.yaml", "grow-quota.yaml", "grant-access.yaml"):
        text = (EXAMPLE / "runbooks" / name).read_text().replace("/tmp/sdesk-demo", str(tmp / "out"))
        (config / "runbooks" / name).write_text(text)
    (config / "notify.yaml").write_text(f"""desk:
  name: Example Desk
  url: https://desk.example.com
  from: "Example Desk <desk@example.com>"
channels:
  email:
    type: smtp
    host: 127.0.0.1
    port: {smtp_port}
rules:
  - name: acks
    on: created
    to: [requester]
    channel: email
""", encoding="utf-8")

    def sdesk(*args: str, who: str = "alice") -> str:
        done = subprocess.run([sys.executable, "-m", "sdesk", "--as", who, *args], env=env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise SystemExit(f"sdesk {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def ticket(*args: str, who: str = "alice") -> str:
        import json

        return str(json.loads(sdesk(*args, "--json", who=who))["id"])

    sdesk("init")
    sdesk("cmdb", "import", str(config / "cmdb.yaml"))
    sdesk("kb", "import", str(ROOT / "examples" / "kb"))
    sdesk("user", "add", "alice", "--role", "admin", "--email", "alice@example.com")
    sdesk("user", "add", "dave", "--role", "approver", "--email", "dave@example.com")
    sdesk("user", "add", "carol", "--role", "agent", "--email", "carol@example.com")
    sdesk("user", "add", "bob", "--role", "agent", "--email", "bob@example.com", "--manager", "carol")

    # Incidents for the dashboard: one open P1, a P2 in progress, two resolved.
    p1 = ticket("new", "Checkout returns 502 for a share of orders", "-p", "P1", "--service", "checkout-api")
    sdesk("ack", p1, who="carol")
    p2 = ticket("new", "Search latency above 800 ms at p95", "-p", "P2", "--service", "search-api")
    sdesk("assign", p2, "bob")
    sdesk("start", p2, who="bob")
    for title, code in (("Disk full on db-billing-2", "cleanup"), ("VPN drops every 10 minutes", "config")):
        done = ticket("new", title, "-p", "P3")
        sdesk("resolve", done, "-r", "Fixed and watched for an hour", "--code", code)
    ticket("new", "Laptop for a new starter", "--kind", "request", "-p", "P4", "--requester", "hiring@example.com")

    # ann's requests: fulfilled at once, fulfilled after approval (and rated: the dashboard's
    # CSAT, which serve computes as it starts), waiting on the manager stage after dave's approval,
    # waiting on the owner team; ben's, on dave.
    ask = ("request", "--requester")
    sdesk(*ask, REQUESTER, "password-reset", "--field", "account=ann")
    small = ticket(*ask, REQUESTER, "quota-increase", "--field", "service=shop-checkout", "--field", "extra_gb=20",
                   "--field", "justification=Nightly exports outgrew the bucket")
    sdesk("approve", small, who="dave")
    sdesk("csat", small, "5")
    big = ticket(*ask, REQUESTER, "quota-increase", "--field", "service=search-api", "--field", "extra_gb=250",
                 "--field", "justification=A second index for the relaunch; the old one goes in March")
    sdesk("approve", big, "--reason", "fits the storage plan", who="dave")
    ticket(*ask, REQUESTER, "access-grant", "--field", "system=checkout-api", "--field", "level=read",
           "--field", "until=2999-01-31")
    ticket(*ask, "ben@example.com", "quota-increase", "--field", "service=catalog-api", "--field", "extra_gb=60",
           "--field", "justification=Quarter-end reports")
    ticket(*ask, "ben@example.com", "quota-increase", "--field", "service=cart-api", "--field", "extra_gb=5",
           "--field", "justification=Product photos for the spring range")


class Serve:
    """`sdesk serve --port 0` on the desk; its URL from the line it prints once it listens."""

    def __init__(self, env: dict[str, str], tmp: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "sdesk", "serve", "--port", "0", "--rejects",
                                      str(tmp / "rejects")], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.url: str | None = None
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if found and self.url is None:
                    self.url = found[1]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or self.url is None:
            self.stop()
            raise SystemExit("sdesk serve did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def shoot(url: str, mailbox: Mailbox, out: Path, width: int) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    written: list[Path] = []
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])

        def visitor(address: str | None, viewport_width: int = width):
            context = browser.new_context(base_url=url, viewport={"width": viewport_width, "height": 800},
                                          device_scale_factor=1, locale="en-GB")
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            if address:
                page.goto("/login")
                page.get_by_label("Email address").fill(address)
                page.get_by_role("button", name="Email me a sign-in link").click()
                expect(page.get_by_role("status")).to_contain_text("a sign-in link is on its way")
                page.goto(mailbox.link_for(address))
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("navigation", name="Main")).to_contain_text(address)
            return context, page

        def save(page, name: str, full_page: bool = True) -> None:
            target = out / name
            page.screenshot(path=target, full_page=full_page, animations="disabled", caret="hide")
            written.append(target)

        try:
            _, ann = visitor(REQUESTER)
            ann.goto("/")
            expect(ann.get_by_role("heading", name="Catalog")).to_be_visible()
            save(ann, "home.png")

            ann.get_by_label("What do you need?").fill("password")
            ann.get_by_role("button", name="Search").click()
            expect(ann.get_by_role("heading", name="Results for")).to_be_visible()
            save(ann, "search.png")

            ann.goto("/request/quota-increase")
            ann.get_by_label("Extra storage (GB)").fill("900")
            ann.get_by_label("Justification").fill("Logs for the November peak")
            ann.get_by_role("button", name="Submit").click()
            expect(ann.get_by_role("alert")).to_be_visible()
            save(ann, "form-errors.png")

            ann.goto("/my")
            ann.get_by_role("row").filter(has_text="250 GB").get_by_role("link").click()
            expect(ann.get_by_role("heading", name="History")).to_be_visible()
            save(ann, "my-request.png")

            _, phone = visitor(REQUESTER, viewport_width=375)
            phone.goto("/request/quota-increase")
            phone.get_by_label("Extra storage (GB)").fill("900")
            phone.get_by_role("button", name="Submit").click()
            expect(phone.get_by_role("alert")).to_be_visible()
            save(phone, "form-phone.png")

            _, dave = visitor("dave@example.com")
            dave.goto("/approvals")
            expect(dave.get_by_role("heading", name="Approvals")).to_be_visible()
            save(dave, "approvals.png")

            _, carol = visitor("carol@example.com")
            carol.goto("/dash")
            expect(carol.get_by_role("heading", name="Error budget")).to_be_visible()  # the figures, not "being computed"
            save(carol, "dashboard.png")
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "portal")
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    mailbox = Mailbox()
    try:
        with tempfile.TemporaryDirectory(prefix="sdesk-portal-shots-") as folder:
            tmp = Path(folder)
            env = {**os.environ, "SDESK_DB": str(tmp / "desk.db"), "SDESK_CONFIG": str(tmp / "config"),
                   "SDESK_USER": "alice", "SDESK_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
            env.pop("SDESK_NOW", None)
            build_desk(tmp, env, mailbox.port)
            server = Serve(env, tmp)
            try:
                written = shoot(server.url, mailbox, args.out, args.width)
            finally:
                server.stop()
    finally:
        mailbox.close()
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return written


if __name__ == "__main__":
    main()
