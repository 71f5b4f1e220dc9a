"""What `sdesk tick` does, apart from the command line (the demo runs it too)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain import clock
from .notify import PageChannels, deliver, message

if TYPE_CHECKING:
    from ..domain.routing import Notifier, OnCall
    from ..domain.sla import SlaConfig
    from ..store import Store


def tick(store: Store, oncall: OnCall, sla: SlaConfig, now: datetime, *, actor: str,
         notify: Any = None) -> dict[str, Any]:
    """Raise due pages, deliver pending ones, bring back tickets whose silence ended, and
    record SLA warnings and breaches. Each step is idempotent. `raised`: the page records made
    now, a person each, `raised_undeliverable` of them with nobody or no channel to reach;
    `reached`: the people a delivery reached now. `undeliverable`: the tickets that would page
    and reach nobody (no policy, nobody on call, no notifier), with why; `failing`: pages whose
    delivery failed (a retry waits, or they were given up), until delivered or acknowledged;
    `unreachable`: the people this tick's pages could not reach over any channel (no contact)."""
    new = store.oncall.page_due(oncall, now=now, actor=actor)
    paged = [p for p in new if "undeliverable" not in p]
    raised = sum(len(p["users"]) for p in paged)
    nobody = len(new) - len(paged)
    delivered = failed = 0
    reached: set[str] = set()
    token = uuid.uuid4().hex
    # Claimed one message at a time, for longer than sending it can take: a tick that starts
    # while this one is still sending finds the page taken, never sends it again.
    hold = 2 * oncall.notifier.timeout + 60
    via = PageChannels(store, notify) if oncall.notifier.channels else None
    only_channels = not (oncall.notifier.command or oncall.notifier.webhook)
    if not only_channels or via is not None:
        # Pages that reached nobody are tried again once something reaches the person.
        store.oncall.revive_pages(lambda user: not only_channels or via.unreachable(user, oncall.notifier.channels) is None,
                                  now=now, actor=actor)
    waiting = store.oncall.pages_to_send(now, actor=actor)
    unreachable: list[dict[str, Any]] = []
    if not (oncall.notifier.command or oncall.notifier.webhook or oncall.notifier.channels):
        # No channel reaches a person: the pages are on record as undeliverable, never "delivered".
        store.oncall.pages_undeliverable(waiting, why="no notifier in oncall.yaml (a command, a webhook or channels of "
                                                      "notify.yaml)", actor=actor)
        waiting = []
        nobody += raised  # this tick's pages among them
    for group in _sendable(store, oncall.notifier, waiting, now, actor):
        why = via.unreachable(group[0]["user"], oncall.notifier.channels) if via is not None and only_channels else None
        if why:  # no channel can carry it to them: on record as such, and tick says who
            store.oncall.pages_undeliverable(group, why=why, actor=actor)
            nobody += len(group)
            unreachable += [{"ticket": p["ticket_id"], "user": p["user"], "reason": why} for p in group]
            continue
        claimed = set(store.oncall.claim_pages([p["id"] for p in group], token=token, now=now, hold=hold, actor=actor))
        group = [p for p in group if p["id"] in claimed]
        if not group:
            continue
        done = set.intersection(*(set(filter(None, p["sent_to"].split(","))) for p in group))
        error, took = deliver(oncall.notifier, message(group), done, via)
        for page in group:
            store.oncall.page_result(page, error=error, sent_to=took, now=now, token=token, actor=actor,
                                     delivery=group[0]["id"])
        delivered, failed = delivered + (error is None) * len(group), failed + (error is not None) * len(group)
        if error is None:
            reached.add(group[0]["user"])
    unsuppressed = store.oncall.release_ended_silences(now, actor=actor)
    recorded = store.sla.sla_record(sla, now=now, actor=actor) if sla.policies else {}
    approvals = store.requests.tick(actor=actor)
    return {"at": clock.iso(now), "paged": paged, "raised": raised + len(new) - len(paged),
            "raised_undeliverable": nobody, "delivered": delivered, "reached": len(reached), "failed": failed,
            "undeliverable": store.oncall.unreached(oncall), "failing": store.oncall.failing(oncall),
            "unreachable": unreachable,
            "unsuppressed": unsuppressed, "sla_warnings": recorded.get("sla_warning", 0),
            "sla_breaches": recorded.get("sla_breached", 0), "approvals_reminded": approvals["reminded"],
            "approvals_expired": approvals["expired"]}


def _sendable(store: Store, notifier: Notifier, pages: list[dict[str, Any]], now: datetime,
              actor: str) -> list[list[dict[str, Any]]]:
    """The deliveries to make: a page each, except that nobody gets more than max_per_hour in an
    hour: the last allowed delivery carries the rest as one batch, and with none left they
    wait until the hour allows one (still on record, still pending)."""
    if notifier.max_per_hour is None:
        return [[page] for page in pages]
    by_user: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        by_user.setdefault(page["user"], []).append(page)
    out: list[list[dict[str, Any]]] = []
    for user, waiting in by_user.items():
        sent, oldest = store.oncall.deliveries_since(user, since=now - timedelta(hours=1))
        allowed = notifier.max_per_hour - sent
        if allowed <= 0:
            store.oncall.hold_pages([p["id"] for p in waiting], until=oldest + timedelta(hours=1), actor=actor)
            continue
        out += [[page] for page in waiting[:allowed - 1]]
        out.append(waiting[allowed - 1:])
    return [group for group in out if group]
