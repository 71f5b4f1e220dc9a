"""Terminal rendering with rich (imported only by commands that print tables)."""

from __future__ import annotations

import csv
from datetime import datetime
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import clock
from .lifecycle import ref

PRIORITY_STYLE = {"P1": "bold red", "P2": "yellow", "P3": "cyan", "P4": "dim"}
STATUS_STYLE = {"new": "bold", "resolved": "green", "closed": "dim", "waiting": "magenta"}
CSV_FIELDS = (
    "id", "kind", "title", "status", "priority", "impact", "urgency", "category", "queue", "team", "assignee",
    "service", "ci", "requester", "source", "fingerprint", "occurrences", "labels", "tags", "parent_id",
    "resolution", "resolution_code", "created_at", "updated_at", "acknowledged_at", "resolved_at", "closed_at",
    "reopen_count", "escalation_level",
)


def console() -> Console:
    return Console(highlight=False)


def local(ts: str | None) -> str:
    """UTC storage time as local wall-clock time for people."""
    if not ts:
        return ""
    return clock.parse(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def age(ts: str, now: datetime | None = None) -> str:
    seconds = int(((now or clock.now()) - clock.parse(ts)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def print_tickets(tickets: list[dict[str, Any]]) -> None:
    out = console()
    if not tickets:
        out.print("no tickets match", style="dim")
        return
    now = clock.now()
    # A narrow terminal keeps the title readable and drops service and queue.
    wide = out.width >= 110
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("PRI", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("TITLE", ratio=1)
    if wide:
        table.add_column("SERVICE", max_width=24)
        table.add_column("QUEUE", max_width=20)
    table.add_column("ASSIGNEE", max_width=16)
    table.add_column("AGE", no_wrap=True, justify="right")
    for t in tickets:
        title = t["title"] + (f" ×{t['occurrences']}" if t["occurrences"] > 1 else "")
        cells = [
            ref(t["id"]),
            Text(t["priority"], style=PRIORITY_STYLE.get(t["priority"], "")),
            Text(t["status"], style=STATUS_STYLE.get(t["status"], "")),
            Text(title, no_wrap=True, overflow="ellipsis"),
            *([Text(t[f] or "", no_wrap=True, overflow="ellipsis") for f in ("service", "queue")] if wide else []),
            Text(t["assignee"] or "", no_wrap=True, overflow="ellipsis"),
            age(t["created_at"], now),
        ]
        table.add_row(*cells)
    out.print(table)


def _describe_event(e: dict[str, Any]) -> str:
    d = e["data"]
    match e["kind"]:
        case "created":
            times = f" (arrived {d['occurrences']} times)" if d.get("occurrences", 1) > 1 else ""
            return f"created from {d.get('source', '?')}: {d.get('title', '')}{times}"
        case "occurrence":
            times = f"{d['repeats']} times, " if d.get("repeats", 1) > 1 else ""
            return f"repeated ({times}occurrences now {d.get('occurrences')}) via {d.get('source', '?')}"
        case "status_changed":
            extra = f": {d['resolution']}" + (f" [{d['code']}]" if d.get("code") else "") if d.get("resolution") else ""
            return f"{d['from']} → {d['to']}{extra}"
        case "assigned":
            before = f" (was {d['previous_assignee']})" if d.get("previous_assignee") else ""
            return f"assigned to {d['assignee']}{before}"
        case "commented":
            return d.get("text", "")
        case "updated":
            return ", ".join(f"{field}: {old!r} → {new!r}" for field, (old, new) in d.items())
        case "linked":
            return f"linked under {ref(d['parent_id'])}"
    return str(d)


def print_ticket(t: dict[str, Any], events: list[dict[str, Any]], children: list[dict[str, Any]]) -> None:
    out = console()
    out.print(Text.assemble((f"{ref(t['id'])} ", "bold"), (t["priority"], PRIORITY_STYLE.get(t["priority"], "")),
                            " ", (t["status"], STATUS_STYLE.get(t["status"], "")), "  ", (t["title"], "bold")))
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim")
    fields.add_column()
    rows = [
        ("kind", t["kind"]), ("service", t["service"]), ("ci", t["ci"]), ("queue", t["queue"]), ("team", t["team"]),
        ("assignee", t["assignee"]), ("requester", t["requester"]), ("category", t["category"]),
        ("source", t["source"]), ("fingerprint", t["fingerprint"]),
        ("occurrences", t["occurrences"] if t["occurrences"] > 1 else None),
        ("labels", ", ".join(f"{k}={v}" for k, v in t["labels"].items())), ("tags", ", ".join(t["tags"])),
        ("parent", ref(t["parent_id"]) if t["parent_id"] else None),
        ("children", ", ".join(ref(c["id"]) for c in children)),
        ("created", local(t["created_at"])), ("acknowledged", local(t["acknowledged_at"])),
        ("resolved", local(t["resolved_at"])), ("closed", local(t["closed_at"])),
        ("resolution", t["resolution"] and f"{t['resolution']}" + (f" [{t['resolution_code']}]" if t["resolution_code"] else "")),
        ("reopened", t["reopen_count"] or None),
    ]
    for name, value in rows:
        if value not in (None, ""):
            fields.add_row(name, Text(str(value)))
    out.print(fields)
    if t["description"]:
        out.print()
        out.print(Text(t["description"]))
    out.print()
    timeline = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="timeline", title_justify="left")
    timeline.add_column("WHEN", no_wrap=True)
    timeline.add_column("WHO")
    timeline.add_column("WHAT", ratio=1)
    for e in events:
        timeline.add_row(local(e["at"]), e["actor"], Text(_describe_event(e)))
    out.print(timeline)


def write_csv(tickets: list[dict[str, Any]], stream: IO[str]) -> None:
    import json

    writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for t in tickets:
        writer.writerow({**t, "labels": json.dumps(t["labels"], ensure_ascii=False), "tags": ";".join(t["tags"])})
