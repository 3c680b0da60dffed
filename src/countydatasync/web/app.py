"""The FastAPI application: routers per resource, static assets from installed packages, security headers.

`create_app(settings)` builds a fresh app; nothing is global, so tests make one per staging directory.
When the settings name a schedule (`web.schedule_every` or `web.schedule_cron`), the app's lifespan runs
the scheduler thread: it starts with the server and stops with it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import swagger_ui_bundle
import xstatic.pkg.leaflet
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from countydatasync import __version__
from countydatasync.ops.schedule import schedule_from
from countydatasync.settings import Settings
from countydatasync.web.jobs import SyncJob, SyncRunner
from countydatasync.web.routes import errors, health, pages, parcels, runs, schedule, statistics, sync
from countydatasync.web.routes.pages import STATIC_DIR
from countydatasync.web.scheduler import Scheduler
from countydatasync.web.security import SecurityHeaders, security_headers
from countydatasync.web.staging import StagingUnavailable

log = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    scheduler: Scheduler | None = app.state.scheduler
    if scheduler is not None:
        scheduler.start()
    try:
        yield
    finally:
        if scheduler is not None and not scheduler.stop():
            log.warning("the scheduler thread did not stop in time")


def create_app(settings: Settings, sync_runner: SyncRunner | None = None) -> FastAPI:
    """The dashboard and REST API over the staging databases named in `settings`.

    sync_runner: what POST /api/sync and the schedule call (default: countydatasync.sync.run_sync).
    Raises ConfigError when the schedule in `settings.web` cannot be parsed.
    """
    app = FastAPI(
        title="CountyDataSync",
        version=__version__,
        description="Sync status, run history and statistics of the county's staging parcel databases.",
        docs_url=None,  # served by pages.docs_page from local files, so it works offline and under our CSP
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.sync_job = job = SyncJob(sync_runner) if sync_runner else SyncJob()
    plan = schedule_from(settings.web.schedule_every, settings.web.schedule_cron)
    app.state.scheduler = Scheduler(settings, job, plan) if plan else None

    for module in (health, runs, statistics, parcels, errors, sync, schedule, pages):
        app.include_router(module.router)
    app.mount("/static/leaflet", StaticFiles(directory=xstatic.pkg.leaflet.BASE_DIR), name="leaflet")
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(StagingUnavailable)
    async def _staging_unavailable(request: Request, exc: StagingUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers an unhandled error outside the middleware stack, so the headers are added here;
        # the error itself is re-raised to the server, which logs it.
        return JSONResponse(
            {"detail": "internal error; the server log has the details"},
            status_code=500,
            headers=security_headers(settings.web),
        )

    if settings.web.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.web.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(SecurityHeaders, web=settings.web)
    return app


def freeze_startup_heap() -> None:
    """Move everything allocated so far (the imported libraries, the app) out of the garbage collector's way.

    Each map request allocates thousands of short-lived objects, which triggers full collections; without
    this, each of those walks every object pandas, pyproj and FastAPI created at import and adds 50-60 ms to
    one request in twenty. Call it once, after create_app and before serving.
    """
    gc.collect()
    gc.freeze()
