"""Email intake on the real messages of ../shared/corpus and on threads made here: new tickets,
replies as comments, reopening, machine mail ignored, mbox and Maildir, nothing raised."""

import json
from email.message import EmailMessage
from pathlib import Path

import pytest
import rawdb
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdesk.errors import ExitCode
from sdesk.intake.mail import html_to_text, parse_mail, parse_message, split_mbox
from sdesk.intake.service import Intake

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
IGNORED = {"cpython_msg_02_mailman_digest.eml", "cpython_msg_16_dsn_delivery_failed.eml",
           "flanker_bounce_mailbox_full.eml", "flanker_read_receipt_mdn.eml", "rt_reply_with_references_rt-users.eml"}


def corpus_mail(folder: str) -> list[str]:
    return sorted(p.name for p in (CORPUS / folder).glob("*.eml")) if CORPUS.is_dir() else ["(corpus absent)"]


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not found: the real-mail tests need ../shared/corpus beside the clone")
    return CORPUS


def take(cli, *paths, ok=True, extra=()):
    result = cli("new", "--format", "email", *map(str, paths), "--json", *extra, ok=ok)
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("name", corpus_mail("email"))
def test_every_real_message_is_taken(cli, corpus, name):
    [result] = take(cli, corpus / "email" / name)
    assert result["format"] == "email"
    if name in IGNORED:
        assert result == {**result, "action": "ignored", "ticket": None}
    else:
        assert result["action"] == "created"
        t = cli.json("show", str(result["ticket"]))
        assert t["title"] and t["kind"] == "request" and "email" in t["tags"]


@pytest.mark.parametrize("name", corpus_mail("bad_input/email"))
def test_malformed_mail_is_taken_as_far_as_sensible(cli, corpus, name):
    result = cli("new", "--format", "email", str(corpus / "bad_input" / "email" / name), ok=False)
    assert "Traceback" not in result.stderr
    assert result.exit_code in (0, ExitCode.BAD_INPUT)


def test_headers_and_bodies_are_decoded(corpus):
    def ticket(name):
        return parse_message((corpus / "email" / name).read_bytes()).signal.ticket

    assert ticket("mailparser_gb2312_subject.eml")["title"] == "代开各地增值税发票"
    assert ticket("rt_iso8859-15_encoded_subject.eml")["title"] == "test äöüßÄÖÜß€"
    assert ticket("rubymail_rfc6532_raw_utf8_headers.eml")["requester"] == "jdöe@mächine.example"
    assert ticket("rubymail_pdf_attachment_emoji_subject.eml")["title"] == "Another PDF with 🎉 Unicode chars in it 🍿"
    assert "Gr" in ticket("rt_RE_multipart_alternative_umlaut.eml")["description"]
    html_only = ticket("rt_html_only_umlaut.eml")["description"]
    assert "<" not in html_only and html_only.strip()


def test_attachments_are_recorded_with_name_type_size_and_hash(cli, db_path, corpus):
    [result] = take(cli, corpus / "email" / "flanker_attached_pdf.eml")
    [(name, ctype, size, digest)] = rawdb.connect(db_path).execute(
        "SELECT name, content_type, size, sha256 FROM attachments WHERE ticket_id = ?", (result["ticket"],)).fetchall()
    assert ctype == "application/pdf" and size > 0 and len(digest) == 64 and name
    assert any(e["kind"] == "attachments" for e in cli.json("show", str(result["ticket"]))["events"])


def _mail(subject, body="Hello", *, sender="ann@example.com", msgid, in_reply_to=None):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = sender, "desk@example.com", subject, f"<{msgid}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    msg.set_content(body)
    return bytes(msg)


