"""The knowledge base's logic, apart from storage: articles as Markdown with YAML front matter,
full-text queries, freshness, drafts from resolved tickets, and diffs between revisions. Pure.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from ..errors import BadInput
from .lifecycle import NAME_MAX, TITLE_MAX, blank

DEFAULT_REVIEW_DAYS = 180
MAX_REVIEW_DAYS = 3650  # ten years: beyond that an article is never reviewed
MAX_BYTES = 4 << 20  # an article file: a page of a runbook, not a manual (or /dev/zero)
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)
_WORD = re.compile(r"\w+", re.U)
# Words that match everything and rank nothing (titles of alerts are full of them).
_STOP = frozenset("""a an and are as at be by for from has have in into is it its of on or over than that the
this to was were will with above below after before up down not no""".split())
FIELDS = ("title", "tags", "cis", "owner", "review_days")


def parse_article(text: str, where: str = "article") -> dict[str, Any]:
    """The fields of an article in Markdown, with optional front matter (title, tags, cis,
    owner, review_days), not yet checked (command-line options may still fill in). Without a
    title there, the first `# heading` is the title."""

    meta: dict[str, Any] = {}
    body = text
    m = _FRONT.match(text)
    if m:
        from . import yamlfile

        meta = yamlfile.parse(m.group(1), where, first_line=2, what="front matter: ")[0] or {}
        if not isinstance(meta, dict):
            raise BadInput(f"{where}:2: front matter must be a mapping (title:, tags:, ...)")
        body = text[m.end():]
    unknown = set(meta) - set(FIELDS)
    if unknown:
        raise BadInput(f"{where}: front matter: {sorted(map(str, unknown))[0]}: unknown field (known: {', '.join(FIELDS)})")
    title = meta.get("title")
    if title is None:
        heading = _HEADING.search(body)
        title = heading.group(1) if heading else None
    return {**meta, "title": title, "body": body}


def check_article(a: dict[str, Any], where: str = "article") -> dict[str, Any]:
    title = str(a.get("title") or "").strip()
    if blank(title):
        raise BadInput(f"{where}: no title (give one in front matter, as a '# heading' or with --title)")
    if len(title) > TITLE_MAX:
        raise BadInput(f"{where}: title: at most {TITLE_MAX} characters")
    body = str(a.get("body") or "").strip()
    if blank(body):
        raise BadInput(f"{where}: the article is empty")
    review_days = a.get("review_days", DEFAULT_REVIEW_DAYS)
    if review_days is None:
        review_days = DEFAULT_REVIEW_DAYS
    if type(review_days) is not int or not 1 <= review_days <= MAX_REVIEW_DAYS:
        raise BadInput(f"{where}: review_days: must be a whole number of days, 1 to {MAX_REVIEW_DAYS}")
    owner = a.get("owner")
    return {"title": title, "body": body + "\n", "tags": _names(a.get("tags"), "tags", where),
            "cis": _names(a.get("cis"), "cis", where), "owner": str(owner).strip() or None if owner else None,
            "review_days": review_days}


def _names(value: Any, what: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise BadInput(f"{where}: {what}: must be a list")
    out = []
    for v in value:
        v = str(v).strip()
        if len(v) > NAME_MAX:
            raise BadInput(f"{where}: {what}: {v[:20]!r}...: at most {NAME_MAX} characters")
        if v and v not in out:
            out.append(v)
    return out


def to_markdown(a: dict[str, Any]) -> str:
    """An article as a file that parse_article reads back the same (for $EDITOR and export)."""
    import yaml

    meta = {k: a[k] for k in FIELDS if a.get(k) not in (None, [])}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + a["body"]


# -- search ------------------------------------------------------------------------------------


def terms(text: str, limit: int = 16) -> list[str]:
    """The searchable words of a text, in order, without stop words and repeats."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 1 and word not in _STOP and word not in out:
            out.append(word)
            if len(out) == limit:
                break
    return out


def fts_query(text: str, *, any_term: bool = False) -> str | None:
    """An FTS5 MATCH expression for free text: every word quoted (no FTS syntax from users),
    all of them required, or any of them (to rank articles for a ticket). None when the text
    has no searchable word."""
    words = terms(text)
    if not words:
        return None
    return (" OR " if any_term else " AND ").join(f'"{w}"' for w in words)


# -- freshness -----------------------------------------------------------------------------------


def review_due(reviewed_at: datetime, review_days: int) -> datetime:
    return reviewed_at + timedelta(days=review_days)


# -- drafts and diffs ----------------------------------------------------------------------------


def draft_from_ticket(ticket: dict[str, Any], context: dict[str, Any] | None, resolution: str) -> dict[str, Any]:
    """An article capturing how a ticket was resolved, to review and polish later."""
    context = context or {}
    ci = ticket.get("ci") or ticket.get("service")
    lines = [f"# {ticket['title']}", "", "## Symptoms", "", ticket.get("description") or ticket["title"], ""]
    if ci:
        lines += ["## Affected", "", f"- CI: {ci}" + (f" (tier {context['tier']})" if context.get("tier") else "")]
        if context.get("dependents"):
            lines.append(f"- Depends on it: {', '.join(context['dependents'][:10])}")
        lines.append("")
    if context.get("changes"):
        lines += ["## Recent changes at the time", ""]
        lines += [f"- {c['happened_at']}: {c['summary']}" for c in context["changes"]] + [""]
    lines += ["## Resolution", "", resolution, "", f"_Drafted from SD-{ticket['id']} when it was resolved._"]
    tags = [t for t in [ticket.get("category"), *(ticket.get("tags") or [])] if t]
    return check_article({"title": ticket["title"], "body": "\n".join(lines), "tags": tags,
                          "cis": [ci] if ci else [], "owner": ticket.get("team") or ticket.get("queue")})


def diff(old: dict[str, Any], new: dict[str, Any], old_label: str, new_label: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(to_markdown(old).splitlines(keepends=True),
                                        to_markdown(new).splitlines(keepends=True), old_label, new_label))
