"""The code in docs/quickstart.md and docs/integrating.md runs as printed."""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pluggy
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).resolve().parent.parent / "docs"
MOUNT = "/api/chatbot-sessions"


def python_block(page: str, containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if containing in b]
    return str(block)


def load(code: str, path: Path) -> ModuleType:
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"doc_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # the snippets use relative SQLite files
    yield tmp_path


async def test_the_quickstart_bot(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bot = load(python_block("quickstart.md", "app = Starlette("), in_tmp / "bot.py")
    async with bot.app.router.lifespan_context(bot.app):
        transport = httpx.ASGITransport(app=bot.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:

            async def say(user: str, text: str) -> dict[str, Any]:
                response = await c.post("/chat", json={"user": user, "text": text})
                assert response.status_code == 200
                answer: dict[str, Any] = response.json()
                return answer

            first = await say("ann", "hi")
            assert first["reply"] == "You said: hi"
            assert (await say("ann", "how are you"))["sessionId"] == first["sessionId"]
            assert (await say("ann", "bye"))["reply"] == "Bye!"
            detail = (await c.get(f"{MOUNT}/{first['sessionId']}")).json()
            assert (detail["status"], detail["completionReason"]) == ("completed", "flow_end")
            assert detail["nodeHistory"] == ["greet", "echo", "echo", "echo"]
            assert detail["chatbotName"] == "Echo bot"
            assert [m["text"] for m in detail["messages"]] == [
                "Hello!",
                "hi",
                "You said: hi",
                "how are you",
                "You said: how are you",
                "bye",
                "Bye!",
            ]

            bob = (await say("bob", "hello"))["sessionId"]
            assert bob != first["sessionId"]
            assert (await c.post(f"{MOUNT}/{bob}/stop")).status_code == 200
            with anyio.fail_after(5):
                while True:  # the hook runs once the stop is committed
                    if f"session {bob} stopped by local" in capsys.readouterr().out:
                        break
                    await anyio.sleep(0.02)
            again = await say("bob", "still there?")
            assert again["sessionId"] != bob  # a stopped session is not continued
            stats = (await c.get(f"{MOUNT}/stats")).json()
            counts = {k: v for k, v in stats["byStatus"].items() if v}
            assert counts == {"completed": 1, "stopped": 1, "waiting_input": 1}
    assert (in_tmp / "bot.db").exists()
    sys.modules.pop("doc_bot", None)


def test_the_sync_tracker_for_sync_hosts(in_tmp: Path) -> None:
    """integrating.md's SyncTracker block as printed, then the same tracker from many
    threads at once, with a stop heard on the tracker's own thread."""
    namespace: dict[str, Any] = {}
    exec(python_block("integrating.md", "sessiontrack.SyncTracker("), namespace)
    assert namespace["page"].total == 1
    assert namespace["tracker"].running is False  # leaving `with` closed it

    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    stopped: list[tuple[str, str]] = []

    class Engine:
        @sessiontrack.hookimpl
        def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
            stopped.append((session_id, threading.current_thread().name))

    pm.register(Engine())
    with sessiontrack.SyncTracker("sqlite:///sync.db", plugin_manager=pm) as background:

        def customer(n: int) -> str:
            sid = sessiontrack.new_session_id()
            pm.hook.sessiontrack_session_started(
                session_id=sid, chatbot_id="bot", conversation_id=f"c{n}"
            )
            for i in range(40):
                pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text=str(i))
            return sid

        with ThreadPoolExecutor(4) as pool:
            sids = list(pool.map(customer, range(8)))
        background.flush()
        for sid in sids:
            texts = [m.text for m in background.sessions.messages(sid)]
            assert texts == [str(i) for i in range(40)]  # each thread's order is kept
        background.stop(sids[0])
        deadline = time.monotonic() + 5
        while not stopped:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert stopped[0][0] == sids[0]
        assert stopped[0][1] != threading.current_thread().name  # on the tracker's thread


async def test_a_sync_engine_in_worker_threads_then_flush(in_tmp: Path) -> None:
    """The reports a worker thread made before returning are covered by the next flush."""
    async with sessiontrack.Tracker("sqlite+aiosqlite:///threads.db") as tracker:
        hook = tracker.plugin_manager.hook

        def sync_engine_handle(n: int) -> str:
            sid = sessiontrack.new_session_id()
            hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
            for i in range(25):
                hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
            hook.sessiontrack_session_completed(session_id=sid)
            return sid

        sids = [await anyio.to_thread.run_sync(sync_engine_handle, n) for n in range(3)]
        await tracker.flush()
        for sid in sids:
            detail = await tracker.sessions.get(sid)
            assert (detail.status, detail.node_count) == ("completed", 25)
