"""Delivering a page: the desk's notifier command gets it as JSON on stdin (so it can call
any chat or SMS tool); exit 0 is delivered, anything else a failure to retry."""

from __future__ import annotations

import json
import subprocess
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


def deliver(notifier: Notifier, body: dict[str, Any], done: set[str] = frozenset()) -> tuple[str | None, set[str]]:
    """(None when delivered, else why not in one line; the channels that took it), skipping
    the channels in `done` (a retry goes only where it failed). With no channel configured
    nothing is delivered: tick records such pages as undeliverable and never calls this."""
    text = json.dumps(body)
    took: set[str] = set()
    for channel, send in (("command", _run if notifier.command else None), ("webhook", _post if notifier.webhook else None)):
        if send is None or channel in done:
            continue
        error = send(notifier, text)
        if error:
            return error, took
        took.add(channel)
    if not took and not done:
        return "no notifier in oncall.yaml (a command or a webhook)", took
    return None, took


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
