"""Desk configuration: YAML files in a folder the team keeps in git (`--config DIR`,
`SDESK_CONFIG`), each validated by its pydantic model here (MODELS), the one way: an error is
one line, `FILE:LINE: setting.path: message`.

The models check shape, types and ranges, and run the domain's own checks (a duration, a time
zone, an RE2 pattern, a rule's match compiled, a runbook's commands) and the cross-references
(a team's schedule exists) as validators; the domain then builds its objects from the data the
model accepted (sla.build, routing.build, ...). validated.read is how the desk reads a file:
sdesk new stays off pydantic once a file's text was checked. A missing folder or file means
the defaults: a fresh desk just works.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import files, triage
from .domain import routing, runbooks, sla, yamlfile
from .domain.cmdb import DEFAULT_MATCH_LABELS
from .domain.lifecycle import MAX_SETTING_DAYS, Kind, Priority, Status
from .domain.metrics import MAX_RATE, share
from .domain.plain import controls
from .domain.roles import DEFAULT_ROLE, check_role
from .errors import At, BadInput
from .intake.enrich import EnrichOptions

M = TypeVar("M", bound=BaseModel)


class DeskFile(BaseModel):
    """A desk file's model: no setting it does not know, no type coerced (the domain builds its
    objects from the data the model accepted, so they must agree: `"5"` is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping of settings ({', '.join(cls.model_fields)}), "
                             f"not {_kind(data)}")
        return data


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", bool: "true/false", int: "a number", float: "a number",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def domain(check: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    """`check(value, ...)` of a domain module, its BadInput made a validator's error."""
    try:
        return check(value, *args, **kwargs)
    except BadInput as e:
        raise ValueError(str(e)) from None


def _fail(message: str) -> ValueError:
    """The `fail` a domain check takes, for a validator: its message without the setting's name
    (the error line names the setting)."""
    return ValueError(message.split(": ", 1)[1] if message.startswith(": ") else message)


def _duration(value: Any, zero: bool = False) -> Any:
    sla.duration(value, "", _fail, zero=zero)
    return value


def Number(low: float, high: float, message: str) -> Any:
    """A number from `low` to `high` (not true/false, not NaN); else `message`."""
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(message)
        return value

    return Annotated[Any, AfterValidator(check)]


def _share(value: Any) -> Any:
    share(value, _fail)
    return value


Duration = Annotated[Any, AfterValidator(_duration)]
Share = Annotated[Any, AfterValidator(_share)]
PRIORITIES = tuple(Priority)


def _freeze(value: Any) -> Any:
    if value not in ("off", "warn", "refuse"):
        raise ValueError("expected off, warn or refuse")
    return value


def _times(value: Any) -> Any:
    """`{P1: 15m, P2: 1h}`: a time by priority."""
    if not isinstance(value, dict) or not set(map(str, value)) <= set(PRIORITIES):
        raise ValueError("expected priorities and times, e.g. {P1: 15m}")
    for priority, time in value.items():
        try:
            _duration(time)
        except ValueError as e:
            raise At([priority], str(e)) from None
    return value


class RolesFile(DeskFile):
    """`roles.yaml`: the role of someone who is not a user of the desk (roles.py)."""

    default_role: str = DEFAULT_ROLE

    @field_validator("default_role")
    @classmethod
    def _role(cls, value: str) -> str:
        return domain(check_role, value)


