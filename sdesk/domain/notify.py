"""Talking back (notify.yaml): which events tell whom, over which channel, with which template.

Pure: the file's data in, a NotifyConfig out (every mistake one BadInput `notify.yaml:LINE:
setting: message`); an event and its ticket in, the messages to queue out (`plan`). The store
calls `plan` inside the transaction that writes the event, so a message is queued exactly when
its event is committed (storage/outbox.py); the services render and send them later.

Who may be told what: the requester, watchers and subscribers are the *public* audience. They
are sent a context without internal fields (assignee, team, CI, labels, internal comments,
other people's addresses), whatever a template asks for; internal comments (`commented`) are
never sent to them at all (a rule that tries is refused when the file loads).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from ..errors import BadInput

# The events a rule may be `on`, as named in notify.yaml (notify_event maps the store's events).
EVENTS = ("created", "replied", "commented", "assigned", "status_changed", "resolved", "reopened", "closed",
          "sla_warning", "sla_breached", "escalated", "paged", "incident_update", "watched",
          "approval_requested", "approval_reminder")
CHANNEL_TYPES = ("smtp", "slack", "mattermost", "teams", "webhook", "command")
EMAIL_TYPES = ("smtp",)
APPROVAL_EVENTS = ("approval_requested", "approval_reminder")
PUBLIC = ("requester", "watchers", "subscribers")  # recipients outside the desk: the public context
INTERNAL = ("assignee", "approvers")  # approvers: those a catalog request's stage asks (its event says)
INCIDENT_STATES = ("investigating", "identified", "monitoring", "resolved")
MAX_RULES = 500
MAX_RECIPIENTS = 200  # of one message plan (a rule's `to` after expansion)
ADDRESS = re.compile(r"^[^@\s<>(),;:\\\"\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Channel(NamedTuple):
    name: str
    type: str
    settings: Mapping[str, Any]  # as the file gave them, ${ENV} expanded

    @property
    def email(self) -> bool:
        return self.type in EMAIL_TYPES


class Rule(NamedTuple):
    name: str
    on: frozenset[str]
    test: Callable[[Any], bool] | None  # the `when` condition (triage's language), or always
    to: tuple[str, ...]  # requester, watchers, subscribers, assignee, user:NAME, an address; () for a chat channel
    channel: str
    template: str | None  # a file of the templates folder, or the built-in one for the event


class Limits(NamedTuple):
    coalesce: timedelta = timedelta(seconds=60)  # per ticket and recipient: later updates in this window join one
    per_hour: int = 20  # messages a person gets in an hour; the rest wait as one digest (not a chat channel's)
    attempts: int = 8  # tries before a message is dead (sdesk outbox retry brings it back)
    retry: timedelta = timedelta(seconds=30)  # the first wait after a failure; doubled each try, to an hour


DEFAULT_LIMITS = Limits()


class NotifyConfig(NamedTuple):
    rules: tuple[Rule, ...] = ()
    channels: Mapping[str, Channel] = {}
    limits: Limits = Limits()
    desk_name: str = "Service Desk"
    desk_url: str = ""
    desk_address: str = ""  # the From address; mail to or from it is never answered
    subscribers: Mapping[str, Mapping[str, tuple[str, ...]]] = {}  # services|cis -> name -> who
    templates: str | None = None  # the folder of the desk's own templates

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset().union(*(r.on for r in self.rules)) if self.rules else frozenset()


class Planned(NamedTuple):
    """One message to queue: for one recipient over one channel, because of one event."""

    rule: str
    event: str
    channel: str
    recipient: str  # an email address, a user's name, or the channel's own name for a chat channel
    audience: str  # public | internal
    template: str | None
    context: dict[str, Any]


# -- reading notify.yaml ---------------------------------------------------------------------------


def expand(value: Any, loc: list[str], fail: Callable[[list[str], str], Exception],
           env: Mapping[str, str] | None = None) -> Any:
    """`value` with `${NAME}` and `${NAME:-default}` in its strings replaced from the environment
    (after parsing: a variable's text is data, never YAML). A variable that is unset and has
    no default is an error naming the setting."""
    env = os.environ if env is None else env
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = env.get(name)
            if found not in (None, "") or (found == "" and default is None):
                return str(found)
            if default is not None:
                return default
            raise fail(loc, f"${{{name}}} is not set (write ${{{name}:-default}} for a default)")

        expanded = _ENV.sub(one, value)
        if "${" in _ENV.sub("", value):
            raise fail(loc, "a `${` without its closing `}` (write ${NAME} or ${NAME:-default})")
        return expanded
    if isinstance(value, dict):
        return {k: expand(v, [*loc, str(k)], fail, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, [*loc, str(i)], fail, env) for i, v in enumerate(value)]
    return value


def build(data: Any, node: Any = None, where: str = "notify.yaml", templates: str | None = None,
          env: Mapping[str, str] | None = None) -> NotifyConfig:
    """notify.yaml's data as a NotifyConfig; the first mistake is one BadInput naming its line."""
    from . import yamlfile

    def fail(loc: list[str], message: str) -> Exception:
        from .plain import controls

        line = yamlfile.line_of(node, loc)
        setting = controls(".".join(loc), one_line=True)[:200]  # a key is the file's text: shown, never run
        return BadInput(f"{where}:{line}: {setting + ': ' if loc else ''}{message}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail([], "expected a mapping (desk, channels, limits, subscribers, rules)")
    _known(data, ("desk", "channels", "limits", "subscribers", "rules"), [], fail)
    desk = expand(_mapping(data.get("desk"), ["desk"], fail), ["desk"], fail, env)
    _known(desk, ("name", "url", "from"), ["desk"], fail)
    address = _text(desk.get("from"), ["desk", "from"], fail) if desk.get("from") is not None else ""
    url = _text(desk["url"], ["desk", "url"], fail) if desk.get("url") is not None else ""
    if url and not re.match(r"^https?://[^\s/]+\S*$", url):
        raise fail(["desk", "url"], "expected the desk's address, http:// or https:// (up to 2000 characters)")
    desk_name = _text(desk["name"], ["desk", "name"], fail, 200) if desk.get("name") is not None else "Service Desk"
    if address and not ADDRESS.match(address_of(address)):
        raise fail(["desk", "from"], f"{address!r} is not an email address")
    channels = {}
    for name, raw in _mapping(data.get("channels"), ["channels"], fail).items():
        loc = ["channels", str(name)]
        raw = expand(_mapping(raw, loc, fail), loc, fail, env)
        channels[str(name)] = _channel(str(name), raw, loc, fail, address)
    limits = _limits(expand(_mapping(data.get("limits"), ["limits"], fail), ["limits"], fail, env), fail)
    subscribers: dict[str, dict[str, tuple[str, ...]]] = {}
    raw_subscribers = expand(_mapping(data.get("subscribers"), ["subscribers"], fail), ["subscribers"], fail, env)
    _known(raw_subscribers, ("services", "cis"), ["subscribers"], fail)
    for group in ("services", "cis"):
        subscribers[group] = {}
        for name, who in _mapping(raw_subscribers.get(group), ["subscribers", group], fail).items():
            loc = ["subscribers", group, str(name)]
            subscribers[group][str(name)] = tuple(_recipient(w, [*loc, str(i)], fail, named=False)
                                                  for i, w in enumerate(_list(who, loc, fail)))
    rules_data = data.get("rules") or []
    if not isinstance(rules_data, list):
        raise fail(["rules"], "expected a list of rules")
    if len(rules_data) > MAX_RULES:
        raise fail(["rules"], f"more than {MAX_RULES} rules")
    rules = []
    names: set[str] = set()
    for i, raw in enumerate(rules_data):
        loc = ["rules", str(i)]
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true.
        raw = {("on" if k is True else k): v for k, v in _mapping(raw, loc, fail).items()}
        _known(raw, ("name", "on", "when", "to", "channel", "template"), loc, fail)
        name = str(raw.get("name") or f"rule {i + 1}").strip()
        if name in names:
            raise fail([*loc, "name"], f"the name {name!r} is used twice")
        names.add(name)
        on = raw.get("on")
        events = [on] if isinstance(on, str) else on
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            raise fail([*loc, "on"], f"expected events from {', '.join(EVENTS)}")
        channel = raw.get("channel")
        if not isinstance(channel, str) or channel not in channels:
            raise fail([*loc, "channel"], f"expected a channel of `channels` ({', '.join(channels) or 'none defined'})")
        if any(w == "approvers" for w in _list(raw.get("to"), [*loc, "to"], fail)) \
                and set(events) - {"approval_requested", "approval_reminder"}:
            raise fail([*loc, "to"], "approvers are told of approval_requested and approval_reminder only")
        to = tuple(_recipient(w, [*loc, "to", str(j)], fail) for j, w in enumerate(_list(raw.get("to"), [*loc, "to"], fail)))
        if channels[channel].email and not to:
            raise fail([*loc, "to"], "an email channel needs recipients (requester, watchers, subscribers, assignee, "
                                     "user:NAME or an address)")
        if not channels[channel].email and any(w not in INTERNAL and not w.startswith("user:") for w in to):
            raise fail([*loc, "to"], f"channel {channel} posts to its channel: `to` names the people it mentions "
                                     "(assignee, user:NAME), not addresses, the requester, watchers or subscribers")
        if "commented" in events and any(w in PUBLIC for w in to):
            raise fail([*loc, "to"], "internal comments are never sent to the requester, watchers or subscribers "
                                     "(`replied` is the public answer)")
        test: Callable[[Any], bool] | None = None
        if raw.get("when") is not None:
            from ..triage import condition

            test = condition(raw["when"], [*loc, "when"], fail)[0]
        template = raw.get("template")
        if template is not None:
            template = _template_name(template, [*loc, "template"], fail, templates)
        rules.append(Rule(name, frozenset(events), test, to, channel, template))
    return NotifyConfig(tuple(rules), channels, limits, desk_name, url.rstrip("/"), address_of(address) if address else "",
                        subscribers, templates)


def _known(raw: Mapping[str, Any], keys: tuple[str, ...], loc: list[str], fail: Callable) -> None:
    for key in raw:
        if key not in keys:
            raise fail([*loc, str(key)], f"unknown setting (expected {', '.join(keys)})")


def _mapping(value: Any, loc: list[str], fail: Callable) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(loc, "expected a mapping")
    return value


def _list(value: Any, loc: list[str], fail: Callable) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or len(value) > MAX_RECIPIENTS:
        raise fail(loc, f"expected a list (at most {MAX_RECIPIENTS})")
    return value


def _text(value: Any, loc: list[str], fail: Callable, limit: int = 2000) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip() or len(str(value)) > limit:
        raise fail(loc, "expected a text")
    return str(value).strip()


def _recipient(value: Any, loc: list[str], fail: Callable, named: bool = True) -> str:
    text = _text(value, loc, fail, 254)
    if named and (text in PUBLIC or text in INTERNAL):
        return text
    if text.startswith("user:") and text[5:].strip():
        return "user:" + text[5:].strip()
    if ADDRESS.match(text):
        return text.casefold()
    expected = "requester, watchers, subscribers, assignee, " if named else ""
    raise fail(loc, f"expected {expected}user:NAME or an email address, not {text!r}")


def _template_name(value: Any, loc: list[str], fail: Callable, folder: str | None) -> str:
    name = _text(value, loc, fail, 200)
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise fail(loc, "a template is a file name in the templates folder (no folders)")
    if not ((folder and os.path.isfile(os.path.join(folder, name))) or name in builtin_templates()):
        where = f"{folder}/" if folder else "the templates folder (templates/ beside notify.yaml)/"
        raise fail(loc, f"no template {where}{name} (built in: {', '.join(sorted(builtin_templates()))})")
    return name


def builtin_templates() -> frozenset[str]:
    folder = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")
    try:
        return frozenset(n for n in os.listdir(folder) if n.endswith(".md"))
    except OSError:
        return frozenset()


def _channel(name: str, raw: dict, loc: list[str], fail: Callable, desk_from: str) -> Channel:
    kind = raw.get("type")
    if kind not in CHANNEL_TYPES:
        raise fail([*loc, "type"], f"expected one of {', '.join(CHANNEL_TYPES)}")
    settings: dict[str, Any] = {"timeout": _number(raw.get("timeout", 10), [*loc, "timeout"], fail, 0.1, 300)}
    if kind == "smtp":
        _known(raw, ("type", "host", "port", "security", "username", "password_env", "password_file", "from",
                     "ca_file", "timeout"), loc, fail)
        security = raw.get("security", "none")
        if security not in ("none", "starttls", "tls"):
            raise fail([*loc, "security"], "expected none, starttls or tls")
        if "password" in raw:
            raise fail([*loc, "password"], "never a password in the file: password_env or password_file")
        sender = raw.get("from") or desk_from
        if not sender:
            raise fail([*loc, "from"], "an email channel needs a From address (here, or desk.from)")
        if not ADDRESS.match(address_of(str(sender))):
            raise fail([*loc, "from"], f"{sender!r} is not an email address")
        settings.update(host=_text(raw.get("host", "localhost"), [*loc, "host"], fail, 255),
                        port=int(_number(raw.get("port", 465 if security == "tls" else 25), [*loc, "port"], fail, 1, 65535)),
                        security=security, sender=str(sender),
                        username=str(raw["username"]) if raw.get("username") else None,
                        password_env=str(raw["password_env"]) if raw.get("password_env") else None,
                        password_file=str(raw["password_file"]) if raw.get("password_file") else None,
                        # A private CA's certificates (PEM) to trust besides the system's: a company's own mail relay.
                        ca_file=str(raw["ca_file"]) if raw.get("ca_file") else None)
        if settings["username"] and not (settings["password_env"] or settings["password_file"]):
            raise fail([*loc, "username"], "a login needs password_env or password_file (never the password itself)")
    elif kind == "command":
        _known(raw, ("type", "argv", "timeout"), loc, fail)
        argv = raw.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, (str, int)) for a in argv):
            raise fail([*loc, "argv"], "expected a command as a list: [program, argument, ...] (no shell)")
        settings["argv"] = tuple(str(a) for a in argv)
    else:
        _known(raw, ("type", "url", "secret_env", "timeout"), loc, fail)
        url = _text(raw.get("url"), [*loc, "url"], fail, 2000)
        if not re.match(r"^https?://[^\s/]+", url):
            raise fail([*loc, "url"], "expected an http:// or https:// address")
        settings["url"] = url
        if kind == "webhook":
            if not raw.get("secret_env"):
                raise fail([*loc, "secret_env"], "a webhook signs what it sends: name the environment variable "
                                                 "holding its secret")
            settings["secret_env"] = str(raw["secret_env"])
    return Channel(name, kind, settings)


