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
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from .clock import WEEKDAYS, zone_of
from ..errors import BadInput
from .lifecycle import MAX_SETTING_DAYS
from .yamlfile import as_list

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


def load_policies(raw: Any, oncall: OnCall, fail: Callable[[list[str], str], BadInput]) -> dict[str, Policy]:
    """`escalation:` of oncall.yaml, checked against its teams and schedules."""
    from .sla import duration  # (sla.py reads SLA files; only this loader needs its durations)

    policies: dict[str, Policy] = {}
    for i, item in enumerate(raw or []):
        loc = ["escalation", str(i)]
        if isinstance(item, dict) and not isinstance(item.get("levels", []), list):
            raise fail([*loc, "levels"], "levels: expected a list")
        if not isinstance(item, dict) or "name" not in item or set(item) - {"name", "levels", "repeat", "page"}:
            raise fail(loc, "an escalation policy has a name, levels, repeat and page")
        name = str(item["name"])
        levels = []
        for j, level in enumerate(item.get("levels") or []):
            where = [*loc, "levels", str(j)]
            if not isinstance(level, dict) or set(level) - {"targets", "delay"} or not level.get("targets"):
                raise fail(where, f"policy {name}: a level has targets and a delay")
            targets = level["targets"] if isinstance(level["targets"], list) else [level["targets"]]
            for k, target in enumerate(targets):
                kind, _, value = str(target).partition(":")
                known = {"user": {u for t in oncall.teams.values() for u in t.members}, "schedule": oncall.schedules,
                         "team": oncall.teams}.get(kind)
                if known is None or value not in known:
                    raise fail([*where, "targets", str(k)],
                               f"policy {name}: target {target!r}: expected user:, schedule: or team: with a known name")
            delay = duration(level.get("delay", "15m"), "delay", lambda m: fail([*where, "delay"], f"policy {name}: {m}"),
                             zero=True)
            levels.append(Level(tuple(str(t) for t in targets), delay))
        if not levels:
            raise fail(loc, f"policy {name}: needs at least one level")
        repeat = item.get("repeat", 0)
        if type(repeat) is not int or not 0 <= repeat <= 10:
            raise fail([*loc, "repeat"], f"policy {name}: repeat: expected 0 to 10")
        page = item.get("page", sorted(DEFAULT_PAGE))
        page = page if isinstance(page, list) else [page]
        if not set(map(str, page)) <= {"P1", "P2", "P3", "P4"}:
            raise fail([*loc, "page"], f"policy {name}: page: expected priorities, e.g. [P1, P2]")
        policies[name] = Policy(name, tuple(levels), repeat, frozenset(map(str, page)))
    return policies


# -- loading -----------------------------------------------------------------------------------


def load(text: str, where: str) -> OnCall:
    """`oncall.yaml`: teams (members with roles, a schedule) and schedules. Every mistake is
    one BadInput naming the file and line."""
    from . import yamlfile

    data, node = yamlfile.parse(text, where)
    if data is None:
        return OnCall({}, {})

    fail = yamlfile.failure(where, node)

    if not isinstance(data, dict) or set(data) - {"teams", "schedules", "escalation", "default_team", "notifier", "queues"}:
        raise fail([], "expected a mapping with teams, schedules, queues, escalation, default_team and notifier")
    schedules: dict[str, Schedule] = {}
    for i, raw in enumerate(as_list(data.get("schedules"), ["schedules"], fail)):
        schedule = _schedule(raw, ["schedules", str(i)], fail)
        if schedule.name in schedules:
            raise fail(["schedules", str(i)], f"schedule {schedule.name}: the name is used twice")
        schedules[schedule.name] = schedule
    teams: dict[str, Team] = {}
    for i, raw in enumerate(as_list(data.get("teams"), ["teams"], fail)):
        team = _team(raw, ["teams", str(i)], fail, schedules)
        if team.name in teams:
            raise fail(["teams", str(i)], f"team {team.name}: the name is used twice")
        teams[team.name] = team
    members = {user for team in teams.values() for user in team.members}
    for s_i, schedule in enumerate(schedules.values()):
        for l_i, layer in enumerate(schedule.layers):
            for u_i, user in enumerate(layer.users):
                if user not in members:
                    raise fail(["schedules", str(s_i), "layers", str(l_i), "users", str(u_i)],
                               f"schedule {schedule.name}: unknown user {user!r} (not a member of any team)")
    policies = load_policies(as_list(data.get("escalation"), ["escalation"], fail), OnCall(teams, schedules), fail)
    for i, team in enumerate(teams.values()):
        if team.escalation is not None and team.escalation not in policies:
            raise fail(["teams", str(i), "escalation"], f"team {team.name}: unknown escalation policy {team.escalation!r}")
    default_team = data.get("default_team")
    if default_team is not None and (not isinstance(default_team, str) or default_team not in teams):
        raise fail(["default_team"], f"default_team: unknown team {default_team!r}")
    queues: dict[str, Queue] = {}
    for i, raw in enumerate(as_list(data.get("queues"), ["queues"], fail)):
        loc = ["queues", str(i)]
        if not isinstance(raw, dict) or "name" not in raw or set(raw) - {"name", "team", "strategy"}:
            raise fail(loc, "a queue has a name, a team and a strategy")
        name = _name(raw["name"], [*loc, "name"], fail, "queue")
        if not isinstance(raw.get("team"), str) or raw["team"] not in teams:
            raise fail([*loc, "team"], f"queue {name}: unknown team {raw.get('team')!r}")
        strategy = raw.get("strategy", "manual")
        if strategy not in STRATEGIES:
            raise fail([*loc, "strategy"], f"queue {name}: strategy: expected one of {', '.join(STRATEGIES)}")
        if strategy == "oncall" and teams[raw["team"]].schedule is None:
            raise fail([*loc, "strategy"], f"queue {name}: strategy oncall, but team {raw['team']} has no schedule")
        queues[name] = Queue(name, raw["team"], strategy)
    return OnCall(teams, schedules, policies, default_team, _notifier(data.get("notifier"), fail), queues)


