"""The knowledge base's query language on PostgreSQL: an FTS5 expression (what `kb_search` takes
on SQLite) parsed here, then written as a `to_tsquery` text for PostgreSQL's full-text search.

Accepted as FTS5 accepts them: words (barewords of letters, digits, `_` and non-ASCII), "phrases"
(`""` for a quote inside), `word*` and `"phrase"*` prefixes, `a + b` phrases, AND, OR, NOT (NOT
binds tighter than AND, AND than OR; words side by side are an AND that binds tightest),
parentheses, and column filters (`title: x`, `{title tags}: x`, `-body: x`), read as weights of
`kb_fts.doc` (title A, tags B, cis C, body D). Refused on PostgreSQL, where a tsquery has no
reading of them: `^` (the first word of a column) and NEAR groups.

The query is user input: it never reaches SQL (the text made here is bound to a placeholder),
and every word in it is reduced to runs of letters and digits (FTS5's unicode61 tokens) and
quoted, so nothing of the user's text is read as tsquery syntax. A malformed query is one
BadInput (FTS5's own message where it has one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from ..errors import BadInput

WEIGHTS = {"title": "A", "tags": "B", "cis": "C", "body": "D"}  # kb_fts.doc's setweight labels
_TOKEN_RUN = re.compile(r"[^\W_]+")


def _bare(c: str) -> bool:
    return c.isalnum() or c == "_" or ord(c) > 127 or c == "\x1a"


@dataclass(frozen=True)
class Phrase:
    words: tuple[tuple[str, bool], ...]  # (the text of one STRING, a prefix), in order
    columns: frozenset[str] | None = None  # None: any column
    initial: bool = False


@dataclass(frozen=True)
class Near:
    phrases: tuple[Phrase, ...]
    columns: frozenset[str] | None = None


@dataclass(frozen=True)
class Op:
    op: str  # AND, OR, NOT
    left: Node
    right: Node


Node = Union[Phrase, Near, Op]


def _error(near: str) -> BadInput:
    return BadInput(f'search: fts5: syntax error near "{near}"')


def _lex(text: str) -> list[tuple[str, str]]:
    """(kind, text): kind is STRING (a bareword or a quoted string's content), a keyword
    (AND, OR, NOT, NEAR), or the punctuation itself."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j, part = i + 1, []
            while True:
                if j >= n:
                    raise BadInput("search: fts5: unterminated string")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        part.append('"')
                        j += 2
                        continue
                    break
                part.append(text[j])
                j += 1
            out.append(("STRING", "".join(part)))
            i = j + 1
        elif _bare(c):
            j = i
            while j < n and _bare(text[j]):
                j += 1
            word = text[i:j]
            if word in ("AND", "OR", "NOT"):
                out.append((word, word))
            elif word == "NEAR" and text[j:].lstrip().startswith("("):
                out.append(("NEAR", word))
            else:
                out.append(("STRING", word))
            i = j
        elif c in "(){}:*+^,-":
            out.append((c, c))
            i += 1
        else:
            raise _error(c)
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _lex(text)
        self.at = 0

    def peek(self) -> str:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else ""

    def take(self, kind: str) -> str:
        if self.peek() != kind:
            raise _error(self.tokens[self.at][1] if self.at < len(self.tokens) else "")
        self.at += 1
        return self.tokens[self.at - 1][1]

    def parse(self) -> Node:
        if not self.tokens:
            raise _error("")
        node = self.expr_or()
        if self.at < len(self.tokens):
            raise _error(self.tokens[self.at][1])
        return node

    # FTS5's operators, loosest first: OR, then AND, then NOT, each left-associative.
    _LEVELS = ("OR", "AND", "NOT")

    def expr_or(self, level: int = 0) -> Node:
        if level == len(self._LEVELS):
            return self.primary()
        node = self.expr_or(level + 1)
        while self.peek() == self._LEVELS[level]:
            self.at += 1
            node = Op(self._LEVELS[level], node, self.expr_or(level + 1))
        return node

    def primary(self) -> Node:
        if self.peek() == "(":
            self.at += 1
            node = self.expr_or()
            self.take(")")
            return node
        if self.peek() in ("-", "{") or (self.peek() == "STRING" and self._colon_next()):
            columns = self.colset()
            self.take(":")
            if self.peek() == "(":
                self.at += 1
                node = self.expr_or()
                self.take(")")
                return _restrict(node, columns)
            node = _restrict(self.nearset(), columns)
        else:
            node = self.nearset()
        while self.peek() in ("STRING", "^", "NEAR", "-", "{"):  # side by side: AND
            if self.peek() == "STRING" and self._colon_next() or self.peek() in ("-", "{"):
                columns = self.colset()
                self.take(":")
                node = Op("AND", node, _restrict(self.nearset(), columns))
            else:
                node = Op("AND", node, self.nearset())
        return node

    def _colon_next(self) -> bool:
        return self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][0] == ":"

    def colset(self) -> frozenset[str]:
        negated = self.peek() == "-"
        if negated:
            self.at += 1
        if self.peek() == "{":
            self.at += 1
            names = [self.take("STRING")]
            while self.peek() == "STRING":
                names.append(self.take("STRING"))
            self.take("}")
        else:
            names = [self.take("STRING")]
        chosen = set()
        for name in names:
            if name.lower() not in WEIGHTS:
                raise BadInput(f"search: no such column: {name}")
            chosen.add(name.lower())
        return frozenset(set(WEIGHTS) - chosen if negated else chosen)

    def nearset(self) -> Phrase | Near:
        if self.peek() == "^":
            self.at += 1
            return Phrase(self.phrase().words, initial=True)
        if self.peek() == "NEAR":
            self.at += 1
            self.take("(")
            phrases = [self.phrase()]
            while self.peek() == "STRING":
                phrases.append(self.phrase())
            if self.peek() == ",":
                self.at += 1
                distance = self.take("STRING")
                if not distance.isdigit():
                    raise BadInput(f'search: fts5: expected integer, got "{distance}"')
            self.take(")")
            return Near(tuple(phrases))
        return self.phrase()

    def phrase(self) -> Phrase:
        words = [self.word()]
        while self.peek() == "+":
            self.at += 1
            words.append(self.word())
        return Phrase(tuple(words))

    def word(self) -> tuple[str, bool]:
        text = self.take("STRING")
        prefix = self.peek() == "*"
        if prefix:
            self.at += 1
        return text, prefix


