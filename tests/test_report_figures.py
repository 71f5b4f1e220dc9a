"""Report figures that must not mislead (issue 19, item 18): pager load from a short window is a
count, not a week extrapolated; `report service` finds a service's tickets by its CI's names and
aliases, and an unknown name is an error; export and import count the same rows."""

import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from sdesk.domain.metrics import Targets, pager_kpis
from sdesk.errors import ExitCode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"


@pytest.fixture
def paged(cli, tmp_path, monkeypatch):
    """The example on-call config with a notifier that takes every page, and one P1 paged once
    on 2026-11-10 (a Tuesday: dave is on call)."""
    config = tmp_path / "config"
    text = (EXAMPLES / "oncall.yaml").read_text()
    text = text.replace("# notifier:\n#   command:", f"notifier:\n  command: [{json.dumps(sys.executable)}, -c, "
                        "'import sys; sys.stdin.read()']\n#   command:", 1)
    (config / "oncall.yaml").write_text(text)
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    monkeypatch.setenv("SDESK_NOW", "2026-11-10T12:00:00Z")
    cli.new("checkout down", "-p", "P1")
    cli("tick", ok=None)  # whatever tick says of delivery, the page is on record
    assert [p["user"] for p in cli.json("pages")] == ["dave"]
    monkeypatch.setenv("SDESK_NOW", "2026-11-11T00:00:00Z")
    return cli


def pager(report):
    return {k["user"]: k for k in report["pager"] if k["kpi"] == "pages_per_week"}


def test_one_page_in_a_day_is_one_page_not_seven_a_week(paged):
    day = ["--since", "2026-11-10T00:00:00Z", "--until", "2026-11-11T00:00:00Z"]
    dave = pager(paged.json("report", *day))["dave"]
    assert dave["value"] == 1 and dave["window_days"] == 1
    assert dave["ok"] is None  # 1 page so far this week: under the target of 5, but the week is not over
    shown = paged("report", *day).stdout
    assert "(1 day window" in shown and "7.00" not in shown and "7.0" not in shown
    # A fortnight: a rate per week, as before, and no window_days.
    fortnight = pager(paged.json("report", "--since", "2026-10-28T00:00:00Z", "--until", "2026-11-11T00:00:00Z"))
    assert fortnight["dave"]["value"] == 0.5 and "window_days" not in fortnight["dave"]


@pytest.mark.parametrize("hours", [1, 12, 24, 72, 24 * 7 - 1, 24 * 7, 24 * 14, 24 * 90])
@pytest.mark.parametrize("count", [0, 1, 6, 40])
def test_the_pager_rate_is_never_more_than_the_pages_counted(hours, count):
    [row] = [k for k in pager_kpis({"ann": (count, 0)}, timedelta(hours=hours), Targets()) if k["kpi"] == "pages_per_week"]
    assert row["value"] <= count
    if hours < 24 * 7:
        assert row["value"] == count and row["ok"] is (False if count > 5 else None)
    else:
        assert row["value"] == pytest.approx(count / (hours / (24 * 7))) and "window_days" not in row


@pytest.fixture
def estate(cli, tmp_path):
    """checkout-api in the CMDB (alias checkout); tickets on it by CI, by service, and one on
    another CI."""
    cli("cmdb", "import", str(EXAMPLES / "cmdb.yaml"))
    ids = {"by_ci": cli.new("5xx on checkout", "--ci", "checkout-api"),
           "by_alias": cli.new("checkout slow", "--ci", "checkout-api-prod"),
           "by_service": cli.new("payments page blank", "--service", "checkout"),
           "other": cli.new("search down", "--ci", "search-api")}
    cli.ids = ids
    return cli


def created(report):
    return next(k["value"] for k in report["tickets"]["all"] if k["kpi"] == "tickets_created")


@pytest.mark.parametrize("name", ["checkout", "checkout-api", "CHECKOUT-API", "checkout-api-prod"])
def test_report_service_matches_the_ci_by_name_or_alias_and_the_tickets_service(estate, name):
    report = estate.json("report", "service", name)
    assert report["service"] == "checkout-api" and created(report) == 3
    assert {"checkout", "checkout-api", "checkout-api-prod"} <= set(report["matched"])


