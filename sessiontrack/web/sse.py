"""``GET /events``: committed events as Server-Sent Events.

Each frame carries ``event:`` (the socket event name), ``id:`` (the sequence number) and
``data:`` (the socket payload). A reconnecting client sends ``Last-Event-ID`` (or
``?lastEventId=``) and resumes right after it, read from the log: nothing is lost or
repeated. The stream opens with a ``retry:`` line and a ``: connected`` comment once the
subscription is live, sends ``: keep-alive`` comments when idle, and ends by itself after
``sse_max_age`` seconds (clients reconnect and resume) so server shutdowns never wait long.

A reader that stops reading holds a bounded amount: the subscription's queue (it then
catches up from the log, losing nothing), one write of at most ``_BATCH`` frames, and the
transport's buffer (uvicorn pauses the stream at its high-water mark).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import InvalidParameter
from ..models import Principal
from ..tracker import Tracker
from . import schemas
from ._context import Context, context_of
from ._wire import SSEEncoder

_BATCH = 200


def _last_event_id(request: Request, query: schemas.EventsQuery) -> int | None:
    header = request.headers.get("last-event-id")
    if header is None:
        return query.last_event_id
    # isdigit() alone admits "²" and other Unicode digits, which int() then refuses.
    if not (header.isascii() and header.isdigit()) or len(header) > 18:
        raise InvalidParameter("Last-Event-ID", "must be a sequence number this stream sent")
    return int(header)


async def events(request: Request) -> Response:
    ctx = context_of(request)
    tracker = ctx.require_tracker()
    query = schemas.EventsQuery.from_query_string(request.scope["query_string"])
    principal = await ctx.principal(request, "sse", token=query.access_token)
    after = _last_event_id(request, query)
    session_id = query.session_id.lower() if query.session_id else None
    if session_id is not None:
        await tracker.sessions.messages(session_id, limit=1, principal=principal)
    stream = _stream(ctx, tracker, principal, after, session_id)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    ctx: Context, tracker: Tracker, principal: Principal, after: int | None, session_id: str | None
) -> AsyncIterator[bytes]:
    masked = ctx.masks(principal)
    encoder: SSEEncoder = ctx.sse_encoder
    deadline = None if ctx.sse_max_age is None else time.monotonic() + ctx.sse_max_age
    async with tracker.subscribe(after=after, session_id=session_id) as sub:
        yield b"retry: 2000\n: connected\n\n"
        it = aiter(sub)
        while tracker.running and (deadline is None or time.monotonic() < deadline):
            wait = (
                ctx.keepalive
                if deadline is None
                else min(ctx.keepalive, max(deadline - time.monotonic(), 0.0))
            )
            chunks = []
            with anyio.move_on_after(wait):
                try:
                    chunks.append(await anext(it))
                except StopAsyncIteration:  # the tracker closed
                    return
            if not chunks:
                yield b": keep-alive\n\n"
                continue
            # Take what is already queued without waiting: one write for a burst.
            while len(chunks) < _BATCH and (more := sub.get_nowait()) is not None:
                chunks.append(more)
            frames = [encoder.frame(e, masked) for e in chunks if principal.may_see(e.chatbot_id)]
            if frames:
                yield b"".join(frames)
