"""What `sdesk tick` does, apart from the command line (the demo runs it too)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import clock
from .notify import deliver

if TYPE_CHECKING:
    from .routing import OnCall
    from .sla import SlaConfig
    from .store import Store


def tick(store: Store, oncall: OnCall, sla: SlaConfig, now: datetime, *, actor: str) -> dict[str, Any]:
    """Raise due pages, deliver pending ones, bring back tickets whose silence ended, and
    record SLA warnings and breaches. Each step is idempotent."""
    paged = store.page_due(oncall, now, actor=actor)
    delivered = failed = 0
    for page in store.pages_to_send(now, actor=actor):
        error = deliver(oncall.notifier, page)
        store.page_result(page, error, now, actor=actor)
        delivered, failed = delivered + (error is None), failed + (error is not None)
    unsuppressed = store.release_ended_silences(now, actor=actor)
    recorded = store.sla_record(sla, now, actor=actor) if sla.policies else {}
    return {"at": clock.iso(now), "paged": paged, "delivered": delivered, "failed": failed,
            "unsuppressed": unsuppressed, "sla_warnings": recorded.get("sla_warning", 0),
            "sla_breaches": recorded.get("sla_breached", 0)}
