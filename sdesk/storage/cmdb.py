"""The Store's CMDB and change records (a part of `Store`, split out to keep files small).
cmdb.py is imported by the methods that need it: `list`, `show` and `new` never do.

CI names are matched case-insensitively through `ci_aliases`, which holds every CI's own name
and its aliases in lower case: one indexed lookup answers "which CI is `db-billing-2`?".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import BadInput, Conflict, NotFound
from .rows import Db, to_json

if TYPE_CHECKING:
    from ..domain.cmdb import CI, Reached
    from .rows import Tx as _Tx


def _chunks(items: list[Any], size: int = 500) -> Iterable[list[Any]]:
    """Pieces small enough for SQLite's limit on parameters in one statement."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


_RELATE = "INSERT INTO ci_relations VALUES (?, ?, ?) ON CONFLICT (source_id, kind, target_id) DO NOTHING"


class CmdbStore:
    def __init__(self, db: Db) -> None:
        self.db = db


    # -- reads ---------------------------------------------------------------------------

    def ci_records(self, *, names: list[str] | None = None, type_: str | None = None,
                   team: str | None = None) -> list[dict[str, Any]]:
        """CIs (all, or those named) as `CI.record()` dicts, by name."""
        from ..domain.cmdb import CI

        where, args = [], []
        if names is not None:
            where.append(f"name IN ({','.join('?' * len(names))})")
            args += names
        if type_:
            where.append("type = ?")
            args.append(type_)
        if team:
            where.append("team = ?")
            args.append(team)
        rows = self.db.conn.execute(
            "SELECT id, name, type, tier, team, environment, attributes FROM cis"
            + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY name", args).fetchall()
        ids = [r["id"] for r in rows]
        aliases: dict[int, list[str]] = {}
        relations: dict[int, dict[str, list[str]]] = {}
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            for ci_id, alias in self.db.conn.execute(
                    f"SELECT a.ci_id, a.alias FROM ci_aliases a JOIN cis c ON c.id = a.ci_id "
                    f"WHERE a.ci_id IN ({marks}) AND a.alias != lower(c.name)", part):
                aliases.setdefault(ci_id, []).append(alias)
            for source, kind, target in self.db.conn.execute(
                    f"SELECT r.source_id, r.kind, t.name FROM ci_relations r JOIN cis t ON t.id = r.target_id "
                    f"WHERE r.source_id IN ({marks})", part):
                relations.setdefault(source, {}).setdefault(kind, []).append(target)
        return [CI(r["name"], r["type"], r["tier"], r["team"], r["environment"], aliases.get(r["id"], []),
                   orjson.loads(r["attributes"]), relations.get(r["id"], {})).record() for r in rows]

    def ci_names(self, *, type_: str | None = None) -> list[str]:
        """The CIs' names (of one type), by name: a catalog field's choices."""
        sql = "SELECT name FROM cis" + (" WHERE type = ?" if type_ else "") + " ORDER BY name"
        return [name for (name,) in self.db.conn.execute(sql, (type_,) if type_ else ())]

    def ci_get(self, *, name: str) -> dict[str, Any]:
        """One CI (by name or alias) with its relations both ways."""
        row = self._ci_row(name)
        [record] = self.ci_records(names=[row["name"]])
        needed_by: dict[str, list[str]] = {}
        for kind, source in self.db.conn.execute(
                "SELECT r.kind, s.name FROM ci_relations r JOIN cis s ON s.id = r.source_id WHERE r.target_id = ? "
                "ORDER BY s.name", (row["id"],)):
            needed_by.setdefault(kind, []).append(source)
        return {**record, "needed_by": needed_by}

    def ci_find(self, keys: list[str]) -> dict[str, Any] | None:
        """The CI the first of `keys` (lower-case names or aliases) names, or None."""
        if not keys:
            return None
        rows = self.db.conn.execute(
            f"SELECT a.alias, c.id, c.name, c.type, c.tier, c.team FROM ci_aliases a JOIN cis c ON c.id = a.ci_id "
            f"WHERE a.alias IN ({','.join('?' * len(keys))})", keys).fetchall()
        by_key = {r["alias"]: r for r in rows}
        for key in keys:
            if key in by_key:
                return dict(by_key[key])
        return None

    def ci_neighbours(self, ids: list[int], *, upstream: bool) -> dict[int, list[tuple[str, int]]]:
        """For each CI id: [(relation kind, CI id)] one step away. Downstream of X are the CIs
        that need X (affected when X fails); upstream, the CIs X needs. A part_of relation
        counts the other way round (the whole needs its parts). Ids, not names: a walk over
        a big estate touches only the relations index."""
        from ..domain.cmdb import CONTAINS

        out: dict[int, list[tuple[str, int]]] = {}
        for near, far, contains in (("target_id", "source_id", False), ("source_id", "target_id", True)):
            if upstream:
                near, far = far, near
            # In the order of the index read (SQLite's without a sort), named for PostgreSQL: the
            # walk keeps the first shortest path it meets.
            order = f"{near}, kind, {far}" if near == "source_id" else f"{near}, {far}, kind"
            for part in _chunks(ids, 5000):
                rows = self.db.conn.execute(
                    f"SELECT {near}, kind, {far} FROM ci_relations WHERE {near} IN ({','.join('?' * len(part))}) "
                    f"AND kind {'=' if contains else '<>'} ? ORDER BY {order}", [*part, CONTAINS])
                for a, kind, b in rows:
                    out.setdefault(a, []).append((kind, b))
        return out

    def ci_info(self, ids: list[int]) -> dict[int, tuple[str, str, int | None, str | None]]:
        """id -> (name, type, tier, team)."""
        out = {}
        for part in _chunks(ids, 5000):
            for row in self.db.conn.execute(
                    f"SELECT id, name, type, tier, team FROM cis WHERE id IN ({','.join('?' * len(part))})", part):
                out[row[0]] = tuple(row)[1:]
        return out

    def ci_walk(self, name: str, *, upstream: bool, depth: int | None = None,
                limit: int | None = None) -> tuple[dict[str, Any], list[Reached], dict[str, dict[str, Any]]]:
        """The CI `name` (or alias), every CI reached from it (see cmdb.walk), and each one's
        type, tier and team by name."""
        from ..domain.cmdb import Reached, walk

        start = dict(self._ci_row(name))
        reached = walk(start["id"], lambda ids: self.ci_neighbours(ids, upstream=upstream), depth, limit)
        info = self.ci_info([start["id"], *(r.name for r in reached)])
        names = {i: row[0] for i, row in info.items()}
        named = [Reached(names[r.name], r.depth, [names[i] for i in r.path], r.via) for r in reached]
        by_name = {row[0]: {"type": row[1], "tier": row[2], "team": row[3]} for row in info.values()}
        return start, named, by_name

    def ci_name(self, name: str) -> str:
        """The stored name of the CI `name` (a name or alias, any case); NotFound otherwise."""
        return self._ci_row(name)["name"]

    def _ci_row(self, name: str) -> sqlite3.Row:
        row = self.db.conn.execute(
            "SELECT c.* FROM ci_aliases a JOIN cis c ON c.id = a.ci_id WHERE a.alias = ?",
            (name.strip().lower(),)).fetchone()
        if row is None:
            raise NotFound(f"no CI named {name!r} (sdesk cmdb list shows them)")
        return row

    # -- writes --------------------------------------------------------------------------

    def cmdb_import(self, cis: list[CI], *, actor: str, prune: bool = False) -> dict[str, list[str]]:
        """Upsert an estate in one transaction: a CI in the file is created or brought in line
        with it (fields, aliases, and the relations it lists); with prune, the file is the whole
        estate and CIs not in it are removed. Returns the names created, updated, unchanged,
        removed."""
        if prune and not cis:
            raise BadInput("refusing to prune with an empty estate: that would remove every CI")
        summary: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "removed": []}
        with self.db.write(actor) as tx:
            # Attributes as stored, before they are compared: importing the same file again changes nothing.
            cis = [ci._replace(attributes=tx.clean(ci.attributes)) for ci in cis]
            for ci in cis:
                self._ci_identifiers_clean(tx, ci)
            stored = {r["name"]: r for r in self.ci_records()}
            names = {ci.name for ci in cis}
            known = names if prune else set(stored) | names
            for ci in cis:
                for kind, targets in ci.relations.items():
                    missing = [t for t in targets if t not in known]
                    if missing:
                        where = "in the file" if prune else "in the file or the CMDB"
                        raise BadInput(f"{ci.name}: {kind} {missing[0]}: no such CI {where}")
            for ci in cis:
                before = stored.get(ci.name)
                summary["created" if before is None else "updated" if before != ci.record() else "unchanged"].append(ci.name)
            if prune:
                summary["removed"] = sorted(set(stored) - names)
                for part in _chunks(summary["removed"]):
                    tx.conn.execute(f"DELETE FROM cis WHERE name IN ({','.join('?' * len(part))})", part)
            # Aliases of changed CIs are freed before any is given out, so one can move between CIs.
            for part in _chunks(summary["updated"]):
                tx.conn.execute(f"DELETE FROM ci_aliases WHERE ci_id IN (SELECT id FROM cis WHERE name IN "
                                f"({','.join('?' * len(part))}))", part)
            updated = set(summary["updated"])
            changed = {*summary["created"], *updated}
            for ci in cis:
                if ci.name in updated:
                    self._ci_update(tx, ci)
                elif ci.name in changed:
                    self._ci_insert(tx, ci)
            self._ci_relink(tx, [ci for ci in cis if ci.name in changed])
            tx.event(None, "cmdb_imported", {k: len(v) for k, v in summary.items()})
        return summary

    def ci_add(self, ci: CI, *, actor: str) -> None:
        with self.db.write(actor) as tx:
            if tx.conn.execute("SELECT 1 FROM cis WHERE name = ?", (ci.name,)).fetchone():
                raise Conflict(f"CI {ci.name!r} exists; use cmdb import to change it")
            ci = ci._replace(attributes=tx.clean(ci.attributes))
            self._ci_identifiers_clean(tx, ci)
            self._ci_insert(tx, ci)
            self._ci_relink(tx, [ci])
            tx.event(None, "ci_added", ci.record())

    def ci_link(self, source: str, *, kind: str, target: str, actor: str, unlink: bool = False) -> bool:
        """Add (or remove) `source kind target`; False when there was nothing to do."""
        from ..domain.cmdb import RELATIONS

        if kind not in RELATIONS:
            raise BadInput(f"relation {kind!r}: choose from {', '.join(RELATIONS)}")
        with self.db.write(actor) as tx:
            a, b = self._ci_row(source), self._ci_row(target)
            if a["id"] == b["id"]:
                raise BadInput(f"{a['name']} cannot {kind} itself")
            if unlink:
                done = tx.conn.execute("DELETE FROM ci_relations WHERE source_id = ? AND kind = ? AND target_id = ?",
                                       (a["id"], kind, b["id"])).rowcount
            else:
                done = tx.conn.execute(_RELATE,
                                       (a["id"], kind, b["id"])).rowcount
            if done:
                tx.event(None, "ci_unlinked" if unlink else "ci_linked",
                         {"source": a["name"], "kind": kind, "target": b["name"]})
        return bool(done)

    @staticmethod
    def _ci_identifiers_clean(tx: _Tx, ci: CI) -> None:
        """A team and aliases are identifiers, kept as given (looked up, matched to alerts), while
        every event is redacted: one that holds a secret would be stored, and be another name in
        its event. Refused, as a user's --team is."""
        for what, values in (("team", [ci.team]), ("alias", ci.aliases)):
            if any(v and tx.clean(v) != v for v in values):
                raise BadInput(f"CI {ci.name!r}: the {what} looks like it holds a secret; choose another")

    def _ci_insert(self, tx: _Tx, ci: CI) -> None:
        cur = tx.conn.execute(
            "INSERT INTO cis (name, type, tier, team, environment, attributes, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (ci.name, ci.type, ci.tier, ci.team, ci.environment, orjson.dumps(ci.attributes).decode(), tx.at, tx.at))
        self._ci_aliases(tx, cur.fetchone()[0], ci)

    def _ci_update(self, tx: _Tx, ci: CI) -> None:
        """Fields and aliases (the caller has removed the old aliases)."""
        ci_id = tx.conn.execute("SELECT id FROM cis WHERE name = ?", (ci.name,)).fetchone()[0]
        tx.conn.execute("UPDATE cis SET type = ?, tier = ?, team = ?, environment = ?, attributes = ?, updated_at = ? "
                        "WHERE id = ?", (ci.type, ci.tier, ci.team, ci.environment,
                                         orjson.dumps(ci.attributes).decode(), tx.at, ci_id))
        self._ci_aliases(tx, ci_id, ci)

    @staticmethod
    def _ci_aliases(tx: _Tx, ci_id: int, ci: CI) -> None:
        for alias in dict.fromkeys([ci.name.lower(), *(a.lower() for a in ci.aliases)]):
            owner = tx.conn.execute("SELECT c.name FROM ci_aliases a JOIN cis c ON c.id = a.ci_id WHERE a.alias = ?",
                                    (alias,)).fetchone()
            if owner is not None:
                raise Conflict(f"{ci.name}: {alias!r} already names CI {owner[0]!r}")
            tx.conn.execute("INSERT INTO ci_aliases (alias, ci_id) VALUES (?, ?)", (alias, ci_id))

    @staticmethod
    def _ci_relink(tx: _Tx, cis: list[CI]) -> None:
        """Each CI's outgoing relations become those it lists."""
        if not cis:
            return
        wanted = list({ci.name for ci in cis} | {t for ci in cis for targets in ci.relations.values() for t in targets})
        ids: dict[str, int] = {}
        for part in _chunks(wanted):
            ids.update(tx.conn.execute(f"SELECT name, id FROM cis WHERE name IN ({','.join('?' * len(part))})", part))
        for ci in cis:
            tx.conn.execute("DELETE FROM ci_relations WHERE source_id = ?", (ids[ci.name],))
            tx.conn.executemany(_RELATE,
                                [(ids[ci.name], kind, ids[t]) for kind, targets in ci.relations.items()
                                 for t in targets])

    # -- change records --------------------------------------------------------------------

    def has_cis(self) -> bool:
        return self.db.conn.execute("SELECT EXISTS (SELECT 1 FROM cis)").fetchone()[0] == 1

    @staticmethod
    def record_change(tx: _Tx, *, source: str, summary: str, service: str | None, ci: str | None, happened_at: str,
                      data: dict[str, Any]) -> None:
        """A change a source reported (a deploy), kept for enrichment."""
        tx.conn.execute(
            "INSERT INTO changes (source, summary, service, ci, happened_at, received_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source, summary, service, ci, happened_at, tx.at, to_json(data)))

    def change_add(self, *, title: str, ci: str | None, start: str, end: str | None, risk: str | None,
                   status: str, actor: str, data: dict[str, Any] | None = None) -> int:
        with self.db.write(actor) as tx:
            name = self.ci_name(ci) if ci else None
            service = name
            title, data = tx.clean(title), tx.clean(data or {})
            cur = tx.conn.execute(
                "INSERT INTO changes (source, summary, service, ci, happened_at, received_at, data, ends_at, risk, status, "
                "created_by) VALUES ('sdesk', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (title, service, name, start, tx.at, orjson.dumps(data or {}).decode(), end, risk, status, actor))
            change_id = cur.fetchone()[0]
            tx.event(None, "change_recorded", {"change": change_id, "title": title, "ci": name, "status": status})
            return change_id

    def change_status(self, change_id: int, *, status: str, actor: str) -> dict[str, Any]:
        """Move a change along cmdb.CHANGE_MOVES; any other move is refused (InvalidTransition)."""
        from ..domain.cmdb import change_next

        with self.db.write(actor) as tx:
            before = self.change_get(change_id)
            status = change_next(before["status"], status, change_id)
            tx.conn.execute("UPDATE changes SET status = ? WHERE id = ?", (status, change_id))
            tx.event(None, "change_status", {"change": change_id, "from": before["status"], "to": status})
        return self.change_get(change_id)

    def change_get(self, change_id: int) -> dict[str, Any]:
        row = self.db.conn.execute("SELECT * FROM changes WHERE id = ?", (change_id,)).fetchone()
        if row is None:
            raise NotFound(f"no change CH-{change_id}")
        return _change(row)

    def change_list(self, *, cis: list[str] | None = None, since: str | None = None, until: str | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Changes, newest first: on any of `cis` (by CI or service name) and starting in [since, until]."""
        where, args = [], []
        if since:
            where.append("happened_at >= ?")
            args.append(since)
        if until:
            where.append("happened_at <= ?")
            args.append(until)
        out: dict[int, dict[str, Any]] = {}
        for part in _chunks(cis, 400) if cis is not None else [None]:
            clauses, params = list(where), list(args)
            if part is not None:
                marks = ",".join("?" * len(part))
                clauses.append(f"(ci IN ({marks}) OR service IN ({marks}))")
                params += part + part
            sql = ("SELECT * FROM changes" + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
                   + " ORDER BY happened_at DESC, id DESC" + (f" LIMIT {int(limit)}" if limit else ""))
            out.update((r["id"], _change(r)) for r in self.db.conn.execute(sql, params))
        found = sorted(out.values(), key=lambda c: (c["happened_at"], c["id"]), reverse=True)
        return found[:limit] if limit else found


def _change(row: sqlite3.Row) -> dict[str, Any]:
    c = dict(row)
    c["data"] = orjson.loads(c["data"])
    return c
