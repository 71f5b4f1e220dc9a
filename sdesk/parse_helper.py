"""Parsing bulk line input in a second process, so that one core parses while another stores.

Streamed alert intake spends about half its time parsing. For bulk input the parent starts
`python -m sdesk.parse_helper`, which inherits the input descriptor (positioned after the
parent's first read, whose bytes it gets in argv), parses exactly as ingest.parsed_chunks
does, and sends each read's records back as a frame: a header (payload size, bytes read) and
the pickled (records, more ready). Pickle, because both ends are this package and it is the
cheapest way back; the cyclic GC is paused while a frame is unpickled, since walking every
new dict would otherwise cost more than the unpickling.
"""

import base64
import gc
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from collections.abc import Callable, Iterator, Mapping

from .errors import SdeskError
from .ingest import parsed_chunks
from .intake import Record

HEADER = struct.Struct("<QQ")  # payload size, input bytes read
PIPE_SIZE = 1 << 20  # Linux lets any process have up to 1 MiB (/proc/sys/fs/pipe-max-size)


def helper_chunks(fd: int, first: bytes, progress: Callable[[int], None], fmt: str, severity: Mapping[str, str],
                  command: list[str] | None = None) -> Iterator[tuple[list[Record], bool]]:
    """ingest.jsonl_chunks for the input on `fd`, whose first read gave `first`, parsed by a
    helper process (`command` replaces the helper, for tests of its failure)."""
    # -P: the current directory is not on the path, so a folder named sdesk where the user
    # stands is never imported; this process's own sdesk is, by PYTHONPATH.
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = command or [sys.executable, "-P", "-m", "sdesk.parse_helper", fmt, json.dumps(dict(severity)),
                          base64.b64encode(first).decode()]
    # Its errors go to a file, not a pipe: a pipe nobody reads until the end could fill and stall it.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=fd, stdout=subprocess.PIPE, stderr=errors, env=env)
        _widen(proc.stdout.fileno())
        try:
            while header := proc.stdout.read(HEADER.size):
                size, read = HEADER.unpack(header) if len(header) == HEADER.size else (1, 0)
                payload = proc.stdout.read(size)
                if len(payload) < size:
                    break  # the helper died mid-frame: its exit status says so below
                progress(read)
                yield _unpickle(payload)
            if proc.wait() != 0:
                errors.seek(0)
                lines = errors.read().decode("utf-8", "replace").strip().splitlines()
                raise SdeskError(f"the parsing helper failed (exit {proc.returncode})"
                                 + (f": {lines[-1]}" if lines else ""))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _widen(pipe: int) -> None:
    """Let the helper run a whole store batch ahead: with the default 64 KiB pipe it would
    wait, about one frame ahead, while this process stores, and the two would take turns."""
    try:
        import fcntl

        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or above the system's limit: slower, still correct


def _unpickle(payload: bytes) -> tuple[list[Record], bool]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(payload)
    finally:
        if enabled:
            gc.enable()


def main() -> None:
    # Short-lived and makes no reference cycles: collecting would only cost time.
    gc.disable()
    fmt, severity, first = sys.argv[1], json.loads(sys.argv[2]), base64.b64decode(sys.argv[3])
    out = sys.stdout.buffer
    read = 0

    def progress(n: int) -> None:
        nonlocal read
        read += n

    for records, more_ready in parsed_chunks(sys.stdin.buffer, first, progress, fmt, severity):
        # Only a rejected record's raw text is ever used (kept in --rejects); the others' would
        # be most of the bytes to pickle, send and unpickle.
        records = [r if r.signal is None else r._replace(raw="") for r in records]
        payload = pickle.dumps((records, more_ready), pickle.HIGHEST_PROTOCOL)
        out.write(HEADER.pack(len(payload), read))
        out.write(payload)
        out.flush()
        read = 0


if __name__ == "__main__":
    main()
