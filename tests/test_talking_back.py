"""Talking back (issue 22), against real servers on loopback: a real SMTP server (aiosmtpd) takes
every mail, a real HTTP receiver stands in for Slack, Teams and webhooks (and fails when told).
The email round trip, loop protection, the outbox's exactly-once delivery and its CLI,
coalescing and digests, stakeholder updates and the status page, pages over channels."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import os
import random
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sdesk.errors import ExitCode


class Mailbox:
    """A real SMTP server on loopback (aiosmtpd): what it accepted, parsed, with its envelope's
    recipients (`received`; `messages`, the mails alone). test_notify_hostile uses it too."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.lock = threading.Lock()
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with box.lock:
                    box.received.append((list(envelope.rcpt_tos), email.message_from_bytes(
                        envelope.original_content, policy=policy.default)))
                return "250 OK"

        import socket

        with socket.socket() as probe:  # a free port (aiosmtpd's readiness check cannot use port 0)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=30)
        self.controller.start()

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return [m for _, m in self.received]

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]

    def take(self) -> list[tuple[list[str], email.message.EmailMessage]]:
        """What it received since the last take."""
        with self.lock:
            taken, self.received = self.received, []
        return taken

    def close(self):
        self.controller.stop()


class Receiver:
    """A real HTTP receiver: answers 503 to a share of posts (seeded), keeps what it accepted."""

    def __init__(self, fail: float = 0.0, seed: int = 7):
        self.accepted: list[tuple[dict, dict, bytes]] = []  # (headers, body, raw)
        self.refused = 0
        rng = random.Random(seed)
        box = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    failing = rng.random() < box.fail
                    if failing:
                        box.refused += 1
                    else:
                        box.accepted.append((dict(self.headers), json.loads(raw), raw))
                answer = b"busy" if failing else b"ok"
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        lock = threading.Lock()
        self.fail = fail
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def receiver():
    made = []

    def make(fail: float = 0.0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]

    yield make
    for r in made:
        r.close()


def notify_yaml(config: Path, *, smtp_port: int = 9, hook: str | None = None, hook_type: str = "webhook",
                coalesce: str = "0", per_hour: int = 1000, attempts: int = 5, retry: str = "1s", rules: str = "",
                extra: str = "") -> None:
    hook_channel = (f"  hook:\n    type: {hook_type}\n    url: {hook}\n"
                    + ("    secret_env: HOOK_SECRET\n" if hook_type == "webhook" else "")) if hook else ""
    (config / "notify.yaml").write_text(f"""
desk:
  name: Test Desk
  url: https://desk.example.com
  from: "Test Desk <desk@example.com>"
channels:
  email:
    type: smtp
    host: 127.0.0.1
    port: ${{TEST_SMTP_PORT:-{smtp_port}}}
{hook_channel}limits:
  coalesce: {coalesce}
  per_hour: {per_hour}
  attempts: {attempts}
  retry: {retry}
{extra}
rules:
{rules or '''  - name: acks
    on: created
    to: [requester]
    channel: email
  - name: public
    on: [replied, resolved, reopened, incident_update]
    to: [requester, watchers, subscribers]
    channel: email
'''}""", encoding="utf-8")


MAIL = """From: Bob Requester <bob@example.com>
To: desk@example.com
Subject: {subject}
Message-ID: <{mid}@example.com>
{headers}
{body}
"""


def mail(cli, subject="VPN drops every hour", mid="bob-1", headers="", body="It drops.", sender=None):
    text = MAIL.format(subject=subject, mid=mid, headers=headers, body=body)
    if sender:
        text = text.replace("Bob Requester <bob@example.com>", sender)
    return [json.loads(line) for line in cli("new", "--format", "email", "--json", input=text).stdout.splitlines()]


