"""The pipecat adapter's cost: the same frames through the same pipeline, side by side.

Each step is one bot turn of a trivial pipeline (a scripted LLM service between two
pass-through processors): an ``LLMContextFrame`` in, and out of the LLM a response of
``--tokens`` text frames with its start, end and three metrics frames (TTFB, usage,
processing), as a streaming LLM service sends them. Three pipelines run the same steps,
interleaved, ``--repeat`` times:

- **bare**: no observer at all (pipecat's turn tracking, RTVI and idle observers off);
- **bare + no-op observer**: a ``BaseObserver`` that does nothing: what any observer
  costs, since pipecat copies every frame push into each observer's queue;
- **bare + sessiontrack**: the adapter's observer, reporting to a running Tracker on a
  SQLite file (messages, LLM calls, statuses: every step is a session turn);
- **bare + sessiontrack, SyncTracker**: the same with the tracker in its own thread
  (``sessiontrack.SyncTracker``), so its writer does not run on the pipeline's loop;
- **defaults** and **defaults + sessiontrack**: the worker as pipecat makes it by default
  (turn tracking and idle observers on), without and with the adapter. RTVI, also on by
  default, is off in both: its observer needs NLTK data that is not there offline.

The figure is the median time per step; the target is at most 10 % added per step.

    python benchmarks/bench_adapter_pipecat.py                 # about 30 seconds
    python benchmarks/bench_adapter_pipecat.py --steps 200 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, print_machine, print_table, verdict, write_json
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings
from pipecat.workers.runner import WorkerRunner

import sessiontrack
from sessiontrack.adapters.pipecat import PipecatAdapter

TARGET = 0.10
UNSET_SETTINGS = (
    *("system_instruction", "temperature", "max_tokens", "top_p", "top_k", "seed"),
    *("frequency_penalty", "presence_penalty", "user_turn_completion_config"),
)
LABELS = (
    "bare",
    "bare + no-op observer",
    "bare + sessiontrack",
    "bare + sessiontrack, SyncTracker",
    "defaults",
    "defaults + sessiontrack",
)


class StreamingLLM(LLMService):  # type: ignore[misc]
    """Answers every context with ``tokens`` text frames and pipecat's metrics."""

    def __init__(self, tokens: int) -> None:
        unset = dict.fromkeys(UNSET_SETTINGS)
        super().__init__(
            settings=LLMSettings(model="bench-1", filter_incomplete_user_turns=False, **unset)
        )
        self.tokens = tokens
        self.usage = LLMTokenUsage(prompt_tokens=50, completion_tokens=tokens, total_tokens=50)

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        await self.stop_ttfb_metrics()
        for i in range(self.tokens):
            await self.push_frame(LLMTextFrame(f"word{i} "))
        await self.start_llm_usage_metrics(self.usage)
        await self.stop_processing_metrics()
        await self.push_frame(LLMFullResponseEndFrame())


class PassThrough(FrameProcessor):  # type: ignore[misc]
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class NoOp(BaseObserver):  # type: ignore[misc]
    async def on_push_frame(self, data: FramePushed) -> None:
        return None


