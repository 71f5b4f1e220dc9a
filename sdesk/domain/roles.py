"""Roles and what each may do. Pure: the store looks people up, this decides.

Roles are ordered; each may do what the ones before it may:
- viewer: read only;
- agent: work tickets (open, change, comment, resolve), run runbooks, keep the KB and CMDB;
- approver: also approve a runbook step someone else asked for;
- admin: also manage users and API tokens, silence broadly, disable automation, purge,
  restore and import.

A desk with no users yet is run by whoever uses it: everyone is an admin until the first user
is added. After that, someone not listed gets the desk's default role (agent unless roles.yaml
says otherwise). A user's role may differ per queue (`sdesk user add NAME --role viewer
--queue security`): on tickets in that queue, that role applies. A user whose first role is
given on a queue gets exactly that queue: a role above viewer there leaves them a viewer
everywhere else (`--role agent --queue dba`: works dba, only reads the rest); a viewer role
there leaves them the desk's default role elsewhere.

On a desk with users, the actor a command claims (`--as`, SDESK_USER) is checked against the
OS login that runs it (on PostgreSQL: the database login the server authenticated, its
session_user): each user has a login (their name unless set), and acting as anyone but the user
your login is needs your login to be an admin's. On PostgreSQL the server enforces the roles
too: each is a database role with grants (storage/pg_roles.py).
"""

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ..errors import BadInput, NotFound

ROLES = ("viewer", "agent", "approver", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
DEFAULT_ROLE = "agent"


def user_key(name: str) -> str:
    """How names compare: trimmed and case-folded ("Alice " is alice), as approvals compare them."""
    return name.strip().casefold()


def known_assignee(user: str, names: Iterable[str]) -> str:
    """`user` as one of `names` spells it (the desk's users, then its on-call team members;
    names compare as user_key does), or NotFound naming the closest and the known ones. No
    names at all: the desk knows no one yet, so any name is taken, as given."""
    import difflib

    from .plain import plural

    known: dict[str, str] = {}
    for name in names:
        known.setdefault(user_key(name), name)
    if not known or user_key(user) in known:
        return known.get(user_key(user), user)
    close = difflib.get_close_matches(user_key(user), list(known), n=1)
    hint = f"did you mean {known[close[0]]}? " if close else ""
    listed = sorted(known.values(), key=user_key)
    shown = ", ".join(listed[:12]) + (f" and {plural(len(listed) - 12, 'other')}" if len(listed) > 12 else "")
    shown_user = user if len(user) <= 60 else user[:60] + "…"
    raise NotFound(f"assign: no user {shown_user!r} on this desk or in oncall.yaml; {hint}known: {shown} "
                   "(add them with sdesk user add, or give --force)")


def check_role(role: str) -> str:
    role = role.strip().lower()
    if role not in RANK:
        raise BadInput(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


class Access(NamedTuple):
    """Who someone is to this desk: their role, and their roles on particular queues."""

    name: str
    role: str
    queues: Mapping[str, str] = {}
    listed: bool = True  # False: not a user of the desk, so the default role (or admin, on an open desk)

    def role_on(self, queue: str | None) -> str:
        return self.queues.get(queue, self.role) if queue else self.role

    def allows(self, need: str, queue: str | None = None) -> bool:
        return RANK[self.role_on(queue)] >= RANK[need]


def desk_role_of_queue_user(queue_role: str, default_role: str) -> str:
    """The desk role of a user first added with a role on one queue (see the module's docstring)."""
    return "viewer" if RANK[queue_role] > RANK["viewer"] else default_role


def claim_refusal(login: str, me: tuple[str, str] | None, actor: str, *, kind: str = "OS login") -> str:
    """The one line for acting as `actor` from `kind` (OS login, or on PostgreSQL database login)
    `login`, which is user me = (name, role), or no user. It names who the login is and what
    would be needed; never another name to act as."""
    who = f"{me[0]}, {_a(me[1])} {me[1]}" if me else "not any user's login on this desk"
    # How a login becomes a user's, said only to a login that is none yet.
    hint = "" if me else " (an admin maps logins: sdesk user add NAME --login LOGIN)"
    return f"permission denied: {kind} {login} is {who}; acting as {actor} needs an admin's login{hint}"


def refusal(access: Access, need: str, what: str, queue: str | None = None) -> str:
    """The one line a refused actor reads."""
    role = access.role_on(queue)
    where = f" on queue {queue}" if queue and queue in access.queues else ""
    listed = "" if access.listed else " (not a listed user: the desk's default role)"
    return f"permission denied: {access.name} is {_a(role)} {role}{where}{listed}; {what} needs the {need} role"


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
