"""Checking the key of an erasure: exactly one of phone, conversation id and session id."""

from __future__ import annotations

from ._ids import normalize_session_id
from .errors import InvalidParameter
from .limits import CONVERSATION_ID, CUSTOMER_PHONE


def erasure_key(
    *, phone: object = None, conversation_id: object = None, session_id: object = None
) -> tuple[str, str]:
    """``(kind, value)`` of the one key given; the messages never repeat the value (a
    phone number must not reach a log through an error)."""
    given = {
        k: v
        for k, v in (
            ("phone", phone),
            ("conversation_id", conversation_id),
            ("session_id", session_id),
        )
        if v is not None
    }
    if len(given) != 1:
        field = next(iter(given), "phone")
        raise InvalidParameter(field, "give exactly one of phone, conversation_id and session_id")
    ((kind, value),) = given.items()
    if kind == "session_id":
        try:
            return kind, normalize_session_id(value, "session_id")
        except (TypeError, ValueError):
            raise InvalidParameter(kind, "must be a UUID") from None
    if isinstance(value, int) and not isinstance(value, bool) and kind == "conversation_id":
        value = str(value)  # as sessiontrack_session_started takes it
    if not isinstance(value, str):
        raise InvalidParameter(kind, f"must be a string, got {type(value).__name__}")
    limit = CUSTOMER_PHONE if kind == "phone" else CONVERSATION_ID
    if not value.strip():
        raise InvalidParameter(kind, "must not be blank")
    if len(value) > limit:
        raise InvalidParameter(kind, f"must be at most {limit} characters")
    return kind, value
