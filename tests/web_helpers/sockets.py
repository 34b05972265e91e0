"""Socket.IO clients for tests: python-socketio's AsyncClient and node's socket.io-client."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import socketio

from .live import PREFIX

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NAMESPACE = "/sessions"


@dataclass
class Probe:
    """A connected client and everything it received on ``/sessions``."""

    client: socketio.AsyncClient
    received: list[tuple[str, Any]] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def events(self, prefix: str = "session:") -> list[tuple[str, Any]]:
        answers = {"session:joined", "session:left"}
        return [(n, d) for n, d in self.received if n.startswith(prefix) and n not in answers]

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace=NAMESPACE, timeout=10)

    async def wait_for(
        self, count: int, within: float = 10, prefix: str = "session:"
    ) -> list[tuple[str, Any]]:
        with anyio.fail_after(within):
            while len(self.events(prefix)) < count:
                await self._changed.wait()
                self._changed = anyio.Event()
        return self.events(prefix)

    def on_event(self, name: str, data: Any) -> None:
        self.received.append((name, data))
        self._changed.set()


@asynccontextmanager
async def socket_client(
    url: str, *, prefix: str = PREFIX, auth: Any = None, headers: dict[str, str] | None = None
) -> AsyncIterator[Probe]:
    client = socketio.AsyncClient(reconnection=False)
    probe = Probe(client)

    async def catch_all(event: str, data: Any = None) -> None:
        probe.on_event(event, data)

    client.on("*", catch_all, namespace=NAMESPACE)
    await client.connect(
        url,
        socketio_path=f"{prefix}/socket.io",
        namespaces=[NAMESPACE],
        transports=["websocket"],
        auth=auth,
        headers=headers or {},
        wait_timeout=10,
    )
    try:
        yield probe
    finally:
        await client.disconnect()


def ensure_node_modules() -> None:
    """``npm ci`` in tests/js when socket.io-client is not installed yet."""
    if (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the JavaScript client tests")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        check=True,
        timeout=300,
        capture_output=True,
    )


@asynccontextmanager
async def node_client(
    url: str, *args: str, prefix: str = PREFIX
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run tests/js/client.mjs; yields the process once it printed ``{"ready": true}``."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed for the JavaScript client tests")
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "client.mjs"),
        url,
        f"{prefix}/socket.io",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def read_json_lines(
    proc: asyncio.subprocess.Process, *, until_ready: bool = False, within: float = 20
) -> list[dict[str, Any]]:
    """Lines the node client printed: up to ``{"ready": true}``, or until it exits."""
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    with anyio.fail_after(within):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            line = json.loads(raw)
            lines.append(line)
            if until_ready and line.get("ready"):
                break
            if "connect_error" in line:
                break
    return lines
