"""The helpdesk's WhatsApp webhook: verification, signatures, malformed and repeated
notifications, status callbacks — each checked through the REST API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from example_helpers import payloads as wa
from example_helpers.harness import Harness, running_helpdesk
from web_helpers.live import serve
from web_helpers.raw_http import chunked, raw_request

from examples.helpdesk.app import MOUNT, WEBHOOK_MAX_BODY
from examples.helpdesk.whatsapp import sign

pytestmark = pytest.mark.anyio

SECRET = "6b1c2e9f0a7d4e3b8c5a1f2e3d4c5b6a"
TOKEN = "helpdesk-verify-token"
ANN = "15551234567"


@pytest.fixture
async def hd(tmp_path: Path, prefix: str) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
    async with running_helpdesk(url, prefix, verify_token=TOKEN) as harness:
        yield harness


@pytest.fixture
async def signed(tmp_path: Path, prefix: str) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
    async with running_helpdesk(url, prefix, verify_token=TOKEN, app_secret=SECRET) as harness:
        yield harness


async def nothing_recorded(hd: Harness) -> None:
    stats = await hd.api("/stats")
    assert stats["total"] == 0
    assert await hd.api("/active") == []
    assert hd.sender.count == 0


async def test_verification_echoes_the_challenge(hd: Harness) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    response = await hd.client.get("/webhook", params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ],
)
async def test_verification_refuses_a_wrong_token(hd: Harness, params: dict[str, str]) -> None:
    response = await hd.client.get("/webhook", params=params)
    assert response.status_code == 403
    assert "1" not in response.text


async def test_token_and_secret_come_from_the_environment(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", "from-env")
    monkeypatch.setenv("WHATSAPP_APP_SECRET", SECRET)
    url = f"sqlite+aiosqlite:///{tmp_path / 'env.db'}"
    async with running_helpdesk(url, prefix) as hd:
        ok = await hd.client.get(
            "/webhook",
            params={"hub.mode": "subscribe", "hub.verify_token": "from-env", "hub.challenge": "42"},
        )
        assert (ok.status_code, ok.text) == (200, "42")
        note = wa.messages(ANN, "Ann Lee", wa.text(ANN, "hi"))
        assert (await hd.post(note)).status_code == 401
        assert (await hd.post(note, secret=SECRET)).status_code == 200


async def test_without_a_verify_token_verification_is_refused(tmp_path: Path, prefix: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    async with running_helpdesk(url, prefix) as hd:
        response = await hd.client.get(
            "/webhook",
            params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"},
        )
        assert response.status_code == 403


async def test_a_signed_notification_is_accepted(signed: Harness) -> None:
    response = await signed.post(wa.messages(ANN, "Ann Lee", wa.text(ANN, "hi")), secret=SECRET)
    assert response.status_code == 200
    [s] = await signed.sessions()
    assert (s["status"], s["currentNodeId"]) == ("waiting_input", "menu")


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "sha256=" + "0" * 64,
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "garbage",
    ],
)
async def test_a_bad_signature_is_401_and_changes_nothing(
    signed: Harness, signature: str | None
) -> None:
    response = await signed.post(
        wa.messages(ANN, "Ann Lee", wa.text(ANN, "hi")), signature=signature
    )
    assert response.status_code == 401
    await nothing_recorded(signed)


def test_a_signature_header_that_is_not_ascii_is_simply_wrong() -> None:
    from examples.helpdesk.whatsapp import verify_signature

    assert verify_signature(b"{}", "sha256=" + "é" * 64, SECRET) is False
    assert verify_signature(b"{}", sign(b"{}", SECRET), SECRET) is True


async def test_a_signature_over_other_bytes_is_401(signed: Harness) -> None:
    body = json.dumps(wa.messages(ANN, "Ann Lee", wa.text(ANN, "hi"))).encode()
    tampered = body.replace(b'"hi"', b'"ho"')
    response = await signed.post(tampered, signature=sign(body, SECRET))
    assert response.status_code == 401
    await nothing_recorded(signed)


def _broken(note: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    target: Any = note
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return note


MSG = ["entry", 0, "changes", 0, "value", "messages", 0]
MALFORMED = {
    "not json": b"{not json",
    "json array": b"[]",
    "wrong object": _broken(wa.messages(ANN, "A", wa.text(ANN, "hi")), ["object"], "page"),
    "no entry": _broken(wa.messages(ANN, "A", wa.text(ANN, "hi")), ["entry"], KeyError),
    "entry not a list": _broken(wa.messages(ANN, "A", wa.text(ANN, "hi")), ["entry"], {}),
    "changes missing": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")), ["entry", 0, "changes"], KeyError
    ),
    "value not an object": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")), ["entry", 0, "changes", 0, "value"], "x"
    ),
    "messages not a list": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")), MSG[:-1], {"id": "x"}
    ),
    "message without id": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")), [*MSG, "id"], KeyError
    ),
    "message without from": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")), [*MSG, "from"], KeyError
    ),
    "text without body": _broken(wa.messages(ANN, "A", wa.text(ANN, "hi")), [*MSG, "text"], {}),
    "button reply without id": _broken(
        wa.messages(ANN, "A", wa.button_reply(ANN, "x", "X")),
        [*MSG, "interactive", "button_reply", "id"],
        KeyError,
    ),
    "nfm_reply not json": _broken(
        wa.messages(ANN, "A", wa.nfm_reply(ANN, {})),
        [*MSG, "interactive", "nfm_reply", "response_json"],
        "{oops",
    ),
    "unknown interactive": _broken(
        wa.messages(ANN, "A", wa.button_reply(ANN, "x", "X")),
        [*MSG, "interactive", "type"],
        "carousel_reply",
    ),
    "change not an object": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")), ["entry", 0, "changes", 0], "x"
    ),
    "contact not an object": _broken(
        wa.messages(ANN, "A", wa.text(ANN, "hi")),
        ["entry", 0, "changes", 0, "value", "contacts"],
        ["x"],
    ),
    "button title not a string": _broken(
        wa.messages(ANN, "A", wa.button_reply(ANN, "x", "X")),
        [*MSG, "interactive", "button_reply", "title"],
        [1],
    ),
    # a good message followed by a bad one: nothing of either is handled
    "second message bad": wa.messages(ANN, "A", wa.text(ANN, "hi"), {"from": ANN, "type": "text"}),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_notification_is_400_and_changes_nothing(
    hd: Harness, body: dict[str, Any] | bytes
) -> None:
    response = await hd.post(body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed notification"
    await nothing_recorded(hd)


async def test_status_callbacks_are_ignored(hd: Harness) -> None:
    ann = hd.customer(ANN)
    await ann.say("hi")
    before = await ann.current()
    for state in ("sent", "delivered", "read"):
        last = hd.sender.last(ANN)
        assert last is not None
        response = await hd.post(wa.status(ANN, last.id, state))
        assert response.status_code == 200
        assert response.json() == {"received": 0, "handled": 0}
    after = await ann.current()
    assert after["messageCount"] == before["messageCount"]
    assert after["updatedAt"] == before["updatedAt"]


async def test_a_notification_without_messages_is_fine(hd: Harness) -> None:
    note = wa.notification(
        {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": wa.BUSINESS_NUMBER,
                "phone_number_id": wa.PHONE_NUMBER_ID,
            },
        }
    )
    response = await hd.post(note)
    assert (response.status_code, response.json()) == (200, {"received": 0, "handled": 0})
    other_field = wa.messages(ANN, "Ann", wa.text(ANN, "hi"))
    other_field["entry"][0]["changes"][0]["field"] = "account_update"
    assert (await hd.post(other_field)).json() == {"received": 0, "handled": 0}
    await nothing_recorded(hd)


async def test_a_repeated_message_id_is_handled_once(hd: Harness) -> None:
    ann = hd.customer(ANN)
    hi = wa.text(ANN, "hi")
    assert await ann.send(hi) == {"received": 1, "handled": 1}
    replies = hd.sender.count
    assert await ann.send(hi) == {"received": 1, "handled": 0}  # Meta retried
    tap = wa.button_reply(ANN, "order", "Order status")
    assert await ann.send(tap, tap) == {"received": 2, "handled": 1}  # twice in one batch
    s = await ann.current()
    assert [m["text"] for m in s["messages"] if m["direction"] == "inbound"] == [
        "hi",
        "Order status",
    ]
    assert s["currentNodeId"] == "ask_order"
    assert hd.sender.count == replies + 1  # the order-number question, once


async def test_a_retry_of_the_last_message_does_not_start_a_new_session(hd: Harness) -> None:
    ann = hd.customer(ANN)
    await ann.say("hi")
    bye = wa.button_reply(ANN, "agent", "Talk to an agent")
    assert await ann.send(bye) == {"received": 1, "handled": 1}
    assert await ann.send(bye) == {"received": 1, "handled": 0}
    [s] = await ann.all_sessions()
    assert s["status"] == "completed"


async def test_several_messages_in_one_notification_run_in_order(hd: Harness) -> None:
    note = wa.messages(
        ANN,
        "Ann Lee",
        wa.text(ANN, "hi"),
        wa.button_reply(ANN, "order", "Order status"),
        wa.text(ANN, "A-1004"),
    )
    assert (await hd.post(note)).json() == {"received": 3, "handled": 3}
    s = await hd.customer(ANN).current()
    assert s["currentNodeId"] == "anything_else"
    assert s["variables"]["order"]["status"] == "waiting for payment"


async def test_a_template_quick_reply_button_picks_an_option(hd: Harness) -> None:
    ann = hd.customer(ANN)
    await ann.say("hi")
    await ann.send(wa.quick_reply(ANN, "agent", "Talk to an agent"))
    [s] = await ann.all_sessions()
    detail = await hd.session(s["id"])
    assert (detail["status"], detail["completionReason"]) == ("completed", "handoff")
    tapped = [m for m in detail["messages"] if m["direction"] == "inbound"][-1]
    assert (tapped["type"], tapped["text"], tapped["payload"]) == (
        "button",
        "Talk to an agent",
        {"id": "agent", "title": "Talk to an agent"},
    )


async def test_contact_name_and_phone_come_from_the_notification(hd: Harness) -> None:
    await hd.customer("447700900123", "Zoë O'Brien").say("hello")
    await hd.customer("5511912345678", None).say("oi")
    found = {s["conversationId"]: s for s in await hd.sessions()}
    assert found["447700900123"]["customerName"] == "Zoë O'Brien"
    assert found["447700900123"]["customerPhone"] == "+447700900123"
    assert found["5511912345678"]["customerName"] is None
    assert found["5511912345678"]["customerPhone"] == "+5511912345678"
    search = await hd.api("/", search="zoë")
    assert [s["conversationId"] for s in search["data"]] == ["447700900123"]


async def test_root_redirects_to_the_dashboard(hd: Harness) -> None:
    response = await hd.client.get("/")
    assert response.status_code in (302, 307)
    assert response.headers["location"].endswith(f"{MOUNT}/ui/")
    assert (await hd.client.get(f"{MOUNT}/ui/")).status_code == 200
    chatbots = await hd.api("/chatbots")
    assert {"id": "helpdesk", "name": "Acme Help Desk"} in chatbots


# --- issue 10: a notification's size is limited before it is read ----------------------


def webhook_head(url: str, *lines: str) -> str:
    return "\n".join(
        [
            "POST /webhook HTTP/1.1",
            f"Host: {url.removeprefix('http://')}",
            "Content-Type: application/json",
            f"X-Hub-Signature-256: {sign(b'{}', SECRET)}",
            *lines,
            "",
        ]
    )


async def test_a_huge_declared_body_is_413_before_it_is_read(signed: Harness) -> None:
    async with serve(signed.helpdesk.app) as url:
        for length in (200_000_000, WEBHOOK_MAX_BODY + 1):
            # Nothing but the head is sent: only an answer given without reading can come.
            answer = await raw_request(url, webhook_head(url, f"Content-Length: {length}"))
            assert answer.status == 413 and answer.closed, length
    await nothing_recorded(signed)


async def test_a_chunked_body_is_413_once_it_passes_the_limit(signed: Harness) -> None:
    async with serve(signed.helpdesk.app) as url:
        head = webhook_head(url, "Transfer-Encoding: chunked")
        piece = b" " * (1024 * 1024)
        over = [chunked(piece)] * 3 + [chunked(b" ")]  # the limit and one byte; never ended
        answer = await raw_request(url, head, over)
        assert answer.status == 413 and answer.closed
    await nothing_recorded(signed)


async def test_a_chunked_signed_notification_within_the_limit_is_handled(signed: Harness) -> None:
    body = json.dumps(wa.messages(ANN, "Ann Lee", wa.text(ANN, "hi"))).encode()
    async with serve(signed.helpdesk.app) as url:
        head = "\n".join(
            [
                "POST /webhook HTTP/1.1",
                f"Host: {url.removeprefix('http://')}",
                "Content-Type: application/json",
                f"X-Hub-Signature-256: {sign(body, SECRET)}",
                "Transfer-Encoding: chunked",
                "",
            ]
        )
        halves = [chunked(body[:10]), chunked(body[10:]), b"0\r\n\r\n"]
        answer = await raw_request(url, head, halves)
        assert answer.status == 200, answer.body
        assert json.loads(answer.body) == {"received": 1, "handled": 1}
    [session] = await signed.sessions()
    assert session["conversationId"] == ANN
