"""Talking back (issue 22) under hostile input: notify.yaml and the desk's templates are checked
like every desk file (one line naming file and line, never a traceback, and a broken one never
stops intake); a template reaches only its context (the sandbox) and its output and its cost are
bounded; the values put in a message (a title, a reply) are data, never a header, a link or
HTML; no secret leaves; the public (requester, watchers, subscribers) never hears internal notes
nor sees internal fields or other people's addresses.

Messages go to real servers on loopback: an SMTP server (aiosmtpd) and a `command` channel
whose program writes what it is given to a file."""

from __future__ import annotations

import copy
import email
import json
import os
import re
import resource
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from conftest import examples
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_talking_back import Mailbox

from sdesk.cli import app
from sdesk.domain.messages import MAX_OUTPUT, html, render

CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
BREAKS = "\r\n\x85\u2028\u2029"


# -- helpers ------------------------------------------------------------------------------------------


def run(cli, *args: str, input: str | None = None):
    """`sdesk ARGS` in-process, whatever its exit code."""
    return cli.runner.invoke(app, list(args), input=input)


def crash(result) -> str | None:
    """The traceback of an exception that escaped the CLI (a crash, not one line), or None."""
    e = result.exception
    if e is None or isinstance(e, SystemExit):
        return None
    return "".join(traceback.format_exception(e))[-4000:]


def one_line_error(stderr: str, where: str) -> bool:
    """stderr is one line `error: WHERE:LINE: message`."""
    return re.fullmatch(rf"error: {re.escape(where)}:\d+: \S[^\n]*\n", stderr) is not None


def sink_argv(path: Path) -> list[str]:
    """A `command` channel's program: appends the JSON it is given on stdin to `path`, one a line."""
    code = (f"import sys; open({str(path)!r}, 'a', encoding='utf-8')"
            ".write(sys.stdin.read().replace(chr(10), ' ') + chr(10))")
    return [sys.executable, "-c", code]


def base_notify(*, smtp_port: int = 9, sink: Path | None = None) -> dict:
    """A valid notify.yaml (as data): an SMTP channel (port 9 on loopback: nothing listens, so
    messages stay pending unless a test's server listens there) and a command channel."""
    return {
        "desk": {"name": "Test Desk", "url": "https://desk.example.com", "from": "Test Desk <desk@example.com>"},
        "channels": {
            "email": {"type": "smtp", "host": "127.0.0.1", "port": smtp_port, "security": "none", "timeout": 2},
            "hook": {"type": "command", "argv": sink_argv(sink) if sink else [sys.executable, "-c",
                                                                             "import sys; sys.stdin.read()"]},
        },
        "limits": {"coalesce": "60s", "per_hour": 100000, "attempts": 3, "retry": "30s"},
        "subscribers": {"services": {"checkout": ["cfo@example.com", "user:sam"]}},
        "rules": [
            {"name": "acknowledge", "on": "created", "when": {"source": ["cli", "email"]}, "to": ["requester"],
             "channel": "email"},
            {"name": "answers", "on": ["replied", "resolved", "reopened"], "to": ["requester", "watchers"],
             "channel": "email"},
            {"name": "stakeholders", "on": "incident_update", "to": ["subscribers"], "channel": "email"},
            {"name": "the assignee", "on": ["assigned", "commented"], "to": ["assignee"], "channel": "email",
             "template": "assigned.md"},
            {"name": "ops chat", "on": ["created", "commented"], "channel": "hook"},
        ],
    }


