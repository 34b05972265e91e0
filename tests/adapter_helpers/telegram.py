"""Telegram's Bot API, offline, for python-telegram-bot: the library's
:class:`~sessiontrack.adapters.telegram.OfflineBotAPI` with the tests' bot."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sessiontrack.adapters.telegram import OfflineBotAPI

ME = {"id": 42, "is_bot": True, "first_name": "Pizza", "username": "pizza_bot"}
"""The bot, as ``getMe`` answers."""


def bot_api_result(method: str, params: Mapping[str, Any], ids: Iterator[int]) -> Any:
    """The ``result`` of a Bot API call: ``getMe`` answers :data:`ME`, every ``send*`` a
    private-chat message with the next of ``ids``, any other method ``true``."""
    return OfflineBotAPI.answer(ME, method, params, ids)


class FakeBotAPI(OfflineBotAPI):
    """:class:`OfflineBotAPI` answering as :data:`ME`, message ids from ``first_id``."""

    def __init__(self, first_id: int = 1001) -> None:
        super().__init__(first_id, bot=ME)
