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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .errors import BadInput, NotFound

if TYPE_CHECKING:
    from .domain.catalog import Catalog
    from .domain.metrics import MetricsConfig
    from .domain.routing import OnCall
    from .domain.runbooks import Runbook
    from .domain.sla import SlaConfig
    from .triage import TriageConfig

from . import files
from .domain import yamlfile

T = TypeVar("T")




# The modules whose checks a desk file's model runs: a change to any of them (a rule made
# stricter) must validate every file again.
_CHECKS = ("config", "triage", "domain/catalog", "domain/clock", "domain/metrics", "domain/patterns", "domain/roles", "domain/routing",
           "domain/runbook_argv", "domain/runbooks", "domain/sla")
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
    return files.cache_dir() / "valid" / key[:2] / key


def read(path: Path, kind: str, build: Callable[..., T], *, text: str | None = None,
         fast: bool = True, with_node: bool = False, normalized: bool = False) -> T:
    """The desk file at `path` (its `text` when already read), of `kind` (a key of
    config.MODELS), validated by its model unless a stamp says it was, then built by `build`
    from the YAML data (and its node tree, `with_node`, for line numbers). `fast=False`:
    always validate. `normalized`: `build` gets the data as the model made it (its defaults
    filled in, its values converted), which the stamp then holds as JSON."""
    if text is None:
        text = files.read_text(path)  # a regular file within a size: never a FIFO's hang
    if normalized:
        return build(_normalized(path, kind, text, fast))
    data, node = yamlfile.parse(text, str(path))
    stamp = _stamp(kind, text)
    if not (fast and stamp.exists()):
        from . import config

        config.validate(data, node, str(path), config.MODELS[kind])
        _write_stamp(stamp)
    return build(data, node) if with_node else build(data)


def _normalized(path: Path, kind: str, text: str, fast: bool) -> dict:
    """The file's data as its model made it: from its stamp, else validated (and stamped)."""
    import orjson

    stamp = _stamp(kind, text)
    if fast:
        try:
            return orjson.loads(stamp.read_bytes())
        except (OSError, ValueError):
            pass  # no stamp, or one being written: validate
    from . import config

    data, node = yamlfile.parse(text, str(path))
    dumped = config.validate(data, node, str(path), config.MODELS[kind]).model_dump(mode="json")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        from .atomic import replaced

        with replaced(stamp) as tmp:
            tmp.write_bytes(orjson.dumps(dumped))
    except (OSError, BadInput):
        pass  # a read-only or full cache: the next read validates again
    return dumped


def _write_stamp(stamp: Path) -> None:
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    except OSError:
        pass  # a read-only or full cache: the next read validates again


# -- the desk files, each read the one way: text -> its model (once a text) -> the domain's build --


def load_oncall(text: str, where: str) -> OnCall:
    """`oncall.yaml`: teams, schedules, escalation policies, queues and the notifier (model:
    config.OnCallFile)."""
    from .domain.routing import build

    return read(Path(where), "oncall", build, text=text)


class IntakeSettings(NamedTuple):
    """`intake.yaml` as intake uses it (model: config.IntakeConfig)."""

    severity: dict[str, str]
    record_resolved: list[str]
    mask_pii: bool
    reopen_within_days: int
    enrich: Any  # intake.enrich.EnrichOptions, or False: no enrichment
    approve_by_mail: bool = False


def load_intake(text: str, where: str) -> IntakeSettings:
    """`intake.yaml`, validated once a text (`new` reads it on every ticket; its model would
    cost pydantic's import each time)."""
    def build(data: dict) -> IntakeSettings:
        from .intake.enrich import EnrichOptions

        e = data["enrich"]
        enrich = EnrichOptions(labels=tuple(e["labels"]), change_window_hours=e["change_window_hours"],
                               kb_articles=e["kb_articles"], similar_tickets=e["similar_tickets"],
                               similar_within_days=e["similar_within_days"]) if e["enabled"] else False
        return IntakeSettings(data["severity"], data["record_resolved"], data["mask_pii"], data["reopen_within_days"],
                              enrich, bool(data.get("approve_by_mail")))

    return read(Path(where), "intake", build, text=text, normalized=True)


def load_catalog(text: str, where: str) -> Catalog:
    """`catalog.yaml`: request types and the portal's settings (model: config.CatalogFile)."""
    from .domain.catalog import build

    return read(Path(where), "catalog", build, text=text)


def load_sla(text: str, where: str) -> SlaConfig:
    """`sla.yaml`: calendars, policies and SLOs (model: config.SlaFile)."""
    from .domain.sla import build

    return read(Path(where), "sla", build, text=text)


def load_metrics(text: str, where: str) -> MetricsConfig:
    """`metrics.yaml`: targets, the cost model and the business hours (model: config.MetricsFile)."""
    from .domain.metrics import build

    return read(Path(where), "metrics", build, text=text)


def load_triage(text: str, where: str) -> TriageConfig:
    """`triage.yaml` (model: config.TriageFile; an error names the setting, e.g.
    rules[page-db].match.title.regex)."""
    from .triage import build

    return read(Path(where), "triage", lambda data, node: build(data, node), text=text, with_node=True)


def parse_runbook(text: str, where: str, default_name: str) -> Runbook:
    """One runbook file (model: config.RunbookFile)."""
    from .domain.runbooks import build

    return read(Path(where), "runbook", lambda data: build(data, where, default_name), text=text)


def load_runbooks(folder: Path | None) -> tuple[dict[str, Runbook], list[str]]:
    """Every runbook in `folder` (the desk config's runbooks/), by name, and one error line for
    each file that does not load (the others still do)."""
    runbooks: dict[str, Runbook] = {}
    errors: list[str] = []
    if folder is None or not folder.is_dir():
        return runbooks, errors
    for path in sorted(folder.glob("*.y*ml")):
        try:
            runbook = parse_runbook(files.read_text(path), str(path), path.stem)  # a regular file within a size
        except (OSError, UnicodeDecodeError) as e:
            errors.append(f"{path}: {getattr(e, 'strerror', None) or e}")
            continue
        except BadInput as e:
            errors.append(str(e))
            continue
        if runbook.name in runbooks:
            errors.append(f"{path}:1: runbook {runbook.name} is also defined in {runbooks[runbook.name].path}")
            continue
        runbooks[runbook.name] = runbook
    return runbooks, errors


def find_runbook(folder: Path | None, name: str) -> Runbook:
    """The runbook called `name`, refusing it (with the file and line) when its file is broken."""
    runbooks, errors = load_runbooks(folder)
    if name in runbooks:
        return runbooks[name]
    for error in errors:
        path = error.split(":", 1)[0]
        if Path(path).stem == name:
            raise BadInput(error)
    known = ", ".join(sorted(runbooks)) or f"none in {folder or 'the desk config (--config DIR)/runbooks'}"
    raise NotFound(f"no runbook {name!r} (known: {known})")
