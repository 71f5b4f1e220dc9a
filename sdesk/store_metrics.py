"""The Store's KPI aggregates (a part of `Store`): sums, means and nearest-rank percentiles
computed in SQL over the window's tickets, so that a report over a million tickets reads no
row into Python that it does not need. The arithmetic on the sums is in metrics.py."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import clock
from .errors import BadInput
from .metrics import GROUPS, PERCENTILES

if TYPE_CHECKING:
    from .store import Store

_GROUP_SQL = {"priority": "priority", "kind": "kind", "queue": "coalesce(queue, '(none)')",
              "team": "coalesce(team, '(none)')", "service": "coalesce(service, '(none)')",
              "assignee": "coalesce(assignee, '(none)')",
              "week": "date(created_at, 'weekday 0', '-6 days')"}  # the Monday (UTC) starting its week
# Moved to another assignee, or triage's queue or category corrected: the partial index
# events_reassigned holds exactly these.
_MOVED = ("SELECT ticket_id FROM events WHERE kind = 'triage_corrected' "
          "OR (kind = 'assigned' AND json_extract(data, '$.previous_assignee') IS NOT NULL)")
_AUTOMATED = "SELECT ticket_id FROM runbook_runs WHERE resolved = 1 AND misfire IS NULL"


def _window(by: str | None, service: str | None) -> str:
    group = _GROUP_SQL[by] if by else "'all'"
    return (f"SELECT {group} AS g, id, reopen_count, escalation_level, "
            "CASE WHEN acknowledged_at < :until THEN unixepoch(acknowledged_at) - unixepoch(created_at) END AS tta, "
            "CASE WHEN resolved_at < :until THEN unixepoch(resolved_at) - unixepoch(created_at) END AS ttr "
            "FROM tickets WHERE created_at >= :since AND created_at < :until AND suppressed IS NULL"
            + (" AND service = :service" if service is not None else ""))


class MetricsStore:
    def ticket_sums(self: Store, since: str, until: str, by: str | None = None, *,
                    service: str | None = None) -> dict[str, dict[str, Any]]:
        """group -> the sums metrics.ticket_kpis reads, for tickets created in [since, until)
        (of one service)."""
        if by is not None and by not in GROUPS:
            raise BadInput(f"--by: unknown field {by!r}; choose from {', '.join(GROUPS)}")
        window, args = _window(by, service), {"since": since, "until": until, "service": service}
        sums: dict[str, dict[str, Any]] = {}
        for row in self.conn.execute(
                f"WITH w AS ({window}) SELECT g, count(*), count(ttr), count(tta), sum(reopen_count > 0), "
                f"sum(escalation_level > 0), sum(id IN ({_MOVED})), "
                f"sum(ttr IS NOT NULL AND escalation_level = 0 AND id NOT IN ({_MOVED})), "
                f"sum(ttr IS NOT NULL AND id IN ({_AUTOMATED})), avg(tta), avg(ttr) FROM w GROUP BY g ORDER BY g",
                args):
            g, created, resolved, acked, reopened, escalated, reassigned, fcr, automated, mean_tta, mean_ttr = row
            sums[str(g)] = {"created": created, "resolved": resolved, "reopened": reopened, "escalated": escalated,
                            "reassigned": reassigned, "fcr": fcr, "automated": automated,
                            "tta": _stats(acked, mean_tta), "ttr": _stats(resolved, mean_ttr)}
        ranks = " OR ".join(f"rn = ({num} * n + {den - 1}) / {den}" for num, den in PERCENTILES.values())
        ranked = ("SELECT g, '{0}' AS m, n, rn, v FROM (SELECT g, {0} AS v, row_number() OVER (PARTITION BY g "
                  "ORDER BY {0}) AS rn, count(*) OVER (PARTITION BY g) AS n FROM w WHERE {0} IS NOT NULL) "
                  f"WHERE {ranks}")
        for g, metric, n, rn, value in self.conn.execute(
                f"WITH w AS ({window}) {ranked.format('tta')} UNION ALL {ranked.format('ttr')}", args):
            stats = sums[str(g)][metric]
            for label, fraction in PERCENTILES.items():
                if rn == max(1, (fraction[0] * n + fraction[1] - 1) // fraction[1]):
                    stats[label] = value
        return sums

    def misfires(self: Store, since: str, until: str) -> dict[str, int]:
        """Automation misfires recorded in the window, by reason (failed, interrupted, reopened)."""
        rows = self.conn.execute(
            "SELECT json_extract(data, '$.reason'), count(*) FROM events WHERE kind = 'automation_misfire' "
            "AND at >= ? AND at < ? GROUP BY 1", (since, until)) if self._has_misfires() else []
        return {reason: n for reason, n in rows}

    def _has_misfires(self: Store) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM runbook_runs WHERE misfire IS NOT NULL)").fetchone()[0]

    def sla_window(self: Store, since: str, until: str, pause: frozenset[str]
                   ) -> list[tuple[dict[str, Any], list[tuple[datetime, str]]]]:
        """The window's tickets with what SLA clocks need, and the status changes of those that
        were ever paused (the events_waiting index finds them when the pause is `waiting`)."""
        tickets = [dict(zip(("id", "kind", "priority", "service", "created_at", "acknowledged_at", "resolved_at"), r))
                   for r in self.conn.execute(
                       "SELECT id, kind, priority, service, created_at, acknowledged_at, resolved_at FROM tickets "
                       "WHERE created_at >= ? AND created_at < ? AND suppressed IS NULL", (since, until))]
        if pause <= {"waiting"}:
            paused = {r[0] for r in self.conn.execute(
                "SELECT ticket_id FROM events WHERE kind = 'status_changed' AND json_extract(data, '$.to') = 'waiting'")}
        else:
            paused = {t["id"] for t in tickets}
        paused &= {t["id"] for t in tickets}
        changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        ids = sorted(paused)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for ticket_id, at, status in self.conn.execute(
                    f"SELECT ticket_id, at, json_extract(data, '$.to') FROM events WHERE kind = 'status_changed' "
                    f"AND ticket_id IN ({','.join('?' * len(part))})", part):
                changes[ticket_id].append((clock.parse(at), status))
        return [(t, changes.get(t["id"], [])) for t in tickets]

    def csat_distribution(self: Store, since: str, until: str) -> dict[int, int]:
        """score -> ratings, for tickets created in the window."""
        return dict(self.conn.execute(
            "SELECT c.score, count(*) FROM csat c JOIN tickets t ON t.id = c.ticket_id "
            "WHERE t.created_at >= ? AND t.created_at < ? GROUP BY c.score", (since, until)).fetchall())

    def kb_freshness(self: Store, since: str, until: str) -> dict[str, int]:
        articles, stale = self.conn.execute(
            "SELECT count(*), coalesce(sum(julianday(reviewed_at) + review_days < julianday(?)), 0) FROM kb_articles "
            "WHERE created_at < ?", (until, until)).fetchone()
        edits = self.conn.execute("SELECT count(*) FROM kb_revisions WHERE at >= ? AND at < ?",
                                  (since, until)).fetchone()[0]
        return {"articles": articles, "stale": stale, "edits": edits}

    def intake_by_source(self: Store, since: str, until: str) -> tuple[dict[str, int], dict[str, int]]:
        """Alerts received and tickets created in the window, by source."""
        alerts = dict(self.conn.execute("SELECT source, count(*) FROM alerts WHERE received_at >= ? AND received_at < ? "
                                        "GROUP BY source", (since, until)).fetchall())
        tickets = dict(self.conn.execute("SELECT source, count(*) FROM tickets WHERE created_at >= ? AND created_at < ? "
                                         "GROUP BY source", (since, until)).fetchall())
        return alerts, tickets

    def pages_sent(self: Store, since: str, until: str) -> list[tuple[str, str]]:
        """(user, when) of the pages due in the window that were not cancelled."""
        return self.conn.execute("SELECT user, due_at FROM pages WHERE due_at >= ? AND due_at < ? "
                                 "AND status != 'cancelled'", (since, until)).fetchall()

    def minutes_worked(self: Store, since: str, until: str) -> int:
        return self.conn.execute("SELECT coalesce(sum(minutes), 0) FROM worklog WHERE at >= ? AND at < ?",
                                 (since, until)).fetchone()[0]

    def service_alerts(self: Store, service: str, since: str, until: str) -> dict[str, int]:
        """Alerts received in the window for tickets on a service, by status."""
        return dict(self.conn.execute(
            "SELECT a.status, count(*) FROM alerts a JOIN tickets t ON t.id = a.ticket_id WHERE t.service = ? "
            "AND a.received_at >= ? AND a.received_at < ? GROUP BY a.status", (service, since, until)).fetchall())

    def ticket_alerts(self: Store, ids: list[int]) -> list[dict[str, Any]]:
        """The alerts of some tickets: how many of each source and status, first and last seen."""
        marks = ",".join("?" * len(ids))
        return [dict(zip(("ticket_id", "source", "status", "count", "first", "last"), r)) for r in self.conn.execute(
            f"SELECT ticket_id, source, status, count(*), min(received_at), max(received_at) FROM alerts "
            f"WHERE ticket_id IN ({marks}) GROUP BY ticket_id, source, status ORDER BY ticket_id, min(received_at)", ids)]

    # -- recording ------------------------------------------------------------------------------------

    def csat_record(self: Store, *, ticket_id: int, score: int, comment: str | None, actor: str) -> None:
        """A 1-5 rating of a resolved or closed ticket (a new one replaces the last)."""
        from . import lifecycle
        from .errors import Conflict
        from .redact import redact

        if not 1 <= score <= 5:
            raise BadInput(f"csat: score {score} is not from 1 to 5")
        comment = redact(comment)[0] if comment else None
        with self._write(actor) as tx:
            t = self._current(tx, ticket_id)
            if t["status"] not in lifecycle.DONE:
                raise Conflict(f"csat: {lifecycle.ref(ticket_id)} is {t['status']}: rate it once it is resolved")
            tx.conn.execute("INSERT OR REPLACE INTO csat (ticket_id, score, comment, actor, at) VALUES (?, ?, ?, ?, ?)",
                            (ticket_id, score, comment, actor, tx.at))
            tx.event(ticket_id, "csat", {"score": score, **({"comment": comment} if comment else {})})

    def worklog_add(self: Store, *, ticket_id: int, minutes: int, note: str | None, actor: str) -> None:
        from .redact import redact

        if not 0 < minutes <= 24 * 60:
            raise BadInput("worklog: the time must be more than 0 and at most 24h")
        note = redact(note)[0] if note else None
        with self._write(actor) as tx:
            self._current(tx, ticket_id)
            tx.conn.execute("INSERT INTO worklog (ticket_id, minutes, actor, at, note) VALUES (?, ?, ?, ?, ?)",
                            (ticket_id, minutes, actor, tx.at, note))
            tx.event(ticket_id, "worked", {"minutes": minutes, **({"note": note} if note else {})})


def _stats(n: int, mean: float | None) -> dict[str, Any]:
    return {"n": n, "mean": round(mean, 1) if mean is not None else None,
            **{label: None for label in PERCENTILES}}
