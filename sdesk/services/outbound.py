"""Sending what the outbox holds: render each claimed message (domain/messages.py), send it over
its channel (SMTP; Slack, Mattermost and Teams webhooks in their own formats; a webhook signed
with HMAC-SHA256; a command with JSON on stdin), record the outcome. `sdesk tick` runs one pass,
`sdesk serve` runs them continuously.

Exactly once, as far as a network allows: a message is claimed under a lease before it is sent
and marked after; a crash in between resends it after the lease with the same Message-ID and
Idempotency-Key (so a receiver that keeps keys sees it once), and never loses it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain import clock
from ..domain.messages import Rendered, Runaway, TemplateError, digest, html, render
from ..domain.notify import Channel, NotifyConfig, address_of

if TYPE_CHECKING:
    from ..store import Store

LEASE = timedelta(minutes=5)
QUICK_TRIES = 3  # a transient failure is tried again at once this many times before it waits its backoff


class Failure(Exception):
    """A send that failed; `final`: retrying cannot help (a 4xx, a refused address)."""

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final


def deliver(store: Store, config: NotifyConfig, *, actor: str, now: datetime | None = None,
            limit: int = 500) -> dict[str, Any]:
    """One pass: claim what is due, send it, record it. Returns counts of messages (not rows),
    and the failures: {"message" (its first row's id), "to", "channel", "error"}."""
    now = now or clock.now()
    token = uuid.uuid4().hex
    batches = store.outbox.claim(config, now=now, token=token, lease=LEASE, limit=limit, actor=actor)
    if not batches:
        return {"sent": 0, "failed": 0, "errors": []}
    tag = store.outbox.desk_tag()
    senders = Senders(config)
    done: list[dict[str, Any]] = []
    stopped: set[tuple] = set()
    try:
        for b in batches:
            if b["key"] in stopped:
                continue  # an earlier message to them failed: this one waits behind it
            ticket_id = b["rows"][0]["ticket_id"]
            result = {"batch": b["batch"], "ids": [r["id"] for r in b["rows"]], "ticket_id": ticket_id, "error": None,
                      "to": b["rows"][0]["recipient"], "channel": b["rows"][0]["channel"]}
            try:
                rendered = render_batch(b["rows"], config)
                channel = config.channels.get(b["rows"][0]["channel"])
                if channel is None:
                    raise Failure(f"channel {b['rows'][0]['channel']!r} is not in notify.yaml any more", final=True)
                key = f"{tag}-{b['batch']}"
                one_ticket = len({r["ticket_id"] for r in b["rows"]}) == 1
                threading = store.outbox.threading(ticket_id, recipient=b["rows"][0]["recipient"]) \
                    if channel.email and one_ticket else []
                if not one_ticket:
                    result["ticket_id"] = None  # an answer to a digest of several tickets threads to none of them
                result["message_id"] = senders.send(channel, b["rows"], rendered, key=key, threading=threading)
            except TemplateError as e:
                result.update(error=str(e), final=True)
            except Failure as e:
                result.update(error=str(e), final=e.final)
            except Exception as e:  # noqa: BLE001 - a message no retry can send must not stop the others
                result.update(error=f"cannot be sent: {type(e).__name__}: {str(e)[:300]}", final=True)
            if result["error"] is not None:
                stopped.add(b["key"])
            done.append(result)
    finally:
        senders.close()
        store.outbox.results(done, config=config, now=max(now, clock.now()), token=token, actor=actor)
    errors = [{"message": d["batch"], "to": d["to"], "channel": d["channel"], "error": d["error"]}
              for d in done if d["error"] is not None]
    return {"sent": len(done) - len(errors), "failed": len(errors), "errors": errors}


def render_batch(rows: list[dict[str, Any]], config: NotifyConfig) -> Rendered:
    """The message a batch of queued rows makes: one row's template, or a digest of several."""
    import orjson

    contexts = [orjson.loads(r["context"]) if isinstance(r["context"], str) else r["context"] for r in rows]
    with deadline(RENDER_SECONDS):
        parts = [render(template_of(r, config), config.templates, c) for r, c in zip(rows, contexts)]
    return parts[0] if len(parts) == 1 else digest(parts, contexts)


RENDER_SECONDS = 5.0  # a template that renders longer loops without end (the sandbox bounds its memory)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Stop what runs inside after `seconds` (messages.Runaway, raised where it is: in a
    template, the error names its line). A timer signal, so only on the main thread (the CLI's
    tick, outbox send, preview); serve's courier renders without one."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Runaway(f"renders for more than {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def template_of(row: dict[str, Any], config: NotifyConfig) -> str:
    """A rule's template, else the event's: `EVENT.internal.md` for the desk's own people where
    there is one (an acknowledgement to a requester is no notice for an ops channel), else `EVENT.md`."""
    from ..domain.messages import exists

    if row["template"]:
        return str(row["template"])
    internal = f"{row['event']}.internal.md"
    return internal if row.get("audience") == "internal" and exists(internal, config.templates) else f"{row['event']}.md"


def preview(rows: list[dict[str, Any]], config: NotifyConfig) -> list[dict[str, Any]]:
    """What each planned message would be, exactly as sent (the email's headers, a chat's body)."""
    out = []
    for r in rows:
        channel = config.channels[r["channel"]]
        try:
            rendered = render_batch([r], config)
        except TemplateError as e:
            out.append({"channel": r["channel"], "to": r["recipient"], "rule": r["rule"], "error": str(e)})
            continue
        body = (_subject(rendered, r) if channel.email else None)
        out.append({"channel": r["channel"], "type": channel.type, "to": r["recipient"], "rule": r["rule"],
                    "audience": r["audience"], "subject": body, "text": rendered.text,
                    "payload": None if channel.email else payload(channel, [r], rendered, key="(preview)")[0]})
    return out


def _subject(rendered: Rendered, row: dict[str, Any], tickets: int = 1) -> str:
    """The subject, `[SD-N]` in it (so that an answer threads back), unless it is about several tickets."""
    subject = rendered.subject or "(no subject)"
    ref = f"SD-{row['ticket_id']}" if row.get("ticket_id") is not None and tickets == 1 else None
    if ref and f"[{ref}]".lower() not in subject.lower():
        subject = f"[{ref}] {subject}"
    return subject[:300]  # the rendered subject's own cap (domain/messages.py), with its [SD-N] in it


# -- the channels ---------------------------------------------------------------------------------


class Senders:
    """Open connections for one pass (an SMTP session, an HTTP keep-alive per host), closed after."""

    def __init__(self, config: NotifyConfig):
        self.config = config
        self._smtp: dict[str, Any] = {}
        self._http: dict[tuple[str, str, int], Any] = {}

    def send(self, channel: Channel, rows: list[dict[str, Any]], rendered: Rendered, *, key: str,
             threading: list[str]) -> str | None:
        """Send; returns the Message-ID for email. Transient failures are tried again at once a
        few times (a 5xx of a busy receiver), then raised for the outbox to retry later."""
        for attempt in range(QUICK_TRIES):
            try:
                if channel.email:
                    return self._mail(channel, rows, rendered, key, threading)
                if channel.type == "command":
                    self._command(channel, rows, rendered, key)
                else:
                    self._post(channel, rows, rendered, key)
                return None
            except Failure as e:
                # Again at once: a receiver's 503 is mostly a moment's; waiting here would hold up
                # every message behind it (one pass sends one at a time). Then the outbox's backoff.
                if e.final or attempt == QUICK_TRIES - 1:
                    raise
        return None

    def close(self) -> None:
        for session in self._smtp.values():
            try:
                session.quit()
            except Exception:  # noqa: BLE001 - closing a session that already failed
                pass
        for conn in self._http.values():
            conn.close()

    # SMTP ------------------------------------------------------------------------------------------

    def _mail(self, channel: Channel, rows: list[dict[str, Any]], rendered: Rendered, key: str,
              threading: list[str]) -> str:
        import smtplib

        message, message_id = email_message(channel, rows, rendered, key, threading)
        recipient = rows[0]["recipient"]
        try:
            session = self._smtp.get(channel.name) or self._connect(channel)
            self._smtp[channel.name] = session
            session.send_message(message, from_addr=address_of(channel.settings["sender"]), to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            raise Failure(f"the mail server refused {recipient}: {code} {_said(text)}", final=code >= 500) from None
        except smtplib.SMTPResponseException as e:
            self._drop(channel)
            raise Failure(f"the mail server answered {e.smtp_code} {_said(e.smtp_error)}",
                          final=e.smtp_code >= 500 and e.smtp_code not in (530, 535, 554)) from None
        except (smtplib.SMTPException, OSError) as e:
            self._drop(channel)
            raise Failure(f"cannot reach the mail server {channel.settings['host']}:{channel.settings['port']}: "
                          f"{e.strerror if isinstance(e, OSError) and e.strerror else e}") from None
        return message_id

    def _drop(self, channel: Channel) -> None:
        session = self._smtp.pop(channel.name, None)
        if session is not None:
            try:
                session.close()
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def _connect(channel: Channel) -> Any:
        import smtplib
        import ssl

        s = channel.settings
        # The server's certificate is always checked (against the system's CAs, or ca_file's too).
        context = ssl.create_default_context()
        if s.get("ca_file"):
            try:
                context.load_verify_locations(cafile=s["ca_file"])
            except (OSError, ssl.SSLError) as e:
                raise Failure(f"{channel.name}: cannot read ca_file {s['ca_file']}: {e}") from None
        if s["security"] == "tls":
            session = smtplib.SMTP_SSL(s["host"], s["port"], timeout=s["timeout"], context=context)
        else:
            session = smtplib.SMTP(s["host"], s["port"], timeout=s["timeout"])
            if s["security"] == "starttls":
                session.starttls(context=context)
        if s.get("username"):
            session.login(s["username"], secret(s, "password"))
        return session

    # HTTP ------------------------------------------------------------------------------------------

    def _post(self, channel: Channel, rows: list[dict[str, Any]], rendered: Rendered, key: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        body, headers = payload(channel, rows, rendered, key)
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "sdesk", "Idempotency-Key": key, **headers}
        if channel.type == "webhook":
            stamp = str(int(time.time()))
            signature = hmac.new(secret(channel.settings, "secret").encode(), stamp.encode() + b"." + data,
                                 hashlib.sha256).hexdigest()
            headers.update({"X-Sdesk-Timestamp": stamp, "X-Sdesk-Signature": f"sha256={signature}"})
        url = urlsplit(channel.settings["url"])
        place = (url.scheme, url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        for fresh in (False, True):  # a kept-alive connection the server closed: once more on a new one
            conn = self._http.get(place)
            if conn is None or fresh:
                if conn is not None:
                    conn.close()
                cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
                conn = self._http[place] = cls(place[1], place[2], timeout=channel.settings["timeout"])
            try:
                conn.request("POST", path, body=data, headers=headers)
                answer = conn.getresponse()
                said = answer.read(1 << 16)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if fresh:
                    self._http.pop(place, None)
                    raise Failure(f"{channel.name}: the receiver closed the connection") from None
            except (OSError, http.client.HTTPException) as e:
                self._http.pop(place, None).close()  # type: ignore[union-attr]
                raise Failure(f"{channel.name}: cannot reach {place[1]}:{place[2]}: {getattr(e, 'strerror', None) or e}") from None
        if answer.will_close:
            self._http.pop(place, None)
        if not 200 <= answer.status < 300:
            text = said.decode("utf-8", "replace").strip().splitlines()
            raise Failure(f"{channel.name} answered {answer.status}" + (f": {_said(text[0])}" if text else ""),
                          final=400 <= answer.status < 500 and answer.status not in (408, 409, 425, 429))

    @staticmethod
    def _command(channel: Channel, rows: list[dict[str, Any]], rendered: Rendered, key: str) -> None:
        import subprocess

        body, _ = payload(channel, rows, rendered, key)
        try:
            done = subprocess.run(list(channel.settings["argv"]), input=json.dumps(body), capture_output=True, text=True,
                                  timeout=channel.settings["timeout"])
        except FileNotFoundError:
            raise Failure(f"{channel.name}: {channel.settings['argv'][0]!r} not found") from None
        except subprocess.TimeoutExpired:
            raise Failure(f"{channel.name}: timed out after {channel.settings['timeout']:g}s") from None
        except OSError as e:
            raise Failure(f"{channel.name}: cannot run: {e.strerror}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [""])[-1]
            raise Failure(f"{channel.name} exited {done.returncode}" + (f": {_said(last)}" if last else ""))


def _said(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:200]


def secret(settings: Any, what: str) -> str:
    """A channel's password or signing secret: from the environment variable or the file its
    settings name (never from the config in git)."""
    env, path = settings.get(f"{what}_env"), settings.get(f"{what}_file")
    if env:
        value = os.environ.get(env)
        if not value:
            raise Failure(f"the environment variable {env} (the {what}) is not set")
        return value
    if path:
        from ..files import read_text

        try:
            return read_text(path, limit=4096).strip()
        except Exception as e:  # noqa: BLE001 - a missing or unreadable file is one line
            raise Failure(f"cannot read the {what} file {path}: {e}") from None
    raise Failure(f"no {what}: set {what}_env or {what}_file")


def email_message(channel: Channel, rows: list[dict[str, Any]], rendered: Rendered, key: str,
                  threading: list[str]) -> tuple[Any, str]:
    """The email of a batch: to its one recipient only, `[SD-N]` in the subject, the desk's own
    Message-ID (made from the idempotency key, so a resend is the same message), In-Reply-To and
    References to the ticket's thread, plain text with an HTML alternative."""
    from email.message import EmailMessage
    from email.utils import format_datetime

    sender = channel.settings["sender"]
    domain = address_of(sender).rpartition("@")[2] or "sdesk.invalid"
    message_id = f"sdesk.{key}@{domain}"
    message = EmailMessage()
    message["From"] = _header(sender)
    message["To"] = _header(rows[0]["recipient"])
    tickets = len({r["ticket_id"] for r in rows})
    message["Subject"] = _header(_subject(rendered, rows[0], tickets))
    message["Date"] = format_datetime(clock.now())
    message["Message-ID"] = f"<{message_id}>"
    if threading:
        message["In-Reply-To"] = f"<{threading[-1]}>"
        message["References"] = " ".join(f"<{m}>" for m in threading)
    if not all(r["event"] in ("replied", "incident_update") for r in rows):
        # What the desk sends by itself (an acknowledgement, a notice): an auto-responder must not answer it (RFC 3834).
        message["Auto-Submitted"] = "auto-replied" if any(r["event"] == "created" for r in rows) else "auto-generated"
    if rows[0].get("ticket_id") is not None and tickets == 1:
        message["X-Sdesk-Ticket"] = f"SD-{rows[0]['ticket_id']}"
    message.set_content(rendered.text or "\n")
    message.add_alternative(html(rendered.markdown), subtype="html")
    return message, message_id


def _header(text: str) -> str:
    """A header's value on one line: a line break in a value (a title, a digest's subject) would
    be a header of its own (`Bcc:`), and the email library refuses it."""
    return " ".join(str(text).split())


def payload(channel: Channel, rows: list[dict[str, Any]], rendered: Rendered, key: str) -> tuple[dict[str, Any], dict]:
    """What a chat or webhook channel is sent, in its own format: Slack's blocks, Mattermost's
    attachment, a Teams adaptive card, or sdesk's JSON for a webhook or a command."""
    import orjson

    first = rows[0]
    context = orjson.loads(first["context"]) if isinstance(first["context"], str) else first["context"]
    ticket = context.get("ticket", {})
    mentions = [str(m) for m in context.get("mentions") or ()]
    at = "".join(f"@{m.lstrip('@')} " for m in mentions)  # Mattermost and Teams read @name
    title = rendered.subject or f"{ticket.get('ref', '')} {ticket.get('title', '')}".strip()
    facts = [(name, str(ticket[field])) for name, field in (("Priority", "priority"), ("Status", "status"),
                                                             ("Service", "service"), ("CI", "ci"), ("Assignee", "assignee"))
             if ticket.get(field)]
    url = ticket.get("url") or ""
    if channel.type == "slack":
        def esc(text: str) -> str:
            return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        ref = esc(ticket.get("ref", ""))
        link = f"<{esc(url)}|{ref}>" if url and ref else esc(url) if url else ref
        # Mentions (<@U024BE7LH>, from the users' --chat) are Slack's markup, made here, not data.
        mention = "".join(f"<@{esc(handle)}> " for handle in mentions)
        return {"text": esc(title), "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{esc(title)}*"[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": (mention + esc(rendered.text).replace("**", "*"))[:3000] or " "}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(
                [link, *(f"{n}: {esc(v)}" for n, v in facts)])[:3000]}]}]}, {}
    if channel.type == "mattermost":
        return {"text": at + (f"**{rendered.subject}**" if rendered.subject else ""), "attachments": [{
            "fallback": title, "title": title, **({"title_link": url} if url else {}), "text": rendered.markdown[:7000],
            "color": {"P1": "#d00000", "P2": "#ff8c00"}.get(str(ticket.get("priority")), "#888888"),
            "fields": [{"short": True, "title": n, "value": v} for n, v in facts]}]}, {}
    if channel.type == "teams":
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "body": [{"type": "TextBlock", "text": at + title, "weight": "Bolder", "size": "Medium", "wrap": True},
                     {"type": "TextBlock", "text": rendered.markdown[:7000] or " ", "wrap": True},
                     {"type": "FactSet", "facts": [{"title": n, "value": v} for n, v in facts]}]}
        if url:
            card["actions"] = [{"type": "Action.OpenUrl", "title": f"Open {ticket.get('ref', '')}", "url": url}]
        return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                     "contentUrl": None, "content": card}]}, {}
    return {"id": key, "event": first["event"], "events": [r["event"] for r in rows], "rule": first["rule"],
            "recipient": first["recipient"], "ticket": ticket, "subject": rendered.subject, "text": rendered.text,
            "mentions": mentions, "messages": len(rows)}, {}


