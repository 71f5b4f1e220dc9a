"""Parsing bulk line input in helper processes, so that other cores parse while one stores.

Streamed alert intake spends about half its time parsing. For bulk input the parent starts
helpers (`python -m sdesk.intake.parse_helper`), one per core it may use, up to four. A thread of the
parent reads the input and hands it out, cut at line ends, to each helper in turn: a header
(the number of lines before it, input bytes read, whether more input is ready, size) and the
lines. Each helper parses exactly as ingest.jsonl_chunks does and sends back a frame per
piece: a header (payload size, input bytes read) and the pickled (records, more ready). The
parent takes the frames from the helpers in the same turn, so records come in input order.
Pickle, because both ends are this package and it is the cheapest way back; the cyclic GC is
paused while a frame is unpickled, since walking every new dict would otherwise cost more
than the unpickling.
"""

import copyreg
import gc
import io
import json
import os
import pickle
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import IO, TYPE_CHECKING, BinaryIO

from ..domain.signals import Alert, Signal
from ..errors import SdeskError
from ..files import more_ready
from .formats import Record, parse_jsonl

if TYPE_CHECKING:
    import subprocess

PIECE = struct.Struct("<QQ?Q")  # lines before it, input bytes read, more input ready, size
FRAME = struct.Struct("<QQ")  # payload size, input bytes read
PIPE_SIZE = 1 << 20  # Linux lets any process have up to 1 MiB (/proc/sys/fs/pipe-max-size)
MAX_HELPERS = 4  # beyond this the storing process is the bottleneck anyway
# The most read at a time: each piece costs the reading thread the GIL, twice, which it may
# wait milliseconds for while the storing thread runs Python; 64 KiB pieces starved the helpers.
PIECE_SIZE = 1 << 18

Chunks = Iterator[tuple[list[Record], bool]]


