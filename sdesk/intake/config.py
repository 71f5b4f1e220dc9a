"""Desk configuration: YAML files in a folder the team keeps in git (`--config DIR`,
`SDESK_CONFIG`), each loaded into a pydantic model. An error names the file and line.

A missing folder or file means the defaults: a fresh desk just works.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import files
from ..domain import yamlfile
from ..errors import BadInput
from ..domain.cmdb import DEFAULT_MATCH_LABELS
from .enrich import EnrichOptions
from ..domain.lifecycle import MAX_SETTING_DAYS, Priority

M = TypeVar("M", bound=BaseModel)


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


def load(config_dir: Path | None, name: str, model: type[M]) -> M:
    """`<config_dir>/<name>.yaml` as `model`, or the model's defaults when there is none."""
    path = config_dir / f"{name}.yaml" if config_dir else None
    if path is None or not path.is_file():
        return model()
    text = files.read_text(path)  # a regular file within a size: never a FIFO's hang
    data, node = yamlfile.parse(text, str(path))
    try:
        return model.model_validate(data or {})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = [str(part) for part in first["loc"]]
        msg = "unknown setting" if first["type"] == "extra_forbidden" else first["msg"]
        raise BadInput(f"{path}:{yamlfile.line_of(node, loc)}: {'.'.join(loc) or 'file'}: {msg}") from None
