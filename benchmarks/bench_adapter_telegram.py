"""python-telegram-bot adapter overhead: the engine alone and with the adapter, side by
side in one run.

A trivial ``ConversationHandler`` (``/start`` enters state ``ECHO``; each text message is
answered with one ``reply_text`` and stays in ``ECHO``; ``/done`` ends it) in a real
``Application``. Each conversation is ``/start``, ``--messages`` texts and ``/done``, in
one of ``--chats`` private chats in turn. Four applications, round-robin so that load on
the machine hits all alike:

- **alone**: the application as PTB builds it;
- **adapter**: the same conversation tracked by ``TelegramAdapter`` with the
  ``TrackingRateLimiter``, into a running ``Tracker`` on a SQLite file on the same loop
  (per update: an inbound message, a node and the outbound reply; a ``waiting_input``
  when the state changes; a start and a completion at either end);
- **adapter, SyncTracker**: the same with a ``SyncTracker`` (its writer on its own thread);
- **adapter, hooks only**: the adapter with its hooks going to a plugin manager without
  the tracker: what the adapter itself costs, without the tracker's share.

Two Bot APIs, one after the other: **in memory** (a ``BaseRequest`` subclass: a step is
pure CPU, the strictest ratio; the tracker's writer runs between steps, outside the
timing) and **loopback HTTP** (PTB's own ``HTTPXRequest`` against a fake Bot API served
by uvicorn in another process on 127.0.0.1, answering after ``--api-latency-ms``: the
writer now runs while a step waits for its answer, as in production, where Telegram's
round trip is tens of milliseconds).

A step is one ``Application.process_update`` call (one update, one reply), timed alone;
the event loop runs once between steps. The tracker catches up between rounds
(``flush()``); the first update of each chat (one ``active_session`` query per chat and
process) falls in the warm-up. The target is at most 10 % added time per step.

    python benchmarks/bench_adapter_telegram.py                      # about 30 s
    python benchmarks/bench_adapter_telegram.py --api-latency-ms 20  # a Telegram-like wait
    python benchmarks/bench_adapter_telegram.py --rounds 3 --conversations 50
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pluggy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, percentile, print_machine, print_table, verdict, write_json
from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

import sessiontrack
from sessiontrack.adapters.telegram import TelegramAdapter, TrackingRateLimiter
from tests.adapter_helpers.telegram import FakeBotAPI, bot_api_result
from tests.web_helpers.live import free_port

TARGET = 10.0  # % added time per step
ECHO = "echo"


def conversation() -> ConversationHandler[Any]:
    async def start(update: Update, context: Any) -> str:
        await update.effective_message.reply_text("Say something.")  # type: ignore[union-attr]
        return ECHO

    async def echo(update: Update, context: Any) -> str:
        message = update.effective_message
        await message.reply_text(message.text or "")  # type: ignore[union-attr]
        return ECHO

    async def done(update: Update, context: Any) -> int:
        await update.effective_message.reply_text("Bye.")  # type: ignore[union-attr]
        return ConversationHandler.END

    return ConversationHandler(
        entry_points=[CommandHandler("start", start)],
        states={ECHO: [MessageHandler(filters.TEXT & ~filters.COMMAND, echo)]},
        fallbacks=[CommandHandler("done", done)],
    )


async def fake_bot_api(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The Bot API as an ASGI app, for the loopback set-up (``--serve PORT``)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    method = scope["path"].rsplit("/", 1)[-1]
    if method == "sendMessage":
        await asyncio.sleep(_latency)
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    result = bot_api_result(method, form, _served_ids)
    payload = json.dumps({"ok": True, "result": result}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


_served_ids = itertools.count(1_000_001)  # apart from the inbound ids, as in a chat
_latency = 0.0  # seconds the fake Bot API takes to answer a sendMessage (--api-latency-ms)


def serve_fake_api(port: int, latency: float) -> subprocess.Popen[bytes]:
    """Start the fake Bot API in another process and wait until it answers."""
    command = [sys.executable, __file__, "--serve", str(port), "--api-latency-ms", str(latency)]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the fake Bot API did not start")


def build(
    rate_limiter: TrackingRateLimiter | None, port: int | None = None
) -> Application[Any, Any, Any, Any, Any, Any]:
    builder = ApplicationBuilder().token("1:bench").updater(None)
    if port is None:
        builder = builder.request(FakeBotAPI(1_000_001))  # apart from the inbound ids
    else:
        builder = builder.base_url(f"http://127.0.0.1:{port}/bot")
    if rate_limiter is not None:
        builder = builder.rate_limiter(rate_limiter)
    return builder.build()


def updates(app: Any, args: argparse.Namespace, first_chat: int) -> list[Update]:
    """The updates of ``--conversations`` conversations over ``--chats`` chats."""
    out = []
    n = 0
    for c in range(args.conversations):
        chat = first_chat + c % args.chats
        texts = ["/start", *(f"hello {i}" for i in range(args.messages)), "/done"]
        for text in texts:
            n += 1
            message: dict[str, Any] = {
                "message_id": n,
                "date": 0,
                "chat": {"id": chat, "type": "private"},
                "from": {"id": chat, "is_bot": False, "first_name": "Ann"},
                "text": text,
            }
            if text.startswith("/"):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
            out.append(Update.de_json({"update_id": n, "message": message}, app.bot))
    return out


async def timed_steps(app: Any, batch: list[Update]) -> list[float]:
    out = []
    for update in batch:
        t0 = time.perf_counter()
        await app.process_update(update)
        out.append(time.perf_counter() - t0)
        await asyncio.sleep(0)
    return out


async def measure(args: argparse.Namespace, port: int | None) -> dict[str, list[float]]:
    """Per-step times of each set-up, on the in-memory (``port`` ``None``) or loopback
    HTTP Bot API."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        async with sessiontrack.Tracker(url, migrate=True) as tracker:
            alone = build(None, port)
            alone.add_handler(conversation())
            tracked = build(TrackingRateLimiter(), port)
            adapter = TelegramAdapter(tracker, tracked, "bench")
            tracked.add_handler(adapter.track(conversation()))
            bare = build(TrackingRateLimiter(), port)
            hooks_only = TelegramAdapter(tracker, bare, "bench-hooks-only")
            bare.add_handler(hooks_only.track(conversation()))
            hooks_only.close()
            empty = pluggy.PluginManager("sessiontrack")
            empty.add_hookspecs(sessiontrack.hookspecs)
            hooks_only.hook = empty.hook
            with sessiontrack.SyncTracker(f"sqlite+aiosqlite:///{Path(tmp) / 'sync.db'}") as sync:
                threaded = build(TrackingRateLimiter(), port)
                in_thread = TelegramAdapter(sync, threaded, "bench-sync")
                threaded.add_handler(in_thread.track(conversation()))
                apps = {
                    "alone": alone,
                    "adapter": tracked,
                    "adapter, SyncTracker": threaded,
                    "adapter, hooks only": bare,
                }
                times: dict[str, list[float]] = {name: [] for name in apps}
                async with alone, tracked, bare, threaded:
                    for app in apps.values():  # warm-up: every chat once
                        await timed_steps(app, updates(app, args, 1000))
                    await tracker.flush()
                    for _ in range(args.rounds):
                        for name, app in apps.items():
                            times[name] += await timed_steps(app, updates(app, args, 1000))
                        await tracker.flush()
                        await asyncio.to_thread(sync.flush)
                adapter.close()
                in_thread.close()
    return times


