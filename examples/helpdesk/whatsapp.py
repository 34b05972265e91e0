"""WhatsApp Cloud API formats: webhook payloads in, message bodies out, signatures.

Inbound notifications look like this (``messages`` or ``statuses`` in each change)::

    {"object": "whatsapp_business_account",
     "entry": [{"id": "<WABA id>", "changes": [{"field": "messages", "value": {
         "messaging_product": "whatsapp",
         "metadata": {"display_phone_number": "...", "phone_number_id": "..."},
         "contacts": [{"profile": {"name": "Ann Lee"}, "wa_id": "15551234567"}],
         "messages": [{"from": "15551234567", "id": "wamid....", "timestamp": "...",
                       "type": "text", "text": {"body": "hi"}}]}}]}]}

Interactive replies carry ``interactive.button_reply`` / ``list_reply`` ``{id, title}``;
a completed WhatsApp Flow carries ``interactive.nfm_reply.response_json`` (a JSON string).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from .engine import Inbound, Reply


class MalformedPayload(ValueError):
    """The body is not a WhatsApp Cloud API webhook notification."""


def verify_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    """Check ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    given = header.removeprefix("sha256=").encode("latin-1", "replace")
    return hmac.compare_digest(expected.encode(), given)  # bytes: any header text compares


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta would send for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def parse_notification(body: bytes) -> list[Inbound]:
    """Every customer message of a notification, in order; status callbacks and other
    fields are skipped. Raises :class:`MalformedPayload` before anything is returned, so a
    bad notification changes nothing."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("object") != "whatsapp_business_account":
        raise MalformedPayload("object must be 'whatsapp_business_account'")
    found: list[Inbound] = []
    for entry in _list(doc, "entry", required=True):
        for change in _list(entry, "changes", required=True):
            value = _dict(change, "value")
            if change.get("field", "messages") != "messages":
                continue
            names = {_str(_object(c), "wa_id"): _name(c) for c in _list(value, "contacts")}
            found.extend(_message(m, names) for m in _list(value, "messages"))
    return found


def _message(raw: Any, names: Mapping[Any, str | None]) -> Inbound:
    if not isinstance(raw, dict):
        raise MalformedPayload("a message must be an object")
    sender, mid, kind = raw.get("from"), raw.get("id"), raw.get("type")
    if not (
        isinstance(sender, str)
        and sender
        and isinstance(mid, str)
        and mid
        and isinstance(kind, str)
    ):
        raise MalformedPayload("a message needs string 'from', 'id' and 'type'")
    base: dict[str, Any] = {
        "conversation_id": sender,
        "message_id": mid,
        "phone": "+" + sender,
        "name": names.get(sender),
        "channel_type": kind,
    }
    if kind == "text":
        return Inbound(kind="text", text=_str(_dict(raw, "text"), "body"), **base)
    if kind == "button":  # a quick-reply button of a template message
        button = _dict(raw, "button")
        return Inbound(
            kind="choice", choice_id=_str(button, "payload"), text=_opt_str(button, "text"), **base
        )
    if kind == "interactive":
        return _interactive(_dict(raw, "interactive"), base)
    return Inbound(kind="unsupported", **base)


def _interactive(inter: dict[str, Any], base: dict[str, Any]) -> Inbound:
    itype = inter.get("type")
    if itype in ("button_reply", "list_reply"):
        reply = _dict(inter, itype)
        return Inbound(
            kind="choice", choice_id=_str(reply, "id"), text=_opt_str(reply, "title"), **base
        )
    if itype == "nfm_reply":
        reply = _dict(inter, "nfm_reply")
        try:
            form = json.loads(_str(reply, "response_json"))
        except ValueError:
            raise MalformedPayload("nfm_reply.response_json is not JSON") from None
        if not isinstance(form, dict):
            raise MalformedPayload("nfm_reply.response_json must be a JSON object")
        return Inbound(
            kind="form", form=form, text=_opt_str(reply, "body"), **{**base, "channel_type": "form"}
        )
    raise MalformedPayload(f"unknown interactive type {itype!r}")


def _name(contact: Any) -> str | None:
    profile = contact.get("profile") if isinstance(contact, dict) else None
    name = profile.get("name") if isinstance(profile, dict) else None
    return name if isinstance(name, str) and name else None


def _list(obj: Any, key: str, *, required: bool = False) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise MalformedPayload(f"'{key}' must be a non-empty array")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload("a contact must be an object")
    return value


def _dict(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, dict):
        raise MalformedPayload(f"'{key}' must be an object")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedPayload(f"'{key}' must be a string")
    return value


def message_body(to: str, reply: Reply) -> dict[str, Any]:
    """The Cloud API ``POST /{phone-number-id}/messages`` body for ``reply``."""
    head = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if reply.kind == "text":
        return {**head, "type": "text", "text": {"preview_url": False, "body": reply.text}}
    interactive: dict[str, Any] = {"body": {"text": reply.text}}
    if reply.kind == "buttons":
        interactive.update(
            type="button",
            action={
                "buttons": [
                    {"type": "reply", "reply": {"id": i, "title": t[:20]}} for i, t in reply.choices
                ]
            },
        )
    elif reply.kind == "list":
        interactive.update(
            type="list", action={"button": reply.action, "sections": list(reply.sections)}
        )
    else:
        form = dict(reply.form or {})
        interactive.update(
            type="flow",
            action={
                "name": "flow",
                "parameters": {
                    "flow_message_version": "3",
                    "flow_token": form.get("flow_token"),
                    "flow_id": form.get("flow_id"),
                    "flow_cta": reply.action,
                    "flow_action": "navigate",
                    "flow_action_payload": {"screen": form.get("screen")},
                },
            },
        )
    return {**head, "type": "interactive", "interactive": interactive}


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedPayload(f"'{key}' must be a string")
    return value
