"""``/webhooks``: managing webhook subscriptions (``sessiontrack.notify``).

Only principals with ``can_manage`` (403 otherwise; the local principal of an app without
an authenticator has it not). A secret is returned once, by the POST that creates it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import InvalidParameter
from ..models import Principal
from ..notify._delivery import Webhooks
from ..notify._models import CreatedWebhook, Webhook, to_json
from ..notify._service import WebhookService
from ._context import Context, context_of
from ._errors import json_object, not_json

_FIELDS = {
    "url": "url",
    "events": "events",
    "chatbotIds": "chatbot_ids",
    "secret": "secret",
    "batch": "batch",
    "description": "description",
}


async def webhook_json(service: WebhookService, hook: Webhook) -> dict[str, Any]:
    return to_json(hook, lag=await service.lag(hook))


async def _begin(request: Request) -> tuple[Context, Principal, WebhookService]:
    ctx = context_of(request)
    ctx.require_tracker()
    principal = await ctx.principal(request, "http")
    return ctx, principal, WebhookService(ctx.tracker.store)


def _refresh(ctx: Context) -> None:
    for group in ctx.tracker.consumers:
        if isinstance(group, Webhooks):
            group.refresh()


def _id(request: Request) -> str:
    return str(request.path_params["webhook_id"])


async def list_webhooks(request: Request) -> Response:
    _, principal, service = await _begin(request)
    hooks = await service.list(principal=principal)
    return JSONResponse([await webhook_json(service, h) for h in hooks])


async def create_webhook(request: Request) -> Response:
    ctx, principal, service = await _begin(request)
    refused = not_json(request)
    if refused is not None:
        return refused
    body = await json_object(request)
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise InvalidParameter(unknown[0], f"unknown field; known: {', '.join(_FIELDS)}")
    if "url" not in body:
        raise InvalidParameter("url", "required")
    kwargs = {_FIELDS[k]: v for k, v in body.items() if v is not None or k == "url"}
    created: CreatedWebhook = await service.create(**kwargs, principal=principal)
    _refresh(ctx)
    answer = {**await webhook_json(service, created.webhook), "secret": created.secret}
    return JSONResponse(answer, status_code=201)


async def get_webhook(request: Request) -> Response:
    _, principal, service = await _begin(request)
    hook = await service.get(_id(request), principal=principal)
    return JSONResponse(await webhook_json(service, hook))


async def delete_webhook(request: Request) -> Response:
    ctx, principal, service = await _begin(request)
    await service.remove(_id(request), principal=principal)
    _refresh(ctx)
    return Response(status_code=204)


async def resume_webhook(request: Request) -> Response:
    ctx, principal, service = await _begin(request)
    hook = await service.resume(_id(request), principal=principal)
    _refresh(ctx)
    return JSONResponse(await webhook_json(service, hook))


async def webhook_deliveries(request: Request) -> Response:
    _, principal, service = await _begin(request)
    values = request.query_params.getlist("limit")
    unknown = sorted(set(request.query_params) - {"limit"})
    if unknown:
        raise InvalidParameter(unknown[0], "unknown parameter")
    if len(values) > 1:
        raise InvalidParameter("limit", "must be given at most once")
    limit = 50
    if values:
        if not values[0].isdigit():
            raise InvalidParameter("limit", "must be an integer from 1 to 1000")
        limit = int(values[0])
    items = await service.deliveries(_id(request), limit=limit, principal=principal)
    return JSONResponse([to_json(d) for d in items])
