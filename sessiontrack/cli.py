"""The ``sessiontrack`` command: migrate, purge, serve (with the web extra), analytics,
export, import, fixture, archive, webhooks, alerts, otel and erase."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa

from ._stopping import until_terminated
from .errors import InvalidParameter, SchemaOutdated
from .store import SQLAlchemyStore, _migrate, mask_url, normalize_url

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
    """The URL in the form every entry point runs it with (``store.normalize_url``)."""
    try:
        return normalize_url(url)
    except (ValueError, ModuleNotFoundError) as exc:
        raise CommandError(str(exc)) from None


def check_sqlite_folder(url: str) -> None:
    """Refuse a SQLite file whose directory does not exist, before any driver starts: SQLite
    would not create it, and an aiosqlite connection that fails to open can still be
    finishing in its thread when the command exits, printing a traceback of its own."""
    parsed = sa.make_url(url)
    name = parsed.database or ""
    if (
        parsed.get_backend_name() != "sqlite"
        or name in ("", ":memory:")
        or name.startswith("file:")
    ):
        return
    folder = Path(name).expanduser().absolute().parent
    if not folder.is_dir():
        raise CommandError(
            f"cannot reach the database at {mask_url(url)}: its directory {folder} does not exist"
        )


def connection_problem(exc: BaseException) -> str | None:
    """One line saying why the database could not be reached or logged into, or ``None``
    for an error that is not about reaching it (a bug, whose traceback must show)."""
    if isinstance(exc, sa.exc.DBAPIError):
        exc = exc.orig or exc  # the driver's own words, without SQLAlchemy's footer
    elif not isinstance(exc, OSError | sqlite3.Error) and not _is_asyncpg_error(exc):
        return None
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "unable to open database file" in text:
        text += " (does its directory exist, and may this user write there?)"
    return text


def _is_asyncpg_error(exc: BaseException) -> bool:
    asyncpg = sys.modules.get("asyncpg")  # imported by the store only when it is used
    return asyncpg is not None and isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a failure to open the database at ``url`` into one line, password masked."""
    try:
        yield
    except SchemaOutdated as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:
        reason = connection_problem(exc)
        if reason is None:
            raise
        log.info("opening %s failed", mask_url(url), exc_info=True)  # the traceback with -v
        verb = "use" if getattr(exc, "statement", None) else "reach"
        raise CommandError(f"cannot {verb} the database at {mask_url(url)}: {reason}") from None


async def _open(url: str, prefix: str, *, migrate: bool) -> SQLAlchemyStore:
    store = SQLAlchemyStore(url, prefix=prefix)
    try:
        with database_errors(url):
            await store.open(migrate=migrate)
    except BaseException:
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


def _progress_printer(  # type: ignore[no-untyped-def]
    stream=sys.stderr, line: str = "purged {} sessions…"
) -> Callable[..., None]:
    """A progress callback rewriting one line of ``stream``: ``line`` formatted with the
    callback's arguments."""

    def show(*done: int) -> None:
        stream.write("\r" + line.format(*done))
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


async def _erase_cmd(args: argparse.Namespace) -> None:
    import os

    from ._erasure import erasure_key
    from .store._erase import COUNT_FIELDS

    try:
        kind, value = erasure_key(
            phone=args.phone, conversation_id=args.conversation_id, session_id=args.session_id
        )
    except InvalidParameter as exc:
        raise CommandError(f"--{exc.field.replace('_', '-')}: {exc.message}") from None
    key = os.environ.get("SESSIONTRACK_AUDIT_KEY")
    store = await _open(args.database_url, args.prefix, migrate=False)
    try:
        show = _progress_printer(line="erased {} sessions…") if not args.quiet else None
        counts = await store.erase(
            kind,
            value,
            principal=args.principal,
            audit_key=key.encode() if key else None,
            batch_size=args.batch_size,
            scrub=not args.no_scrub,
            progress=show,
        )
        if show is not None and counts["sessions"]:
            sys.stderr.write("\n")
    finally:
        await store.close()
    figures = ", ".join(f"{counts[name]} {name.replace('_', ' ')}" for name in COUNT_FIELDS)
    print(f"erased {figures} (audit record {counts['audit_id']})")


