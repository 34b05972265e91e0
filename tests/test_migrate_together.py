"""Trackers started together in one process migrate one at a time: Alembic keeps its
``context`` in module globals, and two runs at once undid each other (``KeyError:
'config'`` in CI, when the two hosts of a test started in the same instant)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import anyio
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio


async def test_trackers_started_together_on_one_loop_all_migrate(tmp_path: Path) -> None:
    opened: list[str] = []

    async def start(i: int) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / f'db{i}.db'}"
        async with sessiontrack.Tracker(url, migrate=True, sweep_interval=None) as tracker:
            await tracker.flush()
            opened.append(url)

    with anyio.fail_after(60):  # before the fix: KeyError 'config', or a hang
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(start, i)
    assert len(opened) == 6


def test_trackers_started_together_in_threads_all_migrate(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / f'db{i}.db'}"
        try:
            barrier.wait()
            with sessiontrack.SyncTracker(
                url, migrate=True, sweep_interval=None, prefix=f"t{uuid.uuid4().hex[:6]}_"
            ) as tracker:
                tracker.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
