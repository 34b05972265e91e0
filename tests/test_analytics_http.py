"""``GET /analytics/*`` (the HTTP face of ``tracker.analytics``), its CSV, the
``analytics export`` command and the list filters ``path`` and ``version``: a real uvicorn
under a prefix, on SQLite and PostgreSQL, and hypothesis against the app in-process."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pluggy
import pytest
from anyio.from_thread import start_blocking_portal
from conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from web_helpers.engine import FLOW, Engine
from web_helpers.fixtures import api, app_options, engine, live_url, web_app
from web_helpers.live import settle

import sessiontrack
from sessiontrack.analytics import _csv
from sessiontrack.analytics._rollup import MAX_PATH
from sessiontrack.cli import main
from sessiontrack.web import create_app, schemas

__all__ = ["api", "app_options", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

ADMIN = sessiontrack.Principal(id="admin")
TENANT_A = sessiontrack.Principal(id="a-user", chatbot_ids=frozenset({"bot-a"}))
TOKENS = {"admin": ADMIN, "tenant-a": TENANT_A}
REPORTS = ("summary", "nodes", "paths", "funnel")
MODELS: dict[str, type[BaseModel]] = {
    "summary": schemas.AnalyticsSummary,
    "nodes": schemas.AnalyticsNodes,
    "paths": schemas.AnalyticsPaths,
    "funnel": schemas.AnalyticsFunnel,
    "versions": schemas.AnalyticsVersions,
}
EXITS = ("completed", "expired", "stopped", "active")
PATH_A = ["start", "ask", "end"]
PATH_B = ["start", "ask"]


def check(request: Any) -> sessiontrack.Principal | None:
    return TOKENS.get(request.token or "")


@pytest.fixture
def authenticate() -> Any:
    return check


def bearer(token: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def today_range() -> dict[str, str]:
    """Yesterday to tomorrow (UTC): the world's sessions, whatever the clock says."""
    today = datetime.now(UTC).date()
    return {
        "startDate": (today - timedelta(days=1)).isoformat(),
        "endDate": (today + timedelta(days=1)).isoformat(),
    }


def run(engine: Engine, chatbot_id: str, nodes: list[str], status: str | None) -> str:
    sid = engine.start(chatbot_id)
    for node in nodes:
        engine.node(sid, node)
        if node == "ask":
            engine.wait_input(sid)
            engine.message(sid, "Ana", direction="inbound")
    if status is not None:
        engine.hook.sessiontrack_session_completed(
            session_id=sid, status=status, reason="flow_end" if status == "completed" else None
        )
    return sid


@pytest.fixture
async def world(engine: Engine, tracker: sessiontrack.Tracker) -> dict[str, Any]:
    """bot-a at v1: two sessions along start>ask>end (completed), one waiting at
    start>ask, one expired at start; then v2 with one at start>end; bot-b one session."""
    engine.hook.sessiontrack_flow_registered(
        chatbot_id="bot-a", name="Alpha", flow=FLOW, version="v1"
    )
    engine.register("bot-b", "Beta")
    ids = {
        "a1": run(engine, "bot-a", PATH_A, "completed"),
        "a2": run(engine, "bot-a", PATH_A, "completed"),
        "b": run(engine, "bot-a", PATH_B, None),
        "c": run(engine, "bot-a", ["start"], "expired"),
    }
    await settle(tracker)
    engine.hook.sessiontrack_flow_registered(
        chatbot_id="bot-a", name="Alpha", flow=FLOW, version="v2"
    )
    ids["v2"] = run(engine, "bot-a", ["start", "end"], "completed")
    ids["other"] = run(engine, "bot-b", PATH_A, "completed")
    await settle(tracker)
    return ids


