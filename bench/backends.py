"""SQLite and PostgreSQL side by side in the same run: the issue 21 budgets (x F, alerts/s, s).

    python bench/backends.py --stores /path/to/stores --size 1000000 --rounds 7
    python bench/backends.py --pg "host=/tmp/pg user=postgres dbname=postgres" --only new list

The SQLite side works on a copy of --stores' base store (base1m.db), or of one built once into
--work by bench.py's builder; the
PostgreSQL side on the same desk moved there the documented way (`sdesk export --jsonl`, then
`sdesk --db postgresql://... import`), made once per size and kept in the database
bench_<size> (--fresh makes it again). Without --pg a throwaway cluster with the server's default
settings (fsync, commits flushed) is started in --work (tests/pg_cluster.py) and stopped at the
end: its database is then made each run.

Every command is a whole process (`python -m sdesk ...`), both backends back to back in each
round (who goes first alternates), the first round dropped, medians compared; F (DESIGN.md: the
whole process `python -c "import typer, sqlite3"`) is measured in each round. The stream rounds
start from a fresh copy of each side's desk (PostgreSQL: CREATE DATABASE ... TEMPLATE). The
agents scenario is 50 processes, each holding one connection, each making mixed writes
(comment, assign, ack, resolve) for a while: the p95 of single writes, at a team's pace (a write
a second per agent on average) and back to back. Reports; never fails on time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from compare import ENV, PY, base_store, copy_store, label, run, sdesk, spread  # noqa: E402

ALERTS = 100_000


def pg_url(conninfo: str, database: str) -> str:
    from urllib.parse import quote, urlencode

    params = dict(part.split("=", 1) for part in conninfo.split())
    params.pop("dbname", None)
    return f"postgresql:///{quote(database)}" + (f"?{urlencode(params)}" if params else "")


def admin(conninfo: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql)


def pg_desk(conninfo: str, base: Path, size: int, work: Path, fresh: bool) -> str:
    """The database bench_<size> holding the same desk as `base`, moved by export and import."""
    import psycopg

    name = f"bench_{label(size).lower()}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    url = pg_url(conninfo, name)
    if exists and not fresh:
        return name
    admin(conninfo, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(conninfo, f'CREATE DATABASE "{name}"')
    export = work / f"export-{label(size)}.jsonl"
    started = time.monotonic()
    with open(export, "wb") as out:
        subprocess.run(sdesk("--db", str(base), "export", "--jsonl"), env=ENV, stdout=out, check=True)
    with open(export, "rb") as lines:
        subprocess.run(sdesk("--db", url, "import", "-"), env=ENV, stdin=lines, check=True, stdout=subprocess.DEVNULL)
    print(f"moved the {label(size)} desk to PostgreSQL in {time.monotonic() - started:.0f} s", file=sys.stderr)
    export.unlink()
    admin(conninfo.replace("dbname=postgres", f"dbname={name}"), "VACUUM ANALYZE")
    return name


def alerts_file(work: Path) -> Path:
    """100k Alertmanager bodies, half of them repeats: bench.py's stream, as compare.py sends it."""
    import bench

    path = work / "alerts.jsonl"
    if not path.exists():
        bench.write_alert_stream(path, ALERTS)
    return path


def agent(url: str, ids: list[int], seconds: float, think: float, queue: multiprocessing.Queue) -> None:
    """One agent: one connection, mixed writes on its tickets for `seconds`, `think` seconds apart
    on average (exponentially: 0 is back to back); each write's time."""
    import random

    from sdesk.errors import SdeskError
    from sdesk.store import Store

    store = Store(url, create=False)
    times, errors, i = [], 0, 0
    rng = random.Random(ids[0])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if think:
            time.sleep(rng.expovariate(1 / think))
        ticket = ids[i % len(ids)]
        action = ("comment", "assign", "ack", "resolve", "reopen")[i % 5]
        started = time.perf_counter()
        try:
            if action == "comment":
                store.tickets.comment(ticket_id=ticket, text=f"note {i}", actor="bench")
            elif action == "assign":
                store.tickets.move(ticket_id=ticket, action="assign", actor="bench", assignee="alice")
            else:
                store.tickets.move(ticket_id=ticket, action=action, actor="bench")
        except SdeskError:
            errors += 1  # a move the ticket's state does not allow (another agent moved it): counted
        times.append(time.perf_counter() - started)
        i += 1
    store.close()
    queue.put((times, errors))


