"""Running an adapter page's opening example as printed, on SQLite or PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anyio

from tests.fresh_database import fresh_postgres_database

SQLITE_URL = '"sqlite:///bot.db"'


def first_python_block(page: Path) -> str:
    """The code of the page's first ``python`` block."""
    first = re.search(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    assert first is not None, f"{page.name} starts with a Python example"
    return first.group(1)


async def run_documented_example(
    page: Path, backend: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``python3 bot.py`` with the page's first block, as the page says to run it; on
    PostgreSQL its one SQLite URL is replaced by a fresh database's, migrated first with
    ``sessiontrack migrate`` as the README says. Asserts that it exited with 0."""
    code = first_python_block(page)
    assert code.count(SQLITE_URL) == 1
    if backend == "postgresql":
        async with fresh_postgres_database() as url:
            plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
            cli = [sys.executable, "-m", "sessiontrack.cli", "migrate", "--database-url", plain]
            migrated = await anyio.to_thread.run_sync(
                lambda: subprocess.run(cli, capture_output=True, text=True, timeout=60)
            )
            assert migrated.returncode == 0, migrated.stderr
            on_postgres = code.replace(SQLITE_URL, f'"{plain}"')
            done = await anyio.to_thread.run_sync(_run, on_postgres, tmp_path)
    else:
        done = await anyio.to_thread.run_sync(_run, code, tmp_path)
        assert (tmp_path / "bot.db").exists()
    assert done.returncode == 0, done.stderr
    return done


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "bot.py").write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "bot.py"], cwd=cwd, capture_output=True, text=True, timeout=120
    )
