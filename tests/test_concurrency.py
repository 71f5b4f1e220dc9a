"""Processes writing one database all at once: nothing is lost, the chain holds."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import POSTGRES

from sdesk.store import Store

WORKER = """
import sys
from sdesk.cli import app
worker = sys.argv[1]
for i in range(200):
    try:
        app(["new", f"worker {worker} ticket {i}", "--fingerprint", f"{worker}-{i % 150}"])
    except SystemExit as e:
        if e.code:
            sys.exit(f"worker {worker} ticket {i}: exit {e.code}")
"""


@pytest.mark.slow
def test_four_writers_lose_nothing_and_keep_the_chain(db_path):
    """Each iteration is a whole `sdesk new` (parse, open the store, migrate if needed, one
    transaction), run in-process so that 800 invocations fit in a test; the processes are real."""
    env = {**os.environ, "SDESK_DB": str(db_path)}
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(w)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert not any("error" in e for e in errors), errors
    if not POSTGRES:  # each first open built a desk beside the path; one was linked into place, none is left over
        assert {p.name for p in db_path.parent.iterdir()} <= {"desk.db", "desk.db-wal", "desk.db-shm", "config"}
    store = Store(db_path)
    conn = store.conn
    # 150 distinct fingerprints per worker: the last 50 of each worker's 200 are repeats.
    assert conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 600
    assert conn.execute("SELECT sum(occurrences) FROM tickets").fetchone()[0] == 800
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 800
    store.close()
    out = subprocess.run([sys.executable, "-m", "sdesk", "audit", "verify", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    assert '"ok": true' in out.stdout and '"events": 800' in out.stdout
    assert time.monotonic() - start < 300


UPDATER = """
import sys
from sdesk.cli import app
worker, ticket = sys.argv[1], sys.argv[2]
for i in range(20):
    try:
        app(["update", ticket, "--label", f"w{worker}-{i}=x", "--tag", f"t{worker}-{i}"])
    except SystemExit as e:
        if e.code:
            sys.exit(f"worker {worker} update {i}: exit {e.code}")
"""


def test_concurrent_updates_keep_every_label_and_tag(db_path):
    """Four processes each run `sdesk update -l ... -t ...` 20 times on one ticket, all at once,
    each adding its own label and tag: every one of the 80 labels and 80 tags is there after
    (the merge happens inside the write transaction, so no update overwrites another's)."""
    env = {**os.environ, "SDESK_DB": str(db_path)}
    run = subprocess.run([sys.executable, "-m", "sdesk", "new", "shared ticket", "-l", "keep=1", "-t", "drop",
                          "--json"], env=env, capture_output=True, text=True, check=True)
    ticket = str(json.loads(run.stdout)["id"])
    procs = [subprocess.Popen([sys.executable, "-c", UPDATER, str(w), ticket], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for w in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    # and a removal is an edit too: it drops its own label and tag, nobody else's
    subprocess.run([sys.executable, "-m", "sdesk", "update", ticket, "-l", "w0-0=", "-t", "-drop"], env=env,
                   capture_output=True, check=True)
    shown = json.loads(subprocess.run([sys.executable, "-m", "sdesk", "show", ticket, "--json"], env=env,
                                      capture_output=True, text=True, check=True).stdout)
    expected = {f"w{w}-{i}" for w in range(4) for i in range(20)} - {"w0-0"}
    assert set(shown["labels"]) == expected | {"keep"}
    assert set(shown["tags"]) == {f"t{w}-{i}" for w in range(4) for i in range(20)}
    out = subprocess.run([sys.executable, "-m", "sdesk", "audit", "verify", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    assert '"ok": true' in out.stdout
