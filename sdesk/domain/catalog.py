"""The service catalog (catalog.yaml): request types with typed fields, approval chains and a
fulfilment runbook. Pure: what a type is, whether a submission's values are valid, who a
stage asks (as rules; the service looks the people up), its JSON Schema, and the ticket a
request opens.

    types:
      - id: quota-increase
        title: More storage for a service
        category: Storage
        queue: storage
        priority: P3
        fields:
          - {name: service, label: Service, type: choice, choices_from: services}
          - {name: extra_gb, label: Extra storage (GB), type: integer, min: 1, max: 500}
          - {name: justification, label: Justification, type: long_text}
        approval:
          - {name: storage, approvers: "role:approver"}
          - {name: manager, approvers: manager, when: {field: extra_gb, above: 100}}
        fulfil: {runbook: grow-quota, params: {service: "{service}", gb: "{extra_gb}"}}

Every value a requester gives is data: it is checked against its field (type, bounds, choices,
an RE2 pattern), bounded in size, and reaches a runbook only as a parameter the runbook's own
pattern checks again (runbooks.convert), never pasted into a command.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, NamedTuple

from ..errors import BadInput
from .lifecycle import NAME_MAX, TITLE_MAX, Kind, Priority, blank
from .patterns import Pattern

FIELD_TYPES = ("text", "long_text", "choice", "integer", "number", "date", "email", "user", "yes_no")
CHOICES_FROM = ("services", "cis")  # a choice's options from the CMDB
APPROVER_KINDS = ("user", "role", "team", "owner")  # user:NAME, role:ROLE, team:NAME, owner:FIELD; and `manager`
TEXT_MAX = 200  # characters of a text field unless it says less
LONG_TEXT_MAX = 10_000  # of a long text
CHOICES_MAX = 500
FIELDS_MAX = 50
STAGES_MAX = 10
TYPES_MAX = 500
DEFAULT_EXPIRES = timedelta(days=3)  # an approval waits this long, then the request expires
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_TRUE, _FALSE = {"true", "yes", "on", "1", "y"}, {"false", "no", "off", "0", "n", ""}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Condition(NamedTuple):
    """`{field: NAME, equals: V}` (or `in: [..]`, `above: N`, `below: N`, `set: true`): a field's
    value tested; a field not shown or not given is none of these but `set: false`."""

    field: str
    op: str
    value: Any
    label: str = ""  # the field's label, as people read the condition

    def holds(self, values: Mapping[str, Any]) -> bool:
        v = values.get(self.field)
        if self.op == "set":
            return (v is not None and v != "") == bool(self.value)
        if v is None:
            return False
        if self.op == "equals":
            return _same(v, self.value)
        if self.op == "in":
            return any(_same(v, x) for x in self.value)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return v > self.value if self.op == "above" else v < self.value

    def text(self) -> str:
        """The condition in words: "Access level is admin", "Extra storage (GB) is above 100"."""
        name = self.label or self.field
        if self.op == "set":
            return f"{name} is {'given' if self.value else 'not given'}"
        value = ", ".join(map(_word, self.value)) if self.op == "in" else _word(self.value)
        return f"{name} {({'equals': 'is', 'in': 'is one of', 'above': 'is above', 'below': 'is below'})[self.op]} {value}"


def _word(value: Any) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else _shown(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or str(a).lower() == str(b).lower()
    return str(a) == str(b)


class Field(NamedTuple):
    name: str
    label: str
    type: str
    required: bool = True
    help: str = ""
    pattern: Pattern | None = None
    message: str = ""  # said when the pattern does not match
    choices: tuple[str, ...] = ()
    choices_from: str | None = None  # services, cis: the CMDB's names (the service gives them)
    minimum: float | str | None = None  # a number's; a date's ("today" or YYYY-MM-DD)
    maximum: float | str | None = None
    max_length: int = TEXT_MAX
    show_when: Condition | None = None
    default: Any = None


class Stage(NamedTuple):
    """One step of an approval chain: who may approve (`approvers`: user:NAME, role:ROLE,
    team:NAME, owner:FIELD (the team owning the CI chosen in that field) or manager (the
    requester's)), how many of them must (`need`: a number, or 0 for all), and when the stage
    applies at all."""

    name: str
    approvers: str
    need: int = 1
    when: Condition | None = None


class RequestType(NamedTuple):
    id: str
    title: str
    description: str
    category: str
    queue: str | None
    priority: str
    sla: str | None
    summary: str  # the ticket's title, {field} filled in
    fields: tuple[Field, ...]
    stages: tuple[Stage, ...]
    runbook: str | None
    params: Mapping[str, str]  # runbook parameter -> template of {field}s
    expires: timedelta
    remind: timedelta | None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


class Catalog(NamedTuple):
    types: Mapping[str, RequestType]
    kb_public: bool = False  # published KB articles readable on the portal without signing in
    kb_tag: str = "public"  # the KB articles the portal publishes: those with this tag
    sign_in: tuple[str, ...] = ()  # who may ask the portal for a sign-in link: () anyone, ("users",), or domains

    def may_sign_in(self, email: str, is_user: bool) -> bool:
        if not self.sign_in or is_user:
            return True
        return email.rpartition("@")[2].casefold() in self.sign_in
    def categories(self) -> dict[str, list[RequestType]]:
        out: dict[str, list[RequestType]] = {}
        for t in self.types.values():
            out.setdefault(t.category, []).append(t)
        return out


EMPTY = Catalog({})
Fail = Callable[[list[Any], str], Exception]


def _bad(loc: list[Any], message: str) -> Exception:
    return BadInput(f"{'.'.join(map(str, loc))}: {message}")


# -- building (catalog.yaml, checked by config.CatalogFile, which calls these with At) ----------------


def build(data: Any, fail: Fail = _bad) -> Catalog:
    """The Catalog of catalog.yaml's data; every mistake `fail(loc, message)`."""
    if data is None:
        return EMPTY
    if not isinstance(data, dict):
        raise fail([], "expected a mapping with types: (and portal:)")
    unknown = set(data) - {"types", "portal"}
    if unknown:
        raise fail([sorted(map(str, unknown))[0]], "unknown setting (expected types or portal)")
    portal = data.get("portal") or {}
    if not isinstance(portal, dict) or set(portal) - {"kb_public", "kb_tag", "sign_in"} \
            or not isinstance(portal.get("kb_public", False), bool) or not isinstance(portal.get("kb_tag", ""), str):
        raise fail(["portal"], "expected {kb_public: true|false, kb_tag: TAG, sign_in: anyone|users|[DOMAIN, ...]}")
    sign_in = portal.get("sign_in", "anyone")
    if sign_in == "anyone":
        sign_in = ()
    elif sign_in == "users":
        sign_in = ("users",)
    elif isinstance(sign_in, list) and sign_in and all(isinstance(d, str) and _DOMAIN.match(d) for d in sign_in):
        sign_in = tuple(d.casefold() for d in sign_in)
    else:
        raise fail(["portal", "sign_in"], "expected anyone, users (the desk's users only) or a list of email domains")
    raw = data.get("types") or []
    if not isinstance(raw, list) or len(raw) > TYPES_MAX:
        raise fail(["types"], f"expected a list of request types (at most {TYPES_MAX})")
    types: dict[str, RequestType] = {}
    for i, spec in enumerate(raw):
        t = request_type(spec, ["types", i], fail)
        if t.id in types:
            raise fail(["types", i, "id"], f"the id {t.id!r} is used twice")
        types[t.id] = t
    return Catalog(types, bool(portal.get("kb_public", False)), str(portal.get("kb_tag") or "public"), sign_in)


TYPE_KEYS = {"id", "title", "description", "category", "queue", "priority", "sla", "summary", "fields", "approval",
             "fulfil", "expires", "remind"}
FIELD_KEYS = {"name", "label", "type", "required", "help", "pattern", "message", "choices", "choices_from", "min", "max",
              "max_length", "show_when", "default"}
STAGE_KEYS = {"name", "approvers", "need", "when"}


def request_type(spec: Any, loc: list[Any], fail: Fail) -> RequestType:
    if not isinstance(spec, dict):
        raise fail(loc, "expected a request type (a mapping with id, title, fields...)")
    _keys(spec, TYPE_KEYS, loc, fail)
    type_id = spec.get("id")
    if not isinstance(type_id, str) or not _ID.match(type_id):
        raise fail([*loc, "id"], "expected an id of lower-case letters, digits and - (e.g. password-reset)")
    title = _text(spec.get("title"), [*loc, "title"], fail, required=True)
    description = _text(spec.get("description"), [*loc, "description"], fail, limit=4000)
    category = _text(spec.get("category"), [*loc, "category"], fail) or "Other"
    queue = _text(spec.get("queue"), [*loc, "queue"], fail) or None
    priority = spec.get("priority", "P4")
    if priority not in tuple(Priority):
        raise fail([*loc, "priority"], f"expected one of {', '.join(Priority)}")
    sla = _text(spec.get("sla"), [*loc, "sla"], fail) or None
    raw_fields = spec.get("fields") or []
    if not isinstance(raw_fields, list) or len(raw_fields) > FIELDS_MAX:
        raise fail([*loc, "fields"], f"expected a list of fields (at most {FIELDS_MAX})")
    fields: list[Field] = []
    for i, raw in enumerate(raw_fields):
        f = field(raw, [*loc, "fields", i], fail, fields)
        if any(g.name == f.name for g in fields):
            raise fail([*loc, "fields", i, "name"], f"the field {f.name!r} is used twice")
        fields.append(f)
    names = {f.name for f in fields}
    summary = _text(spec.get("summary"), [*loc, "summary"], fail) or title
    _placeholders(summary, names, [*loc, "summary"], fail)
    raw_stages = spec.get("approval") or []
    if not isinstance(raw_stages, list) or len(raw_stages) > STAGES_MAX:
        raise fail([*loc, "approval"], f"expected a list of stages (at most {STAGES_MAX})")
    stages = tuple(stage(raw, [*loc, "approval", i], fail, fields) for i, raw in enumerate(raw_stages))
    runbook, params = None, {}
    fulfil = spec.get("fulfil")
    if fulfil is not None:
        if not isinstance(fulfil, dict) or set(fulfil) - {"runbook", "params"} or not isinstance(fulfil.get("runbook"), str):
            raise fail([*loc, "fulfil"], "expected {runbook: NAME, params: {PARAMETER: \"{field}\"}}")
        runbook = fulfil["runbook"]
        raw_params = fulfil.get("params") or {}
        if not isinstance(raw_params, dict):
            raise fail([*loc, "fulfil", "params"], "expected a mapping of runbook parameters to {field} templates")
        for key, value in raw_params.items():
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise fail([*loc, "fulfil", "params", key], "expected a text such as \"{account}\"")
            _placeholders(str(value), names | {"requester"}, [*loc, "fulfil", "params", key], fail)
        params = {str(k): str(v) for k, v in raw_params.items()}
    expires = _span(spec.get("expires"), [*loc, "expires"], fail) or DEFAULT_EXPIRES
    remind = _span(spec.get("remind"), [*loc, "remind"], fail)
    if remind is not None and remind >= expires:
        raise fail([*loc, "remind"], "must be shorter than expires (a reminder after the request expired reaches nobody)")
    return RequestType(type_id, title, description, category, queue, str(priority), sla, summary, tuple(fields), stages,
                       runbook, params, expires, remind if remind is not None else expires / 2)


def field(spec: Any, loc: list[Any], fail: Fail, before: list[Field]) -> Field:
    if not isinstance(spec, dict):
        raise fail(loc, "expected a field (a mapping with name, label, type...)")
    _keys(spec, FIELD_KEYS, loc, fail)
    name = spec.get("name")
    if not isinstance(name, str) or not _FIELD.match(name):
        raise fail([*loc, "name"], "expected a name of lower-case letters, digits and _ (e.g. extra_gb)")
    kind = spec.get("type", "text")
    if kind not in FIELD_TYPES:
        raise fail([*loc, "type"], f"expected one of {', '.join(FIELD_TYPES)}")
    label = _text(spec.get("label"), [*loc, "label"], fail) or name.replace("_", " ").capitalize()
    required = spec.get("required", kind != "yes_no")
    if not isinstance(required, bool):
        raise fail([*loc, "required"], "expected true or false")
    pattern = None
    if spec.get("pattern") is not None:
        if kind not in ("text", "long_text", "email") or not isinstance(spec["pattern"], str):
            raise fail([*loc, "pattern"], "a pattern (a text) is for text, long_text and email fields")
        from .patterns import compile as compile_pattern

        try:
            pattern = compile_pattern(spec["pattern"])
        except BadInput as e:
            raise fail([*loc, "pattern"], str(e)) from None
    choices: tuple[str, ...] = ()
    choices_from = spec.get("choices_from")
    if kind == "choice":
        raw = spec.get("choices")
        if (raw is None) == (choices_from is None):
            raise fail(loc, f"a choice field needs choices: [..] or choices_from: ({', '.join(CHOICES_FROM)})")
        if choices_from is not None and choices_from not in CHOICES_FROM:
            raise fail([*loc, "choices_from"], f"expected one of {', '.join(CHOICES_FROM)}")
        if raw is not None:
            if not isinstance(raw, list) or not raw or len(raw) > CHOICES_MAX \
                    or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in raw):
                raise fail([*loc, "choices"], f"expected a list of 1 to {CHOICES_MAX} texts")
            choices = tuple(str(c) for c in raw)
            if len(set(choices)) != len(choices):
                raise fail([*loc, "choices"], "a choice is listed twice")
    elif spec.get("choices") is not None or choices_from is not None:
        raise fail([*loc, "choices"], "choices are for a field of type choice")
    minimum, maximum = spec.get("min"), spec.get("max")
    for key, value in (("min", minimum), ("max", maximum)):
        if value is None:
            continue
        if kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or kind == "integer" and not float(value).is_integer():
                raise fail([*loc, key], f"expected {'a whole number' if kind == 'integer' else 'a number'}")
        elif kind == "date":
            if not (value == "today" or isinstance(value, (str, date)) and _date(str(value)) is not None):
                raise fail([*loc, key], "expected today or a date (YYYY-MM-DD)")
            if isinstance(value, date):
                value = value.isoformat()
        else:
            raise fail([*loc, key], "min and max are for integer, number and date fields")
    if kind in ("integer", "number") and minimum is not None and maximum is not None and minimum > maximum:
        raise fail([*loc, "max"], "is below min")
    limit = LONG_TEXT_MAX if kind == "long_text" else TEXT_MAX
    max_length = spec.get("max_length", limit)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= limit:
        raise fail([*loc, "max_length"], f"expected a whole number from 1 to {limit}")
    show_when = None
    if spec.get("show_when") is not None:
        show_when = condition(spec["show_when"], [*loc, "show_when"], fail, before)
    f = Field(name, label, kind, required, _text(spec.get("help"), [*loc, "help"], fail, limit=500),
              pattern, _text(spec.get("message"), [*loc, "message"], fail, limit=500), choices,
              choices_from, str(minimum) if isinstance(minimum, date) else minimum,
              str(maximum) if isinstance(maximum, date) else maximum, max_length, show_when)
    if spec.get("default") is not None:
        if kind in ("user", "date") or choices_from:
            raise fail([*loc, "default"], "a default is for fields whose values the catalog itself knows")
        value, error = check_value(f, spec["default"], today=date(2000, 1, 1), options=None, users=None)
        if error:
            raise fail([*loc, "default"], error)
        f = f._replace(default=value)
    return f


def condition(spec: Any, loc: list[Any], fail: Fail, fields: list[Field]) -> Condition:
    ops = ("equals", "in", "above", "below", "set")
    if not isinstance(spec, dict) or set(spec) - {"field", *ops} or len(spec) != 2 or "field" not in spec:
        raise fail(loc, "expected {field: NAME, equals: VALUE} (or in: [..], above: N, below: N, set: true)")
    name = spec["field"]
    known = {f.name: f for f in fields}
    if name not in known:
        raise fail([*loc, "field"], f"no field {name!r} before this one (known: {', '.join(known) or 'none'})")
    op = next(k for k in spec if k != "field")
    value = spec[op]
    if op in ("above", "below") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise fail([*loc, op], "expected a number")
    if op == "in" and (not isinstance(value, list) or not value):
        raise fail([*loc, op], "expected a list of values")
    if op == "set" and not isinstance(value, bool):
        raise fail([*loc, op], "expected true or false")
    return Condition(name, op, value, known[name].label)


def stage(spec: Any, loc: list[Any], fail: Fail, fields: list[Field]) -> Stage:
    if not isinstance(spec, dict):
        raise fail(loc, "expected a stage (a mapping with name, approvers, need, when)")
    _keys(spec, STAGE_KEYS, loc, fail)
    approvers = spec.get("approvers")
    if not isinstance(approvers, str) or not approver_rule(approvers):
        raise fail([*loc, "approvers"], "expected user:NAME, role:ROLE, team:NAME, owner:FIELD or manager")
    kind, _, rest = approvers.partition(":")
    if kind == "role":
        from .roles import RANK

        if rest not in RANK:
            raise fail([*loc, "approvers"], f"unknown role {rest!r}: expected one of {', '.join(RANK)}")
    if kind == "owner":
        owner = next((f for f in fields if f.name == rest), None)
        if owner is None or owner.choices_from is None:
            raise fail([*loc, "approvers"], f"owner:{rest} needs a field {rest!r} with choices_from services or cis")
    need = spec.get("need", 1)
    if need == "all":
        need = 0
    if isinstance(need, bool) or not isinstance(need, int) or not 0 <= need <= 100:
        raise fail([*loc, "need"], "expected a number of approvals (1 or more) or all")
    if need > 1 and (kind == "user" or approvers == "manager"):
        raise fail([*loc, "need"], f"{approvers} is one person: need is 1")
    when = condition(spec["when"], [*loc, "when"], fail, fields) if spec.get("when") is not None else None
    name = _text(spec.get("name"), [*loc, "name"], fail) or approvers
    return Stage(name, approvers, need, when)


def approver_rule(text: str) -> bool:
    if text == "manager":
        return True
    kind, colon, rest = text.partition(":")
    return bool(colon) and kind in APPROVER_KINDS and not blank(rest) and len(rest) <= NAME_MAX and rest.isprintable()


def _keys(spec: dict, known: set[str], loc: list[Any], fail: Fail) -> None:
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise fail([*loc, unknown[0]], f"unknown setting (expected {', '.join(sorted(known))})")


def _text(value: Any, loc: list[Any], fail: Fail, *, required: bool = False, limit: int = NAME_MAX) -> str:
    if value is None:
        if required:
            raise fail(loc, "missing (required)")
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or len(str(value)) > limit \
            or (required and blank(str(value))):
        raise fail(loc, f"expected a text of 1 to {limit} characters")
    return str(value).strip()


def _span(value: Any, loc: list[Any], fail: Fail) -> timedelta | None:
    if value is None:
        return None
    from .sla import duration

    def said(message: str) -> BadInput:
        raise fail(loc, message.removeprefix(": "))

    return duration(value, "", said)


def _placeholders(template: str, names: set[str], loc: list[Any], fail: Fail) -> None:
    for name in _PLACEHOLDER.findall(template):
        if name not in names:
            raise fail(loc, f"{{{name}}} is not a field of this request type (fields: {', '.join(sorted(names)) or 'none'})")


def _date(text: str) -> date | None:
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# -- a submission's values ------------------------------------------------------------------------------


def validate(t: RequestType, raw: Mapping[str, Any], *, today: date, options: Mapping[str, list[str]] | None = None,
             users: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, errors): each field's value as its type has it, and one message per field that is
    wrong (the portal shows each beside its field; the CLI says the first). `options`: the CMDB's
    names for choices_from; `users`: the desk's users (key -> name) for user fields. A value for a
    field the type does not have is an error; one for a field not shown is dropped."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    unknown = [k for k in raw if t.field(str(k)) is None]
    for k in unknown[:1]:
        shown = str(k)[:40]
        errors[shown] = f"{t.id} has no field {shown!r} (fields: {', '.join(f.name for f in t.fields) or 'none'})"
    for f in t.fields:
        if f.show_when is not None and not f.show_when.holds(values):
            continue  # conditions name earlier fields only, whose values are known by now
        value, error = check_value(f, raw.get(f.name), today=today, options=options, users=users)
        if error:
            errors[f.name] = error
        elif value is not None:
            values[f.name] = value
    return values, errors


def check_value(f: Field, raw: Any, *, today: date, options: Mapping[str, list[str]] | None,
                users: Mapping[str, str] | None) -> tuple[Any, str | None]:
    """One field's value (None: not given) or the message why not."""
    if raw is None or isinstance(raw, str) and blank(raw) and f.type != "yes_no":
        if f.default is not None:
            return f.default, None
        return None, ("is required" if f.required else None)
    if isinstance(raw, (list, dict)):
        return None, "expected one value"
    if f.type == "yes_no":
        if isinstance(raw, bool):
            return raw, None
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE, None
        return None, "expected yes or no"
    text = str(raw) if not isinstance(raw, bool) else ""
    if isinstance(raw, bool):
        return None, "expected " + ("a number" if f.type in ("integer", "number") else "a text")
    if f.type != "long_text":
        text = text.strip()
    limit = f.max_length if f.type in ("text", "long_text") else NAME_MAX
    if len(text) > limit:
        return None, f"is at most {limit:,} characters (this one has {len(text):,})"
    if _CONTROL.search(text if f.type != "long_text" else text.replace("\r", "").replace("\t", "")) or \
            f.type != "long_text" and "\n" in text:
        return None, "holds a control character" + ("" if f.type == "long_text" else " or a line break")
    if f.type in ("integer", "number"):
        return _number(f, text)
    if f.type == "date":
        day = _date(text)
        if day is None:
            return None, "expected a date as YYYY-MM-DD"
        for bound, ok, said in ((f.minimum, lambda b: day >= b, "on or after"), (f.maximum, lambda b: day <= b, "on or before")):
            if bound is not None:
                limit_day = today if bound == "today" else _date(str(bound))
                if limit_day is not None and not ok(limit_day):
                    return None, f"must be {said} {limit_day.isoformat()}"
        return day.isoformat(), None
    if f.type == "choice":
        allowed = list(f.choices) if f.choices else list((options or {}).get(f.choices_from or "", []))
        if text not in allowed:
            shown = ", ".join(allowed[:10]) + (" ..." if len(allowed) > 10 else "")
            return None, f"expected one of {shown}" if allowed else "there is nothing to choose from yet"
        return text, None
    if f.type == "email":
        from .notify import ADDRESS

        if not ADDRESS.match(text):
            return None, "expected an email address"
        text = text.casefold()
    if f.type == "user":
        if users is not None:
            name = users.get(text.casefold())
            if name is None:
                return None, "expected the name of a user of this desk"
            text = name
    if f.pattern is not None and not f.pattern.fullmatch(text):
        return None, f.message or f"does not match {f.pattern.pattern}"
    if blank(text):
        return None, "is required" if f.required else None
    return text, None


def _number(f: Field, text: str) -> tuple[Any, str | None]:
    try:
        if f.type == "integer":
            if not re.fullmatch(r"[+-]?\d{1,15}", text):
                raise ValueError
            value: float = int(text)
        else:
            if len(text) > 40:
                raise ValueError
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
    except ValueError:
        return None, "expected a whole number" if f.type == "integer" else "expected a number"
    if f.minimum is not None and value < float(f.minimum):
        return None, f"must be at least {_shown(f.minimum)}"
    if f.maximum is not None and value > float(f.maximum):
        return None, f"must be at most {_shown(f.maximum)}"
    return value, None


def _shown(n: Any) -> str:
    return str(int(n)) if isinstance(n, (int, float)) and float(n).is_integer() else str(n)


def shown_value(f: Field, value: Any) -> str:
    if value is None:
        return ""
    if f.type == "yes_no":
        return "yes" if value else "no"
    return _shown(value) if f.type in ("integer", "number") else str(value)


def fill(template: str, values: Mapping[str, Any], t: RequestType, requester: str = "") -> str:
    """A template's {field}s replaced by their values as shown (an absent one by nothing);
    {requester} by the requester's address."""
    def one(m: re.Match[str]) -> str:
        f = t.field(m.group(1))
        return shown_value(f, values.get(m.group(1))) if f else requester if m.group(1) == "requester" else ""

    return _PLACEHOLDER.sub(one, template)


def ticket(t: RequestType, values: Mapping[str, Any], requester: str) -> dict[str, Any]:
    """The ticket a request opens: its type's queue, priority and category, a title from its
    summary, and each answer on a line of its description."""
    title = " ".join(fill(t.summary, values, t).split())[:TITLE_MAX] or t.title
    lines = [f"{f.label}: {shown_value(f, values[f.name])}" for f in t.fields if f.name in values]
    return {"kind": Kind.REQUEST.value, "title": title, "description": "\n".join(lines), "priority": t.priority,
            "category": t.category, "queue": t.queue, "requester": requester, "labels": {"request": t.id}}


def params(t: RequestType, values: Mapping[str, Any], requester: str) -> dict[str, str]:
    """The fulfilment runbook's parameters from the answers (the runbook checks each again)."""
    return {name: fill(template, values, t, requester) for name, template in t.params.items()}


# -- who is asked ---------------------------------------------------------------------------------------------


def needed(stage_need: int, approvers: list[str]) -> int:
    """How many of `approvers` must approve: `need` (0: all of them), at most as many as there are."""
    return len(approvers) if stage_need == 0 else min(stage_need, max(1, len(approvers)))


# -- JSON Schema (sdesk schema request TYPE) -----------------------------------------------------------------


def json_schema(t: RequestType, options: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a request's fields as `sdesk request TYPE -` reads them."""
    props: dict[str, Any] = {}
    for f in t.fields:
        p: dict[str, Any] = {"title": f.label}
        if f.help:
            p["description"] = f.help
        if f.type in ("text", "long_text", "user"):
            p.update(type="string", maxLength=f.max_length if f.type != "user" else NAME_MAX)
        elif f.type == "email":
            p.update(type="string", format="email")
        elif f.type == "date":
            p.update(type="string", format="date")
        elif f.type == "yes_no":
            p["type"] = "boolean"
        elif f.type in ("integer", "number"):
            p["type"] = f.type
            if f.minimum is not None:
                p["minimum"] = f.minimum
            if f.maximum is not None:
                p["maximum"] = f.maximum
        elif f.type == "choice":
            p.update(type="string", enum=list(f.choices) if f.choices else list((options or {}).get(f.choices_from or "", [])))
        if f.pattern is not None:
            p["pattern"] = f.pattern.pattern
        if f.default is not None:
            p["default"] = f.default
        props[f.name] = p
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"sdesk:catalog:{t.id}",
        "title": t.title, "description": t.description or t.title, "type": "object", "properties": props,
        "required": [f.name for f in t.fields if f.required and f.show_when is None and f.default is None],
        "additionalProperties": False}
    conditional = []
    for f in t.fields:
        if f.show_when is not None and f.required and f.default is None:
            c = f.show_when
            test: dict[str, Any] = {"const": c.value} if c.op == "equals" else {"enum": c.value} if c.op == "in" else \
                {"exclusiveMinimum": c.value} if c.op == "above" else {"exclusiveMaximum": c.value} if c.op == "below" \
                else {}
            given: dict[str, Any] = {"properties": {c.field: test}, "required": [c.field]}
            shown = {"not": {"required": [c.field]}} if c.op == "set" and not c.value else given
            conditional.append({"if": shown, "then": {"required": [f.name]}})
    if conditional:
        schema["allOf"] = conditional
    return schema