def _service_kwargs(report: str, query: dict[str, Any]) -> dict[str, Any]:
    names = {"startDate": "start_date", "endDate": "end_date"}
    kwargs = {names.get(k, k): v for k, v in query.items() if k not in ("chatbotId", "format")}
    if "steps" in kwargs:
        kwargs["steps"] = kwargs["steps"].split(",")
    if "limit" in kwargs:
        kwargs["limit"] = int(kwargs["limit"])
    return kwargs


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("summary", {}),
    ("summary", {"version": "all"}),
    ("summary", {"version": "v1", "tz": "America/Sao_Paulo"}),
    ("nodes", {"version": "v1"}),
    ("nodes", {"version": "all"}),
    ("paths", {"version": "v1", "limit": "2"}),
    ("paths", {"version": "all"}),
    ("funnel", {"version": "v1", "steps": "start,ask,end"}),
    ("funnel", {"version": "all", "steps": "ask"}),
    ("summary", {"version": "no-such-version"}),
]


async def test_each_route_answers_the_service_figures(
    api: httpx.AsyncClient, tracker: sessiontrack.Tracker, world: dict[str, Any]
) -> None:
    for report, extra in QUERIES:
        query = {"chatbotId": "bot-a", **today_range(), **extra}
        r = await api.get(f"/analytics/{report}", params=query, headers=bearer())
        assert r.status_code == 200, (report, extra, r.text)
        assert r.headers["content-type"] == "application/json"
        method = getattr(tracker.analytics, report)
        expected = await method("bot-a", **_service_kwargs(report, query), principal=ADMIN)
        assert r.json() == expected, (report, extra)
        MODELS[report].model_validate(r.json())  # the documented shape, no extra keys
    r = await api.get("/analytics/versions", params={"chatbotId": "bot-a"}, headers=bearer())
    assert r.status_code == 200
    assert r.json() == await tracker.analytics.versions("bot-a")
    schemas.AnalyticsVersions.model_validate(r.json())
    assert r.json()["current"] == "v2"
    assert [v["version"] for v in r.json()["versions"]] == ["v2", "v1"]
    assert [v["sessions"] for v in r.json()["versions"]] == [1, 4]


