"""`sdesk demo`: a short, realistic morning on the desk, replayed on a fixed timeline."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from .desk import Desk
from .domain import clock
from .domain.lifecycle import ref
from .errors import BadInput, Conflict, PermissionDenied
from .intake.formats import parse_jsonl
from .intake.service import Intake
from .services.starter import examples_dir  # noqa: F401 (also imported from here)
from .store import Store
from .triage import TriageConfig


def _triage() -> TriageConfig:
    from .validated import load_sla
    from .validated import load_triage as load

    path, sla = examples_dir() / "desk" / "triage.yaml", examples_dir() / "desk" / "sla.yaml"
    return load(path.read_text(encoding="utf-8"), str(path))._replace(
        slos=load_sla(sla.read_text(encoding="utf-8"), str(sla)).slos)


def _receive(store: Store, name: str, fmt: str, actor: str) -> list[tuple[int | None, str]]:
    """A file from examples/demo through the same intake as `sdesk new --format` (`jsonl`:
    one ticket per line, as `sdesk new --jsonl`), triaged by the example desk's rules."""
    from .intake.ingest import document_records

    path = examples_dir() / "demo" / name
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as f:
            records = list(parse_jsonl(f))
    else:
        _, records = document_records(path.read_bytes(), fmt)
    return Intake(store).receive([r.signal for r in records if r.signal is not None], actor=actor, triage=_triage())


def _receive_reply(store: Store, message_id: str | None) -> None:
    """Priya's answer (examples/demo/mail-reply.eml) to bob's mail: In-Reply-To its Message-ID, as her mail client sets it."""
    from .intake.ingest import document_records

    raw = (examples_dir() / "demo" / "mail-reply.eml").read_bytes()
    if message_id:
        raw = raw.replace(b"In-Reply-To: <q4-budget-1@mail.example.com>", f"In-Reply-To: {message_id}".encode())
    _, records = document_records(raw, "email")
    Intake(store).receive([r.signal for r in records if r.signal is not None], actor="mail", triage=_triage())


def _load(store: Store, name: str) -> list[int]:
    return [ticket_id for ticket_id, _ in _receive(store, name, "jsonl", "alertmanager")]


def _load_estate(store: Store) -> str:
    """examples/desk/cmdb.yaml and examples/kb/, as `sdesk cmdb import` and `sdesk kb import` load them."""
    from .domain.cmdb import parse_estate
    from .domain.kb import check_article, parse_article

    estate = examples_dir() / "desk" / "cmdb.yaml"
    cis = store.cmdb.cmdb_import(parse_estate(estate.read_text(encoding="utf-8"), "yaml", str(estate)), actor="demo")
    articles = [(path.stem, check_article(parse_article(path.read_text(encoding="utf-8"), str(path)), str(path)))
                for path in sorted((examples_dir() / "kb").glob("*.md"))]
    kb = store.kb.kb_sync(articles, actor="demo")
    return f"{len(cis['created'])} configuration items in the CMDB, {len(kb['created'])} KB articles"


def _oncall_and_sla(pager_log: Path | None = None):
    """The example desk's on-call and SLA config; `pager_log`: the demo's pager, a file each page
    is appended to (the starter config has no notifier, and a page that reaches nobody is
    `undeliverable`, as it should be on a real desk)."""
    from .domain import routing
    from .validated import load_oncall, load_sla

    desk = examples_dir() / "desk"
    oncall = load_oncall((desk / "oncall.yaml").read_text(encoding="utf-8"), str(desk / "oncall.yaml"))
    if pager_log is not None:
        append = "import sys; open(sys.argv[1], 'a', encoding='utf-8').write(sys.stdin.read() + '\\n')"
        oncall = oncall._replace(notifier=routing.Notifier(command=(sys.executable, "-c", append, str(pager_log)),
                                                           channels=("ops-slack",)))
    return oncall, load_sla((desk / "sla.yaml").read_text(encoding="utf-8"), str(desk / "sla.yaml"))


