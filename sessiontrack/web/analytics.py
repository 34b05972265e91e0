"""``GET /analytics/*``: flow analytics of one chatbot, from ``tracker.analytics``.

Like :mod:`.rest`, these only translate: the query string is checked against its model
(an unknown or malformed parameter is a 400 naming it), the service checks the rest
(ranges, time zones, who may see the chatbot) and answers with plain JSON-ready dicts,
served as they are or, with ``format=csv``, as CSV.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..analytics._csv import REPORTS
from ..analytics._service import Analytics
from ..tracker import Tracker
from . import schemas
from .rest import _begin, _Json

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _Csv(Response):
    media_type = "text/csv"
    charset = "utf-8"


def _filename(answer: dict[str, Any], report: str) -> str:
    """``analytics-<chatbot>-<report>-<first day>-<end day>.csv``, ASCII only."""
    bot = _UNSAFE.sub("_", answer["chatbotId"])[:60].strip("._") or "chatbot"
    days = f"{str(answer['startDate'])[:10]}_{str(answer['endDate'])[:10]}"
    return f"analytics-{bot}-{report}-{days}.csv"


def _service(tracker: Tracker) -> Analytics:
    return tracker.analytics


def _range(q: schemas.AnalyticsQuery) -> dict[str, Any]:
    return {
        "version": q.version,
        "start_date": q.start_date,
        "end_date": q.end_date,
        "tz": q.tz,
    }


def _answer(report: str, answer: dict[str, Any], q: schemas.AnalyticsQuery) -> Response:
    if q.format == "json":
        return _Json(answer)
    disposition = f'attachment; filename="{_filename(answer, report)}"'
    return _Csv(REPORTS[report](answer), headers={"Content-Disposition": disposition})


async def summary(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.AnalyticsQuery.from_query_string(request.scope["query_string"])
    answer = await _service(ctx.tracker).summary(q.chatbot_id, **_range(q), principal=principal)
    return _answer("summary", answer, q)


async def nodes(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.AnalyticsQuery.from_query_string(request.scope["query_string"])
    answer = await _service(ctx.tracker).nodes(q.chatbot_id, **_range(q), principal=principal)
    return _answer("nodes", answer, q)


async def paths(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.PathsQuery.from_query_string(request.scope["query_string"])
    answer = await _service(ctx.tracker).paths(
        q.chatbot_id, **_range(q), limit=q.limit, principal=principal
    )
    return _answer("paths", answer, q)


async def funnel(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.FunnelQuery.from_query_string(request.scope["query_string"])
    answer = await _service(ctx.tracker).funnel(
        q.chatbot_id, **_range(q), steps=q.steps.split(","), principal=principal
    )
    return _answer("funnel", answer, q)


async def versions(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.VersionsQuery.from_query_string(request.scope["query_string"])
    return _Json(await _service(ctx.tracker).versions(q.chatbot_id, principal=principal))
