"""`sdesk backup`, `restore`, `export`, `import` and `purge`: the desk as files, and retention."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInput, Conflict
from .common import Group, note, print_json, settings_of, store_of

backup_app = typer.Typer(cls=Group)
restore_app = typer.Typer(cls=Group)
export_app = typer.Typer(cls=Group)
import_app = typer.Typer(cls=Group)
purge_app = typer.Typer(cls=Group)


@backup_app.command("backup")
def backup(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="The backup file to write, or - for stdout (not a terminal).", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.")] = False,
) -> None:
    """Copy the live database to FILE, consistent even while other processes write (SQLite's
    online backup). The copy is integrity-checked before it takes FILE's name. With -, the
    checked copy is written to stdout (made in a temporary folder first, so a backup that fails
    its check writes nothing); refused when stdout is a terminal.

    Example: sdesk backup /backups/sdesk-$(date +%F).db
    Example: sdesk backup - | ssh vault 'cat > sdesk.db'
    """
    if str(target) == "-":
        _backup_to_stdout(ctx)
        return
    import os

    from ..files import status

    # A name too long, under a file, a loop of links: one line, before the desk is opened.
    if status(target, f"cannot write {target}") is not None and not force:
        raise Conflict(f"{target} exists: give --force to replace it")
    store = store_of(ctx)
    if os.path.realpath(target) == os.path.realpath(store.path):
        raise BadInput("the backup must go to another file than the database itself")
    store.backup_to(target)
    note(f"backed up {store.path} to {target} ({target.stat().st_size:,} bytes)")
    _ran(ctx, store, os.path.realpath(target))


def _backup_to_stdout(ctx: typer.Context) -> None:
    import shutil
    import tempfile

    if sys.stdout.isatty():
        raise BadInput("backup -: stdout is a terminal; redirect it to a file or a pipe")
    store = store_of(ctx)
    with tempfile.TemporaryDirectory(prefix="sdesk-backup-") as folder:
        checked = Path(folder) / "backup.db"
        store.backup_to(checked)
        size = checked.stat().st_size
        sys.stdout.flush()
        with open(checked, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
    note(f"backed up {store.path} to stdout ({size:,} bytes)")
    _ran(ctx, store, "-")


def _ran(ctx: typer.Context, store, target: str) -> None:
    """Record the backup for sdesk doctor; a read-only desk is backed up all the same."""
    if not store.read_only:
        store.set_desk_state("backup", value=target, actor=settings_of(ctx).actor)


@restore_app.command("restore")
def restore(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A backup made by sdesk backup.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Replace the desk's database with a backup, after checking the backup's integrity, its
    audit chain and its rows against their events (as `sdesk audit verify`). Admins only; the
    restore is recorded on the restored chain.

    Example: sdesk restore /backups/sdesk-2026-11-26.db --yes
    """
    import shutil
    import tempfile

    from ..domain.plain import plural
    from ..storage import migrations
    from ..storage.desk_file import check_file
    from ..store import Store

    settings = settings_of(ctx)
    store = settings.store()
    store.require(settings.actor, need="admin", what="restoring a backup")
    import stat

    from ..files import kind, status

    found = status(source, f"cannot read {source}")  # a name too long, a loop of links: said so
    if found is None:
        raise BadInput(f"{source}: no such file")
    if not stat.S_ISREG(found.st_mode):
        raise BadInput(f"cannot read {source}: {kind(found.st_mode)}, not a regular file")
    # A copy is checked and opened, never the backup itself (opening migrates an older schema and
    # sets WAL), and what is checked is what is restored.
    with tempfile.TemporaryDirectory(prefix="sdesk-restore-") as folder:
        copy = Path(folder) / "backup.db"
        try:
            shutil.copyfile(source, copy)
            if Path(f"{source}-wal").is_file():  # a live database's last commits
                shutil.copyfile(f"{source}-wal", f"{copy}-wal")
        except OSError as e:
            raise BadInput(f"cannot read {source}: {e.strerror}") from None
        version = check_file(copy, source)
        if version > migrations.SCHEMA_VERSION:
            raise BadInput(f"{source}: made by a newer sdesk (schema {version}); upgrade sdesk")
        with Store(copy) as backup:
            events, head, _ = backup.audit.verify()  # refuses a backup whose history or rows were altered
            if not yes:
                if not sys.stdin.isatty():
                    raise BadInput("restore replaces the whole desk: give --yes")
                typer.confirm(f"Replace {store.path} with {source} ({plural(events, 'event')})?", abort=True)
            store.restore_from(backup, source=str(source), events=events, head=head, actor=settings.actor)
    note(f"restored {store.path} from {source}: {plural(events, 'event')}, chain intact")