def _tick(store: Store, oncall, sla) -> list[str]:
    """`sdesk tick` as cron would run it now; who it paged."""
    from .services.tick import tick

    return [user for page in tick(store, oncall, sla, clock.now(), actor="cron", notify=store.notify)["paged"]
            for user in page["users"]]


class _Receivers:
    """The demo's loopback receivers, started and stopped by it: a mail server (the least of SMTP,
    on the standard library: the demo needs nothing installed beyond the package) and a webhook
    that takes Slack's format. What they took is shown as the story goes."""

    def __init__(self) -> None:
        import socketserver
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.mails: list[bytes] = []
        self.posts: list[dict] = []
        receivers = self

        class Smtp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 demo ESMTP\r\n")
                data: list[bytes] | None = None
                while line := self.rfile.readline(1 << 16):
                    if data is not None:
                        if line.rstrip(b"\r\n") == b".":
                            receivers.mails.append(b"".join(data))
                            data = None
                            self.wfile.write(b"250 OK\r\n")
                        else:
                            data.append(line[1:] if line.startswith(b"..") else line)
                        continue
                    verb = line.strip().upper()[:4]
                    self.wfile.write({b"EHLO": b"250 demo\r\n", b"DATA": b"354 go on\r\n",
                                      b"QUIT": b"221 bye\r\n"}.get(verb, b"250 OK\r\n"))
                    if verb == b"DATA":
                        data = []
                    if verb == b"QUIT":
                        return

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                import json

                receivers.posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.smtp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        for server in (self.smtp, self.http):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def config(self):
        """The demo's notify.yaml with these receivers' ports."""
        from .domain import yamlfile
        from .domain.notify import build

        path = examples_dir() / "demo" / "notify.yaml"
        data, node = yamlfile.parse(path.read_text(encoding="utf-8"), str(path))
        env = {"DEMO_SMTP_PORT": str(self.smtp.server_address[1]),
               "DEMO_SLACK_URL": f"http://127.0.0.1:{self.http.server_address[1]}/ops"}
        return build(data, node, str(path), env=env)

    def last_mail(self, to: str):
        import email
        from email import policy

        found = [m for m in (email.message_from_bytes(raw, policy=policy.default) for raw in self.mails) if m["To"] == to]
        return found[-1] if found else None

    def close(self) -> None:
        for server in (self.smtp, self.http):
            server.shutdown()
            server.server_close()


def _send(store: Store) -> int:
    """The outbox's due messages delivered, as `sdesk tick` (or `serve`, continuously) does."""
    from .services.outbound import deliver

    sent = 0
    while (done := deliver(store, store.notify, actor="cron"))["sent"]:
        sent += done["sent"]
    return sent


def _print_context(store: Store, ticket_id: int) -> None:
    from .render import print_context

    print_context(store.tickets.context(ticket_id=ticket_id) or {}, [])


