"""Event payloads as they go on the wire, masked for principals without PII permission,
encoded once per event however many clients receive it; and the list pages, encoded
without a round trip through pydantic."""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from ..events import StoredEvent
from ..models import Page, SessionSummary
from .auth import mask_phone

_CACHE_SIZE = 4096
# JSON leaves these unescaped, and SSE readers that split lines as str.splitlines() does
# (httpx's aiter_lines, for one) would cut a frame at them: escape them as JSON allows.
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def payload(event: StoredEvent, masked: bool) -> dict[str, Any]:
    data = event.to_wire()
    if masked and data.get("customerPhone"):
        data["customerPhone"] = mask_phone(data["customerPhone"])
    return data


def needs_masking(event: StoredEvent) -> bool:
    return bool(event.data.get("customer_phone"))


class SSEEncoder:
    """``event:``/``id:``/``data:`` frames, cached by (sequence number, masked)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[int, bool], bytes] = OrderedDict()

    def frame(self, event: StoredEvent, masked: bool) -> bytes:
        masked = masked and needs_masking(event)
        key = (event.seq, masked)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        data = json.dumps(payload(event, masked), separators=(",", ":"), ensure_ascii=False)
        if not data.isascii():
            data = data.translate(_LINE_BREAKS)
        frame = f"event: {event.wire_name}\nid: {event.seq}\ndata: {data}\n\n".encode()
        self._cache[key] = frame
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return frame


@functools.cache
def _fields(model_name: str) -> tuple[tuple[str, str], ...]:
    """(attribute, wire name) of every field of a response model of ``schemas``, in its
    order: the model stays the one definition of the wire form (and of the OpenAPI)."""
    from . import schemas

    model = getattr(schemas, model_name)
    return tuple((name, f.alias or name) for name, f in model.model_fields.items())


def session_item(item: SessionSummary, masked: bool) -> dict[str, Any]:
    """A list item as ``schemas.Session`` dumps it, read straight off the dataclass.
    Validating twenty store rows into pydantic models only to dump them again was a
    millisecond of every list request; ``tests/test_serve_wire.py`` checks that both
    give the same JSON."""
    body = {wire: getattr(item, name) for name, wire in _fields("Session")}
    if masked and body["customerPhone"]:
        body["customerPhone"] = mask_phone(body["customerPhone"])
    return body


def encode(body: Any) -> bytes:
    """JSON as pydantic writes it for our models: UTC times end in ``Z``."""
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def sessions_json(items: Iterable[SessionSummary], masked: bool) -> bytes:
    return encode([session_item(s, masked) for s in items])


def page_json(page: Page[SessionSummary], masked: bool) -> bytes:
    """The JSON of a ``SessionPage``."""
    body = {wire: getattr(page, name) for name, wire in _fields("SessionPage")}
    body["data"] = [session_item(s, masked) for s in page.data]
    return encode(body)
