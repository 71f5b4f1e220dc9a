"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a Unix socket in
it, no TCP port, run as an unprivileged user when this process is root (initdb refuses root),
stopped at exit. `.ci/run` starts one for the PostgreSQL run of the suite (python -m tests.pg_cluster);
a test session started without one (SDESK_TEST_PG) starts its own."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def start(folder: Path | None = None, durable: bool = False) -> tuple[str, Path]:
    """Start a cluster; returns (a libpq conninfo to it as its superuser, its folder). `durable`:
    the server's own defaults (fsync, commits flushed), as a team's server runs (the benchmarks)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    folder = Path(folder or tempfile.mkdtemp(prefix="sdesk-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                              "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]), **run)
    # No TCP, the socket in the folder; no fsync (a throwaway cluster); enough connections for
    # the 50-agent test and two test workers.
    options = f"-k {folder} -c listen_addresses='' -c max_connections=200" + \
        ("" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                              "-w", "-t", "120", "start"]), **run)
    return f"host={folder} user=postgres dbname=postgres", folder


def login_as_os_user(conninfo: str) -> str:
    """`conninfo` as a superuser login named as this OS login (made if missing): a desk's users
    have their OS logins as logins, and on PostgreSQL the login an actor is held to is the
    database's, so the suite connects as a team moving its desk would give its people logins."""
    import pwd

    import psycopg
    from psycopg import sql

    login = pwd.getpwuid(os.getuid()).pw_name
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("DO $$BEGIN CREATE ROLE {} LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object "
                              "OR unique_violation THEN NULL; END$$").format(sql.Identifier(login)))
    return " ".join(f"user={login}" if part.startswith("user=") else part for part in conninfo.split())


def stop(folder: Path) -> None:
    bin_dir = binaries()
    if bin_dir is not None and (folder / "data").exists():
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(folder, ignore_errors=True)


def ctl(folder: Path, action: str) -> None:
    """pg_ctl ACTION (restart, reload, stop, start) on the cluster in `folder`, waiting for it (a
    restart keeps the options it was started with; a start gives the socket folder again)."""
    bin_dir = binaries()
    assert bin_dir is not None
    options = ["-o", f"-k {folder} -c listen_addresses='' -c fsync=off -c max_connections=200"] if action == "start" else []
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "-t", "120",
                              "-l", str(folder / "log"), *options, action]), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


if __name__ == "__main__":  # python -m tests.pg_cluster start|start-durable DIR | stop DIR
    command, where = sys.argv[1], Path(sys.argv[2])
    if command in ("start", "start-durable"):
        print(start(where, durable=command == "start-durable")[0])
    else:
        stop(where)
