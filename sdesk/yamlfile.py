"""Reading YAML the desk's files are written in: the data and its node tree (for line numbers
in errors), with the C loader where PyYAML has it, and every failure as one BadInput line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from .errors import BadInput

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, where: str, first_line: int = 1, what: str = "") -> tuple[Any, yaml.Node | None]:
    """(data, root node) of one YAML document; errors name `where` and the line (counted from
    first_line, for YAML embedded in a bigger file)."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            return (loader.construct_document(node) if node is not None else None), node
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise BadInput(f"{where}:{mark.line + first_line if mark else first_line}: {what}{problem}") from None
    except RecursionError:
        raise BadInput(f"{where}:{first_line}: {what}nested too deeply") from None


def line_of(node: Any, loc: list[str], default: int = 1) -> int:
    """The line of the node at `loc` (keys and list indexes), or of the deepest part that exists."""
    line = node.start_mark.line + 1 if node is not None else default
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isascii() and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def as_list(value: Any, loc: list[str], fail: Any) -> list:
    """A setting that must be a list (absent: empty); `fail(loc, message)` makes the error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(loc, f"{loc[-1]}: expected a list")
    return value


def failure(where: str, node: Any) -> Callable[[list[str], str], BadInput]:
    """`fail(loc, message)`: the one-line error for the setting at `loc` of a file's node tree,
    naming the file and line (newlines in what the user wrote are shown, not kept)."""
    def fail(loc: list[str], message: str) -> BadInput:
        return BadInput(f"{where}:{line_of(node, loc)}: " + message.replace("\r", "\\r").replace("\n", "\\n"))

    return fail
