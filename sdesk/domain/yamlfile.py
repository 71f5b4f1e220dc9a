"""Reading YAML the desk's files are written in: the data and its node tree (for line numbers
in errors), with the C loader where PyYAML has it, and every failure as one BadInput line.

Every YAML the desk reads comes through here, with limits checked on the node tree before any
of it is built: a 450-byte cmdb.yaml of 7 nested aliases (the "billion laughs") stored a
254 MB row in 16 s, and 9 levels never finished. Aliases may add at most as many values as the
document itself has (and 10,000), nesting stops at MAX_DEPTH, a document at MAX_CHARS, and a
key written twice in one mapping is an error naming both lines (PyYAML keeps the last one
silently)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from ..errors import BadInput

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_CHARS = 32 << 20  # a document: a 100,000-CI estate is about 20 MB
MAX_DEPTH = 64  # nested collections: a rule's all/any/not, a CI's attributes (orjson stops at 255)
ALIASED_MIN = 10_000  # values aliases may add to any document (more if the document is bigger)
_MERGE = "tag:yaml.org,2002:merge"
MAX_NUMBER_DIGITS = 4300  # Python's default limit on converting a string to an int


def parse(text: str, where: str, first_line: int = 1, what: str = "") -> tuple[Any, yaml.Node | None]:
    """(data, root node) of one YAML document; errors name `where` and the line (counted from
    first_line, for YAML embedded in a bigger file)."""
    if len(text) > MAX_CHARS:
        raise BadInput(f"{where}:{first_line}: {what}larger than {MAX_CHARS >> 20} MiB")
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check(node, where, first_line, what, aliased="&" in text)
            return (loader.construct_document(node) if node is not None else None), node
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise BadInput(f"{where}:{mark.line + first_line if mark else first_line}: {what}{problem}") from None
    except RecursionError:
        raise BadInput(f"{where}:{first_line}: {what}nested too deeply") from None
    except (ValueError, OverflowError) as e:
        # Building a value failed: an integer of more than 4,300 digits (Python's limit on
        # str -> int), a date out of range. Only here, on the way out, is the tree searched for
        # the scalar to blame, so that the error names its line.
        raise BadInput(f"{where}:{_bad_scalar_line(node, first_line)}: {what}{_reason(e)}") from None


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "integer string conversion" in text:
        return f"a number longer than {MAX_NUMBER_DIGITS:,} digits"
    return text[:200]


def _bad_scalar_line(root: Any, first_line: int) -> int:
    """The line of the first scalar Python cannot build (a number too long, a bad date), or
    of the document when none is found."""
    if root is None:
        return first_line
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_NUMBER_DIGITS and node.tag.endswith((":int", ":float")):
                return node.start_mark.line + first_line
            if node.tag.endswith(":timestamp"):
                try:
                    yaml.SafeLoader.construct_yaml_timestamp(yaml.SafeLoader(""), node)
                except (ValueError, OverflowError):
                    return node.start_mark.line + first_line
            continue
        stack.extend(reversed(_children(node)))
    return root.start_mark.line + first_line


def _check(root: yaml.Node, where: str, first_line: int, what: str, aliased: bool) -> None:
    """The limits, on the node tree as composed (an alias is the same node object met again).
    `aliased`: the document may hold aliases; then each collection's expanded size and depth
    are computed once however often it is aliased, else one walk of the tree suffices."""
    def line(node: yaml.Node) -> int:
        return node.start_mark.line + first_line

    def fail(node: yaml.Node, message: str) -> BadInput:
        return BadInput(f"{where}:{line(node)}: {what}{message}")

    if not aliased:
        walk: list[tuple[yaml.Node, int]] = [(root, 1)]
        while walk:
            node, level = walk.pop()
            if level > MAX_DEPTH:
                raise fail(node, f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(node, yaml.MappingNode):
                _no_duplicate_keys(node, fail, line)
            walk.extend((kid, level + 1) for kid in _children(node) if not isinstance(kid, yaml.ScalarNode))
        return
    size: dict[int, int] = {}  # collection -> values in it once aliases are expanded
    depth: dict[int, int] = {}
    written = 0  # values as written: each collection once, and the scalars in it
    open_: set[int] = set()  # collections whose children are being walked: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, walked = stack.pop()
        key = id(node)
        if walked:
            open_.discard(key)
            total, deepest = 1, 0
            for kid in _children(node):
                if isinstance(kid, yaml.ScalarNode):
                    total += 1
                    written += 1
                else:
                    total += size[id(kid)]
                    deepest = max(deepest, depth[id(kid)])
            written += 1
            size[key], depth[key] = total, deepest + 1
            if deepest + 1 > MAX_DEPTH:
                raise fail(node, f"nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        if key in open_:
            raise fail(node, "an alias refers to a collection it is inside (a recursive alias)")
        open_.add(key)
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, fail, line)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if not isinstance(kid, yaml.ScalarNode))
    expanded = size.get(id(root), 1)
    if expanded - written > max(ALIASED_MIN, written):
        raise fail(root, f"aliases expand this document to {expanded:,} values from {written:,} written "
                         f"(at most {max(ALIASED_MIN, written):,} more are allowed)")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _no_duplicate_keys(node: yaml.MappingNode, fail: Callable[[yaml.Node, str], BadInput],
                       line: Callable[[yaml.Node], int]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:  # `<<: *defaults` may repeat
            continue
        name = (key.tag, key.value)
        if name in seen:
            raise fail(key, f"duplicate key {key.value!r} (first at line {seen[name]})")
        seen[name] = line(key)


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
