"""A live server in a thread of its own, for synchronous tests (schemathesis, hypothesis):
a host app whose lifespan-equivalent enters the tracker, with the sub-app under PREFIX."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sessiontrack
from sessiontrack.web import create_app

from .live import PREFIX, host_app, serve

Populate = Callable[[sessiontrack.Tracker], Awaitable[None]]


@contextmanager
def threaded_server(
    url: str, *, populate: Populate | None = None, **app_options: Any
) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT`` + PREFIX) of a running server."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        tracker_options = app_options.pop("tracker_options", {})
        async with sessiontrack.Tracker(
            url, migrate=True, poll_interval=0.05, **tracker_options
        ) as tracker:
            if populate is not None:
                await populate(tracker)
            app = host_app(create_app(tracker, **app_options))
            async with serve(app) as base:
                box["url"] = base + PREFIX
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop[0].wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="live-server", daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in box:
        raise box["error"]
    try:
        yield box["url"]
    finally:
        box["loop"].call_soon_threadsafe(stop[0].set)
        thread.join(30)
        if "error" in box:
            raise box["error"]