async def test_the_figures_are_the_worlds(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    """A few figures known from the world itself, so equal-to-the-service is not all."""
    query = {"chatbotId": "bot-a", "version": "v1", **today_range()}
    summary = (await api.get("/analytics/summary", params=query, headers=bearer())).json()
    assert summary["sessions"] == 4 and summary["version"] == "v1"
    assert summary["byStatus"]["completed"] == 2 and summary["byStatus"]["expired"] == 1
    paths = (await api.get("/analytics/paths", params=query, headers=bearer())).json()
    by_nodes = {tuple(p["nodes"]): p["sessions"] for p in paths["paths"]}
    assert by_nodes == {tuple(PATH_A): 2, tuple(PATH_B): 1, ("start",): 1}
    steps = {"steps": "start,ask,end", **query}
    funnel = (await api.get("/analytics/funnel", params=steps, headers=bearer())).json()
    assert [s["sessions"] for s in funnel["steps"]] == [4, 3, 2]


BAD = [
    ("summary", {}, "chatbotId"),
    ("summary", {"chatbotId": ""}, "chatbotId"),
    ("summary", {"chatbotId": "bot-a", "colour": "red"}, "colour"),
    ("summary", {"chatbotId": "bot-a", "startDate": "yesterday"}, "startDate"),
    ("summary", {"chatbotId": "bot-a", "startDate": "2026-13-01"}, "startDate"),
    ("nodes", {"chatbotId": "bot-a", "endDate": "2026-02-30"}, "endDate"),
    ("summary", {"chatbotId": "bot-a", "endDate": "0001-01-03"}, "startDate"),
    ("nodes", {"chatbotId": "bot-a", "endDate": "9999-12-31", "tz": "Asia/Kolkata"}, "endDate"),
    ("nodes", {"chatbotId": "bot-a", "startDate": "2026-05-02", "endDate": "2026-04-30"}, None),
    ("paths", {"chatbotId": "bot-a", "startDate": "2024-01-01", "endDate": "2026-01-01"}, None),
    ("summary", {"chatbotId": "bot-a", "tz": "Mars/Olympus_Mons"}, "tz"),
    ("summary", {"chatbotId": "bot-a", "tz": "../../etc/passwd"}, "tz"),
    ("summary", {"chatbotId": "bot-a", "format": "xml"}, "format"),
    ("summary", {"chatbotId": "bot-a", "version": "a\x00b"}, "version"),
    ("paths", {"chatbotId": "bot-a", "limit": "0"}, "limit"),
    ("paths", {"chatbotId": "bot-a", "limit": "101"}, "limit"),
    ("paths", {"chatbotId": "bot-a", "limit": "ten"}, "limit"),
    ("funnel", {"chatbotId": "bot-a"}, "steps"),
    ("funnel", {"chatbotId": "bot-a", "steps": "a,,b"}, "steps"),
    ("funnel", {"chatbotId": "bot-a", "steps": ",".join(["n"] * 21)}, "steps"),
    ("funnel", {"chatbotId": "bot-a", "steps": "start", "limit": "3"}, "limit"),
    ("versions", {}, "chatbotId"),
    ("versions", {"chatbotId": "bot-a", "version": "v1"}, "version"),
]


@pytest.mark.parametrize(("report", "query", "field"), BAD)
async def test_a_bad_parameter_is_400_naming_it(
    api: httpx.AsyncClient, world: dict[str, Any], report: str, query: dict[str, str], field: Any
) -> None:
    r = await api.get(f"/analytics/{report}", params=query, headers=bearer())
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid parameter"
    fields = [d["field"] for d in body["detail"]]
    # a range's two ends are refused together: either end may be named
    assert fields == [field] if field else fields in (["startDate"], ["endDate"]), body
    assert all(d["message"] for d in body["detail"])


@pytest.mark.parametrize("report", [*REPORTS, "versions"])
async def test_without_credentials_is_401(
    api: httpx.AsyncClient, world: dict[str, Any], report: str
) -> None:
    query = {"chatbotId": "bot-a", "steps": "start"} if report == "funnel" else {}
    for headers in ({}, bearer("wrong")):
        r = await api.get(f"/analytics/{report}", params=query, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("report", [*REPORTS, "versions"])
async def test_another_tenants_chatbot_is_404_like_an_unknown_one(
    api: httpx.AsyncClient, world: dict[str, Any], report: str
) -> None:
    steps = {"steps": "start"} if report == "funnel" else {}
    mine = await api.get(
        f"/analytics/{report}", params={"chatbotId": "bot-a", **steps}, headers=bearer("tenant-a")
    )
    assert mine.status_code == 200, mine.text
    theirs = await api.get(
        f"/analytics/{report}", params={"chatbotId": "bot-b", **steps}, headers=bearer("tenant-a")
    )
    unknown = await api.get(
        f"/analytics/{report}", params={"chatbotId": "bot-z", **steps}, headers=bearer()
    )
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == {"error": "chatbot bot-b not found", "detail": []}
    assert unknown.json() == {"error": "chatbot bot-z not found", "detail": []}


# --- CSV --------------------------------------------------------------------------------


def _number(text: str) -> Any:
    if text == "":
        return None
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _text(text: str) -> str | None:
    return None if text == "" else text.removeprefix("'")


def parse_back(report: str, text: str) -> dict[str, Any]:
    """A CSV report read with the csv module, rebuilt into the JSON answer's figures."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if report == "summary":
        return {r["metric"]: r["value"] for r in rows}
    if report == "paths":
        return {
            "paths": [
                {
                    "nodes": r["nodes"].split(_csv.PATH_SEPARATOR),
                    "sessions": int(r["sessions"]),
                    "share": _number(r["share"]),
                    "completionRate": _number(r["completionRate"]),
                    "duration": {"p50": _number(r["duration.p50"])},
                }
                for r in rows
            ]
        }
    if report == "funnel":
        return {
            "steps": [
                {
                    "nodeId": _text(r["nodeId"]),
                    "label": _text(r["label"]),
                    "sessions": int(r["sessions"]),
                    "conversion": _number(r["conversion"]),
                    "overall": _number(r["overall"]),
                    "timeFromPrevious": {
                        "p50": _number(r["timeFromPrevious.p50"]),
                        "sessions": int(r["timeFromPrevious.sessions"]),
                    },
                }
                for r in rows
            ]
        }
    nodes = [
        {
            "nodeId": _text(r["nodeId"]),
            "label": _text(r["label"]),
            "type": _text(r["type"]),
            "sessions": int(r["sessions"]),
            "visits": int(r["visits"]),
            "exits": {k: int(r[f"exits.{k}"]) for k in EXITS},
            "dropOffRate": _number(r["dropOffRate"]),
            "botTime": {q: _number(r[f"botTime.{q}"]) for q in ("p50", "p90")},
            "waitTime": {q: _number(r[f"waitTime.{q}"]) for q in ("p50", "p90")},
            "errors": int(r["errors"]),
        }
        for r in rows
        if r["kind"] == "node"
    ]
    edges = [
        {
            "source": _text(r["source"]),
            "target": _text(r["target"]),
            "sessions": int(r["sessions"]),
            "share": _number(r["share"]),
        }
        for r in rows
        if r["kind"] == "edge"
    ]
    return {"nodes": nodes, "edges": edges}


def json_figures(report: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The part of a JSON answer the CSV carries, as the CSV carries it."""
    if report == "summary":
        figures = {k: v for k, v in answer.items() if k != "daily"}
        duration = dict(figures["duration"])
        histogram = duration.pop("histogram")
        flat = _csv.flatten({**figures, "duration": duration})
        for bucket in histogram:
            le = "inf" if bucket["le"] is None else bucket["le"]
            flat[f"duration.histogram.{le}"] = bucket["sessions"]
        for day in answer["daily"]:
            flat.update({f"daily.{day['date']}.{k}": v for k, v in day.items() if k != "date"})
        return {k: _csv.cell(v) for k, v in flat.items()}
    if report == "paths":
        return {"paths": answer["paths"]}
    if report == "funnel":
        return {"steps": answer["steps"]}
    return {"nodes": answer["nodes"], "edges": answer["edges"]}


async def test_csv_parses_back_to_the_json_figures(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    for report, extra in QUERIES:
        query = {"chatbotId": "bot-a", **today_range(), **extra}
        answer = (await api.get(f"/analytics/{report}", params=query, headers=bearer())).json()
        r = await api.get(
            f"/analytics/{report}", params={**query, "format": "csv"}, headers=bearer()
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        disposition = r.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="analytics-bot-a-' + report)
        assert disposition.endswith('.csv"')
        assert r.text == getattr(_csv, f"{report}_csv")(answer)
        assert parse_back(report, r.text) == json_figures(report, answer), (report, extra)
    r = await api.get("/analytics/versions", params={"chatbotId": "bot-a", "format": "csv"})
    assert r.status_code == 401  # versions takes no format: checked after credentials
    r = await api.get(
        "/analytics/versions", params={"chatbotId": "bot-a", "format": "csv"}, headers=bearer()
    )
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "format"


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    answer = {
        "steps": [
            {
                "nodeId": "=HYPERLINK(1)",
                "label": "@cmd",
                "sessions": 3,
                "conversion": 0.5,
                "overall": None,
                "timeFromPrevious": {"p50": 1.25, "sessions": 3},
            }
        ]
    }
    rows = list(csv.reader(io.StringIO(_csv.funnel_csv(answer), newline="")))
    assert rows == [
        list(_csv.STEP_COLUMNS),
        ["1", "'=HYPERLINK(1)", "'@cmd", "3", "0.5", "", "1.25", "3"],
    ]
    assert parse_back("funnel", _csv.funnel_csv(answer)) == {
        "steps": [{**answer["steps"][0], "nodeId": "=HYPERLINK(1)", "label": "@cmd"}]
    }


# --- the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_cli_export_writes_what_the_route_answers(
    api: httpx.AsyncClient,
    world: dict[str, Any],
    database_url: str,
    prefix: str,
    tmp_path: Path,
    fmt: str,
) -> None:
    dates = today_range()
    for report, extra in QUERIES:
        query = {"chatbotId": "bot-a", **dates, **extra, "format": fmt}
        r = await api.get(f"/analytics/{report}", params=query, headers=bearer())
        out = tmp_path / f"{report}.{fmt}"
        argv = [
            "analytics",
            "export",
            "--database-url",
            database_url,
            "--prefix",
            prefix,
            "--chatbot",
            "bot-a",
            "--report",
            report,
            "--start-date",
            dates["startDate"],
            "--end-date",
            dates["endDate"],
            "--format",
            fmt,
            "--output",
            str(out),
        ]
        for name in ("version", "tz", "steps", "limit"):
            if name in extra:
                argv += [f"--{name}", extra[name]]
        assert await anyio.to_thread.run_sync(main, argv) == 0
        written = out.read_bytes().decode("utf-8")
        if fmt == "json":
            assert json.loads(written) == r.json()
        else:
            assert written == r.text


async def test_cli_export_refusals_are_one_line(
    world: dict[str, Any], database_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["analytics", "export", "--database-url", database_url, "--prefix", prefix]
    cases = [
        (["--chatbot", "bot-a", "--report", "funnel"], "--steps"),
        (["--chatbot", "bot-a", "--report", "summary", "--limit", "3"], "--limit"),
        (["--chatbot", "bot-a", "--report", "paths", "--limit", "0"], "--limit"),
        (["--chatbot", "bot-a", "--report", "summary", "--tz", "Nowhere/City"], "--tz"),
        (["--chatbot", "bot-z", "--report", "summary"], "bot-z"),
    ]
    for argv, named in cases:
        assert await anyio.to_thread.run_sync(main, base + argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("sessiontrack: error: ") and named in err, err
        assert err.count("\n") == 1


async def test_cli_export_to_stdout(
    world: dict[str, Any], database_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["analytics", "export", "--database-url", database_url, "--prefix", prefix]
    argv += ["--chatbot", "bot-a", "--report", "paths", "--version", "v1"]
    assert await anyio.to_thread.run_sync(main, argv) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["nodes"]: r["sessions"] for r in rows} == {
        "start > ask > end": "2",
        "start > ask": "1",
        "start": "1",
    }


# --- the list filter path -----------------------------------------------------------------


async def _listed(api: httpx.AsyncClient, url: str, **params: str) -> set[str]:
    r = await api.get(url, params={"limit": "100", **params}, headers=bearer())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["data"])
    return {s["id"] for s in body["data"]}


async def test_the_path_filter_lists_exactly_the_sessions_on_that_path(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    w = world
    assert await _listed(api, "/", chatbotId="bot-a", path="start,ask,end") == {w["a1"], w["a2"]}
    assert await _listed(api, "/", chatbotId="bot-a", path="start,ask") == {w["b"]}
    assert await _listed(api, "/", chatbotId="bot-a", path="start") == {w["c"]}
    assert await _listed(api, "/", chatbotId="bot-a", path="start,end") == {w["v2"]}
    assert await _listed(api, "/", chatbotId="bot-b", path="start,ask,end") == {w["other"]}
    assert await _listed(api, "/chatbot/bot-a", path="start,ask,end") == {w["a1"], w["a2"]}
    assert await _listed(api, "/", chatbotId="bot-a", path="ask,end") == set()
    assert await _listed(api, "/", chatbotId="bot-a", path="start,ask", status="completed") == set()
    # a path of the paths report links to exactly its sessions
    query = {"chatbotId": "bot-a", "version": "all", **today_range()}
    paths = (await api.get("/analytics/paths", params=query, headers=bearer())).json()
    for p in paths["paths"]:
        listed = await _listed(api, "/", chatbotId="bot-a", path=",".join(p["nodes"]))
        assert len(listed) == p["sessions"], p


async def test_the_path_filter_keeps_tenants_apart_and_needs_a_chatbot(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    r = await api.get(
        "/", params={"chatbotId": "bot-b", "path": "start,ask,end"}, headers=bearer("tenant-a")
    )
    assert r.status_code == 200 and r.json()["total"] == 0
    for query in ({"path": "start"}, {"path": "start,,end", "chatbotId": "bot-a"}):
        r = await api.get("/", params=query, headers=bearer())
        assert r.status_code == 400, r.text
        assert [d["field"] for d in r.json()["detail"]] == ["path"]


async def test_the_query_service_takes_a_path_as_a_list(
    tracker: sessiontrack.Tracker, world: dict[str, Any]
) -> None:
    page = await tracker.sessions.list(chatbot_id="bot-a", path=PATH_B)
    assert [s.id for s in page.data] == [world["b"]]
    with pytest.raises(sessiontrack.InvalidParameter) as err:
        await tracker.sessions.list(path=PATH_B)
    assert err.value.field == "path"


async def test_the_version_filter_keeps_one_versions_sessions(
    api: httpx.AsyncClient, tracker: sessiontrack.Tracker, engine: Engine, world: dict[str, Any]
) -> None:
    w = world
    # A v2 session on v1's most common path: the path alone lists both versions' sessions.
    late = run(engine, "bot-a", PATH_A, "completed")
    await settle(tracker)
    v1 = {w["a1"], w["a2"], w["b"], w["c"]}
    assert await _listed(api, "/", chatbotId="bot-a", version="v1") == v1
    assert await _listed(api, "/", chatbotId="bot-a", version="v2") == {w["v2"], late}
    assert await _listed(api, "/chatbot/bot-a", version="v2") == {w["v2"], late}
    assert await _listed(api, "/", version="v1") == v1  # bot-b's flow has no version v1
    assert await _listed(api, "/", chatbotId="bot-a", version="v3") == set()
    on_a = {"chatbotId": "bot-a", "path": ",".join(PATH_A)}
    assert await _listed(api, "/", **on_a) == {w["a1"], w["a2"], late}
    assert await _listed(api, "/", **on_a, version="v1") == {w["a1"], w["a2"]}
    assert await _listed(api, "/", **on_a, version="v2") == {late}
    assert await _listed(api, "/", **on_a, version="v1", status="running") == set()
    # Each version's top paths link to exactly their sessions.
    for version in ("v1", "v2"):
        query = {"chatbotId": "bot-a", "version": version, **today_range()}
        paths = (await api.get("/analytics/paths", params=query, headers=bearer())).json()
        assert paths["paths"]
        for p in paths["paths"]:
            nodes = ",".join(p["nodes"])
            listed = await _listed(api, "/", chatbotId="bot-a", path=nodes, version=version)
            assert len(listed) == p["sessions"], (version, p)
    # Tenants stay apart; an empty or NUL version is refused naming it.
    r = await api.get("/", params={"version": "v1"}, headers=bearer("tenant-a"))
    assert r.status_code == 200 and {s["id"] for s in r.json()["data"]} == v1
    for bad in ("", "v\x001"):
        r = await api.get("/", params={"chatbotId": "bot-a", "version": bad}, headers=bearer())
        assert r.status_code == 400, r.text
        assert [d["field"] for d in r.json()["detail"]] == ["version"]
    # The query service alike.
    page = await tracker.sessions.list(chatbot_id="bot-a", path=PATH_A, version="v2")
    assert [s.id for s in page.data] == [late] and page.total == 1
    with pytest.raises(sessiontrack.InvalidParameter) as err:
        await tracker.sessions.list(version=2)  # type: ignore[arg-type]
    assert err.value.field == "version"


# --- any query string: 200, 400 naming a field, or 404 for another chatbot ----------------


@pytest.fixture
def fuzz_get(backend: str, tmp_path: Path, prefix: str) -> Iterator[Any]:
    """A blocking ``get(url)`` into the sub-app in-process, for hypothesis."""
    with start_blocking_portal() as portal:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}"
        else:
            portal.call(require_postgres)
            url = POSTGRES_URL
        try:
            tracker = sessiontrack.Tracker(url, prefix=prefix, migrate=True)
            with portal.wrap_async_context_manager(tracker):
                pm = pluggy.PluginManager("sessiontrack")
                pm.add_hookspecs(sessiontrack.hookspecs)
                pm.register(tracker)
                engine = Engine(pm)
                engine.register("bot-a", "Alpha")
                run(engine, "bot-a", PATH_A, "completed")
                run(engine, "bot-a", PATH_B, None)
                portal.call(tracker.flush)
                app = create_app(tracker, authenticate=lambda _: ADMIN)
                client = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://test"
                )
                with portal.wrap_async_context_manager(client):
                    yield lambda url: portal.call(partial(client.get, url))
        finally:
            if backend != "sqlite":
                portal.call(drop_prefixed_tables, POSTGRES_URL, prefix)


NAMES = ["chatbotId", "version", "startDate", "endDate", "tz", "format", "limit", "steps"]
_day = st.dates().map(lambda d: d.isoformat())
_moment = st.datetimes().map(lambda d: d.isoformat())
_edge = st.sampled_from(
    [
        "0001-01-01",
        "0001-01-06",
        "0001-01-01T00:00",
        "0001-01-01T00:00+00:00",
        "0001-01-01T10:00+14:00",
        "9999-12-31",
        "9999-12-31T23:59",
        "9999-12-31T23:59-12:00",
    ]
)
PLAUSIBLE = {
    "chatbotId": st.sampled_from(["bot-a", "bot-a", "bot-z", ""]),
    "version": st.sampled_from(["all", "", "v9"]),
    "startDate": _day | _moment | _edge,
    "endDate": _day | _moment | _edge,
    "tz": st.sampled_from(["UTC", "Asia/Kolkata", "Pacific/Kiritimati", "Etc/GMT+12", "utc"]),
    "format": st.sampled_from(["json", "csv", "CSV"]),
    "limit": st.integers(-5, 200).map(str),
    "steps": st.lists(st.sampled_from(["start", "ask", "end", "x", ""]), max_size=22).map(",".join),
}
ANY_TEXT = st.text(st.characters(codec=None), max_size=30) | st.binary(max_size=20)


def _percent(value: str | bytes) -> str:
    from urllib.parse import quote_from_bytes

    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(raw, safe="")


@st.composite
def query_strings(draw: st.DrawFn) -> tuple[str, set[str]]:
    names = draw(st.lists(st.sampled_from(NAMES) | ANY_TEXT, max_size=6))
    parts, sent = [], set()
    for name in names:
        plausible = PLAUSIBLE.get(name) if isinstance(name, str) else None
        value = draw(plausible | ANY_TEXT if plausible is not None else ANY_TEXT)
        parts.append(f"{_percent(name)}={_percent(value)}")
        sent.add(_as_named(name))
    if draw(st.booleans()):
        parts.insert(0, "chatbotId=bot-a")
        sent.add("chatbotId")
    return "&".join(parts), sent


def test_any_query_string_is_200_400_naming_a_field_or_404(fuzz_get: Any) -> None:
    @given(report=st.sampled_from([*REPORTS, "versions"]), query=query_strings())
    @settings(max_examples=300, deadline=None, database=None)
    def check_one(report: str, query: tuple[str, set[str]]) -> None:
        qs, sent = query
        r = fuzz_get(f"/analytics/{report}?{qs}")
        assert r.status_code in (200, 400, 404), (r.status_code, qs, r.text)
        if r.status_code == 400:
            body = r.json()
            assert body["error"] == "invalid parameter", r.text
            fields = [d["field"] for d in body["detail"]]
            assert fields and all(d["message"] for d in body["detail"]), r.text
            assert set(fields) <= sent | {"chatbotId", "steps"}, (qs, fields)
        elif r.status_code == 404:
            assert set(r.json()) == {"error", "detail"}, r.text

    check_one()


def _as_named(name: str | bytes) -> str:
    """How a 400 names a parameter sent as ``name`` (an empty name: "request")."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogatepass")
    text = raw.decode("utf-8", "surrogateescape")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") or "request"


async def test_a_path_of_max_path_nodes_also_finds_the_longer_paths_it_heads(
    api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    """The paths report lists a truncated path by the nodes it kept: its link must find
    the sessions whose path went on past them, as well as one that stopped right there."""
    engine.register("bot-a", "Alpha")
    nodes = [f"n{i}" for i in range(MAX_PATH)]
    exact = run(engine, "bot-a", nodes, "completed")
    longer = run(engine, "bot-a", [*nodes, "more", "still more"], "completed")
    shorter = run(engine, "bot-a", nodes[:-1], "completed")
    await settle(tracker)
    assert await _listed(api, "/", chatbotId="bot-a", path=",".join(nodes)) == {exact, longer}
    assert await _listed(api, "/", chatbotId="bot-a", path=",".join(nodes[:-1])) == {shorter}
    r = await api.get(
        "/", params={"chatbotId": "bot-a", "path": ",".join([*nodes, "more"])}, headers=bearer()
    )
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "path"
