"""The analytics service (``tracker.analytics``): figures per flow version, from the rollups.

Its methods mirror the HTTP routes under ``/analytics``; the HTTP layer only translates.
Each answer is a plain JSON-ready dict. The definitions are in ``docs/analytics.md``: a
session counts for the version it started with and the quarter-hour its start falls in,
and a range ``[startDate, endDate)`` selects sessions by start. Bad arguments raise
:class:`~sessiontrack.errors.InvalidParameter` naming the camelCase field; a chatbot the
principal may not see (or that does not exist) raises
:class:`~sessiontrack.errors.SessionNotFound`, as ``tracker.sessions.get`` does.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..abc import Span, Store
from ..errors import InvalidParameter, SessionNotFound
from ..models import Principal
from ..query import unfit_text
from ..status import ACTIVE_STATUSES, STATUS_VALUES
from . import _sketch
from ._rollup import split_edge

ALL = "all"
MAX_DAYS = 400
MAX_PATHS = 100
MAX_STEPS = 20
HISTOGRAM_EDGES = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
"""Upper bounds (seconds) of the duration histogram's buckets; a last one has no bound."""
FUNNEL_TIME_SAMPLE = 5_000
"""The funnel's step times are medians over the sessions started last, this many at the
most, of those on the matched paths: reading a trace per session is the one cost that
grows with the range (the step counts come from the rollups, for every session)."""
SEP = "\x1f"
_QUARTER = 900
_DAY = 86400
_INSTANT = timedelta(microseconds=1)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ENDED = ("completed", "expired", "stopped")
_EXITS = (*_ENDED, "active")


class ChatbotNotFound(SessionNotFound):
    """No chatbot has this id, or the principal may not see it (a 404, like a session)."""

    def __init__(self, chatbot_id: str) -> None:
        super().__init__(chatbot_id)
        self.args = (f"chatbot {chatbot_id} not found",)
        self.chatbot_id = chatbot_id


