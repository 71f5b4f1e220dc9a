"""Redaction measured on the labelled set of tests/secrets_labelled.py: recall (planted values
that survive, whole or in part), ordinary texts changed (the built-in ones and every text of
../shared/corpus), and time per text; the same for detect-secrets' plugins when it is
installed (`pip install detect-secrets`: not a dependency, only measured against).

    python bench/redact_bench.py [--sample N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from secrets_labelled import CORPUS, ORDINARY, corpus_texts, leaked, plant_all  # noqa: E402

from sdesk.domain.redact import redact  # noqa: E402


def measure(name: str, fn: Callable[[str], str], planted: list[tuple[str, str, str]], ordinary: list[str]) -> dict:
    leaks: dict[str, int] = {}
    started = time.perf_counter()
    for kind, text, value in planted:
        if leaked(value, fn(text)):
            leaks[kind] = leaks.get(kind, 0) + 1
    per_planted = (time.perf_counter() - started) / len(planted)
    started = time.perf_counter()
    changed = sum(fn(text) != text for text in ordinary)
    per_ordinary = (time.perf_counter() - started) / len(ordinary)
    return {"detector": name, "planted": len(planted), "leaked": sum(leaks.values()), "phrasings_leaked": sorted(leaks),
            "ordinary": len(ordinary), "changed": changed, "us_per_planted": round(per_planted * 1e6, 1),
            "us_per_ordinary": round(per_ordinary * 1e6, 1)}


def detect_secrets_redactor() -> Callable[[str], str] | None:
    """detect-secrets as `detect-secrets scan` runs on a file (every default plugin and filter,
    as YAML: its best recall here), each value it reports replaced."""
    try:
        from detect_secrets.core.scan import _process_line_based_plugins
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def redact_with_detect_secrets(text: str) -> str:
        with default_settings():
            lines = list(enumerate(text.splitlines() or [text], 1))
            found = {s.secret_value for s in _process_line_based_plugins(lines, "ticket.yaml") if s.secret_value}
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, "[REDACTED]")
        return text

    return redact_with_detect_secrets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=0, help="ordinary texts to use (default: all)")
    args = parser.parse_args()
    planted = [p for seed in range(20) for p in plant_all(f"bench{seed}")]
    ordinary = list(ORDINARY) + (list(corpus_texts()) if CORPUS.is_dir() else [])
    if args.sample:
        random.Random(1).shuffle(ordinary)
        ordinary = ordinary[:args.sample]
    print(json.dumps(measure("sdesk.domain.redact", lambda t: redact(t)[0], planted, ordinary)))
    other = detect_secrets_redactor()
    if other is None:
        print("detect-secrets is not installed: not measured", file=sys.stderr)
    else:
        print(json.dumps(measure("detect-secrets", other, planted, ordinary)))


if __name__ == "__main__":
    main()
