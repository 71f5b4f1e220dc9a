"""Faults of the file under the desk: its write-ahead log deleted under a running writer, a full
disk, a read-only mount, a file that is not an sdesk database, a damaged one. Each is caused for
real (real processes, real files, a real full file system when this machine lets root mount one);
the point is what a user sees: one clear line, an exit code, and nothing acknowledged that is lost."""

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sdesk.cli import app
from sdesk.domain.signals import Signal
from sdesk.errors import ExitCode, ReadOnly, StoreFault
from sdesk.intake.service import Intake
from sdesk.storage import migrations
from sdesk.store import Store

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" + b"\x00" * 64


def sdesk(db: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDESK_DB": str(db)}
    return subprocess.run([sys.executable, "-m", "sdesk", *args], env=env, input=input, capture_output=True,
                          text=True, timeout=300)


def one_error_line(stderr: str, start: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), stderr
    assert "Traceback" not in stderr and "cannot rollback" not in stderr, stderr
    return lines[0]


def ticket_ids(db: Path) -> set[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM tickets")}
    finally:
        conn.close()


@contextlib.contextmanager
def mounted(*options: str):
    """A real mount (tmpfs, or a read-only bind), or a skip saying why there cannot be one."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    target = Path(tempfile.mkdtemp(prefix="sdesk-mnt-"))
    made = []
    try:
        for opts in options:
            result = subprocess.run(["mount", *opts.split("|"), str(target)], capture_output=True, text=True)
            if result.returncode:
                pytest.skip(f"cannot mount here ({result.stderr.strip()})")
            made.append(target)
        yield target
    finally:
        for _ in made:
            subprocess.run(["umount", str(target)], capture_output=True)
        shutil.rmtree(target, ignore_errors=True)


# -- the write-ahead log deleted under a running writer ------------------------------------------


@pytest.mark.sqlite_only("the -wal file is SQLite's; a dropped PostgreSQL connection mid-stream is tests/test_postgres_faults.py")
def test_a_deleted_wal_stops_a_stream_and_every_printed_id_is_kept(tmp_path, db_path):
    """`sdesk new --jsonl` reading a pipe a line at a time; the -wal is deleted mid-stream. The
    writer used to keep printing ids for tickets written to the deleted log, lost at a kill."""
    assert sdesk(db_path, "init").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "new", "--jsonl"], env={**os.environ, "SDESK_DB": str(db_path)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    printed = []
    try:
        for i in range(30):
            if i == 20:
                os.unlink(f"{db_path}-wal")
            try:
                proc.stdin.write(json.dumps({"title": f"ticket {i}"}) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                break
            line = proc.stdout.readline()  # the id, once its transaction committed (or EOF)
            if not line:
                break
            printed.append(int(line.strip().removeprefix("SD-")))
    finally:
        proc.kill()  # as an operator or the OOM killer would; what was printed must survive it
        proc.wait()
        stderr = proc.stderr.read()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    assert len(printed) == 20, f"acknowledged {len(printed)} tickets after the log was deleted"
    assert proc.returncode == ExitCode.ERROR
    message = one_error_line(stderr, f"{db_path}-wal was deleted or replaced while sdesk was writing: stopped")
    assert "20 records were stored and reported before it, the last stdin: line 20" in message
    assert set(printed) <= ticket_ids(db_path)
    assert sdesk(db_path, "audit", "verify").returncode == 0


def _ticket(title: str) -> Signal:
    return Signal("cli", "trigger", ticket={"title": title, "kind": "incident", "priority": "P3"})


@pytest.mark.sqlite_only("the database's files (-wal, -shm, the file itself) replaced under a writer")
@pytest.mark.parametrize("fault", ["wal deleted", "wal replaced", "shm deleted", "database replaced", "database moved"])
def test_files_deleted_or_replaced_under_a_writer_stop_it(db_path, fault):
    """The class: any of the three files the writer has open is no longer the one at its path."""
    store = Store(db_path)
    try:
        [(first, _)] = Intake(store).receive([_ticket("before")], actor="t")
        if fault == "wal deleted":
            os.unlink(f"{db_path}-wal")
        elif fault == "wal replaced":
            Path(f"{db_path}-junk").write_bytes(b"\x00" * 4096)
            os.replace(f"{db_path}-junk", f"{db_path}-wal")
        elif fault == "shm deleted":
            os.unlink(f"{db_path}-shm")
        elif fault == "database replaced":
            shutil.copyfile(db_path, f"{db_path}-copy")
            os.replace(f"{db_path}-copy", db_path)
        else:
            os.rename(db_path, f"{db_path}-moved")
        with pytest.raises(StoreFault, match="deleted or replaced while sdesk was writing"):
            Intake(store).receive([_ticket("after")], actor="t")
        with pytest.raises(StoreFault):  # and every write after it: nothing more acknowledged
            Intake(store).receive([_ticket("later")], actor="t")
    finally:
        store.close()
    if fault != "database moved":  # SQLite itself refuses a moved file's writes (SQLITE_READONLY_DBMOVED)
        assert first in ticket_ids(db_path)


@pytest.mark.sqlite_only("the stat calls on the database's files")
def test_checking_the_files_costs_three_stats_per_transaction_not_per_row(db_path, monkeypatch):
    calls = []
    real_stat = os.stat
    with Store(db_path) as store:
        monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append(a[0]) or real_stat(*a, **k))
        Intake(store).receive([_ticket(f"t{i}") for i in range(500)], actor="t")
        monkeypatch.undo()
    assert len([c for c in calls if str(c).startswith(str(db_path))]) == 3


# -- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_says_so_and_keeps_what_was_stored(tmp_path):
    """A real full file system: an 8 MiB tmpfs (root only). It used to say "cannot rollback - no
    transaction is active"."""
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps({"title": f"ticket {i}"}) + "\n" for i in range(40000)))
    with mounted("-t|tmpfs|-o|size=8m|tmpfs") as disk:
        db = disk / "desk.db"
        result = sdesk(db, "new", "--jsonl", str(lines))
        assert result.returncode == ExitCode.ERROR
        printed = [int(line.removeprefix("SD-")) for line in result.stdout.split()]
        message = one_error_line(result.stderr, "disk full: ")
        assert 0 < len(printed) < 40000
        assert f"{len(printed)} records were stored and reported before it, the last {lines}: line {len(printed)}" in message
        assert ticket_ids(db) == set(printed)
        # Fill what is left, then a single write: the same one line; reads still work.
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\x00" * 65536)
                f.flush()
        before = db.read_bytes()
        result = sdesk(db, "new", "one more")
        assert result.returncode == ExitCode.ERROR, result.stdout
        one_error_line(result.stderr, "disk full: ")
        assert sdesk(db, "audit", "verify").returncode == 0
        assert len(json.loads(sdesk(db, "list", "--all", "--limit", "0", "--json").stdout)) == len(printed)
        assert db.read_bytes() == before