def test_the_email_round_trip_threads_back(cli, tmp_path, mailbox):
    """A requester's mail opens a ticket; the auto-acknowledgement reaches them with [SD-N] and
    the desk's Message-ID; an agent's reply too, threaded; their answer to that reply, whatever
    its subject, comes back as a comment on the same ticket."""
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    [arrived] = mail(cli)
    ticket = arrived["ticket"]
    cli("tick")
    [ack] = mailbox.to("bob@example.com")
    assert f"[SD-{ticket}]" in ack["Subject"] and "VPN drops" in ack["Subject"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<bob-1@example.com>"  # the requester's own thread
    assert ack["Message-ID"].endswith("@example.com>") and ack["Message-ID"].startswith("<sdesk.")
    plain = ack.get_body(("plain",)).get_content()
    html = ack.get_body(("html",)).get_content()
    assert f"SD-{ticket}" in plain and f"SD-{ticket}" in html and "<strong>" in html

    cli("reply", str(ticket), "Please reinstall the VPN client 4.2 and tell us.")
    cli("outbox", "send")
    reply = mailbox.to("bob@example.com")[-1]
    assert "reinstall the VPN client 4.2" in reply.get_body(("plain",)).get_content()
    assert "Auto-Submitted" not in reply  # a person's answer, which an auto-responder may answer
    assert ack["Message-ID"] in reply["References"]

    # Bob answers the reply from a mail client that dropped the [SD-N] tag.
    [answer] = mail(cli, subject="Re: your answer", mid="bob-2", headers=f"In-Reply-To: {reply['Message-ID']}",
                    body="Reinstalled, works now. Thanks!")
    assert answer == {**answer, "action": "commented", "ticket": ticket}
    timeline = cli.json("show", str(ticket))["events"]
    assert [e["kind"] for e in timeline].count("commented") == 1
    assert "Reinstalled, works now" in json.dumps(timeline)
    assert len(mailbox.messages) == 2  # the requester's own answer is not echoed back to them


def test_machine_mail_and_the_desks_own_address_get_no_answer(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    mail(cli, subject="Out of office", mid="ooo", headers="Auto-Submitted: auto-replied")
    mail(cli, subject="Undelivered Mail Returned to Sender", mid="bounce",
         sender="MAILER-DAEMON@mx.example.com")
    [own] = mail(cli, subject="Loop?", mid="own", sender="Test Desk <desk@example.com>")
    assert own["action"] == "created"  # kept as a ticket, but never answered: that would be a mail loop
    cli("tick")
    assert mailbox.messages == []
    assert cli.json("outbox", "list") == []


def test_a_comment_is_internal_and_a_reply_is_public(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port, rules="""  - on: [replied]
    to: [requester, watchers]
    channel: email
  - on: [commented]
    to: [assignee]
    channel: email
""")
    cli("user", "add", "tester", "--role", "admin", "--email", "tester@example.com")
    cli("user", "add", "alice", "--role", "agent", "--email", "alice@example.com")
    ticket = cli.new("Printer", "--requester", "bob@example.com")
    cli("assign", str(ticket), "alice")
    cli("watch", str(ticket), "carol@example.com")
    cli("comment", str(ticket), "Internal: the printer's vendor contract lapsed")
    cli("reply", str(ticket), "A technician comes at 3pm.")
    cli("outbox", "send")
    assert {m["To"] for m in mailbox.messages} == {"bob@example.com", "carol@example.com", "alice@example.com"}
    for public in ("bob@example.com", "carol@example.com"):
        [m] = mailbox.to(public)
        assert "technician" in m.get_body(("plain",)).get_content()
        assert "vendor contract" not in m.as_string() and "alice" not in m.as_string()
    [note] = mailbox.to("alice@example.com")
    assert "vendor contract" in note.get_body(("plain",)).get_content()
    # Each message is to its one recipient: nobody sees another requester's or watcher's address.
    assert all(len(m.get_all("To")) == 1 and not m["Cc"] and not m["Bcc"] for m in mailbox.messages)


def test_an_internal_note_to_the_public_is_refused_with_its_line(cli, tmp_path):
    notify_yaml(tmp_path / "config", rules="""  - on: [created]
    to: [requester]
    channel: email
  - on: [commented]
    to: [requester]
    channel: email
""")
    result = cli("notify", "check", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "notify.yaml:" in result.stderr and "rules.1.to" in result.stderr and "internal" in result.stderr
    line = int(result.stderr.split("notify.yaml:")[1].split(":")[0])
    assert (tmp_path / "config" / "notify.yaml").read_text().splitlines()[line - 1].strip().startswith("to:")


def test_environment_variables_fill_values_and_an_unset_one_is_named(cli, tmp_path, mailbox, monkeypatch):
    notify_yaml(tmp_path / "config")  # port: ${TEST_SMTP_PORT:-9}
    monkeypatch.setenv("TEST_SMTP_PORT", str(mailbox.port))
    cli.new("Hello", "--requester", "bob@example.com")
    cli("outbox", "send")
    assert len(mailbox.to("bob@example.com")) == 1
    config = tmp_path / "config" / "notify.yaml"
    config.write_text(config.read_text().replace("${TEST_SMTP_PORT:-9}", "${TEST_SMTP_PORT_UNSET}"))
    result = cli("notify", "check", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "${TEST_SMTP_PORT_UNSET} is not set" in result.stderr
    # A broken notify.yaml never stops intake: the ticket is taken, with a warning.
    result = cli("new", "Still taken", "--requester", "bob@example.com")
    assert "warning:" in result.stderr and "TEST_SMTP_PORT_UNSET" in result.stderr


def test_no_secret_leaves_in_a_reply(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    ticket = cli.new("Access", "--requester", "bob@example.com")
    cli("reply", str(ticket), "Your new password is hunter2-Zq9x! and the key AKIAIOSFODNN7EXAMPLE")
    cli("outbox", "send")
    sent = mailbox.to("bob@example.com")[-1].as_string()
    assert "hunter2-Zq9x" not in sent and "AKIAIOSFODNN7EXAMPLE" not in sent and "[REDACTED" in sent


def test_every_message_reaches_a_flaky_receiver_exactly_once_in_order(cli, tmp_path, receiver, monkeypatch):
    """A receiver that fails 30% of posts with 503: every message is accepted once (no key twice,
    none missing), each ticket's in the order of its events, each signed."""
    monkeypatch.setenv("HOOK_SECRET", "s3cret-for-tests")
    hook = receiver(fail=0.3)
    notify_yaml(tmp_path / "config", hook=hook.url, attempts=50, rules="""  - on: [created, replied]
    channel: hook
""")
    tickets = [cli.new(f"Ticket {i}") for i in range(6)]
    for round_ in range(8):
        for t in tickets:
            cli("reply", str(t), f"update {round_}")
    expected = len(tickets) * 9
    from datetime import timedelta

    from sdesk.domain import clock

    start = clock.now()
    for hour in range(1, 60):  # each pass an hour later: every backoff is over
        monkeypatch.setenv("SDESK_NOW", clock.iso(start + timedelta(hours=hour)))
        cli("outbox", "send", ok=False)
        if len(hook.accepted) >= expected and not cli.json("outbox", "list", "--status", "pending"):
            break
    keys = [headers["Idempotency-Key"] for headers, _, _ in hook.accepted]
    assert len(keys) == expected == len(set(keys)), "a message was lost or sent twice"
    assert hook.refused > 0  # the receiver did fail some
    for t in tickets:
        texts = [body["text"] for _, body, _ in hook.accepted if body["ticket"]["id"] == t]
        assert [x for x in texts if "update" in x] == [f"update {i}\n" for i in range(8)] or \
            [x.split("update ")[1][0] for x in texts if "update" in x] == [str(i) for i in range(8)]
    for headers, _, raw in hook.accepted:
        signed = headers["X-Sdesk-Timestamp"].encode() + b"." + raw
        assert headers["X-Sdesk-Signature"] == "sha256=" + hmac.new(b"s3cret-for-tests", signed,
                                                                     hashlib.sha256).hexdigest()


def test_a_crash_between_sending_and_recording_resends_the_same_message(cli, tmp_path, mailbox, monkeypatch):
    """Sent, then the process died before recording it: after the lease, the same message goes
    again with the same Message-ID (a receiver that keeps them sees one), and nothing is lost."""
    from datetime import timedelta

    from sdesk.desk import Desk
    from sdesk.domain import clock
    from sdesk.services import outbound

    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    cli.new("Crash", "--requester", "bob@example.com")
    desk = Desk(os.environ["SDESK_DB"], "tester", tmp_path / "config")
    store = desk.store()
    config = store.notify
    batches = store.outbox.claim(config, now=clock.now(), token="dying", lease=timedelta(seconds=1), actor="tester")
    rendered = outbound.render_batch(batches[0]["rows"], config)
    senders = outbound.Senders(config)
    senders.send(config.channels["email"], batches[0]["rows"], rendered,
                 key=f"{store.outbox.desk_tag()}-{batches[0]['batch']}", threading=[])
    senders.close()  # ... and the process dies here: no result recorded
    desk.close()
    monkeypatch.setenv("SDESK_NOW", clock.iso(clock.now() + timedelta(minutes=6)))
    cli("outbox", "send")
    first, again = mailbox.to("bob@example.com")
    assert first["Message-ID"] == again["Message-ID"]
    assert cli.json("outbox", "list", "--status", "delivered")[0]["attempts"] == 1


def test_a_storm_on_one_ticket_reaches_each_recipient_once_a_window(cli, tmp_path, mailbox, monkeypatch):
    from datetime import timedelta

    from sdesk.domain import clock

    notify_yaml(tmp_path / "config", smtp_port=mailbox.port, coalesce="60s", per_hour=1000)
    start = clock.parse("2026-12-07T10:00:00Z")
    monkeypatch.setenv("SDESK_NOW", clock.iso(start))
    ticket = cli.new("Storm", "--requester", "bob@example.com")
    cli("outbox", "send")
    assert len(mailbox.messages) == 1  # the acknowledgement at once
    for i in range(40):
        monkeypatch.setenv("SDESK_NOW", clock.iso(start + timedelta(seconds=1 + i)))
        cli("reply", str(ticket), f"step {i}")
        cli("outbox", "send")
    assert len(mailbox.messages) == 1  # within the window: held
    monkeypatch.setenv("SDESK_NOW", clock.iso(start + timedelta(seconds=61)))
    cli("outbox", "send")
    assert len(mailbox.messages) == 2
    digest = mailbox.messages[-1]
    text = digest.get_body(("plain",)).get_content()
    assert "40 updates" in digest["Subject"] and "step 0" in text and "step 39" in text


def test_an_hourly_cap_turns_the_rest_into_one_digest(cli, tmp_path, mailbox, receiver, monkeypatch):
    """A person gets at most per_hour messages an hour, every ticket's together: the last one
    allowed carries the rest as one digest, and with none left they wait for the hour. A chat
    channel is no person: it has no such share."""
    from datetime import timedelta

    from sdesk.domain import clock

    hook = receiver()
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port, coalesce="0", per_hour=3, hook=hook.url,
                hook_type="slack", rules="""  - on: [created]
    to: [requester]
    channel: email
  - on: [created]
    channel: hook
""")
    start = clock.parse("2026-12-07T10:00:00Z")
    monkeypatch.setenv("SDESK_NOW", clock.iso(start))
    for i in range(8):
        cli.new(f"Request {i}", "--requester", "bob@example.com")
    cli("outbox", "send")
    subjects = [m["Subject"] for m in mailbox.to("bob@example.com")]
    assert len(subjects) == 3 and "Request 0" in subjects[0] and "Request 1" in subjects[1]
    assert subjects[2].startswith("6 updates on 6 tickets")
    assert all(f"Request {i}" in mailbox.to("bob@example.com")[2].get_body(("plain",)).get_content()
               for i in range(2, 8))
    assert len(hook.accepted) == 8  # the channel: each ticket its post
    monkeypatch.setenv("SDESK_NOW", clock.iso(start + timedelta(minutes=10)))
    cli.new("Request 8", "--requester", "bob@example.com")
    cli("outbox", "send")
    assert len(mailbox.messages) == 3  # this hour's share is spent: it waits
    monkeypatch.setenv("SDESK_NOW", clock.iso(start + timedelta(minutes=61)))
    cli("outbox", "send")
    assert len(mailbox.messages) == 4 and "Request 8" in mailbox.messages[-1]["Subject"]


def test_dead_messages_fail_tick_loudly_until_retried(cli, tmp_path, receiver, monkeypatch):
    hook = receiver(fail=1.0)
    notify_yaml(tmp_path / "config", hook=hook.url, hook_type="slack", attempts=2, rules="""  - on: [created]
    channel: hook
""")
    ticket = cli.new("Nobody hears")
    cli("outbox", "send", ok=False)
    from datetime import timedelta

    from sdesk.domain import clock

    monkeypatch.setenv("SDESK_NOW", clock.iso(clock.now() + timedelta(minutes=5)))  # its retry is due
    result = cli("tick", ok=False)
    assert result.exit_code == ExitCode.ERROR
    assert "is dead after 2 tries" in result.stderr and "503" in result.stderr and f"SD-{ticket}" in result.stderr
    [dead] = cli.json("outbox", "list", "--status", "dead")
    shown = cli.json("outbox", "show", str(dead["id"]))
    assert shown["rendered"]["payload"]["blocks"]  # Slack's own format, not sdesk's JSON
    hook.fail = 0.0
    cli("outbox", "retry", "--dead")
    assert cli("tick").exit_code == 0
    [(_, body, _)] = hook.accepted
    assert "Nobody hears" in json.dumps(body) and "blocks" in body
    cli("outbox", "drop", str(dead["id"]), ok=True)  # delivered: nothing to drop, no error
    assert cli("outbox", "drop", "999", ok=False).exit_code == ExitCode.NOT_FOUND


def test_chat_formats_carry_the_ticket_link_priority_and_service(cli, tmp_path, receiver):
    for kind, check in (("slack", lambda b: b["blocks"][2]["elements"][0]["text"]),
                        ("mattermost", lambda b: json.dumps(b["attachments"][0])),
                        ("teams", lambda b: json.dumps(b["attachments"][0]["content"]))):
        hook = receiver()
        notify_yaml(tmp_path / "config", hook=hook.url, hook_type=kind, rules="""  - on: [created]
    channel: hook
""")
        ticket = cli.new(f"Checkout down {kind}", "--priority", "P1", "--service", "checkout")
        cli("outbox", "send")
        [(_, body, _)] = hook.accepted
        shown = check(body)
        assert "P1" in shown and "checkout" in shown and f"https://desk.example.com/tickets/{ticket}" in shown


def test_stakeholder_updates_reach_subscribers_and_the_status_page(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port, extra="""subscribers:
  services:
    checkout: [cfo@example.com]
""")
    ticket = cli.new("Checkout <b>down</b>", "--priority", "P1", "--service", "checkout")
    cli("watch", str(ticket), "pm@example.com")
    cli("status", str(ticket), "investigating", "We see errors on checkout")
    cli("status", str(ticket), "identified", "Root cause: an expired certificate <script>alert(1)</script>")
    cli("outbox", "send")
    assert {m["To"] for m in mailbox.messages} == {"cfo@example.com", "pm@example.com"}
    assert any("Identified" in m["Subject"] for m in mailbox.to("cfo@example.com"))
    out = tmp_path / "status"
    cli("status-page", "--out", str(out))
    page = (out / "index.html").read_text()
    assert "1 current incident" in page and "expired certificate" in page and "checkout" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>down" not in page
    assert cli("status", str(ticket), "fixed", "x", ok=False).exit_code == ExitCode.BAD_INPUT
    cli("status", str(ticket), "resolved", "Certificate renewed")
    cli("status-page", "--out", str(out))
    assert "All systems operational" in (out / "index.html").read_text()
    [incident] = cli.json("status-page", "--out", str(out))["incidents"]
    assert [u["state"] for u in incident["updates"]] == ["resolved", "identified", "investigating"]


def test_notify_preview_shows_each_recipient_exactly_and_sends_nothing(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    ticket = cli.new("Laptop", "--requester", "bob@example.com")
    cli("watch", str(ticket), "carol@example.com")
    assert cli.json("show", str(ticket))["watchers"] == ["carol@example.com"]
    before = len(cli.json("outbox", "list"))
    shown = cli.json("notify", "preview", str(ticket), "--event", "resolved")
    assert {m["to"] for m in shown} == {"bob@example.com", "carol@example.com"}
    assert all(m["subject"].startswith(f"[SD-{ticket}] resolved") and "reply with one digit" in m["text"].lower()
               for m in shown)
    assert len(cli.json("outbox", "list")) == before and mailbox.messages == []


def test_notify_test_sends_one_message_now(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    cli("notify", "test", "email", "--to", "me@example.com")
    [m] = mailbox.to("me@example.com")
    assert "test message" in m["Subject"]
    bad = cli("notify", "test", "nope", ok=False)
    assert bad.exit_code == ExitCode.BAD_INPUT and "no channel 'nope'" in bad.stderr


def test_pages_go_through_channels_and_fail_loudly_for_who_cannot_be_reached(cli, tmp_path, receiver, monkeypatch):
    hook = receiver()
    notify_yaml(tmp_path / "config", hook=hook.url, hook_type="slack", rules="""  - on: [created]
    to: [requester]
    channel: email
""")
    (tmp_path / "config" / "oncall.yaml").write_text("""
default_team: sre
teams:
  - name: sre
    members: [alice, bob]
    escalation: sre
escalation:
  - name: sre
    levels:
      - targets: [user:alice, user:bob]
notifier:
  channels: [hook]
""")
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "alice", "--role", "agent", "--chat", "U024BE7LH")
    cli("user", "add", "bob", "--role", "agent")
    ticket = cli.new("Database down", "--priority", "P1")
    result = cli("tick")  # alice is reached: the ticket pages someone; bob's page is on record as undeliverable
    assert f"SD-{ticket}: the page to bob is undeliverable: bob has no email address or chat handle" in result.stderr
    [(_, body, _)] = hook.accepted
    assert "<@U024BE7LH>" in json.dumps(body) and "Database down" in json.dumps(body)
    assert {(p["user"], p["status"]) for p in cli.json("pages")} == {("alice", "delivered"), ("bob", "undeliverable")}
    # A ticket whose pages reach nobody: tick says who could not be reached, and fails, every tick.
    cli("user", "add", "alice", "--role", "agent", "--chat", "", ok=False)
    (tmp_path / "config" / "oncall.yaml").write_text((tmp_path / "config" / "oncall.yaml").read_text().replace(
        "targets: [user:alice, user:bob]", "targets: [user:bob]"))
    other = cli.new("Queue stuck", "--priority", "P1")
    for _ in range(2):
        result = cli("tick", ok=False)
        assert result.exit_code == ExitCode.ERROR
        assert f"SD-{other} (P1) pages nobody: bob has no email address or chat handle" in result.stderr
    # Once something reaches him, his pages go: undeliverable is not the end of trying.
    cli("user", "add", "bob", "--role", "agent", "--chat", "U0BOB")
    assert cli("tick").exit_code == 0
    assert {p["status"] for p in cli.json("pages", "--ticket", str(other))} == {"delivered"}
    assert "<@U0BOB>" in json.dumps(hook.accepted[-1][1]) and "Queue stuck" in json.dumps(hook.accepted[-1][1])


def test_doctor_lists_users_without_a_contact(cli, tmp_path):
    notify_yaml(tmp_path / "config")
    cli("user", "add", "tester", "--role", "admin", "--email", "t@example.com")
    cli("user", "add", "dave", "--role", "agent")
    found = {f["check"]: f for f in json.loads(cli("doctor", "--json", ok=False).stdout)}
    assert found["contacts"]["status"] == "warn" and "dave" in found["contacts"]["detail"]


def test_the_tui_has_a_reply_apart_from_an_internal_note(cli, tmp_path, db_path):
    import asyncio

    from test_tui import settle

    from sdesk.store import Store
    from sdesk.tui.app import make_app

    notify_yaml(tmp_path / "config")
    ticket = cli.new("Printer", "--requester", "bob@example.com")
    before = len(cli.json("outbox", "list"))

    async def drive():
        app = make_app(db_path, "tester", tmp_path / "config", poll=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, app, 1)
            await pilot.press("enter")
            await settle(pilot, app)
            await pilot.press("c", *"vendor lapsed", "enter")
            await settle(pilot, app)
            await pilot.press("m", *"on our way", "enter")
            await settle(pilot, app)

    asyncio.run(drive())
    with Store(db_path) as store:
        kinds = [(e["kind"], e["data"].get("text")) for e in store.tickets.events(ticket_id=ticket)]
    assert ("commented", "vendor lapsed") in kinds and ("replied", "on our way") in kinds
    queued = cli.json("outbox", "list")[: len(cli.json("outbox", "list")) - before]
    assert [(m["event"], m["recipient"]) for m in queued] == [("replied", "bob@example.com")]


def test_sla_warnings_at_each_share_reach_the_assignee(cli, tmp_path, mailbox, monkeypatch):
    from datetime import timedelta

    from sdesk.domain import clock

    notify_yaml(tmp_path / "config", smtp_port=mailbox.port, coalesce="0", rules="""  - on: [sla_warning, sla_breached]
    to: [assignee]
    channel: email
""")
    (tmp_path / "config" / "sla.yaml").write_text("policies:\n  - name: fast\n    respond: 1h\n    warn_at: [0.5, 0.9]\n")
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "alice", "--role", "agent", "--email", "alice@example.com")
    start = clock.parse("2026-12-07T10:00:00Z")
    monkeypatch.setenv("SDESK_NOW", clock.iso(start))
    ticket = cli.new("Slow", "--priority", "P3")
    cli("assign", str(ticket), "alice")
    for minutes, expected in ((20, 0), (31, 1), (40, 1), (55, 2), (58, 2), (61, 3)):
        monkeypatch.setenv("SDESK_NOW", clock.iso(start + timedelta(minutes=minutes)))
        cli("tick", ok=False)
        assert len(mailbox.to("alice@example.com")) == expected, minutes
    subjects = [m["Subject"] for m in mailbox.to("alice@example.com")]
    assert "SLA at risk" in subjects[0] and "SLA at risk" in subjects[1] and "SLA breached" in subjects[2]
    assert "52%" in mailbox.to("alice@example.com")[0].get_body(("plain",)).get_content()


def test_a_requester_rates_by_answering_the_resolution_with_a_digit(cli, tmp_path, mailbox):
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port)
    [arrived] = mail(cli)
    ticket = arrived["ticket"]
    cli("resolve", str(ticket), "-r", "Reinstalled the client")
    cli("outbox", "send")
    resolved = mailbox.to("bob@example.com")[-1]
    assert "one digit" in resolved.get_body(("plain",)).get_content()
    [rated] = mail(cli, subject=f"Re: {resolved['Subject']}", mid="bob-rate",
                   headers=f"In-Reply-To: {resolved['Message-ID']}",
                   body="4 - quick, thanks\n\nOn Mon, Dec 7, 2026 Test Desk wrote:\n> How did we do? 1")
    assert rated == {**rated, "action": "rated", "ticket": ticket}
    t = cli.json("show", str(ticket))
    assert t["status"] == "resolved"  # a rating does not reopen it
    assert [e["data"] for e in t["events"] if e["kind"] == "csat"] == [{"score": 4, "comment": "quick, thanks"}]
    # Anything else reopens it, as before.
    [again] = mail(cli, subject="Re: still broken", mid="bob-3", headers=f"In-Reply-To: {resolved['Message-ID']}",
                   body="It is broken again.")
    assert again["action"] == "reopened"


@pytest.mark.parametrize("body, expected", [
    ("5", (5, None)), ("  3!  ", (3, None)), ("4 - great", (4, "great")), ("2/5 slow", (2, "slow")),
    ("1\nNobody called back.", (1, "Nobody called back.")), ("6", None), ("10", None), ("45 minutes later", None),
    ("> 5\nno", None), ("Thanks! 5", None), ("", None), ("On Mon, Bob wrote:\n5", None)])
def test_a_rating_is_one_digit_from_1_to_5_in_the_requesters_own_words(body, expected):
    from sdesk.intake.mail import rating

    assert rating(body) == expected


@pytest.mark.slow
def test_serve_delivers_as_messages_are_queued_by_anyone(cli, tmp_path, db_path, mailbox, receiver):
    """`sdesk serve` sends continuously: an alert it takes, and a reply another process writes,
    reach their receivers without a tick (the bench times it: bench/notify.py)."""
    from test_serve import Server, wait_for

    hook = receiver()
    notify_yaml(tmp_path / "config", smtp_port=mailbox.port, hook=hook.url, hook_type="mattermost", rules="""  - on: [created]
    when: {priority: P1}
    channel: hook
  - on: [replied]
    to: [requester]
    channel: email
""")
    ticket = cli.new("Printer", "--requester", "bob@example.com")
    server = Server(db_path, *(("--rejects", str(tmp_path / "rejects")) if isinstance(db_path, str) else ()))
    try:
        alert = json.dumps({"title": "Checkout down", "priority": "P1"}).encode()
        assert server.post("/tickets", alert, {"Content-Type": "application/json"})[0] in (200, 201, 202)
        wait_for(lambda: len(hook.accepted) == 1, what="the P1's post")
        cli("reply", str(ticket), "On our way")
        wait_for(lambda: len(mailbox.to("bob@example.com")) == 1, what="the reply's mail")
    finally:
        server.stop()
    assert "Checkout down" in json.dumps(hook.accepted[0][1])
    assert cli.json("outbox", "list", "--status", "pending") == []


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (the mail server's), made by openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS mail server")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


def test_mail_goes_over_starttls_with_a_login_whose_password_is_never_in_the_file(cli, tmp_path, certificate,
                                                                                  monkeypatch):
    import socket
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    got, logins = [], []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append((session.authenticated, envelope.content))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == b"sdesk" and auth_data.password == b"s3cret pass")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                        auth_require_tls=True, authenticator=authenticator, ready_timeout=30)
    server.start()
    try:
        (tmp_path / "smtp-password").write_text("s3cret pass\n")
        notify_yaml(tmp_path / "config", smtp_port=port)
        config = tmp_path / "config" / "notify.yaml"
        config.write_text(config.read_text().replace("    host: 127.0.0.1\n", f"""    host: 127.0.0.1
    security: starttls
    username: sdesk
    password_file: {tmp_path / 'smtp-password'}
    ca_file: {cert}
"""))
        cli.new("Over TLS", "--requester", "bob@example.com")
        cli("outbox", "send")
        assert len(got) == 1 and got[0][0] and b"Over TLS" in got[0][1]
        assert logins == [(b"sdesk", b"s3cret pass")]
        # Without the CA to check the server's certificate by, nothing is sent: it stays queued, said why.
        config.write_text(config.read_text().replace(f"    ca_file: {cert}\n", ""))
        cli.new("Unchecked", "--requester", "bob@example.com")
        result = cli("outbox", "send", ok=False)
        assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "certificate verify failed" in result.stderr
        assert len(got) == 1
    finally:
        server.stop()
    assert "s3cret" not in config.read_text()


def test_a_chat_channel_posts_once_mentioning_whom_its_rule_names(cli, tmp_path, receiver):
    hook = receiver()
    notify_yaml(tmp_path / "config", hook=hook.url, hook_type="slack", rules="""  - on: [created]
    to: [assignee, user:alice, user:nosuch]
    channel: hook
""")
    cli("user", "add", "tester", "--role", "admin", "--chat", "U0TESTER")
    cli("user", "add", "alice", "--role", "agent", "--chat", "U0ALICE")
    cli.new("Checkout down", "--priority", "P1")
    cli("outbox", "send")
    [(_, body, _)] = hook.accepted  # one post, not one for each name
    text = body["blocks"][1]["text"]["text"]
    assert text.startswith("<@U0ALICE> ") and "U0TESTER" not in text  # the actor is not told of their own doing
    bad = tmp_path / "config" / "notify.yaml"
    bad.write_text(bad.read_text().replace("to: [assignee, user:alice, user:nosuch]", "to: [requester]"))
    result = cli("notify", "check", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "posts to its channel" in result.stderr


def test_a_reply_that_could_not_be_sent_is_refused_not_lost(cli, tmp_path):
    notify_yaml(tmp_path / "config")
    ticket = cli.new("Printer", "--requester", "bob@example.com")
    config = tmp_path / "config" / "notify.yaml"
    config.write_text(config.read_text().replace("${TEST_SMTP_PORT:-9}", "${TEST_SMTP_PORT:-9"))
    result = cli("reply", str(ticket), "On our way", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "without its closing" in result.stderr
    assert not [e for e in cli.json("show", str(ticket))["events"] if e["kind"] == "replied"]


def test_stakeholder_updates_are_for_incidents(cli, tmp_path):
    request = cli.new("Laptop for Dana", "--kind", "request")
    result = cli("status", str(request), "identified", "hmm", ok=False)
    assert result.exit_code == ExitCode.CONFLICT and "are for incidents" in result.stderr


def test_a_pages_channels_each_go_on_their_own(cli, tmp_path, receiver):
    """The mail server is down: the chat channel still carries the page now; the mail follows on a retry."""
    hook = receiver()
    notify_yaml(tmp_path / "config", smtp_port=9, hook=hook.url, hook_type="slack", rules="""  - on: [created]
    to: [requester]
    channel: email
""")
    (tmp_path / "config" / "oncall.yaml").write_text("""
default_team: sre
teams:
  - {name: sre, members: [alice], escalation: sre}
escalation:
  - {name: sre, levels: [{targets: [user:alice]}]}
notifier:
  channels: [email, hook]
""")
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "alice", "--role", "agent", "--email", "alice@example.com", "--chat", "U0ALICE")
    ticket = cli.new("Database down", "--priority", "P1")
    result = cli("tick", ok=False)
    assert "cannot reach the mail server" in result.stderr
    [(_, body, _)] = hook.accepted
    assert "<@U0ALICE>" in json.dumps(body)
    [page] = cli.json("pages", "--ticket", str(ticket))
    assert page["sent_to"] == "hook" and page["status"] in ("pending", "retrying", "failed")


def test_the_desk_name_is_notify_yamls_whatever_its_rules_are_named():
    """A loop over channels, subscribers and rules once reused the desk name's variable: every
    mail's desk name was the last rule's name."""
    from sdesk.domain import yamlfile
    from sdesk.domain.notify import build

    text = ("desk: {name: Acme Desk, from: desk@acme.example}\n"
            "channels: {email: {type: smtp, host: 127.0.0.1, port: 25}}\n"
            "subscribers: {services: {checkout: [a@acme.example]}}\n"
            "rules:\n  - {name: tell the requester, on: created, to: [requester], channel: email}\n")
    data, node = yamlfile.parse(text, "notify.yaml")
    assert build(data, node, "notify.yaml").desk_name == "Acme Desk"
