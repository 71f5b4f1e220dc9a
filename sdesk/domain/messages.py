"""A queued message as people read it: its template (Jinja2, sandboxed) rendered with the context
queued with it, as plain text, Markdown made into HTML (email's alternative), or a chat's text.

The template is the desk's (config, in git); the values in the context come from outside (a
title, a reply) and are data: each value is escaped for the target as it is put in (Jinja's
`finalize`), so a title can never become a link, a heading or HTML, and a template can reach
only the context (the sandbox: no attributes that start with `_`, no calling what is unsafe).
The text is redacted after rendering, as everything the desk stores is: no secret leaves.

A template's first line may be `Subject: ...`; the rest is the body, in Markdown.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import BadInput
from .redact import redact

MAX_TEMPLATE = 64 << 10
MAX_OUTPUT = 256 << 10  # a rendered message (a loop in a template stops here)
BUILTIN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>&~])")


class Rendered(NamedTuple):
    subject: str
    text: str  # plain text
    markdown: str  # the same with values escaped for Markdown (the HTML and chat bodies are made from it)


class TemplateError(BadInput):
    """A template that does not compile or render: its file and line."""


def _plain(value: Any) -> str:
    return _CONTROLS.sub("", "" if value is None else str(value))


def _markdown(value: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", _plain(value))


@functools.cache
def _environment(target: str) -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    finalize: Callable[[Any], str] = _markdown if target == "markdown" else _plain
    return ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined, finalize=finalize,
                                         keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def source(name: str, folder: str | None) -> tuple[str, str]:
    """(text, path) of template `name`: the desk's own (templates/ beside notify.yaml) before the built-in one."""
    for base in (folder, BUILTIN):
        if base:
            path = os.path.join(base, name)
            if os.path.isfile(path):
                from ..files import read_text

                return read_text(path, limit=MAX_TEMPLATE), path
    raise TemplateError(f"no template {name!r} (in {folder or 'the desk config'}/ or built in)")


def exists(name: str, folder: str | None) -> bool:
    return any(base and os.path.isfile(os.path.join(base, name)) for base in (folder, BUILTIN))


@functools.cache
def _compiled(text: str, path: str, target: str) -> Any:
    from jinja2 import TemplateSyntaxError

    try:
        return _environment(target).from_string(text)
    except TemplateSyntaxError as e:
        raise TemplateError(f"{path}:{e.lineno}: {e.message}") from None


def check(name: str, folder: str | None) -> None:
    """Template `name` compiles (its syntax; what it reads is checked by rendering: `notify preview`)."""
    text, path = source(name, folder)
    _compiled(text, path, "plain")


def render(name: str, folder: str | None, context: dict[str, Any]) -> Rendered:
    """Template `name` with `context`: subject, plain text and Markdown, redacted."""
    text, path = source(name, folder)
    plain = _run(_compiled(text, path, "plain"), context, path)
    markdown = _run(_compiled(text, path, "markdown"), context, path)
    subject, plain = _split(plain)
    _, markdown = _split(markdown)
    return Rendered(redact(subject)[0][:300], redact(plain)[0], redact(markdown)[0])


def _run(template: Any, context: dict[str, Any], path: str) -> str:
    from jinja2 import TemplateError as JinjaError
    from jinja2.sandbox import SecurityError

    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateError(f"{path}: renders more than {MAX_OUTPUT >> 10} KiB")
            out.append(chunk)
    except SecurityError as e:
        raise TemplateError(f"{path}:{_line(e)}: not allowed in a template: {e}") from None
    except JinjaError as e:
        raise TemplateError(f"{path}:{_line(e)}: {e.message or type(e).__name__}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as e:
        raise TemplateError(f"{path}:{_line(e)}: {type(e).__name__}: {str(e)[:200]}") from None
    return "".join(out)


def _line(error: BaseException) -> int:
    """The template line an error was raised on (Jinja's compiled code maps to the template's)."""
    tb = error.__traceback__
    line = getattr(error, "lineno", None) or 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _split(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if first.lower().startswith("subject:"):
        return " ".join(first[8:].split()), rest.lstrip("\n")
    return "", text


def html(markdown: str) -> str:
    """The HTML alternative of a message: its Markdown (raw HTML in it is shown as text, and
    links only of http, https and mailto)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    body = md.render(markdown)
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>"
            f"<body style=\"font-family: sans-serif; line-height: 1.4\">{body}</body></html>")


def digest(parts: list[Rendered], contexts: list[dict[str, Any]]) -> Rendered:
    """Several messages for one recipient as one: a subject that counts them, each body in turn
    (each headed by its own subject when they are about several tickets)."""
    refs = list(dict.fromkeys(c.get("ticket", {}).get("ref", "") for c in contexts))
    if len(refs) == 1:
        subject = f"{len(parts)} updates on {refs[0]}: {contexts[0].get('ticket', {}).get('title', '')}"
    else:
        subject = f"{len(parts)} updates on {len(refs)} tickets: {', '.join(refs[:5])}{' ...' if len(refs) > 5 else ''}"
    rule = "\n\n---\n\n"

    def body(p: Rendered, text: str) -> str:
        return f"{p.subject}\n\n{text}" if len(refs) > 1 and p.subject else text

    return Rendered(_plain(subject)[:300], rule.join(body(p, p.text) for p in parts),
                    rule.join(body(p, p.markdown) for p in parts))
