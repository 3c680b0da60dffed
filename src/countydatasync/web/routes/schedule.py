"""GET /api/schedule: whether `serve` runs syncs on a schedule, and when the next one is due."""

from __future__ import annotations

from fastapi import APIRouter

from countydatasync.web.deps import SchedulerDep
from countydatasync.web.schemas import ScheduleState

router = APIRouter(tags=["sync"])


@router.get("/api/schedule", response_model=ScheduleState, summary="The background sync schedule")
def schedule_state(scheduler: SchedulerDep) -> ScheduleState:
    if scheduler is None:
        return ScheduleState(
            enabled=False, description=None, next_run=None, last_tick=None, last_outcome=None, started=0, skipped=0
        )
    next_run, last_tick = scheduler.next_run, scheduler.last_tick
    return ScheduleState(
        enabled=True,
        description=scheduler.schedule.description,
        next_run=next_run.isoformat() if next_run else None,
        last_tick=last_tick.isoformat() if last_tick else None,
        last_outcome=scheduler.last_outcome,
        started=scheduler.started,
        skipped=scheduler.skipped,
    )
