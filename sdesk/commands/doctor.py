"""`sdesk doctor`: check the desk and explain, one line a check (the conclusions are health.py's;
this gathers the facts: the store's, the config's, the environment's)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import SdeskError
from ..services.starter import config_files
from .common import print_json, settings_of

if TYPE_CHECKING:
    from ..desk import Desk
    from ..domain.health import Finding

app = typer.Typer(add_completion=False)

WIDTH = 80
# Pages that did not get through in this window fail the paging check (a day: last night's).
PAGES_WINDOW = timedelta(hours=24)
# A POSIX TZ rule such as UTC0 or EST5EDT: no file in the zone database, yet a valid TZ.
_POSIX_TZ = re.compile(r"^[A-Za-z]{3,}[+-]?\d")


@app.command("doctor")
def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of {check, status, detail}.")] = False,
) -> None:
    """Check the desk and say how to fix what is wrong, one line a check: the database (SQLite's
    integrity check, which reads every page: seconds on a big desk; schema version, WAL, size,
    writable), the config (its folder, every file loads), that pages reach someone (a notifier,
    people on every escalation level), that `sdesk tick` ran in the last 10 minutes, the last
    backup and audit anchor, users and roles, API tokens, and the time zones.

    Exits 0 when every check is ok or only warns (a working desk, with something to set up), 1 when any fails.

    Example: sdesk doctor

    Example: sdesk doctor --json | jq '.[] | select(.status != "ok")'
    """
    from ..domain import clock, health

    settings = settings_of(ctx)
    now = clock.now()
    findings: list[Finding] = []
    store, problems, facts = None, [], None
    try:  # first: the config folder may be the one the database recorded
        store = settings.store(strict_config=False)
    except SdeskError as e:
        findings.append(health.Finding("database", "fail", str(e)))
    config_findings, oncall, zones = _config(settings)
    oncall_broken = oncall is False
    oncall = oncall or None
    if store is not None:
        problems = store.integrity()
        facts, read_error = _facts(store, clock.iso(now - PAGES_WINDOW))
        if facts is None:  # a damaged page the integrity check found, most likely
            findings += [health.database(path=str(store.path), problems=problems, schema=0, current=0, journal="wal",
                                         read_only=None, size=0, free=None)[0],
                         health.Finding("database", "fail", read_error)]
        else:
            from ..storage.migrations import SCHEMA_VERSION

            findings += health.database(path=str(store.path), problems=problems, schema=facts["schema"],
                                        current=SCHEMA_VERSION, journal=facts["journal"], read_only=store.read_only,
                                        size=facts["size"], free=facts["free"], server=facts.get("server"))
    findings += config_findings
    urgent = facts["urgent_open"] if facts is not None else 0
    findings += health.paging(oncall, urgent_open=urgent, broken=oncall_broken, command_found=_found(oncall),
                              failing=facts["pages_failing"] if facts is not None else 0)
    if facts is not None:
        findings += health.tick(facts["state"], now, urgent_open=urgent)
        findings += health.backup(facts["state"], now)
        findings += health.anchor(facts["state"], now)
        findings += health.roles(users=facts["users"], admins=facts["admins"], default_role=store.default_role)
        findings += health.tokens(live=facts["tokens_live"], revoked=facts["tokens_revoked"],
                                  viewers=facts["viewer_tokens"])
        try:
            has_notify = settings.config is not None and (settings.config / "notify.yaml").is_file()
        except SdeskError:  # (a config folder that is not there: the config check says so)
            has_notify = False
        findings += health.contacts(store.users.users(), channels=has_notify or bool(oncall and oncall.notifier.channels))
        findings += health.outbox(store.outbox.counts())
        findings += _catalog(settings, store)
        from ..services.semantic import status

        findings += health.semantic_index(status(store))
    findings += health.clock(**_zone(), fixed=os.environ.get("SDESK_NOW") or None, config_zones=zones)

    findings = _once(findings)
    if as_json:
        print_json([f._asdict() for f in findings])
    else:
        _print(findings, store.path if store is not None else None, problems)
    failed = [f for f in findings if f.status == "fail"]
    if problems:
        from ..errors import StoreFault

        raise StoreFault(f"the database is damaged (integrity check failed: {problems[0]}): {store.path}; writes "
                         "are refused from now on. Restore a backup (sdesk restore)")
    if failed:
        from ..domain.plain import plural

        names = list(dict.fromkeys(f.check for f in failed))
        raise SdeskError(f"{plural(len(failed), 'check')} failed: {', '.join(names)}")


def _print(findings: list[Finding], path: Path | None, problems: list[str]) -> None:
    """A headline that sums up the checks (those that failed and warned, by name), then a line a
    check: status, check, and what was found, wrapped at 80 columns under itself."""
    import textwrap

    from ..domain.plain import controls, plural

    worst: dict[str, str] = {}  # a check's worst finding is its status
    for f in findings:
        if ("ok", "warn", "fail").index(f.status) >= ("ok", "warn", "fail").index(worst.get(f.check, "ok")):
            worst[f.check] = f.status
    named = {s: [c for c, w in worst.items() if w == s] for s in ("warn", "fail")}
    total = plural(len(worst), "check")
    # The verdict is the exit code's: warnings leave a working desk (exit 0), named after it.
    head = (f"fail: {len(named['fail'])} of {total} failed: {', '.join(named['fail'])}" if named["fail"] else
            f"ok: {len(worst) - len(named['warn'])} of {total} ok" if named["warn"] else f"ok: all {total} ok")
    if named["warn"]:
        head += f"; {len(named['warn'])} warned: {', '.join(named['warn'])}"
    lines = textwrap.wrap(controls(head, True), WIDTH, subsequent_indent="    ", break_long_words=False,
                          break_on_hyphens=False)
    indent = " " * 16
    for f in findings:
        lines += textwrap.wrap(controls(f.detail, True), WIDTH, initial_indent=f"{f.status:<6}{f.check:<10}",
                               subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    if problems[1:]:
        lines += ["", "SQLite found:", *(controls(p, True) for p in problems)]
    print(controls("\n".join(lines)))


def _once(findings: list[Finding]) -> list[Finding]:
    """Each cause once: a database error the config check met again (it reads the recorded folder
    from the desk) is the database's line only; and no line tells the reader to run doctor."""
    seen, kept = set(), []
    for f in findings:
        f = f._replace(detail=re.sub(r",? or see what is damaged with sdesk doctor|,? (?:and )?run sdesk doctor again",
                                     "", f.detail))
        if f.detail not in seen:
            seen.add(f.detail)
            kept.append(f)
    return kept


