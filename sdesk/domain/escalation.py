"""Escalation: who a ticket pages, and when, until someone acknowledges. Pure: policies,
on-call schedules, a ticket and `now` in; the pages that are due out.

A policy (`oncall.yaml` `escalation:`) has ordered levels, each with targets (`user:NAME`,
`schedule:NAME`, `team:NAME`: a schedule or team pages whoever is on call then) and a delay:
how long that level waits for an acknowledgement before the next one fires (as PagerDuty's
escalation rules). The first level fires when the ticket opens; the levels run `repeat` more
times. Only the priorities in `page` page at all (P1 and P2 by default: the rest queue). A
ticket's policy is its team's (or its queue's, when a team has that name), else the desk's
`default_team`'s, so a P1 that no rule routed still reaches someone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .routing import OnCall, Override, Policy, on_call


class Due(NamedTuple):
    round: int
    level: int  # from 1
    at: datetime
    users: tuple[str, ...]


def policy_for(ticket: dict[str, Any], oncall: OnCall) -> Policy | None:
    """The escalation policy of the ticket's team, its queue's team, or the default team."""
    queue = oncall.queues.get(ticket.get("queue") or "")
    for name in (ticket.get("team"), queue.team if queue else ticket.get("queue"), oncall.default_team):
        team = oncall.teams.get(name or "")
        if team is not None and team.escalation in oncall.escalation:
            return oncall.escalation[team.escalation]
    return None


def unrouted(ticket: dict[str, Any], oncall: OnCall) -> str:
    """Why no escalation policy covers a ticket, for the warning `sdesk tick` prints."""
    if not oncall.teams:
        return "no on-call config (no oncall.yaml in the desk config)"
    if not oncall.escalation:
        return "oncall.yaml has no escalation policies"
    where = ", ".join(f"{k} {ticket[k]}" for k in ("team", "queue") if ticket.get(k)) or "no team or queue"
    return f"no team with an escalation policy claims it ({where}) and there is no default_team"


def nobody(targets: Iterable[str]) -> str:
    """Why a level that fired reached no one."""
    return f"nobody on call for {', '.join(targets)}"


def schedule_of(target: str, oncall: OnCall) -> str | None:
    kind, _, value = target.partition(":")
    if kind == "schedule":
        return value
    if kind == "team":
        return oncall.teams[value].schedule
    return None


def due(policy: Policy, oncall: OnCall, overrides: Iterable[Override], *, created: datetime,
        manual_level: int, now: datetime, fired: dict[tuple[int, int], datetime] | None = None) -> list[Due]:
    """The (round, level) steps of the policy due by `now`, and not yet in `fired`, for a
    ticket opened at `created` and not acknowledged, with the users each pages (who was on
    call then). Steps up to `manual_level` (raised by hand, `sdesk escalate`) fire at once;
    `fired` holds when steps did fire, and each level's delay counts from then."""
    fired = fired or {}
    overrides = list(overrides)
    out: list[Due] = []
    at = created
    step = 0
    for round_ in range(policy.repeat + 1):
        for number, level in enumerate(policy.levels, start=1):
            step += 1
            done = fired.get((round_ + 1, number))
            if done is not None:
                at = done + level.delay
                continue
            # A step that came due fires now, with who is on call now, and the next one waits
            # its delay from now: a ticket that became pageable late (raised to P1, its
            # silence ended, a desk's first tick) pages once, not every level at once.
            fires = now if at <= now or step <= manual_level else None
            if fires is None:
                return out
            users: list[str] = []
            for target in level.targets:
                schedule = schedule_of(target, oncall)
                if schedule is None:
                    users.append(target.partition(":")[2])
                else:
                    user, _ = on_call(oncall.schedules[schedule], overrides, fires)
                    if user is None and target.startswith("team:"):
                        users += list(oncall.teams[target.partition(":")[2]].members)  # nobody on call: the team
                    elif user is not None:
                        users.append(user)
            out.append(Due(round_ + 1, number, fires, tuple(dict.fromkeys(users))))
            return out  # one step per tick: the next counts its delay from this one
    return out


MAX_ATTEMPTS = 20  # a page that failed this often (about 8 hours of retries) is left on record as failed


def backoff(attempts: int) -> timedelta:
    """How long to wait before delivering a page again: 1, 2, 4... minutes, at most 30."""
    return timedelta(minutes=min(30, 2 ** max(0, attempts - 1)))
