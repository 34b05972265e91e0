"""Archive: old terminal sessions written to a file, synced, verified, and only then purged.

One run (:func:`archive`, ``sessiontrack archive``) in a directory:

1. takes the directory's lock (one run at a time per directory);
2. finishes what an earlier, interrupted run left (:func:`_resume`): temporary files of an
   archive never completed are removed (their sessions were never purged); a complete
   archive whose purge is not recorded is verified again and its ids purged;
3. writes the terminal sessions completed before the cutoff as ``sessiontrack export
   --format jsonl`` does, gzip-compressed, to ``NAME.jsonl.gz.partial`` and fsyncs it;
   writes the manifest (the ids in order, their count, the file's SHA-256) to
   ``NAME.manifest.json.partial`` and fsyncs it; renames the manifest, then the data file,
   and fsyncs the directory;
4. verifies the file as it is on disk: its checksum, every line parses as ``sessiontrack
   import`` reads it, and the ids are the manifest's, in order, none twice;
5. purges exactly those ids (those still stored and completed before the cutoff), in
   batches;
6. records the purge in the manifest (rewritten atomically, as in 3).

A run killed at any point leaves every session either still in the database or in a
complete, verified archive; the next run completes the job (step 2), so the union of the
archives holds each archived session once. See docs/privacy.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import json
import logging
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio

from ._export import jsonl_stream
from ._import import parse_line
from .abc import Store
from .store import ExportOrder, SessionFilter, mask_url

log = logging.getLogger(__name__)

FORMAT = "sessiontrack-archive/1"
"""The manifest's ``format``."""
STEM = "sessiontrack-archive-"
DATA = ".jsonl.gz"
MANIFEST = ".manifest.json"
PARTIAL = ".partial"
LOCK = ".sessiontrack-archive.lock"
_ORDER = ExportOrder(sort_by="completed_at", descending=False)
_READ = 1 << 20

Progress = Callable[[str, int, int | None], None]
"""``(phase, done, total)``: ``write`` (sessions written, total unknown), ``written`` (the
file is renamed into place, before it is verified), ``verify`` and ``purge``."""


def source_name(url: str, prefix: str) -> str:
    """The ``source`` the CLI gives :func:`archive`: the database URL (password masked)
    and the table prefix."""
    return f"{mask_url(url)} prefix={prefix}"


class ArchiveError(Exception):
    """A directory or an archive a run cannot go on with; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What one run did."""

    file: Path | None
    """The archive this run wrote (``None``: no session was old enough)."""
    archived: int
    """Sessions written to it (and verified)."""
    purged: int
    """Sessions this run deleted, those of resumed archives included."""
    resumed: tuple[Path, ...] = ()
    """Complete archives of an earlier run whose purge this run finished."""
    removed: tuple[Path, ...] = ()
    """Temporary files of archives never completed, removed."""


@dataclass
class _Run:
    store: Store
    directory: Path
    source: str
    batch_size: int
    progress: Progress | None
    purged: int = 0
    resumed: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def show(self, phase: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)


