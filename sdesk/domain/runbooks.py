"""Runbook files and their plans: what a runbook is, which tickets it applies to, and the exact
commands a run will execute once its parameters are resolved. Pure apart from reading the
files and looking commands up on PATH; `runner.py` executes plans.

A runbook is one YAML file in the desk config's `runbooks/` folder (kept in git by the team):

    name: clean-tmp
    applies_to: {labels.alertname: DiskFull}
    safe_for_automation: true
    throttle: {runs: 3, per: 1h}
    params:
      folder: {from: labels.mountpoint, pattern: "^/"}
    steps:
      - check: [test, -d, "{folder}"]
      - approve: "Delete old files under {folder}?"
      - run: [find, "{folder}", -type, f, -mtime, "+7", -delete]
        dry_run: [find, "{folder}", -type, f, -mtime, "+7", -print]
      - resolve: "Old files under {folder} deleted"

Parameters reach a command only as whole argv items (`{name}` as one whole list item), where
the program takes that item as data (runbook_argv.py says where), and as environment variables
(SDESK_PARAM_NAME): never pasted into a string, never where an interpreter reads code, never as
an option. A ticket's text cannot become a command.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from ..errors import At, BadInput
from .patterns import Pattern
from .runbook_argv import LANGS, MAX_ARGS, is_placeholder, verdicts

STEP_KINDS = ("run", "check", "manual", "approve", "resolve")
PARAM_TYPES = ("str", "int", "float", "bool")
BUILTINS = ("ticket",)  # {ticket}: the ticket's reference, SD-42
STEP_KEYS = {
    "run": {"id", "run", "shell", "dry_run", "timeout", "env", "exit_codes", "retries", "backoff", "description",
            "data_args"},
    "check": {"id", "check", "shell", "dry_run", "timeout", "env", "exit_codes", "retries", "backoff", "description",
              "data_args"},
    "manual": {"id", "manual"},
    "approve": {"id", "approve"},
    "resolve": {"id", "resolve", "code"},
}
DEFAULT_TIMEOUT = 300.0  # seconds a command may take unless its step says otherwise
MAX_RETRIES = 10
DEFAULT_THROTTLE = (5, timedelta(hours=1))  # runs per runbook and CI per window: stops loops
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Param(NamedTuple):
    name: str
    type: str
    source: str | None  # "title", "labels.instance", "ci.ip"... (None: only --param or default)
    default: Any
    required: bool
    pattern: Pattern | None  # RE2 (patterns.compile)
    description: str


class Step(NamedTuple):
    id: str
    kind: str
    argv: tuple[str, ...] | None = None  # templates, one per argv item
    shell: str | None = None  # a shell script: parameters only through the environment
    dry_run: tuple[tuple[str, ...] | None, str | None] | None = None  # (argv, shell) of the dry-run variant
    env: Mapping[str, str] = {}  # name -> template
    timeout: float = DEFAULT_TIMEOUT
    exit_codes: frozenset[int] = frozenset({0})
    retries: int = 0
    backoff: float = 1.0
    text: str = ""  # the instruction, the approval question, or the resolution
    code: str = "automated"  # resolution code
    data_args: bool = False  # the author declares its program (unknown to sdesk) takes its arguments as data


class Runbook(NamedTuple):
    name: str
    path: str
    description: str
    applies: Callable[[dict[str, Any]], bool] | None  # a test of triage.values_of
    applies_to: Any  # as written, for show
    automatic: bool  # safe for automation: triage may run it when a ticket arrives
    throttle: tuple[int, timedelta]
    params: dict[str, Param]
    secrets: dict[str, tuple[str, str]]  # env name -> ("env", VARIABLE) or ("file", path)
    steps: tuple[Step, ...]
    on_failure: tuple[Step, ...]


# -- loading -------------------------------------------------------------------------------------


def build(data: Any, where: str, default_name: str,
          fail: Callable[[list[str], str], Exception] | None = None) -> Runbook:
    """The Runbook of a runbook file's data, which its model accepted. The checks that need the
    whole runbook (a step's command against the parameters it may use, ids used twice) are made
    here; the model runs them with `fail` raising config's At, so that none fails on data it
    accepted."""
    fail = fail or (lambda loc, message: BadInput(f"{where}:1: {'.'.join(loc)}: {message}"))
    name = str(data.get("name") or default_name).strip()
    if not _NAME.match(name):  # the file's name when the runbook names none: checked here, not by the model
        raise fail(["name"], f"{name!r} is not a runbook name (letters, digits, - _ .)")
    applies = None
    if data.get("applies_to") is not None:
        from ..triage import condition

        applies, _ = condition(data["applies_to"], ["applies_to"], fail)
    params = {key: _param(key, spec) for key, spec in (data.get("params") or {}).items()}
    secrets = {key: next(iter(spec.items())) for key, spec in (data.get("secrets") or {}).items()}
    known = set(params) | set(BUILTINS)
    # What a step's env: may set from a parameter: values that cannot be code (numbers, booleans,
    # the ticket's reference); a variable's meaning is the program's (BASH_ENV, GIT_SSH_COMMAND).
    safe = {name for name, p in params.items() if p.type != "str"} | set(BUILTINS)
    steps = tuple(_step(raw, ["steps", str(i)], i, fail, known, safe) for i, raw in enumerate(data["steps"]))
    rollback = tuple(_step(raw, ["on_failure", str(i)], i, fail, known, safe)
                     for i, raw in enumerate(data.get("on_failure") or []))
    for i, step in enumerate(rollback):
        if step.kind not in ("run", "check"):
            raise fail(["on_failure", str(i)], "rollback steps are run or check")
    ids = [s.id for s in steps]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise fail(["steps", str(len(ids) - 1 - ids[::-1].index(dup))], f"the id {dup!r} is used twice")
    throttle = DEFAULT_THROTTLE
    if data.get("throttle") is not None:
        from .sla import duration

        throttle = data["throttle"]["runs"], duration(data["throttle"].get("per", "1h"), "", BadInput)
    return Runbook(name, where, str(data.get("description") or "").strip(), applies, data.get("applies_to"),
                   data.get("safe_for_automation", False), throttle, params, secrets, steps, rollback)


# The checks of a runbook's values (config.RunbookFile runs them; `build` converts with them).


def param_spec(spec: Any) -> dict:
    """A parameter as written: its settings, or its default alone (`folder: /tmp`)."""
    return spec if isinstance(spec, dict) else {"default": spec} if spec is not None else {}


def param_name(name: Any) -> Any:
    if not isinstance(name, str) or not _PARAM.match(name) or name in BUILTINS:
        raise ValueError(f"{name!r} is not a parameter name (letters, digits, _; not {', '.join(BUILTINS)})")
    return name


def param_source(source: Any) -> Any:
    if source is not None and (not isinstance(source, str) or not _valid_source(source)):
        raise ValueError("expected a ticket field, labels.NAME or ci.NAME")
    return source


def param_pattern(pattern: Any) -> Pattern | None:
    if pattern is None:
        return None
    from . import patterns

    try:
        return patterns.compile(str(pattern))  # RE2: a title must not run away (DoS)
    except BadInput as e:
        raise ValueError(f"bad pattern: {e}") from None


def _param(name: str, spec: Any) -> Param:
    spec = param_spec(spec)
    kind, pattern, default = spec.get("type", "str"), param_pattern(spec.get("pattern")), spec.get("default")
    if default is not None:
        default = convert(Param(name, kind, None, None, False, pattern, ""), default)
    return Param(name, kind, spec.get("from"), default, spec.get("required", default is None), pattern,
                 str(spec.get("description") or ""))


def param_default(name: str, spec: dict) -> None:
    """A parameter's default is a value it may take (its type, its pattern)."""
    try:
        _param(name, spec)
    except BadInput as e:
        raise At(["default"], str(e)) from None


def secret(spec: Any) -> Any:
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("env", "file") \
            or not isinstance(next(iter(spec.values())), str):
        raise ValueError("expected {env: VARIABLE} or {file: PATH} (the value is never written in a runbook)")
    return spec


def env_name(name: Any) -> Any:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    return name


def _valid_source(source: str) -> bool:
    from ..triage import TICKET_FIELDS

    head, _, rest = source.partition(".")
    return source in (*TICKET_FIELDS, "id") or (head in ("labels", "ci") and bool(rest)) or source == "ci"


def _step(raw: Any, loc: list[str], index: int, fail: Callable, known: set[str], safe: set[str]) -> Step:

    if not isinstance(raw, dict):
        raise fail(loc, f"expected a mapping with one of {', '.join(STEP_KINDS)}")
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        raise fail(loc, f"needs exactly one of {', '.join(STEP_KINDS)}")
    kind = kinds[0]
    step_id = str(raw.get("id") or f"{kind}-{index + 1}")
    unknown = set(raw) - STEP_KEYS[kind]
    if unknown:
        key = sorted(unknown)[0]
        raise fail([*loc, key], f"unknown setting for a {kind} step ({', '.join(sorted(STEP_KEYS[kind]))})")

    def step_fail(sub: list[str], message: str) -> BadInput:
        return fail([*loc, *sub], message)

    if kind in ("manual", "approve", "resolve"):
        text = raw[kind]
        if not isinstance(text, str) or not text.strip():
            raise step_fail([kind], "expected the text to show")
        _check_template(text, known, lambda m: step_fail([kind], m))
        code = raw.get("code", "automated")
        if not isinstance(code, str) or not code.strip():
            raise step_fail(["code"], "expected a resolution code")
        return Step(step_id, kind, text=text.strip(), code=code.strip())
    shell = raw.get("shell", False)
    if not isinstance(shell, bool):
        raise step_fail(["shell"], "expected true or false")
    data_args = raw.get("data_args", False)
    if not isinstance(data_args, bool):
        raise step_fail(["data_args"], "expected true or false")
    argv, script = _command(raw[kind], shell, known,
                            lambda m, i=None: step_fail([kind, *([str(i)] if i is not None else [])], m),
                            data_args)
    dry_run = None
    if raw.get("dry_run") is not None:
        dry_run = _command(raw["dry_run"], shell, known,
                           lambda m, i=None: step_fail(["dry_run", *([str(i)] if i is not None else [])], m),
                           data_args)
    env = raw.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, (str, int, float))
                                            for k, v in env.items()):
        raise step_fail(["env"], "expected NAME: value pairs")
    env = {k: str(v) for k, v in env.items()}
    for key, value in env.items():
        _check_template(value, known, lambda m: step_fail(["env", key], m))
        for m in _PLACEHOLDER.finditer(value):
            if m.group(1) and m.group(1) not in safe:
                raise step_fail(["env", key], f"{{{m.group(1)}}} would set {key} to text from outside, and what "
                                f"{key} means is the program's; every parameter is already in the environment as "
                                f"SDESK_PARAM_{m.group(1).upper()}: read that")
    codes = raw.get("exit_codes", [0])
    codes = codes if isinstance(codes, list) else [codes]
    if not codes or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in codes):
        raise step_fail(["exit_codes"], "expected a list of exit codes (0-255)")
    retries = raw.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise step_fail(["retries"], f"expected 0 to {MAX_RETRIES}")
    timeout = seconds(raw.get("timeout", DEFAULT_TIMEOUT), lambda m: step_fail(["timeout"], m))
    backoff = seconds(raw.get("backoff", 1), lambda m: step_fail(["backoff"], m), zero=True)
    return Step(step_id, kind, argv, script, dry_run, env, timeout, frozenset(codes), retries, backoff,
                str(raw.get("description") or ""), data_args=data_args)


