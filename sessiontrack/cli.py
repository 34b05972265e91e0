"""The ``sessiontrack`` command: migrate, purge, and serve (with the web extra)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import anyio
import sqlalchemy as sa

from .store import SQLAlchemyStore, _migrate, mask_url

log = logging.getLogger("sessiontrack")
_DURATION = re.compile(r"^(\d+)([dhm])$")


class CommandError(Exception):
    """A failure to report in one line, without a traceback."""


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h`` or ``45m``."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 30d, 12h or 45m, got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return (
        timedelta(days=n)
        if unit == "d"
        else timedelta(hours=n)
        if unit == "h"
        else timedelta(minutes=n)
    )


def check_url(url: str) -> str:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise CommandError(
            f"not a database URL: {url!r} (e.g. sqlite+aiosqlite:///sessions.db "
            "or postgresql+asyncpg://user@host/db)"
        ) from None
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise CommandError(
            f"unsupported driver {parsed.drivername!r}: use sqlite+aiosqlite or postgresql+asyncpg"
        )
    return url


async def _open(url: str, prefix: str, *, migrate: bool) -> SQLAlchemyStore:
    store = SQLAlchemyStore(url, prefix=prefix)
    try:
        await store.open(migrate=migrate)
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        await store.close()
        raise CommandError(f"cannot reach the database at {mask_url(url)}: {exc}") from None
    except Exception:
        await store.close()
        raise
    return store


async def _migrate_cmd(args: argparse.Namespace) -> None:
    store = await _open(args.database_url, args.prefix, migrate=True)
    try:
        async with store.engine.connect() as conn:
            revision = await conn.run_sync(_migrate.current, args.prefix)
        where = mask_url(args.database_url)
        print(f"sessiontrack tables ({args.prefix}*) at revision {revision} in {where}")
    finally:
        await store.close()


def _progress_printer(stream=sys.stderr) -> Callable[[int], None]:  # type: ignore[no-untyped-def]
    def show(total: int) -> None:
        stream.write(f"\rpurged {total} sessions…")
        stream.flush()

    return show


async def _purge_cmd(args: argparse.Namespace) -> None:
    store = await _open(args.database_url, args.prefix, migrate=False)
    try:
        cutoff = datetime.now(UTC) - args.older_than
        show = _progress_printer() if not args.quiet else None
        total = await store.purge(cutoff, batch_size=args.batch_size, progress=show)
        if show is not None and total:
            sys.stderr.write("\n")
        print(f"purged {total} sessions that ended before {cutoff.isoformat(timespec='seconds')}")
    finally:
        await store.close()


async def _serve_cmd(args: argparse.Namespace) -> None:
    try:
        from .web.serve import serve
    except ImportError as exc:
        raise CommandError(f"{exc} (pip install 'sessiontrack[web]')") from None
    mount = args.mount_path if args.mount_path in ("", "/") else "/" + args.mount_path.strip("/")
    await serve(
        args.database_url,
        host=args.host,
        port=args.port,
        table_prefix=args.prefix,
        mount_path="" if mount == "/" else mount,
        poll_interval=args.poll_interval,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessiontrack", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url",
            required=True,
            type=str,
            help="e.g. postgresql+asyncpg://user@host/db or sqlite+aiosqlite:///sessions.db",
        )
        p.add_argument("--prefix", default="sessiontrack_", help="table name prefix")

    m = sub.add_parser("migrate", help="create or upgrade the sessiontrack tables")
    common(m)
    m.set_defaults(run=_migrate_cmd)

    p = sub.add_parser("purge", help="delete sessions that ended long ago, with their events")
    common(p)
    p.add_argument("--older-than", required=True, type=parse_duration, help="e.g. 30d, 12h")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(run=_purge_cmd)

    s = sub.add_parser(
        "serve",
        help="serve the REST API, live events and dashboard (uvicorn)",
        description="Serve the web app standalone. Without the environment "
        "variable SESSIONTRACK_API_TOKEN only loopback clients are served; with "
        "it, clients must send 'Authorization: Bearer <token>'.",
    )
    common(s)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument(
        "--mount-path",
        default="/",
        help="URL prefix to serve under, e.g. /api/chatbot-sessions (default /)",
    )
    s.add_argument(
        "--poll-interval",
        type=float,
        default=0.5,
        help="seconds between checks for events other processes committed",
    )
    s.set_defaults(run=_serve_cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "database_url"):
            check_url(args.database_url)
        anyio.run(args.run, args)
    except CommandError as exc:
        print(f"sessiontrack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
