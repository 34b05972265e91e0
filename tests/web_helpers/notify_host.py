"""A host process that delivers webhooks: ``python -m tests.web_helpers.notify_host URL
PREFIX``. Prints ``leading`` once its Webhooks group holds the lease; every POST it sends
carries ``X-Test-Host: <pid>``. Runs until killed."""

from __future__ import annotations

import os
import sys

import anyio
import httpx

import sessiontrack
from sessiontrack.notify import Webhooks


class Tagged(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["X-Test-Host"] = str(os.getpid())
        return await super().handle_async_request(request)


async def main(url: str, prefix: str) -> None:
    hooks = Webhooks(
        retry_initial=0.05,
        retry_max=0.5,
        refresh_interval=0.1,
        poll_interval=0.1,
        lease_retry=0.2,
        lease_check=0.5,
        transport=Tagged(),
    )
    async with sessiontrack.Tracker(
        url, prefix=prefix, consumers=[hooks], poll_interval=0.1, sweep_interval=None
    ):
        while not hooks.leading:  # noqa: ASYNC110 - state of another task
            await anyio.sleep(0.05)
        print("leading", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