def _notifier(raw: Any, fail: Callable) -> Notifier:
    if raw is None:
        return Notifier()
    if not isinstance(raw, dict) or set(raw) - {"command", "webhook", "timeout", "max_per_hour"}:
        raise fail(["notifier"], "notifier: expected command (a list: the program and its arguments), webhook, "
                                 "timeout and max_per_hour")
    command = raw.get("command") or []
    if not isinstance(command, list) or not all(isinstance(c, str) and c for c in command):
        raise fail(["notifier", "command"], "notifier: command: expected a list, e.g. [./notify.sh, --channel, ops]")
    timeout = raw.get("timeout", 10)
    # At least a second: a smaller one cannot start a process or open a connection on a busy
    # machine, so every page would fail (a notifier that can never deliver is a config mistake).
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        raise fail(["notifier", "timeout"], "notifier: timeout: expected seconds, from 1 to 300")
    webhook = raw.get("webhook")
    if webhook is not None and not (isinstance(webhook, str) and re.match(r"^https?://\S+$", webhook)):
        raise fail(["notifier", "webhook"], "notifier: webhook: expected an http(s) URL")
    limit = raw.get("max_per_hour")
    if limit is not None and (type(limit) is not int or not 1 <= limit <= 100_000):  # counted in SQL: a 64-bit int
        raise fail(["notifier", "max_per_hour"], "notifier: max_per_hour: expected a number from 1 to 100000")
    return Notifier(tuple(command), webhook, float(timeout), limit)


def _name(value: Any, loc: list[str], fail: Callable, what: str) -> str:
    if not isinstance(value, (str, int)) or not _NAME.match(str(value)):
        raise fail(loc, f"{what}: expected a name (letters, digits, . _ @ + -)")
    return str(value)


def _team(raw: Any, loc: list[str], fail: Callable, schedules: dict[str, Schedule]) -> Team:
    if not isinstance(raw, dict) or "name" not in raw:
        raise fail(loc, "a team needs a name and members")
    name = _name(raw["name"], [*loc, "name"], fail, "team")
    unknown = set(raw) - {"name", "members", "schedule", "escalation", "description"}
    if unknown:
        raise fail([*loc, sorted(unknown)[0]], f"team {name}: unknown key {sorted(unknown)[0]!r}")
    members: dict[str, str] = {}
    for i, member in enumerate(as_list(raw.get("members"), [*loc, "members"], fail)):
        where = [*loc, "members", str(i)]
        if isinstance(member, dict):
            if set(member) - {"user", "role"} or "user" not in member:
                raise fail(where, f"team {name}: a member is a user name, or user and role")
            user, role = _name(member["user"], where, fail, "user"), str(member.get("role") or "responder")
        else:
            user, role = _name(member, where, fail, "user"), "responder"
        members[user] = role
    if not members:
        raise fail(loc, f"team {name}: needs at least one member")
    schedule = raw.get("schedule")
    if schedule is not None and (not isinstance(schedule, str) or schedule not in schedules):
        raise fail([*loc, "schedule"], f"team {name}: unknown schedule {schedule!r}")
    escalation = raw.get("escalation")
    if escalation is not None and not isinstance(escalation, str):
        raise fail([*loc, "escalation"], f"team {name}: escalation: expected a policy name")
    return Team(name, members, schedule, escalation)


