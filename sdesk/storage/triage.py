"""Triage against the store: silences, correlation with open incidents, flapping, re-triage,
`why`, and replaying rules over history. The decisions themselves are triage.py's (pure)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..domain import clock, lifecycle
from ..domain.lifecycle import more_urgent
from ..errors import BadInput, NotFound
from ..triage import TICKET_FIELDS, Annotations, Matcher, Stored, TriageConfig, arrival, changes, decide, matches
from .migrations import DONE_SQL, OPEN_SQL
from .rows import Db, Tx, to_json

if TYPE_CHECKING:
    from .classifier import ClassifierStore
    from .sla import SlaStore
    from .tickets import TicketStore


# Why an incident takes the priority of a more urgent child rather than the child paging on its
# own: one incident, one page, one clock (as PagerDuty and Opsgenie raise the incident's priority).
RAISE_REASON = "an incident is as urgent as its most urgent open child, so it pages for it"


def _still_holding(before: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of the last explanation that re-triage does not re-run (correlation and a
    rule's parent, a silence, `assignee: auto`) and that the ticket still shows."""
    before = before or {}
    kept: dict[str, Any] = {}
    if (before.get("correlation") or {}).get("parent") == current.get("parent_id") is not None:
        kept["correlation"] = before["correlation"]
    if before.get("parent") and current.get("parent_id") is None:
        kept["parent"] = before["parent"]  # a rule's parent that did not exist
    if before.get("suppressed") and before["suppressed"] == current.get("suppressed"):
        kept["suppressed"] = before["suppressed"]
    if before.get("assigned") and before["assigned"].get("assignee") == current.get("assignee"):
        kept["assigned"] = before["assigned"]
    return kept


# Keys that name whole swathes of the desk: an exact match on one of them alone still silences
# broadly (kind=incident, severity=critical), which only an admin may do.
COARSE_KEYS = frozenset({"kind", "status", "priority", "source", "impact", "urgency", "category", "team", "queue",
                         "severity"})


RECENT_PER_CI = 200  # a CI's newest tickets that correlation looks at: a storm's, not its history


