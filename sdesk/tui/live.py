"""Live updates: the queue told of ticket changes by the database instead of polling for them,
where the desk tells (PostgreSQL: LISTEN/NOTIFY; store.tickets.pushes_changes). SQLite's queue
polls (QueueScreen.check_changes).

A thread of its own, not a Textual worker: it waits for as long as the screen is shown, and the
app's workers are what a caller waits on to know that the screen is done loading (a worker that
never ends would never let it). It holds a connection of its own, which only waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Listener:
    """Waits, in its own thread and connection, for the desk to tell of ticket changes, and then
    calls `changed()` in the app's thread: at once for the first change, then at most once per
    `gap` seconds (a stream's burst of commits is one reload, not one per commit). `listening(last)`
    is called in the app's thread each time it (re)starts listening, with the last event id as of
    then (what changed before it listened, it was not told of). A lost connection (the server
    restarted, the session ended) is said once, and it listens again on a new one."""

    def __init__(self, app: Any, changed: Callable[[], None], listening: Callable[[int], None], *,
                 gap: float = 0.25, wait: float = 0.5, retry: float = 1.0):
        self.app = app
        self.changed = changed
        self.listening = listening
        self.gap = gap  # the least time between two calls of changed()
        self.wait = wait  # how long one wait lasts: how soon stop() is seen
        self.retry = retry  # the first pause before listening again after a failure (doubled, to 8 s)
        self.told = 0  # how many times changed() was called
        self.up = threading.Event()  # set while listening
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdesk-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop within one wait; its connection closes then."""
        self._stop.set()

    def _call(self, what: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run `what` in the app's thread; False when the app or this listener is ending."""
        if self._stop.is_set():
            return False
        try:
            self.app.call_from_thread(what, *args, **kwargs)
        except RuntimeError:  # the app is no longer running
            self._stop.set()
            return False
        return True

    def _run(self) -> None:
        pause = self.retry
        lost = False
        while not self._stop.is_set():
            try:
                with self.app.store() as store:
                    last = store.tickets.listen()
                    self.up.set()
                    if lost:
                        self._call(self.app.notify, "live updates are back", severity="information",
                                   title="queue")
                    lost, pause = False, self.retry
                    self._call(self.listening, last)
                    self._listen(store)
            except Exception as e:  # any failure of the wait: said once, then listened again
                self.up.clear()
                if self._stop.is_set():
                    return
                if not lost:
                    self._call(self.app.notify, f"live updates lost ({e}); listening again", severity="warning",
                               title="queue")
                lost = True
                self._stop.wait(pause)
                pause = min(pause * 2, 8.0)
        self.up.clear()

    def _listen(self, store: Any) -> None:
        last_told = float("-inf")
        while not self._stop.is_set():
            if not store.tickets.changes(timeout=self.wait):
                continue
            early = last_told + self.gap - time.monotonic()
            if early > 0 and not self._stop.wait(early):
                store.tickets.changes(timeout=0)  # what came meanwhile is in the one reload
            last_told = time.monotonic()
            self.told += 1
            if not self._call(self.changed):
                return
