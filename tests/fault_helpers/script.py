"""What a fault-injection engine reports, and the ledger that checks what was stored.

Every session follows one script: a start, ``STEPS`` alternating node executions (``n1``,
``n3``, ...) and messages (``m2``, ``m4``, ...), then a completion. Report ``i`` of a session
can therefore be recognised in the store from its content alone, which is what lets the
ledger count losses, duplicates and reorders without trusting anything the engine kept
in memory. An engine acknowledges "the first ``k`` reports of session ``s``" only after a
``flush()`` that followed them returned.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sessiontrack
from sessiontrack.events import StoredEvent

STEPS = 8
REPORTS_PER_SESSION = STEPS + 2
LAST = STEPS + 1
BOTS = ("bot-a", "bot-b", "bot-c")


def report(hook: Any, sid: str, i: int, bot: str) -> None:
    """Make report ``i`` (0 .. LAST) of session ``sid`` through the plugin manager's hook."""
    if i == 0:
        hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=bot,
            conversation_id=sid[:12],
            contact={"phone": "+5511900000000", "name": "Fault Test"},
        )
    elif i == LAST:
        hook.sessiontrack_session_completed(session_id=sid, status="completed", reason="flow_end")
    elif i % 2:
        hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}", duration_ms=1.0)
    else:
        direction = "inbound" if i % 4 == 0 else "outbound"
        hook.sessiontrack_message(session_id=sid, direction=direction, text=f"m{i}")


def index_of(event: StoredEvent) -> int | None:
    """Which report of its session a stored event is (``None``: not one of the script's)."""
    if event.kind == "session_started":
        return 0
    if event.kind == "session_completed":
        return LAST
    if event.kind == "node_executed":
        return int(str(event.data["node_id"])[1:])
    if event.kind == "message":
        return int(str(event.data["text"])[1:])
    return None


def ack_line(sid: str, count: int) -> str:
    return f"{sid} {count}\n"


def read_acks(paths: Iterable[Path]) -> dict[str, int]:
    """Acknowledged report counts per session; a line cut short by a kill is ignored."""
    acked: dict[str, int] = {}
    for path in paths:
        if not path.exists():
            continue
        text = path.read_text()
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
        for line in complete.splitlines():
            sid, count = line.split()
            acked[sid] = max(acked.get(sid, 0), int(count))
    return acked


@dataclass
class Counts:
    """What the ledger found; every field but the first three must be 0."""

    sessions_acknowledged: int = 0
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    gaps: int = 0
    read_mismatches: int = 0
    details_read: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def faults(self) -> int:
        return self.lost + self.duplicated + self.reordered + self.gaps + self.read_mismatches

    def note(self, message: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(message)

    def as_dict(self) -> dict[str, int]:
        return {
            "sessions acknowledged": self.sessions_acknowledged,
            "reports acknowledged": self.acknowledged,
            "reports stored": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "gaps": self.gaps,
            "read mismatches": self.read_mismatches,
        }


def compare_log(log: dict[str, list[int]], acked: dict[str, int]) -> Counts:
    """Check the per-session report indices found in the log against the acknowledgements.

    Stored reports of a session must be exactly its first ``n`` reports, each once, in
    order (one writer commits in call order), and ``n`` must cover what was acknowledged.
    """
    counts = Counts(sessions_acknowledged=len(acked), acknowledged=sum(acked.values()))
    for sid, indices in log.items():
        counts.stored += len(indices)
        seen: set[int] = set()
        highest = -1
        for i in indices:
            if i in seen:
                counts.duplicated += 1
                counts.note(f"{sid}: report {i} stored twice")
                continue
            seen.add(i)
            if i < highest:
                counts.reordered += 1
                counts.note(f"{sid}: report {i} stored after report {highest}")
            highest = max(highest, i)
        missing_inside = set(range(highest + 1)) - seen
        want = acked.get(sid, 0)
        lost_here = {i for i in range(want) if i not in seen}
        counts.lost += len(lost_here)
        counts.gaps += len(missing_inside - lost_here)
        if lost_here:
            counts.note(f"{sid}: acknowledged reports {sorted(lost_here)} not stored")
    for sid, want in acked.items():
        if sid not in log and want:
            counts.lost += want
            counts.note(f"{sid}: {want} acknowledged reports, none stored")
    return counts


async def read_log(tracker: sessiontrack.Tracker) -> dict[str, list[int]]:
    """Every script report in the log, per session in sequence order (the public API only).

    The reading tracker reports a sentinel session and flushes: reading the log from the
    start until the sentinel's start covers everything committed before.
    """
    sentinel = sessiontrack.new_session_id()
    tracker.plugin_manager.hook.sessiontrack_session_started(
        session_id=sentinel, chatbot_id="ledger"
    )
    await tracker.flush()
    found: dict[str, list[int]] = defaultdict(list)
    async with tracker.subscribe(after=0) as sub:
        async for event in sub:
            if event.session_id == sentinel:
                break
            i = index_of(event)
            if i is not None:
                found[event.session_id].append(i)
    return dict(found)


async def check_reads(
    tracker: sessiontrack.Tracker,
    log: dict[str, list[int]],
    counts: Counts,
    *,
    sample: int | None = None,
    seed: int = 0,
) -> int:
    """The store must read without error, and agree with the log: the list (every page),
    and the detail of every session (or of ``sample`` sessions drawn at random).
    Returns how many details were read."""
    listed: set[str] = set()
    cursor: str | None = None
    while True:
        page = await tracker.sessions.list(limit=100, cursor=cursor, chatbot_id=None)
        listed.update(s.id for s in page.data if s.chatbot_id in BOTS)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    if listed != set(log):
        counts.read_mismatches += len(listed ^ set(log))
        counts.note(f"list and log disagree on {len(listed ^ set(log))} sessions")
    sids = sorted(log)
    if sample is not None and sample < len(sids):
        sids = random.Random(seed).sample(sids, sample)
    for sid in sids:
        indices = log[sid]
        detail = await tracker.sessions.get(sid)
        nodes = [f"n{i}" for i in indices if i % 2 and i != LAST]
        messages = [f"m{i}" for i in indices if i and not i % 2 and i != LAST]
        status = "completed" if LAST in indices else "running"
        texts = [m.text for m in detail.messages]
        if detail.node_history != nodes or texts != messages or detail.status != status:
            counts.read_mismatches += 1
            counts.note(
                f"{sid}: detail {detail.status} {detail.node_history} {texts} "
                f"vs log {status} {nodes} {messages}"
            )
    return len(sids)
