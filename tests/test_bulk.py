"""Bulk stop: ``tracker.stop_many`` by ids and by filter, and ``POST /stop`` over a real
uvicorn, on SQLite and PostgreSQL. Every stop reaches the engine's process
(``sessiontrack_stop_requested``) and is recorded with who asked for it."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import pluggy
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, authenticate, engine, live_url, web_app

import sessiontrack
from sessiontrack import InvalidParameter, Principal
from sessiontrack._stops import MAX_STOPS

__all__ = ["api", "app_options", "authenticate", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

AGENT = Principal(id="lead-1")
ONLY_A = Principal(id="agent-a", chatbot_ids=frozenset({"bot-a"}))


class Heard:
    """The engine's plugin: the stops it is told about."""

    def __init__(self) -> None:
        self.stops: list[tuple[str, str | None]] = []

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        self.stops.append((session_id, principal))

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.stops) < count:  # noqa: ASYNC110 - the hook only appends
                await anyio.sleep(0.02)


@pytest.fixture
def heard(pm: pluggy.PluginManager) -> Heard:
    plugin = Heard()
    pm.register(plugin)
    return plugin


@pytest.fixture
async def world(engine: Engine, tracker: sessiontrack.Tracker) -> dict[str, Any]:
    """bot-a: two waiting, one running, one completed; bot-b: one waiting."""
    engine.register("bot-a", "Alpha")
    engine.register("bot-b", "Beta")
    w = {
        "a_wait1": engine.full_run("bot-a", finish=False, phone="+5511900000001", name="Ana"),
        "a_wait2": engine.full_run("bot-a", finish=False, phone="+5511900000002", name="Bia"),
        "a_run": engine.start("bot-a", phone="+5511900000003", name="Caio"),
        "a_done": engine.full_run("bot-a", phone="+5511900000004", name="Duda"),
        "b_wait": engine.full_run("bot-b", finish=False, phone="+5511900000005", name="Edu"),
    }
    await tracker.flush()
    return w


async def statuses(tracker: sessiontrack.Tracker, *sids: str) -> list[str]:
    return [(await tracker.sessions.get(sid)).status for sid in sids]


async def stop_event(tracker: sessiontrack.Tracker, sid: str) -> dict[str, Any]:
    """The data of the session's stored completion: the audit record of the stop."""
    async with tracker.subscribe(after=0, session_id=sid) as sub:
        with anyio.fail_after(10):
            async for event in sub:
                if event.kind == "session_completed":
                    return dict(event.data)
    raise AssertionError("no completion")


# --- the library ------------------------------------------------------------------------


async def test_stop_many_by_ids_sorts_every_id_into_one_answer_and_tells_the_engine(
    tracker: sessiontrack.Tracker, world: dict[str, Any], heard: Heard
) -> None:
    unknown = sessiontrack.new_session_id()
    asked = [
        world["a_wait1"],
        world["a_done"],
        unknown,
        world["a_run"].upper(),  # any case; the answer has the canonical form
        world["a_wait1"],  # twice: once in the answer
    ]
    result = await tracker.stop_many(asked, principal=AGENT, reason="bulk_cleanup")
    assert result == sessiontrack.models.StopManyResult(
        stopped=[world["a_wait1"], world["a_run"]],
        already_ended=[world["a_done"]],
        not_found=[unknown],
    )
    assert await statuses(tracker, world["a_wait1"], world["a_run"], world["a_wait2"]) == [
        "stopped",
        "stopped",
        "waiting_input",
    ]
    await heard.wait_for(2)
    assert sorted(heard.stops) == sorted([(world["a_wait1"], "lead-1"), (world["a_run"], "lead-1")])
    for sid in (world["a_wait1"], world["a_run"]):
        data = await stop_event(tracker, sid)
        assert data["requested_by"] == "lead-1" and data["stop_requested"] is True
        assert (await tracker.sessions.get(sid)).completion_reason == "bulk_cleanup"