def _number(value: Any, loc: list[str], fail: Callable, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(loc, f"expected a number from {low:g} to {high:g}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise fail(loc, f"expected a number from {low:g} to {high:g}")
    return number


def _limits(raw: dict, fail: Callable) -> Limits:
    _known(raw, ("coalesce", "per_hour", "attempts", "retry"), ["limits"], fail)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def duration(key: str, default: timedelta, high: timedelta) -> timedelta:
        if key not in raw:
            return default
        value = raw[key]
        match = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|m|h|d)?\s*", str(value))
        if isinstance(value, bool) or match is None:
            raise fail(["limits", key], "expected a duration (0, 500ms, 90s, 5m, 1h)")
        seconds = float(match.group(1)) * units[match.group(2) or "s"]
        if seconds > high.total_seconds():
            raise fail(["limits", key], f"expected a duration up to {high}")
        return timedelta(seconds=seconds)

    retry = duration("retry", DEFAULT_LIMITS.retry, timedelta(hours=1))
    if retry < timedelta(seconds=1):  # due times are kept to the second
        raise fail(["limits", "retry"], "expected at least 1s")
    return Limits(coalesce=duration("coalesce", DEFAULT_LIMITS.coalesce, timedelta(days=1)),
                  per_hour=int(_number(raw.get("per_hour", DEFAULT_LIMITS.per_hour), ["limits", "per_hour"], fail, 1,
                                       100_000)),
                  attempts=int(_number(raw.get("attempts", DEFAULT_LIMITS.attempts), ["limits", "attempts"], fail, 1,
                                       100)),
                  retry=retry)


def address_of(text: str) -> str:
    """The address of `Name <a@b>` (or `a@b`), lower-cased."""
    match = re.search(r"<([^<>]*)>\s*$", text)
    return (match.group(1) if match else text).strip().casefold()


# -- planning: an event in, the messages to queue out -----------------------------------------------


def notify_event(kind: str, data: Mapping[str, Any]) -> str | None:
    """The notify.yaml event an event of the store is, or None (most events tell nobody)."""
    if kind == "status_changed":
        return {"resolve": "resolved", "reopen": "reopened", "close": "closed"}.get(str(data.get("action")),
                                                                                  "status_changed")
    if kind in EVENTS:
        return kind
    return None


# What a public recipient may see of a ticket; what the desk's own people see besides.
PUBLIC_FIELDS = ("id", "kind", "title", "status", "priority", "service", "created_at", "resolved_at", "resolution")
INTERNAL_FIELDS = (*PUBLIC_FIELDS, "description", "impact", "urgency", "category", "queue", "team", "assignee", "ci",
                   "requester", "source", "labels", "tags", "escalation_level", "acknowledged_at", "reopen_count")
# The event data a public recipient may see (a reply's text, a status update's), by event.
PUBLIC_DATA = {"replied": ("text",), "incident_update": ("state", "text"), "resolved": ("resolution",),
               "status_changed": ("from", "to"), "reopened": ("from", "to"), "closed": ("from", "to")}


def context(ticket: Mapping[str, Any], event: str, data: Mapping[str, Any], actor: str, at: str, audience: str,
            config: NotifyConfig) -> dict[str, Any]:
    """What a template is given: the ticket (only its public fields for a public recipient),
    the event, and the desk. Built once, when the message is queued (what was true then)."""
    fields = PUBLIC_FIELDS if audience == "public" else INTERNAL_FIELDS
    shown = {name: ticket.get(name) for name in fields}
    shown["ref"] = f"SD-{ticket['id']}"
    shown["url"] = f"{config.desk_url}/tickets/{ticket['id']}" if config.desk_url else ""
    if audience == "public":
        data = {k: v for k, v in data.items() if k in PUBLIC_DATA.get(event, ())}
    return {"ticket": shown, "event": {**data, "kind": event, "at": at, "by": actor if audience != "public" else None},
            "desk": {"name": config.desk_name, "url": config.desk_url, "address": config.desk_address}}


def plan(config: NotifyConfig, event: str, data: Mapping[str, Any], *, actor: str, at: str,
         ticket: Mapping[str, Any], values: Callable[[], Mapping[str, Any]], watchers: list[str],
         contacts: Mapping[str, Mapping[str, str | None]], actor_addresses: frozenset[str] = frozenset()
         ) -> list[Planned]:
    """The messages `event` on `ticket` queues: each rule on the event whose condition holds
    for the ticket's `values()` (triage.values_of; asked for only when a rule has someone to
    tell: most alerts have no requester to acknowledge), to each of its recipients, once per
    recipient and channel (the first rule wins). Nobody is told of their own doing
    (`actor_addresses`: the actor's name and addresses), the desk's own address never, and a
    public recipient never of an internal comment."""
    out: list[Planned] = []
    taken: set[tuple[str, str]] = set()
    own = {config.desk_address.casefold()} if config.desk_address else set()
    approvers = [str(a) for a in data.get("approvers") or ()] if event in APPROVAL_EVENTS else []
    values = functools.cache(values)
    for rule in config.rules:
        if event not in rule.on:
            continue
        channel = config.channels[rule.channel]
        if not channel.email:
            # A chat channel, a webhook or a command: one post, to the channel; `to` names the
            # people it mentions (by their chat handles), never someone of their own doing.
            if (rule.channel, rule.channel) in taken or (rule.test is not None and not rule.test(values())):
                continue
            taken.add((rule.channel, rule.channel))
            handles = []
            for who in rule.to:
                for name, _ in _expand(who, config, ticket, watchers, contacts, False, approvers):
                    contact = contacts.get(name.casefold()) or {}
                    if contact.get("chat") and name.casefold() not in actor_addresses:
                        handles.append(str(contact["chat"]))
            shown = context(ticket, event, data, actor, at, "internal", config)
            if handles:
                shown["mentions"] = list(dict.fromkeys(handles))
            out.append(Planned(rule.name, event, rule.channel, rule.channel, "internal", rule.template, shown))
            continue
        targets: list[tuple[str, str]] = []
        for who in rule.to:
            targets += _expand(who, config, ticket, watchers, contacts, True, approvers)
        if not targets or (rule.test is not None and not rule.test(values())):
            continue
        for recipient, audience in targets[:MAX_RECIPIENTS]:
            if (rule.channel, recipient) in taken or recipient in own or recipient.casefold() in actor_addresses:
                continue
            if audience == "public" and event == "commented":
                continue
            taken.add((rule.channel, recipient))
            out.append(Planned(rule.name, event, rule.channel, recipient, audience, rule.template,
                               context(ticket, event, data, actor, at, audience, config)))
    return out


# What each event's data holds, as an example (notify check renders every template with it, and
# notify preview where the ticket has no such event yet).
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "created": {"source": "email"}, "replied": {"text": "(the text of the reply)"},
    "commented": {"text": "(the text of the comment)"}, "assigned": {"assignee": "alice", "from": "new", "to": "assigned"},
    "status_changed": {"from": "assigned", "to": "in_progress", "action": "start"},
    "resolved": {"from": "in_progress", "to": "resolved", "action": "resolve", "resolution": "(the resolution)"},
    "reopened": {"from": "resolved", "to": "in_progress", "action": "reopen"},
    "closed": {"from": "resolved", "to": "closed", "action": "close"},
    "sla_warning": {"target": "resolve", "policy": "(policy)", "target_seconds": 3600, "used_seconds": 2700,
                    "share": 0.75},
    "sla_breached": {"target": "resolve", "policy": "(policy)", "target_seconds": 3600, "used_seconds": 3700},
    "escalated": {"users": ["(on call)"], "round": 1, "level": 2, "policy": "(policy)"},
    "paged": {"users": ["(on call)"], "round": 1, "level": 1, "policy": "(policy)"},
    "incident_update": {"state": "identified", "text": "(the update)"}, "watched": {"who": "carol@example.com"},
    "approval_requested": {"approval": 1, "stage": "(stage)", "approvers": ["dave"], "need": 1},
    "approval_reminder": {"approval": 1, "stage": "(stage)", "approvers": ["dave"], "expires_at": "2026-12-10T10:00:00Z"},
}
SAMPLE_TICKET: dict[str, Any] = {
    "id": 42, "kind": "incident", "title": "(the title)", "status": "in_progress", "priority": "P2",
    "service": "checkout", "created_at": "2026-12-07T10:00:00Z", "resolved_at": None, "resolution": None,
    "description": "(the description)", "impact": 2, "urgency": 2, "category": "app", "queue": "sre", "team": "sre",
    "assignee": "alice", "ci": "checkout-api", "requester": "bob@example.com", "source": "email",
    "labels": {"env": "prod"}, "tags": ["customer-facing"], "escalation_level": 0, "acknowledged_at": None,
    "reopen_count": 0}


