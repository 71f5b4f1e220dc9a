"""Terminal rendering with rich (imported only by commands that print tables)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .domain import clock
from .domain.events import _changes, _quoted, describe_event, event_sentence_fallback, local, reopened_at  # noqa: F401 - the faces' names for them
from .domain.lifecycle import ref
from .domain.plain import controls, plural, readable

PRIORITY_STYLE = {"P1": "bold red", "P2": "yellow", "P3": "cyan", "P4": "dim"}
STATUS_STYLE = {"new": "bold", "resolved": "green", "closed": "dim", "waiting": "magenta"}
# The columns of `list --csv`: the keys of `list --json`, in order (models.Ticket; a test holds them).
CSV_FIELDS = (
    "id", "kind", "title", "description", "status", "priority", "impact", "urgency", "category", "queue", "team",
    "assignee", "service", "ci", "requester", "source", "fingerprint", "occurrences", "labels", "tags", "parent_id",
    "resolution", "resolution_code", "created_at", "updated_at", "acknowledged_at", "resolved_at", "closed_at",
    "reopen_count", "escalation_level", "problem_id", "suppressed", "runbook", "group_key",
)


_captured: Console | None = None  # see captured()


def plain(text: Any, one_line: bool = False) -> Text:
    """Stored text as rich shows it: never markup (a Text is not parsed), control characters
    written out (`\\x1b`), newlines and tabs too when `one_line` (a cell, a title). Every
    renderer shows what people and payloads wrote through this or `text_line`."""
    return Text("" if text is None else controls(text, one_line))


def console(stderr: bool = False) -> Console:
    # No emoji codes (":fire:") read from data; no highlighting of numbers and URLs in it.
    return _captured or Console(highlight=False, emoji=False, stderr=stderr)


@contextmanager
def captured(width: int) -> Iterator[Console]:
    """Everything the print_* functions print goes to one console kept in memory (the TUI
    shows a ticket as `sdesk show` prints it)."""
    import io

    global _captured
    _captured = Console(file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor",
                        highlight=False, emoji=False)
    try:
        yield _captured
    finally:
        _captured = None


def age(ts: str, now: datetime | None = None) -> str:
    seconds = int(((now or clock.now()) - clock.parse(ts)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def print_tickets(tickets: list[dict[str, Any]]) -> None:
    out = console()
    if not tickets:
        # A message, not data: on stderr, so `sdesk list | wc -l` counts tickets.
        (out if _captured else console(stderr=True)).print("no tickets match", style="dim")
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
        cells = [
            ref(t["id"]),
            Text(t["priority"], style=PRIORITY_STYLE.get(t["priority"], "")),
            Text(t["status"], style=STATUS_STYLE.get(t["status"], "")),
            _title_cell(t),
            *([Text(controls(t[f] or "", one_line=True), no_wrap=True, overflow="ellipsis") for f in ("service", "queue")]
              if wide else []),
            Text(controls(t["assignee"] or "", one_line=True), no_wrap=True, overflow="ellipsis"),
            age(t["created_at"], now),
        ]
        table.add_row(*cells)
    out.print(table)


def _title_cell(t: dict[str, Any]) -> Any:
    """A title cut to its column with an ellipsis; the occurrence marker (` ×12`) stays whole
    after it, as it is what tells an alert storm from one alert."""
    title = Text(controls(t["title"], one_line=True), no_wrap=True, overflow="ellipsis")
    if t["occurrences"] <= 1:
        return title
    marker = f" ×{t['occurrences']:,}"
    cell = Table.grid(expand=True)  # the marker at the column's end: it reads as a count
    cell.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    cell.add_column(no_wrap=True, width=len(marker))  # fixed: the title gives way, never the marker
    cell.add_row(title, Text(marker, style="bold"))
    return cell


def resolution_rows(t: dict[str, Any], events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """The resolution as `show` lists it: a reopened ticket's is the previous one, not its state."""
    if not t["resolution"]:
        return []
    text = f"{t['resolution']}" + (f" [{t['resolution_code']}]" if t["resolution_code"] else "")
    if t["status"] in ("resolved", "closed"):
        return [("resolution", text)]
    return [("previous resolution", text + " (reopened since)")]