def _command(value: Any, shell: bool, known: set[str], fail: Callable[..., BadInput], data_args: bool = False
             ) -> tuple[tuple[str, ...] | None, str | None]:
    """(argv templates, None) or (None, shell script). `fail(message, index)` names the item."""
    if shell:
        if not isinstance(value, str) or not value.strip():
            raise fail("with shell: true, expected the script as a string")
        for m in _PLACEHOLDER.finditer(value):
            name = m.group(1)
            if name in known and not value[:m.start()].endswith("$"):
                raise fail(f"{{{name}}} would paste a value into a shell script; use \"$SDESK_PARAM_{name.upper()}\" "
                           "(every parameter is in the environment)")
        return None, value
    if isinstance(value, str):
        raise fail("expected the command as a list ([cmd, arg, ...]); a string runs only with shell: true")
    if not isinstance(value, list) or not value or not all(isinstance(a, (str, int, float)) for a in value):
        raise fail("expected the command as a non-empty list of words")
    if len(value) > MAX_ARGS:
        raise fail(f"a command has at most {MAX_ARGS} items")
    # YAML reads [true] as a boolean: it means the command `true`.
    argv = tuple(("true" if a else "false") if isinstance(a, bool) else str(a) for a in value)
    for i, item in enumerate(argv):
        _check_template(item, known, lambda m: fail(m, i))
    if _PLACEHOLDER.search(argv[0]):
        raise fail("the command itself cannot come from a parameter", 0)
    why, _ = verdicts(argv, data_args)
    for i, item in enumerate(argv):
        names = [m.group(1) for m in _PLACEHOLDER.finditer(item) if m.group(1)]
        if not names:
            continue
        if not is_placeholder(item, _PLACEHOLDER):
            where = f", and that argument is {why[i]}" if why[i] else ""
            raise fail(f"{{{names[0]}}} is inside a longer argument ({item!r}){where}: a parameter may only be a "
                       f"whole argument. {_advice(argv, i, why[i], names)}", i)
        if (reason := why[i]):
            declare = (f"; or, if you know {program} takes its arguments as data, declare the step data_args: true "
                       "(your word, outside sdesk's guarantee)" if (program := _unknown_program(reason)) else "")
            raise fail(f"{{{names[0]}}} would be {why[i]}. {_advice(argv, i, why[i], names)}{declare}", i)
    return argv, None