def samples(config: NotifyConfig) -> list[tuple[str, str | None, str, dict[str, Any]]]:
    """(event, rule's template, audience, context) for every message shape the rules can make:
    what `notify check` renders, so that a template asking for what its audience is not given
    (`ticket.assignee` to the requester) is found before a message is."""
    out = []
    for rule in config.rules:
        email = config.channels[rule.channel].email
        audiences = {"public" if who in PUBLIC else "internal" for who in rule.to} if email else {"internal"}
        for event in sorted(rule.on):
            for audience in sorted(audiences):
                out.append((event, rule.template, audience, context(
                    SAMPLE_TICKET, event, SAMPLE_DATA.get(event, {}), "alice", "2026-12-07T10:05:00Z", audience,
                    config)))
    return out


# What a rule's recipients are found from, when the ticket is all that says who they are.
RECIPIENT_FIELDS = ("id", "requester", "assignee", "service", "ci")


def may_tell(config: NotifyConfig, event: str, ticket: Mapping[str, Any], watchers: list[str],
             contacts: Mapping[str, Mapping[str, str | None]]) -> bool:
    """Whether any rule on `event` has someone to tell about this ticket (its RECIPIENT_FIELDS
    are enough to know): a stream of alerts with no requester need not be read back whole."""
    for rule in config.rules:
        if event not in rule.on:
            continue
        channel = config.channels[rule.channel]
        if not channel.email or "approvers" in rule.to \
                or any(_expand(who, config, ticket, watchers, contacts, True) for who in rule.to):
            return True
    return False


