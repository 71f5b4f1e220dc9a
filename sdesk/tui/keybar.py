"""The key bar at the bottom of every screen: every binding of the screen, as one text.

Textual's Footer makes a widget per key and restyles each one whenever a screen is shown: with
every key of the ticket screen in it, that was most of the time a ticket took to open. One
Static holding one Text is laid out once per screen.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


_PLUMBING = {"app.focus_next", "app.focus_previous", "focus_next", "focus_previous", "screen.copy_text"}


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: auto; max-height: 3; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.refresh_keys()

    def on_screen_resume(self) -> None:
        self.refresh_keys()

    def refresh_keys(self) -> None:
        self.update(keys_text(self.app, self.screen.active_bindings.values()))


def keys_text(app, active) -> Text:
    """`key Label` for each action, keys that do the same thing together (`esc/q Close`)."""
    by_action: dict[tuple[str, str], list[str]] = {}
    for bound in active:
        binding = bound.binding
        if binding.system or not binding.description or binding.action in _PLUMBING:
            continue
        by_action.setdefault((binding.action, binding.description), []).append(app.get_key_display(binding))
    text = Text()
    for (_, description), keys in by_action.items():
        if text:
            text.append("  ")
        text.append("/".join(dict.fromkeys(keys)), style="bold")
        text.append(f" {description}")
    return text
