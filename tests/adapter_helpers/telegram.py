"""Telegram's Bot API, offline, for python-telegram-bot."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from telegram.request import BaseRequest, RequestData

ME = {"id": 42, "is_bot": True, "first_name": "Pizza", "username": "pizza_bot"}
"""The bot, as ``getMe`` answers."""


def bot_api_result(method: str, params: Mapping[str, Any], ids: Iterator[int]) -> Any:
    """The ``result`` of a Bot API call: ``getMe`` answers :data:`ME`, every ``send*`` a
    private-chat message with the next of ``ids``, any other method ``true``."""
    if method == "getMe":
        return ME
    if method.startswith("send"):
        chat = {"id": int(str(params["chat_id"])), "type": "private"}
        return {"message_id": next(ids), "date": 0, "chat": chat, "text": params["text"]}
    return True


class FakeBotAPI(BaseRequest):
    """The Bot API answered in memory (see :func:`bot_api_result`); the messages sent are
    kept in :attr:`sent`, their ids count up from ``first_id``."""

    def __init__(self, first_id: int = 1001) -> None:
        self.sent: list[dict[str, Any]] = []
        self._ids = itertools.count(first_id)

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self, url: str, method: str, request_data: RequestData | None = None, *_: Any, **__: Any
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data else {}
        result = bot_api_result(endpoint, params, self._ids)
        if endpoint.startswith("send"):
            self.sent.append(result)
        return 200, json.dumps({"ok": True, "result": result}).encode()
