"""What `sdesk doctor` concludes: pure functions of the facts it gathered (the store's, the
config's, the environment's) and now, each returning findings, one line each.

A finding is ok, warn (works, but a team would want it fixed: nothing is set up yet, a backup
is a few days old) or fail (something a person relies on is broken now: a damaged file, a
config file that does not load, a P1 that would page nobody).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from .plain import plural

if TYPE_CHECKING:
    from .routing import OnCall

# `sdesk tick` runs every minute from cron or a timer: ten minutes without one is a dead timer,
# and a P1 or P2 open meanwhile is escalated late or never.
TICK_LATE = timedelta(minutes=10)
# Backups run daily: a day and a bit is late (warn), a week is a week of work to lose (fail).
BACKUP_LATE = timedelta(hours=26)
BACKUP_LOST = timedelta(days=7)
# Anchors are optional; once taken daily, two days without one means the timer stopped.
ANCHOR_LATE = timedelta(days=2)


class Finding(NamedTuple):
    check: str
    status: str  # ok | warn | fail
    detail: str  # what was found and, when not ok, how to fix it


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _ago(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            return f"{plural(seconds // length, unit)} ago"
    return "just now"


def database(*, path: str, problems: list[str], schema: int, current: int, journal: str, read_only: str | None,
             size: int, free: int | None, server: str | None = None) -> list[Finding]:
    """The file: SQLite's integrity check, its schema, WAL, its size and the room beside it. On a
    PostgreSQL server (`server`: its version), the same checks of what is sdesk's to check: the
    server keeps its own pages (checksums), log and disk."""
    if server is not None:
        return _database_on_a_server(path=path, server=server, schema=schema, current=current, read_only=read_only,
                                     size=size)
    found = []
    if problems:
        found.append(Finding("database", "fail", f"{path} failed SQLite's integrity check: {problems[0]}; restore a "
                                                 "backup (sdesk restore)"))
    else:
        found.append(Finding("database", "ok", f"{path} passed SQLite's integrity check"))
    if schema != current:
        found.append(Finding("schema", "warn", f"schema version {schema}, this sdesk's is {current}: open the desk "
                                               "writable once to upgrade it"))
    else:
        found.append(Finding("schema", "ok", f"schema version {schema}, this sdesk's"))
    if journal.lower() != "wal":
        found.append(Finding("wal", "warn", f"journal mode {journal}, not WAL: readers and writers block each other; "
                                            "open the desk writable once (sdesk init)"))
    else:
        found.append(Finding("wal", "ok", "write-ahead log on: many readers and writers at once"))
    if read_only:
        found.append(Finding("writable", "warn", f"read-only ({read_only}): every write is refused; give the "
                                                 "desk's users write access to the file and its folder"))
    else:
        found.append(Finding("writable", "ok", "the file and its folder are writable"))
    if free is not None and free < size:
        found.append(Finding("size", "warn", f"{_size(size)}, and {_size(free)} free beside it: a backup or a "
                                             "restore of it would not fit; free some space"))
    else:
        room = f", {_size(free)} free beside it" if free is not None else ""
        found.append(Finding("size", "ok", _size(size) + room))
    return found


def _database_on_a_server(*, path: str, server: str, schema: int, current: int, read_only: str | None,
                          size: int) -> list[Finding]:
    found = [Finding("database", "ok", f"{path}: an sdesk desk on PostgreSQL {server}, which checks its own pages")]
    if schema != current:
        found.append(Finding("schema", "warn", f"schema version {schema}, this sdesk's is {current}: open the desk "
                                               "once as its owner to upgrade it"))
    else:
        found.append(Finding("schema", "ok", f"schema version {schema}, this sdesk's"))
    found.append(Finding("wal", "ok", "the server's write-ahead log: many readers and writers at once"))
    if read_only:
        found.append(Finding("writable", "warn", f"read-only ({read_only}): every write is refused"))
    else:
        found.append(Finding("writable", "ok", "this login may write the desk"))
    found.append(Finding("size", "ok", f"{_size(size)} on the server (its disk is the server's to watch)"))
    return found


def config(*, folder: str | None, error: str | None, loaded: list[str], broken: list[str],
           unknown: list[str]) -> list[Finding]:
    """The config folder in effect and every file in it (`broken`: one error line per file)."""
    if error:
        return [Finding("config", "fail", error)]
    if folder is None:
        return [Finding("config", "warn", "no config folder: no paging, SLAs, triage rules or runbooks; give one "
                                          "with sdesk init --config DIR (or --config, SDESK_CONFIG)")]
    found = []
    if loaded:
        found.append(Finding("config", "ok", f"{folder}: {', '.join(loaded)} {'loads' if len(loaded) == 1 else 'load'}"))
    elif not broken:  # files that do not load are the finding (a fail), not an empty folder too
        found.append(Finding("config", "warn", f"{folder}: no desk files in it: no paging, SLAs or triage rules "
                                               "(start from examples/desk)"))
    found += [Finding("config", "fail", line) for line in broken]
    found += [Finding("config", "warn", f"{folder}: {name} is not a desk file sdesk reads (a misspelt name?)")
              for name in unknown]
    return found


def _people(oncall: OnCall, target: str) -> set[str]:
    """Who a level's target (user:NAME, schedule:NAME, team:NAME) can page, whoever is on call."""
    kind, _, name = target.partition(":")
    if kind == "user":
        return {name}
    if kind == "schedule" and name in oncall.schedules:
        return {user for layer in oncall.schedules[name].layers for user in layer.users}
    if kind == "team" and name in oncall.teams:
        return set(oncall.teams[name].members)
    return set()


