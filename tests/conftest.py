"""Shared fixtures: every store test runs on a real SQLite file and a real PostgreSQL.

PostgreSQL comes from ``SESSIONTRACK_TEST_POSTGRES_URL`` (default: the local server,
database ``test``). Locally a missing server skips those tests with the reason printed;
under ``CI=true`` it fails them.

Migrating takes most of a small test's time, so the ``tracker`` fixture starts on tables
migrated earlier, as a tracker does on its second start:

- on SQLite each test has a file of its own (so one prefix serves all), a copy of a file
  migrated once per worker;
- on PostgreSQL each test has a prefix of its own: for the ``tracker`` fixture one that an
  earlier test of its worker migrated and that was emptied after it (``_pg_pool``), for
  every other test a new one, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import sessiontrack
from sessiontrack.store import SQLAlchemyStore
from tests import _pg_pool

POSTGRES_URL = os.environ.get(
    "SESSIONTRACK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
_pg_status: dict[str, str | None] = {}

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A shell's background job (`scripts/test &`) starts with SIGINT ignored, and so would
    # every process a test starts: the tests that stop one with SIGINT would wait forever.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


async def _postgres_problem() -> str | None:
    if "checked" not in _pg_status:
        engine = create_async_engine(POSTGRES_URL)
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            _pg_status["checked"] = None
        except Exception as exc:  # any failure to reach the server
            _pg_status["checked"] = f"PostgreSQL at {POSTGRES_URL} unreachable: {exc!r}"
        finally:
            await engine.dispose()
    return _pg_status["checked"]


async def require_postgres() -> None:
    problem = await _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: PostgreSQL tests must run)")
        pytest.skip(problem)


async def drop_prefixed_tables(url: str, prefix: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            for name in names:
                if name.startswith(prefix):
                    await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


SQLITE_PREFIX = "st_test_"


def _pooled(request: pytest.FixtureRequest) -> bool:
    """Whether the test's PostgreSQL prefix comes from (and goes back to) the pool: a test
    of the ``tracker`` fixture, which migrates at start (``_pg_pool``)."""
    return "tracker" in request.fixturenames


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    if "backend" in request.fixturenames and request.getfixturevalue("backend") == "sqlite":
        return SQLITE_PREFIX  # a file of its own: nothing to keep apart
    if not _pooled(request):
        return _pg_pool.new_prefix()  # dropped by ``database_url``
    return _pg_pool.lend()  # given back by ``database_url``, or after the test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """After the test's fixtures are torn down: give back a pooled prefix that no
    ``database_url`` gave back (a module with a database of its own, as ``test_erase``;
    its tables in the shared database, ``prefix + "o_"`` too, are emptied or dropped)."""
    try:
        return (yield)
    finally:
        if _pg_pool.lent and _pg_status.get("checked", "unchecked") is not None:
            _pg_pool.lent.clear()  # PostgreSQL unreachable: skipped, nothing was made
        elif _pg_pool.lent:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, _pg_pool.give_back_all(POSTGRES_URL)).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision with :data:`SQLITE_PREFIX` (made on
    a thread of its own: an async session fixture would keep anyio's test loop running
    between tests, and the tests that call ``anyio.run`` themselves would fail)."""
    path = tmp_path_factory.mktemp("template") / "sessions.db"

    async def migrate() -> None:
        store = SQLAlchemyStore(f"sqlite+aiosqlite:///{path}", prefix=SQLITE_PREFIX)
        await store.open(migrate=True)
        await store.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate()).result()
    return path


async def module_database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for a module-scoped fixture: a new SQLite file, or PostgreSQL (the
    caller uses a fresh prefix and drops its tables)."""
    if backend == "postgresql":
        await require_postgres()
        return POSTGRES_URL
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'sessions.db'}"


def _copy_template(template: Path, database_url: str) -> None:
    file = Path(sa.make_url(database_url).database or "")
    wal = Path(f"{template}-wal")
    assert not wal.exists() or not wal.stat().st_size, "the template's log was not checkpointed"
    if not file.exists():
        shutil.copyfile(template, file)


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A URL on a fresh database: a new SQLite file, or PostgreSQL with a fresh prefix
    (for the ``tracker`` fixture, one emptied after an earlier test: ``_pg_pool``)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
        return
    await require_postgres()
    try:
        yield POSTGRES_URL
    finally:
        if _pooled(request):
            await _pg_pool.give_back(POSTGRES_URL, prefix)
        else:
            await drop_prefixed_tables(POSTGRES_URL, prefix)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _pg_pool.pooled():
        asyncio.run(_pg_pool.drop_all(POSTGRES_URL))


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    """Override in a test module to configure the ``tracker`` fixture."""
    return {}


@pytest.fixture
async def tracker(
    database_url: str, prefix: str, tracker_options: dict[str, Any], sqlite_template: Path
) -> AsyncIterator[sessiontrack.Tracker]:
    if database_url.startswith("sqlite") and prefix == SQLITE_PREFIX:
        _copy_template(sqlite_template, database_url)
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    options.update(tracker_options)
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        yield tracker


@pytest.fixture
def pm(tracker: sessiontrack.Tracker) -> Iterator[pluggy.PluginManager]:
    """The engine's plugin manager, as the README wires it."""
    manager = pluggy.PluginManager("sessiontrack")
    manager.add_hookspecs(sessiontrack.hookspecs)
    manager.register(tracker)
    yield manager
    manager.unregister(tracker)


# --- the dashboard's browser tests ------------------------------------------------------


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, for the browser tests (a skip locally without it, a failure
    under ``CI=true``)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true: the browser tests must run")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core (tests/dashboard_helpers/package.json), installed with ``npm ci`` if needed."""
    from dashboard_helpers import AXE, HELPERS

    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            if IN_CI:
                pytest.fail("npm is needed for the accessibility audit (CI=true)")
            pytest.skip("npm is missing: cannot install axe-core for the accessibility audit")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HELPERS,
            check=True,
            timeout=300,
            capture_output=True,
        )
    return AXE


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: ``SESSIONTRACK_SCREENSHOTS`` if set, else a temporary folder."""
    chosen = os.environ.get("SESSIONTRACK_SCREENSHOTS")
    folder = Path(chosen).resolve() if chosen else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder
