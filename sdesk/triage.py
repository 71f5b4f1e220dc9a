"""Triage: what an arriving ticket is, where it goes and how urgent it is, and why. Pure: the
desk's `triage.yaml`, a ticket and its context in; a decision with its explanation out.

- Rules, in order: each has an id, a `match` and a `set`; `stop: true` ends evaluation. Later
  rules see what earlier ones set and may override it. Conditions: a value (equals), a list
  (one of), or operators (`equals in regex contains gt gte lt lte present missing`), on any
  ticket field, `labels.X`, `annotations.X`, `text` (title and description), the CI's `tier`
  and `dependents`, and `time: "22:00-06:00"` / `weekday: [sat, sun]`; `all`/`any`/`not`
  combine them.
- Priority from an ITIL impact x urgency matrix. Impact: the CI's tier, raised one level by a
  big blast radius; unknown without a CI (the priority given is kept). Urgency: the most urgent
  of the alert's severity, the words of the request and, for a service with an SLO, the burn
  rate its alert reports. A rule may set impact, urgency or the priority itself.
- Silences: Alertmanager-style matchers (`key=value`, `!=`, `=~`, `!~`) over labels and fields.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, tzinfo
from typing import Any, NamedTuple, Protocol

import orjson

from .domain import clock, patterns
from .domain.clock import WEEKDAYS
from .domain.lifecycle import NAME_MAX, Kind, Priority
from .errors import At, BadInput

TICKET_FIELDS = ("kind", "title", "description", "priority", "impact", "urgency", "category", "queue", "team",
                 "assignee", "service", "ci", "requester", "source", "fingerprint", "tags")
FACTS = (*TICKET_FIELDS, "text", "tier", "dependents")
TEXT_ACTIONS = ("category", "queue", "team", "assignee", "runbook")
ACTIONS = ("kind", "priority", "impact", "urgency", "tags", "parent", "suppress", *TEXT_ACTIONS)
OPERATORS = ("equals", "in", "regex", "contains", "gt", "gte", "lt", "lte", "present", "missing")
PRIORITIES = tuple(Priority)

# ITIL's 3x3: rows are impact 1 (high) to 3 (low), columns urgency 1 to 3.
DEFAULT_MATRIX = (("P1", "P2", "P3"), ("P2", "P3", "P4"), ("P3", "P4", "P4"))
DEFAULT_URGENT_WORDS = {
    1: ("outage", "data loss", "breach", "all users", "everyone", "production down"),
    2: ("down", "not working", "unavailable", "urgent", "asap", "cannot", "unable", "failing"),
}
SEVERITY_URGENCY = {"P1": 1, "P2": 2, "P3": 3, "P4": 3}


Values = dict[str, Any]  # what rules see, flat: "title", "labels.env", "tier"... as text; "tags" a list
NOW = "\0now"  # the local time, in Values, for time and weekday conditions


class Rule(NamedTuple):
    id: str
    line: int
    expression: str  # its conditions, compiled (see _Code)
    sets: dict[str, Any]
    stop: bool


class RuleSet:
    """Rules in order, compiled into one function that finds the first rule from a position
    whose conditions hold: a rule costs an `if`, not a call, so that 200 rules stay under 50
    microseconds a ticket. What the user wrote never enters the source: keys and values are
    bound to generated names (`_Code.bind`)."""

    def __init__(self, rules: tuple[Rule, ...] = (), names: dict[str, Any] | None = None,
                 uses: frozenset[str] = frozenset()):
        self.rules = rules
        self.uses = uses  # the facts the rules read beyond fields and labels (values_of)
        lines = ["def scan(V, start):"]
        lines += [f"    if start <= {i} and {rule.expression}:\n        return {i}" for i, rule in enumerate(rules)]
        lines.append("    return -1")
        namespace = dict(names or {})
        try:
            exec("\n".join(lines), namespace)  # noqa: S102 (generated from bound names only)
        except (SyntaxError, RecursionError, MemoryError):
            raise BadInput(f"{len(rules)} rules are more than this Python can compile; split or simplify them") from None
        self.scan: Callable[[Values, int], int] = namespace["scan"]

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


class TriageConfig(NamedTuple):
    rules: RuleSet = RuleSet()
    matrix: tuple[tuple[str, ...], ...] | None = DEFAULT_MATRIX  # None: priority as given
    tier_impact: Mapping[int, int] = {1: 1, 2: 2, 3: 3, 4: 3}
    blast_radius: int = 10  # this many dependents or more raise impact one level
    urgent_words: Mapping[int, tuple[str, ...]] = DEFAULT_URGENT_WORDS
    slos: Mapping[str, Any] = {}  # CI -> sla.Slo (from sla.yaml): burn counts in urgency
    oncall: Any = None  # routing.OnCall (from oncall.yaml): for `assignee: auto`
    burn_rate_label: str = "burn_rate"
    burn_rate_page: float = 14.4  # 2% of a 30-day budget in an hour (the SRE workbook's page)
    burn_rate_ticket: float = 6.0
    correlation_minutes: int = 30  # topology and grouping windows
    group_by: tuple[str, ...] = ()  # labels whose values group alerts into one incident
    group_key: bool = False  # also group by the sender's group key (Alertmanager's groupKey, as PagerDuty does)
    flap_minutes: int = 60  # a resolved alert firing again this soon reopens its ticket
    classifier_threshold: float | None = None  # None: the model's own, chosen when it was trained
    triage_queue: str = "triage"
    timezone: tzinfo | None = None  # for time and weekday conditions; None: the machine's


_TICKET_FIELDS = frozenset(TICKET_FIELDS)


def values_of(ticket: Mapping[str, Any], annotations: Mapping[str, str], context: Mapping[str, Any],
              now: datetime, uses: frozenset[str] = frozenset(FACTS) | {"annotations."}) -> Values:
    """The flat view rules test: every value as text (tags stay a list), labels and
    annotations under their prefixes, the CI's tier and dependents from the context; only
    as much of it as the rules `uses` (intake builds one per new ticket)."""
    values: Values = {NOW: now}
    for name, value in ticket.items():
        if name in _TICKET_FIELDS and value is not None and value != "":
            values[name] = value if name == "tags" or type(value) is str else _text(value)
    for name, value in (ticket.get("labels") or {}).items():
        values["labels." + name] = value
    if "annotations." in uses:
        for name, value in annotations.items():
            values["annotations." + name] = value
    if "text" in uses:
        values["text"] = "\n".join(filter(None, (ticket.get("title"), ticket.get("description"))))
    for name, source in (("tier", "tier"), ("dependents", "dependents_total")):
        if name in uses and context.get(source) is not None:
            values[name] = _text(context[source])
    return values


# -- loading ---------------------------------------------------------------------------------------


def build(data: Any, node: Any = None, fail: Callable[[list[str], str], Exception] | None = None) -> TriageConfig:
    """The TriageConfig of triage.yaml's data, which its model accepted: the rules compiled (the
    model compiles them too, with `fail` raising config's At, so that none fails here)."""
    from .domain import yamlfile

    data = data or {}
    fail = fail or (lambda loc, message: BadInput(f"triage.yaml: {'.'.join(loc)}: {message}"))
    options: dict[str, Any] = {}
    if data.get("timezone"):
        options["timezone"] = clock.zone_of(str(data["timezone"]), BadInput)
    code = _Code()
    compiled = tuple(_rule(raw, ["rules", str(i)], yamlfile.line_of(node, ["rules", str(i)]), fail, code)
                     for i, raw in enumerate(data.get("rules") or []))
    try:
        options["rules"] = RuleSet(compiled, code.names, frozenset(code.uses))
    except BadInput as e:
        raise fail(["rules"], str(e)) from None
    options.update(_priority(data.get("priority") or {}))
    options.update(_correlation(data.get("correlation") or {}))
    options.update(_classifier(data.get("classifier") or {}))
    return TriageConfig(**options)


