"""Semantic search (issue 24) as whole processes, against F: `similar`, hybrid `kb search` (cold
and warm) beside words-only, `index` throughput, `new` with and without the extra, `problem
suggest`, and the install size the extra adds.

    .venv/bin/python bench/semantic_bench.py --json bench/results/issue24-semantic.json \\
        --md bench/results/issue24-semantic.md
    .venv/bin/python bench/semantic_bench.py --tickets 20000 --articles 20000 --runs 5   # a quick look

F (DESIGN.md) is the whole process `python -c "import typer, sqlite3"` with the same interpreter,
measured in every round beside the commands it divides. Every command is a whole process (the
venv's `sdesk` script, as a user types it), bytecode cached (PYTHONDONTWRITEBYTECODE unset), its
output read and thrown away; a round runs every command once, in an order that rotates by round;
the first round is a warm-up and is dropped; figures are medians. "paired x F" is the median of
each round's command / that round's F.

The budgets (issue 24 and DESIGN.md):

| `sdesk similar SD-n --json`, 100k indexed tickets, model load included | <= 1 s |
| hybrid `sdesk kb search QUERY`, 100k indexed articles | <= 1 s cold, <= 3 F warm |
| `sdesk index`, 100k tickets from scratch | >= 2,000 tickets/s |
| `sdesk new TITLE` with the extra installed, 100k tickets | unchanged (paired with a venv without it), <= 2.5 F |

The ticket desk: `--tickets` tickets over the last 360 days (through the store's intake, in
batches of 100 with the clock set to each batch's time), made of templates (on-call incidents on the
example CMDB's CIs: disk, replica lag, 5xx, latency, PSP timeouts, certificates, VPN, Kubernetes,
Kafka, Redis, DNS, backups, mail, log-in) and of the corpus's service-desk tickets (their text as
the description under a templated title: hardware, access, admin rights, purchases, HR, storage,
projects, other). About 60% incidents (so some 5,000 in the last 30 days at 100k), ~10% open (60%
of the last 30 days' tickets, 5.5% of the older ones), the rest resolved with a resolution text and
code (written as `resolve` and, after 14 days, `close` would: the row and its events on the hash
chain, with SQL, as bench.py closes its tickets), plus the example CMDB and KB.

The KB desk: the 7 example articles and `--articles` more, built from templates and corpus text
(150-300 words each), through kb_sync (10,000 a transaction), then one `sdesk index --json` (timed,
under an address-space cap: the machine is shared). A copy with kb_vectors emptied is the
words-only desk.

1. `sdesk similar SD-<n> --json` on the ticket desk, indexed; and on a ticket made after the index
   (`sdesk new`), which similar embeds then.
2. `sdesk kb search QUERY` (a paraphrase: it shares no word with its article) hybrid and words
   only, warm; and cold: the first run after (a) the whole page cache was dropped
   (/proc/sys/vm/drop_caches, root only) and (b) only the database file and the model files were
   evicted (posix_fadvise DONTNEED: what the budget names; the files of SDESK_CACHE, where a search
   may keep the KB's vectors, too). The very first search after `sdesk index` is reported apart.
3. `sdesk index --json` on a copy of the unindexed ticket desk, bounded by --index-timeout: its
   JSON when it finishes, else the tickets it had stored by then (the index commits every 2,000),
   with the count polled every few seconds along the way. The desk the other figures use is indexed
   by this run when it finishes; otherwise by semantic.index in-process, with the open tickets'
   neighbours (`near`, shown by `show`; nothing measured here reads it) left out.
4. `sdesk new TITLE` on copies of the indexed desk, from three venvs: without the extra (`pip
   install -e .`), with only it (`pip install -e '.[semantic]'`) and this one (every extra).
5. The size of every distribution the semantic venv has and the plain one does not.
6. `sdesk problem suggest --json` on the indexed desk.

Desks are built once into --work and reused while their recorded parameters and the schema
version match (the indexes: and the code; --rebuild forces it). `--rev REV` measures a revision's
snapshot (git archive under --work, through PYTHONPATH) instead of the checkout, which may change
during a run. Never fails on time: it reports.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The sdesk measured: this checkout, or a revision's snapshot (--rev; the children are told by this variable).
SRC = Path(os.environ.get("SEMANTIC_BENCH_SRC") or ROOT)
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(ROOT / "bench"))
from compare import ENV as _ENV  # noqa: E402
from compare import spread  # noqa: E402

ENV = dict(_ENV)  # a user's shell (compare.py): bytecode cached, no desk settings; plus PYTHONPATH with --rev

PY = sys.executable
VENV = Path(PY).parent.parent  # this interpreter's venv: every extra (the project's .venv)
CORPUS = ROOT.parent / "shared" / "corpus" / "tickets" / "it_service_tickets_v3_sample_300_per_class.csv"
DAYS = 360
INTAKE_BATCH = 100  # tickets per intake call, all created at one time
KB_BATCH = 10_000
QUERY = "didnt get the recovery mail"  # bench/semantic/kb_queries.yaml: a paraphrase of password-reset
NEW_TITLE = "Bench: disk 93% full on db-billing-2"
BUDGET_SIMILAR_S = 1.0
BUDGET_KB_COLD_S = 1.0
BUDGET_KB_XF = 3.0
BUDGET_INDEX_RATE = 2000
BUDGET_NEW_XF = 2.5
UNCHANGED = 1.05  # `new` with the extra / without, paired: "unchanged" within 5% (the rounds' noise)
FORMAT = 3  # of the desks built here: a change rebuilds them

# -- the texts ---------------------------------------------------------------------------------------------------

# On-call incidents: (key, CIs, service, titles, details, resolutions). Slots: {ci} {pct} {n} {host} {site} ...
OPS = [
    ("disk", ["db-billing-1", "db-billing-2", "db-payments-1", "db-payments-2", "search-api-1", "search-api-2",
              "search-api-3"], None,
     ["Disk {pct}% full on {ci}", "{ci}: /var filesystem almost full", "DiskFull alert on {ci} ({pct}%)",
      "No space left on device on {ci}", "Log partition filling up on {ci}", "{ci} disk usage growing {n} GB an hour"],
     ["Monitoring reports the filesystem at {pct}% and growing about {n} GB an hour.",
      "Writes started failing with ENOSPC around {time}; the service logs errors since then.",
      "Predicted to fill within {n} hours at the current rate. Largest directory is /var/log.",
      "The WAL archive directory has grown since the last backup job failed."],
     ["Rotated and compressed old logs; {n} GB freed, log rotation fixed.",
      "Removed old WAL archives after confirming the backups; archive cleanup job re-enabled.",
      "Extended the volume by {n} GB and raised the alert threshold review date.",
      "Restarted the process holding deleted files open; the space was released."]),
    ("replica", ["payments-db-replica", "db-payments-2", "db-billing-2", "billing-db"], "payments-db",
     ["Replication lag {n}s on {ci}", "{ci} replica behind primary", "Postgres replica lag alert for {ci}",
      "Reports show stale data: {ci} lagging", "Streaming replication broken on {ci}"],
     ["Replay lag reached {n} seconds; read traffic is still routed to the replica.",
      "The reporting team sees yesterday's numbers; the replica stopped applying WAL at {time}.",
      "A long-running analytics query on the replica conflicts with recovery.",
      "Network throughput between the primary and {ci} dropped to a few MB/s."],
     ["Cancelled the long-running query and set max_standby_streaming_delay; lag back to zero.",
      "Rebuilt the replica from a fresh base backup.", "Fixed the network link; replication caught up in {n} minutes.",
      "Moved the analytics workload to a dedicated replica."]),
    ("5xx", ["checkout-api", "cart-api", "web-frontend", "edge-lb"], "shop-checkout",
     ["High 5xx rate on {ci}", "{ci} returning 502 errors", "Checkout failing with HTTP 500 after deploy",
      "Error budget burn on {ci}", "Customers see an error page at checkout", "{ci}: 503 spike since {time}"],
     ["The error rate is {pct}% of requests since the deploy at {time}.",
      "Orders per minute dropped below the baseline; the pay button spins and then fails.",
      "The upstream connection pool to payments-db is exhausted.",
      "Only one pod of {ci} fails health checks; the load balancer keeps sending it traffic."],
     ["Rolled back the release; error rate back to baseline.", "Raised the connection pool and restarted {ci}.",
      "Removed the failing pod; the readiness probe fixed in the chart.", "Fixed the feature flag that broke the basket."]),
    ("latency", ["search-api", "search-es", "catalog-api", "search-api-1", "search-api-2"], "shop-browse",
     ["{ci} p99 latency above SLO", "Search is slow for customers", "Slow responses from {ci}",
      "Timeouts between web-frontend and {ci}", "{ci}: latency {n} ms at p99"],
     ["p99 latency is {n} ms against an SLO of 300 ms.", "Garbage collection pauses on the search cluster.",
      "One shard is hot after the reindex; queries on it take seconds.", "Cache hit rate fell from 90% to {pct}%."],
     ["Rebalanced the hot shard.", "Raised the heap and tuned the GC; pauses gone.",
      "Warmed the cache after the deploy; latency normal.", "Added two replicas to {ci}."]),
    ("psp", ["payment-gateway", "checkout-api", "billing"], "shop-checkout",
     ["Payment gateway timeouts", "PSP requests timing out from {ci}", "Card payments pending for minutes",
      "Payment provider slow to authorise", "{ci}: PSP latency {n} ms"],
     ["Authorisations take {n} seconds; the provider's status page shows no incident.",
      "Timeouts against the payment provider since {time}; some customers charged twice.",
      "TLS handshakes to the provider are slow."],
     ["The provider fixed an incident on their side; retries drained.", "Failed over to the secondary acquirer.",
      "Raised the client timeout and enabled idempotency keys; refunds issued for double charges."]),
    ("cert", ["cdn", "edge-lb", "waf", "auth"], None,
     ["TLS certificate for {host} expires in {n} days", "Certificate expired on {ci}", "SSL error on {host}",
      "Browsers warn about {host}'s certificate"],
     ["The certificate on {ci} expires on the {n}th; auto-renewal failed.", "Customers report a browser warning on {host}."],
     ["Renewed the certificate and fixed the ACME challenge path.", "Deployed the renewed certificate to every edge node."]),
    ("vpn", ["vpn", "vpn-gw-1"], "vpn",
     ["VPN drops every few minutes", "Cannot connect to VPN from {site}", "VPN tunnel to {site} down",
      "VPN login fails for {user}", "Slow VPN from the {site} office"],
     ["Users in {site} lose the VPN every few minutes since {time}.", "The client says the gateway did not answer.",
      "MFA prompt never arrives when connecting to the VPN."],
     ["Restarted the tunnel and fixed the MTU on the {site} link.", "Renewed the gateway's certificate.",
      "Re-enrolled the user's MFA device."]),
    ("k8s", ["k8s-prod-eu", "k8s-staging"], None,
     ["Pod {svc}-{hash} in CrashLoopBackOff", "Node {node} NotReady in {ci}", "OOMKilled containers on {ci}",
      "{ci}: pods pending, not enough CPU", "Image pull errors in {ci}"],
     ["{svc} restarts every {n} minutes; last state OOMKilled.", "The node stopped reporting at {time}.",
      "Pods pending since the last deploy: insufficient cpu."],
     ["Raised the memory limit of {svc}.", "Drained and replaced the node.", "Scaled the node pool up by {n}."]),
    ("kafka", ["kafka-prod", "orders-queue"], None,
     ["Consumer lag on {topic} growing", "orders-queue backlog above {n}", "Kafka broker down in {ci}",
      "Messages stuck in {topic}"],
     ["Lag is {n} messages and growing; orders are delayed.", "A consumer group rebalances in a loop."],
     ["Restarted the stuck consumers; lag drained in {n} minutes.", "Replaced the failed broker and reassigned partitions."]),
    ("redis", ["redis-sessions", "redis-cart", "redis-prod"], None,
     ["Redis memory at {pct}% on {ci}", "Cache evictions spiking on {ci}", "{ci} connection refused",
      "Sessions lost: users logged out"],
     ["used_memory is {pct}% of maxmemory; evictions climbing.", "Clients get connection refused since {time}."],
     ["Raised maxmemory and set TTLs on cart keys.", "Failed over to the replica; the primary rebuilt."]),
    ("dns", ["dns"], None,
     ["DNS resolution failures for {host}", "Intermittent NXDOMAIN for {host}", "Slow DNS lookups from {ci}"],
     ["{pct}% of lookups for {host} fail since {time}."],
     ["Fixed the zone's delegation.", "Restarted the resolver pods and raised their cache size."]),
    ("backup", ["db-payments-1", "db-billing-1", "billing-db", "catalog-db", "identity-db"], None,
     ["Nightly backup failed on {ci}", "Backup job for {ci} took {n} hours", "Restore test failed for {ci}"],
     ["The backup job exited with an error at {time}: the target bucket refused the upload.",
      "Backups ran over into business hours."],
     ["Fixed the bucket credentials and re-ran the backup.", "Moved the backup to incremental mode."]),
    ("mail", ["email-provider", "notifications"], None,
     ["Password reset emails not arriving", "Outbound mail delayed", "Order confirmation emails in spam",
      "Customer says the recovery mail never came"],
     ["Mails queue for {n} minutes before sending.", "The provider bounces mails to {pct}% of domains."],
     ["The provider lifted the rate limit.", "Fixed the SPF and DKIM records."]),
    ("login", ["auth", "accounts-api", "corp-sso", "identity-db"], None,
     ["Customers cannot log in", "Login fails with MFA error for {user}", "SSO login loop on {app}",
      "Account locked for {user}", "{ci}: login error rate {pct}%"],
     ["Users get an error after entering the code.", "The SSO redirect loops back to the login page."],
     ["Unlocked the account and reset the password.", "Fixed the clock skew on the auth servers.",
      "Renewed the SSO signing certificate."]),
]

# Service-desk tickets over the corpus's classes: (class, CIs or None, titles, leads, resolutions).
DESK = [
    ("Hardware", [None, None, "backoffice"],
     ["Laptop {model} not booting", "Monitor flickering at desk {n}", "Docking station not detected",
      "Keyboard replacement for {user}", "Printer on floor {n} jammed", "New laptop for {user}", "Headset broken"],
     ["Hello, the device stopped working this morning.", "Please see below.", "Hi team,"],
     ["Replaced the device.", "Sent a replacement from stock.", "Reinstalled the driver; works now."]),
    ("Access", ["corp-sso", "backoffice", "reporting"],
     ["Access to {app} for {user}", "Cannot access shared folder {share}", "Grant {user} read access to {app}",
      "Permission denied on {share}", "Remove access for {user}"],
     ["Please grant access as below.", "Hello, I need access to do my work.", "Request from the team lead:"],
     ["Access granted.", "Added the user to the group.", "Access removed as requested."]),
    ("Administrative rights", [None, "backoffice"],
     ["Local admin rights for {user}", "Install {software} on {host}", "Admin rights to install {software}",
      "Temporary admin access for {user}"],
     ["Hi, I need to install software for a project.", "Please approve admin rights."],
     ["Granted temporary admin rights for 24 hours.", "Installed the software remotely."]),
    ("Purchase", [None],
     ["Purchase order for {n} {item}", "Quote needed for {item}", "Renew license for {software}",
      "Order {item} for the {site} office"],
     ["Please raise a purchase order.", "Dear team, we need the following."],
     ["Purchase order raised and sent to the vendor.", "License renewed for one year."]),
    ("HR Support", [None, "backoffice"],
     ["Onboarding {user} starting {day}", "Offboarding {user}", "Update payroll details for {user}",
      "Holiday balance question"],
     ["Hello HR,", "Please action the following for the new starter."],
     ["Accounts and equipment ready for the start date.", "Accounts disabled and equipment collected."]),
    ("Storage", [None, "reporting"],
     ["Mailbox full for {user}", "Shared drive quota exceeded on {share}", "OneDrive sync failing for {user}",
      "Restore deleted files on {share}"],
     ["The mailbox says it is full and cannot receive mail.", "Files were deleted by mistake yesterday."],
     ["Raised the quota by {n} GB.", "Restored the files from last night's snapshot.", "Archived old mail."]),
    ("Internal Project", [None, "reporting", "k8s-staging"],
     ["Project {proj}: new environment request", "Set up repository for {proj}", "{proj} kickoff: access and tools",
      "Test environment for {proj} down"],
     ["For the {proj} project we need the following.", "Hello, as discussed in the meeting:"],
     ["Environment created.", "Repository and pipelines set up.", "Restarted the test environment."]),
    ("Miscellaneous", [None],
     ["Question about {app}", "General request from {user}", "Meeting room screen not working", "Feedback on {app}"],
     ["Hi,", "Hello team, a question:"],
     ["Answered the question.", "Fixed the room's screen input.", "Passed on to the product owner."]),
]

SLOTS = {
    "host": ["shop.example.com", "api.example.com", "login.example.com", "cdn.example.com", "admin.example.com"],
    "site": ["Manchester", "Berlin", "Lisbon", "Austin", "Pune", "Warsaw"],
    "user": [f"{a}.{b}" for a in ("anna", "ben", "chen", "dara", "eli", "femi", "gita", "hugo")
             for b in ("smith", "novak", "silva", "khan", "meyer")],
    "app": ["Salesforce", "Jira", "Confluence", "SAP", "Workday", "Tableau", "GitLab", "Zendesk"],
    "share": ["\\\\fs01\\finance", "\\\\fs01\\marketing", "\\\\fs02\\projects", "\\\\fs02\\hr"],
    "item": ["monitors", "laptops", "headsets", "docking stations", "keyboards", "licences"],
    "software": ["Visual Studio", "Python", "Tableau Desktop", "Adobe Acrobat", "Docker Desktop", "Zoom"],
    "model": ["X1 Carbon", "Latitude 7440", "MacBook Pro", "EliteBook 840"],
    "proj": ["Atlas", "Beacon", "Comet", "Delta", "Everest"],
    "svc": ["checkout-api", "cart-api", "search-api", "accounts-api", "notifications"],
    "node": [f"ip-10-0-{a}-{b}" for a in range(4) for b in (11, 42, 97)],
    "topic": ["orders", "payments", "emails", "inventory"],
    "day": ["Monday", "the 1st", "next week", "the 15th"],
}

# The paraphrased and reworded questions KB articles answer, as a desk's KB has them.
KB_TITLES = ["How to fix: {t}", "Runbook: {t}", "FAQ: {t}", "Troubleshooting {t}", "What to do when {t}", "{t} (known issue)"]


def fill(rng: random.Random, text: str, ci: str | None) -> str:
    values = {k: rng.choice(v) for k, v in SLOTS.items()}
    values.update(ci=ci or "the service", pct=rng.randint(70, 99), n=rng.randint(2, 120), hash=f"{rng.getrandbits(24):06x}",
                  time=f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} UTC")
    return text.format(**values)


class Texts:
    """Ticket and article texts: templates and the corpus's service-desk tickets."""

    def __init__(self, corpus: Path) -> None:
        self.docs: dict[str, list[str]] = {}
        with corpus.open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                self.docs.setdefault(row["Topic_group"], []).append(row["Document"])

    def ticket(self, rng: random.Random) -> dict:
        """A ticket for intake, and how it would be resolved (not stored: `resolution`, `code`)."""
        if rng.random() < 0.55:
            key, cis, service, titles, details, fixes = rng.choice(OPS)
            ci = rng.choice(cis)
            kind = "incident" if rng.random() < 0.9 else rng.choice(["problem", "change"])
            body = " ".join(fill(rng, d, ci) for d in rng.sample(details, k=min(len(details), rng.randint(1, 3))))
            if rng.random() < 0.2:  # a person's words, from the corpus, under the alert
                body += "\n\nReported by a user: " + rng.choice(self.docs["Miscellaneous"])[:600]
            labels = {"alertname": key, "env": "prod"}
        else:
            group, cis, titles, leads, fixes = rng.choice(DESK)
            ci, service, key = rng.choice(cis), None, group
            kind = "incident" if rng.random() < 0.25 else "request"
            body = fill(rng, rng.choice(leads), ci) + "\n\n" + rng.choice(self.docs[group])
            labels = {}
        return {"title": fill(rng, rng.choice(titles), ci), "description": body, "kind": kind,
                "priority": rng.choice(["P1", "P2", "P2", "P3", "P3", "P3", "P4"]), "ci": ci, "service": service,
                "queue": "sre" if labels else "service-desk", "labels": labels,
                "tags": [key.lower().replace(" ", "-")] if rng.random() < 0.5 else [],
                "resolution": fill(rng, rng.choice(fixes), ci),
                "code": rng.choice(["fixed", "fixed", "fixed", "workaround", "duplicate", "no-fault"])}

    def article(self, rng: random.Random, i: int) -> dict:
        """An article of 150-300 words: a title from a ticket title, the steps, and corpus text."""
        if rng.random() < 0.55:
            key, cis, service, titles, details, fixes = rng.choice(OPS)
            ci = rng.choice(cis)
            words, tags, group = [fill(rng, d, ci) for d in details], [key], "Miscellaneous"
            cis_of = [ci]
        else:
            group, cis, titles, leads, fixes = rng.choice(DESK)
            ci = rng.choice(cis)
            words, tags, cis_of = [fill(rng, d, ci) for d in leads], [group.lower().replace(" ", "-")], [ci] if ci else []
        title = rng.choice(KB_TITLES).format(t=fill(rng, rng.choice(titles), ci).rstrip("."))
        parts = ["## Symptoms\n\n" + " ".join(words),
                 "## Resolution\n\n" + "\n".join(f"{n + 1}. {fill(rng, f, ci)}" for n, f in enumerate(
                     rng.sample(fixes, k=min(len(fixes), rng.randint(1, 3))))),
                 "## Background\n\n" + " ".join(rng.choice(self.docs[group]) for _ in range(rng.randint(3, 6)))]
        body = "\n\n".join(parts)
        cut = rng.randint(150, 300)
        body = " ".join(body.split(" ")[:cut])
        return {"title": f"{title} ({i})", "body": body, "tags": tags, "cis": cis_of, "owner": "bench", "review_days": 180}


