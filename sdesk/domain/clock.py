"""The one clock of sdesk: UTC now, or the time fixed by SDESK_NOW.

Times are stored as ISO 8601 UTC text with second precision (`2026-11-26T16:16:28Z`), which
sorts as text and reads well in the database.
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ..errors import BadInput

_override: datetime | None = None

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as config files spell them; Monday is 0


def parse(text: str, *, what: str = "time") -> datetime:
    """Parse ISO 8601 into an aware UTC datetime; a time without offset is taken as UTC."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise BadInput(f"{what}: {text!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if not 1970 <= dt.year <= 9000:  # arithmetic on windows and shifts would leave datetime's range
        raise BadInput(f"{what}: {text!r} is out of range (years 1970 to 9000)")
    return dt.astimezone(UTC)


_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def span(text: str, option: str) -> timedelta:
    """`30m`, `12h`, `30d`, `2w` as a timedelta: a positive whole number of one unit."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _UNITS or not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise BadInput(f"{option} {text!r}: expected a duration like 30m, 12h, 30d, 2w")
    try:
        return timedelta(**{_UNITS[unit]: int(value)})
    except OverflowError:
        raise BadInput(f"{option} {text!r}: too long") from None


def back(text: str, option: str) -> datetime:
    """A time given as a span back from now (`30d`, see span) or in ISO 8601: --since and the like."""
    value = text.strip()[:-1]
    if value.isascii() and value.isdigit() and text.strip()[-1:].lower() in _UNITS:
        try:
            return now() - span(text, option)
        except OverflowError:
            raise BadInput(f"{option} {text!r}: too long ago") from None
    return parse(text, what=option)


def now() -> datetime:
    if _override is not None:
        return _override
    fixed = os.environ.get("SDESK_NOW")
    if fixed:
        return parse(fixed, what="SDESK_NOW")
    return datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(now())


def set_override(dt: datetime | None) -> None:
    """Fix now() in-process (the demo replays a timeline this way); None lifts it."""
    global _override
    _override = dt


def zone_of(name: Any, fail: Callable[[str], Exception]) -> tzinfo:
    """The time zone a desk file names (`timezone:` of triage, SLA calendars, on-call
    schedules), or `fail(message)`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name.strip():
        raise fail("timezone: required, e.g. Europe/London")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise fail(f"timezone: unknown time zone {name!r}") from None
