"""GET /api/statistics (the stats DB's aggregates) and /api/statistics/status (parcels by sync status)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from countydatasync.web.deps import SettingsDep
from countydatasync.web.geo import STATUSES
from countydatasync.web.schemas import AggregateGroup, MeasureStats, Problem, Statistics, StatusCounts
from countydatasync.web.staging import has_table, open_readonly, q

router = APIRouter(tags=["statistics"])


@router.get(
    "/api/statistics",
    response_model=Statistics,
    summary="Aggregates over synced parcels",
    responses={503: {"model": Problem}},
)
def statistics(
    settings: SettingsDep,
    dimension: Annotated[str | None, Query(max_length=64, description="One dimension only.")] = None,
) -> Statistics:
    with open_readonly(settings.output.stats_path) as con:
        if not has_table(con, "main", "aggregates"):
            return Statistics(dimensions=[], measures=[], groups=[])
        # The measures are whatever the last run wrote, which may predate a settings change.
        columns = [row[1] for row in con.execute("PRAGMA table_info(aggregates)")]
        measures = [c[:-4] for c in columns if c.endswith("_sum") and f"{c[:-4]}_mean" in columns]
        select = ", ".join(q(f"{m}_{part}") for m in measures for part in ("sum", "count", "mean"))
        where, params = (" WHERE dimension = ?", [dimension]) if dimension is not None else ("", [])
        rows = con.execute(
            f"SELECT dimension, value, parcel_count{', ' + select if select else ''} FROM aggregates{where} "
            "ORDER BY dimension, parcel_count DESC, value",
            params,
        ).fetchall()
        dimensions = [r[0] for r in con.execute("SELECT DISTINCT dimension FROM aggregates ORDER BY 1")]
    groups = []
    for row in rows:
        values = row[3:]
        groups.append(
            AggregateGroup(
                dimension=row[0],
                value=row[1],
                parcel_count=row[2],
                measures={
                    m: MeasureStats(sum=values[3 * i], count=values[3 * i + 1], mean=values[3 * i + 2])
                    for i, m in enumerate(measures)
                },
            )
        )
    return Statistics(dimensions=dimensions, measures=measures, groups=groups)


@router.get(
    "/api/statistics/status",
    response_model=StatusCounts,
    summary="Parcels by sync status",
    responses={503: {"model": Problem}},
)
def status_counts(settings: SettingsDep) -> StatusCounts:
    counts = dict.fromkeys(STATUSES, 0)
    on_map = dict.fromkeys(STATUSES, 0)
    with open_readonly(settings.output.working_path) as con:
        # Both queries run on the status index. A synced parcel is published by definition, so only the
        # few pending and error rows need their in_geo flag read (a full scan takes ~0.4 s at 1M parcels).
        for status, n in con.execute("SELECT sync_status, count(*) FROM parcels GROUP BY 1"):
            counts[status] = n
        on_map["synced"] = counts["synced"]
        for status, n in con.execute(
            "SELECT sync_status, count(*) FROM parcels WHERE sync_status IN "
            "('pending', 'error') AND in_geo = 1 GROUP BY 1"
        ):
            on_map[status] = n
    return StatusCounts(total=sum(counts.values()), counts=counts, on_map=on_map)
