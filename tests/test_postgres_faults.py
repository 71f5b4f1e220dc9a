"""A PostgreSQL desk's faults, with real servers and processes: no server at the address, a wrong
password, a missing database, the connection ended mid-stream (pg_terminate_backend) and the
server restarted during a stream. Each gives one line on stderr and a named exit code, leaves
nothing half-written (a batch is one transaction), and running the same stream again completes
it without duplicates (dedup by fingerprint). These run on both suite runs whenever PostgreSQL's
server is installed (the conftest's pg_server), and skip saying so where it is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sdesk.errors import ExitCode
from tests import pg_cluster
from tests.conftest import pg_url

STREAM = [json.dumps({"title": f"disk full on web-{i}", "fingerprint": f"disk-web-{i}"}) for i in range(30)]


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # libpq's own settings: only ours
    return {**env, "SDESK_DB": url, **extra}


def sdesk(url: str, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdesk", *args], env=_env(url, **env), input=input,
                          capture_output=True, text=True, timeout=120)


def one_line(stderr: str, start: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: {start}"), stderr
    assert "Traceback" not in stderr
    return stderr


def _admin(conninfo: str, dbname: str | None = None):
    import psycopg

    if dbname:
        conninfo = " ".join(p for p in conninfo.split() if not p.startswith("dbname=")) + f" dbname={dbname}"
    return psycopg.connect(conninfo, autocommit=True)


def _counts(url: str) -> dict[str, int]:
    """What the desk holds, read through sdesk itself (the URL's search_path included)."""
    from sdesk.store import Store

    with Store(url) as store:
        one = lambda sql: store.conn.execute(sql).fetchone()[0]  # noqa: E731
        return {"tickets": one("SELECT count(*) FROM tickets"),
                "fingerprints": one("SELECT count(DISTINCT fingerprint) FROM tickets"),
                "created": one("SELECT count(*) FROM events WHERE kind = 'created'"),
                "unexplained": one("SELECT count(*) FROM tickets t WHERE NOT EXISTS "
                                   "(SELECT 1 FROM events e WHERE e.ticket_id = t.id AND e.kind = 'created')")}


def _verified(url: str) -> dict:
    run = sdesk(url, "audit", "verify", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] is True, report
    return report


class Stream:
    """`sdesk new --jsonl` reading a pipe a line at a time: each line is stored (its own
    transaction) and its ticket printed before the next is read."""

    def __init__(self, url: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "sdesk", "new", "--jsonl"], env=_env(url),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.printed: list[str] = []

    def send(self, line: str) -> bool:
        """Whether the line was taken and its ticket printed."""
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return False
        out = self.proc.stdout.readline()
        if out:
            self.printed.append(out.strip())
        return bool(out)

    def end(self) -> tuple[int, str]:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.printed += [line.strip() for line in self.proc.stdout.read().splitlines() if line.strip()]
        err = self.proc.stderr.read()
        return self.proc.wait(timeout=60), err


def _check_whole(url: str, printed: list[str], lines: int) -> None:
    """Every printed ticket is stored, every ticket has its created event, no fingerprint twice,
    the chain verifies."""
    counts = _counts(url)
    assert counts["unexplained"] == 0 and counts["created"] == counts["tickets"], counts
    assert counts["fingerprints"] == counts["tickets"], counts  # no duplicates
    assert len(printed) <= counts["tickets"] <= lines, (len(printed), counts)
    shown = json.loads(sdesk(url, "list", "--all", "--limit", "0", "--json").stdout)
    assert {f"SD-{t['id']}" for t in shown} >= set(printed)
    _verified(url)


def _rerun_completes(url: str, lines: list[str]) -> None:
    run = sdesk(url, "new", "--jsonl", input="".join(line + "\n" for line in lines))
    assert run.returncode == 0, run.stderr
    counts = _counts(url)
    assert counts["tickets"] == counts["fingerprints"] == counts["created"] == len(lines), counts
    _verified(url)


# -- a cluster of this module's own: password logins, and one it may restart -------------------------

@pytest.fixture(scope="module")
def own_cluster(pg_server):
    """(conninfo as the superuser, folder) of a throwaway cluster this module may restart; the
    superuser logs in over the socket by trust, every other role by a scram-sha-256 password."""
    if pg_cluster.binaries() is None:
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql): no cluster to restart")
    conninfo, folder = pg_cluster.start()
    try:
        with _admin(conninfo) as admin:
            admin.execute("SET password_encryption = 'scram-sha-256'")
            admin.execute("CREATE ROLE agent LOGIN PASSWORD 'right-horse-battery'")
            admin.execute("CREATE DATABASE desk OWNER agent")
            admin.execute("CREATE DATABASE restarted")
        hba = folder / "data" / "pg_hba.conf"
        hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n")
        pg_cluster.ctl(folder, "reload")
        yield conninfo, folder
    finally:
        pg_cluster.stop(folder)


