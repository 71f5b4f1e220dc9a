"""Secrets out before anything is stored: each is replaced by `[REDACTED:kind]`.

One combined regular expression scans a text once (intake runs it on every field of tens of
thousands of tickets a second). Each alternative is a named group; where only part of a match
is secret (the value of `password=...`, the password of a URL), the group `<kind>_v` marks it.
Card numbers must also pass the Luhn check. Pure: no I/O.
"""

import functools
import re
from typing import Any

_PATTERNS = {
    "private_key": r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    "aws_key": r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    "gitlab_token": r"\bgl(?:pat|dt|rt|cbt|ptt)-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"\bxox[abposre]-[A-Za-z0-9\-]{10,}\b",
    "slack_webhook": r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_\-]{20,}",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])",
    "stripe_key": r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}\b",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "bearer_token": r"(?i:\bbearer\s+)(?P<bearer_token_v>[A-Za-z0-9\-._~+/]{16,}=*)",
    "url_password": r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,15}://[^/\s:@]{1,64}:(?P<url_password_v>[^@\s/]{1,128})@",
    "connection_secret": r"(?i:\b(?:AccountKey|SharedAccessKey|Password|Pwd)=)(?P<connection_secret_v>[^;\s\"']{4,})",
    # `DB_PASSWORD=...` too: a keyword may follow an underscore.
    "password": (
        r"(?i:(?:\b|(?<=_))(?:password|passwd|passphrase|pwd|secret|client[_\-]?secret|api[_\-]?key|apikey|access[_\-]?key|"
        r"auth[_\-]?token|access[_\-]?token|private[_\-]?key|token)\b\"?\s*(?:[:=]|\bis\b)\s*[\"']?)"
        r"(?P<password_v>[^\s\"',;]{4,})"
    ),
    # A card number stands alone: digits inside a longer token (a hex id, a hash) are not one.
    "card_number": r"(?<![\w\-])(?P<card_number_v>\d(?:[ \-]?\d){12,18})(?![\w\-])",
}


@functools.cache
def _scanner() -> re.Pattern[str]:
    """The combined pattern, compiled on first use: compiling costs ~3 ms, which every command
    that imports the store (`list`, `show`) would pay without ever scanning."""
    return re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _PATTERNS.items()))


@functools.cache
def _tokens() -> dict[str, re.Pattern[str]]:
    """Tokens recognisable on their own, to name what a `password=...` pair held."""
    return {kind: re.compile(_PATTERNS[kind]) for kind in
            ("aws_key", "github_token", "gitlab_token", "slack_token", "google_api_key", "stripe_key", "jwt")}

# Every pattern needs one of these (lowercased) or a run of 13 digits: a cheap test that lets ordinary
# text skip the scanner, which costs ~100 us on a paragraph. Hints with "_" or "-" are only
# looked for when the text has that character. A URL is only a hint with an "@" (user:password@):
# alerts carry links to dashboards and runbooks, which must not send every alert to the scanner.
_HINTS = ("private", "akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa", "xox", "hooks.slack",
          "aiza", "eyj", "bearer", "pass", "pwd", "secret", "token", "apikey", "accesskey", "key=")
_UNDERSCORE_HINTS = ("gh", "github_pat_", "_live_", "_test_", "api_key", "access_key")
_DASH_HINTS = ("glpat-", "gldt-", "glrt-", "glcbt-", "glptt-", "api-key", "access-key")
_DIGIT_RUN = re.compile(r"\d[\d \-]{11,}\d")
_ONE_DIGIT, _THIRTEEN_DIGITS = bytes.maketrans(b"123456789", b"000000000"), b"0" * 13


def might_hold_secrets(text: str) -> bool:
    low = text.lower()
    # Plain loops: a generator in any() costs more than the substring tests themselves.
    for hint in _HINTS:
        if hint in low:
            return True
    if "@" in low and "://" in low:
        return True
    if "_" in low:
        for hint in _UNDERSCORE_HINTS:
            if hint in low:
                return True
    if "-" in low:
        for hint in _DASH_HINTS:
            if hint in low:
                return True
    if text.isascii() and _THIRTEEN_DIGITS not in text.encode().translate(_ONE_DIGIT, b" -"):
        return False  # no 13 digits in a row, spaces and dashes aside: cheaper than the search
    for run in _DIGIT_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group()) >= 13:
            return True
    return False


# Words that follow "password:" in ordinary text and are not the password itself.
_NOT_VALUES = {"reset", "expired", "required", "changed", "change", "incorrect", "wrong", "policy", "manager",
               "please", "again", "field", "prompt", "rotation", "none", "null", "****", "[redacted"}


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


def _scan(text: str, found: list[str]) -> str:
    """The full scan that might_hold_secrets lets ordinary text skip."""
    def replace(m: re.Match[str]) -> str:
        kind = m.lastgroup
        assert kind is not None
        value_group = f"{kind}_v"
        start, end = m.span(value_group) if value_group in m.re.groupindex else m.span()
        value = m.string[start:end]
        if kind == "card_number" and not _luhn(re.sub(r"\D", "", value)):
            return m.group()
        if kind == "password":
            if value.lower().rstrip(".!") in _NOT_VALUES:
                return m.group()
            kind = next((k for k, p in _tokens().items() if p.fullmatch(value)), kind)
        found.append(kind)
        return m.string[m.start():start] + f"[REDACTED:{kind}]" + m.string[end:m.end()]

    return _scanner().sub(replace, text)


def _mask_pii(text: str, found: list[str]) -> str:
    def replace(m: re.Match[str]) -> str:
        kind = m.lastgroup or "pii"
        if kind == "phone" and sum(c.isdigit() for c in m.group()) < 8:
            return m.group()
        found.append(kind)
        return f"[REDACTED:{kind}]"

    return _PII.sub(replace, text)


def redact_strings(value: Any, pii: bool = False) -> tuple[Any, list[str]]:
    """Redact every string inside a JSON-like value (dict keys stay). A first scan over all the
    strings at once skips the rebuild for the common case: nothing to redact."""
    strings: list[str] = []
    _collect(value, strings)
    if not pii and not might_hold_secrets("\n".join(strings)):
        return value, []
    found: list[str] = []
    return redact_value(value, found, pii), found


def _collect(value: Any, out: list[str]) -> None:
    """Every string in value, into out. The first level is unrolled: tickets are flat dicts
    with a dict of labels and a list of tags, and this runs for each one stored."""
    if isinstance(value, str):
        out.append(value)
        return
    for v in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (dict, list)):
            _collect(v, out)


def redact_value(value: Any, found: list[str], pii: bool = False) -> Any:
    """Redact every string inside value (dict keys stay), appending the kinds to `found`."""
    if isinstance(value, str):
        clean, kinds = redact(value, pii)
        found += kinds
        return clean
    if isinstance(value, dict):
        return {k: redact_value(v, found, pii) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, found, pii) for v in value]
    return value
