"""Turning raw input into what the desk should do. Pure: reads text, stores nothing.

Every parser yields `Record`s: where a record came from (`line 3`, `alert 2`), the raw text
to keep if it is rejected, and either a `Signal` for the store (open a ticket, resolve or
acknowledge one, record a change) or the reason it was rejected, so that one bad record
never costs the good ones around it.

Formats: the generic ticket schema (`json`, `jsonl`), Alertmanager webhooks, PagerDuty Events
v2 (and its v1 webhooks), Grafana (unified alerting and legacy), Opsgenie alert requests.
`detect` picks one from a decoded JSON document.
"""

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from ..domain import clock
from ..domain.fields import check_ticket
from ..domain.lifecycle import TITLE_MAX
from ..domain.redact import might_hold_secrets
from ..domain.signals import Alert, Signal
from ..errors import BadInput

# Severity words as monitoring tools spell them -> priority. Unknown words give P3.
SEVERITY = {
    **dict.fromkeys(["critical", "crit", "page", "fatal", "emergency", "alert", "disaster", "p1", "sev1"], "P1"),
    **dict.fromkeys(["error", "err", "high", "major", "severe", "p2", "sev2"], "P2"),
    **dict.fromkeys(["warning", "warn", "medium", "moderate", "average", "p3", "sev3"], "P3"),
    **dict.fromkeys(["info", "informational", "low", "minor", "none", "debug", "ok", "p4", "p5", "sev4"], "P4"),
}


class Record(NamedTuple):
    where: str
    raw: str
    signal: Signal | None = None
    error: str | None = None


def priority_of(severity: Any, table: Mapping[str, str] = SEVERITY) -> str:
    return table.get(str(severity).strip().lower(), "P3") if severity is not None else "P3"


def severity_table(overrides: Mapping[str, str]) -> dict[str, str]:
    """The built-in table with a desk's own words (intake.yaml `severity`) over it."""
    return {**SEVERITY, **{word.strip().lower(): str(priority) for word, priority in overrides.items()}}


def alertmanager_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's own fingerprint of a label set (FNV-1a 64 over the sorted pairs), so an
    alert that arrives without its `fingerprint` field keys the same ticket as one with it."""
    return _fnv_fingerprint(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=65536)
def _fnv_fingerprint(pairs: tuple[tuple[str, str], ...]) -> str:
    # Byte by byte in Python: cached, because alerts repeat (every group_interval).
    h = 0xCBF29CE484222325
    for pair in pairs:
        for part in pair:
            for byte in part.encode():
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ 0xFF) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _obj(value: Any) -> dict[str, Any]:
    """value if it is a JSON object, else an empty one: payloads put anything anywhere."""
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> dict[str, str]:
    """A label or annotation map as text; anything else is empty."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v if type(v) is str else _text(v) for k, v in value.items() if v is not None}


def ticket_record(where: str, raw: str, source: str, fields: dict[str, Any], *, alert: Alert | None = None,
                  secret_free: bool = False) -> Record:
    """Check a ticket built from a payload (the same rules as JSON input, without pydantic)."""
    ticket = {}
    for name, value in fields.items():
        # Payloads put numbers, lists or objects where text belongs: keep them, as text.
        if value is not None and value != "":
            ticket[name] = value if isinstance(value, str) or name in ("labels", "tags") else _text(value)
    ticket["title"] = (ticket.get("title", "").strip() or f"{source} alert")[:TITLE_MAX]
    try:
        ticket = check_ticket(ticket)
    except BadInput as e:
        return Record(where, raw, error=str(e))
    return Record(where, raw, Signal(source, "trigger", ticket=ticket, alert=alert, secret_free=secret_free))


# -- generic tickets --------------------------------------------------------------------------


@functools.cache
def _pydantic() -> tuple[Any, Any, Any]:
    """TicketCreate, ValidationError, describe: imported when generic JSON first arrives,
    since pydantic's import costs more than a whole `sdesk new` (DESIGN.md)."""
    from pydantic import ValidationError

    from ..domain.models import TicketCreate, describe

    return TicketCreate, ValidationError, describe


