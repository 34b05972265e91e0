"""``sessiontrack serve --workers N``: N server processes on one port.

Each worker is a whole ``sessiontrack serve``: its own tracker (which reads every
process's committed events from the log: PostgreSQL wakes it with NOTIFY, SQLite is
polled) and its own uvicorn, listening on the port with ``SO_REUSEPORT``, so the kernel
spreads new connections evenly over the workers (one shared socket would let whichever
worker woke first take a whole burst of them). The parent only supervises: it holds the
port (bound, never listening: it gets no connections), starts the workers, starts a
worker again if one dies, and stops them all on SIGTERM or SIGINT.

Socket.IO's HTTP long-polling sends several requests per connection that would land on
different workers, so with more than one worker the Socket.IO endpoint speaks WebSocket
only (one connection, one worker): a polling client is refused with 400 at once rather
than failing now and then. SSE and the REST API work from any worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import anyio

log = logging.getLogger(__name__)
RESTART_DELAY = 1.0
"""Seconds before a worker that died is started again."""
STOP_TIMEOUT = 10.0
"""Seconds a worker gets to shut down on SIGTERM before it is killed."""


@dataclass(frozen=True)
class ServeOptions:
    """What every worker needs to serve (picklable: it crosses to spawned processes)."""

    database_url: str
    host: str
    port: int
    table_prefix: str
    mount_path: str = ""
    poll_interval: float = 0.5
    access_log: bool = False
    http: str = "auto"
    log_level: int = logging.WARNING


def reuseport_supported() -> bool:
    """Whether connections are spread over ``SO_REUSEPORT`` listeners (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other ``SO_REUSEPORT`` sockets of this
    user may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def worker_main(options: ServeOptions, index: int) -> None:
    """A worker process: listen on the shared port and serve until told to stop."""
    logging.basicConfig(
        level=options.log_level,
        format=f"%(levelname)s %(name)s[worker {index}]: %(message)s",
    )
    sock = bind(options.host, options.port)  # listening once the tracker runs (uvicorn)
    anyio.run(_serve_worker, options, sock)


async def _serve_worker(options: ServeOptions, sock: socket.socket) -> None:
    from .serve import serve_tracker, tracker_for

    tracker = tracker_for(
        options.database_url,
        table_prefix=options.table_prefix,
        poll_interval=options.poll_interval,
    )
    async with tracker:
        await serve_tracker(
            tracker,
            host=options.host,
            port=options.port,
            mount_path=options.mount_path,
            access_log=options.access_log,
            http=options.http,
            sockets=[sock],
            websocket_only=True,
        )


class Supervisor:
    """Starts ``workers`` worker processes and keeps that many running."""

    def __init__(self, options: ServeOptions, workers: int) -> None:
        self.options = options
        self.context = multiprocessing.get_context("spawn")  # no forked event loop or pool
        self.processes: list[BaseProcess] = [self._start(i) for i in range(workers)]

    def _start(self, index: int) -> BaseProcess:
        process = self.context.Process(
            target=worker_main,
            args=(self.options, index),
            name=f"sessiontrack-serve-worker-{index}",
        )
        process.start()
        log.info("started worker %d (pid %s)", index, process.pid)
        return process

    def restart_dead(self) -> None:
        for i, process in enumerate(self.processes):
            if not process.is_alive():
                log.error(
                    "sessiontrack serve: worker %d (pid %s) exited with %s; starting it again",
                    i,
                    process.pid,
                    process.exitcode,
                )
                time.sleep(RESTART_DELAY)
                self.processes[i] = self._start(i)

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                log.error("worker pid %s did not stop in %s s: killed", process.pid, STOP_TIMEOUT)
                process.kill()
                process.join()


async def supervise(options: ServeOptions, workers: int) -> None:
    """Run ``workers`` workers on ``options.port`` until SIGTERM or SIGINT."""
    # Held, never listened on: it keeps the port ours, and a port in use fails here, once.
    holder = bind(options.host, options.port)
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            supervisor = Supervisor(options, workers)
            try:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        while True:
                            await anyio.sleep(0.5)
                            await anyio.to_thread.run_sync(supervisor.restart_dead)

                    tg.start_soon(watch)
                    async for signum in signals:
                        log.info("%s: stopping the workers", signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        break
            finally:
                await anyio.to_thread.run_sync(supervisor.stop)
    finally:
        holder.close()
