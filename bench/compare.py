"""Two builds side by side in the same run: is any figure of the new one slower than the old?

    python bench/compare.py --old 9378cfa --new . --sizes 1000000 --rounds 7
    python bench/compare.py --old /path/to/old/checkout --new . --json out.json --md out.md

OLD is a git revision (checked out as a detached worktree under --work, removed at the end) or
a source folder; NEW a source folder. Every command is a whole process of this interpreter
(`python -m sdesk ...`) with PYTHONPATH=<side>, so both sides use the same Python and the same
installed dependencies and differ only in sdesk's own code.

The machine is shared: a figure means something only next to its twin measured moments apart.
So each round runs every scenario on both sides back to back (who goes first alternates by
round), the first round is a warm-up and is dropped, and the medians are compared. F (DESIGN.md:
the whole-process time of `python -c "import typer, sqlite3"`) is measured in every round too.

Each side works on its own copy of the same store (upgraded by its own `init`), so that a command
that writes (`new` adds one ticket per round: harmless) never changes what the other side reads.
The Alertmanager stream and serve write a lot: each of their rounds starts from a fresh copy of
the side's store. Stores of the sizes asked come from --stores (base10k.db, base100k.db,
base1m.db) or are built once with bench.py's builder. Nothing is written to --stores.

Prints a table (median wall time per side, new/old, each as a multiple of F, and the spread
between rounds); --json and --md write the same. Never fails on time: it reports.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# A user's shell: bytecode cached, stdout buffered; no desk settings leak in from the caller.
ENV = {k: v for k, v in os.environ.items()
       if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH") and not k.startswith("SDESK_")}
ENV["SDESK_USER"] = "bench"
NAMES = {10_000: "base10k.db", 100_000: "base100k.db", 1_000_000: "base1m.db"}
SIDES = ("old", "new")


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size % 1_000_000 == 0 else f"{size // 1000}k" if size % 1000 == 0 else str(size)


class Side:
    """One build: its source folder and, per size, its own copy of the store."""

    def __init__(self, name: str, src: Path) -> None:
        self.name, self.src, self.stores = name, src, {}

    def env(self, db: Path | None = None) -> dict:
        return {**ENV, "PYTHONPATH": str(self.src), **({"SDESK_DB": str(db)} if db else {})}

    def check(self) -> None:
        """The side's sdesk is the one imported (not an installed copy)."""
        out = subprocess.run([PY, "-c", "import sdesk; print(sdesk.__file__)"], env=self.env(), check=True,
                             capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout.strip()
        if not Path(out).resolve().is_relative_to(self.src.resolve()):
            raise SystemExit(f"error: {self.name} side imports {out}, not from {self.src}")


def run(cmd: list[str], env: dict, stdin: Path | None = None) -> dict:
    """Wall and CPU seconds of one whole process (its output read and thrown away)."""
    stdin_file = stdin.open("rb") if stdin else subprocess.DEVNULL
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=stdin_file, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=tempfile.gettempdir())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if stdin:
        stdin_file.close()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"error: {' '.join(cmd)} exited {code}: {err[-800:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "MiB": usage.ru_maxrss / 1024}


def sdesk(*args: str) -> list[str]:
    return [PY, "-m", "sdesk", *args]


def copy_store(db: Path, copy: Path) -> None:
    """A consistent copy (WAL included) flushed to disk before anything is timed (a gigabyte
    still being written back slows the next command's fsyncs)."""
    remove(copy)
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    os.sync()


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def base_store(size: int, stores: Path, work: Path, new: Side) -> Path:
    """The shared starting store of `size` tickets: a prepared one, or built once with
    bench.py's builder (NEW's code, into --work)."""
    if size in NAMES and (stores / NAMES[size]).exists():
        return stores / NAMES[size]
    path = work / f"built{size}.db"
    if not path.exists():
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import bench, pathlib; bench.STORES = pathlib.Path(sys.argv[2]);"
                " print(bench.build_store(int(sys.argv[3]), False))")
        out = subprocess.run([PY, "-c", code, str(new.src / "bench"), str(work), str(size)], env=new.env(), check=True,
                             capture_output=True, text=True).stdout.strip()
        Path(out).rename(path)
    return path