def _generic(where: str, raw: str, value: Any = None, source: str = "json") -> Record:
    model_type, validation_error, describe = _pydantic()
    try:
        model = model_type.model_validate_json(raw) if value is None else model_type.model_validate(value)
    except validation_error as e:
        return Record(where, raw, error=describe(e))
    # The validated fields as they are (enums are str subclasses): several times cheaper than
    # model_dump, which matters at tens of thousands of records a second.
    return Record(where, "", Signal(source, "trigger", vars(model)))  # raw is kept for rejects only


def generic(doc: Any, raw: str, severity: Mapping[str, str] = SEVERITY) -> Iterator[Record]:
    items = doc if isinstance(doc, list) else [doc]
    for number, item in enumerate(items, start=1):
        yield _generic(f"record {number}", raw if len(items) == 1 else json.dumps(item, ensure_ascii=False), item)


# -- Alertmanager and Grafana unified alerting (the same webhook shape) -------------------------


def _alert_group(doc: dict[str, Any], raw: str, source: str, severity: Mapping[str, str]) -> Iterator[Record]:
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise BadInput(f"{source}: 'alerts' must be a list")
    group_status = str(doc.get("status") or "firing").lower()
    group = _text(doc["groupKey"]) if doc.get("groupKey") not in (None, "") else None
    for number, alert in enumerate(alerts, start=1):
        if not isinstance(alert, dict):
            yield Record(f"alert {number}", raw, error="an alert must be a JSON object")
            continue
        yield Record(f"alert {number}", raw, *_cached_alert_signal(source, group_status, group, alert, severity))


# Alertmanager resends every alert of a group each group_interval, so repeats are most of a
# stream: an alert's signal is kept by its exact JSON (bounded; cleared when full). Signals
# are never changed once made, so repeats can share one.
_ALERT_CACHE: dict[tuple[str, str, str | None, bytes], tuple[Mapping[str, str], Signal | None, str | None]] = {}
_ALERT_CACHE_MAX = 4096


def _cached_alert_signal(source: str, group_status: str, group: str | None, alert: dict[str, Any],
                         severity: Mapping[str, str]) -> tuple[Signal | None, str | None]:
    try:
        key = (source, group_status, group, orjson.dumps(alert))
    except TypeError:  # an integer beyond 64 bits: valid JSON, rare; not cached
        return _alert_signal(source, group_status, group, alert, severity)
    hit = _ALERT_CACHE.get(key)
    if hit is not None and hit[0] is severity:
        return hit[1], hit[2]
    if len(_ALERT_CACHE) >= _ALERT_CACHE_MAX:
        _ALERT_CACHE.clear()
    signal, error = _alert_signal(source, group_status, group, alert, severity)
    _ALERT_CACHE[key] = (severity, signal, error)
    return signal, error


def _alert_signal(source: str, group_status: str, group: str | None, alert: dict[str, Any],
                  severity: Mapping[str, str]) -> tuple[Signal | None, str | None]:
    labels = _strings(alert.get("labels"))
    annotations = _strings(alert.get("annotations"))
    # The alert's own status wins: a group can say firing while one of its alerts resolved.
    status = str(alert.get("status") or group_status).lower()
    # Alertmanager (0.19+) and Grafana send the label set's fingerprint; older senders do not.
    given = alert.get("fingerprint")
    fingerprint = f"{source}:{given if isinstance(given, str) and given else alertmanager_fingerprint(labels)}"
    received = Alert.of(status, labels, annotations, group)
    # Every text of the signal comes from these two maps.
    secret_free = not might_hold_secrets(f"{received.labels}\n{received.annotations}")
    if status == "resolved":
        return Signal(source, "resolve", fingerprint=fingerprint, alert=received, secret_free=secret_free), None
    name = labels.get("alertname") or labels.get("alert_name") or labels.get("__alert_rule_title__")
    instance = labels.get("instance") or labels.get("host")
    title = annotations.get("summary") or annotations.get("message") or annotations.get("title") or \
        (f"{name} on {instance}" if name and instance else name)
    _, _, signal, error = ticket_record("", "", source, {
        "title": title,
        "description": annotations.get("description"),
        "priority": priority_of(labels.get("severity") or annotations.get("severity"), severity),
        "service": labels.get("service"),
        "fingerprint": fingerprint,
        "labels": labels,
    }, alert=received, secret_free=secret_free)
    return signal, error


