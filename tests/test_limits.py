"""Denial of service by input: user patterns that run away, YAML and JSON that expand without
bound, files that never end, numbers beyond what SQLite holds, `-` for stdout and text that
is empty to the eye. Each limit gives one clear line, never a hang or a traceback."""

import itertools
import json
import os
import subprocess
import sys

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from sdesk.domain import patterns
from sdesk.errors import BadInput, ExitCode
from sdesk.triage import Matcher, matches, parse_matcher

# A run that backtracks takes 1.9^n steps (27 characters: seconds; 10,000: never ends). A
# linear engine takes milliseconds, so this bound only catches a run that does not end.
NEVER = 120


def sdesk(*args, input=None, env=None, timeout=NEVER):
    return subprocess.run([sys.executable, "-m", "sdesk", *args], input=input, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def alert(**labels):
    return json.dumps({"alerts": [{"labels": labels}]})


# -- user patterns run in linear time (RE2) ------------------------------------------------------


def test_a_backtracking_silence_matcher_cannot_hold_intake(tmp_path):
    """The issue's silence, `instance=~(a+)+$`, against a 10,000-character instance: with a
    backtracking engine the alert would never be stored."""
    added = sdesk("silence", "add", "--match", "alertname=A", "--match", "instance=~(a+)+$", "--for", "2h")
    assert added.returncode == 0, added.stderr
    hostile = "a" * 10_000 + "b"
    stored = sdesk("new", "--format", "alertmanager", "--json", input=alert(alertname="A", instance=hostile))
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["action"] == "created"
    # And the silence still does what it says on a value it matches.
    silenced = sdesk("new", "--format", "alertmanager", "--json", input=alert(alertname="A", instance="a" * 10_000))
    ticket = json.loads(silenced.stdout)["ticket"]
    assert json.loads(sdesk("show", str(ticket), "--json").stdout)["suppressed"] == "silence 1"


def test_a_backtracking_triage_rule_cannot_hold_intake(tmp_path):
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "triage.yaml").write_text("rules:\n  - id: r\n    match: {description: {regex: '^(a+)+$'}}\n"
                                        "    set: {queue: slow}\n")
    stored = sdesk("new", "slow?", "--description", "a" * 10_000 + "b", "--json")
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["queue"] != "slow"


