import csv
import io
import json

import pytest

from sdesk.errors import ExitCode


@pytest.fixture
def desk(cli, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:00:00Z")
    cli("new", "Checkout 5xx", "-p", "P1", "--service", "checkout", "-q", "sre", "-t", "customer")
    cli("new", "Replica lag", "-p", "P2", "--service", "billing", "-q", "dba", "-d", "lag on db-2")
    cli("new", "Reset MFA", "--kind", "request", "-p", "P3", "-q", "desk")
    cli("new", "New laptop", "--kind", "request", "-p", "P4", "-q", "desk", "-t", "hardware")
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T10:05:00Z")
    cli("new", "Second P1", "-p", "P1", "-q", "sre")
    cli("assign", "3", "bob")
    cli("resolve", "4", "-r", "shipped")
    return cli


def ids(tickets):
    return [t["id"] for t in tickets]


def test_default_is_the_open_queue_in_work_order(desk):
    assert ids(desk.json("list")) == [1, 5, 2, 3]


def test_all_is_newest_first(desk):
    assert ids(desk.json("list", "--all")) == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--priority", "P1"), [1, 5]),
        (("-p", "p1", "-p", "P2"), [1, 5, 2]),
        (("--queue", "desk"), [3]),
        (("--queue", "desk", "--all"), [4, 3]),
        (("--assignee", "bob"), [3]),
        (("--service", "billing"), [2]),
        (("--tag", "customer"), [1]),
        (("--kind", "request", "--all"), [4, 3]),
        (("--status", "resolved"), [4]),
        (("--status", "new", "--status", "assigned"), [1, 5, 2, 3]),
        (("lag",), [2]),
        (("CHECKOUT",), [1]),
        (("100%",), []),
        (("--sort", "-created,priority"), [5, 1, 2, 3]),
        (("--sort", "title"), [1, 2, 3, 5]),
        (("--limit", "2"), [1, 5]),
    ],
)
def test_filters(desk, args, expected):
    assert ids(desk.json("list", *args)) == expected


def test_jsonl_and_csv_carry_the_same_tickets(desk):
    as_json = desk.json("list", "--all")
    as_jsonl = [json.loads(line) for line in desk("list", "--all", "--jsonl").stdout.splitlines()]
    assert as_jsonl == as_json
    rows = list(csv.DictReader(io.StringIO(desk("list", "--all", "--csv").stdout)))
    assert [int(r["id"]) for r in rows] == ids(as_json)
    assert rows[-1]["tags"] == "customer" and rows[-1]["title"] == "Checkout 5xx"


def test_table_output(desk):
    out = desk("list").stdout
    assert "SD-1" in out and "Checkout 5xx" in out and "SD-4" not in out
    empty = desk("list", "nothing-matches")  # a message, not data: on stderr
    assert empty.stdout == "" and empty.stderr.strip() == "no tickets match"


def test_bad_sort_and_conflicting_formats(desk):
    r = desk("list", "--sort", "colour", ok=False)
    assert r.exit_code == ExitCode.BAD_INPUT and "unknown field 'colour'" in r.stderr
    assert desk("list", "--json", "--csv", ok=False).exit_code == ExitCode.BAD_INPUT


def test_show_json_includes_events_and_validates_against_the_model(desk):
    from sdesk.domain.models import Ticket, TicketShown

    t = desk.json("show", "SD-3")
    assert [e["kind"] for e in t["events"]] == ["created", "assigned"]
    TicketShown.model_validate(t)
    for listed in desk.json("list", "--all"):
        Ticket.model_validate(listed)


def test_the_schema_csv_and_json_name_the_same_fields_exactly(desk):
    """The output contract (issue 20): `schema ticket` lists every key `list --json` prints, all
    required, and no other (it lacked group_key, problem_id, runbook and suppressed); `--csv` has
    the same columns in the same order; `schema ticket-shown` is `show --json` exactly."""
    import csv
    import io

    schema = json.loads(desk("schema", "ticket").stdout)
    listed = desk.json("list", "--all")
    assert listed and all(list(t) == list(schema["properties"]) for t in listed)
    assert set(schema["required"]) == set(schema["properties"]) and schema["additionalProperties"] is False
    header = next(csv.reader(io.StringIO(desk("list", "--all", "--csv").stdout)))
    assert header == list(schema["properties"])
    shown_schema = json.loads(desk("schema", "ticket-shown").stdout)
    assert list(desk.json("show", "SD-3")) == list(shown_schema["properties"])
    assert shown_schema["additionalProperties"] is False


def test_show_renders_fields_and_timeline(desk):
    desk("comment", "1", "rolling back")
    out = desk("show", "1").stdout
    assert "Checkout 5xx" in out and "timeline" in out and "rolling back" in out and "tester" in out


def test_schema_command(cli):
    schema = json.loads(cli("schema", "ticket-create").stdout)
    assert "title" in schema["required"] and "priority" in schema["properties"]
    assert cli("schema", "nope", ok=False).exit_code == ExitCode.BAD_INPUT
