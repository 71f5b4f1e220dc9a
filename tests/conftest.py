import itertools
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from sdesk.cli import app

# The suite must pass on a busy machine: no property test may fail because generating or running
# its examples was slow (a time limit measures the machine, not sdesk). Tests that set their own
# `suppress_health_check` list too_slow as well.
settings.register_profile("sdesk", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The quick run (`-m "not slow"`, README) draws a fifth of the examples: the property tests stay
# in it, cheap enough to run while working; the full run (CI) draws them all.
settings.register_profile("quick", settings.get_profile("sdesk"), max_examples=20)
settings.load_profile("sdesk")
QUICK = False


def pytest_configure(config):
    global QUICK
    QUICK = "not slow" in (config.option.markexpr or "")
    settings.load_profile("quick" if QUICK else "sdesk")


def examples(n: int) -> int:
    """`max_examples` for a property test that sets its own: all n in the full run, a fifth
    (at least 5) in the quick run. Runs at import, after pytest_configure."""
    return min(n, max(5, n // 5)) if QUICK else n


# The backend the suite runs on: sqlite (a file per test), or postgresql (SDESK_TEST_BACKEND=postgresql:
# a database per test on the server SDESK_TEST_PG names, a libpq conninfo of a role that may
# create databases; without it, a throwaway cluster this session starts). .ci/run runs both.
POSTGRES = os.environ.get("SDESK_TEST_BACKEND", "sqlite") == "postgresql"
_numbers = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    if POSTGRES:
        for item in items:
            marker = item.get_closest_marker("sqlite_only")
            if marker is not None:
                item.add_marker(pytest.mark.skip(reason=f"SQLite only: {marker.args[0]}"))


@pytest.fixture(scope="session")
def pg_server():
    """A libpq conninfo of a PostgreSQL server the tests may create databases on."""
    given = os.environ.get("SDESK_TEST_PG")
    if given:
        yield given
        return
    from tests import pg_cluster

    if pg_cluster.binaries() is None:
        if os.environ.get("SDESK_REQUIRE_POSTGRES"):  # CI: the server must be there
            pytest.fail("SDESK_REQUIRE_POSTGRES is set and PostgreSQL's server is not installed")
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    conninfo, folder = pg_cluster.start()
    try:
        yield pg_cluster.login_as_os_user(conninfo)
    finally:
        pg_cluster.stop(folder)


def pg_url(conninfo: str, database: str, schema: str | None = None) -> str:
    """postgresql:///DATABASE?host=...&user=... for a conninfo of the form key=value ..., its
    search_path `schema` when given."""
    from urllib.parse import quote, urlencode

    params = dict(part.split("=", 1) for part in conninfo.split())
    params.pop("dbname", None)
    if schema:
        params["options"] = f"-csearch_path={schema}"
    return f"postgresql:///{quote(database)}" + (f"?{urlencode(params)}" if params else "")


@pytest.fixture(scope="session")
def pg_tests_database(pg_server):
    """This test process's database on the server (xdist workers each have one), made once."""
    import psycopg

    name = f"sdesk_tests_{os.getpid()}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg(pg_server, pg_tests_database):
    """A maker of empty desks on the server: each a URL naming a new schema (its search_path) of
    this process's database, as empty as a new database to sdesk and far cheaper to make (a
    database is a copy of template1); dropped after the test."""
    import psycopg

    made = []
    admin = psycopg.connect(pg_server.replace("dbname=postgres", "") + f" dbname={pg_tests_database}",
                            autocommit=True)

    def make() -> str:
        name = f"t{next(_numbers)}"
        admin.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return pg_url(pg_server, pg_tests_database, name)

    yield make
    for name in made:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    admin.close()


@pytest.fixture(autouse=True)
def hermetic(request, tmp_path, tmp_path_factory, monkeypatch):
    """Every test gets its own database and config dir, a known actor, and the real clock."""
    if POSTGRES:
        monkeypatch.setenv("SDESK_DB", request.getfixturevalue("fresh_pg")())
    else:
        monkeypatch.setenv("SDESK_DB", str(tmp_path / "desk.db"))
    # The config folder exists (empty): a --config/SDESK_CONFIG naming no folder is an error.
    (tmp_path / "config").mkdir(exist_ok=True)
    monkeypatch.setenv("SDESK_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("SDESK_USER", "tester")
    monkeypatch.delenv("SDESK_NOW", raising=False)
    # Stamps of validated desk files (sdesk/validated.py): the test's own, beside its folder
    # (tests check that a refused command leaves that folder as it was).
    monkeypatch.setenv("SDESK_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def db_path(tmp_path) -> Path:
    """The test's database: its file, or on the PostgreSQL run its URL (a str)."""
    return os.environ["SDESK_DB"] if POSTGRES else tmp_path / "desk.db"


class Cli:
    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, ok: bool = True):
        result = self.runner.invoke(app, list(args), input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok and result.exit_code != 0:
            raise AssertionError(f"sdesk {' '.join(args)} exited {result.exit_code}: {result.stderr}")
        return result

    def json(self, *args: str, input: str | None = None):
        return json.loads(self(*args, "--json", input=input).stdout)

    def new(self, title: str, *args: str) -> int:
        return self.json("new", title, *args)["id"]


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="module")
def chromium_browser():
    """Debian's chromium, headless, under Playwright (tests/browser.py); one per test module, not
    per session: an open sync Playwright breaks `asyncio.run` on its thread (the TUI's tests...).
    Skips where chromium is not installed; under SDESK_REQUIRE_BROWSER (CI) that fails instead.
    (Not `browser`: the name pytest-playwright, which is not used, would give it.)"""
    from tests import browser

    if browser.chromium_path() is None:
        if os.environ.get("SDESK_REQUIRE_BROWSER"):  # CI: the browser must be there
            pytest.fail("SDESK_REQUIRE_BROWSER is set and Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with browser.open_browser() as launched:
        yield launched