def test_user_patterns_are_compiled_with_re2():
    import re2

    compiled = patterns.compile("(a+)+$")
    assert isinstance(compiled._match.__self__, re2._re2.RE2)
    assert not compiled.fullmatch("a" * 100_000 + "b") and compiled.fullmatch("a" * 100_000)


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=x)y", "(?<!x)y", "a{1001}", "x" * 5000])
def test_a_pattern_re2_cannot_run_is_refused_naming_it(cli, pattern):
    result = cli("silence", "add", "--match", "alertname=A", "--match", f"instance=~{pattern}", "--for", "1h", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --match") and "bad regex" in line and repr(f"instance=~{pattern}")[:60] in line


def test_regex_matchers_are_fully_anchored_like_alertmanager():
    ticket = {"labels": {"instance": "db-1:9100"}}
    assert matches([parse_matcher("instance=~db-.*")], ticket)
    assert not matches([parse_matcher("instance=~db")], ticket)
    assert not matches([parse_matcher("instance=~.*9100|xyz")], {"labels": {"instance": "9100x"}})
    assert matches([parse_matcher("instance!~db")], ticket)


def test_a_stored_silence_re2_cannot_compile_silences_nothing():
    # Silences stored before RE2 may hold a lookahead: they match nothing rather than fail intake.
    assert not matches([Matcher("alertname", "=", "A"), Matcher("instance", "=~", "(?=d)db.*")],
                       {"labels": {"alertname": "A", "instance": "db-1"}})


_REGEX_TEXT = st.text(alphabet=st.sampled_from(list("ab.*+?|()[]{}^$\\-,0123456789dwsSPbB<>=!:&~é\x00")), max_size=24)


@settings(max_examples=examples(400), deadline=None)
@given(_REGEX_TEXT, st.text(max_size=40))
def test_any_pattern_the_desk_accepts_compiles_with_re2(pattern, value):
    """Whatever a silence, a triage rule or a runbook parameter accepts is an RE2 program, and
    matching it against any value answers (a lone surrogate included)."""
    import re2

    from sdesk.validated import load_triage as load
    from sdesk.validated import parse_runbook

    accepted = []
    try:
        parse_matcher(f"instance=~{pattern}")
        accepted.append("silence")
    except BadInput as e:
        assert "\n" not in str(e)
    rule = {"rules": [{"id": "r", "match": {"title": {"regex": pattern}}, "set": {"queue": "q"}}]}
    try:
        load(json.dumps(rule), "triage.yaml")
        accepted.append("rule")
    except BadInput as e:
        assert str(e).startswith("triage.yaml:") and "\n" not in str(e)
    book = {"name": "rb", "params": {"p": {"pattern": pattern}}, "steps": [{"id": "s", "run": ["echo", "{p}"]}]}
    try:
        parse_runbook(json.dumps(book), "rb.yaml", "rb")
        accepted.append("runbook")
    except BadInput as e:
        assert str(e).startswith("rb.yaml:") and "\n" not in str(e)
    if accepted:
        options = re2.Options()
        options.log_errors = False
        re2.compile(pattern, options)
        assert isinstance(patterns.compile(pattern).fullmatch(value + "\ud800"), bool)


# -- YAML: aliases, depth, size, duplicate keys --------------------------------------------------


def bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level a list of `width` aliases of the one below."""
    lines = [f"a0: &a0 [{','.join('x' * width)}]"]
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "cis:\n  - name: bomb\n    type: host\n    attributes:\n" + "".join(f"      {line}\n" for line in lines)


def test_an_alias_bomb_in_a_cmdb_import_is_refused_and_nothing_stored(cli, tmp_path):
    estate = tmp_path / "cmdb.yaml"
    estate.write_text(bomb(6))  # 400 bytes; stored as a 28 MB row before
    result = cli("cmdb", "import", str(estate), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {estate}:") and "aliases expand" in line
    assert cli.json("cmdb", "list") == []


def test_yaml_limits_in_one_line():
    from sdesk.domain.yamlfile import MAX_CHARS, MAX_DEPTH, parse

    cases = {
        "a: &a [1, *a]\n": "1: an alias refers to a collection it is inside",
        "x: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1): "1: nested more than 64 levels deep",
        "a: 1\nb: {c: 2, c: 3}\n": "2: duplicate key 'c' (first at line 2)",
        "a: 1\nb: 2\n\na: 3\n": "4: duplicate key 'a' (first at line 1)",
        "x: " + "y" * MAX_CHARS: "1: larger than 32 MiB",
        bomb(9): "1: aliases expand this document to",
    }
    for text, message in cases.items():
        with pytest.raises(BadInput) as e:
            parse(text, "f.yaml")
        assert str(e.value).startswith("f.yaml:" + message) and "\n" not in str(e.value)
    # What is ordinary stays allowed: anchors reused a few times, merge keys that override.
    data, _ = parse("base: &b {team: ops, tier: 2}\na: {<<: *b, tier: 1}\nb: *b\nc: [*b, *b]\n", "f.yaml")
    assert data["a"] == {"team": "ops", "tier": 1} and data["c"] == [data["base"]] * 2


def _values(data) -> int:
    if isinstance(data, dict):
        return 1 + sum(1 + _values(v) for v in data.values())
    if isinstance(data, list):
        return 1 + sum(_values(v) for v in data)
    return 1


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=12), min_size=1, max_size=10))
def test_any_aliased_yaml_is_read_bounded_or_refused(levels):
    """Random anchor graphs (each level aliases earlier ones): what parses holds at most twice
    what was written plus ALIASED_MIN values; the rest is one line naming the file."""
    from sdesk.domain.yamlfile import ALIASED_MIN, parse

    lines = ["a0: &a0 [x, y]"]
    for i, refs in enumerate(levels, start=1):
        lines.append(f"a{i}: &a{i} [" + ", ".join(f"*a{r % i}" for r in refs) + "]")
    text = "\n".join(lines) + "\n"
    try:
        data, _ = parse(text, "f.yaml")
    except BadInput as e:
        assert str(e).startswith("f.yaml:1: aliases expand") and "\n" not in str(e)
        return
    written = 3 + 2 * len(levels) + sum(len(refs) for refs in levels) + 1
    assert _values(data) <= 2 * written + ALIASED_MIN + 10


def _config_file(tmp_path, monkeypatch, name, text):
    config = tmp_path / "desk"
    path = config / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    return path


# Every YAML file the desk reads, and a command that reads it.
YAML_READERS = [
    ("triage.yaml", ["rules", "check"]),
    ("intake.yaml", ["new", "a ticket"]),
    ("oncall.yaml", ["oncall", "now"]),
    ("sla.yaml", ["sla"]),
    ("metrics.yaml", ["report", "executive"]),
    ("roles.yaml", ["list"]),
    ("runbooks/restart.yaml", ["runbook", "validate"]),
    ("estate.yaml", ["cmdb", "import", "{path}"]),
    ("article.md", ["kb", "add", "{path}"]),
]


@pytest.mark.parametrize("name, command", YAML_READERS)
@pytest.mark.parametrize("problem, text, message", [
    ("duplicate key", "rules: []\nrules: []\n", "{2}: duplicate key 'rules' (first at line {1})"),
    ("alias bomb", bomb(6), "{1}: aliases expand"),
])
def test_every_yaml_the_desk_reads_has_the_limits(cli, tmp_path, monkeypatch, name, command, problem, text, message):
    shift = 0
    if name.endswith(".md"):  # YAML front matter, from the second line of the file
        text, shift = f"---\n{text}---\n# Title\nbody\n", 1
    path = _config_file(tmp_path, monkeypatch, name, text)
    result = cli(*[part.format(path=path) for part in command], ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    line, what = message.format(*range(shift, shift + 3)).split(": ", 1)
    assert any(f"{path}:{line}: " in said and what in said for said in result.stderr.splitlines()), result.stderr


# -- files a user names: only regular files, within a size --------------------------------------


def _hostile_folder(tmp_path):
    """A KB folder with one good article and every way out of it or around a plain read."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.md").write_text("# Payroll\nzebracorn salaries\n")
    kb = tmp_path / "kb"
    (kb / "sub").mkdir(parents=True)
    (kb / "good.md").write_text("# Printer\nturn it off and on\n")
    (kb / "sub" / "also.md").write_text("# Also\nfine\n")
    (kb / "leak.md").symlink_to(outside / "secret.md")
    (kb / "linked").symlink_to(outside, target_is_directory=True)
    (kb / "zero.md").symlink_to("/dev/zero")
    os.mkfifo(kb / "fifo.md")
    (kb / "big.md").write_bytes(b"# Big\n" + b"x" * (4 << 20))
    return kb


