"""Self-service (issue 23) from the terminal: catalog.yaml read the one way (a mistake is one line
with its file and line), a request's answers checked as their fields say (a property over any
text, for every field type), approval chains (k of n, the requester's manager, the CI's owner
team, nobody found, expiry and reminders, by mail), and fulfilment by the example's own runbooks,
which really run (they write under the test's folder)."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.domain import catalog as cat
from sdesk.errors import BadInput, ExitCode

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "desk"


def example_config(config: Path, out: Path) -> None:
    """The example desk's catalog, CMDB, on-call teams and SLA policies in `config` (a folder that
    exists), the catalog's runbooks writing under `out` rather than /tmp/sdesk-demo."""
    for name in ("catalog.yaml", "cmdb.yaml", "oncall.yaml", "sla.yaml"):
        shutil.copy(EXAMPLE / name, config / name)
    (config / "runbooks").mkdir()
    for name in ("reset-password.yaml", "grow-quota.yaml", "grant-access.yaml"):
        text = (EXAMPLE / "runbooks" / name).read_text().replace("/tmp/sdesk-demo", str(out))
        (config / "runbooks" / name).write_text(text)


@pytest.fixture
def desk(tmp_path, cli, monkeypatch):
    """The example desk's catalog, CMDB, on-call teams and SLA policies, its runbooks writing
    under tmp_path; users: an admin, an approver, a manager and a requester with that manager."""
    config = tmp_path / "config"
    example_config(config, tmp_path / "out")
    cli("init")
    cli("cmdb", "import", str(config / "cmdb.yaml"))
    cli("user", "add", "tester", "--role", "admin", "--email", "tester@example.com")
    cli("user", "add", "dave", "--role", "approver", "--email", "dave@example.com")
    cli("user", "add", "carol", "--role", "agent", "--email", "carol@example.com")
    cli("user", "add", "bob", "--role", "agent", "--email", "bob@example.com", "--manager", "carol")
    return config


def request(cli, type_id: str, *fields: str, who: str = "bob", ok: bool = True):
    args = ["--as", who, "request", type_id, *[x for f in fields for x in ("--field", f)]]
    return cli.json(*args) if ok else cli(*args, ok=False)


def test_a_password_reset_is_fulfilled_by_its_runbook_at_once(cli, desk, tmp_path):
    shown = request(cli, "password-reset", "account=jdoe")
    assert shown["state"] == "fulfilled" and shown["status"] == "resolved"
    assert (tmp_path / "out" / "accounts" / "jdoe.reset").is_file()  # the runbook really ran
    kinds = [e["kind"] for e in cli.json("show", shown["id"])["events"]]
    assert kinds.index("request_submitted") < kinds.index("runbook_queued") < kinds.index("request_fulfilled")
    assert shown["requester"] == "bob@example.com"  # the user's address: their mail reaches them


def test_a_quota_above_100_gb_needs_the_approver_then_the_manager(cli, desk, tmp_path):
    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=200", "justification=peak")
    assert shown["state"] == "approval" and shown["approvals"][0]["approvers"] == ["dave", "tester"]
    refused = cli("--as", "carol", "approve", shown["id"], ok=False)  # not this stage's approver
    assert refused.exit_code == ExitCode.PERMISSION and "not an approver" in refused.stderr
    assert cli.json("--as", "dave", "approve", shown["id"])["approvals"][1]["approvers"] == ["carol"]
    again = cli("--as", "dave", "approve", shown["id"], ok=False)
    assert again.exit_code != 0 and "not an approver" in again.stderr  # the manager's stage now
    done = cli.json("--as", "carol", "approve", shown["id"])
    assert done["state"] == "fulfilled" and done["status"] == "resolved"
    assert (tmp_path / "out" / "quotas" / "shop-checkout").read_text().strip() == "200"


def test_a_small_quota_skips_the_manager_and_a_rejection_ends_the_request(cli, desk):
    small = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    assert [s["applies"] for s in small["stages"]] == [True, False]
    assert cli.json("--as", "dave", "approve", small["id"])["state"] == "fulfilled"
    other = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    no_reason = cli("--as", "dave", "reject", other["id"], "--reason", "  ", ok=False)
    assert no_reason.exit_code == ExitCode.BAD_INPUT
    rejected = cli.json("--as", "dave", "reject", other["id"], "--reason", "use the shared bucket")
    assert rejected["state"] == "rejected" and rejected["status"] == "resolved"
    assert "use the shared bucket" in rejected["resolution"]
    late = cli("--as", "tester", "approve", other["id"], ok=False)
    assert late.exit_code == ExitCode.CONFLICT and "waits on no approval" in late.stderr