def report(title: str, times: dict[str, list[float]]) -> dict[str, Any]:
    base = median(times["alone"]) * 1e6
    rows = []
    out: dict[str, Any] = {}
    for name, values in times.items():
        per_step = median(values) * 1e6
        p90 = percentile(values, 90) * 1e6
        added = (per_step / base - 1) * 100
        rows.append([name, per_step, p90, per_step - base, per_step / base, f"{added:+.1f} %"])
        out[name] = {"per_step_us": per_step, "p90_us": p90, "ratio": per_step / base}
    print(title)
    print_table(["set-up", "step µs (median)", "p90 µs", "added µs", "ratio", "added"], rows)
    added = (out["adapter"]["ratio"] - 1) * 100
    print(
        f"  adapter: {added:+.1f} % per step, target <= {TARGET:.0f} %: "
        f"{verdict(added, TARGET, at_most=True)}\n"
    )
    return out


async def run(args: argparse.Namespace, port: int) -> dict[str, Any]:
    info = machine()
    info["python-telegram-bot"] = metadata.version("python-telegram-bot")
    print_machine(info)
    steps = args.conversations * (args.messages + 2)
    print(
        f"{args.rounds} rounds x {args.conversations} conversations of {args.messages + 2} "
        f"updates ({steps} steps) per set-up and round\n"
    )
    results: dict[str, Any] = {"machine": info}
    results["in_memory"] = report("in-memory Bot API", await measure(args, None))
    title = f"loopback HTTP Bot API, answering in {args.api_latency_ms:g} ms"
    results["loopback_http"] = report(title, await measure(args, port))
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--conversations", type=int, default=100, help="per set-up and round")
    p.add_argument("--messages", type=int, default=8, help="texts per conversation (default 8)")
    p.add_argument("--chats", type=int, default=20, help="private chats used in turn")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument(
        "--api-latency-ms",
        type=float,
        default=0.0,
        help="how long the loopback Bot API takes to answer a message (default 0)",
    )
    p.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.serve:
        import uvicorn

        global _latency
        _latency = args.api_latency_ms / 1000
        uvicorn.run(fake_bot_api, host="127.0.0.1", port=args.serve, log_level="error")
        return
    port = free_port()
    server = serve_fake_api(port, args.api_latency_ms)
    try:
        write_json(args.json, asyncio.run(run(args, port)))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
