"""Where a runbook parameter may stand in a command: the rule that keeps ticket text from ever
running as code. Pure: no I/O.

A parameter's value reaches a program only as ONE WHOLE argv element (never inside a longer
one, never as argv[0]). Which elements a program takes as data depends on the program, so this
reads the command the way it will be read: through wrappers (env, sudo, timeout, xargs, find
-exec...) to the program they start, and for the interpreters (sh, bash, python, perl, node,
awk, sed...) their options, to find the code argument. A parameter is allowed only where the
program takes it as data (for an interpreter: the arguments after the code, `sh -c CODE sh
"{p}"`'s $1); everywhere else it is refused, including wherever sdesk cannot tell (an option it
does not know, or a program that runs its arguments in ways it does not model). It is an
allow-list of positions, not a list of bad shapes: an unknown option or program shape refuses.

`verdicts(argv)` says, for each element, None (a parameter may stand here) or why not.
`program_starts(argv)` are the elements that start a program (argv[0], a wrapped command): a
value starting with `-` may only follow a `--` of its own program (see runbooks.plan)."""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_ARGS = 128  # a command's elements: bounds the (recursive) reading of wrappers

# Shells of the sh family: options are -x/+x letter clusters; with c, the first operand is code.
_SH = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "rbash", "lksh", "oksh", "pdksh"})
_SH_FLAGS = set("abcefhiklmnprstuvxBCEHPT")  # letters known to take no value (c and s: see _shell)
_SH_VALUES = set("oO")  # -o pipefail, -O extglob: their value is the next element
_SH_LONG_FLAGS = frozenset({"--norc", "--noprofile", "--posix", "--login", "--restricted", "--verbose", "--noediting",
                            "--debugger", "--help", "--version", "--dump-strings", "--dump-po-strings", "--pretty-print"})
_SH_LONG_VALUES = frozenset({"--rcfile", "--init-file"})


class _Lang(NamedTuple):
    """An interpreter's command line, as far as sdesk needs it: which options take code, which
    take a value, which take none; anything else is unknown and refuses."""
    flags: str = ""  # short options with no value (clustered: -wT)
    values: str = ""  # short options with a value: attached, else the next element
    rest: str = ""  # short options that take the rest of their cluster as an optional value (sed -i.bak)
    code: str = ""  # short options whose value is code (python -c, perl -e, awk -f a program file)
    long_flags: frozenset[str] = frozenset()
    long_values: frozenset[str] = frozenset()
    long_code: frozenset[str] = frozenset()
    stop_at_code: bool = False  # the code option ends its options (python -c); else options go on (perl -e)
    reads_files: str = ""  # options that make the arguments file names opened as `cmd|` (perl -n)
    env: str = "the environment"  # how a script of this language reads SDESK_PARAM_NAME


_PY = _Lang(flags="bBdEhiIOPqsSuvVx", values="WX", code="cm", stop_at_code=True,
            long_flags=frozenset({"--help", "--version", "--help-env", "--help-xoptions", "--help-all"}),
            long_values=frozenset({"--check-hash-based-pycs"}), env='os.environ["SDESK_PARAM_{N}"]')
_PERL = _Lang(flags="acfhnpsStTuUvwWX", values="I", rest="0lCiFdDxV", code="eEmM", reads_files="npi",
              env='$ENV{{SDESK_PARAM_{N}}}')
_RUBY = _Lang(flags="acdhlnpsSvwyU", values="CEI", rest="WTKx0Fi", code="er", reads_files="npi",
              long_flags=frozenset({"--verbose", "--version", "--copyright", "--yjit", "--jit", "--help"}),
              env='ENV["SDESK_PARAM_{N}"]')
_NODE = _Lang(flags="ichv", code="epr",
              long_flags=frozenset({"--no-warnings", "--trace-warnings", "--enable-source-maps", "--check", "--interactive",
                                    "--abort-on-uncaught-exception", "--no-deprecation", "--throw-deprecation",
                                    "--trace-uncaught", "--preserve-symlinks", "--version", "--help"}),
              long_values=frozenset({"--input-type", "--title"}),
              long_code=frozenset({"--eval", "--print", "--require", "--import", "--loader", "--experimental-loader",
                                   "--env-file"}), env='process.env.SDESK_PARAM_{N}')
