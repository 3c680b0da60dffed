"""Response models of the REST API: what each endpoint promises, and what /docs shows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["synced", "pending", "error"]
AttributeValue = str | int | float | None


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="'degraded' when a staging database is missing or empty.")
    version: str
    databases: dict[str, bool] = Field(description="Whether each staging database exists and is not empty.")
    sync_running: bool


class Run(BaseModel):
    """One row of the run history."""

    run_id: int
    started_at: str
    finished_at: str | None
    status: str = Field(description="succeeded or failed")
    mode: str = Field(description="full, incremental or dry-run")
    source: str | None
    extracted: int | None
    inserted: int | None
    updated: int | None
    unchanged: int | None
    rejected: int | None
    deleted: int | None
    repaired: int | None
    duration_s: float | None
    message: str | None


class RunPage(BaseModel):
    total: int
    items: list[Run]


class ErrorRow(BaseModel):
    """A rejected record (severity error) or a record loaded with a flag (severity warning)."""

    id: int
    run_id: int
    key: str | None = Field(description="Parcel key; null for a record without one.")
    source_row: int | None
    reason: str
    message: str | None
    excerpt: str | None
    severity: str


class ErrorPage(BaseModel):
    total: int
    items: list[ErrorRow]


class ReasonCount(BaseModel):
    reason: str
    severity: str
    count: int


class RunDetail(BaseModel):
    run: Run
    error_counts: list[ReasonCount]
    errors: list[ErrorRow] = Field(description="The run's first errors; page through /api/errors for all.")


class MeasureStats(BaseModel):
    sum: float | None
    count: int | None
    mean: float | None


class AggregateGroup(BaseModel):
    dimension: str
    value: str = Field(description="Group value; '' for parcels without one.")
    parcel_count: int
    measures: dict[str, MeasureStats]


class Statistics(BaseModel):
    dimensions: list[str]
    measures: list[str]
    groups: list[AggregateGroup]


class StatusCounts(BaseModel):
    """Parcels by sync status in the working DB; `on_map` counts those the geo DB can draw."""

    total: int
    counts: dict[str, int]
    on_map: dict[str, int]


class Geometry(BaseModel):
    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list


class FeatureProperties(BaseModel):
    key: str
    status: Status


class Feature(BaseModel):
    type: Literal["Feature"]
    id: int
    geometry: Geometry
    properties: FeatureProperties


class FeatureCollection(BaseModel):
    """Parcels of a viewport in WGS84 (lon, lat). `truncated` is true when the feature cap cut the list."""

    type: Literal["FeatureCollection"]
    features: list[Feature]
    returned: int
    truncated: bool
    cap: int


class Change(BaseModel):
    id: int
    run_id: int
    action: str = Field(description="insert, update or delete")
    changed_fields: list[str] | None
    at: str


class ParcelDetail(BaseModel):
    key: str
    status: str = Field(description="synced, pending or error")
    reason: str | None
    message: str | None
    in_geo: bool = Field(description="Whether the map has a version of this parcel.")
    attributes: dict[str, AttributeValue]
    sync: dict[str, AttributeValue] = Field(description="first_seen, last_changed, last_synced...")
    history: list[Change]
    errors: list[ErrorRow]


class MapConfig(BaseModel):
    basemap_url: str | None
    basemap_attribution: str
    feature_cap: int
    extent: list[float] | None = Field(description="Layer extent in WGS84: west, south, east, north.")
    key_name: str


class SyncRequest(BaseModel):
    full: bool = Field(default=False, description="Re-read and rewrite every parcel instead of only changes.")


class SyncState(BaseModel):
    running: bool
    trigger: Literal["web", "schedule"] | None = Field(
        description="Who started the last sync: the web (POST /api/sync) or the schedule."
    )
    started_at: str | None
    finished_at: str | None
    full: bool | None
    run_id: int | None
    outcome: str | None = Field(description="succeeded, failed, or null while running / before any run.")
    message: str | None


class ScheduleState(BaseModel):
    """The background schedule of `serve` (web.schedule_every / web.schedule_cron, or --every / --cron)."""

    enabled: bool = Field(description="False when no schedule is set; the other fields are then null or 0.")
    description: str | None = Field(description="e.g. 'every 15m' or a cron expression.")
    next_run: str | None = Field(description="When the next scheduled sync is due (ISO 8601, UTC).")
    last_tick: str | None = Field(description="When the schedule last came due.")
    last_outcome: Literal["started", "skipped", "error"] | None = Field(
        description="What the last tick did: started a sync, skipped because one was running, or failed to "
        "start one (see the log)."
    )
    started: int = Field(description="Syncs the schedule started since the server started.")
    skipped: int = Field(description="Ticks skipped because a sync was running here or in another process.")


class Problem(BaseModel):
    detail: str
