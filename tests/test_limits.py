"""Denial of service by input: user patterns that run away, YAML and JSON that expand without
bound, files that never end, numbers beyond what SQLite holds, `-` for stdout and text that
is empty to the eye. Each limit gives one clear line, never a hang or a traceback."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdesk import patterns
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


@settings(max_examples=400, deadline=None)
@given(_REGEX_TEXT, st.text(max_size=40))
def test_any_pattern_the_desk_accepts_compiles_with_re2(pattern, value):
    """Whatever a silence, a triage rule or a runbook parameter accepts is an RE2 program, and
    matching it against any value answers (a lone surrogate included)."""
    import re2

    from sdesk.runbooks import parse as parse_runbook
    from sdesk.triage import load

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
