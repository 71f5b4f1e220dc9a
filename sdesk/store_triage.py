"""Triage against the store: silences, correlation with open incidents, flapping, re-triage,
`why`, and replaying rules over history. The decisions themselves are triage.py's (pure)."""

from __future__ import annotations

import functools

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from . import clock, lifecycle
from .errors import BadInput, NotFound
from .migrations import DONE_SQL, OPEN_SQL
from .signals import Alert
from .lifecycle import more_urgent
from .store_rows import Db, to_json
from .triage import TICKET_FIELDS, Matcher, Stored, TriageConfig, arrival, changes, decide, matches

if TYPE_CHECKING:
    from .store_classifier import ClassifierStore
    from .store_sla import SlaStore
    from .store_tickets import TicketStore
    from .enrich import Enricher
    from .store import Store


RECENT_PER_CI = 200  # a CI's newest tickets that correlation looks at: a storm's, not its history



class _Annotations(Mapping[str, str]):
    """An alert's annotations, parsed only if triage reads them (most rules never do)."""

    def __init__(self, text: str):
        self._text = text
        self._map: dict[str, str] | None = None

    def _parsed(self) -> dict[str, str]:
        if self._map is None:
            self._map = orjson.loads(self._text) if self._text != "{}" else {}
        return self._map

    def __getitem__(self, key: str) -> str:
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())


