"""GET /api/health: is the app up, are the staging databases there, is a sync running."""

from __future__ import annotations

from fastapi import APIRouter

from countydatasync import __version__
from countydatasync.web.deps import SettingsDep, SyncJobDep
from countydatasync.web.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/api/health", response_model=Health, summary="Service health")
def health(settings: SettingsDep, job: SyncJobDep) -> Health:
    out = settings.output
    databases = {"geo": out.geo_path.is_file(), "stats": out.stats_path.is_file(),
                 "working": out.working_path.is_file()}
    return Health(status="ok" if all(databases.values()) else "degraded", version=__version__,
                  databases=databases, sync_running=job.busy(settings))
