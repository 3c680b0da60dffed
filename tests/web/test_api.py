"""The read endpoints, checked against the staging databases the pipeline wrote."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient

from countydatasync.settings import Settings
from countydatasync.web import create_app
from tests.web.conftest import XSS_OWNER, Staging, make_settings


def test_health_reports_databases_and_no_running_sync(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["databases"] == {"geo": True, "stats": True, "working": True}
    assert body["sync_running"] is False


def test_health_answers_head_requests_as_monitors_send_them(client: TestClient) -> None:
    response = client.head("/api/health")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"] == "application/json"
    # One operation per path and method in the schema: HEAD once repeated GET's operation id.
    ids = [op["operationId"] for path in client.get("/openapi.json").json()["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_runs_list_matches_the_stats_db(client: TestClient, staging: Staging) -> None:
    body = client.get("/api/runs").json()
    with sqlite3.connect(staging.settings.output.stats_path) as con:
        runs = con.execute("SELECT run_id, extracted, inserted, rejected FROM runs ORDER BY run_id DESC").fetchall()
    assert body["total"] == len(runs) >= 1
    assert [(r["run_id"], r["extracted"], r["inserted"], r["rejected"]) for r in body["items"]] == runs
    run = body["items"][0]
    assert run["extracted"] == run["inserted"] + run["updated"] + run["unchanged"] + run["rejected"]


def test_one_run_has_its_counts_and_errors(client: TestClient, staging: Staging) -> None:
    body = client.get("/api/runs/1").json()
    assert body["run"]["run_id"] == 1 and body["run"]["status"] == "succeeded"
    with staging.working() as con:
        by_reason = dict(con.execute("SELECT reason, count(*) FROM errors WHERE run_id = 1 GROUP BY 1"))
    assert {c["reason"]: c["count"] for c in body["error_counts"]} == by_reason
    assert len(body["errors"]) == sum(by_reason.values())
    rejected = sum(c["count"] for c in body["error_counts"] if c["severity"] == "error")
    assert rejected == body["run"]["rejected"]


def test_unknown_run_is_404(client: TestClient) -> None:
    assert client.get("/api/runs/999999").status_code == 404
    assert client.get("/api/runs/0").status_code == 422


def test_statistics_are_the_aggregates(client: TestClient, staging: Staging) -> None:
    body = client.get("/api/statistics", params={"dimension": "zoning"}).json()
    with sqlite3.connect(staging.settings.output.stats_path) as con:
        rows = dict(con.execute("SELECT value, parcel_count FROM aggregates WHERE dimension = 'zoning'"))
        acres = con.execute("SELECT acres_sum FROM aggregates WHERE dimension = 'zoning' AND value = 'R-4'").fetchone()
    assert {g["value"]: g["parcel_count"] for g in body["groups"]} == rows
    assert set(body["dimensions"]) == set(staging.settings.stats.dimensions)
    r4 = next(g for g in body["groups"] if g["value"] == "R-4")
    assert r4["measures"]["acres"]["sum"] == acres[0]
    assert all(g["dimension"] == "zoning" for g in body["groups"])


def test_status_counts_match_the_working_db(client: TestClient, staging: Staging) -> None:
    body = client.get("/api/statistics/status").json()
    with staging.working() as con:
        counts = dict(con.execute("SELECT sync_status, count(*) FROM parcels GROUP BY 1").fetchall())
        drawn = dict(con.execute("SELECT sync_status, count(*) FROM parcels WHERE in_geo = 1 GROUP BY 1"))
    assert body["counts"] == {s: counts.get(s, 0) for s in ("synced", "pending", "error")}
    assert body["counts"]["pending"] == len(staging.pending_keys) and body["counts"]["error"] > 0
    assert body["on_map"] == {s: drawn.get(s, 0) for s in ("synced", "pending", "error")}
    assert body["total"] == sum(counts.values())


def test_errors_filter_and_page(client: TestClient, staging: Staging) -> None:
    everything = client.get("/api/errors", params={"limit": 1000}).json()
    with staging.working() as con:
        total = con.execute("SELECT count(*) FROM errors").fetchone()[0]
        warnings = con.execute("SELECT count(*) FROM errors WHERE severity = 'warning'").fetchone()[0]
    assert everything["total"] == len(everything["items"]) == total > 0
    assert all(e["reason"] for e in everything["items"])
    only = client.get("/api/errors", params={"severity": "warning"}).json()
    assert only["total"] == warnings and all(e["severity"] == "warning" for e in only["items"])
    page = client.get("/api/errors", params={"limit": 2, "offset": 1}).json()
    assert [e["id"] for e in page["items"]] == [e["id"] for e in everything["items"][1:3]]
    assert client.get("/api/errors", params={"severity": "fatal"}).status_code == 422


def test_parcel_detail_has_attributes_status_and_history(client: TestClient, staging: Staging) -> None:
    body = client.get(f"/api/parcels/{staging.xss_key}").json()
    assert body["key"] == staging.xss_key
    assert body["status"] == "synced" and body["in_geo"] is True
    assert body["attributes"]["owner_name"] == XSS_OWNER  # JSON carries the raw text; the page escapes it
    assert list(body["attributes"]) == [c.name for c in staging.settings.columns] + ["gis_acres"]
    with staging.working() as con:
        logged = con.execute(
            "SELECT id, action FROM change_log WHERE pin = ? ORDER BY id DESC", (staging.xss_key,)
        ).fetchall()
    assert [(h["id"], h["action"]) for h in body["history"]] == logged
    assert body["history"][0]["action"] == "update" and "land_value" in body["history"][0]["changed_fields"]
    assert body["history"][0]["run_id"] == body["sync"]["last_run_id"] == 2


def test_parcel_in_error_carries_its_reason(client: TestClient, staging: Staging) -> None:
    with staging.working() as con:
        key, reason = con.execute(
            "SELECT pin, sync_reason FROM parcels WHERE sync_status = 'error' ORDER BY pin LIMIT 1"
        ).fetchone()
    body = client.get(f"/api/parcels/{key}").json()
    assert body["status"] == "error" and body["reason"] == reason
    assert body["errors"] and body["errors"][0]["reason"] == reason


def test_unknown_parcel_is_404(client: TestClient) -> None:
    response = client.get("/api/parcels/no-such-parcel")
    assert response.status_code == 404 and "no-such-parcel" in response.json()["detail"]


def test_missing_staging_answers_503_without_creating_files(tmp_path: Path) -> None:
    settings = Settings(output={"directory": tmp_path / "nothing"})
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/health").json()["status"] == "degraded"
        for url in (
            "/api/runs",
            "/api/statistics",
            "/api/errors",
            "/api/parcels/1",
            "/api/parcels?bbox=-123,46,-122,47",
        ):
            response = client.get(url)
            assert response.status_code == 503, url
            assert str(tmp_path) not in response.text  # no server paths in answers
        assert client.get("/api/map-config").json()["extent"] is None
    assert not (tmp_path / "nothing").exists()


def _digest(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_gets_change_nothing(client: TestClient, staging: Staging) -> None:
    before = _digest(staging.settings.output.directory)
    for url in (
        "/api/health",
        "/api/runs",
        "/api/runs/1",
        "/api/statistics",
        "/api/statistics/status",
        "/api/errors",
        f"/api/parcels/{staging.xss_key}",
        "/api/map-config",
        "/api/sync",
        "/api/parcels?bbox=-180,-90,180,90&zoom=12",
        "/",
        "/map",
        "/docs",
    ):
        assert client.get(url).status_code == 200, url
    assert _digest(staging.settings.output.directory) == before


def test_pages_and_offline_assets(client: TestClient) -> None:
    for url, marker in (("/", "dashboard.js"), ("/map", "map.js"), ("/docs", "docs.js")):
        page = client.get(url)
        assert page.headers["content-type"].startswith("text/html") and marker in page.text
        assert "<script>" not in page.text  # only external scripts: the CSP forbids inline ones
    assert "Leaflet" in client.get("/static/leaflet/leaflet.js").text
    assert client.get("/static/leaflet/leaflet.css").status_code == 200
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    assert "/openapi.json" in client.get("/static/docs.js").text
    assert client.get("/openapi.json").json()["info"]["title"] == "CountyDataSync"


def test_our_scripts_never_parse_data_as_html() -> None:
    static = Path(create_app.__code__.co_filename).parent / "static"
    scripts = sorted(static.glob("*.js"))
    assert {p.name for p in scripts} >= {"common.js", "map.js", "dashboard.js", "docs.js"}
    for script in scripts:
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{script.name} uses {sink}"


def test_staging_folder_with_awkward_characters(staging: Staging, tmp_path: Path) -> None:
    folder = tmp_path / "county data #2 ?x=1 100%"
    shutil.copytree(staging.settings.output.directory, folder)
    settings = staging.settings.model_copy(
        update={"output": staging.settings.output.model_copy(update={"directory": folder})}
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/runs").json()["total"] == 2
        assert client.get(f"/api/parcels/{staging.xss_key}").status_code == 200
        bbox = ",".join(map(str, client.get("/api/map-config").json()["extent"]))
        assert client.get("/api/parcels", params={"bbox": bbox}).json()["returned"] > 1000


def test_a_key_with_a_slash_is_addressable(fresh_staging: Staging) -> None:
    key = "12-34/5 A"
    with sqlite3.connect(fresh_staging.settings.output.working_path) as con:
        con.execute(
            "INSERT INTO parcels (pin, owner_name, sync_status, in_geo) VALUES (?, 'SLASH', 'synced', 0)", (key,)
        )
    with TestClient(create_app(fresh_staging.settings)) as client:
        body = client.get("/api/parcels/" + quote(key, safe="")).json()
        assert body["key"] == key and body["attributes"]["owner_name"] == "SLASH"
        assert client.get("/api/parcels/12-34").status_code == 404


def test_empty_staging_files_read_as_not_synced_yet(tmp_path: Path) -> None:
    """Empty files where the staging databases belong (a failed first sync of an earlier version left them,
    SQLite creating them on opening; the sync now removes them): the API said 'ok' and answered some
    requests with SQLite's 'no such table'."""
    settings = make_settings(tmp_path / "county.sqlite", tmp_path / "staging")
    out = settings.output
    out.directory.mkdir(parents=True)
    for path in (out.geo_path, out.stats_path, out.working_path):
        path.touch()
    with TestClient(create_app(settings)) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "degraded"
        assert health["databases"] == {"geo": False, "stats": False, "working": False}
        for url in (
            "/api/runs",
            "/api/runs/1",
            "/api/statistics",
            "/api/statistics/status",
            "/api/errors",
            "/api/parcels/1",
            "/api/parcels?bbox=-123,46,-122,47",
        ):
            response = client.get(url)
            assert response.status_code == 503, url
            assert response.json()["detail"].endswith("run a sync first"), url
        assert client.get("/api/map-config").json()["extent"] is None