# -- building the desks (in child processes: the measuring parent stays small) ----------------------------------


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy (WAL included), on disk before anything is timed."""
    _remove(dst)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    os.sync()


def build_tickets(path: Path, n: int, now: str, corpus: Path) -> dict:
    from sdesk.domain import clock
    from sdesk.domain.cmdb import parse_estate
    from sdesk.domain.kb import check_article, parse_article
    from sdesk.intake.service import Intake
    from sdesk.store import Store

    _remove(path)
    texts = Texts(corpus)
    rng = random.Random(24)
    end = clock.parse(now)
    start = end - timedelta(days=DAYS)
    recent = end - timedelta(days=30)
    started = time.perf_counter()
    done = []  # (id, resolved_at, resolution, code, closed_at)
    with Store(path) as store:
        intake = Intake(store)
        for first in range(0, n, INTAKE_BATCH):
            at = start + timedelta(days=DAYS) * (first / n)
            clock.set_override(at)
            batch = [texts.ticket(rng) for _ in range(first, min(n, first + INTAKE_BATCH))]
            made = intake.intake([{k: v for k, v in t.items() if k not in ("resolution", "code")} for t in batch],
                                 actor="bench", source="bench")
            for (ticket_id, _), t in zip(made, batch):
                if rng.random() < (0.6 if at >= recent else 0.055):
                    continue  # stays open
                resolved = min(end, at + timedelta(hours=rng.expovariate(1 / 20)))
                closed = resolved + timedelta(days=3) if resolved + timedelta(days=14) < end else None
                done.append((ticket_id, clock.iso(resolved), t["resolution"], t["code"], clock.iso(closed) if closed else None))
            if first % 10_000 == 0:
                print(f"\r  tickets: {first:,}", end="", file=sys.stderr)
        clock.set_override(None)
        _resolve_on_the_chain(store.conn, done)
        estate = SRC / "examples" / "desk" / "cmdb.yaml"
        store.cmdb.cmdb_import(parse_estate(estate.read_text(), "yaml", str(estate)), actor="bench")
        store.kb.kb_sync([(f.stem, check_article(parse_article(f.read_text()))) for f in
                          sorted((SRC / "examples" / "kb").glob("*.md"))], actor="bench")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.conn.execute("ANALYZE")
    print(f"\r  built {n:,} tickets in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return ticket_counts(path, now)


def _resolve_on_the_chain(conn: sqlite3.Connection, done: list[tuple]) -> None:
    """Resolve (and close, for those resolved over 14 days ago) as `resolve` and `close` do: the
    row, and a `status_changed` event each on the hash chain (with SQL, as bench.py closes)."""
    from sdesk.storage.rows import EVENT_COLUMNS, event_hash, insert_rows, to_json

    closing = to_json({"from": "resolved", "to": "closed", "action": "close"})
    conn.execute("BEGIN IMMEDIATE")
    prev, event_id = conn.execute("SELECT hash, id FROM events ORDER BY id DESC LIMIT 1").fetchone()
    events, updates = [], []
    for ticket_id, resolved, resolution, code, closed in done:
        steps = [(resolved, to_json({"from": "new", "to": "resolved", "action": "resolve", "resolution": resolution,
                                     "code": code}))]
        if closed:
            steps.append((closed, closing))
        for at, data in steps:
            event_id += 1
            h = event_hash(prev, event_id, ticket_id, at, "bench", "status_changed", data)
            events.append((event_id, ticket_id, at, "bench", "status_changed", data, prev, h, None))
            prev = h
        updates.append(("closed" if closed else "resolved", resolved, resolution, code, closed, closed or resolved,
                        ticket_id))
        if len(events) >= 50_000:
            insert_rows(conn, EVENT_COLUMNS, events)
            events = []
    if events:
        insert_rows(conn, EVENT_COLUMNS, events)
    conn.executemany("UPDATE tickets SET status = ?, resolved_at = ?, resolution = ?, resolution_code = ?, closed_at = ?, "
                     "updated_at = ? WHERE id = ?", updates)
    conn.execute("COMMIT")


def ticket_counts(path: Path, now: str) -> dict:
    from sdesk.domain import clock

    since = clock.iso(clock.parse(now) - timedelta(days=30))
    with sqlite3.connect(path) as conn:
        one = lambda sql, *a: conn.execute(sql, a).fetchone()[0]  # noqa: E731
        return {"tickets": one("SELECT count(*) FROM tickets"),
                "open": one("SELECT count(*) FROM tickets WHERE status NOT IN ('resolved', 'closed')"),
                "incidents_last_30d": one("SELECT count(*) FROM tickets WHERE kind = 'incident' AND created_at >= ?", since),
                "incidents": one("SELECT count(*) FROM tickets WHERE kind = 'incident'"),
                "cis": one("SELECT count(DISTINCT ci) FROM tickets WHERE ci IS NOT NULL"),
                "with_ci": one("SELECT count(*) FROM tickets WHERE ci IS NOT NULL"),
                "events": one("SELECT count(*) FROM events"),
                "kb_articles": one("SELECT count(*) FROM kb_articles"),
                "span": list(conn.execute("SELECT min(created_at), max(created_at) FROM tickets").fetchone()),
                "avg_text_chars": round(one("SELECT avg(length(title) + length(coalesce(description, ''))) FROM tickets")),
                "MB": round(path.stat().st_size / 1e6)}


def build_kb(path: Path, n: int, corpus: Path) -> dict:
    """The example articles and `n` more, through kb_sync, KB_BATCH a transaction."""
    from sdesk.domain.kb import check_article, parse_article
    from sdesk.store import Store

    _remove(path)
    texts = Texts(corpus)
    rng = random.Random(1000)
    with Store(path) as store:
        store.kb.kb_sync([(f.stem, check_article(parse_article(f.read_text()))) for f in
                          sorted((SRC / "examples" / "kb").glob("*.md"))], actor="bench")
        for first in range(0, n, KB_BATCH):
            store.kb.kb_sync([(f"a{i}", texts.article(rng, i)) for i in range(first, min(n, first + KB_BATCH))],
                             actor="bench")
            print(f"\r  kb: {min(n, first + KB_BATCH):,} articles", end="", file=sys.stderr)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(file=sys.stderr)
    with sqlite3.connect(path) as c:
        words = c.execute("SELECT avg(length(body) - length(replace(body, ' ', '')) + 1) FROM kb_articles").fetchone()[0]
        return {"articles": c.execute("SELECT count(*) FROM kb_articles").fetchone()[0], "avg_words": round(words)}


def words_only(src: Path, dst: Path) -> dict:
    """A copy of the KB desk without its vectors: kb search by words alone."""
    copy_db(src, dst)
    with sqlite3.connect(dst) as c:
        c.execute("DELETE FROM kb_vectors")
    with sqlite3.connect(dst) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.sync()
    return {}


def index_in_process(path: Path) -> dict:
    """The index, as `sdesk index` builds it, but without the open tickets' neighbours (`near`):
    the bounded `sdesk index` run did not finish (see main)."""
    from sdesk.services import semantic
    from sdesk.store import Store

    if hasattr(semantic, "_near"):
        semantic._near = lambda *args, **kwargs: None
    with Store(path) as store:
        done = semantic.index(store, actor="bench")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**done, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def child(*args: str) -> dict:
    """Builders and copies run in a child: the measuring parent stays small, since a child's peak
    RSS as the kernel reports it starts from its parent's size when it was forked."""
    out = subprocess.run([PY, __file__, "--child", json.dumps(args)], env=ENV, check=True, stdout=subprocess.PIPE,
                         text=True, cwd=tempfile.gettempdir()).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_child(args: list[str]) -> None:
    what, *rest = args
    if what == "tickets":
        result = build_tickets(Path(rest[0]), int(rest[1]), rest[2], Path(rest[3]))
    elif what == "kb":
        result = build_kb(Path(rest[0]), int(rest[1]), Path(rest[2]))
    elif what == "copy":
        copy_db(Path(rest[0]), Path(rest[1]))
        result = {}
    elif what == "words":
        result = words_only(Path(rest[0]), Path(rest[1]))
    elif what == "checkpoint":
        with sqlite3.connect(rest[0]) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.sync()
        result = {}
    elif what == "index":
        result = index_in_process(Path(rest[0]))
    else:
        raise SystemExit(f"unknown child {what}")
    print(json.dumps(result))