def test_report_service_of_a_name_nothing_has_is_an_error_naming_close_ones(estate):
    result = estate("report", "service", "chekout-api", ok=False)
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no service or CI named 'chekout-api'" in result.stderr and "checkout-api" in result.stderr
    assert result.stdout == ""
    far = estate("report", "service", "zzzz", ok=False)
    assert far.exit_code == ExitCode.NOT_FOUND and far.stderr.count("\n") == 1
    assert estate("report", "service", "x" * 5000, ok=False).exit_code == ExitCode.BAD_INPUT
    # A service only tickets name (no CI) is known: its report, not an error.
    estate.new("printer jammed", "--service", "office-print")
    assert created(estate.json("report", "service", "office-print")) == 1


def test_export_and_import_count_the_same_rows(cli, tmp_path, monkeypatch):
    for i in range(3):
        cli.new(f"ticket {i}", "-p", "P3")
    cli("comment", "SD-1", "looked at it")
    dump = tmp_path / "desk.jsonl"
    exported = cli("export", "--out", str(dump)).stderr
    monkeypatch.setenv("SDESK_DB", str(tmp_path / "copy.db"))
    cli("init", ok=None)
    result = cli("import", str(dump), "--json")
    imported, counts = result.stderr, json.loads(result.stdout)  # --json: rows per table
    numbers = [int(re.search(r"(?:ex|im)ported ([\d,]+) ", text).group(1).replace(",", ""))
               for text in (exported, imported)]
    assert numbers[0] == numbers[1] == sum(counts.values())
    assert "table rows" in exported and "table rows" in imported
    rows = sum(1 for line in dump.read_bytes().splitlines() if "row" in json.loads(line))
    assert rows == numbers[0]


# -- every count agrees with its noun (hostile finding 14) ----------------------------------------

# "1 tickets", "1 pages": a count of one before a plural noun, anywhere in human output.
ONE_PLURAL = re.compile(r"(?<![\d.,])1 (tickets|pages|runs|hours|days|events|articles|alerts|edits|rows|minutes|"
                        r"checks|warnings|failures|users|admins|tokens|rules|steps|attempts|ratings|breaches|"
                        r"changes|replies|people|responders|services|runbooks|matches|records)\b")


def test_counts_of_one_take_the_singular_in_every_report_and_command(cli, tmp_path, monkeypatch):
    """One ticket, one page, one hour worked, a throttle of one run: report, report service,
    report executive, rules test, runbook show, worklog, tick and purge say "1 ticket", never
    "1 tickets"."""
    import shutil

    config = tmp_path / "config"
    shutil.rmtree(config)
    shutil.copytree(EXAMPLES, config)
    with (config / "oncall.yaml").open("a") as f:
        f.write("\nnotifier:\n  command: [/bin/true]\n")
    runbook = config / "runbooks" / "clean-tmp.yaml"
    runbook.write_text(runbook.read_text().replace("throttle: {runs: 3,", "throttle: {runs: 1,"))
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    monkeypatch.setenv("SDESK_NOW", "2026-11-10T12:00:00Z")
    cli.new("checkout down", "-p", "P1", "--service", "checkout")
    said = [cli("tick", ok=False), cli("worklog", "SD-1", "1h"), cli("resolve", "SD-1", "-r", "fixed"),
            cli("close", "SD-1")]
    monkeypatch.setenv("SDESK_NOW", "2026-11-11T00:00:00Z")
    window = ["--since", "2026-11-10T00:00:00Z"]
    report = cli("report", *window)
    said += [report, cli("report", "service", "checkout", *window), cli("report", "executive", *window),
             cli("rules", "test", "--replay", "--since", "30d"), cli("runbook", "show", "clean-tmp")]
    monkeypatch.setenv("SDESK_NOW", "2026-12-30T00:00:00Z")
    said.append(cli("purge", "--dry-run", "--older-than", "1d"))
    text = "\n".join(r.stdout + r.stderr for r in said)
    assert "1 hour worked, 1 page)" in report.stdout and "1 ticket" in text  # the counts are there...
    assert not ONE_PLURAL.findall(text), ONE_PLURAL.findall(text)  # ...and agree with their nouns
