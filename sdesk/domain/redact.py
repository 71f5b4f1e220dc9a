"""Secrets out before anything is stored: each is replaced by `[REDACTED:kind]`.

Intake runs this on every field of tens of thousands of tickets a second, so a cheap test of
hints (might_hold_secrets) lets ordinary text through unscanned, and a text that holds hints is
scanned once by one regular expression combining the patterns its hints call for. Each
alternative is a named group; where only part of a match is secret (the value of
`password=...`, the password of a URL), the group `<kind>_v` marks it. Some matches are checked
further (_is_secret): a card number must pass the Luhn check, Basic credentials must decode to
`user:password`, a word after "password is" must not be plain English. The store calls this on
every write (store.py: _Tx.clean, _Tx.event). Pure: no I/O.
"""

import functools
import re
from typing import Any

# What follows a key name: ":", "=", "=>", ":=" or "is", then the value (to the closing quote
# when quoted). A private key block after the name is left to private_key.
_VALUE = (r"\b(?:\\?[\"'])?\s*(?:=>|:=|[:=]|\bis\b)\s*(?:\\?[\"'])?)(?!-----BEGIN|(?i:bearer|basic|token)\s)"
          r"(?P<{kind}_v>(?<=')[^'\n]{{4,200}}(?=')|(?<=\")[^\"\n\\]{{4,200}}(?=\\?\")|[^\s\"',;\\]{{4,}})")