def _runbook_demo(store: Store, disk: int, say, out) -> None:
    """The disk-full ticket's runbook (attached by triage): a dry run, then a real run that
    waits for approval by someone else, and the ticket resolved by automation. It cleans a
    scratch folder the demo makes, with old files to delete and a fresh one to keep."""
    import os
    import time

    from rich.markup import escape

    from .services.runner import prepare, resume, start
    from .validated import find_runbook as find

    def echo(message: str) -> None:
        out.print("    " + escape(message), style="dim")

    with tempfile.TemporaryDirectory(prefix="sdesk-demo-scratch-") as scratch:
        old = time.time() - 10 * 86400
        for name in ("pg_dump.1.tmp", "pg_dump.2.tmp", "sort.tmp"):
            path = Path(scratch) / name
            path.write_bytes(b"\0" * 4096)
            os.utime(path, (old, old))
        (Path(scratch) / "in-use.tmp").write_bytes(b"\0" * 4096)
        runbook = find(examples_dir() / "desk" / "runbooks", "clean-tmp")
        prepared = prepare(store, runbook, disk, {"folder": scratch})
        say(f"triage attached runbook clean-tmp to {ref(disk)}; alice dry-runs it (sdesk runbook run clean-tmp "
            f"--ticket {ref(disk)} --dry-run):")
        start(store, prepared, actor="alice", dry_run=True, echo=echo)
        clock.set_override(clock.now() + timedelta(minutes=1))
        # Each line that says what happens comes before the output of what it announces.
        say("alice runs it for real: it checks the folder, then waits for approval by someone else:")
        run = start(store, prepared, actor="alice", dry_run=False, echo=echo)
        clock.set_override(clock.now() + timedelta(minutes=2))
        try:
            resume(store, runbook, run["id"], actor="alice", echo=echo)
        except PermissionDenied:
            say(f"alice cannot approve her own run {run['id']}: an approver other than the requester must")
        say(f"dave approves run {run['id']} (sdesk runbook approve {run['id']}); the rest of it runs:")
        done = resume(store, runbook, run["id"], actor="dave", echo=echo)
        left = sorted(p.name for p in Path(scratch).iterdir())
        say(f"the 3 old files are deleted ({', '.join(left)} is kept) and {ref(disk)} is "
            f"{store.tickets.get_or_raise(ticket_id=disk)['status']} by automation (run {run['id']}: {done['status']})")


def _self_service(store: Store, say, receivers: _Receivers) -> tuple[int, int]:
    """The catalog (examples/desk/catalog.yaml) from a requester's side: a password reset with no
    approval, fulfilled at once by its runbook; a quota increase approved by a storage approver,
    then by the requester's manager (above 100 GB), then fulfilled. The runbooks run for real;
    the example's write under /tmp/sdesk-demo. Returns the two tickets."""
    from .services import requests as req
    from .services.runner import run_queued
    from .validated import load_catalog, load_runbooks

    desk = examples_dir() / "desk"
    catalog = load_catalog((desk / "catalog.yaml").read_text(encoding="utf-8"), str(desk / "catalog.yaml"))
    runbooks, _ = load_runbooks(desk / "runbooks")
    oncall, _ = _oncall_and_sla()
    teams = lambda: req.teams_of(oncall)  # noqa: E731
    priya = "priya.natarajan@example.com"
    reset = req.submit(store, catalog, "password-reset", {"account": "priya"}, requester=priya, actor="portal",
                       teams=teams, source="portal", as_requester=f"portal:{priya}")
    run_queued(store, runbooks, actor="automation")
    done = req.shown(store, reset["ticket_id"])
    say(f"Priya asks for a password reset on the portal ({done['id']}): no approval is needed, so the runbook "
        f"reset-password runs at once: {done['status']}, “{done['resolution']}”")
    store.users.set_manager("bob", manager="carol", actor="alice")
    quota = req.submit(store, catalog, "quota-increase", {"service": "shop-checkout", "extra_gb": "200",
                                                          "justification": "Black Friday traffic"},
                       requester="bob@example.com", actor="bob", teams=teams)
    _send(store)
    stage = quota["approvals"][0]
    asked = receivers.last_mail("dave@example.com")
    say(f"bob asks for 200 GB more for shop-checkout (sdesk request quota-increase ...; {quota['id']}): stage 1 asks "
        f"one of {', '.join(stage['approvers'])} (role:approver); dave's mail reads “{asked['Subject'] if asked else '?'}” "
        "(he may answer it with 'approve', or on the portal); above 100 GB, stage 2 asks bob's manager, carol")
    req.decide(store, quota["ticket_id"], approver="dave", approve=True, reason=None, actor="dave")
    _send(store)
    req.decide(store, quota["ticket_id"], approver="carol", approve=True, reason="fine for the peak", actor="carol")
    run_queued(store, runbooks, actor="automation")
    done = req.shown(store, quota["ticket_id"])
    say(f"dave approves (sdesk approve {done['id']}), then carol; the runbook grow-quota runs: {done['status']}, "
        f"“{done['resolution']}”")
    return reset["ticket_id"], quota["ticket_id"]


