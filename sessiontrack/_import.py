"""Import: a JSON Lines export written back into an empty database.

``sessiontrack import`` reads the file (plain, or gzip-compressed as ``sessiontrack
archive`` writes it) twice: first for the chatbots (their names and the flow graph of each
version the sessions ran), then the sessions, written in transactions of a few hundred.
Each session keeps its id and every message, node execution and call keeps its sequence
number, so ``get_session`` gives back the detail that was exported.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from .abc import Store
from .models import LLMCall, Message, NodeExecution, NodeTotals, SessionDetail, ToolCall
from .store import FullSession, NotEmpty

_GZIP_MAGIC = b"\x1f\x8b"
IMPORTED_VERSION = "imported"
"""The version name given to a chatbot's current flow when no exported version had it."""
_EMPTY_FLOW: dict[str, Any] = {"nodes": [], "edges": []}
_TIMES = frozenset({"started_at", "updated_at", "completed_at", "expires_at", "at", "timestamp"})
_NESTED: dict[str, type] = {
    "node_executions": NodeExecution,
    "messages": Message,
    "node_totals": NodeTotals,
    "llm_call_history": LLMCall,
    "tool_call_history": ToolCall,
}


class BadExport(ValueError):
    """A line of the file is not a session of a ``sessiontrack export --format jsonl``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _value(name: str, raw: Any) -> Any:
    if name in _TIMES and raw is not None:
        when = datetime.fromisoformat(raw)
        if when.utcoffset() is None:
            raise ValueError(f"{_camel(name)} {raw!r} has no timezone")
        return when.astimezone(UTC)
    return raw


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        key = _camel(f.name)
        if key not in data:
            continue  # a default applies (node executions' seq is read apart)
        raw = data[key]
        nested = _NESTED.get(f.name)
        kwargs[f.name] = (
            [_build(nested, item) for item in raw] if nested is not None else _value(f.name, raw)
        )
    return cls(**kwargs)


def parse_line(text: str | bytes) -> FullSession:
    """One line of a JSON Lines export as the session it holds.

    :raises ValueError: if it is not one (a missing field, a time without a timezone).
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = json.loads(text)  # deeper than orjson reads, or integers beyond 64 bits
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        seqs = [int(n["seq"]) for n in data.get("nodeExecutions", [])]
        detail = _build(SessionDetail, data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a session detail ({type(exc).__name__}: {exc})") from None
    return FullSession(detail, seqs)


@dataclass
class _Chatbot:
    chatbot_id: str
    name: str | None = None
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    current_flow: dict[str, Any] | None = None
    newest: tuple[datetime, str | None] | None = None
    updated_at: datetime | None = None

    def saw(self, d: SessionDetail) -> None:
        self.name = self.name or d.chatbot_name
        if self.updated_at is None or d.updated_at > self.updated_at:
            self.updated_at = d.updated_at
        if d.flow_version is None:
            if d.flow_data != _EMPTY_FLOW:
                self.current_flow = d.flow_data
        else:
            if d.flow_data != _EMPTY_FLOW:
                self.flows.setdefault(d.flow_version, d.flow_data)
            if self.newest is None or d.started_at > self.newest[0]:
                self.newest = (d.started_at, d.flow_version)

    def row(self) -> dict[str, Any]:
        """The chatbot's row with its ``flows``; without ``name`` if no row was stored
        (its sessions showed no chatbot name): then only the flows are written."""
        flows = dict(self.flows)
        current = self.newest[1] if self.newest else None
        if self.current_flow is not None:
            # sessions without a version show the chatbot's current flow
            same = [v for v, graph in flows.items() if graph == self.current_flow]
            current = same[0] if same else IMPORTED_VERSION
            flows.setdefault(current, self.current_flow)
        if self.name is None:
            return {"chatbot_id": self.chatbot_id, "flows": flows}
        return {
            "chatbot_id": self.chatbot_id,
            "name": self.name,
            "current_version": current or IMPORTED_VERSION,
            "updated_at": self.updated_at,
            "flows": flows,
        }


def _open(path: Path) -> IO[bytes] | gzip.GzipFile:
    """The file, decompressed if it is gzip (an archive of ``sessiontrack archive``, or
    several concatenated: gzip reads every member)."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rb")
    return path.open("rb")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with _open(path) as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, line


def _sessions(path: Path) -> Iterator[tuple[int, FullSession]]:
    for number, line in _lines(path):
        try:
            yield number, parse_line(line)
        except ValueError as exc:
            raise BadExport(number, str(exc)) from None


def _chatbots(sessions: Iterable[tuple[int, FullSession]]) -> tuple[list[dict[str, Any]], int]:
    bots: dict[str, _Chatbot] = {}
    total = 0
    for _, fs in sessions:
        d = fs.detail
        bots.setdefault(d.chatbot_id, _Chatbot(d.chatbot_id)).saw(d)
        total += 1
    return [bot.row() for bot in bots.values()], total


async def import_jsonl(
    store: Store,
    path: str | Path,
    *,
    batch_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Import the sessions of a JSON Lines export at ``path`` into ``store``, which must
    hold no session and no event; returns how many were imported. ``progress`` gets
    ``(done, total)`` after each batch.

    :raises NotEmpty: if the store holds sessions or events.
    :raises BadExport: at the first line that is not a session (nothing is written).
    """
    path = Path(path)
    if not await store.is_empty():
        raise NotEmpty("the database holds sessions already: import needs an empty one")
    chatbots, total = _chatbots(_sessions(path))
    done = 0
    first = True
    batch: list[FullSession] = []
    for _, fs in _sessions(path):
        batch.append(fs)
        if len(batch) >= batch_size:
            await store.import_sessions(batch, chatbots if first else [])
            first, done = False, done + len(batch)
            batch = []
            if progress is not None:
                progress(done, total)
    if batch or first:
        await store.import_sessions(batch, chatbots if first else [])
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return done
