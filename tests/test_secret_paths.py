"""Secrets planted through every write path the CLI offers are stored nowhere in clear.

Each path gets every phrasing of the labelled set (tests/secrets_labelled.py: a GCP service
account's JSON, a private key after its name, tokens glued to a word, PGPASSWORD=, mysql -p,
Basic auth, a URL password holding "@"...), with values of its own, so that a leak names its
path. Then the raw bytes of the database file and its WAL, `sdesk export`, `sdesk backup` and
`sdesk postmortem` of every ticket are searched for each value. Identifiers are kept as sent
(fingerprints, the requester, CI and user names: see the README) and are not planted here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from secrets_labelled import leaked, plant_all, stored_bytes

from sdesk.domain.redact import redact

Planted = list[tuple[str, str, str]]  # (phrasing, text, value)
PATHS: dict[str, Callable[..., None]] = {}


def path(name: str):
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        PATHS[name] = fn
        return fn
    return register


def _all(planted: Planted) -> str:
    """Every phrasing in one text (a comment, a description), one a paragraph."""
    return "\n\n".join(text for _, text, _ in planted)


def _short(planted: Planted, limit: int = 200) -> Planted:
    """The phrasings that fit a name (a label key, a tag: at most 200 characters, one line)."""
    return [p for p in planted if len(p[1]) <= limit and "\n" not in p[1]]


# -- the paths --------------------------------------------------------------------------------------

@path("new title")
def _(desk, planted):
    for _, text, _ in planted:
        desk.new(text)


@path("new -d")
def _(desk, planted):
    desk.new("description", "-d", _all(planted))


@path("new -l values")
def _(desk, planted):
    desk.new("labels", *[a for i, (_, text, _) in enumerate(planted) for a in ("-l", f"k{i}={text}")])


@path("new -t tags")
def _(desk, planted):
    desk.new("tags", *[a for _, text, _ in _short(planted) for a in ("-t", text)])


@path("new JSON: title, description, label keys and values")
def _(desk, planted):
    labels = {text: "v" for _, text, _ in _short(planted)} | {f"k{i}": text for i, (_, text, _) in enumerate(planted)}
    desk("new", "-", input=json.dumps({"title": planted[3][1], "description": _all(planted), "labels": labels}))


@path("new --jsonl")
def _(desk, planted):
    lines = [{"title": text, "fingerprint": f"jsonl-{i}"} for i, (_, text, _) in enumerate(planted)]
    lines.append({"title": "jsonl", "description": _all(planted), "labels": {text: "v" for _, text, _ in _short(planted)}})
    desk("new", "--jsonl", "-", input="".join(json.dumps(line) + "\n" for line in lines))


@path("comment")
def _(desk, planted):
    desk("comment", str(desk.new("comment")), _all(planted))


@path("update --title/--description/-l")
def _(desk, planted):
    ticket = str(desk.new("update"))
    desk("update", ticket, "--description", _all(planted), "--title", planted[4][1],
         *[a for i, (_, text, _) in enumerate(planted) for a in ("-l", f"u{i}={text}")])


@path("resolve -r")
def _(desk, planted):
    desk("resolve", str(desk.new("resolve")), "-r", _all(planted))


@path("resolve -r --kb")
def _(desk, planted):
    desk("resolve", str(desk.new("resolve kb")), "-r", _all(planted), "--kb")


@path("change new --title")
def _(desk, planted):
    for _, text, _ in planted:
        desk("change", "new", "--title", text)


@path("silence add -c")
def _(desk, planted):
    desk("silence", "add", "-m", "alertname=Planted", "--for", "1h", "-c", _all(planted))


@path("cmdb add --attr")
def _(desk, planted):
    desk("cmdb", "add", "planted-api", "--type", "service",
         *[a for i, (_, text, _) in enumerate(planted) for a in ("--attr", f"a{i}={text}")])


@path("cmdb import attributes (keys and values)")
def _(desk, planted):
    attributes = {f"a{i}": text for i, (_, text, _) in enumerate(planted)} | {text: "v" for _, text, _ in _short(planted)}
    cmdb = desk.tmp / "cmdb.yaml"
    cmdb.write_text(json.dumps({"cis": [{"name": "planted-db", "type": "database", "attributes": attributes}]}))
    desk("cmdb", "import", str(cmdb))


@path("oncall override -r")
def _(desk, planted):
    desk("oncall", "override", "--team", "platform", "--user", "erin", "--from", "2026-11-26T10:00Z",
         "--to", "2026-11-26T20:00Z", "-r", _all(planted))


@path("runbook reject -r")
def _(desk, planted):
    ticket = desk.new("gated run", "--ci", "planted-gated")
    waiting = desk.json("runbook", "run", "gated", "--ticket", str(ticket), "--yes")
    desk("runbook", "reject", str(waiting["id"]), "-r", _all(planted))


@path("runbook disable -r")
def _(desk, planted):
    desk("runbook", "disable", "gated", "-r", _all(planted))


def _alert(planted: Planted, name: str) -> dict:
    labels = {"alertname": name, **{f"l{i}": text for i, (_, text, _) in enumerate(planted)},
              **{text: "v" for _, text, _ in _short(planted)}}
    annotations = {"summary": planted[5][1], "description": _all(planted), **{text: "v" for _, text, _ in _short(planted)}}
    return {"status": "firing", "labels": labels, "annotations": annotations}


@path("alertmanager labels and annotations (keys and values)")
def _(desk, planted):
    desk("new", "--format", "alertmanager", "-", input=json.dumps({"version": "4", "status": "firing",
                                                                  "alerts": [_alert(planted, "PlantedAM")]}))


@path("grafana labels and annotations (keys and values)")
def _(desk, planted):
    desk("new", "--format", "grafana", "-", input=json.dumps({"status": "firing", "orgId": 1,
                                                             "alerts": [_alert(planted, "PlantedGrafana")]}))


@path("pagerduty summary and custom details (keys and values)")
def _(desk, planted):
    details = {f"d{i}": text for i, (_, text, _) in enumerate(planted)} | {text: "v" for _, text, _ in _short(planted)}
    desk("new", "--format", "pagerduty", "-", input=json.dumps({
        "routing_key": "r", "event_action": "trigger",
        "payload": {"summary": planted[6][1], "source": "planted", "severity": "critical", "custom_details": details}}))


def _mail(subject: str, body: str, msgid: str, attachments: list[str] = (), reply_to: str | None = None) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "ann@example.com", "desk@example.com", subject, f"<{msgid}>"
    if reply_to:
        msg["In-Reply-To"] = msg["References"] = f"<{reply_to}>"
    msg.set_content(body)
    for name in attachments:
        msg.add_attachment(b"%PDF-1.4 planted", maintype="application", subtype="pdf", filename=name)
    return msg.as_string()


@path("email subject, body and attachment names")
def _(desk, planted):
    one_line = [text for _, text, _ in _short(planted, 900)]
    # A file name keeps what follows its last "/" (mail.py): those with none are planted whole.
    desk("new", "--format", "email", "-", input=_mail(one_line[0], _all(planted), "planted-1@example.com",
                                                       [t for t in one_line if "/" not in t and "\\" not in t]))
    for i, text in enumerate(one_line[1:]):
        desk("new", "--format", "email", "-", input=_mail(text, "subject only", f"planted-s{i}@example.com"))


@path("email reply (a comment)")
def _(desk, planted):
    desk("new", "--format", "email", "-", input=_mail("Printer", "it jams", "reply-0@example.com"))
    desk("new", "--format", "email", "-", input=_mail("Re: Printer", _all(planted), "reply-1@example.com",
                                                       reply_to="reply-0@example.com"))


@path("csat -c and worklog -n")
def _(desk, planted):
    ticket = str(desk.new("rated"))
    desk("worklog", ticket, "30m", "-n", _all(planted))
    desk("resolve", ticket, "-r", "fixed it")
    desk("csat", ticket, "4", "-c", _all(planted))


@path("problem new/update/resolve")
def _(desk, planted):
    incident = str(desk.new("incident under a problem"))
    desk("problem", "new", "--from", incident, "--title", planted[7][1], "--root-cause", _all(planted))
    problem = desk.json("list", "--kind", "problem")[0]["id"]
    desk("problem", "update", str(problem), "--workaround", _all(planted))
    desk("problem", "resolve", str(problem), "--fix", _all(planted))


@path("kb add")
def _(desk, planted):
    article = desk.tmp / "article.md"
    article.write_text(f"# {planted[8][1]}\n\n{_all(planted)}\n")
    desk("kb", "add", str(article), "--tag", "planted")


@path("user token --label")
def _(desk, planted):
    desk("user", "add", "tester", "--role", "admin")
    for _, text, _ in _short(planted):
        desk("user", "token", "tester", "--label", text)


# -- every table a store writes ------------------------------------------------------------------

SDESK = Path(__file__).resolve().parents[1] / "sdesk"
# Each table the store writes, and how its text is kept free of secrets. A new table fails
# test_every_table_the_store_writes_is_accounted_for until it is added here, with its reason.
WRITTEN = {
    "tickets": "new tickets redacted in _Triggers.add; every change through _Tx.clean",
    "alerts": "labels and annotations redacted (_redacted_json), keys too",
    "attachments": "names through _Tx.clean",
    "changes": "titles and data through _Tx.clean",
    "cis": "attributes through _Tx.clean; names are identifiers",
    "ci_aliases": "identifiers",
    "ci_relations": "ids",
    "classifier_models": "derived from stored tickets or a CSV file, redacted by classifier.train",
    "classifier_terms": "derived from stored tickets or a CSV file, redacted by classifier.train",
    "csat": "comments through _Tx.clean",
    "event_tombstones": "ids and hashes",
    "purge_ids": "ids",
    "kb_articles": "through _Tx.clean (_kb_clean)",
    "kb_fts": "the article as cleaned",
    "kb_revisions": "the article as cleaned",
    "kb_links": "ids",
    "mail_messages": "message ids",
    "oncall_overrides": "reasons through _Tx.clean",
    "pages": "notifier errors through _Tx.clean",
    "problems": "texts through _Tx.clean",
    "runbook_runs": "plans, reasons and rollbacks through _Tx.clean",
    "runbook_steps": "commands and output through _Tx.clean",
    "runbook_switches": "reasons through _Tx.clean",
    "silences": "comments through _Tx.clean; matchers are patterns",
    "sqlite_sequence": "ids",
    "sdesk_schema": "the schema's version and application id (PostgreSQL's stand-in for SQLite's header)",
    "sdesk_counters": "table names and ids only (PostgreSQL's stand-in for sqlite_sequence)",
    "ticket_context": "derived from stored, redacted rows (CMDB, KB, tickets)",
    "users": "identifiers",
    "user_queue_roles": "identifiers",
    "refusals": "actors and OS logins (identifiers) and counts",
    "api_tokens": "labels through _Tx.clean; the token's hash",
    "worklog": "notes through _Tx.clean",
    "desk_state": "values through _Tx.clean (a config path, time stamps)",
    "outbox": "contexts made from the events as redacted; the rendered text redacted again as it is sent",
    "watchers": "email addresses and user names (identifiers)",
    "incident_updates": "texts through _Tx.clean",
    "requests": "answers and the fulfilment plan through _Tx.clean; stages name users (identifiers)",
    "approvals": "stage names from catalog.yaml, approvers (identifiers); reasons through _Tx.clean",
    "approval_votes": "approvers (identifiers); reasons through _Tx.clean",
    "portal_links": "an email address, a client's IP address, the link's sha256 (never the link)",
    "portal_sessions": "an email address or a user name, the session's sha256, a CSRF token",
    "ticket_vectors": "vectors computed from stored, redacted tickets; neighbours are ids and scores",
    "kb_vectors": "vectors computed from stored articles (through _Tx.clean)",
    "ticket_fts": "copied from stored, redacted tickets (title, description, resolution, tags, CI)",
}


def test_every_table_the_store_writes_is_accounted_for():
    """The census of write paths: every INSERT, REPLACE and UPDATE in the store names a table
    listed in WRITTEN (events are written by _Tx alone, which redacts them); and no sub-store
    redacts on its own, beside _Tx.clean."""
    written = set()
    for source in [SDESK / "store.py", *SDESK.glob("storage/*.py")]:
        text = source.read_text()
        written |= set(re.findall(r"(?:INSERT(?: OR \w+)? INTO|REPLACE INTO|UPDATE)\s+\"?([a-z_]+)", text))
        # Tx.clean itself (rows.py); new tickets' text, redacted once as intake and problems
        # store it (tickets.py); runbooks' stored_plan.
        if source.name not in ("store.py", "rows.py", "tickets.py", "runbooks.py"):
            assert "redact" not in text.replace("redacted", ""), f"{source.name}: redact through tx.clean"
    assert written - set(WRITTEN) == set(), "tables written with no word on their secrets"
    assert len(written) >= 25


def test_an_event_is_redacted_whatever_the_write_forgot(db_path):
    """_Tx.event redacts every string of its data, keys too: a write that cleans nothing (here
    Store.record, as a restore uses it) still stores no secret, and says so on the timeline."""
    from sdesk.store import Store

    planted = plant_all("record")
    with Store(db_path) as store:
        store.record("tester", kind="restored", data={"note": _all(planted), **{text: "v" for _, text, _ in _short(planted)}})
    raw = stored_bytes(db_path)
    assert [kind for kind, _, value in planted if leaked(value, raw)] == []
    with Store(db_path) as store:
        kinds = store.conn.execute("SELECT data FROM events WHERE kind = 'redacted'").fetchone()[0]
    assert "private_key" in kinds and "aws_key" in kinds


def _training_csv(folder: Path, planted: Planted) -> Path:
    """A labelled CSV file of 2 classes, each planted text in two rows, one label a secret too."""
    import csv

    path = folder / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        rows = [[f"{text} (printer {i})", "Hardware" if i else planted[0][1]] for i in range(2) for _, text, _ in planted]
        csv.writer(f).writerows([["text", "label"], *rows])
    return path


@path("triage train --from-csv")
def _(desk, planted):
    desk("triage", "train", "--from-csv", str(_training_csv(desk.tmp, planted)), "--text", "text", "--label", "label")


def test_training_rows_are_redacted_before_terms_are_made(cli, tmp_path, db_path):
    """`triage train --from-csv` reads the file raw: its words became classifier terms as they
    were (a token in a row was a term in classifier_terms, and in `sdesk export`)."""
    planted = plant_all("triage train")
    out = cli.json("triage", "train", "--from-csv", str(_training_csv(tmp_path, planted)), "--text", "text",
                   "--label", "label")
    assert out["category"]["docs"] == 2 * len(planted) and "Hardware" in out["category"]["classes"]
    export = tmp_path / "export.jsonl"
    cli("export", "--jsonl", "--out", str(export))
    raw = stored_bytes(db_path)
    assert [kind for kind, _, value in planted if leaked(value, raw) or leaked(value, export.read_bytes())] == []
    assert b"classifier_terms" in export.read_bytes() and b"printer" in export.read_bytes()  # the terms are exported


# -- the search -------------------------------------------------------------------------------------

@pytest.fixture
def desk(cli, tmp_path, monkeypatch):
    config = tmp_path / "config"
    (config / "runbooks").mkdir(parents=True)
    (config / "oncall.yaml").write_text((Path(__file__).resolve().parents[1] / "examples" / "desk" / "oncall.yaml").read_text())
    (config / "runbooks" / "gated.yaml").write_text('steps:\n  - approve: "Go?"\n  - run: ["true"]\n')
    monkeypatch.setenv("SDESK_CONFIG", str(config))
    cli.tmp = tmp_path
    return cli


def _stored(desk, db: Path) -> dict[str, bytes]:
    """Everything the desk keeps or hands out: the file and its WAL, an export, a backup, and
    the postmortem of every ticket."""
    out = {"database": stored_bytes(db)}  # the file, its WAL and -shm; or on PostgreSQL every stored value
    export = desk.tmp / "export.jsonl"
    desk("export", "--jsonl", "--out", str(export))
    out["export"] = export.read_bytes()
    backup = desk.tmp / "backup.db"
    desk("backup", str(backup))
    out["backup"] = backup.read_bytes()
    tickets = desk.json("list", "--all", "--limit", "0")
    out["postmortem"] = "\n".join(desk("postmortem", f"SD-{t['id']}").stdout for t in tickets
                                  if t["kind"] in ("incident", "problem")).encode()
    return out


@pytest.mark.slow
def test_no_secret_reaches_the_database_an_export_a_backup_or_a_postmortem(desk, db_path):
    planted = {name: plant_all(name) for name in PATHS}
    for name, plant in PATHS.items():
        plant(desk, planted[name])
    stored = _stored(desk, db_path)
    rows, leaks = [], []
    for name, plants in planted.items():
        where = {(kind, place) for kind, _, value in plants for place, data in stored.items() if leaked(value, data)}
        rows.append((name, len(plants), len({kind for kind, _ in where})))
        leaks += [f"{name}: {kind} in the {place}" for kind, place in sorted(where)]
    table = "\n".join(f"  {name:58s} planted {n:3d}  leaked {k:3d}" for name, n, k in rows)
    print(f"\nsecrets: {sum(r[1] for r in rows)} planted on {len(rows)} write paths, "
          f"{sum(r[2] for r in rows)} leaked\n{table}")
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(leaks[:60]) + f"\n{table}"


# -- identifiers: kept as given, so a secret in one is refused --------------------------------------

def _one_line_refusal(result) -> None:
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
        (result.exit_code, result.stderr)


def test_a_ci_team_or_alias_that_holds_a_secret_is_refused(cli, tmp_path, db_path):
    """`cmdb add --team/--alias` and `cmdb import` stored them raw (a user's --team was already
    refused): every phrasing of the labelled set that fits the field is one bad-input line."""
    planted = _short(plant_all("ci identifiers"))
    refused = 0
    for i, (_, text, value) in enumerate(planted):
        _one_line_refusal(cli("cmdb", "add", f"web-{i}", "--type", "host", "--team", text, ok=False))
        (tmp_path / "cis.yaml").write_text(json.dumps({"cis": [{"name": f"db-{i}", "type": "database", "team": text}]}))
        _one_line_refusal(cli("cmdb", "import", str(tmp_path / "cis.yaml"), ok=False))
        # The phrasing, and the token alone where it is one without its context (most are valid names).
        for alias in (text, value) if redact(value)[1] else (text,):
            result = cli("cmdb", "add", f"app-{i}", "--type", "service", "--alias", alias, ok=False)
            assert result.exit_code == 2 and result.stderr.count("\n") == 1  # not a CI name, or a secret
            refused += "holds a secret" in result.stderr
    assert refused >= 15  # ghp_..., xoxb-..., AKIA..., hvs...., sk-..., whsec_...
    cli("cmdb", "add", "web-ok", "--type", "host", "--team", "payments", "--alias", "web-ok-1")
    assert [c["name"] for c in cli.json("cmdb", "list")] == ["web-ok"]
    raw = stored_bytes(db_path)
    assert [kind for kind, _, value in planted if leaked(value, raw)] == []


def test_an_actor_that_holds_a_secret_is_refused(cli, db_path):
    """`--as` (or SDESK_USER) on a desk with no users was stored raw on every event and row."""
    planted = _short(plant_all("actor"))
    cli.new("first")
    for _, text, _ in planted:
        _one_line_refusal(cli("--as", text, "comment", "SD-1", "hello", ok=False))
        _one_line_refusal(cli("--as", text, "new", "a ticket", ok=False))
    assert cli("--as", "dave", "comment", "SD-1", "hello").exit_code == 0
    raw = stored_bytes(db_path)
    assert [kind for kind, _, value in planted if leaked(value, raw)] == []


def test_a_message_id_that_holds_a_secret_is_stored_as_its_hash_and_still_threads(cli, db_path):
    """A Message-ID (chosen by the sender) was stored as sent in mail_messages; one that holds a
    secret is kept as its hash, so a reply naming it still threads onto the ticket."""
    planted = [p for p in _short(plant_all("message-id")) if " " not in p[2] and redact(p[2])[1]]
    assert len(planted) >= 15
    for i, (_, _, value) in enumerate(planted):
        msgid = f"{value}@mail.example.com"
        first = cli.json("new", "--format", "email", "-", input=_mail(f"Printer {i}", "it jams", msgid))
        again = cli.json("new", "--format", "email", "-", input=_mail(f"Re: Printer {i}", "still jams", f"r{i}@x",
                                                                      reply_to=msgid))
        assert (first["action"], again["action"], again["ticket"]) == ("created", "commented", first["ticket"]), again
    raw = stored_bytes(db_path)
    assert [kind for kind, _, value in planted if leaked(value, raw)] == []
