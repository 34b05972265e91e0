"""Session ids: time-ordered UUIDv7 generation and cheap validation."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_session_id() -> str:
    """Return a new time-ordered UUIDv7 (RFC 9562) as a canonical string.

    Ids made by one process sort in creation order: within one millisecond a 12-bit
    counter (seeded randomly) keeps them increasing.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


def normalize_session_id(value: object, argument: str = "session_id") -> str:
    """Return ``value`` as a canonical lowercase UUID string, or raise.

    Accepts a :class:`uuid.UUID` or its string form (any case, hyphenated). This runs on
    the engine's hot path, so the common case is a single regex match.
    """
    if type(value) is str:
        if len(value) == 36 and _UUID_RE.fullmatch(value):
            return value
        lowered = value.lower()
        if len(lowered) == 36 and _UUID_RE.fullmatch(lowered):
            return lowered
        raise ValueError(f"{argument} must be a UUID string, got {value!r}")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{argument} must be a UUID or its string form, got {type(value).__name__}")