def _facts(store: Any, since: str) -> tuple[dict[str, Any] | None, str]:
    """The store's facts, or why they cannot be read (a damaged page the integrity check found)."""
    import sqlite3

    from ..store import explain

    try:
        return store.health.facts(since=since), ""
    except sqlite3.Error as e:
        return None, f"cannot read the desk: {explain(e, store.path)}"


def _config(settings: Desk) -> tuple[list[Finding], Any, list[str]]:
    """The config findings, the on-call config (None when there is none, False when it does not
    load) and the time zones the config names."""
    from ..domain import health
    from ..domain.plain import plural

    try:
        folder = settings.config
    except SdeskError as e:  # a --config naming no folder
        _default_role_only(settings)
        return health.config(folder=None, error=str(e), loaded=[], broken=[], unknown=[]), None, []
    if folder is None:
        return health.config(folder=None, error=None, loaded=[], broken=[], unknown=[]), None, []
    if not folder.is_dir():
        return health.config(folder=None, error=f"config folder {folder} does not exist (--config, SDESK_CONFIG "
                                                 "or the one sdesk init --config recorded)",
                             loaded=[], broken=[], unknown=[]), None, []
    loaded, broken, zones = [], [], set()
    oncall = None
    for name, file in settings.desk_files().items():
        if file.error is not None:
            broken.append(file.error)
            oncall = False if name == "oncall" else oncall
            if name == "roles":
                _default_role_only(settings)
            continue
        loaded.append(file.path.name)
        value = file.value
        if name == "oncall":
            oncall = value
            zones |= {str(s.zone) for s in value.schedules.values()}
        elif name == "sla":
            zones |= {str(p.calendar.zone) for p in value.policies if p.calendar is not None}
        elif name == "triage" and value.timezone is not None:
            zones.add(str(value.timezone))
    runbooks, errors = settings.runbooks()
    if runbooks:
        loaded.append(plural(len(runbooks), "runbook"))
    broken += errors
    # A misspelt name (oncal.yaml) or the wrong suffix (oncall.yml): sdesk would never read it.
    unknown = config_files(folder)[1]
    return (health.config(folder=str(folder), error=None, loaded=loaded, broken=broken, unknown=unknown), oncall,
            sorted(zones))


def _catalog(settings: Desk, store: Any) -> list[Finding]:
    from ..domain import health
    from ..services.requests import problems, teams_of

    try:
        loaded = settings.desk_files(("catalog",)).get("catalog")
        if loaded is None or loaded.value is None or not loaded.value.types:
            return []  # none, or broken (the config check says so)
        oncall, sla = settings.oncall_config(), settings.sla_config()
    except SdeskError:
        return []  # no config folder, or a file that does not load: the config check says which
    runbooks, errors = settings.runbooks()
    return health.catalog(len(loaded.value.types), problems(store, loaded.value, runbooks=runbooks,
                                                            runbook_errors=errors, sla=sla, teams=teams_of(oncall),
                                                            queues=set(oncall.queues)))


def _found(oncall: Any) -> bool:
    """The notifier command runs: a name on PATH, or a path to an executable file (as tick runs it)."""
    import shutil

    if not oncall or not oncall.notifier.command:
        return True
    try:
        return shutil.which(oncall.notifier.command[0]) is not None
    except (OSError, ValueError):  # a name too long for a file name, a NUL
        return False


def _default_role_only(settings: Desk) -> None:
    """Open the desk with the built-in default role when roles.yaml (or the folder holding it)
    cannot be read: the config check reports that, and the desk's own checks still run."""
    from ..domain.roles import DEFAULT_ROLE

    settings.default_role = lambda: DEFAULT_ROLE  # type: ignore[method-assign]


def _zone() -> dict[str, Any]:
    """The machine's time zone: TZ when set (and whether it names a zone), else /etc/localtime."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    tz = os.environ.get("TZ")
    if tz is not None:
        name = tz.removeprefix(":")
        try:
            ZoneInfo(name)
            known = True
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            known = bool(_POSIX_TZ.match(name)) or os.path.isfile(name)
        return {"zone": name, "tz": tz, "tz_ok": known}
    localtime = Path("/etc/localtime")
    if not localtime.exists():
        return {"zone": None, "tz": None, "tz_ok": True}
    real = os.path.realpath(localtime)
    return {"zone": real.split("zoneinfo/", 1)[1] if "zoneinfo/" in real else str(localtime), "tz": None, "tz_ok": True}
