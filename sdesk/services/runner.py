"""Running a runbook: from a ticket to a plan (`prepare`), and a plan to real subprocesses
(`execute`). Each command runs in its own process group, so that a timeout or Ctrl-C stops
everything it started, with its timeout, retries with backoff and expected exit codes. Output is
capped and redacted; every step is recorded through the store as it happens, so a run killed
mid-step still shows how far it got."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..domain import clock, lifecycle
from ..domain.redact import redact
from ..domain.runbooks import Runbook, check_runnable, describe, params_env, plan, resolve_params
from ..errors import BadInput, Conflict
from ..storage.runbooks import lock_key
from .processes import proc_start

if TYPE_CHECKING:
    from ..store import Store

OUTPUT_CAP = 64 * 1024  # characters of a step's output kept on the run: the head and the tail
MAX_BACKOFF = 300.0
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a command being stopped

Echo = Callable[[str], None]
Confirm = Callable[[str], bool]


class Prepared(NamedTuple):
    runbook: Runbook
    ticket: dict[str, Any]
    plan: dict[str, Any]
    lock_key: str


# -- preparing ---------------------------------------------------------------------------------------


def prepare(store: Store, runbook: Runbook, ticket_id: int, given: Mapping[str, str]) -> Prepared:
    """Everything a run needs, checked before any step runs: the ticket it applies to, its
    parameters, its commands on PATH, and its secrets present."""
    from ..domain.plain import readable
    from ..triage import values_of

    check_runnable(runbook)
    ticket = store.tickets.get_or_raise(ticket_id=ticket_id)
    if runbook.applies is not None:
        values = values_of(ticket, {}, store.tickets.context(ticket_id=ticket_id) or {}, clock.now())
        if not runbook.applies(values):
            raise Conflict(f"runbook {runbook.name} does not apply to {lifecycle.ref(ticket_id)} "
                           f"(applies_to: {readable(runbook.applies_to)})")
    ci = _ci(store, ticket.get("ci"))
    params = resolve_params(runbook, ticket, ci, given)
    the_plan = plan(runbook, lifecycle.ref(ticket_id), params)
    folder = Path(runbook.path).parent
    for ref in the_plan["secrets"].values():
        if ref[0] == "file":
            ref[1] = str(folder / ref[1])  # relative to the runbook's file
    load_secrets(the_plan)
    return Prepared(runbook, ticket, the_plan, lock_key(ticket.get("ci"), ticket.get("fingerprint"), ticket_id))


def _ci(store: Store, name: str | None) -> dict[str, Any] | None:
    from ..errors import NotFound

    if not name:
        return None
    try:
        return store.cmdb.ci_get(name=name)
    except NotFound:
        return None


def load_secrets(the_plan: Mapping[str, Any]) -> dict[str, str]:
    """The values of the secrets a plan references, read now and never stored."""
    values = {}
    for name, (kind, ref) in the_plan["secrets"].items():
        if kind == "env":
            value = os.environ.get(ref)
            if value is None:
                raise BadInput(f"secret {name}: the environment variable {ref} is not set")
        else:
            from ..files import read_text

            try:
                value = read_text(ref, limit=1 << 16).rstrip("\r\n")  # a FIFO or /dev/zero must not hang a run
            except BadInput as e:
                raise BadInput(f"secret {name}: {e}") from None
        if len(value) < 4:
            raise BadInput(f"secret {name}: shorter than 4 characters, too short to be kept out of recorded output")
        values[name] = value
    return values


# -- executing ---------------------------------------------------------------------------------------


class _Output:
    """A command's output as it arrives: echoed live by line, kept up to OUTPUT_CAP bytes (the
    head and the tail), read in chunks so that one huge line costs no more memory than many."""

    HEAD = OUTPUT_CAP // 4

    def __init__(self, echo: Echo | None):
        self.echo = echo
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.partial = b""

    def add(self, data: bytes) -> None:
        if self.echo is not None:
            *lines, self.partial = (self.partial + data).split(b"\n")
            if len(self.partial) > 4096:
                lines, self.partial = [*lines, self.partial], b""
            for line in lines:
                self.echo(line.decode("utf-8", "replace"))
        room = self.HEAD - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        extra = len(self.tail) - (OUTPUT_CAP - self.HEAD)
        if extra > 0:
            del self.tail[:extra]
            self.dropped += extra

    def note(self, text: str) -> None:
        self.flush()
        self.add(text.encode())

    def flush(self) -> None:
        if self.partial and self.echo is not None:
            self.echo(self.partial.decode("utf-8", "replace"))
        self.partial = b""

    def text(self) -> str:
        cut = f"\n[... {self.dropped} bytes cut ...]\n".encode() if self.dropped else b""
        return (bytes(self.head) + cut + bytes(self.tail)).decode("utf-8", "replace")


class _Result(NamedTuple):
    status: str  # ok, failed, timeout
    exit_code: int | None
    attempts: int
    duration_ms: int
    output: str


class _Stopped(Exception):
    """The kill switch went on while the run ran."""


def _pump(stream: Any, output: _Output) -> None:
    fd = stream.fileno()
    try:
        while chunk := os.read(fd, 65536):
            output.add(chunk)
    finally:
        stream.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop a command and everything it started: SIGTERM to its group, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _once(command: Mapping[str, Any], env: dict[str, str], timeout: float, codes: list[int],
          output: _Output, started: Callable[[int], None]) -> tuple[str, int | None]:
    argv = command["argv"] if command.get("argv") else ["sh", "-c", command["shell"]]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    except OSError as e:
        output.note(f"cannot run {argv[0]}: {e.strerror or e}\n")
        return "failed", 127
    reader = threading.Thread(target=_pump, args=(proc.stdout, output), daemon=True)
    reader.start()
    try:
        started(proc.pid)
        code: int | None = proc.wait(timeout=timeout)
        status = "ok" if code in codes else "failed"
    except subprocess.TimeoutExpired:
        _stop(proc)
        status, code = "timeout", None
    except BaseException:
        _stop(proc)
        reader.join(1)
        raise
    reader.join(5)
    if reader.is_alive():  # a process it started holds the output open: not waited for
        output.note("[output after the command ended is not kept: a process it started still holds it]\n")
    if status == "timeout":
        output.note(f"[timed out after {timeout:g}s: stopped]\n")
    output.flush()
    return status, code


def _redacted(text: str, secrets: Mapping[str, str]) -> str:
    for value in secrets.values():
        if len(value) >= 4:
            text = text.replace(value, "[REDACTED:secret]")
    return redact(text)[0]


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, a stopping service manager) ends a run as Ctrl-C does: recorded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Execution:
    """One process's share of a run: from the step the run is at to its end, or to a step that
    waits for someone."""

    def __init__(self, store: Store, run_id: int, plan: dict[str, Any], *, actor: str, secrets: Mapping[str, str],
                 echo: Echo | None = None, confirm: Confirm | None = None):
        self.store = store
        self.run = store.runbooks.run_get(run_id)
        self.id = run_id
        self.plan = plan  # as planned: the run's record keeps it redacted
        self.dry = self.run["dry_run"]
        self.actor = actor
        self.secrets = secrets
        self.echo = echo
        self.confirm = confirm
        self.seq = len(self.run["steps"])
        self.env = {**os.environ, "SDESK_RUN": str(run_id), "SDESK_RUNBOOK": self.plan["runbook"],
                    "SDESK_TICKET": lifecycle.ref(self.run["ticket_id"]), **params_env(self.plan["params"])}
        if self.dry:
            self.env["SDESK_DRY_RUN"] = "1"

    def say(self, message: str) -> None:
        if self.echo is not None:
            self.echo(message)

    def go(self) -> dict[str, Any]:
        steps = self.plan["steps"]
        current = None
        with _terminate_as_interrupt():
            try:
                for index in range(self.run["step"], len(steps)):
                    current = steps[index]
                    self._check_switch()
                    self.say(f"[{index + 1}/{len(steps)}] {current['id']}: {describe(current, self.dry)}")
                    if not self._step(index, current):
                        return self.store.runbooks.run_get(self.id)
                self.store.runbooks.run_finish(self.id, status="succeeded", actor=self.actor)
            except _Stopped as e:
                self.store.runbooks.run_finish(self.id, status="stopped", reason=str(e), actor=self.actor)
                self.say(f"stopped: {e}")
            except KeyboardInterrupt:
                where = f" during step {current['id']}" if current else ""
                self.store.runbooks.run_finish(self.id, status="interrupted",
                                               reason=f"interrupted (Ctrl-C or SIGTERM){where}", actor=self.actor)
                raise
            except Exception as e:
                # Recorded as what it is, not left running until a later command reaps it.
                self.store.runbooks.run_finish(self.id, status="failed",
                                               reason=f"error in step {current['id'] if current else '?'}: {e}",
                                               actor=self.actor)
                raise
        return self.store.runbooks.run_get(self.id)

    def _step(self, index: int, step: dict[str, Any]) -> bool:
        """Run one step; False when the run ends or waits here."""
        kind = step["kind"]
        if kind in ("run", "check"):
            command = step["dry_run"] if self.dry else step
            if command is None:
                self._record(step, "skipped", index, output="no dry_run variant: not run in a dry run")
                return True
            result = self._command(step, command, "main", index)
            if result.status == "ok":
                return True
            if kind == "check" and result.status == "failed" and result.exit_code != 127:
                self.store.runbooks.run_finish(self.id, status="stopped", actor=self.actor,
                                      reason=f"check {step['id']} did not pass (exit {result.exit_code}): "
                                             "nothing more to do")
                self.say(f"stopped: check {step['id']} did not pass")
                return False
            why = f"timed out after {step['timeout']:g}s" if result.status == "timeout" else f"exit {result.exit_code}"
            rollback = self._rollback()
            self.store.runbooks.run_finish(self.id, status="failed", reason=f"step {step['id']} failed ({why})",
                                           rollback=rollback, actor=self.actor)
            self.say(f"failed: step {step['id']} ({why})" + (f"; rollback {rollback}" if rollback else ""))
            return False
        if kind == "resolve":
            if self.dry:
                self._record(step, "skipped", index, output=f"would resolve ({step['code']}): {step['text']}")
            elif self.store.runbooks.run_resolve(self.id, text=step["text"], code=step["code"], actor=self.actor):
                self._record(step, "ok", index, output=f"resolved ({step['code']}): {step['text']}")
                self.say(f"resolved {lifecycle.ref(self.run['ticket_id'])}")
            else:
                self._record(step, "skipped", index, output="the ticket was already resolved")
            return True
        if self.dry:
            what = "would wait for approval by another user" if kind == "approve" else "would ask to confirm"
            self._record(step, "skipped", index, output=f"{what}: {step['text']}")
            return True
        if kind == "manual" and self.confirm is not None:
            if self.confirm(step["text"]):
                self._record(step, "confirmed", index)
                return True
            self.store.runbooks.run_finish(self.id, status="stopped", reason=f"step {step['id']} was not confirmed",
                                           actor=self.actor)
            return False
        waiting_for = "approval" if kind == "approve" else "confirmation"
        self.store.runbooks.run_wait(self.id, step=index, waiting_for=waiting_for, actor=self.actor)
        self.say(f"waiting for {waiting_for}: sdesk runbook approve {self.id}"
                 + (f" (by someone other than {self.run['actor']})" if kind == "approve" else ""))
        return False

    def _check_switch(self) -> None:
        reason = None if self.dry else self.store.runbooks.run_disabled(self.plan["runbook"])
        if reason:
            raise _Stopped(f"stopped by the kill switch: {reason}")

    def _record(self, step: dict[str, Any], status: str, index: int, output: str = "") -> None:
        self.store.runbooks.run_step(self.id, seq=self.seq, step=step, status=status, next_step=index + 1,
                                     actor=self.actor, output=output)
        self.seq += 1

    def _command(self, step: dict[str, Any], command: dict[str, Any], phase: str, index: int | None) -> _Result:
        seq, self.seq = self.seq, self.seq + 1
        shown = describe({**step, "dry_run": command}, dry_run=True).split(": ", 1)[1]
        self.store.runbooks.run_step_begin(self.id, seq=seq, step=step, phase=phase, command=shown, actor=self.actor)
        env = {**self.env, **step["env"], **self.secrets}
        attempts = step["retries"] + 1
        started = time.monotonic()
        output = _Output(None if self.echo is None else lambda line: self.say(f"  | {_redacted(line, self.secrets)}"))
        status, code, attempt = "failed", None, 0

        def running(pid: int) -> None:
            self.store.runbooks.run_step_process(self.id, seq=seq, pid=pid, start=proc_start(pid), actor=self.actor)

        try:
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    delay = min(step["backoff"] * 2 ** (attempt - 2), MAX_BACKOFF)
                    output.note(f"[attempt {attempt} of {attempts} in {delay:g}s]\n")
                    time.sleep(delay)
                    self._check_switch()
                status, code = _once(command, env, step["timeout"], step["exit_codes"], output, running)
                if status == "ok":
                    break
        except (KeyboardInterrupt, _Stopped) as e:
            self.store.runbooks.run_step_end(self.id, seq=seq,
                                             status="interrupted" if isinstance(e, KeyboardInterrupt) else "stopped",
                                             attempts=attempt, duration_ms=int((time.monotonic() - started) * 1000),
                                             output=_redacted(output.text(), self.secrets), actor=self.actor)
            raise
        result = _Result(status, code, attempt, int((time.monotonic() - started) * 1000),
                         _redacted(output.text(), self.secrets))
        self.store.runbooks.run_step_end(self.id, seq=seq, status=status, exit_code=code, attempts=attempt,
                                duration_ms=result.duration_ms, output=result.output,
                                next_step=index + 1 if index is not None and status == "ok" else None, actor=self.actor)
        mark = "ok" if status == "ok" else status
        self.say(f"  {mark}: exit {code}, {result.duration_ms} ms" + (f", {attempt} attempts" if attempt > 1 else ""))
        return result

    def _rollback(self) -> str | None:
        """The on_failure steps (their dry-run variants in a dry run); 'succeeded' or 'failed'."""
        steps = self.plan["on_failure"]
        if not steps:
            return None
        self.say(f"rolling back: {len(steps)} step(s)")
        ok = True
        for step in steps:
            command = step["dry_run"] if self.dry else step
            if command is None:
                continue
            ok = self._command(step, command, "rollback", None).status == "ok" and ok
        return "succeeded" if ok else "failed"


def start(store: Store, prepared: Prepared, *, actor: str, dry_run: bool, automated: bool = False,
          queued_id: int | None = None, echo: Echo | None = None, confirm: Confirm | None = None) -> dict[str, Any]:
    """Open the run (refused by the kill switch, the lock or the throttle: Conflict) and run it
    until it ends or waits."""
    run_id, refused = store.runbooks.run_open(runbook=prepared.runbook.name, ticket_id=prepared.ticket["id"],
                                     lock_key=prepared.lock_key, throttle=prepared.runbook.throttle, plan=prepared.plan,
                                     dry_run=dry_run, automated=automated, actor=actor, queued_id=queued_id)
    if refused:
        raise Conflict(f"run {run_id} refused: {refused}")
    return Execution(store, run_id, prepared.plan, actor=actor, secrets=load_secrets(prepared.plan), echo=echo,
                     confirm=confirm).go()


def resume(store: Store, runbook: Runbook, run_id: int, *, actor: str, echo: Echo | None = None,
           confirm: Confirm | None = None) -> dict[str, Any]:
    """Approve (or confirm) the step a run waits on, and go on with it here. The plan is made
    again from the runbook and the run's parameters, and must be the one approved: a runbook
    edited since is refused rather than run unseen."""
    import orjson

    from ..storage.runbooks import stored_plan

    waiting = store.runbooks.run_get(run_id)
    if waiting["status"] != "waiting":
        raise Conflict(f"run {run_id} is {waiting['status']}, not waiting for an approval")
    given = {k: v for k, v in waiting["plan"]["params"].items() if v is not None}
    again = prepare(store, runbook, waiting["ticket_id"], given).plan
    if orjson.loads(orjson.dumps(stored_plan(again))) != waiting["plan"]:
        raise Conflict(f"runbook {runbook.name} changed since run {run_id} was planned: reject it and start a new run")
    store.runbooks.run_approve(run_id, actor=actor)
    return _fulfilled(store, Execution(store, run_id, again, actor=actor, secrets=load_secrets(again), echo=echo,
                                       confirm=confirm).go(), actor)


def _fulfilled(store: Store, run: dict[str, Any], actor: str) -> dict[str, Any]:
    """A run that ended: the catalog request it fulfils (if any) is fulfilled or failed."""
    if run.get("status") not in ("queued", "running", "waiting"):
        store.requests.fulfilment_ended(run, actor=actor)
    return run


def run_queued(store: Store, runbooks: Mapping[str, Runbook], *, actor: str, echo: Echo | None = None,
               only: int | None = None) -> list[dict[str, Any]]:
    """Run the runbooks triage (or a catalog request) queued (automation): each still checked,
    locked and throttled like a run a person starts; one that cannot start is recorded as
    refused. `only`: that queued run alone."""
    done = []
    for queued in store.runbooks.queued_runs():
        if only is not None and queued["id"] != only:
            continue
        runbook = runbooks.get(queued["runbook"])
        try:
            if runbook is None or not runbook.automatic:
                raise Conflict(f"runbook {queued['runbook']} is not in the desk config as safe_for_automation, or "
                               "does not load (sdesk runbook validate)")
            # A catalog request's run has its parameters from the answers (checked here again).
            prepared = prepare(store, runbook, queued["ticket_id"], queued.get("params") or {})
            done.append(_fulfilled(store, start(store, prepared, actor=actor, dry_run=False, automated=True,
                                                queued_id=queued["id"], echo=echo), actor))
        except (BadInput, Conflict) as e:
            store.runbooks.run_refuse_queued(queued["id"], reason=str(e), actor=actor)
            if echo is not None:
                echo(f"automation: {queued['runbook']} on {lifecycle.ref(queued['ticket_id'])}: {e}")
            done.append(_fulfilled(store, store.runbooks.run_get(queued["id"]), actor))
    return done


def run_automation(store: Store, runbooks: Callable[[], Mapping[str, Runbook]], automate: frozenset[str] | None = None,
                   *, echo: Echo) -> list[dict[str, Any]]:
    """Run the runbooks triage queued for arriving tickets, whichever way they came in (the
    CLI, `serve`): after an intake that could queue some (`automate`: the runbooks it may run;
    empty: none, nothing to look for), or whatever is queued (None, for `sdesk tick`).
    `runbooks` loads the desk's runbooks, only when something is queued. Not from inside a
    runbook step: a runbook whose command re-fires its own alert must not start itself again
    from within; its queued run waits for the next `sdesk tick`, where the throttle sees it."""
    if os.environ.get("SDESK_RUN") or automate is not None and not automate:
        return []
    if not store.runbooks.queued_runs():
        return []
    done = run_queued(store, runbooks(), actor="automation", echo=echo)
    for run in done:
        echo(f"automation: run {run['id']} ({run['runbook']}) on {lifecycle.ref(run['ticket_id'])}: {run['status']}")
    return done