def _restrict(node: Node, columns: frozenset[str]) -> Node:
    """`node` with its phrases limited to `columns` (within any limit they already have)."""
    if isinstance(node, Op):
        return Op(node.op, _restrict(node.left, columns), _restrict(node.right, columns))
    inner = columns if node.columns is None else node.columns & columns
    if isinstance(node, Near):
        return Near(node.phrases, inner)
    return Phrase(node.words, inner, node.initial)


def parse(text: str) -> Node:
    """The FTS5 expression `text` as a tree (BadInput when malformed)."""
    return _Parser(text).parse()


def _phrase_tsquery(phrase: Phrase) -> str | None:
    """A phrase as tsquery operands joined by <-> (None: it has no token, and matches nothing)."""
    if phrase.initial:
        raise BadInput("search: ^ (a phrase at the start of a column) is not supported on PostgreSQL")
    weights = "" if phrase.columns is None else "".join(sorted(WEIGHTS[c] for c in phrase.columns))
    if phrase.columns is not None and not weights:
        return None  # no column left to look in
    operands = []
    for text, prefix in phrase.words:
        runs = _TOKEN_RUN.findall(text.lower())
        for i, run in enumerate(runs):
            last = prefix and i == len(runs) - 1
            label = ("*" if last else "") + weights
            operands.append(f"'{run}'" + (f":{label}" if label else ""))
    if not operands:
        return None
    return operands[0] if len(operands) == 1 else "(" + " <-> ".join(operands) + ")"


def _tsquery(node: Node) -> str | None:
    if isinstance(node, Phrase):
        return _phrase_tsquery(node)
    if isinstance(node, Near):
        raise BadInput("search: NEAR groups are not supported on PostgreSQL")
    left, right = _tsquery(node.left), _tsquery(node.right)
    if node.op == "AND":
        return None if left is None or right is None else f"({left} & {right})"
    if node.op == "OR":
        return right if left is None else left if right is None else f"({left} | {right})"
    return None if left is None else left if right is None else f"({left} & !{right})"


def to_tsquery(text: str) -> str | None:
    """The FTS5 expression `text` as the text of a tsquery for to_tsquery(), or None when it can
    match nothing (an empty phrase, as FTS5's `""`)."""
    return _tsquery(parse(text))