# -- server unreachable ----------------------------------------------------------------------------

def test_no_server_at_the_address_is_one_line_and_unavailable(pg_server, tmp_path, monkeypatch):
    """A socket folder with no server in it: every command says it cannot reach the server, exits
    UNAVAILABLE, and makes nothing (no file at a path that looks like the URL)."""
    empty = Path(tempfile.mkdtemp(prefix="sdesk-nosrv-"))
    try:
        url = f"postgresql:///desk?host={empty}&user=postgres"
        monkeypatch.chdir(tmp_path)
        for args in [("new", "x"), ("list",), ("init",), ("show", "1"), ("audit", "verify")]:
            run = sdesk(url, *args)
            assert run.returncode == ExitCode.UNAVAILABLE, (args, run.stderr)
            one_line(run.stderr, f"cannot reach the PostgreSQL server ({url}): connection to server on socket "
                                 f'"{empty}/.s.PGSQL.5432" failed')
            assert run.stdout == ""
        run = sdesk(url, "new", "--jsonl", input=STREAM[0] + "\n")
        assert run.returncode == ExitCode.UNAVAILABLE and run.stdout == ""
        assert list(empty.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] in ([], ["config"])
    finally:
        empty.rmdir()


# -- a URL or TLS set-up that cannot work ---------------------------------------------------------

@pytest.mark.parametrize("option", ["sslmode=verify_full", "port=54x32", "connect_timeout=soon"])
def test_a_value_libpq_cannot_read_is_bad_input_not_unavailable(option, tmp_path):
    """A misspelt value in the URL is the command's mistake (exit 2), not a server to wait for."""
    url = f"postgresql:///desk?host={tmp_path}&{option}"
    run = sdesk(url, "list")
    assert run.returncode == ExitCode.BAD_INPUT, run.stderr
    one_line(run.stderr, f"cannot read the PostgreSQL URL {url}: ")
    assert option.split("=")[1] in run.stderr  # the value it could not read


