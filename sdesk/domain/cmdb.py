"""The CMDB's logic, apart from storage: what a configuration item (CI) is, reading an estate
from YAML or CSV, impact analysis over the relation graph, pictures of it, and which CI a
ticket is about. Pure: no SQL, no terminal.

A relation `A depends_on B` (or runs_on, connects_to) means A needs B, so when B fails, A is
affected; `A part_of B` means B needs A (a business service is affected when one of its parts
fails). Impact walks from what fails to what needs it ("upward"); `--upstream` walks the
other way, to what a CI needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from ..errors import BadInput
from .lifecycle import NAME_MAX
from .redact import redact

CI_TYPES = ("service", "application", "host", "database", "queue", "cache", "network", "storage", "cluster", "saas")
RELATIONS = ("depends_on", "runs_on", "part_of", "connects_to")
CONTAINS = "part_of"  # the one relation whose target needs its source
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@\-]*")


class CI(NamedTuple):
    # A NamedTuple, not a dataclass: dataclasses compile code at import, ~3 ms each, paid by
    # every `sdesk new` that enriches.
    name: str
    type: str
    tier: int | None = None
    team: str | None = None
    environment: str | None = None
    aliases: list[str] = []  # never mutated: check_ci builds new lists
    attributes: dict[str, str] = {}
    relations: dict[str, list[str]] = {}  # kind -> target names

    def record(self) -> dict[str, Any]:
        """As stored and exported: comparable between a file and the store."""
        return {"name": self.name, "type": self.type, "tier": self.tier, "team": self.team,
                "environment": self.environment, "aliases": sorted(set(self.aliases)),
                "attributes": dict(sorted(self.attributes.items())),
                "relations": {k: sorted(set(v)) for k, v in sorted(self.relations.items()) if v}}


def check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name.strip()) or len(name.strip()) > NAME_MAX:
        raise BadInput(f"{what}: {name!r} is not a CI name (letters, digits and . _ : / @ -, at most {NAME_MAX})")
    return name.strip()


def check_ci(data: Mapping[str, Any]) -> CI:
    """A CI from one entry of an import file or from `cmdb add`; BadInput names the bad field."""
    unknown = set(data) - {"name", "type", "tier", "team", "environment", "aliases", "attributes", *RELATIONS}
    if unknown:
        raise BadInput(f"{sorted(map(str, unknown))[0]}: unknown field (relations are {', '.join(RELATIONS)})")
    name = check_name(data.get("name"))
    kind = str(data.get("type") or "").strip().lower()
    if kind not in CI_TYPES:
        raise BadInput(f"{name}: type must be one of {', '.join(CI_TYPES)}")
    tier = data.get("tier")
    if tier in (None, ""):
        tier = None
    elif str(tier).strip() not in ("1", "2", "3", "4"):
        raise BadInput(f"{name}: tier must be 1, 2, 3 or 4")
    else:
        tier = int(str(tier).strip())
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise BadInput(f"{name}: attributes must be a mapping")
    # Aliases match in any case, so they are kept in lower case.
    relations = {}
    for relation in RELATIONS:
        targets = [check_name(t, f"{name}: {relation}") for t in _list(data.get(relation), f"{name}: {relation}")]
        if name in targets:
            raise BadInput(f"{name}: {relation} {name}: a CI cannot {relation} itself")
        if targets:
            relations[relation] = targets
    return CI(name, kind, tier, _optional(data.get("team")), _optional(data.get("environment")),
              [alias for a in _list(data.get("aliases"), f"{name}: aliases")
               if (alias := _alias(a, name)) != name.lower()],
              {str(k): "" if v is None else str(v) for k, v in attributes.items()}, relations)


def _alias(value: Any, name: str) -> str:
    """An alias, lower-cased as stored. Checked for a secret as given (the store checks again):
    lower-cased, a token of a case-sensitive shape (AKIA..., AIza...) is no longer found."""
    alias = check_name(value, f"{name}: alias")
    if redact(alias)[0] != alias:
        raise BadInput(f"CI {name!r}: the alias looks like it holds a secret; choose another")
    return alias.lower()


def _optional(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _list(value: Any, what: str) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in (part.strip() for part in value.split(";")) if v]
    if not isinstance(value, list):
        raise BadInput(f"{what}: must be a list")
    return value


# -- reading an estate -----------------------------------------------------------------------


def parse_estate(text: str, fmt: str, where: str) -> list[CI]:
    """The CIs of a YAML (`cis: [...]`) or CSV file (a header row; aliases and relations as
    `a;b;c`; any other column is an attribute). Errors name the file and line. Relations must
    name CIs of the same file or ones already stored (checked by the store)."""
    entries = _yaml_entries(text, where) if fmt == "yaml" else _csv_entries(text, where)
    seen: dict[str, int] = {}
    cis = []
    for line, entry in entries:
        try:
            ci = check_ci(entry)
        except BadInput as e:
            raise BadInput(f"{where}:{line}: {e}") from None
        if ci.name in seen:
            raise BadInput(f"{where}:{line}: {ci.name}: duplicate name (first at line {seen[ci.name]})")
        seen[ci.name] = line
        cis.append(ci)
    return cis


def _yaml_entries(text: str, where: str) -> list[tuple[int, dict[str, Any]]]:
    import yaml

    from . import yamlfile

    data, node = yamlfile.parse(text, where)
    if data is None:
        return []
    items = data.get("cis") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BadInput(f"{where}:1: expected a list of CIs under 'cis:'")
    seq = node.value if isinstance(node, yaml.SequenceNode) else [] if node is None else next(
        (v.value for k, v in node.value if k.value == "cis" and isinstance(v, yaml.SequenceNode)), [])
    out = []
    for i, item in enumerate(items):
        line = seq[i].start_mark.line + 1 if i < len(seq) else 1
        if not isinstance(item, dict):
            raise BadInput(f"{where}:{line}: a CI must be a mapping with at least name and type")
        out.append((line, item))
    return out


def _csv_entries(text: str, where: str) -> list[tuple[int, dict[str, Any]]]:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))  # spreadsheets start with a BOM
    if not reader.fieldnames or "name" not in reader.fieldnames:
        raise BadInput(f"{where}:1: a CSV estate needs a header row with at least name and type")
    known = {"name", "type", "tier", "team", "environment", "aliases", *RELATIONS}
    out = []
    try:
        for row in reader:
            if None in row:
                raise BadInput(f"{where}:{reader.line_num}: more fields than the header has")
            entry: dict[str, Any] = {k: v for k, v in row.items() if k in known}
            entry["attributes"] = {k: v for k, v in row.items() if k not in known and v}
            out.append((reader.line_num, entry))
    except csv.Error as e:
        raise BadInput(f"{where}:{reader.line_num}: {e}") from None
    return out


def estate_yaml(records: list[dict[str, Any]]) -> str:
    """An export that `cmdb import` reads back unchanged."""
    import yaml

    cis = []
    for r in records:
        entry = {k: r[k] for k in ("name", "type", "tier", "team", "environment") if r.get(k) is not None}
        if r["aliases"]:
            entry["aliases"] = r["aliases"]
        if r["attributes"]:
            entry["attributes"] = r["attributes"]
        entry.update(r["relations"])
        cis.append(entry)
    return yaml.safe_dump({"cis": cis}, sort_keys=False, allow_unicode=True)


# -- impact ----------------------------------------------------------------------------------


class Reached(NamedTuple):
    name: Any  # a CI's name, or its id while the store walks
    depth: int
    path: list[Any]  # from the start to this CI
    via: str  # the relation kind of the last step


def walk(start: Any, neighbours: Callable[[list[Any]], Mapping[Any, list[tuple[str, Any]]]],
         depth: int | None = None, limit: int | None = None) -> list[Reached]:
    """Breadth first from `start`: each CI once, at its shortest distance, with one shortest
    path. `neighbours(names)` returns, for a frontier, name -> [(kind, next name)]: one call per
    level, so the store answers a level with one query. Cycles end because a CI is visited once.
    With `limit`, stops once that many CIs are reached."""
    seen = {start}
    frontier = [Reached(start, 0, [start], "")]
    out: list[Reached] = []
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        nexts = neighbours([r.name for r in frontier])
        following = []
        for r in frontier:
            for kind, name in nexts.get(r.name, ()):
                if name not in seen:
                    seen.add(name)
                    reached = Reached(name, level, r.path + [name], kind)
                    following.append(reached)
                    out.append(reached)
                    if limit is not None and len(out) >= limit:
                        return out
        frontier = following
    return out


def _edge(r: Reached, upstream: bool) -> tuple[str, str]:
    """The step to `r` as its relation is stored (`source kind target`): a walk toward what
    needs a CI runs against depends_on but along part_of, and the other way upstream."""
    before = r.path[-2]
    return (before, r.name) if upstream != (r.via == CONTAINS) else (r.name, before)


def to_dot(start: str, reached: Iterable[Reached], upstream: bool) -> str:
    lines = ["digraph impact {", "  rankdir=LR;", f"  {_quote(start)} [style=bold];"]
    for r in reached:
        src, dst = _edge(r, upstream)
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_quote(r.via)}];")
    return "\n".join(lines + ["}"]) + "\n"


def to_mermaid(start: str, reached: Iterable[Reached], upstream: bool) -> str:
    ids: dict[str, str] = {}

    def node(name: str) -> str:
        if name not in ids:
            ids[name] = f"n{len(ids)}"
            return f'{ids[name]}["{name}"]'
        return ids[name]

    lines = ["graph LR", f"  {node(start)}"]
    for r in reached:
        src, dst = _edge(r, upstream)
        lines.append(f"  {node(src)} -->|{r.via}| {node(dst)}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- which CI a ticket is about ------------------------------------------------------------------

# Where a ticket names its CI, most specific first (configurable in enrich.yaml).
DEFAULT_MATCH_LABELS = ("ci", "service", "job", "instance", "host", "hostname", "app", "application", "component")


def match_keys(ticket: Mapping[str, Any], labels: Iterable[str] = DEFAULT_MATCH_LABELS) -> list[str]:
    """The names a ticket might call its CI, best first: its ci and service fields, then the
    labels in order; `host:9100` is also tried as `host`, and `host.example.com` as `host`."""
    values = [ticket.get("ci"), ticket.get("service")]
    ticket_labels = ticket.get("labels") or {}
    values += [ticket_labels.get(name) for name in labels]
    keys: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        value = value.strip().lower()
        for key in (value, value.rsplit(":", 1)[0], value.split(".", 1)[0]):
            if key and key not in keys:
                keys.append(key)
    return keys


# -- change records ------------------------------------------------------------------------------

# What a change may become from each status: planned work starts or is called off; work under way
# ends one of three ways. A completed or failed change may still be rolled back (a deploy found
# bad after it finished is the usual rollback); rolled back and cancelled are the end of it. A
# change that went wrong and is tried again is a new change record.
CHANGE_MOVES: dict[str, tuple[str, ...]] = {
    "planned": ("in_progress", "cancelled"),
    "in_progress": ("completed", "failed", "rolled_back"),
    "completed": ("rolled_back",),
    "failed": ("rolled_back",),
    "rolled_back": (),
    "cancelled": (),
}


def change_next(current: str, wanted: str, change_id: int) -> str:
    """`wanted`, when a change that is `current` may become it; else InvalidTransition naming the
    statuses it may go to (as tickets' moves do)."""
    from ..errors import InvalidTransition

    if wanted not in CHANGE_MOVES:
        raise BadInput(f"unknown change status {wanted!r}; one of: {', '.join(CHANGE_MOVES)}")
    allowed = CHANGE_MOVES.get(current, ())
    if wanted in allowed:
        return wanted
    already = " already" if wanted == current else ""
    if not allowed:  # (a new attempt is a new change record)
        raise InvalidTransition(f"cannot move CH-{change_id} to {wanted}: it is{already} {current}, which is final")
    raise InvalidTransition(f"cannot move CH-{change_id} to {wanted}: it is{already} {current}; "
                            f"from {current} it can go to: {', '.join(allowed)}")
