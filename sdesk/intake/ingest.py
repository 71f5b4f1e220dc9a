"""Streaming intake: read records as they arrive, store them in batches, report each one.

A read returns what the producer has written so far, so a slow producer (`tail -f | sdesk new
--jsonl`) gets each ticket stored as soon as its line arrives, and a fast one gets batches of
BATCH records per transaction. Good records are stored, bad ones reported with their line and
kept (in `--rejects`): one bad record never costs the good ones around it.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from ..domain.redact import redact
from ..files import more_ready
from .formats import SEVERITY, Record, parse_document, parse_jsonl
from .service import Intake

if TYPE_CHECKING:
    from ..domain.signals import Signal
    from ..store import Store

    Result = tuple[int | None, str]  # what Store.receive gives for each signal: ticket id, outcome

BATCH = 4000  # records per transaction: big enough to amortise the commit, small enough to stream
READ_SIZE = 1 << 16


@dataclass
class Summary:
    outcomes: dict[str, int] = field(default_factory=dict)  # created, deduplicated, resolved, ...
    rejected: list[Record] = field(default_factory=list)


def jsonl_chunks(stream: BinaryIO, progress: Callable[[int], None], fmt: str = "jsonl",
                 severity: Mapping[str, str] = SEVERITY, helpers: int | None = None) -> Iterator[tuple[list[Record], bool]]:
    """Parsed records of each read from `stream`, and whether more input is ready right now.
    read1 returns what one read of the pipe or file gives, without waiting for more.

    Input is parsed here until it proves to be bulk (a read fills the buffer and more is
    ready); the rest of it goes to helper processes that parse while this one stores
    (parse_helper.py): parsing is half the work of an alert. `helpers`: how many (0: never;
    None: one per core)."""
    tail, number = b"", 0
    data = stream.read1(READ_SIZE)
    while data:
        if helpers != 0 and len(data) == READ_SIZE and os.name == "posix" and more_ready(stream):
            from .parse_helper import helper_chunks, helper_count

            yield from helper_chunks(stream, data, progress, fmt, severity, helpers or helper_count(), tail, number)
            return
        progress(len(data))
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        yield list(parse_jsonl(lines, start=number + 1, fmt=fmt, severity=severity)), more_ready(stream)
        number += len(lines)
        data = stream.read1(READ_SIZE)
    if tail:
        yield list(parse_jsonl([tail], start=number + 1, fmt=fmt, severity=severity)), False


def document_records(data: bytes, fmt: str, severity: Mapping[str, str] = SEVERITY) -> tuple[str, list[Record]]:
    """The records of one whole input (a JSON payload, an email or an mbox) and its format."""
    if fmt == "email" or (fmt == "auto" and data.lstrip()[:1] not in (b"{", b"[")):
        from .mail import looks_like_email, parse_mail

        if fmt == "email" or looks_like_email(data):
            return "email", list(parse_mail(data))
    try:
        text, undecoded = data.decode(), False
    except UnicodeDecodeError:
        # Bytes that are not UTF-8 reject the records they are in, not the whole input, and are
        # never stored as U+FFFD: surrogateescape keeps them apart for parse_document to find.
        text, undecoded = data.decode("utf-8", "surrogateescape"), True
    return parse_document(text, fmt, severity, undecoded=undecoded)


def kept_copy(raw: str) -> str:
    """What a rejects file keeps of a rejected record: secrets redacted (the rejects are files
    beside the desk, read and passed around), and anything that is not text shown as an escape."""
    return redact(raw.encode("utf-8", "backslashreplace").decode())[0]


UNSTORABLE = "text that cannot be stored (a lone surrogate)"


def receive_apart(receive: Callable[[list[Signal]], list[Result]], signals: list[Signal]) -> list[Result | None]:
    """receive(signals); or, when some text in them cannot be encoded (a lone surrogate that no
    parser caught: they find what JSON and email can carry), each half again, down to the
    signals that cannot be stored alone: None for each of those. Each attempt is a transaction
    of its own, so a failed one leaves nothing."""
    try:
        return receive(signals)
    except (UnicodeEncodeError, TypeError) as e:  # sqlite3 and hashing; orjson's JSONEncodeError
        if "surrogates not allowed" not in str(e):
            raise
        if len(signals) == 1:
            return [None]
        half = len(signals) // 2
        return receive_apart(receive, signals[:half]) + receive_apart(receive, signals[half:])


def expand_paths(paths: list[Path | None]) -> list[Path | None]:
    """Folders become their files: a Maildir's new/ and cur/, or every file in it, sorted. Only
    regular files: a symbolic link in a mail folder could make any file the desk can read a
    ticket, and a FIFO there would hang the intake."""
    out: list[Path | None] = []
    for path in paths:
        if path is not None and path.is_dir():
            folders = [path / "new", path / "cur"] if (path / "cur").is_dir() else [path]
            out += sorted(f for folder in folders if folder.is_dir() for f in folder.iterdir()
                          if f.is_file() and not f.is_symlink())
        else:
            out.append(path)
    return out


def ingest(
    store: Store,
    chunks: Iterable[tuple[list[Record], bool]],
    *,
    actor: str,
    on_stored: Callable[[Record, int | None, str], None],
    on_rejected: Callable[[Record], None],
    on_batch: Callable[[], None] = lambda: None,
    rejects: IO[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Summary:
    """Store the records of `chunks` (`options` are Store.receive's); call on_stored /
    on_rejected for each, in input order, and on_batch after each transaction (the CLI
    flushes its output there)."""
    summary = Summary()

    def receive(signals: list[Signal]) -> list[Result]:
        return Intake(store).receive(signals, actor=actor, **(options or {}))

    def store_batch(batch: list[Record]) -> list[Result | None]:
        good = [r.signal for r in batch if r.signal is not None]
        return receive_apart(receive, good) if good else []

    def report(batch: list[Record], stored: list[Result | None]) -> None:
        results = iter(stored)
        for record in batch:
            result = next(results) if record.signal is not None else None
            if result is None:
                # The reason may quote the input (a field name): redacted too, as it is printed.
                record = record._replace(signal=None, error=redact(record.error or UNSTORABLE)[0])
                summary.rejected.append(record)
                if rejects is not None and record.raw:
                    rejects.write(kept_copy(record.raw) + "\n")
                on_rejected(record)
                continue
            ticket_id, outcome = result
            summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
            on_stored(record, ticket_id, outcome)
        on_batch()

    with _fewer_collections():
        pending: list[Record] = []
        reading = iter(chunks)
        while True:
            try:
                records, ready = next(reading)
            except StopIteration:
                break
            except BaseException:
                if pending:  # reading failed part way (a helper that died): what was read is kept
                    report(pending, store_batch(pending))
                raise
            pending += records
            if len(pending) >= BATCH or not ready:
                report(pending, store_batch(pending))
                pending = []
        if pending:
            report(pending, store_batch(pending))
    return summary


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A stream makes hundreds of thousands of records, plain data without reference cycles;
    at its default pace (every 700 allocations) the cyclic collector spends ~5% of a stream
    walking them and everything imported before. Collect less often, and only what is new."""
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(100_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