def _erase_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    e = sub.add_parser(
        "erase",
        help="erase one person's sessions, events, messages and index entries",
        description="Erase every stored trace of one person (docs/privacy.md): the "
        "sessions of a phone number, conversation or session, with their events, "
        "messages, tags, search entries and analytics traces; the analytics rollups are "
        "recomputed without them. An audit record keeps who, when, an HMAC of the key "
        "(with SESSIONTRACK_AUDIT_KEY if set, else the database's key) and the counts.",
    )
    common(e)
    key = e.add_mutually_exclusive_group(required=True)
    key.add_argument("--phone", help="the customer's phone number, as reported")
    key.add_argument("--conversation-id", help="the engine's conversation id")
    key.add_argument("--session-id", help="one session's id")
    e.add_argument("--principal", help="who asks (recorded in the audit)")
    e.add_argument("--batch-size", type=int, default=500, help="sessions a transaction")
    e.add_argument(
        "--no-scrub",
        action="store_true",
        help="skip rewriting the tables (SQLite VACUUM, PostgreSQL VACUUM FULL): faster, "
        "but deleted bytes stay in free space until reused",
    )
    e.add_argument("--quiet", action="store_true", help="no progress line")
    e.set_defaults(run=_erase_cmd)


async def _rebuild_cmd(args: argparse.Namespace) -> None:
    from .analytics._rebuild import rebuild

    store = await _open(args.database_url, args.prefix, migrate=False)
    try:
        show = _progress_printer(line="analytics: {} of {} events…") if not args.quiet else None
        started = time.monotonic()
        total = await rebuild(store, progress=show)
        if show is not None and total:
            sys.stderr.write("\n")
        took = time.monotonic() - started
        print(f"analytics rebuilt from {total} events in {took:.1f} s")
    finally:
        await store.close()


async def _serve_cmd(args: argparse.Namespace) -> None:
    try:
        from .web.serve import serve_tracker, tracker_for
    except ImportError as exc:
        raise CommandError(f'{exc} (pip install "sessiontrack[web]")') from None
    mount = args.mount_path if args.mount_path in ("", "/") else "/" + args.mount_path.strip("/")
    mount = "" if mount == "/" else mount
    if args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    tracker = tracker_for(
        args.database_url, table_prefix=args.prefix, poll_interval=args.poll_interval
    )
    try:
        with database_errors(args.database_url):  # before uvicorn: one line, no traceback
            await tracker.start()
    except BaseException:
        await tracker.store.close()  # a failed start leaves the engine (and its thread) open
        raise
    if args.workers > 1:
        await tracker.aclose()  # the database answers: each worker opens its own
        await _serve_workers(args, mount)
        return
    try:
        await serve_tracker(
            tracker,
            host=args.host,
            port=args.port,
            mount_path=mount,
            access_log=args.access_log,
            http=args.http,
        )
    finally:
        await tracker.aclose()


