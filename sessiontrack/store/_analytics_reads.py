"""The read queries of the analytics service: sums of the rollups, grouped in SQL.

Every query filters on the leading columns of a primary key or index — ``(chatbot_id,
metric, grain, bucket)`` of the rollups, ``(chatbot_id, path_key, started_at)`` of the
traces — so it reads one contiguous range per metric and span, and hands back only the
grouped sums (a few hundred rows), never the rows it summed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._part import StorePart
from ._tables import UTCDateTime

if TYPE_CHECKING:
    from ..abc import Span

_DAY = 86400
_CHUNK = 500  # path keys per IN list


def _in(column: Any, values: Collection[str]) -> Any:
    ordered = sorted(values)
    return column == ordered[0] if len(ordered) == 1 else column.in_(ordered)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _nothing(
    metrics: Collection[str], versions: Collection[str] | None, dims: Collection[str] | None
) -> bool:
    """Whether an empty filter makes the answer empty without asking."""
    return not metrics or (versions is not None and not versions) or (dims is not None and not dims)


class AnalyticsReads(StorePart):
    """Mixed into :class:`~sessiontrack.store.SQLAlchemyStore` (see :class:`~sessiontrack.abc.Store`
    for what each method returns)."""

    async def flow_versions(
        self, chatbot_id: str
    ) -> tuple[str | None, list[tuple[str, datetime]]] | None:
        c, fl = self.tables.chatbots, self.tables.flows
        s, counts = self.tables.sessions, self.tables.an_counts
        async with self.engine.connect() as conn:
            current = await conn.scalar(
                sa.select(c.c.current_version).where(c.c.chatbot_id == chatbot_id)
            )
            if current is None:  # no flow registered: known by its sessions or rollups
                seen = await conn.scalar(
                    sa.select(
                        sa.or_(
                            sa.exists().where(s.c.chatbot_id == chatbot_id),
                            sa.exists().where(counts.c.chatbot_id == chatbot_id),
                        )
                    )
                )
                return (None, []) if seen else None
            rows = await conn.execute(
                sa.select(fl.c.version, fl.c.registered_at)
                .where(fl.c.chatbot_id == chatbot_id)
                .order_by(fl.c.registered_at.desc(), fl.c.version.desc())
            )
            return str(current), [(r.version, r.registered_at) for r in rows]

    async def flow_graphs(
        self, chatbot_id: str, versions: Collection[str] | None
    ) -> list[tuple[str, datetime, dict[str, Any]]]:
        fl = self.tables.flows
        if versions is not None and not versions:
            return []
        q = sa.select(fl.c.version, fl.c.registered_at, fl.c.flow).where(
            fl.c.chatbot_id == chatbot_id
        )
        if versions is not None:
            q = q.where(_in(fl.c.version, versions))
        q = q.order_by(fl.c.registered_at.desc(), fl.c.version.desc())
        async with self.engine.connect() as conn:
            return [(r.version, r.registered_at, r.flow) for r in await conn.execute(q)]

    def _spans(
        self,
        table: sa.Table,
        chatbot_id: str,
        columns: Sequence[Any],
        *,
        metrics: Collection[str],
        spans: Sequence[Span],
        versions: Collection[str] | None,
        dims: Collection[str] | None,
    ) -> Any | None:
        """The rows of ``table`` in ``spans`` (one range scan each), as one subquery."""
        t = table.c
        parts = []
        for grain, first, end in spans:
            if first >= end:
                continue
            where = [
                t.chatbot_id == chatbot_id,
                _in(t.metric, metrics),
                t.grain == grain,
                t.bucket >= first,
                t.bucket < end,
            ]
            if versions is not None:
                where.append(_in(t.version, versions))
            if dims is not None:
                where.append(_in(t.dim, dims))
            parts.append(sa.select(*columns).where(*where))
        if not parts:
            return None
        return (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("spans")

    async def analytics_counts(
        self,
        chatbot_id: str,
        *,
        metrics: Collection[str],
        spans: Sequence[Span],
        versions: Collection[str] | None,
        dims: Collection[str] | None = None,
        by_version: bool = False,
        local_days: Sequence[tuple[int, int]] | None = None,
        top: int | None = None,
    ) -> list[tuple[str, str | None, str, int | None, float]]:
        if _nothing(metrics, versions, dims):
            return []
        t = self.tables.an_counts.c
        u = self._spans(
            self.tables.an_counts,
            chatbot_id,
            [t.metric, t.version, t.dim, t.bucket, t.value],
            metrics=metrics,
            spans=spans,
            versions=versions,
            dims=dims,
        )
        if u is None:
            return []
        keys: list[Any] = [u.c.metric, u.c.version if by_version else sa.null(), u.c.dim]
        if local_days:
            offset: Any = sa.literal(local_days[0][1])
            if len(local_days) > 1:
                offset = sa.case(
                    *[(u.c.bucket < b, o) for (_, o), (b, _) in itertools.pairwise(local_days)],
                    else_=local_days[-1][1],
                )
            keys.append((u.c.bucket + offset) // _DAY)
        else:
            keys.append(sa.null())
        group = [k for k in keys if not isinstance(k, sa.Null)]
        total = sa.func.sum(u.c.value)
        q = sa.select(*keys, total).group_by(*group)
        if top is not None:
            ranked = q.add_columns(sa.func.rank().over(order_by=total.desc()).label("r"))
            ranked_q = ranked.having(total > 0).subquery("ranked")
            q = sa.select(*list(ranked_q.c)[: len(keys) + 1]).where(ranked_q.c.r <= top)
        async with self.engine.connect() as conn:
            rows: Any = await conn.execute(q)
            return [(m, v, d, _int(x), float(n or 0)) for m, v, d, x, n in rows]

    async def analytics_bins(
        self,
        chatbot_id: str,
        *,
        metrics: Collection[str],
        spans: Sequence[Span],
        versions: Collection[str] | None,
        dims: Collection[str] | None = None,
    ) -> list[tuple[str, str, int, int]]:
        if _nothing(metrics, versions, dims):
            return []
        t = self.tables.an_bins.c
        u = self._spans(
            self.tables.an_bins,
            chatbot_id,
            [t.metric, t.dim, t.bin, t.n],
            metrics=metrics,
            spans=spans,
            versions=versions,
            dims=dims,
        )
        if u is None:
            return []
        total = sa.func.sum(u.c.n)
        q = (
            sa.select(u.c.metric, u.c.dim, u.c.bin, total)
            .group_by(u.c.metric, u.c.dim, u.c.bin)
            .having(total > 0)
        )
        async with self.engine.connect() as conn:
            return [(m, d, int(b), int(n)) for m, d, b, n in await conn.execute(q)]

    async def analytics_paths(self, chatbot_id: str, keys: Collection[str]) -> dict[str, list[str]]:
        p = self.tables.an_paths.c
        ordered = sorted(keys)
        found: dict[str, list[str]] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(ordered), _CHUNK):
                q = sa.select(p.path_key, p.nodes).where(
                    p.chatbot_id == chatbot_id, p.path_key.in_(ordered[i : i + _CHUNK])
                )
                found.update({k: list(nodes) for k, nodes in await conn.execute(q)})
        return found

    async def analytics_step_times(
        self,
        chatbot_id: str,
        *,
        versions: Collection[str] | None,
        start: datetime,
        end: datetime,
        positions: Mapping[str, Sequence[int]],
        sample: int | None = None,
    ) -> list[tuple[float | None, int]]:
        depth = max((len(p) for p in positions.values()), default=0)
        if depth == 0 or (versions is not None and not versions):
            return [(None, 0)] * depth
        dialect = self.engine.dialect.name
        traces = self.tables.an_traces.name
        sql = _step_times_sql(dialect, traces, depth, versions is not None, sample is not None)
        q = sa.text(sql).bindparams(
            sa.bindparam("start", start, type_=UTCDateTime()),
            sa.bindparam("end", end, type_=UTCDateTime()),
        )
        params: dict[str, Any] = {"chatbot_id": chatbot_id, "steps": json.dumps(positions)}
        if versions is not None:
            params["versions"] = json.dumps(sorted(versions))
        if sample is not None:
            params["sample"] = sample
        medians: list[tuple[float | None, int]] = [(None, 0)] * depth
        async with self.engine.connect() as conn:
            for step, ms, n in await conn.execute(q, params):
                medians[int(step)] = (None if ms is None else float(ms), int(n or 0))
        return medians


def _step_times_sql(dialect: str, traces: str, depth: int, by_version: bool, sample: bool) -> str:
    """The funnel's step times in one statement: one pass over the range's traces whose
    path key is in ``:steps`` (a JSON object, key -> positions), the newest ``:sample``
    of them with ``sample``, reading each trace's ``t`` at its key's positions in one row
    (its JSON parsed once), then the nearest-rank median (the ``ceil(n/2)``-th smallest)
    of each step's differences and how many there were."""
    if dialect == "postgresql":
        pos = "(m.m -> tr.path_key ->> {i})::int"
        at = "(tr.state -> 't' ->> " + pos + ")::float8"
        source = (
            f'"{traces}" AS tr CROSS JOIN (SELECT CAST(:steps AS jsonb) AS m) AS m '
            "WHERE m.m ? tr.path_key"
        )
        version = " AND tr.version IN (SELECT jsonb_array_elements_text(CAST(:versions AS jsonb)))"
        materialized = "MATERIALIZED "
    else:
        pos = "json_extract(:steps, '$.\"' || tr.path_key || '\"[{i}]')"
        at = "json_extract(tr.state, '$.t[' || " + pos + " || ']')"
        known = "json_extract(:steps, '$.\"' || tr.path_key || '\"') IS NOT NULL"
        source = f'"{traces}" AS tr WHERE {known}'
        version = " AND tr.version IN (SELECT value FROM json_each(:versions))"
        materialized = "MATERIALIZED "
    columns = ", ".join(f"{at.format(i=i)} AS t{i}" for i in range(depth))
    where = " AND tr.chatbot_id = :chatbot_id AND tr.started_at >= :start AND tr.started_at < :end"
    per = f"WITH per AS {materialized}(SELECT {columns} FROM {source}{where}"
    per += version if by_version else ""
    per += " ORDER BY tr.started_at DESC LIMIT :sample)" if sample else ")"
    diffs = [f"t{i}" + (f" - t{i - 1}" if i else "") for i in range(depth)]
    if dialect != "postgresql":
        # SQLite: a bounded sort per step (LIMIT/OFFSET) beats a window over every step
        return per + " UNION ALL ".join(
            f"SELECT {i}, (SELECT {d} AS ms FROM per WHERE t{i} IS NOT NULL ORDER BY ms"
            f" LIMIT 1 OFFSET (SELECT (count(t{i}) - 1) / 2 FROM per)),"
            f" (SELECT count(t{i}) FROM per)"
            for i, d in enumerate(diffs)
        )
    times = " UNION ALL ".join(
        f"SELECT {i} AS step, {d} AS ms FROM per WHERE t{i} IS NOT NULL"
        for i, d in enumerate(diffs)
    )
    return (
        f"{per}, times AS ({times}), ranked AS ("
        "SELECT step, ms, row_number() OVER (PARTITION BY step ORDER BY ms) AS r,"
        " count(*) OVER (PARTITION BY step) AS n FROM times) "
        "SELECT step, ms, n FROM ranked WHERE r = (n + 1) / 2"
    )
