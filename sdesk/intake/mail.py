"""Email intake: RFC 5322 messages (one, or an mbox of them) into Records. Pure: bytes in.

Parsing is defensive: messages in the wild carry undeclared 8-bit text, unknown charsets,
broken encoded-words and missing boundaries, and none of that may cost the message. Headers
are decoded by hand from the raw bytes (compat32), so that no header can raise later.
Auto-generated mail (bounces, delivery and read receipts, auto-replies, digests) becomes an
`ignore` signal: recorded, never a ticket. A reply (In-Reply-To / References to a message we
know, or `[SD-42]` in the subject) becomes a comment on its ticket; the store decides.
"""

import email
import hashlib
import html
import re
from collections.abc import Iterator
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

from ..domain.lifecycle import TITLE_MAX, blank
from ..domain.redact import redact
from ..domain.signals import Signal
from .formats import Record, ticket_record

TICKET_TAG = re.compile(r"\[SD-(\d{1,18})\]", re.IGNORECASE)  # 19 digits and more: no ticket SQLite can hold
REPLY_PREFIX = re.compile(r"^\s*((re|aw|antw|antwort|sv|fw|fwd|wg|tr|rv)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|undeliver(able|ed)|delivery (status )?notification"
    r"|returned mail|read:|read receipt|mail delivery (failed|system))", re.IGNORECASE)
AUTO_SENDERS = ("mailer-daemon", "postmaster", "noreply-dsn")
BODY_MAX = 100_000
# One message, attachments and all: the stdlib parser holds about 11 times a message's size (a
# 60 MB message peaked at 681 MB). A bigger one is rejected alone, by its number, and only its
# first KEPT_MAX bytes (the headers) go to the rejects file.
MESSAGE_MAX = 32 << 20
KEPT_MAX = 16 << 10


_RATING = re.compile(r"^\s*([1-5])\s*(?:/\s*5)?\s*(?:$|[-.!:,)]\s*(.*)$|\s+(.*)$)")


def rating(body: str | None) -> tuple[int, str | None] | None:
    """(score, comment) when a reply's own text starts with one digit from 1 to 5 (a resolved
    ticket's notice asks for one), else None. Quoted lines (`> ...`) and what follows a reply
    header (`On ... wrote:`) are not the requester's words."""
    own = []
    for line in (body or "").splitlines():
        if line.startswith(">") or re.match(r"^\s*(On .{0,200} wrote:|-{2,} ?Original Message ?-{2,})\s*$", line):
            break
        own.append(line)
    lines = [line for line in own if line.strip()]
    if not lines:
        return None
    match = _RATING.match(lines[0])
    if match is None:
        return None
    rest = " ".join(filter(None, [(match.group(2) or match.group(3) or "").strip(), *map(str.strip, lines[1:])]))
    return int(match.group(1)), rest[:2000] or None


# The first line: "approve" (or "approved") alone, or "reject" and the reason; a line that asks
# something ("Approved? Not yet...") is no decision.
_APPROVE = re.compile(r"^\**(approved?)\**[.!]?$", re.IGNORECASE)
_REJECT = re.compile(r"^\**(reject(?:ed)?)\**(?:[\s:,.!-]+(.*))?$", re.IGNORECASE)


def approval_reply(body: str | None) -> tuple[bool, str | None] | None:
    """(approve, reason) when a reply's own first line starts with "approve" or "reject" (an
    approval request asks for one of them), else None. A rejection needs its reason on that line
    or those after it; quoted lines are not the approver's words."""
    own = []
    for line in (body or "").splitlines():
        if line.startswith(">") or re.match(r"^\s*(On .{0,200} wrote:|-{2,} ?Original Message ?-{2,})\s*$", line):
            break
        own.append(line)
    lines = [line.strip() for line in own if line.strip()]
    if not lines or "?" in lines[0]:
        return None
    approve = _APPROVE.match(lines[0])
    match = approve or _REJECT.match(lines[0][:2000])
    if match is None:
        return None
    said = "" if approve else (match.group(2) or "").strip()
    reason = " ".join(filter(None, [said, *lines[1:5]]))[:2000] or None
    return approve is not None, reason


def split_mbox(data: bytes) -> Iterator[bytes]:
    """The messages of an mbox (`From ` separator lines; `>From ` unquoted)."""
    message: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and (not message or message[-1] in (b"\n", b"\r\n")):
            if message:
                yield b"".join(message)
            message = []
            continue
        message.append(line[1:] if line.startswith(b">From ") else line)
    if message and b"".join(message).strip():
        yield b"".join(message)


def is_mbox(data: bytes) -> bool:
    return data.startswith(b"From ")


def looks_like_email(data: bytes) -> bool:
    """An mbox, or text that opens with header lines, one of them a header every mail has."""
    head = data.lstrip()[:2000]
    if is_mbox(head):
        return True
    opens_with_headers = re.match(rb"([!-9;-~]+:[^\n]*\r?\n)+", head) is not None
    return opens_with_headers and re.search(
        rb"(?im)^(from|subject|received|message-id|return-path|delivered-to|date):", head) is not None