async def _serve_workers(args: argparse.Namespace, mount: str) -> None:
    from .web.workers import ServeOptions, reuseport_supported, supervise

    if not reuseport_supported():
        raise CommandError("--workers above 1 needs SO_REUSEPORT as Linux has it")
    options = ServeOptions(
        database_url=args.database_url,
        host=args.host,
        port=args.port,
        table_prefix=args.prefix,
        mount_path=mount,
        poll_interval=args.poll_interval,
        access_log=args.access_log,
        http=args.http,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    try:
        await supervise(options, args.workers)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None


_REPORT_ONLY = {"steps": "funnel", "limit": "paths"}


async def _export_cmd(args: argparse.Namespace) -> None:
    from .analytics._csv import REPORTS
    from .analytics._service import Analytics

    for option, report in _REPORT_ONLY.items():
        if getattr(args, option) is not None and args.report != report:
            raise CommandError(f"--{option} applies to --report {report} only")
    if args.report == "funnel" and not args.steps:
        raise CommandError("--report funnel needs --steps (node ids, comma-separated)")
    kwargs: dict[str, Any] = {
        "version": args.version,
        "start_date": args.start_date,
        "end_date": args.end_date,
        "tz": args.tz,
    }
    if args.steps is not None:
        kwargs["steps"] = args.steps.split(",")
    if args.limit is not None:
        kwargs["limit"] = args.limit
    store = await _open(args.database_url, args.prefix, migrate=False)
    try:
        report = getattr(Analytics(store), args.report)
        try:
            answer = await report(args.chatbot, **kwargs)
        except InvalidParameter as exc:
            raise CommandError(f"{_FLAGS.get(exc.field, exc.field)}: {exc.message}") from None
        except LookupError:
            raise CommandError(f"no chatbot {args.chatbot!r} in this database") from None
    finally:
        await store.close()
    if args.format == "json":
        text = json.dumps(answer, indent=2, ensure_ascii=False) + "\n"
    else:
        text = REPORTS[args.report](answer)
    if args.output is None:
        sys.stdout.write(text)
        return
    try:
        await anyio.Path(args.output).write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None


_FLAGS = {
    "chatbotId": "--chatbot",
    "version": "--version",
    "startDate": "--start-date",
    "endDate": "--end-date",
    "tz": "--tz",
    "steps": "--steps",
    "limit": "--limit",
}
"""The flag for each field the analytics service may refuse."""


def _filter_flags() -> dict[str, tuple[str, str]]:
    """``{parameter: (flag, annotation)}`` of every filter ``tracker.sessions`` takes
    (:meth:`SessionQueries.session_filter`): the list filters, so a filter added there is
    a flag of ``sessiontrack export`` too."""
    import inspect

    from .query import SessionQueries

    params = inspect.signature(SessionQueries.session_filter).parameters
    return {
        name: ("--" + name.replace("_", "-"), str(p.annotation))
        for name, p in params.items()
        # ``now`` is the library's clock for durations, not a filter
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("principal", "now")
    }


def _flag_value(annotation: str) -> Callable[[str], Any]:
    def when(text: str) -> datetime:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an ISO 8601 datetime, got {text!r}"
            ) from None
        if value.utcoffset() is None:
            raise argparse.ArgumentTypeError(f"{text!r} needs a timezone (Z or +01:00)")
        return value

    def flag(text: str) -> bool:
        if text.lower() not in ("true", "false"):
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        return text.lower() == "true"

    for word, parse in (("datetime", when), ("bool", flag), ("int", int), ("float", float)):
        if word in annotation:
            return parse
    return str


async def _export_sessions_cmd(args: argparse.Namespace) -> None:
    from .query import SessionQueries

    filters = {name: _one_or_many(getattr(args, name)) for name in _filter_flags()}
    store = await _open(args.database_url, args.prefix, migrate=False)
    show = _progress_printer(line="exported {} sessions…") if not args.quiet else None
    written = [0]

    def progress(done: int) -> None:
        written[0] = done
        if show is not None:
            show(done)

    target = Path(args.output) if args.output else None
    partial = target.with_name(target.name + ".partial") if target else None
    try:
        try:
            body = SessionQueries(store).export(
                format=args.format,
                sort_by=args.sort_by,
                sort_order=args.sort_order,
                progress=progress,
                **{k: v for k, v in filters.items() if v is not None},
            )
        except InvalidParameter as exc:
            raise CommandError(f"{_flag_of(exc.field)}: {exc.message}") from None
        started = time.monotonic()
        with _output(partial) as out:
            async for chunk in body:
                out.write(chunk)
        if partial is not None and target is not None:
            partial.replace(target)  # a finished file only: an interrupted one stays .partial
        if show is not None:
            sys.stderr.write("\n")
        took = time.monotonic() - started
        where = f" to {target}" if target else ""
        sys.stderr.write(
            f"exported {written[0]} sessions as {args.format}{where} in {took:.1f} s\n"
        )
    finally:
        await store.close()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _one_or_many(value: Any) -> Any:
    """A repeatable flag given once is its value: ``--path a,b`` stays comma-separated."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _flag_of(field: str) -> str:
    name = re.sub(r"(?<!^)([A-Z])", r"_\1", field).lower()
    flags = {**{k: v[0] for k, v in _filter_flags().items()}, "sort_by": "--sort-by"}
    return flags.get(name, "--" + name.replace("_", "-"))


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        fh = path.open("wb")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    with fh:
        yield fh


async def _import_cmd(args: argparse.Namespace) -> None:
    from ._import import BadExport, import_jsonl
    from .store import NotEmpty

    if not await anyio.Path(args.file).is_file():
        raise CommandError(f"no file {args.file}")
    store = await _open(args.database_url, args.prefix, migrate=True)
    show = _progress_printer(line="imported {} of {} sessions…") if not args.quiet else None
    try:
        started = time.monotonic()
        try:
            total = await import_jsonl(store, args.file, progress=show)
        except NotEmpty as exc:
            raise CommandError(str(exc)) from None
        except BadExport as exc:
            raise CommandError(f"{args.file}: {exc} (nothing was imported)") from None
        if show is not None:
            sys.stderr.write("\n")
        took = time.monotonic() - started
        print(f"imported {total} sessions from {args.file} in {took:.1f} s")
    finally:
        await store.close()


class _PhaseLine:
    """The archive's progress on stderr: one line per phase, rewritten as it goes."""

    _TEXT = {
        "write": "archived {} sessions…",
        "written": "archived {} sessions, file synced and in place; verifying…",
        "verify": "verified {} of {} sessions…",
        "purge": "purged {} of {} sessions…",
    }

    def __init__(self) -> None:
        self.phase: str | None = None

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if self.phase is not None and self.phase != phase:
            sys.stderr.write("\n")
        self.phase = phase
        sys.stderr.write("\r" + self._TEXT[phase].format(done, total))
        sys.stderr.flush()

    def end(self) -> None:
        if self.phase is not None:
            sys.stderr.write("\n")


