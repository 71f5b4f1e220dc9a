"""`sdesk doctor`: check the desk and explain, one line a check (the conclusions are health.py's;
this gathers the facts: the store's, the config's, the environment's)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import SdeskError
from .common import print_json, read_text, settings_of

if TYPE_CHECKING:
    from ..health import Finding
    from .common import Settings

app = typer.Typer(add_completion=False)

# The files sdesk reads from the config folder (cmdb.yaml is read by `sdesk cmdb import` only).
DESK_FILES = ("intake", "oncall", "sla", "triage", "metrics", "roles")
OTHER_FILES = frozenset({"cmdb.yaml", "cmdb.yml"})
WIDTH = 80
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
    from .. import clock, health

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
        facts, read_error = _facts(store)
        if facts is None:  # a damaged page the integrity check found, most likely
            findings += [health.database(path=str(store.path), problems=problems, schema=0, current=0, journal="wal",
                                         read_only=None, size=0, free=None)[0],
                         health.Finding("database", "fail", read_error)]
        else:
            from ..migrations import SCHEMA_VERSION

            findings += health.database(path=str(store.path), problems=problems, schema=facts["schema"],
                                        current=SCHEMA_VERSION, journal=facts["journal"], read_only=store.read_only,
                                        size=facts["size"], free=facts["free"])
    findings += config_findings
    urgent = facts["urgent_open"] if facts is not None else 0
    findings += health.paging(oncall, urgent_open=urgent, broken=oncall_broken)
    if facts is not None:
        findings += health.tick(facts["state"], now, urgent_open=urgent)
        findings += health.backup(facts["state"], now)
        findings += health.anchor(facts["state"], now)
        findings += health.roles(users=facts["users"], admins=facts["admins"], default_role=store.default_role)
        findings += health.tokens(live=facts["tokens_live"], revoked=facts["tokens_revoked"],
                                  viewers=facts["viewer_tokens"])
    findings += health.clock(**_zone(), fixed=os.environ.get("SDESK_NOW") or None, config_zones=zones)

    if as_json:
        print_json([f._asdict() for f in findings])
    else:
        _print(findings, store.path if store is not None else None, problems)
    failed = [f for f in findings if f.status == "fail"]
    if problems:
        from ..store import StoreFault

        raise StoreFault(f"the database is damaged (integrity check failed: {problems[0]}): {store.path}; writes "
                         "are refused from now on. Restore a backup (sdesk restore)")
    if failed:
        from ..plain import plural

        names = list(dict.fromkeys(f.check for f in failed))
        raise SdeskError(f"{plural(len(failed), 'check')} failed: {', '.join(names)}")


def _print(findings: list[Finding], path: Path | None, problems: list[str]) -> None:
    """A headline (the integrity check's verdict first, as doctor always said it), then a line a
    check: status, check, and what was found, wrapped at 80 columns under itself."""
    import textwrap

    from ..plain import controls, plural

    counts = {s: sum(f.status == s for f in findings) for s in ("ok", "warn", "fail")}
    tail = f"{counts['ok']} of {plural(len(findings), 'check')} ok" + "".join(
        f", {plural(counts[s], word)}" for s, word in (("warn", "warning"), ("fail", "failure")) if counts[s])
    what = (f"cannot open the database" if path is None else
            f"{path} {'failed' if problems else 'passed'} SQLite's integrity check")
    # The verdict is the exit code's: warnings leave a working desk (exit 0), counted in the tail.
    head = controls(f"{'fail' if counts['fail'] else 'ok'}: {what}", True)
    lines = [f"{head}; {tail}"] if len(head) + len(tail) + 2 <= WIDTH else [f"{head};", f"    {tail}"]
    indent = " " * 16
    for f in findings:
        lines += textwrap.wrap(controls(f.detail, True), WIDTH, initial_indent=f"{f.status:<6}{f.check:<10}",
                               subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    if problems[1:]:
        lines += ["", "SQLite found:", *(controls(p, True) for p in problems)]
    print(controls("\n".join(lines)))


def _facts(store: Any) -> tuple[dict[str, Any] | None, str]:
    """The store's facts, or why they cannot be read (a damaged page the integrity check found)."""
    import sqlite3

    from ..store import explain
    from ..store_health import facts

    try:
        return facts(store), ""
    except sqlite3.Error as e:
        return None, f"cannot read the desk: {explain(e, store.path)}"


def _config(settings: Settings) -> tuple[list[Finding], Any, list[str]]:
    """The config findings, the on-call config (None when there is none, False when it does not
    load) and the time zones the config names."""
    from .. import health
    from ..plain import plural

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
    for name in DESK_FILES:
        path = folder / f"{name}.yaml"
        if not path.is_file():
            continue
        try:
            value = _load(settings, name, path)
        except SdeskError as e:
            broken.append(str(e))
            oncall = False if name == "oncall" else oncall
            if name == "roles":
                _default_role_only(settings)
            continue
        except Exception as e:  # a bug in a loader must not hide the other checks
            broken.append(f"{path}: cannot be read ({type(e).__name__}: {e})")
            oncall = False if name == "oncall" else oncall
            continue
        loaded.append(path.name)
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
    unknown = sorted(p.name for p in folder.glob("*.y*ml")
                     if (p.stem not in DESK_FILES or p.suffix != ".yaml") and p.name not in OTHER_FILES)
    return (health.config(folder=str(folder), error=None, loaded=loaded, broken=broken, unknown=unknown), oncall,
            sorted(zones))


def _default_role_only(settings: Settings) -> None:
    """Open the desk with the built-in default role when roles.yaml (or the folder holding it)
    cannot be read: the config check reports that, and the desk's own checks still run."""
    from ..roles import DEFAULT_ROLE

    settings.default_role = lambda: DEFAULT_ROLE  # type: ignore[method-assign]


def _load(settings: Settings, name: str, path: Path) -> Any:
    if name == "intake":
        from ..config import IntakeConfig, load

        return load(path.parent, "intake", IntakeConfig)
    if name == "triage":  # the file alone: Settings.triage_config borrows from sla and oncall, with warnings
        from ..triage import load

        return load(read_text(path), str(path))
    return {"oncall": settings.oncall_config, "sla": settings.sla_config, "metrics": settings.metrics_config,
            "roles": settings.default_role}[name]()


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