def test_the_owner_team_of_the_chosen_system_approves_access(cli, desk):
    shown = request(cli, "access-grant", "system=checkout-api", "level=read", "until=2999-01-01")
    assert shown["approvals"][0]["approvers"] == ["carol", "frank"]  # payments, less the requester bob
    assert cli.json("--as", "frank", "approve", shown["id"])["state"] == "fulfilled"


def test_nobody_found_means_the_admins_decide_and_no_self_approval(cli, desk):
    cli("user", "add", "erin", "--role", "agent", "--email", "erin@example.com")  # no manager
    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=300", "justification=x", who="erin")
    cli("--as", "dave", "approve", shown["id"])
    stage = cli.json("show", shown["id"])["events"][-1]["data"]
    assert stage["approvers"] == ["tester"] and "no manager" in stage["note"]  # the desk's admins
    refused = cli("--as", "dave", "approve", shown["id"], ok=False)
    assert refused.exit_code == ExitCode.PERMISSION
    assert cli.json("--as", "tester", "approve", shown["id"])["state"] == "fulfilled"
    # A requester is never among their own approvers (dave asks: the stage asks tester alone).
    mine = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=5", "justification=x", who="dave")
    assert mine["approvals"][0]["approvers"] == ["tester"]


def test_wrong_answers_are_one_line_naming_every_field_and_nothing_is_written(cli, desk):
    before = cli.json("list", "--all")
    result = request(cli, "quota-increase", "service=nope", "extra_gb=900", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and result.stderr.count("\n") == 1
    for said in ("service: expected one of", "extra_gb: must be at most 500", "justification: is required"):
        assert said in result.stderr
    unknown = request(cli, "quota-increase", "colour=red", ok=False)
    assert "has no field 'colour'" in unknown.stderr
    missing = cli("request", "quota-increse", ok=False)
    assert missing.exit_code == ExitCode.NOT_FOUND and "did you mean quota-increase" in missing.stderr
    assert cli.json("list", "--all") == before


def test_answers_on_stdin_as_json_and_the_schema_says_the_same(cli, desk):
    body = json.dumps({"service": "shop-checkout", "extra_gb": 5, "justification": "json"})
    shown = json.loads(cli("--as", "bob", "request", "quota-increase", "--stdin", "--json", input=body).stdout)
    assert shown["answers"] == {"service": "shop-checkout", "extra_gb": 5, "justification": "json"}
    schema = json.loads(cli("schema", "request", "quota-increase").stdout)
    assert schema["required"] == ["service", "extra_gb", "justification"]
    assert schema["properties"]["extra_gb"] == {"title": "Extra storage (GB)", "type": "integer", "minimum": 1,
                                                "maximum": 500}
    assert "shop-checkout" in schema["properties"]["service"]["enum"]
    access = json.loads(cli("schema", "request", "access-grant").stdout)
    assert access["allOf"][0] == {"if": {"properties": {"level": {"const": "admin"}}, "required": ["level"]},
                                  "then": {"required": ["reason"]}}
    for bad in ("[1]", "not json", '{"extra_gb": {"nested": 1}}'):
        result = cli("request", "quota-increase", "--stdin", input=bad, ok=False)
        assert result.exit_code == ExitCode.BAD_INPUT and result.stderr.count("\n") == 1


def test_an_approval_expires_after_a_reminder(cli, desk, monkeypatch):
    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    created = shown["approvals"][0]["created_at"]
    monkeypatch.setenv("SDESK_NOW", created[:10] + "T23:59:59Z")  # before the reminder (1 day)
    assert cli.json("tick")["approvals_reminded"] == 0
    monkeypatch.setenv("SDESK_NOW", "2999-01-01T00:00:00Z")  # far past: reminded once, then expired
    day = cli.json("tick")
    assert day["approvals_expired"] == 1
    ended = cli.json("show", shown["id"])
    assert ended["status"] == "resolved" and "Expired" in ended["resolution"]
    assert "approval_expired" in [e["kind"] for e in ended["events"]]


def test_a_failed_fulfilment_leaves_the_ticket_in_its_queue(cli, desk):
    rb = desk / "runbooks" / "grow-quota.yaml"
    rb.write_text(rb.read_text().replace("echo $((old + $3))", "exit 3; echo $((old + $3))"))
    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    after = cli.json("--as", "dave", "approve", shown["id"])
    assert after["state"] == "failed" and after["status"] not in ("resolved", "closed")
    ticket = cli.json("show", shown["id"])
    assert ticket["queue"] == "platform"
    assert ticket["events"][-1]["kind"] == "fulfilment_failed"


def test_catalog_check_names_what_would_fail(cli, desk):
    cli("catalog", "check")
    text = (desk / "catalog.yaml").read_text()
    (desk / "catalog.yaml").write_text(text.replace("runbook: grow-quota", "runbook: grow-quotas")
                                       .replace("sla: requests\n    summary: \"{extra_gb}", "sla: nope\n    summary: \"{extra_gb}"))
    result = cli("catalog", "check", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "quota-increase: fulfil: no runbook 'grow-quotas'" in result.stderr
    assert "quota-increase: sla: sla.yaml gives a P3 request the policy 'requests', not 'nope'" in result.stderr


@pytest.mark.parametrize("mistake,where", [
    ("type: integer, min: 1, max: 500}", "type: intger, min: 1, max: 500}"),
    ("approvers: manager,", "approvers: boss,"),
    ("show_when: {field: level, equals: admin}", "show_when: {field: nope, equals: admin}"),
])
def test_a_broken_catalog_is_one_line_with_its_line(cli, desk, mistake, where):
    path = desk / "catalog.yaml"
    text = path.read_text()
    assert mistake in text
    path.write_text(text.replace(mistake, where))
    result = cli("catalog", "list", ok=False)
    assert result.exit_code == ExitCode.BAD_INPUT and result.stderr.count("\n") == 1
    line = int(result.stderr.split("catalog.yaml:")[1].split(":")[0])
    assert where.split(",")[0].split("{")[-1].strip() in path.read_text().splitlines()[line - 1]


def test_an_approver_answers_by_mail_where_the_desk_takes_that(cli, desk, tmp_path):
    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    mail = tmp_path / "reply.eml"

    def reply(sender: str, ref: str, body: str, n: int) -> None:
        mail.write_text(f"From: {sender}\nTo: desk@example.com\nSubject: Re: [{ref}] approval\n"
                        f"Message-ID: <r{n}@example.com>\n\n{body}\n\n> quoted text\n")
        cli("new", "--format", "email", str(mail))

    def voted(ref: str) -> list:
        return [e for e in cli.json("show", ref)["events"] if e["kind"] == "approval_voted"]

    # Off by default: From can be forged, so a reply is a comment until intake.yaml says otherwise.
    reply("Dave <dave@example.com>", shown["id"], "approve", 1)
    assert voted(shown["id"]) == []
    (desk / "intake.yaml").write_text("approve_by_mail: true\n")
    reply("Dave <dave@example.com>", shown["id"], "Approved? Not yet - why 20 GB?", 2)  # a question decides nothing
    assert voted(shown["id"]) == []
    reply("Dave <dave@example.com>", shown["id"], "Approve\nfine by me", 3)
    [vote] = voted(shown["id"])
    assert vote["actor"] == "mail:dave@example.com" and vote["data"]["reason"] == "fine by me"
    cli("tick")  # runs what the approval queued (serve's automation would at once)
    assert cli.json("show", shown["id"])["status"] == "resolved"
    # A stranger's "approve" is an ordinary mail (a new ticket), never a decision.
    other = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    reply("eve@evil.example", other["id"], "approve", 4)
    assert cli.json("show", other["id"])["status"] == "new" and voted(other["id"]) == []
    # "reject" needs its reason: on the line or the next.
    reply("dave@example.com", other["id"], "reject: not this quarter", 5)
    assert cli.json("show", other["id"])["resolution"].endswith("not this quarter")


@pytest.mark.parametrize("body,decision", [
    ("approve", (True, None)), ("Approved.", (True, None)), ("**approve**\nok", (True, "ok")),
    ("reject - too big", (False, "too big")), ("Rejected\nuse the bucket", (False, "use the bucket")),
    ("reject", (False, None)), ("Approved? Not yet", None), ("approve this? no", None), ("I approve", None),
    ("approve it later", None), ("> approve\nthanks", None), ("", None)])
def test_what_a_reply_decides(body, decision):
    from sdesk.intake.mail import approval_reply

    assert approval_reply(body) == decision


# -- the answers, as a property: whatever text arrives, a value of the field's type or a message --

FIELDS = [cat.field(spec, [], lambda loc, m: BadInput(m), []) for spec in (
    {"name": "a", "type": "text", "pattern": "[a-z]{2,8}"}, {"name": "b", "type": "long_text", "max_length": 300},
    {"name": "c", "type": "choice", "choices": ["x", "y"]}, {"name": "d", "type": "integer", "min": -5, "max": 500},
    {"name": "e", "type": "number", "min": 0.5, "max": 2.5}, {"name": "f", "type": "date", "min": "today"},
    {"name": "g", "type": "email"}, {"name": "h", "type": "user"}, {"name": "i", "type": "yes_no"},
    {"name": "j", "type": "choice", "choices_from": "services"})]
TODAY = date(2026, 12, 7)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(FIELDS) - 1),
       raw=st.one_of(st.text(max_size=400), st.integers(), st.floats(), st.booleans(), st.none(),
                     st.lists(st.integers(), max_size=2)))
