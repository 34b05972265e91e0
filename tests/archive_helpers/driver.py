"""The archive run that ``sessiontrack archive`` makes, in a process a test kills:
``python -m archive_helpers.driver URL PREFIX DIR PAUSE BATCH_SIZE``.

It imports everything, says ``ready``, and waits for a line on stdin before it starts
(the test reports its sessions meanwhile). ``PAUSE`` is ``phase:done`` (a phase of the
archive's progress, ``write``, ``written``, ``verify`` or ``purge``, and the first count
at or past which to stop) or ``none``: there it prints ``paused PHASE DONE`` and blocks
until the next line on stdin, so the test can kill it with SIGKILL at that very point, or
let it go on. The run is the CLI's (the same function, source and 30-day cutoff).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import anyio

from sessiontrack._archive import archive, source_name
from sessiontrack.store import SQLAlchemyStore


def main() -> None:
    url, prefix, folder, pause, batch_size = sys.argv[1:6]
    phase, _, at = pause.partition(":")
    paused = False

    def progress(now: str, done: int, total: int | None) -> None:
        nonlocal paused
        if paused or now != phase or done < int(at):
            return
        paused = True
        print(f"paused {now} {done}", flush=True)
        sys.stdin.readline()  # blocks the run right here (SIGKILL, or a line to go on)

    async def run() -> None:
        store = SQLAlchemyStore(url, prefix=prefix)
        await store.open(migrate=False)
        try:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
            result = await archive(
                store,
                folder,
                datetime.now(UTC) - timedelta(days=30),
                source=source_name(url, prefix),
                batch_size=int(batch_size),
                progress=progress,
            )
            print(f"done {result.archived} {result.purged}", flush=True)
        finally:
            await store.close()

    anyio.run(run)


if __name__ == "__main__":
    main()
