"""GET /api/parcels (GeoJSON of a viewport) and /api/parcels/{key} (one parcel with its history)."""

from __future__ import annotations

import json
import logging
import math
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.exceptions import RequestValidationError

from countydatasync.web.deps import SettingsDep
from countydatasync.web.geo import STATUSES, ViewportQuery, query_viewport
from countydatasync.web.routes.errors import MAX_KEY_LENGTH, error_rows
from countydatasync.web.schemas import Change, FeatureCollection, ParcelDetail, Problem, Status
from countydatasync.web.staging import open_readonly, q

log = logging.getLogger(__name__)
router = APIRouter(tags=["parcels"])

HISTORY_SHOWN = 100
ERRORS_SHOWN = 50
SYNC_FIELDS = ["first_seen", "source_modified", "last_changed", "last_synced", "last_run_id"]


def _bad_bbox(text: str, message: str) -> RequestValidationError:
    # Shaped like FastAPI's own validation errors, so every 422 of the API has one schema.
    return RequestValidationError([{"type": "value_error", "loc": ("query", "bbox"), "msg": message, "input": text}])


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """'west,south,east,north' in WGS84 degrees; raises a 422 validation error when malformed."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise _bad_bbox(text, "bbox must be four numbers: west,south,east,north (WGS84 degrees)")
    west, south, east, north = values
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise _bad_bbox(text, "bbox must have -180 <= west < east <= 180 and -90 <= south < north <= 90")
    return west, south, east, north


@router.get(
    "/api/parcels",
    response_model=FeatureCollection,
    summary="Parcels in a bounding box as GeoJSON",
    responses={503: {"model": Problem}},
)
def parcels_in_bbox(
    settings: SettingsDep,
    bbox: Annotated[
        str,
        Query(
            max_length=200,
            description="west,south,east,north in WGS84 degrees",
            examples=["-122.99,46.95,-122.94,46.98"],
        ),
    ],
    status: Annotated[list[Status] | None, Query(description="Only these statuses (repeatable).")] = None,
    zoom: Annotated[int | None, Query(ge=0, le=24, description="Map zoom (simplifies).")] = None,
    limit: Annotated[int | None, Query(ge=1, description="Fewer features than the server's cap.")] = None,
) -> Response:
    box = parse_bbox(bbox)
    cap = min(limit or settings.web.feature_cap, settings.web.feature_cap)
    out = settings.output
    with open_readonly(out.working_path, {"geo": out.geo_path}) as con:
        result = query_viewport(
            con, out.layer, settings.source.key_name, ViewportQuery(box, status or list(STATUSES), zoom, cap)
        )
    # Serialised by hand (see web.geo); the tests check it against FeatureCollection.
    body = (
        f'{{"type":"FeatureCollection","returned":{result.returned},'
        f'"truncated":{json.dumps(result.truncated)},"cap":{cap},"features":{result.features_json}}}'
    )
    return Response(body, media_type="application/json")


def _field_list(text: str | None) -> list[str] | None:
    """The change log's JSON list of changed fields (kept as one item if another tool wrote plain text)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return [text]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# `:path` lets a key hold "/" (some counties write parcel numbers like 12-34/5); the map encodes the key.
@router.get(
    "/api/parcels/{key:path}",
    response_model=ParcelDetail,
    summary="One parcel: attributes, status, history",
    responses={404: {"model": Problem}, 503: {"model": Problem}},
)
def parcel(settings: SettingsDep, key: Annotated[str, Path(max_length=MAX_KEY_LENGTH)]) -> ParcelDetail:
    key_name = settings.source.key_name
    with open_readonly(settings.output.working_path) as con:
        cur = con.execute(f"SELECT * FROM main.parcels WHERE {q(key_name)} = ?", (key,))
        row = cur.fetchone()
        if row is None:
            raise HTTPException(404, f"no parcel with {key_name} {key!r}")
        record = dict(zip([d[0] for d in cur.description], row, strict=True))
        history = [
            Change(id=i, run_id=r, action=a, changed_fields=_field_list(f), at=at)
            for i, r, a, f, at in con.execute(
                f"SELECT id, run_id, action, changed_fields, at FROM main.change_log WHERE {q(key_name)} = ? "
                "ORDER BY id DESC LIMIT ?",
                (key, HISTORY_SHOWN),
            )
        ]
        errors = error_rows(con, key_name, f" WHERE {q(key_name)} = ?", [key], ERRORS_SHOWN, newest_first=True)
    # The carried columns in settings order; columns other applications added are not ours to show.
    names = [*(c.name for c in settings.columns), "gis_acres"]
    attributes = {name: record[name] for name in names if name in record}
    return ParcelDetail(
        key=key,
        status=record["sync_status"],
        reason=record.get("sync_reason"),
        message=record.get("sync_message"),
        in_geo=bool(record.get("in_geo")),
        attributes=attributes,
        sync={k: record.get(k) for k in SYNC_FIELDS if k in record},
        history=history,
        errors=errors,
    )
