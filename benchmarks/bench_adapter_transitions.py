"""transitions adapter benchmark: a machine's triggers alone and with the adapter.

The machine cycles ``a → b → c → a`` on one trigger (``send_event=True``). In the same
run, alternating in chunks of ``--chunk`` triggers, each chunk on a new model (a new
session of ``--chunk`` nodes), with a ``flush()`` between chunks (not timed):

1. **trivial, alone**: no callbacks of its own, so a trigger is transitions' own work and
   nothing else: the worst case for the adapter's relative cost;
2. **trivial, adapter, no-op hooks**: with a :class:`TransitionsAdapter` whose hooks go to
   implementations that do nothing: the adapter's own cost (its four callbacks, through
   transitions' callback dispatch, and pluggy's);
3. **trivial, adapter**: the adapter on a running :class:`~sessiontrack.SyncTracker`
   (SQLite file): one ``node_executed`` hook call per trigger;
4. **trivial, adapter, waiting state**: ``b`` a waiting state (a trigger into it adds
   ``waiting_input``, the next one ``running``: 5 hook calls per 3 triggers);
5. **with callbacks**, alone and with the adapter: each state with an enter and an exit
   callback, each transition with a condition and an after callback (6 callbacks of the
   model's per trigger, each doing a line of work);
6. **50 µs of work**, alone and with the adapter: the same, the enter callback working
   for 50 µs (a bot's lookup or template), the smallest real trigger.

Each trigger is timed alone (``perf_counter_ns``): "trigger" is the median trigger, the
cost in the engine's thread; "mean" is the chunk's time per trigger, which also holds
the moments the tracker's writer thread (woken by the first report of the chunk) held
the GIL to store the reports. Both are medians over the chunks; the ratio and the added
time compare each row with the same machine alone. It also times a bare
``sessiontrack_node_executed`` hook call on that tracker.

    python benchmarks/bench_adapter_transitions.py               # about 30 seconds
    python benchmarks/bench_adapter_transitions.py --chunks 30
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transitions import EventData, Machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, print_machine, print_table, verdict, write_json

import sessiontrack
from sessiontrack.adapters.transitions import TransitionsAdapter

TARGET = 10.0  # % added time per trigger
STATES = ["a", "b", "c"]
TRANSITIONS = [
    {"trigger": "step", "source": "a", "dest": "b"},
    {"trigger": "step", "source": "b", "dest": "c"},
    {"trigger": "step", "source": "c", "dest": "a"},
]


class Model:
    """A conversation with no behaviour of its own."""


class Busy:
    """A conversation whose callbacks do a little work, as a bot's would."""

    def __init__(self) -> None:
        self.turns = 0
        self.reply = ""

    def ready(self, event: EventData) -> bool:
        return self.turns >= 0

    def enter(self, event: EventData) -> None:
        self.reply = f"state {event.state.name}, turn {self.turns}"

    def leave(self, event: EventData) -> None:
        self.turns += 1

    def sent(self, event: EventData) -> None:
        self.reply = self.reply.upper()


class Working(Busy):
    """A conversation whose enter callback works for 50 µs (a lookup, a template)."""

    def enter(self, event: EventData) -> None:
        until = time.perf_counter() + 50e-6
        while time.perf_counter() < until:
            pass
        super().enter(event)


def make_machine(busy: bool = False) -> Machine:
    """The cycle; ``busy``: each state with enter and exit callbacks, each transition with
    a condition and an after callback."""
    states: list[Any] = STATES
    transitions: list[Any] = TRANSITIONS
    if busy:
        states = [{"name": n, "on_enter": "enter", "on_exit": "leave"} for n in STATES]
        transitions = [{**t, "conditions": "ready", "after": "sent"} for t in TRANSITIONS]
    return Machine(
        states=states,
        transitions=transitions,
        initial="a",
        send_event=True,
        auto_transitions=False,
        model=None,
    )


def time_chunk(step: Callable[[], Any], n: int) -> tuple[float, float]:
    """``n`` calls of ``step``: the median call and the mean per call, in µs (the mean
    includes the moments another thread held the GIL)."""
    times = []
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(n):
        t = clock()
        step()
        times.append(clock() - t)
    return median(times) / 1000, (clock() - t0) / n / 1000


class NoOp:
    """Hook implementations that do nothing: what the adapter costs on its own."""

    @sessiontrack.hookimpl
    def sessiontrack_flow_registered(self, chatbot_id: str) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_session_started(self, session_id: str) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_node_executed(self, session_id: str, node_id: str) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_status_changed(self, session_id: str, status: str) -> None:
        pass


