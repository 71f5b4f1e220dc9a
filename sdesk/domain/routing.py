"""Who is on call: teams and schedules from the desk's `oncall.yaml`, and overrides. Pure:
config, overrides and a time in; people and shifts out.

A schedule has layers, each a rotation: ordered users handing off every `length` (`1d`,
`1w`, `12h`...) counted from `start` in the schedule's time zone, optionally only within
`restrictions` (weekdays and hours). Handoffs are counted in wall-clock time, so a 09:00
handoff stays at 09:00 across daylight-saving changes. A later layer, where it has someone,
wins over an earlier one; an override wins over every layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from ..errors import At, BadInput
from .clock import WEEKDAYS, zone_of
from .lifecycle import MAX_SETTING_DAYS

WEEKDAY_NAMES = frozenset([*WEEKDAYS, "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"])
_LENGTH = re.compile(r"^\s*([0-9]+)\s*([hdw])\s*$")
_CLOCK = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.@+-]*$")


class Window(NamedTuple):
    days: frozenset[int]  # weekday numbers, Monday 0
    start: time
    end: time  # end <= start: the window runs past midnight


class Layer(NamedTuple):
    name: str
    start: datetime  # naive: wall-clock time in the schedule's zone
    length: timedelta
    users: tuple[str, ...]
    restrictions: tuple[Window, ...]


class Schedule(NamedTuple):
    name: str
    zone: tzinfo
    layers: tuple[Layer, ...]


class Team(NamedTuple):
    name: str
    members: dict[str, str]  # user -> role
    schedule: str | None
    escalation: str | None = None  # its escalation policy


STRATEGIES = ("manual", "oncall", "round_robin", "least_loaded")
LOAD_WEIGHTS = {"P1": 4, "P2": 3, "P3": 2, "P4": 1}  # an open P1 counts as four P4s


class Queue(NamedTuple):
    name: str
    team: str
    strategy: str  # one of STRATEGIES


class Notifier(NamedTuple):
    command: tuple[str, ...] = ()  # gets each page as JSON on stdin
    webhook: str | None = None  # gets each page as a JSON POST
    timeout: float = 10.0
    max_per_hour: int | None = None  # pages to one person an hour; more are sent as one batch
    channels: tuple[str, ...] = ()  # notify.yaml's channels, reaching the person by their email or chat handle


class OnCall(NamedTuple):
    teams: dict[str, Team]
    schedules: dict[str, Schedule]
    escalation: dict[str, Any] = {}  # name -> Policy
    default_team: str | None = None  # whose policy pages for a ticket no team or queue claims
    notifier: Notifier = Notifier()
    queues: dict[str, Queue] = {}


class Override(NamedTuple):
    schedule: str
    user: str
    start: datetime  # aware
    end: datetime


class Shift(NamedTuple):
    start: datetime  # aware, UTC
    end: datetime
    user: str | None
    source: str  # the layer's name, "override", or "" for nobody


# -- escalation policies (the `escalation:` of oncall.yaml; escalation.py pages by them) ----


DEFAULT_PAGE = frozenset({"P1", "P2"})


class Level(NamedTuple):
    targets: tuple[str, ...]  # user:NAME, schedule:NAME, team:NAME
    delay: timedelta  # how long it waits for an ack before the next level


class Policy(NamedTuple):
    name: str
    levels: tuple[Level, ...]
    repeat: int
    page: frozenset[str]


def build(data: Any) -> OnCall:
    """The OnCall of oncall.yaml's data, which its model accepted (the checks below are the
    ones the model runs, so none fails here)."""
    from .sla import duration

    data = data or {}
    schedules = {}
    for raw in data.get("schedules") or []:
        schedules[str(raw["name"])] = Schedule(str(raw["name"]), zone_of(raw.get("timezone"), BadInput), tuple(
            layer(item, i) for i, item in enumerate(raw["layers"])))
    teams = {}
    for raw in data.get("teams") or []:
        teams[str(raw["name"])] = Team(str(raw["name"]), dict(member(m) for m in raw["members"]), raw.get("schedule"),
                                       raw.get("escalation"))
    policies = {}
    for raw in data.get("escalation") or []:
        levels = tuple(Level(tuple(str(t) for t in _items(level["targets"])),
                             duration(level.get("delay", "15m"), "delay", BadInput, zero=True))
                       for level in raw["levels"])
        policies[str(raw["name"])] = Policy(str(raw["name"]), levels, raw.get("repeat", 0),
                                            frozenset(map(str, _items(raw.get("page", sorted(DEFAULT_PAGE))))))
    queues = {str(raw["name"]): Queue(str(raw["name"]), raw["team"], raw.get("strategy", "manual"))
              for raw in data.get("queues") or []}
    raw = data.get("notifier") or {}
    notifier = Notifier(tuple(raw.get("command") or ()), raw.get("webhook"), float(raw.get("timeout", 10)),
                        raw.get("max_per_hour"), tuple(str(c) for c in raw.get("channels") or ()))
    return OnCall(teams, schedules, policies, data.get("default_team"), notifier, queues)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# The checks of oncall.yaml's values (config.OnCallFile runs them; `build` converts with them).


def name(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not _NAME.match(str(value)):
        raise ValueError("expected a name (letters, digits, . _ @ + -)")
    return value


def member(value: Any) -> tuple[str, str]:
    """A team member, `ann` or `{user: ann, role: lead}`, as (user, role)."""
    if isinstance(value, dict):
        if set(value) - {"user", "role"} or "user" not in value:
            raise ValueError("a member is a user name, or user and role")
        try:
            name(value["user"])
        except ValueError as e:
            raise At(["user"], str(e)) from None
        return str(value["user"]), str(value.get("role") or "responder")
    name(value)
    return str(value), "responder"


def members(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError("needs at least one member (a list of users)")
    for i, item in enumerate(value):
        try:
            member(item)
        except At as e:
            raise At([i, *e.loc], e.message) from None
        except ValueError as e:
            raise At([i], str(e)) from None
    return value


def layer(raw: dict, index: int) -> Layer:
    return Layer(str(raw.get("name") or f"layer {index + 1}"), layer_start(raw["start"]), layer_length(raw["length"]),
                 tuple(str(u) for u in raw["users"]), tuple(window(w) for w in raw.get("restrictions") or []))


def layer_start(start: Any) -> datetime:
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start.strip())
        except ValueError:
            start = None
    if isinstance(start, datetime) and start.tzinfo is not None:
        raise ValueError("local time in the schedule's zone: leave out the offset")
    if not isinstance(start, datetime):
        raise ValueError("expected a local date and time, e.g. 2026-11-02T09:00")
    return start


def layer_length(value: Any) -> timedelta:
    found = _LENGTH.match(str(value if value is not None else "")[:100])
    if not found or found.group(1).strip("0") == "":
        raise ValueError("expected hours, days or weeks, e.g. 12h, 1d, 1w")
    digits, unit = found.group(1), found.group(2)
    count = int(digits) if len(digits.lstrip("0")) <= 9 else 10**9  # over the limit either way
    hours = count * {"h": 1, "d": 24, "w": 168}[unit]
    if hours > MAX_SETTING_DAYS * 24:  # a rotation is walked from its start: a longer one overflows the date
        raise ValueError(f"at most {MAX_SETTING_DAYS} days")
    return timedelta(hours=hours)


def window(raw: dict) -> Window:
    days = [str(d).strip().lower() for d in _items(raw.get("days", list(WEEKDAYS)))]
    return Window(frozenset(WEEKDAYS.index(d[:3]) for d in days), clock_of(raw["from"]), clock_of(raw["to"]))


def days(value: Any) -> Any:
    names = [str(d).strip().lower() for d in _items(value)]
    names = [n[:3] if n in WEEKDAY_NAMES else n for n in names]
    if not names or not set(names) <= set(WEEKDAYS):
        raise ValueError(f"expected names from {', '.join(WEEKDAYS)}")
    return value


def clock_of(value: Any) -> time:
    found = _CLOCK.match(str(value))
    if not found:
        raise ValueError("expected HH:MM")
    return time(int(found.group(1)), int(found.group(2)))


def target_kind(target: Any) -> tuple[str, str]:
    kind, _, value = str(target).partition(":")
    return kind, value


def webhook(value: Any) -> Any:
    if value is not None and not (isinstance(value, str) and re.match(r"^https?://\S+$", value)):
        raise ValueError("expected an http(s) URL")
    return value


def channel_names(value: Any) -> Any:
    if value is not None and (not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value)):
        raise ValueError("expected a list of notify.yaml's channels, e.g. [email, ops-slack]")
    return value


def command(value: Any) -> Any:
    if value is not None and (not isinstance(value, list) or not all(isinstance(c, str) and c for c in value)):
        raise ValueError("expected a list, e.g. [./notify.sh, --channel, ops]")
    return value


# -- who is on call ---------------------------------------------------------------------------------


def _local(at: datetime, zone: tzinfo) -> datetime:
    """Wall-clock time in the zone, without the zone: rotations count in it."""
    return at.astimezone(zone).replace(tzinfo=None)


def _in_window(local: datetime, window: Window) -> bool:
    t = local.time()
    if window.start < window.end:
        return local.weekday() in window.days and window.start <= t < window.end
    # Past midnight: the part after midnight belongs to the day before.
    if t >= window.start:
        return local.weekday() in window.days
    return t < window.end and (local.weekday() - 1) % 7 in window.days


def layer_user(layer: Layer, zone: tzinfo, at: datetime) -> str | None:
    local = _local(at, zone)
    if local < layer.start:
        return None
    if layer.restrictions and not any(_in_window(local, w) for w in layer.restrictions):
        return None
    # The turn by wall clock, then checked against the handoff instants themselves: in the
    # hour a DST change repeats or skips, wall clock and instants disagree, shifts use instants.
    turn = (local - layer.start) // layer.length
    if _aware(layer.start + turn * layer.length, zone) > at:
        turn -= 1
    elif _aware(layer.start + (turn + 1) * layer.length, zone) <= at:
        turn += 1
    if turn < 0:
        return None
    return layer.users[turn % len(layer.users)]


def on_call(schedule: Schedule, overrides: Iterable[Override], at: datetime) -> tuple[str | None, str]:
    """(user, from which layer or "override") on call at `at`; (None, "") when nobody is."""
    for o in overrides:
        if o.schedule == schedule.name and o.start <= at < o.end:
            return o.user, "override"
    for layer in reversed(schedule.layers):
        user = layer_user(layer, schedule.zone, at)
        if user is not None:
            return user, layer.name
    return None, ""


def shifts(schedule: Schedule, overrides: list[Override], start: datetime, end: datetime) -> list[Shift]:
    """Who is on call from `start` to `end`, as consecutive shifts (nobody included)."""
    from datetime import timezone

    zone = schedule.zone
    points = {start, end}
    points |= {o.start for o in overrides if start < o.start < end} | {o.end for o in overrides if start < o.end < end}
    first, last = _local(start, zone), _local(end, zone)
    for layer in schedule.layers:
        # Handoffs in wall-clock time, from the one before `start`.
        turn = max(0, (first - layer.start) // layer.length)
        handoff = layer.start + turn * layer.length
        while handoff <= last:
            points.add(_aware(handoff, zone))
            handoff += layer.length
        day = first.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        while layer.restrictions and day <= last:
            for w in layer.restrictions:
                points.add(_aware(datetime.combine(day.date(), w.start), zone))
                points.add(_aware(datetime.combine(day.date(), w.end), zone))
            day += timedelta(days=1)
    ordered = sorted(p.astimezone(timezone.utc) for p in points if start <= p <= end)
    out: list[Shift] = []
    for a, b in zip(ordered, ordered[1:]):
        if a == b:
            continue
        user, source = on_call(schedule, overrides, a)
        if out and out[-1].user == user and out[-1].source == source:
            out[-1] = out[-1]._replace(end=b)
        else:
            out.append(Shift(a, b, user, source))
    return out


def _aware(local: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in the zone as an instant (a time skipped by a DST change moves on)."""
    from datetime import timezone

    return local.replace(tzinfo=zone).astimezone(timezone.utc).astimezone(zone)


