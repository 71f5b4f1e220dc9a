"""A labelled set for redaction: realistic secrets in the phrasings people paste them in (each
with the value that must not survive), and the ordinary texts that must come through unchanged.
The secrets are synthetic: random, in each vendor's shape."""

from __future__ import annotations

import base64
import csv
import email
import io
import json
import random
import re
import string
import zipfile
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"


def _luhn(rng: random.Random, length: int = 16) -> str:
    digits = [4] + [rng.randint(0, 9) for _ in range(length - 2)]
    for check in range(10):
        candidate = digits + [check]
        total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d for i, d in enumerate(reversed(candidate)))
        if total % 10 == 0:
            return "".join(map(str, candidate))
    raise AssertionError


def _b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _key_body(rng: random.Random, lines: int = 3) -> list[str]:
    return ["MIIE" + "".join(rng.choice(B64) for _ in range(60))] + \
        ["".join(rng.choice(B64) for _ in range(64)) for _ in range(lines - 1)]


def _password(rng: random.Random, n: int = 14) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(n - 3)) + rng.choice("!#%") + str(rng.randint(10, 99))


def _gcp(rng: random.Random) -> tuple[str, str]:
    body = _key_body(rng)
    key = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n"
    doc = {"type": "service_account", "project_id": "shop-prod", "private_key_id": "".join(rng.choice("0123456789abcdef") for _ in range(40)),
           "private_key": key, "client_email": "deploy@shop-prod.iam.gserviceaccount.com"}
    return json.dumps(doc), body[1]


def _named_key(rng: random.Random) -> tuple[str, str]:
    body = _key_body(rng)
    return "private_key: -----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END RSA PRIVATE KEY-----", body[1]


def _escaped_pkcs8(rng: random.Random) -> tuple[str, str]:
    body = _key_body(rng)
    return '{"key": "-----BEGIN PRIVATE KEY-----\\n' + "\\n".join(body) + '\\n-----END PRIVATE KEY-----\\n"}', body[1]


def _one(make: Callable[[random.Random], str], template: str) -> Callable[[random.Random], tuple[str, str]]:
    def plant(rng: random.Random) -> tuple[str, str]:
        value = make(rng)
        return template.format(v=value), value
    return plant


def _basic(rng: random.Random) -> tuple[str, str]:
    value = base64.b64encode(f"svc-deploy:{_password(rng)}".encode()).decode()
    return f"curl -H 'Authorization: Basic {value}' https://api.internal/v1/orders", value


def _jwt(rng: random.Random) -> str:
    return (f"{_b64url({'alg': 'HS256', 'typ': 'JWT'})}.{_b64url({'sub': rng.randint(1, 10**9), 'role': 'admin'})}."
            + "".join(rng.choice(ALNUM + "-_") for _ in range(43)))


def _card_dots(rng: random.Random) -> str:
    n = _luhn(rng)
    return ".".join(n[i:i + 4] for i in range(0, 16, 4))


# kind -> plant(rng) -> (text as pasted, the value that must not be stored)
PHRASINGS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "gcp service account json": _gcp,
    "private_key: -----BEGIN": _named_key,
    "pkcs8 with escaped newlines in json": _escaped_pkcs8,
    "creds_AKIA": _one(lambda r: "AKIA" + "".join(r.choice(UPPER) for _ in range(16)), "export creds_{v}"),
    "jwt_eyJ": _one(_jwt, "cookie jwt_{v} expired"),
    "SLACK_xoxb-": _one(lambda r: f"xoxb-{r.randint(10**10, 10**11)}-{r.randint(10**11, 10**12)}-"
                        + "".join(r.choice(ALNUM) for _ in range(24)), "SLACK_{v}"),
    "keysk_live_": _one(lambda r: "sk_live_" + "".join(r.choice(ALNUM) for _ in range(24)), "stripe key{v}"),
    "PGPASSWORD=": _one(_password, "PGPASSWORD={v} psql -h db-billing-1 -U app"),
    "mysql -pSECRET": _one(_password, "mysql -u root -p{v} -h db-orders-2 orders"),
    "API key: ...": _one(lambda r: "".join(r.choice("0123456789abcdef") for _ in range(32)), "API key: {v}"),
    "URL password with @": _one(lambda r: _password(r, 8) + "@" + _password(r, 6), "postgres://app:{v}@db-orders-1:5432/orders"),
    "Authorization: Basic": _basic,
    "sk-proj-": _one(lambda r: "sk-proj-" + "".join(r.choice(ALNUM + "-_") for _ in range(64)), "OPENAI_API_KEY {v}"),
    "npm token": _one(lambda r: "npm_" + "".join(r.choice(ALNUM) for _ in range(36)), "//registry.npmjs.org/:_authToken {v}"),
    "card with dots": _one(_card_dots, "card {v} exp 09/28"),
    "the password is ...": _one(_password, "the password is {v} for the shared mailbox"),
    "passwd: '...'": _one(lambda r: _password(r, 8) + " " + _password(r, 6), "passwd: '{v}'"),
    "?access_token=": _one(lambda r: "ya29." + "".join(r.choice(ALNUM + "-_") for _ in range(40)),
                           "GET https://api.example.com/v2/me?access_token={v}&fields=id"),
    "ghp_": _one(lambda r: "ghp_" + "".join(r.choice(ALNUM) for _ in range(36)), "git clone https://x:{v}@github.com/o/r"),
    "password=": _one(_password, "DB_PASSWORD={v}"),
    "Bearer": _one(lambda r: "".join(r.choice(ALNUM + "-._~") for _ in range(40)), "Authorization: Bearer {v}"),
}