def _unknown_program(why: str) -> str | None:
    m = re.fullmatch(r"an argument of (.+), a program sdesk does not know to take its arguments as data", why)
    return m.group(1) if m else None


def _advice(argv: tuple[str, ...], i: int, why: str | None, names: list[str]) -> str:
    """What to write instead: the value as data in a script (its environment, or "$1" after
    it), with the rewritten command when it can be made from this one."""
    import json
    import shlex

    env = f'"$SDESK_PARAM_{names[0].upper()}"'
    lang = next((lang for name, lang in LANGS.items() if why and why.startswith(f"the code of {name} ")), None)
    if lang is not None:
        return (f"Read {lang.env.format(N=names[0].upper())} in the code, or pass \"{{{names[0]}}}\" as an argument of "
                "its own after the code")
    whole = is_placeholder(argv[i], _PLACEHOLDER)
    shell = re.match(r"the code (\S+) -c runs$", why or "")
    if whole or (why and not shell) or (shell and any(a in (";", "+") for a in argv[i + 1:])):
        return (f"A parameter is only ever data: read {env} (or \"$1\" after the script) as data in a script, "
                f"e.g. [sh, -c, 'do-something -- \"$1\"', sh, \"{{{names[0]}}}\"]")
    order: list[str] = []

    def number(name: str) -> str:
        if name not in order:
            order.append(name)
        n = order.index(name) + 1 + offset
        return f"${n}" if n < 10 else f"${{{n}}}"

    def word(item: str) -> str:  # one argv item as one shell word, its parameters "${1}"...
        if not _PLACEHOLDER.search(item):
            return shlex.quote(item)
        pieces = re.split(r"(\{\{|\}\}|\{[A-Za-z_][A-Za-z0-9_]*\})", item)
        return '"' + "".join(number(p[1:-1]) if len(p) > 2 and p[0] == "{" and p[-1] == "}" and p[1] != "{"
                             else re.sub(r'([\\"$`])', r"\\\1", p[0] if p in ("{{", "}}") else p)
                             for p in pieces) + '"'

    if shell:  # the script of sh -c: its parameters become "$1"... after it
        after = argv[i + 1:]
        offset = max(len(after) - 1, 0)
        script = _script_with_arguments(argv[i], number)
        rewrite = [*argv[:i], script, *(after or [shell.group(1)])]
    else:  # the command, run from a script that gets the values as "$1"...
        offset = 0
        rewrite = ["sh", "-c", " ".join(word(a) for a in argv), "sh"]
    rewrite += [f"{{{n}}}" for n in order]

    def flow(item: str) -> str:
        if _PLACEHOLDER.fullmatch(item) or not re.fullmatch(r"[A-Za-z0-9_./=:@%+-]+", item):
            return "'" + item + "'" if "'" not in item and not item.startswith("{") else json.dumps(item)
        return item

    return (f"Use {env} inside a script, or pass {{{order[0]}}} as an argument of its own after the script: "
            f"[{', '.join(flow(a) for a in rewrite)}]")