# -- running commands -------------------------------------------------------------------------------------------------


def run(cmd: list[str], env: dict, *, keep: bool = False, timeout: float | None = None,
        limit_bytes: int | None = None, poll=None) -> dict:
    """One whole process: wall and CPU seconds and peak RSS (the kernel's accounting of the reaped
    child); its output thrown away, or kept (`keep`). `timeout`: killed (its process group) then."""
    out = tempfile.TemporaryFile() if keep else subprocess.DEVNULL
    err = tempfile.TemporaryFile()

    def limits() -> None:
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tempfile.gettempdir(),
                            start_new_session=True, preexec_fn=limits if limit_bytes else None)
    killed, samples = False, []
    if timeout is None and poll is None:
        _, status, usage = os.wait4(proc.pid, 0)
    else:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - started
            if timeout is not None and elapsed > timeout:
                os.killpg(proc.pid, signal.SIGTERM)
                killed = True
                _, status, usage = os.wait4(proc.pid, 0)
                break
            if poll is not None and (not samples or elapsed - samples[-1][0] >= 5):
                samples.append((round(elapsed, 1), poll()))
            time.sleep(0.2)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "MiB": usage.ru_maxrss / 1024,
              "code": proc.returncode, "killed": killed}
    err.seek(0)
    result["stderr"] = err.read().decode(errors="replace")[-2000:]
    err.close()
    if keep:
        out.seek(0)
        result["stdout"] = out.read().decode(errors="replace")
        out.close()
    if samples:
        result["samples"] = samples
    return result


