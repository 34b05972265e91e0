"""``python -m examples.support_agent``, the one command of the LangGraph example: it
serves the dashboard, plays its customers through the real graph and the adapter, and
their sessions (with tokens and tool calls) are in the REST API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import example_helpers  # noqa: F401  (puts the repository's root on sys.path)
import httpx
from web_helpers.live import free_port

REPO = Path(__file__).resolve().parent.parent
MOUNT = "/api/chatbot-sessions"


def test_python_m_examples_support_agent(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "examples.support_agent", "--port", str(port)),
            *("--database-url", f"sqlite:///{tmp_path / 'agent.db'}"),
            *("--customers", "3", "--pause", "0.05"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "dashboard:" in line:
                assert f"http://127.0.0.1:{port}{MOUNT}/ui/" in line
                break
        else:
            raise AssertionError("the example ended before serving")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}{MOUNT}") as api:
            assert api.get("/ui/").status_code == 200
            deadline = time.monotonic() + 30
            while api.get("/stats").json()["byStatus"]["completed"] < 3:
                assert time.monotonic() < deadline, api.get("/stats").json()
                time.sleep(0.1)
            sessions = api.get("/", params={"chatbotId": "support-agent"}).json()["data"]
            details = [api.get(f"/{s['id']}").json() for s in sessions]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "support agent stopped" in out
    assert len(details) == 3 and all(d["completionReason"] == "flow_end" for d in details)
    for d in details:
        assert d["inputTokens"] > 0 and d["outputTokens"] > 0
        assert d["toolCalls"] >= 1 and d["llmCalls"] >= 3
        assert d["messages"][0]["direction"] == "inbound"
        assert all(c["ttfbMs"] is not None for c in d["llmCallHistory"])  # streamed
        assert {"agent", "tools", "ask"} <= set(d["nodeHistory"])
    lookups = [c for d in details for c in d["toolCallHistory"]]
    assert {c["name"] for c in lookups} == {"lookup_order"}
    failed = [c for c in lookups if c["error"]]  # the customer who gave a wrong number
    assert [c["arguments"] for c in failed] == [{"order": "1009"}]
    assert any(d["errorCount"] == 1 for d in details)
