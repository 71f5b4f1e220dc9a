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

from .clock import WEEKDAYS, zone_of
from ..errors import BadInput
from .yamlfile import as_list
from .lifecycle import MAX_SETTING_DAYS, Kind, Priority, Status

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
    warn_at: float  # the share of a target used that makes it at risk


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


def load(text: str, where: str) -> SlaConfig:
    """`sla.yaml`: calendars and policies; every mistake is one BadInput naming file and line."""
    from . import yamlfile

    data, node = yamlfile.parse(text, where)
    if data is None:
        return SlaConfig()

    fail = yamlfile.failure(where, node)

    if not isinstance(data, dict) or set(data) - {"calendars", "policies", "slos"}:
        raise fail([], "expected a mapping with calendars, policies and slos")
    calendars: dict[str, Calendar] = {}
    for i, raw in enumerate(as_list(data.get("calendars"), ["calendars"], fail)):
        calendar = _calendar(raw, ["calendars", str(i)], fail)
        if calendar.name in calendars:
            raise fail(["calendars", str(i)], f"calendar {calendar.name}: the name is used twice")
        calendars[calendar.name] = calendar
    policies = tuple(_policy(raw, ["policies", str(i)], fail, calendars)
                     for i, raw in enumerate(as_list(data.get("policies"), ["policies"], fail)))
    names = [p.name for p in policies]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise fail(["policies", str(names.index(twice, names.index(twice) + 1))], f"policy {twice}: the name is used twice")
    slos = [_slo(raw, ["slos", str(i)], fail) for i, raw in enumerate(as_list(data.get("slos"), ["slos"], fail))]
    return SlaConfig(policies, {slo.ci: slo for slo in slos})


def _slo(raw: Any, loc: list[str], fail: Callable) -> Slo:
    keys = {"ci", "objective", "window", "counts", "freeze"}
    if not isinstance(raw, dict) or "ci" not in raw or set(raw) - keys:
        raise fail(loc, f"an SLO has {', '.join(sorted(keys))} (ci and objective required)")
    ci = str(raw["ci"]).strip()
    objective = raw.get("objective")
    if not isinstance(objective, (int, float)) or isinstance(objective, bool) or not 0 < objective < 100:
        raise fail([*loc, "objective"], f"slo {ci}: objective: expected a percentage, e.g. 99.9")
    window = duration(raw.get("window", "30d"), "window", lambda m: fail([*loc, "window"], f"slo {ci}: {m}"))
    counts = raw.get("counts", ["P1", "P2"])
    counts = counts if isinstance(counts, list) else [counts]
    if not counts or not set(map(str, counts)) <= set(Priority):
        raise fail([*loc, "counts"], f"slo {ci}: counts: expected priorities, e.g. [P1, P2]")
    freeze = raw.get("freeze", "warn")
    if freeze not in ("off", "warn", "refuse"):
        raise fail([*loc, "freeze"], f"slo {ci}: freeze: expected off, warn or refuse")
    return Slo(ci, float(objective), window, frozenset(map(str, counts)), freeze)


def duration(text: Any, what: str, fail: Callable[[str], BadInput], *, zero: bool = False) -> timedelta:
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


