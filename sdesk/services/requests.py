"""Self-service requests: a submission checked against its catalog type, its approval chain
found (who each stage asks: the desk's users, oncall.yaml's teams, the CMDB's owners, the
requester's manager), decisions, and the catalog checked against the desk. The CLI, the TUI, the
portal and a mail reply all come here; the store keeps each step (storage/requests.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..domain import catalog as cat
from ..domain import clock, lifecycle
from ..domain.catalog import Catalog, RequestType
from ..domain.roles import user_key
from ..errors import BadInput, NotFound
from ..store import Store


class FieldErrors(BadInput):
    """A submission's answers that are wrong, one message per field (the portal shows each beside
    its field; the CLI says them all on one line)."""

    def __init__(self, type_id: str, errors: Mapping[str, str]):
        self.errors = dict(errors)
        said = "; ".join(f"{name}: {message}" for name, message in list(errors.items())[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"request {type_id}: {said}{more}")


def teams_of(oncall: Any) -> dict[str, list[str]]:
    """oncall.yaml's teams, each a list of its members: whom `team:NAME` and `owner:FIELD` ask."""
    return {name: list(team.members) for name, team in oncall.teams.items()}


def request_type(catalog: Catalog, type_id: str) -> RequestType:
    t = catalog.types.get(type_id)
    if t is None:
        import difflib

        close = difflib.get_close_matches(type_id, list(catalog.types), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        known = ", ".join(catalog.types) or "none (the desk has no catalog.yaml)"
        raise NotFound(f"no request type {type_id[:80]!r} in the catalog; {hint}known: {known}")
    return t


def options(store: Store, t: RequestType) -> dict[str, list[str]]:
    """The CMDB's names for the type's choices_from fields."""
    wanted = {f.choices_from for f in t.fields if f.choices_from}
    out: dict[str, list[str]] = {}
    if "services" in wanted:
        out["services"] = store.cmdb.ci_names(type_="service")
    if "cis" in wanted:
        out["cis"] = store.cmdb.ci_names()
    return out


def check(store: Store, t: RequestType, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The answers as their fields have them, or FieldErrors."""
    users = None
    if any(f.type == "user" for f in t.fields):
        users = {user_key(u["name"]): u["name"] for u in store.users.users()}
    values, errors = cat.validate(t, raw, today=clock.now().date(), options=options(store, t), users=users)
    if errors:
        raise FieldErrors(t.id, errors)
    return values


def submit(store: Store, catalog: Catalog, type_id: str, raw: Mapping[str, Any], *, requester: str, actor: str,
           teams: Callable[[], Mapping[str, list[str]]], source: str = "catalog",
           as_requester: str | None = None) -> dict[str, Any]:
    """Open a request of `type_id` with the `raw` answers (texts from a form or the command line,
    or JSON values): checked, its chain found, written in one transaction. `teams()`: oncall.yaml's
    team members, by team (read only when a stage asks a team)."""
    t = request_type(catalog, type_id)
    requester = requester.strip()
    if not requester or len(requester) > lifecycle.NAME_MAX:
        raise BadInput("request: the requester must be 1 to 200 characters")
    if "@" in requester:
        requester = requester.casefold()
    values = check(store, t, raw)
    # Four eyes: neither the requester nor whoever files it for them approves it.
    excluded = {user_key(requester), user_key(store.users.user_of(requester) or requester), user_key(actor)}
    if as_requester is None:
        excluded.add(user_key(store.users.user_of(actor) or actor))
    stages = [_stage(store, t, s, values, excluded, teams, requester) for s in t.stages]
    fulfil = (t.runbook, cat.params(t, values, requester)) if t.runbook else None
    ticket_id = store.requests.submit(cat.ticket(t, values, requester), type_id=t.id, answers=values, stages=stages,
                                      fulfil=fulfil, expires=t.expires.total_seconds(), remind=t.remind.total_seconds(),
                                      excluded=sorted(excluded), actor=actor, source=source, as_requester=as_requester)
    return shown(store, ticket_id)


def _stage(store: Store, t: RequestType, stage: cat.Stage, values: Mapping[str, Any], excluded: set[str],
           teams: Callable[[], Mapping[str, list[str]]], requester: str) -> dict[str, Any]:
    """A stage as the request will ask it: who may approve, how many must, whether it applies.
    Never the requester nor whoever filed it (`excluded`, user keys): four eyes. When the rule
    finds too few people the desk can reach (users with an email: oncall.yaml's members may be
    no users at all), the desk's admins are asked too, and the event says why."""
    applies = stage.when is None or stage.when.holds(values)
    kind, _, rest = stage.approvers.partition(":")
    note = None
    people: list[str] = []
    if not applies:
        return {"name": stage.name, "rule": stage.approvers, "approvers": [], "need": 1, "applies": False}
    if kind == "user":
        people = [store.users.user_of(rest) or rest]
    elif kind == "role":
        people = store.users.users_with(role=rest)
    elif kind == "team":
        people = [*teams().get(rest, []), *store.users.users_with(team=rest)]
    elif kind == "owner":
        team = None
        try:
            team = store.cmdb.ci_get(name=str(values.get(rest, "")))["team"]
        except NotFound:
            pass
        people = [*teams().get(team, []), *store.users.users_with(team=team)] if team else []
        if not team:
            note = f"{values.get(rest)} has no owner team in the CMDB"
    elif stage.approvers == "manager":
        manager = store.users.manager_of(requester)
        people = [manager] if manager else []
        if not manager:
            note = f"{requester} has no manager on this desk (sdesk user add NAME --manager BOSS)"
    people = list(dict.fromkeys(p for p in people if user_key(p) not in excluded))
    need = stage.need or len(people)  # all: everyone found
    reachable = store.users.reachable(people)
    if len(reachable) < max(1, need):
        found = f"{len(reachable)} of the {max(1, need)} needed" if people else "nobody"
        note = (note + "; " if note else "") + f"{found} found for {stage.approvers} with a way to be asked " \
            "(a user with an email): the desk's admins are asked too"
        people += [p for p in store.users.users_with(role="admin") if user_key(p) not in excluded and p not in people]
    return {"name": stage.name, "rule": stage.approvers, "approvers": people,
            "need": max(1, min(need, len(people))) if people else 1, "applies": True,
            **({"note": note} if note else {})}


def decide(store: Store, ticket_id: int, *, approver: str, approve: bool, reason: str | None,
           actor: str) -> dict[str, Any]:
    """`approver` approves (or rejects, with a reason) the stage request `ticket_id` waits on;
    after the last approval its fulfilment runbook is queued (automation runs it), as the
    request planned it at submission."""
    store.requests.decide(ticket_id, approver=approver, approve=approve, reason=reason, actor=actor)
    return shown(store, ticket_id)


def shown(store: Store, ticket_id: int) -> dict[str, Any]:
    """A request with its ticket's ref, title and status: what the faces show."""
    r = store.requests.get(ticket_id)
    t = store.tickets.get_or_raise(ticket_id=ticket_id)
    return {"id": lifecycle.ref(ticket_id), "ticket_id": ticket_id, "title": t["title"], "status": t["status"],
            "resolution": t.get("resolution"), **{k: v for k, v in r.items() if k != "ticket_id"}}


def next_step(request: Mapping[str, Any]) -> str:
    """What happens next, in a sentence (the portal after a submission, `sdesk request`)."""
    state = request["state"]
    if state == "approval":
        a = next((a for a in reversed(request["approvals"]) if a["state"] == "pending"), None)
        if a is not None:
            who = ", ".join(a["approvers"]) or "the desk's admins"
            n = a["need"]
            return f"Waiting for approval ({a['name']}): {'all' if n > 1 and n == len(a['approvers']) else n} of {who}."
    return {"fulfilling": "Approved: it is being fulfilled automatically.",
            "waiting": "Approved: a person from the desk will fulfil it.",
            "fulfilled": "Done.", "rejected": "Rejected.", "expired": "Expired: it was not approved in time.",
            "failed": "Automatic fulfilment failed: a person from the desk will take it from here."}.get(state, state)


# -- the catalog against the desk (sdesk catalog check, doctor) -----------------------------------------


def problems(store: Store | None, catalog: Catalog, *, runbooks: Mapping[str, Any], runbook_errors: list[str],
             sla: Any, teams: Mapping[str, list[str]], queues: set[str]) -> list[str]:
    """What in the catalog would fail at run time: a runbook missing, not safe for automation or
    whose parameters the fields do not give; an SLA policy that is not the one sla.yaml gives
    the ticket; an unknown queue, user or team."""
    out = []
    users = {user_key(u["name"]) for u in store.users.users()} if store is not None else None
    for t in catalog.types.values():
        where = f"catalog.yaml: {t.id}"
        if t.runbook:
            rb = runbooks.get(t.runbook)
            if rb is None:
                broken = [e for e in runbook_errors if t.runbook in e]
                out.append(f"{where}: fulfil: no runbook {t.runbook!r}" + (f" ({broken[0]})" if broken else ""))
            else:
                if not rb.automatic:
                    out.append(f"{where}: fulfil: runbook {t.runbook} is not safe_for_automation, so it would never run")
                unknown = sorted(set(t.params) - set(rb.params))
                if unknown:
                    out.append(f"{where}: fulfil: runbook {t.runbook} has no parameter {unknown[0]!r} "
                               f"(its parameters: {', '.join(rb.params) or 'none'})")
                missing = sorted(n for n, p in rb.params.items() if p.required and p.default is None and not p.source
                                 and n not in t.params)
                if missing:
                    out.append(f"{where}: fulfil: runbook {t.runbook} needs {missing[0]!r}, which params: does not give")
        if t.sla:
            policy = sla.policy_for("request", t.priority)
            if policy is None or policy.name != t.sla:
                out.append(f"{where}: sla: sla.yaml gives a {t.priority} request the policy "
                           f"{policy.name if policy else 'none'!r}, not {t.sla!r}")
        if t.queue and queues and t.queue not in queues:
            out.append(f"{where}: queue: {t.queue!r} is not a queue of oncall.yaml ({', '.join(sorted(queues))})")
        for s in t.stages:
            kind, _, rest = s.approvers.partition(":")
            if kind == "user" and users is not None and users and user_key(rest) not in users:
                out.append(f"{where}: approval {s.name}: no user {rest!r} on this desk")
            if kind == "team" and rest not in teams and store is not None and not store.users.users_with(team=rest):
                out.append(f"{where}: approval {s.name}: no team {rest!r} in oncall.yaml or among the users")
    return out