@export_app.command("export")
def export(
    ctx: typer.Context,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="JSON lines (the only format, and the default).")] = True,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="Only rows changed since: 30d, 12h, or an ISO time (such an export does not import).",
        show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write to this file (default or -: stdout).",
                                                show_default=False)] = None,
) -> None:
    """Export the whole desk losslessly as JSON lines: tickets, events, alerts, KB with
    revisions, CMDB, runbook runs, users, everything. `sdesk import` loads it into an empty
    database; exporting that again gives the same bytes.

    Example: sdesk export --jsonl > desk.jsonl
    """
    from ..domain import clock
    from ..domain.plain import plural

    store = store_of(ctx)
    changed_since = clock.iso(clock.back(since, "--since")) if since else None
    if out is None or str(out) == "-":
        rows = store.export_to(sys.stdout.buffer, since=changed_since)
        sys.stdout.buffer.flush()
    else:  # a failed export leaves no partial file under the name
        from ..atomic import replaced
        from ..files import status

        status(out, f"cannot write {out}")  # a name too long, a loop of links: one line

        with replaced(out) as partial, partial.open("wb") as f:
            rows = store.export_to(f, since=changed_since)
    note(f"exported {plural(rows, 'table row')}" + (f" to {out}" if out and str(out) != "-" else ""))


@import_app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="An export made by sdesk export (- for stdin).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows imported per table as JSON.")] = False,
) -> None:
    """Load an export into an empty desk, in one transaction: its foreign keys and audit chain
    must check, and every ticket, user and API token must be what its events say (as `sdesk
    audit verify` checks), or nothing is imported.

    Example: sdesk --db new.db import desk.jsonl
    """
    settings = settings_of(ctx)
    store = settings.store()
    store.require(settings.actor, need="admin", what="importing a desk")
    from ..files import open_file

    stream = sys.stdin.buffer if str(source) == "-" else open_file(source, streams=True)  # never /dev/zero
    with stream:
        counts = store.import_from(stream)
    if as_json:
        print_json(counts)
    from ..domain.plain import plural

    # The same count as export's: table rows (the export's id counters are not rows).
    note(f"imported {plural(sum(counts.values()), 'table row')} into {store.path}; audit chain intact, "
         "rows match their events")


@purge_app.command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="Retention: 365d, 52w.", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would go.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Delete tickets closed before the retention period, with their events, alerts and runs
    (their emails' message ids stay, so a mailbox read again does not bring them back). The
    audit chain still verifies: each purged event keeps its place (id and hashes), and a
    `purged` event records what went and the chain's head at that point. Admins only.

    Example: sdesk purge --older-than 365d --dry-run
    """
    from ..domain import clock

    settings = settings_of(ctx)
    store = settings.store()
    before = clock.iso(clock.back(older_than, "--older-than"))
    from ..domain.plain import plural

    if not dry_run and not yes:
        counted = store.audit.purge(before=before, dry_run=True, actor=settings.actor)
        if not counted["tickets"]:
            dry_run = True
        elif not sys.stdin.isatty():
            raise BadInput("purge deletes tickets for good: give --yes (or look first with --dry-run)")
        else:
            typer.confirm(f"Delete {plural(counted['tickets'], 'ticket')} closed before {before}?", abort=True)
    summary = store.audit.purge(before=before, dry_run=dry_run, actor=settings.actor)
    if as_json:
        print_json(summary)
    else:
        verb = "would purge" if summary["dry_run"] else "purged"
        print(f"{verb} {plural(summary['tickets'], 'ticket')} closed before {before} ({plural(summary['events'], 'event')})")
