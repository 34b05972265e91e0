"""``GET /export``: every session matching the list parameters, streamed as JSON Lines or
CSV by ``tracker.sessions.export`` (see docs/export.md).

The parameters are checked before the response starts (a bad one is a 400 naming it);
after that the body streams batch by batch, each batch's reads audited through the
``sessiontrack_session_read`` hook (``what="export"``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .._export import MEDIA_TYPES
from . import schemas
from ._context import Context
from .auth import mask_phone
from .rest import _begin


async def export(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    params = dict(schemas.ExportQuery.from_query_string(request.scope["query_string"]))
    for name in schemas.NOT_EXPORTED:
        del params[name]  # refused when given: only their defaults are left here
    fmt = params.pop("format")
    tracker = ctx.tracker

    async def audit(ids: list[str]) -> None:
        await tracker.session_read(ids, principal, "export")

    body = tracker.sessions.export(
        format=fmt,
        principal=principal,
        mask=mask_phone if Context.masks(principal) else None,
        on_batch=audit,
        metadata=False,  # as GET /{id}: the engine's free-form metadata is not served
        **params,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="sessions-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )
