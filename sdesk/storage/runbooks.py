"""The Store's runbook runs (a part of `Store`, split out to keep files small): the run record
and its steps, the lock per CI, the throttle, the kill switch, approvals, and the runs whose
process died. Every change is one transaction that also writes the ticket's timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..domain import clock, lifecycle
from ..domain.redact import redact_strings
from ..domain.roles import user_key
from ..errors import Conflict, NotFound, PermissionDenied
from .rows import Db

if TYPE_CHECKING:
    import sqlite3

    from .rows import Tx as _Tx
    from .tickets import TicketStore

ACTIVE = ("running", "waiting")  # the statuses that hold their CI's lock
ENDED = ("succeeded", "stopped", "failed", "interrupted", "rejected", "refused")
EVENT_OUTPUT = 1000  # characters of a step's output kept in its timeline event (the run keeps more)


def same_user(a: str, b: str) -> bool:
    """Whether two actor names are one person (`--as ' Alice'` is alice)."""
    return user_key(a) == user_key(b)


def stored_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan as the run keeps it (runs compare a waiting run's plan with this): a secret
    written into a runbook's command is not stored. The same redaction as _Tx.clean."""
    return redact_strings(plan)[0]


def lock_key(ci: str | None, fingerprint: str | None, ticket_id: int) -> str:
    """What a run on a ticket locks, and what its throttle counts runs on: the CI; without one,
    the alert (its fingerprint: a loop re-fires the same alert as new tickets); else the ticket."""
    return f"ci:{ci}" if ci else f"alert:{fingerprint}" if fingerprint else f"ticket:{ticket_id}"


class Processes(Protocol):
    """The operating system's side of runs, which the runner owns (services/processes.py) and
    hands to the store (Store(processes=...)): whether a run's recorded process still lives,
    stopping the command a dead run left behind, and who this process is. The store records
    runs; it never reads /proc or sends a signal itself."""

    @property
    def host(self) -> str: ...

    def alive(self, pid: int, start: str | None) -> bool: ...

    def stop_group(self, pgid: int, start: str | None) -> None: ...

    def this_process(self) -> dict[str, Any]: ...


class NoProcesses:
    """A store opened without the runner's view of processes (a library user, a backup being
    checked): no run is known to have died, and a run opened records no process."""

    host = ""

    def alive(self, pid: int, start: str | None) -> bool:
        return True

    def stop_group(self, pgid: int, start: str | None) -> None:
        return None

    def this_process(self) -> dict[str, Any]:
        return {"pid": None, "host": None, "proc_start": None}


def _disabled_reason(row: Any, runbook: str) -> str | None:
    if row is None:
        return None
    what = "all runbooks are disabled" if row[0] == "*" else f"runbook {runbook} is disabled"
    return f"{what} (by {row[1]}{': ' + row[2] if row[2] else ''})"


def _died(run: Any) -> str:
    return f"its process (pid {run['pid']}) ended mid-run: killed or crashed"


def _as_recorded(run: dict[str, Any], dead: set[int]) -> dict[str, Any]:
    """A run as it reads once its death is recorded (by `tick` or the next run, which also stop
    the command it left): a read shows a dead run as interrupted, and writes nothing."""
    if run["id"] in dead:
        run |= {"status": "interrupted", "reason": _died(run), "pid": None}
        for step in run.get("steps", ()):
            if step["status"] == "running":
                step["status"] = "interrupted"
    return run


def _run(row: Any) -> dict[str, Any]:
    run = dict(row)
    run["plan"] = orjson.loads(run["plan"]) if run["plan"] else None
    run["params"] = orjson.loads(run["params"]) if run.get("params") else None
    run["dry_run"], run["automated"], run["resolved"] = bool(run["dry_run"]), bool(run["automated"]), bool(run["resolved"])
    return run