_PATTERNS = {
    "private_key": r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    # Vendor tokens have prefixes no word has, so they are found glued to a word too
    # (`creds_AKIA...`, `SLACK_xoxb-...`, `keysk_live_...`): no word boundary before them, nor
    # after those of a fixed length (two keys glued together are two keys).
    # The 40-character secret access key has no shape of its own: it is found beside its key id.
    "aws_key": (r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}"
                r"(?:(?P<aws_key_gap>[ \t,:;|/]{1,3}|\s{1,3}(?i:secret)\s{1,3})(?P<aws_key_s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=]))?"),
    "github_token": r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9])",
    "gitlab_token": r"gl(?:pat|dt|rt|cbt|ptt|ft|imt|oas|soat)-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-\d-[A-Za-z0-9\-]{20,}",
    "slack_webhook": r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_\-]{20,}",
    "google_api_key": r"AIza[0-9A-Za-z_\-]{35}",
    "stripe_key": r"(?:(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}|whsec_[0-9A-Za-z]{24,})(?![0-9A-Za-z])",
    "openai_key": (r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"
                   r"|(?<![\w\-])sk-[A-Za-z0-9]{48}(?![A-Za-z0-9])"),
    "vault_token": r"hv[sbr]\.[A-Za-z0-9_\-]{24,}",
    "square_token": r"sq0(?:atp|csp|idp)-[A-Za-z0-9_\-]{22,}",
    "mailgun_key": r"key-[0-9a-f]{32}(?![0-9a-f])",
    "terraform_token": r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-=]{60,}",
    "age_key": r"AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}",
    # The whole file from its header to its MAC: the private lines are not marked apart.
    "putty_key": r"PuTTY-User-Key-File-\d:[\s\S]*?(?:Private-(?:MAC|Hash):[ \t]*[0-9a-fA-F]+|\Z)",
    "discord_webhook": r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{20,}",
    "teams_webhook": (r"https://[A-Za-z0-9\-]{1,64}\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/\-]{20,}"
                      r"|https://outlook\.office(?:365)?\.com/webhook/[A-Za-z0-9@/\-]{20,}"),
    # An Azure shared access signature: the signature is what grants, the rest is its scope.
    "sas_signature": r"[?&]sig=(?P<sas_signature_v>[A-Za-z0-9%+/=]{20,})",
    "anthropic_key": r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_\-]{20,}",
    "npm_token": r"npm_[A-Za-z0-9]{36}",
    "pypi_token": r"pypi-AgE[A-Za-z0-9_\-]{50,}",
    "huggingface_token": r"hf_[A-Za-z0-9]{34,}(?![A-Za-z0-9])",
    "sendgrid_key": r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
    "telegram_token": r"(?<!\d)\d{8,10}:AA[A-Za-z0-9_\-]{33}",
    "digitalocean_token": r"do[por]_v1_[a-f0-9]{64}",
    "shopify_token": r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    "jwt": r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    # The header's value whatever its scheme; a value without a digit must be long (see _scan).
    "authorization": (r"(?i:(?:proxy-)?authorization\b(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?(?:[a-z\-]{2,20}\s+)?)"
                      r"(?P<authorization_v>[^\s\"',;\\]{8,})"),
    "bearer_token": r"(?i:bearer\s+)(?P<bearer_token_v>[A-Za-z0-9\-._~+/]{16,}=*)",
    # Only what decodes to user:password (checked in _scan): "basic" is a common word.
    "basic_auth": r"(?i:basic\s+)(?P<basic_auth_v>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])",
    # The password runs to the last "@" before the host: passwords hold "@" too. No word
    # boundary before the scheme: a URL glued to a word (or to a redaction) is still one.
    "url_password": r"[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^/\s:@]{0,64}:(?P<url_password_v>[^\s/]{1,128})@",
    "connection_secret": r"(?i:(?:AccountKey|SharedAccessKey|Password|Pwd)=)(?P<connection_secret_v>[^;\s\"']{4,})",
    "mysql_password": (r"\bmysql(?:dump|admin|sh|import|check|binlog)?\b[^\n|;&]{0,200}?\s-p"
                       r"(?P<mysql_password_v>'[^'\n]{1,128}'|\"[^\"\n]{1,128}\"|[^\s'\"]{1,128})"),
    "cli_password": (r"(?:\bsshpass\s+-p|\bredis-cli\b[^\n|;&]{0,200}?\s-a|\bdocker\s+login\b[^\n|;&]{0,200}?\s(?:-p|--password)[ \t=]"
                     r"|\bldap\w{0,12}\b[^\n|;&]{0,200}?\s-w|\bcurl\b[^\n|;&]{0,200}?\s(?:-u|--user)[ \t=]*['\"]?[^\s:'\"]{0,64}:"
                     r"|(?<![\w\-])-U[ \t]*['\"]?[^\s%'\"/]{1,64}%)\s*(?P<cli_password_v>[^\s'\"]{1,128})"),
    # A flag and its value apart (`--password X`): the value must not be a plain word ("--token flag").
    "cli_flag": (r"(?<![\w\-])--(?:[a-z]{1,20}-)?(?:password|passwd|pass|secret|token|api-key|apikey)[ \t]+"
                 r"['\"]?(?P<cli_flag_v>[^\s'\"\-][^\s'\"]{3,127})"),
    "cookie": r"(?i:\b(?:set-)?cookie:[ \t]*[^=\s;]{1,64}=)(?P<cookie_v>[^;\s\"']{8,})",
    # SQL quotes the password after PASSWORD or IDENTIFIED BY, with a space, not "=" or ":".
    "sql_password": (r"(?i:\b(?:password|identified\s+by)\s+['\"])"
                     r"(?P<sql_password_v>(?<=')[^'\n]{1,200}(?=')|(?<=\")[^\"\n]{1,200}(?=\"))"),
    "netrc_password": r"\bmachine\s+\S{1,255}\s+login\s+\S{1,255}\s+password\s+(?P<netrc_password_v>\S{1,255})",
    # A key name, then ":", "=" or "is", then the value (to the closing quote when quoted).
    # Names may be glued to a word (`PGPASSWORD=`, `DB_PASSWORD=`); "pass" alone only after a
    # boundary (bypass, compass). A private key block after the name is left to private_key.
    "password": (
        r"(?i:(?:(?:\b|(?<=_))pass|password|passwd|passphrase|pwd|secret(?:[_\- ]?(?:access[_\- ]?)?key)?|"
        r"client[_\- ]?secret|api[_\- ]?(?:key|token|secret)|apikey|access[_\- ]?(?:key|token)|"
        r"auth[_\- ]?token|refresh[_\- ]?token|private[_\- ]?key|token|credentials?)"
        r"(?:_(?:base|b64|base64|hex|value))?"  # SECRET_KEY_BASE=
        + _VALUE.format(kind="password")
    ),
    # The word in other languages, apart: fifteen more alternatives cost the English scan a
    # third more. German, French, Norwegian (all hinted by "pass"), Spanish, Portuguese, Dutch,
    # Russian; "[REDACTED:password]" all the same.
    "password_intl": (r"(?i:(?:passwort|kennwort|mot[_\- ]de[_\- ]passe|passord|contrase[ñn]a|senha|wachtwoord|пароль)"
                      + _VALUE.format(kind="password_intl")),
    # A card number stands alone: digits inside a longer token (a hex id, a hash) are not one.
    # Dots only in the printed groups (4.4.4.4, 4.6.5): a timestamp with a fraction is not a card.
    "card_number": (r"(?<![\w\-])(?<!\d\.)(?P<card_number_v>\d(?:[ \-]?\d){12,18}|\d{4}(?:\.\d{4}){3}|\d{4}\.\d{6}\.\d{5})"
                    r"(?![\w\-])(?!\.\d)"),
}


