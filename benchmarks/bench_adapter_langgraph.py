"""LangGraph adapter overhead: the engine alone, with the adapter, and with Langfuse's
LangChain CallbackHandler, side by side in one run.

A trivial graph (``--nodes`` nodes in a chain, each returning a small state update; an
in-memory checkpointer; one ``thread_id``) is invoked ``--calls`` times per round in
three set-ups, round-robin so that load on the machine hits all three alike:

- **alone**: ``graph.ainvoke(input, config)``;
- **adapter, hooks only**: the adapter with the tracker's hook implementations replaced by
  ones that do nothing: the cost of the adapter itself (callbacks, hook calls, the
  session look-up and ``aget_state`` where needed);
- **adapter**: ``LangGraphAdapter(tracker, graph, ...).ainvoke(...)`` into a running
  Tracker on a SQLite file (each call is a conversation that completes: a session start,
  a node report per node, an inbound message and the completion, plus the adapter's
  ``aget_state`` when the run may have paused); the tracker validates each report and
  its writer commits on the graph's event loop, batches ``commit_delay`` (50 ms, the
  default) apart at the most;
- **adapter, commit_delay=0**: the same into a Tracker that commits every burst of
  reports at once (the writer before ``commit_delay`` existed);
- **adapter, SyncTracker**: the same with a :class:`sessiontrack.SyncTracker`, whose
  writer runs on its own thread and loop;
- **langfuse**: ``graph.ainvoke(input, {"callbacks": [CallbackHandler()], ...})``. Offline:
  the client gets a dummy key pair, a loopback ``base_url`` (nothing listens there) and a
  span exporter that drops the spans, so nothing can leave the machine; the spans are
  still made and handed to its batch processor, as in production.

A step is one node execution; the time per step is the median call time divided by the
number of nodes. The target is at most 10 % added time per step for the adapter.

    python benchmarks/bench_adapter_langgraph.py                 # about 30 s
    python benchmarks/bench_adapter_langgraph.py --rounds 5 --calls 100
    python benchmarks/bench_adapter_langgraph.py --node-latency-ms 20 --calls 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pluggy
from _common import machine, median, print_machine, print_table, verdict, write_json
from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

import sessiontrack
from sessiontrack.adapters.langgraph import LangGraphAdapter

TARGET = 10.0  # % added time per step


class _State(TypedDict, total=False):
    messages: list[AnyMessage]  # no reducer: each call replaces it, the state stays small
    count: int


def trivial_graph(nodes: int, latency_ms: float = 0.0) -> Any:
    g = StateGraph(_State)
    names = [f"step_{i}" for i in range(nodes)]

    async def step(state: _State) -> dict[str, Any]:
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)  # a model or an API answering
        return {"count": state.get("count", 0) + 1}

    for name in names:
        g.add_node(name, step)
    g.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        g.add_edge(a, b)
    g.add_edge(names[-1], END)
    return g.compile(checkpointer=InMemorySaver())


class _NullHooks:
    """Implementations of the engine → tracker hooks that do nothing (what the engine
    pays for the adapter itself, without the tracker's validation and writing)."""

    @sessiontrack.hookimpl
    def sessiontrack_session_started(self, session_id: str) -> None: ...

    @sessiontrack.hookimpl
    def sessiontrack_node_executed(self, session_id: str) -> None: ...

    @sessiontrack.hookimpl
    def sessiontrack_message(self, session_id: str) -> None: ...

    @sessiontrack.hookimpl
    def sessiontrack_status_changed(self, session_id: str) -> None: ...

    @sessiontrack.hookimpl
    def sessiontrack_session_completed(self, session_id: str) -> None: ...

    @sessiontrack.hookimpl
    def sessiontrack_llm_call(self, session_id: str) -> None: ...

    @sessiontrack.hookimpl
    def sessiontrack_tool_call(self, session_id: str) -> None: ...


def null_hooks() -> Any:
    pm = pluggy.PluginManager(sessiontrack.hookspecs.PROJECT_NAME)
    pm.add_hookspecs(sessiontrack.hookspecs)
    pm.register(_NullHooks())
    return pm.hook


def langfuse_handler() -> tuple[Any, str | None]:
    """Langfuse's CallbackHandler, offline (see the module docstring), or ``None`` and why."""
    try:
        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    except ImportError as exc:
        return None, f"langfuse is not installed ({exc}); pip install -e .[bench]"

    class DropSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    os.environ.setdefault("LANGFUSE_TRACING_ENVIRONMENT", "bench")
    Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        base_url="http://127.0.0.1:9",
        span_exporter=DropSpans(),
    )
    return CallbackHandler(public_key="pk-lf-bench"), None


