"""What every command shares: the Typer group that turns expected errors into one line and an
exit code, the global settings (database, actor, desk config), and output helpers.

Imported by every command module, so it imports nothing heavy.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from ..desk import Desk
from ..domain.lifecycle import WHITESPACE
from ..errors import BadInput, ExitCode, SdeskError

if TYPE_CHECKING:
    from ..store import Store


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
        # the command may make a missing database (Desk.store, CREATES).
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


def _db_path(ctx: typer.Context) -> Path | str | None:
    settings = ctx.find_root().obj
    store = getattr(settings, "_store", None)
    if store is not None:
        return store.path
    if getattr(settings, "on_server", False):
        return settings.db_given  # a postgresql:// URL as typed (a Path would fold its //)
    return getattr(settings, "db", None)


def _fail(message: str, code: int) -> None:
    from ..domain.plain import controls  # a message may quote stored or typed text: its escapes are shown, not run

    print(f"error: {controls(message)}", file=sys.stderr)
    raise typer.Exit(int(code))


def run_automation(settings: Desk, automate: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """runner.run_automation for a command: after its intake (`automate`, as Store.receive's),
    or all that is queued (None, for `sdesk tick`); each run said on stderr."""
    # Nothing to look for, or nothing queued: the runner (and the runbook domain it imports,
    # 5 ms of sdesk new's budget) stays unimported. The runner looks again before it runs.
    if automate is not None and not automate or not settings.store().runbooks.queued_runs():
        return []
    from ..services.runner import run_automation as run

    return run(settings.store(), lambda: settings.runbooks()[0], automate, echo=note)


def settings_of(ctx: typer.Context) -> Desk:
    return ctx.find_root().obj


def store_of(ctx: typer.Context) -> Store:
    return settings_of(ctx).store()


def print_json(value: Any) -> None:
    """Indented JSON on stdout (orjson: the json module indents in pure Python, 10x slower)."""
    import orjson

    from ..domain.plain import json_bytes  # C1 and bidi controls as \u escapes: the same JSON, inert on a terminal

    sys.stdout.flush()
    sys.stdout.buffer.write(json_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)) + b"\n")
    sys.stdout.buffer.flush()


def note(message: str) -> None:
    from ..domain.plain import controls

    print(controls(message), file=sys.stderr)


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """--label KEY=VALUE options as a dict (KEY= is an empty value: for update, a removal)."""
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip(WHITESPACE)
        if not sep or not key:
            raise BadInput(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value.strip(WHITESPACE)
    return labels
