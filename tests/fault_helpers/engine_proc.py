"""An engine in its own process, for kill -9: ``python -m fault_helpers.engine_proc``.

It keeps ``--concurrent`` sessions in progress, interleaving their reports as fast as it
can, and every few hundred reports (a random number) checkpoints with ``flush()``; once
the flush returned it appends "session count" lines to the acknowledgement file. It runs
until killed (or for ``--checkpoints``, then closes cleanly).
"""

from __future__ import annotations

import argparse
import os
import random

import anyio

import sessiontrack

from .script import BOTS, LAST, ack_line, report


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    fd = os.open(args.acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with sessiontrack.Tracker(
        args.url, prefix=args.prefix, migrate=True, sweep_interval=None, poll_interval=0.2
    ) as tracker:
        hook = tracker.plugin_manager.hook
        progress: dict[str, int] = {}  # session -> reports made
        bots: dict[str, str] = {}
        done = 0
        print("ready", flush=True)
        while args.checkpoints is None or done < args.checkpoints:
            touched: dict[str, int] = {}
            for _ in range(rng.randint(1, args.max_checkpoint)):
                while len(progress) < args.concurrent:
                    sid = sessiontrack.new_session_id()
                    progress[sid], bots[sid] = 0, rng.choice(BOTS)
                sid = rng.choice(list(progress))
                report(hook, sid, progress[sid], bots[sid])
                progress[sid] += 1
                touched[sid] = progress[sid]
                if progress[sid] > LAST:
                    del progress[sid], bots[sid]
            await tracker.flush()
            os.write(fd, "".join(ack_line(s, n) for s, n in touched.items()).encode())
            done += 1
    os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("acks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--max-checkpoint", type=int, default=500)
    parser.add_argument("--checkpoints", type=int, default=None)
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
