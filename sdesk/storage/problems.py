"""The Store's problem records (a part of `Store`, split out to keep files small).

A problem is a ticket of kind `problem` with a row in `problems` (root cause, workaround,
known-error flag, fix); the incidents it explains point at it with `tickets.problem_id`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..domain import lifecycle
from ..domain.fields import check_ticket
from ..errors import BadInput, Conflict, NotFound
from .rows import Db

if TYPE_CHECKING:
    from .rows import Tx as _Tx
    from .tickets import TicketStore




class ProblemStore:
    def __init__(self, db: Db, *, tickets: TicketStore) -> None:
        self.db = db
        self.tickets = tickets


    def problem_new(self, incidents: list[int], *, title: str | None, root_cause: str | None, workaround: str | None,
                    known_error: bool, actor: str) -> int:
        with self.db.write(actor) as tx:
            first = [self.tickets._current(tx, i) for i in incidents]
            worst = min(t["priority"] for t in first)
            ticket = check_ticket({"title": title or f"Problem: {first[0]['title']}", "kind": "problem", "priority": worst,
                                   "service": first[0]["service"], "ci": first[0]["ci"]}) | {"team": first[0]["team"]}
            problem_id = self.tickets.create(tx, ticket, source="sdesk")
            tx.conn.execute("INSERT INTO problems (ticket_id, root_cause, workaround, known_error) VALUES (?, ?, ?, ?)",
                            (problem_id, *self._problem_texts(tx, root_cause, workaround), int(known_error)))
            self._link_incidents(tx, problem_id, first)
        return problem_id

    def problem_update(self, problem_id: int, *, link: list[int], root_cause: str | None, workaround: str | None,
                       known_error: bool | None, actor: str) -> None:
        with self.db.write(actor) as tx:
            self._problem_row(tx, problem_id)
            self.tickets._current(tx, problem_id)  # the actor's role on its queue
            cause, fix = self._problem_texts(tx, root_cause, workaround)
            sets = {k: v for k, v in (("root_cause", cause), ("workaround", fix),
                                      ("known_error", None if known_error is None else int(known_error))) if v is not None}
            if sets:
                tx.conn.execute(f"UPDATE problems SET {', '.join(f'{k} = ?' for k in sets)} WHERE ticket_id = ?",
                                (*sets.values(), problem_id))
                tx.event(problem_id, "problem_updated", sets)
            self._link_incidents(tx, problem_id, [self.tickets._current(tx, i) for i in link])

    def problem_resolve(self, problem_id: int, *, fix: str, note_linked: bool, actor: str) -> int:
        if lifecycle.blank(fix):
            raise BadInput("--fix: must not be empty")
        with self.db.write(actor) as tx:
            self._problem_row(tx, problem_id)
            fix = tx.clean(fix.strip(), problem_id)
            self.tickets._move(tx, self.tickets._current(tx, problem_id), "resolve", resolution=fix, code="fixed")
            tx.conn.execute("UPDATE problems SET fix = ? WHERE ticket_id = ?", (fix, problem_id))
            noted = 0
            if note_linked:
                for (incident,) in tx.conn.execute("SELECT id FROM tickets WHERE problem_id = ? ORDER BY id", (problem_id,)).fetchall():
                    tx.event(incident, "problem_fixed", {"problem_id": problem_id, "fix": fix})
                    noted += 1
        return noted

    def problem_get(self, problem_id: int) -> dict[str, Any]:
        t = self.tickets.get_or_raise(ticket_id=problem_id)
        row = self.db.conn.execute("SELECT * FROM problems WHERE ticket_id = ?", (problem_id,)).fetchone()
        if row is None:
            raise NotFound(f"{lifecycle.ref(problem_id)} is not a problem")
        incidents = self.tickets.list(problem_id=problem_id, open_only=False, limit=None)
        record = dict(row)
        record["known_error"] = bool(record["known_error"])
        return {**t, **record, "incidents": incidents}

    def problem_list(self) -> list[dict[str, Any]]:
        rows = self.db.conn.execute(
            "SELECT t.id, t.title, t.status, t.priority, p.known_error, "
            "(SELECT count(*) FROM tickets i WHERE i.problem_id = t.id) AS incidents "
            "FROM problems p JOIN tickets t ON t.id = p.ticket_id "
            "ORDER BY t.status IN ('resolved', 'closed'), t.id DESC")
        return [{**dict(r), "known_error": bool(r["known_error"])} for r in rows]

    @staticmethod
    def _problem_texts(tx: _Tx, *texts: str | None) -> tuple[str | None, ...]:
        values = tx.clean([t.strip() if t else None for t in texts])
        return tuple(v or None for v in values)

    @staticmethod
    def _problem_row(tx: _Tx, problem_id: int) -> None:
        if tx.conn.execute("SELECT 1 FROM problems WHERE ticket_id = ?", (problem_id,)).fetchone() is None:
            if tx.conn.execute("SELECT 1 FROM tickets WHERE id = ?", (problem_id,)).fetchone() is None:
                raise NotFound(f"no ticket {lifecycle.ref(problem_id)}")
            raise NotFound(f"{lifecycle.ref(problem_id)} is not a problem")

    def _link_incidents(self, tx: _Tx, problem_id: int, incidents: list[dict[str, Any]]) -> None:
        for t in incidents:
            if t["id"] == problem_id or t["kind"] == "problem":
                raise BadInput(f"{lifecycle.ref(t['id'])} is a problem; link incidents to it")
            if t["problem_id"] not in (None, problem_id):
                raise Conflict(f"{lifecycle.ref(t['id'])} is already linked to problem {lifecycle.ref(t['problem_id'])}")
            if t["problem_id"] is None:
                self.tickets._set(tx, t["id"], {"problem_id": problem_id, "updated_at": tx.at})
                tx.event(t["id"], "problem_linked", {"problem_id": problem_id})