def dump(data) -> str:
    """notify.yaml's text as people write it: `on:` unquoted (PyYAML reads that key as true)."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return re.sub(r"(?m)^(\s*(?:- )?)'on':", r"\1on:", text)


def write_notify(config: Path, data_or_text) -> Path:
    path = config / "notify.yaml"
    if isinstance(data_or_text, bytes):
        path.write_bytes(data_or_text)
    else:
        path.write_text(data_or_text if isinstance(data_or_text, str) else dump(data_or_text), encoding="utf-8")
    return path


def queued(cli) -> list[dict]:
    return cli.json("outbox", "list", "--limit", "100000")


def drain(cli) -> None:
    """Drop what an earlier example left pending, so that each example is sent on its own."""
    waiting = [str(m["id"]) for m in queued(cli) if m["status"] == "pending"]
    if waiting:
        cli("outbox", "drop", *waiting)


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.close()


@pytest.fixture
def config(tmp_path) -> Path:
    return tmp_path / "config"


def html_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else ""


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def everything_of(message: email.message.EmailMessage) -> str:
    """A delivered mail as its reader may see it: every header, the text and the HTML."""
    return "\n".join([*(f"{k}: {v}" for k, v in message.items()), text_of(message), html_of(message)])


# -- 1. notify.yaml fuzzed ----------------------------------------------------------------------------

UNSET = "SDESK_NOTIFY_FUZZ_UNSET"
WORDS = ["created", "replied", "commented", "assigned", "resolved", "incident_update", "requester", "watchers",
         "subscribers", "assignee", "user:sam", "user:", "ops@example.com", "Desk <desk@example.com>", "not an address",
         f"${{{UNSET}}}", f"${{{UNSET}:-25}}", "${HOME}", "${", "smtp", "command", "webhook", "slack", "teams", "tls",
         "starttls", "none", "60s", "0", "-1", "1e309", "500ms", "10d", "../../etc/passwd", "assigned.md", "created.md",
         "nope.md", "on", "yes", "off", "~", "*", "&a", "<<", "a\x00b", "\t", "x\ny", "password", "{regex: '(a'}",
         "https://hooks.example.com/x", "email", "hook"]
KEYS = st.one_of(st.sampled_from(["desk", "channels", "limits", "subscribers", "rules", "name", "url", "from", "type",
                                  "host", "port", "security", "password", "password_env", "secret_env", "argv", "on",
                                  "when", "to", "channel", "template", "coalesce", "per_hour", "attempts", "retry",
                                  "services", "cis", "timeout", "source", "priority", "requester"]),
                 st.text(max_size=12), st.integers(-5, 10**6), st.booleans())
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(10**18, 10**40), st.floats(), st.text(max_size=30),
    st.sampled_from(WORDS), st.integers(1_000, 300_000).map(lambda n: "x" * n), st.dates())
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
                      max_leaves=8)


def _paths(node, prefix=(), seen=None):
    """Every place in a document (shared and recursive parts once)."""
    seen = set() if seen is None else seen
    yield prefix
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return
        seen.add(id(node))
        for key, kid in (node.items() if isinstance(node, dict) else enumerate(node)):
            yield from _paths(kid, (*prefix, key), seen)


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _laughs():
    """The billion laughs as data: dumped, each level is an alias of the one below, ten times."""
    lol = ["lol"] * 10
    for _ in range(8):
        lol = [lol] * 10
    return lol


def mutate(data, doc):
    """`doc` with one drawn change: a key or value dropped, replaced, renamed or added, a value
    put in a list or a mapping, made an alias of another part of the document, or the billion
    laughs."""
    paths = list(_paths(doc))
    path = data.draw(st.sampled_from(paths), label="at")
    op = data.draw(st.sampled_from(["drop", "replace", "replace", "wrap", "wrap", "rename", "add", "alias", "laughs"]),
                   label="op")
    if not path:
        return data.draw(VALUES, label="document") if op in ("replace", "drop") else doc
    parent, key = _get(doc, path[:-1]), path[-1]
    if op == "drop":
        del parent[key]
    elif op == "replace":
        parent[key] = data.draw(VALUES, label="value")
    elif op == "wrap":  # the same value, in a list or a mapping (`channel: [email]`)
        value = parent[key]
        parent[key] = data.draw(st.sampled_from([[value], [[value]], {"x": value}, {value: 1} if isinstance(
            value, (str, int, type(None))) else [value, value]]), label="wrapped")
    elif op == "laughs":
        parent[key] = _laughs()
    elif op == "alias":
        parent[key] = _get(doc, data.draw(st.sampled_from(paths), label="alias of"))
    elif op == "rename" and isinstance(parent, dict):
        new = data.draw(KEYS, label="key")
        parent[new] = parent.pop(key)
    elif op == "add":
        target = _get(doc, path)
        if isinstance(target, dict):
            target[data.draw(KEYS, label="key")] = data.draw(VALUES, label="value")
        elif isinstance(target, list):
            target.append(data.draw(VALUES, label="value"))
    return doc


def mangle(data, text: str, marker: Path) -> bytes:
    """The file's text with drawn edits no data can express: tabs, bytes that are not UTF-8, a
    line written twice (a duplicate key), `on` quoted or a bool, a Python tag, CRLF, a BOM, NUL."""
    lines = text.split("\n")
    for op in data.draw(st.lists(st.sampled_from(["tab", "bytes", "dupline", "quoted-on", "on-yes", "pytag", "crlf",
                                                  "bom", "nul"]), max_size=2), label="edits"):
        i = data.draw(st.integers(0, max(0, len(lines) - 1)), label="line")
        if op == "tab":
            lines[i] = "\t" + lines[i]
        elif op == "bytes":
            lines[i] = lines[i] + "\udcff\udcfe"  # surrogateescape: the bytes 0xff 0xfe
        elif op == "dupline":
            lines.insert(i, lines[i])
        elif op == "quoted-on":
            lines = [re.sub(r"^(\s*(?:- )?)on:", r'\1"on":', line) for line in lines]
        elif op == "on-yes":
            lines[i] = re.sub(r": \S.*$", ": yes", lines[i])
        elif op == "pytag":
            lines[i] = re.sub(r": \S.*$", f": !!python/object/apply:os.system [\"touch {marker}\"]", lines[i])
        elif op == "crlf" and not lines[0].endswith("\r"):
            lines = [line + "\r" for line in lines]
        elif op == "bom":
            lines[0] = "\ufeff" + lines[0]
        elif op == "nul":
            lines[i] = lines[i] + "\x00"
    return "\n".join(lines).encode("utf-8", "surrogateescape")


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_fuzzed_notify_yaml_is_fine_or_one_line_and_intake_goes_on(cli, config, tmp_path, data):
    doc = copy.deepcopy(base_notify())
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        doc = mutate(data, doc)
    marker = tmp_path / "pwned"
    raw = mangle(data, dump(doc), marker)
    (config / "notify.yaml").unlink(missing_ok=True)
    cli("init")  # the desk, made once (a broken notify.yaml must not be what stops this)
    path = write_notify(config, raw)
    before = len(queued(cli))

    checked = run(cli, "notify", "check")
    assert crash(checked) is None, crash(checked)
    assert checked.exit_code in (0, 2), (checked.exit_code, checked.stderr)
    if checked.exit_code == 2:
        if b"\xff" not in raw:
            assert one_line_error(checked.stderr, str(path)), checked.stderr
        else:  # bytes that are not UTF-8: still one line naming the file and the line they are on
            assert one_line_error(checked.stderr, str(path)), checked.stderr
        line = int(re.match(rf"error: {re.escape(str(path))}:(\d+):", checked.stderr).group(1))
        assert 1 <= line <= raw.count(b"\n") + 1, (line, checked.stderr)

    made = run(cli, "new", "x", "--requester", "a@example.com", "--json")
    assert crash(made) is None, crash(made)
    assert made.exit_code == 0, made.stderr  # a broken notify.yaml never stops intake
    if checked.exit_code == 2:
        assert "warning:" in made.stderr and "notify.yaml" in made.stderr, made.stderr
        assert len(queued(cli)) == before  # nothing is queued while the file is broken
    assert not marker.exists()  # a YAML tag never runs code


@pytest.mark.parametrize("edit", [
    pytest.param(lambda doc: doc["rules"][0].update(channel=["email"]), id="channel-a-list"),
    pytest.param(lambda doc: doc["rules"][0].update(channel={"email": 1}), id="channel-a-mapping"),
    pytest.param(lambda doc: doc["rules"][0].update(on=[["created"]]), id="on-a-nested-list"),
    pytest.param(lambda doc: doc["rules"][0].update(on={"created": 1}), id="on-a-mapping"),
    pytest.param(lambda doc: doc["rules"][0].update(to={"requester": 1}), id="to-a-mapping"),
    pytest.param(lambda doc: doc["rules"][0].update(template=["x.md"]), id="template-a-list"),
    pytest.param(lambda doc: doc["channels"]["email"].update(type=["smtp"]), id="type-a-list"),
    pytest.param(lambda doc: doc["channels"]["email"].update(security={"tls": 1}), id="security-a-mapping"),
    pytest.param(lambda doc: doc["channels"]["email"].update(password="hunter2"), id="smtp-password"),
    pytest.param(lambda doc: doc["channels"].update(hook={"type": "webhook", "url": "https://h.example.com"}),
                 id="webhook-without-secret"),
    pytest.param(lambda doc: doc["rules"].append({"on": "commented", "to": ["requester"], "channel": "email"}),
                 id="comments-to-the-requester"),
    pytest.param(lambda doc: doc["desk"].update(url=f"${{{UNSET}}}"), id="unset-variable"),
    pytest.param(lambda doc: doc["rules"][0].update(when={"priority": {"regex": "(a"}}), id="bad-regex"),
    pytest.param(lambda doc: doc["rules"][0].update(when=[1, 2]), id="when-a-list"),
    pytest.param(lambda doc: doc.update(rules={"a": 1}), id="rules-a-mapping"),
])
def test_each_kind_of_mistake_is_one_line_and_intake_goes_on(cli, config, edit):
    doc = base_notify()
    edit(doc)
    path = write_notify(config, doc)
    checked = run(cli, "notify", "check")
    assert crash(checked) is None, crash(checked)
    assert checked.exit_code == 2 and one_line_error(checked.stderr, str(path)), checked.stderr
    made = run(cli, "new", "x", "--requester", "a@example.com")
    assert crash(made) is None, crash(made)
    assert made.exit_code == 0 and "warning:" in made.stderr, made.stderr
    assert queued(cli) == []


def test_bytes_that_are_not_utf8_name_their_line(cli, config):
    text = dump(base_notify())
    lines = text.split("\n")
    lines[3] += "\udcff"  # the fourth line ends with the byte 0xff
    path = write_notify(config, "\n".join(lines).encode("utf-8", "surrogateescape"))
    checked = run(cli, "notify", "check")
    assert checked.exit_code == 2
    assert checked.stderr.startswith(f"error: {path}:4: "), checked.stderr
    made = run(cli, "new", "x", "--requester", "a@example.com")
    assert made.exit_code == 0 and "warning:" in made.stderr and queued(cli) == []


def test_the_billion_laughs_in_notify_yaml_is_refused_at_once(cli, config):
    doc = base_notify()
    doc["desk"]["name"] = _laughs()
    path = write_notify(config, doc)
    assert "&id" in path.read_text()  # written with anchors and aliases
    checked = run(cli, "notify", "check")
    assert checked.exit_code == 2 and one_line_error(checked.stderr, str(path)), checked.stderr
    assert "aliases" in checked.stderr


# -- 2. templates fuzzed ------------------------------------------------------------------------------

CANARY = "CANARY-7f3a-the-file-was-read"
# What only a working escape from the sandbox prints (none of it is in any template's text, which
# a raw block prints as it is): a class, a module, a function's globals, a file, a command's output.
ESCAPED = ("<class ", "<module ", "__builtins__", "mappingproxy", "<slot wrapper", "<method-wrapper",
           "<built-in function", "root:x:0:0", CANARY, "uid=")
FRAGMENTS = [
    "{{", "}}", "{%", "%}", "{#", "#}", "{{ ticket.title }}", "{{ ticket.ref }}", "{{ ticket.assignee }}",
    "{{ event.text }}", "{{ desk.name }}", "{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}", "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}", "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}", "{{ namespace.__init__.__globals__ }}", "{{ ticket.__class__ }}",
    "{{ ticket|attr('__class__') }}", "{{ ticket|attr('_' ~ '_class__') }}", "{{ (ticket|attr('items'))() }}",
    "{{ '{0.__class__}'.format(ticket) }}", "{{ '{0.__class__.__mro__}'.format_map({'0': ticket}) }}",
    "{% set f = '{0.__class__}'.format %}{{ f(ticket) }}", "{{ '%s'|format(ticket) }}",
    "{{ ticket|map(attribute='__class__')|list }}", "{{ [ticket]|map(attribute='__class__.__mro__')|list }}",
    "{{ ticket|selectattr('__class__')|list }}", "{{ ticket['__class__'] }}", "{{ range.__self__ }}",
    "{{ config }}", "{{ request }}", "{{ self }}", "{{ ticket.pop('title') }}", "{{ event.update({'x': 1}) }}",
    "{{ [].append(1) }}", "{{ ticket.title.__len__() }}", "{% include '/etc/passwd' %}", "{% include 'canary.txt' %}",
    "{% import 'canary.txt' as x %}", "{% extends 'canary.txt' %}", "{% from 'canary.txt' import x %}",
    "{% for i in range(10**9) %}", "{% for i in range(3) %}", "{% for k in ticket %}", "{% endfor %}",
    "{% if ticket.title %}", "{% if %}", "{% else %}", "{% endif %}", "{% set x = 'a' * 100000 %}{{ x }}",
    "{{ 'x' * 10**6 }}", "{{ range(100000)|list }}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{{ ticket.title|upper|no_such_filter }}", "{{ ticket|tojson }}", "{{ ticket|pprint }}", "{{ event|dictsort }}",
    "{{ ticket.title|replace('', 'b' * 1000) }}", "{% raw %}", "{% endraw %}", "\n", "Subject: ", "plain text ",
    "}}{{", "{{ 1/0 }}", "{{ lipsum(2) }}", "{{ cycler(1, 2).next() }}", "{{ dict(a=1).items() }}",
    "{% set ns = namespace(a=1) %}{% set ns.a = 2 %}{{ ns.a }}", "{{ ticket.title[10**6] }}", "{% filter upper %}",
    "{% endfilter %}", "{% with a = 1 %}", "{% endwith %}", "{{ ticket.ref * 100000 }}", "{{ '\\x00\\x1b[2J' }}",
    "{{ 10**100 }}", "{{ ticket.ref.title() }}",
]
TEMPLATES = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), min_size=1, max_size=10).map("".join)


def template_desk(cli, config, port: int = 9, chat: bool = True) -> Path:
    """A desk whose rules use its own template t.md, for the public and for the desk, and a
    ticket to preview; a canary file beside the template that no template may read."""
    doc = base_notify(smtp_port=port)
    doc["rules"] = [
        {"name": "to the requester", "on": ["created", "replied"], "to": ["requester"], "channel": "email",
         "template": "t.md"},
        {"name": "to ops", "on": ["created", "replied"], "to": ["ops@example.com"], "channel": "email",
         "template": "t.md"},
        {"name": "to chat", "on": "created", "channel": "hook", "template": "t.md"},
    ][:3 if chat else 2]
    (config / "templates").mkdir()
    (config / "templates" / "canary.txt").write_text(CANARY)
    (config / "canary.txt").write_text(CANARY)
    template = config / "templates" / "t.md"
    template.write_text("Subject: {{ ticket.title }}\n{{ ticket.ref }}\n")
    write_notify(config, doc)
    cli("assign", str(cli.new("printer on fire", "--requester", "a@example.com", "--ci", "db-7", "-l", "rack=r1")),
        "bob")
    return template


@pytest.fixture
def template(cli, config) -> Path:
    return template_desk(cli, config)


def check_template_outcome(cli, template: Path) -> None:
    """What `notify check` and `notify preview` say of the template: fine, or errors naming
    the template and a line; never a traceback, an escape from the sandbox, or unbounded output."""
    where = re.escape(str(template))
    checked = run(cli, "notify", "check")
    assert crash(checked) is None, crash(checked)
    assert checked.exit_code in (0, 2), (checked.exit_code, checked.stderr)
    if checked.exit_code == 2:
        assert one_line_error(checked.stderr, str(template)), checked.stderr

    shown = run(cli, "notify", "preview", "SD-1", "--event", "created")
    assert crash(shown) is None, crash(shown)
    assert shown.exit_code in (0, 2), (shown.exit_code, shown.stderr)
    errors = [line for line in shown.stdout.splitlines() if line.startswith("error: ")]
    assert (shown.exit_code == 2) == bool(errors), (shown.exit_code, shown.stdout[-2000:])
    for line in errors:
        if "renders more than" in line:
            assert re.match(rf"error: {where}:\d+: renders more than", line), line  # the cap names its line too
        else:
            assert re.match(rf"error: {where}:\d+: \S", line), line
    if checked.exit_code == 2:
        # check renders each audience's shape: what it refused fails at least one message (all
        # three when the template does not compile)
        assert errors and (len(errors) == 3 or "has no attribute" in checked.stderr), (errors, checked.stderr)

    data = run(cli, "notify", "preview", "SD-1", "--event", "created", "--json")
    assert crash(data) is None, crash(data)
    items = json.loads(data.stdout)
    assert len(items) == 3
    for item in items:
        if item.get("error") and "renders more than" in item["error"]:
            assert re.match(rf"{where}:\d+: renders more than", item["error"]), item["error"]
        elif item.get("error"):
            assert re.match(rf"{where}:\d+: \S", item["error"]), item["error"]
        else:
            assert len(item["text"]) <= MAX_OUTPUT and len(item.get("subject") or "") <= 300
    for out in (shown.stdout, data.stdout, checked.stderr):
        assert len(out) < 8 * MAX_OUTPUT, len(out)  # capped: three messages, each shown at most twice
        for mark in ESCAPED:
            assert mark not in out, (mark, out[:3000])


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=TEMPLATES)
def test_a_fuzzed_template_renders_or_names_its_line_and_never_escapes(cli, template, text):
    template.write_text(text, encoding="utf-8")
    check_template_outcome(cli, template)


@pytest.mark.parametrize("text", [
    "{{ ''.__class__ }}", "{{ cycler.__init__.__globals__ }}", "{{ ticket|attr('__class__') }}",
    "{{ '{0.__class__}'.format(ticket) }}", "{% include '/etc/passwd' %}", "{% include 'canary.txt' %}",
    "{% for i in range(10**9) %}x{% endfor %}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% if ticket.title %}", "line one\n{{ ticket.assignee }}", "{{ ticket.title[10**6] }}", "{{ 1/0 }}",
    "Subject: {{ ticket|tojson }}",  # a subject at its cap, then [SD-N] put in front (found by the fuzzer)
], ids=lambda t: t[:40])
def test_hostile_templates_fail_alone_with_their_file_and_line(cli, template, text):
    template.write_text(text)
    check_template_outcome(cli, template)


def test_a_template_too_big_to_read_is_one_line(cli, template):
    template.write_text("x" * (70 << 10))
    checked = run(cli, "notify", "check")
    assert crash(checked) is None and checked.exit_code == 2, (checked.exit_code, checked.stderr, crash(checked))
    assert checked.stderr.startswith("error: ") and str(template) in checked.stderr and checked.stderr.count("\n") == 1


@pytest.mark.parametrize("text, why", [
    ("{{ ticket.ref * 300000 }}", "a repetition this long"),
    ("{% for i in range(9999) %}{{ ticket.title * 30 }}{% endfor %}", "256 KiB"),
    ("{% for i in range(99999) %}{{ ticket.title }}{% endfor %}", "the number 99999 is more than"),
    ("{{ 'x' * 10**6 }}", "a repetition this long"),
    ("{{ lipsum(2) }}{{ range(100000)|list }}", "the number 100000 is more than")], ids=lambda t: t[:30])
def test_the_output_cap_names_the_line_that_ran_over(cli, template, text, why):
    """Output is capped (a loop stops at 256 KiB; a repetition or a range that would pass it is
    refused before it is made), and the error names the line, as every other does."""
    template.write_text("Subject: big\nfine\n" + text + "\n")
    shown = run(cli, "notify", "preview", "SD-1", "--event", "created")
    assert shown.exit_code == 2
    errors = [line for line in shown.stdout.splitlines() if line.startswith("error: ")]
    assert len(shown.stdout) < 8 * MAX_OUTPUT and len(errors) == 3 and all(why in line for line in errors), errors
    assert all(line.startswith(f"error: {template}:3: ") for line in errors), errors


def test_the_requester_template_reading_the_assignee_fails_and_is_not_sent(cli, config, mailbox):
    """A public recipient's context has no assignee: the template fails with its line, the
    message is dead, nothing reaches the requester; the desk's own recipient gets theirs."""
    template = template_desk(cli, config, mailbox.port, chat=False)
    template.write_text("Subject: {{ ticket.title }}\nHello,\n{{ ticket.assignee }} is on it.\n")
    cli.new("second", "--requester", "req@example.com")
    cli("assign", "2", "bob")
    preview = json.loads(run(cli, "notify", "preview", "SD-2", "--event", "created", "--json").stdout)
    by = {m["to"]: m for m in preview}
    assert by["req@example.com"]["error"].startswith(f"{template}:3: "), by["req@example.com"]
    assert "bob is on it" in by["ops@example.com"]["text"]
    sent = run(cli, "outbox", "send")
    assert crash(sent) is None, crash(sent)
    assert sent.exit_code == 1  # dead messages
    got = mailbox.take()
    assert all(rcpt == ["ops@example.com"] for rcpt, _ in got), [r for r, _ in got]
    assert not any("bob" in everything_of(m) for rcpt, m in got if rcpt != ["ops@example.com"])
    dead = [m for m in queued(cli) if m["status"] == "dead"]
    assert {m["recipient"] for m in dead} == {"a@example.com", "req@example.com"}
    assert all(f"{template}:3:" in m["error"] for m in dead), dead