async def test_a_principal_limited_to_some_chatbots_finds_no_other_session(
    tracker: sessiontrack.Tracker, world: dict[str, Any], heard: Heard
) -> None:
    result = await tracker.stop_many([world["b_wait"], world["a_wait2"]], principal=ONLY_A)
    assert result.stopped == [world["a_wait2"]]
    assert result.not_found == [world["b_wait"]] and result.already_ended == []
    assert await statuses(tracker, world["b_wait"]) == ["waiting_input"]
    await heard.wait_for(1)
    assert heard.stops == [(world["a_wait2"], "agent-a")]


async def test_stop_many_by_filter_stops_the_active_sessions_that_match(
    tracker: sessiontrack.Tracker, world: dict[str, Any], heard: Heard
) -> None:
    result = await tracker.stop_many(filter={"chatbot_id": "bot-a"}, principal=AGENT)
    assert sorted(result.stopped) == sorted([world["a_wait1"], world["a_wait2"], world["a_run"]])
    assert result.already_ended == [] and result.not_found == []
    assert await statuses(tracker, world["a_done"], world["b_wait"]) == [
        "completed",
        "waiting_input",
    ]
    await heard.wait_for(3)
    assert {p for _, p in heard.stops} == {"lead-1"}
    again = await tracker.stop_many(filter={"chatbot_id": "bot-a"}, principal=AGENT)
    assert again == sessiontrack.models.StopManyResult(stopped=[], already_ended=[], not_found=[])


async def test_a_filter_narrows_by_status_and_search_and_never_widens_past_active(
    tracker: sessiontrack.Tracker, world: dict[str, Any]
) -> None:
    running = await tracker.stop_many(filter={"status": "running"})
    assert running.stopped == [world["a_run"]]
    ended = await tracker.stop_many(filter={"filter": "completed", "chatbot_id": "bot-a"})
    assert ended.stopped == ended.already_ended == []
    assert await statuses(tracker, world["a_done"]) == ["completed"]
    by_name = await tracker.stop_many(filter={"search": "bia", "status": ["waiting_input"]})
    assert by_name.stopped == [world["a_wait2"]]


async def test_a_filter_sees_what_the_principal_may_see_and_no_phone_when_masked(
    tracker: sessiontrack.Tracker, world: dict[str, Any]
) -> None:
    mine = await tracker.stop_many(filter={"filter": "active"}, principal=ONLY_A)
    assert sorted(mine.stopped) == sorted([world["a_wait1"], world["a_wait2"], world["a_run"]])
    assert await statuses(tracker, world["b_wait"]) == ["waiting_input"]
    masked = Principal(id="masked", can_see_pii=False)
    probe = await tracker.stop_many(filter={"search": "900000005"}, principal=masked)
    assert probe.stopped == []  # digits of a phone number match nothing for them
    assert await statuses(tracker, world["b_wait"]) == ["waiting_input"]
    named = await tracker.stop_many(filter={"search": "edu"}, principal=masked)
    assert named.stopped == [world["b_wait"]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "ids"),
        ({"ids": [], "filter": {"chatbot_id": "x"}}, "ids"),
        ({"ids": ["not-a-uuid"]}, "ids"),
        ({"ids": "0b6d0ad9-2e7c-4f7a-9c55-2f4b0cf1d8a1"}, "ids"),
        ({"ids": [str(uuid.uuid4()) for _ in range(MAX_STOPS + 1)]}, "ids"),
        ({"filter": {}}, "filter"),
        ({"filter": {"search": "  ", "chatbot_id": None, "status": iter(())}}, "filter"),
        ({"filter": ["chatbot_id"]}, "filter"),
        ({"filter": {"limit": 5}}, "filter.limit"),
        ({"filter": {"principal": AGENT}}, "filter.principal"),
        ({"filter": {"status": "sleeping"}}, "filter.status"),
        ({"filter": {"filter": "dormant"}}, "filter.filter"),
        ({"filter": {"search": "a\x00b"}}, "filter.search"),
        ({"filter": {"path": "start,ask"}}, "filter.path"),
    ],
)
async def test_bad_arguments_are_invalid_parameters_naming_the_field(
    tracker: sessiontrack.Tracker, world: dict[str, Any], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParameter) as raised:
        await tracker.stop_many(**kwargs)
    assert raised.value.field == field
    assert await statuses(tracker, world["a_wait1"], world["b_wait"]) == ["waiting_input"] * 2


