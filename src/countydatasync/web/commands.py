"""`countydatasync serve`: the dashboard and API under uvicorn.

Registered in cli.py with `app.command()(serve)`. It binds to the settings' host, 127.0.0.1 by default,
so nothing outside this machine reaches it unless the settings say so. `--every` / `--cron` (or the
settings' `web.schedule_every` / `web.schedule_cron`) add syncs on a schedule in the background.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from countydatasync.errors import ConfigError
from countydatasync.ops.schedule import schedule_from
from countydatasync.settings import Settings, load_settings

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_schedule(settings: Settings, every: str | None, cron: str | None) -> Settings:
    """`settings` with the schedule the command line asks for: `--every` or `--cron` replaces both of the
    settings' schedule fields; neither keeps them. Raises ConfigError for both at once or a bad value."""
    if every is None and cron is None:
        return settings
    schedule_from(every, cron)  # validates, naming the bad value
    web = settings.web.model_copy(update={"schedule_every": every, "schedule_cron": cron})
    return settings.model_copy(update={"web": web})


def serve(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file (default: $CDS_CONFIG or ./countydatasync.toml)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: web.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: web.port, 8750).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Also sync in the background at this interval: 30s, 15m, 1h, 1d (default: web.schedule_every).",
        ),
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron",
            help="Also sync in the background on this cron schedule, server local time, "
            "e.g. '*/15 * * * *' (default: web.schedule_cron).",
        ),
    ] = None,
) -> None:
    """Serve the dashboard, the parcel map and the REST API (docs at /docs); optionally sync on a schedule."""
    import uvicorn

    from countydatasync.ops.credentials import warn_about_env_file
    from countydatasync.ops.logs import configure_logging
    from countydatasync.web.app import create_app, freeze_startup_heap

    try:
        settings = with_schedule(load_settings(config), every, cron)
        configure_logging(settings)  # the edge configures logging once (rotating file, redaction)
        warn_about_env_file()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    bind_host = host or settings.web.host
    bind_port = port or settings.web.port
    if not _is_loopback(bind_host):
        typer.echo(
            f"warning: listening on {bind_host}: other machines can reach the dashboard; keep it "
            "behind a firewall or a TLS reverse proxy",
            err=True,
        )
    if settings.web.token is None:
        typer.echo("note: web.token is not set, so syncs cannot be started from the web", err=True)
    typer.echo(f"dashboard on http://{bind_host}:{bind_port}/  (API docs at /docs)")
    plan = schedule_from(settings.web.schedule_every, settings.web.schedule_cron)
    if plan is not None:
        typer.echo(f"syncing {plan.description}; the run lock keeps runs from overlapping")
    app = create_app(settings)
    freeze_startup_heap()
    # log_config=None: uvicorn's own set-up would give its loggers handlers of their own (stderr only),
    # past the rotating file and its redaction; without it they reach ours.
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        log_config=None,
    )
