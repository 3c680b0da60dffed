"""GET /api/health: is the app up, are the staging databases there, is a sync running."""

from __future__ import annotations

from fastapi import APIRouter

from countydatasync import __version__
from countydatasync.load.transaction import is_published
from countydatasync.web.deps import SettingsDep, SyncJobDep
from countydatasync.web.schemas import Health

router = APIRouter(tags=["health"])


# HEAD too: uptime monitors and load balancers often probe with it, and got 405. Left out of the schema, where
# it repeated GET's operation id (which client generators refuse); HTTP has HEAD wherever there is GET.
@router.get("/api/health", response_model=Health, summary="Service health")
@router.head("/api/health", response_model=Health, include_in_schema=False)
def health(settings: SettingsDep, job: SyncJobDep) -> Health:
    out = settings.output
    databases = {
        "geo": is_published(out.geo_path),
        "stats": is_published(out.stats_path),
        "working": is_published(out.working_path),
    }
    return Health(
        status="ok" if all(databases.values()) else "degraded",
        version=__version__,
        databases=databases,
        sync_running=job.busy(settings),
    )
