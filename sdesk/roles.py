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
--queue security`): on tickets in that queue, that role applies.
"""

from collections.abc import Mapping
from typing import NamedTuple

from .errors import BadInput

ROLES = ("viewer", "agent", "approver", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
DEFAULT_ROLE = "agent"


def user_key(name: str) -> str:
    """How names compare: trimmed and case-folded ("Alice " is alice), as approvals compare them."""
    return name.strip().casefold()


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


def refusal(access: Access, need: str, what: str, queue: str | None = None) -> str:
    """The one line a refused actor reads."""
    role = access.role_on(queue)
    where = f" on queue {queue}" if queue and queue in access.queues else ""
    listed = "" if access.listed else " (not a listed user: the desk's default role)"
    return f"permission denied: {access.name} is {_a(role)} {role}{where}{listed}; {what} needs the {need} role"


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