def test_kb_import_reads_only_regular_files_inside_the_folder(tmp_path):
    """Run as a process: a FIFO used to hang it forever."""
    kb = _hostile_folder(tmp_path)
    result = sdesk("kb", "import", str(kb), "--json")
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    summary = json.loads(result.stdout)
    assert summary["created"] == ["good", "sub/also"]
    assert summary["skipped"] == ["big.md", "fifo.md", "leak.md", "zero.md"]
    said = result.stderr.strip().splitlines()
    assert len(said) == 4 and all(line.startswith("skipped: cannot ") for line in said)
    assert "Traceback" not in result.stderr
    assert json.loads(sdesk("kb", "search", "zebracorn", "--json").stdout) == []


def test_a_symlink_out_of_the_kb_folder_is_not_imported(cli, tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir(exist_ok=True)
    (tmp_path / "secret.md").write_text("# Payroll\nzebracorn salaries\n")
    (kb / "leak.md").symlink_to(tmp_path / "secret.md")
    (kb / "good.md").write_text("# Printer\nturn it off and on\n")
    result = cli("kb", "import", str(kb), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "leak.md: a symbolic link" in result.stderr
    assert cli.json("kb", "search", "zebracorn") == [] and len(cli.json("kb", "search", "printer")) == 1


# Every command that reads a file the user names, and whether a FIFO is a stream it may read
# (it then reads what a writer sends; with none, nothing) or a file it refuses.
FILE_READERS = [
    (["kb", "add", "{path}"], False),
    (["cmdb", "import", "{path}"], False),
    (["audit", "verify", "--anchors", "{path}"], False),
    (["triage", "train", "--from-csv", "{path}", "--text", "t", "--label", "l"], False),
    (["new", "--format", "alertmanager", "{path}"], True),
    (["new", "--jsonl", "{path}"], True),
    (["import", "{path}"], True),
]


@pytest.mark.parametrize("command, streams", FILE_READERS)
def test_a_fifo_or_a_device_never_hangs_a_command(tmp_path, command, streams):
    assert sdesk("init").returncode == 0
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        result = sdesk(*[part.format(path=path) for part in command])
        assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
        if path == fifo and streams:
            continue  # read as a stream: no writer, so it ended at once
        assert result.returncode == ExitCode.BAD_INPUT, result.stderr
        assert f"{path}: " in result.stderr and "not a regular file" in result.stderr


@pytest.mark.parametrize("name, command", [("triage.yaml", ["rules", "check"]), ("intake.yaml", ["new", "t"]),
                                           ("runbooks/x.yaml", ["runbook", "validate"])])
def test_a_fifo_in_the_config_folder_never_hangs(tmp_path, name, command):
    """A config file that is not a regular file counts as absent; a runbook file is refused."""
    config = tmp_path / "desk"
    (config / "runbooks").mkdir(parents=True)
    os.mkfifo(config / name)
    result = sdesk(*command, env={"SDESK_CONFIG": str(config)})
    assert "Traceback" not in result.stderr
    if name.startswith("runbooks/"):
        assert result.returncode == ExitCode.BAD_INPUT and "a FIFO, not a regular file" in result.stderr


def test_a_file_over_the_limit_is_refused_before_it_is_read(cli, tmp_path):
    from sdesk import files

    big = tmp_path / "estate.yaml"
    with open(big, "wb") as f:
        f.truncate(files.MAX_BYTES + 1)  # sparse: no disk used
    result = cli("cmdb", "import", str(big), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "larger than 32 MiB" in result.stderr
    result = cli("kb", "add", "-", input="# t\n" + "x" * (4 << 20), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "stdin: larger than 4 MiB" in result.stderr


def test_a_symlink_in_a_maildir_is_not_read(cli, tmp_path):
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (tmp_path / "private").write_text("From: a@b.example\r\nSubject: private key\r\n\r\nsecret\r\n")
    (maildir / "new" / "1.eml").symlink_to(tmp_path / "private")
    (maildir / "new" / "2.eml").write_text("From: c@d.example\r\nSubject: printer\r\nMessage-ID: <2@x>\r\n\r\nhelp\r\n")
    cli("new", "--format", "email", str(maildir))
    assert [t["title"] for t in cli.json("list")] == ["printer"]


# -- numbers beyond what SQLite holds --------------------------------------------------------------


ID_COMMANDS = [
    ["silence", "expire", "{n}"], ["show", "{n}"], ["comment", "{n}", "hi"], ["resolve", "{n}", "-r", "done"],
    ["runbook", "log", "{n}"], ["runbook", "approve", "{n}"], ["user", "revoke", "{n}"], ["kb", "show", "{n}"],
    ["change", "show", "{n}"], ["problem", "show", "{n}"], ["why", "{n}"], ["link", "{n}", "--parent", "{n}"],
    ["list", "--limit", "{n}"], ["runbook", "runs", "--limit", "{n}"], ["sla", "--limit", "{n}"],
    ["rules", "test", "--replay", "--limit", "{n}"], ["audit", "log", "--limit", "{n}"],
    ["tick", "--watch", "{n}"], ["new", "--reopen-within", "{n}", "--jsonl", "-"],
]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[__import__("hypothesis").HealthCheck.function_scoped_fixture, __import__("hypothesis").HealthCheck.too_slow])
@given(st.sampled_from(ID_COMMANDS),
       st.one_of(st.integers(2**63 - 2, 2**64 + 2), st.integers(2**64, 10**40), st.integers(-(10**30), 0)))
def test_a_number_beyond_sqlite_is_bad_input_or_not_found(cli, command, n):
    """`silence expire 99999999999999999999` was an OverflowError traceback; every id, limit and
    count from the command line is refused in one line or simply not found."""
    result = cli(*[part.format(n=n) for part in command], input="", ok=False)  # raises on a traceback
    assert result.exit_code in (0, ExitCode.BAD_INPUT, ExitCode.NOT_FOUND), (command, n, result.stderr)
    if n < 0 or n >= 2**63:
        assert result.exit_code != 0, (command, n)


# -- "-" is stdout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command, shows", [
    (["metrics", "--prom", "-"], "# TYPE sdesk_"),
    (["metrics", "-"], "# TYPE sdesk_"),
    (["postmortem", "SD-1", "-o", "-"], "SD-1"),
    (["export", "--out", "-"], '"ticket'),
    (["audit", "anchor", "--out", "-"], '"hash"'),
    (["new", "--jsonl", "--rejects", "-"], '{"title": ""}'),
])
def test_a_dash_for_a_file_written_means_stdout(cli, tmp_path, monkeypatch, command, shows):
    monkeypatch.chdir(tmp_path)
    cli.new("printer on fire")
    result = cli(*command, input='{"title": ""}\n', ok=False)  # the input: one record to reject
    assert result.exit_code in (0, ExitCode.BAD_INPUT) and shows in result.stdout
    assert not (tmp_path / "-").exists()


def test_backup_to_a_dash_writes_the_checked_copy_to_stdout(tmp_path):
    """`sdesk backup -` wrote a file named `-`; it is the backup's bytes on stdout, a desk that
    opens with its tickets, and no file is left behind."""
    env = {**os.environ, "SDESK_DB": str(tmp_path / "desk.db"), "SDESK_CONFIG": str(tmp_path / "config")}
    run = lambda *args, **kw: subprocess.run([sys.executable, "-m", "sdesk", *args], env=env, cwd=tmp_path,  # noqa: E731
                                             capture_output=True, **kw)
    assert run("new", "printer on fire").returncode == 0
    result = run("backup", "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"SQLite format 3\x00") and not (tmp_path / "-").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "config") == ["desk.db"]
    env["SDESK_DB"] = str(tmp_path / "copy.db")
    (tmp_path / "copy.db").write_bytes(result.stdout)
    listed = run("list", "--json")
    assert [t["title"] for t in json.loads(listed.stdout)] == ["printer on fire"]


# -- text that shows nothing is empty ---------------------------------------------------------------


# The fillers a hostile tester got through as a comment, resolution or title (Hangul fillers, the
# braille blank, the grapheme joiner, a lone accent), beside every control, format character,
# separator and combining mark.
FILLERS = "\u3164\u2800\u115f\u1160\uffa0\u034f\u0301\ufe0f\U000e0041"
INVISIBLE = st.text(alphabet=st.one_of(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"]),
                                       st.sampled_from(FILLERS)), min_size=1, max_size=6)

# Every "must not be empty" text: titles, comments, resolutions, fixes, names, label keys.
EMPTY_REFUSED = [
    ["comment", "1", "{t}"],
    ["new", "{t}"],
    ["new", "ok", "--service", "{t}"],
    ["new", "ok", "--label", "{t}=x"],
    ["resolve", "1", "-r", "{t}"],
    ["change", "new", "--title", "{t}"],
    ["kb", "add", "-", "--title", "{t}"],
    ["user", "add", "{t}", "--role", "admin"],
    ["assign", "1", "{t}"],
]


def test_a_comment_of_only_a_byte_order_mark_is_empty(cli):
    cli.new("printer")
    result = cli("comment", "1", "\ufeff", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "empty" in result.stderr
    assert [e["kind"] for e in cli.json("show", "1")["events"]].count("commented") == 0


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[__import__("hypothesis").HealthCheck.function_scoped_fixture, __import__("hypothesis").HealthCheck.too_slow])
@given(st.sampled_from(EMPTY_REFUSED), INVISIBLE)
def test_text_that_shows_nothing_is_refused_as_empty(cli, command, text):
    if cli("list", "--all", "--limit", "1", "--json", ok=False).stdout.strip() in ("", "[]"):
        cli.new("printer")
    result = cli(*[part.format(t=text) for part in command], input="body\n", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT, (command, text, result.stderr)


@pytest.mark.parametrize("filler", FILLERS)
@pytest.mark.parametrize("command", [["comment", "1", "{t}"], ["resolve", "1", "-r", "{t}"], ["new", "{t}"]])
def test_a_filler_that_draws_nothing_is_empty(cli, command, filler):
    cli.new("printer")
    result = cli(*[part.format(t=f" {filler}{filler} ") for part in command], ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and ("empty" in result.stderr or "must say" in result.stderr), result.stderr
    assert cli.json("show", "1")["status"] != "resolved" and len(cli.json("list", "--all")) == 1


@given(st.text(alphabet=st.one_of(st.characters(), st.sampled_from(FILLERS)), max_size=12))
def test_blank_is_empty_after_removing_white_space_and_invisible_characters(text):
    import unicodedata

    from sdesk.domain.lifecycle import blank

    ignorable = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810), 0x2800, 0x3164, *range(0xFE00, 0xFE10),
                 0xFFA0, *range(0xFFF0, 0xFFF9), *range(0x1BCA0, 0x1BCA4), *range(0x1D173, 0x1D17B), *range(0xE0000, 0xE1000)}
    shown = [c for c in text if not c.isspace() and ord(c) not in ignorable
             and unicodedata.category(c) not in ("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me")]
    assert blank(text) == (not shown)


# Lone surrogates aside: they are not text at all, and intake rejects them before either check.
@given(st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(FILLERS)),
               min_size=1, max_size=8))
