"""Commands from ticket text (issue 18, item 1): a runbook parameter reaches a program only as
one whole argv element that no interpreter runs as code, never as an option; `runbook validate`
refuses every other use with the file, the line and a rewrite; and random argv shapes with
hostile titles never run anything but the intended program."""

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.domain.runbook_argv import DATA_PROGRAMS, known, program_name
from sdesk.errors import BadInput, ExitCode
from sdesk.intake.service import Intake
from sdesk.services.runner import prepare, start
from sdesk.store import Store
from sdesk.validated import parse_runbook as parse


@pytest.fixture
def desk(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli.config, cli.tmp = config, tmp_path
    return cli


# The shapes of the issue: each ran a `touch` from a ticket title, and validate accepted it.
ISSUE_SHAPES = [
    '[bash, -o, pipefail, -c, "echo checking {t} | tr a-z A-Z"]',
    '[sh, -c, --, "echo {t}"]',
    '[bash, +e, -c, "echo {t}"]',
    '[env, sh, -c, "echo {t}"]',
    '''[python3, -c, "print('{t}')"]''',
]


def test_the_printer_queue_email_runs_no_command_from_its_subject(desk):
    """The issue's reproduction, end to end: an email from a stranger, a triage rule, a runbook
    safe for automation. Its runbook no longer loads (validate says why, with the line), so the
    queued run is refused and nothing from the subject runs."""
    marker = desk.tmp / "PWNED"
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: printers\n    match: {title: {contains: printer}}\n    set: {runbook: printer-queue}\n")
    (desk.config / "runbooks" / "printer-queue.yaml").write_text(
        "name: printer-queue\nsafe_for_automation: true\nparams:\n  subject: {from: title}\nsteps:\n"
        "  - id: show-queue\n    run: [bash, -o, pipefail, -c, \"echo checking {subject} | tr a-z A-Z\"]\n")
    email = (f"From: stranger@internet.example\r\nSubject: printer broken; touch {marker} #\r\n"
             "Message-ID: <p1@x>\r\n\r\nhelp\r\n")
    desk("new", "--format", "email", "-", input=email, ok=False)
    assert not marker.exists()
    assert all(run["status"] == "refused" for run in desk.json("runbook", "runs"))
    out = desk("runbook", "validate", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT
    assert re.search(r"printer-queue\.yaml:7: steps\[show-queue\]\.run\[\d+\]: \{subject\}", out.stderr)
    assert '"$SDESK_PARAM_SUBJECT"' in out.stderr
    assert """[bash, -o, pipefail, -c, 'echo checking "$1" | tr a-z A-Z', bash, "{subject}"]""" in out.stderr


def test_the_rewritten_printer_queue_runs_the_subject_as_data(desk):
    """The rewrite validate suggests: the subject is $1 of the script, and the same email only
    prints its subject."""
    marker = desk.tmp / "PWNED"
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: printers\n    match: {title: {contains: printer}}\n    set: {runbook: printer-queue}\n")
    (desk.config / "runbooks" / "printer-queue.yaml").write_text(
        "name: printer-queue\nsafe_for_automation: true\nparams:\n  subject: {from: title}\nsteps:\n"
        "  - id: show-queue\n    run: [bash, -o, pipefail, -c, 'echo checking \"$1\" | tr a-z A-Z', bash, \"{subject}\"]\n"
        "  - id: from-env\n    run: [sh, -c, 'echo \"$SDESK_PARAM_SUBJECT\"']\n")
    assert desk.json("runbook", "validate")["ok"] is True
    email = (f"From: stranger@internet.example\r\nSubject: printer broken; touch {marker} #\r\n"
             "Message-ID: <p1@x>\r\n\r\nhelp\r\n")
    desk("new", "--format", "email", "-", input=email)
    [run] = desk.json("runbook", "runs")
    assert run["status"] == "succeeded" and run["automated"] and not marker.exists()
    steps = desk.json("runbook", "log", str(run["id"]))["steps"]
    assert steps[0]["output"] == f"CHECKING PRINTER BROKEN; TOUCH {str(marker).upper()} #\n"
    assert steps[1]["output"] == f"printer broken; touch {marker} #\n"


@pytest.mark.parametrize("shape", ISSUE_SHAPES)
def test_each_shape_of_the_issue_is_refused_with_its_line_and_never_runs(desk, shape):
    marker = desk.tmp / "M"
    (desk.config / "runbooks" / "rb.yaml").write_text(
        f"params:\n  t: {{from: title}}\nsteps:\n  - id: go\n    run: {shape}\n")
    out = desk("runbook", "validate", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and re.search(r"rb\.yaml:5: steps\[go\]\.run\[\d+\]: \{t\}", out.stderr), out.stderr
    ticket = desk.new(f"x; touch {marker}; $(touch {marker}); print(__import__('os').system('touch {marker}'))")
    out = desk("runbook", "run", "rb", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "rb.yaml:5:" in out.stderr
    assert not marker.exists() and desk.json("runbook", "runs") == []


# The second round (issue 18): programs sdesk did not know took a parameter as data, and these
# ran a title as a command or as code. Each validated before the allow-list.
TESTER_SHAPES = [
    '[capsh, --, -c, "{t}"]', '[timeout, "10", capsh, --, -c, "{t}"]', '[perl5.36-x86_64-linux-gnu, -e, "{t}"]',
    '[setarch, x86_64, "{t}"]', '[x86_64, "{t}"]', '[linux64, "{t}"]', '[uclampset, "{t}"]',
    '[uclampset, -m, "0", "{t}"]', '[dbus-run-session, --, "{t}"]', '[ssh-agent, "{t}"]', '[git, "{t}"]',
    '[ipython, -c, "{t}"]', '[ipython3, -c, "{t}"]', '[vim.basic, -es, -c, "{t}"]', '[git-shell, -c, "{t}"]',
    '[/usr/bin/perl5.36.0, -e, "{t}"]', '[python3.11, -c, "{t}"]', '[nice, setarch, x86_64, "{t}"]',
]


@pytest.mark.parametrize("shape", TESTER_SHAPES)
@pytest.mark.parametrize("declared", [False, True])
def test_each_program_the_tester_found_takes_no_parameter(shape, declared):
    """Not on the allow-list, and these run their arguments: refused with the file, the line
    and the program; data_args (the author's word) does not open them either."""
    text = f"params:\n  t: {{from: title}}\nsteps:\n  - id: go\n    run: {shape}\n" + ("    data_args: true\n" * declared)
    with pytest.raises(BadInput, match=r"^rb\.yaml:5: steps\[go\]\.run\[\d+\]: \{t\} would be ") as e:
        parse(text, "rb.yaml", "rb")
    assert "SDESK_PARAM_T" in str(e.value) or "argument of its own after the code" in str(e.value)


def test_the_printer_queue_email_through_capsh_runs_nothing(desk):
    """The tester's end-to-end shape: a safe_for_automation runbook running [capsh, --, -c,
    "{subject}"] for an email from a stranger. validate refuses it (file, line, program,
    rewrite); the queued run is refused; the subject never runs."""
    marker = desk.tmp / "PWNED1"
    (desk.config / "triage.yaml").write_text(
        "rules:\n  - id: printers\n    match: {title: {contains: printer}}\n    set: {runbook: printer-queue}\n")
    for shape in ('[capsh, --, -c, "{subject}"]', '[timeout, "10", capsh, --, -c, "{subject}"]'):
        (desk.config / "runbooks" / "printer-queue.yaml").write_text(
            "name: printer-queue\nsafe_for_automation: true\nparams:\n  subject: {from: title}\nsteps:\n"
            f"  - id: show-queue\n    run: {shape}\n")
        out = desk("runbook", "validate", ok=False)
        assert out.exit_code == ExitCode.BAD_INPUT
        assert re.search(r"printer-queue\.yaml:7: steps\[show-queue\]\.run\[\d+\]: \{subject\} would be an argument of capsh", out.stderr)
        assert '"$SDESK_PARAM_SUBJECT"' in out.stderr
        email = (f"From: stranger@internet.example\r\nSubject: printer broken; touch {marker} #\r\n"
                 f"Message-ID: <p{len(shape)}@x>\r\n\r\nhelp\r\n")
        desk("new", "--format", "email", "-", input=email, ok=False)
        assert not marker.exists()
    assert all(run["status"] == "refused" for run in desk.json("runbook", "runs"))


def test_an_unknown_program_takes_a_parameter_only_when_the_step_declares_data_args(desk):
    """A program of the team's own: refused with the advice to declare it; declared, validate
    shows a warning line naming the step and the program, and the title reaches it as data."""
    tool = desk.tmp / "show-args"
    tool.write_text("#!/bin/sh\nprintf '<%s>' \"$@\"\n")
    tool.chmod(0o755)
    step = f"params:\n  t: {{from: title}}\nsteps:\n  - id: go\n    run: [{json.dumps(str(tool))}, --, \"{{t}}\"]\n"
    (desk.config / "runbooks" / "rb.yaml").write_text(step)
    out = desk("runbook", "validate", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT
    assert re.search(r"rb\.yaml:5: steps\[go\]\.run\[\d+\]: \{t\} would be an argument of show-args, a program sdesk does "
                     "not know", out.stderr)
    assert "declare the step data_args: true" in out.stderr and '"$SDESK_PARAM_T"' in out.stderr
    (desk.config / "runbooks" / "rb.yaml").write_text(step + "    data_args: true\n")
    out = desk("runbook", "validate")
    assert "warning:" in out.stderr and "step go: data_args: true" in out.stderr and str(tool) in out.stderr
    assert desk.json("runbook", "validate")["warnings"]
    ticket = desk.new("a; $(touch x) -c")
    [result] = desk.json("runbook", "run", "rb", "--ticket", str(ticket), "--yes")["steps"]
    assert result["output"] == "<--><a; $(touch x) -c>"


# Siblings of the issue's shapes: wrappers, other interpreters and code options, command
# strings, options that take a command, and the parameter as the program itself.
SIBLINGS = [
    '[sudo, -u, postgres, sh, -c, "echo {t}"]', '[nice, -n, "5", bash, -c, "{t}"]', '[timeout, "30", sh, -c, "{t}"]',
    '[xargs, sh, -c, "{t}"]', '[ssh, db-1, systemctl, restart, "{t}"]', '[busybox, sh, -c, "{t}"]',
    '[env, -i, A=1, bash, -ec, "{t}"]', '[nohup, setsid, stdbuf, -oL, dash, -c, "{t}"]', '[perl, -e, "{t}"]',
    '[perl, -ne, print, "{t}"]', '[node, --eval, "{t}"]', '[ruby, -r, "{t}", -e, "1"]', '[awk, "{t}"]',
    '[sed, -e, "{t}"]', '[php, -r, "{t}"]', '[python3, -m, "{t}"]', '[python3, "{t}"]', '[sh, "{t}"]',
    '[env, "{t}"]', '[sudo, "{t}"]', '[find, /tmp, -exec, "{t}", ";"]', '[find, /tmp, -exec, sh, -c, "{t}", ";"]',
    '[git, -c, "{t}", status]', '[tar, --to-command, "{t}", -xf, a.tar]', '[psql, -c, "{t}"]',
    '[kubectl, exec, pod-1, --, bash, -c, "{t}"]', '[sudo, -s, "{t}"]', '[env, -S, "{t}"]', '[flock, /tmp/l, -c, "{t}"]',
    '[bash, --rcfile, "{t}", -c, "true"]', '[sh, -c, "true", -o, "{t}"]', '[pwsh, -File, x.ps1, "{t}"]',
    '[echo, "made {t} here"]', '[find, /tmp, -name, "*{t}*"]', '["{t}"]', '[bash, -O, extglob, -c, "echo {t}"]',
    '[fish, -c, "echo {t}"]', '[osascript, -e, "{t}"]',
    # Programs on the allow-list, in positions it does not list as data.
    '[printf, "{t}"]', '[rm, "{t}"]', '[rm, -rf, "{t}"]', '[curl, -K, "{t}"]', '[curl, -o, "{t}", "https://x"]',
    '[curl, --config, "{t}"]', '[kubectl, exec, "{t}", --, ls]', '[kubectl, --insecure, exec, get, --, sh, -c, "{t}"]',
    '[docker, run, "{t}"]', '[docker, exec, c1, "{t}"]', '[systemctl, --host, h, status, "{t}"]',
    '[systemctl, edit, "{t}"]', '[find, /tmp, -fprintf, "{t}", x]', '[find, /tmp, -exec, rm, "{t}", ";"]',
    '[grep, -f, "{t}", x]', '[journalctl, --file, "{t}"]', '[head, -n5, "{t}"]', '[date, "{t}"]', '[hostname, "{t}"]',
]


@pytest.mark.parametrize("shape", SIBLINGS)
def test_every_sibling_shape_is_refused_with_its_line(shape):
    with pytest.raises(BadInput, match=r"^rb\.yaml:5: steps\[go\]\.run\[\d+\]: (the command itself|\{t\} )"):
        parse(f"params:\n  t: {{from: title}}\nsteps:\n  - id: go\n    run: {shape}\n", "rb.yaml", "rb")


@pytest.mark.parametrize("where", ["dry_run", "on_failure"])
def test_dry_run_variants_and_rollback_steps_are_held_to_the_same_rule(where):
    steps = ('steps:\n  - run: [echo, "{t}"]\n    dry_run: [sh, -c, "echo {t}"]\n' if where == "dry_run" else
             'steps:\n  - run: ["true"]\non_failure:\n  - run: [sh, -c, "echo {t}"]\n')
    path = r"steps\[0\]\.dry_run\[2\]" if where == "dry_run" else r"on_failure\[0\]\.run\[2\]"
    with pytest.raises(BadInput, match=rf"{path}: \{{t\}} is inside a longer"):
        parse("params:\n  t: {from: title}\n" + steps, "rb.yaml", "rb")


@pytest.mark.parametrize("shape", [
    '[sh, -c, \'echo "$1"\', sh, "{t}"]', '[bash, -o, pipefail, -c, \'echo "$1" | tr a-z A-Z\', bash, "{t}"]',
    '[ssh, "{t}", uptime]', '[echo, "{t}"]', '[test, -d, "{t}"]', '[env, A=1, timeout, "30", sh, -c, \'echo "$1"\', sh, "{t}"]',
    '[python3, -c, "import sys; print(sys.argv[1])", "{t}"]', '[perl, -e, "print $ARGV[0]", --, "{t}"]',
    '[find, /tmp, -name, "{t}"]', '[awk, "{ print ARGV[1] }", "{t}"]', '[sed, -n, p, "{t}"]',
    '[grep, -e, "{t}", /etc/hosts]', '[grep, -ri, --, "{t}", /var/log]', '[systemctl, status, "{t}"]',
    '[systemctl, --no-pager, restart, "{t}"]', '[journalctl, -u, "{t}", -n, "50", --no-pager]',
    '[kubectl, -n, prod, logs, "{t}"]', '[kubectl, rollout, restart, "{t}"]', '[docker, logs, --tail, "50", "{t}"]',
    '[rm, -rf, --, "{t}"]', '[cp, -a, --, "{t}", /backup]', '[curl, -fsS, -o, /dev/null, "{t}"]', '[dig, "{t}"]',
    '[ping, -c, "1", "{t}"]', '[printf, "%s\\n", "{t}"]', '[ls, -la, "{t}"]', '[du, -sh, "{t}"]', '[stat, "{t}"]',
    '[timeout, "10", tail, -n, "20", "{t}"]', '[sudo, -u, app, systemctl, restart, "{t}"]',
])
def test_a_parameter_as_data_is_accepted(shape):
    parse(f"params:\n  t: {{from: title}}\nsteps:\n  - run: {shape.replace('{ ', '{{ ').replace(' }', ' }}')}\n",
          "rb.yaml", "rb")


def test_a_value_that_would_be_an_option_runs_only_after_double_dash(desk):
    """tar's --checkpoint-action=exec=... is one argv element that runs a command: a value
    starting with '-' is refused at run time unless the runbook put -- before it."""
    marker = desk.tmp / "M"
    archive = desk.tmp / "a.tar"
    (desk.config / "runbooks" / "bare.yaml").write_text(
        f"params:\n  t: {{from: title}}\nsteps:\n  - run: [tar, -cf, {json.dumps(str(archive))}, \"{{t}}\"]\n"
        "    data_args: true\n")
    (desk.config / "runbooks" / "guarded.yaml").write_text(
        f"params:\n  t: {{from: title}}\nsteps:\n  - run: [tar, -cf, {json.dumps(str(archive))}, --, \"{{t}}\"]\n"
        "    data_args: true\n")
    ticket = desk.json("new", "-", input=json.dumps({"title": f"--checkpoint-action=exec=touch {marker}"}))["ticket"]
    out = desk("runbook", "run", "bare", "--ticket", str(ticket), "--yes", ok=False)
    assert out.exit_code == ExitCode.BAD_INPUT and "starts with '-'" in out.stderr and "put -- before" in out.stderr
    out = desk("runbook", "run", "guarded", "--ticket", str(ticket), "--yes", "--json", ok=False)
    assert json.loads(out.stdout)["status"] == "failed"  # tar found no such file: the value was a name
    assert "Cannot stat" in json.loads(out.stdout)["steps"][0]["output"] and not marker.exists()


def test_line_breaks_and_control_characters_in_a_value_are_refused(desk):
    (desk.config / "runbooks" / "rb.yaml").write_text(
        "params:\n  t: {from: title}\nsteps:\n  - run: [sh, -c, 'echo \"$1\"', sh, \"{t}\"]\n")
    ticket = desk.new("fine")
    for value in ("a\ntouch x", "a\rb", "a\x1b]0;x\x07", "a\x00b"):
        out = desk("runbook", "run", "rb", "--ticket", str(ticket), "--yes", "--param", f"t={value}", ok=False)
        assert out.exit_code == ExitCode.BAD_INPUT and "control character" in out.stderr, (value, out.stderr)
    assert desk.json("runbook", "runs") == []


def test_a_step_env_may_not_set_a_variable_from_ticket_text(desk):
    """GIT_SSH_COMMAND, BASH_ENV, LD_PRELOAD, PAGER...: what a variable means is the program's;
    text parameters reach steps as SDESK_PARAM_* only. Numbers and {ticket} may be set."""
    with pytest.raises(BadInput, match=r"rb.yaml:6: steps\[0\]\.env\.GIT_SSH_COMMAND: \{t\} would set GIT_SSH_COMMAND .*SDESK_PARAM_T"):
        parse("params:\n  t: {from: title}\nsteps:\n  - run: [git, fetch]\n    env:\n      GIT_SSH_COMMAND: '{t}'\n",
              "rb.yaml", "rb")
    parse("params:\n  n: {type: int, default: 3}\nsteps:\n  - run: [git, fetch]\n    env: {RETRIES: '{n}', T: '{ticket}'}\n",
          "rb.yaml", "rb")


# -- the class: random commands, random hostile titles ---------------------------------------------

PYTHON = sys.executable  # a real python3 (a pyenv shim would be a shell script in between)
_WRAPPERS = [w for w in (["env"], ["env", "A=1"], ["env", "-i"], ["nice"], ["nice", "-n", "5"], ["timeout", "30"],
                         ["nohup"], ["setsid"], ["stdbuf", "-oL"], ["xargs"], ["time"], ["ionice", "-c", "3"],
                         ["taskset", "-c", "0"], ["env", "--"], ["xargs", "-r"], ["timeout", "-k", "5", "30"])
             if shutil.which(w[0])]
_FLAGS = [["-c"], ["-e"], ["-E"], ["--eval"], ["-r"], ["-o", "pipefail"], ["+e"], ["--"], ["-x"], ["-n"], ["-p"],
          ["-ec"], ["-ne"], ["-s"], ["-u"], ["-exec"], ["-f"], ["-i"], ["+o", "posix"], ["-m"]]
# Per program: options before the code, the options that take code, code an author might write
# (none mentions the marker), and titles aimed at it. @M@ is the marker's path, @S@ a script
# that creates it.
_SH_CODE = ["echo {t}", "{t}", 'echo "$1"', "echo '{t}'", 'echo "{t}"', 'printf "%s\\n" "$@"', "echo checking {t} | tr a-z A-Z"]
_SH_TITLES = ["; touch @M@", "$(touch @M@)", "`touch @M@`", "'; touch @M@; '", '"; touch @M@; "', "touch @M@", "@S@",
              "x && touch @M@", "$IFS;touch${IFS}@M@"]
_PROGRAMS = {
    "sh": ([["-e"], ["+e"], ["-x"], ["-u"], ["+o", "posix"], ["-o", "noglob"]], [["-c"], ["-c", "--"], ["-ec"], []],
           _SH_CODE, _SH_TITLES),
    "bash": ([["-e"], ["+e"], ["-o", "pipefail"], ["--norc"], ["-O", "extglob"]], [["-c"], ["-c", "--"], ["-ec"], []],
             _SH_CODE, _SH_TITLES),
    "dash": ([["-e"], ["+e"], ["-u"]], [["-c"], ["-c", "--"], []], _SH_CODE, _SH_TITLES),
    PYTHON: ([["-u"], ["-B"], ["-I"], ["-W", "ignore"]], [["-c"], ["-m"], []],
             ["print('{t}')", "{t}", "import sys; print(sys.argv)", 'print("{t}")', "exec('{t}')"],
             ["__import__('os').system('touch @M@')", "');__import__('os').system('touch @M@');print('",
              "@S@", "os", "-c__import__('os').system('touch @M@')"]),
    "perl": ([["-w"], ["-T"], ["-l"]], [["-e"], ["-E"], ["-ne"], ["-pe"], []],
             ["print '{t}'", "{t}", "print @ARGV", 'system("echo {t}")', "print while <>"],
             ["system('touch @M@')", "touch @M@|", "-esystem('touch @M@')", "'; system('touch @M@'); '", "|touch @M@"]),
    "node": ([["--no-warnings"], ["--check"]], [["-e"], ["--eval"], ["-p"], ["-r"], []],
             ["console.log('{t}')", "{t}", "console.log(process.argv)"],
             ["require('child_process').execSync('touch @M@')", "--eval=require('fs').writeFileSync('@M@','')",
              "'); require('child_process').execSync('touch @M@'); ('", "--require=@S@"]),
    "awk": ([["-v", "x=1"]], [["-f"], []], ['BEGIN {{ print "{t}" }}', "{t}", "BEGIN {{ print ARGV[1] }}"],
            ['BEGIN{system("touch @M@")}', '" ; system("touch @M@"); "', "@S@"]),
    "sed": ([["-n"], ["-E"]], [["-e"], ["-f"], []], ["{t}", "s/x/{t}/", "p"],
            ["e touch @M@", "1e touch @M@", "s/^/x/e;e touch @M@", "w @M@"]),
    "tclsh": ([], [[]], ["{t}", "/dev/null"], ["@S@", "exec touch @M@"]),
    "echo": ([["-n"], ["-e"]], [[]], ["{t}", "x"], ["-e", "; touch @M@"]),
    "find": ([], [[]], ["{t}", "/dev/null"], ["-exec touch @M@ ;", "-fprint @M@", "-delete"]),
    "tar": ([], [["-cf", "/dev/null"]], ["{t}", "x"], ["--checkpoint-action=exec=touch @M@", "--to-command=touch @M@",
                                                        "-I touch @M@"]),
}
_PROGRAMS = {name: spec for name, spec in _PROGRAMS.items() if shutil.which(name)}
_EXTRA = ["{t}", "sh", "x", "--", "-c", "-e", "{{t}}", "+{t}", "--x={t}", "-"]
_TITLES = sorted({t for spec in _PROGRAMS.values() for t in spec[3]} |
                 {"-exec", "-c", "-r", "-i", "x\ntouch @M@", "a\rtouch @M@", "\x00touch @M@", "--", "@M@"})


@st.composite
def commands(draw) -> tuple[list[str], str]:
    """A command (wrappers, an interpreter or program, its options, code, more arguments, now
    and then a stray option) and a title aimed at that program or any other."""
    argv = [word for wrapper in draw(st.lists(st.sampled_from(_WRAPPERS), max_size=2)) for word in wrapper]
    program = draw(st.sampled_from(sorted(_PROGRAMS)))
    before, code_options, bodies, titles = _PROGRAMS[program]
    argv.append(program)
    argv += [word for option in draw(st.lists(st.sampled_from(before), max_size=2)) for word in option] if before else []
    argv += draw(st.sampled_from(code_options))
    argv.append(draw(st.sampled_from(bodies)))
    argv += draw(st.lists(st.sampled_from(_EXTRA), max_size=3))
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(1, len(argv)))
        argv[at:at] = draw(st.sampled_from(_FLAGS))
    title = draw(st.sampled_from(titles) | st.sampled_from(_TITLES))
    return argv, title


def attempt(argv: list[str], title: str, folder: Path, timeout: str = "20s") -> str:
    """One command with one title, for real: 'refused' by the loader (validate), 'refused at run'
    (the value, by prepare), or 'ran'."""
    text = f"params:\n  t: {{from: title}}\nsteps:\n  - id: go\n    run: {json.dumps(argv)}\n    timeout: {timeout}\n"
    try:
        runbook = parse(text, str(folder / "rb.yaml"), "rb")
    except BadInput:
        return "refused"
    store = Store(folder / "desk.db")
    try:
        [(ticket, _)] = Intake(store).intake([{"title": "printer", "kind": "incident", "priority": "P3"}], actor="t",
                                     source="cli")
        try:
            prepared = prepare(store, runbook, ticket, {"t": title})
        except BadInput:
            return "refused at run"
        start(store, prepared, actor="t", dry_run=False)
        return "ran"
    finally:
        store.close()


def hostile(folder: Path, template: str) -> tuple[str, Path]:
    """The title, and the marker it would create if anything ran it."""
    marker = folder / "M"
    script = folder / "S"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    script.chmod(0o755)
    return template.replace("@M@", str(marker)).replace("@S@", str(script)), marker


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands())
def test_no_command_validate_accepts_runs_anything_from_a_title(shape):
    """Random commands of interpreters, wrappers, flags and placeholders, with hostile titles:
    whatever the loader accepts runs for real and never creates the marker."""
    import tempfile

    argv, template = shape
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        title, marker = hostile(folder, template)
        attempt(argv, title, folder)
        assert not marker.exists(), f"{argv} ran a command from {title!r}"


# Programs sdesk does not know: random names, and the real binaries of /usr/bin that are not
# on the allow-list. Only ever run when validate accepts them (it must not); the names that
# would do harm if a broken rule let them run are left out of the draw.
_HARMFUL = re.compile(r"^(reboot|shutdown|halt|poweroff|init|telinit|.*kill.*|rm.*|dd|shred|wipefs|mkfs.*|.*fdisk|"
                      r"parted|.*passwd|.*user.*|.*group.*|su|sudo.*|login|.*mount|swap.*|sync|truncate|.*ctl|service|"
                      r"apt.*|dpkg.*|pip.*|.*edit.*|chown|chmod|chgrp|mv|cp|ln|install|unlink|.*shutdown.*|crontab|at)$")
_BINARIES = sorted(entry.name for entry in Path("/usr/bin").iterdir()
                   if entry.name not in DATA_PROGRAMS and not _HARMFUL.match(entry.name) and os.access(entry, os.X_OK))
# Binaries that run an argument as a command or code (the tester's finds): drawn often.
_RUNNERS = [name for name in ("capsh", "setarch", "x86_64", "linux64", "uclampset", "dbus-run-session", "ssh-agent",
                              "git", "git-shell", "perl5.36-x86_64-linux-gnu", "vim.basic", "ipython3")
            if shutil.which(name)]
_UNKNOWN_ARGS = ["-c", "-e", "--", "-", "x", "10", "-x", "--command", "-s", "-m", "0", "x86_64", "run", "{t}", "exec"]


@st.composite
def unknown_commands(draw) -> tuple[list[str], str]:
    """An unknown program (random, or a real binary off the allow-list), maybe behind a wrapper,
    with random arguments and the title as a whole argument somewhere, and a hostile title."""
    argv = [word for wrapper in draw(st.lists(st.sampled_from(_WRAPPERS), max_size=1)) for word in wrapper]
    argv.append(draw(st.from_regex(r"[a-z][a-z0-9_.+-]{0,15}", fullmatch=True).filter(lambda p: p not in DATA_PROGRAMS)
                     | st.sampled_from(_BINARIES or ["capsh"]) | st.sampled_from(_RUNNERS or ["capsh"])))
    rest = draw(st.lists(st.sampled_from(_UNKNOWN_ARGS), max_size=4))
    rest.insert(draw(st.integers(0, len(rest))), "{t}")
    title = draw(st.sampled_from(["@S@", "touch @M@", "$(touch @M@)", "system('touch @M@')"]) | st.sampled_from(_TITLES))
    return argv + rest, title


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unknown_commands())
def test_no_unknown_program_validate_accepts_runs_a_title(shape):
    """Whatever program sdesk does not know takes no parameter: validate refuses it, and a
    shape it did accept (none should) runs for real and never creates the marker."""
    import tempfile

    argv, template = shape
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        title, marker = hostile(folder, template)
        result = attempt(argv, title, folder, timeout="5s")
        assert not marker.exists(), f"{argv} ran a command from {title!r}"
        # The program behind the longest wrapper the shape starts with (`env A=1`, not `env`).
        wrapper = max((w for w in _WRAPPERS if argv[:len(w)] == w), key=len, default=[])
        name = argv[len(wrapper)]
        if not known(program_name(name)):
            assert result == "refused", f"{argv} took a parameter"


@pytest.mark.parametrize("shape, output", [
    ('[bash, -o, pipefail, -c, "echo checking {t} | tr a-z A-Z"]', "CHECKING A;B $(C) 'D'\n"),
    ('[echo, "made {t} for {ticket}"]', "made a;b $(c) 'd' for SD-1\n"),
    ("[sh, -c, \"echo 'got {t}' \\\"and {t}\\\"\"]", "got a;b $(c) 'd' and a;b $(c) 'd'\n"),
    ('[dash, -c, "printf %s {t}"]', "a;b $(c) 'd'"),
])
def test_the_rewrite_validate_suggests_validates_and_keeps_the_value_data(desk, shape, output):
    (desk.config / "runbooks" / "rb.yaml").write_text(f"params:\n  t: {{from: title}}\nsteps:\n  - run: {shape}\n")
    out = desk("runbook", "validate", ok=False)
    rewrite = out.stderr.rsplit("after the script: ", 1)[1].strip()
    (desk.config / "runbooks" / "rb.yaml").write_text(f"params:\n  t: {{from: title}}\nsteps:\n  - run: {rewrite}\n")
    assert desk.json("runbook", "validate")["ok"] is True
    ticket = desk.new("a;b $(c) 'd'")
    [step] = desk.json("runbook", "run", "rb", "--ticket", str(ticket), "--yes")["steps"]
    assert step["output"] == output


_TOKENS = ["sh", "bash", "python3", "perl", "node", "awk", "sed", "env", "sudo", "xargs", "timeout", "nice", "ssh",
           "busybox", "find", "flock", "psql", "git", "tar", "kubectl", "echo", "-c", "-e", "-exec", "--eval", "-o",
           "+o", "-r", "-n", "-m", "-S", "-s", "-i", "-p", "-f", "--", "-", ";", "+", "A=1", "5", "x", "{t}", "-ec",
           "--rcfile", "--to-command", "-oProxyCommand=x", "-W", "--require", "-lne"]


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=12))
def test_reading_any_command_never_fails_and_never_allows_the_program_position(argv):
    from sdesk.domain.runbook_argv import verdicts

    why, starts = verdicts(tuple(argv))
    assert len(why) == len(argv) and why[0] and 0 in starts and all(0 <= s < len(argv) for s in starts)
    assert all(why[s] for s in starts)  # a program is never a parameter
    text = f"params:\n  t: {{from: title}}\nsteps:\n  - run: {json.dumps(argv)}\n"
    try:
        parse(text, "rb.yaml", "rb")
    except BadInput as e:
        assert str(e).startswith("rb.yaml:")
