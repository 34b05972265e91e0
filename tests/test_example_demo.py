"""The one-command demo: the simulator against a live uvicorn, and
``python -m examples.helpdesk`` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import example_helpers  # noqa: F401  (puts the repository's root on sys.path)
import httpx
import pytest
import socketio
import uvicorn
from example_helpers import payloads as wa
from web_helpers.live import free_port

from examples.helpdesk.app import MOUNT, Helpdesk, create_helpdesk
from examples.helpdesk.sender import RecordingSender
from examples.helpdesk.simulator import PLANS, Simulator
from examples.helpdesk.whatsapp import sign

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def live(database_url: str, prefix: str) -> AsyncIterator[tuple[Helpdesk, str]]:
    helpdesk = create_helpdesk(
        database_url,
        app_secret="demo-secret",
        tracker_options={
            "prefix": prefix,
            "migrate": True,
            "poll_interval": 0.05,
            # long enough that a customer mid-conversation never expires on a loaded
            # machine (a webhook round trip there can take over a second), short enough
            # that the walked-away ones expire within the wait below
            "idle_timeout": timedelta(seconds=4),
            "sweep_interval": 0.2,
        },
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            helpdesk.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while True:
                await anyio.sleep(0.02)
                if server.started:
                    break
        yield helpdesk, f"http://127.0.0.1:{port}"
        server.should_exit = True


async def test_the_simulator_plays_every_kind_of_customer(live: tuple[Helpdesk, str]) -> None:
    helpdesk, base = live
    assert isinstance(helpdesk.sender, RecordingSender)
    plans = [plan for plan, _ in PLANS]
    sim = Simulator(
        base,
        helpdesk.sender,
        app_secret="demo-secret",
        customers=2 * len(plans),
        concurrency=6,
        arrival=(0.0, 0.02),
        pause=(0.01, 0.05),
        stop_after=(0.1, 0.3),
        redeliver=0.3,
        seed=4,
        mix=plans,
    )
    tally = await sim.run()
    assert tally.outcomes["failed"] == 0
    assert sum(tally.outcomes.values()) == tally.started == 2 * len(plans)
    assert tally.redelivered > 0

    async with httpx.AsyncClient(base_url=base + MOUNT) as api:
        with anyio.fail_after(15):  # walked-away sessions expire through the sweeper
            while True:
                stats = (await api.get("/stats")).json()
                if not stats["active"]:
                    break
                await anyio.sleep(0.1)
        sessions = (await api.get("/", params={"limit": 100})).json()["data"]
        details = [(await api.get(f"/{s['id']}")).json() for s in sessions]
    by_status = stats["byStatus"]
    assert stats["total"] == tally.started  # redeliveries started nothing
    assert by_status.get("expired", 0) == tally.outcomes["abandoned"] > 0
    assert by_status.get("stopped", 0) == tally.outcomes["stopped"] > 0
    reasons = Counter(d["completionReason"] for d in details if d["status"] == "completed")
    assert reasons == {"flow_end": tally.outcomes["finished"], "handoff": tally.outcomes["agent"]}
    inbound = sum(m["direction"] == "inbound" for d in details for m in d["messages"])
    assert inbound == tally.messages - tally.redelivered  # a redelivery is recorded once


def _wait_for_line(proc: subprocess.Popen[str], marker: str) -> list[str]:
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError("the demo ended early:\n" + "".join(lines))


def test_python_m_examples_helpdesk(tmp_path: Path) -> None:
    """The README's command: serves, prints the dashboard address, simulates customers,
    and stops cleanly on Ctrl-C."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WHATSAPP_APP_SECRET", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.helpdesk",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp_path / 'demo.db'}",
            "--customers",
            "4",
            "--idle-timeout",
            "30",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = _wait_for_line(proc, "dashboard:")
        assert any(f"http://127.0.0.1:{port}{MOUNT}/ui/" in line for line in lines)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            home = client.get("/")
            assert (home.status_code, home.headers["location"]) == (307, f"{MOUNT}/ui/")
            assert client.get(f"{MOUNT}/ui/").status_code == 200
            deadline = time.monotonic() + 30
            while client.get(f"{MOUNT}/stats").json()["total"] < 2:
                assert time.monotonic() < deadline, "no simulated sessions after 30 s"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "helpdesk stopped" in out
    assert (tmp_path / "demo.db").exists()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "examples.helpdesk",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{tmp_path / 'busy.db'}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,  # the demo's imports alone took over a minute on a loaded machine
        )
    assert done.returncode == 1
    assert "address already in use" in done.stderr.lower()
    assert "helpdesk could not start" in done.stderr
    assert "Traceback" not in done.stderr


async def test_live_events_reach_a_socket_client_under_the_mount(
    live: tuple[Helpdesk, str],
) -> None:
    """The dashboard's live feed works in the example: Socket.IO at the mount's path."""
    _, base = live
    client = socketio.AsyncClient(reconnection=False)
    started: list[dict[str, Any]] = []
    arrived = anyio.Event()

    @client.on("session:started", namespace="/sessions")  # type: ignore[untyped-decorator]
    async def on_started(data: dict[str, Any]) -> None:
        started.append(data)
        arrived.set()

    await client.connect(
        base, socketio_path=f"{MOUNT}/socket.io", namespaces=["/sessions"], transports=["websocket"]
    )
    try:
        ack = await client.call("sessions:subscribe", {}, namespace="/sessions", timeout=10)
        assert ack["success"] is True
        body = json.dumps(wa.messages("15557654321", "Live Lou", wa.text("15557654321", "hi")))
        async with httpx.AsyncClient(base_url=base) as http:
            response = await http.post(
                "/webhook",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(body.encode(), "demo-secret"),
                },
            )
            assert response.status_code == 200
        with anyio.fail_after(10):
            await arrived.wait()
    finally:
        await client.disconnect()
    assert started[0]["customerName"] == "Live Lou"
    assert started[0]["conversationId"] == "15557654321"
    assert started[0]["chatbotName"] == "Acme Help Desk"