def paging(oncall: OnCall | None, *, urgent_open: int, broken: bool = False, command_found: bool = True,
           failing: int = 0) -> list[Finding]:
    """Someone reachable: a notifier whose command exists, each escalation a team uses has people
    on every level, and no P1/P2 page of the last day failed or reached nobody (`failing`).
    `oncall` None: no oncall.yaml (a warning, a failure while P1/P2 tickets are open); `broken`:
    one that does not load (a failure: tick pages nobody until it does)."""
    found = _paging(oncall, urgent_open=urgent_open, broken=broken, command_found=command_found)
    # Pages that did not get through: a failure of their own unless a failing line above is why.
    if failing and not any(f.status == "fail" for f in found):
        found = [f for f in found if f.status != "ok"] + [
            Finding("paging", "fail", f"{plural(failing, 'P1/P2 page')} in the last 24 hours "
                                      f"{'has' if failing == 1 else 'have'} not reached anyone (failed, "
                                      "undeliverable or still retrying): see sdesk pages; test the notifier")]
    return found


def _paging(oncall: OnCall | None, *, urgent_open: int, broken: bool, command_found: bool) -> list[Finding]:
    if broken:
        return [Finding("paging", "fail", "oncall.yaml does not load (see config): nobody is paged until it does")]
    if oncall is None or not oncall.escalation:
        status = "fail" if urgent_open else "warn"
        why = "no oncall.yaml" if oncall is None else "oncall.yaml has no escalation policies"
        return [Finding("paging", status, f"{why}: nobody is paged"
                        + (f" for the {plural(urgent_open, 'open P1/P2 ticket')}" if urgent_open else "")
                        + "; add teams, schedules, escalation and a notifier (examples/desk/oncall.yaml)")]
    found = []
    notifier = oncall.notifier
    if not notifier.command and not notifier.webhook and not notifier.channels:
        found.append(Finding("paging", "fail", "oncall.yaml has no notifier: pages are recorded but reach nobody; "
                                               "add notifier: command, webhook or channels"))
    elif notifier.command and not command_found:
        found.append(Finding("paging", "fail", f"the notifier command {notifier.command[0]} is not found or not "
                                               "executable: every page fails; fix notifier: command in oncall.yaml"))
    else:
        how = " and ".join(x for x in ("a command" if notifier.command else "", "a webhook" if notifier.webhook else "",
                                       f"channels {', '.join(notifier.channels)}" if notifier.channels else "") if x)
        found.append(Finding("paging", "ok", f"pages go out by {how}"))
    for team in oncall.teams.values():
        policy = oncall.escalation.get(team.escalation) if team.escalation else None
        if policy is None:
            continue
        empty = [str(i) for i, level in enumerate(policy.levels, start=1)
                 if not set().union(*(_people(oncall, t) for t in level.targets))]
        if empty:
            found.append(Finding("paging", "fail", f"team {team.name}: escalation {policy.name} pages nobody at level "
                                                   f"{', '.join(empty)}: give its targets people"))
    teams = [t for t in oncall.teams.values() if t.escalation]
    if not teams and not oncall.default_team:
        found.append(Finding("paging", "warn", "no team has an escalation policy and there is no default_team: "
                                               "nothing pages"))
    elif len(found) == 1 and found[0].status == "ok":
        found[0] = found[0]._replace(detail=found[0].detail + f"; {plural(len(teams), 'team')} with escalation, each "
                                                              "level with someone to page")
    return found