def test_the_models_title_agrees_with_blank(text):
    """The JSON models and lifecycle.blank (what `new TITLE` uses) say the same text is empty."""
    from pydantic import TypeAdapter, ValidationError

    from sdesk.domain.lifecycle import WHITESPACE, blank
    from sdesk.domain.models import Title

    text = text.strip(WHITESPACE)
    try:
        TypeAdapter(Title).validate_python(text)
        shows = True
    except ValidationError:
        shows = False
    assert shows == (not blank(text)) or len(text) > 1000


# -- JSON from outside: depth and size -----------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["new", "--format", "alertmanager", "{path}"], ["new", "--format", "auto", "{path}"], ["new", "--jsonl", "{path}"],
    ["import", "{path}"], ["audit", "verify", "--anchors", "{path}"],
])
def test_deeply_nested_json_is_one_line_from_every_entry(cli, tmp_path, command):
    cli("init")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    result = cli(*[part.format(path=deep) for part in command], ok=False)  # raises on a traceback
    assert result.exit_code == ExitCode.BAD_INPUT


def test_a_whole_document_over_the_limit_is_refused(cli, tmp_path, monkeypatch):
    from sdesk import files

    monkeypatch.setattr(files, "MAX_DOCUMENT", 1000)  # the real 256 MiB, scaled down
    big = tmp_path / "alerts.json"
    big.write_text(alert(alertname="A", instance="x" * 2000))
    result = cli("new", "--format", "alertmanager", str(big), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "larger than 1,000 bytes" in result.stderr
    result = cli("new", "--format", "alertmanager", "-", input=alert(alertname="A", instance="x" * 2000), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "stdin: larger than" in result.stderr


def test_a_rejects_fifo_nothing_reads_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "rejects.fifo"
    os.mkfifo(fifo)
    result = sdesk("new", "--jsonl", "--rejects", str(fifo), input='{"title": "ok"}\n')
    assert result.returncode == ExitCode.BAD_INPUT and "a FIFO that nothing reads" in result.stderr


def test_a_runbook_secret_file_that_is_a_fifo_or_a_device_is_refused(tmp_path):
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    for ref in (str(fifo), "/dev/zero"):
        code = ("from sdesk.services.runner import load_secrets\n"
                f"load_secrets({{'secrets': {{'token': ('file', {ref!r})}}}})")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=NEVER)
        assert f"BadInput: secret token: cannot read {ref}: " in run.stderr and "not a regular file" in run.stderr


def test_kb_import_of_a_folder_named_through_a_link_reads_it(cli, tmp_path):
    (tmp_path / "real").mkdir(exist_ok=True)
    (tmp_path / "real" / "a.md").write_text("# Printer\nturn it off and on\n")
    (tmp_path / "docs").symlink_to(tmp_path / "real", target_is_directory=True)
    assert cli.json("kb", "import", str(tmp_path / "docs"))["created"] == ["a"]


_MAILS = itertools.count()


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[__import__("hypothesis").HealthCheck.function_scoped_fixture, __import__("hypothesis").HealthCheck.too_slow])
@given(st.one_of(st.integers(2**63 - 2, 2**64 + 2), st.integers(10**19, 10**60)))
def test_an_email_tagged_with_a_huge_ticket_number_is_a_new_ticket(cli, n):
    """Any sender can write `Re: [SD-99999999999999999999]`: it was an OverflowError that stopped intake."""
    # A Message-ID of its own each time: hypothesis may draw the same n twice on this one desk,
    # and a message seen before is (rightly) ignored as a duplicate.
    mail = f"From: a@b.example\r\nSubject: Re: [SD-{n}] hi\r\nMessage-ID: <{n}.{next(_MAILS)}@x>\r\n\r\nhelp\r\n"
    [result] = [json.loads(line) for line in cli("new", "--format", "email", "--json", input=mail).stdout.splitlines()]
    assert result["action"] in ("created", "deduplicated")


