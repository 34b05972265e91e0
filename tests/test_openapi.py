"""/openapi.json: generated from the pydantic models, valid OpenAPI 3.1, and schemathesis
finds no server error and no answer that breaks it, against a live uvicorn on SQLite and on
PostgreSQL (stateless positive and negative cases on every operation, and stateful runs
following the links), with data seeded through the hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import re
import typing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pluggy
import pytest
import schemathesis
from conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from hypothesis import HealthCheck, given, settings
from pydantic.alias_generators import to_camel
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from web_helpers.engine import Engine
from web_helpers.live import PREFIX
from web_helpers.threaded import threaded_server

import sessiontrack
from sessiontrack import models
from sessiontrack.query import SessionQueries
from sessiontrack.status import (
    ACTIVE_STATUSES,
    ALL_STATUSES,
    STATUS_VALUES,
    TERMINAL_STATUSES,
    Status,
)
from sessiontrack.web import schemas
from sessiontrack.web.openapi import build_document

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


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server on each backend, seeded through the hooks; PostgreSQL gets a table
    prefix of its own, dropped afterwards."""
    prefix = f"st{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        db: Path = tmp_path_factory.mktemp("openapi") / "sessions.db"
        url = f"sqlite+aiosqlite:///{db}"
    else:
        asyncio.run(require_postgres())
        url = POSTGRES_URL
    try:
        with threaded_server(
            url,
            populate=populate,
            authenticate=authenticate,
            sse_max_age=0.2,
            keepalive=0.1,
            tracker_options={"prefix": prefix},
        ) as base:
            yield base
    finally:
        if request.param != "sqlite":
            asyncio.run(drop_prefixed_tables(url, prefix))


@pytest.fixture(scope="module")
def schema(live: str) -> Any:
    schema = schemathesis.openapi.from_url(live + "/openapi.json", headers=HEADERS)
    # Every call carries HEADERS' valid credentials, so a case "missing Authorization" is
    # sent with it after all and is no negative case; tests/test_security.py covers the
    # requests without credentials.
    schema.config.generation.update(with_security_parameters=False)
    return schema


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
        "/stop",
        "/erase",
        "/audit",
        "/export",
        "/{id}",
        "/{id}/messages",
        "/{id}/fixture",
        "/{id}/stop",
        "/search/messages",
        "/alerts",
        "/alerts/rules",
        "/alerts/rules/{ruleId}",
        "/webhooks",
        "/webhooks/{webhookId}",
        "/webhooks/{webhookId}/resume",
        "/webhooks/{webhookId}/deliveries",
        *ANALYTICS_PATHS,
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
        "path",
        "version",
        # the advanced filters
        "nodeId",
        "completionReason",
        "minMessages",
        "maxMessages",
        "minDuration",
        "maxDuration",
        "hasError",
        "variable",
        "q",
    }
    variable = next(p for p in doc["paths"]["/"]["get"]["parameters"] if p["name"] == "variable")
    assert variable["schema"]["type"] == "array" and variable.get("explode", True)
    search = {p["name"]: p for p in doc["paths"]["/search/messages"]["get"]["parameters"]}
    assert set(search) == {"q", "chatbotId", "limit", "cursor"}
    assert [name for name, p in search.items() if p["required"]] == ["q"]
    session = doc["components"]["schemas"]["Session"]
    assert set(session["required"]) == set(session["properties"])
    assert doc["security"] == [{"bearerAuth": []}]


def test_every_operation_is_documented(schema: Any) -> None:
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 30


ANALYTICS_PATHS = [f"/analytics/{r}" for r in ("summary", "nodes", "paths", "funnel", "versions")]
RANGE_PARAMETERS = {"chatbotId", "version", "startDate", "endDate", "tz", "format"}