def test_any_answer_is_a_valid_value_or_one_message(index, raw):
    f = FIELDS[index]
    value, error = cat.check_value(f, raw, today=TODAY, options={"services": ["svc-a"]}, users={"dave": "Dave"})
    assert (value is None) or error is None
    if error is not None:
        assert isinstance(error, str) and 0 < len(error) < 300 and "\n" not in error
        return
    if value is None:
        assert not f.required or raw is None or str(raw).strip() == ""
        return
    if f.type in ("text", "long_text", "email", "user", "choice", "date"):
        assert isinstance(value, str) and len(value) <= f.max_length
        assert not any(ord(c) < 32 and c not in "\n\r\t" for c in value)
    if f.type == "text":
        assert f.pattern.fullmatch(value) and "\n" not in value
    if f.type == "choice":
        assert value in (f.choices or ("svc-a",))
    if f.type in ("integer", "number"):
        assert not isinstance(value, bool) and float(f.minimum) <= value <= float(f.maximum)
    if f.type == "date":
        assert date.fromisoformat(value) >= TODAY
    if f.type == "yes_no":
        assert value in (True, False)
    if f.type == "user":
        assert value == "Dave"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=6))
def test_a_whole_submission_never_raises_and_never_keeps_an_unknown_field(raw):
    t = cat.request_type({"id": "t", "title": "T", "fields": [
        {"name": "level", "type": "choice", "choices": ["read", "admin"]},
        {"name": "why", "type": "text", "show_when": {"field": "level", "equals": "admin"}}]}, [],
        lambda loc, m: BadInput(m))
    values, errors = cat.validate(t, raw, today=TODAY)
    assert set(values) <= {"level", "why"}
    assert "why" not in values or values.get("level") == "admin"
    assert all(isinstance(m, str) and m for m in errors.values())