_PHP = _Lang(flags="aehHilmnqsvw", values="cdtzS", code="rBRFEf", env='getenv("SDESK_PARAM_{N}")')
_LUA = _Lang(flags="ivEW", code="el", env='os.getenv("SDESK_PARAM_{N}")')
_AWK = _Lang(flags="bcCghMnNPrsStVy", values="vFW", rest="dDLoOp", code="efiIlE",
             long_flags=frozenset({"--sandbox", "--posix", "--traditional", "--characters-as-bytes", "--lint",
                                   "--re-interval", "--version", "--help"}),
             long_values=frozenset({"--assign", "--field-separator"}),
             long_code=frozenset({"--source", "--file", "--include", "--load", "--exec"}),
             stop_at_code=False, env='ENVIRON["SDESK_PARAM_{N}"]')
_SED = _Lang(flags="nrEsuz", values="l", rest="i", code="ef",
             long_flags=frozenset({"--quiet", "--silent", "--regexp-extended", "--separate", "--unbuffered",
                                   "--null-data", "--posix", "--debug", "--sandbox", "--follow-symlinks", "--in-place"}),
             long_values=frozenset({"--line-length"}), long_code=frozenset({"--expression", "--file"}))
_FISH = _Lang(flags="ilnNPvh", values="dopf", code="cC",
              long_flags=frozenset({"--interactive", "--login", "--no-execute", "--no-config", "--private",
                                    "--print-rusage-self", "--print-debug-categories", "--version", "--help"}),
              long_values=frozenset({"--debug", "--debug-output", "--features", "--profile", "--profile-startup"}),
              long_code=frozenset({"--command", "--init-command"}), env='"$SDESK_PARAM_{N}"')
_CSH = _Lang(flags="bdDefFilmnqstvVxX", code="c", stop_at_code=True, env='"$SDESK_PARAM_{N}"')
_OSA = _Lang(flags="i", values="ls", code="e")
LANGS = {"python": _PY, "pypy": _PY, "perl": _PERL, "ruby": _RUBY, "node": _NODE, "nodejs": _NODE, "php": _PHP,
          "lua": _LUA, "luajit": _LUA, "awk": _AWK, "gawk": _AWK, "mawk": _AWK, "nawk": _AWK, "original-awk": _AWK,
          "sed": _SED, "gsed": _SED, "fish": _FISH, "csh": _CSH, "tcsh": _CSH, "osascript": _OSA,
          "tclsh": _Lang(), "wish": _Lang(), "jimsh": _Lang()}


class _Wrapper(NamedTuple):
    """A program that starts another: its options, then `positionals` elements of its own (timeout's
    DURATION), then the command it runs, read in turn."""
    flags: str = ""
    values: str = ""
    rest: str = ""
    long_flags: frozenset[str] = frozenset()
    long_values: frozenset[str] = frozenset()
    positionals: int = 0
    strings: frozenset[str] = frozenset()  # options that make it run a command string or a shell (sudo -s)
    no_command: frozenset[str] = frozenset()  # options after which no command follows (ionice -p PID)
    assignments: bool = False  # NAME=VALUE elements before the command (env)