# Templates whose cost is not their output: checking and previewing them must stop (a time and a
# memory budget) with an error naming the template, not hang the command, eat the machine's
# memory or end in a traceback. Jinja computes constant expressions when it compiles, so even
# `notify check` runs them. Each command runs as a process of its own, its address space capped at
# 2 GiB (more is taken as "unbounded") and killed after 60 s.
RUNAWAY = [
    pytest.param("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", id="loops-cpu"),
    # Ranges each within bounds, 10**12 turns together: the render's time budget stops it.
    pytest.param("{% for i in range(9999) %}{% for j in range(9999) %}{% for k in range(9999) %}{% endfor %}"
                 "{% endfor %}{% endfor %}", id="loops-cpu-small-ranges"),
    pytest.param("{{ 'x' * 10**12 }}", id="string-times-huge"),
    pytest.param("{{ 'a' * 10**9 }}", id="string-times-a-billion"),
    pytest.param("{{ [1] * 10**9 }}", id="list-times-huge"),
    pytest.param("{{ ticket.ref.zfill(10**9) }}", id="zfill-huge"),
    pytest.param("{{ 'a'|center(10**9) }}", id="center-huge"),
    pytest.param("{{ 10**100000 }}", id="bignum-to-text"),
    pytest.param("{{ (10**100000000) % 7 }}", id="bignum-power"),
]
BUDGET = 30  # seconds a command may take for one template, all its messages together


