"""Labelled tickets from a CSV file, or a .zip holding one, for `sdesk triage train|eval`."""

from __future__ import annotations

import csv
import io
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import BadInput

# Ticket bodies with quoted mail threads run long; the csv module's default limit is 128 KiB.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]
    skipped: int  # rows with an empty text or label


def read_labelled(path: Path, text_cols: Sequence[str], label_col: str) -> Labelled:
    """Rows of `path` (a .csv, or a .zip with one .csv inside) as (text, label): the text columns
    joined by newlines. A row whose text columns or label are all blank is skipped and counted."""
    if not text_cols:
        raise BadInput("--text: give at least one text column")
    from ..files import MAX_DOCUMENT, open_file

    try:
        # a regular file: a FIFO would hang here, /dev/zero never end
        raw = open_file(path, limit=MAX_DOCUMENT)
    except BadInput as e:
        raise BadInput(str(e).replace("cannot open", "cannot read", 1)) from None
    try:
        if zipfile.is_zipfile(raw):
            try:
                archive = zipfile.ZipFile(raw)
            except zipfile.BadZipFile as e:
                raise BadInput(f"{path}: not a readable zip file ({e})") from None
            with archive:
                member = archive.getinfo(_member(path, archive))
                # The size the zip declares, before a byte is unpacked: a 6 MB zip of a 3.15 GB
                # CSV ended in MemoryError after 45 s. zipfile never yields more than it declares.
                if member.file_size > MAX_DOCUMENT:
                    raise BadInput(f"{path}: {member.filename} unpacks to {member.file_size:,} bytes: "
                                   f"larger than {MAX_DOCUMENT >> 20} MiB")
                try:
                    return _read(path, archive.open(member), text_cols, label_col)
                except (zipfile.BadZipFile, EOFError, zlib.error) as e:  # a bad CRC, cut short, corrupt
                    raise BadInput(f"{path}: not a readable zip file ({e})") from None
        raw.seek(0)
        return _read(path, raw, text_cols, label_col)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        raw.close()


def _member(path: Path, archive: zipfile.ZipFile) -> str:
    # Archivers on macOS add a __MACOSX/ folder of resource forks next to the real file.
    names = [n for n in archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
    if len(names) != 1:
        raise BadInput(f"{path}: the zip must hold exactly one CSV file, it holds {len(names)}"
                       + (f" ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""))
    return names[0]


def _read(path: Path, raw: IO[bytes], text_cols: Sequence[str], label_col: str) -> Labelled:
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:  # -sig: a BOM is fine
        rows = _rows(path, text)
        header = next(rows, None)
        if header is None:
            raise BadInput(f"{path}: empty file, no header row")
        columns = [*text_cols, label_col]
        missing = [c for c in dict.fromkeys(columns) if c not in header]
        if missing:
            raise BadInput(f"{path}: no column {missing[0]!r}; the columns are: {', '.join(map(repr, header))}")
        where = [header.index(c) for c in text_cols]
        label_at = header.index(label_col)
        texts: list[str] = []
        labels: list[str] = []
        skipped = 0
        for row in rows:
            if not row:
                continue  # a blank line is no record
            body = "\n".join(part for i in where if (part := _cell(row, i).strip()))
            label = _cell(row, label_at).strip()
            if body and label:
                texts.append(body)
                labels.append(label)
            else:
                skipped += 1
        return Labelled(texts, labels, skipped)


def _cell(row: list[str], i: int) -> str:
    return row[i] if i < len(row) else ""


def _rows(path: Path, text: IO[str]) -> Iterator[list[str]]:
    reader = csv.reader(text)
    try:
        yield from reader
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a CSV file (not UTF-8 text near line {reader.line_num + 1})") from None
    except csv.Error as e:
        raise BadInput(f"{path}: not a CSV file (line {reader.line_num}: {e})") from None