def agents_round(url: str, agents: int, seconds: float, think: float) -> dict:
    from sdesk.intake.service import Intake
    from sdesk.store import Store

    with Store(url) as store:
        ids = [tid for tid, _ in Intake(store).intake([{"title": f"agents {n}", "kind": "incident", "priority": "P3"}
                                                      for n in range(agents * 4)], actor="bench", source="bench")]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=agent, args=(url, ids[n * 4:(n + 1) * 4], seconds, think, queue))
               for n in range(agents)]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    times = sorted(t for ts, _ in results for t in ts)
    return {"think_s": think, "writes": len(times), "writes_per_s": len(times) / seconds, "refused_moves": sum(e for _, e in results),
            "p50_ms": times[len(times) // 2] * 1000, "p95_ms": times[int(len(times) * 0.95)] * 1000,
            "max_ms": times[-1] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", type=Path, default=ROOT / "bench" / "stores")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--stream-rounds", type=int, default=3)
    parser.add_argument("--pg", help="libpq conninfo of a server where databases may be made")
    parser.add_argument("--fresh", action="store_true", help="move the desk to PostgreSQL again")
    parser.add_argument("--only", nargs="+")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path, help="also write the figures as a Markdown table")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="sdesk-backends-"))
    work.mkdir(parents=True, exist_ok=True)
    cluster = None
    if not args.pg:
        from tests import pg_cluster

        args.pg, cluster = pg_cluster.start(work / "pg", durable=True)
    try:
        result = measure(args, work)
    finally:
        if cluster is not None:
            from tests import pg_cluster

            pg_cluster.stop(cluster)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.md:
        args.md.write_text(markdown(result))