# What a text must hold (lowercased; _CASED_KINDS: as is) for each pattern to be worth running.
# A text is scanned with only the patterns its hints call for: one pattern costs ~25 us on a
# paragraph, all of them at once ~700 us. card_number (13 digits) and url_password ("@" and
# "://") are tested apart: alerts carry links to dashboards and runbooks, which must not send
# every alert to the scanner.
_KIND_HINTS = {
    "private_key": ("private",),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab_token": ("glpat-", "gldt-", "glrt-", "glcbt-", "glptt-", "glft-", "glimt-", "gloas-", "glsoat-"),
    "slack_token": ("xox", "xapp-"),
    "slack_webhook": ("://hooks.slack",),
    "google_api_key": ("aiza",),
    "stripe_key": ("_live_", "_test_", "whsec_"),
    "openai_key": ("sk-",),
    "vault_token": ("hvs.", "hvb.", "hvr."),
    "square_token": ("sq0",),
    "mailgun_key": ("key-",),
    "terraform_token": (".atlasv1.",),
    "age_key": ("age-secret-key-",),
    "putty_key": ("putty-user-key",),
    "discord_webhook": ("/api/webhooks/",),
    "teams_webhook": (".webhook.office.", "office.com/webhook", "office365.com/webhook"),
    "sas_signature": ("sig=",),
    "cli_flag": ("--pass", "--secret", "--token", "--api-key", "--apikey", "-password", "-passwd", "-secret", "-token",
                 "-api-key", "-apikey"),
    "cookie": ("cookie",),
    "sql_password": ("pass",),
    "anthropic_key": ("sk-ant-",),
    "npm_token": ("npm_",),
    "pypi_token": ("pypi-",),
    "huggingface_token": ("hf_",),
    "digitalocean_token": ("dop_v1_", "doo_v1_", "dor_v1_"),
    "shopify_token": ("shpat_", "shpca_", "shppa_", "shpss_"),
    "jwt": ("eyj",),
    "authorization": ("authorization",),
    "bearer_token": ("bearer",),
    "basic_auth": ("basic",),
    "connection_secret": ("accountkey", "accesskey", "pass", "pwd"),
    "password": ("pass", "pwd", "secret", "token", "private", "credential", "apikey", "api key", "api_key", "api-key",
                 "api secret", "api_secret", "api-secret", "apisecret", "accesskey", "access key", "access_key",
                 "access-key"),
    "password_intl": ("passwort", "de passe", "de_passe", "de-passe", "passord", "kennwort", "contrase", "senha", "wachtwoord", "пароль"),
}
_CASED_KINDS = {"aws_key": ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"), "sendgrid_key": ("SG.",),
                "telegram_token": (":AA",)}
# Kinds that need two hints: "mysql" alone is in many alerts, "-p" in many host names.
_PAIRED_KINDS = {"mysql_password": (("mysql", "-p"),),
                 "cli_password": (("sshpass", "-p"), ("redis-cli", "-a"), ("docker", "login"), ("ldap", "-w"),
                                  ("curl", "-u"), ("curl", "--user"), ("%", "-u")),
                 "sql_password": (("identified", "by"),), "netrc_password": (("machine", "pass"),)}


@functools.lru_cache(maxsize=256)
def _scanner(kinds: frozenset[str]) -> re.Pattern[str]:
    """The combined pattern of these kinds (in _PATTERNS order, which settles a tie), compiled on
    first use: compiling costs ~3 ms, which every command that imports the store (`list`,
    `show`) would pay without ever scanning."""
    return re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _PATTERNS.items() if kind in kinds))


@functools.cache
def _tokens() -> dict[str, re.Pattern[str]]:
    """Tokens recognisable on their own, to name what a `password=...` pair held."""
    return {kind: re.compile(_PATTERNS[kind]) for kind in
            ("aws_key", "github_token", "gitlab_token", "slack_token", "google_api_key", "stripe_key", "openai_key",
             "anthropic_key", "npm_token", "pypi_token", "huggingface_token", "sendgrid_key", "jwt")}


def _kinds(text: str) -> frozenset[str]:
    """The kinds of secret whose hints the text holds."""
    low = text.lower()
    kinds = {kind for kind, hints in _KIND_HINTS.items() if any(h in low for h in hints)}
    kinds.update(kind for kind, hints in _CASED_KINDS.items() if any(h in text for h in hints))
    kinds.update(kind for kind, pairs in _PAIRED_KINDS.items() if any(a in low and b in low for a, b in pairs))
    if "@" in low and "://" in low:
        kinds.add("url_password")
    if _has_digit_run(text):
        kinds.add("card_number")
    return frozenset(kinds)