def print_ticket(t: dict[str, Any], events: list[dict[str, Any]], children: list[dict[str, Any]],
                 context: dict[str, Any] | None = None, linked: list[dict[str, Any]] = ()) -> None:
    out = console()
    out.print(Text.assemble((f"{ref(t['id'])} ", "bold"), (t["priority"], PRIORITY_STYLE.get(t["priority"], "")),
                            " ", (t["status"], STATUS_STYLE.get(t["status"], "")), "  ", (controls(t["title"], one_line=True), "bold")))
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim")
    fields.add_column()
    rows = [
        ("kind", t["kind"]), ("service", t["service"]), ("ci", t["ci"]), ("queue", t["queue"]), ("team", t["team"]),
        ("assignee", t["assignee"]), ("requester", t["requester"]), ("watchers", ", ".join(t.get("watchers") or ())),
        ("category", t["category"]),
        ("source", t["source"]), ("fingerprint", t["fingerprint"]),
        ("occurrences", t["occurrences"] if t["occurrences"] > 1 else None),
        ("labels", ", ".join(f"{k}={v}" for k, v in t["labels"].items())), ("tags", ", ".join(t["tags"])),
        ("parent", ref(t["parent_id"]) if t["parent_id"] else None),
        ("children", ", ".join(ref(c["id"]) for c in children)),
        ("created", local(t["created_at"])), ("acknowledged", local(t["acknowledged_at"])),
        ("resolved", local(t["resolved_at"])), ("closed", local(t["closed_at"])),
        *resolution_rows(t, events),
        ("reopened", t["reopen_count"] and f"{plural(t['reopen_count'], 'time')}"
                     + (f", last {local(when)}" if (when := reopened_at(events)) else "")),
    ]
    for name, value in rows:
        if value not in (None, ""):
            fields.add_row(name, plain(value, one_line=True))
    out.print(fields)
    if t["description"]:
        out.print()
        out.print(plain(t["description"]))
    out.print()
    print_context(context or {}, list(linked))
    timeline = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="timeline", title_justify="left")
    timeline.add_column("WHEN", no_wrap=True)
    timeline.add_column("WHO")
    timeline.add_column("WHAT", ratio=1)
    for e in events:
        # One line per event: a comment's newline could otherwise fake a row of the timeline.
        timeline.add_row(local(e["at"]), plain(e["actor"], one_line=True), plain(describe_event(e), one_line=True))
    out.print(timeline)


def write_csv(tickets: list[dict[str, Any]], stream: IO[str]) -> None:
    """Tickets as CSV for spreadsheets: a text cell starting with = + - @ (or a tab or CR) gets a
    leading `'` so that no spreadsheet runs it as a formula, and control characters other than
    newline are written out (`\\x1b`); --json keeps the exact text."""
    import json

    from .domain.plain import csv_cell

    writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for t in tickets:
        row = {**t, "labels": json.dumps(t["labels"], ensure_ascii=False), "tags": ";".join(t["tags"])}
        writer.writerow({k: csv_cell(row.get(k)) for k in CSV_FIELDS})


def table(headers: list[str], rows: list[list[Any]], empty: str = "nothing to show") -> None:
    """A plain table of text cells (CMDB, KB, changes)."""
    out = console()
    if not rows:
        out.print(empty, style="dim")
        return
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for h in headers:
        t.add_column(h.upper(), overflow="fold")
    for row in rows:
        t.add_row(*(plain(c, one_line=True) for c in row))  # a newline in a cell could fake a row
    out.print(t)


def print_found_tickets(found: list[dict[str, Any]], *, empty: str) -> None:
    """Search results and similar tickets: score, ticket, status, title; for a resolved one, how
    it was resolved, on the line below."""
    out = console()
    if not found:
        out.print(empty, style="dim")
        return
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("SCORE", justify="right", no_wrap=True)
    t.add_column("ID", no_wrap=True)
    t.add_column("STATUS", no_wrap=True)
    t.add_column("TITLE", ratio=1, overflow="fold")
    for f in found:
        score = "-" if f.get("score") is None else f"{f['score']:.3f}" if f["score"] >= 0.01 else f"{f['score']:.4f}"
        title = Text(controls(f["title"], one_line=True))
        if f.get("resolution"):
            title.append("\n" + controls("resolved: " + f["resolution"], one_line=True)[:200], style="dim")
        if f.get("by") == "not indexed":
            title.append("  (not indexed yet)", style="dim")
        t.add_row(score, ref(f["id"]), Text(f["status"], style=STATUS_STYLE.get(f["status"], "")), title)
    out.print(t)