def sdesk_capped(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    import time

    def cap():
        limit = 2 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "sdesk", *args], capture_output=True, text=True, timeout=60,
                              preexec_fn=cap, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        pytest.fail(f"sdesk {' '.join(args)} still ran after 60 s: a template has no time budget")
    return done, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("text", RUNAWAY)
def test_a_runaway_template_stops_with_its_file(cli, template, text):
    template.write_text("Subject: x\n" + text + "\n")
    checked, took = sdesk_capped("notify", "check")
    assert "Traceback" not in checked.stderr, checked.stderr[-3000:]
    assert checked.returncode in (0, 2) and took < BUDGET, (checked.returncode, round(took), checked.stderr[-1000:])
    if checked.returncode == 2:
        assert checked.stderr.startswith(f"error: {template}:") and checked.stderr.count("\n") == 1, checked.stderr
    shown, took = sdesk_capped("notify", "preview", "SD-1", "--event", "created")
    assert "Traceback" not in shown.stderr, shown.stderr[-3000:]
    assert shown.returncode in (0, 2) and took < BUDGET, (shown.returncode, round(took), shown.stdout[-1000:],
                                                          shown.stderr[-1000:])
    errors = [line for line in shown.stdout.splitlines() if line.startswith("error: ")]
    assert (shown.returncode == 2) == bool(errors), shown.stdout[-1000:]
    assert all(line.startswith(f"error: {template}:") for line in errors), errors
    assert len(shown.stdout) < 8 * MAX_OUTPUT