_WRAPPERS = {
    "env": _Wrapper(flags="0iv", values="uCP", long_flags=frozenset({"--ignore-environment", "--null", "--debug"}),
                    long_values=frozenset({"--unset", "--chdir"}), strings=frozenset({"-S", "--split-string"}),
                    assignments=True),
    "sudo": _Wrapper(flags="AbEHKknPSVvseil", values="CDghprTtUu",
                     long_flags=frozenset({"--askpass", "--background", "--preserve-env", "--set-home", "--non-interactive",
                                           "--stdin", "--reset-timestamp", "--remove-timestamp"}),
                     long_values=frozenset({"--close-from", "--chdir", "--group", "--host", "--prompt", "--role",
                                            "--type", "--command-timeout", "--other-user", "--user"}),
                     strings=frozenset({"-s", "-i", "-e", "--shell", "--login", "--edit", "-l", "--list", "-v", "-V",
                                        "-k", "-K"})),
    "doas": _Wrapper(flags="Lns", values="Cu", strings=frozenset({"-s", "-L", "-C"})),
    "nice": _Wrapper(values="n", long_values=frozenset({"--adjustment"})),
    "ionice": _Wrapper(flags="t", values="cnpPu", long_flags=frozenset({"--ignore"}),
                       long_values=frozenset({"--class", "--classdata", "--pid", "--pgid", "--uid"}),
                       no_command=frozenset({"-p", "-P", "-u", "--pid", "--pgid", "--uid"})),
    "timeout": _Wrapper(flags="v", values="sk", long_flags=frozenset({"--preserve-status", "--foreground", "--verbose"}),
                        long_values=frozenset({"--signal", "--kill-after"}), positionals=1),
    "nohup": _Wrapper(),
    "setsid": _Wrapper(flags="cfw", long_flags=frozenset({"--ctty", "--fork", "--wait"})),
    "stdbuf": _Wrapper(values="ioe", long_values=frozenset({"--input", "--output", "--error"})),
    "chrt": _Wrapper(flags="bdfiorRamv", values="TPD", long_flags=frozenset({"--batch", "--deadline", "--fifo", "--idle",
                                                                              "--other", "--rr", "--reset-on-fork",
                                                                              "--all-tasks", "--verbose"}),
                     long_values=frozenset({"--sched-runtime", "--sched-period", "--sched-deadline"}), positionals=1,
                     no_command=frozenset({"-p", "--pid", "-m", "--max"})),
    "taskset": _Wrapper(flags="ac", long_flags=frozenset({"--all-tasks", "--cpu-list"}), positionals=1,
                        no_command=frozenset({"-p", "--pid"})),
    "xargs": _Wrapper(flags="0prtx", values="adEILnPs", rest="eil",
                      long_flags=frozenset({"--null", "--no-run-if-empty", "--interactive", "--verbose", "--exit",
                                            "--open-tty", "--show-limits"}),
                      long_values=frozenset({"--arg-file", "--delimiter", "--max-args", "--max-procs", "--max-chars",
                                             "--max-lines", "--process-slot-var"})),
    "flock": _Wrapper(flags="sexunoF", values="wE", long_flags=frozenset({"--shared", "--exclusive", "--unlock",
                                                                          "--nonblock", "--close", "--no-fork", "--verbose"}),
                      long_values=frozenset({"--timeout", "--wait", "--conflict-exit-code"}), positionals=1,
                      strings=frozenset({"-c", "--command"})),
    "unbuffer": _Wrapper(flags="p"),
    "time": _Wrapper(flags="pavqV", values="fo", long_flags=frozenset({"--append", "--verbose", "--portability", "--quiet"}),
                     long_values=frozenset({"--format", "--output"})),
    "command": _Wrapper(flags="p", strings=frozenset({"-v", "-V"})),
    "exec": _Wrapper(flags="cl", values="a"),
}

# Programs that join their arguments into a command string for a shell (ssh's remote command,
# su -c, watch), or run their arguments as code or commands in ways sdesk does not read:
# a parameter may not appear in their argv at all.
_OPAQUE = frozenset({
    "pwsh", "powershell", "deno", "bun", "Rscript", "R", "julia", "guile", "racket", "sbcl", "clisp", "erl", "escript",
    "elixir", "iex", "groovy", "jshell", "scala", "gdb", "lldb", "vim", "vi", "nvim", "view", "ex", "emacs", "dc", "ed",
    "m4", "sqlite3", "psql", "mysql", "mariadb", "mongo", "mongosh", "redis-cli", "su", "runuser", "sg", "watch",
    "script", "tmux", "screen", "parallel", "at", "batch", "pkexec", "systemd-run", "strace", "ltrace", "valgrind",
    "unshare", "nsenter", "setpriv", "prlimit", "firejail", "fakeroot", "bwrap", "chroot", "sudoedit", "expect",
    "eval", "source", ".", "builtin", "make", "xterm", "busybox-sh", "cmd", "cmd.exe", "wsl", "ksh93-unsafe",
})
# Options of other programs whose value is code or a command: a parameter may not be their value.
_CODE_OPTIONS = {
    "git": {"-c", "--config-env", "--exec-path", "--upload-pack", "--receive-pack"},
    "tar": {"-I", "-F", "--to-command", "--checkpoint-action", "--use-compress-program", "--info-script",
            "--new-volume-script", "--rsh-command"},
    "rsync": {"-e", "--rsh", "--rsync-path"},
    "scp": {"-S", "-o", "-F"},
    "sftp": {"-S", "-o", "-F", "-D"},
    "curl": {"-K", "--config"},
    "zip": {"-TT", "--unzip-command"},
}
_GENERIC_CODE_OPTIONS = frozenset({"--eval", "--exec", "--execute", "--command", "--to-command", "--checkpoint-action",
                                   "--rsh", "--rsh-command", "--use-compress-program", "--eval-command", "-exec",
                                   "-execdir", "-ok", "-okdir"})
