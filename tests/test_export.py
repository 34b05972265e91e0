"""Export and import through the library and the CLI: the round trip (an export re-imported
into an empty database gives identical details), the CSV, filters, progress, keyset batches."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pluggy
import pytest

import sessiontrack
from sessiontrack import InvalidParameter, Principal
from sessiontrack._export import CSV_COLUMNS
from sessiontrack._import import BadExport, import_jsonl
from sessiontrack.store import NotEmpty, SQLAlchemyStore
from tests.conftest import drop_prefixed_tables

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
FLOW = {
    "nodes": [{"id": "ask", "data": {"label": "Ask the name"}}, {"id": "end", "data": {}}],
    "edges": [{"id": "e1", "source": "ask", "target": "end"}],
}


@pytest.fixture
async def other_prefix(database_url: str, prefix: str) -> AsyncIterator[str]:
    """A second set of tables in the same database: the empty one an import writes into."""
    other = prefix + "copy_"
    yield other
    if database_url.startswith("postgresql"):
        await drop_prefixed_tables(database_url, other)


def build(pm: pluggy.PluginManager, n: int = 12) -> list[str]:
    """Sessions of three chatbots (one without a registered flow, one with two flow
    versions), reported interleaved so that their sequence numbers interleave too."""
    hook = pm.hook
    hook.sessiontrack_flow_registered(chatbot_id="sales", name="Sales", flow=FLOW, version="v1")
    hook.sessiontrack_flow_registered(chatbot_id="help", name="Help desk", flow=FLOW)
    ids = [sessiontrack.new_session_id() for _ in range(n)]
    bots = ["sales", "help", "loose"]
    names = ["Ann Lee", "=cmd|' /C calc'!A0", 'Émile, "the" Zola\nII', None]
    for i, sid in enumerate(ids):
        if i == n // 2:  # a second version: later sessions run it
            flow2 = {**FLOW, "nodes": [*FLOW["nodes"], {"id": "extra", "data": {"label": "X"}}]}
            hook.sessiontrack_flow_registered(
                chatbot_id="sales", name="Sales", flow=flow2, version="v2"
            )
        hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=bots[i % 3],
            conversation_id=f"conv-{i // 2}",
            contact={"phone": f"+1555000{i:04d}", "name": names[i % 4]},
            variables={"step": i, "nested": {"a": [1, 2, {"b": None}]}},
            metadata={"channel": "whatsapp"},
            at=T0 + timedelta(minutes=i),
        )
    for round_ in range(3):
        for i, sid in enumerate(ids):
            at = T0 + timedelta(minutes=i, seconds=10 * (round_ + 1))
            hook.sessiontrack_message(
                session_id=sid,
                direction="inbound",
                text=f"hello {round_} ✓",
                message_id=f"wamid.{i}.{round_}",
                at=at,
            )
            hook.sessiontrack_node_executed(
                session_id=sid,
                node_id="ask" if round_ else "start",
                node_type="question",
                duration_ms=1.5 * round_,
                error="boom" if (i + round_) % 5 == 0 else None,
                at=at,
            )
            if i % 2:
                hook.sessiontrack_llm_call(
                    session_id=sid,
                    model="gpt-x",
                    node_id="ask" if round_ else None,
                    provider="openai",
                    input_tokens=10 + round_,
                    output_tokens=3,
                    latency_ms=120.25,
                    cost=0.0001 * (round_ + 1),
                    at=at,
                )
                hook.sessiontrack_tool_call(
                    session_id=sid,
                    name="lookup",
                    node_id="ask",
                    call_id=f"call-{round_}",
                    arguments={"q": ["x", {"deep": [1.5, True]}]},
                    result="ok" if round_ else None,
                    duration_ms=4.0,
                    at=at,
                )
            hook.sessiontrack_message(
                session_id=sid,
                direction="outbound",
                type="interactive",
                text=None,
                payload={"buttons": [{"id": "y", "title": "Yes"}]},
                node_id="ask",
                at=at + timedelta(seconds=1),
            )
    for i, sid in enumerate(ids):
        if i % 4 == 0:
            hook.sessiontrack_variables_changed(session_id=sid, variables={"done": True})
            hook.sessiontrack_session_completed(
                session_id=sid, reason="flow_end", at=T0 + timedelta(minutes=i, seconds=50)
            )
        elif i % 4 == 1:
            hook.sessiontrack_status_changed(
                session_id=sid, status="waiting_input", at=T0 + timedelta(minutes=i, seconds=45)
            )
    return ids


async def details(tracker: sessiontrack.Tracker, ids: list[str]) -> dict[str, Any]:
    out = {}
    for sid in ids:
        d = await tracker.sessions.get(sid, message_limit=10_000, call_limit=None)
        out[sid] = dataclasses.asdict(d)
    return out


async def export_bytes(tracker: sessiontrack.Tracker, **kwargs: Any) -> bytes:
    return b"".join([chunk async for chunk in tracker.sessions.export(**kwargs)])


async def test_jsonl_round_trip_into_an_empty_database_gives_identical_details(
    pm: pluggy.PluginManager,
    tracker: sessiontrack.Tracker,
    database_url: str,
    other_prefix: str,
    tmp_path: Path,
) -> None:
    ids = build(pm)
    await tracker.flush()
    before = await details(tracker, ids)
    assert any(d["llm_call_history"] for d in before.values())
    assert {d["flow_version"] for d in before.values()} >= {"v1", "v2", None}
    body = await export_bytes(tracker, format="jsonl", sort_order="ASC")
    lines = body.splitlines()
    assert len(lines) == len(ids)
    first = json.loads(lines[0])
    assert first["id"] == ids[0] and first["chatbotName"] == "Sales"
    assert first["messages"][0]["channelMessageId"] == "wamid.0.0"
    assert all("seq" in n for n in first["nodeExecutions"])
    path = tmp_path / "sessions.jsonl"
    path.write_bytes(body)
    progress: list[tuple[int, int]] = []
    async with sessiontrack.Tracker(database_url, prefix=other_prefix, migrate=True) as copy:
        n = await import_jsonl(
            copy.store, path, batch_size=5, progress=lambda d, t: progress.append((d, t))
        )
        assert n == len(ids)
        assert progress == [(5, 12), (10, 12), (12, 12)]
        after = await details(copy, ids)
        assert after == before
        # the list and the counters agree as well
        page = await copy.sessions.list(limit=100)
        assert page.total == len(ids)
        assert (await copy.sessions.stats()).total == len(ids)
        again = await export_bytes(copy, format="jsonl", sort_order="ASC")
        assert again == body
        # the search indexes hold the imported messages and contacts as the writer's would
        texts = [m["text"] for d in before.values() for m in d["messages"] if m["text"]]
        word = texts[0].split()[0]
        found = await tracker.sessions.search_messages(word, limit=100)
        copied = await copy.sessions.search_messages(word, limit=100)
        assert found.data and [(m.session_id, m.message_id) for m in copied.data] == [
            (m.session_id, m.message_id) for m in found.data
        ]
        name = next(d["customer_name"] for d in before.values() if d["customer_name"])
        by_name = await tracker.sessions.list(search=name[:4], limit=100)
        copied_name = await copy.sessions.list(search=name[:4], limit=100)
        assert by_name.data and [x.id for x in copied_name.data] == [x.id for x in by_name.data]
        by_word = await tracker.sessions.list(q=word, limit=100)
        assert [x.id for x in (await copy.sessions.list(q=word, limit=100)).data] == [
            x.id for x in by_word.data
        ]
        with pytest.raises(NotEmpty):
            await import_jsonl(copy.store, path)
        # new reports continue after the imported sequence numbers
        copy.plugin_manager.hook.sessiontrack_message(
            session_id=ids[1], direction="inbound", text="later"
        )
        await copy.flush()
        latest = (await copy.sessions.messages(ids[1]))[-1]
        assert latest.text == "later"
        assert latest.id > max(m["id"] for d in before.values() for m in d["messages"])


async def test_csv_has_one_row_per_list_item_and_neutralises_formulas(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    ids = build(pm)
    await tracker.flush()
    body = (await export_bytes(tracker, format="csv")).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert list(rows[0]) == CSV_COLUMNS
    page = await tracker.sessions.list(limit=100)
    assert [r["id"] for r in rows] == [s.id for s in page.data]  # newest first, as the list
    by_id = {r["id"]: r for r in rows}
    for s in page.data:
        r = by_id[s.id]
        assert r["status"] == s.status and int(r["messageCount"]) == s.message_count
        assert r["customerPhone"] == s.customer_phone  # a leading + stays a phone number
        end = s.completed_at or s.updated_at
        assert float(r["durationSeconds"]) == round((end - s.started_at).total_seconds(), 3)
        assert r["isActive"] == ("true" if s.is_active else "false")
        assert r["startedAt"].endswith("Z")
    names = {r["customerName"] for r in rows}
    assert "'=cmd|' /C calc'!A0" in names  # never a formula in a spreadsheet
    assert 'Émile, "the" Zola\nII' in names  # quoted, newline and all
    assert len(ids) == len(rows)


async def test_export_applies_the_list_filters_tenants_and_masking(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    build(pm)
    await tracker.flush()

    async def exported(**kwargs: Any) -> list[dict[str, str]]:
        body = (await export_bytes(tracker, format="csv", **kwargs)).decode()
        return list(csv.DictReader(io.StringIO(body)))

    for q in (
        {"chatbot_id": "sales"},
        {"filter": "active"},
        {"status": "completed"},
        {"search": "ann"},
        {"start_date": T0 + timedelta(minutes=3), "end_date": T0 + timedelta(minutes=8)},
        {"version": "v2"},
        {"conversation_id": "conv-2"},
        # the advanced filters apply as they do to the list
        {"has_error": True},
        {"node_id": "start", "completion_reason": "flow_end"},
        {"min_messages": 6, "max_messages": 6},
        {"variable": ["step:3"]},
        {"variable": ["done:true", "nested:x"]},
    ):
        listed = await tracker.sessions.list(limit=100, **q)
        assert [r["id"] for r in await exported(**q)] == [s.id for s in listed.data], q
    asc = await exported(sort_by="updatedAt", sort_order="ASC")
    assert [r["updatedAt"] for r in asc] == sorted(r["updatedAt"] for r in asc)
    seller = Principal(id="s", chatbot_ids=frozenset({"sales"}), can_see_pii=False)
    rows = await exported(principal=seller)
    assert rows and {r["chatbotId"] for r in rows} == {"sales"}
    assert all("0" not in r["customerPhone"] for r in rows)  # hidden without a mask
    assert await exported(principal=seller, chatbot_id="help") == []
    assert await exported(principal=seller, search="+1555") == []  # no probing phones
    masked = await exported(principal=seller, mask=lambda p: p[:2] + "***")
    assert {r["customerPhone"] for r in masked} == {"+1***"}
    body = await export_bytes(tracker, format="jsonl", principal=seller)
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines and all(line["customerPhone"] is None for line in lines)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"sort_by": "name"}, "sortBy"),
        ({"sort_order": "UP"}, "sortOrder"),
        ({"status": "sleeping"}, "status"),
        ({"start_date": datetime(2026, 1, 1)}, "startDate"),
        ({"path": "a"}, "path"),
    ],
)
async def test_bad_export_arguments_name_the_field_before_any_read(
    tracker: sessiontrack.Tracker, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParameter) as err:
        tracker.sessions.export(**kwargs)
    assert err.value.field == field


async def test_batches_are_keyset_pages_that_miss_and_repeat_nothing(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    ids = []
    for i in range(23):  # equal start times: the id breaks the tie across batch edges
        sid = sessiontrack.new_session_id()
        ids.append(sid)
        pm.hook.sessiontrack_session_started(
            session_id=sid, chatbot_id="b", at=T0 + timedelta(minutes=i // 4)
        )
    await tracker.flush()
    store = tracker.store
    f = tracker.sessions.session_filter()
    from sessiontrack.store import ExportOrder

    for descending in (True, False):
        order = ExportOrder(descending=descending)
        batches = [b async for b in store.iter_summaries(f, order, batch_size=5)]
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        got = [row[0] for b in batches for row in b]
        listed = await tracker.sessions.list(limit=100, sort_order="DESC" if descending else "ASC")
        assert got == [s.id for s in listed.data]
        # each row is a list item's fields in order, as typed there
        as_rows = [tuple(getattr(s, f.name) for f in dataclasses.fields(s)) for s in listed.data]
        assert [row for b in batches for row in b] == as_rows
        full = [fs.detail.id async for b in store.iter_details(f, order, batch_size=4) for fs in b]
        assert full == got


async def test_import_refuses_a_bad_line_and_writes_nothing(
    database_url: str, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x"}\n')
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=True)
    try:
        with pytest.raises(BadExport, match="line 1"):
            await import_jsonl(store, path)
        assert await store.is_empty()
    finally:
        await store.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiontrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_export_with_progress_then_import(
    pm: pluggy.PluginManager,
    tracker: sessiontrack.Tracker,
    database_url: str,
    prefix: str,
    other_prefix: str,
    tmp_path: Path,
) -> None:
    ids = build(pm)
    await tracker.flush()
    before = await details(tracker, ids)
    out = tmp_path / "all.jsonl"
    common = ["--database-url", database_url, "--prefix", prefix]
    done = run("export", *common, "--format", "jsonl", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 12 sessions…\n" in done.stderr  # the progress line (\r read as \n)
    assert f"exported 12 sessions as jsonl to {out}" in done.stderr
    assert not out.with_name("all.jsonl.partial").exists()
    csv_run = run("export", *common, "--format", "csv", "--chatbot-id", "help", "--quiet")
    assert csv_run.returncode == 0, csv_run.stderr
    rows = list(csv.DictReader(io.StringIO(csv_run.stdout)))
    assert rows and {r["chatbotId"] for r in rows} == {"help"}
    advanced = run(
        "export", *common, "--format", "csv", "--variable", "step:3", "--has-error", "true"
    )
    assert advanced.returncode == 0, advanced.stderr
    assert [r["id"] for r in csv.DictReader(io.StringIO(advanced.stdout))] == [ids[3]]
    bad = run("export", *common, "--format", "csv", "--status", "sleeping")
    assert bad.returncode == 2 and "--status: unknown status 'sleeping'" in bad.stderr
    other = other_prefix
    imported = run("import", "--database-url", database_url, "--prefix", other, str(out))
    assert imported.returncode == 0, imported.stderr
    assert "imported 12 of 12 sessions…" in imported.stderr
    assert "imported 12 sessions" in imported.stdout
    again = run("import", "--database-url", database_url, "--prefix", other, str(out))
    assert again.returncode == 2 and "empty" in again.stderr
    async with sessiontrack.Tracker(database_url, prefix=other) as copy:
        assert await details(copy, ids) == before
