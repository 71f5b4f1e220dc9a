"""On call: rotations that hand off at the same wall-clock time across DST changes, layers and
restrictions, overrides, and line-numbered errors in oncall.yaml."""

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdesk.domain.routing import Override, on_call, shifts
from sdesk.errors import BadInput, ExitCode
from sdesk.validated import load_oncall as load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "desk"
UTC = timezone.utc

TEAMS = "teams:\n  - name: ops\n    members: [ann, ben, cat]\n    schedule: s\n"


def config(layers: str, zone: str = "Europe/London"):
    return load(TEAMS + f"schedules:\n  - name: s\n    timezone: {zone}\n    layers:\n{layers}", "oncall.yaml")


WEEKLY = "      - start: 2026-03-16T09:00\n        length: 1w\n        users: [ann, ben, cat]\n"


def who(cfg, at: str, overrides=()):
    return on_call(cfg.schedules["s"], list(overrides), datetime.fromisoformat(at))[0]


def test_weekly_handoff_stays_at_nine_local_across_the_spring_change():
    cfg = config(WEEKLY)
    # London: 23 March 09:00 is 09:00Z (GMT); 30 March 09:00 is 08:00Z (BST, since the 29th).
    assert who(cfg, "2026-03-23T08:59:00+00:00") == "ann" and who(cfg, "2026-03-23T09:00:00+00:00") == "ben"
    assert who(cfg, "2026-03-30T07:59:00+00:00") == "ben" and who(cfg, "2026-03-30T08:00:00+00:00") == "cat"
    week = shifts(cfg.schedules["s"], [], datetime(2026, 3, 23, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))
    assert [(s.start.isoformat(), s.user) for s in week] == [
        ("2026-03-23T00:00:00+00:00", "ann"), ("2026-03-23T09:00:00+00:00", "ben"),
        ("2026-03-30T08:00:00+00:00", "cat")]


def test_twelve_hour_shifts_keep_their_local_times_across_the_autumn_change():
    cfg = config("      - start: 2026-10-01T07:00\n        length: 12h\n        users: [ann, ben]\n", "America/New_York")
    found = shifts(cfg.schedules["s"], [], datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC))
    ny = [s.start.astimezone(cfg.schedules["s"].zone) for s in found[1:]]
    assert [t.strftime("%H:%M") for t in ny] == ["19:00", "07:00", "19:00"]
    # The night of the change (1 November, 02:00 back to 01:00) lasts 13 hours.
    assert [round((s.end - s.start).total_seconds() / 3600) for s in found[1:]] == [13, 12, 12]