def _script_with_arguments(script: str, number: Callable[[str], str]) -> str:
    """A shell script with each {name} replaced by its positional argument, quoted for where it
    stands: "$1" outside quotes (or for a quoted '{name}'), '"$1"' inside single quotes, and
    ${1} inside double quotes."""
    out: list[str] = []
    quote, k = "", 0
    while k < len(script):
        m = _PLACEHOLDER.match(script, k)
        if m is not None and m.group(1):
            ref = number(m.group(1))
            whole = quote and script[k - 1:k] == quote and script[m.end():m.end() + 1] == quote
            if whole:  # '{name}' or "{name}": the quotes become "$1"'s
                out[-1] = f'"{ref}"'
                k = m.end() + 1
                quote = ""
                continue
            out.append(ref if quote == '"' else f"'\"{ref}\"'" if quote == "'" else f'"{ref}"')
            k = m.end()
            continue
        ch = script[k]
        if ch in "'\"" and quote in ("", ch) and not (quote == '"' and script[k - 1:k] == "\\"):
            quote = "" if quote == ch else ch
        out.append(ch)
        k += 1
    return "".join(out)


def _check_template(text: str, known: set[str], fail: Callable[[str], BadInput]) -> None:
    for m in _PLACEHOLDER.finditer(text):
        if m.group(1) is not None and m.group(1) not in known:
            raise fail(f"unknown parameter {{{m.group(1)}}} (declare it under params)")