def test_replies_thread_onto_their_ticket(cli, tmp_path, monkeypatch):
    first = tmp_path / "1.eml"
    first.write_bytes(_mail("VPN broken", "It drops every 10 minutes", msgid="a@x"))
    [created] = take(cli, first)
    reply = tmp_path / "2.eml"
    reply.write_bytes(_mail("Re: VPN broken", "Still broken after reboot", msgid="b@x", in_reply_to="a@x"))
    tagged = tmp_path / "3.eml"
    tagged.write_bytes(_mail(f"More info [SD-{created['ticket']}]", "Logs attached", msgid="c@x"))
    assert [r["action"] for r in take(cli, reply, tagged)] == ["commented", "commented"]
    t = cli.json("show", str(created["ticket"]))
    comments = [e["data"] for e in t["events"] if e["kind"] == "commented"]
    assert [c["text"] for c in comments] == ["Still broken after reboot", "Logs attached"]
    assert comments[0]["from"] == "ann@example.com"
    # Reading the same messages again takes nothing twice.
    assert [r["action"] for r in take(cli, first, reply)] == ["ignored", "ignored"]


def test_reply_to_a_closed_ticket_reopens_it_within_the_window(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-01T09:00:00Z")
    (tmp_path / "1.eml").write_bytes(_mail("Printer jams", msgid="p1@x"))
    [created] = take(cli, tmp_path / "1.eml")
    cli("resolve", str(created["ticket"]), "-r", "Replaced the roller")
    cli("close", str(created["ticket"]))
    monkeypatch.setenv("SDESK_NOW", "2026-11-05T09:00:00Z")
    (tmp_path / "2.eml").write_bytes(_mail("Re: Printer jams", "Jams again", msgid="p2@x", in_reply_to="p1@x"))
    [reopened] = take(cli, tmp_path / "2.eml")
    assert reopened["action"] == "reopened"
    t = cli.json("show", str(created["ticket"]))
    assert t["status"] == "in_progress" and t["reopen_count"] == 1
    # Long after it was closed, a reply opens a new ticket linked to the old one.
    cli("resolve", str(created["ticket"]), "-r", "New printer")
    cli("close", str(created["ticket"]))
    monkeypatch.setenv("SDESK_NOW", "2026-12-30T09:00:00Z")
    (tmp_path / "3.eml").write_bytes(_mail("Re: Printer jams", "Again?!", msgid="p3@x", in_reply_to="p2@x"))
    [late] = take(cli, tmp_path / "3.eml")
    assert late["action"] == "created" and late["ticket"] != created["ticket"]
    assert cli.json("show", str(late["ticket"]))["parent_id"] == created["ticket"]


def test_mbox_and_maildir(cli, tmp_path):
    messages = [_mail(f"Request {i}", msgid=f"m{i}@x") for i in range(3)]
    mbox = tmp_path / "inbox.mbox"
    mbox.write_bytes(b"".join(b"From ann@example.com Thu Nov 26 10:00:00 2026\n" + m.replace(b"\nFrom ", b"\n>From ") + b"\n"
                              for m in messages))
    assert [r["action"] for r in take(cli, mbox)] == ["created"] * 3
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.eml").write_bytes(_mail("From maildir", msgid="md1@x"))
    (maildir / "cur" / "2.eml").write_bytes(_mail("Also from maildir", msgid="md2@x"))
    assert [r["action"] for r in take(cli, maildir)] == ["created", "created"]


def test_auto_detects_email_on_stdin(cli):
    result = json.loads(cli("new", "--json", input=_mail("Laptop request", msgid="s1@x").decode()).stdout)
    assert result["format"] == "email" and result["action"] == "created"


def test_html_to_text():
    assert html_to_text("<html><head><style>p{}</style></head><body><p>Hello&nbsp;<b>world</b></p>"
                        "<script>x()</script>line<br>two</body></html>") == "Hello world\nline\ntwo"


@settings(max_examples=examples(150))
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash_the_mail_parser(data):
    for record in parse_mail(data):
        assert (record.signal is None) != (record.error is None)


@settings(max_examples=examples(100))
@given(st.data())
def test_mutated_real_mail_never_crashes(data):
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus not found")
    files = sorted(CORPUS.glob("**/*.eml"))
    raw = bytearray(data.draw(st.sampled_from(files)).read_bytes())
    for _ in range(data.draw(st.integers(1, 20))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for record in parse_mail(bytes(raw[:cut])):
        assert (record.signal is None) != (record.error is None)


def test_split_mbox_keeps_quoted_from_lines():
    data = b"From a@x Mon\nSubject: one\n\n>From here\n\nFrom b@x Tue\nSubject: two\n\nbody\n"
    assert [m.splitlines()[0] for m in split_mbox(data)] == [b"Subject: one", b"Subject: two"]
    assert b"\nFrom here" in next(split_mbox(data))


def test_a_charset_name_with_a_nul_in_it_is_not_a_crash():
    """Found by the fuzzer: an encoded word naming a charset with a NUL made codecs raise."""
    [record] = parse_mail(b"From: a@example.com\r\nSubject: =?utf\x00-8?q?caf=C3=A9?=\r\n\r\nbody\r\n")
    assert record.signal is not None and "caf" in record.signal.ticket["title"]


@pytest.mark.parametrize("charset", [b"charset*=us-asc\x00ii''abc", b"charset*0*=us\x00ascii''a; charset*1*=b",
                                     b"charset=\"utf\x00-8\"", b"charset*=\x00''x"])
def test_a_charset_parameter_with_a_nul_in_it_is_not_a_crash(charset):
    """Found by the fuzzer on a CI run: a Content-Type charset (RFC 2231 encoded) naming a
    charset with a NUL made the stdlib raise ValueError while reading the parameter."""
    [record] = parse_mail(b"From: a@example.com\nSubject: x\nContent-Type: text/plain; " + charset + b"\n\nhello\n")
    assert record.signal is not None and record.signal.ticket["description"] == "hello"


# -- who may speak on a ticket by email ----------------------------------------------------------


def test_a_stranger_replying_opens_a_linked_ticket_and_leaves_the_old_one_alone(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-01T09:00:00Z")
    (tmp_path / "1.eml").write_bytes(_mail("VPN broken", msgid="v1@x"))
    [created] = take(cli, tmp_path / "1.eml")
    ticket = created["ticket"]
    cli("resolve", str(ticket), "-r", "Reset the tunnel")
    before = cli.json("show", str(ticket))
    # Both ways to name a ticket: its tag in the subject, and a Message-ID it is known by.
    (tmp_path / "2.eml").write_bytes(_mail(f"Re: [SD-{ticket}] VPN", "reopen this", sender="stranger@internet.example",
                                           msgid="s1@x"))
    (tmp_path / "3.eml").write_bytes(_mail("Re: VPN broken", "me too", sender="stranger@internet.example",
                                           msgid="s2@x", in_reply_to="v1@x"))
    results = take(cli, tmp_path / "2.eml", tmp_path / "3.eml")
    assert [r["action"] for r in results] == ["created", "created"]
    after = cli.json("show", str(ticket))
    assert (after["status"], after["events"]) == (before["status"], before["events"])
    for r in results:
        new = cli.json("show", str(r["ticket"]))
        assert new["parent_id"] == ticket and new["requester"] == "stranger@internet.example"
        [linked] = [e for e in new["events"] if e["kind"] == "linked"]
        assert linked["data"]["why"] == "a reply from someone not on the ticket"


def test_the_requester_and_known_users_comment_as_themselves(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SDESK_NOW", "2026-11-01T09:00:00Z")
    cli("--as", "root", "user", "add", "root", "--role", "admin")
    cli("--as", "root", "user", "add", "bea", "--role", "agent", "--email", "Bea@Example.com")
    (tmp_path / "1.eml").write_bytes(_mail("Printer jams", msgid="p1@x"))
    [created] = take(cli, tmp_path / "1.eml")
    ticket = created["ticket"]
    cli("resolve", str(ticket), "-r", "Replaced the roller")
    (tmp_path / "2.eml").write_bytes(_mail("Re: Printer jams", "Jams again", msgid="p2@x", in_reply_to="p1@x"))
    (tmp_path / "3.eml").write_bytes(_mail(f"[SD-{ticket}] note", "Ordered a roller", sender="bea@example.com",
                                           msgid="p3@x"))
    assert [r["action"] for r in take(cli, tmp_path / "2.eml", tmp_path / "3.eml")] == ["reopened", "commented"]
    events = cli.json("show", str(ticket))["events"]
    moved = [e for e in events if e["kind"] == "status_changed" and e["data"]["action"] == "reopen"]
    assert [e["actor"] for e in moved] == ["mail:ann@example.com"]
    assert [(e["actor"], e["data"]["text"]) for e in events if e["kind"] == "commented"] == [
        ("mail:ann@example.com", "Jams again"), ("mail:bea@example.com", "Ordered a roller")]
    assert cli("audit", "verify").exit_code == 0


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sender=st.emails(), tagged=st.booleans())
def test_no_one_but_the_requester_or_a_user_ever_comments(cli, tmp_path, sender, tagged):
    """Whatever the address (and however it is cased), a reply from outside never reaches the ticket."""
    if sender.casefold() == "ann@example.com":
        return
    import uuid

    first = tmp_path / f"{uuid.uuid4()}.eml"
    msgid = f"{uuid.uuid4()}@x"
    first.write_bytes(_mail("Laptop broken", msgid=msgid))
    [created] = take(cli, first)
    reply = tmp_path / f"{uuid.uuid4()}.eml"
    subject = f"Re: [SD-{created['ticket']}] Laptop" if tagged else "Re: Laptop broken"
    reply.write_bytes(_mail(subject, "let me in", sender=sender, msgid=f"{uuid.uuid4()}@x",
                            in_reply_to=None if tagged else msgid))
    [result] = take(cli, reply)
    assert result["action"] == "created" and result["ticket"] != created["ticket"]
    events = cli.json("show", str(created["ticket"]))["events"]
    assert [e["kind"] for e in events] == ["created"]


# -- who sent it: the one mailbox of From, never a display name -----------------------------------

SPOOFS = [
    b"From: bob@example.com <evil@x.y>",  # an address as the display name
    b"From: =?utf-8?q?bob=40example=2Ecom?= <evil@x.y>",  # the same, encoded
    b"From: bob@example.com\r\n <evil@x.y>",  # the same, folded over two lines
    b"From: bob@example.com, evil@x.y",  # two mailboxes
    b'From: "bob@example.com" <evil@x.y>',  # a quoted display name
    b"From: =?utf-8?q?Bob_=3Cbob@example.com=3E?=",  # an encoded-word that decodes to a mailbox
    b"From: evil@x.y\r\nSender: bob@example.com\r\nReply-To: bob@example.com",  # Sender, Reply-To
    b"From: evil@x.y\r\nFrom: bob@example.com",  # a second From
    b"From: staff: bob@example.com;",  # a group
]


@pytest.mark.parametrize("header", SPOOFS, ids=range(len(SPOOFS)))
def test_a_display_name_never_makes_a_stranger_a_known_user(cli, header):
    cli("--as", "root", "user", "add", "root", "--role", "admin")
    cli("--as", "root", "user", "add", "bob", "--role", "agent", "--login", "bob", "--email", "bob@example.com")
    ticket = cli.new("printer jams")
    cli("resolve", str(ticket), "-r", "new roller")
    message = header + f"\r\nSubject: Re: [SD-{ticket}] spoof\r\nMessage-ID: <sp@x>\r\n\r\nspoof\r\n".encode()
    result = cli("new", "--format", "email", "--json", input=message.decode())
    [taken] = [json.loads(line) for line in result.stdout.splitlines()]
    assert taken["action"] == "created" and taken["ticket"] != ticket
    t = cli.json("show", str(ticket))
    assert t["status"] == "resolved" and not [e for e in t["events"] if e["kind"] == "commented"]
    new = cli.json("show", str(taken["ticket"]))
    assert new["parent_id"] == ticket and new["requester"] in (None, "evil@x.y")


def test_the_sender_and_requester_are_the_one_mailboxs_address():
    for header, sender in [(b"Bob Smith <Bob@Example.COM>", "bob@example.com"), (b"bob@example.com", "bob@example.com"),
                           (b"<bob@example.com> (Bob)", "bob@example.com"), (b"=?utf-8?q?J=C3=B6rg?= <j@x.de>", "j@x.de"),
                           (b'"Smith, Bob" <bob@example.com>', "bob@example.com"), (b"bob", ""), (b"", "")]:
        [record] = parse_mail(b"From: " + header + b"\r\nSubject: hi\r\n\r\nbody\r\n")
        assert record.signal.thread["from"] == sender, header
        assert record.signal.ticket.get("requester") == (sender or None), header


_ATOM = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30)
_NAME_PARTS = st.one_of(
    _ATOM, st.just("bob@example.com"), st.just("<bob@example.com>"), st.just("ann@example.com"),
    st.just(","), st.just(";"), st.just(":"), st.just('"'), st.just("\\"), st.just("("), st.just(")"),
    st.just("\r\n "), st.just("\r\n\t"),
    _ATOM.map(lambda t: f'"{t}"'),
    st.sampled_from(["bob@example.com", "<bob@example.com>", "Bob <bob@example.com>", "ann@example.com, x"]).map(
        lambda t: "=?utf-8?q?" + "".join(f"={b:02X}" for b in t.encode()) + "?="),
    st.text(max_size=10).map(lambda t: "=?utf-8?b?" + __import__("base64").b64encode(t.encode()).decode() + "?="),
)


@settings(max_examples=examples(300), deadline=None)
@given(name=st.lists(_NAME_PARTS, max_size=6).map("".join), tagged=st.booleans())
def test_no_display_name_in_front_of_a_strangers_address_comments_on_a_ticket(tmp_path_factory, name, tagged):
    """Whatever stands before `<evil@x.y>` (addresses, encoded-words, quotes, commas, folding),
    the reply is a stranger's: a new ticket, the old one untouched; and the sender is never bob."""
    from sdesk.store import Store

    header = f"From: {name} <evil@x.y>".encode()
    message = header + b"\r\nSubject: " + (b"Re: [SD-1] x" if tagged else b"Re: x") + \
        b"\r\nIn-Reply-To: <first@x>\r\nMessage-ID: <reply@x>\r\n\r\nlet me in\r\n"
    [record] = parse_mail(message)
    assert record.signal is not None
    assert record.signal.thread["from"] in ("", "evil@x.y")
    with Store(tmp_path_factory.mktemp("desk") / "sdesk.db") as store:
        store.users.user_add("root", role="admin", team=None, queue=None, actor="root")
        store.users.user_add("bob", role="agent", team=None, queue=None, actor="root", email="bob@example.com")
        [first] = parse_mail(b"From: ann@example.com\r\nSubject: laptop\r\nMessage-ID: <first@x>\r\n\r\nbroken\r\n")
        [(ticket, _)] = Intake(store).receive([first.signal], actor="root")
        [(other, outcome)] = Intake(store).receive([record.signal], actor="root")
        assert (outcome, other != ticket) == ("created", True)
        kinds = [k for (k,) in store.conn.execute("SELECT kind FROM events WHERE ticket_id = ?", (ticket,))]
        assert kinds == ["created"]


def test_a_from_that_names_no_one_sender_is_kept_for_the_reader():
    [record] = parse_mail(b"From: bob@example.com <evil@x.y>\r\nSubject: hi\r\n\r\nbody\r\n")
    assert record.signal.thread["from"] == "" and "requester" not in record.signal.ticket
    assert record.signal.ticket["labels"]["email_from"] == "bob@example.com <evil@x.y>"
    [record] = parse_mail(b"From: Ann <ann@example.com>\r\nSubject: hi\r\n\r\nbody\r\n")
    assert "email_from" not in record.signal.ticket.get("labels", {})


@pytest.mark.parametrize("subject", ["\x01", "\ufeff", " \x7f ", "\u200b\u200b", "Re: \x02"])
def test_a_subject_that_shows_nothing_gets_a_title_and_the_mail_is_kept(cli, subject):
    """A subject of only control or invisible characters used to leave an empty title, and the
    whole message was refused (found by the HTTP fuzzing): its ticket is titled as subjectless."""
    raw = f"From: ann@example.com\r\nSubject: {subject}\r\nMessage-ID: <blank-{ord(subject[-1])}@x>\r\n\r\nhelp\r\n"
    [line] = cli("new", "--format", "email", "--json", "-", input=raw).stdout.splitlines()
    ticket = cli.json("show", str(json.loads(line)["ticket"]))
    assert ticket["title"] == "(no subject) from ann@example.com"


# -- a message without a Message-ID, read again ---------------------------------------------------

def test_reading_the_whole_corpus_again_opens_no_ticket(cli, db_path, corpus):
    """Nine corpus messages have no Message-ID; the eight that are not machine mail each opened
    another ticket every time the mailbox was read again: now each is known by a digest of it."""
    paths = sorted((corpus / "email").glob("*.eml"))
    assert sum(r["action"] == "created" for r in take(cli, *paths)) > 30
    tickets = rawdb.connect(db_path).execute("SELECT count(*) FROM tickets").fetchone()[0]
    again = take(cli, *paths)
    assert [p.name for p, r in zip(paths, again) if r["action"] != "ignored"] == []
    assert rawdb.connect(db_path).execute("SELECT count(*) FROM tickets").fetchone()[0] == tickets


_HEADER_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(subject=_HEADER_TEXT, body=st.text(max_size=300), sender=st.emails(), crlf=st.booleans(),
       date=st.none() | st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S +0000")))
def test_any_message_without_a_message_id_read_twice_makes_one_ticket(cli, subject, body, sender, crlf, date):
    import uuid

    # (a header of this run's own, so that no two examples on this one desk are the same message)
    head = f"From: {sender}\nTo: desk@example.com\nX-Run: {uuid.uuid4()}\nSubject: {subject}\n"
    raw = (head + (f"Date: {date}\n" if date else "") + "\n" + body).encode("utf-8", "surrogatepass")
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    first = json.loads(cli("new", "--format", "email", "--json", "-", input=raw.decode("utf-8", "surrogateescape")).stdout)
    again = json.loads(cli("new", "--format", "email", "--json", "-", input=raw.decode("utf-8", "surrogateescape")).stdout)
    assert again["action"] == "ignored" and again["ticket"] is None, (first, again)


def test_different_messages_without_a_message_id_are_not_taken_for_one(cli):
    """The digest covers the authored headers and the body: the same words sent again another
    day, or other words on the same subject, are new messages; only transport headers and line
    endings are left out of it."""
    def send(raw):
        return json.loads(cli("new", "--format", "email", "--json", "-", input=raw).stdout)["action"]

    base = "From: ann@example.com\nSubject: VPN down\nDate: Mon, 7 Dec 2026 09:00:00 +0000\n\nIt drops.\n"
    assert send(base) == "created"
    assert send(base.replace("09:00:00", "15:00:00")) == "created"
    assert send(base.replace("It drops.", "It drops again.")) == "created"
    assert send(base.replace("From: ann@example.com", "From: bob@example.com")) == "created"
    relayed = "Received: from mx2.example.com\n" + base.replace("\n", "\r\n").replace("It drops.", "It drops.   ")
    assert send(relayed) == "ignored"
