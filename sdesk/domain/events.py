"""What each event on a ticket's timeline (or the desk's) says, in one plain sentence: the
CLI's `show`, the TUI, postmortems and reports all tell the history in these words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import clock
from .lifecycle import ref
from .plain import plural, readable


def local(ts: str | None) -> str:
    """UTC storage time as local wall-clock time for people."""
    if not ts:
        return ""
    return clock.parse(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def _quoted(value: Any) -> str:
    """A value in an event sentence: text with spaces or commas in quotes, the rest in words."""
    if isinstance(value, str) and value and any(c in value for c in " ,;=()"):
        return f"\"{value}\""
    return readable(value)


def _changes(d: dict[str, Any]) -> str:
    """{field: [old, new]} as `priority P3 → P1, queue none → sre`."""
    return ", ".join(f"{field} {_quoted(pair[0])} → {_quoted(pair[1])}" if isinstance(pair, (list, tuple)) and len(pair) == 2
                     else f"{field} {_quoted(pair)}" for field, pair in d.items()) or "nothing changed"


def event_sentence_fallback(kind: str, d: Any) -> str:
    """An event kind this version has no sentence for (written by a newer sdesk): its name and
    data in words, never a Python repr."""
    return f"{kind.replace('_', ' ')}: {readable(d)}" if d else kind.replace("_", " ")


def describe_event(e: dict[str, Any]) -> str:
    """One sentence for an event of any kind (the timeline, `audit log`, postmortems). Events
    hold data from outside: keys may be missing in old events, values are only ever shown."""
    d = e["data"] if isinstance(e["data"], dict) else {"data": e["data"]}
    g: Callable[..., Any] = d.get  # a value as the event recorded it (Any: events are JSON)
    match e["kind"]:
        case "created":
            times = f" (arrived {d['occurrences']} times)" if (g("occurrences") or 1) > 1 else ""
            return f"created from {g('source', '?')}: {g('title', '')}{times}"
        case "occurrence":
            times = f"{d['repeats']} times, " if (g("repeats") or 1) > 1 else ""
            return f"repeated ({times}occurrences now {g('occurrences')}) via {g('source', '?')}"
        case "status_changed":
            extra = f": {d['resolution']}" + (f" [{d['code']}]" if g("code") else "") if g("resolution") else ""
            return f"{g('from')} → {g('to')}{extra}"
        case "priority_raised":
            old, new = (list(g("priority") or ()) + ["?", "?"])[:2]
            return f"priority {old} → {new}: raised by its more urgent child {ref(g('child'))}"
        case "assigned":
            before = f" (was {d['previous_assignee']})" if g("previous_assignee") else ""
            return f"assigned to {g('assignee')}{before}"
        case "auto_assigned":
            return f"assigned to {g('assignee') or 'nobody'} by queue {g('queue') or '-'}: {g('why', '')}"
        case "commented":
            return str(g("text", ""))
        case "replied":
            return f"replied to the requester: {g('text', '')}"
        case "watched" | "unwatched":
            return f"{g('who')} {'watches' if e['kind'] == 'watched' else 'no longer watches'} it"
        case "incident_update":
            return f"stakeholder update ({g('state')}): {g('text', '')}"
        case "request_submitted":
            answers = g("answers") or {}
            shown = "; ".join(f"{k}={v}" for k, v in answers.items()) if isinstance(answers, dict) else ""
            return f"catalog request {g('type')} submitted" + (f": {shown}" if shown else "")
        case "approval_requested":
            who = ", ".join(map(str, g("approvers") or [])) or "the desk's admins"
            note = f" ({d['note']})" if g("note") else ""
            return f"approval asked ({g('stage')}): {g('need')} of {who}{note}"
        case "approval_voted":
            reason = f": {d['reason']}" if g("reason") else ""
            return f"{g('approver')} {g('decision')} at stage {g('stage')} ({g('approvals')} of {g('need')}){reason}"
        case "approval_reminder":
            return f"approvers reminded ({g('stage')}): {', '.join(map(str, g('approvers') or [])) or '-'}; expires {g('expires_at')}"
        case "approval_expired":
            return f"approval expired at stage {g('stage')}"
        case "request_approved":
            return f"request approved; fulfilled by {g('fulfil')}"
        case "request_rejected" | "request_expired":
            return f"request {e['kind'].removeprefix('request_')}: {g('reason', '')}"
        case "request_cancelled":
            return "request cancelled: its ticket was resolved before it was approved"
        case "request_fulfilled":
            return f"request fulfilled by runbook {g('runbook')} (run {g('run')})"
        case "fulfilment_failed":
            return f"fulfilment by runbook {g('runbook')} failed (run {g('run')}: {g('reason')}); {g('next', '')}"
        case "updated":
            return "changed " + _changes(d)
        case "triage_corrected":
            return "triage corrected: " + _changes(d)
        case "triaged":
            changes = g("changes") or {}
            return "triaged again: " + (_changes(changes) if changes else "nothing changed")
        case "linked":
            was = f" (was under {ref(d['previous_parent_id'])})" if g("previous_parent_id") else ""
            return f"linked under {ref(g('parent_id'))}{was}"
        case "redacted":
            return "secrets removed before storing: " + readable(g("kinds"))
        case "attachments":
            files = [f"{f.get('name')} ({plural(f.get('size') or 0, 'byte')})" if isinstance(f, dict) else readable(f)
                     for f in g("files") or ()]
            return f"{plural(len(files), 'attachment')}: {', '.join(files)}" if files else "no attachments"
        case "alert_resolved":
            return f"the alert stopped firing ({g('source', '?')}); recorded, the ticket stays open"
        case "unsuppressed":
            return f"back in the queue: {g('reason', '')}" + (f" (was kept out by {g('was')})" if g("was") else "")
        case "enriched":
            parts = [f"CI {d['ci']}" if g("ci") else "",
                     plural(d["dependents_total"], "dependent") if g("dependents_total") else "",
                     plural(d["changes"], "recent change") if g("changes") else "",
                     plural(len(d["kb"]), "KB article") if g("kb") else "",
                     plural(len(d["similar"]), "similar ticket") if g("similar") else ""]
            sets = readable(g("set")) if g("set") else ""
            return "context: " + (", ".join(p for p in parts if p) or "nothing found") + (f"; set {sets}" if sets else "")
        case "kb_linked":
            return f"{'drafted and linked' if g('drafted') else 'linked'} KB-{g('article')} {g('title', '')}"
        case "kb_created":
            return f"KB-{g('article')} created: {g('title', '')}"
        case "kb_revised":
            return f"KB-{g('article')} revised (revision {g('revision')}): {readable(g('fields'))} changed"
        case "kb_reviewed":
            return f"KB-{g('article')} reviewed"
        case "problem_linked":
            return f"linked to problem {ref(g('problem_id'))}"
        case "problem_updated":
            return "problem record changed: " + ", ".join(
                f"{k.replace('_', ' ')} {_quoted(bool(v) if k == 'known_error' else v)}" for k, v in d.items())
        case "problem_fixed":
            return f"problem {ref(g('problem_id'))} fixed: {g('fix', '')}"
        case "runbook_queued":
            return f"runbook {g('runbook')} queued for automation (run {g('run')})"
        case "runbook_started":
            how = " (dry run)" if g("dry_run") else " (automation)" if g("automated") else ""
            params = f" with {readable(d['params'])}" if g("params") else ""
            return f"runbook {g('runbook')} started{how}: run {g('run')}{params}"
        case "runbook_step":
            code = f", exit {d['exit_code']}" if "exit_code" in d else ""
            took = f", {d['duration_ms']} ms" if "duration_ms" in d else ""
            phase = " (rollback)" if g("phase") else ""
            return f"run {g('run')} step {g('step')}{phase}: {g('status')}{code}{took}"
        case "runbook_waiting":
            return f"run {g('run')} waits for {g('for')} at step {g('step')}"
        case "runbook_approved" | "runbook_confirmed":
            return f"run {g('run')} step {g('step')} {e['kind'].split('_')[1]}"
        case "runbook_approval_refused":
            return f"run {g('run')}: approval refused ({g('reason')})"
        case "runbook_rejected":
            return f"run {g('run')} rejected" + (f": {d['reason']}" if g("reason") else "")
        case "runbook_refused":
            return f"runbook {g('runbook')} refused (run {g('run')}): {g('reason')}"
        case "runbook_finished":
            extra = f": {d['reason']}" if g("reason") else ""
            extra += f"; rollback {d['rollback']}" if g("rollback") else ""
            return f"run {g('run')} ({g('runbook')}) {g('status')}{extra}"
        case "runbook_disabled" | "runbook_enabled":
            what = "every runbook" if g("all") else f"runbook {g('runbook')}"
            state = "disabled" if e["kind"] == "runbook_disabled" else "enabled"
            return f"{what} {state}" + (f": {d['reason']}" if g("reason") else "")
        case "automation_misfire":
            return f"automation misfire: run {g('run')} ({g('runbook')}) {g('reason')}"
        case "paged" | "escalated":
            verb = "paged" if e["kind"] == "paged" else "escalated: paged"
            return f"{verb} {readable(g('users'))} (level {g('level')}, policy {g('policy')})"
        case "page_delivered":
            return f"page {g('page')} delivered to {g('user')}"
        case "page_failed":
            return f"page {g('page')} to {g('user')} failed: {g('error', '')}"
        case "page_undeliverable":
            return f"page to {g('user') or 'nobody'} undeliverable (level {g('level')}): {g('reason', '')}"
        case "escalation_requested":
            step = f"{g('round')}.{g('level')}" if "level" in d else f"step {g('step', '?')}"  # round.level, as `pages`
            return f"escalation to {step} requested"
        case "oncall_override":
            return (f"on-call override {g('id')}: {g('user')} covers {g('schedule')} from {local(g('starts_at'))} "
                    f"to {local(g('ends_at'))}" + (f": {d['reason']}" if g("reason") else ""))
        case "sla_warning" | "sla_breached":
            word = "at risk" if e["kind"] == "sla_warning" else "breached"
            return f"SLA {g('policy')} {g('target')} {word}"
        case "silence_added":
            matchers = ", ".join(" ".join(map(str, m)) if isinstance(m, (list, tuple)) else readable(m)
                                 for m in g("matchers") or ())
            return (f"silence {g('silence')} added for {matchers or 'everything'}, {local(g('starts_at'))} to "
                    f"{local(g('ends_at'))}" + (f": {d['comment']}" if g("comment") else ""))
        case "silence_expired":
            return f"silence {g('silence')} expired"
        case "csat":
            return f"CSAT {g('score')}" + (f": {d['comment']}" if g("comment") else "")
        case "worked":
            return f"worked {g('minutes')} min" + (f": {d['note']}" if g("note") else "")
        case "permission_denied":
            return f"refused: {g('what')} needs {g('need')}" + (f" on queue {d['queue']}" if g("queue") else "")
        case "user_added":
            return f"user {g('user')} added as {g('role')}" + (f" (team {d['team']})" if g("team") else "")
        case "user_changed":
            fields = {k: v for k, v in d.items() if k != "user" and isinstance(v, (list, tuple)) and len(v) == 2
                      and v[0] != v[1]}
            return f"user {g('user')}: " + (_changes(fields) if fields else "unchanged")
        case "user_queue_role":
            return f"user {g('user')} is {g('role')} on queue {g('queue')}"
        case "user_removed":
            return f"user {g('user')} removed (was {g('role')})"
        case "token_added":
            return f"API token {g('token')} for {g('user')}" + (f" ({d['label']})" if g("label") else "")
        case "token_revoked":
            return f"API token {g('token')} revoked"
        case "ci_added":
            return f"CI {g('name')} added ({g('type')}" + (f", tier {d['tier']}" if g("tier") else "") + ")"
        case "ci_linked" | "ci_unlinked":
            verb = "now" if e["kind"] == "ci_linked" else "no longer"
            return f"CI {g('source')} {verb} {g('kind')} {g('target')}"
        case "cmdb_imported":
            return "CMDB imported: " + ", ".join(f"{plural(n, 'CI') if isinstance(n, int) else readable(n)} {k}"
                                                 for k, n in d.items())
        case "change_recorded":
            return f"change CH-{g('change')} recorded on {g('ci')} ({g('status')}): {g('title', '')}"
        case "change_status":
            return f"change CH-{g('change')}: {g('from')} → {g('to')}"
        case "classifier_trained":
            return (f"classifier for {g('field')} trained on {plural(g('docs') or 0, 'ticket')}, "
                    f"{plural(g('terms') or 0, 'term')}" + (f"; labels {readable(g('classes'))}" if g("classes") else ""))
        case "purged":
            return (f"purged {plural(g('tickets') or 0, 'ticket')} closed before {g('before')} "
                    f"({plural(g('events') or 0, 'event')} kept as tombstones)")
        case "desk_configured":
            return f"the desk's config folder is now {g('config')}"
        case "restored":
            return f"restored from {g('from')} ({plural(g('events') or 0, 'event')})"
    return event_sentence_fallback(e["kind"], d)


def reopened_at(events: list[dict[str, Any]]) -> str | None:
    """When the ticket was last reopened (None: never)."""
    return next((e["at"] for e in reversed(events)
                 if e["kind"] == "status_changed" and e["data"].get("action") == "reopen"), None)
