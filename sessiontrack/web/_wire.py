"""Event payloads as they go on the wire, masked for principals without PII permission,
encoded once per event however many clients receive it."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from ..events import StoredEvent
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
