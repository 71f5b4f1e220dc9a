"""Delivering a page: the desk's notifier command gets it as JSON on stdin (so it can call
any chat or SMS tool); exit 0 is delivered, anything else a failure to retry."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .routing import Notifier


def deliver(notifier: Notifier, page: dict[str, Any]) -> str | None:
    """None when delivered, else why not (one line)."""
    if not notifier.command:
        return None  # no notifier configured: the page is on record, and that is its delivery
    body = json.dumps({"page": page["id"], "ticket": page["ticket_id"], "title": page["title"],
                       "priority": page["priority"], "user": page["user"], "round": page["round"],
                       "level": page["level"], "due_at": page["due_at"]})
    try:
        done = subprocess.run(list(notifier.command), input=body, capture_output=True, text=True,
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