# Incidents of the weeks before the demo's morning (days ago, title, service, CI, resolution): two
# earlier checkout outages, and a replica that keeps falling behind, for `similar` and `problem suggest`.
HISTORY = [
    (23, "Checkout API 5xx after deploy 2026.10.2", "checkout-api", "checkout-api-prod",
     "Rolled back 2026.10.2: it shipped without its database migration; redeployed with it"),
    (12, "Spike of HTTP 500 errors on the checkout endpoint", "checkout-api", "checkout-api-prod",
     "The payment gateway client's pool was exhausted; raised it to 64 connections and restarted"),
    (19, "Replica lag 40s on db-billing-2 during the nightly batch", "billing", "db-billing-2",
     "Cleared when the batch finished"),
    (9, "db-billing-2 replica lag above 50s", "billing", "db-billing-2",
     "A long report query on the replica held replay back; cancelled it"),
    (3, "Postgres replication lag on db-billing-2 again", "billing", "db-billing-2", "Cleared by itself after the batch"),
]


def _semantic(store: Store, p1: int, at, say, out) -> None:
    """Finding what is alike (the `semantic` extra): the index, a KB question in other words, the
    P1's similar resolved tickets, and a problem suggested from repeated incidents."""
    from . import embedding
    from .services import semantic

    past = []
    for days, title, service, ci, resolution in HISTORY:
        at(-days * 24 * 60)
        line = json.dumps({"title": title, "kind": "incident", "priority": "P3", "service": service, "ci": ci})
        (ticket_id, _), = Intake(store).receive([r.signal for r in parse_jsonl([line]) if r.signal], actor="alertmanager",
                                                triage=_triage())
        at(-days * 24 * 60 + 95)
        store.tickets.move(ticket_id=ticket_id, action="resolve", actor="dave", code="fixed", resolution=resolution)
        past.append(ticket_id)
    at(80)
    if not embedding.available():
        say(f"{ref(past[0])}-{ref(past[-1])}: incidents of the weeks before. Semantic search (similar tickets, KB "
            "questions in other words, problem suggestions) needs its extra: pip install 'sdesk[semantic]'")
        return
    done = semantic.index(store, actor="alice")
    say(f"sdesk index (tick and serve keep it current): {done['tickets']} tickets and {done['articles']} KB articles "
        f"get a vector, offline ({done['model']})")
    question = "recover credentials for online store user"
    from .domain.kb import fts_query

    by_words = store.kb.kb_search(fts_query(question) or '""', limit=3)
    found, _ = semantic.search_kb(store, question, limit=3)
    say(f"sdesk kb search \"{question}\": no article has those words ({len(by_words)} found by words), by meaning "
        f"KB-{found[0]['id']} “{found[0]['title']}” comes first")
    alike = semantic.similar(store, p1, resolved=True, limit=3)
    out.print(f"\n[bold]sdesk similar {ref(p1)} --resolved[/] (how the P1's like was fixed before)")
    from .render import print_found_tickets

    print_found_tickets(alike, empty="nothing alike")
    for s in semantic.suggest_problems(store)[:1]:
        say(f"sdesk problem suggest: {len(s['members'])} incidents alike on {', '.join(s['cis'] or s['services'])} "
            f"({', '.join(ref(i) for i in s['members'])}; {s['hours']:,} hours open) → “{s['title']}”; "
            f"sdesk problem new --from {','.join(map(str, s['members']))} opens it")


