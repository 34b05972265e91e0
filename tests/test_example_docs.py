"""The code in docs/quickstart.md and docs/integrating.md runs as printed."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

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
        async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as c:

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
                "Hello!", "hi", "You said: hi", "how are you", "You said: how are you", "bye",
                "Bye!"]

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