async def test_a_filter_matching_more_than_the_cap_stops_nothing(
    tracker: sessiontrack.Tracker, engine: Engine
) -> None:
    engine.register("crowd")
    crowd = [engine.start("crowd", phone=f"+1{i:010d}") for i in range(MAX_STOPS + 1)]
    await tracker.flush()
    with pytest.raises(InvalidParameter) as raised:
        await tracker.stop_many(filter={"chatbot_id": "crowd"})
    assert raised.value.field == "filter" and f"matches {MAX_STOPS + 1}" in raised.value.message
    assert (await tracker.sessions.list(chatbot_id="crowd", filter="active")).total == len(crowd)
    engine.complete(crowd[0])
    await tracker.flush()
    exactly = await tracker.stop_many(filter={"chatbot_id": "crowd", "filter": "active"})
    assert sorted(exactly.stopped) == sorted(crowd[1:])


async def test_a_session_that_ends_before_its_stop_commits_is_already_ended(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager, engine: Engine, heard: Heard
) -> None:
    engine.register("bot-a")
    ending, staying = engine.start("bot-a"), engine.start("bot-a", phone="+1555")
    await tracker.flush()
    pm.hook.sessiontrack_session_completed(session_id=ending, reason="flow_end")  # buffered
    fresh = engine.start("bot-a", phone="+1666")  # reported here, not committed yet
    result = await tracker.stop_many([ending, staying, fresh], principal="ops")
    assert result.stopped == [staying, fresh] and result.already_ended == [ending]
    assert tracker.stats.late == 1
    assert await statuses(tracker, ending, staying, fresh) == ["completed", "stopped", "stopped"]
    await heard.wait_for(2)
    assert sorted(heard.stops) == sorted([(staying, "ops"), (fresh, "ops")])


async def test_the_sync_tracker_stops_many_too(database_url: str, prefix: str) -> None:
    with sessiontrack.SyncTracker(database_url, prefix=prefix, migrate=True) as sync:
        hook = sync.hook
        sids = [sessiontrack.new_session_id() for _ in range(3)]
        for sid in sids:
            hook.sessiontrack_session_started(session_id=sid, chatbot_id="sync-bot")
        sync.flush()
        result = sync.stop_many(sids[:2], principal="ops")
        assert result.stopped == sids[:2]
        assert sync.stop_many(filter={"chatbot_id": "sync-bot"}).stopped == [sids[2]]


# --- POST /stop -----------------------------------------------------------------------------


async def test_post_stop_by_ids_answers_the_three_lists(
    api: httpx.AsyncClient, tracker: sessiontrack.Tracker, world: dict[str, Any], heard: Heard
) -> None:
    unknown = sessiontrack.new_session_id()
    body = {"ids": [world["a_wait1"], world["a_done"], unknown]}
    r = await api.post("/stop", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "stopped": [world["a_wait1"]],
        "alreadyEnded": [world["a_done"]],
        "notFound": [unknown],
    }
    await heard.wait_for(1)
    assert heard.stops == [(world["a_wait1"], "local")]  # the loopback principal
    assert (await stop_event(tracker, world["a_wait1"]))["requested_by"] == "local"


async def test_post_stop_by_filter_takes_the_list_parameters_in_camel_case(
    api: httpx.AsyncClient, tracker: sessiontrack.Tracker, world: dict[str, Any]
) -> None:
    r = await api.post("/stop", json={"filter": {"chatbotId": "bot-a", "status": "waiting_input"}})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["stopped"]) == sorted([world["a_wait1"], world["a_wait2"]])
    assert await statuses(tracker, world["a_run"], world["b_wait"]) == ["running", "waiting_input"]
    listed = (await api.get("/", params={"filter": "active"})).json()["data"]
    assert {s["id"] for s in listed} == {world["a_run"], world["b_wait"]}