def _schedule(raw: Any, loc: list[str], fail: Callable) -> Schedule:
    if not isinstance(raw, dict) or "name" not in raw:
        raise fail(loc, "a schedule needs a name, a timezone and layers")
    name = _name(raw["name"], [*loc, "name"], fail, "schedule")
    unknown = set(raw) - {"name", "timezone", "layers", "description"}
    if unknown:
        raise fail([*loc, sorted(unknown)[0]], f"schedule {name}: unknown key {sorted(unknown)[0]!r}")
    zone = zone_of(raw.get("timezone"), lambda message: fail([*loc, "timezone"], f"schedule {name}: {message}"))
    layers = tuple(_layer(layer, [*loc, "layers", str(i)], fail, name)
                   for i, layer in enumerate(as_list(raw.get("layers"), [*loc, "layers"], fail)))
    if not layers:
        raise fail(loc, f"schedule {name}: needs at least one layer")
    return Schedule(name, zone, layers)


def _layer(raw: Any, loc: list[str], fail: Callable, schedule: str) -> Layer:
    if not isinstance(raw, dict):
        raise fail(loc, f"schedule {schedule}: a layer needs start, length and users")
    unknown = set(raw) - {"name", "start", "length", "users", "restrictions"}
    if unknown:
        raise fail([*loc, sorted(unknown)[0]], f"schedule {schedule}: unknown layer key {sorted(unknown)[0]!r}")
    name = str(raw.get("name") or f"layer {int(loc[-1]) + 1}")
    start = raw.get("start")
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start.strip())
        except ValueError:
            start = None
    if isinstance(start, datetime) and start.tzinfo is not None:
        raise fail([*loc, "start"], f"schedule {schedule}: start is local time in the schedule's zone; leave out the offset")
    if not isinstance(start, datetime):
        raise fail([*loc, "start"], f"schedule {schedule}: start: expected a local date and time, e.g. 2026-11-02T09:00")
    found = _LENGTH.match(str(raw.get("length", ""))[:100])
    if not found or found.group(1).strip("0") == "":
        raise fail([*loc, "length"], f"schedule {schedule}: length: expected hours, days or weeks, e.g. 12h, 1d, 1w")
    digits, unit = found.group(1), found.group(2)
    count = int(digits) if len(digits.lstrip("0")) <= 9 else 10**9  # over the limit either way
    hours = count * {"h": 1, "d": 24, "w": 168}[unit]
    if hours > MAX_SETTING_DAYS * 24:  # a rotation is walked from its start: a longer one overflows the date
        raise fail([*loc, "length"], f"schedule {schedule}: length: at most {MAX_SETTING_DAYS} days")
    length = timedelta(hours=hours)
    users = tuple(_name(u, [*loc, "users", str(i)], fail, "user") for i, u in enumerate(as_list(raw.get("users"), [*loc, "users"], fail)))
    if not users:
        raise fail([*loc, "users"], f"schedule {schedule}: a layer needs at least one user")
    restrictions = tuple(_window(w, [*loc, "restrictions", str(i)], fail, schedule)
                         for i, w in enumerate(as_list(raw.get("restrictions"), [*loc, "restrictions"], fail)))
    return Layer(name, start, length, users, restrictions)


def _window(raw: Any, loc: list[str], fail: Callable, schedule: str) -> Window:
    if not isinstance(raw, dict) or set(raw) - {"days", "from", "to"}:
        raise fail(loc, f"schedule {schedule}: a restriction has days, from and to")
    days = raw.get("days", list(WEEKDAYS))
    days = days if isinstance(days, list) else [days]
    names = [str(d).strip().lower() for d in days]
    names = [n[:3] if n in WEEKDAY_NAMES else n for n in names]
    if not names or not set(names) <= set(WEEKDAYS):
        raise fail([*loc, "days"], f"schedule {schedule}: days: expected names from {', '.join(WEEKDAYS)}")
    clocks = []
    for key in ("from", "to"):
        found = _CLOCK.match(str(raw.get(key, "")))
        if not found:
            raise fail([*loc, key], f"schedule {schedule}: {key}: expected HH:MM")
        clocks.append(time(int(found.group(1)), int(found.group(2))))
    return Window(frozenset(WEEKDAYS.index(d) for d in names), clocks[0], clocks[1])


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
