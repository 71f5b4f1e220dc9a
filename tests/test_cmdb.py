"""The CMDB: importing an estate (idempotent, one transaction, line-numbered errors), relations,
impact analysis in both directions with cycles, pictures, and change and problem records."""

from pathlib import Path

import pytest
import rawdb
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from sdesk.domain.cmdb import Reached, match_keys, walk
from sdesk.errors import ExitCode

ESTATE = Path(__file__).resolve().parents[1] / "examples" / "desk" / "cmdb.yaml"


@pytest.fixture
def estate(cli):
    cli("cmdb", "import", str(ESTATE))
    return cli


def test_import_is_idempotent_and_summarised(cli):
    first = cli.json("cmdb", "import", str(ESTATE))
    assert len(first["created"]) >= 30 and not first["updated"]
    again = cli.json("cmdb", "import", str(ESTATE))
    assert again["created"] == [] and again["updated"] == [] and len(again["unchanged"]) == len(first["created"])


def test_export_reads_back_unchanged(estate, tmp_path):
    exported = estate("cmdb", "export").stdout
    (tmp_path / "export.yaml").write_text(exported)
    summary = estate.json("cmdb", "import", str(tmp_path / "export.yaml"))
    assert summary["created"] == summary["updated"] == []


def test_an_update_and_a_prune(estate, tmp_path):
    (tmp_path / "small.yaml").write_text(
        "cis:\n  - name: billing-db\n    type: database\n    tier: 1\n    team: data\n  - name: brand-new\n    type: host\n")
    summary = estate.json("cmdb", "import", str(tmp_path / "small.yaml"), "--prune")
    assert summary["updated"] == ["billing-db"] and summary["created"] == ["brand-new"]
    assert "checkout-api" in summary["removed"]
    assert [c["name"] for c in estate.json("cmdb", "list")] == ["billing-db", "brand-new"]
    assert estate.json("cmdb", "show", "billing-db")["tier"] == 1


def test_csv_import_with_attributes(cli, tmp_path):
    (tmp_path / "hosts.csv").write_text("name,type,tier,team,aliases,runs_on,rack\n"
                                        "k8s-a,cluster,1,platform,,,\n"
                                        "web-1,host,2,platform,web-1.example.com;w1,k8s-a,r12\n")
    assert cli.json("cmdb", "import", str(tmp_path / "hosts.csv"))["created"] == ["k8s-a", "web-1"]
    web = cli.json("cmdb", "show", "W1")  # an alias, in any case
    assert web["name"] == "web-1" and web["attributes"] == {"rack": "r12"} and web["relations"] == {"runs_on": ["k8s-a"]}
    assert cli.json("cmdb", "show", "k8s-a")["needed_by"] == {"runs_on": ["web-1"]}


