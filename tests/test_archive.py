"""``sessiontrack archive`` on both backends, as a real subprocess: the file it writes is
what ``sessiontrack import`` reads (the details come back equal), it purges exactly the
sessions it wrote and verified, and killed with SIGKILL at seeded points (while writing,
after the rename before the verification, before and in the middle of the purge, and at
random times) it never loses a session, and the next run completes the job."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from archive_helpers import Population, check_directory, driver

import sessiontrack
from sessiontrack._archive import ArchiveError, ArchiveResult, archive, source_name
from sessiontrack._import import import_jsonl
from sessiontrack.store import SQLAlchemyStore
from tests.conftest import drop_prefixed_tables

pytestmark = pytest.mark.anyio


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiontrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def archive_args(url: str, prefix: str, folder: Path, *extra: str) -> list[str]:
    return [
        "archive",
        "--database-url",
        url,
        "--prefix",
        prefix,
        "--older-than",
        "30d",
        "--output",
        str(folder),
        *extra,
    ]


def archive_cli(
    url: str, prefix: str, folder: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return cli(*archive_args(url, prefix, folder, *extra))


def start_cli(*args: str) -> subprocess.Popen[bytes]:
    """The command, running, its output discarded (to be killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sessiontrack.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
async def other_prefix(database_url: str, prefix: str) -> AsyncIterator[str]:
    """A second set of tables in the same database: the empty one a restore writes into."""
    other = prefix + "restored_"
    yield other
    if database_url.startswith("postgresql"):
        await drop_prefixed_tables(database_url, other)


async def details(tracker: sessiontrack.Tracker, ids: list[str]) -> dict[str, Any]:
    out = {}
    for sid in ids:
        d = await tracker.sessions.get(sid, message_limit=10_000, call_limit=None)
        out[sid] = dataclasses.asdict(d)
    return out


async def stored(tracker: sessiontrack.Tracker) -> set[str]:
    page = await tracker.sessions.list(limit=100)
    assert not page.has_next
    return {s.id for s in page.data}


async def test_archive_then_import_gives_the_same_details_and_purges_only_what_it_wrote(
    tracker: sessiontrack.Tracker, database_url: str, prefix: str, other_prefix: str, tmp_path: Path
) -> None:
    pop = Population()
    pop.add(tracker.plugin_manager, 9)
    await tracker.flush()
    before = await details(tracker, pop.old)
    folder = tmp_path / "archives"
    done = archive_cli(database_url, prefix, folder, "--batch-size", "4")
    assert done.returncode == 0, done.stderr
    assert "archived 9 sessions that ended before" in done.stdout
    assert "(verified), purged 9" in done.stdout
    # progress, phase by phase: writing, in place, verifying, purging
    for line in ("archived 8 sessions…", "verifying…", "verified 9 of 9", "purged 8 of 9"):
        assert line in done.stderr, done.stderr
    got = check_directory(folder)
    assert len(got.complete) == 1 and not got.unpurged and not got.partial
    assert set(got.ids) == set(pop.old) and max(got.ids.values()) == 1
    manifest = json.loads(next(folder.glob("*.manifest.json")).read_bytes())
    assert manifest["purged"] == 9 and manifest["source"].endswith(f"prefix={prefix}")
    assert manifest["bytes"] == got.complete[0].stat().st_size
    # the database kept what the archive does not hold
    assert await stored(tracker) == set(pop.young) | set(pop.active)
    events = await tracker.store.events_after(0, limit=10_000)
    assert not {e.session_id for e in events} & set(pop.old)
    # the archive restores into an empty database with the existing import
    restored = cli(
        "import", "--database-url", database_url, "--prefix", other_prefix, str(got.complete[0])
    )
    assert restored.returncode == 0, restored.stderr
    assert "imported 9 sessions" in restored.stdout
    async with sessiontrack.Tracker(database_url, prefix=other_prefix, sweep_interval=None) as copy:
        assert await details(copy, pop.old) == before
        found = await copy.sessions.search_messages("hi", limit=100)
        assert {m.session_id for m in found.data} == set(pop.old)


class Paused:
    """A driver process (archive_helpers.driver) started before the test reports its
    sessions (its imports take a while), run to its pause point."""

    def __init__(self, url: str, prefix: str, folder: Path, point: str) -> None:
        self.proc = driver(url, prefix, folder, point)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdout, self.stdin = self.proc.stdout, self.proc.stdin

    def line(self) -> str:
        return self.stdout.readline()

    def go(self) -> str:
        """Let it go on; returns the next line it says (where it paused, or done)."""
        self.stdin.write("go\n")
        self.stdin.flush()
        return self.line()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


async def run_archive(url: str, prefix: str, folder: Path, **kwargs: Any) -> ArchiveResult:
    """The archive in this process: the function the command runs, with its source."""
    store = SQLAlchemyStore(url, prefix=prefix)
    await store.open(migrate=False)
    try:
        cutoff = datetime.now(UTC) - timedelta(days=30)
        return await archive(store, folder, cutoff, source=source_name(url, prefix), **kwargs)
    finally:
        await store.close()


async def test_sessions_that_cross_the_cutoff_meanwhile_are_not_purged(
    tracker: sessiontrack.Tracker, database_url: str, prefix: str, tmp_path: Path
) -> None:
    folder = tmp_path / "archives"
    run = Paused(database_url, prefix, folder, "written:0")
    try:
        pop = Population()
        pop.add(tracker.plugin_manager, 5)
        await tracker.flush()
        first = list(pop.old)
        assert run.line() == "ready\n"
        assert run.go() == "paused written 5\n"
        # written and in place, not verified yet: more sessions get old enough meanwhile
        pop.add(tracker.plugin_manager, 3)
        await tracker.flush()
        assert run.go() == "done 5 5\n"
    finally:
        run.kill()
    assert set(check_directory(folder).ids) == set(first)
    assert await stored(tracker) == set(pop.old[5:]) | set(pop.young) | set(pop.active)
    # the next run takes them, in a second archive
    result = await run_archive(database_url, prefix, folder)
    assert (result.archived, result.purged, result.resumed, result.removed) == (3, 3, (), ())
    got = check_directory(folder)
    assert len(got.complete) == 2 and set(got.ids) == set(pop.old)
    assert result.file in got.complete
    # and a third finds nothing old: no file
    nothing = await run_archive(database_url, prefix, folder)
    assert (nothing.file, nothing.archived, nothing.purged) == (None, 0, 0)
    assert len(check_directory(folder).complete) == 2


async def test_archive_of_some_chatbots_only(
    tracker: sessiontrack.Tracker, database_url: str, prefix: str, tmp_path: Path
) -> None:
    pop = Population()
    pop.add(tracker.plugin_manager, 6, chatbots=("a", "b", "c"))
    await tracker.flush()
    folder = tmp_path / "archives"
    seen: list[tuple[str, int, int | None]] = []
    result = await run_archive(
        database_url,
        prefix,
        folder,
        chatbot_ids=["a", "c"],
        batch_size=3,
        progress=lambda *a: seen.append(a),
    )
    got = check_directory(folder)
    taken = {sid for i, sid in enumerate(pop.old) if i % 3 != 1}
    assert set(got.ids) == taken and len(taken) == result.archived == result.purged == 4
    assert await stored(tracker) == (set(pop.old) - taken) | set(pop.young) | set(pop.active)
    manifest = json.loads(next(folder.glob("*.manifest.json")).read_bytes())
    assert manifest["chatbotIds"] == ["a", "c"]
    assert seen == [
        ("write", 3, None),
        ("write", 4, None),
        ("written", 4, 4),
        ("verify", 4, 4),
        ("purge", 0, 4),
        ("purge", 3, 4),
        ("purge", 4, 4),
    ]


async def test_a_busy_directory_is_refused_and_a_failed_verification_purges_nothing(
    tracker: sessiontrack.Tracker, database_url: str, prefix: str, tmp_path: Path
) -> None:
    folder = tmp_path / "archives"
    run = Paused(database_url, prefix, folder, "written:0")
    try:
        pop = Population()
        pop.add(tracker.plugin_manager, 4)
        await tracker.flush()
        assert run.line() == "ready\n"
        assert run.go() == "paused written 4\n"
        with pytest.raises(
            ArchiveError, match=f"another sessiontrack archive is running in {folder}"
        ):
            await run_archive(database_url, prefix, folder)
    finally:
        run.kill()  # the kernel releases its lock
    data = next(folder.glob("*.jsonl.gz"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # the disk gave back something else
    data.write_bytes(bytes(raw))
    done = archive_cli(database_url, prefix, folder)
    assert done.returncode == 2
    assert "fails its verification (its SHA-256 is not the manifest's)" in done.stderr
    assert "nothing of it was purged" in done.stderr
    assert await stored(tracker) >= set(pop.old)
    # as the message says: moved away, the next run archives those sessions anew
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in folder.glob("sessiontrack-archive-*"):
        path.rename(aside / path.name)
    result = await run_archive(database_url, prefix, folder)
    assert result.archived == result.purged == 4
    assert set(check_directory(folder).ids) == set(pop.old)


def kill_points(rng: random.Random) -> list[str]:
    """Where the runs are killed, in this order, so that each kind of point meets a fresh
    archive and one an earlier kill left: while writing (after a seeded batch); in the
    middle of the purge of a fresh archive; after the rename, before the verification;
    during the verification of the archive that kill left; verified, before its purge;
    and the real command at a seeded moment. ``phase:done`` pauses the driver at the first
    progress report of that phase at or past ``done``."""
    return [
        f"write:{rng.choice((4, 8))}",
        f"purge:{rng.choice((4, 8))}",
        "written:0",
        "verify:0",
        "purge:0",
        "random",
    ]


async def test_killed_at_seeded_points_nothing_is_lost_and_a_rerun_completes(
    tracker: sessiontrack.Tracker,
    database_url: str,
    prefix: str,
    other_prefix: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(14)
    folder = tmp_path / "archives"
    pop = Population()
    for point in kill_points(rng):
        if point == "random":
            # the real command, killed at a seeded moment of its run
            pop.add(tracker.plugin_manager, rng.randint(9, 14))
            await tracker.flush()
            proc = start_cli(*archive_args(database_url, prefix, folder, "--batch-size", "3"))
            await anyio.sleep(rng.uniform(0.5, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            run = Paused(database_url, prefix, folder, point)
            pop.add(tracker.plugin_manager, rng.randint(9, 14))
            await tracker.flush()
            assert run.line() == "ready\n"
            paused = run.go()
            run.kill()
            assert paused.startswith("paused " + point.split(":")[0]), (point, paused)
        # nothing is missing from the database that is not in a complete, verified archive
        got = check_directory(folder)
        left = await stored(tracker)
        lost = set(pop.old) - left - set(got.ids)
        assert not lost, (point, lost)
        assert max(got.ids.values(), default=1) == 1, point
        assert set(pop.young) | set(pop.active) <= left, point
        phase = point.partition(":")[0]
        if phase == "write":  # a temporary file, no archive of this run
            assert got.partial and not got.unpurged, point
        elif phase != "random":  # an archive in place, its purge unfinished
            [manifest] = got.unpurged
            held = len(set(manifest["ids"]) & left)
            if phase in ("written", "verify"):  # nothing of it purged yet
                assert held == manifest["sessions"], point
            else:
                assert 0 < held <= manifest["sessions"] - int(point.partition(":")[2]), point
    done = archive_cli(database_url, prefix, folder)
    assert done.returncode == 0, done.stderr
    got = check_directory(folder)
    # every old session is in exactly one archive, and none in the database any more
    assert set(got.ids) == set(pop.old) and max(got.ids.values()) == 1
    assert not got.unpurged and not got.partial
    assert await stored(tracker) == set(pop.young) | set(pop.active)
    # restoring every archive at once: concatenated gzip files are one import
    union = tmp_path / "all.jsonl.gz"
    union.write_bytes(b"".join(path.read_bytes() for path in got.complete))
    assert len(gzip.decompress(union.read_bytes()).splitlines()) == len(pop.old)
    store = SQLAlchemyStore(database_url, prefix=other_prefix)
    await store.open(migrate=True)
    try:
        assert await import_jsonl(store, union) == len(pop.old)
    finally:
        await store.close()


class Stop(Exception):
    """Raised from the progress callback: the run ends there, its files as they are."""


def stop_at(phase: str) -> Any:
    def progress(now: str, done: int, total: int | None) -> None:
        if now == phase:
            raise Stop(phase)

    return progress


async def test_a_run_ended_between_the_two_renames_is_finished_by_the_next(
    tracker: sessiontrack.Tracker,
    database_url: str,
    prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pop = Population()
    pop.add(tracker.plugin_manager, 5)
    await tracker.flush()
    folder = tmp_path / "archives"
    with pytest.raises(Stop):
        await run_archive(database_url, prefix, folder, progress=stop_at("written"))
    [data] = folder.glob("*.jsonl.gz")
    # the manifest in place, the data file still at its temporary name
    partial = data.with_name(data.name + ".partial")
    data.rename(partial)
    result = await run_archive(database_url, prefix, folder)
    assert result.resumed == (data,) and result.file is None
    assert (result.archived, result.purged) == (0, 5)
    got = check_directory(folder)
    assert got.complete == [data] and not got.unpurged and not got.partial
    assert set(got.ids) == set(pop.old)
    # the same state with a temporary file that does not verify: both go, as never
    # completed, and the run archives the sessions anew
    pop.add(tracker.plugin_manager, 3)
    await tracker.flush()
    with pytest.raises(Stop):
        await run_archive(database_url, prefix, folder, progress=stop_at("written"))
    newest = max(folder.glob("*.jsonl.gz"))
    broken = newest.with_name(newest.name + ".partial")
    broken.write_bytes(newest.read_bytes()[:-10])
    newest.unlink()
    result = await run_archive(database_url, prefix, folder)
    assert broken in result.removed and result.archived == result.purged == 3
    got = check_directory(folder)
    assert len(got.complete) == 2 and set(got.ids) == set(pop.old) and not got.partial
    # a manifest of another database is left alone, with a warning
    pop.add(tracker.plugin_manager, 2)
    await tracker.flush()
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=False)
    try:
        with pytest.raises(Stop):
            cutoff = datetime.now(UTC) - timedelta(days=30)
            await archive(store, folder, cutoff, source="elsewhere", progress=stop_at("purge"))
    finally:
        await store.close()
    with caplog.at_level("WARNING", logger="sessiontrack._archive"):
        result = await run_archive(database_url, prefix, folder)
    assert "is of elsewhere, not" in caplog.text
    assert result.resumed == () and result.archived == 2  # archived again, by this source
    assert len(check_directory(folder).unpurged) == 1
