"""The command line: migrate and purge, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import sessiontrack

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
    assert "revision 0003" in done.stdout
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
        (["migrate", "--database-url", "mysql://x@y/z"], "unsupported driver"),
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