def alertmanager(doc: Any, raw: str, severity: Mapping[str, str] = SEVERITY) -> Iterator[Record]:
    # A webhook body is an object: a list holding any object is the API's (its items that are
    # not alerts rejected one by one), and so is an empty one (none firing).
    if isinstance(doc, list) and (not doc or any(isinstance(a, dict) for a in doc)):
        yield from _alertmanager_api(doc, raw, severity)
        return
    if not isinstance(doc, dict):
        raise BadInput("alertmanager: expected a webhook body (a JSON object) or the API's list of alerts")
    yield from _alert_group(doc, raw, "alertmanager", severity)


def _is_api_alert(item: Any) -> bool:
    """An alert as the API lists it: an object with a label set that names it."""
    return isinstance(item, dict) and isinstance(item.get("labels"), dict) and bool(item["labels"])


def _is_alertmanager_api(doc: list[Any]) -> bool:
    """Alertmanager's GET /api/v2/alerts: a list of alerts, each with labels and startsAt. One
    alert among junk (a number, null, {}) makes it that list, whose junk is rejected item by
    item; any item with a title makes it a list of tickets."""
    return any(_is_api_alert(a) and "startsAt" in a for a in doc) and \
        not any(isinstance(a, dict) and "title" in a for a in doc)


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    return ("null" if value is None else "a boolean" if isinstance(value, bool) else
            "a number" if isinstance(value, (int, float)) else "text" if isinstance(value, str) else
            "a list" if isinstance(value, list) else "an object without labels")


def _alertmanager_api(doc: list[Any], raw: str, severity: Mapping[str, str]) -> Iterator[Record]:
    """The alerts Alertmanager holds (GET /api/v2/alerts, as `amtool alert query -o json`):
    the webhook's alerts, but `status` is an object ({state: active | suppressed | unprocessed,
    silencedBy, inhibitedBy}) and there is no group. It lists only alerts that have not
    ended, so each is firing; one silenced or inhibited there is kept as an alert and opens no
    ticket, as Alertmanager would send no notification for it."""
    for number, alert in enumerate(doc, start=1):
        where = f"alert {number}"
        if not _is_api_alert(alert):  # (its JSON path, as jq names it, beside the 1-based count)
            yield Record(where, _raw_item(alert), error=f"[{number - 1}]: expected an alert object, got {_json_kind(alert)}")
            continue
        status = alert.get("status")
        state = str(status.get("state") or "active").lower() if isinstance(status, dict) else "active"
        signal, error = _cached_alert_signal("alertmanager", "firing", None, {**alert, "status": "firing"}, severity)
        if signal is not None and state == "suppressed":
            signal = Signal("alertmanager", "ignore", fingerprint=signal.key, alert=signal.alert,
                            secret_free=signal.secret_free)
        yield Record(where, raw, signal, error)


def _raw_item(item: Any) -> str:
    """One item of a list as JSON text, for --rejects (the whole list would replay the good
    ones). Text that cannot be stored (a lone surrogate) never gets here: _screened took it."""
    return json.dumps(item, ensure_ascii=False)