class Triager:
    """Triage inside the intake transaction. Lookups are cached for the length of a batch, and
    the incidents a batch opens are correlation targets for the rest of it (a storm arrives in
    one batch)."""

    def __init__(self, store: Store, config: TriageConfig, now: datetime, enricher: Enricher | None,
                 silences: list[tuple[int, list[Matcher]]]):
        self.store = store
        self.config = config
        self.now = now
        self.enricher = enricher
        self.since = clock.iso(now - timedelta(minutes=config.correlation_minutes))
        self.silences = silences
        self.classify = store.classifier.classify if store.classifier.has_classifier() else None
        self._burns: dict[str, float] = {}
        self._roots_by_ci: dict[str, int | None] = {}
        self._roots_by_group: dict[str, int | None] = {}
        self._priority: dict[int, str | None] = {}  # open parents' priorities as this batch leaves them
        self._raising: set[int] = set()  # children that raise their parent (written once the batch is stored)

    def apply(self, ticket_id: int, t: dict[str, Any], alert: Alert | None,
              context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ticket as triage leaves it, and the explanation of every decision."""
        annotations = _Annotations(alert.annotations if alert is not None else "{}")
        decision = decide(self.config, t, annotations=annotations, context=context, now=self.now,
                          classify=self.classify, burn=self.burn)
        t = {**t, **decision.sets}
        explanation = decision.explanation
        if t.get("assignee") == "auto":  # a rule asked for the queue's strategy
            user, why = self.store.oncall.pick_for_queue(t.get("queue"), self.config.oncall, self.now) \
                if self.config.oncall is not None else (None, "no oncall.yaml")
            t["assignee"] = user
            explanation["assigned"] = {"assignee": user, "why": why}
        if decision.runbook:
            t["runbook"] = decision.runbook
        suppressed = decision.suppress or self.silenced(t)
        if suppressed:
            t["suppressed"] = suppressed
            explanation["suppressed"] = suppressed
        parent = self._parent(decision.parent, explanation) if decision.parent else None
        if parent is None and not suppressed and self.config.correlation_minutes:
            parent = self._correlate(ticket_id, t, alert, explanation)
        if parent is not None:
            t["parent_id"] = parent
            raised = self._raises(parent, t.get("priority"))
            if raised:
                explanation.setdefault("correlation", {"parent": parent})["raised"] = raised
                self._raising.add(ticket_id)
        elif not suppressed:
            self._priority[ticket_id] = t.get("priority")  # a root this batch's later tickets may join
        return t, explanation

    def _raises(self, parent: int, priority: str | None) -> dict[str, str] | None:
        """What a child this urgent does to its parent (raise_parent writes it once the batch is
        stored): {from, to} when it is more urgent than the open parent nobody acknowledged yet
        (an acknowledged one was taken as less urgent: the child pages itself, see covered_sql)."""
        if parent not in self._priority:
            row = self.store.conn.execute(f"SELECT priority FROM tickets WHERE id = ? AND {OPEN_SQL} "
                                          "AND acknowledged_at IS NULL", (parent,)).fetchone()
            self._priority[parent] = row[0] if row else None
        current = self._priority[parent]
        if not more_urgent(priority, current):
            return None
        self._priority[parent] = priority
        return {"from": current, "to": priority}

    def raise_parents(self, tx: Any, made: list[int]) -> None:
        """Once the batch's rows are stored: each new child more urgent than its parent raises
        it (see apply; the others cost no query, a storm's children are many)."""
        for ticket_id in made:
            if ticket_id in self._raising:
                self.store.tickets.raise_parent(tx, ticket_id)
        self._raising.clear()

    def burn(self, ci: str) -> float:
        """The CI's 6-hour error-budget burn, as a share of its pace (once per batch)."""
        if ci not in self._burns:
            from .sla import budget

            slo = self.config.slos[ci]
            self._burns[ci] = budget(slo, self.store.sla.slo_incidents(slo, self.now), self.now)["burn"]["6h"]
        return self._burns[ci]

    def silenced(self, t: dict[str, Any]) -> str | None:
        """Why the ticket is kept out of the queue: the first silence in force that matches it."""
        for silence_id, matchers in self.silences:
            if matches(matchers, t):
                return f"silence {silence_id}"
        return None

    def _parent(self, parent: int, explanation: dict[str, Any]) -> int | None:
        if self.store.conn.execute("SELECT 1 FROM tickets WHERE id = ?", (parent,)).fetchone() is None:
            explanation["parent"] = f"{lifecycle.ref(parent)} does not exist: not linked"
            return None
        explanation["correlation"] = {"parent": parent, "reason": "set by a rule"}
        return parent

    def _correlate(self, ticket_id: int, t: dict[str, Any], alert: Alert | None,
                   explanation: dict[str, Any]) -> int | None:
        """The incident this ticket belongs under: the open incident of its alert group, else the
        latest open incident on its CI or on what the CI depends on, opened within the window.
        Otherwise the ticket is a root others may join."""
        group = self._group_key(t, alert)
        if group is not None:
            if group not in self._roots_by_group:
                row = self.store.conn.execute(
                    f"SELECT id FROM tickets WHERE group_key = ? AND {OPEN_SQL} AND created_at >= ? "
                    "ORDER BY id LIMIT 1", (group, self.since)).fetchone()
                self._roots_by_group[group] = row[0] if row else None
            root = self._roots_by_group[group]
            if root is not None and root != ticket_id:
                explanation["correlation"] = {"parent": root, "reason": "alert group", "group": group}
                return root
        ci = t.get("ci")
        if ci and self.enricher is not None and t.get("kind", "incident") == "incident":
            reach = [(ci, 0), *self.enricher.upstream(ci)]
            self._look_up_roots([name for name, _ in reach])
            # The most recent incident wins: in a storm that is the storm's own first alert,
            # not an older, unrelated incident further along the same dependencies.
            found = [(root, name, hops) for name, hops in reach if (root := self._roots_by_ci.get(name))]
            if found:
                root, name, hops = max(found)
                explanation["correlation"] = {"parent": root, "reason": "topology", "via": name, "hops": hops}
                return root
            self._roots_by_ci[ci] = ticket_id
        if group is not None:
            self._roots_by_group[group] = ticket_id
            t["group_key"] = group
        return None

    def _look_up_roots(self, cis: list[str]) -> None:
        """The latest open root incident opened within the window on each CI not yet known.
        A CI's tickets are read newest first and only the window's few, never its history."""
        for ci in cis:
            if ci not in self._roots_by_ci:
                row = self.store.conn.execute(
                    f"SELECT max(id) FROM (SELECT * FROM tickets WHERE ci = ? ORDER BY id DESC LIMIT {RECENT_PER_CI}) "
                    f"WHERE created_at >= ? AND {OPEN_SQL} AND parent_id IS NULL AND suppressed IS NULL "
                    "AND kind = 'incident'", (ci, self.since)).fetchone()
                self._roots_by_ci[ci] = row[0]

    def _group_key(self, t: dict[str, Any], alert: Alert | None) -> str | None:
        if self.config.group_by:
            labels = t.get("labels") or {}
            if all(labels.get(name) for name in self.config.group_by):
                return "labels:" + orjson.dumps([labels[name] for name in self.config.group_by]).decode()
        if self.config.group_key and alert is not None and alert.group:
            return f"{t.get('source') or 'alert'}:{alert.group}"
        return None


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


class TriageStore:
    def __init__(self, db: Db, *, classifier: ClassifierStore, sla: SlaStore, tickets: TicketStore) -> None:
        self.db = db
        self.classifier = classifier
        self.sla = sla
        self.tickets = tickets

    """Silences, flapping lookups, re-triage and explanations."""

    # -- silences -------------------------------------------------------------------------

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
        with self.db.write(actor, "admin" if broad else "agent",
                         "a silence without an exact match on a label such as alertname or instance" if broad
                         else "adding a silence") as tx:
            comment = tx.clean(comment)
            cursor = tx.conn.execute(
                "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (orjson.dumps([list(m) for m in matchers]).decode(), clock.iso(starts), clock.iso(ends), comment,
                 actor, tx.at))
            silence_id = cursor.lastrowid
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
                for (ticket_id,) in tx.conn.execute(f"SELECT id FROM tickets WHERE suppressed = ? AND {OPEN_SQL}",
                                                    (why,)).fetchall():
                    tx.conn.execute("UPDATE tickets SET suppressed = NULL WHERE id = ?", (ticket_id,))
                    tx.event(ticket_id, "unsuppressed", {"was": why, "reason": "the silence was expired"})
        return self.silence_list(include_expired=True, silence_id=silence_id)[0]

    def silence_list(self, *, include_expired: bool = False, silence_id: int | None = None,
                     now: datetime | None = None) -> list[dict[str, Any]]:
        at = clock.iso(now or clock.now())
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

    def recently_resolved(self, fingerprints: set[str], since: str) -> dict[str, int]:
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

    def replay_tickets(self, since: str | None = None, ticket_id: int | None = None) -> Iterator[Stored]:
        """Stored tickets (created since `since`, or one) as triage saw them on arrival: the
        `created` event's input with what enrichment set, the CI's tier and blast radius, the
        last alert's annotations, and when they arrived; and each row as it is now. One at a
        time: a replay over a million tickets holds one."""
        columns = ", ".join(f"t.{c}" for c in (*TICKET_FIELDS, "id", "labels", "suppressed", "runbook", "parent_id", "created_at")
                            if c != "tags")
        sql = (f"SELECT {columns}, t.tags, "
               "(SELECT data FROM events WHERE ticket_id = t.id AND kind = 'created' ORDER BY id LIMIT 1) AS _created, "
               "(SELECT json_extract(data, '$.set') FROM events WHERE ticket_id = t.id AND kind = 'enriched' "
               "ORDER BY id LIMIT 1) AS _enriched, "
               "(SELECT annotations FROM alerts WHERE ticket_id = t.id ORDER BY id DESC LIMIT 1) AS _annotations, "
               "json_extract(c.data, '$.tier') AS _tier, json_extract(c.data, '$.dependents_total') AS _dependents, "
               "json_extract(c.data, '$.ci') AS _ci "
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
            enriched = orjson.loads(t.pop("_enriched")) if t["_enriched"] else None
            context = {"tier": t.pop("_tier"), "dependents_total": t.pop("_dependents"), "ci": t.pop("_ci")}
            annotations = _Annotations(t.pop("_annotations") or "{}")
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

    def _most_urgent_child(self, tx: Any, ticket_id: int) -> tuple[str, int] | None:
        """The priority of the ticket's most urgent open child, and that child (the first such)."""
        row = tx.conn.execute(f"SELECT priority, id FROM tickets WHERE parent_id = ? AND {OPEN_SQL} "
                              "AND priority IS NOT NULL ORDER BY priority, id LIMIT 1", (ticket_id,)).fetchone()
        return (row[0], row[1]) if row else None

    # -- explanations ---------------------------------------------------------------------

    def why(self, *, ticket_id: int) -> dict[str, Any]:
        """The ticket's category, queue and priority and what decided each: the last triage
        (at intake or re-run), and the people who changed them since."""
        t = self.tickets.get_or_raise(ticket_id=ticket_id)
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
    from .sla import budget

    slo = config.slos[ci]
    return budget(slo, sla.slo_incidents(slo, now), now)["burn"]["6h"]
