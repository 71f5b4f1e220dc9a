"""Reading files a user names (config files, imports, articles, mail folders): only what can
be read to its end, within a size.

A name is opened once, without waiting (O_NONBLOCK: a FIFO with no writer would block the
open forever), and what was opened is checked with fstat (no check-then-open race): a FIFO,
a device (/dev/zero never ends; /dev/urandom neither) or a folder is refused in one line, and
so is a file bigger than the limit, before it is read. Inside a folder the desk walks (`kb
import`, a Maildir) a symbolic link is not followed: a link to a file outside the folder would
make that file's text searchable, or a ticket."""

from __future__ import annotations

import errno
import os
import select
import stat
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, TextIO

from .errors import BadInput

MAX_BYTES = 32 << 20  # a config file, an estate, an article: a 100,000-CI cmdb.yaml is about 20 MB
MAX_DOCUMENT = 256 << 20  # an input read whole (a JSON payload, an mbox): split anything bigger

# What an OSError on a path the user named means, in words: the system's own text for the rest
# ("File name too long", "Not a directory" for a name whose folder is a file, says little).
_REASONS = {errno.ENAMETOOLONG: "a name in the path is too long", errno.ENOTDIR: "a part of the path is a file, not a folder",
            errno.ELOOP: "too many levels of symbolic links (a loop?)", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.EISDIR: "a folder, not a file",
            errno.EROFS: "a read-only file system", errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


def reason(e: OSError) -> str:
    """Why the system refused a path, in a few words (never a Python repr or an errno)."""
    return _REASONS.get(e.errno, "") or e.strerror or type(e).__name__


def status(path: str | os.PathLike, shown: object = None) -> os.stat_result | None:
    """os.stat of a path the user named, or None when nothing is there; any other answer (a name
    too long, a folder that is a file, a loop of links, no permission) is one line naming it:
    Path.exists() and is_dir() raise on some of these and call others "missing"."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadInput(f"{path if shown is None else shown}: {reason(e)}") from None
    except ValueError:  # a NUL in the name
        raise BadInput(f"{path if shown is None else shown}: a name cannot hold a NUL character") from None


def kind(mode: int) -> str:
    """What a file is, for a message: a file, a folder, a FIFO, a device..."""
    return "a file" if stat.S_ISREG(mode) else "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else \
        "not a regular file"


def make_folders(folder: Path, shown: object = None) -> list[Path]:
    """`folder` and its missing parents, or none of them: one that cannot be made (a parent is a
    file, a name too long) is one line naming `shown`, and those made before it are removed.
    Returns the folders made, parents first (for a caller whose next step fails to remove)."""
    shown = folder if shown is None else shown
    missing = []
    for candidate in (folder, *folder.parents):
        found = status(candidate, shown)
        if found is not None:
            if not stat.S_ISDIR(found.st_mode):
                raise BadInput(f"{shown}: {candidate} is {kind(found.st_mode)}, not a folder")
            break
        missing.append(candidate)
    made: list[Path] = []
    try:
        for candidate in reversed(missing):
            try:
                os.mkdir(candidate)
                made.append(candidate)
            except FileExistsError:
                if not os.path.isdir(candidate):
                    raise
                # made meanwhile by another process: theirs
    except OSError as e:
        remove_folders(made)
        raise BadInput(f"{shown}: {reason(e)}") from None
    return made


def remove_folders(made: list[Path]) -> None:
    """Undo make_folders: the folders it made, deepest first, if they are still empty."""
    for candidate in reversed(made):
        with suppress(OSError):
            os.rmdir(candidate)


_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def open_file(path: str | os.PathLike, *, shown: object = None, dir_fd: int | None = None, follow: bool = True,
              streams: bool = False, limit: int | None = None) -> BinaryIO:
    """`path` opened for reading, if it is a regular file (or, with `streams`, a pipe or FIFO:
    an input that is a stream on purpose, such as `<(tail -f ...)`), of at most `limit` bytes.
    `follow=False`: a symbolic link is refused (O_NOFOLLOW), for files found in a folder."""
    shown = path if shown is None else shown
    flags = _FLAGS if follow else _FLAGS | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as e:
        if not follow and e.errno in (errno.ELOOP, errno.EMLINK):
            raise BadInput(f"cannot open {shown}: a symbolic link (only files inside the folder are read)") from None
        raise BadInput(f"cannot open {shown}: {reason(e)}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISFIFO(st.st_mode) and streams:
            os.set_blocking(fd, True)  # now that it is open: a stream is read as it comes
        elif not stat.S_ISREG(st.st_mode):
            raise BadInput(f"cannot read {shown}: {kind(st.st_mode)}, not a regular file")
        elif limit is not None and st.st_size > limit:
            raise BadInput(f"cannot read {shown}: larger than {_size(limit)}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, *, shown: object = None, dir_fd: int | None = None, follow: bool = True,
               limit: int = MAX_BYTES) -> bytes:
    """The whole of a regular file of at most `limit` bytes (see open_file)."""
    with open_file(path, shown=shown, dir_fd=dir_fd, follow=follow, limit=limit) as f:
        return read_capped(f, path if shown is None else shown, limit)


def read_text(path: str | os.PathLike, *, shown: object = None, dir_fd: int | None = None, follow: bool = True,
              limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes (see open_file)."""
    shown = path if shown is None else shown
    data = read_bytes(path, shown=shown, dir_fd=dir_fd, follow=follow, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadInput(f"{shown}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_capped(stream: BinaryIO, shown: object, limit: int) -> bytes:
    """All of `stream` (a file that grew after its check, stdin, a pipe), refused past `limit`."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"cannot read {shown}: larger than {_size(limit)}")
    return data


def stdin_text(limit: int = MAX_BYTES) -> str:
    """Text piped in, within `limit` (`cat /dev/zero | sdesk kb add -` must not eat the memory)."""
    import sys

    data = read_capped(sys.stdin.buffer, "stdin", limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"cannot read stdin: not UTF-8 text ({e.reason} at byte {e.start})") from None


def walk(folder: Path, suffix: str) -> Iterator[tuple[str, int, str]]:
    """(path relative to `folder`, its folder's descriptor, file name) of each name ending in
    `suffix` under `folder`, walking by descriptor (os.fwalk): a symbolic link to a folder is
    not entered, so nothing outside `folder` is reached even if a link is swapped in meanwhile.
    A descriptor is open only until the walk moves on: read each file as it comes, with
    `dir_fd` and `follow=False`. `folder` itself may be a link (the user named it)."""
    top = os.path.realpath(folder)
    for where, folders, names, dir_fd in os.fwalk(top):
        folders.sort()
        for name in sorted(names):
            if name.endswith(suffix):
                yield os.path.normpath(os.path.join(os.path.relpath(where, top), name)), dir_fd, name


def open_output(path: str | os.PathLike) -> TextIO:
    """`path` opened to write text (created or emptied), without waiting: a FIFO that no
    process reads would block the open forever, so it is refused (ENXIO); one that is read,
    a terminal or /dev/null is written as any file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as e:
        why = "a FIFO that nothing reads" if e.errno == errno.ENXIO else reason(e)
        raise BadInput(f"cannot open {path}: {why}") from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "w", encoding="utf-8")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def more_ready(stream: BinaryIO) -> bool:
    """Whether more input can be read without waiting."""
    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError, TypeError):
        return True  # in memory, or not selectable (a pipe on Windows): batch by size only


def cache_dir() -> Path:
    """`SDESK_CACHE`, else the platform's user cache folder for sdesk (checked config files'
    stamps, the KB's vectors): what can be thrown away and made again."""
    given = os.environ.get("SDESK_CACHE")
    if given:
        return Path(given)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sdesk", appauthor=False))