# -- 3. hostile values are data -----------------------------------------------------------------------

HOSTILE = [
    "[click here](javascript:alert(1))", "[x](https://evil.example/phish)", "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>", "<img src=x onerror=alert(1)>",
    "<a href=\"https://evil.example\">x</a>",
    "javascript:alert(document.cookie)", "\r\nBcc: victim@example.com\r\n", "\nBcc: victim@example.com",
    "\r\n\r\n<html>", "\nSubject: pwned", "\x00", "\x1b[31m", "\x07", "\u2028", "\u2029", "\x85", "\t",
    "![pixel](https://evil.example/p.png)", "<https://evil.example>", "<victim@example.com>",
    "[ref]: https://evil.example", "[ref]", "**bold**", "# heading", "`code`", "```", "&lt;script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;", "\\<script>", "<!-- c -->", "<svg/onload=alert(1)>",
    "data:text/html;base64,PHNjcmlwdD4=", "%0d%0aBcc:%20x@example.com", "www.evil.example", "=?utf-8?q?Bcc=3A_x?=",
    "<iframe src=//evil.example>", "<style>*{display:none}</style>", "> quoted", "1. item", "- item", "| a | b |",
    "\n===", "\n---", "\n    indented", "\n\n    code_block", "\n\t", "  \n", "\\\n", "~~~", "***", "_x_",
]
HOSTILE_TEXT = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=8)), min_size=1, max_size=6).map("".join)
FROM_VALUES = re.compile(r"<(?:script|a\s|img|iframe|svg|style|object|embed|form|input|link|meta http)", re.I)


def email_desk(config, port: int = 9, sink: Path | None = None, extra_rules: list | None = None) -> None:
    doc = base_notify(smtp_port=port, sink=sink)
    doc["rules"] += extra_rules or []
    write_notify(config, doc)