def test_the_analytics_routes_document_parameters_and_answers() -> None:
    doc = build_document(secured=True)
    for path in ANALYTICS_PATHS:
        op = doc["paths"][path]["get"]
        params = {p["name"]: p for p in op["parameters"]}
        required = {name for name, p in params.items() if p["required"]}
        expected = {
            "/analytics/versions": {"chatbotId"},
            "/analytics/paths": RANGE_PARAMETERS | {"limit"},
            "/analytics/funnel": RANGE_PARAMETERS | {"steps"},
        }.get(path, RANGE_PARAMETERS)
        assert set(params) == expected, path
        assert required == ({"chatbotId", "steps"} & expected), path
        content = op["responses"]["200"]["content"]
        model = "Analytics" + path.rsplit("/", 1)[1].title()
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
        assert ("text/csv" in content) == (path != "/analytics/versions")
        schema = doc["components"]["schemas"][model]
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == set(schema["properties"]), model
    limit = next(
        p for p in doc["paths"]["/analytics/paths"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}


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
        # Likewise a range may be too long or reversed, a time zone or a funnel step
        # list well formed and still refused (the 400 names which), and a path filter
        # needs a chatbot (a dependency between parameters that OpenAPI cannot state).
        refusable = {"cursor", "startDate", "endDate", "tz", "steps", "path"}
        refused = refusable & set(case.query or {}) or _refusable_stop(case.body)
        excluded = [positive_data_acceptance] if refused else []
        case.call_and_validate(headers=HEADERS, excluded_checks=excluded)

    run()


def _refusable_stop(body: Any) -> bool:
    """A POST /stop body that fits the schema and is still refused: ids and filter both
    or neither (OpenAPI cannot say "exactly one"), or a filter, whose values have the list
    parameters' dependencies (path needs chatbotId) and must name one criterion at least."""
    return isinstance(body, dict) and (body.get("filter") is not None or body.get("ids") is None)


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


# --- one source of truth: the wire models are the dataclasses, the statuses status.py's ---

WIRE_ONLY = {"Chatbot", "StopResult", "Error"} | {
    f"Analytics{r}" for r in ("Summary", "Nodes", "Paths", "Funnel", "Versions")
}
"""Response models with no dataclass behind them (answers built by the web layer, and
the analytics service's plain dicts, which these models document)."""


def test_every_wire_model_is_derived_from_its_dataclass() -> None:
    derived = {d.model.__name__: d for d in schemas.DERIVED}
    served = {m.__name__ for m in schemas.RESPONSE_MODELS}
    assert served - set(derived) == WIRE_ONLY
    core = {
        obj
        for obj in vars(models).values()
        if dataclasses.is_dataclass(obj) and obj.__module__ == models.__name__
    }
    assert core - {d.source for d in schemas.DERIVED} == {models.Principal}


@pytest.mark.parametrize("derivation", schemas.DERIVED, ids=lambda d: d.model.__name__)
def test_a_field_is_on_the_wire_exactly_when_it_is_in_the_dataclass(derivation: Any) -> None:
    """A field added to a dataclass reaches the wire, and the wire has no field of its own:
    the only differences are the declared ``hidden`` fields and ``computed`` properties,
    and each of those must name something that exists."""
    fields = {f.name for f in dataclasses.fields(derivation.source)}
    assert derivation.hidden <= fields, "hidden names a field the dataclass lacks"
    for name in derivation.computed:
        assert isinstance(getattr(derivation.source, name, None), property), name
        assert name not in fields
    assert set(derivation.model.model_fields) == (fields - derivation.hidden) | derivation.computed


def _sample_detail() -> models.SessionDetail:
    when = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    sid = sessiontrack.new_session_id()
    message = models.Message(
        id=7,
        session_id=sid,
        conversation_id="c",
        direction="inbound",
        type="text",
        text="hi",
        payload={"k": 1},
        node_id="n",
        timestamp=when,
        channel_message_id="wamid.1",
    )
    execution = models.NodeExecution(
        node_id="n", label="N", type="question", at=when, duration_ms=1.5, error=None
    )
    return models.SessionDetail(
        id=sid,
        conversation_id="c",
        chatbot_id="bot",
        chatbot_name="Bot",
        customer_phone="+1555",
        customer_name="Ann",
        status="waiting_input",
        current_node_id="n",
        current_node_label="N",
        started_at=when,
        updated_at=when,
        completed_at=None,
        node_count=1,
        message_count=1,
        node_history=["n"],
        node_executions=[execution],
        variables={"v": [1, 2]},
        metadata={"secret": "x"},
        messages=[message],
        flow_version="v1",
    )


def _camel_keys(source: type, hidden: frozenset[str], computed: frozenset[str]) -> set[str]:
    names = {f.name for f in dataclasses.fields(source)} - hidden | computed
    return {to_camel(n) for n in names}


def test_an_answer_renders_every_dataclass_field_in_camel_case() -> None:
    by_source = {d.source: d for d in schemas.DERIVED}
    detail = _sample_detail()
    d = by_source[models.SessionDetail]
    body = schemas.SessionDetail.model_validate(detail).model_dump(mode="json", by_alias=True)
    assert set(body) == _camel_keys(models.SessionDetail, d.hidden, d.computed)
    assert body["isActive"] is True and body["status"] == "waiting_input"
    m = by_source[models.Message]
    assert set(body["messages"][0]) == _camel_keys(models.Message, m.hidden, m.computed)
    assert body["nodeExecutions"][0]["durationMs"] == 1.5
    page = models.Page(
        data=[detail], total=1, limit=20, offset=0, has_next=False, has_previous=False
    )
    rendered = schemas.SessionPage.model_validate(page).model_dump(mode="json", by_alias=True)
    assert set(rendered) == _camel_keys(models.Page, frozenset(), frozenset())
    s = by_source[models.SessionSummary]
    assert set(rendered["data"][0]) == _camel_keys(models.SessionSummary, s.hidden, s.computed)


def test_statuses_come_from_status_py() -> None:
    values = [s.value for s in Status]
    assert list(STATUS_VALUES) == values
    assert ACTIVE_STATUSES | TERMINAL_STATUSES == ALL_STATUSES == set(values)
    assert not ACTIVE_STATUSES & TERMINAL_STATUSES
    assert all(Status(v).is_active == (v in ACTIVE_STATUSES) for v in values)
    assert list(typing.get_args(schemas.Status)) == values
    doc = build_document(secured=False)
    assert doc["components"]["schemas"]["Session"]["properties"]["status"]["enum"] == values
    status_param = next(p for p in doc["paths"]["/"]["get"]["parameters"] if p["name"] == "status")
    pattern = re.compile(status_param["schema"]["pattern"])
    assert all(pattern.match(v) for v in values) and pattern.match(",".join(values))
    assert not pattern.match("sleeping")


def test_list_parameters_are_the_query_services_arguments() -> None:
    """The REST layer passes ListQuery's fields on by name: none may be missing there."""
    arguments = inspect.signature(SessionQueries.list).parameters
    assert set(schemas.ListQuery.model_fields) <= set(arguments)


@pytest.mark.parametrize("depth", [254, 600])
def test_free_form_json_renders_at_any_depth_and_in_field_order(depth: int) -> None:
    deep: dict[str, Any] = {}
    for _ in range(depth):
        deep = {"a": deep}
    plain = _sample_detail()
    message = dataclasses.replace(plain.messages[0], payload=deep)
    detail = dataclasses.replace(
        plain,
        variables=deep,
        messages=[message],
        flow_data={"nodes": [{"id": "n", "data": deep}], "edges": [], "not": "served"},
    )
    body = schemas.dump(schemas.SessionDetail.model_validate(detail))
    assert body["variables"] == deep and body["messages"][0]["payload"] == deep
    assert body["flowData"] == {"nodes": [{"id": "n", "data": deep}], "edges": []}
    assert schemas.dump(schemas.Message.model_validate(message))["payload"] == deep
    reference = schemas.SessionDetail.model_validate(plain)
    assert json.dumps(schemas.dump(reference)) == json.dumps(
        reference.model_dump(mode="json", by_alias=True)
    )