@pytest.fixture
def answering():
    """A loopback TCP listener that answers libpq's TLS request with one byte ('S': go ahead, 'N':
    no TLS here) and then holds the connection: a server whose certificate libpq must check."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    answer = [b"N"]
    held = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(8)  # the SSLRequest
            conn.sendall(answer[0])
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], answer
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("reply, extra, words", [
    (b"N", "", "server does not support SSL, but SSL was required"),
    (b"S", "&sslrootcert={tmp}/no-such-root.crt", "root certificate file"),
])
def test_a_server_whose_certificate_cannot_be_checked_is_refused_not_unavailable(answering, tmp_path, reply, extra,
                                                                                  words):
    """sslmode=verify-full against a server without TLS, or with no CA to check its certificate
    against: exit PERMISSION with the reason and where the CA goes, never "is the server running"."""
    port, answer = answering
    answer[0] = reply
    url = (f"postgresql://agent@127.0.0.1:{port}/desk?sslmode=verify-full&gssencmode=disable"
           + extra.format(tmp=tmp_path))
    run = sdesk(url, "list")
    assert run.returncode == ExitCode.PERMISSION, run.stderr
    one_line(run.stderr, f"cannot verify the PostgreSQL server ({url}): ")
    assert words in run.stderr and "root.crt" in run.stderr and "is the server running" not in run.stderr


# -- wrong password --------------------------------------------------------------------------------

def test_a_wrong_or_missing_password_is_refused_in_one_line(own_cluster, tmp_path):
    conninfo, folder = own_cluster
    url = f"postgresql:///desk?host={folder}&user=agent"
    nowhere = str(tmp_path / "no-pgpass")
    for env, words in [({"PGPASSWORD": "wrong-horse"}, 'password authentication failed for user "agent"'),
                       ({"PGPASSFILE": nowhere}, "no password supplied")]:
        for args in [("init",), ("new", "x"), ("list",)]:
            run = sdesk(url, *args, **env)
            assert run.returncode == ExitCode.PERMISSION, (env, args, run.stderr)
            line = one_line(run.stderr, f"PostgreSQL refused the login ({url}): ")
            assert words in line and "~/.pgpass, PGPASSWORD or the service file" in line
            assert "wrong-horse" not in line
    with _admin(conninfo, "desk") as admin:
        assert admin.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    # The right one, from a password file: the desk is made and takes a ticket.
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{folder}:5432:desk:agent:right-horse-battery\n")
    pgpass.chmod(0o600)
    assert sdesk(url, "init", PGPASSFILE=str(pgpass)).returncode == 0
    run = sdesk(url, "new", "a ticket", "--json", PGPASSFILE=str(pgpass))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["id"] == 1


# -- database missing --------------------------------------------------------------------------------

def test_a_missing_database_is_not_found_and_is_not_made(pg_server):
    url = pg_url(pg_server, "sdesk_no_such_desk")
    for args in [("init",), ("new", "x"), ("list",)]:
        run = sdesk(url, *args)
        assert run.returncode == ExitCode.NOT_FOUND, (args, run.stderr)
        one_line(run.stderr, f'database "sdesk_no_such_desk" does not exist on the PostgreSQL server ({url}): '
                             "sdesk never makes a database on a server; an administrator makes it (createdb NAME)")
    with _admin(pg_server) as admin:
        assert admin.execute("SELECT count(*) FROM pg_database WHERE datname = 'sdesk_no_such_desk'").fetchone()[0] == 0


def test_a_nul_in_any_text_is_one_line_and_nothing_is_written(fresh_pg):
    """PostgreSQL's text cannot hold a NUL: a title, a description, a label with one is bad input,
    said in one line, and the desk is left as it was."""
    url = fresh_pg()
    assert sdesk(url, "new", "first").returncode == 0
    for ticket in [{"title": "a\x00b"}, {"title": "t", "description": "x\x00"}, {"title": "t", "labels": {"k": "v\x00"}}]:
        run = sdesk(url, "new", "-", input=json.dumps(ticket))  # (an argument cannot hold a NUL)
        assert run.returncode == ExitCode.BAD_INPUT, (ticket, run.stderr)
        assert run.stderr.count("\n") == 1 and "NUL character" in run.stderr, run.stderr
    events = sdesk(url, "show", "SD-1", "--json")
    assert events.returncode == 0 and len(json.loads(events.stdout)["events"]) == 1
    assert sdesk(url, "show", "SD-2").returncode == ExitCode.NOT_FOUND


# -- the connection ended mid-stream ----------------------------------------------------------------

def _terminate(pg_server: str, name: str) -> int:
    with _admin(pg_server) as admin:
        return len([ok for (ok,) in admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)) if ok])


def test_a_connection_ended_mid_stream_stops_it_and_a_rerun_completes_it(pg_server, fresh_pg):
    url = fresh_pg() + "&application_name=sdesk-dropped"
    assert sdesk(url, "init").returncode == 0
    stream = Stream(url)
    for i, line in enumerate(STREAM):
        if i == 20:
            assert _terminate(pg_server, "sdesk-dropped") == 1
        if not stream.send(line):
            break
    code, err = stream.end()
    assert code == ExitCode.UNAVAILABLE, err
    one_line(err, f"the PostgreSQL server ended the connection ({url}): terminating connection due to administrator "
                  "command; the write in progress, if any, was undone")
    assert stream.printed == [f"SD-{i}" for i in range(1, 21)]
    _check_whole(url, stream.printed, 20)
    _rerun_completes(url, STREAM)


@pytest.mark.slow
def test_a_connection_ended_inside_a_big_batch_keeps_whole_batches_only(pg_server, fresh_pg, tmp_path):
    """A fast stream (a file): batches of many records per transaction. The session is ended while
    the process is inside one: the batches before it are kept whole, nothing of that one."""
    from sdesk.intake import ingest

    url = fresh_pg() + "&application_name=sdesk-batch"
    assert sdesk(url, "init").returncode == 0
    lines = [json.dumps({"title": f"alert {i}", "fingerprint": f"alert-{i}"}) for i in range(5 * ingest.BATCH)]
    (tmp_path / "alerts.jsonl").write_text("".join(line + "\n" for line in lines))
    with open(tmp_path / "alerts.jsonl") as stdin, open(tmp_path / "out", "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "sdesk", "new", "--jsonl"], env=_env(url), stdin=stdin,
                                stdout=stdout, stderr=subprocess.PIPE, text=True)
        # Wait for a batch after the first to be under way (its transaction open), then end the session.
        killed = 0
        deadline = time.monotonic() + 60
        with _admin(pg_server) as admin:
            while not killed and time.monotonic() < deadline and proc.poll() is None:
                row = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'sdesk-batch' "
                                    "AND xact_start IS NOT NULL").fetchone()
                done = sum(1 for _ in open(tmp_path / "out"))
                if row and done >= ingest.BATCH:
                    killed = admin.execute("SELECT pg_terminate_backend(%s)", (row[0],)).fetchone()[0]
        err = proc.communicate(timeout=120)[1]
    if not killed:
        pytest.skip("the stream ended before its session could be caught inside a batch (a very fast machine)")
    assert proc.returncode == ExitCode.UNAVAILABLE, err
    one_line(err, f"the PostgreSQL server ended the connection ({url}): ")
    printed = (tmp_path / "out").read_text().split()
    counts = _counts(url)
    # Whole batches only: a batch's tickets are printed once its transaction is committed, so what
    # is stored is exactly what was printed (at least the first batch, not the one it was inside).
    assert ingest.BATCH <= counts["tickets"] == len(printed) < len(lines), (counts, len(printed))
    _check_whole(url, printed, len(lines))
    _rerun_completes(url, lines)


# -- the server restarted during a stream ------------------------------------------------------------

def test_the_server_restarted_during_a_stream_stops_it_and_a_rerun_completes_it(own_cluster):
    conninfo, folder = own_cluster
    url = f"postgresql:///restarted?host={folder}&user=postgres"
    assert sdesk(url, "init").returncode == 0
    stream = Stream(url)
    for i, line in enumerate(STREAM):
        if i == 10:
            pg_cluster.ctl(folder, "restart")
        if not stream.send(line):
            break
    code, err = stream.end()
    assert code == ExitCode.UNAVAILABLE, err
    one_line(err, f"the PostgreSQL server ended the connection ({url}): ")
    assert stream.printed == [f"SD-{i}" for i in range(1, 11)]
    _check_whole(url, stream.printed, 10)
    # While it is down: one line, the same exit code, and nothing is changed.
    pg_cluster.ctl(folder, "stop")
    try:
        run = sdesk(url, "new", "--jsonl", input="".join(line + "\n" for line in STREAM))
        assert run.returncode == ExitCode.UNAVAILABLE and run.stdout == ""
        one_line(run.stderr, f"cannot reach the PostgreSQL server ({url}): ")
    finally:
        pg_cluster.ctl(folder, "start")
    _check_whole(url, stream.printed, 10)
    _rerun_completes(url, STREAM)