def rendered_html(config, message_id: int, cli) -> tuple[str, str]:
    """(subject, HTML alternative) of a queued message, made as it is sent: messages.render with
    its queued context, then messages.html of the Markdown."""
    row = cli.json("outbox", "show", str(message_id))
    rendered = render(row["template"] or f"{row['event']}.md", str(config / "templates"), row["context"])
    return rendered.subject, html(rendered.markdown)


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(title=HOSTILE_TEXT, reply=HOSTILE_TEXT)
def test_hostile_titles_and_replies_never_become_headers_links_or_html(cli, config, title, reply):
    if not (config / "notify.yaml").exists():
        email_desk(config)
    made = run(cli, "new", f"T {title} end", "--requester", "a@example.com", "--json")
    assume(made.exit_code == 0)  # a title sdesk refuses (e.g. too long) is not this test's business
    ticket = json.loads(made.stdout)["id"]
    replied = run(cli, "reply", str(ticket), f"R {reply} end")
    assume(replied.exit_code == 0)
    for event in ("created", "replied"):
        for m in cli.json("notify", "preview", str(ticket), "--event", event):
            assert not m.get("error"), m
            assert not CONTROLS.search(m["text"]), m["text"]  # escape sequences and the like are left out
            if m["subject"] is not None:
                assert not any(c in m["subject"] for c in BREAKS), m["subject"]
                assert not CONTROLS.search(m["subject"]), m["subject"]
    rows = [m for m in cli.json("outbox", "list", "--ticket", str(ticket)) if m["channel"] == "email"]
    assert {m["event"] for m in rows} == {"created", "replied"}
    for m in rows:
        subject, page = rendered_html(config, m["id"], cli)
        assert not any(c in subject for c in BREAKS), subject
        found = FROM_VALUES.search(page)
        assert found is None, (found.group(0), page[-2000:])


def _tags(page: str) -> set[str]:
    return {t.lower() for t in re.findall(r"<([A-Za-z][A-Za-z0-9]*)", page)}


# The tags the HTML alternative of the desk's template below has, whatever the values: the page,
# paragraphs and line breaks.
PLAIN_TAGS = {"html", "head", "meta", "body", "p", "br"}


@settings(max_examples=examples(150), deadline=None)
@given(value=HOSTILE_TEXT)
def test_a_value_never_becomes_markup_in_the_html(tmp_path_factory, value):
    """Whatever a title or a reply holds, the HTML shows it as text: no heading, code block,
    list, quote, emphasis or link made of it (messages.py: `a title can never become a link, a
    heading or HTML`), and its visible characters are all there."""
    folder = tmp_path_factory.mktemp("templates")
    (folder / "v.md").write_text("Subject: {{ ticket.title }}\n{{ event.text }}\n")
    context = {"ticket": {"title": value, "ref": "SD-1"}, "event": {"text": value}}
    rendered = render("v.md", str(folder), context)
    assume("[REDACTED:" not in rendered.markdown)  # what looks like a secret is not shown, rightly
    page = html(rendered.markdown)
    assert _tags(page) <= PLAIN_TAGS, (sorted(_tags(page) - PLAIN_TAGS), rendered.markdown, page)
    import html as htmllib

    shown = re.sub(r"\s", "", htmllib.unescape(re.sub(r"<[^>]*>", "", page)))
    wanted = re.sub(r"\s", "", CONTROLS.sub("", value).replace("\u2028", "").replace("\u2029", ""))
    assert wanted in shown, (value, rendered.markdown, page)


@pytest.mark.parametrize("value", ["All good\n===", "see the log:\n\n    /var/log/app_x.log", "\tindented_value"])
def test_a_reply_made_of_plain_lines_shows_as_plain_text(value):
    """The cases of the property above, spelled out: a line of `=` under a reply's first line
    makes it a heading; an indented line becomes a code block, where the escapes show as
    backslashes (`app\\_x\\.log`)."""
    context = {"ticket": {"title": "t", "ref": "SD-1"}, "event": {"text": value}, "desk": {"name": "D"}}
    page = html(render("replied.md", None, {**context, "ticket": {**context["ticket"], "status": "open"}}).markdown)
    assert "<h1" not in page and "<h2" not in page and "<pre" not in page and "<code" not in page, page
    assert "\\" not in page, page


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(title=HOSTILE_TEXT, reply=HOSTILE_TEXT)
def test_hostile_values_in_delivered_mail_stay_in_the_body(cli, config, mailbox, title, reply):
    """What really arrives: the requester's mail (the acknowledgement and the reply coalesced into
    one) goes to them alone, with one Subject line and no header made of a value."""
    if not (config / "notify.yaml").exists():
        email_desk(config, mailbox.port)
    else:
        drain(cli)
        mailbox.take()
    made = run(cli, "new", f"T {title} end", "--requester", "a@example.com", "--json")
    assume(made.exit_code == 0)
    ticket = json.loads(made.stdout)["id"]
    assume(run(cli, "reply", str(ticket), f"R {reply} end").exit_code == 0)
    sent = run(cli, "outbox", "send")
    assert crash(sent) is None, crash(sent)
    assert sent.exit_code == 0, sent.stderr
    got = [(rcpt, m) for rcpt, m in mailbox.take() if m["X-Sdesk-Ticket"] == f"SD-{ticket}"]
    assert got and all(rcpt == ["a@example.com"] for rcpt, _ in got), [r for r, _ in got]
    for _, m in got:
        assert m["To"] == "a@example.com" and m["Bcc"] is None and m["Cc"] is None, dict(m.items())
        assert not any(c in str(m["Subject"]) for c in BREAKS), m["Subject"]
        found = FROM_VALUES.search(html_of(m))
        assert found is None, (found.group(0), html_of(m)[-2000:])


def test_a_title_with_a_line_break_is_delivered_as_one_subject(cli, config, mailbox):
    """The reproduction of the property above: two messages to the requester go as one digest,
    whose subject is made of the title as it is."""
    email_desk(config, mailbox.port)
    ticket = cli.new("printer\r\nBcc: victim@example.com", "--requester", "a@example.com")
    cli("reply", str(ticket), "We are on it.")
    sent = run(cli, "outbox", "send")
    assert crash(sent) is None, crash(sent)
    assert sent.exit_code == 0, sent.stderr
    got = mailbox.take()
    assert got and all(rcpt == ["a@example.com"] for rcpt, _ in got), [rcpt for rcpt, _ in got]
    for _, m in got:
        assert m["Bcc"] is None and m["To"] == "a@example.com", dict(m.items())
        assert not any(c in str(m["Subject"]) for c in BREAKS), m["Subject"]


