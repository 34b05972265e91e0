"""``GET /{id}/fixture``: a session as a replayable test fixture (see
:mod:`sessiontrack._fixture` for the format and :mod:`sessiontrack.testing` for replaying it).

Same rules as the session detail: another tenant's session is a 404, and a principal
without the PII permission gets the customer's phone number masked wherever it appears.
The read is reported to the audit hook as ``what="fixture"``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .._fixture import session_fixture
from ._context import Context
from .auth import mask_phone
from .rest import _begin, _Json, _session_id


def _mask(phone: str) -> str:
    return mask_phone(phone) or phone


async def session_fixture_route(request: Request) -> Response:
    ctx, principal = await _begin(request)
    sid = _session_id(request)
    fixture = await session_fixture(
        ctx.tracker.sessions,
        sid,
        principal=principal,
        mask=_mask if Context.masks(principal) else None,
    )
    await ctx.tracker.session_read([sid], principal, "fixture")
    return _Json(fixture)