def _header(msg: Message, name: str) -> str:
    """A header as text. Read raw (compat32 would wrap 8-bit values in a Header that has lost
    their charset): encoded-words decoded, raw UTF-8 (RFC 6532) kept, nothing raised."""
    wanted = name.lower()
    return next((_text_of(value) for key, value in msg.raw_items() if key.lower() == wanted), "")


def _text_of(raw: Any) -> str:
    if raw is None:
        return ""
    raw = str(raw).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    parts = []
    try:
        chunks = decode_header(raw)
    except Exception:  # noqa: BLE001 - a malformed encoded-word: keep the header as it is
        return _plain(raw.strip())
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            parts.append(chunk)
        else:
            parts.append(_decode(chunk, charset))
    return _plain(re.sub(r"\s+", " ", "".join(parts)).strip())


def _decode(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate or candidate.lower() in ("none", "unknown-8bit", "x-unknown"):
            continue
        try:
            return _plain(data.decode(candidate))
        except (LookupError, ValueError):  # unknown, or undecodable, or a name with a NUL in it
            continue
    return _plain(data.decode("latin-1"))


def _plain(text: str) -> str:
    """Text with what cannot be stored as text replaced by U+FFFD, as undecodable bytes are: a
    NUL (raw, or `=00` in an encoded-word), and lone surrogates, which charsets such as utf-7
    and raw headers (surrogateescape) can give. A message is never lost to its encoding."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


class _HTMLText(HTMLParser):
    BREAKS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style", "head"):
            self.skip += 1
        elif tag in self.BREAKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BREAKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(markup: str) -> str:
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # noqa: BLE001 - broken markup: fall back to stripping tags
        return html.unescape(re.sub(r"<[^>]+>", " ", markup))
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in "".join(parser.out).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a broken transfer encoding: take the raw text
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _body_and_attachments(msg: Message) -> tuple[str, list[dict[str, Any]]]:
    plain: str | None = None
    markup: str | None = None
    attachments = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        try:
            filename = part.get_filename()
        except Exception:  # noqa: BLE001
            filename = None
        disposition = str(part.get("Content-Disposition", "")).lower()
        if filename or disposition.startswith("attachment") or not ctype.startswith("text/"):
            data = _payload(part)
            if ctype.startswith("multipart/") or (not data and not filename):
                continue
            attachments.append({"name": _safe_name(_text_of(filename)), "content_type": _plain(ctype), "size": len(data),
                                "sha256": hashlib.sha256(data).hexdigest()})
            continue
        text = _decode(_payload(part), _charset(part))
        if ctype == "text/plain" and plain is None:
            plain = text
        elif ctype == "text/html" and markup is None:
            markup = text
    body = plain if plain and plain.strip() else html_to_text(markup) if markup else (plain or "")
    return body.strip()[:BODY_MAX], attachments


def _charset(part: Message) -> str | None:
    """The part's charset parameter, or None when reading it fails: an RFC 2231 value naming
    a charset with a NUL in it made the stdlib raise ValueError (found by the fuzzer); the text
    is then decoded as unknown (_decode), never a crash."""
    try:
        return part.get_content_charset()
    except (ValueError, LookupError, UnicodeError):
        return None


def _safe_name(name: str | None) -> str:
    """An attachment's file name without folders or control characters: anything that later
    saves attachments by name must not be steered outside its folder ("../../etc/cron.d/x")."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", (name or "").replace("\\", "/")).rsplit("/", 1)[-1].strip()
    return "(unnamed)" if name in ("", ".", "..") else name[:255]


def _sender(msg: Message) -> str:
    """Who sent a message: the addr-spec (lower-cased) of its From, when From is one mailbox
    that parses cleanly; else "" (a stranger). Replies are authorized by this address, so a
    display name never counts however much it looks like one (`bob@example.com <evil@x.y>`,
    an encoded-word, a quoted or folded name), nor do Sender and Reply-To, nor a second From
    or a second mailbox. The raw header is parsed as RFC 5322 (encoded-words are only ever a
    display name there): decoding it first would turn a name into an address."""
    from email import errors, policy  # (here: `new -` reads mail.py to tell mail from text)

    raw = [value for key, value in msg.raw_items() if key.lower() == "from"]
    if len(raw) != 1:
        return ""
    value = str(raw[0]).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    value = re.sub(r"\r?\n(?=[ \t])", "", value)  # unfold
    if len(value) > 2000 or re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
        return ""  # no sender puts a page or a control character in From
    try:
        header = policy.default.header_factory("from", value)
        mailboxes = header.addresses
    except Exception:  # noqa: BLE001 - the parser gave up: no sender it could name
        return ""
    if len(mailboxes) != 1 or any(isinstance(d, errors.InvalidHeaderDefect) for d in header.defects) \
            or any(group.display_name is not None for group in header.groups):  # (a group is no sender)
        return ""
    address = mailboxes[0].addr_spec
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or len(address) > 254 or re.search(r'[\s"<>(),;:\\\[\]]', address):
        return ""  # (a quoted local part with specials in it is legal and never anyone's address here)
    return _plain(address.lower())


def _message_ids(value: str) -> list[str]:
    return [_message_id_key(m) for m in re.findall(r"<([^<>\s]+)>", value)]