async def run_once(
    steps: int, tokens: int, observer: BaseObserver | None, defaults: bool = False
) -> float:
    """Seconds for ``steps`` turns through a fresh pipeline (start and end excluded)."""
    llm = StreamingLLM(tokens)
    done = asyncio.Event()
    count = 0

    class Sink(FrameProcessor):  # type: ignore[misc]
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            nonlocal count
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMFullResponseEndFrame):
                count += 1
                if count == steps:
                    done.set()
            await self.push_frame(frame, direction)

    worker = PipelineWorker(
        Pipeline([PassThrough(), llm, PassThrough(), Sink()]),
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        observers=[observer] if observer is not None else [],
        idle_timeout_secs=300 if defaults else None,
        enable_rtvi=False,
        enable_turn_tracking=defaults,
        check_dangling_tasks=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await asyncio.sleep(0.05)  # started
    context = LLMContext()
    t0 = time.perf_counter()
    for _ in range(steps):
        await worker.queue_frame(LLMContextFrame(context))
    await done.wait()
    elapsed = time.perf_counter() - t0
    await worker.queue_frame(EndFrame())
    await running
    return elapsed


async def measure(
    args: argparse.Namespace,
    tracker: sessiontrack.Tracker,
    adapter: PipecatAdapter,
    sync: sessiontrack.SyncTracker,
    threaded: PipecatAdapter,
) -> tuple[dict[str, list[float]], str]:
    times: dict[str, list[float]] = {label: [] for label in LABELS}
    await run_once(20, args.tokens, None)  # warm up imports and caches
    for r in range(args.repeat):
        for label in LABELS:
            gc.collect()
            observer: BaseObserver | None = None
            if label.endswith("no-op observer"):
                observer = NoOp()
            elif label.endswith("SyncTracker"):
                observer = await threaded.observer(f"bench-{label}-{r}")
            elif label.endswith("sessiontrack"):
                observer = await adapter.observer(f"bench-{label}-{r}")
            defaults = label.startswith("defaults")
            times[label].append(await run_once(args.steps, args.tokens, observer, defaults))
            await tracker.flush()  # the adapter's writes are not the next run's noise
            await asyncio.to_thread(sync.flush)
    s = tracker.stats
    return times, f"{s.enqueued} reports enqueued, {s.committed} committed"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        sync_url = f"sqlite+aiosqlite:///{tmp}/bench-sync.db"
        with sessiontrack.SyncTracker(sync_url, migrate=True) as sync:
            async with sessiontrack.Tracker(url, migrate=True) as tracker:
                adapter = PipecatAdapter(tracker, "bench-bot")
                threaded = PipecatAdapter(sync, "bench-bot")
                times, stats = await measure(args, tracker, adapter, sync, threaded)
    per_step = {k: median(v) / args.steps * 1e6 for k, v in times.items()}
    base = per_step["bare"]
    frames = args.tokens + 6
    rows = [
        [label, f"{us:,.0f}", f"{us / frames:.1f}", f"{us / base:.3f}"]
        for label, us in per_step.items()
    ]
    print(f"{args.steps} steps x {args.repeat} runs; a step is one LLM turn of {frames} frames")
    print_table(["pipeline", "us/step (median)", "us/frame", "x bare"], rows)
    added = per_step["defaults + sessiontrack"] / per_step["defaults"] - 1
    bare = per_step["bare + sessiontrack"] / base - 1
    own = per_step["bare + sessiontrack"] / per_step["bare + no-op observer"] - 1
    print(
        f"added per step to pipecat's default worker: {added:+.1%}  "
        f"(target <= {TARGET:.0%}: {verdict(added, TARGET, at_most=True)})"
    )
    print(f"added per step to a worker with no observer: {bare:+.1%}")
    print(f"  of which sessiontrack's own code:          {own:+.1%}  (vs a no-op observer)")
    threaded = per_step["bare + sessiontrack, SyncTracker"] / base - 1
    print(f"  with the tracker in its own thread:        {threaded:+.1%}")
    print(f"tracker: {stats}")
    return {
        "machine": machine(),
        "steps": args.steps,
        "repeat": args.repeat,
        "tokens": args.tokens,
        "us_per_step": per_step,
        "added_vs_defaults": added,
        "added_vs_bare": bare,
        "added_vs_noop_observer": own,
        "added_vs_bare_sync_tracker": threaded,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="turns per run")
    parser.add_argument("--tokens", type=int, default=20, help="text frames per turn")
    parser.add_argument("--repeat", type=int, default=5, help="runs per pipeline")
    parser.add_argument("--json", help="write the results to this file")
    options = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    warnings.simplefilter("ignore", DeprecationWarning)
    print_machine(machine())
    write_json(options.json, asyncio.run(main(options)))