def grafana(doc: Any, raw: str, severity: Mapping[str, str] = SEVERITY) -> Iterator[Record]:
    if not isinstance(doc, dict):
        raise BadInput("grafana: expected a JSON object")
    if "alerts" in doc:
        yield from _alert_group(doc, raw, "grafana", severity)
        return
    # Legacy alerting (Grafana 7 and older): one rule, a state, matches with tags.
    rule = doc.get("ruleId") if doc.get("ruleId") is not None else doc.get("ruleName")
    if rule is None:
        raise BadInput("grafana: neither 'alerts' nor 'ruleId'/'ruleName'")
    state = str(doc.get("state") or "alerting").lower()
    fingerprint = f"grafana:rule:{rule}"
    tags = _strings(doc.get("tags"))
    matches = doc.get("evalMatches")
    for match in matches if isinstance(matches, list) else []:
        if isinstance(match, dict):
            tags.update(_strings(match.get("tags")))
    received = Alert.of(state, tags, _strings({"message": doc.get("message")}))
    if state == "ok":
        yield Record("alert 1", raw, Signal("grafana", "resolve", fingerprint=fingerprint, alert=received))
    elif state in ("paused", "pending"):
        yield Record("alert 1", raw, Signal("grafana", "ignore", fingerprint=fingerprint, alert=received))
    else:
        yield ticket_record("alert 1", raw, "grafana", {
            "title": doc.get("ruleName") or doc.get("title"),
            "description": doc.get("message"),
            "priority": priority_of(tags.get("severity"), severity),
            "fingerprint": fingerprint,
            "labels": tags,
        }, alert=received)


# -- PagerDuty ----------------------------------------------------------------------------------


def _details(details: Any) -> str | None:
    if isinstance(details, dict):
        return "\n".join(f"{k}: {_text(v)}" for k, v in details.items()) or None
    return _text(details) if details else None


def pagerduty(doc: Any, raw: str, severity: Mapping[str, str] = SEVERITY) -> Iterator[Record]:
    """Events API v2 (trigger / acknowledge / resolve with dedup_key semantics, and change
    events), and the v1 outbound webhook ({"messages": [...]})."""
    if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
        yield from _pagerduty_v1(doc["messages"], raw)
        return
    if not isinstance(doc, dict):
        raise BadInput("pagerduty: expected a JSON object")
    payload = _obj(doc.get("payload"))
    action = str(doc.get("event_action") or ("change" if payload else "")).lower()
    if action == "change":
        summary = str(payload.get("summary") or "").strip()
        if not summary:
            yield Record("event 1", raw, error="payload.summary: required for a change event")
            return
        happened = payload.get("timestamp")
        if happened is not None:
            try:  # stored as UTC ISO text, so that windows compare as text
                happened = clock.iso(clock.parse(str(happened), what="payload.timestamp"))
            except BadInput as e:
                yield Record("event 1", raw, error=str(e))
                return
        yield Record("event 1", raw, Signal("pagerduty", "change", change={
            "summary": summary, "service": _text(payload["source"]) if payload.get("source") else None,
            "happened_at": happened,
            "data": {"custom_details": payload.get("custom_details"), "links": doc.get("links")},
        }))
        return
    if action not in ("trigger", "acknowledge", "resolve"):
        yield Record("event 1", raw, error=f"event_action: expected trigger, acknowledge, resolve or a change event, "
                                           f"got {doc.get('event_action')!r}")
        return
    dedup_key = doc.get("dedup_key")
    if action != "trigger" and not dedup_key:
        yield Record("event 1", raw, error=f"dedup_key: required to {action}")
        return
    summary = payload.get("summary")
    if action == "trigger" and not summary:
        yield Record("event 1", raw, error="payload.summary: required to trigger")
        return
    # Without a dedup_key PagerDuty makes a fresh one; a stable one from the event's identity
    # serves people better: the same problem from the same source is one ticket.
    key = dedup_key or hashlib.sha256(f"{summary}|{payload.get('source')}|{payload.get('component')}".encode()).hexdigest()[:32]
    fingerprint = f"pagerduty:{key}"
    # routing_key is the integration's secret: never kept.
    labels = _strings({k: payload.get(k) for k in ("source", "component", "group", "class", "severity")})
    received = Alert.of(action, labels, {})
    if action != "trigger":
        yield Record("event 1", raw, Signal("pagerduty", action, fingerprint=fingerprint, alert=received))
        return
    yield ticket_record("event 1", raw, "pagerduty", {
        "title": summary,
        "description": _details(payload.get("custom_details")),
        "priority": priority_of(payload.get("severity"), severity),
        "service": payload.get("component"),
        "fingerprint": fingerprint,
        "labels": labels,
    }, alert=received)


