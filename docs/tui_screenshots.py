"""Make docs/tui-queue.svg and docs/tui-ticket.svg: the TUI on the demo desk, as alice with the
example config, in a headless terminal (100 columns by default), on a fixed clock so that
the pictures change only when the TUI does.

    python docs/tui_screenshots.py                  # writes docs/tui-queue.svg, docs/tui-ticket.svg
    python docs/tui_screenshots.py --out /tmp/shots --width 80
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-02T11:00:00Z"


async def _shoot(db: Path, out: Path, width: int, height: int) -> list[Path]:
    from textual.widgets import DataTable

    from sdesk.tui.app import TicketScreen, make_app

    app = make_app(db, "alice", ROOT / "examples" / "desk", poll=3600)
    written = []
    async with app.run_test(size=(width, height)) as pilot:
        async def settled(done) -> None:
            for _ in range(400):
                await pilot.pause(0.05)
                if done():
                    await app.workers.wait_for_complete()
                    await pilot.pause(0.1)
                    return
            raise SystemExit("the TUI did not show the demo desk in 20 s")

        await settled(lambda: app.screen.query(DataTable) and app.screen.query_one(DataTable).row_count)
        written.append(Path(app.save_screenshot("tui-queue.svg", str(out))))
        await pilot.press("enter")  # the first in the queue: the P1
        await settled(lambda: isinstance(app.screen, TicketScreen) and app.screen.ready is None)
        written.append(Path(app.save_screenshot("tui-ticket.svg", str(out))))
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--height", type=int, default=32)
    args = parser.parse_args(argv)
    os.environ["SDESK_NOW"] = NOW  # the demo's morning and the TUI's ages and SLA clocks
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="sdesk-shots-") as tmp:
        db = Path(tmp) / "demo.db"
        subprocess.run([sys.executable, "-m", "sdesk", "--db", str(db), "demo"], check=True, capture_output=True,
                       env={**os.environ, "SDESK_DB": str(db), "SDESK_USER": "alice"})
        args.out.mkdir(parents=True, exist_ok=True)
        written = asyncio.run(_shoot(db, args.out, args.width, args.height))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
