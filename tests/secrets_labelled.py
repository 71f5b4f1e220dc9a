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


# The hostile tester's second round: 34 phrasings of 61 that leaked after the first fix.
HEX = "0123456789abcdef"
B62 = ALNUM


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _putty(rng: random.Random) -> tuple[str, str]:
    private = [_r(rng, B64, 64) for _ in range(4)]
    text = ("PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: deploy@bastion\nPublic-Lines: 2\n"
            + "\n".join(_r(rng, B64, 64) for _ in range(2)) + "\nPrivate-Lines: 4\n" + "\n".join(private)
            + "\nPrivate-MAC: " + _r(rng, HEX, 64))
    return text, private[2]


def _sas(rng: random.Random) -> tuple[str, str]:
    sig = _r(rng, B62 + "%", 40) + "%3D"
    return (f"https://shopprod.blob.core.windows.net/backups/db.bak?sv=2022-11-02&ss=b&srt=o&sp=r"
            f"&se=2026-12-31T00:00:00Z&spr=https&sig={sig}"), sig


def _aws_pair(rng: random.Random) -> tuple[str, str]:
    secret = _r(rng, B62 + "/+", 40)
    key = "AKIA" + _r(rng, UPPER, 16)
    return rng.choice(["{k},{s}", "{k} {s}", "{k}:{s}", "key {k} secret {s}"]).format(k=key, s=secret), secret


def _teams(rng: random.Random) -> str:
    uuid = lambda: "-".join(_r(rng, HEX, n) for n in (8, 4, 4, 4, 12))  # noqa: E731
    return f"{uuid()}@{uuid()}/IncomingWebhook/{_r(rng, HEX, 32)}/{uuid()}"


PHRASINGS.update({
    "curl -u user:password": _one(_password, "curl -u admin:{v} https://jenkins.internal/api/json"),
    "curl --password X": _one(_password, "curl --user admin --password {v} https://nexus.internal/"),
    "redis://:password@ (empty user)": _one(_password, "REDIS_URL=redis://:{v}@cache-1:6379/0"),
    "docker login -p": _one(_password, "docker login -u bob -p {v} registry.internal:5000"),
    "Cookie: sessionid=": _one(lambda r: _r(r, HEX, 32), "Cookie: sessionid={v}; csrftoken=abc"),
    "Set-Cookie: session=": _one(lambda r: _r(r, B62 + "-_", 40), "Set-Cookie: session={v}; Path=/; HttpOnly"),
    "ldapsearch -w": _one(_password, "ldapsearch -x -D cn=admin,dc=corp -w {v} -b dc=corp"),
    "smbclient -U user%password": _one(_password, "smbclient //fs1/share -U bob%{v}"),
    ".netrc machine login password": _one(_password, "machine git.internal login deploy password {v}"),
    "password => 'X' (Ruby, Perl)": _one(_password, ":password => '{v}',"),
    "ALTER USER ... PASSWORD 'X'": _one(_password, "ALTER USER app WITH PASSWORD '{v}';"),
    "IDENTIFIED BY 'X'": _one(_password, "CREATE USER 'app'@'%' IDENTIFIED BY '{v}';"),
    "SECRET_KEY_BASE=": _one(lambda r: _r(r, HEX, 128), "SECRET_KEY_BASE={v}"),
    "Passwort=": _one(_password, "Passwort={v}"),
    "mot de passe:": _one(_password, "mot de passe : {v}"),
    "contraseña:": _one(_password, "contraseña: {v}"),
    "senha:": _one(_password, "senha: {v}"),
    "wachtwoord:": _one(_password, "wachtwoord: {v}"),
    "пароль:": _one(_password, "пароль: {v}"),
    "Vault hvs.": _one(lambda r: "hvs." + _r(r, B62 + "_-", 90), "VAULT_TOKEN {v}"),
    "Vault hvb.": _one(lambda r: "hvb." + _r(r, B62 + "_-", 130), "batch token {v}"),
    "Slack xapp-": _one(lambda r: f"xapp-1-A{_r(r, UPPER, 10)}-{r.randint(10**12, 10**13)}-{_r(r, HEX, 64)}", "app token {v}"),
    "OpenAI sk- + 48": _one(lambda r: "sk-" + _r(r, B62, 48), "openai {v}"),
    "Stripe whsec_": _one(lambda r: "whsec_" + _r(r, B62, 32), "webhook signing {v}"),
    "Square sq0atp-": _one(lambda r: "sq0atp-" + _r(r, B62 + "-_", 22), "square {v}"),
    "Square sq0csp-": _one(lambda r: "sq0csp-" + _r(r, B62 + "-_", 43), "square {v}"),
    "Mailgun key-": _one(lambda r: "key-" + _r(r, HEX, 32), "mailgun {v}"),
    "Terraform .atlasv1.": _one(lambda r: _r(r, B62, 14) + ".atlasv1." + _r(r, B62, 67), "TFE token {v}"),
    "AGE-SECRET-KEY-1": _one(lambda r: _r(r, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58), "AGE-SECRET-KEY-1{v}"),
    "PuTTY private key": _putty,
    "Azure SAS sig=": _sas,
    "Discord webhook": _one(lambda r: f"{r.randint(10**17, 10**18)}/{_r(r, B62 + '-_', 68)}",
                            "https://discord.com/api/webhooks/{v}"),
    "Teams webhook": _one(_teams, "https://contoso.webhook.office.com/webhookb2/{v}"),
    "AWS secret next to AKIA": _aws_pair,
    "aws_secret_access_key": _one(lambda r: _r(r, B62 + "/+", 40), "aws_secret_access_key = {v}"),
})
SECOND_ROUND = list(PHRASINGS)[-35:]


def plant_all(seed: str) -> list[tuple[str, str, str]]:
    """(kind, text, value) of every phrasing, with values of their own for `seed` (a path)."""
    rng = random.Random(seed)
    return [(kind, *plant(rng)) for kind, plant in PHRASINGS.items()]


def stored_bytes(db: Path | str) -> bytes:
    """Everything a desk holds, to search for a secret: a SQLite desk's file with its -wal and
    -shm as bytes; a PostgreSQL desk's (a URL) every value of every row of every table in its
    schema, as text (bytea as its bytes), one value a line."""
    if isinstance(db, Path):
        return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    import psycopg

    out: list[bytes] = []
    with psycopg.connect(db, autocommit=True) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                              "ORDER BY tablename")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out += [v if isinstance(v, bytes) else bytes(v) if isinstance(v, memoryview) else str(v).encode()
                        for v in row if v is not None]
    return b"\n".join(out)


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