def _pagerduty_v1(messages: list[Any], raw: str) -> Iterator[Record]:
    actions = {"incident.trigger": "trigger", "incident.acknowledge": "acknowledge", "incident.resolve": "resolve"}
    for number, message in enumerate(messages, start=1):
        where = f"message {number}"
        incident = _obj(_obj(message).get("data")).get("incident")
        if not isinstance(incident, dict):
            yield Record(where, raw, error="data.incident: required")
            continue
        action = actions.get(str(message.get("type")))
        key = incident.get("incident_key") or incident.get("id")
        fingerprint = f"pagerduty:{key}"
        service = _obj(incident.get("service"))
        received = Alert.of(str(message.get("type")), _strings({"service": service.get("name")}), {})
        if action is None:
            yield Record(where, raw, Signal("pagerduty", "ignore", fingerprint=fingerprint, alert=received))
        elif action == "trigger":
            subject = _obj(incident.get("trigger_summary_data")).get("subject") or incident.get("description")
            yield ticket_record(where, raw, "pagerduty", {"title": subject, "service": service.get("name"),
                                                     "fingerprint": fingerprint}, alert=received)
        else:
            yield Record(where, raw, Signal("pagerduty", action, fingerprint=fingerprint, alert=received))


# -- Opsgenie -------------------------------------------------------------------------------------


def opsgenie(doc: Any, raw: str, severity: Mapping[str, str] = SEVERITY) -> Iterator[Record]:
    """An Opsgenie create-alert request (as Alertmanager's opsgenie receiver sends it)."""
    if not isinstance(doc, dict):
        raise BadInput("opsgenie: expected a JSON object")
    alias = doc.get("alias")
    tags = doc.get("tags")
    tags = [t for t in (tags.split(",") if isinstance(tags, str) else tags if isinstance(tags, list) else [])
            if isinstance(t, str) and t.strip()]
    labels = _strings(doc.get("details")) | _strings({"source": doc.get("source") or None})
    title = doc.get("message") or (f"Opsgenie alert {alias}" if alias is not None else None)
    # apiKey is the integration's secret: never kept.
    yield ticket_record("alert 1", raw, "opsgenie", {
        "title": title,
        "description": doc.get("description"),
        "priority": priority_of(doc.get("priority"), severity),
        "fingerprint": f"opsgenie:{alias}" if alias is not None else None,
        "labels": labels,
        "tags": tags,
    }, alert=Alert.of("firing", labels, {}))


PARSERS: dict[str, Callable[[Any, str, Mapping[str, str]], Iterator[Record]]] = {
    "json": generic, "jsonl": generic, "alertmanager": alertmanager, "pagerduty": pagerduty, "grafana": grafana,
    "opsgenie": opsgenie,
}