def prepare(sides: list[Side], size: int, base: Path, work: Path) -> str:
    """Each side's own copy of the base store, upgraded by its own `init`; returns the id of
    an open ticket near the top (the same on both: the copies start equal)."""
    for side in sides:
        copy = work / f"{side.name}-{label(size)}.db"
        copy_store(base, copy)
        run(sdesk("init"), side.env(copy))
        with sqlite3.connect(copy) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        side.stores[size] = copy
    os.sync()
    with sqlite3.connect(sides[0].stores[size]) as conn:
        return str(conn.execute("SELECT id FROM tickets WHERE status = 'new' ORDER BY id DESC LIMIT 1").fetchone()[0])


def post_alerts(port: int, posts: int) -> dict:
    """bench.py's measure_serve load: `posts` webhook bodies of 1 to 10 alerts each, from 8
    keep-alive connections on loopback. Returns seconds and counts."""
    rng = random.Random(5)
    bodies = [json.dumps({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Load", "instance": f"h{i % 500}-{k}"},
         "annotations": {"summary": "load"}} for k in range(rng.randint(1, 10))]}).encode() for i in range(posts)]
    answered, lost = [0], [0]
    lock = threading.Lock()

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in bodies[offset::8]:
            try:
                conn.request("POST", "/alertmanager", body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()  # counted, not retried (the post may have landed); the next one reconnects
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                ok = False
            with lock:
                answered[0] += ok
                lost[0] += not ok

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - started, "answered": answered[0], "lost": lost[0]}


