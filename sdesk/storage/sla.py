"""The Store's SLA reads (a part of `Store`): open tickets with what their clocks need, the
times from the row and the status changes from the events, in two queries."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..domain import clock
from .migrations import OPEN_SQL, covered_sql
from .rows import Db

if TYPE_CHECKING:
    from ..domain.sla import SlaConfig, Slo




class SlaStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    def sla_tickets(self, pause: frozenset[str]) -> list[tuple[dict[str, Any], list[tuple[datetime, str]]]]:
        """Open tickets in the queue (not suppressed, not the child of an acknowledged incident),
        with their status changes when a clock could have paused (they entered a status in
        `pause`); from indexes alone when the pause is `waiting`, the default."""
        # A correlated child of an incident someone acknowledged runs on its parent's clock:
        # the parent's response is its response, and the parent is the one listed and counted.
        covered = {row[0] for row in self.db.conn.execute(
            "SELECT c.id FROM tickets c "
            f"WHERE c.parent_id IS NOT NULL AND c.{OPEN_SQL} AND {covered_sql('c')}")}
        tickets = [dict(zip(("id", "kind", "priority", "status", "created_at", "acknowledged_at"), row))
                   for row in self.db.conn.execute(
                       f"SELECT id, kind, priority, status, created_at, acknowledged_at FROM tickets "
                       f"WHERE {OPEN_SQL} AND suppressed IS NULL ORDER BY priority, id")
                   if row[0] not in covered]
        if pause <= {"waiting"}:
            paused = {row[0] for row in self.db.conn.execute(
                "SELECT ticket_id FROM events WHERE kind = 'status_changed' "
                f"AND {self.db.dialect.json_get('data', '$.to')} = 'waiting'")}
            paused &= {t["id"] for t in tickets}
        else:
            paused = {t["id"] for t in tickets}
        changes = self.sla_changes(sorted(paused))
        return [(t, changes.get(t["id"], [])) for t in tickets]

    def sla_changes(self, ids: list[int]) -> dict[int, list[tuple[datetime, str]]]:
        """What moves the SLA clocks of these tickets, in order: each status change (to what) and
        assignment. The one place they are read (`sdesk sla`, tick, the TUI's SLA column)."""
        changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for ticket_id, at, status in self.db.conn.execute(
                    f"SELECT ticket_id, at, {self.db.dialect.json_get('data', '$.to')} FROM events WHERE kind IN ('status_changed', "
                    f"'assigned') AND ticket_id IN ({','.join('?' * len(part))}) ORDER BY id", part):
                changes[ticket_id].append((clock.parse(at), status))
        return changes

    def sla_details(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Title, queue and assignee of the tickets `sdesk sla` shows."""
        rows = self.db.conn.execute(f"SELECT id, title, queue, assignee FROM tickets WHERE id IN ({','.join('?' * len(ids))})",
                                 ids) if ids else []
        return {row["id"]: dict(row) for row in rows}

    def sla_record(self, config: SlaConfig, *, now: datetime, actor: str) -> dict[str, int]:
        """Record each target that became at risk (`sla_warning`) or breached (`sla_breached`,
        also a response acknowledged late), once per ticket and target."""
        from ..domain.sla import assess, pauses

        with self.db.write(actor) as tx:
            # A warning per share of warn_at crossed ([0.75, 0.9]: two); one recorded before
            # warnings had shares is the first share's.
            seen = {(ticket_id, kind, target, float(share) if share is not None else None)
                    for ticket_id, kind, target, share in tx.conn.execute(
                        f"SELECT ticket_id, kind, {tx.dialect.json_get('data', '$.target')}, "
                        f"{tx.dialect.json_get('data', '$.share')} FROM events WHERE kind IN ('sla_warning', "
                        f"'sla_breached') AND ticket_id IN (SELECT id FROM tickets WHERE {OPEN_SQL})")}
            counts = {"sla_warning": 0, "sla_breached": 0}
            for t, policy, targets in assess(config, self.sla_tickets(pauses(config)), now):
                for name, x in targets.items():
                    kind = {"at_risk": "sla_warning", "breached": "sla_breached", "missed": "sla_breached"}.get(x.state)
                    if kind is None:
                        continue
                    data = {"target": name, "policy": policy.name, "target_seconds": int(x.target.total_seconds()),
                            "used_seconds": int(x.used.total_seconds())}
                    if kind == "sla_breached":
                        if (t["id"], kind, name, None) not in seen:
                            tx.event(t["id"], kind, data)
                            counts[kind] += 1
                        continue
                    for share in policy.warn_at:
                        if x.used < x.target * share or (t["id"], kind, name, share) in seen or (
                                share == policy.warn_at[0] and (t["id"], kind, name, None) in seen):
                            continue
                        tx.event(t["id"], kind, {**data, "share": share})
                        counts[kind] += 1
        return counts

    def slo_incidents(self, slo: Slo, *, now: datetime) -> list[tuple[datetime, datetime | None]]:
        """(opened, resolved or None) of the root incidents on the SLO's CI that count and
        touch its window (by the CI index: a CI's tickets, not the desk's)."""
        since = clock.iso(now - slo.window)
        counts = sorted(slo.counts)
        rows = self.db.conn.execute(
            f"SELECT created_at, resolved_at FROM tickets WHERE ci = ? AND kind = 'incident' AND parent_id IS NULL "
            f"AND suppressed IS NULL AND priority IN ({','.join('?' * len(counts))}) "
            f"AND (resolved_at IS NULL OR resolved_at >= ?) AND created_at <= ?",
            (slo.ci, *counts, since, clock.iso(now)))
        return [(clock.parse(a), clock.parse(b) if b else None) for a, b in rows]