# -- 4. no secret leaves ------------------------------------------------------------------------------

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SECRETS = st.one_of(
    st.text(alphabet=ALNUM, min_size=8, max_size=20).map(lambda s: ("password=hunter2" + s, "hunter2" + s)),
    st.text(alphabet=ALNUM[:26] + ALNUM[52:], min_size=16, max_size=16).map(lambda s: ("AKIA" + s, "AKIA" + s)),
    st.text(alphabet=ALNUM, min_size=36, max_size=36).map(lambda s: ("ghp_" + s, "ghp_" + s)),
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(secret=SECRETS, around=HOSTILE_TEXT, where=st.sampled_from(["title", "reply", "both"]))
def test_no_secret_leaves_in_a_preview_the_outbox_or_what_is_sent(cli, config, mailbox, tmp_path, secret, around,
                                                                  where):
    written, value = secret
    sink = tmp_path / "sent.jsonl"
    if not (config / "notify.yaml").exists():
        email_desk(config, mailbox.port, sink)
    else:
        drain(cli)
        mailbox.take()
        sink.unlink(missing_ok=True)
    hostile = f"{around} {written} {around}"
    # A title with a line break is the business of the tests of values above (it breaks sending).
    title = " ".join(f"T {hostile} end".split()) if where in ("title", "both") else "printer on fire"
    made = run(cli, "new", title, "--requester", "a@example.com", "--json")
    assume(made.exit_code == 0)
    ticket = json.loads(made.stdout)["id"]
    text = f"R {hostile} end" if where in ("reply", "both") else "We are on it."
    assume(run(cli, "reply", str(ticket), text).exit_code == 0)
    cli("resolve", str(ticket), "-r", f"fixed; {written}")

    seen = []
    for event in ("created", "replied", "resolved"):
        seen.append(run(cli, "notify", "preview", str(ticket), "--event", event, "--json").stdout)
        seen.append(run(cli, "notify", "preview", str(ticket), "--event", event).stdout)
    for m in cli.json("outbox", "list", "--ticket", str(ticket)):
        seen.append(run(cli, "outbox", "show", str(m["id"]), "--json").stdout)
        seen.append(run(cli, "outbox", "show", str(m["id"])).stdout)
    sent = run(cli, "outbox", "send")
    assert crash(sent) is None, crash(sent)
    seen += [everything_of(m) for _, m in mailbox.take()]
    seen.append(sink.read_text() if sink.exists() else "")
    for out in seen:
        assert value not in out, (written, out[:3000])


def test_the_named_secrets_never_leave(cli, config, mailbox, tmp_path):
    sink = tmp_path / "sent.jsonl"
    email_desk(config, mailbox.port, sink)
    secrets = ["password=hunter2xyz", "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"]
    ticket = cli.new(f"login fails, {secrets[0]}", "--requester", "a@example.com")
    cli("reply", str(ticket), "Try these: " + " and ".join(secrets))
    cli("comment", str(ticket), "internal: " + " ".join(secrets))
    seen = [run(cli, "notify", "preview", str(ticket), "--event", e, "--json").stdout
            for e in ("created", "replied", "commented")]
    seen += [run(cli, "outbox", "show", str(m["id"]), "--json").stdout for m in queued(cli)]
    cli("outbox", "send")
    got = mailbox.take()
    assert got and sink.exists()
    seen += [everything_of(m) for _, m in got] + [sink.read_text()]
    for out in seen:
        for leaked in ("hunter2xyz", "AKIAIOSFODNN7EXAMPLE", secrets[2]):
            assert leaked not in out, (leaked, out[:2000])


# -- 5. privacy ---------------------------------------------------------------------------------------

NOTE = "NOTE-only-for-the-desk"
INTERNAL_TO = [["assignee"], ["user:bob"], ["ops@example.com"], ["assignee", "ops@example.com"]]
ACTIONS = st.lists(st.sampled_from(["comment", "reply", "assign", "watch", "resolve", "reopen", "label", "status"]),
                   min_size=1, max_size=8)


def people(cli) -> None:
    cli("user", "add", "tester", "--role", "admin")
    cli("user", "add", "bob", "--role", "agent", "--email", "bob@example.com", "--chat", "U0BOB")
    cli("user", "add", "sam", "--role", "agent", "--email", "sam@example.com")


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(to=st.sampled_from(INTERNAL_TO), chat=st.booleans(), actions=ACTIONS)
def test_internal_comments_never_reach_the_public(cli, config, mailbox, tmp_path, to, chat, actions):
    sink = tmp_path / "sent.jsonl"
    if not (config / "notify.yaml").exists():
        people(cli)
    else:
        drain(cli)
        mailbox.take()
    doc = base_notify(smtp_port=mailbox.port, sink=sink)
    doc["rules"] = [r for r in doc["rules"] if r["channel"] == "email" and "commented" not in r.get("on", [])]
    doc["rules"] += [{"name": "notes", "on": ["commented", "assigned"], "to": to, "channel": "email"}]
    if chat:
        doc["rules"] += [{"name": "notes in chat", "on": "commented", "channel": "hook"}]
    write_notify(config, doc)
    ticket = cli.new("printer on fire", "--requester", "req@example.com", "--service", "checkout")
    steps = {"comment": lambda i: ("comment", str(ticket), f"{NOTE} {i}"),
             "reply": lambda i: ("reply", str(ticket), f"public answer {i}"),
             "assign": lambda i: ("assign", str(ticket), "bob"),
             "watch": lambda i: ("watch", str(ticket), "watcher@example.com"),
             "resolve": lambda i: ("resolve", str(ticket), "-r", f"fixed {i}"),
             "reopen": lambda i: ("reopen", str(ticket)),
             "label": lambda i: ("update", str(ticket), "-l", f"secret-label=v{i}"),
             "status": lambda i: ("status", str(ticket), "identified", f"stakeholder update {i}")}
    for i, action in enumerate(actions):
        done = run(cli, *steps[action](i))
        assert crash(done) is None, crash(done)
        assert done.exit_code in (0, 4), (action, done.stderr)  # 4: not from this status (assign a resolved one)
    public = {"req@example.com", "watcher@example.com", "cfo@example.com"}
    rows = cli.json("outbox", "list", "--ticket", str(ticket), "--limit", "1000")
    assert not [m for m in rows if m["recipient"] in public and m["event"] == "commented"], rows
    assert not [m for m in rows if m["audience"] == "public" and m["event"] == "commented"], rows
    for event in ("commented", "replied", "resolved", "assigned", "incident_update"):
        for m in cli.json("notify", "preview", str(ticket), "--event", event):
            if m["to"] in public or m.get("audience") == "public":
                assert event != "commented", m
                assert NOTE not in json.dumps(m), m
    run(cli, "outbox", "send")
    for rcpt, m in mailbox.take():
        if set(rcpt) & public:
            assert NOTE not in everything_of(m), everything_of(m)[:2000]


@pytest.mark.parametrize("to", ["requester", "watchers", "subscribers"])
def test_a_rule_sending_comments_to_the_public_is_refused_and_nothing_is_queued(cli, config, to):
    doc = base_notify()
    doc["rules"].append({"name": "leak", "on": ["replied", "commented"], "to": [to], "channel": "email"})
    path = write_notify(config, doc)
    checked = run(cli, "notify", "check")
    assert checked.exit_code == 2 and one_line_error(checked.stderr, str(path)), checked.stderr
    lines = dump(doc).split("\n")
    line = lines.index("  to:", lines.index("- name: leak")) + 1  # the rule's `to:`
    assert checked.stderr.startswith(f"error: {path}:{line}: rules.5.to: internal comments"), checked.stderr
    ticket = run(cli, "new", "x", "--requester", "a@example.com", "--json")
    assert ticket.exit_code == 0 and "warning:" in ticket.stderr
    assert run(cli, "comment", "1", NOTE).exit_code == 0
    assert queued(cli) == []


EVERYTHING = ("Subject: {{ ticket.title }}\n{{ ticket }}\n{{ event }}\n{{ desk }}\n"
              "{% for k, v in ticket.items() %}{{ k }}={{ v }};{% endfor %}\n")


def test_a_public_preview_never_shows_internal_fields_or_other_peoples_addresses(cli, config, tmp_path):
    """A template that prints all it is given: the public's context has no assignee, CI,
    labels, team, queue, requester or description, and no other person's address."""
    people(cli)
    doc = base_notify(sink=tmp_path / "sent.jsonl")
    (config / "templates").mkdir()
    (config / "templates" / "all.md").write_text(EVERYTHING)
    doc["rules"] = [{"name": "everyone", "on": ["created", "replied", "resolved", "assigned", "status_changed",
                                                 "incident_update", "reopened", "closed"],
                     "to": ["requester", "watchers", "subscribers"], "channel": "email", "template": "all.md"},
                    # A chat channel's own post is for the desk (its `to` names whom it mentions).
                    {"name": "chat", "on": ["replied", "resolved"], "to": ["assignee"], "channel": "hook",
                     "template": "all.md"}]
    write_notify(config, doc)
    cli.new("other ticket", "--requester", "alice@example.com")
    ticket = cli.new("printer on fire", "--requester", "carol@example.com", "--service", "checkout",
                     "--ci", "db-secret-ci", "--queue", "secret-queue", "-l", "rack=secret-rack",
                     "-d", "internal-description")
    cli("watch", str(ticket), "dave@example.com")
    cli("watch", str(ticket), "sam")
    cli("assign", str(ticket), "bob")
    cli("comment", str(ticket), NOTE)
    cli("reply", str(ticket), "public answer")
    internal = ("bob", "U0BOB", "db-secret-ci", "secret-queue", "secret-rack", "rack", "internal-description", NOTE,
                "tester")
    addresses = ("alice@example.com", "carol@example.com", "dave@example.com", "sam@example.com",
                 "cfo@example.com", "bob@example.com")
    for event in ("created", "replied", "resolved", "assigned", "status_changed", "incident_update", "closed"):
        shown = cli.json("notify", "preview", str(ticket), "--event", event)
        assert any(m["audience"] == "public" for m in shown), (event, shown)
        for m in shown:
            assert not m.get("error"), m
            if m["audience"] != "public":
                assert m["channel"] == "hook" and m["to"] == "hook", m
                continue
            said = json.dumps({k: v for k, v in m.items() if k not in ("to",)}) if m["payload"] is None else \
                json.dumps({"subject": m["subject"], "text": m["text"],
                            "payload": {k: v for k, v in m["payload"].items() if k != "recipient"}})
            for word in internal:
                assert re.search(rf"\b{re.escape(word)}\b", said) is None, (event, word, said[:2000])
            for address in addresses:
                assert address not in said, (event, m["to"], address, said[:2000])
    for m in queued(cli):
        if m["audience"] == "public":
            context = json.dumps(cli.json("outbox", "show", str(m["id"]))["context"])
            for word in ("bob", "db-secret-ci", "secret-queue", "secret-rack", "carol@example.com", NOTE):
                assert word not in context, (m, word, context)


def test_subscribers_and_watchers_never_see_each_other(cli, config, mailbox):
    people(cli)
    doc = base_notify(smtp_port=mailbox.port)
    write_notify(config, doc)
    ticket = cli.new("checkout down", "--requester", "carol@example.com", "--service", "checkout")
    cli("watch", str(ticket), "dave@example.com")
    cli("status", str(ticket), "identified", "We found it.")
    cli("reply", str(ticket), "Fixed soon.")
    cli("outbox", "send")
    got = mailbox.take()
    assert {r for rcpt, _ in got for r in rcpt} >= {"carol@example.com", "dave@example.com", "cfo@example.com"}
    for rcpt, m in got:
        assert len(rcpt) == 1 and m["To"] == rcpt[0] and m["Cc"] is None and m["Bcc"] is None
        body = everything_of(m)
        for other in {"carol@example.com", "dave@example.com", "cfo@example.com", "sam@example.com"} - set(rcpt):
            assert other not in body, (rcpt, other, body[:2000])