class EnrichConfig(BaseModel):
    """`intake.yaml` `enrich:`: the context a new ticket gets from the CMDB, changes and KB."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Ticket labels that may name the CI, best first (after the ticket's ci and service fields).
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_MATCH_LABELS))
    # Bounded so that no later use overflows (now - hours, a LIMIT SQLite takes as a 64-bit int).
    change_window_hours: int = Field(default=24, ge=0, le=MAX_SETTING_DAYS * 24)
    kb_articles: int = Field(default=3, ge=0, le=1000)
    similar_tickets: int = Field(default=5, ge=0, le=1000)
    similar_within_days: int = Field(default=14, ge=0, le=MAX_SETTING_DAYS)

    def options(self) -> EnrichOptions | bool:
        if not self.enabled:
            return False
        return EnrichOptions(labels=tuple(self.labels), change_window_hours=self.change_window_hours,
                             kb_articles=self.kb_articles, similar_tickets=self.similar_tickets,
                             similar_within_days=self.similar_within_days)


class IntakeConfig(BaseModel):
    """`intake.yaml`: how payloads become tickets."""

    model_config = ConfigDict(extra="forbid")

    # Severity words (any case) -> priority, over the built-in table (intake.SEVERITY).
    severity: dict[str, Priority] = Field(default_factory=dict)
    # Sources whose resolved alerts are only recorded on the ticket, not resolving it.
    record_resolved: list[str] = Field(default_factory=list)
    # Also mask email addresses and phone numbers in stored text (ticket text, labels, comments).
    mask_pii: bool = False
    # An email reply reopens a ticket resolved or closed less than this many days ago.
    reopen_within_days: int = Field(default=14, ge=0, le=MAX_SETTING_DAYS)
    # A catalog approver may decide by replying "approve" or "reject REASON" to the approval
    # mail. Off unless the desk's mail comes through a gateway that checks senders (DKIM, SPF):
    # From can be forged, and the reply is taken as that user's decision.
    approve_by_mail: bool = False
    enrich: EnrichConfig = Field(default_factory=EnrichConfig)


class MetricsTargets(DeskFile):
    """`metrics.yaml` `targets:`, each a figure's goal (metrics.Targets has the defaults)."""

    acknowledge: Annotated[Any, AfterValidator(_times)] = None
    resolve: Annotated[Any, AfterValidator(_times)] = None
    fcr: Share = None
    automated_resolution: Share = None
    reopen: Share = None
    escalation: Share = None
    sla: Share = None
    csat: Number(1, 5, "expected a number from 1 to 5") = None
    pages_per_responder_week: Number(0, 10_000, "expected a number from 0 to 10000") = None


Rate = Number(0, MAX_RATE, "expected a number, 0 or more")


class MetricsCost(DeskFile):
    """`metrics.yaml` `cost:`: what an hour of an agent, a page and the tooling cost."""

    agent_hour: Rate
    page: Rate
    monthly_tooling: Rate

    @model_validator(mode="before")
    @classmethod
    def _all_three(cls, data: Any) -> Any:
        for key in cls.model_fields:
            if isinstance(data, dict) and data.get(key) is None:
                raise At([key], "missing (the cost model needs agent_hour, page and monthly_tooling)")
        return data


class MetricsFile(DeskFile):
    """`metrics.yaml`: targets, the cost model and the business hours (metrics.build)."""

    targets: MetricsTargets | None = None
    cost: MetricsCost | None = None
    # A calendar of sla.yaml: pages outside it are out of hours.
    out_of_hours: str | None = None


def check(fn: Any) -> Any:
    """Any YAML value, checked by `fn` (a domain check raising ValueError or At)."""
    return Annotated[Any, AfterValidator(fn)]


