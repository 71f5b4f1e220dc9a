"""The intake service: what an arriving signal does. Deduplication, redaction, enrichment,
triage, correlation, flapping, mail threading and the queueing of automation are decided here,
in one write transaction the store opens; the store only writes what is decided (its narrow
methods take the transaction). Every way in (the CLI, `serve`, the demo) comes here.

Streams run through here at tens of thousands of alerts a second, so triggers are set based:
one lookup of the batch's fingerprints, then one executemany per table."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ..domain import clock, lifecycle
from ..domain.lifecycle import more_urgent
from ..domain.redact import might_hold_secrets, redact_strings
from ..domain.roles import RANK
from ..domain.signals import Alert, Signal
from ..errors import Conflict
from ..storage.rows import Tx, to_json
from ..storage.runbooks import lock_key
from ..storage.tickets import CREATE_FIELDS, SETTABLE, ticket_text
from ..triage import Annotations, Matcher, TriageConfig, decide, matches
from .mail import approval_reply, rating

if TYPE_CHECKING:
    from ..storage.runbooks import RunbookStore
    from ..storage.tickets import TicketStore
    from ..store import Store
    from .enrich import Enricher, EnrichOptions


@functools.lru_cache(maxsize=4096)
def _redacted_json(text: str, mask_pii: bool) -> str:
    """An alert's labels or annotations as stored: repeats of an alert send the same ones, so
    the answer is cached by their JSON."""
    if not mask_pii and not might_hold_secrets(text):
        return text
    return to_json(redact_strings(orjson.loads(text), mask_pii)[0])


class _Triggers:
    """The tickets a batch opens or bumps, written at flush with one executemany per table and
    one event per ticket: `created` (with how often it arrived in the batch) or `occurrence`
    (how many more times it arrived). Monitoring resends a firing alert every few minutes; one
    event per resend would bury a ticket's history, and the alerts table keeps every arrival."""

    def __init__(self, tx: Tx, tickets: TicketStore, runbooks: RunbookStore, open_by_fingerprint: dict[str, list],
                 mask_pii: bool = False,
                 enricher: Enricher | None = None, triager: Triager | None = None, silences: Collection[str] = frozenset(),
                 automate: Collection[str] = ()):
        self.tx = tx
        self.automate = automate  # runbooks safe for automation: run when triage attaches them
        self.mask_pii = mask_pii
        self.enricher = enricher
        self.triager = triager
        self.silences = silences  # "silence N" of the silences in force
        self.open = open_by_fingerprint  # fingerprint -> [ticket id, occurrences, suppressed]
        # id -> ticket, source, redactions, the alert it came from
        self.new: dict[int, tuple[dict[str, Any], str, list[str], Alert | None]] = {}
        self.bumped: dict[int, list] = {}  # id -> [occurrences, repeats in this batch, last source, its actor]
        self.actors: dict[int, str] = {}  # id -> the source that opened it, when not the account (Signal.actor)
        self.tickets = tickets
        self.runbooks = runbooks
        self.next_id = tickets.next_id(tx)  # ids are ours to give: we hold the write lock

    def add(self, t: dict[str, Any], source: str, secret_free: bool = False,
            alert: Alert | None = None, actor: str | None = None) -> tuple[int, str]:
        fingerprint = t.get("fingerprint")
        hit = self.open.get(fingerprint) if fingerprint else None
        if hit:
            hit[1] += 1
            bump = self.bumped.get(hit[0])
            if bump:
                bump[0], bump[1], bump[2], bump[3] = hit[1], bump[1] + 1, source, actor
            else:
                self.bumped[hit[0]] = [hit[1], 1, source, actor]
            return hit[0], "deduplicated"
        ticket_id, self.next_id = self.next_id, self.next_id + 1
        if actor:
            self.actors[ticket_id] = actor
        redacted: list[str] = []
        if self.mask_pii or (not secret_free and might_hold_secrets(ticket_text(t))):
            clean, redacted = redact_strings(t, self.mask_pii)
        if redacted:
            # The fingerprint is the dedup key and the requester the address replies go to: both
            # are kept as sent.
            t = {**clean, "fingerprint": fingerprint, "requester": t.get("requester")}
        self.new[ticket_id] = (t, source, redacted, alert)
        if fingerprint:
            self.open[fingerprint] = [ticket_id, 1, None]
        return ticket_id, "created"

    def flush(self) -> None:
        tx, made, contexts, runs = self.tx, [], [], []
        present: set[str] = set()  # the fields some new ticket of the batch sets
        for ticket_id, (t, source, redacted, alert) in self.new.items():
            bump = self.bumped.pop(ticket_id, None)
            # The created event carries the whole input, so history can be rebuilt from events,
            # and triage's explanation of what it made of it.
            created = {k: v for k, v in t.items() if v is not None}
            present.update(created)
            created["source"] = source
            actor = self.actors.get(ticket_id)
            if actor:
                created["received_by"] = tx.actor
            if bump:
                created["occurrences"] = bump[0]
            context = self.enricher.context(t, ticket_id) if self.enricher else None
            enriched = None
            if context:
                t, enriched = self._apply(t, context)
                contexts.append((ticket_id, to_json(context)))
            if self.triager is not None:
                t, created["triage"] = self.triager.apply(ticket_id, {**t, "source": source}, alert, context or {})
                # What the row holds beyond the input (enrichment's and triage's choices), so that
                # `audit verify` can rebuild it from this event.
                created["set"] = {k: v for k, v in t.items() if k in SETTABLE and created.get(k) != v}
            if context or self.triager is not None:
                present.update(t)
            tx.check(t.get("queue"))  # (no queue: the desk's role; no ticket id on a refusal: it will not exist)
            # Clean already: add() redacted the ticket (or its parser found no hint of a secret);
            # the rest is the source's name, triage's explanation and counts.
            tx.event(ticket_id, "created", created, clean=True, actor=actor)
            if redacted:
                tx.event(ticket_id, "redacted", {"kinds": sorted(set(redacted))}, clean=True)
            if enriched:
                tx.event(ticket_id, "enriched", enriched)
            if t.get("runbook") in self.automate and not t.get("suppressed"):
                runs.append((t["runbook"], ticket_id, lock_key(t.get("ci"), t.get("fingerprint"), ticket_id)))
            made.append((ticket_id, t, source, bump[0] if bump else 1))
        # The INSERT names only the columns the batch sets: Python's sqlite3 binds each None
        # through an adapter lookup, which cost more than the rest of an alert's ticket row
        # (9 of them; measured with callgrind).
        fields = tuple(f for f in CREATE_FIELDS if f in present)
        self.tickets.insert_new(tx, fields, rows=[
            (ticket_id, *map(t.get, fields), to_json(t.get("labels") or {}), to_json(t.get("tags") or []), source,
             tx.at, tx.at, occurrences) for ticket_id, t, source, occurrences in made])
        self.tickets.add_contexts(tx, contexts)
        if self.triager is not None:
            self.triager.raise_parents(tx, [ticket_id for ticket_id, t, _, _ in made if t.get("parent_id")])
        if runs:
            self.runbooks.queue_runs(tx, runs)
        for ticket_id, (occurrences, repeats, source, actor) in self.bumped.items():
            # Counts and the source's and account's names (as intake names them): nothing to redact.
            tx.event(ticket_id, "occurrence", {"occurrences": occurrences, "repeats": repeats, "source": source,
                                               **({"received_by": tx.actor} if actor else {})}, clean=True, actor=actor)
        self.tickets.count_occurrences(tx, [(ticket_id, n) for ticket_id, (n, *_) in self.bumped.items()])
        self._release(list(self.bumped))
        self.new.clear()
        self.bumped.clear()
        self.actors.clear()

    def _release(self, bumped: list[int]) -> None:
        """A silenced alert firing after its silence ended joins the queue, as Alertmanager
        notifies again once a silence is over."""
        for hit in self.open.values():
            if hit[2] and hit[0] in bumped and hit[2].startswith("silence ") and hit[2] not in self.silences:
                self.tickets._set(self.tx, hit[0], {"suppressed": None})
                self.tx.event(hit[0], "unsuppressed", {"was": hit[2], "reason": "the silence is over"})
                hit[2] = None

    @staticmethod
    def _apply(t: dict[str, Any], context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The CI, its owner team, and that team's queue when nothing set one, from the context;
        and the summary the `enriched` event records."""
        sets = {}
        if context.get("ci") and t.get("ci") != context["ci"]:  # the CI's own name, not an alias
            sets["ci"] = context["ci"]
        if context.get("team") and not t.get("team"):
            sets["team"] = context["team"]
            if not t.get("queue"):
                sets["queue"] = context["team"]
        summary = {k: context[k] for k in ("ci", "tier", "dependents_total") if context.get(k) is not None}
        summary |= {"changes": len(context.get("changes", ())), "kb": [a["id"] for a in context.get("kb", ())],
                    "similar": [s["id"] for s in context.get("similar", ())], "set": sets}
        return {**t, **sets}, summary




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
        annotations = Annotations(alert.annotations if alert is not None else "{}")
        decision = decide(self.config, t, annotations=annotations, context=context, now=self.now,
                          classify=self.classify, burn=self.burn)
        t = {**t, **decision.sets}
        explanation = decision.explanation
        if t.get("assignee") == "auto":  # a rule asked for the queue's strategy
            user, why = self.store.oncall.pick_for_queue(t.get("queue"), config=self.config.oncall, now=self.now) \
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

    def _raises(self, parent: int, priority: str | None) -> dict[str, str | None] | None:
        """What a child this urgent does to its parent (raise_parent writes it once the batch is
        stored): {from, to} when it is more urgent than the open parent nobody acknowledged yet
        (an acknowledged one was taken as less urgent: the child pages itself, see covered_sql)."""
        if parent not in self._priority:
            self._priority[parent] = self.store.triage.raisable_priority(parent)
        current = self._priority[parent]
        if not more_urgent(priority, current):
            return None
        self._priority[parent] = priority
        return {"from": current, "to": priority}

    def raise_parents(self, tx: Tx, made: list[int]) -> None:
        """Once the batch's rows are stored: each new child more urgent than its parent raises
        it (see apply; the others cost no query, a storm's children are many)."""
        for ticket_id in made:
            if ticket_id in self._raising:
                self.store.tickets.raise_parent(tx, ticket_id)
        self._raising.clear()

    def burn(self, ci: str) -> float:
        """The CI's 6-hour error-budget burn, as a share of its pace (once per batch)."""
        if ci not in self._burns:
            from ..domain.sla import budget

            slo = self.config.slos[ci]
            self._burns[ci] = budget(slo, self.store.sla.slo_incidents(slo, now=self.now), self.now)["burn"]["6h"]
        return self._burns[ci]

    def silenced(self, t: dict[str, Any]) -> str | None:
        """Why the ticket is kept out of the queue: the first silence in force that matches it."""
        for silence_id, matchers in self.silences:
            if matches(matchers, t):
                return f"silence {silence_id}"
        return None

    def _parent(self, parent: int, explanation: dict[str, Any]) -> int | None:
        if not self.store.tickets.exists(parent):
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
                self._roots_by_group[group] = self.store.triage.group_root(group, since=self.since)
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
                self._roots_by_ci[ci] = self.store.triage.ci_root(ci, since=self.since)

    def _group_key(self, t: dict[str, Any], alert: Alert | None) -> str | None:
        if self.config.group_by:
            labels = t.get("labels") or {}
            if all(labels.get(name) for name in self.config.group_by):
                return "labels:" + orjson.dumps([labels[name] for name in self.config.group_by]).decode()
        if self.config.group_key and alert is not None and alert.group:
            return f"{t.get('source') or 'alert'}:{alert.group}"
        return None


class Intake:
    def __init__(self, store: Store) -> None:
        self.store = store

    def intake(self, tickets: Iterable[dict[str, Any]], *, actor: str, source: str) -> list[tuple[int, bool]]:
        """Open validated tickets (deduplicated by fingerprint, see `receive`); returns
        (ticket id, created) for each, in order."""
        results = self.receive([Signal(source, "trigger", ticket=t) for t in tickets], actor=actor)
        opened = []
        for ticket_id, outcome in results:
            assert ticket_id is not None  # a trigger always lands on a ticket (created, deduplicated, reopened)
            opened.append((ticket_id, outcome == "created"))
        return opened

    def receive(self, signals: Iterable[Signal], *, actor: str, record_resolved: Collection[str] = (),
                reopen_days: int = 14, mask_pii: bool = False, enrich: EnrichOptions | bool = True,
                approve_by_mail: bool = False,
                triage: TriageConfig | None = None, automate: Collection[str] = ()) -> list[tuple[int | None, str]]:
        """Apply what sources sent, in order and in one transaction, and keep every alert.

        A trigger opens a ticket, unless an open ticket (stored, or earlier in this batch) has
        its fingerprint: then that ticket's occurrences go up (one event per ticket and batch).
        A resolve resolves the open ticket with its fingerprint (or only records it on the ticket,
        for the sources in record_resolved; "*" is every source); an acknowledge acknowledges
        it; a change is kept for
        enrichment. An email that replies to a ticket is a comment on it, and reopens it when it
        was resolved or closed less than reopen_days ago. Returns (ticket id or None, outcome)
        for each signal: created, deduplicated, resolved, acknowledged, commented, reopened,
        recorded or ignored. With mask_pii, email addresses and phone numbers are masked too.
        A new ticket is enriched from the CMDB, changes and KB (enrich.py) unless enrich is False,
        then triaged (triage.py, and storage/triage.py for silences) when a triage config is given: rules, the
        priority matrix, the classifier, silences and correlation. With triage, a trigger whose
        ticket was resolved within the flap window reopens it (outcome reopened). A runbook
        triage attaches is queued to run when it is in `automate` (safe for automation).

        Streams run through here at tens of thousands of alerts a second, so triggers are set
        based: one lookup of the batch's fingerprints, then one executemany per table."""
        signals = list(signals)
        results: list[tuple[int | None, str]] = []
        with self.store.write(actor, need="agent", what="taking in tickets and alerts") as tx:
            # Intake needs the agent role on the desk, and on each new ticket's queue (flush). Someone
            # with roles on particular queues (an agent on dba, a viewer elsewhere) needs it on the
            # queue of each ticket they open or touch instead, and on the desk for anything else.
            access = tx.access
            per_queue = access is not None and bool(access.queues)
            if access is None or not per_queue or access.allows(tx.need):
                tx.check()
                per_queue = per_queue and access is not None and any(RANK[role] < RANK[tx.need]
                                                                     for role in access.queues.values())
            triggers = any(s.action == "trigger" for s in signals)
            enricher = self._enricher(enrich) if triggers else None
            signal_keys = [s.key for s in signals]  # (a property: read once, for the lookup and the rows)
            keys = {key for key in signal_keys if key is not None}
            open_now = self.store.tickets.open_fingerprints(tx.conn, fingerprints=keys)
            triager, flapping = None, {}
            now = clock.parse(tx.at)
            silences = self.store.triage.active_silences(now) if triggers else []
            if triage is None and triggers and (silences or self.store.classifier.has_classifier()):
                from ..triage import UNCONFIGURED

                triage = UNCONFIGURED  # silences and a trained model apply on any desk
            if triage is not None and triggers:
                triager = Triager(self.store, triage, now, enricher, silences)
                if triage.flap_minutes and keys - open_now.keys():
                    flapping = self.store.triage.recently_resolved(keys - open_now.keys(),
                                                      since=clock.iso(now - timedelta(minutes=triage.flap_minutes)))
            batch = _Triggers(tx, self.store.tickets, self.store.runbooks, open_now, mask_pii, enricher, triager,
                              {f"silence {i}" for i, _ in silences}, automate)
            alert_rows = []
            for s, key in zip(signals, signal_keys):
                if s.thread is not None:
                    result = self._mail(tx, batch, s, reopen_days, mask_pii, approve_by_mail)
                elif s.action == "trigger" and flapping and key in flapping and key not in batch.open:
                    result = self._reopen_flapping(tx, batch, flapping.pop(key), s, key)
                elif s.action == "trigger":
                    assert s.ticket is not None  # a trigger carries its ticket (signals.py)
                    result = batch.add(s.ticket, s.source, s.secret_free, s.alert, s.actor)
                elif s.action in ("resolve", "acknowledge"):
                    only_record = "*" in record_resolved or s.source in record_resolved
                    result = self._resolve_or_ack(tx, batch, s, only_record)
                elif s.action == "change":
                    self._change(tx, s, mask_pii)
                    result = (None, "recorded")
                else:
                    result = (None, "ignored")
                if per_queue:
                    self._check_intake(tx, batch, result)
                results.append(result)
                if s.alert is not None:
                    labels, annotations = s.alert.labels, s.alert.annotations
                    if mask_pii or not s.secret_free:
                        labels, annotations = _redacted_json(labels, mask_pii), _redacted_json(annotations, mask_pii)
                    alert_rows.append((s.source, key, s.alert.status, result[1], labels, annotations, tx.at, result[0]))
            batch.flush()
            self.store.tickets.insert_alerts(tx, alert_rows)
        return results

    def _check_intake(self, tx: Tx, batch: _Triggers, result: tuple[int | None, str]) -> None:
        """For an actor whose role differs by queue: what one signal did needs their role on the
        queue of the ticket it touched (a new one's is checked when it is written, after triage
        chose it), or on the desk when it touched none."""
        ticket_id, _ = result
        if ticket_id is None:
            tx.check()
        elif ticket_id not in batch.new:  # (a stored ticket: those moved were checked by _current)
            tx.check(self.store.tickets.queue_of(tx, ticket_id), ticket_id)

    def _reopen_flapping(self, tx: Tx, batch: _Triggers, ticket_id: int, s: Signal, key: str) -> tuple[int, str]:
        """A resolved alert firing again within the flap window: its ticket, reopened (and kept
        out of the queue if a silence matches it now)."""
        t = self.store.tickets._current(tx, ticket_id)
        with tx.acting(s.actor) as received:
            self.store.tickets._move(tx, t, "reopen", extra=received)
            occurrences = t["occurrences"] + 1
            silenced = batch.triager.silenced(t) if batch.triager is not None else None
            self.store.tickets._set(tx, ticket_id, {"occurrences": occurrences, "suppressed": silenced})
            tx.event(ticket_id, "occurrence", {"occurrences": occurrences, "repeats": 1, "source": s.source,
                                               "flapping": True, **({"suppressed": silenced} if silenced else {}),
                                               **received})
        batch.open[key] = [ticket_id, occurrences, silenced]
        return ticket_id, "reopened"

    def _enricher(self, enrich: EnrichOptions | bool) -> Enricher | None:
        """An enricher when there is something to enrich from (a CMDB or a KB)."""
        if enrich is False:
            return None
        has_cmdb, has_kb = self.store.cmdb.has_cis(), self.store.kb.has_articles()
        if not (has_cmdb or has_kb):
            return None
        from .enrich import Enricher, EnrichOptions

        return Enricher(self.store, enrich if isinstance(enrich, EnrichOptions) else EnrichOptions(),
                        has_cmdb=bool(has_cmdb), has_kb=bool(has_kb))



    def _change(self, tx: Tx, s: Signal, mask_pii: bool) -> None:
        assert s.change is not None  # a change signal carries the change (signals.py)
        summary, data = tx.clean([s.change["summary"], s.change.get("data") or {}], None, mask_pii)
        service = s.change.get("service")
        # A source names the service as it knows it: the CI it is, when the CMDB knows that name.
        ci = s.change.get("ci") or (found["name"] if service and (found := self.store.cmdb.ci_find([service.strip().lower()])) else None)
        self.store.cmdb.record_change(tx, source=s.source, summary=summary, service=service, ci=ci,
                                      happened_at=s.change.get("happened_at") or tx.at, data=data)

    def _mail(self, tx: Tx, batch: _Triggers, s: Signal, reopen_days: int, mask_pii: bool,
              approve_by_mail: bool = False) -> tuple[int | None, str]:
        th = s.thread or {}
        mail = self.store.mail
        message_id = th.get("message_id")
        # A message without a Message-ID is known by a digest of it (mail.message_digest).
        seen = message_id or th.get("digest")
        if seen and mail.seen(tx, seen):
            return None, "ignored"  # seen before: an mbox read twice takes nothing twice
        if s.action == "ignore":
            mail.remember(tx, message_id, ticket_id=None, attachments=[], seen=seen)
            return None, "ignored"
        batch.flush()
        target = None
        if th.get("ticket"):
            target = th["ticket"] if self.store.tickets.exists(th["ticket"]) else None
        if target is None and th.get("references"):
            target = mail.ticket_of_thread(tx, th["references"][-500:])
        parent, why = None, None
        if target is not None:
            t = self.store.tickets._current(tx, target)
            # What a reply does is the sender's doing: its comment and reopening show them, not the
            # account that runs intake.
            with tx.acting(s.actor) as received:
                outcome: str | None = "commented"
                if not self._may_reply(tx, t, th.get("from")):
                    # Anyone can put [SD-1] in a subject or a known Message-ID in In-Reply-To: only the
                    # requester and the desk's users (by email) speak on a ticket; others open their own.
                    parent, why, outcome = t["id"], "a reply from someone not on the ticket", None
                elif approve_by_mail and (decided := self._approval_reply(tx, t, th)) is not None:
                    mail.remember(tx, message_id, ticket_id=t["id"], attachments=[], seen=seen)
                    return t["id"], decided
                elif t["status"] in lifecycle.DONE:
                    done_at = clock.parse(t["closed_at"] or t["resolved_at"])
                    rated = rating(th.get("body")) if (t.get("requester") or "").casefold() == th.get("from") else None
                    if rated is not None:
                        # The resolution's notice asks the requester for one digit: a rating, not a reopening.
                        self.store.metrics.rate(tx, t["id"], score=rated[0], comment=rated[1])
                        mail.remember(tx, message_id, ticket_id=t["id"], attachments=[], seen=seen)
                        return t["id"], "rated"
                    if (clock.parse(tx.at) - done_at).days < reopen_days:
                        try:
                            self.store.tickets._move(tx, t, "reopen", extra=received)
                            outcome = "reopened"
                        except Conflict:
                            pass  # its fingerprint is open elsewhere: the reply is still kept
                    else:
                        parent, outcome = t["id"], None  # too old: a new ticket, linked to the old one
                if outcome:
                    text = tx.clean(th.get("body") or "(empty message)", t["id"], mask_pii)
                    self.store.tickets._set(tx, t["id"], {"updated_at": tx.at})
                    tx.event(t["id"], "commented", {"text": text, "from": th.get("from"), "via": "email",
                                                    "message_id": message_id, **received})
                    mail.remember(tx, message_id, ticket_id=t["id"], attachments=th.get("attachments") or [], seen=seen)
                    return t["id"], outcome
                elif why is None:
                    why = "a reply to a ticket done too long ago"
        assert s.ticket is not None  # an email that is no reply (or may not be one) opens a ticket (signals.py)
        ticket_id, _ = batch.add(s.ticket, s.source, actor=s.actor)
        batch.flush()
        if parent is not None:
            self.store.tickets._set(tx, ticket_id, {"parent_id": parent})
            tx.event(ticket_id, "linked", {"parent_id": parent, "previous_parent_id": None, "why": why})
        mail.remember(tx, message_id, ticket_id=ticket_id, attachments=th.get("attachments") or [], seen=seen)
        return ticket_id, "created"

    def _approval_reply(self, tx: Tx, t: dict[str, Any], th: dict[str, Any]) -> str | None:
        """An approver's answer by mail to a catalog request's approval mail ("approve", or
        "reject" and a reason, on its first line): decided as theirs; "approved" or "rejected".
        None (an ordinary reply, commented): not an approver the request waits on, a rejection
        without its reason, or no decision. The sender is who its From says: a desk that takes
        approvals by mail (intake.yaml: approve_by_mail, off by default) takes mail only through a
        gateway that checks senders (DKIM, SPF)."""
        decision = approval_reply(th.get("body"))
        if decision is None or t["status"] in lifecycle.DONE:
            return None
        approve, reason = decision
        user = self.store.users.user_of(str(th.get("from") or ""))
        if user is None or (not approve and not reason) or not self.store.requests.waits_on(tx, t["id"], user=user):
            return None
        self.store.requests.decide_in(tx, t["id"], approver=user, approve=approve, reason=reason)
        return "approved" if approve else "rejected"

    def _may_reply(self, tx: Tx, t: dict[str, Any], sender: str | None) -> bool:
        """Whether an email from `sender` may comment on (and reopen) ticket `t`: its requester,
        a watcher (`sdesk watch`), or a user of the desk with that email address."""
        sender = (sender or "").strip().casefold()
        if "@" not in sender:  # no one mailbox's address (mail.py): a stranger, whatever the text
            return False
        if (t.get("requester") or "").strip().casefold() == sender:
            return True
        return self.store.users.has_email(tx, sender) or self.store.outbox.watches(tx, t["id"], address=sender)

    def _resolve_or_ack(self, tx: Tx, batch: _Triggers, s: Signal, only_record: bool) -> tuple[int | None, str]:
        batch.flush()  # a ticket opened earlier in this batch must exist before it can move
        if s.fingerprint is None or (hit := batch.open.get(s.fingerprint)) is None:
            return None, "ignored"
        t = self.store.tickets._current(tx, hit[0])
        # What a source does is its doing (Signal.actor), as a mail reply is its sender's (_mail),
        # not that of whoever runs `serve` or `sdesk new`; who delivered it is kept too.
        with tx.acting(s.actor) as received:
            if s.action == "resolve":
                if only_record:
                    tx.event(t["id"], "alert_resolved", {"source": s.source, **received})
                    return t["id"], "recorded"
                self.store.tickets._move(tx, t, "resolve", resolution=f"Resolved by {s.source}: the alert stopped firing",
                           code="auto-resolved", extra={"source": s.source, **received})
                del batch.open[s.fingerprint]
                return t["id"], "resolved"
            if "ack" not in lifecycle.allowed_actions(t["status"]):
                return t["id"], "ignored"
            # A source's acknowledgement (PagerDuty's) says someone saw it there, not who: the
            # ticket keeps its assignee (none is invented from the delivering account).
            self.store.tickets._move(tx, t, "ack", claim=False, extra={"source": s.source, **received})
        return t["id"], "acknowledged"

