"""The outbox: every message the desk sends, queued in the transaction of the event that caused
it (`enqueue`, from Store.write), claimed by one delivery at a time, and marked delivered,
retried with backoff, or dead. Also watchers (who else hears of a ticket) and stakeholder
updates on incidents, which are what the outbox mostly carries."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson

from ..domain import clock
from ..domain.lifecycle import ref
from ..domain.notify import (
    APPROVAL_EVENTS,
    RECIPIENT_FIELDS,
    SAMPLE_DATA,
    NotifyConfig,
    backoff,
    due,
    may_tell,
    notify_event,
    plan,
)
from ..errors import BadInput, Conflict, NotFound
from .rows import Db, Tx, to_json

OUTBOX_COLUMNS = ("id, ticket_id, event_id, event, rule, channel, recipient, audience, template, context, status, "
                  "batch, attempts, created_at, due_at, lease_at, token, sent_at, error, message_id")
STATUSES = ("pending", "delivered", "dead", "dropped")
MAX_BATCH = 50  # rows one message (a digest) carries; more go in the next one


def enqueue(tx: Tx, config: NotifyConfig) -> int:
    """Queue the messages the transaction's events call for (notify.plan), in the transaction:
    they are committed with their events, or not at all. Returns how many."""
    kinds = config.kinds
    wanted = []
    for event in tx.events:
        ticket_id, kind = event[1], event[4]
        if ticket_id is None or (kind not in kinds and kind != "status_changed"):
            continue
        # Only a status change needs its data to say which event it is; the others' is read once
        # someone is to be told (planned).
        data = orjson.loads(event[5]) if kind == "status_changed" else event[5]
        name = notify_event(kind, data if kind == "status_changed" else {})
        if name in kinds:
            wanted.append((event[0], ticket_id, name, data, event[3], event[2]))
    rows = planned(tx.conn, config, wanted, tx.at)
    if rows:
        tx.conn.executemany("INSERT INTO outbox (ticket_id, event_id, event, rule, channel, recipient, audience, template, "
                            "context, status, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [(r["ticket_id"], r["event_id"], r["event"], r["rule"], r["channel"], r["recipient"],
                              r["audience"], r["template"], to_json(r["context"]), "pending", tx.at, tx.at) for r in rows])
    return len(rows)


def planned(conn: Any, config: NotifyConfig, wanted: list[tuple], at: str) -> list[dict[str, Any]]:
    """The outbox rows for `wanted` events, each (event id, ticket id, notify event, data (or its
    JSON text), actor, at): the ticket as it stands in this transaction, its watchers, and the
    people's contacts."""
    if not wanted:
        return []
    ids = sorted({w[1] for w in wanted})
    marks = ",".join("?" * len(ids))
    watchers: dict[int, list[str]] = {}
    for ticket_id, who in conn.execute(f"SELECT ticket_id, who FROM watchers WHERE ticket_id IN ({marks}) "
                                       "ORDER BY added_at, who", ids):
        watchers.setdefault(ticket_id, []).append(who)
    # Who each ticket could tell, from a few columns; the whole row only of those with someone.
    narrow = {row["id"]: dict(row) for row in conn.execute(
        f"SELECT {', '.join(RECIPIENT_FIELDS)} FROM tickets WHERE id IN ({marks})", ids)}
    names = {str(n).strip().casefold() for t in narrow.values() for n in (t.get("assignee"), t.get("requester")) if n}
    names |= {w.casefold() for ws in watchers.values() for w in ws if "@" not in w}
    names |= {who[5:].casefold() for rule in config.rules for who in rule.to if who.startswith("user:")}
    names |= {str(w[4]).casefold() for w in wanted}
    for w in wanted:  # a catalog request's approvers, named in its approval events
        if w[2] in APPROVAL_EVENTS:
            data = orjson.loads(w[3]) if isinstance(w[3], str) else w[3]
            names |= {str(a).casefold() for a in data.get("approvers") or ()}
    names |= {str(s).removeprefix("user:").casefold() for group in config.subscribers.values()
              for who in group.values() for s in who if "@" not in s}
    contacts = _contacts(conn, names)
    wanted = [w for w in wanted if w[1] in narrow and may_tell(config, w[2], narrow[w[1]], watchers.get(w[1], []),
                                                                contacts)]
    ids = sorted({w[1] for w in wanted})
    marks = ",".join("?" * len(ids))
    tickets = {row["id"]: dict(row) for row in conn.execute(f"SELECT * FROM tickets WHERE id IN ({marks})", ids)} \
        if ids else {}
    now = clock.parse(at)
    rows = []
    for event_id, ticket_id, name, data, actor, event_at in wanted:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            continue
        if isinstance(data, str):
            data = orjson.loads(data)
        mine = contacts.get(actor.casefold(), {})
        actor_addresses = frozenset(filter(None, (actor.casefold(), str(mine.get("email") or "").casefold() or None,
                                                  str(data.get("from") or "").casefold() or None)))
        for m in plan(config, name, data, actor=actor, at=event_at, ticket=_Ticket(ticket),
                      values=functools.partial(_values, ticket, now),
                      watchers=watchers.get(ticket_id, []), contacts=contacts, actor_addresses=actor_addresses):
            rows.append({"ticket_id": ticket_id, "event_id": event_id, "event": m.event, "rule": m.rule,
                         "channel": m.channel, "recipient": m.recipient, "audience": m.audience,
                         "template": m.template, "context": m.context})
    return rows