async def timed_calls(call: Callable[[int], Awaitable[Any]], n: int, start: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(start + i)
        out.append(time.perf_counter() - t0)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    import langgraph.version

    info["langgraph"] = langgraph.version.__version__
    print_machine(info)
    handler, why_not = langfuse_handler()
    if why_not:
        print(f"langfuse: skipped: {why_not}\n")
    graph = trivial_graph(args.nodes, args.node_latency_ms)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        sync_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench-sync.db'}"
        eager_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench-eager.db'}"
        async with (
            sessiontrack.Tracker(url, migrate=True) as tracker,
            sessiontrack.Tracker(eager_url, migrate=True, commit_delay=0) as eager_tracker,
        ):
            adapter = LangGraphAdapter(tracker, graph, "bench")
            eager = LangGraphAdapter(eager_tracker, graph, "bench")
            hooks_only = LangGraphAdapter(tracker, graph, "bench")
            hooks_only.hook = null_hooks()
            threaded = sessiontrack.SyncTracker(sync_url, migrate=True)
            threaded.start()
            on_thread = LangGraphAdapter(threaded, graph, "bench")

            def message(i: int) -> dict[str, Any]:
                return {"messages": [HumanMessage(f"hi {i}", id=f"m{i}")], "count": 0}

            async def alone(i: int) -> Any:
                return await graph.ainvoke(message(i), {"configurable": {"thread_id": "a"}})

            async def with_adapter(i: int) -> Any:
                return await adapter.ainvoke(message(i), {"configurable": {"thread_id": "b"}})

            async def with_eager_writer(i: int) -> Any:
                return await eager.ainvoke(message(i), {"configurable": {"thread_id": "f"}})

            async def with_hooks_only(i: int) -> Any:
                config = {"configurable": {"thread_id": "e"}}
                return await hooks_only.ainvoke(message(i), config)

            async def with_sync_tracker(i: int) -> Any:
                config = {"configurable": {"thread_id": "d"}}
                return await on_thread.ainvoke(message(i), config)

            async def with_langfuse(i: int) -> Any:
                config = {"configurable": {"thread_id": "c"}, "callbacks": [handler]}
                return await graph.ainvoke(message(i), config)

            setups: dict[str, Callable[[int], Awaitable[Any]]] = {
                "alone": alone,
                "adapter, hooks only": with_hooks_only,
                "adapter": with_adapter,
                "adapter, commit_delay=0": with_eager_writer,
                "adapter, SyncTracker": with_sync_tracker,
            }
            if handler is not None:
                setups["langfuse"] = with_langfuse
            times: dict[str, list[float]] = {name: [] for name in setups}
            for call in setups.values():  # warm-up
                await timed_calls(call, 20, 0)
            for r in range(args.rounds):
                for name, call in setups.items():
                    times[name] += await timed_calls(call, args.calls, (r + 1) * 10_000)
                await tracker.flush()
                await eager_tracker.flush()
                await asyncio.to_thread(threaded.flush)
            sessions = (await tracker.sessions.stats()).total
            sessions += (await eager_tracker.sessions.stats()).total
            sessions += (await asyncio.to_thread(threaded.sessions.stats)).total
            adapter.close()
            eager.close()
            hooks_only.close()
            on_thread.close()
            await asyncio.to_thread(threaded.close)
    base = median(times["alone"]) / args.nodes * 1e6
    rows = []
    results: dict[str, Any] = {"machine": info, "nodes": args.nodes, "setups": {}}
    for name, values in times.items():
        per_step = median(values) / args.nodes * 1e6
        added = (per_step / base - 1) * 100
        rows.append([name, median(values) * 1e3, per_step, per_step / base, f"{added:+.1f} %"])
        results["setups"][name] = {"per_step_us": per_step, "ratio": per_step / base}
    print(
        f"{args.nodes}-node graph, nodes awaiting {args.node_latency_ms} ms, "
        f"{args.rounds} rounds x {args.calls} calls per set-up "
        f"({sessions} sessions recorded by the adapter)"
    )
    print_table(["set-up", "call ms (median)", "per step µs", "ratio", "added"], rows)
    for name in (
        "adapter, hooks only",
        "adapter",
        "adapter, commit_delay=0",
        "adapter, SyncTracker",
    ):
        added = (results["setups"][name]["ratio"] - 1) * 100
        print(
            f"{name}: {added:+.1f} % per step, target <= {TARGET:.0f} %: "
            f"{verdict(added, TARGET, at_most=True)}"
        )
    if "langfuse" in results["setups"]:
        lf = (results["setups"]["langfuse"]["ratio"] - 1) * 100
        print(f"langfuse CallbackHandler: {lf:+.1f} % per step")
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5, help="nodes in the chain (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--calls", type=int, default=100, help="calls per set-up and round")
    p.add_argument(
        "--node-latency-ms",
        type=float,
        default=0.0,
        help="each node awaits this long, as a node calling a model or an API does "
        "(default 0: the worst case, where the tracker's work cannot overlap any wait)",
    )
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    write_json(args.json, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
