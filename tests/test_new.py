import json

import pytest
import rawdb

from sdesk.errors import ExitCode


def test_new_prints_the_id_and_stores_every_field(cli):
    out = cli("new", "Disk full on db-3", "-d", "98% on /var", "--kind", "incident", "-p", "p2",
              "--service", "billing", "--ci", "db-3", "-q", "dba", "--requester", "ann",
              "-l", "host=db-3", "-l", "env=prod", "-t", "disk", "-t", "disk", "--fingerprint", "fp-1")
    assert out.stdout == "SD-1\n"
    t = cli.json("show", "SD-1")
    assert t["title"] == "Disk full on db-3"
    assert t["priority"] == "P2" and t["kind"] == "incident" and t["status"] == "new"
    assert (t["service"], t["ci"], t["queue"], t["requester"]) == ("billing", "db-3", "dba", "ann")
    assert t["labels"] == {"host": "db-3", "env": "prod"}
    assert t["tags"] == ["disk"]
    assert t["fingerprint"] == "fp-1" and t["occurrences"] == 1
    assert t["source"] == "cli"
    [created] = t["events"]
    assert created["kind"] == "created" and created["actor"] == "tester"
    assert created["data"]["title"] == "Disk full on db-3"


def test_defaults_and_actor_from_as(cli):
    t = cli.json("--as", "alice", "new", "Printer on 3rd floor jams")
    assert (t["kind"], t["priority"], t["status"]) == ("incident", "P3", "new")
    assert cli.json("show", str(t["id"]))["events"][0]["actor"] == "alice"


def test_same_fingerprint_bumps_the_open_ticket(cli):
    first = cli.json("new", "CPU high", "--fingerprint", "cpu/web-1")
    again = cli.json("new", "CPU high", "--fingerprint", "cpu/web-1")
    assert again["id"] == first["id"] and again["deduplicated"] is True
    assert again["occurrences"] == 2
    assert [e["kind"] for e in cli.json("show", str(first["id"]))["events"]] == ["created", "occurrence"]
    # Once resolved, the same fingerprint opens a new ticket.
    cli("resolve", str(first["id"]), "-r", "scaled out")
    third = cli.json("new", "CPU high", "--fingerprint", "cpu/web-1")
    assert third["id"] != first["id"] and third["deduplicated"] is False


def test_json_object_and_array_from_stdin(cli):
    out = cli("new", "-", input=json.dumps({"title": "From a script", "priority": "P1", "labels": {"n": 3}}))
    assert out.stdout == "SD-1\n"
    assert cli.json("show", "1")["labels"] == {"n": "3"}
    out = cli("new", "-", input=json.dumps([{"title": "a"}, {"title": "b", "kind": "request"}]))
    assert out.stdout == "SD-2\nSD-3\n"
    assert cli.json("show", "3")["kind"] == "request"


def test_jsonl_stores_good_lines_and_reports_bad_ones(cli, tmp_path):
    lines = [
        json.dumps({"title": "ok 1", "fingerprint": "x"}),
        "{not json",
        json.dumps({"title": "ok 2", "fingerprint": "x"}),  # duplicate of line 1
        "",
        json.dumps({"title": "bad priority", "priority": "P9"}),
        json.dumps({"title": "typo", "priorty": "P1"}),
        json.dumps({"title": "ok 3"}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    result = cli("new", "--jsonl", str(src), "--rejects", str(rejects), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stdout.split() == ["SD-1", "SD-1", "SD-2"]
    assert "line 2: input: Invalid JSON" in result.stderr
    assert "line 5: priority:" in result.stderr
    assert "line 6: priorty: unknown field" in result.stderr
    assert "(json): 2 created, 1 deduplicated, 3 rejected" in result.stderr
    assert rejects.read_text().splitlines() == [lines[1], lines[4], lines[5]]
    assert [t["title"] for t in cli.json("list", "--all", "--sort", "id")] == ["ok 1", "ok 3"]


def test_jsonl_from_stdin_reports_each_record_as_json_lines(cli):
    data = "".join(json.dumps({"title": f"t{i}", "fingerprint": f"f{i % 3}"}) + "\n" for i in range(10))
    result = cli("new", "--jsonl", "--json", input=data + '{"title": 5}', ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[:4] == [{"where": "line 1", "format": "json", "ticket": 1, "action": "created"},
                        {"where": "line 2", "format": "json", "ticket": 2, "action": "created"},
                        {"where": "line 3", "format": "json", "ticket": 3, "action": "created"},
                        {"where": "line 4", "format": "json", "ticket": 1, "action": "deduplicated"}]
    assert rows[-1] == {"where": "line 11", "format": "json", "ticket": None, "action": "rejected",
                        "error": "title: Input should be a valid string"}
    assert "stdin (json): 3 created, 7 deduplicated, 1 rejected" in result.stderr
    assert sorted(t["occurrences"] for t in cli.json("list")) == [3, 3, 4]


def test_a_slow_producer_gets_each_ticket_stored_as_it_arrives(db_path):
    """`tail -f alerts | sdesk new --jsonl`: a line is stored (and its id printed) without
    waiting for a batch to fill or the stream to end."""
    import os
    import subprocess
    import sys

    # Buffered stdout, as in a user's shell: sdesk must flush each batch itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"SDESK_DB": str(db_path)}
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "new", "--jsonl"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        for i in range(1, 4):
            proc.stdin.write(json.dumps({"title": f"alert {i}"}).encode() + b"\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == f"SD-{i}\n".encode()
            assert rawdb.connect(db_path).execute("SELECT count(*) FROM tickets").fetchone()[0] == i
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("new", "   "), "title: must not be empty"),
        (("new", "x", "--label", "novalue"), "--label 'novalue': expected KEY=VALUE"),
        (("new", "x", "--service", " "), "service: must not be empty"),
        (("new", "x" * 1001), "title: must be at most 1000 characters"),
        (("new",), "cannot tell the format of this input; give --format"),  # piped stdin: auto
        (("new", "-", "--priority", "P1"), "--priority cannot be combined with JSON input"),
    ],
)
def test_bad_flags_get_one_line_and_exit_2(cli, db_path, args, message):
    result = cli(*args, ok=False, input="{}")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.strip() == f"error: {message}" or message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_bad_json_document_stores_nothing(cli, db_path):
    cli("init")
    result = cli("new", "-", input='{"title": "a",}', ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith("error: invalid JSON at line 1")
    assert rawdb.connect(db_path).execute("SELECT count(*) FROM tickets").fetchone()[0] == 0


def test_unknown_priority_choice_is_a_usage_error(cli):
    result = cli("new", "x", "--priority", "P7", ok=False)
    assert result.exit_code == 2
    assert "P7" in result.stderr


def test_missing_jsonl_file(cli, tmp_path):
    result = cli("new", "--jsonl", str(tmp_path / "nope.jsonl"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr.startswith("error: cannot open") and "No such file" in result.stderr
