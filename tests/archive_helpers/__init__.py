"""Helpers of tests/test_archive.py: sessions to archive, an independent check of an
archive directory, and the archive run in a subprocess that pauses where a test kills it
(``python -m archive_helpers.driver``)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pluggy

import sessiontrack

TESTS_DIR = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)
FLOW = {
    "nodes": [
        {"id": "ask", "type": "question", "position": {"x": 0, "y": 0}, "data": {"label": "Ask"}},
        {"id": "end", "type": "end", "position": {"x": 0, "y": 90}, "data": {"label": "End"}},
    ],
    "edges": [{"id": "e1", "source": "ask", "target": "end"}],
}


def report_session(hook: Any, chatbot_id: str, *, ended_days_ago: float | None, n: int = 0) -> str:
    """A session with messages, nodes, an LLM and a tool call, that started 100 days ago
    and ended ``ended_days_ago`` days ago (``None``: still running)."""
    sid = sessiontrack.new_session_id()
    began = NOW - timedelta(days=100)
    hook.sessiontrack_session_started(
        session_id=sid,
        chatbot_id=chatbot_id,
        conversation_id=f"conv-{n}",
        contact={"phone": f"+1555{n:07d}", "name": f"Customer {n}"},
        variables={"n": n, "deep": {"list": [1, "two", None]}},
        metadata={"channel": "test"},
        at=began,
    )
    for step in range(2):
        at = began + timedelta(minutes=step + 1)
        hook.sessiontrack_message(
            session_id=sid, direction="inbound", text=f"hi {n} ✓", message_id=f"m{n}.{step}", at=at
        )
        hook.sessiontrack_node_executed(
            session_id=sid, node_id="ask", node_type="question", duration_ms=2.5, at=at
        )
        hook.sessiontrack_llm_call(
            session_id=sid, node_id="ask", model="m", input_tokens=3, output_tokens=2, at=at
        )
        hook.sessiontrack_tool_call(
            session_id=sid, name="lookup", arguments={"q": n}, result={"ok": True}, at=at
        )
        hook.sessiontrack_message(
            session_id=sid, direction="outbound", text=f"answer {step}", node_id="ask", at=at
        )
    if ended_days_ago is not None:
        hook.sessiontrack_session_completed(
            session_id=sid, reason="flow_end", at=NOW - timedelta(days=ended_days_ago)
        )
    return sid


@dataclass
class Population:
    """The sessions a test reported: ``old`` ended 40 days ago (an archive of
    ``--older-than 30d`` takes them), ``young`` ended a day ago, ``active`` still run."""

    old: list[str] = field(default_factory=list)
    young: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    counter: int = 0

    def add(self, pm: pluggy.PluginManager, old: int, *, chatbots: tuple[str, ...] = ("a", "b")):  # type: ignore[no-untyped-def]
        hook = pm.hook
        for bot in chatbots:
            hook.sessiontrack_flow_registered(chatbot_id=bot, name=bot.upper(), flow=FLOW)
        for i in range(old):
            self.counter += 1
            bot = chatbots[i % len(chatbots)]
            self.old.append(report_session(hook, bot, ended_days_ago=40, n=self.counter))
        self.counter += 2
        self.young.append(report_session(hook, chatbots[0], ended_days_ago=1, n=self.counter))
        self.active.append(
            report_session(hook, chatbots[-1], ended_days_ago=None, n=self.counter + 1)
        )


@dataclass
class Archives:
    """What a directory holds, checked without the library's code: the complete archives
    (a manifest and its data file in place, whose SHA-256, lines and ids agree), the ids
    in them with how often each appears, and the files of ours left over."""

    complete: list[Path]
    ids: Counter[str]
    unpurged: list[dict[str, Any]]
    """The manifests of the complete archives whose purge is not recorded."""
    partial: list[Path]
    lines: list[bytes]


def check_directory(folder: Path) -> Archives:
    complete: list[Path] = []
    unpurged: list[dict[str, Any]] = []
    lines: list[bytes] = []
    ids: Counter[str] = Counter()
    for manifest_path in sorted(folder.glob("sessiontrack-archive-*.manifest.json")):
        manifest = json.loads(manifest_path.read_bytes())
        data = folder / manifest["file"]
        if not data.exists():
            continue  # killed between the renames: not an archive (yet)
        raw = data.read_bytes()
        assert hashlib.sha256(raw).hexdigest() == manifest["sha256"], data
        body = gzip.decompress(raw).splitlines()
        found = [json.loads(line)["id"] for line in body]
        assert found == manifest["ids"] and len(found) == manifest["sessions"], data
        complete.append(data)
        ids.update(found)
        lines += body
        if not manifest["purgedAt"]:
            unpurged.append(manifest)
    partial = sorted(folder.glob("*.partial"))
    return Archives(complete, ids, unpurged, partial, lines)


def driver(
    url: str, prefix: str, folder: Path, pause: str, batch_size: int = 4
) -> subprocess.Popen[str]:
    """``python -m archive_helpers.driver``: waits for a line on stdin, archives, and
    pauses at ``pause`` (``phase:done``, or ``none``) until the next line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archive_helpers.driver",
            url,
            prefix,
            str(folder),
            pause,
            str(batch_size),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
