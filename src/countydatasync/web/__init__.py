"""The web face: a FastAPI dashboard and REST API over the staging databases (`countydatasync serve`)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported when the app is asked for, not with this package: every command of the CLI
    # imports `serve` from here, and a sync waited 0.18 s for a web framework it does not use.
    if name == "create_app":
        from countydatasync.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