def must(result: dict, what: str) -> dict:
    if result["code"]:
        raise SystemExit(f"error: {what} exited {result['code']}: {result['stderr'][-800:]}")
    return result


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (clean pages: after a sync)."""
    os.sync()
    for p in paths:
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def resident(paths: list[Path]) -> int | None:
    """Bytes of these files in the page cache (util-linux fincore), or None without it."""
    tool = shutil.which("fincore")
    existing = [str(p) for p in paths if p.exists()]
    if not tool or not existing:
        return None
    out = subprocess.run([tool, "--bytes", "--noheadings", "--raw", "--output", "RES", *existing], capture_output=True,
                         text=True).stdout
    return sum(int(x) for x in out.split())


def model_files() -> list[Path]:
    code = ("import importlib.util, pathlib; r = pathlib.Path(importlib.util.find_spec('wordllama').origin).parent; "
            "print(r / 'weights' / 'l2_supercat_256.safetensors'); print(r / 'tokenizers' / 'l2_supercat_tokenizer_config.json')")
    out = subprocess.run([PY, "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    return [Path(line) for line in out.split()]


def db_files(db: Path) -> list[Path]:
    return [Path(f"{db}{s}") for s in ("", "-wal", "-shm")]


# -- install size -----------------------------------------------------------------------------------------------------

SIZES = r"""
import importlib.metadata as md, json, os, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
out = {}
for d in md.distributions():
    name = d.metadata["Name"]
    tops, outside = set(), 0
    for f in d.files or []:
        parts = f.parts
        if parts and parts[0] == "..":
            p = f.locate()
            outside += os.path.getsize(p) if os.path.isfile(p) else 0
        elif parts:
            tops.add(parts[0])
    size = 0
    for t in tops:
        p = os.path.join(site, t)
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                size += sum(os.path.getsize(os.path.join(root, x)) for x in files if not os.path.islink(os.path.join(root, x)))
        elif os.path.isfile(p):
            size += os.path.getsize(p)
    out[name.lower().replace("_", "-")] = {"name": name, "version": d.version, "bytes": size + outside,
                                         "dirs": sorted(t for t in tops if not t.endswith(".pth"))}
