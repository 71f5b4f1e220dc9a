"""Desk configuration: YAML files in a folder the team keeps in git (`--config DIR`,
`SDESK_CONFIG`), each loaded into a pydantic model. An error names the file and line.

A missing folder or file means the defaults: a fresh desk just works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import files, yamlfile
from .errors import BadInput
from .cmdb import DEFAULT_MATCH_LABELS
from .enrich import EnrichOptions
from .lifecycle import MAX_SETTING_DAYS, Priority
from .roles import DEFAULT_ROLE, check_role

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
    enrich: EnrichConfig = Field(default_factory=EnrichConfig)


# Each desk file's model, by its name (sdesk/validated.py reads a file through these).
MODELS: dict[str, type[BaseModel]] = {"intake": IntakeConfig, "roles": RolesFile}


def load(config_dir: Path | None, name: str, model: type[M]) -> M:
    """`<config_dir>/<name>.yaml` as `model`, or the model's defaults when there is none."""
    path = config_dir / f"{name}.yaml" if config_dir else None
    if path is None or not path.is_file():
        return model()
    text = files.read_text(path)  # a regular file within a size: never a FIFO's hang
    data, node = yamlfile.parse(text, str(path))
    return validate(data, node, str(path), model)


class At(ValueError):
    """A validator's error about a setting below the one it validates (`loc`, keys and list
    indexes from there), so that the message names that setting and its line: a model
    validator checking that a team's schedule exists raises At(["teams", "db", "schedule"], ...)."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = [str(part) for part in loc]
        self.message = message


def validate(data: Any, node: Any, where: str, model: type[M]) -> M:
    """`data` (YAML read from `where`, with its node tree) as `model`, or one BadInput
    `FILE:LINE: setting.path: message` for the first thing wrong: the one way every desk file is
    checked (sdesk/validated.py reads them)."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as e:
        raise BadInput(error_line(e, node, where)) from None


def error_line(e: ValidationError, node: Any, where: str) -> str:
    first = e.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, At):
        loc, msg = loc + error.loc, error.message
    elif first["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif first["type"] == "value_error":
        msg = str(error) if error is not None else first["msg"].removeprefix("Value error, ")
    else:
        msg = first["msg"]
    msg = msg.replace("\r", "\\r").replace("\n", "\\n")  # what the user wrote is shown, not kept
    return f"{where}:{yamlfile.line_of(node, loc)}: {'.'.join(loc) or 'file'}: {msg}"