def print_suggestions(found: list[dict[str, Any]], ref: Any) -> None:
    """Suggested problems, most costly first: what they share, their incidents, the command."""
    out = console()
    for n, s in enumerate(found, start=1):
        where = controls(", ".join(s["cis"] or s["services"]) or "no CI", one_line=True)
        out.print(Text.assemble((f"{n}. ", "bold"), (controls(s["title"], one_line=True), "bold"),
                                (f"  {where}", "dim")))
        out.print(Text(f"   {plural(len(s['members']), 'incident')} ({s['open']} open), {s['hours']:,} hours open in all, "
                       f"{local(s['first'])} to {local(s['last'])}"))
        out.print(Text("   " + ", ".join(ref(i) for i in s["members"][:20])
                       + (f" and {len(s['members']) - 20} more" if len(s["members"]) > 20 else ""), style="dim"))
        members = ",".join(str(i) for i in s["members"])
        # One line whatever the width: a command to copy and run, not text to wrap.
        out.print(Text(f"   sdesk problem new --from {members} --title {_shell_quote(s['title'])}", style="cyan"),
                  soft_wrap=True)
        out.print()


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(controls(text, one_line=True))


def print_ci(ci: dict[str, Any], tickets: list[dict[str, Any]], changes: list[dict[str, Any]]) -> None:
    out = console()
    out.print(Text.assemble((controls(ci["name"], True), "bold"), plain(
        f"  {ci['type']}" + (f"  tier {ci['tier']}" if ci["tier"] else "") + (f"  team {ci['team']}" if ci["team"] else "")
        + (f"  {ci['environment']}" if ci["environment"] else ""), one_line=True)))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    # CMDB text is data, never rich markup: every cell is a plain Text.
    if ci["aliases"]:
        grid.add_row("aliases", plain(", ".join(ci["aliases"]), one_line=True))
    for k, v in ci["attributes"].items():
        grid.add_row(plain(k, one_line=True), plain(v))
    for kind, targets in ci["relations"].items():
        grid.add_row(plain(kind, one_line=True), plain(", ".join(targets), one_line=True))
    for kind, sources in ci["needed_by"].items():
        grid.add_row(plain(f"needed by ({kind})", one_line=True), plain(", ".join(sources), one_line=True))
    out.print(grid)
    if tickets:
        out.print()
        print_tickets(tickets)
    if changes:
        out.print()
        out.print("recent changes", style="bold")
        for c in changes:
            out.print(plain(f"  CH-{c['id']}  {local(c['happened_at'])}  {c['status']:<11} {c['summary']}", one_line=True))


def print_impact(start: str, reached: list[Any], info: dict[str, dict[str, Any]], upstream: bool) -> None:
    from rich.tree import Tree

    out = console()
    tiers = [info[r.name]["tier"] for r in reached if info[r.name]["tier"]]
    n = len(reached)
    head = (f"{start} needs {plural(n, 'CI')}" if upstream else f"{plural(n, 'CI')} {'is' if n == 1 else 'are'} affected if {start} fails") \
        + (f"; highest tier {min(tiers)}" if tiers else "")
    tree = Tree(Text(controls(head, one_line=True), style="bold"))
    nodes = {start: tree}
    for r in reached:  # breadth first: a CI's parent on its path is already in the tree
        i = info[r.name]
        tier = f" tier {i['tier']}" if i["tier"] else ""
        style = "bold red" if i["tier"] == 1 else ""
        nodes[r.name] = nodes[r.path[-2]].add(Text.assemble((controls(r.name, True), style),
                                                            plain(f"  ({r.via}, {i['type']}{tier})", one_line=True)))
    out.print(tree)