async def test_post_stop_by_filter_takes_the_advanced_list_parameters_too(
    api: httpx.AsyncClient, tracker: sessiontrack.Tracker, world: dict[str, Any]
) -> None:
    # a_wait1 and a_wait2 exchanged two messages; a_run none yet
    body = {"filter": {"chatbotId": "bot-a", "minMessages": 2, "hasError": False}}
    r = await api.post("/stop", json=body)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["stopped"]) == sorted([world["a_wait1"], world["a_wait2"]])
    assert await statuses(tracker, world["a_run"]) == ["running"]
    bad = await api.post("/stop", json={"filter": {"minMessages": "two"}})
    assert bad.status_code == 400 and bad.json()["detail"][0]["field"] == "filter.minMessages"
    by_node = await tracker.stop_many(filter={"node_id": "start"})
    assert by_node.stopped == [world["b_wait"]]  # a_run never ran a node


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["ids"]),
        ({"ids": ["nope"]}, ["ids.0"]),
        ({"ids": [str(uuid.uuid4()) for _ in range(MAX_STOPS + 1)]}, ["ids"]),
        ({"ids": [], "filter": {"chatbotId": "bot-a"}}, ["ids"]),
        ({"filter": {}}, ["filter"]),
        ({"filter": {"version": None, "search": ""}}, ["filter"]),
        ({"filter": {"chatbotId": "bot-a", "limit": 5}}, ["filter.limit"]),
        ({"filter": {"endDate": 1.5}}, ["filter.endDate"]),
        ({"ids": "0b6d0ad9-2e7c-4f7a-9c55-2f4b0cf1d8a1"}, ["ids"]),
        ({"filter": {"chatbot_id": "bot-a"}, "reason": "x"}, ["reason"]),
        ({"filter": {"status": "sleeping"}}, ["filter.status"]),
        ({"filter": {"startDate": "yesterday"}}, ["filter.startDate"]),
        ({"filter": {"search": "a\u0000"}}, ["filter.search"]),
        ({"filter": {"path": "start"}}, ["filter.path"]),
        ([], ["body"]),
    ],
)
async def test_post_stop_refuses_bad_bodies_with_400_naming_the_field(
    api: httpx.AsyncClient,
    tracker: sessiontrack.Tracker,
    world: dict[str, Any],
    body: Any,
    fields: list[str],
) -> None:
    r = await api.post("/stop", json=body)
    assert r.status_code == 400, r.text
    assert [d["field"] for d in r.json()["detail"]] == fields
    assert await statuses(tracker, world["a_wait1"], world["b_wait"]) == ["waiting_input"] * 2


async def test_post_stop_wants_a_json_body(
    api: httpx.AsyncClient, world: dict[str, Any], tracker: sessiontrack.Tracker
) -> None:
    form = await api.post("/stop", data={"ids": world["a_wait1"]})  # what a <form> sends
    assert form.status_code == 415
    plain = await api.post(
        "/stop",
        content=f'{{"ids": ["{world["a_wait1"]}"]}}',
        headers={"content-type": "text/plain"},
    )
    assert plain.status_code == 415
    broken = await api.post("/stop", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["detail"][0]["field"] == "body"
    assert await statuses(tracker, world["a_wait1"]) == ["waiting_input"]
    preflight = await api.options(
        "/stop",
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers  # no cross-site JSON POST


class TestTenants:
    @pytest.fixture
    def authenticate(self) -> Any:
        def check(request: Any) -> Principal | None:
            return ONLY_A if request.token == "a-token" else None

        return check

    async def test_others_ids_are_not_found_and_a_filter_sees_only_the_own(
        self, api: httpx.AsyncClient, tracker: sessiontrack.Tracker, world: dict[str, Any]
    ) -> None:
        headers = {"Authorization": "Bearer a-token"}
        assert (await api.post("/stop", json={"ids": []})).status_code == 401
        r = await api.post("/stop", json={"ids": [world["b_wait"]]}, headers=headers)
        assert r.json() == {"stopped": [], "alreadyEnded": [], "notFound": [world["b_wait"]]}
        r = await api.post("/stop", json={"filter": {"filter": "active"}}, headers=headers)
        assert sorted(r.json()["stopped"]) == sorted(
            [world["a_wait1"], world["a_wait2"], world["a_run"]]
        )
        r = await api.post("/stop", json={"filter": {"chatbotId": "bot-b"}}, headers=headers)
        assert r.json()["stopped"] == []
        assert await statuses(tracker, world["b_wait"]) == ["waiting_input"]