class RunbookStore:
    def __init__(self, db: Db, *, tickets: TicketStore, processes: Processes | None = None) -> None:
        self.db = db
        self.tickets = tickets
        self.processes: Processes = processes or NoProcesses()

    def _dead_runs(self, conn: sqlite3.Connection) -> list[Any]:
        """Runs recorded as running on this host whose process is gone (the runner says which)."""
        me = self.processes.this_process()["pid"]
        return [row for row in conn.execute("SELECT * FROM runbook_runs WHERE status = 'running'").fetchall()
                if row["pid"] is not None and row["host"] == self.processes.host and row["pid"] != me
                and not self.processes.alive(row["pid"], row["proc_start"])]

    # -- starting ---------------------------------------------------------------------------------

    def run_open(self, *, runbook: str, ticket_id: int, lock_key: str, throttle: tuple[int, timedelta],
                 plan: dict[str, Any], dry_run: bool, automated: bool, actor: str,
                 queued_id: int | None = None) -> tuple[int, str | None]:
        """Start a run (or the queued one): (run id, None), or (run id, why it was refused) when
        the kill switch, the CI's lock or the throttle says no. A refusal is recorded too."""
        with self.db.write(actor, need="agent", what="running a runbook") as tx:
            self.tickets._current(tx, ticket_id)  # the actor's role on the ticket's queue must allow it
            self._reap(tx)
            reason = None if dry_run else (self.run_disabled(runbook) or self._locked(tx, lock_key)
                                           or self._throttled(tx, runbook, lock_key, throttle))
            status = "refused" if reason else "running"
            columns = {"runbook": runbook, "ticket_id": ticket_id, "lock_key": lock_key, "status": status,
                       "dry_run": int(dry_run), "automated": int(automated), "actor": actor,
                       "plan": orjson.dumps(tx.clean(plan, ticket_id)).decode(), "reason": tx.clean(reason, ticket_id),
                       "started_at": tx.at,
                       "ended_at": tx.at if reason else None, **({} if reason else self.processes.this_process())}
            if queued_id is not None:
                claimed = tx.conn.execute(f"UPDATE runbook_runs SET {', '.join(f'{c} = ?' for c in columns)} "
                                          "WHERE id = ? AND status = 'queued'", (*columns.values(), queued_id)).rowcount
                if not claimed:  # rejected meanwhile, or taken by another tick
                    raise Conflict(f"run {queued_id} is no longer queued")
                run_id = queued_id
            else:
                run_id = tx.conn.execute(
                    f"INSERT INTO runbook_runs ({', '.join(columns)}, created_at) "
                    f"VALUES ({', '.join('?' * len(columns))}, ?) RETURNING id", (*columns.values(), tx.at)).fetchone()[0]
            if reason:
                tx.event(ticket_id, "runbook_refused", {"run": run_id, "runbook": runbook, "reason": reason})
            else:
                tx.event(ticket_id, "runbook_started", {"run": run_id, "runbook": runbook, "dry_run": dry_run,
                                                        "automated": automated,
                                                        "params": orjson.loads(columns["plan"])["params"]})
        return run_id, reason

    @staticmethod
    def _locked(tx: _Tx, lock_key: str) -> str | None:
        row = tx.conn.execute("SELECT id, runbook, status, actor FROM runbook_runs WHERE lock_key = ? "
                              "AND status IN ('running', 'waiting')", (lock_key,)).fetchone()
        if row is None:
            return None
        doing = "waits for approval" if row[2] == "waiting" else "is running"
        return f"locked: run {row[0]} ({row[1]}, started by {row[3]}) {doing} on {lock_key}"

    @staticmethod
    def _throttled(tx: _Tx, runbook: str, lock_key: str, throttle: tuple[int, timedelta]) -> str | None:
        limit, window = throttle
        since = clock.iso(clock.parse(tx.at) - window)
        # Tickets that name no CI and no alert are counted together: each new ticket would
        # otherwise start a count of its own, and a loop that opens tickets would never stop.
        args: tuple[str, ...]
        if lock_key.startswith("ticket:"):
            on, args, target = "lock_key LIKE 'ticket:%'", (), "tickets without a CI"
        else:
            on, args, target = "lock_key = ?", (lock_key,), lock_key
        count = tx.conn.execute(
            f"SELECT count(*) FROM runbook_runs WHERE runbook = ? AND {on} AND started_at >= ? "
            "AND dry_run = 0 AND status NOT IN ('refused', 'queued')", (runbook, *args, since)).fetchone()[0]
        if count < limit:
            return None
        from ..domain.runbooks import window_text

        return (f"throttled: {count} runs of {runbook} on {target} since {since} (at most {limit} per "
                f"{window_text(window)}); a loop would stop here")

    # -- steps --------------------------------------------------------------------------------------

    def run_step_begin(self, run_id: int, *, seq: int, step: dict[str, Any], phase: str, command: str | None,
                       actor: str) -> None:
        """A step starting (committed first, so that a run killed mid-step shows where)."""
        with self.db.write(actor) as tx:
            self._run_row(tx, run_id)
            tx.conn.execute("INSERT INTO runbook_steps (run_id, seq, step_id, kind, phase, status, command, started_at, "
                            "actor) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                            (run_id, seq, step["id"], step["kind"], phase, tx.clean(command), tx.at, actor))

    def run_step_process(self, run_id: int, *, seq: int, pid: int, start: str | None, actor: str) -> None:
        """The process a step's command runs as (`start`: when it started, as the runner reads
        it): a run found dead stops it (`_reap`)."""
        with self.db.write(actor) as tx:
            self._run_row(tx, run_id)
            tx.conn.execute("UPDATE runbook_steps SET pid = ?, proc_start = ? WHERE run_id = ? AND seq = ?",
                            (pid, start, run_id, seq))

    def run_disabled(self, runbook: str) -> str | None:
        """Why the kill switch stops this runbook now, or None."""
        row = self.db.conn.execute("SELECT name, disabled_by, reason FROM runbook_switches WHERE name IN ('*', ?) "
                                "ORDER BY name = '*' DESC", (runbook,)).fetchone()
        return _disabled_reason(row, runbook)

    def run_step_end(self, run_id: int, *, seq: int, status: str, exit_code: int | None = None,
                     attempts: int = 0, duration_ms: int | None = None, output: str = "", next_step: int | None = None,
                     actor: str) -> None:
        """A step's result, on the run and on the ticket's timeline."""
        with self.db.write(actor) as tx:
            output = tx.clean(output)
            tx.conn.execute("UPDATE runbook_steps SET status = ?, exit_code = ?, attempts = ?, ended_at = ?, "
                            "duration_ms = ?, output = ? WHERE run_id = ? AND seq = ?",
                            (status, exit_code, attempts, tx.at, duration_ms, output, run_id, seq))
            step_id, kind, phase = tx.conn.execute(
                "SELECT step_id, kind, phase FROM runbook_steps WHERE run_id = ? AND seq = ?", (run_id, seq)).fetchone()
            if next_step is not None:
                tx.conn.execute("UPDATE runbook_runs SET step = ? WHERE id = ?", (next_step, run_id))
            ticket_id = self._run_row(tx, run_id)["ticket_id"]
            data = {"run": run_id, "step": step_id, "kind": kind, "status": status}
            if phase != "main":
                data["phase"] = phase
            if exit_code is not None:
                data["exit_code"] = exit_code
            if attempts > 1:
                data["attempts"] = attempts
            if duration_ms is not None:
                data["duration_ms"] = duration_ms
            if output:
                data["output"] = output[-EVENT_OUTPUT:]
            tx.event(ticket_id, "runbook_step", data)

    def run_step(self, run_id: int, *, seq: int, step: dict[str, Any], status: str, next_step: int,
                 actor: str, output: str = "") -> None:
        """A step that runs no command (skipped in a dry run, confirmed, approved)."""
        self.run_step_begin(run_id, seq=seq, step=step, phase="main", command=None, actor=actor)
        self.run_step_end(run_id, seq=seq, status=status, output=output, next_step=next_step, actor=actor)

    def run_resolve(self, run_id: int, *, text: str, code: str, actor: str) -> bool:
        """The ticket resolved by the run's resolve step (an automated resolution); False when it
        was already resolved or closed."""
        with self.db.write(actor) as tx:
            run = self._run_row(tx, run_id)
            t = self.tickets._current(tx, run["ticket_id"])
            if t["status"] in lifecycle.DONE:
                return False
            self.tickets._move(tx, t, "resolve", resolution=text, code=code,
                       extra={"run": run_id, "runbook": run["runbook"], "automated": True})
            tx.conn.execute("UPDATE runbook_runs SET resolved = 1 WHERE id = ?", (run_id,))
        return True

    # -- waiting, approving, ending -------------------------------------------------------------------

    def run_wait(self, run_id: int, *, step: int, waiting_for: str, actor: str) -> None:
        with self.db.write(actor) as tx:
            run = self._run_row(tx, run_id)
            waiting_for = tx.clean(waiting_for)
            tx.conn.execute("UPDATE runbook_runs SET status = 'waiting', waiting_for = ?, step = ?, pid = NULL "
                            "WHERE id = ?", (waiting_for, step, run_id))
            step_id = orjson.loads(run["plan"])["steps"][step]["id"]
            tx.event(run["ticket_id"], "runbook_waiting", {"run": run_id, "step": step_id, "for": waiting_for})

    def run_approve(self, run_id: int, *, actor: str) -> dict[str, Any]:
        """Give the approval (or the confirmation of a manual step) a waiting run waits for, and
        take the run over in this process. An approval must come from someone other than the
        user who started the run; a refused approval is recorded."""
        refused = None
        with self.db.write(actor) as tx:
            self._reap(tx)
            run = self._run_row(tx, run_id)
            if run["status"] != "waiting":
                raise Conflict(f"run {run_id} is {run['status']}, not waiting for an approval")
            if run["waiting_for"] == "approval":
                tx.check(run["queue"], run["ticket_id"], "approver", "approving a runbook step")
            disabled = self.run_disabled(run["runbook"])
            if disabled:
                raise Conflict(f"{disabled}; run {run_id} keeps waiting (reject it, or enable the runbook)")
            plan = orjson.loads(run["plan"])
            step = plan["steps"][run["step"]]
            if run["waiting_for"] == "approval" and same_user(actor, run["actor"]):
                refused = (f"run {run_id} was started by {actor}: its approval must come from someone else, "
                           "in their own session")
                tx.event(run["ticket_id"], "runbook_approval_refused", {"run": run_id, "step": step["id"],
                                                                        "reason": "the requester cannot approve"})
            else:
                status = "approved" if run["waiting_for"] == "approval" else "confirmed"
                seq = tx.conn.execute("SELECT coalesce(max(seq), -1) + 1 FROM runbook_steps WHERE run_id = ?",
                                      (run_id,)).fetchone()[0]
                tx.conn.execute("INSERT INTO runbook_steps (run_id, seq, step_id, kind, phase, status, started_at, "
                                "ended_at, actor) VALUES (?, ?, ?, ?, 'main', ?, ?, ?, ?)",
                                (run_id, seq, step["id"], step["kind"], status, tx.at, tx.at, actor))
                process = self.processes.this_process()
                tx.conn.execute("UPDATE runbook_runs SET status = 'running', waiting_for = NULL, step = step + 1, "
                                "pid = ?, host = ?, proc_start = ? WHERE id = ?",
                                (process["pid"], process["host"], process["proc_start"], run_id))
                tx.event(run["ticket_id"], f"runbook_{status}", {"run": run_id, "step": step["id"]})
        if refused:
            raise PermissionDenied(refused)
        return self.run_get(run_id)

    def run_reject(self, run_id: int, *, reason: str | None, actor: str) -> None:
        with self.db.write(actor) as tx:
            run = self._run_row(tx, run_id)
            self.tickets._current(tx, run["ticket_id"])  # the actor's role on its queue
            if run["status"] not in ("waiting", "queued"):
                raise Conflict(f"run {run_id} is {run['status']}: only a waiting or queued run can be rejected")
            reason = tx.clean(reason, run["ticket_id"])
            tx.conn.execute("UPDATE runbook_runs SET status = 'rejected', reason = ?, ended_at = ?, pid = NULL "
                            "WHERE id = ?", (reason or f"rejected by {actor}", tx.at, run_id))
            tx.event(run["ticket_id"], "runbook_rejected", {"run": run_id, "reason": reason})

    def run_finish(self, run_id: int, *, status: str, reason: str | None = None, rollback: str | None = None,
                   actor: str) -> None:
        """End a run; its CI's lock goes with it. A real run that failed or was interrupted is an
        automation misfire."""
        with self.db.write(actor) as tx:
            self._end(tx, self._run_row(tx, run_id), status, reason, rollback)

    def _end(self, tx: _Tx, run: Any, status: str, reason: str | None, rollback: str | None = None) -> None:
        # A person's run that fails is a failed run; automation that fails is a misfire.
        misfire = status if status in ("failed", "interrupted") and run["automated"] and not run["dry_run"] else None
        reason, rollback = tx.clean(reason, run["ticket_id"]), tx.clean(rollback, run["ticket_id"])
        tx.conn.execute("UPDATE runbook_runs SET status = ?, reason = ?, rollback = ?, misfire = ?, ended_at = ?, "
                        "pid = NULL WHERE id = ?", (status, reason, rollback, misfire, tx.at, run["id"]))
        data = {"run": run["id"], "runbook": run["runbook"], "status": status, "dry_run": bool(run["dry_run"])}
        if reason:
            data["reason"] = reason
        if rollback:
            data["rollback"] = rollback
        tx.event(run["ticket_id"], "runbook_finished", data)
        if misfire:
            tx.event(run["ticket_id"], "automation_misfire", {"run": run["id"], "runbook": run["runbook"],
                                                              "reason": misfire})

    def reap_runs(self, *, actor: str) -> int:
        """End the runs whose process died (killed, crashed): they are interrupted, and their
        locks released. Returns how many. `tick` calls it; reads only show such runs as ended."""
        if not self._dead_runs(self.db.conn):  # a read first: tick runs every minute, and seldom finds any
            return 0
        # Recording that a dead process is dead is housekeeping: any role's tick may do it.
        with self.db.write(actor, need="viewer") as tx:
            return self._reap(tx)

    def _reap(self, tx: _Tx) -> int:
        dead = self._dead_runs(tx.conn)
        for run in dead:
            for pid, start in tx.conn.execute("SELECT pid, proc_start FROM runbook_steps WHERE run_id = ? "
                                              "AND status = 'running' AND pid IS NOT NULL", (run["id"],)).fetchall():
                self.processes.stop_group(pid, start)  # its command outlived it: stop it before the lock goes
            tx.conn.execute("UPDATE runbook_steps SET status = 'interrupted', ended_at = ? WHERE run_id = ? "
                            "AND status = 'running'", (tx.at, run["id"]))
            self._end(tx, run, "interrupted", _died(run))
        return len(dead)

    # -- queued runs (automation from triage) ------------------------------------------------------------

    @staticmethod
    def queue_runs(tx: _Tx, runs: list[tuple[str, int, str]]) -> None:
        """Runbooks triage attached to new tickets, to run once the intake is committed."""
        for runbook, ticket_id, lock_key in runs:
            run_id = tx.conn.execute(
                "INSERT INTO runbook_runs (runbook, ticket_id, lock_key, status, automated, actor, created_at) "
                "VALUES (?, ?, ?, 'queued', 1, ?, ?) RETURNING id", (runbook, ticket_id, lock_key, tx.actor, tx.at)).fetchone()[0]
            tx.event(ticket_id, "runbook_queued", {"run": run_id, "runbook": runbook})

    def run_refuse_queued(self, run_id: int, *, reason: str, actor: str) -> None:
        """A queued run that cannot start (its runbook gone or broken, a parameter missing)."""
        with self.db.write(actor) as tx:
            run = self._run_row(tx, run_id)
            if run["status"] == "queued":
                reason = tx.clean(reason, run["ticket_id"])
                tx.conn.execute("UPDATE runbook_runs SET status = 'refused', reason = ?, started_at = ?, ended_at = ? "
                                "WHERE id = ?", (reason, tx.at, tx.at, run_id))
                tx.event(run["ticket_id"], "runbook_refused", {"run": run_id, "runbook": run["runbook"], "reason": reason})

    def queued_runs(self) -> list[dict[str, Any]]:
        return [_run(r) for r in self.db.conn.execute("SELECT * FROM runbook_runs WHERE status = 'queued' ORDER BY id")]

    # -- reading ---------------------------------------------------------------------------------------

    def _run_row(self, tx: _Tx, run_id: int) -> Any:
        """A run a write changes; the actor's role on its ticket's queue must allow the write."""
        row = tx.conn.execute("SELECT r.*, t.queue AS queue FROM runbook_runs r JOIN tickets t ON t.id = r.ticket_id "
                              "WHERE r.id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no runbook run {run_id}")
        tx.check(row["queue"], row["ticket_id"])
        return row

    def run_get(self, run_id: int) -> dict[str, Any]:
        row = self.db.conn.execute("SELECT * FROM runbook_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no runbook run {run_id}")
        run = _run(row)
        run["steps"] = [dict(r) for r in self.db.conn.execute(
            "SELECT seq, step_id, kind, phase, status, command, exit_code, attempts, started_at, ended_at, "
            "duration_ms, output, actor, pid FROM runbook_steps WHERE run_id = ? ORDER BY seq", (run_id,))]
        return _as_recorded(run, {r["id"] for r in self._dead_runs(self.db.conn)} if run["status"] == "running" else set())

    def runs(self, *, ticket_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM runbook_runs", []
        if ticket_id is not None:
            sql, args = sql + " WHERE ticket_id = ?", [ticket_id]
        rows = self.db.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        dead = {r["id"] for r in self._dead_runs(self.db.conn)} if any(r["status"] == "running" for r in rows) else set()
        return [_as_recorded({k: v for k, v in _run(r).items() if k != "plan"}, dead) for r in rows]

    # -- the kill switch -------------------------------------------------------------------------------

    def runbook_switch(self, name: str, *, disabled: bool, reason: str | None, actor: str) -> bool:
        """Disable (or enable again) one runbook, or all with '*'. False when nothing changed."""
        with self.db.write(actor, need="admin", what="disabling or enabling automation") as tx:
            reason = tx.clean(reason)
            if disabled:
                changed = tx.conn.execute("INSERT INTO runbook_switches (name, reason, disabled_by, disabled_at) "
                                          "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                                          (name, reason, actor, tx.at)).rowcount
            else:
                changed = tx.conn.execute("DELETE FROM runbook_switches WHERE name = ?", (name,)).rowcount
            if changed:
                tx.event(None, "runbook_disabled" if disabled else "runbook_enabled",
                         {"runbook": None if name == "*" else name, "all": name == "*", "reason": reason})
        return bool(changed)

    def runbook_switches(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: dict(r) for r in self.db.conn.execute("SELECT * FROM runbook_switches ORDER BY name")}