_FIND_EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
_SSH_FLAGS, _SSH_VALUES = "46AaCfGgKkMNnqsTtVvXxYy", "BbcDEeFIiJLlmOoPpQRSWw"
_VERSION = re.compile(r"[0-9][0-9.]*$")


def program_name(item: str) -> str:
    """`/usr/bin/python3.11` -> `python`: the program, without its folder and version."""
    name = item.rsplit("/", 1)[-1]
    return _VERSION.sub("", name) or name


def is_placeholder(item: str, pattern: re.Pattern[str]) -> bool:
    m = pattern.fullmatch(item)
    return m is not None and m.group(1) is not None


def known(name: str) -> bool:
    """A program this module reads specially (a nested mention is read too)."""
    return name in _SH or name in LANGS or name in _WRAPPERS or name in _OPAQUE or name in ("ssh", "busybox", "find")


class _Scan:
    def __init__(self, argv: tuple[str, ...]):
        self.argv = argv
        self.why: list[str | None] = ["the program to run"] * len(argv)
        self.starts: set[int] = {0}
        self.names: set[int] = set()  # $0 of sh -c CODE NAME: a name, not a command to read

    def set(self, lo: int, hi: int, why: str | None) -> None:
        for k in range(lo, min(hi, len(self.argv))):
            self.why[k] = why

    def merge(self, offset: int, other: _Scan) -> None:
        """Another reading of argv[offset:]: the stricter verdict of the two wins."""
        for k, why in enumerate(other.why):
            if why is not None and self.why[offset + k] is None:
                self.why[offset + k] = why
        self.starts |= {offset + s for s in other.starts}
        self.names |= {offset + s for s in other.names}


def verdicts(argv: tuple[str, ...]) -> tuple[list[str | None], set[int]]:
    """For each element: None when a parameter may stand there (the program takes it as data),
    else why not; and the elements that start a program."""
    scan = _program(argv)
    return scan.why, scan.starts


def _program(argv: tuple[str, ...]) -> _Scan:
    scan = _Scan(argv)
    name = program_name(argv[0])
    n = len(argv)
    if name in _SH:
        _shell(scan, name)
    elif name in LANGS:
        _lang(scan, name, LANGS[name])
    elif name in _WRAPPERS:
        _wrapper(scan, name, _WRAPPERS[name])
    elif name == "busybox":
        if n > 1 and not argv[1].startswith("-"):
            scan.set(1, n, None)
            scan.merge(1, _program(argv[1:]))
        else:
            scan.set(1, n, "an argument of busybox")
    elif name == "ssh":
        _ssh(scan)
    elif name in _OPAQUE:
        scan.set(1, n, f"an argument of {name}, which runs its arguments as code or commands in ways sdesk does "
                       "not check")
    else:
        # Any other program takes its arguments as data, except the values of options known
        # to take code or a command, and find's -exec command.
        scan.set(1, n, None)
        code_options = _CODE_OPTIONS.get(name, set()) | _GENERIC_CODE_OPTIONS
        for k in range(1, n - 1):
            if argv[k] in code_options:
                scan.set(k + 1, k + 2, f"the value of {argv[k]}, which {name} runs as code or a command")
        if name == "find":
            _find(scan)
        # A program sdesk does not know may run the rest as a command (kubectl exec pod -- sh
        # -c X, strace bash -c X): each known program named in its arguments is read as the
        # start of a command too, and the stricter reading wins.
        for k in range(1, n):
            if known(program_name(argv[k])) and k not in scan.names:
                scan.merge(k, _program(argv[k:]))
    return scan


