"""Webhooks (sessiontrack.notify) against a real receiver on 127.0.0.1, on both backends:
an outage of 60 s, kill -9 mid-delivery, pause and resume, filters, one delivering process
among two, and the API's and CLI's validation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import pytest

import sessiontrack
from sessiontrack import cli
from sessiontrack.notify import Webhooks, WebhookService
from sessiontrack.web import create_app
from sessiontrack.web.openapi import build_document
from tests.alert_helpers import consumer_host
from tests.conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from tests.web_helpers.live import free_port, wait_until
from tests.web_helpers.receiver import Receiver

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
DOWN_S = 60.0  # the outage


def fast_webhooks(**options: Any) -> Webhooks:
    settings: dict[str, Any] = {
        "retry_initial": 0.05,
        "retry_max": 0.5,
        "refresh_interval": 0.1,
        "poll_interval": 0.1,
        "lease_retry": 0.2,
        "lease_check": 0.5,
    }
    settings.update(options)
    return Webhooks(**settings)


def host(
    url: str, prefix: str, hooks: Webhooks | None = None
) -> AbstractAsyncContextManager[sessiontrack.Tracker]:
    return consumer_host(url, prefix, hooks)


async def report(
    tracker: sessiontrack.Tracker, sessions: int, bots: tuple[str, ...] = ("a",)
) -> list[str]:
    """``sessions`` sessions of 4 events each (started, node, message, completed),
    interleaved, so that per-session order is a real constraint."""
    hook = tracker.plugin_manager.hook
    ids = [sessiontrack.new_session_id() for _ in range(sessions)]
    for i, sid in enumerate(ids):
        hook.sessiontrack_session_started(session_id=sid, chatbot_id=bots[i % len(bots)])
    for sid in ids:
        hook.sessiontrack_node_executed(session_id=sid, node_id="greet")
    for sid in ids:
        hook.sessiontrack_message(session_id=sid, direction="outbound", text="hi")
    for sid in ids:
        hook.sessiontrack_session_completed(session_id=sid)
    await tracker.flush()
    return ids


async def logged_seqs(tracker: sessiontrack.Tracker, after: int) -> list[int]:
    return [e.seq for e in await tracker.store.events_after(after, limit=100_000)]


def assert_in_order_per_session(receiver: Receiver, webhook_id: str) -> None:
    per_session: dict[str, list[int]] = defaultdict(list)
    for event in receiver.events(webhook_id):
        per_session[event["sessionId"]].append(event["seq"])
    for seqs in per_session.values():
        firsts = list(dict.fromkeys(seqs))  # a redelivery repeats a prefix, never reorders
        assert firsts == sorted(firsts)


# --- (a) the receiver is down for 60 s --------------------------------------------------


async def _outage(url: str, prefix: str) -> None:
    port = free_port()
    receiver = Receiver()
    hooks = fast_webhooks(retry_initial=0.5, retry_max=8.0, max_failures=1000)
    async with host(url, prefix, hooks) as tracker:
        created = await WebhookService(tracker.store).create(
            f"http://127.0.0.1:{port}/hook", batch=20
        )
        wid = created.webhook.id
        receiver.secrets[wid] = created.secret
        start = created.webhook.cursor or 0
        began = anyio.current_time()
        for _ in range(6):  # events keep coming during the outage
            await report(tracker, 5)
            await anyio.sleep(DOWN_S / 8)
        await anyio.sleep(max(0.0, DOWN_S - (anyio.current_time() - began)))
        service = WebhookService(tracker.store)
        assert (await service.get(wid)).failures >= 5
        assert (await service.get(wid)).state == "active"
        expected = await logged_seqs(tracker, start)
        async with receiver.serving(port):
            await wait_until(
                lambda: {e["seq"] for e in receiver.events(wid)} >= set(expected), within=20
            )
        assert all(r.signed for r in receiver.received)
        assert_in_order_per_session(receiver, wid)
        delivered = [e["seq"] for e in receiver.events(wid)]
        assert sorted(set(delivered)) == expected
        log = await service.deliveries(wid, limit=1000)
        assert any(d.error and d.status_code is None for d in log)  # the refused attempts
        assert log[0].status_code == 200
        assert (await service.get(wid)).failures == 0


@pytest.mark.slow
async def test_receiver_down_60_seconds_then_everything_arrives_in_order(
    tmp_path: Path, prefix: str
) -> None:
    """Both backends in the same 60 s."""
    await require_postgres()
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}", POSTGRES_URL]
    try:
        async with anyio.create_task_group() as tg:  # both migrate at once (one at a time)
            for url in urls:
                tg.start_soon(_outage, url, prefix)
    finally:
        await drop_prefixed_tables(POSTGRES_URL, prefix)


# --- (b) kill -9 mid-delivery, (e) two processes: one delivers -------------------------


def start_host(url: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.web_helpers.notify_host", url, prefix],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


async def test_kill_9_mid_delivery_loses_nothing_and_one_process_delivers(
    database_url: str, prefix: str, tmp_path: Path
) -> None:
    receiver = Receiver(delay=0.25)
    procs: list[subprocess.Popen[bytes]] = []
    async with receiver.serving() as hook_url, host(database_url, prefix) as tracker:
        created = await WebhookService(tracker.store).create(hook_url, batch=8)
        wid = created.webhook.id
        receiver.secrets[wid] = created.secret
        start = created.webhook.cursor or 0
        try:
            logs = [tmp_path / "a.log", tmp_path / "b.log"]
            procs = [start_host(database_url, prefix, log) for log in logs]
            await report(tracker, 15)  # 60 events: 8 POSTs of up to 8
            expected = await logged_seqs(tracker, start)
            await wait_until(lambda: len(receiver.received) >= 3, within=30)
            pids = {r.headers["x-test-host"] for r in receiver.received}
            assert len(pids) == 1  # one process delivers
            leader = next(p for p in procs if str(p.pid) in pids)
            in_flight = receiver.received[-1].key
            leader.send_signal(signal.SIGKILL)  # while its last POST waits for the answer
            leader.wait()
            procs.append(start_host(database_url, prefix, tmp_path / "restarted.log"))
            await wait_until(
                lambda: {e["seq"] for e in receiver.events(wid)} >= set(expected), within=40
            )
            await anyio.sleep(0.5)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
    pids_after = {r.headers["x-test-host"] for r in receiver.received} - pids
    assert len(pids_after) == 1  # the survivor took over; the restarted one stood by
    assert all(r.signed for r in receiver.received)
    assert sorted({e["seq"] for e in receiver.events(wid)}) == expected  # nothing lost
    by_key: dict[str, list[list[int]]] = defaultdict(list)
    for r in receiver.received:
        by_key[r.key].append(r.seqs)
    assert len(by_key[in_flight]) == 2  # the killed POST came again, under its key
    first_key: dict[int, str] = {}
    for r in receiver.received:
        for seq in r.seqs:
            assert first_key.setdefault(seq, r.key) == r.key  # a duplicate: the same key
    assert all(len({tuple(s) for s in sent}) == 1 for sent in by_key.values())
    assert_in_order_per_session(receiver, wid)


# --- (c) pause after repeated failures, resume ------------------------------------------


async def test_paused_after_repeated_failures_with_the_reason_then_resumed(
    database_url: str, prefix: str
) -> None:
    receiver = Receiver(status=500)
    hooks = fast_webhooks(max_failures=3, retry_max=0.05)
    async with receiver.serving() as hook_url, host(database_url, prefix, hooks) as tracker:
        app = create_app(
            tracker, authenticate=lambda r: sessiontrack.Principal(id="ops", can_manage=True)
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as api:
            answer = await api.post("/webhooks", json={"url": hook_url, "batch": 50})
            assert answer.status_code == 201, answer.text
            wid, receiver.secrets[answer.json()["id"]] = (
                answer.json()["id"],
                answer.json()["secret"],
            )
            await report(tracker, 3)

            async def state() -> dict[str, Any]:
                return (await api.get(f"/webhooks/{wid}")).json()  # type: ignore[no-any-return]

            with anyio.fail_after(10):
                while (current := await state())["state"] != "paused":  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            assert current["failures"] == 3
            assert "3 consecutive failed deliveries" in current["pausedReason"]
            assert "HTTP 500" in current["pausedReason"]
            log = (await api.get(f"/webhooks/{wid}/deliveries")).json()
            assert [d["attempt"] for d in log] == [3, 2, 1]
            assert {d["statusCode"] for d in log} == {500}
            assert all(d["latencyMs"] >= 0 and d["error"] == "HTTP 500" for d in log)
            await anyio.sleep(0.5)
            assert len(receiver.received) == 3  # nothing more while paused
            receiver.status = 200
            await report(tracker, 1)  # committed while paused: delivered after the resume
            resumed = await api.post(f"/webhooks/{wid}/resume")
            assert resumed.json()["state"] == "active" and resumed.json()["pausedReason"] is None
            expected = await logged_seqs(tracker, 0)
            await wait_until(lambda: {e["seq"] for e in receiver.events(wid)} >= set(expected))
            assert (await state())["failures"] == 0


async def test_410_gone_pauses_at_once(database_url: str, prefix: str) -> None:
    receiver = Receiver(status=410)
    async with (
        receiver.serving() as hook_url,
        host(database_url, prefix, fast_webhooks()) as tracker,
    ):
        service = WebhookService(tracker.store)
        wid = (await service.create(hook_url)).webhook.id
        await report(tracker, 1)
        with anyio.fail_after(10):
            while (await service.get(wid)).state != "paused":  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert (await service.get(wid)).paused_reason == "the receiver answered 410 Gone"
        assert len(receiver.received) == 1


# --- (d) filters by kind and chatbot ----------------------------------------------------


async def test_filters_by_event_kind_and_chatbot(database_url: str, prefix: str) -> None:
    receiver = Receiver()
    async with (
        receiver.serving() as hook_url,
        host(database_url, prefix, fast_webhooks()) as tracker,
    ):
        service = WebhookService(tracker.store)
        done = await service.create(hook_url, events=["session:completed"], batch=1)
        bot_b = await service.create(hook_url, chatbot_ids=["b"])
        both = await service.create(hook_url, events=["session:started"], chatbot_ids=["a"])
        every = await service.create(hook_url)
        for c in (done, bot_b, both, every):
            receiver.secrets[c.webhook.id] = c.secret
        start = every.webhook.cursor or 0
        await report(tracker, 6, bots=("a", "b", "c"))
        log = await tracker.store.events_after(start, limit=1000)
        await wait_until(lambda: len(receiver.events(every.webhook.id)) == len(log))
        await wait_until(lambda: len(receiver.events(done.webhook.id)) == 6)
        await anyio.sleep(0.3)

        def seqs(wid: str) -> list[int]:
            return [e["seq"] for e in receiver.events(wid)]

        assert seqs(done.webhook.id) == [e.seq for e in log if e.kind == "session_completed"]
        assert len(receiver.of(done.webhook.id)) == 6  # batch=1: one event per POST
        assert seqs(bot_b.webhook.id) == [e.seq for e in log if e.chatbot_id == "b"]
        assert seqs(both.webhook.id) == [
            e.seq for e in log if e.kind == "session_started" and e.chatbot_id == "a"
        ]
        assert seqs(every.webhook.id) == [e.seq for e in log]
        assert all(r.signed for r in receiver.received)
        sample = receiver.events(done.webhook.id)[0]
        assert sample["event"] == "session:completed"
        assert sample["data"]["sessionId"] == sample["sessionId"]
        r = receiver.of(done.webhook.id)[0]
        assert r.key == str(sample["seq"]) == r.headers["x-sessiontrack-delivery"]


# --- (f) the API's and the CLI's validation ---------------------------------------------


def principals(request: Any) -> sessiontrack.Principal | None:
    return {
        "admin": sessiontrack.Principal(id="admin", can_manage=True),
        "viewer": sessiontrack.Principal(id="viewer"),
        "tenant": sessiontrack.Principal(
            id="tenant", chatbot_ids=frozenset({"a"}), can_manage=True
        ),
    }.get(request.token or "")


async def test_api_validates_and_guards_subscriptions(database_url: str, prefix: str) -> None:
    async with host(database_url, prefix) as tracker:
        app = create_app(tracker, authenticate=principals)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as api:

            def as_(who: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {who}"}

            admin = as_("admin")
            assert (await api.get("/webhooks", headers=as_("viewer"))).status_code == 403
            refused = await api.post("/webhooks", json={"url": "http://x/h"}, headers=as_("viewer"))
            assert refused.status_code == 403 and "can_manage" in refused.json()["error"]
            for body, field in [
                ({"url": "ftp://example.com/h"}, "url"),
                ({"url": "file:///etc/passwd"}, "url"),
                ({"url": "http:///nohost"}, "url"),
                ({}, "url"),
                ({"url": "http://x/h", "events": ["session:exploded"]}, "events"),
                ({"url": "http://x/h", "events": "session:started"}, "events"),
                ({"url": "http://x/h", "chatbotIds": [1]}, "chatbotIds"),
                ({"url": "http://x/h", "batch": 0}, "batch"),
                ({"url": "http://x/h", "batch": "10"}, "batch"),
                ({"url": "http://x/h", "secret": "short"}, "secret"),
                ({"url": "http://x/h", "colour": "red"}, "colour"),
                ([1, 2], "body"),
            ]:
                answer = await api.post("/webhooks", json=body, headers=admin)
                assert answer.status_code == 400, (body, answer.text)
                assert answer.json()["detail"][0]["field"] == field, body
            bad = await api.post(
                "/webhooks", content=b"{", headers={**admin, "Content-Type": "application/json"}
            )
            assert bad.status_code == 400 and bad.json()["detail"][0]["field"] == "body"
            made = await api.post(
                "/webhooks",
                json={
                    "url": "https://example.com/h",
                    "secret": "s" * 20,
                    "events": ["session:started"],
                },
                headers=admin,
            )
            assert made.status_code == 201
            hook = made.json()
            assert hook["secret"] == "s" * 20 and hook["secretHint"] == "…ssss"
            listed = (await api.get("/webhooks", headers=admin)).json()
            assert [h["id"] for h in listed] == [hook["id"]]
            assert "secret" not in listed[0] and listed[0]["lag"] == 0
            assert "secret" not in (await api.get(f"/webhooks/{hook['id']}", headers=admin)).json()
            # a principal limited to chatbots manages only subscriptions to those
            assert (await api.get("/webhooks", headers=as_("tenant"))).json() == []
            assert (
                await api.get(f"/webhooks/{hook['id']}", headers=as_("tenant"))
            ).status_code == 404
            for body in ({"url": "http://x/h"}, {"url": "http://x/h", "chatbotIds": ["a", "b"]}):
                answer = await api.post("/webhooks", json=body, headers=as_("tenant"))
                assert (
                    answer.status_code == 400
                    and answer.json()["detail"][0]["field"] == "chatbotIds"
                )
            own = await api.post(
                "/webhooks", json={"url": "http://x/h", "chatbotIds": ["a"]}, headers=as_("tenant")
            )
            assert own.status_code == 201
            assert len((await api.get("/webhooks", headers=admin)).json()) == 2
            # ids, limits, removal
            assert (await api.get("/webhooks/nope", headers=admin)).json()["detail"][0][
                "field"
            ] == "id"
            for query in ("limit=0", "limit=x", "limit=1&limit=2", "since=1"):
                answer = await api.get(f"/webhooks/{hook['id']}/deliveries?{query}", headers=admin)
                assert answer.status_code == 400, query
            assert (await api.delete(f"/webhooks/{hook['id']}", headers=admin)).status_code == 204
            assert (await api.delete(f"/webhooks/{hook['id']}", headers=admin)).status_code == 404
            assert await tracker.store.read_cursor(f"webhook:{hook['id']}") is None


def fits(answer: httpx.Response, method: str, path: str) -> None:
    """The answer matches what the OpenAPI document says of this operation and status."""
    doc = build_document(secured=True)
    response = doc["paths"][path][method]["responses"][str(answer.status_code)]
    if "content" not in response:
        assert not answer.content, answer.text
        return
    schema = response["content"]["application/json"]["schema"]
    root = {**schema, "components": doc["components"]}
    jsonschema.Draft202012Validator(root).validate(answer.json())


async def test_the_answers_fit_the_openapi_document(database_url: str, prefix: str) -> None:
    receiver = Receiver(status=500)
    hooks = fast_webhooks(max_failures=2, retry_max=0.05)
    async with receiver.serving() as hook_url, host(database_url, prefix, hooks) as tracker:
        app = create_app(tracker, authenticate=principals)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as api:
            admin = {"Authorization": "Bearer admin"}
            body = {"url": hook_url, "events": ["session:started"], "batch": 10}
            root = {"$ref": "#/components/schemas/WebhookBody", **build_document(secured=True)}
            jsonschema.Draft202012Validator(root).validate(body)
            made = await api.post("/webhooks", json=body, headers=admin)
            assert made.status_code == 201, made.text
            fits(made, "post", "/webhooks")
            wid = made.json()["id"]
            receiver.secrets[wid] = made.json()["secret"]
            one = f"/webhooks/{wid}"
            await report(tracker, 1)
            with anyio.fail_after(10):
                while (await api.get(one, headers=admin)).json()["state"] != "paused":  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            for method, path, url in [
                ("get", "/webhooks", "/webhooks"),
                ("get", "/webhooks/{webhookId}", one),
                ("get", "/webhooks/{webhookId}/deliveries", one + "/deliveries"),
                ("get", "/webhooks/{webhookId}/deliveries", one + "/deliveries?limit=x"),
                ("get", "/webhooks/{webhookId}", "/webhooks/nope"),
                ("get", "/webhooks/{webhookId}", "/webhooks/" + sessiontrack.new_session_id()),
                ("post", "/webhooks/{webhookId}/resume", one + "/resume"),
            ]:
                answer = await api.request(method, url, headers=admin)
                fits(answer, method, path)
            log = (await api.get(one + "/deliveries", headers=admin)).json()
            assert log and log[0]["statusCode"] == 500 and log[0]["error"] == "HTTP 500"
            viewer = await api.get("/webhooks", headers={"Authorization": "Bearer viewer"})
            assert viewer.status_code == 403
            fits(viewer, "get", "/webhooks")
            gone = await api.delete(one, headers=admin)
            assert gone.status_code == 204
            fits(gone, "delete", "/webhooks/{webhookId}")
            again = await api.delete(one, headers=admin)
            assert again.status_code == 404
            fits(again, "delete", "/webhooks/{webhookId}")


def test_cli_manages_subscriptions(backend: str, tmp_path: Path, prefix: str, capsys: Any) -> None:
    if backend == "postgresql":
        anyio.run(require_postgres)
        url = POSTGRES_URL
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    common = ["--database-url", url, "--prefix", prefix]
    try:
        assert cli.main(["migrate", *common]) == 0
        capsys.readouterr()
        assert cli.main(["webhooks", "add", "gopher://x", *common]) == 2
        assert "URL: must be an http or https URL" in capsys.readouterr().err
        assert cli.main(["webhooks", "add", "http://x/h", "--event", "nope", *common]) == 2
        assert "--event: unknown event 'nope'" in capsys.readouterr().err
        assert cli.main(["webhooks", "add", "http://x/h", "--batch", "501", *common]) == 2
        assert "--batch:" in capsys.readouterr().err
        add = ["webhooks", "add", "http://127.0.0.1:9/h", "--event", "session:completed"]
        assert cli.main([*add, "--chatbot", "a", *common]) == 0
        out = capsys.readouterr().out
        wid = out.split()[0]
        assert "secret: whsec_" in out
        assert cli.main(["webhooks", "list", *common]) == 0
        listed = capsys.readouterr().out
        assert wid in listed and "active" in listed and "whsec_" not in listed
        assert cli.main(["webhooks", "deliveries", wid, *common]) == 0
        assert cli.main(["webhooks", "resume", wid, *common]) == 0
        assert cli.main(["webhooks", "remove", wid, *common]) == 0
        capsys.readouterr()
        assert cli.main(["webhooks", "remove", wid, *common]) == 2
        assert f"webhook {wid} not found" in capsys.readouterr().err
        assert cli.main(["webhooks", "resume", "not-an-id", *common]) == 2
        assert "ID: must be a webhook id" in capsys.readouterr().err
    finally:
        if backend == "postgresql":
            anyio.run(drop_prefixed_tables, POSTGRES_URL, prefix)


# --- docs/notifications.md: the receiver runs as printed --------------------------------


def docs_receiver() -> str:
    text = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    (code,) = [b for b in blocks if "def genuine" in b]
    return str(code)


async def test_the_documented_receiver_verifies_real_deliveries(
    tmp_path: Path, prefix: str
) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(docs_receiver(), encoding="utf-8")
    port = free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    out = tmp_path / "receiver.out"
    async with host(url, prefix, fast_webhooks()) as tracker:
        created = await WebhookService(tracker.store).create(
            f"http://127.0.0.1:{port}/hook", events=["session:completed"]
        )
        with open(out, "wb") as sink:  # noqa: ASYNC230 - a local file, opened once
            proc = subprocess.Popen(  # noqa: ASYNC220 - the receiver outlives this call
                [sys.executable, str(script)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "WEBHOOK_SECRET": created.secret, "PORT": str(port)},
            )
        try:
            async with httpx.AsyncClient() as client:
                with anyio.fail_after(30):
                    while True:
                        try:
                            forged = await client.post(
                                f"http://127.0.0.1:{port}/hook",
                                content=b'{"events": []}',
                                headers={
                                    "X-Sessiontrack-Timestamp": str(int(time.time())),
                                    "X-Sessiontrack-Signature": "sha256=" + "0" * 64,
                                },
                            )
                            break
                        except httpx.ConnectError:
                            await anyio.sleep(0.1)
            assert forged.status_code == 401
            ids = await report(tracker, 3)
            with anyio.fail_after(20):
                while out.read_text().count("verified") < 3:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            lines = [line for line in out.read_text().splitlines() if "verified" in line]
            assert [line.split()[3] for line in lines] == ids
            assert all(line.split()[2] == "session:completed" for line in lines)
        finally:
            proc.kill()
            proc.wait()


async def test_the_cli_delivery_worker_delivers_and_stops_cleanly_on_sigterm(
    database_url: str, prefix: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    async with receiver.serving() as hook_url, host(database_url, prefix) as tracker:
        created = await WebhookService(tracker.store).create(hook_url)
        receiver.secrets[created.webhook.id] = created.secret
        log = tmp_path / "deliver.log"
        cmd = ["webhooks", "deliver", "--database-url", database_url, "--prefix", prefix]
        with open(log, "wb") as out:  # noqa: ASYNC230 - a local file, opened once
            proc = subprocess.Popen(  # noqa: ASYNC220 - the worker outlives this call
                [sys.executable, "-m", "sessiontrack.cli", *cmd, "--poll-interval", "0.1"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            ids = await report(tracker, 2)
            expected = await logged_seqs(tracker, created.webhook.cursor or 0)
            await wait_until(
                lambda: [e["seq"] for e in receiver.events(created.webhook.id)] == expected,
                within=30,
            )
            assert {e["sessionId"] for e in receiver.events(created.webhook.id)} == set(ids)
            assert all(r.signed for r in receiver.received)
        finally:
            proc.send_signal(signal.SIGTERM)  # a container's stop: a clean one
            with anyio.fail_after(15):
                while proc.poll() is None:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        assert proc.returncode == 0, log.read_text()
        assert "SIGTERM stops" in log.read_text()
