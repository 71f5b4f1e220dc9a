"""`sdesk tui`: the live queue (Textual is imported only here)."""

from typing import Annotated

import typer

from .common import settings_of

app = typer.Typer()


@app.command("tui")
def tui(
    ctx: typer.Context,
    page: Annotated[int, typer.Option("--page", min=10, max=10_000, help="Rows loaded at a time.")] = 100,
) -> None:
    """The live queue: work tickets with the keyboard (? lists the keys). It refreshes as other
    processes change the desk.

    Example: sdesk --db desk.db --as alice tui
    """
    from ..tui.app import SdeskApp

    desk = settings_of(ctx)
    desk.store()  # creates or upgrades the database first, with the CLI's error handling
    SdeskApp(desk, page=page).run()
