"""The REST endpoints: translate HTTP to the query service and back, nothing more."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import models
from .._ids import normalize_session_id
from ..errors import InvalidParameter
from ..models import Principal
from . import _wire, schemas
from ._context import Context, context_of
from ._errors import error_response, not_json, validation_details
from .auth import mask_phone


class _Json(JSONResponse):
    media_type = "application/json"


class _Encoded(Response):
    """A body already encoded as JSON (see ``_wire``)."""

    media_type = "application/json"


def _dump(model: BaseModel) -> Any:
    return schemas.dump(model)


def _masked(item: Any, principal: Principal) -> Any:
    if Context.masks(principal) and item.customer_phone:
        return dataclasses.replace(item, customer_phone=mask_phone(item.customer_phone))
    return item


def _model(model: Any, item: Any) -> Any:
    return _dump(model.model_validate(item))


async def _begin(
    request: Request, query: type[schemas.Query] | None = schemas.NoQuery
) -> tuple[Context, Principal]:
    ctx = context_of(request)
    ctx.require_tracker()
    principal = await ctx.principal(request, "http")
    if query is not None:
        query.from_query_string(request.scope["query_string"])
    return ctx, principal


def _session_id(request: Request) -> str:
    try:
        return normalize_session_id(request.path_params["session_id"], "id")
    except (TypeError, ValueError) as exc:
        raise InvalidParameter("id", str(exc)) from None


def _strict_segment(request: Request, name: str) -> str:
    """A path parameter decoded as strict UTF-8: servers turn invalid bytes into U+FFFD,
    which would quietly look up another name; surrogateescape keeps them for the query
    service to refuse. The parameter is the last segment of the route."""
    value: str = request.path_params[name]
    raw = request.scope.get("raw_path")
    if "\ufffd" in value and raw:
        segment = raw.partition(b"?")[0].rsplit(b"/", 1)[-1]
        value = unquote_to_bytes(segment).decode("utf-8", "surrogateescape")
    return value


def _list_kwargs(request: Request) -> dict[str, Any]:
    # ListQuery's fields are named as SessionQueries.list's arguments (a test checks it)
    return dict(schemas.ListQuery.from_query_string(request.scope["query_string"]))


def _page(page: models.Page[models.SessionSummary], principal: Principal) -> Response:
    return _Encoded(_wire.page_json(page, Context.masks(principal)))


async def list_sessions(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    page = await ctx.tracker.sessions.list(**_list_kwargs(request), principal=principal)
    return _page(page, principal)


async def chatbot_sessions(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    kwargs = _list_kwargs(request)
    kwargs["chatbot_id"] = _strict_segment(request, "chatbot_id")
    page = await ctx.tracker.sessions.list(**kwargs, principal=principal)
    return _page(page, principal)


async def active_sessions(request: Request) -> Response:
    ctx, principal = await _begin(request)
    items = await ctx.tracker.sessions.active(principal=principal)
    return _Encoded(_wire.sessions_json(items, Context.masks(principal)))


async def get_session(request: Request) -> Response:
    ctx, principal = await _begin(request)
    sid = _session_id(request)
    detail = await ctx.tracker.sessions.get(sid, principal=principal)
    await ctx.tracker.session_read([detail.id], principal, "detail")
    return _Json(_model(schemas.SessionDetail, _masked(detail, principal)))


async def session_messages(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.MessagesQuery.from_query_string(request.scope["query_string"])
    sid = _session_id(request)
    items = await ctx.tracker.sessions.messages(
        sid, limit=q.limit, before=q.before, principal=principal
    )
    await ctx.tracker.session_read([sid], principal, "messages")
    return _Json([_model(schemas.Message, m) for m in items])


async def stop_session(request: Request) -> Response:
    ctx, principal = await _begin(request)
    sid = _session_id(request)
    await ctx.tracker.stop(sid, principal)
    return _Json(
        _model(schemas.StopResult, {"sessionId": sid, "status": "stopped", "success": True})
    )


async def stop_many(request: Request) -> Response:
    ctx, principal = await _begin(request)
    refused = not_json(request)
    if refused is not None:
        return refused
    try:
        body = schemas.StopManyBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return error_response(400, "invalid parameter", validation_details(exc, "body"))
    criteria = None
    if body.filter is not None:
        criteria = {name: getattr(body.filter, name) for name in body.filter.model_fields_set}
        # (null, blank values select nothing: the service refuses a filter of only those)
    result = await ctx.tracker.stop_many(body.ids, filter=criteria, principal=principal)
    return _Json(_model(schemas.StopManyResult, result))


def _may_erase(principal: Principal) -> Response | None:
    if not principal.can_erase:
        return error_response(403, f"principal {principal.id!r} may not erase data")
    return None


async def erase(request: Request) -> Response:
    ctx, principal = await _begin(request)
    refused = _may_erase(principal) or not_json(request)
    if refused is not None:
        return refused
    try:
        body = schemas.EraseBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return error_response(400, "invalid parameter", validation_details(exc, "body"))
    if len(body.model_fields_set) != 1:
        detail = "give exactly one of phone, conversationId and sessionId"
        return error_response(400, "invalid parameter", [{"field": "body", "message": detail}])
    result = await ctx.tracker.erase(
        phone=body.phone,
        conversation_id=body.conversation_id,
        session_id=body.session_id,
        principal=principal,
    )
    return _Json(_model(schemas.ErasureResult, result))


async def audit(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    refused = _may_erase(principal)
    if refused is not None:
        return refused
    q = schemas.AuditQuery.from_query_string(request.scope["query_string"])
    records = await ctx.tracker.audit(
        action=q.action, session_id=q.session_id, before=q.before, limit=q.limit
    )
    if principal.chatbot_ids is not None:
        records = [r for r in records if r.principal == principal.id]
    return _Json([_model(schemas.AuditRecord, r) for r in records])


async def stats(request: Request) -> Response:
    ctx, principal = await _begin(request, None)
    q = schemas.StatsQuery.from_query_string(request.scope["query_string"])
    s = await ctx.tracker.sessions.stats(principal=principal, chatbot_id=q.chatbot_id)
    return _Json(_model(schemas.Stats, s))


async def chatbots(request: Request) -> Response:
    ctx, principal = await _begin(request)
    bots = await ctx.tracker.sessions.chatbots(principal=principal)
    return _Json(
        [_model(schemas.Chatbot, {"id": b["chatbot_id"], "name": b["name"]}) for b in bots]
    )
