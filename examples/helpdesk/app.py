"""The host app: Starlette, a WhatsApp webhook, the flow engine, and sessiontrack mounted.

The host enters the tracker in its own lifespan (a mounted sub-app gets no lifespan
events), mounts the sessiontrack sub-app at ``/api/chatbot-sessions`` and sends ``/`` to
its dashboard.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pluggy
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

import sessiontrack
from sessiontrack.web import BodyLimit, create_app

from .engine import ActiveSession, FlowEngine, SavedState, Sender
from .flow import Flow
from .sender import RecordingSender
from .whatsapp import MalformedPayload, parse_notification, verify_signature

log = logging.getLogger(__name__)

FLOW_PATH = Path(__file__).with_name("flow.json")
MOUNT = "/api/chatbot-sessions"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///helpdesk.db"
WEBHOOK_MAX_BODY = 3 * 1024 * 1024
"""Meta documents webhook notifications of up to 3 MB: anything larger is refused with 413
before it is read (a declared ``Content-Length``) or once it passes the limit (chunked),
so an unsigned flood never sits in memory waiting for its signature check."""

ORDERS: dict[str, dict[str, str]] = {
    "A-1001": {"status": "on its way", "detail": "It should arrive tomorrow."},
    "A-1002": {"status": "being packed", "detail": "It ships within two days."},
    "A-1003": {"status": "delivered", "detail": "It was left at the front door on Monday."},
    "A-1004": {"status": "waiting for payment", "detail": "Check your email for the link."},
}
"""The demo's order book: order numbers the lookup finds."""


class TrackerSessions:
    """The engine's :class:`~.engine.SessionLookup`, answered by ``tracker.sessions``."""

    def __init__(self, tracker: sessiontrack.Tracker) -> None:
        self.tracker = tracker

    async def find_active(self, chatbot_id: str, conversation_id: str) -> ActiveSession | None:
        await self.tracker.flush()  # everything this process reported is visible
        page = await self.tracker.sessions.list(
            chatbot_id=chatbot_id, conversation_id=conversation_id, filter="active", limit=1
        )
        if not page.data:
            return None
        s = page.data[0]
        return ActiveSession(s.id, s.status, s.current_node_id)

    async def restore(self, session_id: str) -> SavedState:
        detail = await self.tracker.sessions.get(session_id, message_limit=100)
        seen = {m.channel_message_id for m in detail.messages if m.channel_message_id}
        return SavedState(dict(detail.variables), seen)


def find_order(key: str) -> dict[str, str] | None:
    """Order lookup: ``a1001``, ``A 1001`` and ``A-1001`` all find ``A-1001``."""
    match = re.fullmatch(r"\s*([a-zA-Z])\s*-?\s*(\d{4})\s*", key)
    number = f"{match.group(1).upper()}-{match.group(2)}" if match else key
    order = ORDERS.get(number)
    return {"number": number, **order} if order else None


_tickets = itertools.count(4001)


def new_ticket(topic: str) -> str:
    return f"T-{next(_tickets)}"


@dataclass
class Helpdesk:
    """The wired host app: ``app`` is the ASGI app to serve."""

    app: Starlette
    tracker: sessiontrack.Tracker
    engine: FlowEngine
    sender: Sender
    verify_token: str | None
    app_secret: str | None


def create_helpdesk(
    database_url: str = DEFAULT_DATABASE_URL,
    *,
    sender: Sender | None = None,
    verify_token: str | None = None,
    app_secret: str | None = None,
    flow: Flow | None = None,
    tracker_options: Mapping[str, Any] | None = None,
    webhook_max_body: int = WEBHOOK_MAX_BODY,
) -> Helpdesk:
    """Build the host app. ``verify_token`` and ``app_secret`` default to the environment
    variables ``WHATSAPP_VERIFY_TOKEN`` and ``WHATSAPP_APP_SECRET``; ``tracker_options`` go
    to :class:`sessiontrack.Tracker` (the demo uses a short ``idle_timeout``);
    ``webhook_max_body`` bounds a notification's size in bytes (413 above it)."""
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    options: dict[str, Any] = {"idle_timeout": timedelta(minutes=30), **(tracker_options or {})}
    tracker = sessiontrack.Tracker(database_url, plugin_manager=pm, **options)
    sender = sender or RecordingSender()
    engine = FlowEngine(
        pm.hook,
        flow or Flow.load(FLOW_PATH),
        sender,
        TrackerSessions(tracker),
        new_id=sessiontrack.new_session_id,
        lookups={"orders": find_order, "new_ticket": new_ticket},
    )
    pm.register(engine)
    verify_token = verify_token or os.environ.get("WHATSAPP_VERIFY_TOKEN") or None
    app_secret = app_secret or os.environ.get("WHATSAPP_APP_SECRET") or None
    if app_secret is None:
        log.warning(
            "WHATSAPP_APP_SECRET is not set: the webhook accepts unsigned posts "
            "(fine for the local demo; set it before exposing /webhook)"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with tracker:
            engine.register_flow()
            await tracker.flush()
            yield

    async def verify(request: Request) -> Response:
        q = request.query_params
        token, challenge = q.get("hub.verify_token") or "", q.get("hub.challenge")
        if (
            q.get("hub.mode") == "subscribe"
            and verify_token
            and challenge
            and hmac.compare_digest(token.encode(), verify_token.encode())
        ):
            return PlainTextResponse(challenge)
        return PlainTextResponse("verification failed", status_code=403)

    async def receive(request: Request) -> Response:
        body = await request.body()  # at most webhook_max_body: BodyLimit read it already
        if app_secret and not verify_signature(
            body, request.headers.get("x-hub-signature-256"), app_secret
        ):
            return JSONResponse({"error": "invalid X-Hub-Signature-256"}, status_code=401)
        try:
            messages = parse_notification(body)
        except MalformedPayload as exc:
            return JSONResponse(
                {"error": "malformed notification", "detail": str(exc)}, status_code=400
            )
        handled = 0
        for msg in messages:
            handled += await engine.handle(msg)
        await tracker.flush()  # durable before the 200: a crash before it means a retry
        return JSONResponse({"received": len(messages), "handled": handled})

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{MOUNT}/ui/")

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", home),
            Route("/webhook", verify, methods=["GET"]),
            Route(
                "/webhook",
                receive,
                methods=["POST"],
                middleware=[Middleware(BodyLimit, max_body=webhook_max_body)],
            ),
            Mount(MOUNT, app=create_app(tracker)),
        ],
    )
    return Helpdesk(app, tracker, engine, sender, verify_token, app_secret)
