"""The optional web layer: a Starlette sub-app to mount into the host's ASGI app.

Needs the ``web`` extra: ``pip install sessiontrack[web]``.
"""

from __future__ import annotations

try:
    import pydantic  # noqa: F401
    import socketio  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"sessiontrack.web needs the web extra ({exc.name} is missing): "
        "pip install 'sessiontrack[web]'"
    ) from exc

from .app import create_app, gateway_of
from .auth import LOCAL_PRINCIPAL, Authenticator, AuthRequest, mask_phone
from .bodylimit import BodyLimit
from .socket import NAMESPACE, Gateway

__all__ = [
    "LOCAL_PRINCIPAL",
    "NAMESPACE",
    "AuthRequest",
    "Authenticator",
    "BodyLimit",
    "Gateway",
    "create_app",
    "gateway_of",
    "mask_phone",
]
