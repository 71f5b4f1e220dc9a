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
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>&~=])")
_INDENT = re.compile(r"^[ \t]+", re.M)
MAX_NUMBER_BITS = 4096  # a number a template may make (10**1233); more is a mistake, or a bomb
MAX_WIDTH = 10_000  # a width or count a template may ask of a filter or method (center, indent, ...)


class Rendered(NamedTuple):
    subject: str
    text: str  # plain text
    markdown: str  # the same with values escaped for Markdown (the HTML and chat bodies are made from it)


class TemplateError(BadInput):
    """A template that does not compile or render: its file and line."""


def _plain(value: Any) -> str:
    return _CONTROLS.sub("", "" if value is None else str(value))


def _markdown(value: Any) -> str:
    """A value as Markdown that shows it as it is: every mark escaped, and a line's leading
    spaces as entities (four would make a code block)."""
    escaped = _MD_SPECIAL.sub(r"\\\1", _plain(value))
    return _INDENT.sub(lambda m: m.group(0).replace(" ", "&#32;").replace("\t", "&#9;"), escaped)


class Runaway(Exception):
    """A template that ran too long (services stop it: outbound.deadline)."""


@functools.cache
def _environment(target: str) -> Any:
    """Jinja's immutable sandbox, bounded: no number past MAX_NUMBER_BITS, no string or list
    repeated past MAX_OUTPUT, no width past MAX_WIDTH (`'a' * 10**9`, `10**100000`,
    `x|center(10**9)` would take the memory or the CPU first). Intercepting the operators also
    keeps Jinja from folding them while it compiles (notify check)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    def refuse(what: str) -> SecurityError:
        return SecurityError(f"{what} is more than a template may make")

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%", "//"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            numbers = isinstance(left, int) and isinstance(right, int)
            if operator == "**" and numbers and abs(left) > 1 and right > 0 and \
                    max(left.bit_length() - 1, 1) * right > MAX_NUMBER_BITS:
                raise refuse("a power this big")
            if operator == "*":
                if numbers and left.bit_length() + right.bit_length() > MAX_NUMBER_BITS:
                    raise refuse("a product this big")
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_OUTPUT:
                        raise refuse("a repetition this long")
            if operator == "%" and isinstance(left, str) and re.search(r"%[-#0 +]*(\d{5,}|\*)|\.\d{5,}", left):
                raise refuse("a format this wide")
            return super().call_binop(context, operator, left, right)

        def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            _check_widths(obj, args, kwargs, refuse)
            return super().call(context, obj, *args, **kwargs)

    finalize: Callable[[Any], str] = _markdown if target == "markdown" else _plain
    env = Bounded(autoescape=False, undefined=StrictUndefined, finalize=finalize, keep_trailing_newline=True,
                  trim_blocks=True, lstrip_blocks=True)
    env.globals["range"] = _bounded_range(refuse)
    for name in ("center", "indent", "wordwrap", "truncate", "format", "batch", "slice"):
        env.filters[name] = _bounded_filter(env.filters[name], refuse)
    return env


def _check_widths(obj: Any, args: tuple, kwargs: dict, refuse: Callable[[str], Exception]) -> None:
    """No call of a template's with a number past MAX_WIDTH (`s.ljust(10**9)`), nor a format
    string asking for such a width (`'{:999999999}'.format(1)`)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
            raise refuse(f"the number {value}")
    target = getattr(obj, "__self__", None)
    if isinstance(target, str) and getattr(obj, "__name__", "") in ("format", "format_map") and \
            re.search(r"\d{5,}", target):
        raise refuse("a format this wide")


def _bounded_filter(original: Callable[..., Any], refuse: Callable[[str], Exception]) -> Callable[..., Any]:
    from jinja2.utils import pass_environment

    @pass_environment
    def bounded(environment: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_widths(None, args, kwargs, refuse)
        if isinstance(value, str) and re.search(r"%[-#0 +]*(\d{5,}|\*)|\.\d{5,}", value):
            raise refuse("a format this wide")
        call = original
        if getattr(original, "jinja_pass_arg", None) is not None:
            return call(environment, value, *args, **kwargs)
        return call(value, *args, **kwargs)

    return bounded


def _bounded_range(refuse: Callable[[str], Exception]) -> Callable[..., range]:
    def bounded(*args: int) -> range:
        r = range(*args)
        if len(r) > MAX_WIDTH:
            raise refuse(f"a range of {len(r):,} numbers")
        return r

    return bounded


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
    from jinja2 import TemplateError as JinjaError
    from jinja2 import TemplateSyntaxError

    try:
        return _environment(target).from_string(text)
    except TemplateSyntaxError as e:
        raise TemplateError(f"{path}:{e.lineno}: {e.message}") from None
    except JinjaError as e:  # (the sandbox refusing a constant it would fold: `{{ 10**100000 }}`)
        raise TemplateError(f"{path}:{_line(e)}: {e.message or type(e).__name__}") from None
    except (MemoryError, ValueError, OverflowError, ArithmeticError, RecursionError, TypeError) as e:
        raise TemplateError(f"{path}:{_line(e)}: {type(e).__name__}: {str(e)[:200]}") from None


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
    chunks = template.generate(**context)
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT:
                # Thrown in where the template is, so that the error names the line that ran over.
                chunks.throw(_TooLong(f"renders more than {MAX_OUTPUT >> 10} KiB"))
            out.append(chunk)
    except (_TooLong, Runaway) as e:
        raise TemplateError(f"{path}:{_line(e)}: {e}") from None
    except SecurityError as e:
        raise TemplateError(f"{path}:{_line(e)}: not allowed in a template: {e}") from None
    except JinjaError as e:
        raise TemplateError(f"{path}:{_line(e)}: {e.message or type(e).__name__}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError, MemoryError) as e:
        raise TemplateError(f"{path}:{_line(e)}: {type(e).__name__}: {str(e)[:200]}") from None
    return "".join(out)


class _TooLong(Exception):
    pass


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

    return Rendered(" ".join(_plain(subject).split())[:300], rule.join(body(p, p.text) for p in parts),
                    rule.join(body(p, p.markdown) for p in parts))
