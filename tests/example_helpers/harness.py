"""The example host app running in-process, and customers that talk to it.

The app's lifespan is entered as uvicorn would; requests go through
``httpx.ASGITransport``; everything is checked through the mounted REST API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from examples.helpdesk.app import MOUNT, Helpdesk, create_helpdesk
from examples.helpdesk.sender import RecordingSender
from examples.helpdesk.whatsapp import sign

from . import payloads as wa


@dataclass
class Harness:
    helpdesk: Helpdesk
    client: httpx.AsyncClient

    @property
    def sender(self) -> RecordingSender:
        assert isinstance(self.helpdesk.sender, RecordingSender)
        return self.helpdesk.sender

    async def post(
        self,
        note: Mapping[str, Any] | bytes,
        *,
        secret: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        body = note if isinstance(note, bytes) else json.dumps(note).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Hub-Signature-256"] = sign(body, secret)
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return await self.client.post("/webhook", content=body, headers=headers)

    async def api(self, path: str = "/", **params: Any) -> Any:
        response = await self.client.get(MOUNT + path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def session(self, session_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = await self.api(f"/{session_id}")
        return detail

    async def sessions(self, **params: Any) -> list[dict[str, Any]]:
        page = await self.api("/", limit=100, **params)
        data: list[dict[str, Any]] = page["data"]
        return data

    async def stop(self, session_id: str) -> httpx.Response:
        return await self.client.post(f"{MOUNT}/{session_id}/stop")

    def customer(self, wa_id: str, name: str | None = "Ann Lee") -> Customer:
        return Customer(self, wa_id, name)

    async def wait_for(self, session_id: str, status: str) -> dict[str, Any]:
        """Poll the REST API until the session has ``status`` (10 s at the most)."""
        with anyio.fail_after(10):
            while True:
                detail = await self.session(session_id)
                if detail["status"] == status:
                    return detail
                await anyio.sleep(0.05)


class Customer:
    """A WhatsApp user: every action is one webhook notification, answered 200."""

    def __init__(self, harness: Harness, wa_id: str, name: str | None) -> None:
        self.h, self.wa_id, self.name = harness, wa_id, name

    async def send(self, *msgs: dict[str, Any]) -> dict[str, Any]:
        response = await self.h.post(wa.messages(self.wa_id, self.name, *msgs))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def say(self, body: str, mid: str | None = None) -> dict[str, Any]:
        return await self.send(wa.text(self.wa_id, body, mid))

    async def tap(self, button_id: str) -> dict[str, Any]:
        """Tap a reply button of the bot's last message (its title as WhatsApp sends it)."""
        buttons = self.last()["interactive"]["action"]["buttons"]
        title = next(b["reply"]["title"] for b in buttons if b["reply"]["id"] == button_id)
        return await self.send(wa.button_reply(self.wa_id, button_id, title))

    async def pick(self, row_id: str) -> dict[str, Any]:
        """Pick a row of the list the bot sent last."""
        sections = self.last()["interactive"]["action"]["sections"]
        row = next(r for s in sections for r in s["rows"] if r["id"] == row_id)
        return await self.send(
            wa.list_reply(self.wa_id, row_id, row["title"], row.get("description", ""))
        )

    async def submit(self, answers: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        """Complete the WhatsApp Flow the bot sent last."""
        params = self.last()["interactive"]["action"]["parameters"]
        response = {"flow_token": token or params["flow_token"], **answers}
        return await self.send(wa.nfm_reply(self.wa_id, response))

    def last(self) -> dict[str, Any]:
        """The Cloud API body of the bot's last message to this customer."""
        sent = self.h.sender.last(self.wa_id)
        assert sent is not None, "the bot has said nothing"
        return sent.body

    async def current(self) -> dict[str, Any]:
        """This customer's active session, in full, through the REST API."""
        found = await self.h.sessions(conversationId=self.wa_id, filter="active")
        assert len(found) == 1, found
        return await self.h.session(found[0]["id"])

    async def all_sessions(self) -> list[dict[str, Any]]:
        return await self.h.sessions(conversationId=self.wa_id, sortOrder="ASC")


@asynccontextmanager
async def running_helpdesk(
    database_url: str,
    prefix: str,
    *,
    tracker_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Harness]:
    """The helpdesk on ``database_url`` (tables under ``prefix``), lifespan entered."""
    options = {"prefix": prefix, "migrate": True, "poll_interval": 0.05, **(tracker_options or {})}
    helpdesk = create_helpdesk(database_url, tracker_options=options, **kwargs)
    async with helpdesk.app.router.lifespan_context(helpdesk.app):
        transport = httpx.ASGITransport(app=helpdesk.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield Harness(helpdesk, c)
