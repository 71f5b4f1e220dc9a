"""The key bar at the bottom of every screen: every binding of the screen, as one text.

Textual's Footer makes a widget per key and restyles each one whenever a screen is shown: with
every key of the ticket screen in it, that was most of the time a ticket took to open. One
Static holding one Text is laid out once per screen, and again when the screen's bindings
change (focus moving into an input takes the letter keys away).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class KeyBar(Static):
    # Up to seven lines: an 80-column terminal needs five for the queue's keys, a 60-column one seven.
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: auto; max-height: 7; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _: self.refresh_keys())
        self.refresh_keys()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def refresh_keys(self) -> None:
        from textual.widgets import Input

        typing = isinstance(self.screen.focused, Input)
        offered = [getattr(node, "offers", None) for node in (self.app, self.screen)]
        self.update(keys_text(self.app, [*self.app.BINDINGS, *self.screen.BINDINGS], typing,
                              lambda action: all(offers(action) for offers in offered if offers is not None),
                              (self.size.width or self.app.size.width) - 2))  # less the padding

    def on_resize(self) -> None:
        self.refresh_keys()


def keys_text(app, bindings, typing: bool = False, offers=lambda action: True, width: int = 0) -> Text:
    """`key Label` for each of the app's and the screen's actions (a widget's own, like the
    table's cursor keys, go without saying), keys that do the same thing together (`esc/q
    Close`), the app's (help, quit) first so that a narrow terminal still shows them. While an
    input has focus, a printable key types into it: only the others are listed. Keys the app or
    the screen does not offer now (their `offers(action)`) are left out. Lines break between
    keys, at `width`."""
    from textual.binding import Binding

    by_action: dict[tuple[str, str], list[str]] = {}
    for binding in Binding.make_bindings(bindings):
        if binding.system or not binding.description or not offers(binding.action):
            continue  # a key the actor's role (or the screen's state) does not allow is not offered
        key = app.get_key_display(binding)
        if typing and len(key) == 1 and key.isprintable():
            continue
        by_action.setdefault((binding.action, binding.description), []).append(key)
    text = Text()
    line = 0  # the width of the line so far: a key and its label are never split over two lines
    for (_, description), keys in by_action.items():
        key = "/".join(dict.fromkeys(keys))
        size = len(key) + 1 + len(description)
        if line and width and line + 2 + size > width:
            text.append("\n")
            line = 0
        elif line:
            text.append("  ")
            line += 2
        text.append(key, style="bold")
        text.append(f" {description}")
        line += size
    return text