# From nothing at all to a little more than a new desk (364 KiB, its -wal about as much again):
# the disk fills while the schema is written, while its log is copied into the file, or not at all.
@pytest.mark.parametrize("size", [f"{k}k" for k in range(50, 851, 50)])
def test_init_on_a_nearly_full_disk_leaves_no_file_or_a_whole_desk(size):
    """A real tmpfs of each size. `init` used to link a file whose schema was still in the -wal
    when the copy into the file failed (the -wal then deleted): a truncated desk that every later
    command, reads too, called damaged."""
    with mounted(f"-t|tmpfs|-o|size={size}|tmpfs") as disk:
        db = disk / "desk.db"
        result = sdesk(db, "init")
        if result.returncode:
            assert result.returncode == ExitCode.ERROR
            one_error_line(result.stderr, f"disk full: cannot make a new desk at {db}: nothing was left there")
            assert list(disk.iterdir()) == []
        else:
            assert sdesk(db, "audit", "verify").returncode == 0
            assert sdesk(db, "list", "--all").returncode == 0


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(room=st.integers(0, 40), batches=st.lists(st.integers(1, 300), min_size=1, max_size=6))
def test_running_out_of_room_anywhere_in_a_write_keeps_the_desk_whole(tmp_path, room, batches):
    """The class in-process: SQLITE_FULL at any page of any transaction (max_page_count is
    SQLite's own limit, hit for real), whatever the batch sizes."""
    db = Path(tempfile.mkdtemp(dir=tmp_path)) / "desk.db"
    stored = 0
    with Store(db) as store:
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + room}")
        for n in batches:
            try:
                Intake(store).receive([_ticket(f"t{stored + i}") for i in range(n)], actor="t")
            except StoreFault as e:
                assert str(e).startswith("disk full: ")
                assert not store.conn.in_transaction
                continue
            stored += n
        assert store.conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == stored
        assert store.audit.verify_chain()[0] == stored


