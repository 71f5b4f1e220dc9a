"""The Store's KPI aggregates (a part of `Store`): sums, means and nearest-rank percentiles
computed in SQL over the window's tickets, so that a report over a million tickets reads no
row into Python that it does not need. The arithmetic on the sums is in metrics.py."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..domain import clock
from ..errors import BadInput
from .migrations import covered_sql
from .rows import Db, Tx

if TYPE_CHECKING:
    from .dialect import Dialect
    from .tickets import TicketStore

def _group_sql(d: Dialect) -> dict[str, str]:
    return {"priority": "priority", "kind": "kind", "queue": "coalesce(queue, '(none)')",
            "team": "coalesce(team, '(none)')", "service": "coalesce(service, '(none)')",
            "assignee": "coalesce(assignee, '(none)')",
            "week": d.week_start("created_at")}  # the Monday (UTC) starting its week


@functools.cache
def _fragments(d: Dialect) -> tuple[str, str, str, str]:
    """(moved, escalated, reopened, resolved): what a ticket was at the window's end (:until),
    not now: a ticket reopened or escalated since counts as it stood then. Made once per dialect."""
    j = d.json_get
    # Moved to another assignee, or triage's queue or category corrected: the partial index
    # events_reassigned holds these (its condition is repeated whole, so that the planner uses it),
    # read once into a set (a correlated EXISTS probes that index once per ticket: a second of a
    # million-ticket report on PostgreSQL). ticket_id IS NOT NULL: where the set holds a NULL, IN
    # is NULL, not false, for the tickets not in it.
    moved = ("w.id IN (SELECT ticket_id FROM events WHERE (kind = 'triage_corrected' "
             f"OR (kind = 'assigned' AND {j('data', '$.previous_assignee')} IS NOT NULL)) "
             f"AND NOT (kind = 'assigned' AND {j('data', '$.previous_assignee')} = {j('data', '$.assignee')}) "
             "AND at < :until AND ticket_id IS NOT NULL)")
    # The escalated tickets read once from the partial index events_escalated (a correlated
    # EXISTS walks each ticket's events by events_ticket: twice as slow at 100k tickets).
    escalated = ("w.id IN (SELECT ticket_id FROM events WHERE kind IN ('escalated', 'escalation_requested') "
                 "AND at < :until AND ticket_id IS NOT NULL)")
    # Only tickets ever reopened (reopen_count) read their events for their resolution; the
    # others' resolved_at is the one.
    reopened = ("CASE WHEN reopen_count > 0 THEN EXISTS (SELECT 1 FROM events WHERE ticket_id = w.id "
                f"AND kind = 'status_changed' AND {j('data', '$.action')} = 'reopen' AND at < :until{d.per_row}) ELSE FALSE END")
    # When the ticket was resolved, if it was resolved at :until.
    resolved = ("CASE WHEN reopen_count = 0 THEN CASE WHEN resolved_at < :until THEN resolved_at END "
                f"ELSE (SELECT CASE WHEN {j('e.data', '$.to')} IN ('resolved', 'closed') THEN "
                "(SELECT max(r.at) FROM events r WHERE r.ticket_id = w.id AND r.kind = 'status_changed' "
                f"AND {j('r.data', '$.to')} = 'resolved' AND r.at < :until) END "
                "FROM events e WHERE e.ticket_id = w.id AND e.kind = 'status_changed' AND e.at < :until "
                "ORDER BY e.id DESC LIMIT 1) END")
    return moved, escalated, reopened, resolved


# The tickets a runbook resolved, read once into a set (as `moved`).
_AUTOMATED = "w.id IN (SELECT ticket_id FROM runbook_runs WHERE resolved = 1 AND misfire IS NULL AND ticket_id IS NOT NULL)"


# A correlated child of an incident acknowledged by :until runs on its parent's clock: the
# incident counts once in SLA compliance, as its parent (store_sla leaves it out the same way).
_COVERED = f"(w.parent_id IS NOT NULL AND {covered_sql('w', 'parent.acknowledged_at < :until')})"


# A service's tickets: those whose service or CI (as is or lower-cased) is one of the given names,
# which are a service's or CI's name and aliases (reports.service_scope): `report service
# checkout` finds the tickets on CI checkout-api, whose alias is checkout. Bound one by one (a
# CI has a few aliases), not as a JSON list: SQLite's JSON functions cut text at a NUL.
def _of_service(service: list[str] | None) -> tuple[str, dict[str, str]]:
    if service is None:
        return "", {}
    names = {f"service{i}": name for i, name in enumerate(sorted(service))}
    marks = ", ".join(f":{key}" for key in names) or "NULL"
    return (f" AND (w.service IN ({marks}) OR lower(w.service) IN ({marks}) OR w.ci IN ({marks}) "
            f"OR lower(w.ci) IN ({marks}))"), names




class MetricsStore:
    def __init__(self, db: Db, *, tickets: TicketStore) -> None:
        self.db = db
        self.tickets = tickets

    def ticket_sums(self, since: str, *, until: str, groupings: tuple[str | None, ...] = (None,),
                    service: list[str] | None = None, ranked: tuple[str | None, ...] | None = None
                    ) -> dict[str | None, dict[str, dict[str, Any]]]:
        """For each grouping (None: the desk), group -> the sums metrics.ticket_kpis reads, for
        tickets created in [since, until) (of one service: see _of_service); percentiles only
        for the groupings in `ranked` (default: all). The window is read once into a temporary table; each
        grouping's figures are computed from it."""
        from ..domain.metrics import GROUPS

        for by in groupings:
            if by is not None and by not in GROUPS:
                raise BadInput(f"--by: unknown field {by!r}; choose from {', '.join(GROUPS)}")
        d = self.db.dialect
        group_sql = _group_sql(d)
        moved, escalated, reopened, resolved = _fragments(d)
        keys = ", ".join(f"{group_sql[by] if by else chr(39) + 'all' + chr(39)} AS g{i}" for i, by in enumerate(groupings))
        self.db.conn.execute("DROP TABLE IF EXISTS report_window")
        self.db.conn.execute(
            f"CREATE TEMP TABLE report_window AS SELECT {keys}, "
            f"CASE WHEN acknowledged_at < :until THEN {d.epoch('acknowledged_at')} - {d.epoch('created_at')} END AS tta, "
            f"{d.epoch(resolved)} - {d.epoch('created_at')} AS ttr, {reopened} AS reopened, "
            f"{escalated} AS escalated, {moved} AS moved, {_AUTOMATED} AS automated "
            "FROM tickets w WHERE created_at >= :since AND created_at < :until AND suppressed IS NULL"
            + _of_service(service)[0], {"since": since, "until": until, **_of_service(service)[1]})
        try:
            out = self._sums(len(groupings))
            for i, by in enumerate(groupings):
                if ranked is None or by in ranked:
                    for metric in ("tta", "ttr"):
                        self._percentiles(f"g{i}", metric, out[i])
            return {by: out[i] for i, by in enumerate(groupings)}
        finally:
            self.db.conn.execute("DROP TABLE report_window")

    def _sums(self, groupings: int) -> list[dict[str, dict[str, Any]]]:
        """Each grouping's (g0, g1, ...) sums of report_window: in one pass where the dialect
        groups by several sets at once, else a pass each."""
        figures = ("count(*), count(ttr), count(tta), count(*) FILTER (WHERE reopened), "
                   "count(*) FILTER (WHERE escalated), count(*) FILTER (WHERE moved), "
                   "count(*) FILTER (WHERE ttr IS NOT NULL AND NOT escalated AND NOT moved), "
                   "count(*) FILTER (WHERE ttr IS NOT NULL AND automated), avg(tta), avg(ttr)")
        keys = [f"g{i}" for i in range(groupings)]
        if self.db.dialect.grouping_sets:
            # GROUPING(gi) is 0 on the rows of gi's set.
            rows = self.db.conn.execute(
                f"SELECT {', '.join(f'GROUPING({k}), {k}' for k in keys)}, {figures} FROM report_window "
                f"GROUP BY GROUPING SETS ({', '.join(f'({k})' for k in keys)})").fetchall()
            by_set = [[(row[2 * i + 1], *row[2 * groupings:]) for row in rows if row[2 * i] == 0]
                      for i in range(groupings)]
        else:
            by_set = [self.db.conn.execute(f"SELECT {k}, {figures} FROM report_window GROUP BY {k}").fetchall()
                      for k in keys]
        out = []
        for rows in by_set:
            sums: dict[str, dict[str, Any]] = {}
            for group, created, resolved, acked, reopened, escalated, reassigned, fcr, automated, mean_tta, mean_ttr \
                    in rows:
                sums[str(group)] = {"created": created, "resolved": resolved, "reopened": reopened,
                                    "escalated": escalated, "reassigned": reassigned, "fcr": fcr,
                                    "automated": automated, "tta": _stats(acked, mean_tta),
                                    "ttr": _stats(resolved, mean_ttr)}
            # Groups in code-point order (SQLite's BINARY) whatever the server's collation says.
            out.append(dict(sorted(sums.items())))
        return out

    def _percentiles(self, g: str, metric: str, sums: dict[str, dict[str, Any]]) -> None:
        """Nearest-rank percentiles of `metric` by group (the dialect's one sort of the window),
        for the groups where it has values (their counts are the sums')."""
        from ..domain.metrics import PERCENTILES, nearest_rank

        wanted = {group: {label: nearest_rank(s[metric]["n"], fraction) for label, fraction in PERCENTILES.items()}
                  for group, s in sums.items() if s[metric]["n"]}
        for group, found in self.db.dialect.percentiles(self.db.conn, "report_window", g, metric, wanted).items():
            sums[group][metric].update(found)

    def misfires(self, since: str, *, until: str) -> dict[str, int]:
        """Automation misfires recorded in the window, by reason (failed, interrupted, reopened)."""
        rows = self.db.conn.execute(
            f"SELECT {self.db.dialect.json_get('data', '$.reason')}, count(*) FROM events WHERE kind = 'automation_misfire' "
            "AND at >= ? AND at < ? GROUP BY 1 ORDER BY 1", (since, until)) if self._has_misfires() else []
        return {reason: n for reason, n in rows}

    def _has_misfires(self) -> bool:
        return self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM runbook_runs WHERE misfire IS NOT NULL)").fetchone()[0]

    def sla_window(self, since: str, *, until: str, pause: frozenset[str], service: list[str] | None = None
                   ) -> Iterator[tuple[tuple, list[tuple[datetime, str]]]]:
        """The window's tickets (of one service; not a child of an incident acknowledged by
        `until`) as (id, kind, priority, service, created, acknowledged, resolved) with times
        in epoch seconds, as they stood at `until`; and the status changes of those that were
        ever paused (found by the events_waiting index when the pause is `waiting`). Streamed:
        a long window is not held in memory."""
        d = self.db.dialect
        resolved = _fragments(d)[3]
        to = d.json_get("data", "$.to")
        where = ("FROM tickets w WHERE created_at >= :since AND created_at < :until AND suppressed IS NULL "
                 f"AND NOT {_COVERED}" + _of_service(service)[0])
        params = {"since": since, "until": until, **_of_service(service)[1]}
        tickets = (f"SELECT id, kind, priority, service, {d.epoch('created_at')}, "
                   f"CASE WHEN acknowledged_at < :until THEN {d.epoch('acknowledged_at')} END, {d.epoch(resolved)} {where}")
        if pause <= {"waiting"}:
            # The changes of the window's tickets that ever waited, read first in one query: the
            # tickets then come as a stream (on a server, computed while they are read), which
            # leaves the connection no room for a query per ticket.
            changes: dict[int, list[tuple[datetime, str]]] = {}
            for ticket, at, status in self.db.conn.execute(
                    f"SELECT ticket_id, at, {to} FROM events WHERE kind = 'status_changed' AND ticket_id IN "
                    f"(SELECT ticket_id FROM events WHERE kind = 'status_changed' AND {to} = 'waiting') "
                    f"AND ticket_id IN (SELECT id {where}) ORDER BY ticket_id, id", params):
                changes.setdefault(ticket, []).append((clock.parse(at), status))
            for row in d.stream(self.db.conn, tickets, params):
                yield row, changes.get(row[0], [])
            return
        changes_of = self.db.conn.cursor()  # any status may pause: every ticket's changes are read
        for row in self.db.conn.execute(tickets, params):
            yield row, [(clock.parse(at), status) for at, status in changes_of.execute(
                f"SELECT at, {to} FROM events WHERE ticket_id = ? AND kind = 'status_changed' ORDER BY id", (row[0],))]

    def csat_distribution(self, since: str, *, until: str) -> dict[int, int]:
        """score -> ratings, for tickets created in the window."""
        return dict(self.db.conn.execute(
            f"SELECT c.score, count(*) FROM csat c JOIN tickets w ON w.id = c.ticket_id WHERE w.created_at >= :since "
            f"AND w.created_at < :until AND w.suppressed IS NULL AND c.at < :until AND ({_fragments(self.db.dialect)[3]}) IS NOT NULL "
            "GROUP BY c.score", {"since": since, "until": until}).fetchall())

    def kb_freshness(self, since: str, *, until: str) -> dict[str, int]:
        d = self.db.dialect
        articles, stale = self.db.conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {d.plus_days('reviewed_at', 'review_days')} < {d.stamp('?')}) "
            "FROM kb_articles "
            "WHERE created_at < ?", (until, until)).fetchone()
        edits = self.db.conn.execute("SELECT count(*) FROM kb_revisions WHERE at >= ? AND at < ?",
                                  (since, until)).fetchone()[0]
        return {"articles": articles, "stale": stale, "edits": edits}

    def intake_by_source(self, since: str, *, until: str) -> tuple[dict[str, int], dict[str, int]]:
        """Alerts received and tickets created in the window, by source."""
        alerts = dict(self.db.conn.execute("SELECT source, count(*) FROM alerts WHERE received_at >= ? AND received_at < ? "
                                        "GROUP BY source", (since, until)).fetchall())
        tickets = dict(self.db.conn.execute("SELECT source, count(*) FROM tickets WHERE created_at >= ? AND created_at < ? "
                                         "AND suppressed IS NULL GROUP BY source", (since, until)).fetchall())
        return alerts, tickets

    def pages_sent(self, since: str, *, until: str) -> list[tuple[str, str]]:
        """(user, when) of the pages due in the window that were not cancelled, nor undeliverable
        (nobody to page, or no notifier: nobody's pager rang)."""
        return self.db.conn.execute('SELECT "user", due_at FROM pages WHERE due_at >= ? AND due_at < ? '
                                 "AND status NOT IN ('cancelled', 'undeliverable')", (since, until)).fetchall()

    def pages_unreached(self, since: str, *, until: str) -> int:
        """The pages due in the window that reached nobody (nobody to page, or no notifier)."""
        return self.db.conn.execute("SELECT count(*) FROM pages WHERE due_at >= ? AND due_at < ? "
                                 "AND status = 'undeliverable'", (since, until)).fetchone()[0]

    def minutes_worked(self, since: str, *, until: str) -> int:
        return self.db.conn.execute("SELECT coalesce(sum(minutes), 0) FROM worklog WHERE at >= ? AND at < ?",
                                 (since, until)).fetchone()[0]

    def service_alerts(self, service: list[str], *, since: str, until: str) -> dict[str, int]:
        """Alerts received in the window for tickets on a service (see _of_service), by status."""
        sql, names = _of_service(service)
        return dict(self.db.conn.execute(
            "SELECT a.status, count(*) FROM alerts a JOIN tickets w ON w.id = a.ticket_id WHERE "
            "a.received_at >= :since AND a.received_at < :until" + sql + " GROUP BY a.status",
            {"since": since, "until": until, **names}).fetchall())

    def service_known(self, service: list[str]) -> bool:
        """Whether any ticket, at any time, is of the service (see _of_service)."""
        sql, names = _of_service(service)
        return bool(self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM tickets w WHERE TRUE" + sql + ")", names).fetchone()[0])

    def service_names(self, limit: int = 5000) -> list[str]:
        """Names a report could mean (tickets' services and CIs, CMDB names and aliases), at most
        `limit` of each: the candidates for "did you mean"."""
        return [r[0] for r in self.db.conn.execute(
            "SELECT * FROM (SELECT DISTINCT lower(service) FROM tickets WHERE service IS NOT NULL LIMIT ?) AS s UNION "
            "SELECT * FROM (SELECT DISTINCT lower(ci) FROM tickets WHERE ci IS NOT NULL LIMIT ?) AS c UNION "
            "SELECT * FROM (SELECT alias FROM ci_aliases LIMIT ?) AS a", (limit, limit, limit))]

    def ticket_alerts(self, ids: list[int]) -> list[dict[str, Any]]:
        """The alerts of some tickets: how many of each source and status, first and last seen."""
        marks = ",".join("?" * len(ids))
        return [dict(zip(("ticket_id", "source", "status", "count", "first", "last"), r)) for r in self.db.conn.execute(
            f"SELECT ticket_id, source, status, count(*), min(received_at), max(received_at) FROM alerts "
            f"WHERE ticket_id IN ({marks}) GROUP BY ticket_id, source, status ORDER BY ticket_id, min(received_at)", ids)]

    # -- recording ------------------------------------------------------------------------------------

    def csat_record(self, *, ticket_id: int, score: int, comment: str | None, actor: str,
                    acting: str | None = None) -> None:
        """A 1-5 rating of a resolved or closed ticket (a new one replaces the last); `acting`: the
        requester's, on the portal."""
        from ..domain import lifecycle
        from ..errors import Conflict

        if not 1 <= score <= 5:
            raise BadInput(f"csat: score {score} is not from 1 to 5")
        with self.db.write(actor) as tx, tx.acting(acting):
            t = self.tickets._current(tx, ticket_id)
            if t["status"] not in lifecycle.DONE:
                raise Conflict(f"csat: {lifecycle.ref(ticket_id)} is {t['status']}: rate it once it is resolved")
            self.rate(tx, ticket_id, score=score, comment=comment)

    @staticmethod
    def rate(tx: Tx, ticket_id: int, *, score: int, comment: str | None) -> None:
        """Record a rating of a done ticket in `tx` (csat_record, and a requester's answer by mail)."""
        comment = tx.clean(comment or None, ticket_id)
        tx.conn.execute("INSERT INTO csat (ticket_id, score, comment, actor, at) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (ticket_id) DO UPDATE SET score = excluded.score, comment = excluded.comment, "
                        "actor = excluded.actor, at = excluded.at",
                        (ticket_id, score, comment, tx.actor, tx.at))
        tx.event(ticket_id, "csat", {"score": score, **({"comment": comment} if comment else {})})

    def worklog_add(self, *, ticket_id: int, minutes: int, note: str | None, actor: str) -> None:
        if not 0 < minutes <= 24 * 60:
            raise BadInput("worklog: the time must be more than 0 and at most 24h")
        with self.db.write(actor) as tx:
            self.tickets._current(tx, ticket_id)
            note = tx.clean(note or None, ticket_id)
            tx.conn.execute("INSERT INTO worklog (ticket_id, minutes, actor, at, note) VALUES (?, ?, ?, ?, ?)",
                            (ticket_id, minutes, actor, tx.at, note))
            tx.event(ticket_id, "worked", {"minutes": minutes, **({"note": note} if note else {})})


def _stats(n: int, mean: float | None) -> dict[str, Any]:
    from ..domain.metrics import PERCENTILES

    return {"n": n, "mean": round(mean, 1) if mean is not None else None,
            **{label: None for label in PERCENTILES}}
