"""What every endpoint of one sub-app shares: the tracker, the authenticator, options."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from ..models import Principal
from ..tracker import Tracker
from ._wire import SSEEncoder
from .auth import (
    Authenticator,
    AuthRequest,
    NotAuthenticated,
    Transport,
    presented_token,
    resolve,
)

if TYPE_CHECKING:
    from .socket import Gateway

log = logging.getLogger(__name__)

NOT_RUNNING = (
    "the sessiontrack tracker is not running: a mounted sub-app gets no lifespan events, so "
    "enter the tracker in the host's lifespan (`async with tracker:`) before serving"
)


class TrackerDown(Exception):
    """The tracker was not entered (or has closed): 503."""


@dataclass
class Context:
    tracker: Tracker
    authenticator: Authenticator | None
    keepalive: float
    sse_max_age: float | None
    gateway: Gateway | None = None
    sse_encoder: SSEEncoder = field(default_factory=SSEEncoder)
    _warned_down: bool = False

    def require_tracker(self) -> Tracker:
        if not self.tracker.running:
            if not self._warned_down:
                log.error(NOT_RUNNING)
                self._warned_down = True
            raise TrackerDown(NOT_RUNNING)
        self._warned_down = False
        return self.tracker

    async def principal(
        self, conn: HTTPConnection, transport: Transport, token: str | None = None
    ) -> Principal:
        if transport == "sse" and len(conn.query_params.getlist("access_token")) > 1:
            raise NotAuthenticated("access_token: must be given at most once")
        request = AuthRequest(
            token=presented_token(conn, token), connection=conn, transport=transport
        )
        return await resolve(self.authenticator, request)

    @staticmethod
    def masks(principal: Principal) -> bool:
        return not principal.can_see_pii


def context_of(conn: HTTPConnection) -> Context:
    ctx: Context = conn.app.state.sessiontrack
    return ctx