def contacts(users: list[dict[str, Any]], *, channels: bool) -> list[Finding]:
    """Every user can be reached: an email address or a chat handle (`channels`: notify.yaml has
    channels that would need one)."""
    if not users:
        return []
    none = [u["name"] for u in users if not u.get("email") and not u.get("chat")]
    if not none:
        return [Finding("contacts", "ok", f"every user has an email address or a chat handle ({plural(len(users), 'user')})")]
    return [Finding("contacts", "warn" if channels else "ok",
                    f"{plural(len(none), 'user')} without an email address or chat handle: {', '.join(none[:10])}"
                    + (" and more" if len(none) > 10 else "")
                    + "; pages and notices cannot reach them (sdesk user add NAME --role ROLE --email ... --chat ...)")]


def outbox(counts: Mapping[str, int]) -> list[Finding]:
    """Messages that will not go by themselves: dead after their tries."""
    dead = counts.get("dead", 0)
    if dead:
        return [Finding("outbox", "fail", f"{plural(dead, 'message')} dead after their tries: see sdesk outbox list "
                                          "--status dead; fix the channel or template, then sdesk outbox retry --dead")]
    if not counts:
        return []
    return [Finding("outbox", "ok", f"{counts.get('delivered', 0):,} delivered, {counts.get('pending', 0):,} waiting")]


def catalog(types: int, problems: list[str]) -> list[Finding]:
    """catalog.yaml against the desk (services/requests.problems): what would fail at run time."""
    if not types:
        return []
    if problems:
        more = f" (and {len(problems) - 1} more: sdesk catalog check)" if len(problems) > 1 else " (sdesk catalog check)"
        return [Finding("catalog", "warn", problems[0] + more)]
    return [Finding("catalog", "ok", f"{plural(types, 'request type')}; runbooks, SLA policies and approvers found")]