def check_override(override: Override, config: OnCall, existing: Iterable[Override]) -> None:
    schedule = config.schedules.get(override.schedule)
    if schedule is None:
        raise BadInput(f"--schedule: unknown schedule {override.schedule!r} "
                       f"(schedules: {', '.join(config.schedules) or 'none in oncall.yaml'})")
    if not any(override.user in team.members for team in config.teams.values()):
        raise BadInput(f"--user: {override.user!r} is not a member of any team in oncall.yaml")
    if override.end <= override.start:
        raise BadInput("override: --to must be after --from")
    for other in existing:
        if other.schedule == override.schedule and other.start < override.end and override.start < other.end:
            raise BadInput(f"override overlaps the one for {other.user} from {other.start.isoformat()} "
                           f"to {other.end.isoformat()} on {other.schedule}")


def pick_assignee(queue: Queue, config: OnCall, overrides: Iterable[Override], at: datetime,
                  load: dict[str, int], last: str | None) -> tuple[str | None, str]:
    """Who the queue's strategy gives the next ticket to, and why. `load`: each member's open
    tickets weighted by priority (LOAD_WEIGHTS); `last`: who the queue gave its last one to."""
    members = list(config.teams[queue.team].members)
    if queue.strategy == "manual":
        return None, f"queue {queue.name} assigns by hand"
    if queue.strategy == "oncall":
        schedule = config.teams[queue.team].schedule
        assert schedule is not None  # the model refuses an oncall queue whose team has no schedule
        user, layer = on_call(config.schedules[schedule], overrides, at)
        if user is not None:
            return user, f"on call for {schedule} ({layer})"
    if queue.strategy == "round_robin":
        following = members.index(last) + 1 if last in members else 0
        user = members[following % len(members)]
        return user, f"round robin in {queue.team}" + (f", after {last}" if last in members else "")
    user = min(members, key=lambda m: (load.get(m, 0), members.index(m)))
    return user, f"least loaded in {queue.team} ({load.get(user, 0)} open, weighted)" + (
        ", nobody on call" if queue.strategy == "oncall" else "")