def detect(doc: Any) -> str:
    """The format of a decoded JSON document, from the fields each tool always sends."""
    if isinstance(doc, dict):
        alerts = doc.get("alerts")
        if isinstance(alerts, list):
            grafana_only = ("orgId", "title", "state")
            is_grafana = any(k in doc for k in grafana_only) or any(
                isinstance(a, dict) and ("values" in a or "dashboardURL" in a or "panelURL" in a) for a in alerts)
            return "grafana" if is_grafana else "alertmanager"
        if "evalMatches" in doc or "ruleId" in doc or ("ruleName" in doc and "state" in doc):
            return "grafana"
        if "event_action" in doc or "routing_key" in doc or "dedup_key" in doc or isinstance(doc.get("messages"), list):
            return "pagerduty"
        if "title" in doc:
            return "json"
        opsgenie_only = ("alias", "apiKey", "responders", "visibleTo", "entity", "details", "teams")
        if "message" in doc and any(k in doc for k in opsgenie_only):
            return "opsgenie"
    if isinstance(doc, list):
        return "alertmanager" if _is_alertmanager_api(doc) else "json"
    raise BadInput("cannot tell the format of this input; give --format")


def parse_document(text: str, fmt: str = "auto", severity: Mapping[str, str] = SEVERITY, *,
                   undecoded: bool = False) -> tuple[str, list[Record]]:
    """One JSON document in `fmt` (or detected): the format used and its records. `undecoded`:
    the text was decoded with surrogateescape, so that its bytes that are not UTF-8 reject the
    records they are in (see unfit_text) rather than the whole input."""
    try:
        doc = orjson.loads(text)
        # orjson refuses lone surrogates, so only a NUL can hide in what it took: as JSON, a
        # NUL is always the escape \u0000 (a substring test costs next to nothing).
        suspect = "\\u0000" in text
    except orjson.JSONDecodeError:
        doc, suspect = _loads_leniently(text), True
    fmt = detect(doc) if fmt == "auto" else fmt
    if not suspect:
        return fmt, list(PARSERS[fmt](doc, text, severity))
    doc, unfit = _screened(doc, fmt, undecoded)
    records = list(PARSERS[fmt](doc, text, severity))
    for number, (why, raw) in unfit.items():
        records[number] = Record(records[number].where, raw or text, error=why)
    return fmt, records


# The formats whose documents hold several records, one per item of this list.
_RECORD_LISTS = {"alertmanager": "alerts", "grafana": "alerts", "pagerduty": "messages"}


def _screened(doc: Any, fmt: str, undecoded: bool) -> tuple[Any, dict[int, tuple[str, str]]]:
    """The document with each record that holds text which cannot be stored replaced by an
    empty object, and (why, its raw text) for each by its index: the parsers yield one record
    per item, in order. Text that cannot be stored outside any one record (a group's fields, a
    single event) rejects the document: BadInput."""
    key = _RECORD_LISTS.get(fmt)
    items = doc if isinstance(doc, list) and fmt in ("json", "jsonl", "alertmanager") else \
        doc.get(key) if key and isinstance(doc, dict) and isinstance(doc.get(key), list) else None
    unfit: dict[int, tuple[str, str]] = {}
    if items is not None:
        for number, item in enumerate(items):
            if why := unfit_text(item, undecoded):
                unfit[number] = (why, json.dumps(item) if isinstance(doc, list) else "")  # "": the whole text
        if unfit:
            items = [{} if n in unfit else item for n, item in enumerate(items)]
            doc = items if isinstance(doc, list) else {**doc, key: items}
    if why := unfit_text(doc, undecoded):
        raise BadInput(why)
    return doc, unfit