@pytest.mark.parametrize("name, text", [("triage.yaml", "timezone: {zone}\n"),
                                        ("oncall.yaml", "schedules:\n  - name: s\n    timezone: {zone}\n")])
def test_a_time_zone_name_too_long_for_a_file_name_is_one_line(name, text):
    from sdesk.validated import load_oncall, load_triage

    load = load_triage if name == "triage.yaml" else load_oncall
    with pytest.raises(BadInput) as e:
        load(text.format(zone="Europe/" + "x" * 300), name)
    assert "unknown time zone" in str(e.value) and "\n" not in str(e.value)


# -- a number Python cannot build, in any YAML the desk reads ---------------------------------------

LONG_NUMBER = "9" * 5000  # over Python's 4,300-digit limit on str -> int: a ValueError traceback before


@pytest.mark.parametrize("name, text, command", [
    ("triage.yaml", "rules: [{id: r, match: {urgency: {gt: N}}, set: {priority: P1}}]\n", ["new", "x"]),
    ("triage.yaml", "rules: [{id: r, match: {urgency: {gt: N}}, set: {priority: P1}}]\n", ["rules", "check"]),
    ("intake.yaml", "reopen_within_days: N\n", ["new", "x"]),
    ("metrics.yaml", "targets: {csat: N}\n", ["metrics"]),
    ("sla.yaml", "slos: [{ci: db, objective: N}]\n", ["sla"]),
    ("roles.yaml", "default_role: N\n", ["new", "x"]),
    ("roles.yaml", "default_role: N\n", ["report", "executive"]),
    ("runbooks/r.yaml", "name: r\ntimeout: N\nsteps: [{id: a, run: [true]}]\n", ["runbook", "validate"]),
    ("cmdb.yaml", "cis:\n  - {name: db, attributes: {size: N}}\n", ["cmdb", "import", "{config}/cmdb.yaml"]),
])
def test_a_number_too_long_in_any_yaml_is_one_line_naming_file_and_line(cli, tmp_path, monkeypatch, name, text, command):
    config = tmp_path / "config"
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    (config / name).parent.mkdir(parents=True, exist_ok=True)
    (config / name).write_text("# first line\n" + text.replace("N", LONG_NUMBER))
    result = cli(*[part.format(config=config) for part in command], ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert result.stderr.startswith(f"error: {config / name}:") and result.stderr.count("\n") == 1, result.stderr
    assert "4,300 digits" in result.stderr and "Traceback" not in result.stderr


def test_kb_import_skips_one_bad_file_with_its_line_and_imports_the_rest(cli, tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir(exist_ok=True)
    (folder / "bad.md").write_text(f"---\ntitle: Bad\nreview_days: {LONG_NUMBER}\n---\nbody\n")
    (folder / "empty.md").write_text("---\ntitle: Empty\n---\n")
    (folder / "good.md").write_text("# Printer queue\n\nRestart the spooler.\n")
    result = cli("kb", "import", str(folder), "--json", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"{folder / 'bad.md'}:3: front matter: a number longer than 4,300 digits" in result.stderr
    assert "empty.md" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout) == {"created": ["good"], "updated": [], "unchanged": [],
                                         "skipped": ["bad.md", "empty.md"]}
    assert [a["title"] for a in cli.json("kb", "list")] == ["Printer queue"]


# -- a pattern refused is bad input (exit 2), on every path that takes one -----------------------

REFUSED_PATTERNS = ["a" * 12_000, "(" + "|".join(f"host{i}.example.com" for i in range(600)) + ")", "(a",
                    r"a\1", "(?=a)", r"\pL{1000}" * 3, "\ud800"]


@pytest.mark.parametrize("pattern", REFUSED_PATTERNS, ids=["12KB", "12KB-hosts", "syntax", "backref", "lookahead",
                                                          "too-large", "surrogate"])
@pytest.mark.parametrize("where", ["silence", "triage", "runbook"])
def test_a_refused_pattern_is_one_bad_input_line(cli, tmp_path, monkeypatch, pattern, where):
    config = tmp_path / "config"
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    config.mkdir(exist_ok=True)
    quoted = json.dumps(pattern)
    if where == "silence":
        result = cli("silence", "add", "-m", "alertname=A", "-m", f"instance=~{pattern}", "--for", "1h", ok=False)
    elif where == "triage":
        (config / "triage.yaml").write_text(f"rules:\n  - id: r\n    match: {{title: {{regex: {quoted}}}}}\n"
                                            "    set: {priority: P1}\n")
        result = cli("rules", "check", ok=False)
    else:
        (config / "runbooks").mkdir(exist_ok=True)
        (config / "runbooks" / "r.yaml").write_text(
            f"name: r\nparams:\n  t: {{from: title, pattern: {quoted}}}\nsteps: [{{id: a, run: [echo, '{{t}}']}}]\n")
        result = cli("runbook", "validate", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT, (result.exit_code, result.stderr[:300])
    assert result.stderr.startswith("error: ") and len(result.stderr) < 600, result.stderr[:300]
    assert "Traceback" not in result.stderr


# -- email: one message too big is rejected alone --------------------------------------------------


def test_a_message_over_32_mib_in_an_mbox_is_rejected_alone_by_its_number(tmp_path):
    """A 60 MB message peaked at 681 MB of memory in the mail parser; one over MESSAGE_MAX is
    now refused by its number before it is parsed, and the messages around it are taken."""
    from email.message import EmailMessage

    from sdesk.intake.mail import MESSAGE_MAX

    def mail(subject, body, n):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "ann@example.com", "desk@x", subject, f"<big{n}@x>"
        msg.set_content(body)
        return b"From ann@example.com Thu Nov 26 10:00:00 2026\n" + bytes(msg) + b"\n"

    line = "A" * 75 + "\n"
    huge = line * (MESSAGE_MAX // len(line) + 1000)
    mbox = tmp_path / "inbox.mbox"
    mbox.write_bytes(mail("Printer", "jams", 1) + mail("Attachment", huge, 2) + mail("VPN", "drops", 3))
    env = {**os.environ, "SDESK_DB": str(tmp_path / "desk.db"), "SDESK_CONFIG": str(tmp_path / "config")}
    result = subprocess.run([sys.executable, "-m", "sdesk", "new", "--format", "email", str(mbox), "--json",
                             "--rejects", str(tmp_path / "rejects.jsonl")], env=env, capture_output=True, text=True)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "message 2" in result.stderr and "larger than 32 MiB" in result.stderr and "Traceback" not in result.stderr
    assert [json.loads(x).get("action") for x in result.stdout.splitlines()] == ["created", "rejected", "created"]
    rejects = (tmp_path / "rejects.jsonl").read_text()
    assert "Subject: Attachment" in rejects and len(rejects) < 100_000  # the headers kept, not 32 MiB


# -- triage --from-csv: a zip bomb is refused before it is unpacked ---------------------------------


def _zip_of(tmp_path, size, declared=None):
    """A .zip of one CSV of `size` bytes (highly compressible: a bomb), written in chunks; its
    central directory may declare another size."""
    import zipfile

    path = tmp_path / "bomb.zip"
    row = b"printer jams again and again,hardware\n" * 1000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("tickets.csv", "w", force_zip64=True) as out:
            out.write(b"Document,Topic_group\n")
            written = 21
            while written < size:
                chunk = row[: size - written]
                out.write(chunk)
                written += len(chunk)
    if declared is not None:  # rewrite the central directory's uncompressed size (a lying header)
        data = bytearray(path.read_bytes())
        central = data.rindex(b"PK\x01\x02")
        data[central + 24:central + 28] = declared.to_bytes(4, "little")
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", ["eval", "train"])
def test_a_zip_bomb_for_triage_is_refused_before_it_is_unpacked(cli, tmp_path, command):
    from sdesk.files import MAX_DOCUMENT

    bomb = _zip_of(tmp_path, MAX_DOCUMENT + (1 << 20))
    assert bomb.stat().st_size < MAX_DOCUMENT // 50
    result = cli("triage", command, "--from-csv", str(bomb), "--text", "Document", "--label", "Topic_group", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "unpacks to" in result.stderr and "larger than 256 MiB" in result.stderr


def test_a_zip_whose_header_lies_about_the_size_is_one_bad_input_line(cli, tmp_path):
    small = _zip_of(tmp_path, 200_000, declared=1000)  # says 1,000 bytes, holds 200,000
    result = cli("triage", "eval", "--from-csv", str(small), "--text", "Document", "--label", "Topic_group", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT, result.stderr
    assert "not a readable zip file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("char", ["\U0001611e", "\u0301", "\ufeff", "\u3164"])
def test_a_title_of_a_mark_newer_unicode_knows_is_judged_alike_both_ways(cli, char):
    """U+1611E is a combining mark of Unicode 16 (Gurung Khema) and unassigned in Python 3.11's
    Unicode 14: `new TITLE` and `new -` must still agree on whether it is a title."""
    flags = cli("new", char, ok=False).exit_code
    json_in = cli("new", "-", input=json.dumps({"title": char}), ok=False).exit_code
    assert flags == json_in
