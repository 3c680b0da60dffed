"""Token, 409, headers, CORS: the edge of the app."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from countydatasync.settings import Settings
from countydatasync.sync.lock import run_lock
from countydatasync.web import create_app
from countydatasync.web.security import content_security_policy
from tests.web.conftest import TOKEN, Staging, make_settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_web_settings_defaults_are_closed() -> None:
    web = Settings().web
    assert web.host == "127.0.0.1"
    assert web.token is None and web.basemap_url is None and web.cors_origins == []
    assert TOKEN not in repr(Settings(web={"token": TOKEN}))  # SecretStr keeps it out of logs


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": TOKEN}, 401),
    ],
)
def test_sync_refuses_without_the_right_token(client: TestClient, headers: dict, code: int) -> None:
    response = client.post("/api/sync", headers=headers)
    assert response.status_code == code
    assert client.get("/api/sync").json()["started_at"] is None  # nothing started


def test_sync_disabled_without_a_configured_token(staging: Staging) -> None:
    web = staging.settings.web.model_copy(update={"token": None})
    settings = staging.settings.model_copy(update={"web": web})
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/sync", headers={"Authorization": "Bearer "}).status_code in (401, 403)
        assert client.post("/api/sync", headers=AUTH).status_code == 403


def _runs(staging: Staging) -> int:
    with sqlite3.connect(staging.settings.output.stats_path) as con:
        return con.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_sync_starts_in_the_background_and_a_second_one_is_409(fresh_staging: Staging) -> None:
    before = _runs(fresh_staging)
    app = create_app(fresh_staging.settings)
    with TestClient(app) as client:
        first = client.post("/api/sync", headers=AUTH, json={"full": True})
        second = client.post("/api/sync", headers=AUTH)
        assert first.status_code == 202 and first.json()["running"] is True and first.json()["full"] is True
        assert second.status_code == 409
        assert client.get("/api/health").json()["sync_running"] is True
        assert app.state.sync_job.wait(timeout=120)
        state = client.get("/api/sync").json()
        assert state["outcome"] == "succeeded" and state["run_id"] == before + 1
        runs = client.get("/api/runs").json()
        assert runs["items"][0]["run_id"] == before + 1 and runs["items"][0]["mode"] == "full"
        # Once it finished, another may start.
        assert client.post("/api/sync", headers=AUTH).status_code == 202
        assert app.state.sync_job.wait(timeout=120)
    assert _runs(fresh_staging) == before + 2


def test_sync_is_409_while_another_process_holds_the_run_lock(fresh_staging: Staging) -> None:
    with TestClient(create_app(fresh_staging.settings)) as client:
        with run_lock(fresh_staging.settings.output.directory):
            assert client.post("/api/sync", headers=AUTH).status_code == 409
            assert client.get("/api/health").json()["sync_running"] is True
        assert client.get("/api/health").json()["sync_running"] is False


def test_get_cannot_start_a_sync(client: TestClient) -> None:
    assert client.get("/api/sync", headers=AUTH).json()["started_at"] is None
    assert client.put("/api/sync", headers=AUTH).status_code == 405


def test_security_headers_on_pages_api_and_errors(client: TestClient) -> None:
    for url in ("/", "/map", "/api/health", "/api/parcels/missing", "/static/map.js"):
        headers = client.get(url).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"


def test_csp_allows_the_basemap_host_for_images_only() -> None:
    web = Settings(web={"basemap_url": "https://{s}.tiles.example.gov/{z}/{x}/{y}.png"}).web
    csp = dict(part.split(" ", 1) for part in content_security_policy(web).split("; "))
    assert csp["img-src"] == "'self' data: https://*.tiles.example.gov"
    assert csp["script-src"] == "'self'" and csp["connect-src"] == "'self'"
    with pytest.raises(ValueError):
        Settings(web={"basemap_url": "javascript:alert(1)"})
    with TestClient(create_app(Settings(web=web))) as client:
        headers = client.get("/map").headers
    assert "https://*.tiles.example.gov" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"  # the origin only, for tile hosts


def test_no_cors_by_default(client: TestClient) -> None:
    response = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/api/sync", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_only_for_configured_origins(staging: Staging) -> None:
    web = staging.settings.web.model_copy(update={"cors_origins": ["https://gis.county.example"]})
    with TestClient(create_app(staging.settings.model_copy(update={"web": web}))) as client:
        ok = client.get("/api/health", headers={"Origin": "https://gis.county.example"})
        assert ok.headers["access-control-allow-origin"] == "https://gis.county.example"
        other = client.get("/api/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_file_paths_from_requests(client: TestClient) -> None:
    for url in (
        "/static/../settings.py",
        "/static/%2e%2e/app.py",
        "/static/leaflet/../../../../etc/passwd",
        "/static/..%2F..%2Fsettings.py",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "root:" not in response.text and "BaseSettings" not in response.text


def test_reads_keep_answering_while_a_sync_publishes(fresh_staging: Staging) -> None:
    app = create_app(fresh_staging.settings)
    with TestClient(app) as client:
        bbox = ",".join(map(str, client.get("/api/map-config").json()["extent"]))
        assert client.post("/api/sync", headers=AUTH, json={"full": True}).status_code == 202
        codes = []
        while app.state.sync_job.running:
            codes.append(client.get("/api/parcels", params={"bbox": bbox, "zoom": 15}).status_code)
            codes.append(client.get("/api/statistics/status").status_code)
        assert app.state.sync_job.wait(timeout=120)
        assert client.get("/api/sync").json()["outcome"] == "succeeded"
    assert len(codes) >= 2 and set(codes) == {200}


def test_an_unexpected_error_answers_500_with_the_headers_and_no_details(staging: Staging) -> None:
    app = create_app(staging.settings)

    def broken() -> None:
        raise RuntimeError("secret internals: /srv/county/working.sqlite")

    app.add_api_route("/api/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/broken")
    assert response.status_code == 500
    assert "secret internals" not in response.text and "/srv" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("configured", [f"{TOKEN} ", f"{TOKEN}\n", f"\t{TOKEN}"])
def test_a_token_configured_with_whitespace_around_it_is_accepted(fresh_staging: Staging, configured: str) -> None:
    """HTTP drops the whitespace around a header value, so a token set with a trailing space (Windows `set`
    keeps one) or a newline could never be matched: every POST was 403."""
    source = Path(fresh_staging.settings.source.url.removeprefix("sqlite:///"))
    settings = make_settings(source, fresh_staging.settings.output.directory, token=configured)
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.post("/api/sync", headers=AUTH).status_code == 202
        assert app.state.sync_job.wait(timeout=120)
        assert client.post("/api/sync", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 403
