"""The HTML pages (dashboard, map, API docs) and the map's configuration.

The pages are static files whose scripts fetch everything from the API, so no value is ever put into
HTML on the server and the Content-Security-Policy can forbid inline scripts.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from countydatasync.web.deps import SettingsDep
from countydatasync.web.geo import layer_extent_wgs84
from countydatasync.web.schemas import MapConfig
from countydatasync.web.staging import StagingUnavailable, open_readonly

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
def dashboard_page() -> FileResponse:
    return _page("dashboard.html")


@router.get("/map", include_in_schema=False)
def map_page() -> FileResponse:
    return _page("map.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/docs", include_in_schema=False)
def docs_page() -> FileResponse:
    """Swagger UI from the installed swagger-ui-bundle package, started by our own script (no CDN)."""
    return _page("docs.html")


@router.get("/api/map-config", response_model=MapConfig, tags=["map"], summary="What the map page needs")
def map_config(settings: SettingsDep) -> MapConfig:
    out = settings.output
    extent = None
    try:
        with open_readonly(out.geo_path) as con:
            found = layer_extent_wgs84(con, "main", out.layer)
            extent = list(found) if found else None
    except StagingUnavailable:
        pass  # the map still opens; it says there is nothing to show yet
    web = settings.web
    return MapConfig(
        basemap_url=web.basemap_url,
        basemap_attribution=web.basemap_attribution,
        feature_cap=web.feature_cap,
        extent=extent,
        key_name=settings.source.key_name,
    )
