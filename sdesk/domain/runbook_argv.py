"""Where a runbook parameter may stand in a command: the rule that keeps ticket text from ever
running as code. Pure: no I/O.

A parameter's value reaches a program only as ONE WHOLE argv element (never inside a longer
one, never as argv[0]). Which elements a program takes as data depends on the program, so this
reads the command the way it will be read: through wrappers (env, sudo, timeout, xargs, find
-exec...) to the program they start, and for the interpreters (sh, bash, python, perl, node,
awk, sed...) their options, to find the code argument. A parameter is allowed only where the
program is KNOWN to take it as data: for an interpreter, the arguments after the code (`sh -c
CODE sh "{p}"`'s $1); for the common ops programs of `DATA_PROGRAMS` (echo, grep, systemctl
status...), their operands and the values of options listed as data. Every other program takes
no parameter (capsh, setarch, git...: a program can run any argument as a command, and no list
of such programs is ever complete), unless the runbook's author declares the step `data_args:
true` (their word, not sdesk's). It is an allow-list of positions, not a list of bad shapes: an
unknown program, option or shape refuses.

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
    # Found running a title as a command (issue 18): even data_args does not open these.
    "ipython", "bpython", "capsh", "git-shell", "setarch", "linux32", "linux64", "x86_64", "i386", "x", "i", "uname26",
    "uclampset", "dbus-run-session", "ssh-agent", "git", "kubectl-exec", "env-exec", "run-parts", "runcon", "sandbox",
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
# What distributions append to a program's name: a version (python3.11, perl5.36), an
# architecture triplet (perl5.36-x86_64-linux-gnu), an alternative's flavour (vim.basic), .exe.
_SUFFIX = re.compile(r"(?:-(?:x86_64|amd64|i[3-6]86|aarch64|arm64|arm[a-z0-9]*|powerpc64le|ppc64le|ppc64|s390x|riscv64|"
                     r"mips[a-z0-9]*|loongarch64)(?:-[a-z0-9]+)*"  # -x86_64-linux-gnu
                     r"|\.(?:basic|tiny|nox|gtk[0-9]*|athena|motif|exe|real|bin|debug)"
                     r"|[-_.]?[0-9][0-9._]*[a-z]?)$")


def program_name(item: str) -> str:
    """`/usr/bin/python3.11` -> `python`, `perl5.36-x86_64-linux-gnu` -> `perl`, `vim.basic` ->
    `vim`: the program, without its folder, version, architecture or flavour, so that a renamed
    copy of an interpreter is read as that interpreter."""
    name = item.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower()
    for _ in range(8):
        shorter = _SUFFIX.sub("", name)
        if shorter == name or not shorter:
            break
        name = shorter
    return name


class _Data(NamedTuple):
    """A program sdesk knows takes its operands as data. A parameter may be an operand (an
    element that is no option and no option's value), or the value of an option in `values`;
    the value of any other option, or an element after an option sdesk does not know, refuses."""
    flags: str = ""  # short options with no value (clustered: -rn)
    long_flags: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()  # options whose value is data (grep -e, journalctl -u)
    literal: frozenset[str] = frozenset()  # options whose value must be written in the runbook (curl -o)
    sub: frozenset[str] = frozenset()  # if any: the first operand must be one of these, written literally
    first_literal: bool = False  # the first operand is not data (printf's format)
    after_dashdash: bool = False  # operands are data only after `--` (rm: a name is never an option)
    operands: bool = True  # False: only option values listed in `values` (ping's host is one)


def _d(flags: str = "", long_flags: str = "", values: str = "", literal: str = "", sub: str = "", **kw) -> _Data:
    return _Data(flags, frozenset(long_flags.split()), frozenset(values.split()), frozenset(literal.split()),
                 frozenset(sub.split()), **kw)


_FILES = _d("hHLPqsvzc", "--help --version")
# The allow-list: common ops programs and where they take data. Kept short on purpose: a
# program is added here only when every position it lets a parameter take is read as data.
DATA_PROGRAMS: dict[str, _Data] = {
    "echo": _d("neE"),
    "printf": _d(first_literal=True),
    "test": _d(), "[": _d(),
    "true": _d(), "false": _d(),
    "ls": _d("aAdFhilLrRst1", "--all --human-readable --full-time"),
    "cat": _d("AbeEnstTuv"),
    "head": _d("qvz", values="-n -c --lines --bytes"),
    "tail": _d("qvzF", values="-n -c --lines --bytes"),
    "wc": _d("clmwL"),
    "stat": _d("LtF", values="-c --format --printf"),
    "file": _d("bLizs"),
    "du": _d("abcDhHklLmsSx", "--apparent-size --summarize --human-readable", values="-d --max-depth"),
    "df": _d("ahHiklPTx", "--human-readable --inodes --local --print-type", values="-t --type -x"),
    "grep": _d("cEFGhHiIlLnoqrRsvwxz", "--count --ignore-case --invert-match --quiet --recursive --fixed-strings",
               values="-e --regexp -m --max-count -A -B -C --include --exclude"),
    "egrep": _d("chHiIlLnoqrRsvwxz", values="-e --regexp -m -A -B -C"),
    "fgrep": _d("chHiIlLnoqrRsvwxz", values="-e --regexp -m -A -B -C"),
    "find": _d("HLP", values="-name -iname -path -ipath -wholename -type -mtime -mmin -newer -size -user -group "
                             "-maxdepth -mindepth -perm -regex -iregex -samefile -inum -links",
               long_flags="-print -print0 -ls -xdev -mount -follow -depth -empty -true -false -not -and -or "
                          "-readable -writable -delete -prune -quit ( ) !"),
    "systemctl": _d("qla", "--quiet --no-pager --full --all --user --system --now --no-block --failed --no-legend",
                    values="-n --lines -p --property", literal="-t --type --state -o --output",
                    sub="status start stop restart reload try-restart reload-or-restart is-active is-failed "
                        "is-enabled show cat list-units list-timers reset-failed"),
    "journalctl": _d("qrxkealmf", "--no-pager --reverse --catalog --dmesg --pager-end --all --utc --no-hostname "
                     "--quiet --merge", values="-u --unit -t --identifier -g --grep -S --since -U --until -n --lines "
                     "-p --priority -b --boot -I --user-unit", literal="-o --output"),
    "ping": _d("4 6 nqv".replace(" ", ""), values="-c -W -w -i -s -t", operands=True),
    "dig": _d(values="-t -p -x -q"), "host": _d("aCdlrTv", values="-t -W -c"), "nslookup": _d(),
    "getent": _d(),
    "curl": _d("fsSLkIiv", "--fail --silent --show-error --location --insecure --head --include --verbose "
               "--compressed", values="-m --max-time --connect-timeout --retry -A --user-agent --url",
               literal="-o --output -X --request -H --header -w --write-out"),
    "kubectl": _d(long_flags="--all-namespaces -A -o=wide", values="-n --namespace -l --selector --since --tail -c "
                  "--container --field-selector", literal="--context --kubeconfig --cluster -o --output",
                  sub="get describe logs rollout top explain"),
    "docker": _d(long_flags="-a --all -f --follow -t --timestamps", values="--tail --since --until -n --time -t",
                 literal="--format --context -H --host", sub="logs inspect restart start stop ps top port stats"),
    "mkdir": _d("pv", "--parents --verbose", values="-m --mode", after_dashdash=True),
    "rm": _d("frvdIi", "--force --recursive --verbose --one-file-system", after_dashdash=True),
    "rmdir": _d("pv", "--parents --verbose --ignore-fail-on-non-empty", after_dashdash=True),
    "cp": _d("afpPrRvnuL", "--archive --force --preserve --recursive --verbose --no-clobber", after_dashdash=True),
    "mv": _d("fvnu", "--force --verbose --no-clobber", after_dashdash=True),
    "chmod": _d("Rvcf", "--recursive --verbose --changes --silent", after_dashdash=True),
    "chown": _d("Rvchf", "--recursive --verbose --changes --silent", after_dashdash=True),
    "touch": _d("acm"),
    "logger": _d("is", values="-t --tag -p --priority"),
    # date MMDDhhmm sets the clock and hostname NAME the host name: only their listed values.
    "sleep": _d(), "date": _d("Ru", values="-d --date", operands=False),
    "id": _d("gGnur"), "hostname": _d(operands=False), "whoami": _d(), "uptime": _d(), "free": _d("bkmght"),
    "basename": _d(), "dirname": _d(), "realpath": _d("emsq"), "readlink": _d("fenq"),
    "sha256sum": _d("bctw"), "md5sum": _d("bctw"),
}
_REQUIRES_DATA_ARGS = "a program sdesk does not know takes its arguments as data"


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


def verdicts(argv: tuple[str, ...], data_args: bool = False) -> tuple[list[str | None], set[int]]:
    """For each element: None when a parameter may stand there (the program takes it as data),
    else why not; and the elements that start a program. `data_args`: the runbook's author
    declares that the programs sdesk does not know take their arguments as data."""
    scan = _program(argv, data_args)
    return scan.why, scan.starts


def _program(argv: tuple[str, ...], data_args: bool = False) -> _Scan:
    scan = _Scan(argv)
    name = program_name(argv[0])
    n = len(argv)
    if name in _SH:
        _shell(scan, name)
    elif name in LANGS:
        _lang(scan, name, LANGS[name])
    elif name in _WRAPPERS:
        _wrapper(scan, name, _WRAPPERS[name], data_args)
    elif name == "busybox":
        if n > 1 and not argv[1].startswith("-"):
            scan.set(1, n, None)
            scan.merge(1, _program(argv[1:], data_args))
        else:
            scan.set(1, n, "an argument of busybox")
    elif name == "ssh":
        _ssh(scan)
    elif name in _OPAQUE or argv[0].rsplit("/", 1)[-1] in _OPAQUE:
        scan.set(1, n, f"an argument of {name}, which runs its arguments as code or commands in ways sdesk does "
                       "not check")
    elif argv[0].rsplit("/", 1)[-1] in DATA_PROGRAMS:
        _data(scan, argv[0].rsplit("/", 1)[-1], DATA_PROGRAMS[argv[0].rsplit("/", 1)[-1]], data_args)
    elif data_args:
        # The author declared (data_args: true) that this program takes its arguments as data:
        # their word, outside sdesk's guarantee. Still refused: the values of options known to
        # take code or a command, find's -exec command, and what a known program named in the
        # arguments would run (kubectl exec pod -- sh -c X).
        scan.set(1, n, None)
        code_options = _CODE_OPTIONS.get(name, set()) | _GENERIC_CODE_OPTIONS
        for k in range(1, n - 1):
            if argv[k] in code_options:
                scan.set(k + 1, k + 2, f"the value of {argv[k]}, which {name} runs as code or a command")
        for k in range(1, n):
            if known(program_name(argv[k])) and k not in scan.names:
                scan.merge(k, _program(argv[k:], data_args))
    else:
        scan.set(1, n, f"an argument of {argv[0].rsplit('/', 1)[-1]}, a program sdesk does not know to take its "
                       "arguments as data")
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


def _wrapper(scan: _Scan, name: str, spec: _Wrapper, data_args: bool = False) -> None:
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
    sub = _program(argv[k:], data_args)
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


def _find(scan: _Scan, data_args: bool = False) -> None:
    """find ... -exec CMD ARGS ; : CMD is read as a command of its own."""
    argv, n, k = scan.argv, len(scan.argv), 1
    while k < n:
        if argv[k] in _FIND_EXEC and k + 1 < n:
            end = next((j for j in range(k + 1, n) if argv[j] in (";", "+")), n)
            sub = _program(argv[k + 1:end], data_args)
            sub.why[0] = f"the program find {argv[k]} runs"
            for j, why in enumerate(sub.why):
                scan.why[k + 1 + j] = why
            scan.starts.add(k + 1)
            scan.starts |= {k + 1 + s for s in sub.starts}
            k = end
        k += 1


def _data(scan: _Scan, name: str, spec: _Data, data_args: bool) -> None:
    """A program of DATA_PROGRAMS: its operands and listed option values are data; anything
    sdesk cannot place (an option it does not know, a subcommand not on the list) refuses."""
    argv, n = scan.argv, len(scan.argv)
    if name in ("test", "["):  # operators and operands only; test runs nothing and opens nothing
        return scan.set(1, n, None)
    scan.set(1, n, f"an option or option value of {name}")
    k, operand, dashdash = 1, 0, False
    if spec.sub:
        while k < n and argv[k].startswith("-") and argv[k] != "-":
            a = argv[k]
            if a.partition("=")[0] in spec.literal | spec.values and "=" not in a:
                k += 2
            elif a in spec.long_flags or "=" in a:
                k += 1
            else:
                return scan.set(1, n, f"after {a}, an option of {name} sdesk does not know")
        if k >= n or argv[k] not in spec.sub:
            what = argv[k] if k < n else "nothing"
            return scan.set(1, n, f"an argument of {name} {what}; sdesk knows only {name} {', '.join(sorted(spec.sub))} "
                                  "to take data")
        k += 1
    while k < n:
        a = argv[k]
        if name == "find" and a in _FIND_EXEC:
            return _find(scan, data_args)
        if dashdash or a == "-" or not a.startswith("-") or (name == "find" and a in spec.long_flags):
            data = spec.operands and not (spec.first_literal and operand == 0) and not (spec.after_dashdash
                                                                                       and not dashdash)
            if name == "find" and a in spec.long_flags:
                data = False
            why = None if data else (f"an operand of {name} before `--` (put -- before it)" if spec.after_dashdash
                                     else f"the format of {name}" if spec.first_literal and operand == 0
                                     else f"an operand of {name}")
            scan.set(k, k + 1, why)
            operand += 1
            k += 1
            continue
        if a == "--":
            dashdash = True
            k += 1
            continue
        option = a.partition("=")[0]
        if "=" in a and (option.startswith("--") or name == "find"):
            k += 1
            continue
        if a in spec.values:
            scan.set(k + 1, k + 2, None)
            k += 2
            continue
        if a in spec.literal:
            scan.set(k + 1, k + 2, f"the value of {name} {a}, which the runbook must write itself")
            k += 2
            continue
        if a in spec.long_flags or (not a.startswith("--") and all(ch in spec.flags for ch in a[1:])):
            k += 1
            continue
        # An option sdesk does not know: what follows may be its value (curl -K FILE), so the
        # rest of the command takes no parameter.
        return scan.set(k, n, f"after {a}, an option of {name} sdesk does not know")
