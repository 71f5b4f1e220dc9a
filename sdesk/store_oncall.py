"""The Store's on-call overrides (a part of `Store`, split out to keep files small). Schedules
live in the desk config; who covers instead, and when, is history, so it lives here."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import clock
from .routing import OnCall, Override, check_override

if TYPE_CHECKING:
    from .store import Store


class OnCallStore:
    def overrides(self: Store, *, schedule: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[Override]:
        """Overrides (of one schedule) that end after `since` and start before `until`."""
        sql, args = "SELECT schedule, user, starts_at, ends_at FROM oncall_overrides WHERE 1", []
        if schedule is not None:
            sql, args = sql + " AND schedule = ?", [*args, schedule]
        if since is not None:
            sql, args = sql + " AND ends_at > ?", [*args, clock.iso(since)]
        if until is not None:
            sql, args = sql + " AND starts_at < ?", [*args, clock.iso(until)]
        return [Override(s, u, clock.parse(a), clock.parse(b)) for s, u, a, b in self.conn.execute(sql + " ORDER BY starts_at", args)]

    def override_add(self: Store, override: Override, config: OnCall, *, reason: str | None,
                     actor: str) -> dict[str, Any]:
        with self._write(actor) as tx:
            check_override(override, config, self.overrides(schedule=override.schedule, since=override.start,
                                                            until=override.end))
            row = (override.schedule, override.user, clock.iso(override.start), clock.iso(override.end), reason,
                   actor, tx.at)
            override_id = tx.conn.execute(
                "INSERT INTO oncall_overrides (schedule, user, starts_at, ends_at, reason, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", row).lastrowid
            data = {"id": override_id, "schedule": override.schedule, "user": override.user,
                    "starts_at": row[2], "ends_at": row[3], "reason": reason}
            tx.event(None, "oncall_override", data)
        return data
