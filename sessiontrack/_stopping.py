"""Stopping a long-running command cleanly on SIGTERM (a container's or a service
manager's stop), as Ctrl-C stops it."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import anyio

log = logging.getLogger(__name__)


async def until_terminated(work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` until it returns or the process receives SIGTERM; then it is
    cancelled, its cleanup runs (cursors and leases are released as at Ctrl-C), and this
    returns normally: the command exits with 0."""
    async with anyio.create_task_group() as tg:

        async def on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("sessiontrack: SIGTERM received, stopping")
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_sigterm)
        await work()
        tg.cancel_scope.cancel()
