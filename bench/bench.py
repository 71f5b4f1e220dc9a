"""Whole-process benchmarks of the commands the issues budget, against F.

F is the floor of any Typer CLI over SQLite here: the median wall time of
`python -c "import typer, sqlite3"` with the same interpreter, measured in the same rounds as
the commands (the machines are shared and noisy, so only ratios measured together mean much).

    python bench/bench.py                      # stores of 10k and 1M tickets
    python bench/bench.py --sizes 10000 --rounds 5

Stores are built once into bench/.stores/ (through sdesk's own intake, then most tickets are
closed with one UPDATE so that the open queue is a realistic few percent) and reused while
the schema version is unchanged; --rebuild forces it. Prints a table; never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESK = ROOT / "examples" / "desk"  # the example desk config: triage rules, intake settings
STORES = Path(__file__).resolve().parent / ".stores"
SERVICES = ["checkout-api", "billing", "search", "auth", "vpn", "mail", "payments-gw", "cdn", "db-main", "queue"]
QUEUES = ["sre", "dba", "network", "service-desk", "security"]
PY = sys.executable
# A user's shell: compiled bytecode is cached, stdout is buffered (sandboxes often set these).
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}


def fake_ticket(rng: random.Random, i: int, dup_every: int = 0) -> dict:
    service = rng.choice(SERVICES)
    fp = f"alert/{i // dup_every}" if dup_every else f"alert/{service}/{i}" if rng.random() < 0.6 else None
    return {
        "title": f"{service}: {rng.choice(['latency above SLO', '5xx rate high', 'disk 90% full', 'cert expires', 'login fails'])} #{i}",
        "description": "Synthetic ticket for the benchmark. " * rng.randint(1, 4),
        "kind": rng.choice(["incident", "incident", "request", "problem"]),
        "priority": rng.choice(["P1", "P2", "P2", "P3", "P3", "P3", "P4"]),
        "service": service,
        "queue": rng.choice(QUEUES),
        "fingerprint": fp,
        "labels": {"env": rng.choice(["prod", "staging"]), "region": rng.choice(["eu-west-1", "us-east-1"])},
        "tags": rng.sample(["customer", "pager", "infra", "security"], k=rng.randint(0, 2)),
    }


def build_store(size: int, rebuild: bool) -> Path:
    """Runs in a child process (see main): the measuring parent stays small, because a child's
    peak RSS as the kernel reports it starts from its parent's size at fork."""
    sys.path.insert(0, str(ROOT))
    from sdesk.intake.service import Intake
    from sdesk.store import Store

    STORES.mkdir(exist_ok=True)
    path = STORES / f"{size}.db"
    if _fresh(path, rebuild, "SELECT count(*) FROM tickets", size):
        return path
    _remove(path)
    rng = random.Random(size)
    started = time.perf_counter()
    with Store(path) as store:
        batch = 20_000
        for start in range(0, size, batch):
            Intake(store).intake([fake_ticket(rng, i) for i in range(start, min(size, start + batch))],
                         actor="bench", source="bench")
            print(f"\r  building {size:,}: {min(size, start + batch):,}", end="", file=sys.stderr)
        # Most history is closed: keep ~3% open, like a real desk. Closed with an event each on
        # the chain, so that `audit verify` (and import) rebuild every row from its events.
        _close_on_the_chain(store.conn, "id % 33 != 0")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.conn.execute("ANALYZE")
    print(f"\r  built {size:,} tickets in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def _close_on_the_chain(conn: sqlite3.Connection, where: str) -> None:
    """Close the tickets `where` selects at their creation time, as a `close` would: the row and
    a `status_changed` event on the hash chain (written with SQL: a million moves through the
    store would take minutes)."""
    from sdesk.storage.rows import EVENT_COLUMNS, event_hash, insert_rows, to_json

    data = to_json({"from": "new", "to": "closed", "action": "close"})
    conn.execute("BEGIN IMMEDIATE")
    prev, event_id = conn.execute("SELECT hash, id FROM events ORDER BY id DESC LIMIT 1").fetchone()
    rows = conn.execute(f"SELECT id, created_at FROM tickets WHERE {where} ORDER BY id")
    while batch := rows.fetchmany(50_000):
        events = []
        for ticket_id, at in batch:
            event_id += 1
            h = event_hash(prev, event_id, ticket_id, at, "bench", "status_changed", data)
            events.append((event_id, ticket_id, at, "bench", "status_changed", data, prev, h, None))  # no OS login: a NULL one is outside the hash
            prev = h
        insert_rows(conn, EVENT_COLUMNS, events)
    conn.execute(f"UPDATE tickets SET status = 'closed', closed_at = created_at WHERE {where}")
    conn.execute("COMMIT")


def _fresh(path: Path, rebuild: bool, check: str, size: int) -> bool:
    """Whether `path` holds a current store where `check` counts at least `size` rows."""
    from sdesk.storage import migrations

    if not path.exists() or rebuild:
        return False
    with sqlite3.connect(path) as conn:
        ok = conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        return ok and conn.execute(check).fetchone()[0] >= size


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


WORDS = ("disk full latency replica lag postgres checkout payment gateway timeout certificate expired login mfa vpn "
         "dns resolver cache redis kafka consumer queue backlog deploy rollback memory leak cpu throttling pod "
         "restart crashloop node drain network packet loss firewall rule ldap sync backup restore snapshot quota "
         "index shard elasticsearch heap gc pause tls handshake cdn purge origin error rate budget burn alert "
         "pager oncall escalation runbook").split()


def build_kb(articles: int, rebuild: bool) -> Path:
    """A knowledge base of `articles` articles through kb_sync. Words follow Zipf's law over a
    20,000-word vocabulary (as prose does), with the ops words spread between ranks 20 and
    2,000: a two-word query matches a few percent of the articles."""
    sys.path.insert(0, str(ROOT))
    from sdesk.store import Store

    path = STORES / f"kb{articles}.db"
    if _fresh(path, rebuild, "SELECT count(*) FROM kb_articles", articles):
        return path
    _remove(path)
    rng = random.Random(articles)
    vocabulary = [f"w{i}" for i in range(20_000)]
    for word in WORDS:
        vocabulary.insert(int(20 * 100 ** rng.random()), word)
    weights = [1 / (i + 1) for i in range(len(vocabulary))]
    started = time.perf_counter()
    with Store(path) as store:
        for start in range(0, articles, 10_000):
            batch = []
            for i in range(start, min(articles, start + 10_000)):
                title = " ".join(rng.choices(vocabulary, weights, k=6)).capitalize() + f" ({i})"
                body = "\n\n".join(" ".join(rng.choices(vocabulary, weights, k=40)) for _ in range(4))
                batch.append((f"a{i}", {"title": title, "body": body, "tags": rng.sample(WORDS[:20], 2), "cis": [],
                                        "owner": "bench", "review_days": 180}))
            store.kb.kb_sync(batch, actor="bench")
            print(f"\r  building kb {articles:,}: {start + len(batch):,}", end="", file=sys.stderr)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"\r  built {articles:,} articles in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def build_cmdb(cis: int, rebuild: bool) -> Path:
    """An estate of `cis` CIs in ten layers, each CI needing three of the layer below
    (3 relations per CI), through cmdb import."""
    sys.path.insert(0, str(ROOT))
    from sdesk.domain.cmdb import CI
    from sdesk.store import Store

    path = STORES / f"cmdb{cis}.db"
    if _fresh(path, rebuild, "SELECT count(*) FROM cis", cis):
        return path
    _remove(path)
    rng = random.Random(cis)
    layer = cis // 10
    estate = []
    for i in range(cis):
        below = range((i // layer + 1) * layer, (i // layer + 2) * layer)
        needs = rng.sample(below, 3) if below.stop <= cis else []
        estate.append(CI(f"ci-{i}", "service" if i < cis // 2 else "host", tier=1 + i * 4 // cis, team=f"team-{i % 50}",
                         relations={"depends_on": [f"ci-{n}" for n in needs]} if needs else {}))
    started = time.perf_counter()
    with Store(path) as store:
        store.cmdb.cmdb_import(estate, actor="bench")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.conn.execute("ANALYZE")
    print(f"  built {cis:,} CIs in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def build_enriched(size: int, rebuild: bool) -> Path:
    """The store of `size` tickets plus the example CMDB, KB and a recent change: `new` on it
    pays for enrichment, `new` on the plain store does not."""
    sys.path.insert(0, str(ROOT))
    from sdesk.domain.cmdb import parse_estate
    from sdesk.domain.kb import check_article, parse_article
    from sdesk.store import Store

    path = STORES / f"{size}-enriched.db"
    if _fresh(path, rebuild, "SELECT count(*) FROM cis", 1):
        return path
    _remove(path)
    with sqlite3.connect(STORES / f"{size}.db") as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    estate = ROOT / "examples" / "desk" / "cmdb.yaml"
    with Store(path) as store:
        store.cmdb.cmdb_import(parse_estate(estate.read_text(), "yaml", str(estate)), actor="bench")
        store.kb.kb_sync([(f.stem, check_article(parse_article(f.read_text()))) for f in sorted((ROOT / "examples" / "kb").glob("*.md"))],
                      actor="bench")
        from sdesk.domain import clock
        store.cmdb.change_add(title="Deploy checkout-api", ci="checkout-api", start=clock.now_iso(), end=None, risk="low",
                         status="completed", actor="bench")
    return path


def build_history(size: int, rebuild: bool, days: int = 730) -> Path:
    """A desk's history for the reports: `size` tickets spread over `days` up to now, each
    acknowledged and resolved at realistic delays (some reopened, escalated, reassigned, a
    tenth resolved by a runbook), with their events on the hash chain, an alert stream, pages,
    CSAT ratings and worklogs. Written with plain SQL: the intake path is measured elsewhere."""
    sys.path.insert(0, str(ROOT))
    from sdesk.domain import clock
    from sdesk.storage.rows import GENESIS, event_hash, to_json
    from sdesk.store import Store

    path = STORES / f"history{size}.db"
    if _fresh(path, rebuild, "SELECT count(*) FROM tickets", size):
        return path
    _remove(path)
    rng = random.Random(7)
    now = clock.now().timestamp()
    start = now - days * 86400
    users = [f"agent{i}" for i in range(40)]
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    started = time.perf_counter()
    with Store(path) as store:
        conn = store.conn
        conn.execute("PRAGMA synchronous = OFF")
        prev, event_id = GENESIS, 0
        batch = 50_000
        for first in range(1, size + 1, batch):
            tickets, events, runs, alerts, pages, ratings, work = [], [], [], [], [], [], []
            for i in range(first, min(size + 1, first + batch)):
                created = start + (i / size) * days * 86400
                priority = rng.choice(["P1", "P2", "P2", "P3", "P3", "P3", "P4"])
                kind = rng.choice(["incident", "incident", "request", "problem"])
                service = rng.choice(SERVICES)
                assignee = rng.choice(users)
                acked = created + rng.expovariate(1 / {"P1": 400, "P2": 1200}.get(priority, 5000))
                resolved = acked + rng.expovariate(1 / {"P1": 3000, "P2": 12000}.get(priority, 90000))
                open_now = resolved > now or rng.random() < 0.01
                reopened = int(rng.random() < 0.04)
                escalated = int(priority in ("P1", "P2") and rng.random() < 0.1)
                automated = rng.random() < 0.1
                status = "in_progress" if open_now else "closed"
                tickets.append((i, kind, f"{service}: synthetic #{i}", "Synthetic history.", status, priority,
                                rng.choice(QUEUES), service, assignee, service, "bench", "{}", "[]", iso(created),
                                iso(min(resolved, now)), iso(acked) if acked < now else None,
                                None if open_now else iso(resolved), None if open_now else iso(resolved),
                                reopened, escalated, 1))
                rows = [(i, iso(created), "bench", "created", {"title": f"{service}: synthetic #{i}", "source": "bench"})]
                if acked < now:
                    rows.append((i, iso(acked), assignee, "status_changed", {"from": "new", "to": "acknowledged",
                                                                             "action": "ack"}))
                if rng.random() < 0.05:
                    rows.append((i, iso(acked), "lead", "assigned", {"assignee": rng.choice(users),
                                                                     "previous_assignee": assignee}))
                if not open_now:
                    rows.append((i, iso(resolved), assignee, "status_changed",
                                 {"from": "acknowledged", "to": "resolved", "action": "resolve", "resolution": "fixed",
                                  **({"automated": True} if automated else {})}))
                    if automated:
                        runs.append(("restart", i, f"ci:{service}", "succeeded", "automation", "{}", iso(acked),
                                     iso(acked), iso(resolved)))
                    if rng.random() < 0.1:
                        ratings.append((i, rng.choice([5, 5, 4, 4, 4, 3, 2, 1]), None, "requester", iso(resolved)))
                for row in rows:
                    event_id += 1
                    data = to_json(row[4])
                    h = event_hash(prev, event_id, row[0], row[1], row[2], row[3], data)
                    events.append((event_id, row[0], row[1], row[2], row[3], data, prev, h))
                    prev = h
                alerts += [("alertmanager", f"fp{i % 5000}", "firing", "deduplicated", "{}", "{}",
                            iso(created + k), i) for k in range(rng.randint(0, 2))]
                if priority in ("P1", "P2") and kind == "incident":
                    pages.append((i, 1, 1, assignee, iso(created), "delivered", 1, iso(created)))
                if rng.random() < 0.2:
                    work.append((i, rng.randint(5, 120), assignee, iso(min(resolved, now)), None))
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO tickets (id, kind, title, description, status, priority, queue, team, assignee, service, "
                "source, labels, tags, created_at, updated_at, acknowledged_at, resolved_at, closed_at, reopen_count, "
                "escalation_level, occurrences) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tickets)
            conn.executemany("INSERT INTO events (id, ticket_id, at, actor, kind, data, prev_hash, hash) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", events)
            conn.executemany("INSERT INTO runbook_runs (runbook, ticket_id, lock_key, status, automated, actor, plan, "
                             "created_at, started_at, ended_at, resolved) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, 1)", runs)
            conn.executemany("INSERT INTO alerts (source, fingerprint, status, action, labels, annotations, received_at, "
                             "ticket_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", alerts)
            conn.executemany("INSERT INTO pages (ticket_id, round, level, user, due_at, status, attempts, delivered_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", pages)
            conn.executemany("INSERT INTO csat (ticket_id, score, comment, actor, at) VALUES (?, ?, ?, ?, ?)", ratings)
            conn.executemany("INSERT INTO worklog (ticket_id, minutes, actor, at, note) VALUES (?, ?, ?, ?, ?)", work)
            conn.execute("COMMIT")
            print(f"\r  building history {size:,}: {min(size, first + batch - 1):,}", end="", file=sys.stderr)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
    print(f"\r  built a history of {size:,} tickets in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return path


def build_triaged(size: int) -> Path:
    """The enriched store with a category model trained on the labelled corpus sample (when
    ../shared/corpus is there): `new` on it with the example desk config pays for enrichment,
    rules, correlation and the classifier."""
    path = STORES / f"{size}-triaged.db"
    enriched = STORES / f"{size}-enriched.db"
    if path.exists() and path.stat().st_mtime >= enriched.stat().st_mtime:
        return path
    _remove(path)
    with sqlite3.connect(enriched) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    sample = ROOT.parent / "shared" / "corpus" / "tickets" / "it_service_tickets_v3_sample_300_per_class.csv"
    if sample.exists():
        subprocess.run(sdesk("triage", "train", "--from-csv", str(sample), "--text", "Document", "--label", "Topic_group"),
                       env={**ENV, "SDESK_DB": str(path)}, check=True, stdout=subprocess.DEVNULL)
    return path


def run(cmd: list[str], env: dict, stdin: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole process."""
    stdin_file = stdin.open("rb") if stdin else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=stdin_file, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if stdin:
        stdin_file.close()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {proc.stderr.read().decode()[-500:]}")
    proc.stderr.close()
    return elapsed, usage.ru_maxrss / 1024


def sdesk(*args: str) -> list[str]:
    return [PY, "-m", "sdesk", *args]


def measure_commands(stores: dict[int, Path], rounds: int, extra: dict[tuple[int, str], tuple]) -> list[dict]:
    """Short commands on every store, interleaved with F in the same rounds, so that the
    machine's drift (it is shared) hits every figure alike and ratios stay comparable.
    `extra`: (size, name) -> (store, argv[, desk config]) for the KB, CMDB, enrichment and
    triage figures."""
    commands: dict[tuple[int, str], list[str]] = {}
    envs: dict[tuple[int, str] | int, dict] = {}
    for key, (db, argv, *config) in extra.items():
        commands[key] = sdesk(*argv)
        envs[key] = {**ENV, "SDESK_DB": str(db), "SDESK_USER": "bench", **({"SDESK_CONFIG": str(config[0])} if config else {})}
    payload = ROOT / "examples" / "demo" / "alertmanager-firing.json"
    for size, db in stores.items():
        envs[size] = {**ENV, "SDESK_DB": str(db), "SDESK_USER": "bench"}
        with sqlite3.connect(db) as conn:
            open_id = str(conn.execute("SELECT id FROM tickets WHERE status = 'new' ORDER BY id DESC LIMIT 1").fetchone()[0])
        for name, argv in {
            "new": ["new", "Bench: checkout latency above SLO", "-p", "P2", "--service", "checkout-api", "-l", "env=prod"],
            "list --limit 50": ["list", "--limit", "50"],
            "list --limit 50 --json": ["list", "--limit", "50", "--json"],
            "show": ["show", open_id],
            "show --json": ["show", open_id, "--json"],
            "new --format alertmanager < payload": ["new", "--format", "alertmanager"],
        }.items():
            commands[size, name] = sdesk(*argv)
    floor = [PY, "-c", "import typer, sqlite3"]
    times: dict[tuple[int, str], list[float]] = {key: [] for key in [(0, "F"), *commands]}
    peaks: dict[tuple[int, str], float] = {key: 0.0 for key in times}
    for key, cmd in commands.items():
        if "new" not in key[1]:
            run(cmd, envs.get(key, envs.get(key[0], ENV)))  # warm the page cache and .pyc files
    for _ in range(rounds):
        for key, cmd in [((0, "F"), floor), *commands.items()]:
            stdin = payload if key[1].endswith("< payload") else None
            wall, rss = run(cmd, envs.get(key, envs.get(key[0], ENV)), stdin)
            times[key].append(wall)
            peaks[key] = max(peaks[key], rss)
    f = statistics.median(times[0, "F"])
    rows = [{"size": 0, "command": "F (import typer, sqlite3)", "ms": f * 1000, "xF": 1.0, "MiB": peaks[0, "F"]}]
    for (size, name), walls in times.items():
        if name != "F":
            m = statistics.median(walls)
            rows.append({"size": size, "command": name, "ms": m * 1000, "xF": m / f, "MiB": peaks[size, name]})
    return rows


def _copy(db: Path, copy: Path) -> None:
    """A consistent copy (WAL included), flushed to disk before anything is timed: a gigabyte
    still being written back made the next command's fsyncs wait (serve at 1M halved)."""
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    os.sync()


def _into_copy(size: int, db: Path, name: str, args: list[str], write_input, config: Path | None = None,
               piped: bool = False, rounds: int = 3) -> dict:
    """Median of `rounds` runs of `sdesk new ARGS INPUT`, each on a fresh copy of the store
    (with a desk config, when given); `piped`: the input comes through a pipe from `cat`, as
    from a producer, instead of as a file. Returns the row for the table."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "input"
        records = write_input(source)
        env = {**ENV, "SDESK_USER": "bench", **({"SDESK_CONFIG": str(config)} if config else {})}
        walls, peak = [], 0.0
        for n in range(rounds):
            copy = Path(tmp) / f"copy{n}.db"
            _copy(db, copy)
            env["SDESK_DB"] = str(copy)
            if piped:
                wall, rss = run(["sh", "-c", 'cat "$0" | "$@"', str(source), *sdesk("new", *args)], env)
            else:
                wall, rss = run(sdesk("new", *args, str(source)), env)
            walls.append(wall)
            peak = max(peak, rss)
            for leftover in Path(tmp).glob(f"copy{n}.db*"):
                leftover.unlink()  # one copy on disk at a time
    wall = statistics.median(walls)
    return {"size": size, "command": name, "ms": wall * 1000, "rate": records / wall, "MiB": peak}


def measure_jsonl(size: int, db: Path, lines: int) -> dict:
    """Stream `lines` tickets, half of them repeats of another line's fingerprint."""
    def write(path: Path) -> int:
        rng = random.Random(7)
        with path.open("w") as f:
            for i in range(lines):
                f.write(json.dumps(fake_ticket(rng, i, dup_every=2)) + "\n")
        return lines

    return _into_copy(size, db, f"new --jsonl ({lines:,} tickets, half repeats)", ["--jsonl"], write)


def write_alert_stream(path: Path, alerts: int) -> int:
    """Alertmanager webhook bodies of one alert each, every alert sent twice (half repeats)."""
    with path.open("w") as f:
        for i in range(alerts):
            n = i // 2
            labels = {"alertname": ["HighErrorRate", "DiskFull", "Down"][n % 3], "instance": f"host-{n}:9100",
                      "severity": ["critical", "warning"][n % 2], "job": "node"}
            f.write(json.dumps({"version": "4", "status": "firing", "receiver": "sdesk", "groupKey": "{}:{}",
                                "alerts": [{"status": "firing", "labels": labels, "fingerprint": f"{n:016x}",
                                            "annotations": {"summary": f"{labels['alertname']} on host-{n}"},
                                            "startsAt": "2026-11-26T10:00:00Z",
                                            "endsAt": "0001-01-01T00:00:00Z"}]}) + "\n")
    return alerts


def measure_alertmanager_stream(size: int, db: Path, alerts: int, config: Path | None = None,
                                piped: bool = False) -> dict:
    """Alertmanager webhook bodies, one alert each, every alert sent twice (half repeats);
    with a desk config, triaged by its rules (and grouped: they share a groupKey). From a file
    (parsed by a helper per core) or `piped` (one helper)."""
    def write(path: Path) -> int:
        return write_alert_stream(path, alerts)

    name = f"new --jsonl --format alertmanager ({alerts:,} alerts{', piped' if piped else ''})"
    return _into_copy(size, db, name + (", triaged" if config else ""), ["--jsonl", "--format", "alertmanager"], write,
                      config, piped)


def measure_trust(size: int, db: Path, rounds: int = 3, export: bool = True) -> list[dict]:
    """Issue 10's commands on a copy of the store: verify the chain, back up, export and import
    (export only for stores small enough to write a whole JSON copy of in a bench run)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        _copy(db, copy)
        env = {**ENV, "SDESK_DB": str(copy), "SDESK_USER": "bench"}
        steps = {"audit verify --json": lambda n: sdesk("audit", "verify", "--json"),
                 "backup FILE": lambda n: sdesk("backup", str(Path(tmp) / f"b{n}.db")),
                 "purge --older-than 365d --dry-run": lambda n: sdesk("purge", "--older-than", "365d", "--dry-run")}
        if export:
            steps["export --jsonl --out FILE"] = lambda n: sdesk("export", "--out", str(Path(tmp) / f"e{n}.jsonl"))
            steps["import FILE (into an empty desk)"] = lambda n: sdesk(
                "--db", str(Path(tmp) / f"i{n}.db"), "import", str(Path(tmp) / f"e{n}.jsonl"))
        for name, argv in steps.items():
            walls, peak = [], 0.0
            for n in range(rounds):
                wall, rss = run(argv(n), env)
                walls.append(wall)
                peak = max(peak, rss)
                for leftover in Path(tmp).glob(f"[bi]{n}.db*"):
                    leftover.unlink()  # keep the disk use to one copy at a time
            rows.append({"size": size, "command": name, "ms": statistics.median(walls) * 1000, "MiB": peak})
    return rows


def realistic_rules(n: int) -> str:
    """`n` rules shaped like a big desk's: half keyed on an alert name, the rest on services,
    title patterns, words, thresholds and combinations."""
    lines = ["timezone: UTC", "rules:"]
    for i in range(n):
        match = [f"labels.alertname: Alert{i}", f"service: [svc{i}, svc{i}-canary]", f"title: {{regex: '^Job{i} failed'}}",
                 f"text: {{contains: 'ticket{i} '}}", f"labels.value: {{gt: {900 + i}}}",
                 f"any: [{{labels.team: team{i}}}, {{not: {{labels.env: [prod, staging, dev]}}}}]"][
            [0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5][i % 11]]
        lines += [f"  - id: r{i}", f"    match: {{{match}}}", f"    set: {{queue: q{i % 17}, tags: [t{i % 5}]}}"]
    return "\n".join(lines) + "\n"


def measure_rules(n_rules: int = 200, tickets: int = 5000) -> list[dict]:
    """Rule evaluation alone, and the whole triage decision (rules, matrix, explanation), per
    ticket, in this process (the issue budgets microseconds, below process noise)."""
    sys.path.insert(0, str(ROOT))
    from datetime import datetime, timezone

    from sdesk.triage import decide, run_rules, values_of
    from sdesk.validated import load_triage as load

    config = load(realistic_rules(n_rules), "bench-rules.yaml")
    now = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
    rng = random.Random(5)
    sample = [{"title": f"Job{rng.randrange(400)} failed on host-{i}", "priority": "P3", "service": f"svc{rng.randrange(300)}",
               "labels": {"alertname": f"Alert{rng.randrange(600)}", "value": str(rng.randrange(1000)), "env": "prod",
                          "team": f"team{rng.randrange(300)}"}, "tags": []} for i in range(tickets)]
    rows = []
    for name, one in (("rules: evaluate", lambda t: run_rules(config.rules, values_of(t, {}, {}, now, config.rules.uses))),
                      ("rules: whole decision", lambda t: decide(config, t, now=now))):
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            for t in sample:
                one(t)
            rounds.append((time.perf_counter() - started) / len(sample))
        us = statistics.median(rounds) * 1e6
        rows.append({"size": 0, "command": f"{name}, {n_rules} rules (per ticket)", "ms": us / 1000, "us": us, "MiB": 0})
    return rows


def measure_mbox(size: int, db: Path, messages: int) -> dict:
    """An mbox of ordinary support mail, new requests and replies."""
    def write(path: Path) -> int:
        with path.open("w") as f:
            for i in range(messages):
                reply = f"In-Reply-To: <m{i - 1}@example.com>\n" if i % 4 == 3 else ""
                f.write(f"From user{i % 50}@example.com Thu Nov 26 10:00:00 2026\n"
                        f"From: User {i % 50} <user{i % 50}@example.com>\nTo: desk@example.com\n"
                        f"Subject: Request {i}: cannot reach the VPN\nMessage-ID: <m{i}@example.com>\n{reply}"
                        f"Content-Type: text/plain; charset=utf-8\n\nHello,\n\nSince this morning the VPN "
                        f"drops every few minutes. Ticket {i}.\n\nThanks\n\n")
        return messages

    return _into_copy(size, db, f"new --format email ({messages:,}-message mbox)", ["--format", "email"], write)


def measure_serve(size: int, db: Path, posts: int) -> dict:
    """Webhook posts of 1 to 10 alerts each, from 8 keep-alive connections, on loopback."""
    import http.client
    import socket
    import threading

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        _copy(db, copy)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        before = sqlite3.connect(copy).execute("SELECT count(*) FROM alerts").fetchone()[0]
        server = subprocess.Popen(sdesk("--db", str(copy), "serve", "--port", str(port)), env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                    break
                except OSError:
                    time.sleep(0.05)
            rng = random.Random(5)
            bodies = [json.dumps({"version": "4", "status": "firing", "alerts": [
                {"status": "firing", "labels": {"alertname": "Load", "instance": f"h{i % 500}-{k}"},
                 "annotations": {"summary": "load"}} for k in range(rng.randint(1, 10))]}).encode()
                for i in range(posts)]
            sent, answered, lost = [0], [0], [0]
            lock = threading.Lock()

            def client(offset: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for body in bodies[offset::8]:
                    try:
                        conn.request("POST", "/alertmanager", body, {"Content-Type": "application/json"})
                        answer = conn.getresponse()
                        accounted = len(json.loads(answer.read())["results"]) if answer.status == 200 else 0
                    except (OSError, http.client.HTTPException):
                        # The server closed the connection (seen once in a slow run): counted, not
                        # retried, since the post may have landed; the next one reconnects.
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        with lock:
                            lost[0] += 1
                        continue
                    with lock:
                        sent[0] += accounted
                        answered[0] += 1

            started = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait()
        kept = sqlite3.connect(copy).execute("SELECT count(*) FROM alerts").fetchone()[0] - before
    failed = f", {lost[0]} lost connections" if lost[0] else ""
    return {"size": size, "command": f"serve: {answered[0]:,} posts answered, {sent[0]:,} alerts ({kept:,} kept){failed}",
            "ms": wall * 1000, "rate": answered[0] / wall, "unit": "posts/s", "MiB": 0}


def _disk_full_ticket(db: Path) -> str:
    """A ticket the example runbook clean-tmp applies to (made once per store)."""
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT id FROM tickets WHERE fingerprint = 'bench-disk-full'").fetchone()
    if found:
        return str(found[0])
    out = subprocess.run(sdesk("new", "Disk 95% full on db-7", "-l", "alertname=DiskFull", "-l", "instance=db-7:9100",
                               "--fingerprint", "bench-disk-full", "--json"),
                         env={**ENV, "SDESK_DB": str(db)}, check=True, capture_output=True, text=True).stdout
    return str(json.loads(out)["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--jsonl-lines", type=int, default=100_000)
    parser.add_argument("--kb-articles", type=int, default=100_000)
    parser.add_argument("--cmdb-cis", type=int, default=100_000)
    parser.add_argument("--replay-tickets", type=int, default=100_000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        for size in args.sizes:
            build_store(size, args.rebuild)
            build_enriched(size, args.rebuild)
            build_history(size, args.rebuild)
        build_kb(args.kb_articles, args.rebuild)
        build_cmdb(args.cmdb_cis, args.rebuild)
        build_store(args.replay_tickets, args.rebuild)
        return

    rows: list[dict] = []
    stores = {}
    for size in args.sizes:
        subprocess.run([PY, __file__, "--build-only", "--sizes", str(size), "--kb-articles", str(args.kb_articles),
                        "--cmdb-cis", str(args.cmdb_cis), "--replay-tickets", str(args.replay_tickets)]
                       + ["--rebuild"] * args.rebuild, check=True)
        stores[size] = STORES / f"{size}.db"
    kb, cmdb = STORES / f"kb{args.kb_articles}.db", STORES / f"cmdb{args.cmdb_cis}.db"
    mid = f"ci-{args.cmdb_cis // 2 + 7}"  # layer 5 of 10: a few hundred CIs need it
    extra = {
        (args.kb_articles, "kb search (2 words)"): (kb, ["kb", "search", "replica", "lag"]),
        (args.kb_articles, "kb search (2 words) --json"): (kb, ["kb", "search", "disk", "full", "--json"]),
        (args.cmdb_cis, "cmdb impact (layer 5 of 10)"): (cmdb, ["cmdb", "impact", mid]),
        (args.cmdb_cis, "cmdb impact --json"): (cmdb, ["cmdb", "impact", mid, "--json"]),
        (args.cmdb_cis, "cmdb impact --upstream --json (top CI)"): (cmdb, ["cmdb", "impact", "ci-7", "--upstream", "--json"]),
        (args.replay_tickets, "rules test --replay --json (example rules)"): (
            STORES / f"{args.replay_tickets}.db", ["rules", "test", "--replay", "--json"], DESK),
    }
    for size in args.sizes:
        extra[size, "new, enriched (CMDB, KB, change)"] = (
            STORES / f"{size}-enriched.db",
            ["new", "Bench: checkout latency above SLO", "-p", "P2", "--service", "checkout-api", "-l", "env=prod"])
        extra[size, "sla --at-risk --json (example policies)"] = (STORES / f"{size}.db", ["sla", "--at-risk", "--json"], DESK)
        extra[size, "oncall now --json"] = (STORES / f"{size}.db", ["oncall", "now", "--json"], DESK)
        # The warm-up run raises the backlog's pages; the rounds measure a steady minute.
        extra[size, "tick --json (steady state)"] = (STORES / f"{size}.db", ["tick", "--json"], DESK)
        extra[size, "new, triaged (CMDB, KB, rules, correlation, model)"] = (
            build_triaged(size), ["new", "Bench: payments-db connections refused", "-p", "P2", "--ci", "payments-db",
                                  "-l", "alertname=PostgresDown"], DESK)
    scratch = tempfile.mkdtemp(prefix="sdesk-bench-scratch-")
    for size in args.sizes:
        disk = _disk_full_ticket(stores[size])
        extra[size, "runbook run clean-tmp --dry-run --json"] = (
            stores[size], ["runbook", "run", "clean-tmp", "--ticket", disk, "-p", f"folder={scratch}", "--dry-run", "--json"],
            DESK)
        extra[size, "runbook runs --json"] = (stores[size], ["runbook", "runs", "--json"], DESK)
        extra[size, "user list --json"] = (stores[size], ["user", "list", "--json"])
        extra[size, "audit log --json (latest 50)"] = (stores[size], ["audit", "log", "--json"])
        history = STORES / f"history{size}.db"
        extra[size, "report (30 days of a 2-year history)"] = (history, ["report"], DESK)
        extra[size, "report --json (30 days)"] = (history, ["report", "--json"], DESK)
        extra[size, "report --json --since 800d (all of it)"] = (history, ["report", "--json", "--since", "800d"], DESK)
        extra[size, "metrics --prom (30 days)"] = (history, ["metrics", "--prom"], DESK)
    rows += measure_rules()
    rows += measure_commands(stores, args.rounds, extra)
    for size, db in stores.items():
        rows.append(measure_jsonl(size, db, args.jsonl_lines))
        rows.append(measure_alertmanager_stream(size, db, args.jsonl_lines))
        rows.append(measure_alertmanager_stream(size, db, args.jsonl_lines, piped=True))
        rows.append(measure_alertmanager_stream(size, db, args.jsonl_lines, DESK))
        rows.append(measure_mbox(size, db, 2000))
        rows.append(measure_serve(size, db, 3000))
        rows += measure_trust(size, db, export=size <= 100_000)
    new_ms = {r["size"]: r["ms"] for r in rows if r["command"] == "new"}
    print(f"{'store':>10}  {'command':<52} {'median':>9} {'x F':>6} {'peak':>8}")
    for r in rows:
        ratio = f"{r['xF']:.2f}" if "xF" in r else ""
        median = f"{r['us']:>7.1f}us" if "us" in r else f"{r['ms']:>7.0f}ms"
        extra = f"  {r['rate']:,.0f} {r.get('unit', 'records/s')}" if "rate" in r else ""
        peak = f"{r['MiB']:>5.0f}MiB" if r["MiB"] else " " * 8
        store = f"{r['size']:,}" if r["size"] else ""
        print(f"{store:>10}  {r['command']:<52} {median} {ratio:>6} {peak}{extra}")
    if len(new_ms) > 1:
        small, large = min(new_ms), max(new_ms)
        print(f"\n`new` at {large:,} / at {small:,}: {new_ms[large] / new_ms[small]:.2f}x")


if __name__ == "__main__":
    main()