def markdown(result: dict) -> str:
    """The figures beside the issue 21 budgets, one table."""
    F = result["F_ms"]
    lines = [f"F = {F:.0f} ms (median of the rounds), load average (1 min) at the end {result['load']:.2f}, "
             f"{os.cpu_count()} cores, {label(result['size'])} tickets", "",
             "| what | SQLite | PostgreSQL | budget (PostgreSQL) |", "|---|---:|---:|---|"]
    for row in result["rows"]:
        budget = "<= 3 s" if row["scenario"].startswith("report") else "<= 3 F"
        lines.append(f"| `{row['scenario']}` ({row['rounds']} rounds) | {row['sqlite_ms']:.0f} ms ({row['sqlite_xF']:.2f} F) "
                     f"| {row['pg_ms']:.0f} ms ({row['pg_xF']:.2f} F, spread {row['pg_spread']:.0%}) | {budget} |")
    if "stream" in result:
        lite, pg = result["stream"]["sqlite"], result["stream"]["postgresql"]
        lines.append(f"| stream, {ALERTS:,} Alertmanager alerts, half repeats | {lite['alerts_per_s']:,.0f}/s "
                     f"| {pg['alerts_per_s']:,.0f}/s | >= 20,000/s |")
    for key, what in (("agents", "a write a second each"), ("agents_back_to_back", "back to back")):
        if key in result:
            a = result[key]
            lines.append(f"| 50 agents, {what} ({a['writes']:,} writes, {a['writes_per_s']:.0f}/s) | "
                         f"| p50 {a['p50_ms']:.1f} ms, p95 {a['p95_ms']:.1f} ms, max {a['max_ms']:.0f} ms "
                         f"| p95 <= 50 ms |")
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace, work: Path) -> dict:
    base = base_store(args.size, args.stores, work, type("Side", (), {"src": ROOT, "env": lambda self: ENV})())
    lite = work / f"sqlite-{label(args.size)}.db"
    copy_store(base, lite)
    run(sdesk("init"), {**ENV, "SDESK_DB": str(lite)})
    name = pg_desk(args.pg, lite, args.size, work, args.fresh)
    urls = {"sqlite": str(lite), "postgresql": pg_url(args.pg, name)}
    with sqlite3.connect(lite) as conn:
        top = str(conn.execute("SELECT max(id) FROM tickets").fetchone()[0])
    scenarios = {
        "new": ["new", "Disk full", "-p", "P2", "--service", "checkout", "-l", "env=prod"],
        "list --json": ["list", "--limit", "50", "--json"],
        "list": ["list", "--limit", "50"],
        "show --json": ["show", top, "--json"],
        "report": ["report", "--since", "30d"],
    }
    wanted = {k: v for k, v in scenarios.items() if not args.only or any(k.startswith(o) for o in args.only)}
    samples: dict[str, dict[str, list[float]]] = {k: {"sqlite": [], "postgresql": []} for k in wanted}
    f_samples: list[float] = []
    for round_ in range(args.rounds + 1):
        f = run([PY, "-c", "import typer, sqlite3"], ENV)["wall"]
        order = ("sqlite", "postgresql") if round_ % 2 else ("postgresql", "sqlite")
        for key, argv in wanted.items():
            if key == "report" and round_ > 2:
                continue  # seconds a round: three are enough
            for backend in order:
                took = run(sdesk(*argv), {**ENV, "SDESK_DB": urls[backend]})["wall"]
                if round_:
                    samples[key][backend].append(took)
        if round_:
            f_samples.append(f)
    F = statistics.median(f_samples) if f_samples else float("nan")
    rows = []
    for key, by in samples.items():
        lite_s, pg_s = statistics.median(by["sqlite"]), statistics.median(by["postgresql"])
        rows.append({"scenario": f"{key} ({label(args.size)})", "sqlite_ms": lite_s * 1000, "pg_ms": pg_s * 1000,
                     "sqlite_xF": lite_s / F, "pg_xF": pg_s / F, "pg_spread": spread(by["postgresql"]),
                     "rounds": len(by["postgresql"])})
    out: dict = {"F_ms": F * 1000, "size": args.size, "rows": rows,
                 "load": os.getloadavg()[0]}
    if not args.only or any("stream".startswith(o) or o.startswith("stream") for o in args.only):
        out["stream"] = stream(args, work, lite, name, urls)
    if not args.only or any(o.startswith("agents") for o in args.only):
        scratch = f"bench_agents_{os.getpid()}"
        admin(args.pg, f'CREATE DATABASE "{scratch}"')
        try:
            # A team's pace (each agent a write a second on average: 50 writes/s in all, far above
            # a 50-person desk's peak), then back to back (what the server and two cores sustain).
            out["agents"] = agents_round(pg_url(args.pg, scratch), args.agents, 20.0, 1.0)
            out["agents_back_to_back"] = agents_round(pg_url(args.pg, scratch), args.agents, 10.0, 0.0)
        finally:
            admin(args.pg, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    return out


def stream(args: argparse.Namespace, work: Path, lite: Path, name: str, urls: dict) -> dict:
    """100k alerts, half repeats, piped into each backend's copy of the desk; alerts/s."""
    alerts = alerts_file(work)
    times: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    for round_ in range(args.stream_rounds):
        copy = work / "stream.db"
        copy_store(lite, copy)
        scratch = f"bench_stream_{os.getpid()}"
        admin(args.pg, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin(args.pg, f'CREATE DATABASE "{scratch}" TEMPLATE "{name}"')
        for backend, db in (("sqlite", str(copy)), ("postgresql", pg_url(args.pg, scratch))):
            took = run(sdesk("new", "--jsonl", "--format", "alertmanager", str(alerts)), {**ENV, "SDESK_DB": db})
            times[backend].append(took["wall"])
        admin(args.pg, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return {b: {"median_s": statistics.median(t), "alerts_per_s": ALERTS / statistics.median(t)} for b, t in times.items()}


if __name__ == "__main__":
    main()