# (row, model class, adapter's waiting states or None for no adapter, no-op hooks)
VARIANTS: list[tuple[str, type, set[str] | None, bool]] = [
    ("trivial, alone", Model, None, False),
    ("trivial, adapter, no-op hooks", Model, set(), True),
    ("trivial, adapter", Model, set(), False),
    ("trivial, adapter, waiting state", Model, {"b"}, False),
    ("with callbacks, alone", Busy, None, False),
    ("with callbacks, adapter", Busy, set(), False),
    ("50 µs of work, alone", Working, None, False),
    ("50 µs of work, adapter", Working, set(), False),
]


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in VARIANTS}
    results["bare hook call"] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        with (
            sessiontrack.SyncTracker(url, max_buffered=10 * args.chunk) as sync,
            sessiontrack.SyncTracker(f"sqlite+aiosqlite:///{Path(tmp) / 'noop.db'}") as noop,
        ):
            noop.plugin_manager.unregister(noop.tracker)
            noop.plugin_manager.register(NoOp())
            engines: list[tuple[str, type, Machine, TransitionsAdapter | None]] = []
            for n, (name, kind, waiting, no_op) in enumerate(VARIANTS):
                m = make_machine(kind is not Model)
                on = noop if no_op else sync
                adapter = (
                    None
                    if waiting is None
                    else TransitionsAdapter(on, m, f"bench-{n}", waiting=waiting)
                )
                engines.append((name, kind, m, adapter))
            hook = sync.hook.sessiontrack_node_executed
            for chunk in range(args.warmup + args.chunks):
                figures: dict[str, tuple[float, float]] = {}
                for name, kind, m, adapter in engines:
                    model = kind()
                    if adapter is None:
                        m.add_model(model)
                    else:
                        adapter.track(model, conversation_id=f"c{chunk}")
                    sync.flush()
                    gc.collect()
                    figures[name] = time_chunk(model.step, args.chunk)  # type: ignore[attr-defined]
                    sync.flush()
                    m.remove_model(model)
                    if adapter is not None:
                        adapter.untrack(model)
                sid = sessiontrack.new_session_id()
                sync.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bench-hook")
                sync.flush()
                figures["bare hook call"] = time_chunk(
                    lambda sid=sid: hook(session_id=sid, node_id="a", duration_ms=0.1), args.chunk
                )
                sync.flush()
                if chunk >= args.warmup:
                    for key, value in figures.items():
                        results[key].append(value)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=300, help="triggers per timed chunk")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    info = machine()
    info["transitions"] = _transitions_version()
    print_machine(info)
    results = run(args)
    print(
        f"per trigger, {args.chunks} chunks of {args.chunk} triggers, interleaved; medians "
        "over the chunks of the median trigger and of the mean per trigger (µs):"
    )
    rows = []
    added: dict[str, float] = {}
    for name, _, waiting, _ in VARIANTS:
        base_name = name.split(",")[0] + ", alone"
        call, mean = (median([c[i] for c in results[name]]) for i in (0, 1))
        base_call, base_mean = (median([c[i] for c in results[base_name]]) for i in (0, 1))
        added[name] = (call / base_call - 1) * 100
        row: list[Any] = [name, call, mean]
        if waiting is not None:
            row += [
                f"{call / base_call:.2f}",
                f"{call - base_call:+.2f}",
                f"{added[name]:+.0f} %",
                f"{(mean / base_mean - 1) * 100:+.0f} %",
            ]
        rows.append(row + [""] * (7 - len(row)))
    headers = ["", "trigger", "mean", "ratio", "added µs", "added", "added (mean)"]
    print_table(headers, rows)
    hook = median([c[0] for c in results["bare hook call"]])
    print(f"  a bare node_executed hook call on the same tracker: {hook:.2f} µs")
    for name in ("trivial, adapter", "with callbacks, adapter", "50 µs of work, adapter"):
        print(
            f"  {name}: {added[name]:+.0f} % per trigger (target ≤ {TARGET:.0f} %): "
            f"{verdict(added[name], TARGET, at_most=True)}"
        )
    write_json(args.json, {"machine": info, "args": vars(args), "results": results})


def _transitions_version() -> str:
    from importlib.metadata import version

    return version("transitions")


if __name__ == "__main__":
    main()