def test_message(config: NotifyConfig, channel_name: str, to: str | None) -> str:
    """Send one test message over a channel now (not through the outbox); returns what was done."""
    from ..errors import BadInput

    channel = config.channels.get(channel_name)
    if channel is None:
        raise BadInput(f"notify test: no channel {channel_name!r} in notify.yaml ({', '.join(config.channels) or 'none'})")
    if channel.email and not to:
        raise BadInput("notify test: an email channel needs --to ADDRESS")
    _send_now(config, channel_name, "test.md", {"kind": "test"}, to or channel_name, failed="notify test")
    return f"sent a test message over {channel_name} ({channel.type})" + (f" to {to}" if to else "")


def sign_in_mail(config: NotifyConfig, channel_name: str, to: str, link: str) -> None:
    """Mail a portal sign-in link now (not through the outbox, which keeps what it sends: a link
    signs someone in, so it is kept nowhere but in their mailbox)."""
    _send_now(config, channel_name, "sign-in.md", {"kind": "sign_in", "link": link}, to,
              failed="cannot send the sign-in mail")


def _send_now(config: NotifyConfig, channel_name: str, template: str, event: dict[str, Any], to: str, *,
              failed: str) -> None:
    """One message about no ticket, rendered from `template` with `event`, sent over a channel at
    once; a failure is an SdeskError that starts with `failed`."""
    from ..errors import SdeskError

    context = {"ticket": {"ref": "", "title": event["kind"].replace("_", " "), "url": config.desk_url}, "event": event,
               "desk": {"name": config.desk_name, "url": config.desk_url, "address": config.desk_address}}
    rendered = render(template, config.templates, context)
    row = {"ticket_id": None, "event": event["kind"], "rule": event["kind"], "recipient": to, "context": context}
    senders = Senders(config)
    try:
        senders.send(config.channels[channel_name], [row], rendered,
                     key=f"{event['kind'].replace('_', '-')}-{uuid.uuid4().hex[:12]}", threading=[])
    except Failure as e:
        raise SdeskError(f"{failed}: {e}") from None
    finally:
        senders.close()