def print_article(a: dict[str, Any]) -> None:
    from rich.markdown import Markdown

    out = console()
    meta = [f"KB-{a['id']}", f"revision {a['revision']}", f"reviewed {local(a['reviewed_at'])}"]
    if a["owner"]:
        meta.append(f"owner {a['owner']}")
    if a["tags"]:
        meta.append("tags " + ", ".join(a["tags"]))
    if a["cis"]:
        meta.append("CIs " + ", ".join(a["cis"]))
    out.print(Text(controls(a["title"], one_line=True), style="bold"))
    out.print(Text(controls("  ·  ".join(meta), one_line=True), style="dim"))
    out.print()
    # Markdown is the article's format, but its text is data: control characters are written out
    # before it is parsed, and links are shown as text with their address, never as terminal
    # (OSC 8) links.
    out.print(Markdown(controls(a["body"]), hyperlinks=False))


def print_search(found: list[dict[str, Any]]) -> None:
    from .storage.kb import SNIPPET_CLOSE, SNIPPET_OPEN

    out = console()
    if not found:
        out.print("no article matches", style="dim")
        return
    for a in found:
        out.print(Text.assemble((f"KB-{a['id']}", "bold"), "  ", (controls(a["title"], True), "bold"),
                                (controls("  " + ", ".join(a["tags"]), True) if a["tags"] else "", "dim")))
        if not a["snippet"]:  # found by meaning: no word of the search is in it
            continue
        snippet = Text()
        for i, part in enumerate(a["snippet"].replace("\n", " ").split(SNIPPET_OPEN)):
            hit, _, rest = part.partition(SNIPPET_CLOSE) if i else ("", "", part)
            snippet.append(controls(hit, one_line=True), style="bold yellow")
            snippet.append(controls(rest, one_line=True))
        out.print(Text("    ").append(snippet))


def print_context(ctx: dict[str, Any], linked: list[dict[str, Any]]) -> None:
    """What enrichment found when the ticket arrived, and the articles linked since."""
    out = console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    if ctx.get("ci"):
        owner = f", owned by {ctx['team']}" if ctx.get("team") else ""
        grid.add_row("ci", plain(f"{ctx['ci']} ({ctx.get('ci_type')}, tier {ctx.get('tier') or '?'}{owner})", one_line=True))
    if ctx.get("dependents_total"):
        shown = ", ".join(ctx["dependents"])
        more = f" and {ctx['dependents_total'] - len(ctx['dependents'])} more" if ctx["dependents_total"] > len(ctx["dependents"]) else ""
        tier = f"; highest tier affected: {ctx['highest_tier_affected']}" if ctx.get("highest_tier_affected") else ""
        n = ctx["dependents_total"]
        total = f"{plural(n, 'CI')}{'+' if ctx.get('dependents_capped') else ''} {'depends' if n == 1 else 'depend'}"
        grid.add_row("blast radius", plain(f"{total} on it: {shown}{more}{tier}", one_line=True))
    for c in ctx.get("changes", ()):
        when = f"{c['minutes_before']} min before" if c.get("minutes_before") is not None else local(c["happened_at"])
        grid.add_row("recent change", plain(f"CH-{c['id']} {c['summary']} on {c['ci']}, {when} "
                                           f"({c['status']}{', risk ' + c['risk'] if c.get('risk') else ''})", one_line=True))
    for a in ctx.get("kb", ()):
        grid.add_row("kb", plain(f"KB-{a['id']} {a['title']}", one_line=True))
    for a in linked:
        grid.add_row("kb linked", plain(f"KB-{a['id']} {a['title']}", one_line=True))
    for s in ctx.get("similar", ()):
        grid.add_row("similar", plain(f"{ref(s['id'])} {s['status']}: {s['title']}", one_line=True))
    alike = ctx.get("alike") or {}
    for s in alike.get("tickets", ()):  # by meaning (the semantic index), resolved ones
        fix = f" -> {s['resolution']}" if s.get("resolution") else ""
        grid.add_row("resolved alike", plain(f"{ref(s['id'])} ({s['score']:.2f}) {s['title']}{fix}", one_line=True))
    for a in alike.get("articles", ()):
        grid.add_row("kb alike", plain(f"KB-{a['id']} ({a['score']:.2f}) {a['title']}", one_line=True))
    if grid.row_count:
        out.print(Text("context", style="bold"))
        out.print(grid)
        out.print()