def plant_all(seed: str) -> list[tuple[str, str, str]]:
    """(kind, text, value) of every phrasing, with values of their own for `seed` (a path)."""
    rng = random.Random(seed)
    return [(kind, *plant(rng)) for kind, plant in PHRASINGS.items()]


def leaked(value: str, stored: str | bytes) -> bool:
    """Whether value survives in stored, whole or in part: any 12 characters of it in a row, or
    any piece of it between separators ("@", ":", "."...) of 5 characters or more (a secret cut
    in two by a redaction that stopped short leaks its rest). Shorter pieces of random values
    turn up by chance in the hashes a desk stores."""
    if isinstance(stored, bytes):
        stored = stored.decode("utf-8", "replace")
    windows = {value[i:i + 12] for i in range(0, max(1, len(value) - 11))}
    pieces = {p for p in re.split(r"[\s@:./_\-]+", value) if len(p) >= 5}
    return any(w in stored for w in windows | pieces)


# -- ordinary text ----------------------------------------------------------------------------------

ORDINARY = [
    "Password reset required for j.smith", "My password is expired, please help", "Reset my token please",
    "your password is about to expire in 3 days", "The password is not working since Monday",
    "Order 1234 5678 9012 3456 not delivered", "Call me at +44 20 7946 0958",
    "Disk at 91% on db-2 since 2026-11-26 10:00:00", "Build 20261126.3 failed on commit 8a07086b74f3ba78",
    "Secret Santa sign-up form is broken", "Login fails with error code 0x80070005",
    "API latency p99 1200ms (SLO 800ms)", "basic questions about the VPN client", "token bucket rate limiter drops 5% of requests",
    "Authorization: required for the finance share", "mysql replication lag on db-orders-2 is 340 s",
    "see https://grafana.example.com/d/abc?orgId=1&var-host=db-1", "bypass: enabled for the maintenance window",
    "timestamp 1700000000.123456 in the log", "API key rotation is due next week", "pass: 3 of 5 checks",
    "max_tokens: 1024 in the config", "private key of the CA is in the vault (see runbook)",
    "Please email someone@example.com about the access key request",
]


def corpus_texts() -> Iterator[str]:
    """Every text of the shared corpus (tickets, email subjects and bodies, each string of the
    alert payloads), read in place."""
    csv.field_size_limit(10**8)
    tickets = CORPUS / "tickets"
    for name in ("it_service_tickets_v3_sample_300_per_class.csv", "endava_support_tickets_subset_5431.csv"):
        with (tickets / name).open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield from (v for v in row.values() if v)
    with zipfile.ZipFile(tickets / "it_service_ticket_classification_v3_kaggle_cc0.zip") as z:
        for name in z.namelist():
            if name.endswith(".csv"):
                for row in csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8")):
                    yield from (v for v in row.values() if v)
    for path in sorted(CORPUS.rglob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        try:
            yield str(msg.get("subject", ""))
        except (ValueError, LookupError):
            pass
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                try:
                    yield part.get_content()
                except (LookupError, UnicodeError, ValueError):
                    pass
    for path in sorted(CORPUS.rglob("*.json*")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            yield from _strings(json.loads(text))
        except ValueError:
            yield text


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