def helper_count() -> int:
    """One helper per core this process may use, within MAX_HELPERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_HELPERS, cores))


def helper_chunks(stream: BinaryIO, data: bytes, progress: Callable[[int], None], fmt: str,
                  severity: Mapping[str, str], helpers: int, tail: bytes = b"", lines: int = 0,
                  command: list[str] | None = None) -> Chunks:
    """ingest.jsonl_chunks for the rest of `stream`, from `data` (already read) on, after
    `lines` lines and the start of one (`tail`), parsed by `helpers` processes (`command`
    replaces them, for tests of their failure)."""
    with ExitStack() as stack:
        procs = [stack.enter_context(_helper(command or _command(fmt, severity))) for _ in range(helpers)]
        stdins = [proc.stdin for proc, _ in procs]
        failed: list[BaseException] = []
        # A daemon: if storing fails, the thread may be waiting for a slow producer, and must
        # not keep the process alive.
        feeder = threading.Thread(target=_feed, args=(stream, data, tail, lines, stdins, failed),
                                  daemon=True)
        try:
            _widen(stream.fileno())
        except (OSError, ValueError):
            pass  # not a file (in memory)
        feeder.start()
        frames = [_frames(proc, errors) for proc, errors in procs]
        turn = 0
        while (frame := next(frames[turn], None)) is not None:
            read, parsed = frame
            progress(read)
            yield parsed
            turn = (turn + 1) % helpers
        for rest in frames:  # each has ended where this turn did: check how they ended
            if next(rest, None) is not None:
                raise SdeskError("the parsing helpers lost their turn")  # a bug, never the input
        feeder.join()
        if failed:
            raise SdeskError(f"cannot read the input: {failed[0]}")


def _feed(stream: BinaryIO, data: bytes, tail: bytes, lines: int, stdins: list[BinaryIO],
          failed: list[BaseException]) -> None:
    """Hand the input, from `data` (already read) on, to each helper in turn, in pieces of
    whole lines (the last line may have no end); then close their input."""
    turn = 0
    try:
        while data:
            block = tail + data
            cut = block.rfind(b"\n") + 1
            ready = more_ready(stream)
            _send(stdins[turn], lines, len(data), ready, block[:cut])
            lines, tail, turn = lines + block.count(b"\n"), block[cut:], (turn + 1) % len(stdins)
            data = stream.read1(PIECE_SIZE)
        if tail:
            _send(stdins[turn], lines, 0, False, tail)
    except BrokenPipeError:
        pass  # a helper died: its exit status says why
    except BaseException as e:  # reading the input failed: said once the helpers are done
        failed.append(e)
    finally:
        for stdin in stdins:
            try:
                stdin.close()
            except OSError:
                pass


def _send(stdin: BinaryIO, lines: int, read: int, ready: bool, piece: bytes) -> None:
    stdin.write(PIECE.pack(lines, read, ready, len(piece)))
    stdin.write(piece)
    stdin.flush()


def _command(fmt: str, severity: Mapping[str, str]) -> list[str]:
    # -P: the current directory is not on the path, so a folder named sdesk where the user
    # stands is never imported; this process's own sdesk is, by PYTHONPATH.
    return [sys.executable, "-P", "-m", "sdesk.intake.parse_helper", fmt, json.dumps(dict(severity))]


@contextmanager
def _helper(command: list[str]) -> Iterator[tuple["subprocess.Popen", IO[bytes]]]:
    """A helper process and the file its errors go to; it is killed if still running at the end."""
    import subprocess  # here: a helper itself needs neither these nor their import time
    import tempfile

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    # Its errors go to a file, not a pipe: a pipe nobody reads until the end could fill and stall it.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        _widen(proc.stdin.fileno())
        _widen(proc.stdout.fileno())
        try:
            yield proc, errors
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _frames(proc: "subprocess.Popen", errors: IO[bytes]) -> Iterator[tuple[int, tuple[list[Record], bool]]]:
    """A helper's frames: (input bytes read, (records, more ready)); its failure is one
    SdeskError after its last whole frame."""
    while header := proc.stdout.read(FRAME.size):
        size, read = FRAME.unpack(header) if len(header) == FRAME.size else (1, 0)
        payload = proc.stdout.read(size)
        if len(payload) < size:
            break  # the helper died mid-frame: its exit status says so below
        yield read, _unpickle(payload)
    if proc.wait() != 0:
        errors.seek(0)
        lines = errors.read().decode("utf-8", "replace").strip().splitlines()
        raise SdeskError(f"the parsing helper failed (exit {proc.returncode})" + (f": {lines[-1]}" if lines else ""))


def _widen(pipe: int) -> None:
    """A pipe of PIPE_SIZE: with the default 64 KiB a helper would wait, about one frame ahead,
    while this process stores, and the two would take turns; and the input's reads would be
    small pieces (see PIECE_SIZE)."""
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


def _rebuilt(cls: type) -> Callable[[tuple], tuple]:
    return lambda value: (tuple.__new__, (cls, tuple(value)))


# Records, signals and alerts (named tuples) pickled as tuple.__new__(cls, values): pickle's own
# way calls a Python method per tuple to pickle it and another to unpickle it.
_DISPATCH = {**copyreg.dispatch_table, **{cls: _rebuilt(cls) for cls in (Record, Signal, Alert)}}


def _pickled(value: object) -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(value)
    return out.getvalue()


def parse_piece(piece: bytes, before: int, fmt: str, severity: Mapping[str, str]) -> list[Record]:
    """The records of a piece of whole lines (the last may have no end), `before` lines in."""
    lines = piece.split(b"\n") if piece else []
    if piece.endswith(b"\n"):
        lines.pop()
    return list(parse_jsonl(lines, start=before + 1, fmt=fmt, severity=severity))


def main() -> None:
    # Short-lived and makes no reference cycles: collecting would only cost time.
    gc.disable()
    fmt, severity = sys.argv[1], json.loads(sys.argv[2])
    source, out = sys.stdin.buffer, sys.stdout.buffer
    while header := source.read(PIECE.size):
        before, read, ready, size = PIECE.unpack(header)
        payload = _pickled((parse_piece(source.read(size), before, fmt, severity), ready))
        out.write(FRAME.pack(len(payload), read))
        out.write(payload)
        out.flush()


if __name__ == "__main__":
    main()