def serve_round(side: Side, db: Path, posts: int) -> dict:
    """Start the side's real server on a fresh copy, wait until it answers, time the posts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(sdesk("serve", "--port", str(port)), env=side.env(db), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    try:
        for _ in range(1200):
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                probe.request("GET", "/healthz")
                probe.getresponse().read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"error: {side.name} serve did not answer on port {port}")
        result = post_alerts(port, posts)
    finally:
        server.terminate()
        _, _, usage = os.wait4(server.pid, 0)
        server.returncode = 0  # reaped above
    # The server's CPU (its start included): steadier than the clients' wall time on a loaded machine.
    result["cpu"] = usage.ru_utime + usage.ru_stime
    if result["lost"]:
        print(f"  {side.name} serve: {result['lost']} posts failed", file=sys.stderr)
    return result


def spread(values: list[float]) -> float:
    """(max - min) / median: how far the rounds of one figure wander."""
    return (max(values) - min(values)) / statistics.median(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="git revision or source folder of the previous build")
    parser.add_argument("--new", required=True, type=Path, help="source folder of the build under test")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--rounds", type=int, default=7, help="counted pairs of the quick commands (plus a warm-up)")
    parser.add_argument("--heavy-rounds", type=int, default=3, help="counted pairs of stream and serve (plus a warm-up)")
    parser.add_argument("--alerts", type=Path, default=Path("/work/bench-run/alerts100k.jsonl"),
                        help="Alertmanager bodies, one a line (made like bench.py's stream if missing)")
    parser.add_argument("--alert-lines", type=int, default=100_000, help="the first N lines of --alerts")
    parser.add_argument("--posts", type=int, default=3000, help="webhook posts per serve round")
    parser.add_argument("--only", nargs="+", help="scenarios to run (names as in the table, a prefix is enough)")
    parser.add_argument("--stores", type=Path, default=Path("/work/bench-run/stores"), help="prepared stores (read only)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench20"), help="copies and the old worktree")
    parser.add_argument("--keep", action="store_true", help="keep the copies in --work")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--md", type=Path, help="write the table here, as Markdown")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    worktree = None
    if Path(args.old).is_dir():
        old_src = Path(args.old).resolve()
    else:
        commit = subprocess.run(["git", "-C", str(args.new), "rev-parse", "--verify", args.old + "^{commit}"],
                                check=True, capture_output=True, text=True).stdout.strip()
        worktree = old_src = args.work / f"old-{commit[:9]}"
        if not worktree.exists():
            subprocess.run(["git", "-C", str(args.new), "worktree", "add", "--detach", str(worktree), commit], check=True,
                           stdout=subprocess.DEVNULL)
    sides = [Side("old", old_src), Side("new", args.new.resolve())]
    for side in sides:
        side.check()
    describe = {s.name: subprocess.run(["git", "-C", str(s.src), "log", "-1", "--format=%h %s"], capture_output=True,
                                       text=True).stdout.strip()[:100] for s in sides}

    alerts = args.work / f"alerts{args.alert_lines}.jsonl"
    with args.alerts.open() as src, alerts.open("w") as dst:
        for n, line in enumerate(src):
            if n == args.alert_lines:
                break
            dst.write(line)

    load = [os.getloadavg()]
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    samples: dict[str, dict[str, list[dict]]] = {}  # scenario -> side -> counted rounds
    floor: list[float] = []
    wanted = lambda name: not args.only or any(name.startswith(o) for o in args.only)  # noqa: E731

    def record(name: str, side: str, result: dict, counted: bool) -> None:
        if counted:
            samples.setdefault(name, {"old": [], "new": []})[side].append(result)

    for size in args.sizes:
        size_name = label(size)
        base = base_store(size, args.stores, args.work, sides[1])
        print(f"{size_name}: copying {base} for each side", file=sys.stderr)
        top = prepare(sides, size, base, args.work)
        quick = {
            f"new ({size_name})": ["new", "Disk full", "-p", "P2", "--service", "checkout", "-l", "env=prod"],
            f"list --limit 50 --json ({size_name})": ["list", "--limit", "50", "--json"],
            f"list --limit 50 ({size_name})": ["list", "--limit", "50"],
            f"show {top} --json ({size_name})": ["show", top, "--json"],
            f"report --since 30d ({size_name})": ["report", "--since", "30d"],
        }
        quick = {k: v for k, v in quick.items() if wanted(k)}
        # Quick commands: F, then every command on both sides, round after round.
        for r in range(args.rounds + 1 if quick else 0):
            floor_run = run([PY, "-c", "import typer, sqlite3"], {**ENV})
            if r:
                floor.append(floor_run["wall"])
            for name, argv in quick.items():
                for side in sides if r % 2 == 0 else sides[::-1]:
                    record(name, side.name, run(sdesk(*argv), side.env(side.stores[size])), r > 0)
            print(f"  {size_name} quick round {r}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
            load.append(os.getloadavg())
        # The stream and serve: a fresh copy of the side's store each round.
        heavy = {}
        if wanted(f"new --jsonl --format alertmanager ({size_name})"):
            heavy[f"new --jsonl --format alertmanager ({size_name})"] = "stream"
        if wanted(f"serve ({size_name})"):
            heavy[f"serve ({size_name})"] = "serve"
        scratch = args.work / "scratch.db"
        for r in range(args.heavy_rounds + 1 if heavy else 0):
            floor_run = run([PY, "-c", "import typer, sqlite3"], {**ENV})
            if r:
                floor.append(floor_run["wall"])
            for name, kind in heavy.items():
                for side in sides if r % 2 == 0 else sides[::-1]:
                    copy_store(side.stores[size], scratch)
                    if kind == "stream":
                        result = run(sdesk("new", "--jsonl", "--format", "alertmanager", str(alerts)), side.env(scratch))
                    else:
                        result = serve_round(side, scratch, args.posts)
                    remove(scratch)
                    record(name, side.name, result, r > 0)
            print(f"  {size_name} heavy round {r}/{args.heavy_rounds} done, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr)
            load.append(os.getloadavg())
        if not args.keep:
            for side in sides:
                remove(side.stores.pop(size))

    f = statistics.median(floor)
    rows = []
    for name, by_side in samples.items():
        row = {"scenario": name, "rounds": len(by_side["new"])}
        for side in SIDES:
            walls = [s["wall"] for s in by_side[side]]
            row[side] = {"median_s": statistics.median(walls), "xF": statistics.median(walls) / f, "spread": spread(walls),
                         "cpu_median_s": statistics.median(s["cpu"] for s in by_side[side]),
                         "cpu_spread": spread([s["cpu"] for s in by_side[side]]),
                         "walls_s": [round(w, 4) for w in walls]}
            if "answered" in by_side[side][0]:
                row[side]["posts_per_s"] = statistics.median(s["answered"] / s["wall"] for s in by_side[side])
                row[side]["lost"] = sum(s["lost"] for s in by_side[side])
        row["new/old"] = row["new"]["median_s"] / row["old"]["median_s"]
        row["new/old cpu"] = row["new"]["cpu_median_s"] / row["old"]["cpu_median_s"]
        # Paired: each round's new over the same round's old (both moments apart).
        pairs = [n["wall"] / o["wall"] for n, o in zip(by_side["new"], by_side["old"])]
        row["pair_ratios"] = [round(p, 3) for p in pairs]
        row["pair_median"] = statistics.median(pairs)
        row["worse"] = row["new/old"] > 1.05
        rows.append(row)
    result = {"started": started_at, "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "old": {"src": str(sides[0].src), "commit": describe["old"]},
              "new": {"src": str(sides[1].src), "commit": describe["new"]},
              "python": PY, "cores": os.cpu_count(), "load": [[round(x, 2) for x in avg] for avg in load],
              "F_s": f, "F_walls_s": [round(w, 4) for w in floor], "posts_per_serve_round": args.posts,
              "alert_lines": args.alert_lines, "rows": rows}

    table = markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.md:
        args.md.write_text(table)
    remove(args.work / "scratch.db")
    alerts.unlink(missing_ok=True)
    shutil.rmtree(args.work / "rejects", ignore_errors=True)  # the stream's rejects file(s), beside its input
    if worktree and not args.keep:
        subprocess.run(["git", "-C", str(args.new), "worktree", "remove", "--force", str(worktree)], check=False)


def markdown(result: dict) -> str:
    loads = [avg[0] for avg in result["load"]]
    lines = [f"OLD `{result['old']['commit']}`  ",
             f"NEW `{result['new']['commit']}`  ",
             f"{result['started']} to {result['ended']}, {result['cores']} cores, load average (1 min) "
             f"{min(loads):.1f} to {max(loads):.1f}; F = {result['F_s'] * 1000:.0f} ms "
             f"(spread {spread(result['F_walls_s']):.0%})", "",
             "| scenario | rounds | old median | new median | new/old | old xF | new xF | old spread | new spread "
             "| pairs new/old: median (min..max) | new/old CPU | CPU spread old, new |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in result["rows"]:
        o, n = r["old"], r["new"]
        flag = " **worse**" if r["worse"] else ""
        cpu = f"{r['new/old cpu']:.3f} | {o['cpu_spread']:.0%}, {n['cpu_spread']:.0%}"
        extra = f" ({o['posts_per_s']:.0f} vs {n['posts_per_s']:.0f} posts/s)" if "posts_per_s" in o else ""
        lines.append(f"| {r['scenario']}{extra} | {r['rounds']} | {o['median_s'] * 1000:.0f} ms | {n['median_s'] * 1000:.0f} ms "
                     f"| {r['new/old']:.3f}{flag} | {o['xF']:.2f} | {n['xF']:.2f} | {o['spread']:.0%} | {n['spread']:.0%} "
                     f"| {r['pair_median']:.2f} ({min(r['pair_ratios']):.2f}..{max(r['pair_ratios']):.2f}) | {cpu} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