def test_an_approver_decides_in_the_tui(cli, desk, db_path):
    """V on a request that waits for you: reject with the reason the requester reads, or approve."""
    import asyncio

    from sdesk.tui.app import make_app
    from tests.test_tui import settle, settle_until

    both = [request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", f"justification={w}")["id"]
            for w in ("x", "y")]

    async def drive():
        app = make_app(db_path, "dave", desk, poll=5)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, app, 2)
            await pilot.press("V", *"reject", "tab", *"not this quarter", "enter")
            await settle_until(pilot, app, lambda: len(decided()) == 1, "a decision")
            await pilot.press("j", "V", *"approve", "enter", "enter")  # the other one; no reason
            await settle_until(pilot, app, lambda: len(decided()) == 2, "both decisions")

    def decided():
        return [e for ref in both for e in cli.json("show", ref)["events"] if e["kind"] == "approval_voted"]

    asyncio.run(drive())
    shown = [cli.json("show", ref) for ref in both]
    rejected = [t for t in shown if t["status"] == "resolved"]
    approved = [t for t in shown if t["events"][-1]["kind"] == "runbook_queued"]  # runs at the next tick, or in serve
    assert len(rejected) == len(approved) == 1 and rejected[0]["resolution"].endswith("not this quarter")


def test_audit_verify_rebuilds_approvals_from_their_events(cli, desk, db_path):
    """Who may approve and who decided are on the chain: a row changed by hand is found."""
    from tests import rawdb

    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=200", "justification=x")
    cli("--as", "dave", "approve", shown["id"])
    cli("audit", "verify")
    rawdb.tamper(db_path, "UPDATE approvals SET approvers = '[\"eve\"]' WHERE state = 'pending'",
                 "UPDATE approval_votes SET decision = 'rejected'")
    result = cli("audit", "verify", ok=False)
    assert result.exit_code != 0
    assert "approvers is ['eve'], its events say ['carol']" in result.stdout + result.stderr
    assert "approval_votes dave on approval" in result.stdout + result.stderr