def semantic_index(status: Mapping[str, Any]) -> list[Finding]:
    """The semantic index (services/semantic.status): nothing without the extra; a warning when
    much waits (nothing keeps it current: no tick from cron, no serve)."""
    if not status.get("installed"):
        return []
    waiting = status["tickets_pending"] + status["articles_pending"]
    held = f"{status['tickets_indexed']:,} tickets and {status['articles_indexed']:,} articles indexed"
    if waiting > max(1000, status["tickets_indexed"] // 10):
        return [Finding("index", "warn", f"{held}, {waiting:,} wait: search finds them by words only until "
                                                  "sdesk index (or tick from cron, or serve) reaches them")]
    return [Finding("index", "ok", held + (f", {waiting:,} waiting" if waiting else ""))]


def _last_ran(state: Mapping[str, tuple[str, str]], key: str) -> datetime | None:
    from ..errors import BadInput
    from . import clock

    if key not in state:
        return None
    try:
        return clock.parse(state[key][1])
    except BadInput:
        return None


def tick(state: Mapping[str, tuple[str, str]], now: datetime, *, urgent_open: int) -> list[Finding]:
    """`sdesk tick` ran within TICK_LATE. Never, or late: a warning; a failure while P1 or P2
    tickets are open (their escalation waits on tick)."""
    last = _last_ran(state, "tick")
    waiting = f" while {plural(urgent_open, 'P1/P2 ticket')} {'is' if urgent_open == 1 else 'are'} open" \
        if urgent_open else ""
    fix = "run it every minute (examples/deploy: sdesk-tick.timer, or cron)"
    if last is None:
        return [Finding("tick", "fail" if urgent_open else "warn", f"sdesk tick never ran{waiting}: nothing escalates "
                                                                   f"or pages; {fix}")]
    if now - last > TICK_LATE:
        return [Finding("tick", "fail" if urgent_open else "warn",
                        f"sdesk tick last ran {_ago(last, now)}{waiting}; {fix}")]
    return [Finding("tick", "ok", f"sdesk tick last ran {_ago(last, now)}")]


def backup(state: Mapping[str, tuple[str, str]], now: datetime) -> list[Finding]:
    last = _last_ran(state, "backup")
    fix = "run sdesk backup daily (examples/deploy: sdesk-backup.timer)"
    if last is None:
        return [Finding("backup", "warn", f"no backup on record; {fix}")]
    where = state["backup"][0]
    where = "to stdout" if where == "-" else f"to {where}"
    if now - last > BACKUP_LOST:
        return [Finding("backup", "fail", f"last backup {_ago(last, now)} ({where}); {fix}")]
    if now - last > BACKUP_LATE:
        return [Finding("backup", "warn", f"last backup {_ago(last, now)} ({where}); {fix}")]
    return [Finding("backup", "ok", f"last backup {_ago(last, now)} ({where})")]


def anchor(state: Mapping[str, tuple[str, str]], now: datetime) -> list[Finding]:
    last = _last_ran(state, "anchor")
    if last is None:
        return [Finding("anchor", "ok", "no audit anchor taken (optional: sdesk audit anchor --out FILE, daily)")]
    if now - last > ANCHOR_LATE:
        return [Finding("anchor", "warn", f"last audit anchor {_ago(last, now)}: its timer stopped? "
                                          "(examples/deploy: sdesk-anchor.timer)")]
    return [Finding("anchor", "ok", f"last audit anchor {_ago(last, now)}")]


def roles(*, users: int, admins: int, default_role: str) -> list[Finding]:
    if not users:
        return [Finding("roles", "warn", "no users: everyone acts as admin; add the team "
                                         "(sdesk user add NAME --role admin, then agents and viewers)")]
    if not admins:
        return [Finding("roles", "fail", "no admin: nobody can manage users or tokens; restore a backup")]
    if default_role == "admin":
        return [Finding("roles", "warn", "default_role is admin (roles.yaml): anyone not listed may do anything")]
    return [Finding("roles", "ok", f"{plural(users, 'user')}, {plural(admins, 'admin')}; anyone else is "
                                   f"{'an' if default_role[0] in 'aeiou' else 'a'} {default_role}")]


def tokens(*, live: int, revoked: int, viewers: list[str]) -> list[Finding]:
    """API tokens of `sdesk serve` (sdesk keeps no expiry or last use for them)."""
    if not live and not revoked:
        return [Finding("tokens", "ok", "no API tokens: sdesk serve takes requests without one, so only on "
                                        "loopback unless --insecure (sdesk user token NAME)")]
    found = [Finding("tokens", "ok", f"{plural(live, 'live API token')}, {plural(revoked, 'revoked')}")]
    if viewers:
        found.append(Finding("tokens", "warn", f"{plural(len(viewers), 'token')} of a viewer ({', '.join(viewers)}): "
                                               "answered 403 on every post; give the user the agent role"))
    return found


def clock(*, zone: str | None, tz: str | None, tz_ok: bool, fixed: str | None,
          config_zones: list[str]) -> list[Finding]:
    """The machine's time zone (TZ, else /etc/localtime), and the zones the config names (each
    loaded with its file). `fixed`: SDESK_NOW, which stops the clock."""
    found = []
    named = f"; the config's {', '.join(config_zones)} {'loads' if len(config_zones) == 1 else 'load'}" \
        if config_zones else ""
    if fixed:
        found.append(Finding("clock", "warn", f"SDESK_NOW={fixed} fixes the clock: escalations and SLAs stand still; "
                                              "unset it outside tests"))
    if tz is not None and not tz_ok:
        found.append(Finding("clock", "warn", f"TZ={tz} is not a time zone this machine knows: local times show "
                                              "as UTC; set TZ to a name such as Europe/London, or unset it"))
    elif zone is None:
        found.append(Finding("clock", "ok", "local time is UTC (no TZ and no /etc/localtime; set one if the team "
                                            "reads another zone)" + named))
    else:
        found.append(Finding("clock", "ok", f"local time zone {zone} ({'TZ' if tz is not None else '/etc/localtime'})"
                                            + named))
    return found