# A sync killed in the middle of its transaction (power cut, kill -9): original pages are in the journals and
# some changed pages already in the files, which are consistent again only once the journals are rolled back.
_KILLED_SYNC = """
import os, sys, sqlite3

con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("ATTACH DATABASE ? AS geo", (sys.argv[2],))
con.execute("ATTACH DATABASE ? AS stats", (sys.argv[3],))
for schema in ("main", "geo", "stats"):
    con.execute(f"PRAGMA {schema}.cache_size = 1")  # changed pages go to the files at once
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE main.parcels SET sync_status = 'error'")
con.execute("DELETE FROM geo.rtree_parcels_geom")
con.execute("DELETE FROM stats.runs")
os._exit(9)
"""


def test_reads_roll_back_what_a_killed_sync_left(fresh_staging: Staging) -> None:
    """A read-only connection cannot roll back a hot journal (SQLITE_READONLY_ROLLBACK), so every read
    answered 503 until the next sync."""
    out = fresh_staging.settings.output
    published = _digest(out.directory)
    with TestClient(create_app(fresh_staging.settings)) as client:
        counts = client.get("/api/statistics/status").json()["counts"]
        bbox = ",".join(map(str, client.get("/api/map-config").json()["extent"]))
        on_map = client.get("/api/parcels", params={"bbox": bbox}).json()["returned"]
        runs = client.get("/api/runs").json()["total"]
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_SYNC, str(out.working_path), str(out.geo_path), str(out.stats_path)],
            check=False,
        )
        assert killed.returncode == 9
        journals = [Path(f"{p}-journal") for p in (out.working_path, out.geo_path, out.stats_path)]
        assert all(j.is_file() for j in journals)

        assert client.get("/api/statistics/status").json()["counts"] == counts
        body = client.get("/api/parcels", params={"bbox": bbox}).json()
        assert body["returned"] == on_map > 0
        assert client.get("/api/runs").json()["total"] == runs
    assert not any(j.exists() for j in journals)
    assert _digest(out.directory) == published  # as the last sync published them


def test_a_parcel_with_a_very_long_key_is_addressable(fresh_staging: Staging) -> None:
    """The pipeline takes keys of any length, but the API refused keys over 200 characters (422): such a
    parcel was drawn on the map and its popup could not load."""
    key = "LOT/" + "é%'\"" * 100  # 404 characters, percent-encoded to 2,000 or so
    with sqlite3.connect(fresh_staging.settings.output.working_path) as con:
        con.execute("INSERT INTO parcels (pin, sync_status, in_geo) VALUES (?, 'error', 0)", (key,))
        con.execute(
            "INSERT INTO errors (run_id, pin, reason, severity) VALUES (2, ?, 'null_geometry', 'error')", (key,)
        )
    with TestClient(create_app(fresh_staging.settings)) as client:
        body = client.get("/api/parcels/" + quote(key, safe="")).json()
        assert body["key"] == key and body["status"] == "error"
        assert [e["key"] for e in body["errors"]] == [key]
        assert client.get("/api/errors", params={"key": key}).json()["total"] == 1