def _calendar(raw: Any, loc: list[str], fail: Callable) -> Calendar:
    if not isinstance(raw, dict) or "name" not in raw or set(raw) - {"name", "timezone", "hours", "holidays"}:
        raise fail(loc, "a calendar has a name, a timezone, hours and holidays")
    name = str(raw["name"])
    zone = zone_of(raw.get("timezone"), lambda m: fail([*loc, "timezone"], f"calendar {name}: {m}"))
    hours: dict[int, tuple[time, time]] = {}
    table = raw.get("hours") or {}
    if not isinstance(table, dict) or not table:
        raise fail([*loc, "hours"], f"calendar {name}: hours: expected days: HH:MM-HH:MM, e.g. mon-fri: 09:00-17:00")
    for days, span in table.items():
        found = _HOURS.match(str(span))
        if not found:
            raise fail([*loc, "hours", str(days)], f"calendar {name}: hours: expected HH:MM-HH:MM")
        h1, m1, h2, m2 = map(int, found.groups())
        start, end = time(h1, m1), time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        if end <= start:
            raise fail([*loc, "hours", str(days)], f"calendar {name}: hours must end after they start")
        for day in _days(str(days), lambda m: fail([*loc, "hours", str(days)], f"calendar {name}: {m}")):
            hours[day] = (start, end)
    holidays = set()
    for i, day in enumerate(as_list(raw.get("holidays"), [*loc, "holidays"], fail)):
        try:
            holidays.add(day.date() if isinstance(day, datetime) else day if isinstance(day, date)
                         else date.fromisoformat(str(day)))
        except ValueError:
            raise fail([*loc, "holidays", str(i)], f"calendar {name}: holidays: expected dates, e.g. 2026-12-25") from None
    return Calendar(name, zone, tuple(hours.get(day) for day in range(7)), frozenset(holidays))


def _days(text: str, fail: Callable[[str], BadInput]) -> list[int]:
    """`mon-fri`, `sat`, `mon,wed,fri` as weekday numbers."""
    out: list[int] = []
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first[:3] not in WEEKDAYS or (last and last[:3] not in WEEKDAYS):
            raise fail(f"hours: {text!r}: expected days like mon-fri or sat,sun")
        a, b = WEEKDAYS.index(first[:3]), WEEKDAYS.index((last or first)[:3])
        out += [d % 7 for d in range(a, b + 1 if b >= a else b + 8)]
    return out


def _policy(raw: Any, loc: list[str], fail: Callable, calendars: dict[str, Calendar]) -> Policy:
    keys = {"name", "kind", "priority", "respond", "resolve", "calendar", "pause", "warn_at"}
    if not isinstance(raw, dict) or "name" not in raw or set(raw) - keys:
        extra = sorted(set(raw) - keys)[0] if isinstance(raw, dict) and set(raw) - keys else None
        raise fail([*loc, extra] if extra else loc, f"a policy has {', '.join(sorted(keys))}"
                   + (f"; unknown key {extra!r}" if extra else ""))
    name = str(raw["name"])

    def values(key: str, allowed: Iterable[str]) -> frozenset[str]:
        value = raw.get(key) or []
        items = [str(v) for v in (value if isinstance(value, list) else [value])]
        wrong = [v for v in items if v not in allowed]
        if wrong:
            raise fail([*loc, key], f"policy {name}: {key}: {wrong[0]!r} is not one of {', '.join(allowed)}")
        return frozenset(items)

    kinds, priorities = values("kind", list(Kind)), values("priority", list(Priority))
    respond = duration(raw["respond"], "respond", lambda m: fail([*loc, "respond"], f"policy {name}: {m}")) \
        if raw.get("respond") is not None else None
    resolve = duration(raw["resolve"], "resolve", lambda m: fail([*loc, "resolve"], f"policy {name}: {m}")) \
        if raw.get("resolve") is not None else None
    if respond is None and resolve is None:
        raise fail(loc, f"policy {name}: needs a respond or a resolve target")
    calendar = None
    if raw.get("calendar") is not None:
        calendar = calendars.get(str(raw["calendar"]))
        if calendar is None:
            raise fail([*loc, "calendar"], f"policy {name}: unknown calendar {raw['calendar']!r}")
    pause = values("pause", list(Status)) if "pause" in raw else frozenset({Status.WAITING.value})
    warn_at = raw.get("warn_at", 0.8)
    if not isinstance(warn_at, (int, float)) or isinstance(warn_at, bool) or not 0 < warn_at < 1:
        raise fail([*loc, "warn_at"], f"policy {name}: warn_at: expected a share of the target, e.g. 0.8")
    return Policy(name, kinds, priorities, respond, resolve, calendar, pause, float(warn_at))


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
            state = "breached" if used > target else "at_risk" if used >= target * policy.warn_at else "ok"
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
