"""The runner's side of the operating system: whether a run's recorded process still lives
(by pid and its start time in /proc, so a reused pid is not mistaken for it), stopping the
process group a dead run's command left behind, and who this process is. The store records
runs and asks through `LOCAL` (storage/runbooks.Processes); it never reads /proc or signals."""

from __future__ import annotations

import functools
import os
from typing import Any


def proc_start(pid: int) -> str | None:
    """When a process started (Linux: clock ticks since boot), to tell it from a later process
    that reuses its pid; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int, start: str | None) -> bool:
    if start is not None:
        return proc_start(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, start: str | None) -> None:
    """Stop the process group a dead run's command led, if it is still that group: its
    leader alive with the same start time, or gone while the group lives on (a pid is not
    reused while a group bears it)."""
    import signal
    import time

    leader = proc_start(pgid)
    if leader is not None and start is not None and leader != start:
        return  # the pid belongs to another process now
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        for _ in range(20):
            time.sleep(0.05)
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return


@functools.cache
def hostname() -> str:
    import socket  # (1.7 ms: only when a run starts or is looked at, never on sdesk new)

    return socket.gethostname()


def this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": hostname(), "proc_start": proc_start(pid)}




class Local:
    """This host's processes, as the store's runbook part asks about them."""

    @property
    def host(self) -> str:
        return hostname()

    def alive(self, pid: int, start: str | None) -> bool:
        return alive(pid, start)

    def stop_group(self, pgid: int, start: str | None) -> None:
        stop_group(pgid, start)

    def this_process(self) -> dict[str, Any]:
        return this_process()


LOCAL = Local()
