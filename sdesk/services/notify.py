"""Delivering a page: the desk's notifier command gets it as JSON on stdin (so it can call
any chat or SMS tool); exit 0 is delivered, anything else a failure to retry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from ..domain.routing import Notifier


def message(pages: list[dict[str, Any]]) -> dict[str, Any]:
    """What the notifier gets: one page, or several for one person as one batch."""
    def one(page: dict[str, Any]) -> dict[str, Any]:
        body = {"page": page["id"], "ticket": page["ticket_id"], "title": page["title"], "priority": page["priority"],
                "user": page["user"], "round": page["round"], "level": page["level"], "due_at": page["due_at"]}
        child = page.get("raised_by")
        if child:
            # The incident's own title may be a P3 warning: the child that raised it says what is wrong.
            body["raised_by"] = {"ticket": child["ticket"], "ref": f"SD-{child['ticket']}", "title": child["title"],
                                 "priority": child["priority"]}
            body["summary"] = (f"SD-{page['ticket_id']} {page['title']}: {page['priority']} because of its child "
                               f"SD-{child['ticket']} {child['title']}")
        return body

    if len(pages) == 1:
        return one(pages[0])
    return {"user": pages[0]["user"], "batch": [one(p) for p in pages]}


def deliver(notifier: Notifier, body: dict[str, Any], done: set[str] = frozenset(),
            via: PageChannels | None = None) -> tuple[str | None, set[str]]:
    """(None when delivered, else why not in one line; the channels that took it), skipping
    the channels in `done` (a retry goes only where it failed) and notify.yaml's channels that
    cannot reach this person (no email for an email channel, no handle for a chat one: the
    others carry the page). With no channel configured nothing is delivered: tick records such
    pages as undeliverable and never calls this."""
    text = json.dumps(body)
    took: set[str] = set()
    senders: list[tuple[str, Callable[[], str | None]]] = []
    if notifier.command:
        senders.append(("command", lambda: _run(notifier, text)))
    if notifier.webhook:
        senders.append(("webhook", lambda: _post(notifier, text)))
    for name in notifier.channels:
        if via is not None and via.reaches(name, str(body["user"])):
            senders.append((name, lambda name=name: via.send(name, body)))
    errors = []
    for channel, send in senders:  # each on its own: a mail server down must not hold up the chat
        if channel in done:
            continue
        error = send()
        if error:
            errors.append(error)
        else:
            took.add(channel)
    if errors:
        return "; ".join(errors), took
    if not took and not done:
        return "no notifier in oncall.yaml reaches them (a command, a webhook or channels)", took
    return None, took


class PageChannels:
    """Pages over notify.yaml's channels (`config`: its NotifyConfig, or None when there is
    none): by email to the person's address, or in a chat channel mentioning their handle."""

    def __init__(self, store: Any, config: Any):
        self.config = config
        self.contacts = {u["name"].casefold(): u for u in store.users.users()}

    def reaches(self, name: str, user: str) -> bool:
        """Whether channel `name` can reach `user` (a channel notify.yaml does not define: yes,
        so that sending it fails, loudly)."""
        channel = self.config.channels.get(name) if self.config is not None else None
        contact = self.contacts.get(user.casefold()) or {}
        return channel is None or bool(contact.get("email") if channel.email else contact.get("chat"))

    def unreachable(self, user: str, names: tuple[str, ...]) -> str | None:
        """Why no channel of `names` can reach `user`, or None when one can."""
        if any(self.reaches(name, user) for name in names):
            return None
        return (f"{user} has no email address or chat handle for channels {', '.join(names)} (sdesk user add "
                f"{user} --role ROLE --email ... --chat ...)")

    def send(self, name: str, body: dict[str, Any]) -> str | None:
        from ..domain.messages import Rendered
        from .outbound import Failure, Senders

        config = self.config
        channel = config.channels.get(name) if config is not None else None
        if channel is None:
            return f"oncall.yaml's notifier names channel {name!r}, which notify.yaml does not define"
        pages = body.get("batch") or [body]
        contact = self.contacts.get(str(body["user"]).casefold()) or {}
        first = pages[0]
        ref = f"SD-{first['ticket']}"
        link = f"{config.desk_url}/tickets/{first['ticket']}" if config.desk_url else ""
        lines = [p.get("summary") or f"SD-{p['ticket']} ({p['priority']}): {p['title']}" for p in pages]
        text = "\n".join(lines) + f"\n\nAcknowledge it: sdesk ack {ref}" + (f"\n{link}" if link else "")
        if not channel.email:
            text = "you are paged.\n" + text  # after the mention the payload puts first
        subject = (f"[{ref}] PAGE {first['priority']}: {first['title']}" if len(pages) == 1
                   else f"[{ref}] PAGE: {len(pages)} tickets need you")
        row = {"ticket_id": first["ticket"], "event": "paged", "rule": "oncall.yaml notifier",
               "recipient": contact["email"] if channel.email else name,
               "context": {"ticket": {"ref": ref, "title": first["title"], "priority": first["priority"], "url": link},
                           "mentions": [] if channel.email else [contact["chat"]]}}
        senders = Senders(config)
        try:
            senders.send(channel, [row], Rendered(subject, text, text), key=f"page-{first['page']}", threading=[])
        except Failure as e:
            return str(e)
        finally:
            senders.close()
        return None


def _run(notifier: Notifier, text: str) -> str | None:
    try:
        done = subprocess.run(list(notifier.command), input=text, capture_output=True, text=True,
                              timeout=notifier.timeout)
    except FileNotFoundError:
        return f"notifier {notifier.command[0]!r} not found"
    except subprocess.TimeoutExpired:
        return f"notifier timed out after {notifier.timeout:g}s"
    except OSError as e:
        return f"notifier could not run: {e.strerror}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        return f"notifier exited {done.returncode}" + (f": {last[:200]}" if last else "")
    return None


def _post(notifier: Notifier, text: str) -> str | None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(notifier.webhook, data=text.encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "sdesk"})
    try:
        with urllib.request.urlopen(request, timeout=notifier.timeout) as answer:
            answer.read(1 << 16)
    except urllib.error.HTTPError as e:
        return f"webhook answered {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"webhook failed: {getattr(e, 'reason', None) or e}"
    return None