def test_a_request_closed_by_an_agent_waits_on_no_one(cli, desk):
    shown = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=20", "justification=x")
    assert [a["ticket_id"] for a in cli.json("approvals", "--user", "dave")] == [shown["ticket_id"]]
    cli("resolve", shown["id"], "--resolution", "done by hand")
    assert cli.json("approvals", "--user", "dave") == []
    late = cli("--as", "dave", "approve", shown["id"], ok=False)
    assert late.exit_code == ExitCode.CONFLICT and "is resolved" in late.stderr
    assert cli.json("show", shown["id"])["events"][-1]["kind"] == "request_cancelled"
    cli("reopen", shown["id"])  # and reopened, nothing wakes: the request ended with its ticket
    assert cli.json("approvals", "--user", "dave") == []
    cli("audit", "verify")


def test_four_eyes_neither_the_requester_nor_who_filed_it_approves(cli, desk):
    # dave (an approver) files a request for someone else: he is not among its approvers, and
    # his approval is refused whatever a stage says.
    filed = cli.json("--as", "dave", "request", "quota-increase", "--requester", "stranger@example.com",
                     "--field", "service=shop-checkout", "--field", "extra_gb=20", "--field", "justification=x")
    assert filed["approvals"][0]["approvers"] == ["tester"]
    refused = cli("--as", "dave", "approve", filed["id"], ok=False)
    assert refused.exit_code == ExitCode.PERMISSION and "someone else must approve it" in refused.stderr
    # The desk's only admin asks, with no manager: the manager stage falls to the admins, less
    # the one who asked; there is none left, and still it is not theirs to approve.
    own = request(cli, "quota-increase", "service=shop-checkout", "extra_gb=300", "justification=x", who="tester")
    cli("--as", "dave", "approve", own["id"])
    refused = cli("--as", "tester", "approve", own["id"], ok=False)
    assert refused.exit_code == ExitCode.PERMISSION and cli.json("show", own["id"])["status"] == "new"
    missing = cli("--as", "dave", "approve", "SD-999", ok=False)
    assert missing.exit_code == ExitCode.NOT_FOUND and "no ticket SD-999" in missing.stderr


def test_portal_sign_in_links_go_only_to_whom_catalog_yaml_lets_in(cli, desk, db_path):
    """portal.sign_in: [example.com] (the example's): a link for an address of that domain and for
    the desk's users; none for anyone else, whose page says the same."""
    from sdesk.desk import Desk
    from sdesk.services.portal import send_link
    from tests.test_talking_back import Mailbox, notify_yaml

    mailbox = Mailbox()
    try:
        notify_yaml(desk, smtp_port=mailbox.port)
        settings = Desk(db_path, "tester", desk)
        cli("user", "add", "olga", "--role", "agent", "--email", "olga@partner.example")
        for address in ("pat@example.com", "stranger@elsewhere.example", "olga@partner.example"):
            send_link(settings.store(), settings.notify_config(), settings.catalog(), address, client="127.0.0.1",
                      url="http://127.0.0.1:8080", actor="tester")
        assert sorted(to for recipients, _ in mailbox.take() for to in recipients) == [
            "olga@partner.example", "pat@example.com"]
        settings.close()
    finally:
        mailbox.close()
    assert cat.build({"portal": {"sign_in": "users"}}).may_sign_in("x@example.com", is_user=False) is False
    with pytest.raises(BadInput, match="sign_in"):
        cat.build({"portal": {"sign_in": ["not a domain"]}})
