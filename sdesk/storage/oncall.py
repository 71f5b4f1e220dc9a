"""The Store's on-call overrides (a part of `Store`, split out to keep files small). Schedules
live in the desk config; who covers instead, and when, is history, so it lives here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..domain import clock
from .migrations import OPEN_SQL, covered_sql
from .rows import Db, Tx

if TYPE_CHECKING:
    import sqlite3

    from ..domain.routing import OnCall, Override
    from .tickets import TicketStore


# A child whose parent covers it does not page: the parent is at least as urgent and is
# acknowledged, or open (it pages for both). A child more urgent than its parent pages itself.
COVERED = covered_sql("tickets", "parent.acknowledged_at IS NOT NULL OR parent.status NOT IN ('resolved', 'closed')")


def _step(step: int, levels: int) -> str:
    """A policy's step (1, 2, ... over its levels and repeats) as `pages` shows it: round.level."""
    round_, level = divmod(step - 1, levels)
    return f"{round_ + 1}.{level + 1}"




class OnCallStore:
    def __init__(self, db: Db, *, tickets: TicketStore) -> None:
        self.db = db
        self.tickets = tickets

    def overrides(self, *, schedule: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[Override]:
        """Overrides (of one schedule) that end after `since` and start before `until`."""
        args: list[Any]
        sql, args = "SELECT schedule, \"user\", starts_at, ends_at FROM oncall_overrides WHERE TRUE", []
        if schedule is not None:
            sql, args = sql + " AND schedule = ?", [*args, schedule]
        if since is not None:
            sql, args = sql + " AND ends_at > ?", [*args, clock.iso(since)]
        if until is not None:
            sql, args = sql + " AND starts_at < ?", [*args, clock.iso(until)]
        from ..domain.routing import Override

        return [Override(s, u, clock.parse(a), clock.parse(b)) for s, u, a, b in self.db.conn.execute(sql + " ORDER BY starts_at", args)]

    def override_add(self, override: Override, *, config: OnCall, reason: str | None,
                     actor: str) -> dict[str, Any]:
        from ..domain.routing import check_override

        with self.db.write(actor) as tx:
            check_override(override, config, self.overrides(schedule=override.schedule, since=override.start,
                                                            until=override.end))
            reason = tx.clean(reason)
            row = (override.schedule, override.user, clock.iso(override.start), clock.iso(override.end), reason,
                   actor, tx.at)
            override_id = tx.conn.execute(
                'INSERT INTO oncall_overrides (schedule, "user", starts_at, ends_at, reason, created_by, created_at) '
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id", row).fetchone()[0]
            data = {"id": override_id, "schedule": override.schedule, "user": override.user,
                    "starts_at": row[2], "ends_at": row[3], "reason": reason}
            tx.event(None, "oncall_override", data)
        return data

    def on_call_now(self, config: OnCall, *, schedules: list[Any], when: datetime) -> list[dict[str, Any]]:
        """Who holds each schedule's pager at `when`, by which layer or override, and until when
        the pager changes hands (a layer changing under the same person is no handoff)."""
        from datetime import timedelta

        from ..domain.routing import on_call, shifts

        teams_of: dict[str | None, list[str]] = {}
        for t in config.teams.values():
            teams_of.setdefault(t.schedule, []).append(t.name)
        rows = []
        for schedule in schedules:
            overrides = self.overrides(schedule=schedule.name, since=when, until=when + timedelta(days=60))
            user, source = on_call(schedule, overrides, when)
            until = next((x.start for x in shifts(schedule, overrides, when, when + timedelta(days=60))
                          if x.user != user), None)
            rows.append({"schedule": schedule.name, "teams": teams_of.get(schedule.name, []), "user": user,
                         "from": source or None, "until": clock.iso(until) if until else None})
        return rows

    # -- paging ---------------------------------------------------------------------------

    def page_due(self, oncall: OnCall, *, now: datetime, actor: str) -> list[dict[str, Any]]:
        """Record the pages that are due by `now` for open, unacknowledged tickets that page
        (not suppressed, not a child its parent covers), each once: a `paged` event per level
        fired. A P1 or P2 no policy covers, or a level that finds nobody on call, is recorded
        as an `undeliverable` page (user "") with why: a page that reached nobody is on record,
        and `unreached` finds it. Returned: each level fired (its users paged), and each such
        record made now (`users` empty, `undeliverable` why), so that tick counts every page."""
        from datetime import timedelta

        from ..domain.escalation import due, nobody, policy_for, unrouted
        from ..domain.routing import DEFAULT_PAGE

        # A ticket no policy covers still pages by default (P1, P2): it pages nobody, loudly.
        priorities = sorted(DEFAULT_PAGE.union(*(p.page for p in oncall.escalation.values())))
        new: list[dict[str, Any]] = []
        with self.db.write(actor) as tx:
            # OPEN_SQL as the open-queue index states it, so that the scan is of open tickets only.
            rows = tx.conn.execute(
                f"SELECT id, priority, team, queue, created_at, escalation_level FROM tickets "
                f"WHERE {OPEN_SQL} AND status IN ('new', 'triaged', 'assigned') AND acknowledged_at IS NULL "
                f"AND suppressed IS NULL AND NOT {COVERED} AND priority IN ({','.join('?' * len(priorities))}) "
                "ORDER BY priority, id", priorities).fetchall()
            overrides = self.overrides(since=now - timedelta(days=30), until=now) if rows else []
            fired: dict[int, dict[tuple[int, int], datetime]] = {}
            ids = [t["id"] for t in rows]
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                for ticket_id, round_, level, at in tx.conn.execute(
                        f"SELECT ticket_id, round, level, min(due_at) FROM pages WHERE ticket_id IN "
                        f"({','.join('?' * len(part))}) GROUP BY ticket_id, round, level", part):
                    fired.setdefault(ticket_id, {})[round_, level] = clock.parse(at)
            for t in rows:
                policy = policy_for(dict(t), oncall)
                if policy is None:
                    if t["priority"] in DEFAULT_PAGE:
                        # Round 0, level 0: before any policy's levels, so that a policy added
                        # later still starts at its first level.
                        why = unrouted(dict(t), oncall)
                        if self._undeliverable(tx, t["id"], 0, 0, now, why):
                            new.append({"ticket": t["id"], "policy": None, "round": 0, "level": 0, "users": [],
                                        "due_at": clock.iso(now), "undeliverable": why})
                    continue
                if t["priority"] not in policy.page:
                    continue
                for d in due(policy, oncall, overrides, created=clock.parse(t["created_at"]),
                             manual_level=t["escalation_level"], now=now, fired=fired.get(t["id"])):
                    if not d.users:  # the level fired and found nobody: on record, and the next level follows
                        why = nobody(policy.levels[d.level - 1].targets)
                        if self._undeliverable(tx, t["id"], d.round, d.level, d.at, why):
                            new.append({"ticket": t["id"], "policy": policy.name, "round": d.round, "level": d.level,
                                        "users": [], "due_at": clock.iso(d.at), "undeliverable": why})
                        continue
                    paged = [user for user in d.users if tx.conn.execute(
                        'INSERT INTO pages (ticket_id, round, level, "user", due_at, status, next_attempt_at) '
                        "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (ticket_id, round, level, \"user\") DO NOTHING",
                        (t["id"], d.round, d.level, user, clock.iso(d.at), clock.iso(d.at))).rowcount]
                    if paged:
                        data = {"policy": policy.name, "round": d.round, "level": d.level, "users": paged,
                                "due_at": clock.iso(d.at)}
                        tx.event(t["id"], "paged" if (d.round, d.level) == (1, 1) else "escalated", data)
                        new.append({"ticket": t["id"], **data})
        return new

    def _undeliverable(self, tx: Tx, ticket_id: int, round_: int, level: int, at: datetime, why: str) -> bool:
        """A page that has nobody to go to, on record once (as `pages` shows it); whether it is new."""
        if tx.conn.execute('INSERT INTO pages (ticket_id, round, level, "user", due_at, status, error) '
                           "VALUES (?, ?, ?, '', ?, 'undeliverable', ?) ON CONFLICT (ticket_id, round, level, \"user\") DO NOTHING",
                           (ticket_id, round_, level, clock.iso(at), why)).rowcount:
            tx.event(ticket_id, "page_undeliverable", {"round": round_, "level": level, "user": None, "reason": why})
            return True
        return False

    def pages_undeliverable(self, pages: list[dict[str, Any]], *, why: str, actor: str) -> None:
        """Pages raised for people that no channel can carry (no notifier): on record as such."""
        with self.db.write(actor) as tx:
            for page in pages:
                if tx.conn.execute("UPDATE pages SET status = 'undeliverable', error = ?, claim = NULL "
                                   "WHERE id = ? AND status IN ('pending', 'sending')", (why, page["id"])).rowcount:
                    tx.event(page["ticket_id"], "page_undeliverable", {"page": page["id"], "round": page["round"],
                                                                       "level": page["level"], "user": page["user"],
                                                                       "reason": why})

    def revive_pages(self, reachable: Callable[[str], bool], *, now: datetime, actor: str) -> int:
        """Undeliverable pages to a person whose ticket still pages, due again now where
        `reachable(user)` says something reaches them since (a notifier added, a contact given):
        an undeliverable page is not the end of trying. Returns how many."""
        with self.db.write(actor) as tx:
            rows = tx.conn.execute(
                'SELECT p.id, p."user" FROM pages p JOIN tickets t ON t.id = p.ticket_id '
                "WHERE p.status = 'undeliverable' AND t.acknowledged_at IS NULL "
                "AND t.status IN ('new', 'triaged', 'assigned') AND t.suppressed IS NULL").fetchall()
            ids = [r[0] for r in rows if r[1] and reachable(r[1])]
            if ids:
                tx.conn.execute(f"UPDATE pages SET status = 'pending', next_attempt_at = ?, error = NULL, claim = NULL "
                                f"WHERE id IN ({','.join('?' * len(ids))})", [clock.iso(now), *ids])
        return len(ids)

    def unreached(self, oncall: OnCall) -> list[dict[str, Any]]:
        """Tickets that would page now and have reached nobody: open, unacknowledged, not
        suppressed nor covered by a parent, with an undeliverable page and none delivered or
        on its way. `sdesk tick` warns of each, every time, until someone is reachable."""
        from ..domain.routing import DEFAULT_PAGE

        priorities = sorted(DEFAULT_PAGE.union(*(p.page for p in oncall.escalation.values())))
        # The open tickets that page (as page_due scans them), then each one's pages by its id.
        rows = self.db.conn.execute(
            f"SELECT id, priority, (SELECT error FROM pages WHERE ticket_id = tickets.id AND status = 'undeliverable' "
            f"ORDER BY id DESC LIMIT 1) AS reason FROM tickets WHERE {OPEN_SQL} AND acknowledged_at IS NULL "
            f"AND status IN ('new', 'triaged', 'assigned') AND suppressed IS NULL "
            f"AND priority IN ({','.join('?' * len(priorities))}) AND NOT {COVERED} "
            f"AND EXISTS (SELECT 1 FROM pages WHERE ticket_id = tickets.id AND status = 'undeliverable') "
            f"AND NOT EXISTS (SELECT 1 FROM pages WHERE ticket_id = tickets.id "
            f"AND status IN ('pending', 'sending', 'delivered')) ORDER BY priority, id", priorities)
        return [{"ticket": r[0], "priority": r[1], "reason": r[2]} for r in rows]

    def escalate(self, *, ticket_id: int, config: OnCall, actor: str) -> tuple[int, int]:
        """Move a ticket to its next escalation level now (`sdesk tick` pages it): that step as
        (round, level), as `pages` numbers it. Past the policy's last step (its levels, repeated)
        there is none: a Conflict, and nothing is recorded."""
        from ..domain.escalation import policy_for
        from ..domain.lifecycle import ref
        from ..errors import Conflict

        with self.db.write(actor) as tx:
            t = self.tickets._current(tx, ticket_id)
            if t["acknowledged_at"] or t["status"] in ("resolved", "closed"):
                raise Conflict(f"{ref(ticket_id)} is {t['status']}: nothing to escalate")
            policy = policy_for(t, config)
            covered = t["parent_id"] is not None and tx.conn.execute(
                f"SELECT {COVERED} FROM tickets WHERE id = ?", (ticket_id,)).fetchone()[0]
            if policy is None or t["priority"] not in policy.page or t["suppressed"] or covered:
                why = "no escalation policy covers it" if policy is None else \
                    "it is suppressed" if t["suppressed"] else "its parent incident pages for it" if covered \
                    else f"{t['priority']} does not page under {policy.name}"
                raise Conflict(f"{ref(ticket_id)} cannot be escalated: {why}")
            # Level 0 is the record of a page no policy covered, not a step of this one.
            fired = tx.conn.execute("SELECT count(DISTINCT round * 1000 + level) FROM pages WHERE ticket_id = ? "
                                    "AND level > 0", (ticket_id,)).fetchone()[0]
            current = max(fired, t["escalation_level"])
            levels = len(policy.levels)
            if current >= levels * (policy.repeat + 1):
                raise Conflict(f"{ref(ticket_id)} is already at the last level ({_step(current, levels)}) of "
                               f"policy {policy.name}: there is no level to escalate to")
            step = current + 1
            round_, level = divmod(step - 1, levels)
            self.tickets._set(tx, ticket_id, {"escalation_level": step, "updated_at": tx.at})
            tx.event(ticket_id, "escalation_requested", {"step": step, "round": round_ + 1, "level": level + 1})
        return round_ + 1, level + 1

    def pages_to_send(self, now: datetime, *, actor: str) -> list[dict[str, Any]]:
        """Pages due for delivery. Those whose ticket no longer pages (acknowledged, done,
        suppressed, a child its parent covers) or that failed MAX_ATTEMPTS times are closed on record first."""
        from ..domain.escalation import MAX_ATTEMPTS

        at = clock.iso(now)
        with self.db.write(actor) as tx:
            # Per pending page, its ticket by id: never a scan of the tickets.
            tx.conn.execute(
                "UPDATE pages SET status = 'cancelled' WHERE status IN ('pending', 'sending') AND EXISTS "
                "(SELECT 1 FROM tickets WHERE tickets.id = pages.ticket_id AND (tickets.acknowledged_at IS NOT NULL "
                f"OR tickets.status IN ('resolved', 'closed') OR tickets.suppressed IS NOT NULL OR {COVERED}))")
            tx.conn.execute("UPDATE pages SET status = 'failed' WHERE status = 'pending' AND attempts >= ?",
                            (MAX_ATTEMPTS,))
            pages = [dict(r) for r in tx.conn.execute(
                "SELECT p.*, t.title, t.priority FROM pages p JOIN tickets t ON t.id = p.ticket_id "
                "WHERE p.status IN ('pending', 'sending') AND p.next_attempt_at <= ? ORDER BY p.id", (at,))]
            raised: dict[int, dict[str, Any] | None] = {}
            for page in pages:
                if page["ticket_id"] not in raised:
                    raised[page["ticket_id"]] = self._raised_by(tx.conn, page["ticket_id"], page["priority"])
                page["raised_by"] = raised[page["ticket_id"]]
            return pages

    def _raised_by(self, conn: sqlite3.Connection, ticket_id: int, priority: str) -> dict[str, Any] | None:
        """The child whose priority the ticket has (a `priority_raised` event that nobody's change
        of priority followed), with its title: the page of an incident raised by a child says what
        is wrong, which the incident's own title (a P3 warning, say) does not."""
        j = self.db.dialect.json_get
        # The child's id as a number on both (PostgreSQL's json_get reads every scalar as text).
        row = conn.execute(f"SELECT id, CAST({j('data', '$.child')} AS BIGINT), {j('data', '$.priority[1]')} FROM events "
                           "WHERE ticket_id = ? AND kind = 'priority_raised' ORDER BY id DESC LIMIT 1",
                           (ticket_id,)).fetchone()
        if row is None or row[2] != priority:
            return None
        if conn.execute("SELECT 1 FROM events WHERE ticket_id = ? AND id > ? AND ((kind = 'updated' AND "
                        f"{j('data', '$.priority')} IS NOT NULL) OR (kind = 'triaged' AND "
                        f"{j('data', '$.changes.priority')} IS NOT NULL)) LIMIT 1", (ticket_id, row[0])).fetchone():
            return None
        child = conn.execute("SELECT title, priority FROM tickets WHERE id = ?", (row[1],)).fetchone()
        return {"ticket": row[1], "title": child[0], "priority": child[1]} if child else None

    def failing(self, oncall: OnCall) -> list[dict[str, Any]]:
        """Pages of tickets that still page (open, unacknowledged, not suppressed nor covered by a
        parent, a priority that pages) whose delivery was tried and failed: waiting for a retry,
        or given up after MAX_ATTEMPTS. `sdesk tick` warns of each, every time, until it is
        delivered or the ticket acknowledged."""
        from ..domain.routing import DEFAULT_PAGE

        priorities = sorted(DEFAULT_PAGE.union(*(p.page for p in oncall.escalation.values())))
        rows = self.db.conn.execute(
            'SELECT pages.id, pages.ticket_id, tickets.priority, pages."user", pages.round, pages.level, pages.attempts, '
            "pages.error, pages.status FROM pages JOIN tickets ON tickets.id = pages.ticket_id "
            "WHERE pages.status IN ('pending', 'sending', 'failed') AND pages.attempts > 0 AND pages.error IS NOT NULL "
            "AND tickets.status IN ('new', 'triaged', 'assigned') AND tickets.acknowledged_at IS NULL "
            f"AND tickets.suppressed IS NULL AND tickets.priority IN ({','.join('?' * len(priorities))}) "
            f"AND NOT {COVERED} ORDER BY tickets.priority, pages.ticket_id, pages.id", priorities)
        return [{"page": r[0], "ticket": r[1], "priority": r[2], "user": r[3], "round": r[4], "level": r[5],
                 "attempts": r[6], "error": r[7], "retrying": r[8] != "failed"} for r in rows]

    def claim_pages(self, ids: list[int], *, token: str, now: datetime, hold: float, actor: str) -> list[int]:
        """Mark pages as being sent by this tick (`token`) for `hold` seconds; the ids claimed:
        a page another tick claimed meanwhile is not sent twice."""
        from datetime import timedelta

        at, until = clock.iso(now), clock.iso(now + timedelta(seconds=hold))
        with self.db.write(actor) as tx:
            marks = ",".join("?" * len(ids))
            tx.conn.execute(
                f"UPDATE pages SET status = 'sending', claim = ?, next_attempt_at = ? WHERE id IN ({marks}) "
                f"AND status IN ('pending', 'sending') AND next_attempt_at <= ?", (token, until, *ids, at))
            return [row[0] for row in tx.conn.execute(f"SELECT id FROM pages WHERE id IN ({marks}) AND claim = ? "
                                                      f"AND status = 'sending'", (*ids, token))]

    def page_result(self, page: dict[str, Any], *, error: str | None, sent_to: set[str], now: datetime,
                    token: str, actor: str, delivery: int | None = None) -> None:
        """A delivery's outcome, if this tick still holds the page: delivered (in the message
        that `delivery`, a page id, names), or pending again after a backoff, remembering the
        channels that took it so a retry goes to the others only."""
        from ..domain.escalation import backoff

        with self.db.write(actor) as tx:
            row = tx.conn.execute("SELECT attempts, sent_to FROM pages WHERE id = ? AND claim = ? AND status = 'sending'",
                                  (page["id"], token)).fetchone()
            if row is None:
                return
            attempts = row[0] + 1
            error = tx.clean(error)  # what a notifier answered can quote its URL, token and all
            channels = ",".join(sorted(set(filter(None, row[1].split(","))) | sent_to))
            if error is None:
                tx.conn.execute("UPDATE pages SET status = 'delivered', attempts = ?, delivered_at = ?, delivery = ?, "
                                "sent_to = ?, claim = NULL, error = NULL WHERE id = ?",
                                (attempts, clock.iso(now), delivery or page["id"], channels, page["id"]))
                tx.event(page["ticket_id"], "page_delivered", {"page": page["id"], "user": page["user"],
                                                               "attempts": attempts})
            else:
                tx.conn.execute("UPDATE pages SET status = 'pending', attempts = ?, next_attempt_at = ?, sent_to = ?, "
                                "claim = NULL, error = ? WHERE id = ?",
                                (attempts, clock.iso(now + backoff(attempts)), channels, error, page["id"]))
                tx.event(page["ticket_id"], "page_failed", {"page": page["id"], "user": page["user"],
                                                            "attempts": attempts, "error": error})

    def pages(self, *, ticket_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM pages" + (" WHERE ticket_id = ?" if ticket_id is not None else "") + " ORDER BY id"
        return [dict(r) for r in self.db.conn.execute(sql, (ticket_id,) if ticket_id is not None else ())]

    def release_ended_silences(self, now: datetime, *, actor: str) -> int:
        """Open tickets held by silences that have ended come back to the queue."""
        at = clock.iso(now)
        with self.db.write(actor) as tx:
            rows = tx.conn.execute(
                "SELECT t.id, t.suppressed FROM tickets t JOIN silences s ON t.suppressed = 'silence ' || s.id "
                "WHERE (s.ends_at <= ? OR s.expired_at IS NOT NULL) AND t.status NOT IN ('resolved', 'closed') "
                "ORDER BY s.id, t.id",
                (at,)).fetchall()
            for ticket_id, why in rows:
                tx.conn.execute("UPDATE tickets SET suppressed = NULL WHERE id = ?", (ticket_id,))
                tx.event(ticket_id, "unsuppressed", {"was": why, "reason": "the silence is over"})
        return len(rows)

    # -- assignment -----------------------------------------------------------------------

    def assign_auto(self, *, ticket_id: int, config: OnCall, actor: str) -> dict[str, Any]:
        """Assign a ticket by its queue's strategy (oncall, round_robin, least_loaded)."""
        from ..domain.lifecycle import ref
        from ..errors import BadInput

        with self.db.write(actor) as tx:
            t = self.tickets._current(tx, ticket_id)
            user, why = self.pick_for_queue(t["queue"], config=config, now=clock.parse(tx.at))
            if user is None:
                raise BadInput(f"{ref(ticket_id)}: {why}; give a user")
            self.tickets._move(tx, t, "assign", assignee=user)
            tx.event(ticket_id, "auto_assigned", {"assignee": user, "queue": t["queue"], "why": why})
        return {"id": ticket_id, "assignee": user, "strategy": config.queues[t["queue"]].strategy, "why": why}

    def pick_for_queue(self, queue_name: str | None, *, config: OnCall, now: datetime) -> tuple[str | None, str]:
        """Who the queue's strategy gives its next ticket to (None, and why, when nobody)."""
        from ..domain.routing import LOAD_WEIGHTS, pick_assignee

        queue = config.queues.get(queue_name or "")
        if queue is None:
            return None, f"its queue {queue_name!r} is not in oncall.yaml `queues`"
        members = list(config.teams[queue.team].members)
        weight = " ".join(f"WHEN '{p}' THEN {w}" for p, w in LOAD_WEIGHTS.items())
        load = dict(self.db.conn.execute(
            f"SELECT assignee, sum(CASE priority {weight} ELSE 1 END) FROM tickets WHERE assignee IN "
            f"({','.join('?' * len(members))}) AND status NOT IN ('resolved', 'closed') GROUP BY assignee", members))
        last = self.db.conn.execute("SELECT assignee FROM tickets WHERE queue = ? AND assignee IS NOT NULL "
                                 "ORDER BY id DESC LIMIT 1", (queue.name,)).fetchone()
        schedule = config.teams[queue.team].schedule
        overrides = self.overrides(schedule=schedule, since=now, until=now) if schedule else []
        return pick_assignee(queue, config, overrides, now, load, last[0] if last else None)

    def deliveries_since(self, user: str, *, since: datetime) -> tuple[int, datetime]:
        """How many deliveries `user` got since `since` (a batch counts once), and the oldest."""
        row = self.db.conn.execute(
            "SELECT count(DISTINCT delivery), min(delivered_at) FROM pages WHERE \"user\" = ? AND status = 'delivered' "
            "AND delivered_at > ?", (user, clock.iso(since))).fetchone()
        return row[0], clock.parse(row[1]) if row[1] else since

    def hold_pages(self, ids: list[int], *, until: datetime, actor: str) -> None:
        """Pages over a person's hourly limit: back to pending, to go when the hour allows."""
        with self.db.write(actor) as tx:
            tx.conn.executemany("UPDATE pages SET status = 'pending', next_attempt_at = ? WHERE id = ?",
                                [(clock.iso(until), page_id) for page_id in ids])