def _ticket(row: Any) -> dict[str, Any]:
    t = dict(row)
    for name in ("labels", "tags"):
        if isinstance(t.get(name), str):
            t[name] = orjson.loads(t[name])
    return t


def _values(ticket: dict[str, Any], now: datetime) -> Any:
    """What a rule's condition reads of a ticket (triage's values)."""
    from ..triage import values_of

    return values_of(_ticket(ticket), {}, {}, now)


class _Ticket(dict):
    """A ticket's row whose JSON columns (labels, tags) are read when first asked for: a message's
    context for the desk's own people shows them, most plans never look."""

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        if key in ("labels", "tags") and isinstance(value, str):
            value = self[key] = orjson.loads(value)
        return value


def _contacts(conn: Any, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    names = sorted(names)
    if not names:
        return {}
    return {row["key"]: {"email": row["email"], "chat": row["chat"], "name": row["name"]}
            for row in conn.execute(f"SELECT key, name, email, chat FROM users WHERE key IN ({','.join('?' * len(names))})",
                                    names)}


class OutboxStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    # -- delivery ------------------------------------------------------------------------------

    def claim(self, config: NotifyConfig, *, now: datetime, token: str, lease: timedelta, limit: int = 500,
              actor: str) -> list[dict[str, Any]]:
        """The messages to send now, claimed for `lease` under `token`: a list of batches, each
        {"key": (ticket, channel, recipient), "batch": id, "rows": [...]}, each ticket's in the
        order they were queued. A ticket whose earliest message to someone waits (a retry's
        backoff, the coalescing window, the hourly cap) sends them nothing: its later messages
        wait behind it, so no one is told out of order. A batch claimed before is resent as it
        was (its Message-ID and idempotency key are its first row's)."""
        at = clock.iso(now)
        out: list[dict[str, Any]] = []
        # A look before the write lock: serve looks five times a second, mostly at nothing due.
        if self.db.conn.execute("SELECT 1 FROM outbox WHERE status = 'pending' AND due_at <= ? LIMIT 1",
                                (at,)).fetchone() is None:
            return out
        with self.db.write(actor, need="agent", what="delivering messages") as tx:
            keys = list(dict.fromkeys(
                (r[0], r[1], r[2]) for r in tx.conn.execute(
                    "SELECT ticket_id, channel, recipient FROM outbox WHERE status = 'pending' AND due_at <= ? "
                    "AND (lease_at IS NULL OR lease_at < ?) ORDER BY id LIMIT ?", (at, at, limit))))
            by_recipient: dict[tuple[str, str], list[tuple]] = {}
            for key in keys:
                by_recipient.setdefault((key[1], key[2]), []).append(key)
            for (channel, recipient), their_keys in by_recipient.items():
                batches = self._recipients_batches(tx, channel, recipient, their_keys, config, now)
                for b in batches:
                    tx.conn.execute(f"UPDATE outbox SET batch = ?, lease_at = ?, token = ? WHERE id IN "
                                    f"({','.join('?' * len(b['rows']))})",
                                    [b["batch"], clock.iso(now + lease), token, *[r["id"] for r in b["rows"]]])
                out += batches
                if sum(len(b["rows"]) for b in out) >= limit:
                    break
        return out

    def _recipients_batches(self, tx: Tx, channel: str, recipient: str, keys: list[tuple], config: NotifyConfig,
                            now: datetime) -> list[dict[str, Any]]:
        """One recipient's messages to send now, over one channel, from the tickets `keys` name:
        per ticket, the batches claimed before, then what waits: one message when coalescing,
        else one each. A person (an email recipient; a chat channel has no share) gets at most
        `per_hour` messages an hour: the last one allowed carries all the rest, every ticket's,
        as one digest, and with none left they wait for the hour (due_at moved, as for the
        coalescing window)."""
        limits = config.limits
        person = channel in config.channels and config.channels[channel].email
        sent, oldest = 0, None
        if person:
            sent, oldest = tx.conn.execute(
                "SELECT count(DISTINCT batch), min(sent_at) FROM outbox WHERE recipient = ? AND channel = ? "
                "AND status = 'delivered' AND sent_at >= ?",
                (recipient, channel, clock.iso(now - timedelta(hours=1)))).fetchone()
            sent = sent or 0
        again: list[dict[str, Any]] = []  # batches claimed before: resent as they were
        fresh: list[list[dict[str, Any]]] = []  # each ticket's rows that no message carried yet
        for key in keys:
            rows = [dict(r) for r in tx.conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND ticket_id = ? AND channel = ? "
                "AND recipient = ? ORDER BY id LIMIT 1000", key)]
            if not rows or clock.parse(rows[0]["due_at"]) > now or (
                    rows[0]["lease_at"] and clock.parse(rows[0]["lease_at"]) >= now):
                continue
            for r in rows:
                if r["batch"] is None:
                    continue
                if again and again[-1]["batch"] == r["batch"]:
                    again[-1]["rows"].append(r)
                else:
                    again.append({"key": key, "batch": r["batch"], "rows": [r]})
            if any(b["key"] == key for b in again):
                continue  # the new ones go after those are through
            last = tx.conn.execute("SELECT max(sent_at) FROM outbox WHERE ticket_id = ? AND channel = ? AND "
                                   "recipient = ? AND status = 'delivered'", key).fetchone()[0]
            waiting = [r for r in rows if r["batch"] is None]
            when = due(clock.parse(waiting[0]["due_at"]), clock.parse(last) if last else None, limits)
            if when > now:
                self._hold(tx, key, when)
                continue
            fresh.append(waiting)
        messages = [[r] for rows in fresh for r in rows] if not limits.coalesce else fresh
        allowed = limits.per_hour - sent - len(again) if person else len(messages)
        if messages and allowed <= 0:
            until = clock.parse(oldest) + timedelta(hours=1) if oldest else now + timedelta(hours=1)
            for rows in fresh:
                self._hold(tx, (rows[0]["ticket_id"], channel, recipient), until)
            return again
        if len(messages) > allowed:  # the last message allowed this hour carries the rest
            messages = [*messages[:allowed - 1], [r for m in messages[allowed - 1:] for r in m]]
        out = list(again)
        for rows in messages:
            for i in range(0, len(rows), MAX_BATCH):
                out.append({"key": (rows[i]["ticket_id"], channel, recipient), "batch": rows[i]["id"],
                            "rows": rows[i:i + MAX_BATCH]})
        return out

    @staticmethod
    def _hold(tx: Tx, key: tuple, until: datetime) -> None:
        tx.conn.execute("UPDATE outbox SET due_at = ? WHERE status = 'pending' AND ticket_id = ? AND channel = ? "
                        "AND recipient = ? AND batch IS NULL", (clock.iso(until), *key))

    def desk_tag(self) -> str:
        """What makes this desk's Message-IDs and idempotency keys its own: the start of its hash
        chain (the same after a move to another backend)."""
        row = self.db.conn.execute("SELECT hash FROM events ORDER BY id LIMIT 1").fetchone()
        return (row[0] if row else "0" * 16)[:16]

    def threading(self, ticket_id: int | None, *, recipient: str) -> list[str]:
        """The Message-IDs a message to `recipient` on the ticket refers to (References, the last
        one In-Reply-To): the mail that opened the ticket, and the desk's last to them on it;
        never a message someone else was sent."""
        if ticket_id is None:
            return []
        conn = self.db.conn
        first = conn.execute("SELECT message_id FROM mail_messages WHERE ticket_id = ? ORDER BY rowid LIMIT 1",
                             (ticket_id,)).fetchone()
        last = conn.execute("SELECT message_id FROM outbox WHERE ticket_id = ? AND recipient = ? AND status = 'delivered' "
                            "AND message_id IS NOT NULL ORDER BY sent_at DESC, id DESC LIMIT 1",
                            (ticket_id, recipient)).fetchone()
        return [m for m in dict.fromkeys(r[0] for r in (first, last) if r) if not m.startswith(("(", "sha256:"))]

    def results(self, done: list[dict[str, Any]], *, config: NotifyConfig, now: datetime, token: str,
                actor: str) -> None:
        """Record what became of claimed batches: each {"batch", "ids", "error" (None: delivered),
        "message_id", "final" (a failure no retry mends: a template that does not render)}; a
        claimed batch not in `done` is released as it was (its key stopped at an earlier failure)."""
        at = clock.iso(now)
        with self.db.write(actor, need="agent", what="delivering messages") as tx:
            for d in done:
                marks = ",".join("?" * len(d["ids"]))
                if d["error"] is None:
                    tx.conn.execute(f"UPDATE outbox SET status = 'delivered', sent_at = ?, lease_at = NULL, token = NULL, "
                                    f"attempts = attempts + 1, error = NULL, message_id = ? WHERE id IN ({marks}) "
                                    "AND token = ?", [at, d.get("message_id"), *d["ids"], token])
                    if d.get("message_id") and d.get("ticket_id") is not None:
                        tx.conn.execute("INSERT INTO mail_messages (message_id, ticket_id, received_at) VALUES (?, ?, ?) "
                                        "ON CONFLICT (message_id) DO NOTHING", (d["message_id"], d["ticket_id"], at))
                    continue
                attempts = 1 + max(r[0] for r in tx.conn.execute(f"SELECT attempts FROM outbox WHERE id IN ({marks})",
                                                                  d["ids"]))
                dead = d.get("final") or attempts >= config.limits.attempts
                tx.conn.execute(f"UPDATE outbox SET status = ?, attempts = ?, error = ?, due_at = ?, lease_at = NULL, "
                                f"token = NULL WHERE id IN ({marks}) AND token = ?",
                                ["dead" if dead else "pending", attempts, str(d["error"])[:1000],
                                 clock.iso(now + backoff(attempts, config.limits)), *d["ids"], token])
            tx.conn.execute("UPDATE outbox SET lease_at = NULL, token = NULL WHERE token = ? AND status = 'pending'",
                            (token,))

    # -- what people read and do ---------------------------------------------------------------

    def preview(self, config: NotifyConfig, *, ticket_id: int, on: str, actor: str) -> list[dict[str, Any]]:
        """The messages the event `on` (as notify.yaml names it) on the ticket would queue now, as
        rows (nothing is written): its data made from the ticket (its last reply, its
        resolution, its last stakeholder update)."""
        conn = self.db.conn
        t = conn.execute("SELECT status, resolution, assignee FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if t is None:
            raise NotFound(f"no ticket {ref(ticket_id)}")
        # Its last such event's data (a resolution is a status change), else an example's.
        last = conn.execute("SELECT data FROM events WHERE ticket_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                            (ticket_id, on)).fetchone()
        data: dict[str, Any] = orjson.loads(last[0]) if last else dict(SAMPLE_DATA.get(on, {}))
        if on == "resolved" and t["resolution"]:
            data["resolution"] = t["resolution"]
        if on in ("paged", "escalated") and not last:
            data["users"] = [t["assignee"] or "(on call)"]
        return planned(conn, config, [(None, ticket_id, on, data, actor, clock.now_iso())], clock.now_iso())

    def messages(self, *, status: str | None = None, ticket_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        if status:
            if status not in STATUSES:
                raise BadInput(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
            where.append("status = ?")
            params.append(status)
        if ticket_id is not None:
            where.append("ticket_id = ?")
            params.append(ticket_id)
        sql = (f"SELECT {OUTBOX_COLUMNS} FROM outbox {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY id DESC LIMIT ?")
        return [_shown(r) for r in self.db.conn.execute(sql, [*params, limit])]

    def message(self, message_id: int) -> dict[str, Any]:
        row = self.db.conn.execute(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise NotFound(f"no message {message_id} in the outbox (sdesk outbox list)")
        return _shown(row, context=True)

    def counts(self) -> dict[str, int]:
        return {status: n for status, n in self.db.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status")}

    def dead(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.messages(status="dead", limit=limit)

    def retry(self, ids: list[int] | None, *, actor: str) -> int:
        """Dead (or pending) messages due again now, their tries counted from zero; `ids` None: every dead one."""
        with self.db.write(actor, what="retrying messages") as tx:
            if ids is None:
                return tx.conn.execute("UPDATE outbox SET status = 'pending', attempts = 0, due_at = ?, lease_at = NULL "
                                       "WHERE status = 'dead'", (tx.at,)).rowcount
            self._exist(tx, ids)
            return tx.conn.execute(f"UPDATE outbox SET status = 'pending', attempts = 0, due_at = ?, lease_at = NULL "
                                   f"WHERE id IN ({','.join('?' * len(ids))}) AND status IN ('dead', 'pending')",
                                   [tx.at, *ids]).rowcount

    def drop(self, ids: list[int], *, actor: str) -> int:
        """Messages that will never be sent (on record as dropped)."""
        with self.db.write(actor, what="dropping messages") as tx:
            self._exist(tx, ids)
            return tx.conn.execute(f"UPDATE outbox SET status = 'dropped', lease_at = NULL WHERE id IN "
                                   f"({','.join('?' * len(ids))}) AND status IN ('dead', 'pending')", ids).rowcount

    @staticmethod
    def _exist(tx: Tx, ids: list[int]) -> None:
        found = {r[0] for r in tx.conn.execute(f"SELECT id FROM outbox WHERE id IN ({','.join('?' * len(ids))})", ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"no message {missing[0]} in the outbox (sdesk outbox list)")

    # -- watchers -------------------------------------------------------------------------------

    def watch(self, ticket_id: int, *, who: str, actor: str, remove: bool = False) -> bool:
        """Add (or remove) a watcher: an email address (kept lower-cased) or a user's name."""
        from ..domain.notify import ADDRESS

        who = who.strip()
        if "@" in who:
            if not ADDRESS.match(who):
                raise BadInput(f"watch: {who!r} is not an email address")
            who = who.casefold()
        with self.db.write(actor, what="changing who watches a ticket") as tx:
            if tx.conn.execute("SELECT 1 FROM tickets WHERE id = ?", (ticket_id,)).fetchone() is None:
                raise NotFound(f"no ticket {ref(ticket_id)}")
            if "@" not in who:
                row = tx.conn.execute("SELECT name FROM users WHERE key = ?", (who.casefold(),)).fetchone()
                if row is None:
                    raise NotFound(f"watch: no user {who!r} (an email address, or a user of sdesk user list)")
                who = row[0]
            if remove:
                changed = tx.conn.execute("DELETE FROM watchers WHERE ticket_id = ? AND who = ?", (ticket_id, who)).rowcount
            else:
                changed = tx.conn.execute("INSERT INTO watchers (ticket_id, who, added_by, added_at) VALUES (?, ?, ?, ?) "
                                          "ON CONFLICT (ticket_id, who) DO NOTHING",
                                          (ticket_id, who, tx.actor, tx.at)).rowcount
            if changed:
                tx.event(ticket_id, "unwatched" if remove else "watched", {"who": who})
        return bool(changed)

    @staticmethod
    def watches(tx: Tx, ticket_id: int, *, address: str) -> bool:
        return tx.conn.execute("SELECT 1 FROM watchers WHERE ticket_id = ? AND who = ?",
                               (ticket_id, address.casefold())).fetchone() is not None

    def watchers(self, ticket_id: int) -> list[str]:
        return [r[0] for r in self.db.conn.execute("SELECT who FROM watchers WHERE ticket_id = ? ORDER BY added_at, who",
                                                   (ticket_id,))]

    # -- stakeholder updates ----------------------------------------------------------------------

    def incident_update(self, ticket_id: int, *, state: str, text: str, actor: str) -> dict[str, Any]:
        from ..domain.notify import INCIDENT_STATES

        if state not in INCIDENT_STATES:
            raise BadInput(f"status: {state!r}: expected one of {', '.join(INCIDENT_STATES)}")
        with self.db.write(actor, what="posting an incident update") as tx:
            row = tx.conn.execute("SELECT kind, queue FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
            if row is None:
                raise NotFound(f"no ticket {ref(ticket_id)}")
            if row["kind"] != "incident":
                raise Conflict(f"status: {ref(ticket_id)} is a {row['kind']}: stakeholder updates (and the status page) "
                               "are for incidents")
            tx.check(row["queue"], ticket_id)
            text = tx.clean(text.strip(), ticket_id)
            tx.conn.execute("INSERT INTO incident_updates (ticket_id, at, state, text, actor) VALUES (?, ?, ?, ?, ?)",
                            (ticket_id, tx.at, state, text, tx.actor))
            tx.event(ticket_id, "incident_update", {"state": state, "text": text})
        return {"ticket": ticket_id, "state": state, "text": text}

    def incidents_since(self, since: datetime) -> list[dict[str, Any]]:
        """The tickets with stakeholder updates since `since`, newest first, each with its updates (newest first)."""
        rows = self.db.conn.execute(
            "SELECT u.ticket_id, u.at, u.state, u.text, t.title, t.service, t.ci, t.status, t.priority, t.created_at, "
            "t.resolved_at FROM incident_updates u JOIN tickets t ON t.id = u.ticket_id "
            "WHERE u.ticket_id IN (SELECT ticket_id FROM incident_updates WHERE at >= ?) ORDER BY u.at DESC, u.id DESC",
            (clock.iso(since),))
        found: dict[int, dict[str, Any]] = {}
        for r in rows:
            t = found.setdefault(r["ticket_id"], {
                "ticket": r["ticket_id"], "ref": ref(r["ticket_id"]), "title": r["title"], "service": r["service"],
                "ci": r["ci"], "status": r["status"], "priority": r["priority"], "created_at": clock.iso(clock.parse(str(r["created_at"]))),
                "resolved_at": r["resolved_at"] and clock.iso(clock.parse(str(r["resolved_at"]))), "updates": []})
            t["updates"].append({"at": clock.iso(clock.parse(str(r["at"]))), "state": r["state"], "text": r["text"]})
        return list(found.values())


def _shown(row: Any, context: bool = False) -> dict[str, Any]:
    m = dict(row)
    for name in ("created_at", "due_at", "lease_at", "sent_at"):
        if m.get(name) is not None:
            m[name] = clock.iso(clock.parse(str(m[name])))
    m["context"] = orjson.loads(m["context"]) if context else None
    if not context:
        del m["context"]
    m["ref"] = ref(m["ticket_id"]) if m["ticket_id"] is not None else None
    return m
