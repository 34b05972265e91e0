"""``python -m examples.helpdesk``: the helpdesk host app with live simulated traffic."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from datetime import timedelta
from typing import Any

import anyio
import uvicorn

from sessiontrack.cli import CommandError, check_sqlite_folder, database_errors
from sessiontrack.store import SQLAlchemyStore, normalize_url

from .app import DEFAULT_DATABASE_URL, MOUNT, Helpdesk, create_helpdesk
from .engine import Sender
from .sender import CloudApiSender, RecordingSender
from .simulator import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.helpdesk",
        description="A WhatsApp helpdesk bot with sessiontrack mounted at "
        f"{MOUNT} and simulated customers.",
        epilog="Environment: WHATSAPP_VERIFY_TOKEN (webhook verification), WHATSAPP_APP_SECRET "
        "(X-Hub-Signature-256 checks), WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID "
        "(reply through the Cloud API instead of recording replies; turns the "
        "simulator off), HELPDESK_ALERTS_URL (as --alerts-url), HELPDESK_ALERTS_SECRET "
        "(the alerts' signing secret).",
    )
    p.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="database URL, e.g. postgresql://user@host/db or sqlite:///file.db "
        f"(default: {DEFAULT_DATABASE_URL})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--no-simulator", action="store_true", help="serve only; no simulated traffic")
    p.add_argument(
        "--customers",
        type=int,
        default=None,
        help="simulate this many customers, then stop simulating (default: no end)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=45.0,
        help="seconds without activity before a session expires (default 45, short "
        "so that abandoned chats expire while you watch)",
    )
    p.add_argument(
        "--alerts-url",
        default=os.environ.get("HELPDESK_ALERTS_URL"),
        help="post the demo's alerts (a session expired or stopped, stuck on a form, a "
        "node's drop-off) to this URL, e.g. http://127.0.0.1:9000/alerts from "
        "python -m examples.helpdesk.alert_receiver (default: $HELPDESK_ALERTS_URL, or off)",
    )
    p.add_argument(
        "--alerts-format",
        choices=["webhook", "slack", "teams"],
        default="webhook",
        help="what the alerts look like: a signed webhook (default), or a Slack- or "
        "Teams-compatible incoming-webhook message",
    )
    return p.parse_args(argv)


async def open_database(url: str) -> None:
    """Create or upgrade the tables before uvicorn starts: a database that cannot be
    reached is then one line (a :class:`CommandError`), not a failed lifespan's traceback."""
    store = SQLAlchemyStore(url)
    try:
        with database_errors(url):
            await store.open(migrate=True)
    finally:
        await store.close()


async def serve(helpdesk: Helpdesk, args: argparse.Namespace) -> bool:
    """Serve until Ctrl-C; ``False`` if the server could not start."""
    config = uvicorn.Config(
        helpdesk.app, host=args.host, port=args.port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    started = False
    try:  # bind before the app starts: a port in use is then one line, with no tracker run
        sock = config.bind_socket()
    except SystemExit:  # uvicorn logged why
        return False
    async with anyio.create_task_group() as tg:

        async def run_server() -> None:
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot start
                await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

        tg.start_soon(run_server)
        while True:  # until uvicorn listens (or gives up, which cancels this group)
            await anyio.sleep(0.05)
            if server.started:
                break
        started = True
        local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        base = f"http://{local}:{args.port}"
        print(f"helpdesk running on {base} ({helpdesk.tracker.store!r})")
        print(f"  dashboard: {base}{MOUNT}/ui/")
        print(f"  API:       {base}{MOUNT}/   webhook: {base}/webhook")
        print("  Ctrl-C to stop", flush=True)
        if not args.no_simulator:
            assert isinstance(helpdesk.sender, RecordingSender)
            simulator = Simulator(
                base,
                helpdesk.sender,
                app_secret=helpdesk.app_secret,
                customers=args.customers,
                out=sys.stdout,
            )
            tg.start_soon(_simulate, simulator, server)
    return started


async def _simulate(simulator: Simulator, server: uvicorn.Server) -> None:
    """Run the simulator until it is done or the server starts shutting down."""
    async with anyio.create_task_group() as tg:

        async def stop_on_exit() -> None:
            while True:
                await anyio.sleep(0.1)
                if server.should_exit:
                    break
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_exit)
        await simulator.run()
        tg.cancel_scope.cancel()


def webhook_delivery() -> list[Any]:
    """The demo delivers the webhook subscriptions of its database (``sessiontrack
    webhooks add --database-url sqlite:///helpdesk.db URL``; docs/notifications.md)."""
    try:
        from sessiontrack.notify import Webhooks

        return [Webhooks()]
    except ImportError as exc:
        print(f"webhooks off: {exc}")
        return []


def alert_delivery(args: argparse.Namespace) -> list[Any]:
    """The demo's alert rules, when ``--alerts-url`` (or ``HELPDESK_ALERTS_URL``) is set."""
    if not args.alerts_url:
        return []
    from .alerts import DEFAULT_SECRET, demo_alerts

    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"alerts: posted to {args.alerts_url} ({args.alerts_format})")
    return [
        demo_alerts(
            args.alerts_url,
            kind=args.alerts_format,
            secret=os.environ.get("HELPDESK_ALERTS_SECRET", DEFAULT_SECRET),
            dashboard_url=f"http://{local}:{args.port}{MOUNT}/ui/",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sender: Sender | None = None
    token = os.environ.get("WHATSAPP_ACCESS_TOKEN")
    number = os.environ.get("WHATSAPP_PHONE_NUMBER_ID")
    if token and number:  # a real WhatsApp Business number: reply through the Cloud API
        sender = CloudApiSender(number, token)
        if not args.no_simulator:
            print("WHATSAPP_ACCESS_TOKEN is set: replies go to real customers, so no simulator")
            args.no_simulator = True
    try:  # the URL forms every sessiontrack entry point accepts, and one line if unreachable
        database_url = normalize_url(args.database_url)
        check_sqlite_folder(database_url)
        anyio.run(open_database, database_url)
    except (ValueError, ModuleNotFoundError, CommandError) as exc:
        print(f"helpdesk: error: {exc}", file=sys.stderr)
        return 2
    helpdesk = create_helpdesk(
        database_url,
        sender=sender,
        tracker_options={
            "idle_timeout": timedelta(seconds=args.idle_timeout),
            "sweep_interval": min(5.0, args.idle_timeout / 4),
            "migrate": True,
            "consumers": [*webhook_delivery(), *alert_delivery(args)],
        },
    )
    started = True
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutdown
        started = anyio.run(serve, helpdesk, args)
    if not started:
        print("helpdesk could not start: see the error above", file=sys.stderr)
        return 1
    print("\nhelpdesk stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