def test_layers_restrictions_and_overrides():
    cfg = config(WEEKLY + "      - name: day\n        start: 2026-03-16T09:00\n        length: 1w\n        users: [cat]\n"
                 "        restrictions:\n          - {days: [mon, tue, wed, thu, fri], from: '09:00', to: '17:00'}\n")
    assert who(cfg, "2026-11-26T12:00:00+00:00") == "cat"  # a Thursday, in business hours: the top layer
    assert who(cfg, "2026-11-26T18:00:00+00:00") == "ann"  # evening: the rotation below
    assert who(cfg, "2026-11-28T12:00:00+00:00") == "ann"  # Saturday
    cover = Override("s", "ben", datetime(2026, 11, 26, 11, tzinfo=UTC), datetime(2026, 11, 26, 13, tzinfo=UTC))
    assert who(cfg, "2026-11-26T12:00:00+00:00", [cover]) == "ben"
    day = shifts(cfg.schedules["s"], [cover], datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    assert [(s.start.hour, s.user, s.source) for s in day] == [
        (0, "ann", "layer 1"), (9, "cat", "day"), (11, "ben", "override"), (13, "cat", "day"), (17, "ann", "layer 1")]


def test_a_restriction_past_midnight_belongs_to_the_day_it_starts():
    cfg = config("      - start: 2026-03-16T00:00\n        length: 1w\n        users: [ann]\n"
                 "        restrictions:\n          - {days: [fri], from: '22:00', to: '06:00'}\n", "UTC")
    assert who(cfg, "2026-11-27T23:00:00+00:00") == "ann"  # Friday night
    assert who(cfg, "2026-11-28T05:00:00+00:00") == "ann"  # early Saturday, still Friday's window
    assert who(cfg, "2026-11-28T23:00:00+00:00") is None


@given(st.integers(0, 60 * 24 * 365))
def test_shifts_agree_with_who_is_on_call_at_every_minute(minute):
    cfg = load((EXAMPLES / "oncall.yaml").read_text(), "oncall.yaml")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    at = start + timedelta(minutes=minute)
    for schedule in cfg.schedules.values():
        found = shifts(schedule, [], at - timedelta(hours=30), at + timedelta(hours=30))
        [covering] = [s for s in found if s.start <= at < s.end]
        assert covering.user == on_call(schedule, [], at)[0]


@pytest.mark.parametrize("text, message", [
    ("teams:\n  - name: ops\n    members: [ann]\nschedules:\n  - name: s\n    timezone: Mars/Olympus\n    layers: []\n",
     "oncall.yaml:6: schedules[s].timezone: unknown time zone 'Mars/Olympus'"),
    ("teams:\n  - name: ops\n    members: [ann]\nschedules:\n  - name: s\n    timezone: UTC\n    layers: []\n",
     "oncall.yaml:7: schedules[s].layers: needs at least one layer"),
    ("teams:\n  - name: ops\n    members: [ann]\nschedules:\n  - name: s\n    timezone: UTC\n    layers:\n"
     "      - start: 2026-01-01T00:00\n        length: 1d\n        users: [ann, zed]\n",
     "oncall.yaml:10: schedules[s].layers[0].users[1]: unknown user 'zed' (not a member of any team)"),
    ("teams:\n  - name: ops\n    members: [ann]\n    schedule: nope\n", "oncall.yaml:4: teams[ops].schedule: unknown schedule 'nope'"),
    ("teams:\n  - name: ops\n    members: [ann]\nschedules:\n  - name: s\n    timezone: UTC\n    layers:\n"
     "      - start: 2026-01-01T00:00\n        length: 0d\n        users: [ann]\n", "oncall.yaml:9: schedules[s].layers[0].length: expected hours, days or weeks"),
])
def test_bad_oncall_files_name_the_line(text, message):
    with pytest.raises(BadInput, match="^" + re.escape(message)):
        load(text, "oncall.yaml")


@pytest.fixture
def desk(cli, monkeypatch):
    monkeypatch.setenv("SDESK_CONFIG", str(EXAMPLES))
    cli("init")
    return cli


def test_now_show_and_override_through_the_cli(desk):
    now = desk.json("oncall", "now", "--team", "platform", "--at", "2026-11-26T12:00Z")
    assert now == [{"schedule": "platform-primary", "teams": ["platform"], "user": "alice", "from": "weekly",
                    "until": "2026-11-30T09:00:00Z"}]
    desk("oncall", "override", "--team", "platform", "--user", "erin", "--from", "2026-11-26T10:00Z",
         "--to", "2026-11-26T20:00Z", "-r", "alice at the dentist")
    assert desk.json("oncall", "now", "-t", "platform", "--at", "2026-11-26T12:00Z")[0]["user"] == "erin"
    overlap = desk("oncall", "override", "--team", "platform", "--user", "dave", "--from", "2026-11-26T19:00Z",
                   "--to", "2026-11-26T22:00Z", ok=False)
    assert overlap.exit_code == ExitCode.BAD_INPUT and "overlaps the one for erin" in overlap.stderr
    [shown] = desk.json("oncall", "show", "-s", "platform-primary", "--from", "2026-11-26T00:00Z", "--to", "2026-11-27T00:00Z")
    assert [(s["user"], s["layer"]) for s in shown["shifts"]] == [("alice", "weekly"), ("erin", "override"),
                                                                    ("alice", "weekly")]
    assert "erin" in desk("oncall", "show", "-t", "platform", "--from", "2026-11-26T00:00Z", "--to", "2026-11-27T00:00Z").stdout


@pytest.mark.parametrize("args, message", [
    (["now", "--team", "nope"], "unknown team 'nope'"),
    (["now", "--team", "service-desk"], "has no on-call schedule"),
    (["override", "--user", "mallory", "--team", "platform", "--from", "2026-11-26T10:00Z", "--to", "2026-11-26T11:00Z"],
     "'mallory' is not a member"),
    (["override", "--user", "erin", "--team", "platform", "--from", "2026-11-26T10:00Z", "--to", "2026-11-26T09:00Z"],
     "--to must be after --from"),
    (["override", "--user", "erin", "--from", "2026-11-26T10:00Z", "--to", "2026-11-26T11:00Z"], "give --schedule or --team"),
    (["show", "--from", "2026-01-01", "--to", "2028-01-01"], "at most a year"),
])
def test_bad_oncall_commands_are_one_line(desk, args, message):
    result = desk("oncall", *args, ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_oncall_yaml_it_says_where_to_put_it(cli):
    cli("init")
    result = cli("oncall", "now", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and "add oncall.yaml" in result.stderr


def test_assign_auto_by_queue_strategy(desk, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-26T12:00:00Z")  # alice's week on platform-primary
    oncall = desk.new("disk full", "-q", "platform")
    desk("assign", str(oncall), "--auto")
    assert desk.json("show", str(oncall))["assignee"] == "alice"
    robin = [desk.new(f"password {i}", "-q", "service-desk") for i in range(3)]
    for t in robin:
        desk("assign", str(t), "--auto")
    assert [desk.json("show", str(t))["assignee"] for t in robin] == ["sam", "priya", "sam"]
    busy = desk.new("refund stuck", "-q", "payments", "-p", "P1")
    desk("assign", str(busy), "bob")
    light = desk.new("invoice typo", "-q", "payments", "-p", "P4")
    desk("assign", str(light), "--auto")
    assert desk.json("show", str(light))["assignee"] == "carol"  # bob carries a P1
    kinds = [e["kind"] for e in desk.json("show", str(light))["events"]]
    assert kinds[-2:] == ["assigned", "auto_assigned"]


@pytest.mark.parametrize("queue, message", [("triage", "assigns by hand"), ("nowhere", "is not in oncall.yaml")])
def test_assign_auto_refuses_clearly(desk, queue, message):
    ticket = desk.new("x", "-q", queue)
    result = desk("assign", str(ticket), "--auto", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and message in result.stderr
    assert desk("assign", str(ticket), "bob", "--auto", ok=False).exit_code == ExitCode.BAD_INPUT


def test_a_rule_can_assign_by_the_queue_strategy(cli, tmp_path, monkeypatch):
    config = tmp_path / "desk"
    config.mkdir(exist_ok=True)
    (config / "oncall.yaml").write_text((EXAMPLES / "oncall.yaml").read_text())
    (config / "triage.yaml").write_text("rules:\n  - id: resets\n    match: {title: {contains: password}}\n"
                                        "    set: {queue: service-desk, assignee: auto}\n")
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    first, second = cli.new("password reset for ann"), cli.new("password expired")
    assert [cli.json("show", str(t))["assignee"] for t in (first, second)] == ["sam", "priya"]
    assert "assigned: priya (round robin in service-desk, after sam)" in cli("why", str(second)).stdout
    other = cli.new("printer jam")
    assert cli.json("show", str(other))["assignee"] is None


@pytest.mark.parametrize("zone, handoff, day", [
    ("America/New_York", "01:30", datetime(2026, 11, 1, tzinfo=UTC)),  # 01:00-02:00 happens twice
    ("America/New_York", "02:30", datetime(2027, 3, 14, tzinfo=UTC)),  # 02:00-03:00 never happens
    ("Europe/London", "01:30", datetime(2026, 3, 29, tzinfo=UTC)),
])
def test_handoffs_inside_a_dst_change_agree_minute_by_minute(zone, handoff, day):
    cfg = config(f"      - start: 2026-01-01T{handoff}\n        length: 1d\n        users: [ann, ben, cat]\n", zone)
    schedule = cfg.schedules["s"]
    found = shifts(schedule, [], day - timedelta(days=1), day + timedelta(days=2))
    for minute in range(0, 3 * 24 * 60, 5):
        at = day - timedelta(days=1) + timedelta(minutes=minute)
        [covering] = [s for s in found if s.start <= at < s.end]
        assert covering.user == on_call(schedule, [], at)[0], at
    assert len({s.user for s in found}) == 3 and len(found) == 4  # three handoffs, none flipping back


def test_show_says_which_time_zone_its_times_are_in(desk, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = desk("oncall", "show", "-t", "payments", "--from", "2026-11-26T00:00Z", "--to", "2026-11-27T00:00Z").stdout
    here = datetime(2026, 11, 26, tzinfo=timezone.utc).astimezone()
    zone = here.tzname() if here.tzname()[0] not in "+-" else f"UTC{here:%z}"
    assert out.lstrip().startswith(f"payments-primary (times in {zone})")
