"""The command line (migrate, purge, serve) run as a real subprocess, and the URL forms
every entry point accepts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa
from web_helpers.live import PREFIX, free_port
from web_helpers.processes import serve_process

import sessiontrack
from sessiontrack.store import normalize_url
from sessiontrack.store._migrate import HEAD
from tests.conftest import POSTGRES_URL, require_postgres
from tests.fresh_database import fresh_postgres_database

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.anyio


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiontrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_migrate_then_purge_with_progress_and_a_count(database_url: str, prefix: str) -> None:
    done = run("migrate", "--database-url", database_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    assert f"revision {HEAD}" in done.stdout
    now = datetime.now(UTC)
    async with sessiontrack.Tracker(database_url, prefix=prefix, sweep_interval=None) as tracker:
        hook = tracker.plugin_manager.hook
        for days in (50, 45, 40, 1):
            sid = sessiontrack.new_session_id()
            hook.sessiontrack_session_started(
                session_id=sid, chatbot_id="b", at=now - timedelta(days=60)
            )
            hook.sessiontrack_session_completed(session_id=sid, at=now - timedelta(days=days))
    purged = run(
        "purge",
        "--database-url",
        database_url,
        "--prefix",
        prefix,
        "--older-than",
        "30d",
        "--batch-size",
        "2",
    )
    assert purged.returncode == 0, purged.stderr
    assert "purged 3 sessions" in purged.stdout
    assert "purged 2 sessions…" in purged.stderr  # progress while it works
    again = run("purge", "--database-url", database_url, "--prefix", prefix, "--older-than", "30d")
    assert "purged 0 sessions" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["migrate", "--database-url", "not a url"], "not a database URL"),
        (["migrate", "--database-url", "mysql://x@y/z"], "unsupported database URL"),
        (
            [
                "purge",
                "--database-url",
                "postgresql+asyncpg://u:secret@127.0.0.1:1/x",
                "--older-than",
                "3d",
            ],
            "cannot reach the database at postgresql+asyncpg://u:***@127.0.0.1:1/x",
        ),
    ],
)
def test_clear_errors_without_traceback(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "secret" not in done.stderr


def test_bad_duration_is_a_usage_error() -> None:
    done = run("purge", "--database-url", "sqlite+aiosqlite:///x.db", "--older-than", "soon")
    assert done.returncode == 2 and "expected a duration like 30d" in done.stderr


# --- one line for every database the commands cannot reach or log into -------------------

PG = sa.make_url(POSTGRES_URL)
UNREACHABLE = {
    "closed port": PG.set(port=free_port(), password="hunter2"),
    "wrong user": PG.set(username="nobody_at_all", password="hunter2"),
    "wrong database": PG.set(database="no_such_database", password="hunter2"),
}
COMMANDS = {
    "migrate": ["migrate"],
    "purge": ["purge", "--older-than", "30d"],
    "serve": ["serve", "--port", "0"],  # port 0: were the store to open, uvicorn would run
}


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sessiontrack: error: "), lines[0]
    assert "hunter2" not in done.stderr + done.stdout
    return lines[0]


@pytest.mark.postgresql
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", UNREACHABLE)
async def test_an_unreachable_postgresql_is_one_line(command: str, case: str) -> None:
    await require_postgres()  # the server must be up for "wrong user" to mean anything
    url = UNREACHABLE[case]
    line = _one_error_line(
        run(*COMMANDS[command], "--database-url", url.render_as_string(hide_password=False))
    )
    assert f"cannot reach the database at {url.render_as_string()}" in line
    expected = {
        "closed port": "Connect call failed",
        "wrong user": 'role "nobody_at_all" does not exist',
        "wrong database": 'database "no_such_database" does not exist',
    }
    assert expected[case] in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_sqlite_directory_is_one_line(command: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'sessions.db'}"
    line = _one_error_line(run(*COMMANDS[command], "--database-url", url))
    assert "cannot reach the database at sqlite+aiosqlite:///" in line
    assert f"its directory {tmp_path / 'no' / 'such' / 'dir'} does not exist" in line
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL: 'not a url'; use sqlite:///file.db"),
        ("postgresql://u:hunter2@h:port/db", "not a database URL: 'postgresql://u:***@h:port/db'"),
        ("mysql://u:hunter2@h/db", "unsupported database URL 'mysql://u:***@h/db'"),
        ("postgresql+psycopg://u:hunter2@h/db", "(driver 'postgresql+psycopg'); use"),
    ],
)
def test_a_malformed_url_is_one_line(command: str, url: str, message: str) -> None:
    assert message in _one_error_line(run(*COMMANDS[command], "--database-url", url))


def test_an_outdated_schema_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    line = _one_error_line(run("purge", "--database-url", url, "--older-than", "1d"))
    assert "tables are at revision none" in line and "sessiontrack migrate" in line


# --- the same URL forms through every entry point ----------------------------------------


def _forms(backend: str, tmp_path: Path, server: str = POSTGRES_URL) -> list[tuple[str, str]]:
    """(URL as a user writes it, the asyncpg/aiosqlite URL it means)."""
    if backend == "sqlite":
        path = tmp_path / "forms.db"
        return [
            (f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"),
            (f"sqlite+aiosqlite:///{path}", f"sqlite+aiosqlite:///{path}"),
        ]
    rest = server.split("://", 1)[1]
    return [
        (f"{scheme}://{rest}", f"postgresql+asyncpg://{rest}")
        for scheme in ("postgresql", "postgres", "postgresql+asyncpg")
    ]


def test_normalize_url_forms(tmp_path: Path) -> None:
    for backend in ("sqlite", "postgresql"):
        for given, meant in _forms(backend, tmp_path):
            assert normalize_url(given) == meant
    assert normalize_url("sqlite://") == "sqlite+aiosqlite://"  # in memory
    assert normalize_url("postgresql://u:p%40ss@h/db") == "postgresql+asyncpg://u:p%40ss@h/db"
    assert normalize_url(sa.make_url("postgres://h/db")) == "postgresql+asyncpg://h/db"
    for bad in ("", "nonsense", "mysql://h/db", "sqlite+pysqlite:///x.db", "oracle://h"):
        with pytest.raises(ValueError, match=r"use sqlite:///file\.db, sqlite\+aiosqlite"):
            normalize_url(bad)


async def test_each_form_through_the_tracker(
    backend: str, database_url: str, prefix: str, tmp_path: Path
) -> None:
    for given, meant in _forms(backend, tmp_path):
        async with sessiontrack.Tracker(given, prefix=prefix, migrate=True) as tracker:
            assert tracker.store.dialect == backend
            assert repr(tracker) == f"Tracker(SQLAlchemyStore({meant!r}))"
            sid = sessiontrack.new_session_id()
            tracker.plugin_manager.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
            await tracker.flush()
            assert (await tracker.sessions.get(sid)).chatbot_id == "b"


async def test_each_form_through_migrate(
    backend: str, database_url: str, prefix: str, tmp_path: Path
) -> None:
    for given, meant in _forms(backend, tmp_path):
        done = run("migrate", "--database-url", given, "--prefix", prefix)
        assert done.returncode == 0, done.stderr
        assert f"at revision {HEAD} in {meant}" in done.stdout


async def test_each_form_through_serve(
    backend: str, database_url: str, prefix: str, tmp_path: Path
) -> None:
    assert run("migrate", "--database-url", database_url, "--prefix", prefix).returncode == 0
    for given, _ in _forms(backend, tmp_path)[:2]:
        async with (
            serve_process(given, prefix, tmp_path) as url,
            httpx.AsyncClient(base_url=url + PREFIX) as client,
        ):
            assert (await client.get("/stats")).status_code == 200


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
async def test_each_form_through_the_example(backend: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        server = POSTGRES_URL
        if backend == "postgresql":  # the example migrates its default prefix: its own database
            database = await stack.enter_async_context(fresh_postgres_database())
            server = database.render_as_string(hide_password=False)
        for given, meant in _forms(backend, tmp_path, server):
            line = await anyio.to_thread.run_sync(_example_running_line, given)
            assert line.startswith("helpdesk running on http://127.0.0.1:"), line
            assert f"SQLAlchemyStore({meant!r})" in line, line


def _example_running_line(url: str) -> str:
    """Start ``python -m examples.helpdesk`` on ``url``; its "running" line (which names
    the store), or everything it printed before it ended."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.helpdesk",
            "--no-simulator",
            "--port",
            str(port),
            "--database-url",
            url,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        seen = ""
        for line in proc.stdout:  # after a warning that WHATSAPP_APP_SECRET is not set
            if line.startswith("helpdesk running on"):
                return line
            seen += line
        return seen
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:hunter2@h/db", "use sqlite:///file.db"),
        ("nonsense", "use sqlite:///file.db"),
        (
            "sqlite:////no/such/dir/helpdesk.db",
            "cannot reach the database at sqlite+aiosqlite:////no/such/dir/helpdesk.db: "
            "its directory /no/such/dir does not exist",
        ),
        pytest.param(
            UNREACHABLE["wrong user"].render_as_string(hide_password=False),
            f"cannot reach the database at {UNREACHABLE['wrong user'].render_as_string()}: "
            'role "nobody_at_all" does not exist',
            marks=pytest.mark.postgresql,
            id="wrong user",
        ),
    ],
)
async def test_the_example_refuses_a_url_or_database_in_one_line(url: str, message: str) -> None:
    if url.startswith("postgresql"):
        await require_postgres()
    argv = [sys.executable, "-m", "examples.helpdesk", "--no-simulator", "--database-url", url]
    done = await anyio.run_process(argv, cwd=REPO, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("helpdesk: error: ") and message in line, line
    assert "hunter2" not in line


def test_a_missing_asyncpg_names_the_extra() -> None:
    """Run where ``import asyncpg`` fails, as on a machine without the postgres extra."""
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "import sessiontrack\n"
        "try:\n"
        "    sessiontrack.Tracker('postgresql://h/db')\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
        "from sessiontrack.cli import main\n"
        "sys.exit(main(['migrate', '--database-url', 'postgres://h/db']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    hint = 'postgresql+asyncpg URLs need the asyncpg package: pip install "sessiontrack[postgres]"'
    assert done.stdout.strip() == hint
    assert done.returncode == 2 and done.stderr.strip() == f"sessiontrack: error: {hint}"
