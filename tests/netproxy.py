"""A real TCP proxy on 127.0.0.1 that a test can cut and restore: a database outage.

It can also break one connection at the worst moment of a transaction, its ``COMMIT``
(:meth:`Proxy.fail_next_commit`), either before the server sees it or after the server
has committed and before its answer reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

# asyncpg ends a transaction with a simple query, ``Q`` + int32 length + ``COMMIT;\0``
_COMMIT = re.compile(rb"Q\x00\x00\x00[\x0b\x0c]COMMIT;?\x00")
_READY = b"Z\x00\x00\x00\x05"  # ReadyForQuery: the server has answered the query


def _ends_in(match: re.Match[bytes] | None, tail: bytes) -> bool:
    """A match that ends past ``tail`` (what was already forwarded): a new COMMIT."""
    return match is not None and match.end() > len(tail)


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self._commit_fault: bool | None = None  # armed: whether the COMMIT reaches the server
        self.commit_cut = asyncio.Event()  # set once the armed fault has happened

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    def fail_next_commit(self, *, reaches_server: bool) -> None:
        """Break the connection that sends the next ``COMMIT`` (once; later connections
        and commits pass). ``reaches_server``: the server gets the ``COMMIT`` and answers,
        and the answer is thrown away (the transaction committed, the client cannot know);
        otherwise the ``COMMIT`` is thrown away and the server sees the connection drop
        (the transaction rolls back)."""
        self._commit_fault = reaches_server
        self.commit_cut.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        swallowing = False  # the client is gone; the server's answer to COMMIT is awaited

        async def client_to_server() -> None:
            nonlocal swallowing
            tail = b""
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    reaches = self._commit_fault
                    if reaches is not None and _ends_in(_COMMIT.search(tail + data), tail):
                        self._commit_fault = None
                        writer.transport.abort()  # before the server can answer
                        if not reaches:  # the COMMIT is never sent
                            up_writer.transport.abort()
                            self.commit_cut.set()
                            return
                        swallowing = True
                        up_writer.write(data)
                        await up_writer.drain()
                        return  # server_to_client closes the upstream once answered
                    tail = data[-16:]
                    up_writer.write(data)
                    await up_writer.drain()
            up_writer.transport.abort()

        async def server_to_client() -> None:
            with contextlib.suppress(Exception):
                while data := await up_reader.read(65536):
                    if swallowing:
                        if _READY in data:
                            break  # committed; closing now cannot undo it
                        continue
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()
            up_writer.transport.abort()
            if swallowing:
                self.commit_cut.set()

        await asyncio.gather(client_to_server(), server_to_client())
        self._writers.difference_update({writer, up_writer})
