"""``/alerts``: alert rules and recent alerts (``sessiontrack.notify``).

Only principals with ``can_manage`` (403 otherwise); one limited to some chatbots sees and
makes only rules limited to those chatbots, and sees only their alerts. The secrets of a
rule's webhook targets are returned once, by the POST that creates it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..models import Principal
from ..notify._alert_service import AlertService
from ..notify._alerting import Alerts
from ..notify._rules import rule_json
from . import schemas
from ._context import Context, context_of
from ._errors import json_object, not_json


def _alerts_group(ctx: Context) -> Alerts | None:
    for group in ctx.tracker.consumers:
        if isinstance(group, Alerts):
            return group
    return None


async def _begin(request: Request) -> tuple[Context, Principal, AlertService]:
    ctx = context_of(request)
    ctx.require_tracker()
    principal = await ctx.principal(request, "http")
    group = _alerts_group(ctx)
    url = group.dashboard_url if group is not None else None
    return ctx, principal, AlertService(ctx.tracker.store, dashboard_url=url)


def _refresh(ctx: Context) -> None:
    group = _alerts_group(ctx)
    if group is not None:
        group.refresh()


async def list_rules(request: Request) -> Response:
    _, principal, service = await _begin(request)
    rules = await service.list_rules(principal=principal)
    return JSONResponse([rule_json(r) for r in rules])


async def create_rule(request: Request) -> Response:
    ctx, principal, service = await _begin(request)
    refused = not_json(request)
    if refused is not None:
        return refused
    body = await json_object(request)
    rule, secrets = await service.create_rule(body, principal=principal)
    _refresh(ctx)
    return JSONResponse({**rule_json(rule), "secrets": secrets}, status_code=201)


async def delete_rule(request: Request) -> Response:
    ctx, principal, service = await _begin(request)
    await service.remove_rule(str(request.path_params["rule_id"]), principal=principal)
    _refresh(ctx)
    return Response(status_code=204)


async def list_alerts(request: Request) -> Response:
    _, principal, service = await _begin(request)
    q = schemas.AlertsQuery.from_query_string(request.scope["query_string"])
    items = await service.alerts(
        limit=q.limit,
        before=q.before,
        rule_id=q.rule_id,
        chatbot_id=q.chatbot_id,
        principal=principal,
    )
    return JSONResponse(items)
