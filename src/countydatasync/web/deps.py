"""Dependencies shared by the routes, as `Annotated` aliases; tests override `get_settings`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from countydatasync.settings import Settings
from countydatasync.web.jobs import SyncJob
from countydatasync.web.scheduler import Scheduler


def get_settings(request: Request) -> Settings:
    """The settings the app was created with (override in tests with app.dependency_overrides)."""
    return request.app.state.settings


def get_sync_job(request: Request) -> SyncJob:
    return request.app.state.sync_job


def get_scheduler(request: Request) -> Scheduler | None:
    """The app's scheduler, or None when the settings name no schedule."""
    return request.app.state.scheduler


SettingsDep = Annotated[Settings, Depends(get_settings)]
SyncJobDep = Annotated[SyncJob, Depends(get_sync_job)]
SchedulerDep = Annotated[Scheduler | None, Depends(get_scheduler)]
