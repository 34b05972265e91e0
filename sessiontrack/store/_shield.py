"""Store calls that a cancellation cannot interrupt halfway.

anyio cancels a task again at each of its awaits until it ends. When SQLAlchemy's async
driver adapter sees a cancellation in the middle of a statement, it invalidates the
connection and closes it in a shielded task; a second cancellation while it waits for
that task makes it stop aiosqlite's thread as well, and the close task then waits forever
for a thread that has gone (``asyncio.run`` hangs on exit). The calls of the background
consumers (cursors, leases, webhooks, alerts) are short, so they run to their end and
the cancellation takes effect right after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

import anyio

T = TypeVar("T")


@asynccontextmanager
async def uncancelled(cm: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """``async with uncancelled(engine.begin()) as conn:``: the block runs to its end even
    when the task is cancelled meanwhile; the cancellation is raised when it has left."""
    with anyio.CancelScope(shield=True):
        async with cm as value:
            yield value
    await anyio.lowlevel.checkpoint_if_cancelled()