def unfit_text(value: Any, undecoded: bool = False) -> str | None:
    """Why some text in `value` (decoded JSON) cannot be stored as text, naming where it is:
    a lone surrogate (valid JSON as \\ud800, yet not encodable: sqlite3, orjson and hashing
    would all refuse it mid-batch), a NUL (SQLite's text functions stop at it; PostgreSQL
    refuses it), or, when `undecoded`, a byte that is not UTF-8. None when all of it can.
    Walks every key and value, so it is only called where the input hints at such text."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if why := _unfit(value, undecoded):
                return f"{path}: {why}" if path else why
        elif isinstance(value, dict):
            for k, v in value.items():
                shown = k if k.isprintable() else ascii(k)[1:-1]
                if why := _unfit(k, undecoded):
                    return f"{path + '.' if path else ''}{shown}: a key: {why}"
                stack.append((f"{path}.{shown}" if path else shown, v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", v) for n, v in enumerate(value))
    return None


def _unfit(text: str, undecoded: bool) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\u0000) is not text"
    try:
        text.encode()
    except UnicodeEncodeError as e:
        char = ord(text[e.start])
        if undecoded and 0xDC80 <= char <= 0xDCFF:  # surrogateescape's stand-in for a byte
            return f"not valid UTF-8 (byte 0x{char - 0xDC00:02x})"
        return f"a lone surrogate (\\u{char:04x}) is not text"
    return None


def _loads_leniently(text: str) -> Any:
    """What orjson refuses and the json module takes (NaN, integers beyond 64 bits, lone
    surrogates), or the json module's error, which names the line and column. NaN and
    Infinity come back as text, as they are shown anyway: orjson would write them as null."""
    try:
        # Integers beyond 64 bits stay text: orjson writes them no other way.
        return json.loads(text, parse_constant=str, parse_int=lambda digits: int(digits) if len(digits) < 19 else digits)
    except json.JSONDecodeError as e:
        raise BadInput(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None


def _nul_in(raw: str) -> str | None:
    try:
        return unfit_text(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None  # pydantic says what is wrong with it


# Monitoring resends a group's payload unchanged until the group changes: a line seen before
# gives the records it gave then. Only short lines (one alert or a few) are kept, and a bounded
# number of them: a long stream of big distinct payloads must not hold gigabytes here (their
# alerts are cached one by one in _ALERT_CACHE anyway).
_LINE_CACHE: dict[tuple[str, str], tuple[Mapping[str, str], list[Record]]] = {}
_LINE_CACHE_MAX, _LINE_CACHED_LENGTH = 1024, 4096


def parse_jsonl(lines: Iterable[bytes | str], start: int = 1, fmt: str = "jsonl",
                severity: Mapping[str, str] = SEVERITY) -> Iterator[Record]:
    """One document per line, numbered from `start`; blank lines are skipped. Generic tickets
    take the fast path (pydantic parses the line itself); other formats parse each line as a
    payload of their own and name their records `line N alert M`. A line of bytes that are not
    UTF-8 is rejected (never read with U+FFFD in their place)."""
    for number, line in enumerate(lines, start=start):
        if type(line) is bytes:
            try:
                line = line.decode()
            except UnicodeDecodeError as e:
                yield Record(f"line {number}", line.rstrip(b"\r\n").decode("utf-8", "backslashreplace"),
                             error=f"not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})")
                continue
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue
        if fmt == "jsonl":
            # pydantic refuses lone surrogates itself; a NUL it would take (see parse_document).
            if "\\u0000" in raw and (why := _nul_in(raw)):
                yield Record(f"line {number}", raw, error=why)
            else:
                yield _generic(f"line {number}", raw, source="jsonl")
            continue
        hit = _LINE_CACHE.get((fmt, raw))
        if hit is not None and hit[0] is severity:
            records = hit[1]
        else:
            try:
                _, records = parse_document(raw, fmt, severity)
            except BadInput as e:
                yield Record(f"line {number}", raw, error=str(e))
                continue
            except Exception as e:  # noqa: BLE001 - a parser failing on one odd line costs that line,
                # not the rest of the stream (nor, in a parse helper, every line after it)
                yield Record(f"line {number}", raw, error=f"cannot be parsed: {type(e).__name__}: {ascii(str(e))[1:-1]}")
                continue
            if len(raw) <= _LINE_CACHED_LENGTH:
                if len(_LINE_CACHE) >= _LINE_CACHE_MAX:
                    _LINE_CACHE.clear()
                _LINE_CACHE[fmt, raw] = (severity, records)
        for where, _, signal, error in records:
            # Only a rejected record's raw text is ever used (kept in --rejects).
            yield Record(f"line {number} {where}", raw if signal is None else "", signal, error)
