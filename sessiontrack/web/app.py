"""``create_app``: the mountable Starlette sub-app."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import socketio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..tracker import Tracker
from . import alerts, analytics, export, fixture, rest, search, sse, webhooks
from ._context import Context, context_of
from ._errors import EXCEPTION_HANDLERS
from .auth import Authenticator
from .bodylimit import DEFAULT_MAX_BODY, BodyLimit, checked_max_body
from .openapi import build_document, with_servers
from .socket import NAMESPACE, QUEUE_LIMIT, Gateway

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


async def openapi_json(request: Request) -> Response:
    doc = request.app.state.openapi
    if doc is None:  # built on the first request: most apps never serve it
        doc = request.app.state.openapi = build_document(secured=request.app.state.secured)
    return JSONResponse(with_servers(doc, request.scope.get("root_path", "")))


async def _ui_redirect(request: Request) -> Response:
    # Relative, so it stays right behind proxies that rewrite the prefix.
    return RedirectResponse("ui/", status_code=308)


def create_app(
    tracker: Tracker,
    *,
    authenticate: Authenticator | None = None,
    cors_allowed_origins: str | Sequence[str] | None = None,
    keepalive: float = 15.0,
    sse_max_age: float | None = 300.0,
    max_body: int = DEFAULT_MAX_BODY,
    socket_queue_limit: int = QUEUE_LIMIT,
    static_dir: str | Path | None = None,
    debug: bool = False,
) -> Starlette:
    """The sub-app serving ``tracker``: REST API (with flow analytics under
    ``/analytics/``), ``/openapi.json``, SSE ``/events``,
    Socket.IO namespace ``/sessions`` at ``<prefix>/socket.io`` and the dashboard at
    ``/ui/``. Mount it under any prefix::

        app.mount("/api/chatbot-sessions", create_app(tracker, authenticate=my_auth))

    A mounted app receives no lifespan events: **the host enters the tracker in its own
    lifespan** (``async with tracker:``). Until it does, every route answers 503 and logs
    an error saying so.

    :param authenticate: called with an :class:`~sessiontrack.web.AuthRequest` for every
        request, SSE stream and socket connect; returns a ``Principal`` or ``None`` (401).
        Without it only loopback clients are served (and a warning is logged).
    :param cors_allowed_origins: origins allowed to open a Socket.IO connection from a
        browser on another origin (``None``: same origin only; ``"*"``: any).
    :param keepalive: seconds between SSE keep-alive comments on an idle stream.
    :param sse_max_age: an SSE stream ends after this many seconds and the client
        reconnects with ``Last-Event-ID`` (bounds how long a server shutdown waits);
        ``None`` for never.
    :param max_body: the largest request body, Socket.IO polling post or WebSocket
        message a client may send, in bytes (default 64 KiB, at least 1 KiB; of the
        sub-app's own POSTs only ``POST /stop`` has a body: 1,000 ids are about 40 KB).
        A larger declared ``Content-Length`` is refused with 413 before the body is
        read; a chunked body is refused with 413 once it passes the limit.
    :param socket_queue_limit: packets a Socket.IO connection may have queued; a client
        past it is told where to resume (``sessions:overflow``) and disconnected.
    :param static_dir: serve another dashboard build at ``/ui/`` (default: the bundled one).

    The Socket.IO gateway (who is online, subscriber counts) is ``app.state.gateway``.
    """
    if checked_max_body(max_body) < 1024:
        raise ValueError(
            f"max_body must be at least 1024 bytes (room for Socket.IO), got {max_body}"
        )
    if authenticate is None:
        log.warning(
            "sessiontrack web app created without an authenticator: only loopback "
            "clients (127.0.0.1, ::1) are served; pass authenticate= to serve others"
        )
    ctx = Context(
        tracker=tracker, authenticator=authenticate, keepalive=keepalive, sse_max_age=sse_max_age
    )
    # None is Engine.IO's same-origin check; an empty list would switch the check off.
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=cors_allowed_origins,
        logger=False,
        engineio_logger=False,
        max_http_buffer_size=max_body,
        namespaces=[NAMESPACE],  # not the default "/": no socket stays unauthenticated
    )
    gateway = Gateway(ctx, queue_limit=socket_queue_limit)
    sio.register_namespace(gateway)
    ctx.gateway = gateway
    routes: list[BaseRoute] = [
        Route("/", rest.list_sessions, methods=["GET"]),
        Route("/active", rest.active_sessions, methods=["GET"]),
        Route("/stats", rest.stats, methods=["GET"]),
        Route("/chatbots", rest.chatbots, methods=["GET"]),
        Route("/stop", rest.stop_many, methods=["POST"]),
        Route("/erase", rest.erase, methods=["POST"]),
        Route("/audit", rest.audit, methods=["GET"]),
        Route("/export", export.export, methods=["GET"]),
        Route("/events", sse.events, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/chatbot/{chatbot_id}", rest.chatbot_sessions, methods=["GET"]),
        Route("/analytics/summary", analytics.summary, methods=["GET"]),
        Route("/analytics/nodes", analytics.nodes, methods=["GET"]),
        Route("/analytics/paths", analytics.paths, methods=["GET"]),
        Route("/analytics/funnel", analytics.funnel, methods=["GET"]),
        Route("/analytics/versions", analytics.versions, methods=["GET"]),
        Route("/search/messages", search.search_messages, methods=["GET"]),
        Route("/webhooks", webhooks.list_webhooks, methods=["GET"]),
        Route("/webhooks", webhooks.create_webhook, methods=["POST"]),
        Route("/webhooks/{webhook_id}", webhooks.get_webhook, methods=["GET"]),
        Route("/webhooks/{webhook_id}", webhooks.delete_webhook, methods=["DELETE"]),
        Route("/webhooks/{webhook_id}/resume", webhooks.resume_webhook, methods=["POST"]),
        Route("/webhooks/{webhook_id}/deliveries", webhooks.webhook_deliveries, methods=["GET"]),
        Route("/alerts", alerts.list_alerts, methods=["GET"]),
        Route("/alerts/rules", alerts.list_rules, methods=["GET"]),
        Route("/alerts/rules", alerts.create_rule, methods=["POST"]),
        Route("/alerts/rules/{rule_id}", alerts.delete_rule, methods=["DELETE"]),
        Mount("/socket.io", app=socketio.ASGIApp(sio, socketio_path=None)),
        Route("/ui", _ui_redirect, methods=["GET", "HEAD"]),
        Mount(
            "/ui",
            name="ui",
            app=StaticFiles(directory=static_dir or STATIC_DIR, html=True, check_dir=False),
        ),
        Route("/{session_id}", rest.get_session, methods=["GET"]),
        Route("/{session_id}/messages", rest.session_messages, methods=["GET"]),
        Route("/{session_id}/fixture", fixture.session_fixture_route, methods=["GET"]),
        Route("/{session_id}/stop", rest.stop_session, methods=["POST"]),
    ]
    app = Starlette(
        debug=debug,
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(BodyLimit, max_body=max_body)],
    )
    app.state.sessiontrack = ctx
    app.state.gateway = gateway
    app.state.sio = sio
    app.state.secured = authenticate is not None
    app.state.openapi = None  # built by the first GET /openapi.json
    return app


def gateway_of(app: Any) -> Gateway:
    """The Socket.IO gateway of an app made by :func:`create_app`."""
    gateway: Gateway = app.state.gateway
    return gateway


__all__ = ["context_of", "create_app", "gateway_of"]
