"""``python -m examples.support_agent``: the support agent, simulated customers and the
sessiontrack dashboard, on SQLite by default."""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn
from langchain_core.messages import HumanMessage
from langgraph.types import Command
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

import sessiontrack
from sessiontrack.adapters.langgraph import LangGraphAdapter, SessionStopped
from sessiontrack.web import create_app

from .agent import ORDERS, build_agent

MOUNT = "/api/chatbot-sessions"
SCRIPTS = [  # what each simulated customer says, one line per turn
    ["Hi, where is my order?", "It is 1001", "No, thanks"],
    ["Where is my order please", "1002", "no that's all"],
    ["Hello", "Where is my order?", "1009", "1003", "No"],
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.support_agent",
        description=f"A LangGraph support agent (fake model) with sessiontrack at {MOUNT}.",
    )
    p.add_argument("--database-url", default="sqlite:///support_agent.db")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--customers", type=int, default=None, help="stop after this many")
    p.add_argument("--pause", type=float, default=1.5, help="seconds a customer thinks")
    return p.parse_args(argv)


async def customer(adapter: LangGraphAdapter, n: int, pause: float, rng: random.Random) -> None:
    """One customer's conversation: the first line starts it, each next one resumes the
    ``interrupt()`` that waits for the customer."""
    config: dict[str, Any] = {"configurable": {"thread_id": f"customer-{n}"}}
    lines = SCRIPTS[n % len(SCRIPTS)]
    try:
        for i, line in enumerate(lines):
            turn: Any = (
                {"messages": [HumanMessage(line, id=f"c{n}-{i}")]}
                if i == 0
                else Command(resume=line)
            )
            async for _ in adapter.astream(turn, config, stream_mode="messages"):
                pass  # a real host would send the tokens to the customer here
            if not (await adapter.graph.aget_state(config)).next:
                return
            await anyio.sleep(pause * rng.uniform(0.5, 1.5))
    except SessionStopped:
        print(f"customer-{n}: stopped from the dashboard", flush=True)


async def simulate(adapter: LangGraphAdapter, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    n = 0
    async with anyio.create_task_group() as tg:
        while args.customers is None or n < args.customers:
            tg.start_soon(customer, adapter, n, args.pause, rng)
            n += 1
            await anyio.sleep(args.pause * rng.uniform(0.3, 1.0))


def make_app(tracker: sessiontrack.Tracker) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with tracker:
            yield

    return Starlette(
        routes=[
            Route("/", lambda request: RedirectResponse(f"{MOUNT}/ui/")),
            Mount(MOUNT, app=create_app(tracker)),
        ],
        lifespan=lifespan,
    )


async def serve(args: argparse.Namespace) -> None:
    tracker = sessiontrack.Tracker(args.database_url, migrate=True)
    app = make_app(tracker)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while True:  # until uvicorn listens (it has no event to wait on)
            await anyio.sleep(0.05)
            if server.started:
                break
        adapter = LangGraphAdapter(tracker, build_agent(), "support-agent", name="Support agent")
        base = f"http://{args.host}:{args.port}"
        print(f"support agent running on {base}, orders {', '.join(ORDERS)}")
        print(f"  dashboard: {base}{MOUNT}/ui/")
        print("  Ctrl-C to stop", flush=True)

        async def run_customers() -> None:
            await simulate(adapter, args)
            print("all customers served", flush=True)

        tg.start_soon(run_customers)
        while True:  # until Ctrl-C (uvicorn sets should_exit)
            await anyio.sleep(0.1)
            if server.should_exit:
                break
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, args)
    print("support agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
