"""Security at the edge: the bearer token for mutating endpoints and the response headers.

The token is compared with hmac.compare_digest, so the time a wrong guess takes says nothing about how
much of it was right. Headers are added by a plain ASGI middleware (no per-request task switching).
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from countydatasync.settings import Settings, WebSettings
from countydatasync.web.deps import get_settings

bearer = HTTPBearer(auto_error=False, description="The token set as web.token (CDS_WEB__TOKEN).")


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Refuse the request unless it carries `Authorization: Bearer <web.token>`.

    401 without credentials, 403 with a wrong token or when no token is configured (then nothing can
    start a sync from the web).
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    # HTTP drops the whitespace around a header value, so a token configured with some (a trailing space
    # that Windows `set` keeps, a newline from a file) could never match: it is compared without it.
    expected = settings.web.token.get_secret_value().strip() if settings.web.token else ""
    if not expected:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "starting syncs from the web is disabled: set web.token")
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid token")


def tile_source(template: str) -> str:
    """The basemap's tile host as a CSP source. CSP allows a wildcard only as the whole leftmost label, so
    the labels up to the last placeholder ({s} subdomains) become one: https://{s}.tiles.example and
    https://tiles-{s}.example.net -> https://*.tiles.example and https://*.example.net."""
    parts = urlsplit(template)
    labels = parts.netloc.split(".")
    templated = [i for i, label in enumerate(labels) if "{" in label]
    host = ".".join(["*", *labels[templated[-1] + 1 :]]) if templated else parts.netloc
    return f"{parts.scheme}://{host}"


def content_security_policy(web: WebSettings) -> str:
    """Only our own scripts and styles; images also from the basemap's tile host when one is set."""
    images = ["'self'", "data:"]
    if web.basemap_url:
        images.append(tile_source(web.basemap_url))
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "connect-src 'self'",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(web: WebSettings) -> dict[str, str]:
    return {
        "content-security-policy": content_security_policy(web),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        # Tile servers may require a Referer; they get the origin only, never a page's path.
        "referrer-policy": "strict-origin-when-cross-origin" if web.basemap_url else "no-referrer",
        "cross-origin-opener-policy": "same-origin",
    }


class SecurityHeaders:
    """ASGI middleware that adds the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp, web: WebSettings) -> None:
        self.app = app
        self.headers = [(name.encode(), value.encode()) for name, value in security_headers(web).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