@dataclass(frozen=True, slots=True)
class _Scope:
    """A resolved request: the chatbot, the versions summed, the range and its spans."""

    chatbot_id: str
    version: str  # the resolved name, "all", or "" (the sessions without a flow version)
    versions: frozenset[str] | None  # None: every version
    start: datetime  # UTC, on a quarter-hour
    end: datetime
    zone: tzinfo
    tz: str

    @property
    def head(self) -> dict[str, Any]:
        return {
            "chatbotId": self.chatbot_id,
            "version": self.version or None,
            "startDate": self.start.astimezone(self.zone).isoformat(),
            "endDate": self.end.astimezone(self.zone).isoformat(),
            "tz": self.tz,
        }

    @property
    def bounds(self) -> tuple[int, int]:
        return int(self.start.timestamp()), int(self.end.timestamp())

    @property
    def store_args(self) -> dict[str, Any]:
        return {"spans": self.spans(), "versions": self.versions}

    def spans(self) -> list[Span]:
        """Whole UTC days from grain 1, the quarter-hours at either end from grain 0."""
        first, end = self.bounds
        day0, day1 = -(-first // _DAY) * _DAY, end // _DAY * _DAY
        if day0 >= day1:
            return [(0, first, end)]
        return [(0, first, day0), (1, day0, day1), (0, day1, end)]

    def local_days(self) -> tuple[list[Span], list[tuple[int, int]]]:
        """The spans and ``(from_bucket, utc_offset)`` steps that sum rows by local date:
        quarter-hours (grain 0) unless the zone is UTC all along the range."""
        first, end = self.bounds
        steps = _offset_changes(self.zone, first, end)
        if all(offset == 0 for _, offset in steps):
            return self.spans(), steps
        return [(0, first, end)], steps

    def dates(self) -> list[date]:
        first = self.start.astimezone(self.zone).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(self.zone).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _offset(zone: tzinfo, at: int) -> int:
    delta = datetime.fromtimestamp(at, UTC).astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _offset_changes(zone: tzinfo, first: int, end: int) -> list[tuple[int, int]]:
    """``(from_bucket, offset)`` for each UTC offset of ``zone`` in force in ``[first,
    end)``, found day by day and then to the quarter-hour (zone changes happen on one)."""
    steps = [(first, _offset(zone, first))]
    day = first
    while day < end:
        nxt = min(day + _DAY, end)
        if _offset(zone, nxt - _QUARTER) != steps[-1][1]:
            lo, hi = day, nxt - _QUARTER  # offset(lo) is the last one; offset(hi) differs
            while hi - lo > _QUARTER:
                mid = lo + (hi - lo) // 2 // _QUARTER * _QUARTER
                mid = max(mid, lo + _QUARTER)
                if _offset(zone, mid) == steps[-1][1]:
                    lo = mid
                else:
                    hi = mid
            steps.append((hi, _offset(zone, hi)))
            continue  # the same day may hold another change
        day = nxt
    return steps


class Analytics:
    """Reads the analytics rollups of a store: ``summary``, ``nodes``, ``paths``,
    ``funnel``, ``versions``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # --- the reports ---------------------------------------------------------------------

    async def summary(
        self,
        chatbot_id: str,
        *,
        version: str | None = None,
        start_date: date | datetime | str | None = None,
        end_date: date | datetime | str | None = None,
        tz: str = "UTC",
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Sessions, statuses, reasons, durations, messages, tokens and the daily cohorts."""
        scope = await self._scope(chatbot_id, version, start_date, end_date, tz, principal)
        spans = scope.store_args
        day_spans, steps = scope.local_days()
        daily_rows = await self._store.analytics_counts(
            scope.chatbot_id,
            metrics=["status"],
            spans=day_spans,
            versions=scope.versions,
            local_days=steps,
        )
        rows = await self._store.analytics_counts(
            scope.chatbot_id,
            metrics=[
                "reason",
                "ended_duration_ms",
                "ended_messages",
                "ended_nodes",
                "tokens_in",
                "tokens_out",
                "cost",
            ],
            **spans,
        )
        bins = await self._store.analytics_bins(
            scope.chatbot_id, metrics=["duration", "messages"], **spans
        )
        by_status = dict.fromkeys(STATUS_VALUES, 0)
        per_day: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATUS_VALUES, 0))
        for _, _, status, day, n in daily_rows:
            if status in by_status:
                by_status[status] += int(n)
                per_day[day or 0][status] += int(n)
        sums: dict[str, float] = defaultdict(float)
        by_reason: dict[str, int] = defaultdict(int)
        for metric, _, dim, _, n in rows:
            if metric == "reason":
                by_reason[dim.partition(SEP)[2]] += int(n)
            else:
                sums[metric] += n
        sketches = _sketches(bins)
        ended = sum(by_status[s] for s in _ENDED)
        durations = sketches.get(("duration", ""), {})
        messages = sketches.get(("messages", ""), {})
        return {
            **scope.head,
            "sessions": sum(by_status.values()),
            "active": sum(by_status[s] for s in ACTIVE_STATUSES),
            "byStatus": by_status,
            "byReason": {r: n for r, n in sorted(by_reason.items()) if n},
            "completionRate": _ratio(by_status["completed"], ended),
            "duration": {
                "mean": _seconds(_ratio(sums["ended_duration_ms"], ended)),
                "p50": _seconds(_sketch.percentile(durations, 0.5)),
                "p90": _seconds(_sketch.percentile(durations, 0.9)),
                "p99": _seconds(_sketch.percentile(durations, 0.99)),
                "histogram": _histogram(durations),
            },
            "messages": {
                "mean": _ratio(sums["ended_messages"], ended),
                "p50": _exact(messages, 0.5),
                "p90": _exact(messages, 0.9),
            },
            "nodes": {"mean": _ratio(sums["ended_nodes"], ended)},
            "tokens": {"input": int(sums["tokens_in"]), "output": int(sums["tokens_out"])},
            "cost": sums["cost"],
            "daily": [_day(d, per_day.get(_day_number(d), {})) for d in scope.dates()],
        }

    async def nodes(
        self,
        chatbot_id: str,
        *,
        version: str | None = None,
        start_date: date | datetime | str | None = None,
        end_date: date | datetime | str | None = None,
        tz: str = "UTC",
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Per node: sessions, visits, exits, drop-off, bot and wait times, errors; per edge:
        sessions and share; with the flow graph they belong to."""
        scope = await self._scope(chatbot_id, version, start_date, end_date, tz, principal)
        spans = scope.store_args
        rows = await self._store.analytics_counts(
            scope.chatbot_id,
            metrics=[
                "status",
                "node.sessions",
                "node.visits",
                "node.errors",
                "node.exit",
                "node.onward",
                "edge",
            ],
            **spans,
        )
        bins = _sketches(
            await self._store.analytics_bins(
                scope.chatbot_id, metrics=["node.bot", "node.wait"], **spans
            )
        )
        flow = await self._flow(scope)
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        sessions = 0
        for metric, _, dim, _, n in rows:
            if metric == "status":
                sessions += int(n)
            else:
                sums[metric][dim] += n
        exits: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_EXITS, 0))
        for dim, n in sums["node.exit"].items():
            node, _, status = dim.rpartition(SEP)  # a status holds no SEP
            key = "active" if status in ACTIVE_STATUSES else status
            if key in _EXITS:
                exits[node][key] += int(n)
        known = [str(n.get("id")) for n in flow["nodes"]]
        seen = {d for m in ("node.sessions", "node.visits") for d, n in sums[m].items() if n}
        order = known + sorted(seen - set(known))
        graph_nodes = {str(n.get("id")): n for n in flow["nodes"]}
        nodes = []
        for node_id in order:
            meta = graph_nodes.get(node_id)
            reached = int(sums["node.sessions"].get(node_id, 0))
            out = exits[node_id]
            bot = bins.get(("node.bot", node_id), {})
            wait = bins.get(("node.wait", node_id), {})
            nodes.append(
                {
                    "nodeId": node_id,
                    "label": _label(meta),
                    "type": None if meta is None else meta.get("type"),
                    "sessions": reached,
                    "visits": int(sums["node.visits"].get(node_id, 0)),
                    "exits": out,
                    "dropOffRate": _ratio(out["expired"] + out["stopped"], reached),
                    "botTime": _times(bot),
                    "waitTime": _times(wait),
                    "errors": int(sums["node.errors"].get(node_id, 0)),
                }
            )
        edges: list[dict[str, Any]] = []
        for dim, n in sums["edge"].items():
            source, target = split_edge(dim)
            if n:
                onward = sums["node.onward"].get(source, 0)
                edges.append(
                    {
                        "source": source,
                        "target": target,
                        "sessions": int(n),
                        "share": _ratio(n, onward),
                    }
                )
        edges.sort(key=lambda e: (-e["sessions"], e["source"], e["target"]))
        head = {**scope.head, "sessions": sessions, "flowData": flow}
        return {**head, "nodes": nodes, "edges": edges}

    async def paths(
        self,
        chatbot_id: str,
        *,
        version: str | None = None,
        start_date: date | datetime | str | None = None,
        end_date: date | datetime | str | None = None,
        tz: str = "UTC",
        limit: int = 20,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """The ``limit`` most common paths (ties by the node list), with their share,
        completion rate and median duration."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PATHS:
            raise InvalidParameter("limit", f"must be an integer from 1 to {MAX_PATHS}")
        scope = await self._scope(chatbot_id, version, start_date, end_date, tz, principal)
        spans = scope.store_args
        sessions = await self._sessions(scope)
        top = await self._store.analytics_counts(
            scope.chatbot_id, metrics=["path"], top=limit, **spans
        )
        counts = {dim: int(n) for _, _, dim, _, n in top if n > 0}
        nodes = await self._store.analytics_paths(scope.chatbot_id, counts)
        chosen = sorted(counts, key=lambda k: (-counts[k], nodes.get(k, []), k))[:limit]
        ends = await self._store.analytics_counts(
            scope.chatbot_id, metrics=["path.ended", "path.completed"], dims=chosen, **spans
        )
        bins = _sketches(
            await self._store.analytics_bins(
                scope.chatbot_id, metrics=["path.duration"], dims=chosen, **spans
            )
        )
        ended = {(m, d): n for m, _, d, _, n in ends}
        paths = [
            {
                "nodes": nodes.get(key, []),
                "sessions": counts[key],
                "share": _ratio(counts[key], sessions),
                "completionRate": _ratio(
                    ended.get(("path.completed", key), 0), ended.get(("path.ended", key), 0)
                ),
                "duration": {
                    "p50": _seconds(_sketch.percentile(bins.get(("path.duration", key), {}), 0.5))
                },
            }
            for key in chosen
        ]
        return {**scope.head, "sessions": sessions, "paths": paths}

    async def funnel(
        self,
        chatbot_id: str,
        *,
        steps: Sequence[str] | str,
        version: str | None = None,
        start_date: date | datetime | str | None = None,
        end_date: date | datetime | str | None = None,
        tz: str = "UTC",
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """Sessions reaching each step in order (the steps as a subsequence of the path),
        conversions and the median time from the previous step."""
        wanted = _steps(steps)
        scope = await self._scope(chatbot_id, version, start_date, end_date, tz, principal)
        spans = scope.store_args
        rows = await self._store.analytics_counts(
            scope.chatbot_id, metrics=["status", "path"], **spans
        )
        sessions = sum(int(n) for m, _, _, _, n in rows if m == "status")
        by_key = {d: int(n) for m, _, d, _, n in rows if m == "path" and n > 0}
        nodes = await self._store.analytics_paths(scope.chatbot_id, by_key)
        reached = [0] * len(wanted)
        positions: dict[str, list[int]] = {}
        for key, n in by_key.items():
            matched = _match(nodes.get(key, []), wanted)
            for i in range(len(matched)):
                reached[i] += n
            if matched:
                positions[key] = matched
        medians = await self._store.analytics_step_times(
            scope.chatbot_id,
            versions=scope.versions,
            start=scope.start,
            end=scope.end,
            positions=positions,
            sample=FUNNEL_TIME_SAMPLE,
        )
        medians += [(None, 0)] * (len(wanted) - len(medians))
        labels = {str(n.get("id")): _label(n) for n in (await self._flow(scope))["nodes"]}
        out = []
        for i, node_id in enumerate(wanted):
            before = sessions if i == 0 else reached[i - 1]
            ms, timed = medians[i]
            out.append(
                {
                    "nodeId": node_id,
                    "label": labels.get(node_id),
                    "sessions": reached[i],
                    "conversion": _ratio(reached[i], before),
                    "overall": _ratio(reached[i], sessions),
                    "timeFromPrevious": {
                        "p50": None if ms is None else _seconds(_quantized(ms)),
                        "sessions": timed,
                    },
                }
            )
        return {**scope.head, "sessions": sessions, "steps": out}

    async def versions(
        self, chatbot_id: str, *, principal: Principal | None = None
    ) -> dict[str, Any]:
        """The chatbot's registered flow versions, newest first, with all-time sessions."""
        chatbot_id = _chatbot_id(chatbot_id)
        known = await self._known(chatbot_id, principal)
        current, registered = known
        rows = await self._store.analytics_counts(
            chatbot_id,
            metrics=["status"],
            spans=[(1, -(2**62), 2**62)],
            versions=None,
            by_version=True,
        )
        per_version: dict[str, int] = defaultdict(int)
        for _, v, _, _, n in rows:
            per_version[v or ""] += int(n)
        listed = [
            {"version": v, "registeredAt": at.isoformat(), "sessions": per_version.pop(v, 0)}
            for v, at in registered
        ]
        listed += [
            {"version": v or None, "registeredAt": None, "sessions": n}
            for v, n in sorted(per_version.items())
            if n
        ]
        return {"chatbotId": chatbot_id, "current": current, "versions": listed}

    # --- arguments -----------------------------------------------------------------------

    async def _known(
        self, chatbot_id: str, principal: Principal | None
    ) -> tuple[str | None, list[tuple[str, datetime]]]:
        if principal is not None and not principal.may_see(chatbot_id):
            raise ChatbotNotFound(chatbot_id)
        known = await self._store.flow_versions(chatbot_id)
        if known is None:
            raise ChatbotNotFound(chatbot_id)
        return known

    async def _scope(
        self,
        chatbot_id: str,
        version: str | None,
        start_date: date | datetime | str | None,
        end_date: date | datetime | str | None,
        tz: str,
        principal: Principal | None,
    ) -> _Scope:
        chatbot_id = _chatbot_id(chatbot_id)
        version = _version(version)
        zone = _zone(tz)
        start, end = _range(start_date, end_date, zone)
        current, _ = await self._known(chatbot_id, principal)
        # a chatbot that registered no flow: its sessions without a version, stored as ""
        name = (current or "") if version is None else version
        versions = None if name == ALL else frozenset({name})
        return _Scope(chatbot_id, name, versions, start, end, zone, tz)

    async def _sessions(self, scope: _Scope) -> int:
        rows = await self._store.analytics_counts(
            scope.chatbot_id, metrics=["status"], **scope.store_args
        )
        return sum(int(n) for *_, n in rows)

    async def _flow(self, scope: _Scope) -> dict[str, Any]:
        """The version's stored graph; for ``all`` the union of every version's, by node
        id (the newest registration's node wins) and by edge ``(source, target)``."""
        graphs = await self._store.flow_graphs(scope.chatbot_id, scope.versions)
        if len(graphs) == 1:
            flow = graphs[0][2]
            flow = graphs[0][2]
            nodes_, edges_ = list(flow.get("nodes", [])), list(flow.get("edges", []))
            return {**flow, "nodes": nodes_, "edges": edges_}
        nodes: dict[str, Any] = {}
        edges: dict[tuple[str, str], Any] = {}
        for _, _, flow in graphs:  # newest first: the first seen wins
            for node in flow.get("nodes", []):
                nodes.setdefault(str(node.get("id")), node)
            for edge in flow.get("edges", []):
                edges.setdefault((str(edge.get("source")), str(edge.get("target"))), edge)
        return {"nodes": list(nodes.values()), "edges": list(edges.values())}


def _chatbot_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParameter("chatbotId", "is required (a non-empty string)")
    problem = unfit_text(value)
    if problem:
        raise InvalidParameter("chatbotId", problem)
    return value


def _version(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidParameter("version", "must be a version name or 'all'")
    problem = unfit_text(value)
    if problem:
        raise InvalidParameter("version", problem)
    return value


def _zone(tz: object) -> tzinfo:
    if not isinstance(tz, str) or not tz:
        raise InvalidParameter("tz", "must be an IANA time zone name such as Europe/Paris")
    try:
        if unfit_text(tz) or tz.startswith(("/", ".")) or ".." in tz:
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameter("tz", f"unknown time zone {tz!r}") from None


def _moment(value: object, field: str, zone: tzinfo, *, end: bool) -> datetime:
    """A range bound in UTC: a date is its local midnight (the next one for ``endDate``),
    a datetime (naive: in ``zone``) is floored to the quarter-hour."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parse = date.fromisoformat if _DATE.fullmatch(text) else datetime.fromisoformat
            value = parse(text)
        except ValueError:
            raise InvalidParameter(
                field, f"must be an ISO date or datetime (2026-11-01T09:30), got {text!r}"
            ) from None
    try:
        if isinstance(value, datetime):
            moment = value if value.tzinfo is not None else value.replace(tzinfo=zone)
            moment = moment.astimezone(UTC)
            return moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)
        if isinstance(value, date):
            day = value + timedelta(days=1) if end else value
            return datetime.combine(day, time(), zone).astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidParameter(field, "is outside the supported years") from None
    raise InvalidParameter(field, "must be a date, a datetime or an ISO string")


def _range(start_date: object, end_date: object, zone: tzinfo) -> tuple[datetime, datetime]:
    if end_date is None:
        today = datetime.now(UTC).astimezone(zone).date()
        end = _moment(today, "endDate", zone, end=True)
    else:
        end = _moment(end_date, "endDate", zone, end=True)
    if start_date is None:
        try:
            last = (end - _INSTANT).astimezone(zone).date()
            first = last - timedelta(days=6)
        except (OverflowError, ValueError):  # the week before endDate is before year 1
            raise InvalidParameter("startDate", "is outside the supported years") from None
        start = _moment(first, "startDate", zone, end=False)
    else:
        start = _moment(start_date, "startDate", zone, end=False)
    for name, moment, before in (("startDate", start, False), ("endDate", end, True)):
        try:  # the answers show both ends, and the range's last day, in the zone
            moment.astimezone(zone)
            if before:
                (moment - _INSTANT).astimezone(zone)
        except (OverflowError, ValueError):
            raise InvalidParameter(name, "is outside the supported years") from None
    field = "endDate" if end_date is not None else "startDate"
    if end < start:
        raise InvalidParameter(field, "endDate is before startDate")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidParameter(field, f"the range is longer than {MAX_DAYS} days")
    return start, end


def _steps(steps: object) -> list[str]:
    if isinstance(steps, str):
        steps = steps.split(",")
    if not isinstance(steps, Sequence) or not 1 <= len(steps) <= MAX_STEPS:
        raise InvalidParameter("steps", f"must list 1 to {MAX_STEPS} node ids")
    out = []
    for step in steps:
        if not isinstance(step, str) or not step.strip():
            raise InvalidParameter("steps", "every step must be a non-empty node id")
        problem = unfit_text(step)
        if problem:
            raise InvalidParameter("steps", problem)
        out.append(step.strip())
    return out


# --- figures -------------------------------------------------------------------------------


def _match(path: Sequence[str], steps: Sequence[str]) -> list[int]:
    """The positions in ``path`` of steps 1..k matched greedily in order, as far as it goes."""
    positions: list[int] = []
    at = 0
    for step in steps:
        try:
            at = path.index(step, at)
        except ValueError:
            break
        positions.append(at)
        at += 1
    return positions


def _sketches(rows: Sequence[tuple[str, str, int, int]]) -> dict[tuple[str, str], dict[int, int]]:
    out: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for metric, dim, b, n in rows:
        out[(metric, dim)][b] = n
    return out


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def _quantized(ms: float) -> float:
    return _sketch.value_of(_sketch.bin_of(ms))


def _times(bins: dict[int, int]) -> dict[str, float | None]:
    return {
        "p50": _ms(_sketch.percentile(bins, 0.5)),
        "p90": _ms(_sketch.percentile(bins, 0.9)),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _exact(bins: dict[int, int], q: float) -> int | None:
    """The nearest-rank percentile of exact integer bins (message counts)."""
    value = _sketch.percentile(bins, q, exact=True)
    return None if value is None else int(value)


def _label(node: dict[str, Any] | None) -> str | None:
    if node is None:
        return None
    data = node.get("data")
    label = data.get("label") if isinstance(data, dict) else None
    return None if label is None else str(label)


def _day_number(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _day(d: date, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "date": d.isoformat(),
        "started": sum(counts.values()),
        **{s: counts.get(s, 0) for s in _ENDED},
    }


def _histogram(bins: dict[int, int]) -> list[dict[str, Any]]:
    """Ended sessions by duration: each bucket counts the sessions whose (sketched)
    duration is at most ``le`` seconds and above the previous bucket's; ``le`` ``None``
    is the last bucket, without a bound."""
    counts = [0] * (len(HISTOGRAM_EDGES) + 1)
    for b, n in bins.items():
        seconds = _sketch.value_of(b) / 1000
        counts[bisect.bisect_left(HISTOGRAM_EDGES, seconds)] += n
    bounds: list[int | None] = [*HISTOGRAM_EDGES, None]
    return [{"le": le, "sessions": n} for le, n in zip(bounds, counts, strict=True)]
