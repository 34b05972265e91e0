"""Signing webhook deliveries, and verifying them on the receiving side."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Sessiontrack-Signature"
TIMESTAMP_HEADER = "X-Sessiontrack-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Sessiontrack-Signature`` value: ``sha256=`` and the hex HMAC-SHA256, keyed
    with the subscription's secret, of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a delivery is genuine: the signature matches (compared in constant time)
    and the timestamp is within ``tolerance`` seconds of ``now`` (replays of an old
    delivery are refused). ``body`` is the raw request body, as received."""
    if not signature or not timestamp or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