# -- a read-only database -------------------------------------------------------------------------


READS = [("init",), ("list", "--all"), ("show", "1"), ("report",), ("export",), ("audit", "verify"), ("show", "2", "--json")]
WRITES = [("new", "x"), ("comment", "1", "hi"), ("resolve", "1", "-r", "done")]


@pytest.mark.parametrize("live", [False, True], ids=["closed", "live writer"])
def test_a_database_on_a_read_only_mount_can_be_read(tmp_path, live):
    """A read-only bind mount of the desk's folder. Closed: no -wal/-shm there, and none can be
    made (immutable read). Live: a writer elsewhere holds commits in the -wal, which a read-only
    reader must see (read through the -shm)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    db = home / "desk.db"
    assert sdesk(db, "new", "first").returncode == 0
    assert sdesk(db, "new", "second").returncode == 0
    writer = None
    if live:
        # An open connection keeps the -wal from being checkpointed away when sdesk exits, so
        # the change (made through sdesk, so that audit verify explains it) stays only there.
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("SELECT count(*) FROM tickets").fetchone()
        assert sdesk(db, "update", "2", "--title", "only in the wal").returncode == 0
        assert (home / "desk.db-wal").stat().st_size > 0
    try:
        with mounted(f"--bind|{home}", f"-o|remount,bind,ro|{home}") as ro:
            path = ro / "desk.db"
            before = {p.name: p.read_bytes() for p in ro.iterdir()}
            for args in READS:
                result = sdesk(path, *args)
                assert result.returncode == 0, (args, result.stderr)
                assert "Traceback" not in result.stderr
            shown = json.loads(sdesk(path, "show", "2", "--json").stdout)
            assert shown["title"] == ("only in the wal" if live else "second")
            for args in WRITES:
                result = sdesk(path, *args)
                assert result.returncode == ExitCode.PERMISSION, (args, result.stdout)
                one_error_line(result.stderr, f"the database is read-only (on a read-only file system): {path}")
            assert {p.name: p.read_bytes() for p in ro.iterdir()} == before
    finally:
        if writer is not None:
            writer.close()


def _as_nobody(home: Path, db: Path):
    """sdesk on `db` as a user whom chmod stops: root is not stopped, so as root it runs as
    nobody (setpriv); skips where that cannot be done."""
    as_user = [] if os.geteuid() else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # No desk config: nobody cannot read the test's folder, and a folder named that is not there is an error.
    env = {**{k: v for k, v in os.environ.items() if k != "SDESK_CONFIG"}, "SDESK_DB": str(db)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, sys.executable, "-m", "sdesk", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    if run("--version").returncode:
        pytest.skip("cannot run sdesk as another user here")
    return run


def test_a_read_only_file_in_a_read_only_folder():
    """chmod stops only a user that is not root: as root, the commands run as nobody (setpriv).
    No -wal or -shm can be made in the folder: the read is immutable."""
    home = Path(tempfile.mkdtemp(prefix="sdesk-ro-"))
    try:
        db = home / "desk.db"
        assert sdesk(db, "new", "first").returncode == 0
        assert sdesk(db, "new", "second").returncode == 0
        db.chmod(0o444)
        home.chmod(0o555)
        run = _as_nobody(home, db)
        before = db.read_bytes()
        for args in READS:
            result = run(*args)
            assert result.returncode == 0, (args, result.stderr)
        for args in WRITES:
            result = run(*args)
            assert result.returncode == ExitCode.PERMISSION, (args, result.stdout)
            one_error_line(result.stderr, "the database is read-only (no permission to write the file): ")
        assert db.read_bytes() == before and sorted(p.name for p in home.iterdir()) == ["desk.db"]
    finally:
        home.chmod(0o755)
        shutil.rmtree(home)


def _leave_a_wal(db: Path) -> None:
    """Commits left only in the -wal, as a writer killed before it checkpointed leaves them: a
    process holds the desk open (so no sdesk exit is the last close, which checkpoints), sdesk
    commits, and the holder is killed."""
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                               "c.execute('PRAGMA wal_autocheckpoint = 0'); c.execute('SELECT 1 FROM tickets').fetchall(); "
                               "print('open', flush=True); sys.stdin.read()", str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        assert sdesk(db, "new", "only in the wal").returncode == 0
        assert sdesk(db, "comment", "1", "also only in the wal").returncode == 0
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    assert Path(f"{db}-wal").stat().st_size > 0


@pytest.mark.parametrize("shm", ["kept", "removed"])
@pytest.mark.parametrize("folder", [0o555, 0o777], ids=["read-only folder", "writable folder"])
def test_a_read_only_open_shows_the_whole_desk_or_refuses(folder, shm):
    """Commits left in a -wal, the files chmod 444, read as nobody. With no -shm and a folder
    that cannot hold one, the read used to fall back to an immutable open, which ignores the
    -wal: `list` missed the tickets only there, `show` said no such ticket and `audit verify`
    said ok. Now every such read sees all of the desk, or refuses in one line."""
    home = Path(tempfile.mkdtemp(prefix="sdesk-ro-"))
    try:
        db = home / "desk.db"
        assert sdesk(db, "new", "first").returncode == 0
        _leave_a_wal(db)
        if shm == "removed":
            os.unlink(f"{db}-shm")
        for f in home.iterdir():
            f.chmod(0o444)
        home.chmod(folder)
        run = _as_nobody(home, db)
        refused = 0
        for args in [("list", "--all", "--json"), ("show", "2", "--json"), ("audit", "verify"), ("export",)]:
            result = run(*args)
            if result.returncode:
                refused += 1
                assert result.returncode == ExitCode.PERMISSION
                one_error_line(result.stderr, f"{db} has a write-ahead log ({db}-wal) that this read-only open "
                                              "cannot read without a -shm file: ")
            elif args[0] == "list":
                assert {t["title"] for t in json.loads(result.stdout)} == {"first", "only in the wal"}
            elif args[0] == "show":
                assert json.loads(result.stdout)["title"] == "only in the wal"
        # Refused only where no -shm exists or can be made; then by every command alike.
        assert refused == (4 if folder == 0o555 and shm == "removed" else 0)
    finally:
        home.chmod(0o755)
        shutil.rmtree(home)


@pytest.mark.sqlite_only("a database file chmod 444")
def test_a_read_only_store_refuses_writes_before_touching_anything(db_path):
    with Store(db_path) as store:
        Intake(store).receive([_ticket("x")], actor="t")
    os.chmod(db_path, 0o444)
    store = Store(f"{db_path}")
    try:
        if not store.read_only:
            pytest.skip("this process can write a file chmod 444 (root)")
        with pytest.raises(ReadOnly, match="the database is read-only"):
            Intake(store).receive([_ticket("y")], actor="t")
    finally:
        store.close()


# -- files that are not sdesk databases -------------------------------------------------------------


def _foreign_sqlite(path: Path, user_version: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('mine')")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()


FOREIGN_COMMANDS = [("list",), ("new", "x"), ("init",), ("show", "1"), ("export",), ("audit", "verify"),
                    ("comment", "1", "hi"), ("user", "list")]


def _check_refused(folder: Path, path: Path, start: str) -> None:
    before = path.read_bytes()
    runner = CliRunner()
    for args in FOREIGN_COMMANDS:
        result = runner.invoke(app, ["--db", str(path), *args])
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == ExitCode.ERROR, (args, result.stdout)
        one_error_line(result.stderr, start)
        assert path.read_bytes() == before, args
    assert sorted(p.name for p in folder.iterdir() if p.name != "config") == [path.name]  # no -wal, -shm or half-made desk


@pytest.mark.parametrize("kind", ["empty", "text", "png", "sqlite of another program", "sqlite with a user_version"])
def test_a_file_that_is_not_an_sdesk_database_is_refused_and_left_alone(tmp_path, kind):
    path = tmp_path / "some.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am a text file\n" * 100)
    elif kind == "png":
        path.write_bytes(PNG)
    else:
        _foreign_sqlite(path, 3 if "user_version" in kind else 0)
    _check_refused(tmp_path, path, f"{path} is not an sdesk database")


@settings(max_examples=examples(60), deadline=None)
@given(data=st.binary(max_size=3000), sqlite_header=st.booleans())
def test_any_bytes_that_are_not_an_sdesk_database_are_refused_and_left_alone(data, sqlite_header):
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "some.db"
        path.write_bytes(b"SQLite format 3\x00" + data if sqlite_header else data)
        # A header then garbage may be called damaged rather than foreign: refused, unchanged.
        _check_refused(folder, path, "" if sqlite_header else f"{path} is not an sdesk database")
    finally:
        shutil.rmtree(folder)


@pytest.mark.sqlite_only("an empty file at the database path")
def test_init_makes_a_desk_in_an_empty_file_only_when_asked(cli, db_path):
    db_path.write_bytes(b"")
    assert "sdesk init --empty-ok" in cli("init", ok=False).stderr
    assert cli("init", "--empty-ok").stdout.strip() == str(db_path)
    cli.new("works")
    assert len(cli.json("list")) == 1
    _foreign_sqlite(other := db_path.with_name("other.db"), 0)
    result = cli("--db", str(other), "init", "--empty-ok", ok=False)
    assert result.stderr.startswith(f"error: {other} is not an sdesk database")


def test_a_new_desk_is_never_seen_half_made(tmp_path):
    """A missing path is made beside and linked into place: no empty file at the path, no
    leftovers, the usual permissions."""
    db = tmp_path / "sub" / "desk.db"
    with Store(db) as store:
        assert store.conn.execute("PRAGMA application_id").fetchone()[0] == migrations.APPLICATION_ID
    assert sorted(p.name for p in db.parent.iterdir()) == ["desk.db"]
    umask = os.umask(0)
    os.umask(umask)
    assert db.stat().st_mode & 0o777 == 0o644 & ~umask


@pytest.mark.sqlite_only("the file header's application_id")
def test_a_desk_made_before_the_application_id_opens_and_is_stamped(cli, db_path):
    cli.new("old desk")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA application_id = 0")
    conn.commit()
    conn.close()
    assert len(cli.json("list")) == 1
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == migrations.APPLICATION_ID
    conn.close()


# -- a damaged database -------------------------------------------------------------------------------


@pytest.mark.sqlite_only("garbage written over the file's pages")
def test_a_damaged_database_refuses_writes_in_one_line(cli, db_path):
    cli("new", "--format", "jsonl", "-", input="".join(json.dumps({"title": f"ticket {i} " + "x" * 200}) + "\n"
                                                       for i in range(200)))
    cli("user", "add", "alice", "--role", "admin")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    roots = [r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master WHERE name IN ('tickets', 'events')")]
    conn.close()
    with open(db_path, "r+b") as f:  # garbage over the two tables' root pages
        for root in roots:
            f.seek((root - 1) * page)
            f.write(bytes(range(256)) * (page // 256))
    for args in [("new", "x"), ("comment", "1", "hi"), ("list",)]:
        result = cli(*args, ok=False)
        assert result.exit_code == ExitCode.ERROR, args
        one_error_line(result.stderr, "the database is damaged (database disk image is malformed)")
        assert "sdesk restore" in result.stderr
    assert "alice" in cli("user", "list").stdout  # what SQLite can still read is read


@pytest.mark.sqlite_only("the -wal file is SQLite's")
def test_a_deleted_wal_stops_serve_which_answers_503_and_exits_1(db_path):
    """The same fault under `sdesk serve`'s writer thread: the post after it is not acknowledged
    (503, senders retry), the server ends with the one line, and what it acknowledged is kept."""
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert sdesk(db_path, "init").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "sdesk", "--db", str(db_path), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # until it listens (as tests/test_serve.py waits), up to 2 minutes
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)

        def post(instance: str) -> tuple[int, dict, object]:
            body = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "Down", "instance": instance}}]})
            request = urllib.request.Request(f"http://127.0.0.1:{port}/alertmanager", data=body.encode(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=60) as r:
                    return r.status, json.loads(r.read()), r.headers
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read()), e.headers

        status, answer, _ = post("h1")
        assert status == 200
        acknowledged = answer["results"][0]["ticket"]
        os.unlink(f"{db_path}-wal")
        status, answer, headers = post("h2")
        assert status == 503 and "-wal was deleted or replaced" in answer["error"]
        assert headers["Retry-After"] == "5"  # a sender is told when to try again (the restarted server)
        assert proc.wait(timeout=120) == ExitCode.ERROR
    finally:
        proc.kill()
        proc.wait()
    one_error_line(proc.stderr.read(), f"{db_path}-wal was deleted or replaced while sdesk was writing: stopped")
    assert acknowledged in ticket_ids(db_path)


def _corrupt_a_middle_leaf_of_tickets(db_path: Path) -> None:
    """Garbage over one leaf page of the tickets table that a new ticket does not touch (new rows
    go to the last leaf): SQLite meets it only when something reads that page."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    leaves = [r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = 'tickets' AND pagetype = 'leaf' "
                                         "ORDER BY pageno")]
    conn.close()
    assert len(leaves) > 4
    with open(db_path, "r+b") as f:
        f.seek((leaves[len(leaves) // 2] - 1) * page)
        f.write(bytes(range(256)) * (page // 256))


@pytest.mark.sqlite_only("garbage written over the file's pages")
def test_doctor_finds_damage_no_command_met_and_writes_are_refused_until_a_restore(cli, db_path, tmp_path):
    # 300 tickets in one intake (not 300 commands): enough pages that a middle leaf is damaged
    cli("new", "--format", "jsonl", "-", input="".join(json.dumps({"title": f"ticket {i} " + "x" * 300}) + "\n"
                                                       for i in range(300)))
    assert cli("doctor").stdout.startswith("ok: ")
    cli("backup", str(tmp_path / "good.db"))
    _corrupt_a_middle_leaf_of_tickets(db_path)
    cli.new("still written: the damage is where this write does not look")
    result = cli("doctor", ok=False)
    assert result.exit_code == ExitCode.ERROR
    one_error_line(result.stderr, "the database is damaged (integrity check failed: ")
    assert result.stdout.strip()  # what SQLite found, on stdout
    for args in [("new", "x"), ("comment", "1", "hi"), ("user", "add", "bob", "--role", "admin")]:
        result = cli(*args, ok=False)
        assert result.exit_code == ExitCode.ERROR, args
        one_error_line(result.stderr, "the database is damaged (sdesk doctor found its integrity check failing)")
    assert cli.json("show", "1")["title"].startswith("ticket 0")  # reads still work where SQLite can
    cli("restore", str(tmp_path / "good.db"), "--yes")
    cli.new("after the restore")
    assert cli("doctor").stdout.startswith("ok: ")


def test_a_desk_behind_a_symlink_is_made_where_it_points_and_its_wal_is_watched(tmp_path):
    link = tmp_path / "link.db"
    link.symlink_to("real.db")  # dangling: the desk is made at real.db, the link left as it is
    with Store(link) as store:
        Intake(store).receive([_ticket("x")], actor="t")
        assert link.is_symlink() and (tmp_path / "real.db").is_file()
        os.unlink(tmp_path / "real.db-wal")  # SQLite's log is named after the real file
        with pytest.raises(StoreFault, match="real.db-wal was deleted or replaced"):
            Intake(store).receive([_ticket("y")], actor="t")