async def _archive_cmd(args: argparse.Namespace) -> None:
    from ._archive import ArchiveError, archive, source_name

    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    store = await _open(args.database_url, args.prefix, migrate=False)
    cutoff = datetime.now(UTC) - args.older_than
    show = _PhaseLine() if not args.quiet else None
    try:
        try:
            result = await archive(
                store,
                args.output,
                cutoff,
                source=source_name(args.database_url, args.prefix),
                chatbot_ids=args.chatbot_id,
                batch_size=args.batch_size,
                progress=show,
            )
        except ArchiveError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            if exc.filename is None:
                raise  # not a file: the database's, reported with its traceback
            raise CommandError(f"cannot archive into {args.output}: {exc}") from None
    finally:
        if show is not None:
            show.end()
        await store.close()
    if result.removed:
        print(f"removed {len(result.removed)} temporary files of an archive never completed")
    for path in result.resumed:
        print(f"finished {path}, left by a run that did not finish")
    when = cutoff.isoformat(timespec="seconds")
    if result.file is None:
        print(f"no session ended before {when}: nothing to archive (purged {result.purged})")
    else:
        print(
            f"archived {result.archived} sessions that ended before {when} to {result.file} "
            f"(verified), purged {result.purged}"
        )


def _archive_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    a = sub.add_parser(
        "archive",
        help="write old sessions to a verified archive file, then purge them",
        description="Write the sessions that ended before --older-than ago to a new "
        "gzip-compressed JSON Lines file in --output (what 'sessiontrack import' reads), "
        "with a manifest; sync it, verify it, and only then purge exactly the sessions "
        "it holds. A run that was interrupted is finished by the next one. See "
        "docs/privacy.md.",
    )
    common(a)
    a.add_argument("--older-than", required=True, type=parse_duration, help="e.g. 90d, 12h")
    a.add_argument("--output", required=True, help="the archive directory (created if needed)")
    a.add_argument(
        "--chatbot-id", action="append", help="only this chatbot's sessions (repeatable)"
    )
    a.add_argument("--batch-size", type=int, default=200, help="sessions per read and purge")
    a.add_argument("--quiet", action="store_true", help="no progress line")
    a.set_defaults(run=_archive_cmd)


def _transfer_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    x = sub.add_parser(
        "export",
        help="write every session matching the filters as JSON Lines or CSV",
        description="Stream the sessions matching the list filters (those of GET /, as "
        "flags) to a file or stdout: jsonl gives each session's whole detail a line (what "
        "sessiontrack import reads), csv one list row per session. See docs/export.md.",
    )
    common(x)
    x.add_argument("--format", choices=["jsonl", "csv"], required=True)
    x.add_argument("--output", help="file to write (default: stdout); FILE.partial until done")
    for name, (flag, annotation) in _filter_flags().items():
        many = "Sequence" in annotation  # variable: name:value tests, repeated
        x.add_argument(
            flag,
            dest=name,
            type=_flag_value(annotation),
            action="append" if many else "store",
            help=f"as the list parameter {_camel(name)}" + (" (repeatable)" if many else ""),
        )
    x.add_argument("--sort-by", default="startedAt", choices=["startedAt", "updatedAt"])
    x.add_argument("--sort-order", default="DESC", choices=["ASC", "DESC"])
    x.add_argument("--quiet", action="store_true", help="no progress line")
    x.set_defaults(run=_export_sessions_cmd)
    i = sub.add_parser(
        "import",
        help="import a JSON Lines export into an empty database",
        description="Write the sessions of a 'sessiontrack export --format jsonl' file into "
        "a database holding none (the tables are created or upgraded first): each "
        "session's detail reads back as it was exported.",
    )
    common(i)
    i.add_argument("file", help="the .jsonl file")
    i.add_argument("--quiet", action="store_true", help="no progress line")
    i.set_defaults(run=_import_cmd)