def seconds(value: Any, fail: Callable[[str], BadInput], *, zero: bool = False) -> float:
    """A number of seconds, or a span like 500ms, 30s, 5m, 1h."""
    found = _SPAN.match(str(value)) if not isinstance(value, bool) else None
    if found is None:
        raise fail("expected seconds or a span like 30s, 5m, 1h")
    amount = float(found.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
    if (amount <= 0 and not zero) or amount > 7 * 86400:
        raise fail("expected more than 0 and at most 7 days")
    return amount


def window_text(window: timedelta) -> str:
    """A throttle's window as written: 1h, 30m, 2d."""
    minutes = int(window.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


# -- validation ------------------------------------------------------------------------------------


def summary(rb: Runbook, disabled: Mapping[str, Any]) -> dict[str, Any]:
    """A runbook as `runbook list --json` and `runbook show --json` print it (the contract the
    faces render); `disabled` is the kill switch's rows by runbook name, '*' for all."""
    return {"name": rb.name, "description": rb.description, "file": rb.path, "applies_to": rb.applies_to,
            "safe_for_automation": rb.automatic, "throttle": {"runs": rb.throttle[0], "per": window_text(rb.throttle[1])},
            "params": {p.name: {"type": p.type, "from": p.source, "default": p.default, "required": p.required,
                                "pattern": p.pattern.pattern if p.pattern else None, "description": p.description}
                       for p in rb.params.values()},
            "secrets": {name: {kind: ref} for name, (kind, ref) in rb.secrets.items()},
            "steps": [_step_summary(s) for s in rb.steps], "on_failure": [_step_summary(s) for s in rb.on_failure],
            "disabled": bool(disabled.get(rb.name) or disabled.get("*"))}


def _step_summary(s: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"id": s.id, "kind": s.kind}
    if s.kind in ("run", "check"):
        out |= {"argv": list(s.argv) if s.argv else None, "shell": s.shell,
                "dry_run": (list(s.dry_run[0]) if s.dry_run[0] else s.dry_run[1]) if s.dry_run else None,
                "timeout": s.timeout, "retries": s.retries, "exit_codes": sorted(s.exit_codes)}
    else:
        out["text"] = s.text
    return out


def missing_commands(runbook: Runbook) -> list[str]:
    """The commands of its steps (and their dry-run and rollback variants) not found on PATH."""
    missing = []
    for step in (*runbook.steps, *runbook.on_failure):
        argvs = [step.argv, step.dry_run[0] if step.dry_run else None]
        shells = [step.shell, step.dry_run[1] if step.dry_run else None]
        commands = [argv[0] for argv in argvs if argv] + ["sh" for script in shells if script]
        missing += [f"step {step.id}: {c}" for c in commands if shutil.which(c) is None]
    return missing


def check_runnable(runbook: Runbook) -> None:
    """Refuse a runbook that could not run to the end, before any step runs."""
    missing = missing_commands(runbook)
    if missing:
        raise BadInput(f"{runbook.path}: runbook {runbook.name}: command not found: {missing[0]}")


# -- parameters and plans --------------------------------------------------------------------------


def convert(param: Param, value: Any) -> Any:
    """A parameter's value in its type, checked; BadInput says why not."""
    text = str(value).strip() if not isinstance(value, bool) else ("true" if value else "false")
    if _CONTROL.search(text):
        # A NUL ends a C string early; a line break starts a new command in whatever a script
        # hands it to (a log line, a here-document, a remote shell): refused, not cleaned.
        raise BadInput(f"parameter {param.name}: contains a NUL byte, a line break or another control character")
    if param.type == "int":
        try:
            converted: Any = int(text)
        except ValueError:
            raise BadInput(f"parameter {param.name}: {text!r} is not an integer") from None
        if abs(converted) >= 2 ** 63:
            raise BadInput(f"parameter {param.name}: {text!r} is out of range")
    elif param.type == "float":
        try:
            converted = float(text)
        except ValueError:
            raise BadInput(f"parameter {param.name}: {text!r} is not a number") from None
        if converted != converted or converted in (float("inf"), float("-inf")):
            raise BadInput(f"parameter {param.name}: {text!r} is not a finite number")
    elif param.type == "bool":
        if text.lower() not in _TRUE | _FALSE:
            raise BadInput(f"parameter {param.name}: {text!r} is not true or false")
        converted = text.lower() in _TRUE
    else:
        converted = text
    if param.pattern is not None and not param.pattern.fullmatch(text):
        raise BadInput(f"parameter {param.name}: {text!r} does not match {param.pattern.pattern!r}")
    return converted


def source_value(source: str, ticket: Mapping[str, Any], ci: Mapping[str, Any] | None) -> Any:
    """The value a parameter's `from` names, or None."""
    head, _, rest = source.partition(".")
    if source == "id":
        return ticket["id"]
    if head == "labels" and rest:
        return (ticket.get("labels") or {}).get(rest)
    if head == "ci":
        if ci is None:
            return None
        if not rest:
            return ci.get("name")
        return ci.get(rest) if rest in ("name", "type", "tier", "team", "environment") \
            else (ci.get("attributes") or {}).get(rest)
    value = ticket.get(source)
    return None if value == "" else value


def resolve_params(runbook: Runbook, ticket: Mapping[str, Any], ci: Mapping[str, Any] | None,
                   given: Mapping[str, str]) -> dict[str, Any]:
    """Every parameter's value: --param, else the ticket (its fields, labels, CI), else the
    default. An unknown --param or a required parameter with no value is refused."""
    unknown = sorted(set(given) - set(runbook.params))
    if unknown:
        known = ", ".join(runbook.params) or "none"
        raise BadInput(f"--param {unknown[0]}: runbook {runbook.name} has no such parameter (parameters: {known})")
    values: dict[str, Any] = {}
    for name, param in runbook.params.items():
        raw = given.get(name)
        if raw is None and param.source:
            raw = source_value(param.source, ticket, ci)
        if raw is None:
            if param.default is None and param.required:
                where = f" (the ticket has no {param.source})" if param.source else ""
                raise BadInput(f"parameter {name}: no value{where}; give --param {name}=VALUE")
            values[name] = param.default
            continue
        values[name] = convert(param, raw)
    return values


def fill(template: str, values: Mapping[str, Any]) -> str:
    """A template with `{name}` replaced by its value (`{{` and `}}` are braces)."""
    def one(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group()[0]
        value = values.get(m.group(1))
        return "" if value is None else ("true" if value is True else "false" if value is False else str(value))

    return _PLACEHOLDER.sub(one, template)


def plan(runbook: Runbook, ticket_ref: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What a run will do, every parameter resolved: stored with the run, so that an approval
    continues exactly what was shown, whatever the file says by then. Secrets appear by
    reference only."""
    from .redact import redact

    for name, value in params.items():
        if isinstance(value, str) and redact(value)[1]:
            raise BadInput(f"parameter {name}: holds a secret ({redact(value)[1][0]}); runs are recorded, so "
                           "pass secrets by name under secrets:")
    values = {**params, "ticket": ticket_ref}

    def command(argv: tuple[str, ...] | None, shell: str | None, data_args: bool = False) -> dict[str, Any]:
        if not argv:
            return {"shell": shell}
        _options_guarded(argv, values, data_args)
        return {"argv": [fill(a, values) for a in argv]}

    def step(s: Step) -> dict[str, Any]:
        out: dict[str, Any] = {"id": s.id, "kind": s.kind}
        if s.kind in ("run", "check"):
            out |= command(s.argv, s.shell, s.data_args)
            out["dry_run"] = command(*s.dry_run, s.data_args) if s.dry_run else None
            out |= {"env": {k: fill(v, values) for k, v in s.env.items()}, "timeout": s.timeout,
                    "exit_codes": sorted(s.exit_codes), "retries": s.retries, "backoff": s.backoff}
        else:
            out["text"] = fill(s.text, values).strip()
            if not out["text"]:
                raise BadInput(f"step {s.id}: its text is empty with these parameters")
            if s.kind == "resolve":
                out["code"] = s.code
        return out

    return {"runbook": runbook.name, "params": dict(params),
            "secrets": {name: list(ref) for name, ref in runbook.secrets.items()},
            "steps": [step(s) for s in runbook.steps], "on_failure": [step(s) for s in runbook.on_failure]}


def _options_guarded(argv: tuple[str, ...], values: Mapping[str, Any], data_args: bool = False) -> None:
    """A value starting with '-' would reach its program as an option (tar's
    --checkpoint-action=exec=..., find's -delete, kill's -1): refused unless the runbook puts
    `--` before it in the same program's arguments. A pattern does not lift this: whether a
    regex can match '-...' is not something to get wrong."""
    _, starts = verdicts(argv, data_args)
    for i, item in enumerate(argv):
        m = _PLACEHOLDER.fullmatch(item)
        if m is None or not m.group(1) or not fill(item, values).startswith("-"):
            continue
        start = max(s for s in starts if s <= i)
        if "--" not in argv[start + 1:i]:
            raise BadInput(f"parameter {m.group(1)}: {fill(item, values)!r} starts with '-' and would reach "
                           f"{argv[start]} as an option; the runbook can put -- before {item} to take it as data")


def params_env(params: Mapping[str, Any]) -> dict[str, str]:
    """Every parameter as SDESK_PARAM_<NAME>, the way shell steps read them."""
    return {f"SDESK_PARAM_{name.upper()}": fill("{v}", {"v": value}) for name, value in params.items()}


def describe(step: Mapping[str, Any], dry_run: bool = False) -> str:
    """One line saying what a planned step does."""
    import shlex

    kind = step["kind"]
    if kind in ("run", "check"):
        if dry_run and step["dry_run"] is None:
            return f"{kind}: skipped in a dry run (no dry_run variant) of: {describe(step)[len(kind) + 2:]}"
        command = step["dry_run"] if dry_run else step
        text = shlex.join(command["argv"]) if command.get("argv") else f"sh -c {shlex.quote(command['shell'])}"
        return f"{kind}: {text}"
    if kind == "resolve":
        return f"resolve ({step['code']}): {step['text']}"
    return f"{kind}: {step['text']}"