def _report_and_postmortem(store: Store, p1: int, db: Path | None, out) -> None:
    """`sdesk report` over the morning, and the P1's postmortem draft written beside the database
    (`db`: its file; None, a desk on a server: the draft is shown, not written)."""
    from .render_report import print_report
    from .services.reports import build, postmortem
    from .validated import load_metrics

    desk = examples_dir() / "desk"
    config = load_metrics((desk / "metrics.yaml").read_text(encoding="utf-8"), str(desk / "metrics.yaml"))
    _, sla = _oncall_and_sla()
    now = clock.now()
    out.print("\n[bold]sdesk report --since 1d[/]")
    print_report(build(store, config, sla, now - timedelta(days=1), now + timedelta(seconds=1)))
    path = db.with_name(f"postmortem-{ref(p1)}.md") if db is not None else None
    text = postmortem(store, p1, sla)
    if path is not None:
        path.write_text(text, encoding="utf-8")
    out.print(f"\n[bold]sdesk postmortem {ref(p1)}[/] (the draft starts; {len(text.splitlines())} lines"
              + (f" in {path}" if path is not None and "sdesk-demo-" not in str(path) else "") + "):")
    for line in text.splitlines()[:14]:
        out.print(line, markup=False, highlight=False)


def how_to_run_sdesk() -> str:
    """The command that runs this sdesk from where the user is: `sdesk` when that is what the
    shell finds, else the path it was run by (`.venv/bin/sdesk` after the README's quickstart,
    which installs it without putting it on PATH), or `python -m sdesk`."""
    import os
    import shutil
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "__main__.py":  # python -m sdesk
        return f"{shlex.quote(_near(sys.executable))} -m sdesk"
    if not Path(argv0).name.startswith("sdesk") or not os.path.isfile(argv0):
        return "sdesk"  # run from elsewhere (a test, a wrapper): the name is all we know
    on_path = shutil.which("sdesk")
    if on_path and os.path.samefile(on_path, argv0):
        return "sdesk"
    return shlex.quote(_near(argv0))


def _near(path: str) -> str:
    """`path` as the user would type it: relative when it is under the current folder."""
    import os

    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return relative if not relative.startswith("..") else absolute


def refuse_a_desk(db: Path | str) -> None:
    """The demo writes a morning into `db`: only a new database or an empty one (just made by
    `sdesk init`, or by createdb on a server), never into a desk with anything in it, which it
    would fill with duplicates. Checked before the file is opened for writing, so a refused one is
    left byte for byte."""
    import stat

    from .files import kind, status
    from .store import holds_a_desk

    if isinstance(db, str):  # a postgresql:// URL (Desk.db_path): a database on a server, no file
        if holds_a_desk(db):
            raise Conflict(f"{db} already holds a desk: the demo writes only to an empty database, and leaves "
                           "this one as it is (give another --db, or none for a temporary one)")
        return
    found = status(db, f"cannot open database {db}")  # a name too long, a loop of links: said so
    if found is None:
        return
    if not stat.S_ISREG(found.st_mode):  # a FIFO would hang the look inside
        raise BadInput(f"cannot open database {db}: {kind(found.st_mode)}, not a regular file (a desk is one "
                       "SQLite file)")
    if holds_a_desk(db):
        raise Conflict(f"{db} already holds a desk: the demo writes only to a new or empty database, and "
                       "leaves this one as it is (give another --db, or none for a temporary one)")