class TriageStore:
    def __init__(self, db: Db, *, classifier: ClassifierStore, sla: SlaStore, tickets: TicketStore) -> None:
        self.db = db
        self.classifier = classifier
        self.sla = sla
        self.tickets = tickets

    """Silences, flapping lookups, re-triage and explanations."""

    # -- silences -------------------------------------------------------------------------

    def raisable_priority(self, ticket_id: int) -> str | None:
        """The priority of an open incident nobody acknowledged yet (one a child may raise)."""
        row = self.db.conn.execute(f"SELECT priority FROM tickets WHERE id = ? AND {OPEN_SQL} "
                                   "AND acknowledged_at IS NULL", (ticket_id,)).fetchone()
        return row[0] if row else None

    def group_root(self, group: str, *, since: str) -> int | None:
        """The first open ticket of an alert group opened since `since`."""
        row = self.db.conn.execute(f"SELECT id FROM tickets WHERE group_key = ? AND {OPEN_SQL} AND created_at >= ? "
                                   "ORDER BY id LIMIT 1", (group, since)).fetchone()
        return row[0] if row else None

    def ci_root(self, ci: str, *, since: str) -> int | None:
        """The latest open root incident on a CI opened since `since`. A CI's tickets are read
        newest first and only the window's few, never its history."""
        return self.db.conn.execute(
            f"SELECT max(id) FROM (SELECT * FROM tickets WHERE ci = ? ORDER BY id DESC LIMIT {RECENT_PER_CI}) AS recent "
            f"WHERE created_at >= ? AND {OPEN_SQL} AND parent_id IS NULL AND suppressed IS NULL "
            "AND kind = 'incident'", (ci, since)).fetchone()[0]

    def silence_add(self, matchers: list[Matcher], *, starts: datetime, ends: datetime, comment: str | None,
                    actor: str) -> int:
        if not matchers:
            raise BadInput("silence: at least one --match is required")
        if all(matches([m], {}) for m in matchers):
            # As Alertmanager: a silence whose matchers all match an empty value would match everything.
            raise BadInput("silence: these matchers match every alert; add one that needs a value (key=value)")
        if ends <= starts:
            raise BadInput("silence: it must end after it starts")
        if ends <= clock.now():
            raise BadInput(f"silence: it would already be over (ends {clock.iso(ends)})")
        broad = not any(m.op == "=" and m.value and m.name not in COARSE_KEYS for m in matchers)
        with self.db.write(actor, need="admin" if broad else "agent",
                         what="a silence without an exact match on a label such as alertname or instance" if broad
                         else "adding a silence") as tx:
            comment = tx.clean(comment)
            cursor = tx.conn.execute(
                "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (orjson.dumps([list(m) for m in matchers]).decode(), clock.iso(starts), clock.iso(ends), comment,
                 actor, tx.at))
            silence_id = cursor.fetchone()[0]
            tx.event(None, "silence_added", {"silence": silence_id, "matchers": [list(m) for m in matchers],
                                             "starts_at": clock.iso(starts), "ends_at": clock.iso(ends),
                                             "comment": comment})
        return silence_id

    def silence_expire(self, silence_id: int, *, actor: str) -> dict[str, Any]:
        with self.db.write(actor) as tx:
            tx.check()  # a desk-wide act, whatever tickets it brings back
            row = tx.conn.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if row is None:
                raise NotFound(f"no silence {silence_id}")
            if row["expired_at"] is None and row["ends_at"] > tx.at:
                tx.conn.execute("UPDATE silences SET expired_at = ? WHERE id = ?", (tx.at, silence_id))
                tx.event(None, "silence_expired", {"silence": silence_id})
                # What it kept out of the queue and is still open comes back, as after its end.
                why = f"silence {silence_id}"
                for (ticket_id,) in tx.conn.execute(f"SELECT id FROM tickets WHERE suppressed = ? AND {OPEN_SQL} "
                                                    "ORDER BY id", (why,)).fetchall():
                    tx.conn.execute("UPDATE tickets SET suppressed = NULL WHERE id = ?", (ticket_id,))
                    tx.event(ticket_id, "unsuppressed", {"was": why, "reason": "the silence was expired"})
        return self.silence_list(include_expired=True, silence_id=silence_id)[0]

    def silence_list(self, *, include_expired: bool = False, silence_id: int | None = None,
                     now: datetime | None = None) -> list[dict[str, Any]]:
        at = clock.iso(now or clock.now())
        args: list[Any]
        sql, args = "SELECT * FROM silences", []
        if silence_id is not None:
            sql, args = sql + " WHERE id = ?", [silence_id]
        elif not include_expired:
            sql, args = sql + " WHERE expired_at IS NULL AND ends_at > ?", [at]
        counts = dict(self.db.conn.execute(
            "SELECT suppressed, count(*) FROM tickets WHERE suppressed LIKE 'silence %' GROUP BY suppressed"))
        out = []
        for row in self.db.conn.execute(sql + " ORDER BY id", args):
            s = dict(row)
            s["matchers"] = ["".join(m) for m in orjson.loads(s["matchers"])]
            s["state"] = "expired" if s["expired_at"] or s["ends_at"] <= at else "pending" if s["starts_at"] > at else "active"
            s["suppressed"] = counts.get(f"silence {s['id']}", 0)
            out.append(s)
        return out

    def active_silences(self, now: datetime) -> list[tuple[int, list[Matcher]]]:
        at = clock.iso(now)
        rows = self.db.conn.execute("SELECT id, matchers FROM silences WHERE expired_at IS NULL AND starts_at <= ? "
                                 "AND ends_at > ? ORDER BY id", (at, at))
        return [(silence_id, [Matcher(*m) for m in orjson.loads(text)]) for silence_id, text in rows]

    # -- flapping -------------------------------------------------------------------------

    def recently_resolved(self, fingerprints: set[str], *, since: str) -> dict[str, int]:
        """fingerprint -> the latest ticket with it resolved or closed since `since`."""
        found: dict[str, int] = {}
        chunk = list(fingerprints)
        for i in range(0, len(chunk), 500):
            part = chunk[i:i + 500]
            rows = self.db.conn.execute(
                f"SELECT fingerprint, max(id) FROM tickets WHERE fingerprint IN ({','.join('?' * len(part))}) "
                f"AND {DONE_SQL} AND resolved_at >= ? GROUP BY fingerprint", (*part, since))
            found.update(rows)
        return found

    def replay_tickets(self, since: str | None = None, *, ticket_id: int | None = None) -> Iterator[Stored]:
        """Stored tickets (created since `since`, or one) as triage saw them on arrival: the
        `created` event's input with what enrichment set, the CI's tier and blast radius, the
        last alert's annotations, and when they arrived; and each row as it is now. One at a
        time: a replay over a million tickets holds one."""
        columns = ", ".join(f"t.{c}" for c in (*TICKET_FIELDS, "id", "labels", "suppressed", "runbook", "parent_id", "created_at")
                            if c != "tags")
        sql = (f"SELECT {columns}, t.tags, "
               "(SELECT data FROM events WHERE ticket_id = t.id AND kind = 'created' ORDER BY id LIMIT 1) AS _created, "
               "(SELECT data FROM events WHERE ticket_id = t.id AND kind = 'enriched' "
               "ORDER BY id LIMIT 1) AS _enriched, "
               "(SELECT annotations FROM alerts WHERE ticket_id = t.id ORDER BY id DESC LIMIT 1) AS _annotations, "
               "c.data AS _context "
               "FROM tickets t LEFT JOIN ticket_context c ON c.ticket_id = t.id")
        if ticket_id is not None:
            rows = self.db.conn.execute(sql + " WHERE t.id = ?", (ticket_id,))
        elif since:
            rows = self.db.conn.execute(sql + " WHERE t.created_at >= ? ORDER BY t.id", (since,))
        else:
            rows = self.db.conn.execute(sql + " ORDER BY t.id")
        for row in rows:
            t = dict(row)
            created = orjson.loads(t.pop("_created")) if t["_created"] else {}
            # The JSON is read here, not by the database: its values keep their types and its
            # objects their key order on both backends (PostgreSQL's jsonb gives neither).
            enriched = orjson.loads(t.pop("_enriched")).get("set") if t["_enriched"] else None
            stored_context = orjson.loads(t.pop("_context") or "{}")
            context = {k: stored_context.get(k) for k in ("tier", "dependents_total", "ci")}
            annotations = Annotations(t.pop("_annotations") or "{}")
            t["labels"], t["tags"] = orjson.loads(t["labels"]), orjson.loads(t["tags"])
            arrived = arrival(created, enriched) if created else {k: t[k] for k in (*TICKET_FIELDS, "labels")}
            yield Stored(t, arrived, context if context["tier"] is not None else {}, annotations,
                         clock.parse(t["created_at"]))

    def retriage(self, *, ticket_id: int, config: TriageConfig, actor: str) -> dict[str, Any]:
        """Run rules, the matrix (with the SLO burn now) and the classifier again on what arrived
        for a stored ticket, and apply what differs from it now (a `triaged` event explains it).
        Silences, correlation and `assignee: auto` are not re-run: they belong to the moment of
        arrival, and their explanation is kept while the ticket still shows their effect. A
        parent keeps the priority of its most urgent open child."""
        with self.db.write(actor) as tx:
            self.tickets._current(tx, ticket_id)  # the actor's role on its queue
            stored = next(self.replay_tickets(ticket_id=ticket_id), None)
            if stored is None:
                raise NotFound(f"no ticket {lifecycle.ref(ticket_id)}")
            now = clock.parse(tx.at)
            burn = functools.partial(_burn, config, self.sla, now) if config.slos else None
            decision = decide(config, stored.arrived, annotations=stored.annotations, context=stored.context,
                              now=now, classify=self.classifier.classify if self.classifier.has_classifier() else None, burn=burn)
            explanation = {**decision.explanation, **_still_holding(self.why(ticket_id=ticket_id)["triage"],
                                                                    stored.current)}
            diff = changes(stored, decision)
            top = self._most_urgent_child(tx, ticket_id)
            decided = diff["priority"][1] if "priority" in diff else stored.current["priority"]
            if top is not None and more_urgent(top[0], decided):
                explanation["priority"] = {**explanation.get("priority", {}),
                                           "raised": {"to": top[0], "child": top[1], "why": RAISE_REASON}}
                diff.pop("priority", None)
                if top[0] != stored.current["priority"]:
                    diff["priority"] = [stored.current["priority"], top[0]]
            if diff:
                self.tickets._set(tx, ticket_id, {**{k: to_json(new) if k == "tags" else new for k, (_, new) in diff.items()},
                                          "updated_at": tx.at})
            tx.event(ticket_id, "triaged", {"triage": explanation, "changes": diff})
            if "priority" in diff:
                self.tickets.raise_parent(tx, ticket_id)
        return {"id": ticket_id, "changes": diff, "triage": explanation}

    def _most_urgent_child(self, tx: Tx, ticket_id: int) -> tuple[str, int] | None:
        """The priority of the ticket's most urgent open child, and that child (the first such)."""
        row = tx.conn.execute(f"SELECT priority, id FROM tickets WHERE parent_id = ? AND {OPEN_SQL} "
                              "AND priority IS NOT NULL ORDER BY priority, id LIMIT 1", (ticket_id,)).fetchone()
        return (row[0], row[1]) if row else None

    # -- explanations ---------------------------------------------------------------------

    def why(self, *, ticket_id: int) -> dict[str, Any]:
        """The ticket's category, queue and priority and what decided each: the last triage
        (at intake or re-run), and the people who changed them since."""
        t = self.tickets.get_or_raise(ticket_id=ticket_id)
        corrections: list[dict[str, Any]]
        raised: list[dict[str, Any]]
        triage, triaged_at, corrections, raised, linked = None, None, [], [], None
        for e in self.tickets.events(ticket_id=ticket_id):
            if e["kind"] == "created" and "triage" in e["data"]:
                triage, triaged_at, corrections, raised = e["data"]["triage"], e["at"], [], []
            elif e["kind"] == "triaged":
                # A person's correction that re-triage left alone still explains that field.
                redone = e["data"].get("changes") or {}
                corrections = [{**c, "changed": kept} for c in corrections
                               if (kept := {k: v for k, v in c["changed"].items() if k not in redone})]
                triage, triaged_at, raised = e["data"]["triage"], e["at"], []
            elif e["kind"] == "updated" and {"category", "queue", "priority"} & set(e["data"]):
                corrections.append({"at": e["at"], "by": e["actor"],
                                    "changed": {k: v for k, v in e["data"].items()
                                                if k in ("category", "queue", "priority")}})
            elif e["kind"] == "priority_raised":
                raised.append({"at": e["at"], "from": e["data"]["priority"][0], "to": e["data"]["priority"][1],
                               "child": e["data"]["child"], "why": RAISE_REASON})
            elif e["kind"] == "linked":
                linked = {"parent": e["data"]["parent_id"], "by": e["actor"], "at": e["at"],
                          **({"why": e["data"]["why"]} if e["data"].get("why") else {})} \
                    if e["data"].get("parent_id") else None
        out = {"id": ticket_id, "category": t["category"], "queue": t["queue"], "priority": t["priority"],
               "impact": t["impact"], "urgency": t["urgency"], "parent_id": t["parent_id"],
               "suppressed": t["suppressed"], "runbook": t["runbook"], "triaged_at": triaged_at,
               "triage": triage, "corrections": corrections}
        if raised:
            out["raised"] = raised  # by more urgent children, since the last triage
        if linked and linked["parent"] == t["parent_id"]:
            out["linked"] = linked  # by hand (sdesk link), not by triage's correlation
        return out


def _burn(config: TriageConfig, sla: SlaStore, now: datetime, ci: str) -> float:
    """The CI's 6-hour error-budget burn now, as a share of its pace (Triager.burn at intake)."""
    from ..domain.sla import budget

    slo = config.slos[ci]
    return budget(slo, sla.slo_incidents(slo, now=now), now)["burn"]["6h"]
