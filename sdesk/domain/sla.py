"""SLA clocks, computed from a ticket's history. Pure: policies, a ticket's times and status
changes, and `now` in; time used, time left and the state of each target out.

A policy (`sla.yaml`, first match by kind and priority) sets a response target (until the
ticket is acknowledged, or resolved) and a resolution target, counted on a calendar (a time
zone, weekly working hours, holidays; none means around the clock), with the clock paused
while the ticket is in a paused status (waiting on the requester, by default). Nothing is
stored: changing a policy recomputes every ticket.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, NamedTuple

from ..errors import At, BadInput
from .clock import WEEKDAYS, zone_of
from .lifecycle import MAX_SETTING_DAYS, Priority, Status

_DURATION = re.compile(r"^\s*([0-9]+)\s*([mhdw])\s*$")
_HOURS = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)\s*$")


class Calendar(NamedTuple):
    name: str
    zone: tzinfo
    hours: tuple[tuple[time, time] | None, ...]  # by weekday, Monday first; None: a day off
    holidays: frozenset[date]


class Policy(NamedTuple):
    name: str
    kinds: frozenset[str]  # empty: every kind
    priorities: frozenset[str]  # empty: every priority
    respond: timedelta | None
    resolve: timedelta | None
    calendar: Calendar | None  # None: around the clock
    pause: frozenset[str]
    warn_at: tuple[float, ...]  # the shares of a target used that warn (the first makes it at risk), ascending


class Slo(NamedTuple):
    """A service level objective on a CI: the share of its window without an incident that
    counts (P1 and P2 by default, root incidents only)."""

    ci: str
    objective: float  # percent, e.g. 99.9
    window: timedelta
    counts: frozenset[str]  # the priorities whose incidents spend the budget
    freeze: str  # off, warn, refuse: what `sdesk change new` does on a frozen CI


class SlaConfig(NamedTuple):
    policies: tuple[Policy, ...] = ()
    slos: dict[str, Slo] = {}  # CI name -> its SLO

    def policy_for(self, kind: str, priority: str) -> Policy | None:
        for p in self.policies:
            if (not p.kinds or kind in p.kinds) and (not p.priorities or priority in p.priorities):
                return p
        return None


class Target(NamedTuple):
    target: timedelta
    used: timedelta
    done: bool  # met or missed for good (the ticket responded / resolved)
    state: str  # ok, at_risk, breached, met, missed

    @property
    def left(self) -> timedelta:
        return self.target - self.used


# -- loading -----------------------------------------------------------------------------------


def build(data: Any) -> SlaConfig:
    """The SlaConfig of sla.yaml's data, which its model accepted (the checks below are the
    ones the model runs, so none fails here)."""
    data = data or {}
    calendars = {str(raw["name"]): calendar(raw) for raw in data.get("calendars") or []}
    policies = tuple(policy(raw, calendars) for raw in data.get("policies") or [])
    slos = [slo(raw) for raw in data.get("slos") or []]
    return SlaConfig(policies, {s.ci: s for s in slos})


def _fail(message: str) -> ValueError:
    return ValueError(message.split(": ", 1)[1] if message.startswith(": ") else message)


def slo(raw: dict) -> Slo:
    ci = str(raw["ci"]).strip()
    window = duration(raw.get("window", "30d"), "", _fail)
    counts = raw.get("counts", ["P1", "P2"])
    return Slo(ci, float(raw["objective"]), window, frozenset(map(str, counts if isinstance(counts, list) else [counts])),
               raw.get("freeze", "warn"))


def objective(value: Any) -> Any:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 100:
        raise ValueError("expected a percentage, e.g. 99.9")
    return value


def counts(value: Any) -> Any:
    items = value if isinstance(value, list) else [value]
    if not items or not set(map(str, items)) <= set(Priority):
        raise ValueError("expected priorities, e.g. [P1, P2]")
    return value


def duration(text: Any, what: str, fail: Callable[[str], BadInput | ValueError], *, zero: bool = False) -> timedelta:
    found = _DURATION.match(str(text)[:100])
    if not found or (found.group(1).strip("0") == "" and not zero):
        raise fail(f"{what}: expected a duration like 30m, 4h, 2d, 1w")
    digits, unit = found.group(1), found.group(2)
    # At most ten years (MAX_SETTING_DAYS), checked before it is used: now + a longer target
    # overflows the date; more than 9 digits is over it in any unit (and never an int too long).
    span = timedelta(**{{"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: int(digits)}) \
        if len(digits.lstrip("0")) <= 9 else None
    if span is None or span > timedelta(days=MAX_SETTING_DAYS):
        raise fail(f"{what}: {str(text).strip()[:40]!r} is longer than {MAX_SETTING_DAYS} days")
    return span


def calendar(raw: dict) -> Calendar:
    return Calendar(str(raw["name"]), zone_of(raw.get("timezone"), _fail), hours(raw["hours"]),
                    holidays(raw.get("holidays")))


def hours(table: Any) -> tuple[tuple[time, time] | None, ...]:
    """`{mon-fri: 09:00-17:00}`: working hours by weekday, Monday first (None: a day off)."""
    if not isinstance(table, dict) or not table:
        raise ValueError("expected days: HH:MM-HH:MM, e.g. mon-fri: 09:00-17:00")
    by_day: dict[int, tuple[time, time]] = {}
    for days, span in table.items():
        found = _HOURS.match(str(span))
        if not found:
            raise At([days], "expected HH:MM-HH:MM")
        h1, m1, h2, m2 = map(int, found.groups())
        start, end = time(h1, m1), time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        if end <= start:
            raise At([days], "hours must end after they start")
        for day in _days(str(days), functools.partial(At, [days])):
            by_day[day] = (start, end)
    return tuple(by_day.get(day) for day in range(7))


def holidays(items: Any) -> frozenset[date]:
    if items is not None and not isinstance(items, list):
        raise ValueError("expected a list of dates, e.g. [2026-12-25]")
    out = set()
    for i, day in enumerate(items or []):
        try:
            out.add(day.date() if isinstance(day, datetime) else day if isinstance(day, date)
                    else date.fromisoformat(str(day)))
        except ValueError:
            raise At([i], "expected dates, e.g. 2026-12-25") from None
    return frozenset(out)


def _days(text: str, fail: Callable[[str], Exception]) -> list[int]:
    """`mon-fri`, `sat`, `mon,wed,fri` as weekday numbers."""
    out: list[int] = []
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first[:3] not in WEEKDAYS or (last and last[:3] not in WEEKDAYS):
            raise fail("expected days like mon-fri or sat,sun")
        a, b = WEEKDAYS.index(first[:3]), WEEKDAYS.index((last or first)[:3])
        out += [d % 7 for d in range(a, b + 1 if b >= a else b + 8)]
    return out


def one_of(allowed: Iterable[str]) -> Callable[[Any], Any]:
    """A check of `kind: incident` or `[P1, P2]`: each value one of `allowed`."""
    allowed = list(allowed)

    def check(value: Any) -> Any:
        wrong = [str(v) for v in _items(value) if str(v) not in allowed]
        if wrong:
            raise ValueError(f"{wrong[0]!r} is not one of {', '.join(allowed)}")
        return value

    return check


def _items(value: Any) -> list[Any]:
    value = value or []
    return value if isinstance(value, list) else [value]


def policy(raw: dict, calendars: dict[str, Calendar]) -> Policy:
    def values(key: str) -> frozenset[str]:
        return frozenset(str(v) for v in _items(raw.get(key)))

    respond = duration(raw["respond"], "", _fail) if raw.get("respond") is not None else None
    resolve = duration(raw["resolve"], "", _fail) if raw.get("resolve") is not None else None
    pause = values("pause") if "pause" in raw else frozenset({Status.WAITING.value})
    return Policy(str(raw["name"]), values("kind"), values("priority"), respond, resolve,
                  calendars[str(raw["calendar"])] if raw.get("calendar") is not None else None,
                  pause, shares(raw.get("warn_at", 0.8)))


def shares(value: Any) -> tuple[float, ...]:
    return tuple(sorted({float(v) for v in (value if isinstance(value, list) else [value])}))


def warn_at(value: Any) -> Any:
    """A share of the target (0.8), or a list of them ([0.75, 0.9]: a warning at each)."""
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > 10 or any(
            not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v < 1 for v in values):
        raise ValueError("expected a share of the target, e.g. 0.8, or up to 10 of them, e.g. [0.75, 0.9]")
    return value


# -- clocks -------------------------------------------------------------------------------------------


def working_time(calendar: Calendar | None, start: datetime, end: datetime) -> timedelta:
    """The time between two instants that the calendar counts (all of it without one)."""
    if end <= start:
        return timedelta(0)
    if calendar is None:
        return end - start
    zone = calendar.zone
    total = timedelta(0)
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    while day <= last:
        hours = _open(calendar, day)
        if hours is not None:
            a, b = max(hours[0], start), min(hours[1], end)
            if b > a:
                total += b - a
        day += timedelta(days=1)
    return total


class WorkingClock:
    """Working seconds on a calendar as a running total, for many tickets over one span of
    days: the time worked between two instants is total(b) - total(a), the same as
    working_time but in constant time (a report of a year of tickets would otherwise walk
    every day of every ticket)."""

    def __init__(self, calendar: Calendar, start: datetime, end: datetime):
        zone = calendar.zone
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        self.starts: list[float] = []  # each day's local midnight, as epoch seconds
        self.hours: list[tuple[float, float] | None] = []
        self.before: list[float] = []  # working seconds before each day
        total = 0.0
        while day <= last:
            self.starts.append(datetime.combine(day, time(0), zone).timestamp())
            hours = _open(calendar, day)
            self.hours.append((hours[0].timestamp(), hours[1].timestamp()) if hours else None)
            self.before.append(total)
            if hours:
                total += (hours[1] - hours[0]).total_seconds()
            day += timedelta(days=1)

    def total(self, t: float) -> float:
        import bisect

        i = max(0, bisect.bisect_right(self.starts, t) - 1)
        hours = self.hours[i]
        return self.before[i] + (max(0.0, min(t, hours[1]) - hours[0]) if hours else 0.0)


def working_at(calendar: Calendar, instant: datetime) -> bool:
    """Whether the calendar is open at that instant (pages outside are out of hours)."""
    hours = _open(calendar, instant.astimezone(calendar.zone).date())
    return hours is not None and hours[0] <= instant < hours[1]


@functools.lru_cache(maxsize=4096)
def _open(calendar: Calendar, day: date) -> tuple[datetime, datetime] | None:
    """When the calendar's working hours start and end that day, in UTC (None: a day off).
    Cached: the open tickets of a desk share a few days."""
    hours = calendar.hours[day.weekday()]
    if hours is None or day in calendar.holidays:
        return None
    return (datetime.combine(day, hours[0], calendar.zone).astimezone(timezone.utc),
            datetime.combine(day, hours[1], calendar.zone).astimezone(timezone.utc))


def paused_spans(created: datetime, changes: Iterable[tuple[datetime, str]], pause: frozenset[str],
                 until: datetime) -> list[tuple[datetime, datetime]]:
    """The spans the ticket spent in a paused status, from its status changes (time, new status)."""
    spans, since = [], None
    for at, status in sorted(changes):
        if at > until:
            break
        if status in pause and since is None:
            since = at
        elif status not in pause and since is not None:
            spans.append((since, at))
            since = None
    if since is not None:
        spans.append((since, until))
    return spans


def clocks(policy: Policy, *, created: datetime, acknowledged: datetime | None, resolved: datetime | None,
           changes: Iterable[tuple[datetime, str]], now: datetime) -> dict[str, Target]:
    """Each target of the policy for one ticket: time used (on the calendar, pauses excluded)."""
    changes = list(changes)
    out: dict[str, Target] = {}
    for name, target, stop in (("respond", policy.respond, acknowledged or resolved),
                               ("resolve", policy.resolve, resolved)):
        if target is None:
            continue
        until = min(stop, now) if stop else now
        used = working_time(policy.calendar, created, until)
        if changes:  # most tickets never paused: nothing to take off
            for a, b in paused_spans(created, changes, policy.pause, until):
                used -= working_time(policy.calendar, a, b)
            used = max(used, timedelta(0))
        done = stop is not None and stop <= now
        if done:
            state = "met" if used <= target else "missed"
        else:
            state = "breached" if used > target else "at_risk" if used >= target * policy.warn_at[0] else "ok"
        out[name] = Target(target, used, done, state)
    return out


def assess(config: SlaConfig, tickets: Iterable[tuple[dict[str, Any], list[tuple[datetime, str]]]],
           now: datetime) -> Iterable[tuple[dict[str, Any], Policy, dict[str, Target]]]:
    """Each open ticket under a policy, with its targets at `now` (tickets as store_sla reads them)."""
    policies: dict[tuple[str, str], Policy | None] = {}
    for t, changes in tickets:
        key = (t["kind"], t["priority"])
        if key not in policies:
            policies[key] = config.policy_for(*key)
        policy = policies[key]
        if policy is None:
            continue
        acknowledged = t["acknowledged_at"]
        yield t, policy, clocks(policy, created=datetime.fromisoformat(t["created_at"]),
                                acknowledged=datetime.fromisoformat(acknowledged) if acknowledged else None,
                                resolved=None, changes=changes, now=now)


def row(ticket: dict[str, Any], policy: Policy, targets: dict[str, Target]) -> dict[str, Any]:
    """What `sdesk sla` shows of a ticket: its most urgent running target (else its response)."""
    running = min(((x.left, name) for name, x in targets.items() if not x.done), default=None)
    name = running[1] if running else next(iter(targets))
    return {"id": ticket["id"], "title": ticket.get("title"), "queue": ticket.get("queue"),
            "assignee": ticket.get("assignee"), "priority": ticket["priority"], "status": ticket["status"],
            "policy": policy.name, "target": name, "state": targets[name].state,
            "left_seconds": int(targets[name].left.total_seconds()),
            "targets": {n: {"target_seconds": int(x.target.total_seconds()), "used_seconds": int(x.used.total_seconds()),
                            "state": x.state} for n, x in targets.items()}}


def pauses(config: SlaConfig) -> frozenset[str]:
    return frozenset().union(*(p.pause for p in config.policies))


# -- error budgets ----------------------------------------------------------------------------------

BURN_WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "3d": timedelta(days=3)}


def impact_time(incidents: Iterable[tuple[datetime, datetime | None]], since: datetime, until: datetime) -> timedelta:
    """How long at least one incident was open between `since` and `until` (overlaps once)."""
    spans = sorted((max(start, since), min(end or until, until)) for start, end in incidents)
    total, reach = timedelta(0), since
    for start, end in spans:
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def budget(slo: Slo, incidents: list[tuple[datetime, datetime | None]], now: datetime) -> dict[str, Any]:
    """The SLO's error budget over its window and how fast it burns: over each window of
    BURN_WINDOWS, the share of budget pace (1.0 spends the budget exactly over the window).
    Frozen when the budget is spent or it burns at twice its pace over 6 hours."""
    allowed = slo.window * (1 - slo.objective / 100)
    used = impact_time(incidents, now - slo.window, now)
    burn = {name: round(impact_time(incidents, now - length, now) / (length * (1 - slo.objective / 100)), 2)
            for name, length in BURN_WINDOWS.items()}
    share = used / allowed
    status = "frozen" if share >= 1 or burn["6h"] >= 2 else "burning" if burn["6h"] >= 1 else \
        "elevated" if burn["6h"] >= 0.5 else "ok"
    return {"ci": slo.ci, "objective": slo.objective, "window_days": slo.window / timedelta(days=1),
            "budget_seconds": int(allowed.total_seconds()), "used_seconds": int(used.total_seconds()),
            "used_share": round(share, 4), "burn": burn, "status": status, "freeze": slo.freeze}


def burn_urgency(pace: float) -> int | None:
    """Urgency from a CI's 6-hour burn pace: twice the pace is 1, the pace itself 2, half 3."""
    return 1 if pace >= 2 else 2 if pace >= 1 else 3 if pace >= 0.5 else None
