"""Reading a desk file (roles.yaml, sla.yaml, ...) the one way: its pydantic model in config.py
validates it (every error `FILE:LINE: setting.path: message`), then the domain builds its
objects from the data.

Why the stamp: `sdesk new` and streamed intake read roles.yaml, triage.yaml, sla.yaml,
oncall.yaml and runbooks, and importing pydantic and building the models costs about 1.3 F of
the 1.5 F `new` may take (DESIGN.md, the budget). So a file's text, once its model accepted it,
is remembered as a stamp (an empty file named by a hash of the text, the file's kind and the
version of the code that checks it) in the user's cache folder, and text with a stamp is built
without pydantic. Any change to the file, or to the code, misses the stamp and is validated
again; a cache that cannot be written only costs the time. The domain builder trusts what the
model accepted, so a stamp is only ever written after validation (and the cache is the user's
own, as their database is).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import files, yamlfile

T = TypeVar("T")


class At(ValueError):
    """A check's error about a setting below the one it checks (`loc`: keys and list indexes
    from there), so that the error line names that setting and its line: the check that a
    policy's calendar exists raises At(["policies", 2, "calendar"], ...)."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = [str(part) for part in loc]
        self.message = message


def cache_dir() -> Path:
    """`SDESK_CACHE`, else the platform's user cache folder for sdesk."""
    given = os.environ.get("SDESK_CACHE")
    if given:
        return Path(given)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sdesk", appauthor=False))


# The modules whose checks a desk file's model runs: a change to any of them (a rule made
# stricter) must validate every file again.
_CHECKS = ("config", "clock", "metrics", "patterns", "roles", "routing", "runbook_argv", "runbooks", "sla", "triage")
_versions: list[str] = []


def _version() -> str:
    """What a stamp depends on besides the text: the package's version and its checks' files."""
    if not _versions:
        from . import __version__

        folder = Path(__file__).parent
        stats = [(folder / f"{name}.py").stat() for name in _CHECKS]
        _versions.append(f"{__version__}:" + ",".join(f"{s.st_mtime_ns}.{s.st_size}" for s in stats))
    return _versions[0]


def _stamp(kind: str, text: str) -> Path:
    key = hashlib.sha256(f"{_version()}\0{kind}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
    return cache_dir() / "valid" / key[:2] / key


def read(path: Path, kind: str, build: Callable[..., T], *, text: str | None = None,
         fast: bool = True, with_node: bool = False) -> T:
    """The desk file at `path` (its `text` when already read), of `kind` (a key of
    config.MODELS), validated by its model unless a stamp says it was, then built by `build`
    from the YAML data (and its node tree, `with_node`, for line numbers). `fast=False`:
    always validate."""
    if text is None:
        text = files.read_text(path)  # a regular file within a size: never a FIFO's hang
    data, node = yamlfile.parse(text, str(path))
    stamp = _stamp(kind, text)
    if not (fast and stamp.exists()):
        from . import config

        config.validate(data, node, str(path), config.MODELS[kind])
        _write_stamp(stamp)
    return build(data, node) if with_node else build(data)


def _write_stamp(stamp: Path) -> None:
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    except OSError:
        pass  # a read-only or full cache: the next read validates again
