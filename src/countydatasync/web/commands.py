"""`countydatasync serve`: the dashboard and API under uvicorn.

Registered in cli.py with `app.command()(serve)`. It binds to the settings' host, 127.0.0.1 by default,
so nothing outside this machine reaches it unless the settings say so.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from countydatasync.errors import ConfigError
from countydatasync.settings import load_settings

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Settings file (default: $CDS_CONFIG or ./countydatasync.toml).")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: web.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: web.port, 8750).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the dashboard, the parcel map and the REST API (docs at /docs)."""
    import uvicorn

    from countydatasync.web.app import create_app, freeze_startup_heap

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not logging.getLogger().handlers:  # the edge configures logging once; the library only logs
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind_host = host or settings.web.host
    bind_port = port or settings.web.port
    if not _is_loopback(bind_host):
        typer.echo(f"warning: listening on {bind_host}: other machines can reach the dashboard; keep it "
                   "behind a firewall or a TLS reverse proxy", err=True)
    if settings.web.token is None:
        typer.echo("note: web.token is not set, so syncs cannot be started from the web", err=True)
    typer.echo(f"dashboard on http://{bind_host}:{bind_port}/  (API docs at /docs)")
    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level, server_header=False,
                proxy_headers=False)
