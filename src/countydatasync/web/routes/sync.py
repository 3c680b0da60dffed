"""POST /api/sync starts a sync in the background (token required); GET /api/sync reports on it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, status

from countydatasync.web.deps import SettingsDep, SyncJobDep
from countydatasync.web.jobs import SyncBusy, SyncJob
from countydatasync.web.schemas import Problem, SyncRequest, SyncState
from countydatasync.web.security import require_token

router = APIRouter(tags=["sync"])


def _state(job: SyncJob) -> SyncState:
    return SyncState(
        running=job.running,
        trigger=job.trigger,
        started_at=job.started_at.isoformat() if job.started_at else None,
        finished_at=job.finished_at.isoformat() if job.finished_at else None,
        full=job.full,
        run_id=job.run_id,
        outcome=job.outcome,
        message=job.message,
    )


@router.post(
    "/api/sync",
    response_model=SyncState,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a sync in the background",
    dependencies=[Depends(require_token)],
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        401: {"model": Problem},
        403: {"model": Problem},
        409: {"model": Problem},
    },
)
def start_sync(
    settings: SettingsDep, job: SyncJobDep, request: Annotated[SyncRequest | None, Body()] = None
) -> SyncState:
    try:
        job.start(settings, full=bool(request and request.full))
    except SyncBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _state(job)


@router.get("/api/sync", response_model=SyncState, summary="The web-started sync's state")
def sync_state(job: SyncJobDep) -> SyncState:
    return _state(job)
