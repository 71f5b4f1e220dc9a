"""What every command shares: the Typer group that turns expected errors into one line and an
exit code, the global settings (database, actor, desk config), and output helpers.

Imported by every command module, so it imports nothing heavy.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from ..errors import BadInput, ExitCode, NotFound, SdeskError

if TYPE_CHECKING:
    from ..metrics import MetricsConfig
    from ..store import Store
    from ..routing import OnCall
    from ..sla import SlaConfig
    from ..triage import TriageConfig


GLOBAL_OPTIONS = ("--db", "--as", "--config")
COMMAND_PATH = "sdesk.command_path"  # key of ctx.meta: the names of the command running
COMMAND_ARGS = "sdesk.args"  # key of ctx.meta: the command line as given


class Group(TyperGroup):
    """Turns expected errors into one line on stderr and a named exit code, and takes the
    global options anywhere on the line (`sdesk demo --db x.db` as well as `sdesk --db x.db demo`)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = _hoist_global_options(args)
            ctx.meta[COMMAND_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        command = super().get_command(ctx, name)
        return tidy_help(command) if command is not None else None

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        # The command path ("cmdb import"), in the meta the whole context chain shares: whether
        # the command may make a missing database (Settings.store, CREATES).
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta.setdefault(COMMAND_PATH, []).append(name)
        return name, command, rest

    def invoke(self, ctx: typer.Context) -> Any:
        import sqlite3

        try:
            return super().invoke(ctx)
        except SdeskError as e:
            _fail(str(e), e.code)
        except sqlite3.Error as e:
            from ..store import explain

            error = explain(e, _db_path(ctx))
            _fail(str(error), error.code)
        except OSError as e:
            if e.errno in _FULL_OR_READ_ONLY:
                # Another file than the database (an output, a rejects file): SQLite's own are above.
                _fail(f"{'disk full' if e.errno != errno.EROFS else 'read-only file system'}: cannot write "
                      f"{e.filename or 'output'}", ExitCode.ERROR)
            if e.filename is None:
                raise
            # A path the system refused (a name too long, a folder that is a file, a loop of links,
            # no permission) that no command checked first: one line naming it, not a traceback.
            from ..files import reason

            _fail(f"{e.filename}: {reason(e)}",
                  ExitCode.BAD_INPUT if _named_by_user(ctx, e.filename, e.filename2) else ExitCode.ERROR)
        except UnicodeError as e:  # bytes that are not UTF-8, on stdin or in an argument
            _fail(f"input is not valid UTF-8 text: {e.reason}", ExitCode.BAD_INPUT)
        except TypeError as e:
            # An argument (or SDESK_USER) with bytes that are not UTF-8 arrives as lone surrogates,
            # which orjson refuses where the store writes an event.
            if "surrogates not allowed" not in str(e):
                raise
            _fail("input is not valid UTF-8 text: an argument holds bytes that are not UTF-8", ExitCode.BAD_INPUT)


class RootGroup(Group):
    """The `sdesk` group. Command groups (`sdesk cmdb ...`) and some commands are imported and built only when
    named: Typer builds every command it knows at start-up, which would cost every command
    ~20 ms (a fifth of F) for groups it does not use."""

    lazy: dict[str, tuple[str, str]] = {}  # name -> (module, Typer attribute)
    panels: dict[str, str] = {}  # name -> the help panel it is listed in (others: "Commands")

    def list_commands(self, ctx: typer.Context) -> list[str]:
        # Grouped by panel, in the panels' order: `sdesk --help` prints the panels as it meets them.
        order = {panel: i for i, panel in enumerate(dict.fromkeys(self.panels.values()))}
        names = [*super().list_commands(ctx), *self.lazy]
        return sorted(names, key=lambda name: order.get(self.panels.get(name, ""), -1))

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        if name in self.lazy:
            from importlib import import_module

            import typer.main

            module, attribute = self.lazy[name]
            sub = getattr(import_module(module), attribute)
            sub._add_completion = False  # completion is installed for `sdesk`, not for each command
            # A Typer with one command is that command (`sdesk sla`); with more, a group.
            command = tidy_help(typer.main.get_command(sub))
        else:
            command = super().get_command(ctx, name)
        if command is not None and name in self.panels:
            command.rich_help_panel = self.panels[name]
        return command


def tidy_help(command: Any) -> Any:
    """Help as people read it at 80 columns: docstrings are wrapped at 100 in the source, and
    rich keeps their line breaks (mid-sentence at 80), so each paragraph becomes one line for
    rich to wrap; an indented or bulleted paragraph keeps its lines. A list of commands shows
    the first sentence of each."""
    if command.help and not getattr(command, "_tidy", False):
        import inspect
        import re

        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(
            p if p.startswith("\b") or re.search(r"\n\s*(?:[-*$]|\s)", p) else " ".join(p.split()) for p in paragraphs)
        if not command.short_help:
            command.short_help = re.split(r"(?<=[.!?])\s+(?=[A-Z`])", " ".join(paragraphs[0].split()), maxsplit=1)[0]
        command._tidy = True
    for param in getattr(command, "params", ()):
        choice = param.type
        choices = [str(c) for c in getattr(choice, "choices", ())]
        if not choices or param.metavar is not None:
            continue
        if len("|".join(choices)) > CHOICES_INLINE:
            # A long list in the usage line or the metavar column is broken mid-word at 80
            # columns (<planned|in_progress|co / mpleted|...>): name it, and list it in the help.
            param.metavar = (param.name or "value").upper()
            if param.param_type_name == "argument":  # its type column shows the type's metavar
                choice.get_metavar = lambda *args, **kwargs: None  # -> <choice>
            listed = "One of: " + ", ".join(choices) + "."
            param.help = f"{param.help} {listed}" if getattr(param, "help", None) else listed
        elif getattr(choice, "case_sensitive", True) is False and any(c != c.lower() for c in choices):
            # click lower-cases the choices it matches without case (<p1|p2>): show them as written.
            param.metavar = "[" + "|".join(choices) + "]"
    return command


# Choices longer than this (joined with |) show as a metavar (STATUS), listed in the help text.
CHOICES_INLINE = 24


def _hoist_global_options(args: list[str]) -> list[str]:
    """Move --db/--as (and their values) to the front, before the command name."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += args[i:i + 2]
            i += 2
            continue
        if "=" in arg and arg.split("=", 1)[0] in GLOBAL_OPTIONS:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _named_by_user(ctx: typer.Context, *filenames: object) -> bool:
    """Whether a path an OSError names is one the user gave (on the command line, or in
    SDESK_DB/SDESK_CONFIG), or lies on or under one: bad input (exit 2), not a fault."""
    given = []
    for arg in (*ctx.meta.get(COMMAND_ARGS, ()), *(os.environ.get(v, "") for v in ("SDESK_DB", "SDESK_CONFIG"))):
        arg = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if arg and arg != "-" and "\0" not in arg:
            given.append(os.path.abspath(arg))
    for name in filenames:
        if not isinstance(name, (str, bytes, os.PathLike)):
            continue
        name = os.path.abspath(os.fsdecode(name))
        if any(name == g or g.startswith(name + os.sep) or name.startswith(g + os.sep) for g in given):
            return True
    return False


def _db_path(ctx: typer.Context) -> Path | None:
    settings = ctx.find_root().obj
    store = getattr(settings, "_store", None)
    return store.path if store is not None else getattr(settings, "db", None)


def _fail(message: str, code: int) -> None:
    from ..plain import controls  # a message may quote stored or typed text: its escapes are shown, not run

    print(f"error: {controls(message)}", file=sys.stderr)
    raise typer.Exit(int(code))


# The commands that may make the database when there is none at --db: `init`, `demo` and those
# that give a new desk its first data. Any other command (every read, and writes that need
# something already there: ack, tick, ...) on a missing database is one error that creates
# nothing, so a typo in --db or SDESK_DB cannot show an empty desk, or fill one. A list of the
# few that may, not of the many that may not: a command added later is safe by default.
CREATES = frozenset({"init", "demo", "new", "import", "restore", "serve", "cmdb import", "cmdb add", "kb add",
                     "kb import", "user add", "change new", "problem new", "silence add", "oncall override",
                     "triage train"})

# A --db that names a database server, not a file: `postgres://...`, `sqlite:///x.db`,
# `postgresql:...`, `mysql+pymysql://`. One letter is a Windows drive (C:/). Matched on the
# string as given (a Path would have made `postgres://h` `postgres:/h`).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/|(?:postgres|postgresql|pg|mysql|mariadb|sqlite|sqlite3|file)(?:\+\w+)?:",
                  re.I)
_POSTGRES = re.compile(r"(?:postgres|postgresql|pg)(?:\+\w+)?:", re.I)

# Reads of what is stored, whose answer no config file changes: when the config folder `sdesk
# init --config` recorded has gone (moved, a share not mounted) they warn and carry on, so the
# queue can be read while it is put back. Every other command refuses, as before: tick must not
# page by no rules, nor `new` triage by none.
READS_WITHOUT_CONFIG = frozenset({"list", "show", "why", "pages", "audit log", "audit verify", "export", "backup"})

_UNSET: Any = object()


class Settings:
    def __init__(self, db: str | Path | None, actor: str | None, config: Path | None = None,
                 config_from: str | None = None, db_from: str | None = None):
        """`db`: the database file --db or SDESK_DB named (`db_from` says which), as given; None:
        the default. `config`: the folder --config or SDESK_CONFIG named (`config_from` says
        which), else None: then the folder `sdesk init --config` recorded in the database, if any."""
        self.db_given = None if db is None else str(db)  # as typed: a URL or '' is quoted as it was
        self.db = Path(db) if db else None
        self._db_from = db_from or "--db (or SDESK_DB)"
        self._claim = actor  # --as or SDESK_USER: a claim, checked against the OS login on writes
        self._actor: str | None = None
        self._store: Store | None = None
        self._runbooks: tuple[dict[str, Any], list[str]] | None = None
        self.command: list[str] = []  # the command running (["cmdb", "import"]), filled in as it is resolved
        self._given = config
        self._given_from = config_from or "--config"
        self._config: Path | None = _UNSET
        self._config_gone = False  # the recorded folder has gone, and this read carries on without it
        self.config_origin: str | None = None  # where `config` came from, once it is read

    @property
    def config(self) -> Path | None:
        """The desk config folder in effect, or None: --config, else SDESK_CONFIG, else the one
        recorded by `sdesk init --config`. A folder named that is missing (or a file) is an
        error naming it and where it was named, never "no config": a typo must not silently
        turn off paging, SLAs and triage rules."""
        if self._config is _UNSET:
            self._config, self.config_origin = self._resolve_config()
        return self._config

    @config.setter
    def config(self, value: Path | None) -> None:
        self._config, self.config_origin = value, "--config" if value is not None else None

    def _resolve_config(self) -> tuple[Path | None, str | None]:
        if self._given is not None:
            return check_config_folder(self._given, self._given_from), self._given_from
        recorded = self.recorded_config()
        if recorded is None:
            return None, None
        path, at = recorded
        if not os.path.isdir(path):
            gone = (f"the desk config folder {path}, recorded by `sdesk init --config` on {at[:10]}, "
                    f"{'is not a folder' if os.path.lexists(path) else 'does not exist any more'}")
            if " ".join(self.command) in READS_WITHOUT_CONFIG:
                note(f"warning: {gone}; shown without it (restore it, or record another with "
                     "`sdesk init --config DIR`)")
                self._config_gone = True
                return None, None
            raise NotFound(f"{gone}: restore it, or record another with `sdesk init --config DIR` "
                           "(--config or SDESK_CONFIG override it)")
        return path, "recorded by sdesk init --config"

    def recorded_config(self) -> tuple[Path, str] | None:
        """The config folder `sdesk init --config` recorded in the database and when, or None
        (none recorded, or no database yet: looking makes none)."""
        if self._store is None and not os.path.exists(self.db_path()):
            return None
        recorded = self.store().desk_state().get("config")
        return (Path(recorded[0]), recorded[1]) if recorded else None

    @property
    def actor(self) -> str:
        """Who this command acts as: the claimed actor, else the user the OS login is (a
        user's `login`), else the OS login itself."""
        if self._actor is None:
            self.store()
        assert self._actor is not None
        return self._actor

    def db_path(self) -> Path:
        """The database file: --db, else SDESK_DB, else the platform's user data dir. A URL is
        refused: a file path is all a desk can be today."""
        from ..store import default_db_path

        given = self.db_given
        if given is not None and not given.strip():
            raise BadInput(f"{self._db_from} is empty: give the database file's path; nothing was created")
        if given is not None and _POSTGRES.match(given):
            raise BadInput(f"{self._db_from} {given} is a PostgreSQL URL: a desk is one SQLite file today (a "
                           "PostgreSQL backend is a later issue); give a file path; nothing was created")
        if given is not None and _URL.match(given):
            raise BadInput(f"{self._db_from} {given} is not a supported database URL; give a file path; "
                           "nothing was created")
        return self.db or default_db_path()

    def store(self, init_empty: bool = False, create: bool | None = None, strict_config: bool = True) -> Store:
        """The desk's store, opened once; `init_empty`: an empty file may become the desk (sdesk
        init). `create`: whether a missing database may be made; by default, when the command
        running is one of CREATES (otherwise a missing one is NotFound, and nothing is made).
        `strict_config=False` (sdesk doctor, which reports it): a config folder that cannot be
        found or a bad roles.yaml does not stop the open; non-users are then viewers."""
        if self._store is None:
            from ..redact import redact
            from ..store import Store, os_login

            # The actor is an identifier, on every event and row, kept as given (events redact
            # their data, not who wrote them): one that holds a secret would be stored as it is.
            if self._claim and redact(self._claim)[0] != self._claim:
                raise BadInput("--as (or SDESK_USER): the actor looks like it holds a secret; choose another")
            path = self.db_path()
            # A config folder named wrong (or a bad roles.yaml in it) is refused before a new desk is made.
            role = self._default_role(strict_config) if self._given is not None else None
            store = Store(path, init_empty=init_empty,
                          create=create if create is not None else " ".join(self.command) in CREATES)
            self._store = store
            try:
                # Else after the open: the config folder may be the one recorded in the database.
                store.default_role = role or self._default_role(strict_config)
            except BaseException:
                self._store = None
                store.close()
                raise
            self._actor = self._claim or store.user_of_login(os_login()) or os_login()
            store.claimed = self._actor  # its writes are checked against the OS login (Store._check_claim)
        return self._store

    def _default_role(self, strict: bool) -> str:
        try:
            return self.default_role()
        except SdeskError:
            if strict:
                raise
            return "viewer"  # the least a role allows, while the config that would say more is broken

    # `sdesk tick` sets a list here: a roles.yaml that does not load is then the built-in default
    # role, its error kept in the list for tick to warn of (paging must not wait on roles.yaml).
    roles_fallback: list[str] | None = None

    def default_role(self) -> str:
        """roles.yaml `default_role` of the desk config: the role of someone who is not a user."""
        from ..roles import DEFAULT_ROLE, check_role

        path = self.config / "roles.yaml" if self.config is not None else None
        if self._config_gone:
            return "viewer"  # what roles.yaml said is not known: the least a role allows, for a read
        if path is None or not path.is_file():
            return DEFAULT_ROLE
        from .. import validated

        try:
            return validated.read(path, "roles", lambda data: check_role((data or {}).get("default_role", DEFAULT_ROLE)),
                                  text=read_text(path))
        except SdeskError as e:
            if self.roles_fallback is None:
                raise
            self.roles_fallback.append(str(e))
            return DEFAULT_ROLE

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def intake_options(self, *, record_all: bool = False,
                       reopen_days: int | None = None) -> tuple[Mapping[str, str], dict[str, Any]]:
        """The severity table and Store.receive's options, from intake.yaml of the desk config
        (pydantic and YAML are imported only when there is such a file) and the command line."""
        from ..intake import SEVERITY, severity_table

        config = None
        if self.config is not None and (self.config / "intake.yaml").is_file():
            from ..config import IntakeConfig, load

            config = load(self.config, "intake", IntakeConfig)
        record_resolved = {"*"} if record_all else set(config.record_resolved) if config else set()
        options = {"record_resolved": record_resolved, "mask_pii": bool(config and config.mask_pii),
                   "reopen_days": reopen_days if reopen_days is not None
                   else config.reopen_within_days if config else 14,
                   "enrich": config.enrich.options() if config else True, "triage": self.triage_config()}
        if options["triage"] is not None and any("runbook" in rule.sets for rule in options["triage"].rules):
            options["automate"] = self.automatic_runbooks()
        return (severity_table(config.severity) if config else SEVERITY), options

    def runbooks_folder(self) -> Path | None:
        """runbooks/ of the desk config (one runbook per YAML file)."""
        return self.config / "runbooks" if self.config is not None else None

    def runbooks(self) -> tuple[dict[str, Any], list[str]]:
        """The runbooks of the desk config and the errors of broken files, read once a command."""
        if self._runbooks is None:
            from ..runbooks import load_folder

            self._runbooks = load_folder(self.runbooks_folder())
        return self._runbooks

    def automatic_runbooks(self) -> frozenset[str]:
        """The runbooks triage may run as tickets arrive (safe_for_automation). A broken runbook
        file is a warning here: it must not stop intake, and it does not run."""
        runbooks, errors = self.runbooks()
        for error in errors:
            note(f"warning: {error}; that runbook is not automated")
        return frozenset(name for name, rb in runbooks.items() if rb.automatic)

    def oncall_config(self) -> OnCall:
        """oncall.yaml of the desk config: teams and schedules (none when there is no file)."""
        from ..routing import OnCall, load

        path = self.config / "oncall.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return OnCall({}, {})
        return load(read_text(path), str(path))

    def sla_config(self) -> SlaConfig:
        """sla.yaml of the desk config: calendars and policies (none when there is no file)."""
        from ..sla import SlaConfig, load

        path = self.config / "sla.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return SlaConfig()
        return load(read_text(path), str(path))

    def metrics_config(self) -> MetricsConfig:
        """metrics.yaml of the desk config: targets and the cost model (defaults when there is none)."""
        from ..metrics import MetricsConfig, load

        path = self.config / "metrics.yaml" if self.config is not None else None
        return load(read_text(path), str(path)) if path is not None and path.is_file() else MetricsConfig()

    def triage_config(self) -> TriageConfig | None:
        """triage.yaml of the desk config, or None when there is none."""
        path = self.config / "triage.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return None
        from ..triage import load

        config = load(read_text(path), str(path))
        # What triage borrows from the other files must not stop intake when one is broken.
        try:
            config = config._replace(slos=self.sla_config().slos)
        except BadInput as e:
            note(f"warning: {e}; SLO burn left out of triage")
        try:
            oncall = self.oncall_config()
            config = config._replace(oncall=oncall if oncall.queues else None)
        except BadInput as e:
            note(f"warning: {e}; assignee: auto left out of triage")
        return config


def check_config_folder(path: Path, named_by: str = "--config") -> Path:
    """`path` if it is a folder; else one error naming it and what named it (--config,
    SDESK_CONFIG): a missing folder (a typo) is not "no config"."""
    import stat

    from ..files import status

    found = status(path, f"{named_by} {path}")  # a name too long, a loop of links: said so
    if found is not None and stat.S_ISDIR(found.st_mode):
        return path
    if found is not None:
        raise BadInput(f"{named_by} {path} is a file, not a folder: the desk config is a folder of YAML files "
                       "(oncall.yaml, sla.yaml, triage.yaml, ...)")
    raise NotFound(f"{named_by} {path}: no such folder (the desk config folder; `sdesk init --example {path}` "
                   "writes a starter one)")


def run_automation(settings: Settings, automate: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Run the runbooks triage queued for new tickets: after an intake that could queue some
    (`automate`: the runbooks it may run; empty: none, nothing to look for), or whatever is
    queued (None, for `sdesk tick`). Not from inside a runbook step: a runbook whose command
    re-fires its own alert must not start itself again from within; its queued run waits for the
    next `sdesk tick`, where the throttle sees it."""
    import os

    if os.environ.get("SDESK_RUN") or automate is not None and not automate:
        return []
    store = settings.store()
    if not store.queued_runs():
        return []
    from ..runner import run_queued

    done = run_queued(store, settings.runbooks()[0], actor="automation", echo=note)
    for run in done:
        note(f"automation: run {run['id']} ({run['runbook']}) on SD-{run['ticket_id']}: {run['status']}")
    return done


def read_text(path: Path, limit: int | None = None) -> str:
    """A file's text for a command, or one line saying why it cannot be read: only a regular
    file, within a size (a FIFO would hang the command, /dev/zero fill the memory)."""
    from .. import files

    return files.read_text(path, limit=limit or files.MAX_BYTES)


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.find_root().obj


def store_of(ctx: typer.Context) -> Store:
    return settings_of(ctx).store()


def print_json(value: Any) -> None:
    """Indented JSON on stdout (orjson: the json module indents in pure Python, 10x slower)."""
    import orjson

    from ..plain import json_bytes  # C1 and bidi controls as \u escapes: the same JSON, inert on a terminal

    sys.stdout.flush()
    sys.stdout.buffer.write(json_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)) + b"\n")
    sys.stdout.buffer.flush()


def note(message: str) -> None:
    from ..plain import controls

    print(controls(message), file=sys.stderr)