def _shell(scan: _Scan, name: str) -> None:
    """sh, bash...: [-+]letters and -o NAME, then with c the first operand is code and the rest
    are $0 $1...; with s they are all $1...; otherwise the first is a script file."""
    argv, n, k = scan.argv, len(scan.argv), 1
    command = stdin = False
    option = f"an option or option value of {name}"
    while k < n:
        a = argv[k]
        if a in ("--", "-"):
            k += 1
            break
        if a in _SH_LONG_VALUES:
            k += 2
            continue
        if a.startswith("--"):
            if a not in _SH_LONG_FLAGS:
                return scan.set(1, n, f"after {a}, an option of {name} sdesk does not know")
            k += 1
            continue
        if len(a) > 1 and a[0] in "-+":
            letters = a[1:]
            if any(ch not in _SH_FLAGS and ch not in _SH_VALUES for ch in letters):
                return scan.set(1, n, f"after {a}, an option of {name} sdesk does not know")
            command |= "c" in letters
            stdin |= "s" in letters
            k += 1 + sum(ch in _SH_VALUES for ch in letters)
            continue
        break
    scan.set(1, n, option)
    if k >= n:
        return
    if command:
        scan.set(k, k + 1, f"the code {name} -c runs")
        scan.names.add(k + 1)
        _after_code(scan, k + 1, name)
    elif stdin:
        _after_code(scan, k, name)
    else:
        scan.set(k, k + 1, f"the script {name} runs")
        _after_code(scan, k + 1, name)


def _lang(scan: _Scan, name: str, lang: _Lang) -> None:
    argv, n, k = scan.argv, len(scan.argv), 1
    scan.set(1, n, f"an option or option value of {name}")
    code_given, seen, stopped = False, set(), False

    def unknown(a: str) -> None:
        scan.set(1, n, f"after {a}, an option of {name} sdesk does not know")

    while k < n and not stopped:
        a = argv[k]
        if a == "--":
            k += 1
            break
        if a == "-" or not a.startswith("-"):
            break
        if a.startswith("--"):
            option, eq, _ = a.partition("=")
            if option in lang.long_code:
                code_given = True
                if not eq:
                    scan.set(k + 1, k + 2, f"the code of {name} {option}")
                k += 1 if eq else 2
                stopped = lang.stop_at_code
            elif option in lang.long_values:
                k += 1 if eq else 2
            elif option in lang.long_flags:
                k += 1
            else:
                return unknown(a)
            continue
        j, step = 1, 1
        while j < len(a):
            ch = a[j]
            seen.add(ch)
            if ch in lang.code or ch in lang.values:
                if ch in lang.code:
                    code_given = True
                    stopped = lang.stop_at_code
                if j + 1 == len(a):  # the value is the next element
                    if ch in lang.code:
                        scan.set(k + 1, k + 2, f"the code of {name} -{ch}")
                    step = 2
                break
            if ch in lang.rest:
                break
            if ch not in lang.flags:
                return unknown(a)
            j += 1
        k += step
    if k >= n:
        return
    if not code_given:
        scan.set(k, k + 1, f"the script or program text {name} runs")
        k += 1
    files = sorted(seen & set(lang.reads_files))
    if files:
        return scan.set(k, n, f"a file name for {name} -{files[0]}, which opens 'cmd|' as a command")
    _after_code(scan, k, name)


def _after_code(scan: _Scan, lo: int, name: str) -> None:
    """The arguments after an interpreter's code are data ($1, sys.argv[1]) up to an option
    written after the code: a program that reads options there too (perl, GNU getopt) could
    take what follows as its value."""
    argv, n = scan.argv, len(scan.argv)
    for k in range(lo, n):
        a = argv[k]
        if len(a) > 1 and a[0] in "-+" and a != "--":
            return scan.set(k, n, f"after {a}, an option written after the code of {name}")
        scan.set(k, k + 1, None)


