"""Running an adapter page's opening example as printed, on SQLite or PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anyio

from tests.fresh_database import fresh_postgres_database

SQLITE_URL = re.compile(r'"sqlite(?:\+aiosqlite)?:///([\w.-]+)"')


def first_python_block(page: Path) -> str:
    """The code of the page's first ``python`` block."""
    first = re.search(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    assert first is not None, f"{page.name} starts with a Python example"
    return first.group(1)


def printed_output(page: Path) -> str:
    """The first ``text`` block after the page's first ``python`` block: what the example
    prints."""
    found = re.search(
        r"^```python\n.*?^```.*?^```text\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M
    )
    assert found is not None, f"{page.name} shows what its example prints"
    return found.group(1)


async def run_documented_example(
    page: Path, backend: str, tmp_path: Path, *, script: str = "bot.py"
) -> subprocess.CompletedProcess[str]:
    """``python3 <script>`` with the page's first block, as the page says to run it, in
    ``tmp_path`` (its SQLite file is relative); on PostgreSQL its one SQLite URL is
    replaced by a fresh database's, migrated first with ``sessiontrack migrate`` as the
    README says. Asserts that it exited with 0."""
    code = first_python_block(page)
    urls = SQLITE_URL.findall(code)
    assert len(urls) == 1, urls
    if backend == "postgresql":
        async with fresh_postgres_database() as url:
            plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
            cli = [sys.executable, "-m", "sessiontrack.cli", "migrate", "--database-url", plain]
            migrated = await anyio.to_thread.run_sync(
                lambda: subprocess.run(cli, capture_output=True, text=True, timeout=60)
            )
            assert migrated.returncode == 0, migrated.stderr
            on_postgres = SQLITE_URL.sub(f'"{plain}"', code)
            done = await anyio.to_thread.run_sync(_run, on_postgres, tmp_path, script)
    else:
        done = await anyio.to_thread.run_sync(_run, code, tmp_path, script)
        assert (tmp_path / urls[0]).exists()
    assert done.returncode == 0, done.stderr
    return done


def _run(code: str, cwd: Path, script: str) -> subprocess.CompletedProcess[str]:
    (cwd / script).write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, script], cwd=cwd, capture_output=True, text=True, timeout=120
    )