def _expand(who: str, config: NotifyConfig, ticket: Mapping[str, Any], watchers: list[str],
            contacts: Mapping[str, Mapping[str, str | None]], email: bool,
            approvers: list[str] = []) -> list[tuple[str, str]]:  # noqa: B006 - read only
    """(recipient, audience) for one entry of a rule's `to`: addresses for an email channel."""
    def reach(name_or_address: str, audience: str) -> list[tuple[str, str]]:
        if "@" in name_or_address:
            return [(name_or_address.casefold(), audience)] if ADDRESS.match(name_or_address.strip()) else []
        contact = contacts.get(name_or_address.strip().casefold()) or {}
        if email:
            return [(str(contact["email"]), audience)] if contact.get("email") else []
        return [(name_or_address, audience)]

    if who == "requester":
        return reach(str(ticket.get("requester") or ""), "public") if ticket.get("requester") else []
    if who == "watchers":
        return [r for w in watchers for r in reach(w, "public")]
    if who == "subscribers":
        listed = [*config.subscribers.get("services", {}).get(str(ticket.get("service")), ()),
                  *config.subscribers.get("cis", {}).get(str(ticket.get("ci")), ())]
        return [r for w in [*listed, *watchers] for r in reach(w.removeprefix("user:"), "public")]
    if who == "assignee":
        return reach(str(ticket["assignee"]), "internal") if ticket.get("assignee") else []
    if who == "approvers":
        return [r for a in approvers for r in reach(a, "internal")]
    if who.startswith("user:"):
        return reach(who[5:], "internal")
    return reach(who, "internal")


# -- delivering: which queued messages go now, and together ------------------------------------------


def backoff(attempts: int, limits: Limits) -> timedelta:
    """The wait after the `attempts`-th failed try: doubling from limits.retry, at most an hour."""
    return min(limits.retry * (2 ** max(0, attempts - 1)), timedelta(hours=1))


def due(first_at: datetime, last_sent: datetime | None, limits: Limits) -> datetime:
    """When a recipient's waiting messages on one ticket may go: at once, unless they were told
    within the coalescing window (then at its end, as one message)."""
    if last_sent is not None and limits.coalesce:
        return max(first_at, last_sent + limits.coalesce)
    return first_at