def _analytics_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    group = sub.add_parser("analytics", help="flow analytics: export reports, rebuild rollups")
    commands = group.add_subparsers(dest="analytics_command", required=True)
    r = commands.add_parser(
        "rebuild",
        help="rebuild the analytics rollups from the event log",
        description="Delete the analytics rollups and replay the whole event log into "
        "them, in one transaction: writers wait until it commits.",
    )
    common(r)
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.set_defaults(run=_rebuild_cmd)
    e = commands.add_parser(
        "export",
        help="write one analytics report as CSV or JSON",
        description="Write a report of tracker.analytics (the figures of GET /analytics/*) "
        "to a file or stdout.",
    )
    common(e)
    e.add_argument("--chatbot", required=True, help="the chatbot id")
    e.add_argument("--report", required=True, choices=REPORT_NAMES)
    e.add_argument("--version", help="a flow version, or all (default: the current one)")
    e.add_argument("--start-date", help="ISO date or datetime (default: 6 days before today)")
    e.add_argument("--end-date", help="ISO date (inclusive) or datetime (default: today)")
    e.add_argument("--tz", default="UTC", help="IANA time zone of the dates (default UTC)")
    e.add_argument("--steps", help="funnel: node ids, comma-separated")
    e.add_argument("--limit", type=int, help="paths: how many (1-100, default 20)")
    e.add_argument("--format", choices=["csv", "json"], default="csv", help="default csv")
    e.add_argument("--output", help="file to write (default: stdout)")
    e.set_defaults(run=_export_cmd)


REPORT_NAMES = ("summary", "nodes", "paths", "funnel")


async def _fixture_cmd(args: argparse.Namespace) -> None:
    from ._fixture import session_fixture
    from .errors import SessionNotFound
    from .query import SessionQueries

    store = await _open(args.database_url, args.prefix, migrate=False)
    try:
        fixture = await session_fixture(SessionQueries(store), args.session_id)
    except InvalidParameter as exc:
        raise CommandError(f"SESSION_ID: {exc.message}") from None
    except SessionNotFound:
        raise CommandError(f"no session {args.session_id!r} in this database") from None
    finally:
        await store.close()
    text = json.dumps(fixture, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return
    try:
        await anyio.Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"fixture of session {fixture['session']['id']} written to {args.output}")


def _fixture_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    f = sub.add_parser(
        "fixture",
        help="write a session as a replayable test fixture (JSON)",
        description="Write one session as a test fixture for sessiontrack.testing.replay: "
        "its flow version and graph, inbound messages with their timing, the node path "
        "and outbound messages expected, and the recorded LLM and tool calls.",
    )
    f.add_argument("session_id", metavar="SESSION_ID", help="the session's id")
    common(f)
    f.add_argument("--output", help="file to write (default: stdout)")
    f.set_defaults(run=_fixture_cmd)


async def _webhooks_cmd(args: argparse.Namespace) -> None:
    from .errors import WebhookNotFound
    from .notify._service import WebhookService

    store = await _open(args.database_url, args.prefix, migrate=False)
    try:
        service = WebhookService(store)
        try:
            await _WEBHOOK_ACTIONS[args.webhooks_command](service, args)
        except InvalidParameter as exc:
            flag = {"chatbotIds": "--chatbot", "events": "--event", "id": "ID"}.get(
                exc.field, "--" + exc.field if exc.field != "url" else "URL"
            )
            raise CommandError(f"{flag}: {exc.message}") from None
        except WebhookNotFound as exc:
            raise CommandError(str(exc)) from None
    finally:
        await store.close()


