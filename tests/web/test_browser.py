"""The map and the dashboard in Debian's Chromium (Playwright), against a live uvicorn on 127.0.0.1."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from playwright.sync_api import expect

from countydatasync.web import create_app
from tests.web.conftest import TOKEN, XSS_OWNER, Staging
from tests.web.live_server import free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CDS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COLORS = {"synced": "#1a9641", "pending": "#e6b800", "error": "#d7191c"}


@contextmanager
def _serving(app: object, port: int) -> Iterator[str]:
    live = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    thread = threading.Thread(target=live.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not live.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        live.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(staging: Staging) -> Iterator[str]:
    with _serving(create_app(staging.settings), free_port()) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # imported here: a missing browser skips, not errors

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []  # console errors (CSP violations among them) and dialogs (an executed payload)
    page.on("console", lambda msg: msg.type == "error" and page.problems.append(msg.text))
    page.on("pageerror", lambda exc: page.problems.append(str(exc)))
    page.on("response", lambda r: r.status >= 400 and page.problems.append(f"{r.status} {r.url}"))
    page.on("dialog", lambda dialog: (page.problems.append("dialog: " + dialog.message), dialog.dismiss()))
    yield page
    context.close()


def _count(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def test_map_draws_parcels_by_status_with_legend_and_popup(page, server: str, staging: Staging, tmp_path: Path) -> None:
    with staging.working() as con:
        totals = dict(con.execute("SELECT sync_status, count(*) FROM parcels GROUP BY 1").fetchall())
        drawn = dict(con.execute("SELECT sync_status, count(*) FROM parcels WHERE in_geo = 1 GROUP BY 1"))
    page.goto(server + "/map")
    page.wait_for_selector("#map[data-state=loaded]", timeout=20_000)

    for status, color in COLORS.items():
        shapes = page.locator(f"path.parcel-{status}")
        assert shapes.count() == drawn.get(status, 0), status
        assert shapes.first.get_attribute("fill") == color
        assert _count(page.locator(f"#count-{status}").inner_text()) == totals.get(status, 0)
    assert drawn["pending"] > 0 and drawn["error"] > 0

    # The popup of the parcel whose owner is an HTML payload shows the payload as text.
    page.locator(f'path[data-key="{staging.xss_key}"]').click()
    popup = page.locator(".leaflet-popup-content .popup table")
    popup.wait_for(timeout=10_000)
    assert XSS_OWNER in popup.inner_text()
    assert page.locator(".leaflet-popup-content img").count() == 0
    page.screenshot(path=str(tmp_path / "map-popup.png"), animations="disabled")

    # An error parcel's popup carries its reason.
    page.locator(".leaflet-popup-close-button").click()
    page.locator(f'path[data-key="{staging.broken_keys[0]}"]').click()
    popup = page.locator(".leaflet-popup-content .popup h3")
    popup.wait_for(timeout=10_000)
    assert popup.inner_text() == "Error parcel"
    assert "null_geometry" in page.locator(".leaflet-popup-content").inner_text()

    # The status filter: without 'synced' only pending and error parcels remain.
    page.locator("input[name=status][value=synced]").uncheck()
    expect(page.locator("path.parcel-synced")).to_have_count(0, timeout=10_000)  # no eval: the CSP forbids it
    page.wait_for_selector("#map[data-state=loaded]")
    expect(page.locator("path.parcel-pending")).to_have_count(drawn["pending"])
    expect(page.locator("path.parcel-error")).to_have_count(drawn["error"])
    page.screenshot(path=str(tmp_path / "map-filtered.png"), animations="disabled")
    assert page.problems == []


def test_dashboard_shows_runs_statistics_and_errors(page, server: str, staging: Staging, tmp_path: Path) -> None:
    page.goto(server + "/")
    page.wait_for_selector("#run-history table")
    page.wait_for_selector("#statistics table")
    with staging.working() as con:
        errors = con.execute("SELECT count(*) FROM errors WHERE run_id = 2").fetchone()[0]
    assert page.locator("#run-history tbody tr").count() == 2
    assert "incremental" in page.locator("#last-run").inner_text()
    assert page.locator("#last-errors tbody tr").count() == errors > 0
    page.select_option("#dimension", "zoning")
    assert "R-4" in page.locator("#statistics").inner_text()
    assert page.get_by_role("link", name="Open the map").get_attribute("href") == "/map"
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert page.problems == []


def test_api_docs_work_offline_under_the_csp(page, server: str) -> None:
    page.goto(server + "/docs")
    operations = page.locator(".opblock-summary-path")
    expect(operations.filter(has_text="/api/parcels/{key}")).to_have_count(1, timeout=20_000)
    assert operations.count() >= 11
    assert page.problems == []


def test_basemap_from_settings_is_drawn_under_the_parcels(page, staging: Staging, tmp_path: Path) -> None:
    port = free_port()
    # The app's own favicon stands in for a tile server, so the test needs no network.
    template = f"http://127.0.0.1:{port}/static/favicon.svg?z={{z}}&x={{x}}&y={{y}}"
    web = staging.settings.web.model_copy(update={"basemap_url": template, "basemap_attribution": "Tiles <b>test</b>"})
    with _serving(create_app(staging.settings.model_copy(update={"web": web})), port) as base:
        page.goto(base + "/map")
        page.wait_for_selector("#map[data-state=loaded]", timeout=20_000)
        tiles = page.locator("img.leaflet-tile")
        expect(tiles.first).to_be_visible()
        assert "/static/favicon.svg?z=" in tiles.first.get_attribute("src")
        assert page.locator("#attribution").inner_text() == "Tiles <b>test</b>"  # text, not markup
        assert page.locator("path.parcel-synced").count() > 0
        page.screenshot(path=str(tmp_path / "map-basemap.png"))
    assert page.problems == []


def test_dashboard_starts_a_sync_with_the_token(page, fresh_staging: Staging) -> None:
    with _serving(create_app(fresh_staging.settings), free_port()) as base:
        page.goto(base + "/")
        page.wait_for_selector("#run-history table")
        before = page.locator("#run-history tbody tr").count()
        page.fill("#sync-token", "not-the-token")
        page.click("#sync-form button")
        expect(page.locator("#sync-state")).to_have_text("Not started: invalid token")
        page.fill("#sync-token", TOKEN)
        page.click("#sync-form button")
        expect(page.locator("#sync-state")).to_have_text("Sync succeeded.", timeout=60_000)
        expect(page.locator("#run-history tbody tr")).to_have_count(before + 1)
    # The refused attempt shows up as a 403 in the console; nothing else may.
    assert [p for p in page.problems if "403" not in p] == []


def test_dashboard_shows_the_next_scheduled_sync(page, fresh_staging: Staging) -> None:
    web = fresh_staging.settings.web.model_copy(update={"schedule_every": "1h"})
    settings = fresh_staging.settings.model_copy(update={"web": web})
    with _serving(create_app(settings), free_port()) as base:
        page.goto(base + "/")
        expect(page.locator("#schedule-state")).to_have_text(re.compile(r"^Scheduled every 1h; next: \S.*\d"))
    assert page.problems == []


def test_dashboard_says_when_there_is_no_schedule(page, server: str) -> None:
    page.goto(server + "/")
    expect(page.locator("#schedule-state")).to_have_text(re.compile(r"^No schedule"))
    assert page.problems == []


def _parcel_requests(page) -> object:
    return page.expect_response(lambda r: "/api/parcels?" in r.url, timeout=10_000)


def test_map_zooms_in_to_its_limit_without_refused_requests(page, server: str) -> None:
    """Without a basemap Leaflet had no zoom limit: past zoom 24 the API refused every request (422)."""
    page.goto(server + "/map")
    page.wait_for_selector("#map[data-state=loaded]", timeout=20_000)
    zoom_in = page.locator(".leaflet-control-zoom-in")
    zooms = []
    for _ in range(16):  # from the county's extent (zoom 14 or so) to well past 24
        if "leaflet-disabled" in zoom_in.get_attribute("class"):
            break
        with _parcel_requests(page) as answer:
            zoom_in.click()
        zooms.append(int(parse_qs(urlsplit(answer.value.url).query)["zoom"][0]))
        assert answer.value.status == 200, answer.value.url
        page.wait_for_selector("#map[data-state=loaded]")
    assert "leaflet-disabled" in zoom_in.get_attribute("class")
    assert zooms[-1] == max(zooms) <= 24
    assert page.problems == []


def test_map_panned_off_the_world_asks_for_nothing(page, server: str) -> None:
    """Leaflet lets the map be dragged past the antimeridian; the box it then sent (west > 180 clamped to
    east = 180) was refused with a 422 and the map said it could not load parcels."""
    page.goto(server + "/map")
    page.wait_for_selector("#map[data-state=loaded]", timeout=20_000)
    zoom_out = page.locator(".leaflet-control-zoom-out")
    while "leaflet-disabled" not in zoom_out.get_attribute("class"):
        with _parcel_requests(page):
            zoom_out.click()
        page.wait_for_selector("#map[data-state=loaded]")
    box = page.locator("#map").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] - 5, y)  # at zoom 0 the world is 256 pixels wide
    page.mouse.down()
    page.mouse.move(box["x"] + 5, y, steps=20)
    page.mouse.up()
    expect(page.locator("#map-note")).to_have_text(re.compile("^Nothing to show here"), timeout=10_000)
    assert page.locator("#map").get_attribute("data-state") == "loaded"
    assert page.problems == []


def test_popup_shows_values_as_the_working_db_holds_them(page, server: str, staging: Staging) -> None:
    """Values went through the dashboard's number format: a year built of 1993 showed as '1,993' and acres
    were rounded to two decimals."""
    with staging.working() as con:
        year, acres = con.execute("SELECT year_built, acres FROM parcels WHERE pin = ?", (staging.xss_key,)).fetchone()
    assert year >= 1000 and round(acres, 2) != acres  # values the number format changes
    page.goto(server + "/map")
    page.wait_for_selector("#map[data-state=loaded]", timeout=20_000)
    page.locator(f'path[data-key="{staging.xss_key}"]').click()
    popup = page.locator(".leaflet-popup-content .popup table")
    popup.wait_for(timeout=10_000)

    def shown(name: str) -> str:
        return popup.get_by_role("rowheader", name=name, exact=True).locator("xpath=following-sibling::td").inner_text()

    assert shown("pin") == staging.xss_key
    assert shown("year_built") == str(year)
    assert float(shown("acres")) == acres
    assert page.problems == []


def test_basemap_with_the_subdomain_inside_a_label_loads_under_the_csp(page, staging: Staging) -> None:
    """A tile host like tiles-{s}.example.net became the CSP source tiles-*.example.net, which CSP does
    not allow (a wildcard must be a whole label), so the browser blocked every tile."""
    port = free_port()
    # Chromium sends every *.localhost to this machine: tiles-a.localhost, tiles-b.localhost... are the app.
    template = f"http://tiles-{{s}}.localhost:{port}/static/favicon.svg?z={{z}}&x={{x}}&y={{y}}"
    web = staging.settings.web.model_copy(update={"basemap_url": template})
    with _serving(create_app(staging.settings.model_copy(update={"web": web})), port) as base:
        page.goto(base + "/map")
        page.wait_for_selector("#map[data-state=loaded]", timeout=20_000)
        tiles = page.locator("img.leaflet-tile-loaded")
        expect(tiles.first).to_be_visible()
        assert re.match(rf"http://tiles-[abc]\.localhost:{port}/static/favicon\.svg", tiles.first.get_attribute("src"))
    assert page.problems == []


def test_dashboard_keeps_the_chosen_dimension_when_a_sync_reloads_it(page, fresh_staging: Staging) -> None:
    """The statistics are reloaded after every sync, and the dimension went back to the first one."""
    with _serving(create_app(fresh_staging.settings), free_port()) as base:
        page.goto(base + "/")
        page.wait_for_selector("#statistics table")
        page.select_option("#dimension", "zoning")
        shown = page.query_selector("#statistics table")
        page.fill("#sync-token", TOKEN)
        page.click("#sync-form button")
        expect(page.locator("#sync-state")).to_have_text("Sync succeeded.", timeout=60_000)
        shown.wait_for_element_state("hidden", timeout=10_000)  # replaced: the statistics were reloaded
        assert page.locator("#dimension").input_value() == "zoning"
        assert "R-4" in page.locator("#statistics").inner_text()
    assert page.problems == []
