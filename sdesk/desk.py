"""The desk: one object that stands for a desk's database and its configuration (the YAML
files of its config folder), built once by whichever face runs and shared with what it calls.
The faces only say which desk (--db, --config, --as); what a desk file means is read here, once,
when first asked for."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import BadInput, NotFound, SdeskError

if TYPE_CHECKING:
    from .domain.catalog import Catalog
    from .domain.metrics import MetricsConfig
    from .domain.notify import NotifyConfig
    from .domain.routing import OnCall
    from .domain.sla import SlaConfig
    from .store import Store
    from .triage import TriageConfig


def _stderr(message: str) -> None:
    from .domain.plain import controls  # a message may quote stored or typed text: its escapes are shown, not run

    print(controls(message), file=sys.stderr)


class DeskFile(NamedTuple):
    """A desk file as Desk.desk_files loaded it: its value, or the error that stops it."""

    path: Path
    value: Any
    error: str | None


# The commands that may make the database when there is none at --db: `init`, `demo` and those
# that give a new desk its first data. Any other command (every read, and writes that need
# something already there: ack, tick, ...) on a missing database is one error that creates
# nothing, so a typo in --db or SDESK_DB cannot show an empty desk, or fill one. A list of the
# few that may, not of the many that may not: a command added later is safe by default.
CREATES = frozenset({"init", "demo", "new", "import", "restore", "serve", "cmdb import", "cmdb add", "kb add",
                     "kb import", "user add", "change new", "problem new", "silence add", "oncall override",
                     "triage train"})

# A --db that names a database server, not a file: `postgres://...`, `sqlite:///x.db`,
# `postgresql:...`, `mysql+pymysql://`. One letter is a Windows drive (C:/). Matched on the
# string as given (a Path would have made `postgres://h` `postgres:/h`).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/|(?:postgres|postgresql|pg|mysql|mariadb|sqlite|sqlite3|file)(?:\+\w+)?:",
                  re.I)
_POSTGRES = re.compile(r"(?:postgres|postgresql|pg)(?:\+\w+)?:", re.I)
_SERVER = re.compile(r"postgres(?:ql)?://", re.I)  # what storage/pg.is_url opens

# Reads of what is stored, whose answer no config file changes: when the config folder `sdesk
# init --config` recorded has gone (moved, a share not mounted) they warn and carry on, so the
# queue can be read while it is put back. Every other command refuses, as before: tick must not
# page by no rules, nor `new` triage by none.
READS_WITHOUT_CONFIG = frozenset({"list", "show", "why", "pages", "audit log", "audit verify", "export", "backup"})

_UNSET: Any = object()


class Desk:
    """One desk: its database and its configuration, built once from --db/--config/--as (or
    SDESK_DB, SDESK_CONFIG, SDESK_USER) and shared by every face (the CLI, the TUI, `serve`, the
    demo, the tests). The store opens on first use; each config file is read when first asked
    for. A thread of its own (a TUI worker, serve's writer) opens its own connection: connect()."""

    def __init__(self, db: str | Path | None, actor: str | None, config: Path | None = None,
                 config_from: str | None = None, db_from: str | None = None,
                 warn: Callable[[str], None] | None = None, claim: bool = True):
        """`db`: the database file --db or SDESK_DB named (`db_from` says which), as given; None:
        the default. `config`: the folder --config or SDESK_CONFIG named (`config_from` says
        which), else None: then the folder `sdesk init --config` recorded in the database, if any.
        `warn`: where a warning goes (a line on stderr by default; the TUI notifies). `claim`:
        writes as the actor are held to the OS login (the CLI's and the TUI's; serve's actors come
        from API tokens, and the demo speaks for the people of its story)."""
        self.warn = warn or _stderr
        self.claim = claim
        self.db_given = None if db is None else str(db)  # as typed: a URL or '' is quoted as it was
        self.db = Path(db) if db else None
        self._db_from = db_from or "--db (or SDESK_DB)"
        self._claim = actor  # --as or SDESK_USER: a claim, checked against the OS login on writes
        self._actor: str | None = None
        self._store: Store | None = None
        self._runbooks: tuple[dict[str, Any], list[str]] | None = None
        self._notify: NotifyConfig | None = None
        self.command: list[str] = []  # the command running (["cmdb", "import"]), filled in as it is resolved
        self._given = config
        self._given_from = config_from or "--config"
        self._config: Path | None = _UNSET
        self._config_gone = False  # the recorded folder has gone, and this read carries on without it
        self.config_origin: str | None = None  # where `config` came from, once it is read

    @property
    def config(self) -> Path | None:
        """The desk config folder in effect, or None: --config, else SDESK_CONFIG, else the one
        recorded by `sdesk init --config`. A folder named that is missing (or a file) is an
        error naming it and where it was named, never "no config": a typo must not silently
        turn off paging, SLAs and triage rules."""
        if self._config is _UNSET:
            self._config, self.config_origin = self._resolve_config()
        return self._config

    @config.setter
    def config(self, value: Path | None) -> None:
        self._config, self.config_origin = value, "--config" if value is not None else None

    def _resolve_config(self) -> tuple[Path | None, str | None]:
        if self._given is not None:
            return check_config_folder(self._given, self._given_from), self._given_from
        recorded = self.recorded_config()
        if recorded is None:
            return None, None
        path, at = recorded
        if not os.path.isdir(path):
            gone = (f"the desk config folder {path}, recorded by `sdesk init --config` on {at[:10]}, "
                    f"{'is not a folder' if os.path.lexists(path) else 'does not exist any more'}")
            if " ".join(self.command) in READS_WITHOUT_CONFIG:
                self.warn(f"warning: {gone}; shown without it (restore it, or record another with "
                     "`sdesk init --config DIR`)")
                self._config_gone = True
                return None, None
            raise NotFound(f"{gone}: restore it, or record another with `sdesk init --config DIR` "
                           "(--config or SDESK_CONFIG override it)")
        return path, "recorded by sdesk init --config"

    def recorded_config(self) -> tuple[Path, str] | None:
        """The config folder `sdesk init --config` recorded in the database and when, or None
        (none recorded, or no database yet: looking makes none)."""
        if self._store is None and not self.on_server and not os.path.exists(self.db_path()):
            return None
        recorded = self.store().desk_state().get("config")
        return (Path(recorded[0]), recorded[1]) if recorded else None

    @property
    def actor(self) -> str:
        """Who this command acts as: the claimed actor, else the user the OS login is (a
        user's `login`), else the OS login itself."""
        if self._actor is None:
            self.store()
        assert self._actor is not None
        return self._actor

    def db_path(self) -> Path | str:
        """The database: --db, else SDESK_DB, else the platform's user data dir; a file's path, or a
        PostgreSQL URL (postgresql://...) as given. Any other URL is refused, and no file made."""
        from .store import default_db_path

        given = self.db_given
        if given is not None and not given.strip():
            raise BadInput(f"{self._db_from} is empty: give the database file's path; nothing was created")
        if given is not None and _SERVER.match(given):
            from .storage.pg import check_url  # (storage/pg.py only for a server: its import is a file's cost)

            return check_url(given, f"{self._db_from} {given}")
        if given is not None and _POSTGRES.match(given):
            raise BadInput(f"{self._db_from} {given} is not a PostgreSQL URL sdesk can read: write it "
                           "postgresql://HOST/DB, postgresql:///DB (the local socket) or postgresql://?service=NAME; "
                           "nothing was created")
        if given is not None and _URL.match(given):
            raise BadInput(f"{self._db_from} {given} is not a database sdesk can open: give a file's path (SQLite) "
                           "or a postgresql:// URL; nothing was created")
        return self.db or default_db_path()

    @property
    def on_server(self) -> bool:
        """Whether the desk is a PostgreSQL database (not a file)."""
        return self.db_given is not None and bool(_SERVER.match(self.db_given))

    def store(self, init_empty: bool = False, create: bool | None = None, strict_config: bool = True) -> Store:
        """The desk's store, opened once; `init_empty`: an empty file may become the desk (sdesk
        init). `create`: whether a missing database may be made; by default, when the command
        running is one of CREATES (otherwise a missing one is NotFound, and nothing is made).
        `strict_config=False` (sdesk doctor, which reports it): a config folder that cannot be
        found or a bad roles.yaml does not stop the open; non-users are then viewers."""
        if self._store is None:
            from .domain.redact import redact
            from .store import Store

            # The actor is an identifier, on every event and row, kept as given (events redact
            # their data, not who wrote them): one that holds a secret would be stored as it is.
            if self._claim and redact(self._claim)[0] != self._claim:
                raise BadInput("--as (or SDESK_USER): the actor looks like it holds a secret; choose another")
            path = self.db_path()
            # A config folder named wrong (or a bad roles.yaml in it) is refused before a new desk is made.
            role = self._default_role(strict_config) if self._given is not None else None
            from .services.processes import LOCAL

            store = Store(path, init_empty=init_empty, processes=LOCAL,
                          create=create if create is not None else " ".join(self.command) in CREATES)
            self._store = store
            try:
                # Else after the open: the config folder may be the one recorded in the database.
                store.default_role = role or self._default_role(strict_config)
            except BaseException:
                self._store = None
                store.close()
                raise
            store.notify_source = self._notify_for_writes
            # The login: the OS login, or on PostgreSQL the database login (Store.login).
            self._actor = self._claim or store.users.user_of_login(store.login) or store.login
            if self.claim:
                store.claimed = self._actor  # its writes are checked against the login (Store._check_claim)
        return self._store

    def connect(self, *, claimed: bool = True) -> Store:
        """A connection of its own to the same desk, for another thread (sqlite3 connections
        stay in theirs), acting as store() does (the face opened that first, in its own thread);
        `claimed=False`: writes are not held to the OS login (serve's actors come from tokens).
        The caller closes it."""
        from .services.processes import LOCAL
        from .store import Store

        main = self.store()
        store = Store(self.db_path(), main.default_role, create=False, processes=LOCAL)
        store.claimed = main.claimed if claimed else None
        store.notify_source = main.notify_source
        return store

    def _default_role(self, strict: bool) -> str:
        try:
            return self.default_role()
        except SdeskError:
            if strict:
                raise
            return "viewer"  # the least a role allows, while the config that would say more is broken

    # `sdesk tick` sets a list here: a roles.yaml that does not load is then the built-in default
    # role, its error kept in the list for tick to warn of (paging must not wait on roles.yaml).
    roles_fallback: list[str] | None = None

    def default_role(self) -> str:
        """roles.yaml `default_role` of the desk config: the role of someone who is not a user."""
        from .domain.roles import DEFAULT_ROLE, check_role

        path = self.config / "roles.yaml" if self.config is not None else None
        if self._config_gone:
            return "viewer"  # what roles.yaml said is not known: the least a role allows, for a read
        if path is None or not path.is_file():
            return DEFAULT_ROLE
        from . import validated

        try:
            return validated.read(path, "roles", lambda data: check_role((data or {}).get("default_role", DEFAULT_ROLE)),
                                  text=read_text(path))
        except SdeskError as e:
            if self.roles_fallback is None:
                raise
            self.roles_fallback.append(str(e))
            return DEFAULT_ROLE

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def intake_options(self, *, record_all: bool = False,
                       reopen_days: int | None = None) -> tuple[Mapping[str, str], dict[str, Any]]:
        """The severity table and Store.receive's options, from intake.yaml of the desk config
        (pydantic and YAML are imported only when there is such a file) and the command line."""
        from .intake.formats import SEVERITY, severity_table

        config = None
        if self.config is not None and (self.config / "intake.yaml").is_file():
            from .validated import load_intake

            path = self.config / "intake.yaml"
            config = load_intake(read_text(path), str(path))
        record_resolved = {"*"} if record_all else set(config.record_resolved) if config else set()
        triage = self.triage_config()
        options: dict[str, Any] = {"record_resolved": record_resolved, "mask_pii": bool(config and config.mask_pii),
                                   "reopen_days": reopen_days if reopen_days is not None
                                   else config.reopen_within_days if config else 14,
                                   "enrich": config.enrich if config else True, "triage": triage,
                                   "approve_by_mail": bool(config and config.approve_by_mail)}
        if triage is not None and any("runbook" in rule.sets for rule in triage.rules):
            options["automate"] = self.automatic_runbooks()
        return (severity_table(config.severity) if config else SEVERITY), options

    def desk_files(self, names: tuple[str, ...] | None = None) -> dict[str, DeskFile]:
        """Each desk file (intake, oncall, sla, triage, metrics, roles; or `names` of them, in that
        order) the config folder holds, loaded as the commands load it, or why it does not load:
        what `sdesk doctor` and `sdesk tick` both report. A bug in a loader is a file that does not
        load, said so: it must not hide the other files. triage.yaml is loaded alone (triage_config
        borrows from sla and oncall, with warnings)."""
        from .services.starter import DESK_FILES

        folder = self.config
        found: dict[str, DeskFile] = {}
        for name in names or DESK_FILES:
            path = folder / f"{name}.yaml" if folder is not None else None
            if path is None or not path.is_file():
                continue
            try:
                found[name] = DeskFile(path, self._desk_file(name, path), None)
            except SdeskError as e:
                found[name] = DeskFile(path, None, str(e))
            except Exception as e:  # noqa: BLE001
                found[name] = DeskFile(path, None, f"{path}: cannot be read ({type(e).__name__}: {e})")
        return found

    def _desk_file(self, name: str, path: Path) -> Any:
        if name == "intake":
            from .config import IntakeConfig
            from .config import load as load_intake

            return load_intake(path.parent, "intake", IntakeConfig)
        if name == "triage":
            from .validated import load_triage

            return load_triage(read_text(path), str(path))
        return {"oncall": self.oncall_config, "sla": self.sla_config, "metrics": self.metrics_config,
                "roles": self.default_role, "notify": self.notify_config, "catalog": self.catalog}[name]()

    def runbooks_folder(self) -> Path | None:
        """runbooks/ of the desk config (one runbook per YAML file)."""
        return self.config / "runbooks" if self.config is not None else None

    def runbooks(self) -> tuple[dict[str, Any], list[str]]:
        """The runbooks of the desk config and the errors of broken files, read once a command."""
        if self._runbooks is None:
            from .validated import load_runbooks

            self._runbooks = load_runbooks(self.runbooks_folder())
        return self._runbooks

    def automatic_runbooks(self) -> frozenset[str]:
        """The runbooks triage may run as tickets arrive (safe_for_automation). A broken runbook
        file is a warning here: it must not stop intake, and it does not run."""
        runbooks, errors = self.runbooks()
        for error in errors:
            self.warn(f"warning: {error}; that runbook is not automated")
        return frozenset(name for name, rb in runbooks.items() if rb.automatic)

    def oncall_config(self) -> OnCall:
        """oncall.yaml of the desk config: teams and schedules (none when there is no file)."""
        from .domain.routing import OnCall
        from .validated import load_oncall as load

        path = self.config / "oncall.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return OnCall({}, {})
        return load(read_text(path), str(path))

    def _notify_for_writes(self) -> NotifyConfig | None:
        """notify.yaml for the store's writes, which queue the messages it calls for. A broken file
        must not stop intake or an agent's work: a warning (tick and doctor say it too), and
        nothing is queued until it loads."""
        try:
            return self.notify_config()
        except SdeskError as e:
            self.warn(f"warning: {e}; no messages are queued until it loads (sdesk notify check)")
            return None

    def notify_config(self) -> NotifyConfig | None:
        """notify.yaml of the desk config (None when there is none), its templates in templates/
        beside it. Not through validated.read: its builder checks it (no pydantic on `new`'s path)."""
        path = self.config / "notify.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return None
        if self._notify is None:
            from .domain import yamlfile
            from .domain.notify import build

            data, node = yamlfile.parse(read_text(path), str(path))
            self._notify = build(data, node, str(path), templates=str(path.parent / "templates"))
        return self._notify

    def catalog(self) -> Catalog:
        """catalog.yaml of the desk config: request types (an empty catalog when there is none)."""
        from .domain.catalog import EMPTY
        from .validated import load_catalog as load

        path = self.config / "catalog.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return EMPTY
        return load(read_text(path), str(path))

    def sla_config(self) -> SlaConfig:
        """sla.yaml of the desk config: calendars and policies (none when there is no file)."""
        from .domain.sla import SlaConfig
        from .validated import load_sla as load

        path = self.config / "sla.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return SlaConfig()
        return load(read_text(path), str(path))

    def metrics_config(self) -> MetricsConfig:
        """metrics.yaml of the desk config: targets and the cost model (defaults when there is none)."""
        from .domain.metrics import MetricsConfig
        from .validated import load_metrics as load

        path = self.config / "metrics.yaml" if self.config is not None else None
        return load(read_text(path), str(path)) if path is not None and path.is_file() else MetricsConfig()

    def triage_config(self) -> TriageConfig | None:
        """triage.yaml of the desk config, or None when there is none."""
        path = self.config / "triage.yaml" if self.config is not None else None
        if path is None or not path.is_file():
            return None
        from .validated import load_triage as load

        config = load(read_text(path), str(path))
        # What triage borrows from the other files must not stop intake when one is broken.
        try:
            config = config._replace(slos=self.sla_config().slos)
        except BadInput as e:
            self.warn(f"warning: {e}; SLO burn left out of triage")
        try:
            oncall = self.oncall_config()
            config = config._replace(oncall=oncall if oncall.queues else None)
        except BadInput as e:
            self.warn(f"warning: {e}; assignee: auto left out of triage")
        return config


def check_config_folder(path: Path, named_by: str = "--config") -> Path:
    """`path` if it is a folder; else one error naming it and what named it (--config,
    SDESK_CONFIG): a missing folder (a typo) is not "no config"."""
    import stat

    from .files import status

    found = status(path, f"{named_by} {path}")  # a name too long, a loop of links: said so
    if found is not None and stat.S_ISDIR(found.st_mode):
        return path
    if found is not None:
        raise BadInput(f"{named_by} {path} is a file, not a folder: the desk config is a folder of YAML files "
                       "(oncall.yaml, sla.yaml, triage.yaml, ...)")
    raise NotFound(f"{named_by} {path}: no such folder (the desk config folder; `sdesk init --example {path}` "
                   "writes a starter one)")


def read_text(path: Path, limit: int | None = None) -> str:
    """A file's text for a command, or one line saying why it cannot be read: only a regular
    file, within a size (a FIFO would hang the command, /dev/zero fill the memory)."""
    from . import files

    return files.read_text(path, limit=limit or files.MAX_BYTES)