def _webhook_line(hook: Any) -> str:
    state = hook.state if hook.paused_reason is None else f"{hook.state} ({hook.paused_reason})"
    events = ",".join(hook.events) or "all events"
    bots = ",".join(hook.chatbot_ids) or "all chatbots"
    return (
        f"{hook.id}  {hook.url}  {state}  failures={hook.failures}  cursor={hook.cursor}  "
        f"[{events}; {bots}; batch {hook.batch}]"
    )


async def _webhook_add(service: Any, args: argparse.Namespace) -> None:
    created = await service.create(
        args.url,
        events=args.event,
        chatbot_ids=args.chatbot,
        secret=args.secret,
        batch=args.batch,
        description=args.description,
    )
    print(_webhook_line(created.webhook))
    print(f"secret: {created.secret}  (shown once: keep it in the receiver's settings)")


async def _webhook_list(service: Any, args: argparse.Namespace) -> None:
    hooks = await service.list()
    if args.json:
        from .notify._models import to_json

        items = [to_json(h, lag=await service.lag(h)) for h in hooks]
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return
    for hook in hooks:
        print(_webhook_line(hook))
    if not hooks:
        print("no webhook subscriptions")


async def _webhook_remove(service: Any, args: argparse.Namespace) -> None:
    await service.remove(args.id)
    print(f"webhook {args.id} removed")


async def _webhook_resume(service: Any, args: argparse.Namespace) -> None:
    print(_webhook_line(await service.resume(args.id)))


async def _webhook_deliveries(service: Any, args: argparse.Namespace) -> None:
    for d in await service.deliveries(args.id, limit=args.limit):
        answer = d.status_code if d.status_code is not None else "-"
        print(
            f"{d.at.isoformat(timespec='seconds')}  seq {d.first_seq}-{d.last_seq} "
            f"({d.events} events)  attempt {d.attempt}  {answer}  {d.latency_ms:.0f} ms"
            + (f"  {d.error}" if d.error else "")
        )


async def _webhook_deliver(service: Any, args: argparse.Namespace) -> None:
    from .notify import Webhooks

    group = Webhooks(poll_interval=args.poll_interval)
    sys.stderr.write(
        "delivering the webhook subscriptions (when this process holds the lease; Ctrl-C "
        "or SIGTERM stops)\n"
    )
    await until_terminated(lambda: group.run(service.store))


_WEBHOOK_ACTIONS: dict[str, Callable[[Any, argparse.Namespace], Any]] = {
    "deliver": _webhook_deliver,
    "add": _webhook_add,
    "list": _webhook_list,
    "remove": _webhook_remove,
    "resume": _webhook_resume,
    "deliveries": _webhook_deliveries,
}


def _webhooks_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    group = sub.add_parser(
        "webhooks",
        help="manage webhook subscriptions (see docs/notifications.md)",
        description="Add, list, remove and resume the webhook subscriptions stored in the "
        "database; the process running sessiontrack.notify.Webhooks delivers them.",
    )
    commands = group.add_subparsers(dest="webhooks_command", required=True)
    a = commands.add_parser("add", help="subscribe a URL to the events committed from now on")
    common(a)
    a.add_argument("url", metavar="URL", help="http or https URL receiving the POSTs")
    a.add_argument(
        "--event",
        action="append",
        help="an event name, e.g. session:completed (repeatable; default: every event)",
    )
    a.add_argument("--chatbot", action="append", help="a chatbot id (repeatable; default: all)")
    a.add_argument("--secret", help="the signing secret (default: a new random one)")
    a.add_argument("--batch", type=int, default=100, help="events per POST, 1-500 (default 100)")
    a.add_argument("--description", default="", help="a note for whoever reads the list")
    l_ = commands.add_parser("list", help="every subscription, its state and cursor")
    common(l_)
    l_.add_argument("--json", action="store_true", help="as GET /webhooks answers")
    for name, text in (("remove", "delete a subscription"), ("resume", "resume a paused one")):
        c = commands.add_parser(name, help=text)
        common(c)
        c.add_argument("id", metavar="ID", help="the subscription's id")
    d = commands.add_parser("deliveries", help="a subscription's newest delivery attempts")
    common(d)
    d.add_argument("id", metavar="ID", help="the subscription's id")
    d.add_argument("--limit", type=int, default=20, help="how many, 1-1000 (default 20)")
    w = commands.add_parser(
        "deliver",
        help="deliver the subscriptions from this process (no tracker needed)",
        description="Run the webhooks consumer group on its own: it takes the lease when "
        "no other process holds it, then delivers, polling the log.",
    )
    common(w)
    w.add_argument("--poll-interval", type=float, default=1.0, help="seconds (default 1)")
    group.set_defaults(run=_webhooks_cmd)


