"""Schema steps: named, ordered and append-only. Never edit a step that has shipped; add one.

Each step is a function of a `sqlite_utils.Database`. `apply` runs the pending ones with
`sqlite_utils.Migrations` inside one IMMEDIATE transaction, so that several processes opening a
new database at once apply them exactly once, and a failed upgrade leaves the file as it was.
`PRAGMA user_version` holds the number of steps applied: the store compares it with
`SCHEMA_VERSION` on every open, which is cheap, and imports sqlite-utils only to upgrade.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from ..errors import SchemaTooNew

if TYPE_CHECKING:
    from sqlite_utils import Database

    from .pg import Connection

# The predicate of an open ticket. Queries repeat it word for word so that SQLite can use the
# partial indexes below (it matches a partial index's WHERE by expression).
OPEN_SQL = "status NOT IN ('resolved', 'closed')"
DONE_SQL = "status IN ('resolved', 'closed')"


def covered_sql(child: str, when: str = "parent.acknowledged_at IS NOT NULL") -> str:
    """SQL: the ticket `child` (an alias of tickets) is a correlated child its parent covers: the
    parent is at least as urgent and `when` holds of it (acknowledged, by default). Such a child
    runs on its parent's clock, is counted once (as the parent) and does not page; a child more
    urgent than its parent never is covered. One definition for paging, SLA and the KPIs."""
    return (f"EXISTS (SELECT 1 FROM tickets parent WHERE parent.id = {child}.parent_id "
            f"AND parent.priority <= {child}.priority AND ({when}))")


def m001_tickets_and_events(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE tickets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT,
            status TEXT NOT NULL,
            priority TEXT NOT NULL,
            impact INTEGER,
            urgency INTEGER,
            category TEXT,
            queue TEXT,
            team TEXT,
            assignee TEXT,
            service TEXT,
            ci TEXT,
            requester TEXT,
            source TEXT NOT NULL,
            fingerprint TEXT,
            occurrences INTEGER NOT NULL DEFAULT 1,
            labels TEXT NOT NULL DEFAULT '{}',
            tags TEXT NOT NULL DEFAULT '[]',
            parent_id INTEGER REFERENCES tickets(id),
            resolution TEXT,
            resolution_code TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            acknowledged_at TEXT,
            resolved_at TEXT,
            closed_at TEXT,
            reopen_count INTEGER NOT NULL DEFAULT 0,
            escalation_level INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute(f"CREATE INDEX tickets_open_queue ON tickets(priority, id) WHERE {OPEN_SQL}")
    db.execute(
        "CREATE UNIQUE INDEX tickets_open_fingerprint ON tickets(fingerprint) "
        f"WHERE fingerprint IS NOT NULL AND {OPEN_SQL}"
    )
    db.execute(f"CREATE INDEX tickets_open_assignee ON tickets(assignee, priority, id) WHERE {OPEN_SQL}")
    db.execute("CREATE INDEX tickets_parent ON tickets(parent_id) WHERE parent_id IS NOT NULL")
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ticket_id INTEGER REFERENCES tickets(id),
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX events_ticket ON events(ticket_id, id)")
    # Append-only by construction; the hash chain catches whoever drops these triggers.
    if getattr(db, "postgres", False):
        db.execute("CREATE FUNCTION sdesk_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'restrict_violation'; END$$")
        for op in ("UPDATE", "DELETE"):
            db.execute(f"CREATE TRIGGER events_no_{op.lower()} BEFORE {op} ON events "
                       "FOR EACH ROW EXECUTE FUNCTION sdesk_append_only()")
        return
    for op in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER events_no_{op.lower()} BEFORE {op} ON events "
            "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
        )


def m002_alerts_and_changes(db: Database) -> None:
    # Every alert received, whatever became of it: the denominator of alert-to-ticket ratio.
    db.execute(
        """
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            fingerprint TEXT,
            status TEXT NOT NULL,
            action TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            annotations TEXT NOT NULL DEFAULT '{}',
            received_at TEXT NOT NULL,
            ticket_id INTEGER REFERENCES tickets(id)
        )
        """
    )
    db.execute("CREATE INDEX alerts_ticket ON alerts(ticket_id) WHERE ticket_id IS NOT NULL")
    db.execute("CREATE INDEX alerts_received ON alerts(received_at)")
    # Change records (deploys, config pushes) that enrichment looks up by service or CI.
    db.execute(
        """
        CREATE TABLE changes (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            summary TEXT NOT NULL,
            service TEXT,
            ci TEXT,
            happened_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute("CREATE INDEX changes_service ON changes(service, happened_at)")
    db.execute("CREATE INDEX changes_ci ON changes(ci, happened_at)")


def m003_mail(db: Database) -> None:
    # Which ticket each message belongs to: replies thread by In-Reply-To / References, and a
    # message seen twice (an mbox read again) is not taken twice.
    db.execute(
        "CREATE TABLE mail_messages (message_id TEXT PRIMARY KEY, ticket_id INTEGER REFERENCES tickets(id), "
        "received_at TEXT NOT NULL)"
    )
    db.execute(
        """
        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            ticket_id INTEGER NOT NULL REFERENCES tickets(id),
            message_id TEXT,
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            received_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX attachments_ticket ON attachments(ticket_id)")


def m004_cmdb_kb_problems(db: Database) -> None:
    # Configuration items, their other names (as monitoring spells them) and typed relations:
    # `source kind target` reads "checkout-api depends_on payments-db".
    db.execute(
        """
        CREATE TABLE cis (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            tier INTEGER,
            team TEXT,
            environment TEXT,
            attributes TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE TABLE ci_aliases (alias TEXT PRIMARY KEY, ci_id INTEGER NOT NULL REFERENCES cis(id) ON DELETE CASCADE)")
    db.execute("CREATE INDEX ci_aliases_ci ON ci_aliases(ci_id)")
    db.execute(
        """
        CREATE TABLE ci_relations (
            source_id INTEGER NOT NULL REFERENCES cis(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            target_id INTEGER NOT NULL REFERENCES cis(id) ON DELETE CASCADE,
            PRIMARY KEY (source_id, kind, target_id)
        ) WITHOUT ROWID
        """
    )
    # Impact analysis walks relations upward: who needs this CI.
    db.execute("CREATE INDEX ci_relations_target ON ci_relations(target_id, source_id)")
    # Changes entered by people have a window, a risk and a status; those from sources (PagerDuty
    # change events) are points in time.
    for column in ("ends_at TEXT", "risk TEXT", "status TEXT NOT NULL DEFAULT 'completed'", "created_by TEXT"):
        db.execute(f"ALTER TABLE changes ADD COLUMN {column}")
    db.execute("CREATE INDEX changes_happened ON changes(happened_at)")
    # A problem is a ticket of kind problem; its record, and the incidents linked to it.
    db.execute(
        """
        CREATE TABLE problems (
            ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id),
            root_cause TEXT,
            workaround TEXT,
            known_error INTEGER NOT NULL DEFAULT 0,
            fix TEXT
        )
        """
    )
    db.execute("ALTER TABLE tickets ADD COLUMN problem_id INTEGER REFERENCES tickets(id)")
    db.execute("CREATE INDEX tickets_problem ON tickets(problem_id) WHERE problem_id IS NOT NULL")
    # Similar tickets are looked up by CI.
    db.execute("CREATE INDEX tickets_ci ON tickets(ci, id) WHERE ci IS NOT NULL")
    # What enrichment found for a ticket when it arrived (CI, owner, dependents, changes, KB...).
    db.execute("CREATE TABLE ticket_context (ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id), data TEXT NOT NULL)")
    # Knowledge base: the current text of each article, every revision, and a full-text index.
    db.execute(
        """
        CREATE TABLE kb_articles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            slug TEXT UNIQUE,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            cis TEXT NOT NULL DEFAULT '[]',
            owner TEXT,
            review_days INTEGER NOT NULL DEFAULT 180,
            revision INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            reviewed_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE kb_revisions (
            article_id INTEGER NOT NULL REFERENCES kb_articles(id),
            revision INTEGER NOT NULL,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            tags TEXT NOT NULL,
            cis TEXT NOT NULL,
            owner TEXT,
            review_days INTEGER NOT NULL,
            PRIMARY KEY (article_id, revision)
        ) WITHOUT ROWID
        """
    )
    if getattr(db, "postgres", False):
        # PostgreSQL's own full-text search: the words of the title weigh most, then tags and CIs,
        # then the body (FTS5's bm25 weights below), english stemming as FTS5's porter tokenizer.
        # FTS5's `porter unicode61` has no stop words and splits on every character that is not a
        # letter or digit (db-billing-2, checkout.example.com, /var/log are words to it): the same
        # here, english stemming (snowball) without a stop list, on the text cut at non-alnums.
        db.execute("CREATE TEXT SEARCH DICTIONARY sdesk_english_stem (TEMPLATE = snowball, Language = english)")
        db.execute("CREATE TEXT SEARCH CONFIGURATION sdesk_english (COPY = english)")
        db.execute("ALTER TEXT SEARCH CONFIGURATION sdesk_english ALTER MAPPING FOR asciiword, asciihword, "
                   "hword_asciipart, word, hword, hword_part WITH sdesk_english_stem")
    _fts_table(db, "kb_fts")
    db.execute(
        "CREATE TABLE kb_links (article_id INTEGER NOT NULL REFERENCES kb_articles(id), "
        "ticket_id INTEGER NOT NULL REFERENCES tickets(id), at TEXT NOT NULL, PRIMARY KEY (article_id, ticket_id)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX kb_links_ticket ON kb_links(ticket_id)")


def m005_drop_alerts_received(db: Database) -> None:
    # Nothing reads alerts by time yet, and this index cost ~5% of streamed intake, which
    # writes one alert row per arrival. Reports that need a window add what they measure.
    db.execute("DROP INDEX alerts_received")


def m006_triage(db: Database) -> None:
    # Why a ticket is not in the queue: "silence 3" or "rule quiet-hours-disk". It stays a
    # ticket (counted, deduplicated, listed with --suppressed), never dropped.
    db.execute("ALTER TABLE tickets ADD COLUMN suppressed TEXT")
    db.execute("CREATE INDEX tickets_suppressed ON tickets(suppressed, id) WHERE suppressed IS NOT NULL")
    # The runbook a rule attached, and the group key of an incident that groups alerts (set
    # on the group's first ticket only, so that its children cost the index nothing).
    db.execute("ALTER TABLE tickets ADD COLUMN runbook TEXT")
    db.execute("ALTER TABLE tickets ADD COLUMN group_key TEXT")
    db.execute(f"CREATE INDEX tickets_open_group ON tickets(group_key, id) WHERE group_key IS NOT NULL AND {OPEN_SQL}")
    # Flapping: the last resolved ticket of a fingerprint. Partial on done tickets, so that a
    # ticket enters it when it is resolved, never at intake.
    db.execute(f"CREATE INDEX tickets_done_fingerprint ON tickets(fingerprint, resolved_at) "
               f"WHERE fingerprint IS NOT NULL AND {DONE_SQL}")
    db.execute(
        """
        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            matchers TEXT NOT NULL,
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            comment TEXT,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expired_at TEXT
        )
        """
    )
    # A classifier per ticket field (category, queue): its classes and settings in info, and
    # one row of weights per term, so that classifying a ticket reads only its own terms.
    db.execute("CREATE TABLE classifier_models (field TEXT PRIMARY KEY, trained_at TEXT NOT NULL, info TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE classifier_terms (field TEXT NOT NULL REFERENCES classifier_models(field) ON DELETE CASCADE, "
        "term TEXT NOT NULL, weights BLOB NOT NULL, PRIMARY KEY (field, term)) WITHOUT ROWID"
    )


def m007_oncall(db: Database) -> None:
    # Who covers a schedule instead of its rotation, for a while (sdesk oncall override).
    db.execute(
        """
        CREATE TABLE oncall_overrides (
            id INTEGER PRIMARY KEY,
            schedule TEXT NOT NULL,
            user TEXT NOT NULL,
            starts_at TEXT NOT NULL,
            ends_at TEXT NOT NULL,
            reason TEXT,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX oncall_overrides_schedule ON oncall_overrides(schedule, ends_at)")
    # Pages: who a ticket paged at which level and round, and their delivery. Unique, so
    # that `sdesk tick` run twice at once pages once.
    db.execute(
        """
        CREATE TABLE pages (
            id INTEGER PRIMARY KEY,
            ticket_id INTEGER NOT NULL REFERENCES tickets(id),
            round INTEGER NOT NULL,
            level INTEGER NOT NULL,
            user TEXT NOT NULL,
            due_at TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            delivered_at TEXT,
            delivery INTEGER,  -- the first page of the message that carried it (a batch carries several)
            claim TEXT,  -- the tick sending it now: another tick leaves it alone
            sent_to TEXT NOT NULL DEFAULT '',  -- the channels that took it (command, webhook)
            error TEXT,
            UNIQUE (ticket_id, round, level, user)
        )
        """
    )
    db.execute("CREATE INDEX pages_pending ON pages(next_attempt_at) WHERE status IN ('pending', 'sending')")
    db.execute("CREATE INDEX pages_delivered ON pages(user, delivered_at) WHERE status = 'delivered'")
    # SLA warnings and breaches are recorded once each: `sdesk tick` finds the recorded ones here.
    db.execute("CREATE INDEX events_sla ON events(ticket_id) WHERE kind IN ('sla_warning', 'sla_breached')")
    # SLA clocks read every open ticket's kind, priority and times: the queue index carries
    # them, so `sdesk sla` reads the index alone, not thousands of scattered rows.
    db.execute("DROP INDEX tickets_open_queue")
    db.execute(f"CREATE INDEX tickets_open_queue ON tickets(priority, id, kind, status, created_at, acknowledged_at, "
               f"suppressed) WHERE {OPEN_SQL}")
    if not getattr(db, "postgres", False) and \
            db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        # Statistics from an earlier ANALYZE would lack the new index, and the planner would
        # then sort the whole open queue for `sdesk list` rather than read it in order.
        db.execute("ANALYZE tickets_open_queue")
    # The tickets that ever waited on their requester: the only ones whose clocks pause.
    db.execute("CREATE INDEX events_waiting ON events(ticket_id) "
               "WHERE kind = 'status_changed' AND json_extract(data, '$.to') = 'waiting'")


def m008_runbooks(db: Database) -> None:
    # A run of a runbook: its plan (parameters resolved; secrets by reference only), where it
    # is, and the process running it, so that a run whose process died is found and ended.
    db.execute(
        """
        CREATE TABLE runbook_runs (
            id INTEGER PRIMARY KEY,
            runbook TEXT NOT NULL,
            ticket_id INTEGER NOT NULL REFERENCES tickets(id),
            lock_key TEXT NOT NULL,  -- what it works on: ci:NAME, else alert:FINGERPRINT, else ticket:N
            status TEXT NOT NULL,  -- queued running waiting succeeded stopped failed interrupted rejected refused
            dry_run INTEGER NOT NULL DEFAULT 0,
            automated INTEGER NOT NULL DEFAULT 0,  -- started by triage, not a person
            actor TEXT NOT NULL,
            plan TEXT,
            step INTEGER NOT NULL DEFAULT 0,  -- the next step to run (or the one it waits on)
            waiting_for TEXT,  -- approval or confirmation
            reason TEXT,
            rollback TEXT,  -- succeeded or failed, when on_failure steps ran
            resolved INTEGER NOT NULL DEFAULT 0,  -- its resolve step resolved the ticket
            misfire TEXT,  -- failed, interrupted or reopened: automation that did not hold
            pid INTEGER,
            host TEXT,
            proc_start TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX runbook_runs_ticket ON runbook_runs(ticket_id)")
    db.execute("CREATE INDEX runbook_runs_throttle ON runbook_runs(runbook, lock_key, started_at)")
    # The lock per CI: one active run per key, enforced by the database itself.
    db.execute("CREATE UNIQUE INDEX runbook_runs_lock ON runbook_runs(lock_key) WHERE status IN ('running', 'waiting')")
    db.execute("CREATE INDEX runbook_runs_pending ON runbook_runs(status) WHERE status IN ('queued', 'running', 'waiting')")
    db.execute(
        """
        CREATE TABLE runbook_steps (
            run_id INTEGER NOT NULL REFERENCES runbook_runs(id),
            seq INTEGER NOT NULL,
            step_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            phase TEXT NOT NULL,  -- main or rollback
            status TEXT NOT NULL,  -- running ok failed timeout skipped interrupted approved confirmed
            command TEXT,
            exit_code INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            duration_ms INTEGER,
            output TEXT,
            actor TEXT,
            pid INTEGER,  -- the command's process (and process group), while it runs
            proc_start TEXT,
            PRIMARY KEY (run_id, seq)
        )
        """
    )
    # The kill switch: a disabled runbook (or '*': all of them) does not run.
    db.execute("CREATE TABLE runbook_switches (name TEXT PRIMARY KEY, reason TEXT, disabled_by TEXT NOT NULL, "
               "disabled_at TEXT NOT NULL)")


def m009_metrics(db: Database) -> None:
    # Customer satisfaction: one rating (1-5) per ticket; a new one replaces it (history in events).
    db.execute("CREATE TABLE csat (ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id), score INTEGER NOT NULL, "
               "comment TEXT, actor TEXT NOT NULL, at TEXT NOT NULL)")
    # Time worked on tickets (sdesk worklog): the cost model's agent hours.
    db.execute("CREATE TABLE worklog (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL REFERENCES tickets(id), "
               "minutes INTEGER NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL, note TEXT)")
    db.execute("CREATE INDEX worklog_ticket ON worklog(ticket_id)")
    # The tickets people moved elsewhere (another assignee, or triage's queue or category
    # corrected): the reassignment (misrouting) rate and first-contact resolution read them
    # without scanning every event.
    db.execute("CREATE INDEX events_reassigned ON events(ticket_id) WHERE kind = 'triage_corrected' "
               "OR (kind = 'assigned' AND json_extract(data, '$.previous_assignee') IS NOT NULL)")
    # Escalations (by tick or by hand), for the escalation rate and first-contact resolution.
    db.execute("CREATE INDEX events_escalated ON events(ticket_id) WHERE kind IN ('escalated', 'escalation_requested')")
    db.execute("CREATE INDEX pages_due ON pages(due_at)")
    # Reports read a window of tickets by creation time: a month of a big desk's history is a
    # range of this index, not a scan of every ticket. Times only grow, so each insert lands
    # at the index's end.
    db.execute("CREATE INDEX tickets_created ON tickets(created_at)")
    if not getattr(db, "postgres", False) and \
            db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        db.execute("ANALYZE tickets_created")


def m010_users(db: Database) -> None:
    # The people of the desk and their roles (roles.py). `key` is the name trimmed and
    # case-folded, so "Alice" and "alice " are one user.
    db.execute("CREATE TABLE users (key TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, team TEXT, "
               "added_by TEXT NOT NULL, added_at TEXT NOT NULL)")
    # A user's role on one queue, where it differs from their role on the desk.
    db.execute("CREATE TABLE user_queue_roles (key TEXT NOT NULL REFERENCES users(key) ON DELETE CASCADE, "
               "queue TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (key, queue))")
    # API tokens for `sdesk serve`, one per integration: only their sha256 is kept.
    db.execute("CREATE TABLE api_tokens (id INTEGER PRIMARY KEY, key TEXT NOT NULL REFERENCES users(key) "
               "ON DELETE CASCADE, label TEXT, hash TEXT NOT NULL UNIQUE, created_by TEXT NOT NULL, "
               "created_at TEXT NOT NULL, revoked_at TEXT)")
    # What `sdesk purge` leaves of a purged event: its place in the hash chain, so the chain still
    # verifies (and anchors still check) without the purged ticket's data.
    db.execute("CREATE TABLE event_tombstones (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, "
               "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")


def m011_identity(db: Database) -> None:
    # The OS login of the process that wrote each event, beside the actor it claimed (NULL on
    # events written before this step: their hash never covered one).
    db.execute("ALTER TABLE events ADD COLUMN login TEXT")
    # Which OS login is which user (roles.py: acting as someone else needs an admin's login),
    # and a user's email address (a reply from it may comment on tickets).
    db.execute("ALTER TABLE users ADD COLUMN login TEXT")
    db.execute("ALTER TABLE users ADD COLUMN email TEXT")
    db.execute("UPDATE users SET login = key")
    db.execute("CREATE UNIQUE INDEX users_login ON users (login)")
    db.execute("CREATE UNIQUE INDEX users_email ON users (email)")
    # Refusals counted per (actor, OS login, minute): one permission_denied event opens a window,
    # repeats only count here, and the next window's event carries the last one's final count.
    db.execute("CREATE TABLE refusals (actor TEXT NOT NULL, login TEXT NOT NULL, minute TEXT NOT NULL, "
               "count INTEGER NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (actor, login))")


def m012_desk_state(db: Database) -> None:
    # What a desk knows about itself beside its tickets: the config folder `init --config`
    # recorded, and when `tick`, `backup` and `audit anchor` last ran (for sdesk doctor).
    db.execute("CREATE TABLE desk_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, at TEXT NOT NULL)")


def m013_ticket_changes_told(db: Database) -> None:
    # PostgreSQL tells the desk's listeners (the TUI's queue: dialect.listen) of every ticket made,
    # changed or purged and of every event about one, at the commit of the transaction that wrote it
    # and never for one rolled back, whoever wrote it (sdesk, an import, psql). The payload is ticket
    # ids only, never their text: one id, or up to 400 (under the 8000 bytes a payload may hold)
    # separated by commas. The channel is the desk's schema's (two desks may share a database):
    # 'sdesk:' and the schema's name, cut to an identifier's 63 bytes, as dialect.PostgreSQL.listen
    # names it; the server sends each payload once per transaction however often it was notified.
    # Inserts and deletes are told per statement (a stream inserts hundreds of rows a statement: one
    # notification per 400 rows, not one each); updates per row (they come one row a statement).
    # SQLite has no server to tell: its TUI polls.
    if not getattr(db, "postgres", False):
        return
    channel = "left('sdesk:' || TG_TABLE_SCHEMA, 63)"
    db.execute("CREATE FUNCTION sdesk_tickets_told() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
               f"PERFORM pg_notify({channel}, string_agg(id::text, ',')) FROM changed GROUP BY id / 400; "
               "RETURN NULL; END$$")
    for op, rows in (("INSERT", "NEW"), ("DELETE", "OLD")):
        db.execute(f"CREATE TRIGGER tickets_{op.lower()}_told AFTER {op} ON tickets REFERENCING {rows} TABLE AS changed "
                   "FOR EACH STATEMENT EXECUTE FUNCTION sdesk_tickets_told()")
    db.execute("CREATE FUNCTION sdesk_ticket_told() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
               f"PERFORM pg_notify({channel}, NEW.id::text); RETURN NULL; END$$")
    db.execute("CREATE TRIGGER tickets_update_told AFTER UPDATE ON tickets FOR EACH ROW "
               "EXECUTE FUNCTION sdesk_ticket_told()")
    db.execute("CREATE FUNCTION sdesk_events_told() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
               f"PERFORM pg_notify({channel}, string_agg(ticket_id::text, ',')) FROM (SELECT DISTINCT ticket_id "
               "FROM changed WHERE ticket_id IS NOT NULL) AS told GROUP BY ticket_id / 400; RETURN NULL; END$$")
    db.execute("CREATE TRIGGER events_insert_told AFTER INSERT ON events REFERENCING NEW TABLE AS changed "
               "FOR EACH STATEMENT EXECUTE FUNCTION sdesk_events_told()")


def m014_outbox(db: Database) -> None:
    # Talking back (issue 22). Every message to send is a row here, written in the transaction of
    # the event that caused it (storage/outbox.py): pending -> delivered, or dead after its tries
    # (sdesk outbox retry), or dropped. `batch`: the message that carries it (its first row's
    # id), fixed when first claimed, so that a retry resends the same message with the same
    # Message-ID and idempotency key; `lease_at`/`token`: a delivery's claim on it.
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id INTEGER, event_id INTEGER, "
               "event TEXT NOT NULL, rule TEXT NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL, "
               "audience TEXT NOT NULL, template TEXT, context TEXT NOT NULL, status TEXT NOT NULL, batch INTEGER, "
               "attempts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, due_at TEXT NOT NULL, lease_at TEXT, "
               "token TEXT, sent_at TEXT, error TEXT, message_id TEXT)")
    db.execute("CREATE INDEX outbox_pending ON outbox (due_at) WHERE status = 'pending'")
    db.execute("CREATE INDEX outbox_key ON outbox (ticket_id, channel, recipient, status)")
    db.execute("CREATE INDEX outbox_recipient ON outbox (recipient, sent_at)")
    # Who else hears of a ticket's public updates: an email address or a user's name.
    db.execute("CREATE TABLE watchers (ticket_id INTEGER NOT NULL, who TEXT NOT NULL, added_by TEXT NOT NULL, "
               "added_at TEXT NOT NULL, PRIMARY KEY (ticket_id, who))")
    # A user's chat handle (Slack, Mattermost, Teams), beside their email address.
    db.execute("ALTER TABLE users ADD COLUMN chat TEXT")
    # Stakeholder updates on incidents (investigating -> identified -> monitoring -> resolved):
    # what `sdesk status-page` publishes.
    db.execute("CREATE TABLE incident_updates (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, at TEXT NOT NULL, "
               "state TEXT NOT NULL, text TEXT NOT NULL, actor TEXT NOT NULL)")
    db.execute("CREATE INDEX incident_updates_at ON incident_updates (at)")
    db.execute("CREATE INDEX incident_updates_ticket ON incident_updates (ticket_id, at)")
    # Pages that reached nobody, looked at again by each tick (a contact given, a notifier added).
    db.execute("CREATE INDEX pages_undeliverable ON pages(ticket_id) WHERE status = 'undeliverable'")


def m015_catalog(db: Database) -> None:
    # Self-service (issue 23). A request: the ticket a catalog submission opened, its type, the
    # answers (as checked), and where it is (approval, fulfilling, waiting for a person,
    # fulfilled, rejected, expired, failed). `stages`: each stage of its approval chain as
    # found at submission (who may approve, how many must, whether it applies); `plan`: its
    # fulfilment (runbook and parameters) and how long an approval waits, fixed at submission too,
    # so that a request is decided as it was asked whatever catalog.yaml says later.
    db.execute("CREATE TABLE requests (ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id), type TEXT NOT NULL, "
               "answers TEXT NOT NULL, stages TEXT NOT NULL, plan TEXT NOT NULL, stage INTEGER, state TEXT NOT NULL, requester TEXT NOT NULL, "
               "run_id INTEGER, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    # "My requests" on the portal: a requester's tickets, however they came in (mail, the portal).
    db.execute("CREATE INDEX tickets_requester ON tickets (requester, id)")
    db.execute("CREATE INDEX watchers_who ON watchers (who, ticket_id)")  # and the tickets they watch
    # One row per approval asked (a stage of a request): pending until decided or expired.
    db.execute("CREATE TABLE approvals (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL REFERENCES tickets(id), "
               "stage INTEGER NOT NULL, "
               "name TEXT NOT NULL, approvers TEXT NOT NULL, need INTEGER NOT NULL, state TEXT NOT NULL, "
               "created_at TEXT NOT NULL, remind_at TEXT, expires_at TEXT NOT NULL, reminded_at TEXT, "
               "decided_at TEXT, reason TEXT)")
    db.execute("CREATE INDEX approvals_pending ON approvals (expires_at) WHERE state = 'pending'")
    db.execute("CREATE INDEX approvals_ticket ON approvals (ticket_id, stage)")
    db.execute("CREATE TABLE approval_votes (approval_id INTEGER NOT NULL REFERENCES approvals(id), "
               "approver TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT, at TEXT NOT NULL, PRIMARY KEY (approval_id, approver))")
    # The requester's manager approves some stages (approvers: manager).
    db.execute("ALTER TABLE users ADD COLUMN manager TEXT")
    # A queued run's parameters (a request's fulfilment: from its answers).
    db.execute("ALTER TABLE runbook_runs ADD COLUMN params TEXT")
    # The portal's sign-in: single-use links (their sha256 only) and sessions (likewise).
    db.execute("CREATE TABLE portal_links (hash TEXT PRIMARY KEY, email TEXT NOT NULL, client TEXT NOT NULL, "
               "created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT)")
    db.execute("CREATE INDEX portal_links_email ON portal_links (email, created_at)")
    db.execute("CREATE INDEX portal_links_client ON portal_links (client, created_at)")
    # `token`: the sha256 of the API token a session was opened with: revoking it ends the session.
    db.execute("CREATE TABLE portal_sessions (hash TEXT PRIMARY KEY, email TEXT, user_name TEXT, token TEXT, "
               "csrf TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, ended_at TEXT)")



def _fts_table(db: Database, name: str) -> None:
    """A full-text table with the columns title, body, tags and cis, keyed by rowid: FTS5 on
    SQLite; on PostgreSQL a generated tsvector (title A, tags B, CIs C, body D; m004's
    sdesk_english configuration, on the text cut at non-alnums) with its GIN index."""
    if not getattr(db, "postgres", False):
        db.execute(f"CREATE VIRTUAL TABLE {name} USING fts5(title, body, tags, cis, tokenize = 'porter unicode61')")
        return

    def words(column: str) -> str:
        return f"to_tsvector('sdesk_english', regexp_replace(coalesce({column}, ''), '[^[:alnum:]]+', ' ', 'g'))"

    db.execute(f"CREATE TABLE {name} (rowid BIGINT PRIMARY KEY, title TEXT, body TEXT, tags TEXT, cis TEXT, "
               "doc tsvector GENERATED ALWAYS AS ("
               f"setweight({words('title')}, 'A') || setweight({words('tags')}, 'B') || "
               f"setweight({words('cis')}, 'C') || setweight({words('body')}, 'D')) STORED)")
    db.execute(f"CREATE INDEX {name}_doc ON {name} USING GIN (doc)")


def m016_semantic(db: Database) -> None:
    # Semantic search (issue 24): one vector per ticket and per KB article (its current
    # revision), with the model that computed it: a vector of another model is stale, so a
    # change of model re-indexes. `seen`: the desk's last event when the ticket was read to be
    # indexed; an event of the ticket after it makes the vector stale. `near`: for an open
    # ticket, the resolved tickets and articles most like it, found when it was indexed, so that
    # `show` needs no model.
    db.execute("CREATE TABLE ticket_vectors (ticket_id INTEGER PRIMARY KEY REFERENCES tickets(id), model TEXT NOT NULL, "
               "seen BIGINT NOT NULL, vec BLOB NOT NULL, near TEXT)")
    db.execute("CREATE TABLE kb_vectors (article_id INTEGER PRIMARY KEY REFERENCES kb_articles(id), model TEXT NOT NULL, "
               "revision INTEGER NOT NULL, vec BLOB NOT NULL)")
    # The words of the tickets for `sdesk search`, written by `sdesk index` (never by intake, whose
    # budget is per arrival): the columns of kb_fts, the body being description and resolution.
    _fts_table(db, "ticket_fts")

STEPS = [m001_tickets_and_events, m002_alerts_and_changes, m003_mail, m004_cmdb_kb_problems, m005_drop_alerts_received,
         m006_triage, m007_oncall, m008_runbooks, m009_metrics, m010_users, m011_identity, m012_desk_state,
         m013_ticket_changes_told, m014_outbox, m015_catalog, m016_semantic]
SCHEMA_VERSION = len(STEPS)

# `PRAGMA application_id` of an sdesk database ("SDSK" in ASCII), set with the schema version: it
# tells an sdesk file from another program's SQLite database from the header alone, on every
# open. Files made before it was set are recognised by their tables and stamped once.
APPLICATION_ID = 0x5344534B


def check_version(conn: sqlite3.Connection | Connection, version: int | None = None) -> bool:
    """True when the schema is current; raises when a newer sdesk wrote this file."""
    if version is None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this sdesk understands "
            f"({SCHEMA_VERSION}); upgrade sdesk"
        )
    return version == SCHEMA_VERSION


def apply_postgres(conn: Connection) -> list[str]:
    """The pending steps on PostgreSQL, each read as PostgreSQL's (pg.ddl), in one transaction under
    the desk's write lock: DDL is transactional there, so a failed upgrade leaves the schema as it
    was, and several first opens at once make it once. `sdesk_schema` holds what SQLite's header
    holds (the application id, the steps applied)."""
    from .dialect import POSTGRESQL
    from .pg import Schema

    POSTGRESQL.begin_write(conn)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS sdesk_schema (application_id BIGINT NOT NULL, version INT NOT NULL)")
        # The ids sdesk gives itself (events, intake's tickets): SQLite's sqlite_sequence, in the
        # transaction (dialect.PostgreSQL.ids_given).
        conn.execute("CREATE TABLE IF NOT EXISTS sdesk_counters (name TEXT PRIMARY KEY, last BIGINT NOT NULL)")
        row = conn.execute("SELECT version FROM sdesk_schema").fetchone()
        done = row[0] if row else 0
        if check_version(conn, done):
            conn.execute("ROLLBACK")
            return []
        if row is None:
            conn.execute("INSERT INTO sdesk_schema VALUES (?, 0)", (APPLICATION_ID,))
        db = Schema(conn)
        for step in STEPS[done:]:
            step(db)  # type: ignore[arg-type]
        # sdesk's roles as the server's, granted every table the steps made (pg_roles): after
        # each upgrade, so a table a later step adds is granted too.
        from .pg_roles import setup

        setup(conn)
        conn.execute("UPDATE sdesk_schema SET version = ?, application_id = ?", (SCHEMA_VERSION, APPLICATION_ID))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return [step.__name__ for step in STEPS[done:]]


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply pending steps; returns the names applied (empty when another process won)."""
    from sqlite_utils import Database, Migrations

    migrations = Migrations("sdesk")
    for step in STEPS:
        migrations()(step)
    db = Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if check_version(conn):
            conn.execute("ROLLBACK")
            return []
        pending = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return pending