def condition(node: Any, loc: list[str], fail: Callable) -> tuple[Callable[[Values], bool], frozenset[str]]:
    """A `match` as triage rules write it, for other files that select tickets (runbooks'
    `applies_to`): a test of the values `values_of` builds, and the facts it reads."""
    code = _Code()
    rules = RuleSet((Rule("", 0, _match(node, loc, fail, code), {}, False),), code.names, frozenset(code.uses))
    return (lambda values: rules.scan(values, 0) == 0), rules.uses


def _rule(raw: dict, loc: list[str], line: int, fail: Callable, code: _Code) -> Rule:
    def rule_fail(sub: list[str], message: str) -> Exception:
        return fail([*loc, *sub], message)

    expression = _match(raw["match"], ["match"], rule_fail, code)
    return Rule(str(raw["id"]).strip(), line, expression, _actions(raw["set"], rule_fail), raw.get("stop", False))


def rule_id(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError("an id is required")
    return value


def check_rule(raw: dict) -> None:
    """A rule's match and set compile (config.TriageRule runs this)."""
    _rule(raw, [], 0, lambda loc, message: At(loc, message), _Code())


class _Code:
    """The names a rule set's compiled conditions refer to (see RuleSet)."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {"NOW": NOW, "_numeric": _numeric}
        self.uses: set[str] = set()

    def bind(self, value: Any) -> str:
        name = f"c{len(self.names)}"
        self.names[name] = value
        return name


MAX_NESTING = 20  # all/any/not levels: deeper is a mistake, and Python's parser has limits too


def _match(node: Any, loc: list[str], fail: Callable, code: _Code) -> str:
    """A mapping of conditions, all of which must hold, as an expression."""
    if not isinstance(node, dict) or not node:
        raise fail(loc, "expected a mapping of conditions")
    if sum(part in ("all", "any", "not") for part in loc) > MAX_NESTING:
        raise fail(loc, f"all/any/not nested more than {MAX_NESTING} deep")
    return "(" + " and ".join(_condition(str(key), value, [*loc, str(key)], fail, code)
                              for key, value in node.items()) + ")"


def _condition(key: str, value: Any, loc: list[str], fail: Callable, code: _Code) -> str:
    """A condition as an expression."""
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise fail(loc, "expected a list of conditions")
        parts = [_match(v, [*loc, str(i)], fail, code) for i, v in enumerate(value)]
        return "(" + f" {'and' if key == 'all' else 'or'} ".join(parts) + ")"
    if key == "not":
        return f"(not {_match(value, loc, fail, code)})"
    if key == "time":
        return f"{code.bind(_time_window(value, loc, fail))}(V[NOW])"
    if key == "weekday":
        days = value if isinstance(value, list) else [value]
        wanted = {str(d).strip().lower()[:3] for d in days}
        if not wanted or not wanted <= set(WEEKDAYS):
            raise fail(loc, f"expected names from {', '.join(WEEKDAYS)}")
        return f"(V[NOW].weekday() in {code.bind(frozenset(WEEKDAYS.index(d) for d in wanted))})"
    if key not in FACTS and not (key.startswith(("labels.", "annotations.")) and key.split(".", 1)[1]):
        raise fail(loc, f"unknown field {key!r} (fields: {', '.join(FACTS)}, labels.NAME, annotations.NAME)")
    if not isinstance(value, dict):
        value = {"in" if isinstance(value, list) else "equals": value}
    if not value:
        raise fail(loc, "expected operators")
    return "(" + " and ".join(_operator(key, op, arg, loc, fail, code) for op, arg in value.items()) + ")"


def _operator(key: str, op: Any, arg: Any, loc: list[str], fail: Callable, code: _Code) -> str:
    """One operator on the value at `key` as an expression (for tags, a list, any tag may
    satisfy it)."""
    if op not in OPERATORS:
        raise fail([*loc, str(op)], f"unknown operator {op!r} (operators: {', '.join(OPERATORS)})")
    scalars = arg if op == "in" and isinstance(arg, list) else [arg]
    if any(a is None or isinstance(a, (list, dict)) for a in scalars):
        raise fail([*loc, op], "expected " + ("a list of values" if op == "in" else "a single value"))
    code.uses.add("annotations." if key.startswith("annotations.") else key)
    get = f"V.get({code.bind(key)})"
    listed = key == "tags"
    if op == "equals":
        want = code.bind(_text(arg))
        return f"({want} in ({get} or ()))" if listed else f"({get} == {want})"
    if op == "in":
        if not isinstance(arg, list):
            raise fail([*loc, op], "expected a list")
        choices = code.bind(frozenset(_text(a) for a in arg))
        return f"(not {choices}.isdisjoint({get} or ()))" if listed else f"({get} in {choices})"
    if op == "regex":
        try:
            search = code.bind(patterns.compile(_text(arg)).search)
        except BadInput as e:
            raise fail([*loc, op], f"bad regex {patterns.shown(str(arg))}: {e}") from None
        return f"any(map({search}, {get} or ()))" if listed else f"{search}({get} or '')"
    if op == "contains":
        needle = code.bind(_text(arg).lower())
        return f"({needle} in ({get} or ()))" if listed else f"({needle} in ({get} or '').lower())"
    if op in ("present", "missing"):
        if not isinstance(arg, bool):
            raise fail([*loc, op], "expected true or false")
        return f"bool({get})" if arg == (op == "present") else f"(not {get})"
    try:
        bound = float(arg)
    except (TypeError, ValueError):
        raise fail([*loc, op], "expected a number") from None
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    number = code.bind(None)  # a name for the value, unique to this operator
    return f"(({number} := _numeric(V, {code.bind(key)}, {code.bind('#' + key)})) is not None " \
           f"and {number} {symbol} {code.bind(bound)})"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN compares as nothing


def _numeric(values: Values, key: str, slot: str) -> float | None:
    """The value at `key` as a number, converted once per ticket (kept at `slot`)."""
    try:
        return values[slot]
    except KeyError:
        number = values[slot] = _number(values.get(key))
        return number


_CLOCK = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def _time_window(value: Any, loc: list[str], fail: Callable) -> Callable[[datetime], bool]:
    found = _CLOCK.match(str(value))
    if not found:
        raise fail(loc, "expected HH:MM-HH:MM, e.g. 22:00-06:00")
    h1, m1, h2, m2 = map(int, found.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2

    def test(now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        return start <= minute < end if start <= end else minute >= start or minute < end

    return test


def _actions(node: Any, fail: Callable) -> dict[str, Any]:
    if not isinstance(node, dict) or not node:
        raise fail(["set"], "expected a mapping of actions")
    sets: dict[str, Any] = {}
    for key, value in node.items():
        key = str(key)
        loc = ["set", key]
        if key not in ACTIONS:
            raise fail(loc, f"unknown action {key!r} (actions: {', '.join(ACTIONS)})")
        if key == "kind":
            # Problems and changes are records of their own (sdesk problem, sdesk change).
            if value not in (Kind.INCIDENT, Kind.REQUEST):
                raise fail(loc, "expected incident or request")
        elif key == "priority":
            value = str(value).upper()
            if value not in PRIORITIES:
                raise fail(loc, f"expected one of {', '.join(PRIORITIES)}")
        elif key in ("impact", "urgency"):
            if type(value) is not int or not 1 <= value <= 3:
                raise fail(loc, "expected 1, 2 or 3")
        elif key == "tags":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
                raise fail(loc, "expected a tag or a list of tags")
            value = [t.strip() for t in value]
        elif key == "parent":
            from .domain.lifecycle import parse_ref

            try:
                value = parse_ref(str(value), "SD-", "parent")
            except BadInput as e:
                raise fail(loc, str(e)) from None
        elif key == "suppress":
            if value is False:
                continue
            if value is not True and not (isinstance(value, str) and value.strip()):
                raise fail(loc, "expected true or a reason")
        elif not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX:
            raise fail(loc, f"expected text of 1 to {NAME_MAX} characters")
        else:
            value = value.strip()
        sets[key] = value
    return sets


def _priority(section: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "matrix" in section:
        out["matrix"] = tuple(tuple(str(p).upper() for p in row) for row in section["matrix"])
    if "tier_impact" in section:
        out["tier_impact"] = dict(section["tier_impact"])
    if "blast_radius" in section:
        out["blast_radius"] = section["blast_radius"]
    if "urgent_words" in section:
        out["urgent_words"] = {k: tuple(w.strip().lower() for w in v) for k, v in section["urgent_words"].items()}
    return out


def _correlation(section: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "group_key" in section:
        out["group_key"] = section["group_key"]
    for name in ("window_minutes", "flap_minutes"):
        if name in section:
            out["correlation_minutes" if name == "window_minutes" else name] = section[name]
    if "group_by" in section:
        out["group_by"] = tuple(x.strip() for x in section["group_by"])
    return out


def _classifier(section: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "threshold" in section:
        out["classifier_threshold"] = float(section["threshold"])
    if "triage_queue" in section:
        out["triage_queue"] = section["triage_queue"].strip()
    return out


# The checks of triage.yaml's settings (config.TriageFile runs them).


def matrix(value: Any) -> Any:
    if not (isinstance(value, list) and len(value) == 3 and all(
            isinstance(row, list) and len(row) == 3 and all(str(p).upper() in PRIORITIES for p in row) for row in value)):
        raise ValueError("expected 3 rows (impact 1-3) of 3 priorities (urgency 1-3)")
    return value


def tier_impact(value: Any) -> Any:
    if not isinstance(value, dict) or not all(type(k) is int and type(v) is int and 1 <= v <= 3 for k, v in value.items()):
        raise ValueError("expected tier: impact (1-3)")
    return value


def urgent_words(value: Any) -> Any:
    if not isinstance(value, dict) or not all(
            k in (1, 2) and type(k) is int and isinstance(v, list) and all(isinstance(w, str) and w.strip() for w in v)
            for k, v in value.items()):
        raise ValueError("expected 1: [words] and 2: [words]")
    return value


def label_names(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise ValueError("expected a list of label names")
    return value


def queue_name(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a queue name")
    return value


# -- deciding ----------------------------------------------------------------------------------------


class Decision(NamedTuple):
    sets: dict[str, Any]  # fields to change on the ticket
    suppress: str | None  # why it is kept out of the queue
    runbook: str | None
    parent: int | None
    explanation: dict[str, Any]


def run_rules(rules: RuleSet, values: Values) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The fields the matching rules set (later ones override earlier ones; tags add up), and
    which rules fired. Rules see the ticket as earlier rules left it."""
    sets: dict[str, Any] = {}
    fired = []
    i = rules.scan(values, 0)
    while i >= 0:
        rule = rules.rules[i]
        fired.append({"rule": rule.id, "set": rule.sets})
        for key, value in rule.sets.items():
            if key == "tags":
                value = list(dict.fromkeys([*(sets.get("tags") or values.get("tags") or []), *value]))
            sets[key] = value
            if key in TICKET_FIELDS:
                values[key] = value if key == "tags" else _text(value)
                values.pop("#" + key, None)  # a number read before this rule set it
        if rule.stop:
            break
        i = rules.scan(values, i + 1)
    return sets, fired


def impact_of(context: Mapping[str, Any], config: TriageConfig) -> tuple[int | None, str]:
    """Impact from the CI's tier and its blast radius: the tier of the most important CI that
    depends on it, and how many do (at least blast_radius raises it one level)."""
    tier = context.get("tier")
    if tier is None:
        return None, "no CI with a tier"
    impact = config.tier_impact.get(tier, 3)
    why = f"tier {tier} CI {context.get('ci')}"
    affected = context.get("highest_tier_affected")
    if affected is not None and config.tier_impact.get(affected, 3) < impact:
        impact = config.tier_impact.get(affected, 3)
        why += f", a tier {affected} CI depends on it"
    dependents = context.get("dependents_total") or 0
    if dependents >= config.blast_radius and impact > 1:
        impact -= 1
        why += f", raised: {dependents} dependents"
    elif dependents:
        why += f", {dependents} dependents"
    return impact, why


def urgency_of(ticket: Mapping[str, Any], annotations: Mapping[str, str], config: TriageConfig,
               burn: Callable[[str], float | None] | None = None) -> tuple[int, dict[str, Any]]:
    """The most urgent of the inputs, and each input."""
    inputs: dict[str, Any] = {"severity": SEVERITY_URGENCY.get(str(ticket.get("priority")), 3)}
    text = " ".join(filter(None, (ticket.get("title"), ticket.get("description")))).lower()
    found = _words(config.urgent_words.get(1, ()), config.urgent_words.get(2, ())).findall(text)
    if found:
        level = 1 if any(first for first, _ in found) else 2
        inputs["words"] = {"level": level, "found": sorted({pair[level - 1] for pair in found} - {""})}
    slo_ci = next((v for k in ("ci", "service") if (v := ticket.get(k)) in config.slos), None) if config.slos else None
    if slo_ci is not None:
        rate = _number((ticket.get("labels") or {}).get(config.burn_rate_label) or annotations.get(config.burn_rate_label))
        if rate is not None:
            level = 1 if rate >= config.burn_rate_page else 2 if rate >= config.burn_rate_ticket else 3
            inputs["burn_rate"] = {"rate": rate, "level": level}
        pace = burn(slo_ci) if burn is not None else None
        if pace is not None and pace >= 0.5:  # the desk's own count of the CI's error budget (sla.py)
            inputs["slo_burn"] = {"ci": slo_ci, "pace_6h": pace, "level": 1 if pace >= 2 else 2 if pace >= 1 else 3}
    levels = [inputs["severity"], inputs.get("words", {}).get("level", 3), inputs.get("burn_rate", {}).get("level", 3),
              inputs.get("slo_burn", {}).get("level", 3)]
    return min(levels), inputs


@functools.lru_cache(maxsize=64)
def _local(now: datetime, zone: tzinfo | None) -> datetime:
    """`now` in the desk's zone (a batch triages many tickets at one time)."""
    return now.astimezone(zone) if zone else now.astimezone()


@functools.lru_cache(maxsize=16)
def _words(urgent: tuple[str, ...], high: tuple[str, ...]) -> re.Pattern[str]:
    """One pass over lower-cased text for both levels' phrases, as whole words: findall gives
    (level 1 phrase, level 2 phrase) pairs."""
    def group(phrases: tuple[str, ...]) -> str:
        return "(" + "|".join(re.escape(p) for p in phrases) + ")" if phrases else "((?!x)x)"

    return re.compile(rf"\b(?:{group(urgent)}|{group(high)})\b")


class Classify(Protocol):
    """A classifier's guess at a field from a ticket's text (ClassifierStore.classify): the label,
    its confidence and the model's own routing threshold."""

    def __call__(self, field: str, *, text: str) -> tuple[str, float, float] | None: ...


def decide(config: TriageConfig, ticket: dict[str, Any], *, annotations: Mapping[str, str] = {},
           context: Mapping[str, Any] = {}, now: datetime,
           classify: Classify | None = None,
           burn: Callable[[str], float | None] | None = None) -> Decision:
    """Rules, then the priority matrix, then the classifier for what no rule or source set."""
    local = _local(now, config.timezone)
    sets, fired = run_rules(config.rules, values_of(ticket, annotations, context, local, config.rules.uses))
    explanation: dict[str, Any] = {"rules": fired} if fired else {}
    merged = {**ticket, **{k: v for k, v in sets.items() if k in TICKET_FIELDS}}

    rule_impact, rule_urgency = "impact" in sets, "urgency" in sets
    impact, impact_why = (sets["impact"], "set by a rule") if rule_impact else \
        (ticket["impact"], "given") if ticket.get("impact") else impact_of(context, config)
    urgency, urgency_inputs = urgency_of(ticket, annotations, config, burn)
    if rule_urgency:
        urgency, urgency_inputs = sets["urgency"], {**urgency_inputs, "rule": sets["urgency"]}
    elif ticket.get("urgency"):
        urgency, urgency_inputs = ticket["urgency"], {**urgency_inputs, "given": ticket["urgency"]}
    priority: dict[str, Any] = {"impact": impact, "impact_from": impact_why, "urgency": urgency,
                                "urgency_from": urgency_inputs}
    if "priority" in sets:
        priority["result"], priority["from"] = sets["priority"], "set by a rule"
    elif impact is None or config.matrix is None:
        priority["result"], priority["from"] = ticket.get("priority"), \
            "as given: impact unknown" if config.matrix else "as given: no priority matrix (no triage.yaml)"
    else:
        priority["result"] = config.matrix[impact - 1][urgency - 1]
        priority["from"] = f"matrix: impact {impact} x urgency {urgency}"
    explanation["priority"] = priority
    if priority["result"] and priority["result"] != ticket.get("priority"):
        sets["priority"] = priority["result"]
    for name, value in (("impact", impact), ("urgency", urgency)):
        if value is not None and value != ticket.get(name):
            sets[name] = value

    if classify is not None:
        text = "\n".join(filter(None, (merged.get("title"), merged.get("description"))))
        for field in ("category", "queue"):
            if merged.get(field):
                continue
            guess = classify(field, text=text)
            if guess is None:
                continue
            label, confidence, trained = guess
            threshold = trained if config.classifier_threshold is None else config.classifier_threshold
            routed = confidence >= threshold
            explanation.setdefault("classifier", {})[field] = {
                "label": label, "confidence": round(confidence, 3), "threshold": round(threshold, 4),
                "applied": routed}
            if routed:
                sets[field] = label
            elif field == "category" and not merged.get("queue") and "queue" not in sets:
                sets["queue"] = config.triage_queue  # a person decides what the model could not
                explanation["classifier"][field]["sent_to"] = config.triage_queue
    suppress = sets.pop("suppress", None)
    runbook = sets.pop("runbook", None)
    parent = sets.pop("parent", None)
    if suppress is not None:
        suppress = f"rule {next(f['rule'] for f in reversed(fired) if 'suppress' in f['set'])}" \
            if suppress is True else str(suppress)
    changed = {k: v for k, v in sets.items() if ticket.get(k) != v}
    if changed:
        explanation["set"] = changed
    return Decision(changed, suppress, runbook, parent, explanation)


# -- silences ------------------------------------------------------------------------------------------


class Matcher(NamedTuple):
    name: str
    op: str  # = != =~ !~
    value: str


_MATCHER = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def parse_matcher(text: str) -> Matcher:
    """`key=value`, `key!=value`, `key=~regex`, `key!~regex` (Alertmanager's matchers; a regex
    must match the whole value)."""
    found = _MATCHER.match(text)
    if not found:
        raise BadInput(f"--match {text!r}: expected key=value, key!=value, key=~regex or key!~regex")
    name, op, value = found.groups()
    value = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if op in ("=~", "!~"):
        try:
            patterns.compile(value)
        except BadInput as e:
            raise BadInput(f"--match {patterns.shown(text)}: bad regex: {e}") from None
    return Matcher(name, op, value)


def matches(matchers: list[Matcher], ticket: Mapping[str, Any]) -> bool:
    """Whether every matcher holds for the ticket: a name is a label first, then a field. The
    exact matchers are checked first: most silences name an alertname or instance, which
    rejects most alerts before any regex runs. A regex (RE2, fully anchored as Alertmanager's)
    that no longer compiles (a silence stored before RE2) matches nothing."""
    labels = ticket.get("labels") or {}

    def value_of(m: Matcher) -> str:
        value = labels.get(m.name, ticket.get(m.name))
        return "" if value is None else str(value)

    for m in matchers:
        if m.op == "=" and value_of(m) != m.value or m.op == "!=" and value_of(m) == m.value:
            return False
    for m in matchers:
        if m.op in ("=~", "!~"):
            try:
                if patterns.fullmatch(m.value, value_of(m)) != (m.op == "=~"):
                    return False
            except BadInput:
                return False
    return True


# -- replay ----------------------------------------------------------------------------------------------

REPLAYED = ("queue", "priority", "category", "kind", "team", "assignee", "impact", "urgency", "tags", "runbook")


class Stored(NamedTuple):
    """A stored ticket as triage saw it on arrival, for replay and re-triage."""
    current: dict[str, Any]  # the row as it is now
    arrived: dict[str, Any]  # what the source sent, with what enrichment set (ci, team, queue)
    context: dict[str, Any]  # the CI's tier and blast radius
    annotations: Mapping[str, str]
    created: datetime


def arrival(created_event: Mapping[str, Any], enriched_set: Mapping[str, Any] | None) -> dict[str, Any]:
    """The input triage saw: the `created` event's fields, then what enrichment set."""
    arrived = {k: v for k, v in created_event.items() if k in _TICKET_FIELDS or k == "labels"}
    return {**arrived, **(enriched_set or {})}


def changes(stored: Stored, decision: Decision) -> dict[str, list[Any]]:
    """Field -> [now, what triage decides] where they differ."""
    decided = {**stored.arrived, **decision.sets}
    if decision.runbook:
        decided["runbook"] = decision.runbook
    diff = {k: [stored.current.get(k), decided.get(k)] for k in REPLAYED
            if k in decided and decided.get(k) != stored.current.get(k)}
    if decision.suppress and not stored.current.get("suppressed"):
        diff["suppressed"] = [None, decision.suppress]
    return diff


def replay(config: TriageConfig, tickets: Iterable[Stored]) -> dict[str, Any]:
    """What the rules and matrix would make of stored tickets, from what arrived: how often
    each rule matches, and the tickets whose fields would differ from what they are now.
    Writes nothing; the classifier and correlation are not replayed (they depend on the
    state of the desk at arrival)."""
    per_rule = {rule.id: 0 for rule in config.rules}
    changed = []
    suppressed = count = 0
    for count, stored in enumerate(tickets, start=1):
        decision = decide(config, stored.arrived, annotations=stored.annotations, context=stored.context,
                          now=stored.created)
        for fired in decision.explanation.get("rules", ()):
            per_rule[fired["rule"]] += 1
        diff = changes(stored, decision)
        suppressed += "suppressed" in diff
        if diff:
            changed.append({"id": stored.current["id"], "title": stored.current.get("title"), "changes": diff})
    return {"tickets": count, "rules": per_rule, "would_change": len(changed),
            "would_suppress": suppressed, "changed": changed}


# A desk without triage.yaml that has silences or a trained model: those apply, nothing else
# (no matrix, no correlation, no flapping).
UNCONFIGURED = TriageConfig(matrix=None, correlation_minutes=0, flap_minutes=0)


class Annotations(Mapping[str, str]):
    """An alert's annotations, parsed only if triage reads them (most rules never do)."""

    def __init__(self, text: str):
        self._text = text
        self._map: dict[str, str] | None = None

    def _parsed(self) -> dict[str, str]:
        if self._map is None:
            self._map = orjson.loads(self._text) if self._text != "{}" else {}
        return self._map

    def __getitem__(self, key: str) -> str:
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())