def run_demo(db: Path | str | None) -> None:
    """The demo's morning in `db` (a new or empty database: a file, or a postgresql:// URL), or
    in a temporary SQLite file when None."""
    from .render import console, print_tickets

    tmp = None
    if db is not None:
        refuse_a_desk(db)
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="sdesk-demo-")
        db = Path(tmp.name) / "demo.db"
    start = clock.now() - timedelta(hours=2)

    out = console()
    receivers = _Receivers()

    def at(minutes: int) -> None:
        clock.set_override(start + timedelta(minutes=minutes))

    def say(message: str) -> None:
        out.print(f"[dim]{clock.now().astimezone():%H:%M}[/]  {message}")

    try:
        # The demo's people act through it (actor=...): no one of them is this OS login.
        with Desk(db, None, claim=False).store(create=True) as store:
            at(-60)
            summary = _load_estate(store)
            say(f"the desk knows its estate: {summary}")
            for name, role, chat in (("alice", "admin", "U01ALICE"), ("dave", "approver", "U02DAVE"),
                                     ("bob", "agent", "U03BOB"), ("carol", "agent", "U04CAROL"),
                                     ("sam", "agent", "U05SAM"), ("erin", "agent", "U06ERIN"),
                                     ("frank", "agent", "U07FRANK"), ("grace", "agent", "U08GRACE"),
                                     ("heidi", "agent", "U09HEIDI"), ("guest", "viewer", None)):
                store.users.user_add(name, role=role, team=None, queue=None, actor="alice",
                                     email=f"{name}@example.com", chat=chat)
            say("alice sets up the desk's users: herself as admin, dave as approver, the on-call engineers as agents, "
                "guest as a viewer (anyone else: agent), each with an email address and a chat handle")
            store.notify = receivers.config()  # examples/demo/notify.yaml: what the desk tells whom
            at(-18)
            store.cmdb.change_add(title="Deploy checkout-api 2026.11.3", ci="checkout-api", start=clock.now_iso(), end=None,
                             risk="medium", status="completed", actor="ci-bot")
            say("the CI pipeline records a change: deploy checkout-api 2026.11.3")
            at(0)
            checkout, replica, pay_hangs, mfa, laptop, grafana, vpn = _load(store, "intake.jsonl")
            say(f"intake: 7 tickets from alerts and people ({ref(checkout)} is the P1); each arrives with its context:")
            _print_context(store, checkout)
            at(3)
            _load(store, "repeats.jsonl")
            say(f"the checkout alert fires twice more: {ref(checkout)} counts 3 occurrences, no new tickets")
            at(4)
            try:
                store.tickets.move(ticket_id=checkout, action="ack", actor="guest")
            except PermissionDenied as e:
                say(f"guest tries to acknowledge {ref(checkout)}: refused and recorded ({e})")
            store.tickets.move(ticket_id=checkout, action="ack", actor="alice")
            at(6)
            store.tickets.link(ticket_id=pay_hangs, parent_id=checkout, actor="sam")
            store.tickets.comment(ticket_id=checkout, text="Error spike starts right after the deploy of checkout-api 2026.11.3",
                          actor="alice")
            at(7)
            store.tickets.move(ticket_id=checkout, action="start", actor="alice")
            store.tickets.move(ticket_id=replica, action="ack", actor="dave")
            say(f"alice acknowledges {ref(checkout)}; sam links the customer report {ref(pay_hangs)} under it")
            at(8)
            store.outbox.incident_update(checkout, state="identified", text="Errors started with the deploy of checkout-api "
                                         "2026.11.3; we are rolling it back.", actor="alice")
            _send(store)
            cfo = receivers.last_mail("cfo@example.com")
            say(f"alice posts a stakeholder update on {ref(checkout)} (sdesk status {ref(checkout)} identified ...): "
                f"mailed to the checkout-api subscribers (cfo@example.com, sam) as “{cfo['Subject'] if cfo else '?'}”, "
                "and posted to the ops channel")
            at(9)
            store.tickets.move(ticket_id=mfa, action="assign", assignee="bob", actor="sam")
            store.tickets.move(ticket_id=mfa, action="start", actor="bob")
            store.tickets.move(ticket_id=laptop, action="assign", assignee="carol", actor="sam")
            store.tickets.move(ticket_id=laptop, action="start", actor="carol")
            store.tickets.move(ticket_id=laptop, action="wait", actor="carol")
            at(22)
            store.tickets.move(ticket_id=checkout, action="resolve", actor="alice", code="rollback",
                       resolution="Rolled back checkout-api to 2026.11.2; 5xx rate back under 0.1%")
            store.tickets.move(ticket_id=pay_hangs, action="resolve", actor="sam", code="duplicate",
                       resolution=f"Caused by {ref(checkout)}; fixed by its rollback")
            store.outbox.incident_update(checkout, state="resolved", text="Rolled back to 2026.11.2; checkout works normally.",
                                         actor="alice")
            _send(store)
            say(f"alice rolls back the deploy and resolves {ref(checkout)} (and {ref(pay_hangs)} with it); her "
                "'resolved' update reaches the subscribers, and sdesk status-page --out DIR would publish it")
            at(35)
            store.tickets.move(ticket_id=mfa, action="resolve", actor="bob", code="fixed",
                       resolution="Identity verified at the front desk; authenticator re-enrolled")
            store.tickets.move(ticket_id=mfa, action="close", actor="bob")
            say(f"bob resets the MFA and closes {ref(mfa)}; carol's laptop {ref(laptop)} waits on hardware")
            at(38)
            [(disk, _), (search, _)] = _receive(store, "alertmanager-firing.json", "alertmanager", "alertmanager")
            at(39)
            _receive(store, "alertmanager-firing.json", "alertmanager", "alertmanager")
            say(f"Alertmanager posts DiskFull {ref(disk)} and SearchLatencyHigh {ref(search)} (P1), "
                "then the same group again: deduplicated")
            at(40)
            _runbook_demo(store, disk, say, out)
            at(44)
            [(budget, _)] = _receive(store, "mail-new.eml", "email", "mail")
            store.tickets.move(ticket_id=budget, action="assign", assignee="bob", actor="sam")
            _send(store)
            priya = "priya.natarajan@example.com"
            ack = receivers.last_mail(priya)
            say(f"an email from Priya opens {ref(budget)}; sam assigns it to bob. The acknowledgement reaches her: "
                f"“{ack['Subject'] if ack else '?'}” (Auto-Submitted: {ack['Auto-Submitted'] if ack else '?'})")
            at(47)
            store.tickets.reply(ticket_id=budget, text="I have re-added you to the finance group. Could you try "
                                "the Q4 sheet again?", actor="bob")
            _send(store)
            answer = receivers.last_mail(priya)
            say(f"bob replies (sdesk reply {ref(budget)} ...): mailed to Priya as “{answer['Subject'] if answer else '?'}”, "
                f"threaded in her conversation (In-Reply-To {answer['In-Reply-To'] if answer else '?'})")
            at(51)
            _receive_reply(store, answer["Message-ID"] if answer else None)
            store.tickets.move(ticket_id=budget, action="resolve", actor="bob", code="fixed",
                       resolution="Re-added to the finance group")
            store.metrics.csat_record(ticket_id=budget, score=5, comment="Thanks, quick!", actor="priya@example.com")
            store.metrics.csat_record(ticket_id=mfa, score=4, comment=None, actor="dana@example.com")
            store.metrics.worklog_add(ticket_id=checkout, minutes=45, note="rollback and verification", actor="alice")
            at(55)
            _receive(store, "alertmanager-resolved.json", "alertmanager", "alertmanager")
            _send(store)
            say(f"Priya answers bob's mail: it threads back as a comment on {ref(budget)}, bob resolves it (she gets "
                f"the resolution with how to reopen and rate it); the latency alert resolves and so does {ref(search)}")
            at(58)
            from .triage import parse_matcher

            silence = store.triage.silence_add([parse_matcher("job=backup")], starts=clock.now(),
                                        ends=clock.now() + timedelta(hours=2), comment="backup storage migration",
                                        actor="dave")
            say(f"dave silences backup alerts for 2 hours (silence {silence}): storage is being migrated")
            at(65)
            storm = _receive(store, "alertmanager-storm.json", "alertmanager", "alertmanager")
            root = storm[0][0]
            children = [t["id"] for t in store.tickets.children(ticket_id=root)]
            backup = storm[-1][0]
            say(f"payments-db fails: {len(storm)} alerts in one post become one incident {ref(root)} with "
                f"{len(children)} children ({', '.join(map(ref, children))}) by CMDB topology; "
                f"the backup alert {ref(backup)} is kept, suppressed by silence {silence}")
            out.print(f"\n[bold]sdesk why {ref(root)}[/]")
            from .render import print_why

            print_why(store.triage.why(ticket_id=root))
            pager = tempfile.TemporaryDirectory(prefix="sdesk-demo-pager-")
            oncall, sla = _oncall_and_sla(Path(pager.name) / "pages.jsonl")
            first = _tick(store, oncall, sla)
            at(70)
            second = _tick(store, oncall, sla)
            pages = [p for p in receivers.posts if "you are paged" in json.dumps(p)]
            post = pages[-1]["blocks"][1]["text"]["text"].split("\n")[0] if pages else "?"
            say(f"sdesk tick (cron): {ref(root)} pages {', '.join(first)} on call for the data team; nobody "
                f"acknowledges in 5 minutes, so it escalates to {', '.join(second)} on call for platform. Each page "
                f"reaches the ops channel in Slack's format (“{post}”) and the demo's pager file "
                "(oncall.yaml's notifier)")
            at(72)
            acker = second[0] if second else "alice"
            store.tickets.move(ticket_id=root, action="ack", actor=acker)
            _tick(store, oncall, sla)
            say(f"{acker} acknowledges {ref(root)}: the escalation stops")
            out.print("\n[bold]sdesk sla[/] (the storm's incident: responded in 7 minutes of 15)")
            from .domain.sla import assess, pauses, row
            from .render import print_sla

            rows = [row(store.tickets.get_or_raise(ticket_id=root), policy, targets)
                    for t, policy, targets in assess(sla, store.sla.sla_tickets(pauses(sla)), clock.now()) if t["id"] == root]
            print_sla(rows)
            at(76)
            _self_service(store, say, receivers)
            _semantic(store, checkout, at, say, out)
            clock.set_override(None)

            out.print("\n[bold]The open queue[/] (suppressed tickets: sdesk list --suppressed)")
            print_tickets(store.tickets.list(suppressed=False))
            p1 = store.tickets.get_or_raise(ticket_id=checkout)
            tta = clock.parse(p1["acknowledged_at"]) - clock.parse(p1["created_at"])
            ttr = clock.parse(p1["resolved_at"]) - clock.parse(p1["created_at"])
            events, _, _ = store.audit.verify_chain()
            by_status = ", ".join(f"{n} {s}" for s, n in store.tickets.count_by("status").items())
            out.print(f"\n[bold]Summary[/]: {sum(store.tickets.count_by('status').values())} tickets ({by_status}); "
                      f"{store.tickets.count_alerts()} alerts and 2 emails came in; repeats were deduplicated.")
            out.print(f"{ref(checkout)} (P1): acknowledged in {int(tta.total_seconds() // 60)} min, "
                      f"resolved in {int(ttr.total_seconds() // 60)} min.")
            out.print(f"Talking back: {len(receivers.mails)} emails reached the demo's mail server and "
                      f"{len(receivers.posts)} posts its Slack-format webhook (the pages among them); sdesk outbox "
                      "list shows what the desk sent.")
            out.print(f"Audit: {events} events, hash chain intact. Database: {db if tmp is None else '(temporary)'}")
            _report_and_postmortem(store, checkout, db if isinstance(db, Path) else None, out)
            sdesk = how_to_run_sdesk()
            keep = f"{sdesk} --db {shlex.quote(str(db))} tui" if tmp is None else \
                f"{sdesk} demo --db demo.db, then {sdesk} --db demo.db tui (or show {ref(checkout)})"
            out.print(f"Next: {keep}", style="dim", markup=False, highlight=False)
            config = shlex.quote(_near(str(examples_dir() / "desk")))
            serve = f"{sdesk} --db {shlex.quote(str(db))} --config {config} serve" if tmp is None else \
                f"{sdesk} --db demo.db --config {config} serve (after {sdesk} demo --db demo.db)"
            out.print(f"The portal: {serve}, then open http://127.0.0.1:8080/ (requesters sign in by a mailed "
                      f"link; agents with an API token: {sdesk} --db ... user token alice)", style="dim", markup=False,
                      highlight=False)
    finally:
        clock.set_override(None)
        receivers.close()
        if tmp is not None:
            tmp.cleanup()