def _message_id_key(message_id: str) -> str:
    """A Message-ID as stored: as sent, unless it holds a secret (anyone chooses their own);
    then its hash, which a reply's In-Reply-To of the same ID finds all the same."""
    if redact(message_id)[0] == message_id:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


# Headers that say what a message is, as its author's client wrote them. Transport headers
# (Received, Delivered-To, Return-Path, X-...) are left out: the same message fetched again by
# another route, or saved from another mailbox, carries different ones and is still the same.
DIGEST_HEADERS = ("from", "sender", "to", "cc", "subject", "date", "in-reply-to", "references")


def message_digest(msg: Message, data: bytes) -> str:
    """What identifies a message that has no Message-ID: sha256 over its authored headers
    (unfolded, spaces collapsed) and its body (line endings and trailing spaces normalised, as
    an mbox, a Maildir file and a relay each store them differently). Two people sending the
    same words at different times differ in Date or From; the same message read twice does not.
    Never a Message-ID (it has spaces and no angle brackets), so the two keys cannot collide."""
    h = hashlib.sha256()
    headers = sorted((key.lower(), str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                     for key, value in msg.raw_items() if key.lower() in DIGEST_HEADERS)  # (a relay may reorder)
    for key, text in headers:
        h.update(f"{key}: {' '.join(text.split())}\n".encode())
    normal = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    _, _, body = normal.partition(b"\n\n")
    h.update(b"\n")
    h.update(b"\n".join(line.rstrip() for line in body.strip(b"\n").split(b"\n")))
    return "(no Message-ID) sha256:" + h.hexdigest()


def _auto_generated(msg: Message, sender: str, subject: str) -> str | None:
    """Why this message is machine-made, or None."""
    ctype = msg.get_content_type()
    if ctype == "multipart/report":
        return "delivery or read report"
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return "auto-reply"
    if any(part.get_content_type() == "multipart/digest" for part in msg.walk()):
        return "digest"
    if sender.split("@")[0].lower() in AUTO_SENDERS:
        return f"sent by {sender}"
    if AUTO_SUBJECT.match(subject):
        return "auto-reply subject"
    return None


def parse_message(data: bytes, where: str = "message 1") -> Record:
    """One message: a new ticket, a reply to thread onto one, or an ignored machine mail."""
    raw = data.decode("utf-8", "replace")
    try:
        msg = email.message_from_bytes(data)
    except Exception as e:  # noqa: BLE001 - the parser itself gave up
        return Record(where, raw, error=f"unreadable message: {e}")
    subject = _header(msg, "Subject")
    sender = _sender(msg)
    message_id = (_message_ids(_header(msg, "Message-ID")) or [None])[0]
    references = _message_ids(_header(msg, "In-Reply-To")) + _message_ids(_header(msg, "References"))
    tagged = TICKET_TAG.search(subject)
    thread = {"message_id": message_id, "references": list(dict.fromkeys(references)),
              "ticket": int(tagged.group(1)) if tagged else None, "from": sender,
              "digest": None if message_id else message_digest(msg, data)}
    name, address = parseaddr(_header(msg, "From"))  # (a lenient guess: only to know machine mail)
    why = _auto_generated(msg, address.lower() or name, subject)
    if why:
        return Record(where, raw, Signal("email", "ignore", alert=None, thread={**thread, "ignored": why}))
    if not sender and not _header(msg, "From") and not subject and not msg.get_payload():
        return Record(where, raw, error="not an email: no From, Subject or body")
    body, attachments = _body_and_attachments(msg)
    to = [addr for _, addr in getaddresses([_header(msg, "To")]) if addr]
    title = REPLY_PREFIX.sub("", TICKET_TAG.sub("", subject)).strip()
    if blank(title):  # a subject of only invisible or control characters says nothing either
        title = f"(no subject) from {sender or 'unknown sender'}"
    record = ticket_record(where, raw, "email", {
        "title": title[:TITLE_MAX],
        "description": body or None,
        "kind": "request",
        "requester": sender or None,
        # A From that names no one sender is kept as text, shown to whoever reads the ticket.
        "labels": {k: v for k, v in {"email_to": ", ".join(to)[:500],
                                     "email_from": "" if sender else _header(msg, "From")[:500]}.items() if v},
        "tags": ["email"],
    })
    if record.signal is None:
        return record
    return record._replace(signal=record.signal._replace(thread={**thread, "subject": subject, "body": body,
                                                                 "attachments": attachments}))


def parse_mail(data: bytes) -> Iterator[Record]:
    """A single message, or every message of an mbox."""
    if is_mbox(data):
        for number, message in enumerate(split_mbox(data), start=1):
            yield _parse_capped(message, f"message {number}")
    else:
        yield _parse_capped(data, "message 1")


def _parse_capped(data: bytes, where: str) -> Record:
    if len(data) > MESSAGE_MAX:
        return Record(where, data[:KEPT_MAX].decode("utf-8", "replace"),
                      error=f"message of {len(data):,} bytes: larger than {MESSAGE_MAX >> 20} MiB")
    return parse_message(data, where)
