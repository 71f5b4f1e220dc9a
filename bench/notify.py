"""Talking back (issue 22): what notify.yaml costs a write, and how fast the outbox empties.

    python bench/notify.py --md bench/results/issue22-notify.md --json bench/results/issue22-notify.json
    python bench/notify.py --quick            # smaller counts, a minute or so

Four figures, each beside its budget (DESIGN.md's F: the whole process `python -c "import typer,
sqlite3"`, measured in the same rounds as the commands it divides):

1. enqueue: what queueing the outbox rows adds to a write that notifies, <= 1 ms a message.
   Whole processes: `sdesk new "t" --requester ...` with a config folder holding notify.yaml
   against the same folder without it (A, B and F in turn each round, who goes first
   alternating), the median difference divided by the messages one `new` queues. In-process:
   replies and comments through the store with store.notify set and with it None, in
   alternating blocks on the same desk, (with - without) / messages a write.
2. throughput: 10,000 messages queued (100 tickets x 100 replies and comments, round robin)
   delivered by `sdesk outbox send` to a local webhook receiver that answers 503 to a random
   30% of posts; messages/s (>= 200/s), and the receiver's record says whether each message
   was accepted exactly once (unique idempotency keys), signed right, and in order per ticket.
   The same messages to a receiver that always answers 200 are a reference: what failures cost.
3. latency: `sdesk serve --port 0` running (its courier thread sends the outbox), another
   process replying every ~50 ms; time from just after each reply's commit returns to the
   webhook's arrival at the receiver: p50, p95 (< 1 s), max.
4. `sdesk new` with notify.yaml present, as a multiple of F (<= 2.5 F), from the rounds of 1.

Every desk is made in a temporary folder and removed; the receiver and the server are stopped
at the end (also on an error). The receiver is a process of its own (http.server), so that
its work is not charged to the sender's interpreter. Reports; never fails on time.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from compare import ENV, PY, run, sdesk, spread  # noqa: E402

SECRET = "bench-hook-secret"  # the webhook's signing secret, in HOOK_SECRET (notify.yaml names the variable)
REQUESTER = "a@example.com"

# The desk config of the issue: an acknowledgement mailed to the requester on `created`, and
# every ticket event posted to a signed webhook. No waiting between messages (coalesce 0), no
# hourly cap in the way (per_hour at its maximum), and quick retries, so that the figures are
# the machinery's and not the limits'. The SMTP port is never contacted: mail rows are only
# queued (in 1), and the desks of 2 and 3 queue nothing for mail (their tickets are made
# before notify is switched on, and replies and comments go only to the hook).
NOTIFY_YAML = """\
desk: {{name: Bench Desk, url: http://desk.local, from: "Bench Desk <desk@example.com>"}}
channels:
  email: {{type: smtp, host: 127.0.0.1, port: 2525}}
  hook:  {{type: webhook, url: "http://127.0.0.1:{port}/hook", secret_env: HOOK_SECRET}}
limits: {{coalesce: 0, per_hour: 100000, attempts: 20, retry: 1s}}
rules:
  - {{name: acks, on: created, to: [requester], channel: email}}
  - {{name: all, on: [created, replied, commented, assigned, status_changed], channel: hook}}
"""
MARK = re.compile(r"bench-(\d+)-(\d+)")  # in each reply's text: ticket and sequence, read back by the receiver


# -- the desks ------------------------------------------------------------------------------------


def make_config(folder: Path, port: int, notify: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if notify:
        (folder / "notify.yaml").write_text(NOTIFY_YAML.format(port=port))
    return folder


def desk_env(db: Path, config: Path | None) -> dict:
    return {**ENV, "SDESK_DB": str(db), "HOOK_SECRET": SECRET, **({"SDESK_CONFIG": str(config)} if config else {})}


def init_desk(db: Path) -> None:
    run(sdesk("init"), desk_env(db, None))


def open_store(db: Path, config: Path | None):
    """The desk's store as the CLI opens it (sdesk.desk.Desk): store.notify is notify.yaml's."""
    from sdesk.desk import Desk

    os.environ["HOOK_SECRET"] = SECRET
    return Desk(str(db), "bench", config).store()


def make_tickets(store, n: int) -> list[int]:
    """`n` tickets, with notify off while they are made: the messages queued afterwards are
    exactly the replies' and comments'."""
    from sdesk.intake.service import Intake

    saved, store.notify = store.notify, None
    try:
        return [tid for tid, _ in Intake(store).intake([{"title": f"notify bench {i}", "kind": "request", "priority": "P3"}
                                                       for i in range(n)], actor="bench", source="bench")]
    finally:
        store.notify = saved


def pending(db: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())


# -- the receiver -----------------------------------------------------------------------------------


def receiver(ready, log: str, fail_rate: float, seed: int) -> None:
    """A webhook receiver (a child process): answers 503 to a random `fail_rate` of the posts
    and 200 to the rest, and writes one JSON line per post to `log` (the arrival time, the
    answer, the idempotency key, whether the signature holds, the ticket and the reply's mark).
    HTTP/1.1 with Content-Length, so the sender's keep-alive connection is kept, as a real
    receiver would."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    rng = random.Random(seed)
    lock = threading.Lock()
    out = open(log, "a", buffering=1)  # a line at a time: what is in the file is what arrived
    key = SECRET.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # http.server writes the headers and the body in two sends: with Nagle's algorithm on,
        # the body waits for the ACK of the headers, which the sender delays (~40 ms) on a
        # kept-alive connection. That is this receiver's cost, not sdesk's: off.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            at = time.time()
            with lock:
                status = 503 if rng.random() < fail_rate else 200
            stamp = self.headers.get("X-Sdesk-Timestamp", "")
            signed = "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            record = {"t": at, "status": status, "key": self.headers.get("Idempotency-Key"),
                      "signed": hmac.compare_digest(signed, self.headers.get("X-Sdesk-Signature", ""))}
            if status == 200:
                try:
                    data = json.loads(body)
                    mark = MARK.search(data.get("text") or "")
                    record.update(id=data.get("id"), event=data.get("event"), ticket=(data.get("ticket") or {}).get("id"),
                                  mark=[int(mark[1]), int(mark[2])] if mark else None)
                except ValueError:
                    record["bad_json"] = True
            answer = b'{"ok": true}' if status == 200 else b'{"error": "busy"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            with lock:
                out.write(json.dumps(record) + "\n")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ready.send(server.server_address[1])
    signal.signal(signal.SIGTERM, lambda *_: (out.flush(), os._exit(0)))
    server.serve_forever()


class Receiver:
    """The receiver process, started on a free loopback port, stopped on leaving."""

    def __init__(self, log: Path, fail_rate: float = 0.0, seed: int = 22):
        self.log = log
        log.write_text("")
        ctx = multiprocessing.get_context("fork")
        mine, theirs = ctx.Pipe()
        self.process = ctx.Process(target=receiver, args=(theirs, str(log), fail_rate, seed), daemon=True)
        self.process.start()
        if not mine.poll(10):
            self.stop()
            raise SystemExit("error: the webhook receiver did not start")
        self.port = mine.recv()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- 1 and 4: whole processes -------------------------------------------------------------------------


def measure_processes(work: Path, rounds: int) -> dict:
    """`sdesk new` with and without notify.yaml, and F, in the same rounds. Two config folders:
    the issue's (notify.yaml alone: what notify adds, nothing else loaded) and the example desk's
    (examples/desk: triage, SLA, roles, ... already read, so what notify.yaml adds to a real
    desk's `new`). Each pair shares one database, so both sides write to the same desk."""
    cases = {}
    bare_db = work / "bare.db"
    init_desk(bare_db)
    cases["bench config"] = (bare_db, make_config(work / "bare-notify", 9), make_config(work / "bare-plain", 9, notify=False))
    example_db = work / "example.db"
    init_desk(example_db)
    with_notify = work / "example-notify"
    shutil.copytree(ROOT / "examples" / "desk", with_notify)
    without = work / "example-plain"
    shutil.copytree(with_notify, without)
    (without / "notify.yaml").unlink()
    cases["examples/desk"] = (example_db, with_notify, without)

    argv = sdesk("new", "t", "--requester", REQUESTER)
    floor = [PY, "-c", "import typer, sqlite3"]
    samples: dict[str, dict[str, list[float]]] = {name: {"with": [], "without": []} for name in cases}
    cpu: dict[str, dict[str, list[float]]] = {name: {"with": [], "without": []} for name in cases}
    f_samples: list[float] = []
    queued = {}
    for name, (db, cfg, plain) in cases.items():
        before = sum(pending(db).values())
        run(argv, desk_env(db, cfg))  # warm: .pyc files, page cache; and how many messages one `new` queues
        queued[name] = sum(pending(db).values()) - before
        run(argv, desk_env(db, plain))
    for round_ in range(rounds):
        f_samples.append(run(floor, ENV)["wall"])
        for name, (db, cfg, plain) in cases.items():
            order = (("with", cfg), ("without", plain)) if round_ % 2 else (("without", plain), ("with", cfg))
            for side, folder in order:
                took = run(argv, desk_env(db, folder))
                samples[name][side].append(took["wall"])
                cpu[name][side].append(took["cpu"])
    F = statistics.median(f_samples)
    rows = []
    for name, by in samples.items():
        with_s, without_s = statistics.median(by["with"]), statistics.median(by["without"])
        # The difference of the pairs of one round, then its median: a slow moment moves both sides.
        delta = statistics.median(w - o for w, o in zip(by["with"], by["without"]))
        # CPU seconds (user + system) wander less than wall time on a shared machine: the same, in CPU.
        delta_cpu = statistics.median(w - o for w, o in zip(cpu[name]["with"], cpu[name]["without"]))
        rows.append({"config": name, "messages_per_new": queued[name], "with_ms": with_s * 1000,
                     "without_ms": without_s * 1000, "with_xF": with_s / F, "without_xF": without_s / F,
                     "delta_ms": delta * 1000, "delta_per_message_ms": delta * 1000 / max(1, queued[name]),
                     "delta_cpu_ms": delta_cpu * 1000, "delta_cpu_per_message_ms": delta_cpu * 1000 / max(1, queued[name]),
                     "with_over_F_paired": statistics.median(w / f for w, f in zip(by["with"], f_samples)),
                     "spread_with": spread(by["with"]), "spread_without": spread(by["without"]), "rounds": rounds})
    return {"F_ms": F * 1000, "F_spread": spread(f_samples), "rows": rows}


# -- 1: in-process ------------------------------------------------------------------------------------


def measure_inprocess(work: Path, writes: int, blocks: int = 20) -> dict:
    """`writes` replies and comments (half each, on 100 tickets in turn) through the store, in
    `blocks` blocks alternating store.notify on and off (one desk, so both sides see the same
    store as it grows); each side's median per-write time of its blocks."""
    db = work / "inproc.db"
    init_desk(db)
    cfg = make_config(work / "inproc-config", 9)
    store = open_store(db, cfg)
    config = store.notify
    assert config is not None, "notify.yaml did not load"
    tickets = make_tickets(store, 100)
    for notify in (config, None):  # warm: the first write with notify imports the outbox and triage modules
        store.notify = notify
        for tid in tickets[:20]:
            store.tickets.comment(ticket_id=tid, text="warm", actor="bench")
    per_block = max(1, writes // blocks)
    times: dict[str, list[float]] = {"with": [], "without": []}
    queued = 0
    n = 0
    for block in range(blocks):
        # with, without, without, with, ...: each side goes first as often as the other
        side = "with" if (block % 4) in (0, 3) else "without"
        store.notify = config if side == "with" else None
        before = sum(pending(db).values()) if side == "with" else 0
        started = time.perf_counter()
        for _ in range(per_block):
            tid = tickets[n % len(tickets)]
            if n % 2:
                store.tickets.comment(ticket_id=tid, text=f"note {n}", actor="bench")
            else:
                store.tickets.reply(ticket_id=tid, text=f"answer {n}", actor="bench")
            n += 1
        times[side].append((time.perf_counter() - started) / per_block)
        if side == "with":
            queued += sum(pending(db).values()) - before
    store.close()
    with_writes = per_block * len(times["with"])
    per_write = queued / with_writes
    with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
    return {"writes": per_block * blocks, "blocks": blocks, "messages_per_write": per_write,
            "with_us": with_s * 1e6, "without_us": without_s * 1e6,
            "delta_per_message_us": (with_s - without_s) * 1e6 / per_write,
            "spread_with": spread(times["with"]), "spread_without": spread(times["without"])}


# -- 2: throughput through a flaky receiver --------------------------------------------------------------


def measure_flaky(work: Path, tickets_n: int, per_ticket: int, fail_rate: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    db = work / "flaky.db"
    init_desk(db)
    with Receiver(work / "flaky-receiver.jsonl", fail_rate) as rx:
        cfg = make_config(work / "flaky-config", rx.port)
        store = open_store(db, cfg)
        tickets = make_tickets(store, tickets_n)
        started = time.perf_counter()
        for seq in range(per_ticket):  # round robin: ticket 1's first, ticket 2's first, ...
            for tid in tickets:
                text = f"bench-{tid}-{seq}"
                if seq % 2:
                    store.tickets.comment(ticket_id=tid, text=text, actor="bench")
                else:
                    store.tickets.reply(ticket_id=tid, text=text, actor="bench")
        queue_s = time.perf_counter() - started
        store.close()
        queued = pending(db).get("pending", 0)
        expected = tickets_n * per_ticket

        # `sdesk outbox send` until nothing is pending. One process stops when a pass sends
        # nothing (every key left is waiting out a retry's backoff): then it is run again
        # after a short pause, the pause counted in the time.
        env = desk_env(db, cfg)
        sends, walls = 0, []
        started = time.perf_counter()
        while True:
            took = timed_send(env)
            walls.append(took["wall"])
            sends += 1
            left = pending(db).get("pending", 0)
            if not left or sends >= 100 or time.perf_counter() - started > 600:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)  # the receiver's last lines
        records = rx.records()
    counts = pending(db)
    return {"messages": expected, "queued": queued, "queue_s": queue_s, "fail_rate": fail_rate,
            "sends": sends, "send_walls_s": [round(w, 3) for w in walls], "elapsed_s": elapsed,
            "messages_per_s": counts.get("delivered", 0) / elapsed, "outbox": counts,
            **check_deliveries(records, tickets, per_ticket)}


def timed_send(env: dict) -> dict:
    """One `sdesk outbox send` (its exit is 1 when some message is dead: counted, not fatal)."""
    started = time.perf_counter()
    done = subprocess.run(sdesk("outbox", "send", "--json"), env=env, capture_output=True, text=True,
                          cwd=tempfile.gettempdir())
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"error: sdesk outbox send exited {done.returncode}: {done.stderr[-800:]}")
    return {"wall": wall, **json.loads(done.stdout)}


def check_deliveries(records: list[dict], tickets: list[int], per_ticket: int) -> dict:
    """What the receiver saw: every message accepted once (by its idempotency key, which is
    the body's id), correctly signed, and each ticket's in the order it was written."""
    accepted = [r for r in records if r["status"] == 200]
    keys = [r["key"] for r in accepted]
    seen: dict[str, int] = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    by_ticket: dict[int, list[int]] = {}
    for r in accepted:
        if r.get("mark"):
            by_ticket.setdefault(r["mark"][0], []).append(r["mark"][1])
    in_order = sum(seqs == sorted(seqs) for seqs in by_ticket.values())
    complete = sum(sorted(set(by_ticket.get(t, []))) == list(range(per_ticket)) for t in tickets)
    return {"posts": len(records), "rejected_503": sum(r["status"] == 503 for r in records),
            "accepted": len(accepted), "unique_keys": len(seen), "keys_accepted_twice": sum(n > 1 for n in seen.values()),
            "key_is_body_id": sum(r.get("id") == r["key"] for r in accepted),
            "bad_signatures": sum(not r["signed"] for r in records),
            "tickets_in_order": in_order, "tickets_complete": complete, "tickets": len(tickets)}


# -- 3: latency with sdesk serve ------------------------------------------------------------------------------


def writer(db: str, config: str, tickets: list[int], events: int, spacing: float, out) -> None:
    """Another process replying: one reply every `spacing` seconds (jittered, so the replies do
    not keep step with the courier's polling), each's time just after its commit returned."""
    store = open_store(Path(db), Path(config))
    rng = random.Random(3)
    times = []
    for i in range(events):
        tid = tickets[i % len(tickets)]
        store.tickets.reply(ticket_id=tid, text=f"bench-{tid}-{i}", actor="bench")
        times.append((tid, i, time.time()))
        time.sleep(spacing * rng.uniform(0.5, 1.5))
    store.close()
    out.send(times)


def measure_latency(work: Path, events: int, spacing: float) -> dict:
    db = work / "serve.db"
    init_desk(db)
    with Receiver(work / "serve-receiver.jsonl") as rx:
        cfg = make_config(work / "serve-config", rx.port)
        store = open_store(db, cfg)
        tickets = make_tickets(store, 20)
        store.close()
        # Its stderr to a file (never a pipe left unread): the listening line, and anything the
        # courier says on the way (an "outbox: ..." error would explain a slow message).
        said = work / "serve-stderr.txt"
        with open(said, "w") as err:
            server = subprocess.Popen(sdesk("serve", "--port", "0"), env=desk_env(db, cfg), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err, cwd=tempfile.gettempdir())
        try:
            url = listening(server, said)
            ctx = multiprocessing.get_context("fork")
            mine, theirs = ctx.Pipe()
            child = ctx.Process(target=writer, args=(str(db), str(cfg), tickets, events, spacing, theirs))
            child.start()
            sent = mine.recv()
            child.join()
            deadline = time.time() + 10
            while time.time() < deadline and len([r for r in rx.records() if r["status"] == 200]) < events:
                time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        serve_said = [line for line in said.read_text().splitlines() if "listening on" not in line]
        records = rx.records()
    arrived = {tuple(r["mark"]): r["t"] for r in records if r["status"] == 200 and r.get("mark")}
    in_order = [arrived[(tid, i)] - at for tid, i, at in sent if (tid, i) in arrived]
    latencies = sorted(in_order)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"server": url, "events": events, "spacing_ms": spacing * 1000, "delivered": len(latencies),
            "p50_ms": pick(0.50), "p95_ms": pick(0.95), "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
            "min_ms": latencies[0] * 1000 if latencies else float("nan"), "outbox": pending(db),
            "serve_said": serve_said[-20:], "latencies_ms": [round(x * 1000) for x in in_order]}  # in the order of the replies


def listening(server: subprocess.Popen, said: Path, timeout: float = 30) -> str:
    """The URL `sdesk serve` says it listens on (its line on stderr once bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"listening on (http://\S+)", said.read_text())
        if match:
            return match.group(1)
        if server.poll() is not None:
            break
        time.sleep(0.05)
    server.kill()
    server.wait()
    raise SystemExit(f"error: sdesk serve did not start: {said.read_text()[-800:]}")


# -- reporting ------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(r: dict) -> str:
    p, ip, fl, lat = r["processes"], r["inprocess"], r["flaky"], r["latency"]
    F = p["F_ms"]
    lines = [f"F = {F:.0f} ms (median of {p['rows'][0]['rounds']} rounds, spread {p['F_spread']:.0%}); "
             f"load average (1 min) at the end {r['load']:.2f}; {os.cpu_count()} cores; {r['mode']} run", "",
             "| what | measured | budget | |", "|---|---:|---|---|"]
    for row in p["rows"]:
        lines.append(f"| enqueue, whole process: `sdesk new` with notify.yaml - without ({row['config']}, "
                     f"{row['messages_per_new']} message{'s' if row['messages_per_new'] != 1 else ''} a `new`) "
                     f"| {row['delta_ms']:.1f} ms a `new` (CPU {row['delta_cpu_ms']:.1f} ms), "
                     f"**{row['delta_per_message_ms']:.2f} ms a message** | <= 1 ms a message "
                     f"| {verdict(row['delta_per_message_ms'] <= 1)} |")
    lines.append(f"| enqueue, in-process: reply/comment with store.notify - without ({ip['writes']:,} writes, "
                 f"{ip['messages_per_write']:.0f} message a write) | {ip['with_us']:.0f} us vs {ip['without_us']:.0f} us "
                 f"a write, **{ip['delta_per_message_us'] / 1000:.3f} ms a message** | <= 1 ms a message "
                 f"| {verdict(ip['delta_per_message_us'] <= 1000)} |")
    exact = (fl["unique_keys"] == fl["messages"] and fl["keys_accepted_twice"] == 0
             and fl["tickets_in_order"] == fl["tickets"] == fl["tickets_complete"] and fl["bad_signatures"] == 0)
    lines.append(f"| {fl['messages']:,} messages, receiver answering 503 to {fl['fail_rate']:.0%}: "
                 f"`sdesk outbox send` x{fl['sends']} ({fl['posts']:,} posts, {fl['rejected_503']:,} answered 503) "
                 f"| **{fl['messages_per_s']:,.0f} messages/s** ({fl['elapsed_s']:.1f} s) | >= 200/s "
                 f"| {verdict(fl['messages_per_s'] >= 200)} |")
    lines.append(f"| the same: accepted exactly once, in order | {fl['unique_keys']:,} unique keys, "
                 f"{fl['keys_accepted_twice']} accepted twice, {fl['tickets_in_order']}/{fl['tickets']} tickets in order "
                 f"({fl['tickets_complete']} complete), {fl['bad_signatures']} bad signatures "
                 f"| {fl['messages']:,} once each, in order | {verdict(exact)} |")
    ok = r["healthy"]
    lines.append(f"| (reference) the same {ok['messages']:,} to a receiver that always answers 200, "
                 f"`sdesk outbox send` x{ok['sends']} | {ok['messages_per_s']:,.0f} messages/s ({ok['elapsed_s']:.1f} s), "
                 f"{ok['unique_keys']:,} unique keys | | |")
    lines.append(f"| event to delivered, `sdesk serve` on loopback ({lat['delivered']}/{lat['events']} replies "
                 f"~{lat['spacing_ms']:.0f} ms apart) | p50 {lat['p50_ms']:.0f} ms, **p95 {lat['p95_ms']:.0f} ms**, "
                 f"max {lat['max_ms']:.0f} ms | p95 < 1 s "
                 f"| {verdict(lat['p95_ms'] < 1000 and lat['delivered'] == lat['events'])} |")
    for row in p["rows"]:
        lines.append(f"| `sdesk new` with notify.yaml present ({row['config']}) | {row['with_ms']:.0f} ms, "
                     f"**{row['with_xF']:.2f} F** (paired {row['with_over_F_paired']:.2f} F; without: "
                     f"{row['without_xF']:.2f} F) | <= 2.5 F | {verdict(row['with_xF'] <= 2.5)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a minute or so)")
    parser.add_argument("--rounds", type=int, help="whole-process rounds (default 31; quick 7)")
    parser.add_argument("--writes", type=int, help="in-process writes (default 2000; quick 400)")
    parser.add_argument("--tickets", type=int, default=100, help="tickets of the throughput run")
    parser.add_argument("--per-ticket", type=int, help="messages a ticket in the throughput run (default 100; quick 10)")
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--events", type=int, help="replies of the latency run (default 200; quick 40)")
    parser.add_argument("--spacing", type=float, default=0.05, help="seconds between replies of the latency run")
    parser.add_argument("--only", nargs="+", choices=("processes", "inprocess", "flaky", "latency"))
    parser.add_argument("--work", type=Path, help="keep the desks here (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path, help="also write the figures as a Markdown table")
    args = parser.parse_args()
    q = args.quick
    rounds = args.rounds or (7 if q else 31)
    writes = args.writes or (400 if q else 2000)
    per_ticket = args.per_ticket or (10 if q else 100)
    events = args.events or (40 if q else 200)
    wanted = set(args.only or ("processes", "inprocess", "flaky", "latency"))

    work = args.work or Path(tempfile.mkdtemp(prefix="sdesk-notify-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"mode": "quick" if q else "full"}
    try:
        if "processes" in wanted:
            print(f"1, 4: sdesk new with/without notify.yaml, {rounds} rounds ...", file=sys.stderr)
            result["processes"] = measure_processes(work, rounds)
        if "inprocess" in wanted:
            print(f"1: {writes:,} writes in-process ...", file=sys.stderr)
            result["inprocess"] = measure_inprocess(work, writes)
        if "flaky" in wanted:
            print(f"2: {args.tickets * per_ticket:,} messages through a flaky receiver ...", file=sys.stderr)
            result["flaky"] = measure_flaky(work / "flaky", args.tickets, per_ticket, args.fail_rate)
            # The same messages to a receiver that always answers 200: what the failures cost.
            print(f"2: {args.tickets * per_ticket:,} messages through a healthy receiver ...", file=sys.stderr)
            result["healthy"] = measure_flaky(work / "healthy", args.tickets, per_ticket, 0.0)
        if "latency" in wanted:
            print(f"3: {events} replies with sdesk serve running ...", file=sys.stderr)
            result["latency"] = measure_latency(work, events, args.spacing)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["load"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    if len(wanted) == 4:
        table = markdown(result)
        print("\n" + table)
        if args.md:
            args.md.write_text(table)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