print(json.dumps(out))
"""


def install_sizes(plain: Path, semantic: Path) -> dict:
    """The distributions the semantic venv has and the plain one does not, with their size on disk
    (every folder and file of theirs in site-packages, bytecode included, and their scripts)."""
    def of(venv: Path) -> dict:
        return json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", SIZES], env=ENV, capture_output=True,
                                         text=True, check=True).stdout)

    a, b = of(plain), of(semantic)
    added = [b[k] for k in sorted(b) if k not in a]
    changed = [{"name": b[k]["name"], "plain": a[k]["version"], "semantic": b[k]["version"]} for k in b
               if k in a and a[k]["version"] != b[k]["version"]]
    return {"added": added, "total_bytes": sum(x["bytes"] for x in added), "versions_differing": changed,
            "plain_venv": str(plain), "semantic_venv": str(semantic)}


# -- the measurement --------------------------------------------------------------------------------------------------


def git_state(rev: str | None) -> dict:
    """What is measured: a revision's snapshot (--rev), or this checkout and what it has changed."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    if rev:
        return {"commit": git("rev-parse", "--short", rev), "snapshot": True, "sdesk_changed": [], "sdesk_diff_sha": None}
    dirty = git("status", "--porcelain", "--", "sdesk").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "snapshot": False, "sdesk_changed": [line[3:] for line in dirty],
            "sdesk_diff_sha": subprocess.run(["sha1sum"], input=git("diff", "HEAD", "--", "sdesk"), capture_output=True,
                                             text=True).stdout.split()[0][:12] if dirty else None}