def _name(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ValueError("expected a name")
    return value


def _zone(value: Any) -> Any:
    from .domain.clock import zone_of

    zone_of(value, lambda message: ValueError(message.removeprefix("timezone: ")))
    return value


Name = check(_name)
Zone = Annotated[Any, AfterValidator(_zone), Field(validate_default=True)]  # required, with its own message


class SlaCalendar(DeskFile):
    """`sla.yaml` `calendars:` item: when the clock runs."""

    name: Name
    timezone: Zone = None
    hours: check(sla.hours)
    holidays: check(sla.holidays) = None


class SlaPolicy(DeskFile):
    """`sla.yaml` `policies:` item (the first that matches a ticket's kind and priority applies)."""

    name: Name
    kind: check(sla.one_of(Kind)) = None
    priority: check(sla.one_of(Priority)) = None
    respond: Duration = None
    resolve: Duration = None
    calendar: Name | None = None
    pause: check(sla.one_of(Status)) = None
    warn_at: check(sla.warn_at) = 0.8

    @model_validator(mode="after")
    def _a_target(self) -> SlaPolicy:
        if self.respond is None and self.resolve is None:
            raise ValueError("needs a respond or a resolve target")
        return self


class SlaSlo(DeskFile):
    """`sla.yaml` `slos:` item: a CI's service level objective."""

    ci: Name
    objective: Annotated[Any, AfterValidator(sla.objective), Field(validate_default=True)] = None
    window: Duration = "30d"
    counts: check(sla.counts) = None
    freeze: check(_freeze) = "warn"


class SlaFile(DeskFile):
    """`sla.yaml`: calendars, policies and SLOs (sla.build)."""

    calendars: list[SlaCalendar] | None = None
    policies: list[SlaPolicy] | None = None
    slos: list[SlaSlo] | None = None

    @model_validator(mode="after")
    def _names(self) -> SlaFile:
        calendars: set[str] = set()
        for i, c in enumerate(self.calendars or []):
            if str(c.name) in calendars:
                raise At(["calendars", i, "name"], "the name is used twice")
            calendars.add(str(c.name))
        policies: set[str] = set()
        for i, p in enumerate(self.policies or []):
            if str(p.name) in policies:
                raise At(["policies", i, "name"], "the name is used twice")
            policies.add(str(p.name))
            if p.calendar is not None and str(p.calendar) not in calendars:
                raise At(["policies", i, "calendar"], f"unknown calendar {p.calendar!r}")
        return self


OnCallName = check(routing.name)


def _int_range(low: int, high: int, message: str) -> Any:
    def check_int(value: Any) -> Any:
        if type(value) is not int or not low <= value <= high:
            raise ValueError(message)
        return value

    return check(check_int)


def _layer_start(value: Any) -> Any:
    routing.layer_start(value)
    return value


def _layer_length(value: Any) -> Any:
    routing.layer_length(value)
    return value


def _clock(value: Any) -> Any:
    routing.clock_of(value)
    return value


def _users(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError("a layer needs at least one user (a list)")
    for i, user in enumerate(value):
        try:
            routing.name(user)
        except ValueError as e:
            raise At([i], str(e)) from None
    return value


def _targets(value: Any) -> Any:
    if not value:
        raise ValueError("a level needs targets: user:NAME, schedule:NAME or team:NAME")
    return value


def _strategy(value: Any) -> Any:
    if value not in routing.STRATEGIES:
        raise ValueError(f"expected one of {', '.join(routing.STRATEGIES)}")
    return value


class OnCallWindow(DeskFile):
    """A layer's restriction: the days and hours it covers."""

    days: check(routing.days) = None
    from_: Annotated[Any, AfterValidator(_clock), Field(alias="from")]
    to: check(_clock)


class OnCallLayer(DeskFile):
    """A rotation: users handing off every `length` from `start` (local time in the schedule's zone)."""

    name: Any = None
    start: Annotated[Any, AfterValidator(_layer_start), Field(validate_default=True)] = None
    length: Annotated[Any, AfterValidator(_layer_length), Field(validate_default=True)] = None
    users: Annotated[Any, AfterValidator(_users), Field(validate_default=True)] = None
    restrictions: list[OnCallWindow] | None = None


class OnCallSchedule(DeskFile):
    name: OnCallName
    timezone: Zone = None
    layers: list[OnCallLayer] = Field(default_factory=list, validate_default=True)
    description: Any = None

    @field_validator("layers")
    @classmethod
    def _some(cls, value: list) -> list:
        if not value:
            raise ValueError("needs at least one layer")
        return value


class OnCallTeam(DeskFile):
    name: OnCallName
    members: Annotated[Any, AfterValidator(routing.members), Field(validate_default=True)] = None
    schedule: str | None = None
    escalation: str | None = None
    description: Any = None


class OnCallLevel(DeskFile):
    targets: Annotated[Any, AfterValidator(_targets), Field(validate_default=True)] = None
    delay: check(lambda v: _duration(v, zero=True)) = "15m"


class OnCallPolicy(DeskFile):
    """An escalation policy: levels paged in turn until someone acknowledges."""

    name: Name
    levels: list[OnCallLevel] = Field(default_factory=list, validate_default=True)
    repeat: _int_range(0, 10, "expected 0 to 10") = 0
    page: check(sla.counts) = None

    @field_validator("levels")
    @classmethod
    def _some(cls, value: list) -> list:
        if not value:
            raise ValueError("needs at least one level")
        return value


class OnCallQueue(DeskFile):
    name: OnCallName
    team: str
    strategy: check(_strategy) = "manual"


class OnCallNotifier(DeskFile):
    """How pages leave: a command (the program and its arguments), a webhook, and/or channels of
    notify.yaml (email, Slack, ...: each reaches the person by their email or chat handle)."""

    command: check(routing.command) = None
    channels: check(routing.channel_names) = None
    webhook: check(routing.webhook) = None
    # At least a second: a smaller one cannot start a process or open a connection on a busy
    # machine, so every page would fail (a notifier that can never deliver is a config mistake).
    timeout: Number(1, 300, "expected seconds, from 1 to 300") = 10
    # Counted in SQL: a 64-bit int.
    max_per_hour: _int_range(1, 100_000, "expected a number from 1 to 100000") = None


class OnCallFile(DeskFile):
    """`oncall.yaml`: teams, schedules, escalation policies, queues and the notifier (routing.build)."""

    teams: list[OnCallTeam] | None = None
    schedules: list[OnCallSchedule] | None = None
    escalation: list[OnCallPolicy] | None = None
    default_team: str | None = None
    notifier: OnCallNotifier | None = None
    queues: list[OnCallQueue] | None = None

    @model_validator(mode="after")
    def _references(self) -> OnCallFile:
        """What names another thing names one that exists."""
        schedules = _unique(self.schedules, "schedules")
        teams = _unique(self.teams, "teams")
        policies = _unique(self.escalation, "escalation")
        members = {routing.member(m)[0] for team in self.teams or [] for m in team.members}
        for i, schedule in enumerate(self.schedules or []):
            for j, layer in enumerate(schedule.layers):
                for k, user in enumerate(layer.users):
                    if str(user) not in members:
                        raise At(["schedules", i, "layers", j, "users", k],
                                 f"unknown user {user!r} (not a member of any team)")
        for i, team in enumerate(self.teams or []):
            if team.schedule is not None and team.schedule not in schedules:
                raise At(["teams", i, "schedule"], f"unknown schedule {team.schedule!r}")
            if team.escalation is not None and team.escalation not in policies:
                raise At(["teams", i, "escalation"], f"unknown escalation policy {team.escalation!r}")
        known = {"user": members, "schedule": schedules, "team": teams}
        for i, policy in enumerate(self.escalation or []):
            for j, level in enumerate(policy.levels):
                for k, target in enumerate(routing._items(level.targets)):
                    kind, value = routing.target_kind(target)
                    if value not in known.get(kind, ()):
                        raise At(["escalation", i, "levels", j, "targets", k],
                                 f"target {target!r}: expected user:, schedule: or team: with a known name")
        if self.default_team is not None and self.default_team not in teams:
            raise At(["default_team"], f"unknown team {self.default_team!r}")
        for i, queue in enumerate(self.queues or []):
            if queue.team not in teams:
                raise At(["queues", i, "team"], f"unknown team {queue.team!r}")
            if queue.strategy == "oncall" and next(t for t in self.teams or [] if str(t.name) == queue.team).schedule is None:
                raise At(["queues", i, "strategy"], f"strategy oncall, but team {queue.team} has no schedule")
        return self


def _unique(items: list | None, key: str) -> set[str]:
    """The names of a list's items, each once."""
    names: set[str] = set()
    for i, item in enumerate(items or []):
        if str(item.name) in names:
            raise At([key, i, "name"], "the name is used twice")
        names.add(str(item.name))
    return names


def _param_type(value: Any) -> Any:
    if value not in runbooks.PARAM_TYPES:
        raise ValueError(f"expected one of {', '.join(runbooks.PARAM_TYPES)}")
    return value


def _pattern(value: Any) -> Any:
    runbooks.param_pattern(value)
    return value


class RunbookParam(DeskFile):
    """A runbook's parameter: its type, where its value comes from, its default."""

    type: check(_param_type) = "str"
    from_: Annotated[Any, AfterValidator(runbooks.param_source), Field(alias="from")] = None
    default: Any = None
    required: bool | None = None
    pattern: check(_pattern) = None  # RE2, compiled: a title must not run away
    description: Any = None


class RunbookThrottle(DeskFile):
    """At most `runs` runs per runbook and CI in each `per`: stops a loop of alerts and runs."""

    runs: _int_range(1, 1 << 62, "expected a whole number, at least 1")
    per: Duration = "1h"


def _runbook_name(value: Any) -> Any:
    if value is not None and not runbooks._NAME.match(str(value).strip()):
        raise ValueError(f"{str(value).strip()!r} is not a runbook name (letters, digits, - _ .)")
    return value


def _steps(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise ValueError("a runbook needs at least one step")
    return value


class RunbookFile(DeskFile):
    """A runbook (one file in runbooks/): its steps, parameters and secrets (runbooks.build)."""

    name: check(_runbook_name) = None
    description: Any = None
    applies_to: Any = None
    safe_for_automation: bool = False
    throttle: RunbookThrottle | None = None
    params: dict[Annotated[Any, AfterValidator(runbooks.param_name)], RunbookParam] | None = None
    secrets: dict[Annotated[Any, AfterValidator(runbooks.env_name)], check(runbooks.secret)] | None = None
    steps: Annotated[Any, AfterValidator(_steps), Field(validate_default=True)] = None
    on_failure: list[Any] | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _defaults_alone(cls, value: Any) -> Any:
        """`folder: /tmp` is the parameter's default alone."""
        return {k: runbooks.param_spec(v) for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _whole(self) -> RunbookFile:
        """What needs the whole runbook: a default its parameter may take, the condition of
        applies_to, and each step's commands against the parameters it may use (runbooks.build)."""
        data = self.model_dump(by_alias=True, exclude_unset=True)
        for key, spec in (self.params or {}).items():
            try:
                runbooks.param_default(key, spec.model_dump(by_alias=True, exclude_unset=True))
            except At as e:
                raise At(["params", key, *e.loc], e.message) from None
        runbooks.build(data, "", "runbook", fail=lambda loc, message: At(loc, message))
        return self


class TriageRule(DeskFile):
    """A rule: when its match holds for an arriving ticket, its set applies (triage.py)."""

    id: Annotated[Any, AfterValidator(triage.rule_id), Field(validate_default=True)] = None
    match: Any
    set: Any
    stop: bool = False
    description: Any = None

    @model_validator(mode="after")
    def _compiles(self) -> TriageRule:
        """Its match compiles (fields, operators, RE2 patterns, times) and its set is actions."""
        triage.check_rule(self.model_dump(exclude_unset=True))
        return self


class TriagePriority(DeskFile):
    """How impact and urgency make a priority."""

    matrix: check(triage.matrix) = None
    tier_impact: check(triage.tier_impact) = None
    blast_radius: _int_range(1, 1 << 62, "expected a positive number of dependents") = None
    urgent_words: check(triage.urgent_words) = None


# Bounded: `now - window` is computed on every new ticket.
Minutes = _int_range(0, MAX_SETTING_DAYS * 1440,
                     f"expected minutes, 0 (off) to {MAX_SETTING_DAYS * 1440} ({MAX_SETTING_DAYS} days)")


class TriageCorrelation(DeskFile):
    """Which alerts become one incident, and when a resolved one firing again reopens it."""

    window_minutes: Minutes = None
    flap_minutes: Minutes = None
    group_by: check(triage.label_names) = None
    group_key: bool = False


class TriageClassifier(DeskFile):
    threshold: Number(0, 1, "expected a confidence from 0 to 1") = None
    triage_queue: check(triage.queue_name) = None


def _zone_if_given(value: Any) -> Any:
    return _zone(str(value)) if value else value


class TriageFile(DeskFile):
    """`triage.yaml`: rules, the priority matrix, correlation and the classifier (triage.build)."""

    rules: list[TriageRule] | None = None
    priority: TriagePriority | None = None
    correlation: TriageCorrelation | None = None
    classifier: TriageClassifier | None = None
    timezone: check(_zone_if_given) = None

    @model_validator(mode="after")
    def _whole(self) -> TriageFile:
        ids: set[str] = set()
        for i, rule in enumerate(self.rules or []):
            if str(rule.id).strip() in ids:
                raise At(["rules", i, "id"], "the id is used twice")
            ids.add(str(rule.id).strip())
        if self.rules:  # all of them compile together (a limit of Python's compiler)
            triage.build(self.model_dump(exclude_unset=True), fail=lambda loc, message: At(loc, message))
        return self


# Each desk file's model, by its name (sdesk/validated.py reads a file through these).
def _catalog_types(value: Any) -> Any:
    from .domain import catalog

    catalog.build({"types": value}, lambda loc, message: At(loc[1:], message))
    return value


def _catalog_portal(value: Any) -> Any:
    from .domain import catalog

    catalog.build({"portal": value}, lambda loc, message: At(loc[1:], message))
    return value


class CatalogFile(DeskFile):
    """`catalog.yaml`: the request types (domain/catalog.py checks each, naming the setting) and the
    portal's settings."""

    types: check(_catalog_types) = None
    portal: check(_catalog_portal) = None


MODELS: dict[str, type[BaseModel]] = {"intake": IntakeConfig, "roles": RolesFile, "metrics": MetricsFile, "sla": SlaFile,
                                       "oncall": OnCallFile, "runbook": RunbookFile,
                                       "triage": TriageFile, "catalog": CatalogFile}


def load(config_dir: Path | None, name: str, model: type[M]) -> M:
    """`<config_dir>/<name>.yaml` as `model`, or the model's defaults when there is none."""
    path = config_dir / f"{name}.yaml" if config_dir else None
    if path is None or not path.is_file():
        return model()
    text = files.read_text(path)  # a regular file within a size: never a FIFO's hang
    data, node = yamlfile.parse(text, str(path))
    return validate(data, node, str(path), model)


def validate(data: Any, node: Any, where: str, model: type[M]) -> M:
    """`data` (YAML read from `where`, with its node tree) as `model`, or one BadInput
    `FILE:LINE: setting.path: message` for the first thing wrong: the one way every desk file is
    checked (sdesk/validated.py reads them)."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as e:
        raise BadInput(error_line(e, data, node, where, model)) from None


def error_line(e: ValidationError, data: Any, node: Any, where: str, model: type[BaseModel] | None = None) -> str:
    first = e.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"] if part != "[key]"]  # a mapping's key is named by the key itself
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, At):
        loc, msg = loc + error.loc, error.message
    elif first["type"] == "extra_forbidden":
        known = _settings_at(model, loc[:-1])
        msg = f"unknown setting (expected {', '.join(known[:-1])} or {known[-1]})" if len(known) > 1 else \
            "unknown setting"
    elif first["type"] == "missing":
        msg = "missing (required)"
    elif first["type"] in _PLAIN:
        msg = _PLAIN[first["type"]]
    elif first["type"] == "value_error":
        msg = str(error) if error is not None else first["msg"].removeprefix("Value error, ")
    else:
        msg = first["msg"]
    msg = msg.replace("\r", "\\r").replace("\n", "\\n")  # what the user wrote is shown, not kept
    # A key is the user's too: its control characters and line breaks (U+0085, U+2028) shown
    # escaped, and one of only spaces quoted, so the line stays one line that names something.
    path = controls(setting_path(data, loc) or "file", one_line=True)
    return f"{where}:{yamlfile.line_of(node, loc)}: {path if path.strip() else repr(path)}: {msg}"


# pydantic's words for a value of the wrong type, as the desk says them
_PLAIN = {"list_type": "expected a list", "dict_type": "expected a mapping", "model_type": "expected a mapping",
          "string_type": "expected text", "bool_type": "expected true or false", "int_type": "expected a whole number",
          "float_type": "expected a number"}
_LABEL = re.compile(r"[\w.@:/+-]{1,40}")


def setting_path(data: Any, loc: list[str]) -> str:
    """`policies[gold].respond`: keys joined by dots, a list's item by its name (or ci, or id) when it
    has a short plain one, else by its index."""
    out = ""
    for part in loc:
        if isinstance(data, list) and part.isascii() and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
            label = next((str(data[k]) for k in ("name", "ci", "id") if isinstance(data, dict)
                          and isinstance(data.get(k), (str, int)) and not isinstance(data.get(k), bool)), "")
            out += f"[{label if _LABEL.fullmatch(label) else part}]"
            continue
        data = next((v for k, v in data.items() if str(k) == part), None) if isinstance(data, dict) else None
        out += f".{part}" if out else part
    return out


def _settings_at(model: Any, loc: list[str]) -> list[str]:
    """The settings the model has at `loc` (for "unknown setting"), or none when that is not a
    model's mapping."""
    for part in loc:
        model = _inner(model)
        if get_origin(model) in (list, tuple):
            model = get_args(model)[0]
        elif get_origin(model) is dict:
            model = get_args(model)[1]
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            return []
    model = _inner(model)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _inner(kind: Any) -> Any:
    """X of `X | None` and of `Annotated[X, ...]`."""
    if get_origin(kind) is Annotated:
        return _inner(get_args(kind)[0])
    if get_origin(kind) in (Union, UnionType):
        kinds = [k for k in get_args(kind) if k is not type(None)]
        return _inner(kinds[0]) if len(kinds) == 1 else kind
    return kind