# might_hold_secrets is True whenever _kinds is not empty (a property test checks). Every text
# stored pays for it, so its hints are few: those that hold another hint are left out (a yes
# is a yes), and the rest wait behind a gate, a part they all share, so that a text pays one
# test for a group it does not hold ("-" is in most host names; "key", "gl", "sk-" in few).
_AWS_HINT = re.compile("A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)")  # one search: ten times 8 `in` tests
_GATES = ("://", "key", "sk-", "gl", "webhook", "hv", "_", "-")


def _gated_hints() -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    hints = list(dict.fromkeys(h for hints in _KIND_HINTS.values() for h in hints))
    wide = [h for h in hints if not h.isascii()]  # tested only in text that is not ASCII (one cheap call)
    hints = [h for h in hints if h.isascii()]
    ungated = [h for h in hints if not any(g in h for g in _GATES)]
    hints = [h for h in hints if not any(p != h and p in h for p in hints)]
    plain = [h for h in hints if h in ungated]  # (any hint that holds another is left out: a yes is a yes)
    groups: dict[str, list[str]] = {gate: [] for gate in _GATES}
    for h in hints:
        if h not in ungated:
            groups[next(g for g in _GATES if g in h)].append(h)
    return tuple(plain), tuple((gate, tuple(group)) for gate, group in groups.items() if group), tuple(wide)


_HINTS, _GATED_HINTS, _WIDE_HINTS = _gated_hints()
# Pairs a plain hint already answers for (`machine` and `pass`) or another pair implies (`curl`
# and `--user` after `curl` and `-u`) are left out of the prefilter.
_PAIRED_HINTS = tuple(dict.fromkeys(
    (a, b) for pairs in _PAIRED_KINDS.values() for a, b in pairs
    if not any(h in a or h in b for h in _HINTS)
    and not any((a2, b2) != (a, b) and a2 in a and b2 in b for ps in _PAIRED_KINDS.values() for a2, b2 in ps)))
_DIGIT_RUN = re.compile(r"\d[\d \-.]{11,}\d")
_ONE_DIGIT, _THIRTEEN_DIGITS = bytes.maketrans(b"123456789", b"000000000"), b"0" * 13


def might_hold_secrets(text: str) -> bool:
    low = text.lower()
    # Plain loops: a generator in any() costs more than the substring tests themselves.
    for hint in _HINTS:
        if hint in low:
            return True
    for gate, hints in _GATED_HINTS:
        if gate in low:
            for hint in hints:
                if hint in low:
                    return True
    if "@" in low and "://" in low:
        return True
    if not low.isascii():
        for hint in _WIDE_HINTS:
            if hint in low:
                return True
    if _AWS_HINT.search(text) or "SG." in text or ":AA" in text:
        return True
    for a, b in _PAIRED_HINTS:
        if a in low and b in low:
            return True
    return _has_digit_run(text)


def _has_digit_run(text: str) -> bool:
    """13 digits in a row, spaces, dashes and dots aside: what a card number needs."""
    if text.isascii() and _THIRTEEN_DIGITS not in text.encode().translate(_ONE_DIGIT, b" -."):
        return False  # cheaper than the search
    for run in _DIGIT_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group()) >= 13:
            return True
    return False


# Words that follow "password:" (or "password is") in ordinary text and are not the password.
_NOT_VALUES = {"reset", "expired", "required", "changed", "change", "incorrect", "wrong", "policy", "manager",
               "please", "again", "field", "prompt", "rotation", "none", "null", "****", "true", "false", "invalid",
               "missing", "unknown", "empty", "denied", "failed", "locked", "expiring", "updated", "correct", "valid"}
_IS_FORM = re.compile(r"\bis\s*$", re.IGNORECASE)