def snapshot(rev: str, work: Path) -> Path:
    """`rev`'s sdesk and examples, exported under `work` (git archive): measured through PYTHONPATH,
    whatever happens to the checkout meanwhile."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = work / f"src-{sha[:12]}"
    if not (dest / "sdesk" / "__init__.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "sdesk", "examples"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def fresh(meta_path: Path, want: dict) -> bool:
    if not meta_path.exists():
        return False
    try:
        return json.loads(meta_path.read_text()).get("params") == want
    except ValueError:
        return False


def main() -> None:
    global SRC
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=11, help="counted rounds of the warm commands (plus one warm-up)")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--index-timeout", type=float, default=600, help="seconds the timed `sdesk index` may take")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--rev", help="measure this git revision's sdesk (a snapshot under --work), not the checkout")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".stores" / "semantic")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--plain-venv", type=Path, default=Path("/work/scratch/noext"),
                        help="a venv with `pip install -e .` (no extra; made when missing)")
    parser.add_argument("--semantic-venv", type=Path, default=Path("/work/scratch/semext"),
                        help="a venv with `pip install -e '.[semantic]'` (made when missing)")
    parser.add_argument("--kb-cap", type=float, default=8,
                        help="address-space cap (GiB) on the `sdesk index` of the KB desk (a shared machine)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return

    started = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.rev:
        SRC = snapshot(args.rev, work)
        sys.path.insert(0, str(SRC))
        ENV.update(PYTHONPATH=str(SRC), SEMANTIC_BENCH_SRC=str(SRC))
    from sdesk.domain import clock
    from sdesk.storage import migrations

    for venv, extra in ((args.plain_venv, ""), (args.semantic_venv, "[semantic]")):
        if not (venv / "bin" / "sdesk").exists():
            print(f"making {venv} (pip install -e '{ROOT}{extra}')", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", f"{ROOT}{extra}"], check=True)
    sdesk = {"all": str(VENV / "bin" / "sdesk"), "semantic": str(args.semantic_venv / "bin" / "sdesk"),
             "plain": str(args.plain_venv / "bin" / "sdesk")}
    for side in sdesk.values():  # each venv's sdesk is the one measured
        where = subprocess.run([str(Path(side).parent / "python"), "-c", "import sdesk; print(sdesk.__file__)"], env=ENV,
                               capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()
        if not Path(where).resolve().is_relative_to(SRC.resolve()):
            raise SystemExit(f"error: {side} imports {where}, not the sdesk under {SRC}")
    git = git_state(args.rev)
    report: dict = {"git": git, "src": str(SRC), "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()[0]},
                    "args": {k: str(v) for k, v in vars(args).items() if k != "child"}}

    # -- the ticket desk -------------------------------------------------------------------------------------------
    desk, meta_path = work / f"tickets{args.tickets}.db", work / f"tickets{args.tickets}.json"
    # The schema: its version, and its migrations' text (one may change in place before a release).
    schema = [migrations.SCHEMA_VERSION, hashlib.sha1(Path(migrations.__file__).read_bytes()).hexdigest()[:12]]
    want = {"tickets": args.tickets, "format": FORMAT, "schema": schema}
    if args.rebuild or not fresh(meta_path, want) or not desk.exists():
        now = clock.now_iso()
        t = time.perf_counter()
        counts = child("tickets", str(desk), str(args.tickets), now, str(args.corpus))
        meta_path.write_text(json.dumps({"params": want, "now": now, "counts": counts,
                                         "build_s": round(time.perf_counter() - t, 1)}, indent=2))
    meta = json.loads(meta_path.read_text())
    now = meta["now"]
    report["ticket_desk"] = {**meta["counts"], "now": now, "build_s": meta["build_s"]}
    cache = work / "cache"  # SDESK_CACHE: the KB's vectors, cached by a search (where the code has that cache)
    env = {**ENV, "SDESK_NOW": now, "SDESK_CACHE": str(cache)}  # the desk's "now": its last 30 days stay the last 30
    code = {k: git[k] for k in ("commit", "sdesk_changed", "sdesk_diff_sha")}  # the indexes are this code's

    # -- 3. sdesk index from scratch, timed; the indexed desk -------------------------------------------------------------
    indexed = work / f"tickets{args.tickets}-indexed.db"
    index_path = work / f"tickets{args.tickets}-index.json"
    want_index = {**want, "timeout": args.index_timeout, "code": code}
    if args.rebuild or not fresh(index_path, want_index) or not indexed.exists():
        trial = work / "index-trial.db"
        child("copy", str(desk), str(trial))

        def count() -> int:
            with sqlite3.connect(f"file:{trial}?mode=ro", uri=True, timeout=30) as c:
                return c.execute("SELECT count(*) FROM ticket_vectors").fetchone()[0]

        print(f"  sdesk index on {args.tickets:,} tickets (at most {args.index_timeout:.0f}s)", file=sys.stderr)
        r = run([sdesk["all"], "index", "--json"], {**env, "SDESK_DB": str(trial)}, keep=True,
                timeout=args.index_timeout, poll=count)
        if r["code"] and not r["killed"]:
            raise SystemExit(f"error: sdesk index exited {r['code']}: {r['stderr'][-800:]}")
        stored = count()
        finished = not r["killed"]
        result = {"finished": finished, "wall_s": round(r["wall"], 1), "cpu_s": round(r["cpu"], 1),
                  "MiB": round(r["MiB"]), "stored": stored, "samples": r.get("samples", []),
                  "rate_by_wall": round(stored / r["wall"]), "code": r["code"]}
        if finished:
            result["json"] = json.loads(r["stdout"])
            child("copy", str(trial), str(indexed))
            result["desk_indexed_by"] = "sdesk index (this run)"
        else:
            result["stderr"] = r["stderr"][-600:]
            child("copy", str(desk), str(indexed))
            t = time.perf_counter()
            result["in_process"] = child("index", str(indexed))
            result["in_process"]["wall_s"] = round(time.perf_counter() - t, 1)
            result["desk_indexed_by"] = "semantic.index in-process, open tickets' `near` left out"
        _remove(trial)
        index_path.write_text(json.dumps({"params": want_index, "result": result}, indent=2))
    report["index"] = json.loads(index_path.read_text())["result"]

    # -- the KB desk: its articles, then one `sdesk index` (timed, under a cap) ------------------------------------------
    kb, kb_meta = work / f"kb{args.articles}.db", work / f"kb{args.articles}.json"
    want_kb = {"articles": args.articles, "format": FORMAT, "schema": schema, "code": code,
               "cap": args.kb_cap}
    if args.rebuild or not fresh(kb_meta, want_kb) or not kb.exists():
        t = time.perf_counter()
        built = child("kb", str(kb), str(args.articles), str(args.corpus))
        sync_s = time.perf_counter() - t

        def count_kb() -> int:
            with sqlite3.connect(f"file:{kb}?mode=ro", uri=True, timeout=30) as c:
                return c.execute("SELECT count(*) FROM kb_vectors").fetchone()[0]

        print(f"  sdesk index on {built['articles']:,} articles (under {args.kb_cap:g} GiB)", file=sys.stderr)
        r = run([sdesk["all"], "index", "--json"], {**env, "SDESK_DB": str(kb)}, keep=True,
                limit_bytes=int(args.kb_cap * 2**30), poll=count_kb)
        step = {"code": r["code"], "wall_s": round(r["wall"], 1), "cpu_s": round(r["cpu"], 1), "MiB": round(r["MiB"]),
                "json": json.loads(r["stdout"]) if r["code"] == 0 else None, "stderr": r["stderr"][-400:],
                "samples": r.get("samples", [])}
        if r["code"]:  # the rest of the run needs the index: built KB_BATCH articles a pass, in-process
            print("  the KB index failed; built in-process", file=sys.stderr)
            step["in_process"] = child("index", str(kb))
        child("checkpoint", str(kb))
        with sqlite3.connect(f"file:{kb}?mode=ro", uri=True) as c:
            n_vec = c.execute("SELECT count(*) FROM kb_vectors").fetchone()[0]
        kb_meta.write_text(json.dumps({"params": want_kb, **built, "vectors": n_vec, "kb_sync_s": round(sync_s, 1),
                                       "index": step, "MB": round(kb.stat().st_size / 1e6)}, indent=2))
    report["kb_desk"] = json.loads(kb_meta.read_text())
    words_db = work / f"kb{args.articles}-words.db"
    child("words", str(kb), str(words_db))

    # -- the commands ----------------------------------------------------------------------------------------------
    made = must(run([sdesk["all"], "new", "Disk 94% full on db-billing-2", "-d",
                     "The filesystem /var is at 94% and growing 3 GB an hour; writes will fail tonight.",
                     "--ci", "db-billing-2", "--json"], {**env, "SDESK_DB": str(indexed)}, keep=True), "sdesk new")
    fresh_id = json.loads(made["stdout"])["id"]
    with sqlite3.connect(indexed) as c:
        some = c.execute("SELECT v.ticket_id FROM ticket_vectors v JOIN tickets t ON t.id = v.ticket_id "
                         "WHERE t.status = 'closed' AND v.ticket_id >= ? ORDER BY v.ticket_id LIMIT 1",
                         (args.tickets // 2,)).fetchone()[0]
    copies = {side: work / f"new-{side}.db" for side in sdesk}
    for side, path in copies.items():
        child("copy", str(indexed), str(path))
    plain_py = str(args.plain_venv / "bin" / "python")
    on = lambda db: {**env, "SDESK_DB": str(db)}  # noqa: E731
    q = args.query
    scenarios = {
        "F": ("`python -c \"import typer, sqlite3\"` (F)", [PY, "-c", "import typer, sqlite3"], env),
        "F_plain": ("F with the plain venv's python", [plain_py, "-c", "import typer, sqlite3"], env),
        "similar": (f"`sdesk similar SD-{some} --json` (indexed)", [sdesk["all"], "similar", f"SD-{some}", "--json"], on(indexed)),
        "similar_live": (f"`sdesk similar SD-{fresh_id} --json` (not indexed: embedded now)",
                         [sdesk["all"], "similar", f"SD-{fresh_id}", "--json"], on(indexed)),
        "kb_hybrid": (f"`sdesk kb search \"{q}\"` (hybrid)", [sdesk["all"], "kb", "search", q], on(kb)),
        "kb_words": (f"`sdesk kb search \"{q}\"` (words only: kb_vectors empty)", [sdesk["all"], "kb", "search", q],
                     on(words_db)),
        "new_plain": (f"`sdesk new \"{NEW_TITLE}\"`, venv without the extra", [sdesk["plain"], "new", NEW_TITLE],
                      on(copies["plain"])),
        "new_semantic": (f"`sdesk new \"{NEW_TITLE}\"`, venv with only the semantic extra",
                         [sdesk["semantic"], "new", NEW_TITLE], on(copies["semantic"])),
        "new_all": (f"`sdesk new \"{NEW_TITLE}\"`, venv with every extra", [sdesk["all"], "new", NEW_TITLE],
                    on(copies["all"])),
        "suggest": ("`sdesk problem suggest --json`", [sdesk["all"], "problem", "suggest", "--json"], on(indexed)),
    }
    # What each says, once (and checked), before the rounds; the first hybrid search writes the cache.
    shutil.rmtree(cache, ignore_errors=True)
    checks = {}
    for key, (_, cmd, e) in scenarios.items():
        r = must(run(cmd, e, keep=True), key)
        checks[key] = r
    said = {}
    for key in ("similar", "similar_live", "suggest"):
        found = json.loads(checks[key]["stdout"])
        said[key] = {"results": len(found)}
    said["similar"]["top"] = json.loads(checks["similar"]["stdout"])[:3]
    said["similar_live"]["top"] = json.loads(checks["similar_live"]["stdout"])[:3]
    said["suggest"]["largest"] = sorted((len(s["members"]) for s in json.loads(checks["suggest"]["stdout"])), reverse=True)[:5]
    said["suggest"]["members"] = sum(len(s["members"]) for s in json.loads(checks["suggest"]["stdout"]))
    for key in ("kb_hybrid", "kb_words"):
        said[key] = {"mode": checks[key]["stderr"].strip().splitlines()[0],
                     "first_lines": checks[key]["stdout"].strip().splitlines()[:4]}
    report["said"] = said

    report["parent_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the floor of the peaks
    keys = list(scenarios)
    walls: dict[str, list[float]] = {k: [] for k in keys}
    cpus: dict[str, list[float]] = {k: [] for k in keys}
    peaks: dict[str, float] = {k: 0.0 for k in keys}
    for rnd in range(args.runs + 1):
        order = keys[rnd % len(keys):] + keys[:rnd % len(keys)]
        for key in order:
            _, cmd, e = scenarios[key]
            r = must(run(cmd, e), key)
            if rnd:
                walls[key].append(r["wall"])
                cpus[key].append(r["cpu"])
                peaks[key] = max(peaks[key], r["MiB"])
        print(f"\r  round {rnd}/{args.runs}", end="", file=sys.stderr)
    print(file=sys.stderr)
    F = statistics.median(walls["F"])
    rows = {}
    for key in keys:
        label, cmd, _ = scenarios[key]
        ref = "F_plain" if key == "new_plain" else "F"
        rows[key] = {"what": label, "ms": statistics.median(walls[key]) * 1000,
                     "xF": statistics.median(walls[key]) / F,
                     "paired_xF": statistics.median([w / f for w, f in zip(walls[key], walls[ref])]),
                     "spread": spread(walls[key]), "cpu_ms": statistics.median(cpus[key]) * 1000, "MiB": peaks[key],
                     "walls_ms": [round(w * 1000, 1) for w in walls[key]], "cpus_ms": [round(c * 1000, 1) for c in cpus[key]],
                     "first_ms": round(checks[key]["wall"] * 1000, 1)}
    for key in ("new_semantic", "new_all"):
        rows[key]["vs_plain_paired"] = statistics.median([a / b for a, b in zip(walls[key], walls["new_plain"])])
        rows[key]["vs_plain_cpu_paired"] = statistics.median([a / b for a, b in zip(cpus[key], cpus["new_plain"])])
    report["F_ms"] = F * 1000
    report["warm"] = rows

    # -- cold ------------------------------------------------------------------------------------------------------
    models = model_files()
    cold: dict[str, dict] = {}
    can_drop = drop_caches()
    for n in range(args.cold_runs):
        for key, db, uses_model in (("kb_hybrid", kb, True), ("kb_words", words_db, False), ("similar", indexed, True),
                                    ("F", None, False)):
            _, cmd, e = scenarios[key]
            if can_drop:
                drop_caches()
                r = must(run(cmd, e), key)
                cold.setdefault(key, {}).setdefault("dropped", []).append(r["wall"])
            if db is not None:
                files = db_files(db) + models + [p for p in cache.rglob("*") if p.is_file()]
                evict(files)
                left = resident(files)
                r = must(run(cmd, e), key)
                entry = cold.setdefault(key, {})
                entry.setdefault("evicted", []).append(r["wall"])
                entry.setdefault("resident_after_evict", []).append(left)
        print(f"\r  cold {n + 1}/{args.cold_runs}", end="", file=sys.stderr)
    print(file=sys.stderr)
    report["cold"] = {"drop_caches": can_drop, "model_files": [str(m) for m in models],
                      **{k: {m: ([round(x * 1000, 1) for x in v] if m != "resident_after_evict" else v)
                             for m, v in d.items()} for k, d in cold.items()}}

    # -- install size ----------------------------------------------------------------------------------------------
    report["install"] = install_sizes(args.plain_venv, args.semantic_venv)
    report["machine"]["load_after"] = os.getloadavg()[0]
    report["git_end"] = git_state(args.rev)
    report["seconds"] = round(time.perf_counter() - started)
    for path in copies.values():
        _remove(path)
    _remove(words_db)

    table = markdown(report, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.md:
        args.md.write_text(table)


def verdict(ok: bool) -> str:
    return "met" if ok else "**over**"


def markdown(r: dict, args: argparse.Namespace) -> str:
    w, F, d, k = r["warm"], r["F_ms"], r["ticket_desk"], r["kb_desk"]
    g, g2 = r["git"], r["git_end"]
    if g["snapshot"]:
        tree = f"sdesk at {g['commit']} (a snapshot of that revision, `--rev`)"
    else:
        tree = f"sdesk at {g['commit']}" + (f" plus uncommitted changes to {', '.join(g['sdesk_changed'])} (diff "
                                            f"{g['sdesk_diff_sha']})" if g["sdesk_changed"] else "")
        if g2 != g:
            tree += f"; **the checkout changed during the run** (at the end: {g2['commit']}, {g2['sdesk_changed']})"
    lines = [f"# Semantic search (issue 24): whole processes, {args.runs} rounds, F = {F:.0f} ms", "",
             f"{tree}. {r['machine']['cores']} cores; load average {r['machine']['load_before']:.2f} before, "
             f"{r['machine']['load_after']:.2f} after; the run took {r['seconds']} s. "
             "Reproduce: `python bench/semantic_bench.py --json ... --md ...` (its docstring says how).", "",
             f"Ticket desk: {d['tickets']:,} tickets ({d['span'][0][:10]} to {d['span'][1][:10]}, {d['open']:,} open, "
             f"{d['incidents']:,} incidents, {d['incidents_last_30d']:,} of them in the last 30 days, {d['with_ci']:,} on "
             f"{d['cis']} CIs, {d['events']:,} events, on average {d['avg_text_chars']} characters of title and description; "
             f"{d['MB']} MB before indexing). KB desk: {k['articles']:,} articles ({k['avg_words']} words on average, "
             f"{k['vectors']:,} vectors, {k['MB']} MB). Query: \"{args.query}\" (bench/semantic/kb_queries.yaml: a "
             "paraphrase of the example article password-reset; the generated articles on mail delivery share two of "
             "its words).", "",
             "| # | command | median | x F | paired x F | spread | CPU | peak | budget | |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]

    def row(n: str, key: str, budget: str, ok: bool | None) -> None:
        x = w[key]
        peak = f"{x['MiB']:.0f} MiB" if x["MiB"] > r["parent_MiB"] * 1.05 else f"<= {r['parent_MiB']:.0f} MiB"
        lines.append(f"| {n} | {x['what']} | {x['ms']:.0f} ms | {x['xF']:.2f} | {x['paired_xF']:.2f} | "
                     f"{x['spread'] * 100:.0f}% | {x['cpu_ms']:.0f} ms | {peak} | {budget} | "
                     f"{'' if ok is None else verdict(ok)} |")

    row("", "F", "", None)
    row("1", "similar", "<= 1 s", w["similar"]["ms"] <= BUDGET_SIMILAR_S * 1000)
    row("1", "similar_live", "<= 1 s", w["similar_live"]["ms"] <= BUDGET_SIMILAR_S * 1000)
    row("2", "kb_hybrid", "<= 3 F warm", w["kb_hybrid"]["paired_xF"] <= BUDGET_KB_XF)
    row("2", "kb_words", "<= 3 F", w["kb_words"]["paired_xF"] <= BUDGET_KB_XF)
    row("4", "new_plain", "<= 2.5 F", w["new_plain"]["paired_xF"] <= BUDGET_NEW_XF)
    for key in ("new_semantic", "new_all"):  # the budget is the semantic extra's; every extra is for comparison
        ok = w[key]["paired_xF"] <= BUDGET_NEW_XF and w[key]["vs_plain_cpu_paired"] <= UNCHANGED
        ratios = f"/ without: CPU {w[key]['vs_plain_cpu_paired']:.2f}, wall {w[key]['vs_plain_paired']:.2f}"
        row("4", key, f"<= 2.5 F; {ratios} (<= {UNCHANGED})" if key == "new_semantic" else f"(comparison) {ratios}",
            ok if key == "new_semantic" else None)
    row("6", "suggest", "(none set)", None)
    lines.append("")
    lines.append(f"\"paired x F\": the median of each round's time / that round's F (for the plain venv, its own F: "
                 f"{w['F_plain']['ms']:.0f} ms); verdicts on x F use it. \"/ without\": each round's `new` over the plain "
                 "venv's `new` in the same round, median, of CPU time (the verdict: what the extra could add; wall time "
                 "on this shared machine swings more between rounds than the 5% asked) and of wall time. Spread: (max - min) / median over the rounds. Peak: the "
                 "kernel's maximum RSS of the process, which cannot read below the bench's own size when it started "
                 f"the process ({r['parent_MiB']:.0f} MiB): \"<=\" marks those.")
    lines.append("")
    c = r["cold"]
    lines.append("Cold (`--cold-runs` first runs, each after its own eviction; ms):")
    lines.append("")
    lines.append("| command | database + model files evicted (fadvise) | whole page cache dropped | warm median | budget | |")
    lines.append("|---|---|---|---:|---|---|")
    for key, budget in (("kb_hybrid", "<= 1 s cold"), ("kb_words", ""), ("similar", "<= 1 s"), ("F", "")):
        e = c.get(key, {})
        ev = ", ".join(f"{x:.0f}" for x in e.get("evicted", [])) or "-"
        dr = ", ".join(f"{x:.0f}" for x in e.get("dropped", [])) or ("-" if c["drop_caches"] else "not permitted")
        worst = max(e.get("evicted", []) or [0])
        ok = verdict(worst <= 1000) if budget else ""
        lines.append(f"| {w[key]['what']} | {ev} | {dr} | {w[key]['ms']:.0f} | {budget} | {ok} |")
    lines.append("")
    lines.append("The budget's \"cold\" is the database and model files out of the page cache (the fadvise column, "
                 "the files of the vector cache folder too; verdict on its slowest run); dropping the whole cache also "
                 "evicts Python, numpy and every library: the first command after a boot. The very first hybrid search "
                 f"after `sdesk index` (an empty SDESK_CACHE): {w['kb_hybrid']['first_ms']:.0f} ms.")
    lines.append("")
    ix = r["index"]
    lines.append(f"3. `sdesk index --json`, {d['tickets']:,} tickets from scratch (budget >= {BUDGET_INDEX_RATE:,} tickets/s):")
    lines.append("")
    if ix["finished"]:
        j = ix["json"]
        lines.append(f"- finished: {j['tickets']:,} tickets and {j['articles']} articles in {j['seconds']} s by its own "
                     f"clock, **{j['tickets_per_second']:,} tickets/s** (its JSON); whole process {ix['wall_s']} s, "
                     f"CPU {ix['cpu_s']} s, peak {ix['MiB']} MiB: {verdict((j['tickets_per_second'] or 0) >= BUDGET_INDEX_RATE)}.")
    else:
        p = ix["in_process"]
        lines.append(f"- **did not finish within {args.index_timeout:.0f} s** (killed): {ix['stored']:,} of "
                     f"{d['tickets']:,} tickets stored, **{ix['rate_by_wall']:,} tickets/s** over the whole process; "
                     f"CPU {ix['cpu_s']} s, peak {ix['MiB']} MiB: {verdict(False)}. The desk measured here was indexed "
                     f"in-process without the open tickets' neighbours: {p['tickets']:,} tickets at "
                     f"{p['tickets_per_second']:,} tickets/s" + (f" (CPU {p['cpu_s']} s)" if "cpu_s" in p else "") + ".")
    if ix["samples"]:
        pts = ix["samples"]
        lines.append("- tickets stored over time (s: count): " + ", ".join(f"{t:.0f}: {n:,}" for t, n in pts[::max(1, len(pts) // 12)]))
    lines.append("")
    x = k["index"]
    if x["code"] == 0:
        lines.append(f"KB desk's index: one `sdesk index --json` over {x['json']['articles']:,} articles (capped at "
                     f"{args.kb_cap:g} GiB of address space): {x['wall_s']} s, CPU {x['cpu_s']} s, peak {x['MiB']:,} MiB "
                     f"({x['json']['articles'] / x['wall_s']:,.0f} articles/s); kb_sync of the articles {k['kb_sync_s']} s.")
    else:
        lines.append(f"KB desk's index: **`sdesk index` over {k['articles']:,} articles failed** under a {args.kb_cap:g} GiB "
                     f"address-space cap: exit {x['code']} after {x['wall_s']} s, peak {x['MiB']:,} MiB "
                     f"({x['stderr'].strip().splitlines()[-1][:200] if x['stderr'].strip() else 'no message'}); built "
                     "in-process instead.")
    lines.append("")
    s = r["said"]
    lines.append(f"What they said: similar {s['similar']['results']} results (top cosines "
                 f"{', '.join(str(x['score']) for x in s['similar']['top'])}); similar of the new ticket "
                 f"{s['similar_live']['results']} (top {', '.join(str(x['score']) for x in s['similar_live']['top'])}); "
                 f"problem suggest: {s['suggest']['results']} suggestions over {s['suggest']['members']:,} incidents "
                 f"(largest {s['suggest']['largest']}). kb search, the first lines: hybrid "
                 f"{s['kb_hybrid']['first_lines'][:1]}, words only {s['kb_words']['first_lines'][:1]}.")
    lines.append("")
    inst = r["install"]
    lines.append(f"5. Install size the extra adds ({len(inst['added'])} distributions in `pip install -e '.[semantic]'` "
                 "and not in `pip install -e .`; their folders in site-packages, bytecode included, and scripts; MB = "
                 "10^6 bytes):")
    lines.append("")
    lines.append("| distribution | version | MB |")
    lines.append("|---|---|---:|")
    for a in sorted(inst["added"], key=lambda a: -a["bytes"]):
        lines.append(f"| {a['name']} | {a['version']} | {a['bytes'] / 1e6:.1f} |")
    lines.append(f"| **total** | | **{inst['total_bytes'] / 1e6:.1f}** |")
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
