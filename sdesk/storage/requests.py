"""Catalog requests: the ticket a submission opens, its approval chain (a row per stage asked,
a vote per approver), and its fulfilment run. Every step is an event on the ticket's chain:
request_submitted, approval_requested, approval_voted, approval_reminder, approval_expired,
request_approved, request_rejected, request_expired, runbook_queued, request_fulfilled and
fulfilment_failed. What a request type means is the domain's (domain/catalog.py); who the
approvers are, the service's (services/requests.py), which hands each stage here as found."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from ..domain import clock, lifecycle
from ..domain.roles import user_key
from ..errors import BadInput, Conflict, NotFound, PermissionDenied
from .rows import Db, Tx, to_json
from .runbooks import RunbookStore, lock_key
from .tickets import TicketStore

OPEN_STATES = ("approval", "fulfilling", "waiting")
REASON_MAX = 2000


def _request(row: Any) -> dict[str, Any]:
    r = dict(row)
    r["answers"], r["stages"], r["plan"] = orjson.loads(r["answers"]), orjson.loads(r["stages"]), orjson.loads(r["plan"])
    return r


def _approval(row: Any) -> dict[str, Any]:
    a = dict(row)
    a["approvers"] = orjson.loads(a["approvers"])
    return a


class RequestStore:
    def __init__(self, db: Db, *, tickets: TicketStore, runbooks: RunbookStore) -> None:
        self.db, self.tickets, self.runbooks = db, tickets, runbooks

    # -- submitting ------------------------------------------------------------------------------

    def submit(self, ticket: dict[str, Any], *, type_id: str, answers: dict[str, Any], stages: list[dict[str, Any]],
               fulfil: tuple[str, dict[str, str]] | None, expires: float, remind: float, excluded: list[str],
               actor: str, source: str, as_requester: str | None = None) -> int:
        """Open the request's ticket and start its chain, in one transaction: the first stage that
        applies is asked, or (none) its fulfilment is queued. `stages`: each {name, approvers,
        need, applies}; `fulfil`: (runbook, parameters) or None (a person fulfils it);
        `expires`/`remind`: seconds an approval waits and until its reminder; `excluded`: the user
        keys that may never approve it (the requester, who filed it). `as_requester`: the events
        are the requester's (a portal submission, written by the serving account)."""
        with self.db.write(actor) as tx, tx.acting(as_requester) as delivered:
            ticket_id = self.tickets.create(tx, ticket, source=source)
            plan = {"fulfil": tx.clean(list(fulfil), ticket_id) if fulfil else None, "expires": expires, "remind": remind,
                    "excluded": excluded}
            tx.conn.execute("INSERT INTO requests (ticket_id, type, answers, stages, plan, stage, state, requester, "
                            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, NULL, 'approval', ?, ?, ?)",
                            (ticket_id, type_id, to_json(tx.clean(answers, ticket_id)), to_json(stages), to_json(plan),
                             ticket["requester"], tx.at, tx.at))
            tx.event(ticket_id, "request_submitted", {"type": type_id, "answers": answers, **delivered})
            self._next_stage(tx, ticket_id, 0, stages, plan)
        return ticket_id

    def _next_stage(self, tx: Tx, ticket_id: int, start: int, stages: list[dict[str, Any]], plan: dict[str, Any]) -> None:
        """Ask the next stage that applies from `start`, else fulfil (or leave it to a person)."""
        fulfil, expires, remind = plan["fulfil"], plan["expires"], plan["remind"]
        for index in range(start, len(stages)):
            s = stages[index]
            if not s["applies"]:
                continue
            at = clock.parse(tx.at)
            approval_id = tx.conn.execute(
                "INSERT INTO approvals (ticket_id, stage, name, approvers, need, state, created_at, remind_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id",
                (ticket_id, index, s["name"], to_json(s["approvers"]), s["need"], tx.at,
                 clock.iso(at + timedelta(seconds=remind)), clock.iso(at + timedelta(seconds=expires)))).fetchone()[0]
            tx.conn.execute("UPDATE requests SET stage = ?, state = 'approval', updated_at = ? WHERE ticket_id = ?",
                            (index, tx.at, ticket_id))
            tx.event(ticket_id, "approval_requested", {"approval": approval_id, "stage": s["name"],
                                                       "approvers": s["approvers"], "need": s["need"],
                                                       **({"note": s["note"]} if s.get("note") else {})})
            return
        if fulfil is None:
            tx.conn.execute("UPDATE requests SET stage = NULL, state = 'waiting', updated_at = ? WHERE ticket_id = ?",
                            (tx.at, ticket_id))
            tx.event(ticket_id, "request_approved", {"fulfil": "a person (no runbook in the catalog)"})
            return
        runbook, params = fulfil
        t = tx.conn.execute("SELECT ci, fingerprint FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        run_id = tx.conn.execute(
            "INSERT INTO runbook_runs (runbook, ticket_id, lock_key, status, automated, actor, created_at, params) "
            "VALUES (?, ?, ?, 'queued', 1, ?, ?, ?) RETURNING id",
            (runbook, ticket_id, lock_key(t["ci"], t["fingerprint"], ticket_id), tx.actor, tx.at, to_json(params))
        ).fetchone()[0]
        tx.conn.execute("UPDATE requests SET stage = NULL, state = 'fulfilling', run_id = ?, updated_at = ? "
                        "WHERE ticket_id = ?", (run_id, tx.at, ticket_id))
        if stages and any(s["applies"] for s in stages):
            tx.event(ticket_id, "request_approved", {"fulfil": runbook})
        tx.event(ticket_id, "runbook_queued", {"run": run_id, "runbook": runbook})

    # -- deciding ------------------------------------------------------------------------------------

    def decide(self, ticket_id: int, *, approver: str, approve: bool, reason: str | None, actor: str) -> dict[str, Any]:
        """`approver` approves or rejects the stage the request waits on. Refused unless they are
        one of its approvers (none found: an admin) and have not voted on it. A rejection ends
        the request (the ticket resolved, with the reason); enough approvals move it on."""
        with self.db.write(actor, need="viewer", what="deciding an approval") as tx:
            self.decide_in(tx, ticket_id, approver=approver, approve=approve, reason=reason)
        return self.get(ticket_id)

    def decide_in(self, tx: Tx, ticket_id: int, *, approver: str, approve: bool, reason: str | None) -> None:
        """`decide` within a transaction (a mail reply's, in intake's)."""
        if reason is not None:
            reason = " ".join(reason.split())[:REASON_MAX] or None
        if not approve and not reason:
            raise BadInput("reject: give a --reason (the requester reads it)")
        request = self._request_row(tx, ticket_id)
        status = self.tickets._current(tx, ticket_id)["status"]
        if status in lifecycle.DONE:  # an agent closed it meanwhile: nothing is left to approve
            raise Conflict(f"{lifecycle.ref(ticket_id)} is {status}: its request waits on no approval")
        pending = tx.conn.execute("SELECT * FROM approvals WHERE ticket_id = ? AND state = 'pending' ORDER BY id DESC "
                                  "LIMIT 1", (ticket_id,)).fetchone()
        if pending is None:
            raise Conflict(f"{lifecycle.ref(ticket_id)} waits on no approval (it is {request['state']})")
        a = _approval(pending)
        key = user_key(approver)
        if key in orjson.loads(request["plan"]).get("excluded", ()):  # four eyes, whatever else says yes
            raise PermissionDenied(f"permission denied: {approver} asked for {lifecycle.ref(ticket_id)} (or filed it): "
                                   "someone else must approve it")
        if not a["approvers"]:  # nobody was found for the stage: the desk's admins decide
            tx.check(need="admin", what=f"deciding {lifecycle.ref(ticket_id)}'s stage {a['name']!r} (no approver "
                                        "was found for it, so the desk's admins decide)")
        elif key not in {user_key(x) for x in a["approvers"]}:
            raise PermissionDenied(f"permission denied: {approver} is not an approver of {lifecycle.ref(ticket_id)}'s "
                                   f"stage {a['name']!r} (asked: {', '.join(a['approvers']) or 'nobody'})")
        if tx.conn.execute("SELECT 1 FROM approval_votes WHERE approval_id = ? AND approver = ?",
                           (a["id"], key)).fetchone():
            raise Conflict(f"{approver} has decided on {lifecycle.ref(ticket_id)}'s stage {a['name']!r} already")
        reason = tx.clean(reason, ticket_id)
        decision = "approved" if approve else "rejected"
        tx.conn.execute("INSERT INTO approval_votes (approval_id, approver, decision, reason, at) VALUES (?, ?, ?, ?, ?)",
                        (a["id"], key, decision, reason, tx.at))
        approvals = tx.conn.execute("SELECT count(*) FROM approval_votes WHERE approval_id = ? AND decision = 'approved'",
                                    (a["id"],)).fetchone()[0]
        tx.event(ticket_id, "approval_voted", {"approval": a["id"], "stage": a["name"], "approver": approver,
                                               "decision": decision, **({"reason": reason} if reason else {}),
                                               "approvals": approvals, "need": a["need"]})
        if not approve:
            self._end_stage(tx, a, "rejected", reason)
            self._end_request(tx, ticket_id, "rejected", f"Rejected by {approver} at stage {a['name']}: {reason}")
        elif approvals >= a["need"]:
            self._end_stage(tx, a, "approved", None)
            self._next_stage(tx, ticket_id, a["stage"] + 1, orjson.loads(request["stages"]), orjson.loads(request["plan"]))

    @staticmethod
    def waits_on(tx: Tx, ticket_id: int, *, user: str) -> bool:
        """Whether the request's pending stage names `user` as an approver who has not decided."""
        row = tx.conn.execute("SELECT id, approvers FROM approvals WHERE ticket_id = ? AND state = 'pending'",
                              (ticket_id,)).fetchone()
        key = user_key(user)
        return row is not None and key in {user_key(x) for x in orjson.loads(row[1])} and tx.conn.execute(
            "SELECT 1 FROM approval_votes WHERE approval_id = ? AND approver = ?", (row[0], key)).fetchone() is None

    @staticmethod
    def _end_stage(tx: Tx, a: dict[str, Any], state: str, reason: str | None) -> None:
        tx.conn.execute("UPDATE approvals SET state = ?, decided_at = ?, reason = ? WHERE id = ?",
                        (state, tx.at, reason, a["id"]))

    def _end_request(self, tx: Tx, ticket_id: int, state: str, resolution: str) -> None:
        tx.conn.execute("UPDATE requests SET state = ?, stage = NULL, updated_at = ? WHERE ticket_id = ?",
                        (state, tx.at, ticket_id))
        tx.event(ticket_id, f"request_{state}", {"reason": resolution})
        t = self.tickets._current(tx, ticket_id)
        if t["status"] not in lifecycle.DONE:
            self.tickets._move(tx, t, "resolve", resolution=resolution, code=state)

    # -- time: reminders and expiry (sdesk tick) ---------------------------------------------------------

    def tick(self, *, actor: str) -> dict[str, int]:
        """Remind the approvers of stages past their reminder time, and expire those past their
        limit (the request ends, its ticket resolved as expired)."""
        now = clock.now_iso()
        reminded = expired = 0
        # Not those of tickets an agent resolved meanwhile: nobody waits on them.
        due = self.db.conn.execute("SELECT a.id FROM approvals a JOIN tickets t ON t.id = a.ticket_id "
                                   "WHERE a.state = 'pending' AND t.status NOT IN ('resolved', 'closed') AND "
                                   "(a.expires_at <= ? OR (a.reminded_at IS NULL AND a.remind_at <= ?)) ORDER BY a.id",
                                   (now, now)).fetchall()
        for (approval_id,) in due:
            with self.db.write(actor, need="viewer", what="approval reminders") as tx:
                row = tx.conn.execute("SELECT * FROM approvals WHERE id = ? AND state = 'pending'", (approval_id,)).fetchone()
                if row is None:
                    continue
                a = _approval(row)
                if a["expires_at"] <= tx.at:
                    self._end_stage(tx, a, "expired", None)
                    tx.event(a["ticket_id"], "approval_expired", {"approval": a["id"], "stage": a["name"],
                                                                  "approvers": a["approvers"]})
                    self._end_request(tx, a["ticket_id"], "expired",
                                      f"Expired: stage {a['name']} was not approved by {a['expires_at'][:16]}Z")
                    expired += 1
                else:
                    voted = {v for (v,) in tx.conn.execute("SELECT approver FROM approval_votes WHERE approval_id = ?",
                                                           (a["id"],))}
                    waiting = [x for x in a["approvers"] if user_key(x) not in voted]
                    tx.conn.execute("UPDATE approvals SET reminded_at = ? WHERE id = ?", (tx.at, a["id"]))
                    tx.event(a["ticket_id"], "approval_reminder", {"approval": a["id"], "stage": a["name"],
                                                                   "approvers": waiting, "expires_at": a["expires_at"]})
                    reminded += 1
        # A fulfilment whose process died between its run's end and its recording: recorded now.
        for row in self.db.conn.execute(
                "SELECT r.* FROM runbook_runs r JOIN requests q ON q.run_id = r.id WHERE q.state = 'fulfilling' "
                "AND r.status NOT IN ('queued', 'running', 'waiting')").fetchall():
            self.fulfilment_ended(dict(row), actor=actor)
        return {"reminded": reminded, "expired": expired}

    # -- fulfilment ----------------------------------------------------------------------------------

    def fulfilment_ended(self, run: dict[str, Any], *, actor: str) -> str | None:
        """After a run: the request it fulfils is fulfilled (the run resolved the ticket) or failed
        (the ticket stays open in its queue, for a person). None: the run is no request's."""
        with self.db.write(actor, need="viewer", what="recording a fulfilment") as tx:
            row = tx.conn.execute("SELECT * FROM requests WHERE run_id = ? AND state = 'fulfilling'",
                                  (run["id"],)).fetchone()
            if row is None or run["status"] in ("queued", "running", "waiting"):
                return None
            ok = run["status"] == "succeeded"
            state = "fulfilled" if ok else "failed"
            tx.conn.execute("UPDATE requests SET state = ?, updated_at = ? WHERE ticket_id = ?", (state, tx.at, row[0]))
            data = {"run": run["id"], "runbook": run["runbook"]}
            if not ok:
                data |= {"status": run["status"], "reason": run.get("reason") or run["status"],
                         "next": "left in its queue for a person"}
            tx.event(row[0], "request_fulfilled" if ok else "fulfilment_failed", data)
            return state

    # -- reading -------------------------------------------------------------------------------------------

    def _request_row(self, tx: Tx, ticket_id: int) -> Any:
        row = tx.conn.execute("SELECT * FROM requests WHERE ticket_id = ?", (ticket_id,)).fetchone()
        if row is None:
            self.tickets._current(tx, ticket_id)  # no ticket at all says so first
            raise NotFound(f"{lifecycle.ref(ticket_id)} is not a catalog request")
        return row

    def get(self, ticket_id: int) -> dict[str, Any]:
        row = self.db.conn.execute("SELECT * FROM requests WHERE ticket_id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise NotFound(f"{lifecycle.ref(ticket_id)} is not a catalog request")
        r = _request(row)
        r["approvals"] = [_approval(a) for a in self.db.conn.execute(
            "SELECT * FROM approvals WHERE ticket_id = ? ORDER BY id", (ticket_id,))]
        votes: dict[int, list[dict[str, Any]]] = {}
        ids = [a["id"] for a in r["approvals"]]
        if ids:
            for v in self.db.conn.execute(f"SELECT * FROM approval_votes WHERE approval_id IN ({','.join('?' * len(ids))}) "
                                          "ORDER BY at", ids):
                votes.setdefault(v["approval_id"], []).append(dict(v))
        for a in r["approvals"]:
            a["votes"] = votes.get(a["id"], [])
        return r

    def find(self, ticket_id: int) -> dict[str, Any] | None:
        try:
            return self.get(ticket_id)
        except NotFound:
            return None

    def pending_for(self, user: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """The approvals waiting on `user` (who has not voted on them yet), oldest first, with the
        ticket's title and the request's type."""
        key = user_key(user)
        out = []
        # The approvers are a JSON list in the row: the pending ones are few (an index on state),
        # so they are read and matched here rather than unnested per dialect.
        for row in self.db.conn.execute(
                "SELECT a.*, t.title, t.requester, t.description, r.type FROM approvals a JOIN tickets t ON t.id = a.ticket_id "
                "JOIN requests r ON r.ticket_id = a.ticket_id WHERE a.state = 'pending' "
                "AND t.status NOT IN ('resolved', 'closed') ORDER BY a.id"):
            a = _approval(row)
            if key in {user_key(x) for x in a["approvers"]} and not self.db.conn.execute(
                    "SELECT 1 FROM approval_votes WHERE approval_id = ? AND approver = ?", (a["id"], key)).fetchone():
                out.append(a)
                if len(out) >= limit:
                    break
        return out

    def open_count(self) -> int:
        return self.db.conn.execute(f"SELECT count(*) FROM requests WHERE state IN ({','.join('?' * len(OPEN_STATES))})",
                                    OPEN_STATES).fetchone()[0]