def print_problem(p: dict[str, Any]) -> None:
    out = console()
    out.print(Text.assemble((f"{ref(p['id'])} ", "bold"), (p["priority"], PRIORITY_STYLE.get(p["priority"], "")), " ",
                            (p["status"], STATUS_STYLE.get(p["status"], "")), "  ", (controls(p["title"], True), "bold"),
                            ("  known error" if p["known_error"] else "", "bold magenta")))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for name in ("root_cause", "workaround", "fix"):
        if p.get(name):
            grid.add_row(name.replace("_", " "), plain(p[name]))
    out.print(grid)
    out.print()
    print_tickets(p["incidents"])


def text_line(*parts: Any) -> Text:
    """One line of our words and stored text: a (text, style) pair is styled, and every part is
    shown as written (control characters escaped), never read as markup. Escaped markup strings
    are not enough: rich reads a backslash before a bracket in data as an escape and drops it."""
    return Text.assemble(*((controls(p[0], True), p[1]) if isinstance(p, tuple) else controls(p, True) for p in parts))


def print_why(w: dict[str, Any]) -> None:
    """`sdesk why`: each decision about a ticket on a line of its own, with what decided it. Every
    part of `why --json` has its line (test_why_text_shows_every_part_of_the_json)."""
    from .domain.lifecycle import ref

    out = console()
    say = lambda *parts: out.print(text_line(*parts))  # noqa: E731 (what people and payloads wrote is text)

    def listed(v: Any) -> str:
        return ", ".join(map(str, v)) if isinstance(v, list) else str(v)

    say((ref(w["id"]), "bold"), f"  {w['priority'] or '-'}  queue {w['queue'] or '-'}  category {w['category'] or '-'}"
        f"  impact {w['impact'] or '-'}  urgency {w['urgency'] or '-'}")
    triage = w["triage"]
    if triage is None:
        out.print("not triaged: the desk had no triage.yaml or model when it arrived (sdesk triage ID runs it now)",
                  style="dim")
    else:
        say(f"triaged {local(w['triaged_at'])}")
        p = triage.get("priority") or {}
        if p:
            say(f"priority {p.get('result') or '-'}: {p.get('from')}")
            say(f"  impact {p.get('impact') or '?'}: {p.get('impact_from')}")
            inputs = p.get("urgency_from") or {}
            parts = [f"severity {inputs['severity']}"] if "severity" in inputs else []
            if "words" in inputs:
                parts.append(f"words (level {inputs['words']['level']}): {', '.join(inputs['words']['found'])}")
            if "burn_rate" in inputs:
                parts.append(f"burn rate {inputs['burn_rate']['rate']:g}x (level {inputs['burn_rate']['level']})")
            if "slo_burn" in inputs:
                b = inputs["slo_burn"]
                parts.append(f"SLO burn of {b['ci']} {b['pace_6h']:g}x its budget's pace over 6h (level {b['level']})")
            how = f"set by a rule ({inputs['rule']}) over" if "rule" in inputs else \
                f"as given ({inputs['given']}) over" if "given" in inputs else "the most urgent of"
            say(f"  urgency {p.get('urgency')}: {how}")
            for part in parts:  # one input a line: together they do not fit 80 columns
                say(f"    {part}")
            if p.get("raised"):
                r = p["raised"]
                say(f"  kept at {r['to']}: its open child {ref(r['child'])} is {r['to']}:")
                say(f"    {r['why']}")
        for fired in triage.get("rules", ()):
            sets = ", ".join(f"{k}={listed(v)}" for k, v in fired["set"].items())
            say(f"rule {fired['rule']}: {sets}")
        if triage.get("set"):
            say("set: " + ", ".join(f"{k}={listed(v)}" for k, v in triage["set"].items()))
        for field, c in (triage.get("classifier") or {}).items():
            verdict = f"at least {c['threshold']:g}: applied" if c["applied"] else f"below {c['threshold']:g}: " + (
                f"sent to {c['sent_to']}" if c.get("sent_to") else "not applied")
            say(f"classifier {field}: {c['label']} at {c['confidence']:g} ({verdict})")
        corr = triage.get("correlation")
        if corr:
            how = corr.get("reason", "") + (f" via {corr['via']}, {corr['hops']} hops" if "via" in corr else "") + \
                (f" {corr['group']}" if "group" in corr else "")
            say(f"child of {ref(corr['parent'])}: {how}")
            if corr.get("raised"):
                r = corr["raised"]
                say(f"  raised {ref(corr['parent'])} from {r['from']} to {r['to']}: an incident is as urgent as its")
                say("  most urgent open child and pages for it; the child does not page on its own")
        if triage.get("parent"):
            say(f"parent: {triage['parent']}")
        if triage.get("suppressed"):
            say(f"suppressed: {triage['suppressed']}")
        if triage.get("assigned"):
            a = triage["assigned"]
            say(f"assigned: {a['assignee'] or 'nobody'} ({a['why']})")
    if w.get("linked"):
        k = w["linked"]
        say(f"child of {ref(k['parent'])}: linked by {k['by']} at {local(k['at'])}" + (f" ({k['why']})" if k.get("why") else ""))
    elif w["parent_id"] and (triage or {}).get("correlation", {}).get("parent") != w["parent_id"]:
        say(f"child of {ref(w['parent_id'])}")
    if w["suppressed"] and (triage or {}).get("suppressed") != w["suppressed"]:
        say(f"suppressed: {w['suppressed']}")
    if w.get("runbook"):
        say(f"runbook: {w['runbook']}")
    for r in w.get("raised", ()):
        say(f"priority raised {r['from']} -> {r['to']} at {local(r['at'])} by its child {ref(r['child'])}:")
        say(f"  {r['why']}")
    for c in w["corrections"]:
        changes = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in c["changed"].items())
        say(f"corrected by {c['by']} at {local(c['at'])}: {changes}")