# Personal data, masked only where the desk asks for it (intake.yaml `mask_pii`).
_PII = re.compile(
    r"(?P<email>\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b)"
    r"|(?P<phone>(?<![\w+])\+?\d{1,3}[ .\-]?\(?\d{2,4}\)?[ .\-]?\d{3,4}[ .\-]?\d{3,5}(?![\w\-]))"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def redact(text: str, pii: bool = False) -> tuple[str, list[str]]:
    """The text with every secret (and, with pii, every email address and phone number)
    replaced, and the kinds found (in order, repeated)."""
    found: list[str] = []
    if pii:
        text = _mask_pii(text, found)
    if not might_hold_secrets(text):
        return text, found
    return _scan(text, found), found


def _scan(text: str, found: list[str], kinds: frozenset[str] | None = None) -> str:
    """The full scan that might_hold_secrets lets ordinary text skip, with the patterns of
    `kinds` (by default, those the text's hints call for)."""
    def replace(m: re.Match[str]) -> str:
        kind = m.lastgroup
        assert kind is not None
        value_group = f"{kind}_v"
        start, end = m.span(value_group) if value_group in m.re.groupindex else m.span()
        value = m.string[start:end]
        if value.startswith("[REDACTED:"):
            # Redacted already: the text stays as it is (redacting twice changes nothing), and
            # the kind is still reported (a runbook refuses a parameter that held a secret).
            found.append(value[10:].split("]", 1)[0])
            return m.group()
        if not _is_secret(kind, value, m.string[m.start():start]):
            return m.group()
        if kind == "aws_key" and m.group("aws_key_s"):  # the key id and its secret beside it
            found.extend(("aws_key", "aws_secret_key"))
            return f"[REDACTED:aws_key]{m.group('aws_key_gap')}[REDACTED:aws_secret_key]"
        if kind == "password_intl":
            kind = "password"
        if kind in ("password", "authorization", "bearer_token"):  # named by what it holds, when known
            kind = next((k for k, p in _tokens().items() if p.fullmatch(value)), kind)
        found.append(kind)
        return m.string[m.start():start] + f"[REDACTED:{kind}]" + m.string[end:m.end()]

    kinds = _kinds(text) if kinds is None else kinds
    return _scanner(kinds).sub(replace, text) if kinds else text


def _is_secret(kind: str, value: str, before: str) -> bool:
    """Whether a match is a secret: the checks a pattern cannot make. `before` is the text the
    match holds before the value (`password: `)."""
    if kind == "card_number":
        return _luhn(re.sub(r"\D", "", value))
    if kind == "basic_auth":
        return _basic_credentials(value)
    if kind == "cli_flag":  # "--token flag", "--password prompt": a word, not a value
        return not (value.isalpha() and (value.islower() or value.istitle())) and value.lower() not in _NOT_VALUES
    if kind in ("password", "password_intl", "authorization"):
        word = value.lower().rstrip(".!?")
        if word in _NOT_VALUES:
            return False
        if kind == "authorization":  # a token has digits or length: "Authorization: required permissions"
            return not value.isalpha() or len(value) >= 20
        # "the password is about to expire": after "is", an unquoted plain word is English.
        if _IS_FORM.search(before) and word.isalpha() and (value.islower() or value.istitle()):
            return False
    return True


def _basic_credentials(value: str) -> bool:
    """Whether value is base64 of `user:password`, as HTTP Basic sends it."""
    import base64
    import binascii

    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded.isprintable()


def _mask_pii(text: str, found: list[str]) -> str:
    def replace(m: re.Match[str]) -> str:
        kind = m.lastgroup or "pii"
        if kind == "phone" and sum(c.isdigit() for c in m.group()) < 8:
            return m.group()
        found.append(kind)
        return f"[REDACTED:{kind}]"

    return _PII.sub(replace, text)


def redact_strings(value: Any, pii: bool = False) -> tuple[Any, list[str]]:
    """Redact every string inside a JSON-like value, dict keys too (a label's name can hold a
    secret as well as its value). A first scan over all the strings at once skips the rebuild
    for the common case: nothing to redact."""
    strings: list[str] = []
    _collect(value, strings)
    if not pii and not might_hold_secrets("\n".join(strings)):
        return value, []
    found: list[str] = []
    return redact_value(value, found, pii), found


def _collect(value: Any, out: list[str]) -> None:
    """Every string in value (keys too), into out. The first level is unrolled: tickets are flat
    dicts with a dict of labels and a list of tags, and this runs for each one stored."""
    if isinstance(value, str):
        out.append(value)
        return
    if isinstance(value, dict):
        out += value
        value = value.values()
    elif not isinstance(value, list):
        return
    for v in value:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (dict, list)):
            _collect(v, out)


def redact_value(value: Any, found: list[str], pii: bool = False) -> Any:
    """Redact every string inside value, dict keys too, appending the kinds to `found`. Two keys
    that become the same keep both values (the second as `key (2)`)."""
    if isinstance(value, str):
        clean, kinds = redact(value, pii)
        found += kinds
        return clean
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str):
                k = redact_value(k, found, pii)
                base, n = k, 1
                while k in out:
                    n += 1
                    k = f"{base} ({n})"
            out[k] = redact_value(v, found, pii)
        return out
    if isinstance(value, list):
        return [redact_value(v, found, pii) for v in value]
    return value
