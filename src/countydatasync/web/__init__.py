"""The web face: a FastAPI dashboard and REST API over the staging databases (`countydatasync serve`)."""

from countydatasync.web.app import create_app

__all__ = ["create_app"]
