"""``GET /search/messages``: message search, from ``tracker.sessions.search_messages``.

Like :mod:`.rest`, it only translates: the query string is checked against its model (an
unknown or malformed parameter is a 400 naming it), the query service checks the rest and
keeps a principal to its chatbots.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from . import schemas
from .rest import _begin, _Json, _model


async def search_messages(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.SearchMessagesQuery.from_query_string(request.scope["query_string"])
    page = await ctx.tracker.sessions.search_messages(
        q.q, chatbot_id=q.chatbot_id, limit=q.limit, cursor=q.cursor, principal=principal
    )
    return _Json(_model(schemas.MessageSearchPage, page))
