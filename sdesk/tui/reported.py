"""The TUI's one way to handle an sdesk error: `SdeskApp.report` shows it, and `reported` wraps
an action or a worker so that its SdeskError is shown that way instead of ending the app."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import SdeskError

F = TypeVar("F", bound=Callable[..., Any])


def reported(title: str = "") -> Callable[[F], F]:
    """Decorate a method of the app or of a screen (under @work for a worker): an SdeskError it
    raises becomes one notification (the line the CLI prints), and it returns None."""
    def wrap(method: F) -> F:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except SdeskError as e:
                app = self if hasattr(self, "report") else self.app
                app.report(e, title=title)
                return None

        return run  # type: ignore[return-value]

    return wrap
