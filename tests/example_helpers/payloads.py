"""WhatsApp Cloud API webhook notifications, shaped exactly as Meta sends them.

Written from the Cloud API webhook reference samples (``messages`` of type ``text``,
``interactive`` ``button_reply`` / ``list_reply`` / ``nfm_reply``, ``image``; ``statuses``),
independently of the example's own parser, so the tests check the parser against the
format and not against itself.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

WABA_ID = "102290129340398"
BUSINESS_NUMBER = "15550783881"
PHONE_NUMBER_ID = "106540352242922"
_ids = itertools.count(1)


def wamid() -> str:
    """A fresh inbound message id in WhatsApp's shape."""
    return f"wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTdGRkM0RDk{next(_ids):05d}AA=="


def notification(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [{"value": value, "field": "messages"}],
            }
        ],
    }


def messages(wa_id: str, name: str | None, *msgs: dict[str, Any]) -> dict[str, Any]:
    """A notification carrying ``msgs`` from the customer ``wa_id``."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
    }
    if name is not None:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id}]
    else:
        value["contacts"] = [{"wa_id": wa_id}]
    value["messages"] = list(msgs)
    return notification(value)


def _msg(wa_id: str, mid: str | None, **body: Any) -> dict[str, Any]:
    return {"from": wa_id, "id": mid or wamid(), "timestamp": "1732442400", **body}


def text(wa_id: str, body: str, mid: str | None = None) -> dict[str, Any]:
    return _msg(wa_id, mid, text={"body": body}, type="text")


def button_reply(
    wa_id: str,
    button_id: str,
    title: str,
    mid: str | None = None,
    context_id: str = "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI0QzA3RjE2",
) -> dict[str, Any]:
    return _msg(
        wa_id,
        mid,
        context={"from": BUSINESS_NUMBER, "id": context_id},
        interactive={"button_reply": {"id": button_id, "title": title}, "type": "button_reply"},
        type="interactive",
    )


def list_reply(
    wa_id: str, row_id: str, title: str, description: str = "", mid: str | None = None
) -> dict[str, Any]:
    return _msg(
        wa_id,
        mid,
        context={"from": BUSINESS_NUMBER, "id": "wamid.HBgLMTU1NTEy"},
        interactive={
            "list_reply": {"id": row_id, "title": title, "description": description},
            "type": "list_reply",
        },
        type="interactive",
    )


def nfm_reply(wa_id: str, response: dict[str, Any], mid: str | None = None) -> dict[str, Any]:
    return _msg(
        wa_id,
        mid,
        context={"from": BUSINESS_NUMBER, "id": "wamid.HBgLMTU1NTEy"},
        interactive={
            "type": "nfm_reply",
            "nfm_reply": {"response_json": json.dumps(response), "body": "Sent", "name": "flow"},
        },
        type="interactive",
    )


def quick_reply(wa_id: str, payload: str, text: str, mid: str | None = None) -> dict[str, Any]:
    """A tap on a quick-reply button of a template message (``type: button``)."""
    return _msg(
        wa_id,
        mid,
        context={"from": BUSINESS_NUMBER, "id": "wamid.HBgLMTU1NTEy"},
        type="button",
        button={"payload": payload, "text": text},
    )


def image(wa_id: str, caption: str = "", mid: str | None = None) -> dict[str, Any]:
    return _msg(
        wa_id,
        mid,
        type="image",
        image={
            "caption": caption,
            "mime_type": "image/jpeg",
            "sha256": "IIqERlBHtS7oU7vbZOOrQbvWGqY2Yx4uvTjMuXvpK3U=",
            "id": "1469813800568946",
        },
    )


def status(recipient: str, message_id: str, state: str = "delivered") -> dict[str, Any]:
    """A status callback (sent, delivered, read) for a message the business sent."""
    return notification(
        {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": BUSINESS_NUMBER,
                "phone_number_id": PHONE_NUMBER_ID,
            },
            "statuses": [
                {
                    "id": message_id,
                    "status": state,
                    "timestamp": "1732442405",
                    "recipient_id": recipient,
                    "conversation": {
                        "id": "4c8c9cdb4b4e3b9a0e6b5a0b5e3c2d1f",
                        "origin": {"type": "service"},
                    },
                    "pricing": {"billable": True, "pricing_model": "CBP", "category": "service"},
                }
            ],
        }
    )