async def archive(
    store: Store,
    directory: str | Path,
    cutoff: datetime,
    *,
    source: str,
    chatbot_ids: Collection[str] | None = None,
    batch_size: int = 200,
    progress: Progress | None = None,
) -> ArchiveResult:
    """Archive the terminal sessions completed before ``cutoff`` (of ``chatbot_ids``, or
    all) into ``directory``, then purge them; see the module's docstring for the steps.
    ``source`` names the database and tables (the CLI: the masked URL and the prefix): an
    interrupted archive is resumed only by a run naming the same source.

    :raises ArchiveError: if another run holds the directory, or an archive there fails
        its verification (nothing of it is purged then).
    """
    folder = Path(directory)
    await anyio.to_thread.run_sync(functools.partial(folder.mkdir, parents=True, exist_ok=True))
    run = _Run(store, folder, source, batch_size, progress)
    with _locked(folder):
        await _resume(run)
        chatbots = None if chatbot_ids is None else frozenset(chatbot_ids)
        f = SessionFilter(chatbot_ids=chatbots, completed_before=cutoff)
        name = STEM + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        manifest = await _write(run, name, f, cutoff)
        if manifest is None:
            return ArchiveResult(None, 0, run.purged, tuple(run.resumed), tuple(run.removed))
        run.show("written", manifest["sessions"], manifest["sessions"])
        await _verify_and_purge(run, manifest)
    return ArchiveResult(
        folder / manifest["file"],
        manifest["sessions"],
        run.purged,
        tuple(run.resumed),
        tuple(run.removed),
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArchiveError(f"another sessiontrack archive is running in {folder}") from None
        yield  # the kernel drops the lock when the process ends, even on SIGKILL
    finally:
        os.close(fd)


# --- writing ------------------------------------------------------------------------------


class _Hashing:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class _DataFile:
    """The archive's data file being written: gzip over a hashing file, at its temporary
    name. Blocking: the caller runs its methods in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = path.open("xb")
        self.out = _Hashing(self.raw)
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.out, compresslevel=6, mtime=0)

    def write(self, chunk: bytes) -> None:
        self.gz.write(chunk)

    def close(self, keep: bool) -> None:
        """Finish the file and sync it (``keep``), or close and remove it."""
        try:
            self.gz.close()
            self.raw.flush()
            if keep:
                os.fsync(self.raw.fileno())
        finally:
            self.raw.close()
            if not keep:
                self.path.unlink()


async def _write(run: _Run, name: str, f: SessionFilter, cutoff: datetime) -> dict[str, Any] | None:
    """Write the archive and its manifest into place (step 3); ``None`` if no session
    matched (nothing is left behind then)."""
    data = run.directory / (name + DATA)
    ids: list[str] = []

    async def note(batch: list[str]) -> None:
        ids.extend(batch)

    def written(done: int) -> None:
        run.show("write", done, None)

    file = await anyio.to_thread.run_sync(_DataFile, data.with_name(data.name + PARTIAL))
    keep = False
    try:
        stream = jsonl_stream(
            run.store, f, _ORDER, on_batch=note, progress=written, batch_size=run.batch_size
        )
        async for chunk in stream:
            await anyio.to_thread.run_sync(file.write, chunk)  # compressing: off the loop
        keep = bool(ids)
    finally:
        await anyio.to_thread.run_sync(file.close, keep)
    if not ids:
        return None
    manifest = {
        "format": FORMAT,
        "file": data.name,
        "sha256": file.out.sha.hexdigest(),
        "bytes": file.out.size,
        "sessions": len(ids),
        "cutoff": cutoff.isoformat(),
        "chatbotIds": None if f.chatbot_ids is None else sorted(f.chatbot_ids),
        "source": run.source,
        "createdAt": datetime.now(UTC).isoformat(),
        "purged": None,
        "purgedAt": None,
        "ids": ids,
    }
    await anyio.to_thread.run_sync(_place, run.directory, name, manifest, file.path)
    log.info("sessiontrack archive: wrote %d sessions to %s", len(ids), data)
    return manifest


def _place(folder: Path, name: str, manifest: dict[str, Any], data_tmp: Path) -> None:
    """The manifest into place, then the data file (so that a data file in place always
    has its manifest), then the directory synced. Blocking."""
    _write_manifest(_manifest_path(folder, name), manifest, sync_dir=False)
    data_tmp.replace(folder / manifest["file"])
    _fsync_dir(folder)


def _manifest_path(folder: Path, name: str) -> Path:
    return folder / (name + MANIFEST)


def _write_manifest(path: Path, manifest: dict[str, Any], *, sync_dir: bool = True) -> None:
    """Write ``manifest`` to ``path`` atomically: a synced temporary file renamed over it.
    Blocking."""
    tmp = path.with_name(path.name + PARTIAL)
    with tmp.open("wb") as fh:
        fh.write(json.dumps(manifest, indent=1).encode())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    if sync_dir:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- verifying and purging ------------------------------------------------------------------


def verify(path: Path, manifest: dict[str, Any], progress: Progress | None = None) -> None:
    """Check the archive at ``path`` against its manifest: the SHA-256 of the file, every
    line a session as ``sessiontrack import`` parses it, terminal and completed before the
    cutoff, the ids those of the manifest in its order, none twice.

    :raises ValueError: saying what does not hold.
    """
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_READ):
            sha.update(block)
    if sha.hexdigest() != manifest["sha256"]:
        raise ValueError("its SHA-256 is not the manifest's")
    cutoff = datetime.fromisoformat(manifest["cutoff"])
    expected: list[str] = manifest["ids"]
    total = len(expected)
    seen: list[str] = []
    with gzip.open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            try:
                detail = parse_line(line).detail
            except ValueError as exc:
                raise ValueError(f"line {number} is not a session: {exc}") from None
            ended = detail.completed_at
            if ended is None or ended >= cutoff:
                raise ValueError(
                    f"line {number}: session {detail.id} did not end before the cutoff"
                )
            seen.append(detail.id)
            if progress is not None and number % 1000 == 0:
                progress("verify", number, total)
    if seen != expected or len(set(seen)) != total or manifest["sessions"] != total:
        raise ValueError(f"it holds {len(seen)} sessions, not the manifest's {total} in order")
    if progress is not None:
        progress("verify", total, total)


async def _verify_and_purge(run: _Run, manifest: dict[str, Any]) -> None:
    """Steps 4 to 6 for one archive whose data file is in place."""
    path = run.directory / manifest["file"]
    try:
        await anyio.to_thread.run_sync(verify, path, manifest, run.progress)
    except _UNREADABLE as exc:
        raise ArchiveError(
            f"{path} fails its verification ({exc}); nothing of it was purged by this run. "
            "Move it and its manifest out of the directory and run again: the sessions "
            "still in the database are archived anew"
        ) from None
    total = manifest["sessions"]
    run.show("purge", 0, total)

    def purging(done: int) -> None:
        run.show("purge", done, total)

    cutoff = datetime.fromisoformat(manifest["cutoff"])
    purged = await run.store.purge(
        cutoff, ids=manifest["ids"], batch_size=run.batch_size, progress=purging
    )
    run.purged += purged
    manifest["purged"] = purged
    manifest["purgedAt"] = datetime.now(UTC).isoformat()
    name = manifest["file"].removesuffix(DATA)
    await anyio.to_thread.run_sync(_write_manifest, _manifest_path(run.directory, name), manifest)
    log.info("sessiontrack archive: purged %d sessions archived in %s", purged, path)


_UNREADABLE = (OSError, ValueError, EOFError, gzip.BadGzipFile)


# --- resuming -----------------------------------------------------------------------------


def _names(folder: Path) -> list[str]:
    """The archive names of every file of ours in ``folder``."""
    names = set()
    for entry in folder.iterdir():
        base = entry.name.removesuffix(PARTIAL)
        for suffix in (DATA, MANIFEST):
            if base.startswith(STEM) and base.endswith(suffix):
                names.add(base.removesuffix(suffix))
    return sorted(names)


@dataclass(frozen=True, slots=True)
class _Unfinished:
    """A complete archive whose purge is not recorded; ``in_place``: its data file is at
    its name (else only at its temporary name: killed between the two renames)."""

    manifest: dict[str, Any]
    path: Path
    in_place: bool


async def _resume(run: _Run) -> None:
    """Step 2: finish, or clear, what earlier runs left in the directory."""
    unfinished = await anyio.to_thread.run_sync(_leftovers, run)
    for left in unfinished:
        data = run.directory / left.manifest["file"]
        if not left.in_place:
            tmp = data.with_name(data.name + PARTIAL)
            try:
                await anyio.to_thread.run_sync(verify, tmp, left.manifest)
            except _UNREADABLE:
                # never in place, so never verified and nothing of it purged
                await anyio.to_thread.run_sync(_drop, run, [tmp, left.path])
                continue
            await anyio.to_thread.run_sync(_rename, tmp, data)
        log.info("sessiontrack archive: finishing %s, left by a run that did not finish", data)
        await _verify_and_purge(run, left.manifest)
        run.resumed.append(data)


def _leftovers(run: _Run) -> list[_Unfinished]:
    """Remove the temporary files of archives never completed, and list the complete
    archives of this source whose purge is not recorded. Blocking."""
    out = []
    for name in _names(run.directory):
        data = run.directory / (name + DATA)
        data_tmp = data.with_name(data.name + PARTIAL)
        path = _manifest_path(run.directory, name)
        _drop(run, [path.with_name(path.name + PARTIAL)])  # the manifest in place rules
        if not path.exists():
            _drop(run, [data_tmp])  # never completed: nothing of it was purged
            if data.exists():
                log.warning("sessiontrack archive: %s has no manifest: left alone", data)
            continue
        manifest = _load(path)
        if manifest.get("source") != run.source:
            log.warning(
                "sessiontrack archive: %s is of %s, not %s: left alone",
                path,
                manifest.get("source"),
                run.source,
            )
            continue
        if manifest.get("purgedAt"):
            _drop(run, [data_tmp])
            continue
        if not data.exists() and not data_tmp.exists():
            raise ArchiveError(
                f"{path} names {data.name}, which is missing, and records no purge: some "
                "of its sessions may be purged already. Put the file back, or move the "
                "manifest out of the directory, and run again"
            )
        out.append(_Unfinished(manifest, path, data.exists()))
    return out


def _drop(run: _Run, paths: list[Path]) -> None:
    """Remove those of ``paths`` that exist, and sync the directory if any did."""
    gone = False
    for path in paths:
        if path.exists():
            path.unlink()
            run.removed.append(path)
            gone = True
            log.info("sessiontrack archive: removed %s, left by a run that did not finish", path)
    if gone:
        _fsync_dir(run.directory)


def _rename(tmp: Path, data: Path) -> None:
    tmp.replace(data)
    _fsync_dir(data.parent)


def _load(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"cannot read the manifest {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a manifest of {FORMAT}")
    return manifest