def _options(scan: _Scan, k: int, name: str, spec: _Wrapper) -> tuple[int, set[str]] | None:
    """A wrapper's options from argv[k]: (the first element after them, the options seen), or
    None for an option sdesk does not know."""
    argv, n = scan.argv, len(scan.argv)
    seen: set[str] = set()
    while k < n:
        a = argv[k]
        if a == "--":
            return k + 1, seen
        if name == "nice" and re.fullmatch(r"-[0-9]+", a):
            k += 1
            continue
        if not a.startswith("-") or a == "-":
            return k, seen
        if a.startswith("--"):
            option, eq, _ = a.partition("=")
            seen.add(option)
            if option in spec.long_values or option in spec.strings:
                k += 1 if eq else 2
            elif option in spec.long_flags or option in spec.no_command:
                k += 1
            else:
                return None
            continue
        j, step = 1, 1
        while j < len(a):
            ch = a[j]
            seen.add("-" + ch)
            if ch in spec.values:
                step = 2 if j + 1 == len(a) else 1
                break
            if ch in spec.rest:
                break
            if ch not in spec.flags:
                return None
            j += 1
        k += step
    return k, seen


def _wrapper(scan: _Scan, name: str, spec: _Wrapper) -> None:
    argv, n = scan.argv, len(scan.argv)
    scan.set(1, n, f"an option or argument of {name}, before the command it runs")
    parsed = _options(scan, 1, name, spec)
    if parsed is None:
        return scan.set(1, n, f"after an option of {name} sdesk does not know")
    k, seen = parsed
    if seen & spec.strings:
        return scan.set(1, n, f"part of what {name} {sorted(seen & spec.strings)[0]} runs as a shell command or "
                              "does not run as a command")
    if seen & spec.no_command:
        return
    if spec.assignments:
        while k < n and "=" in argv[k] and not argv[k].startswith("="):
            k += 1
    k += spec.positionals
    if k >= n:
        return
    if argv[k].startswith("-"):  # an option sdesk did not expect where the command should be
        return scan.set(1, n, f"after {argv[k]}, where {name} expects the command it runs")
    sub = _program(argv[k:])
    sub.why[0] = f"the program {name} runs"
    scan.merge(k, sub)
    for j, why in enumerate(sub.why):
        scan.why[k + j] = why


def _ssh(scan: _Scan) -> None:
    """ssh [options] destination [command...]: the command is joined into one string for the
    remote shell, so only the destination may be a parameter."""
    argv, n, k = scan.argv, len(scan.argv), 1
    scan.set(1, n, "an option or option value of ssh")
    while k < n and argv[k].startswith("-") and argv[k] != "-":
        if argv[k] == "--":
            k += 1
            break
        a = argv[k]
        if any(ch not in _SSH_FLAGS + _SSH_VALUES for ch in a[1:]):
            return scan.set(1, n, f"after {a}, an option of ssh sdesk does not know")
        last = next((j for j, ch in enumerate(a[1:], 1) if ch in _SSH_VALUES), None)
        k += 2 if last == len(a) - 1 else 1
    if k < n:
        scan.set(k, k + 1, None)
        scan.set(k + 1, n, "part of the remote command, which ssh joins into one string for the remote shell")


def _find(scan: _Scan) -> None:
    """find ... -exec CMD ARGS ; : CMD is read as a command of its own."""
    argv, n, k = scan.argv, len(scan.argv), 1
    while k < n:
        if argv[k] in _FIND_EXEC and k + 1 < n:
            end = next((j for j in range(k + 1, n) if argv[j] in (";", "+")), n)
            sub = _program(argv[k + 1:end])
            sub.why[0] = f"the program find {argv[k]} runs"
            for j, why in enumerate(sub.why):
                scan.why[k + 1 + j] = why
            scan.starts.add(k + 1)
            scan.starts |= {k + 1 + s for s in sub.starts}
            k = end
        k += 1
