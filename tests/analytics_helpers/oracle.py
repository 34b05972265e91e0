"""Every analytics figure, computed in plain Python from the list of reports made.

Nothing here reads the library's rollups or answers: the reports are folded by the
tracker's documented lifecycle rules (duplicates, late reports, the completion grace
window), then each route's answer is built by the definitions of the issue-12 brief.
The only library code used is the documented quantization of times
(``_sketch.bin_of`` / ``value_of``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from sessiontrack.analytics._sketch import bin_of, value_of

from .scenario import CHATBOT, Registration, Report

HISTOGRAM_EDGES = [10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, None]


def histogram(durations_ms: Iterable[float]) -> list[dict[str, Any]]:
    """Ended sessions per duration bucket (``le`` seconds, of the sketched duration)."""
    counts = dict.fromkeys(HISTOGRAM_EDGES, 0)
    for ms in durations_ms:
        seconds = value_of(bin_of(ms)) / 1000
        le = next(e for e in HISTOGRAM_EDGES if e is None or seconds <= e)
        counts[le] += 1
    return [{"le": le, "sessions": n} for le, n in counts.items()]


GRACE = timedelta(seconds=10)
TERMINAL = ("completed", "expired", "stopped")
ACTIVE = ("running", "waiting_input", "waiting_flow")
STATUSES = ("running", "waiting_input", "waiting_flow", "completed", "expired", "stopped")
MAX_PATH = 100
_US = timedelta(microseconds=1)


def ms(delta: timedelta) -> float:
    return (delta // _US) / 1000


@dataclass
class Visit:
    node: str
    time_ms: float
    wait_ms: float | None  # None: the visit had no wait


@dataclass
class Sess:
    """A session as the oracle folds it from the reports."""

    sid: str
    chatbot: str
    version: str
    start: datetime
    status: str = "running"
    reason: str | None = None
    completed_at: datetime | None = None
    messages: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    path: list[str] = field(default_factory=list)  # every execution, in order
    times: list[float] = field(default_factory=list)  # ms since the start, per execution
    errors: Counter[str] = field(default_factory=Counter)
    visits: list[Visit] = field(default_factory=list)  # closed visits
    mids: set[str] = field(default_factory=set)
    _open: list[Any] | None = None  # [node, opened_at, wait_ms, wait_start, had_wait]

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration_ms(self) -> float:
        assert self.completed_at is not None
        return ms(self.completed_at - self.start)

    @property
    def exit_key(self) -> str:
        return self.status if self.ended else "active"

    @property
    def truncated(self) -> bool:
        return len(self.path) > MAX_PATH

    @property
    def path_id(self) -> tuple[tuple[str, ...], bool]:
        return (tuple(self.path[:MAX_PATH]), self.truncated)

    def edges(self) -> set[tuple[str, str]]:
        return set(zip(self.path, self.path[1:], strict=False))

    # --- folding -------------------------------------------------------------------------

    def _close(self, at: datetime) -> None:
        v = self._open
        if v is None:
            return
        node, opened, wait, wait_start, had = v
        if wait_start is not None:
            wait += max(0.0, ms(at - wait_start))
        self.visits.append(Visit(node, max(0.0, ms(at - opened)), wait if had else None))
        self._open = None

    def fold(self, r: Report) -> None:
        """Apply one report the tracker stored (the caller decided it is stored)."""
        d = r.data
        if r.kind == "node":
            self._close(r.at)
            self.path.append(d["node_id"])
            self.times.append(ms(r.at - self.start))
            if d.get("error") is not None:
                self.errors[d["node_id"]] += 1
            if self.ended:  # the grace window: closes at its own time
                self.visits.append(Visit(d["node_id"], 0.0, None))
            else:
                self._open = [d["node_id"], r.at, 0.0, None, False]
        elif r.kind == "message":
            self.messages += 1
            self.mids.add(d["mid"])
            v = self._open
            if d["direction"] == "inbound" and v is not None and v[3] is not None:
                v[2] += max(0.0, ms(r.at - v[3]))
                v[3] = None
        elif r.kind == "llm":
            self.tokens_in += d["input_tokens"] or 0
            self.tokens_out += d["output_tokens"] or 0
            self.cost += d["cost"] or 0.0
        elif r.kind in ("status", "complete", "api_stop"):
            status = d.get("status", "stopped")
            if status in TERMINAL:
                self._close(r.at)
                self.status, self.completed_at, self.reason = status, r.at, d.get("reason")
            else:
                self.status = status
                v = self._open
                if status == "waiting_input" and v is not None and v[3] is None:
                    v[3], v[4] = r.at, True

    def stores(self, r: Report) -> bool:
        """Whether the tracker keeps this report (docs/durability: late and duplicate
        reports are dropped; a completed session keeps non-status reports of its grace
        window)."""
        if r.kind == "message" and r.data["mid"] in self.mids:
            return False
        if not self.ended:
            return True
        if r.kind in ("status", "complete", "api_stop"):
            return False
        assert self.completed_at is not None
        return self.status == "completed" and r.at <= self.completed_at + GRACE


def fold(reports: Iterable[Report]) -> dict[str, Sess]:
    sessions: dict[str, Sess] = {}
    version: dict[str, str] = {}  # chatbot → current version
    for r in reports:
        if r.kind == "flow":
            version[r.data["chatbot"]] = r.data["version"]
        elif r.kind == "start":
            bot = r.data["chatbot"]
            sessions[r.sid] = Sess(r.sid, bot, version[bot], r.at)
        else:
            s = sessions[r.sid]
            if s.stores(r):
                s.fold(r)
    return sessions


# --- ranges ------------------------------------------------------------------------------


def _floor15(dt: datetime) -> datetime:
    epoch = int(dt.timestamp() // 900 * 900)
    return datetime.fromtimestamp(epoch, UTC)


def _point(value: date | datetime | str, zone: ZoneInfo, end: bool) -> datetime:
    if isinstance(value, str):
        value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    else:
        day = value + timedelta(days=1) if end else value
        dt = datetime.combine(day, time(), zone)
    return _floor15(dt)


def utc_range(
    start_date: Any, end_date: Any, tz: str, now: datetime | None = None
) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    if start_date is None or end_date is None:
        today = (now or datetime.now(UTC)).astimezone(zone).date()
    start = _point(start_date if start_date is not None else today - timedelta(days=6), zone, False)
    end = _point(end_date if end_date is not None else today, zone, True)
    return start, end


# --- percentiles -------------------------------------------------------------------------


def nearest_rank(values: Sequence[float], q: str) -> float | None:
    """The nearest-rank percentile: k = ceil(q * n), 1-based, of the sorted values."""
    if not values:
        return None
    k = math.ceil(Fraction(q) * len(values))
    return sorted(values)[max(k, 1) - 1]


def sketched(values: Sequence[float], q: str) -> float | None:
    v = nearest_rank(values, q)
    return None if v is None else value_of(bin_of(v))


def _secs(v: float | None) -> float | None:
    return None if v is None else round(v / 1000, 3)


def _msr(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


# --- the answers -------------------------------------------------------------------------


@dataclass
class Oracle:
    sessions: dict[str, Sess]
    registrations: list[Registration]

    @classmethod
    def of(cls, reports: list[Report], registrations: list[Registration]) -> Oracle:
        """The oracle of :data:`CHATBOT` (the other chatbot's reports only fill the log)."""
        ours = {sid: s for sid, s in fold(reports).items() if s.chatbot == CHATBOT}
        return cls(ours, [r for r in registrations if r.chatbot == CHATBOT])

    @property
    def current(self) -> str:
        return self.registrations[-1].version

    def resolve(self, version: str | None) -> str:
        return self.current if version is None else version

    def select(self, version: str, start: datetime, end: datetime) -> list[Sess]:
        return [
            s
            for s in self.sessions.values()
            if start <= s.start < end and (version == "all" or s.version == version)
        ]

    def flow_nodes(self, version: str) -> list[dict[str, Any]]:
        """The nodes of ``version``'s graph; for ``all`` the union by id, the newest
        registration's node winning."""
        if version != "all":
            for reg in reversed(self.registrations):
                if reg.version == version:
                    return list(reg.flow["nodes"])
            return []
        merged: dict[str, dict[str, Any]] = {}
        for reg in self.registrations:
            for node in reg.flow["nodes"]:
                merged[node["id"]] = node
        return list(merged.values())

    def flow_edges(self, version: str) -> set[tuple[str, str]]:
        regs = [r for r in self.registrations if version in ("all", r.version)]
        return {(e["source"], e["target"]) for r in regs for e in r.flow["edges"]}

    def labels(self, version: str) -> dict[str, dict[str, Any]]:
        return {n["id"]: n for n in self.flow_nodes(version)}

    def head(self, version: str | None, start: datetime, end: datetime, tz: str) -> dict[str, Any]:
        return {
            "chatbotId": CHATBOT,
            "version": self.resolve(version),
            "startDate": start,
            "endDate": end,
            "tz": tz,
        }

    def summary(
        self, version: str | None, start: datetime, end: datetime, tz: str
    ) -> dict[str, Any]:
        ver = self.resolve(version)
        ss = self.select(ver, start, end)
        ended = [s for s in ss if s.ended]
        by_status = Counter(s.status for s in ss)
        by_reason = Counter(s.reason for s in ended if s.reason is not None)
        durations = [s.duration_ms for s in ended]
        messages = [s.messages for s in ended]
        zone = ZoneInfo(tz)
        first = start.astimezone(zone).date()
        last = (end - _US).astimezone(zone).date()
        daily = []
        day = first
        while day <= last:
            cohort = [s for s in ss if s.start.astimezone(zone).date() == day]
            row: dict[str, Any] = {"date": day.isoformat(), "started": len(cohort)}
            for st in TERMINAL:
                row[st] = sum(1 for s in cohort if s.status == st)
            daily.append(row)
            day += timedelta(days=1)
        n_ended = len(ended)
        return {
            **self.head(version, start, end, tz),
            "sessions": len(ss),
            "active": sum(1 for s in ss if not s.ended),
            "byStatus": {st: by_status.get(st, 0) for st in STATUSES},
            "byReason": dict(by_reason),
            "completionRate": _ratio(by_status.get("completed", 0), n_ended),
            "duration": {
                "mean": _secs(sum(durations) / n_ended) if n_ended else None,
                "p50": _secs(sketched(durations, "0.5")),
                "p90": _secs(sketched(durations, "0.9")),
                "p99": _secs(sketched(durations, "0.99")),
                "histogram": histogram(durations),
            },
            "messages": {
                "mean": sum(messages) / n_ended if n_ended else None,
                "p50": nearest_rank(messages, "0.5"),
                "p90": nearest_rank(messages, "0.9"),
            },
            "nodes": {"mean": sum(len(s.path) for s in ended) / n_ended if n_ended else None},
            "tokens": {
                "input": sum(s.tokens_in for s in ss),
                "output": sum(s.tokens_out for s in ss),
            },
            "cost": sum(s.cost for s in ss),
            "daily": daily,
        }

    def nodes(self, version: str | None, start: datetime, end: datetime, tz: str) -> dict[str, Any]:
        ver = self.resolve(version)
        ss = self.select(ver, start, end)
        flow_nodes = self.flow_nodes(ver)
        known = {n["id"] for n in flow_nodes}
        executed = {n for s in ss for n in s.path}
        order = [n["id"] for n in flow_nodes] + sorted(executed - known)
        info = {n["id"]: n for n in flow_nodes}
        rows = []
        for node in order:
            with_node = [s for s in ss if node in s.path]
            visits = [v for s in ss for v in s.visits if v.node == node]
            exits = {k: 0 for k in ("completed", "expired", "stopped", "active")}
            for s in ss:
                if s.path and s.path[-1] == node:
                    exits[s.exit_key] += 1
            bot = [v.time_ms - (v.wait_ms or 0.0) for v in visits]
            wait = [v.wait_ms for v in visits if v.wait_ms is not None]
            rows.append(
                {
                    "nodeId": node,
                    "label": (info[node].get("data") or {}).get("label") if node in info else None,
                    "type": info[node].get("type") if node in info else None,
                    "sessions": len(with_node),
                    "visits": sum(s.path.count(node) for s in ss),
                    "exits": exits,
                    "dropOffRate": _ratio(exits["expired"] + exits["stopped"], len(with_node)),
                    "botTime": {
                        "p50": _msr(sketched(bot, "0.5")),
                        "p90": _msr(sketched(bot, "0.9")),
                    },
                    "waitTime": {
                        "p50": _msr(sketched(wait, "0.5")),
                        "p90": _msr(sketched(wait, "0.9")),
                    },
                    "errors": sum(s.errors[node] for s in ss),
                }
            )
        edge_sessions: Counter[tuple[str, str]] = Counter()
        onward: Counter[str] = Counter()
        for s in ss:
            pairs = s.edges()
            edge_sessions.update(pairs)
            onward.update({a for a, _ in pairs})
        edges = [
            {"source": a, "target": b, "sessions": n, "share": n / onward[a]}
            for (a, b), n in edge_sessions.items()
        ]
        edges.sort(key=lambda e: (-e["sessions"], e["source"], e["target"]))
        return {
            **self.head(version, start, end, tz),
            "sessions": len(ss),
            "flowNodes": flow_nodes,
            "flowEdges": self.flow_edges(ver),
            "nodes": rows,
            "edges": edges,
        }

    def paths(
        self, version: str | None, start: datetime, end: datetime, tz: str, limit: int = 20
    ) -> dict[str, Any]:
        ver = self.resolve(version)
        ss = self.select(ver, start, end)
        groups: dict[tuple[tuple[str, ...], bool], list[Sess]] = defaultdict(list)
        for s in ss:  # a session that ran no node yet is on the empty path
            groups[s.path_id].append(s)
        rows = []
        for (nodes, _truncated), members in groups.items():
            ended = [s for s in members if s.ended]
            rows.append(
                {
                    "nodes": list(nodes),
                    "sessions": len(members),
                    "share": len(members) / len(ss),
                    "completionRate": _ratio(
                        sum(1 for s in ended if s.status == "completed"), len(ended)
                    ),
                    "duration": {"p50": _secs(sketched([s.duration_ms for s in ended], "0.5"))},
                }
            )
        rows.sort(key=lambda p: (-p["sessions"], p["nodes"]))
        return {**self.head(version, start, end, tz), "sessions": len(ss), "paths": rows[:limit]}

    def funnel(
        self, version: str | None, start: datetime, end: datetime, tz: str, steps: Sequence[str]
    ) -> dict[str, Any]:
        ver = self.resolve(version)
        ss = self.select(ver, start, end)
        info = self.labels(ver)
        reached: list[list[float]] = [[] for _ in steps]
        for s in ss:
            path, times = s.path[:MAX_PATH], s.times[:MAX_PATH]
            pos, prev_t = -1, 0.0
            for i, step in enumerate(steps):
                try:
                    pos = path.index(step, pos + 1)
                except ValueError:
                    break
                reached[i].append(times[pos] - prev_t)
                prev_t = times[pos]
        rows = []
        before = len(ss)
        for step, gaps in zip(steps, reached, strict=True):
            rows.append(
                {
                    "nodeId": step,
                    "label": (info[step].get("data") or {}).get("label") if step in info else None,
                    "sessions": len(gaps),
                    "conversion": _ratio(len(gaps), before),
                    "overall": _ratio(len(gaps), len(ss)),
                    "timeFromPrevious": {
                        "p50": _secs(sketched(gaps, "0.5")),
                        "sessions": len(gaps),
                    },
                }
            )
            before = len(gaps)
        return {**self.head(version, start, end, tz), "sessions": len(ss), "steps": rows}

    def versions(self) -> dict[str, Any]:
        counts = Counter(s.version for s in self.sessions.values())
        seen: dict[str, Registration] = {}
        for reg in self.registrations:
            seen.pop(reg.version, None)
            seen[reg.version] = reg
        return {
            "chatbotId": CHATBOT,
            "current": self.current,
            "versions": [
                {"version": v, "registeredAt": reg, "sessions": counts.get(v, 0)}
                for v, reg in reversed(seen.items())
            ],
        }
