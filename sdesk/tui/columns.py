"""How the queue's columns share the terminal's width (pure; tested over every width 60-200).

The columns a user decides by (ID, PRI, STATUS, ASSIGNEE, AGE, SLA; QUEUE in the by-queue
view) always get their width; the title takes what is left, down to TITLE_MIN, and only then
do the optional columns (SERVICE) drop. A title wider than its share is cut with an ellipsis,
so nothing runs off the right edge, down to 60 columns.
"""

from __future__ import annotations

PAD = 2  # a DataTable cell's padding, one each side
TITLE_MIN = 16  # below this the title is not worth more than SERVICE
TITLE_FLOOR = 10  # below this (a very narrow screen) the widest important columns give way a little
CAPS = {"ASSIGNEE": 12, "SERVICE": 16, "QUEUE": 12, "TITLE": 120}  # wider values are cut with an ellipsis
SHRINK_TO = {"ASSIGNEE": 8, "QUEUE": 5}  # how far an important column gives way on a very narrow screen


def important(by_queue: bool) -> tuple[str, ...]:
    return ("ID", "PRI", "STATUS", *(("QUEUE",) if by_queue else ()), "ASSIGNEE", "AGE", "SLA")


def order(by_queue: bool) -> tuple[str, ...]:
    """Left to right: what a ticket is, then its title, then who has it and how long it has left."""
    return ("ID", "PRI", "STATUS", *(("QUEUE",) if by_queue else ()), "TITLE", "SERVICE", "ASSIGNEE", "AGE", "SLA")


def natural(widths: dict[str, int]) -> dict[str, int]:
    """The width each column wants: its longest value, at least its header, at most its cap."""
    return {name: min(CAPS.get(name, 1 << 16), max(len(name), widths.get(name, 0))) for name in order(True)}


def layout(width: int, wanted: dict[str, int], by_queue: bool = False) -> list[tuple[str, int]]:
    """(column, width) left to right for a table `width` cells wide (its scroll bar not included)."""
    want = natural(wanted)
    keep = dict.fromkeys(important(by_queue))
    widths = {name: want[name] for name in keep}
    rest = width - sum(w + PAD for w in widths.values()) - PAD  # what the title may have
    for name, floor in SHRINK_TO.items():  # a very narrow screen: the title keeps a few letters
        if name in widths and rest < TITLE_FLOOR:
            give = min(widths[name] - max(floor, len(name)), TITLE_FLOOR - rest)
            if give > 0:
                widths[name] -= give
                rest += give
    title = min(want["TITLE"], TITLE_MIN)
    if rest - (want["SERVICE"] + PAD) >= title:
        widths["SERVICE"] = want["SERVICE"]
        rest -= want["SERVICE"] + PAD
    if rest > 0:  # below ~62 columns in the by-queue view of a million tickets, no room for a title
        widths["TITLE"] = min(want["TITLE"], rest)
    return [(name, widths[name]) for name in order(by_queue) if name in widths]
