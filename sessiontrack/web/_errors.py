"""Turning failures into JSON answers, in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import (
    AlertRuleNotFound,
    ErasureNotAllowed,
    InvalidParameter,
    PermissionDenied,
    SessionAlreadyTerminal,
    SessionNotFound,
    WebhookNotFound,
)
from ._context import TrackerDown
from .auth import NotAuthenticated

log = logging.getLogger(__name__)


def error_response(
    status: int,
    error: str,
    detail: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": _printable(error), "detail": [_safe(d) for d in detail or []]}
    return JSONResponse(body, status_code=status, headers=headers)


def not_json(request: Request) -> Response | None:
    """The 415 answer to a body that is not declared JSON, or None. Only a JSON body: a
    cross-site ``<form>`` cannot send one without a CORS preflight."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return error_response(415, "the body must be JSON (Content-Type: application/json)")
    return None


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (``InvalidParameter("body")`` otherwise)."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter("body", f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidParameter("body", "must be a JSON object")
    return body


def _printable(text: str) -> str:
    # A refused parameter's name may hold lone surrogates (from bytes that are not
    # UTF-8): escape them, or encoding the answer itself would fail.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe(detail: dict[str, str]) -> dict[str, str]:
    return {key: _printable(value) for key, value in detail.items()}


def validation_details(exc: ValidationError, where: str = "") -> list[dict[str, str]]:
    details = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or where or "request"
        details.append({"field": loc, "message": err["msg"]})
    return details


def _query_models() -> set[str]:
    from .schemas import Query

    pending, names = [Query], set()
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


async def on_validation(_: Request, exc: Exception) -> Response:
    """A request's parameters that fail their model are the client's 400; a response that
    fails its model is our bug, a 500 (with the details in the log, not the answer)."""
    assert isinstance(exc, ValidationError)
    if exc.title in _query_models():
        return error_response(400, "invalid parameter", validation_details(exc))
    log.error("a response failed its schema (%s): %s", exc.title, exc)
    return error_response(500, "internal error")


async def on_invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidParameter)
    return error_response(400, "invalid parameter", [{"field": exc.field, "message": exc.message}])


async def on_not_found(_: Request, exc: Exception) -> Response:
    return error_response(404, str(exc))


async def on_denied(_: Request, exc: Exception) -> Response:
    return error_response(403, str(exc))


async def on_terminal(_: Request, exc: Exception) -> Response:
    return error_response(409, str(exc))


async def on_unauthenticated(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAuthenticated)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.message, headers=headers)


async def on_not_allowed(_: Request, exc: Exception) -> Response:
    return error_response(403, str(exc))


async def on_tracker_down(_: Request, exc: Exception) -> Response:
    return error_response(503, str(exc), headers={"Retry-After": "5"})


async def on_http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationError: on_validation,
    InvalidParameter: on_invalid,
    SessionNotFound: on_not_found,
    WebhookNotFound: on_not_found,
    AlertRuleNotFound: on_not_found,
    PermissionDenied: on_denied,
    SessionAlreadyTerminal: on_terminal,
    NotAuthenticated: on_unauthenticated,
    TrackerDown: on_tracker_down,
    ErasureNotAllowed: on_not_allowed,
    HTTPException: on_http,
}
