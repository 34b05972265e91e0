"""/openapi.json: generated from the pydantic models, valid OpenAPI 3.1, and schemathesis
finds no server error and no answer that breaks it, against a live uvicorn (stateless
positive and negative cases on every operation, and stateful runs following the links)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pluggy
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from web_helpers.engine import Engine
from web_helpers.live import PREFIX
from web_helpers.threaded import threaded_server

import sessiontrack

TOKEN = "schemathesis-token"
PRINCIPAL = sessiontrack.Principal(id="fuzzer")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def authenticate(request: Any) -> sessiontrack.Principal | None:
    return PRINCIPAL if request.token == TOKEN else None


async def populate(tracker: sessiontrack.Tracker) -> None:
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    pm.register(tracker)
    engine = Engine(pm)
    engine.register("bot-a", "Alpha")
    engine.register("bot-b", "Beta")
    for i in range(6):
        engine.full_run(
            "bot-a" if i % 2 else "bot-b",
            finish=i % 3 == 0,
            phone=f"+55119000000{i:02d}",
            name=f"Customer {i}",
        )
    await tracker.flush()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db: Path = tmp_path_factory.mktemp("openapi") / "sessions.db"
    with threaded_server(
        f"sqlite+aiosqlite:///{db}",
        populate=populate,
        authenticate=authenticate,
        sse_max_age=0.2,
        keepalive=0.1,
    ) as url:
        yield url


@pytest.fixture(scope="module")
def schema(live: str) -> Any:
    return schemathesis.openapi.from_url(live + "/openapi.json", headers=HEADERS)


def test_document_is_openapi_3_1_with_the_mount_prefix(live: str) -> None:
    from openapi_spec_validator import validate

    doc = httpx.get(live + "/openapi.json").json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": PREFIX}]
    assert set(doc["paths"]) == {
        "/",
        "/active",
        "/stats",
        "/chatbots",
        "/chatbot/{chatbotId}",
        "/events",
        "/{id}",
        "/{id}/messages",
        "/{id}/stop",
    }
    params = {p["name"] for p in doc["paths"]["/"]["get"]["parameters"]}
    assert params == {
        "status",
        "filter",
        "chatbotId",
        "conversationId",
        "search",
        "limit",
        "offset",
        "sortBy",
        "sortOrder",
        "startDate",
        "endDate",
        "cursor",
    }
    session = doc["components"]["schemas"]["Session"]
    assert set(session["required"]) == set(session["properties"])
    assert doc["security"] == [{"bearerAuth": []}]


def test_every_operation_is_documented(schema: Any) -> None:
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 9


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_stateless(schema: Any, mode: GenerationMode) -> None:
    strategy = schema.as_strategy(generation_mode=mode)

    @given(case=strategy)
    @settings(
        max_examples=250,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    def run(case: Any) -> None:
        # An opaque cursor is valid only if this API made it: a random string is rightly
        # a 400, so "schema-valid data accepted" cannot hold for that one parameter.
        excluded = [positive_data_acceptance] if "cursor" in (case.query or {}) else []
        case.call_and_validate(headers=HEADERS, excluded_checks=excluded)

    run()


@pytest.mark.slow
def test_schemathesis_stateful(schema: Any) -> None:
    machine = schema.as_state_machine()
    machine.run(
        settings=settings(
            max_examples=40,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