def print_shifts(schedule: str, shifts: list[dict[str, Any]]) -> None:
    """`sdesk oncall show`: a schedule's shifts in local time, a row each, days set apart."""
    out = console()
    t = Table(title=plain(schedule, one_line=True), box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for header in ("day", "from", "to", "on call", "layer"):
        t.add_column(header)
    last_day = None
    for s in shifts:
        start, end = clock.parse(s["from"]).astimezone(), clock.parse(s["to"]).astimezone()
        day = f"{start:%a %d %b}"
        ends = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %H:%M}"
        t.add_row(day if day != last_day else "", f"{start:%H:%M}", ends,
                  plain(s["user"], one_line=True) if s["user"] else Text("nobody", style="dim"),
                  plain(s["layer"] or "", one_line=True))
        last_day = day
    out.print(t)


def _span(seconds: int) -> str:
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return sign + (f"{days}d {hours}h" if days else f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m")


TITLE_MAX = 60  # the sla table's title column at most: the clocks are what it is read for


def print_sla(rows: list[dict[str, Any]]) -> None:
    """`sdesk sla`: the most urgent target of each open ticket (the policy is in --json)."""
    from .domain.lifecycle import ref

    styles = {"breached": "bold red", "at_risk": "yellow", "ok": "green"}
    out = console()
    if not rows:
        out.print("no open ticket under an SLA policy matches", style="dim")
        return
    from rich.cells import cell_len

    headers = ("ticket", "pri", "title", "clock", "used", "left", "state")
    cells = [[ref(r["id"]), r["priority"], controls(r["title"], one_line=True), r["target"],
              _span(r["targets"][r["target"]]["used_seconds"]), _span(r["left_seconds"]), r["state"].replace("_", " ")]
             for r in rows]
    widths = [max(cell_len(h), *(cell_len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    # Every column but the title is as wide as its longest cell (a state is never cut); the title
    # takes what is left of the terminal, up to TITLE_MAX. SIMPLE_HEAD spends 3 columns between
    # two columns (padding, rule, padding) and one at each edge.
    room = out.width - 2 - 3 * (len(headers) - 1) - (sum(widths) - widths[2])
    widths[2] = max(5, min(widths[2], room, TITLE_MAX))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header, width in zip(headers, widths):
        t.add_column(header, overflow="ellipsis", no_wrap=True, width=width)
    for r, c in zip(rows, cells):
        t.add_row(*(plain(x) for x in c[:-1]), Text(c[-1], style=styles[r["state"]]))
    out.print(t)


def print_plan(out: Console, plan: dict[str, Any], ticket: dict[str, Any], dry_run: bool) -> None:
    """What a run will do, every parameter resolved."""
    from .domain.runbooks import describe

    out.print(text_line(("Dry run" if dry_run else "Plan", "bold"), f": runbook {plan['runbook']} on "
                    f"{ref(ticket['id'])} {ticket['title']}"))
    for name, value in plan["params"].items():
        out.print(text_line(f"  param {name} = {value!r}"))
    for name, (kind, where) in plan["secrets"].items():
        out.print(text_line(f"  secret {name} from {kind} {where}"))
    for i, step in enumerate(plan["steps"], 1):
        out.print(text_line(f"  {i}. {step['id']}: {describe(step, dry_run)}"))
    for step in plan["on_failure"]:
        out.print(text_line(f"  on failure: {step['id']}: {describe(step, dry_run)}"))


def print_runbook(out: Console, rb: dict[str, Any]) -> None:
    out.print(text_line((rb["name"], "bold"), f"  {rb['description']}"))
    out.print(text_line(f"file: {rb['file']}"))
    out.print(text_line(f"applies to: {readable(rb['applies_to']) if rb['applies_to'] else 'any ticket'}"))
    automation = "safe for automation (triage may run it)" if rb["safe_for_automation"] else "run by people only"
    out.print(text_line(f"{automation}; throttle: {plural(rb['throttle']['runs'], 'run')} per {rb['throttle']['per']} per CI",
                    ("; disabled" if rb["disabled"] else "", "red")))
    for name, p in rb["params"].items():
        source = f" from {p['from']}" if p["from"] else ""
        default = f", default {p['default']!r}" if p["default"] is not None else ""
        out.print(text_line(f"  param {name} ({p['type']}{source}{default})" + (f": {p['description']}" if p["description"] else "")))
    for name, ref_ in rb["secrets"].items():
        [(kind, where)] = ref_.items()
        out.print(text_line(f"  secret {name} from {kind} {where}"))
    for title, steps in (("steps", rb["steps"]), ("on failure", rb["on_failure"])):
        if steps:
            out.print(f"{title}:")
        for i, s in enumerate(steps, 1):
            body = s.get("text") or (" ".join(s["argv"]) if s.get("argv") else s.get("shell"))
            out.print(text_line(f"  {i}. {s['id']} [{s['kind']}]: {body}"))


def print_run(out: Console, run: dict[str, Any]) -> None:
    plan = run["plan"] or {}
    out.print(text_line((f"run {run['id']}", "bold"), f": {run['runbook']} on {ref(run['ticket_id'])}"
                    f"{' (dry run)' if run['dry_run'] else ''} by {run['actor']}"
                    f"{' (automation)' if run['automated'] else ''}: ", (run["status"], "bold")))
    if run["reason"]:
        out.print(text_line(f"reason: {run['reason']}"))
    if run["waiting_for"]:
        out.print(text_line(f"waiting for {run['waiting_for']}: sdesk runbook approve {run['id']}"))
    if run["rollback"]:
        out.print(text_line(f"rollback: {run['rollback']}"))
    out.print(text_line(f"started {local(run['started_at'])}, ended {local(run['ended_at']) or '-'}; lock {run['lock_key']}"))
    for name, value in (plan.get("params") or {}).items():
        out.print(text_line(f"  param {name} = {value!r}"))
    for s in run["steps"]:
        timing = f", {s['duration_ms']} ms" if s["duration_ms"] is not None else ""
        code = f", exit {s['exit_code']}" if s["exit_code"] is not None else ""
        tries = f", {s['attempts']} attempts" if s["attempts"] > 1 else ""
        phase = " (rollback)" if s["phase"] == "rollback" else ""
        out.print(text_line((s["step_id"], "bold"), f"{phase} [{s['kind']}] {s['status']}{code}{timing}{tries}"
                        + (f" by {s['actor']}" if s["status"] in ("approved", "confirmed") else "")))
        if s["command"]:
            out.print(text_line(("  $ " + s["command"], "dim")))
        for line in (s["output"] or "").splitlines():
            out.print(Text("  | " + controls(line)))  # a command's output keeps its tabs
