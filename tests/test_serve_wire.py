"""The list pages' fast encoder (``web._wire``) writes exactly the JSON that the pydantic
response models (``schemas.SessionPage``, ``schemas.Session``) would, on both backends,
masked and not; and the SQLite reader engine sees what the writer committed."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import engine

import sessiontrack
from sessiontrack.web import _wire, schemas
from sessiontrack.web.auth import mask_phone

__all__ = ["engine"]
pytestmark = pytest.mark.anyio
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


def reference(page: sessiontrack.Page[Any], masked: bool) -> Any:
    """What the endpoints answered before the fast encoder: through pydantic."""

    def hide(item: Any) -> Any:
        if masked and item.customer_phone:
            return dataclasses.replace(item, customer_phone=mask_phone(item.customer_phone))
        return item

    masked_page = dataclasses.replace(page, data=[hide(s) for s in page.data])
    return schemas.dump(schemas.SessionPage.model_validate(masked_page))


async def seed(engine: Engine, tracker: sessiontrack.Tracker) -> None:
    engine.register("bot", name="Bot ✓ \u2028 name")
    engine.full_run("bot", phone="+55 (11) 98765-4321", name='Zoë "quoted" \\ name')
    engine.full_run("bot", finish=False, phone="12", name="")
    sid = engine.start("bot", phone="", name="No phone")
    engine.hook.sessiontrack_llm_call(
        session_id=sid, model="m", input_tokens=7, output_tokens=3, cost=0.1 + 0.2
    )
    engine.start("other-bot")  # a chatbot never registered: no name
    await tracker.flush()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_fast_encoder_matches_the_response_models(
    engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    await seed(engine, tracker)
    for kwargs in ({}, {"limit": 2}, {"filter": "active"}, {"sort_order": "ASC"}):
        page = await tracker.sessions.list(**kwargs)
        assert page.data
        for masked in (False, True):
            assert json.loads(_wire.page_json(page, masked)) == reference(page, masked)
    active = await tracker.sessions.active()
    want = [schemas.dump(schemas.Session.model_validate(s)) for s in active]
    assert json.loads(_wire.sessions_json(active, False)) == want


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_sqlite_readers_see_every_commit(
    engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    store: Any = tracker.store
    assert store.readers is not None  # the list reads go through them
    engine.register("bot")
    for n in range(1, 6):
        engine.full_run("bot")
        await tracker.flush()
        page = await tracker.sessions.list(limit=100)
        assert page.total == len(page.data) == n