@pytest.mark.parametrize("text, message", [
    ("cis:\n  - name: a\n    type: service\n  - name: b\n    type: spaceship\n", ":4: b: type must be one of"),
    ("cis:\n  - name: a\n    type: service\n  - name: a\n    type: host\n", ":4: a: duplicate name (first at line 2)"),
    ("cis:\n  - name: a\n    type: service\n    depends_on: [ghost]\n", "a: depends_on ghost: no such CI"),
    ("cis:\n  - name: a\n    type: service\n    tier: 9\n", ":2: a: tier must be 1, 2, 3 or 4"),
    ("cis:\n  - name: a\n    type: service\n    colour: red\n", ":2: colour: unknown field"),
    ("cis: [\n", ":2:"),
    ("\x00binary", ":1: unacceptable character"),
    ("- just\n- a list\n", ":1: a CI must be a mapping"),
])
def test_bad_estates_are_refused_whole_with_the_line(cli, db_path, tmp_path, text, message):
    cli("cmdb", "import", str(ESTATE))
    before = rawdb.connect(db_path).execute("SELECT count(*), max(updated_at) FROM cis").fetchone()
    (tmp_path / "bad.yaml").write_text(text)
    result = cli("cmdb", "import", str(tmp_path / "bad.yaml"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert rawdb.connect(db_path).execute("SELECT count(*), max(updated_at) FROM cis").fetchone() == before


def test_a_bad_csv_line_is_named(cli, tmp_path):
    (tmp_path / "bad.csv").write_text("name,type\nok-1,host\nbad one,host\n")
    result = cli("cmdb", "import", str(tmp_path / "bad.csv"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "bad.csv:3:" in result.stderr


def test_add_link_unlink_and_their_errors(cli):
    cli("cmdb", "add", "api", "--type", "service", "--tier", "2", "--team", "web", "--alias", "api-prod")
    cli("cmdb", "add", "db", "--type", "database")
    assert cli("cmdb", "add", "API-PROD", "--type", "host", ok=False).exit_code == ExitCode.CONFLICT
    assert cli("cmdb", "add", "api", "--type", "host", ok=False).exit_code == ExitCode.CONFLICT
    cli("cmdb", "link", "api-prod", "depends_on", "db")
    assert cli.json("cmdb", "show", "api")["relations"] == {"depends_on": ["db"]}
    assert cli("cmdb", "link", "api", "depends_on", "nowhere", ok=False).exit_code == ExitCode.NOT_FOUND
    assert "choose from" in cli("cmdb", "link", "api", "likes", "db", ok=False).stderr
    cli("cmdb", "unlink", "api", "depends_on", "db")
    assert cli.json("cmdb", "show", "api")["relations"] == {}
    assert cli("cmdb", "show", "nope", ok=False).exit_code == ExitCode.NOT_FOUND


def test_impact_follows_what_needs_a_ci_with_paths_and_tiers(estate):
    impact = estate.json("cmdb", "impact", "db-billing-2")
    by_name = {r["name"]: r for r in impact["reached"]}
    assert by_name["billing-db"]["path"] == ["db-billing-2", "billing-db"] and by_name["billing-db"]["via"] == "runs_on"
    assert by_name["billing"]["path"] == ["db-billing-2", "billing-db", "billing"]
    assert impact["highest_tier"] == min(r["tier"] for r in impact["reached"] if r["tier"])
    # part_of counts the other way: a business service is affected when one of its parts fails.
    assert "shop-checkout" in {r["name"] for r in estate.json("cmdb", "impact", "checkout-api")["reached"]}
    upstream = {r["name"] for r in estate.json("cmdb", "impact", "checkout-api", "--upstream")["reached"]}
    assert "payments-db" in upstream and "shop-checkout" not in upstream
    shallow = estate.json("cmdb", "impact", "checkout-api", "--upstream", "--depth", "1")
    assert {r["depth"] for r in shallow["reached"]} == {1}


def test_impact_pictures(estate):
    dot = estate("cmdb", "impact", "billing-db", "--format", "dot").stdout
    assert dot.startswith("digraph") and '"billing" -> "billing-db"' in dot
    mermaid = estate("cmdb", "impact", "billing-db", "--format", "mermaid").stdout
    assert mermaid.startswith("graph LR") and "|depends_on|" in mermaid
    assert "billing" in estate("cmdb", "impact", "billing-db").stdout


def test_cycles_terminate(cli):
    for name in ("a", "b", "c"):
        cli("cmdb", "add", name, "--type", "service")
    cli("cmdb", "link", "a", "depends_on", "b")
    cli("cmdb", "link", "b", "depends_on", "c")
    cli("cmdb", "link", "c", "depends_on", "a")
    assert sorted(r["name"] for r in cli.json("cmdb", "impact", "a")["reached"]) == ["b", "c"]


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=30))
def test_walk_reaches_exactly_what_is_reachable_at_shortest_depth(edges):
    graph: dict[str, list[tuple[str, str]]] = {}
    for a, b in edges:
        graph.setdefault(f"n{a}", []).append(("depends_on", f"n{b}"))
    reached = walk("n0", lambda names: {n: graph.get(n, []) for n in names})
    # Breadth-first reference distances.
    dist, frontier = {"n0": 0}, ["n0"]
    while frontier:
        nxt = []
        for n in frontier:
            for _, m in graph.get(n, []):
                if m not in dist:
                    dist[m] = dist[n] + 1
                    nxt.append(m)
        frontier = nxt
    assert {r.name: r.depth for r in reached} == {k: v for k, v in dist.items() if k != "n0"}
    for r in reached:
        assert isinstance(r, Reached) and r.path[0] == "n0" and r.path[-1] == r.name and len(r.path) == r.depth + 1


def test_match_keys_try_names_monitoring_uses():
    keys = match_keys({"service": None, "labels": {"instance": "db-billing-2.prod:9100", "job": "Node"}})
    assert keys.index("node") < keys.index("db-billing-2.prod:9100")
    assert "db-billing-2.prod" in keys and "db-billing-2" in keys


CHANGE_STATUSES = ("planned", "in_progress", "completed", "failed", "rolled_back", "cancelled")
# The moves a change record may make; every other pair is refused.
CHANGE_MOVES = {("planned", "in_progress"), ("planned", "cancelled"), ("in_progress", "completed"),
                ("in_progress", "failed"), ("in_progress", "rolled_back"), ("completed", "rolled_back"),
                ("failed", "rolled_back")}


def test_every_change_status_move_is_allowed_or_refused_with_the_ways_out(cli, db_path):
    """Every pair of statuses (a sweep): an allowed move is made; any other (rolled_back back to
    in_progress, say) is refused with exit 4, names what the change may become instead, and
    leaves the change and its history as they were."""
    pairs = [(a, b) for a in CHANGE_STATUSES for b in CHANGE_STATUSES]
    for n, (before, after) in enumerate(pairs, start=1):
        assert cli("change", "new", "--title", f"change {n}", "--status", before).stdout.strip() == f"CH-{n}"
    for n, (before, after) in enumerate(pairs, start=1):
        result = cli("change", "status", f"CH-{n}", after, ok=False)
        ways_out = sorted(b for a, b in CHANGE_MOVES if a == before)
        if (before, after) in CHANGE_MOVES:
            assert result.exit_code == 0 and f"CH-{n} is {after}" in result.stderr, (before, after)
            assert cli.json("change", "show", str(n))["status"] == after
        else:
            assert result.exit_code == ExitCode.CONFLICT, (before, after, result.stderr)
            [line] = result.stderr.splitlines()
            assert line.startswith(f"error: cannot move CH-{n} to {after}: it is") and before in line
            assert all(w in line for w in ways_out) and (ways_out or "final" in line), line
            assert cli.json("change", "show", str(n))["status"] == before
    moved = rawdb.connect(db_path).execute("SELECT count(*) FROM events WHERE kind = 'change_status'").fetchone()[0]
    assert moved == len(CHANGE_MOVES)


def test_changes_and_problems(cli):
    cli("cmdb", "add", "api", "--type", "service")
    ch = cli("change", "new", "--ci", "api", "--title", "Deploy v2", "--risk", "high").stdout.strip()
    assert ch == "CH-1"
    cli("change", "status", "CH-1", "rolled_back")
    assert cli.json("change", "show", "1")["status"] == "rolled_back"
    assert [c["summary"] for c in cli.json("change", "list", "--ci", "api")] == ["Deploy v2"]
    assert cli("change", "new", "--ci", "ghost", "--title", "x", ok=False).exit_code == ExitCode.NOT_FOUND
    assert cli("change", "new", "--title", "x", "--start", "yesterday", ok=False).exit_code == ExitCode.BAD_INPUT

    incidents = [cli.new(f"Replica lag {i}", "-p", p) for i, p in enumerate(["P3", "P2", "P3"])]
    problem = cli("problem", "new", "--from", ",".join(map(str, incidents)), "--title", "Replica falls behind").stdout.strip()
    p = cli.json("problem", "show", problem)
    assert p["kind"] == "problem" and p["priority"] == "P2" and len(p["incidents"]) == 3
    cli("problem", "update", problem, "--root-cause", "batch IO", "--known-error")
    assert cli.json("problem", "show", problem)["known_error"] is True
    assert cli("problem", "new", "--from", str(incidents[0]), ok=False).exit_code == ExitCode.CONFLICT
    cli("problem", "resolve", problem, "--fix", "moved the batch")
    kinds = [e["kind"] for e in cli.json("show", str(incidents[0]))["events"]]
    assert kinds[-2:] == ["problem_linked", "problem_fixed"]
    assert cli.json("show", problem)["status"] == "resolved"
    assert cli("problem", "show", str(incidents[0]), ok=False).exit_code == ExitCode.NOT_FOUND


# -- hostile and awkward input (found in review) ------------------------------------------------------


def test_prune_refuses_an_empty_estate_and_needs_relations_inside_the_file(estate, tmp_path):
    result = estate("cmdb", "import", "-", "--prune", input="", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "empty estate" in result.stderr
    (tmp_path / "one.yaml").write_text("cis:\n  - name: checkout-api\n    type: service\n    depends_on: [payments-db]\n")
    result = estate("cmdb", "import", str(tmp_path / "one.yaml"), "--prune", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "payments-db: no such CI in the file" in result.stderr
    assert len(estate.json("cmdb", "list")) > 30


def test_csv_on_stdin_and_with_a_bom(cli):
    summary = cli.json("cmdb", "import", "-", "--format", "csv", input="\ufeffname,type\nweb-1,host\n")
    assert summary["created"] == ["web-1"]


def test_aliases_in_any_case_are_idempotent_and_can_move(cli, tmp_path):
    (tmp_path / "a.yaml").write_text("cis:\n  - name: a\n    type: host\n    aliases: [Old-Name]\n  - name: b\n    type: host\n")
    cli("cmdb", "import", str(tmp_path / "a.yaml"))
    assert cli.json("cmdb", "import", str(tmp_path / "a.yaml"))["unchanged"] == ["a", "b"]
    (tmp_path / "a.yaml").write_text("cis:\n  - name: a\n    type: host\n  - name: b\n    type: host\n    aliases: [old-name]\n")
    assert cli.json("cmdb", "import", str(tmp_path / "a.yaml"))["updated"] == ["a", "b"]
    assert cli.json("cmdb", "show", "OLD-NAME")["name"] == "b"


def test_a_ci_cannot_need_itself(cli, tmp_path):
    (tmp_path / "self.yaml").write_text("cis:\n  - name: a\n    type: host\n    depends_on: [a]\n")
    result = cli("cmdb", "import", str(tmp_path / "self.yaml"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "cannot depends_on itself" in result.stderr


def test_deep_yaml_and_huge_ids_are_one_line_errors(cli, tmp_path):
    (tmp_path / "deep.yaml").write_text("cis: " + "[" * 50_000 + "]" * 50_000)
    result = cli("cmdb", "import", str(tmp_path / "deep.yaml"), ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and len(result.stderr.strip().splitlines()) == 1
    for args in (["kb", "show", "99999999999999999999"], ["kb", "show", "²"], ["change", "show", "CH-0"],
                 ["show", "9" * 5000], ["change", "list", "--since", "99999999999d"], ["change", "list", "--since", "²h"]):
        result = cli(*args, ok=False)
        assert result.exit_code == ExitCode.BAD_INPUT, (args, result.stderr)


def test_markup_in_cmdb_text_is_shown_as_text(cli):
    cli("cmdb", "add", "web1", "--type", "host", "--team", "[/oops]", "--attr", "[/x]=1")
    assert "[/oops]" in cli("cmdb", "show", "web1").stdout
    ticket = cli.new("down", "--ci", "web1")
    assert "[/oops]" in cli("show", str(ticket)).stdout


def test_a_ticket_naming_an_alias_gets_the_ci_name(estate):
    t = estate.json("new", "Checkout errors spiking", "--ci", "checkout-api-prod")
    assert t["ci"] == "checkout-api"
    again = estate.json("new", "Checkout errors spiking again", "--ci", "checkout-api-prod")
    assert [s["id"] for s in estate.json("show", str(again["id"]))["context"]["similar"]] == [t["id"]]


def test_pictures_draw_part_of_from_part_to_whole(estate):
    mermaid = estate("cmdb", "impact", "checkout-api", "--format", "mermaid").stdout
    dot = estate("cmdb", "impact", "checkout-api", "--format", "dot").stdout
    assert '"checkout-api" -> "shop-checkout" [label="part_of"]' in dot
    assert '"web-frontend" -> "checkout-api" [label="depends_on"]' in dot
    assert "|part_of|" in mermaid


# -- second review --------------------------------------------------------------------------------


def test_change_events_from_sources_are_normalised_and_matched_to_their_ci(estate, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-01-10T12:00:00Z")
    bad = '{"event_action":"change","payload":{"summary":"d","source":"payments-db","timestamp":"2026-01-10T11:00:00 oops"}}'
    result = estate("new", "--format", "pagerduty", input=bad, ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "payload.timestamp" in result.stderr
    good = ('{"event_action":"change","payload":{"summary":"Deploy checkout","source":"Checkout-API-Prod",'
            '"timestamp":"2026-01-10T12:30:00+02:00"}}')
    estate("new", "--format", "pagerduty", input=good)
    [change] = estate.json("change", "list")
    assert change["ci"] == "checkout-api" and change["happened_at"] == "2026-01-10T10:30:00Z"
    ctx = estate.json("new", "checkout down", "--ci", "checkout-api")
    assert [c["summary"] for c in estate.json("show", str(ctx["id"]))["context"]["changes"]] == ["Deploy checkout"]


def test_a_busy_change_window_does_not_hide_a_cis_change(estate, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-01-10T12:00:00Z")
    estate("change", "new", "--ci", "checkout-api", "--title", "Deploy checkout", "--start", "2026-01-10T10:00:00Z")
    lines = "\n".join('{"event_action":"change","payload":{"summary":"batch %d","source":"batch-jobs",'
                      '"timestamp":"2026-01-10T11:%02d:00Z"}}' % (i, i % 60) for i in range(1200))
    estate("new", "--jsonl", "--format", "pagerduty", input=lines)
    t = estate.json("new", "checkout down", "--ci", "checkout-api")
    assert [c["summary"] for c in estate.json("show", str(t["id"]))["context"]["changes"]] == ["Deploy checkout"]


def test_global_options_without_a_value_do_not_eat_the_command(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("cmdb", "list", "--db", ok=False)
    assert result.exit_code == 2 and not (tmp_path / "cmdb").exists()


def test_more_one_line_errors(cli):
    assert cli("kb", "add", "-", input="---\n1: x\nfoo: y\n---\nb\n", ok=False).exit_code == ExitCode.BAD_INPUT
    result = cli("cmdb", "import", "-", input=b"cis:\n - name: a\xff\n", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "UTF-8" in result.stderr
    assert cli("kb", "search", "disk", "-n", "99999999999999999999", ok=False).exit_code == 2
    assert cli("list", "--limit", "99999999999999999999", ok=False).exit_code == 2
    big = '{"event_action":"change","payload":{"summary":"d","source":"x","custom_details":{"a":NaN,"b":123456789012345678901234}}}'
    cli("new", "--format", "pagerduty", input=big)
    assert cli.json("change", "list")[0]["data"]["custom_details"] == {"a": "NaN", "b": "123456789012345678901234"}


def test_an_alias_equal_to_the_name_is_not_a_change(cli, tmp_path):
    (tmp_path / "w.yaml").write_text("cis: [{name: Web, type: service, aliases: [web, www]}]\n")
    cli("cmdb", "import", str(tmp_path / "w.yaml"))
    assert cli.json("cmdb", "import", str(tmp_path / "w.yaml"))["unchanged"] == ["Web"]


def test_kb_ci_filter_and_suggestions_follow_aliases(estate):
    estate("kb", "add", "-", input="---\ntitle: Checkout runbook\ncis: [checkout-api-prod]\n---\nRestart the pods.\n")
    assert estate.json("kb", "show", "1")["cis"] == ["checkout-api"]
    assert [a["id"] for a in estate.json("kb", "search", "runbook", "--ci", "checkout")] == [1]