async def _alerts_cmd(args: argparse.Namespace) -> None:
    from ._alerts_cli import AlertsCommandError, alerts_command

    async def open_store(url: str, prefix: str) -> SQLAlchemyStore:
        return await _open(url, prefix, migrate=False)

    try:
        await alerts_command(args, open_store)
    except AlertsCommandError as exc:
        raise CommandError(str(exc)) from None


async def _otel_cmd(args: argparse.Namespace) -> None:
    try:
        from .otel import OtelExporter
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    headers = dict(h.split("=", 1) for h in args.header)
    exporter = OtelExporter(
        endpoint=args.endpoint,
        headers=headers or None,
        capture_content=args.capture_content,
        start="beginning" if args.from_beginning else "head",
        poll_interval=args.poll_interval,
    )
    store = await _open(args.database_url, args.prefix, migrate=False)

    async def export() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(exporter.run, store)
            if not args.quiet:
                tg.start_soon(_otel_progress, exporter)

    try:
        await until_terminated(export)
    finally:
        await store.close()
        exporter.shutdown()


async def _otel_progress(exporter: Any) -> None:
    shown = None
    while True:
        await anyio.sleep(2)
        s = exporter.stats
        line = (
            f"otel: {s.spans} spans ({s.roots} sessions) exported, up to seq {s.last_seq}"
            if exporter.leading
            else "otel: waiting for the lease (another process exports)"
        )
        if line != shown:
            sys.stderr.write(f"\r{line}")
            sys.stderr.flush()
            shown = line


def _otel_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    o = sub.add_parser(
        "otel",
        help="export sessions as OpenTelemetry traces over OTLP/HTTP (the otel extra)",
        description="Run the OpenTelemetry exporter on its own: it reads the committed "
        "event log from its cursor ('otel') and sends each session as a trace to an "
        "OTLP/HTTP endpoint, until interrupted (Ctrl-C or SIGTERM). One process at a time "
        "exports; others wait.",
    )
    common(o)
    o.add_argument(
        "--endpoint",
        help="OTLP/HTTP base URL, e.g. http://collector:4318 (default: the "
        "OTEL_EXPORTER_OTLP_* variables, else http://localhost:4318)",
    )
    o.add_argument(
        "--header",
        action="append",
        default=[],
        type=_header,
        help="an HTTP header NAME=VALUE for the endpoint (repeatable)",
    )
    o.add_argument(
        "--capture-content",
        action="store_true",
        help="put message text and tool arguments and results on the spans",
    )
    o.add_argument(
        "--from-beginning",
        action="store_true",
        help="a new cursor starts at the first event of the log, not at its head",
    )
    o.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    o.set_defaults(run=_otel_cmd)


def _header(text: str) -> str:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessiontrack", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url",
            required=True,
            type=str,
            help="postgresql://user@host/db (asyncpg) or sqlite:///sessions.db (aiosqlite)",
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
    s.add_argument(
        "--access-log", action="store_true", help="log every request (uvicorn's access log)"
    )
    s.add_argument(
        "--http",
        choices=["auto", "httptools", "h11"],
        default="auto",
        help="the HTTP/1.1 parser: httptools (C, in the web extra) or h11 (pure Python); "
        "auto takes httptools when it is installed (default)",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (default 1; Linux); with more than one, "
        "Socket.IO clients must use the websocket transport",
    )
    s.set_defaults(run=_serve_cmd)
    _analytics_parsers(sub, common)
    _transfer_parsers(sub, common)
    _fixture_parser(sub, common)
    _archive_parser(sub, common)
    _webhooks_parsers(sub, common)
    from ._alerts_cli import add_parsers as _alerts_parsers

    _alerts_parsers(sub, common, _alerts_cmd)
    _otel_parser(sub, common)
    _erase_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "database_url"):
            args.database_url = check_url(args.database_url)
            check_sqlite_folder(args.database_url)
        anyio.run(args.run, args)
    except CommandError as exc:
        print(f"sessiontrack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
