"""The gateway's live web page: its files as HTTP serves them, and the page itself in a real Chromium.

The browser test runs Debian's ``chromium`` headless, driven over the DevTools protocol
(tests/browser.py), against the real gateway on the real nats-server. Without Chromium it is skipped
with the reason — a failure under ``CITYBUS_REQUIRE_SERVICES=1``, as in CI (``.ci/run`` installs the
``chromium`` package). Its screenshot is kept: in ``$CITYBUS_ARTEFACTS`` when set, else in the test's
``tmp_path``; the path is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from adapters.gateway.page import WEB, load_files, routes
from adapters.journey import JourneyPlanner
from adapters.testing import AdapterHarness
from bus import Bus
from contracts import AirQualityObserved, BikeStationStatus, Contract, GeoPoint, TrainCall
from tests.browser import Browser, find_chromium
from tests.conftest import require_service
from tests.gateway_support import beach, running_gateway

OSLO = ZoneInfo("Europe/Oslo")

# ---------------------------------------------------------------------------- the files over HTTP


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    """An aiohttp server with only the page's routes, on a free port; its base URL."""
    app = web.Application()
    routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_page_is_served_at_the_root_with_a_strict_policy(page_server: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(page_server + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        html = await response.text()
    assert 'href="./catalogue"' in html  # linked relatively: the gateway may sit under a prefix
    assert "<script>" not in html  # no inline script: the policy forbids it


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("app.js", "text/javascript; charset=utf-8", "no-cache"),
        ("journey.js", "text/javascript; charset=utf-8", "no-cache"),
        ("style.css", "text/css; charset=utf-8", "no-cache"),
        ("vendor/leaflet/leaflet.js", "text/javascript; charset=utf-8", "public, max-age=86400"),
        ("vendor/leaflet/leaflet.css", "text/css; charset=utf-8", "public, max-age=86400"),
        ("vendor/leaflet/images/layers.png", "image/png", "public, max-age=86400"),
        ("vendor/leaflet/LICENSE", "text/plain; charset=utf-8", "public, max-age=86400"),
    ],
)
async def test_static_files_have_their_content_type_and_cache_policy(
    page_server: str, path: str, content_type: str, cache: str
) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{page_server}/static/{path}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == content_type
        assert response.headers["Cache-Control"] == cache
        assert await response.read() == (WEB / path).read_bytes()


async def test_an_unchanged_file_is_revalidated_with_a_304(page_server: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(page_server + "/static/app.js") as first:
            etag = first.headers["ETag"]
        async with session.get(page_server + "/static/app.js", headers={"If-None-Match": etag}) as again:
            assert again.status == 304
            assert await again.read() == b""
        other = {"If-None-Match": '"other"'}
        async with session.get(page_server + "/static/app.js", headers=other) as changed:
            assert changed.status == 200


async def test_text_is_sent_compressed_to_a_client_that_accepts_it(page_server: str) -> None:
    url = page_server + "/static/vendor/leaflet/leaflet.js"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            body = await response.read()
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as plain:
            assert "Content-Encoding" not in plain.headers
            assert await plain.read() == gzip.decompress(body)
    assert len(body) < len(gzip.decompress(body)) / 2


@pytest.mark.parametrize("path", ["nothing.js", "../page.py", "%2e%2e/page.py", "vendor/../../page.py"])
async def test_only_the_page_s_own_files_are_served(page_server: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{page_server}/static/{path}") as response:
        assert response.status == 404


def test_every_vendored_library_ships_its_licence() -> None:
    vendored = [p for p in (WEB / "vendor").iterdir() if p.is_dir()]
    assert vendored
    for library in vendored:
        assert (library / "LICENSE").is_file(), f"{library.name} is vendored without its licence"
        assert library.name in (WEB / "vendor" / "README.md").read_text().lower()


def test_a_file_of_an_unknown_type_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "data.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"web/data\.bin: no content type known for '\.bin'"):
        load_files(tmp_path)


@pytest.mark.parametrize("name", ["app.js", "journey.js", "stats.js"])
def test_the_page_scripts_never_parse_data_as_html(name: str) -> None:
    """Values come from the bus: the page writes them as text only. A regression guard for the
    browser test's check that a name with markup shows as text."""
    script = (WEB / name).read_text()
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "bindPopup", "bindTooltip")
    for sink in sinks:
        assert sink not in script, f"{name} uses {sink}"
    assert not re.search(r"\beval\(|new Function\(", script)


def test_every_script_of_the_page_is_checked_for_html_sinks() -> None:
    scripts = {p.name for p in WEB.glob("*.js")}
    assert scripts == {"app.js", "journey.js", "stats.js"}, "add the new script to the HTML-sink check above"


# ---------------------------------------------------------------------------- the page in Chromium

MARKUP = '<img src=x onerror="window.injected = true">Bragernes <b>torg</b>'


def readings() -> list[Contract]:
    """One place of each layer (two beaches, two stations of one journey), as the sandbox has them."""
    journey = {"service_journey": "NSB:ServiceJourney:1-1821-311", "line": "R10", "operator": "NSB"}
    return [
        beach("bragernes-strand", 15.7, hour=10),
        beach("sota-fjordpark", 16.6, lat=59.7336, lon=10.2436, hour=10),
        TrainCall(
            **journey,
            stop_place="NSR:StopPlace:11",
            stop_name="Drammen stasjon",
            sequence=7,
            aimed_departure=datetime(2018, 8, 28, 8, 57, tzinfo=OSLO),
            actual_departure=datetime(2018, 8, 28, 9, 1, tzinfo=OSLO),
            delay_seconds=240,
            status="actual",
            destination="Lillehammer",
            location=GeoPoint.at(59.740105, 10.205235),
        ),
        TrainCall(
            **journey,
            stop_place="NSR:StopPlace:536",
            stop_name="Brakerøya stasjon",
            sequence=8,
            aimed_departure=datetime(2018, 8, 28, 9, 0, tzinfo=OSLO),
            status="scheduled",
            destination="Lillehammer",
            location=GeoPoint.at(59.74379, 10.232988),
        ),
        BikeStationStatus(
            station_id="3",
            name=MARKUP,
            num_bikes_available=7,
            num_docks_available=17,
            capacity=24,
            is_renting=True,
            is_returning=True,
            reported_at=datetime(2018, 8, 28, 10, 0, tzinfo=OSLO),
            location=GeoPoint.at(59.7446, 10.2046),
        ),
        *(
            AirQualityObserved(
                station="bangelokka",
                station_name="Bangeløkka",
                component=component,
                value=value,
                index=index,
                observed_at=datetime(2018, 8, 28, 10, 0, tzinfo=OSLO),
                location=GeoPoint.at(59.73091, 10.216454),
            )
            for component, value, index in (("PM10", 14.2, 1), ("NO2", 112.0, 3))
        ),
    ]


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium, or a skip (a failure under CITYBUS_REQUIRE_SERVICES=1)."""
    found = find_chromium()
    if found is None:
        explicit = os.environ.get("CITYBUS_CHROMIUM")
        require_service(
            "Chromium",
            f"CITYBUS_CHROMIUM={explicit} is no file"
            if explicit
            else "no chromium on PATH (Debian: apt-get install chromium)",
        )
    assert found is not None
    return found


def artefacts(tmp_path: Path) -> Path:
    """Where a test keeps what a person should be able to look at afterwards."""
    directory = Path(os.environ.get("CITYBUS_ARTEFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def badge(entity: str) -> str:
    """A JavaScript expression: the text of the map badge of ``entity`` (null while there is none)."""
    selector = json.dumps(f'.badge[data-entity="{entity}"] .value')
    return f"(document.querySelector({selector})?.textContent ?? null)"


@pytest.mark.slow
async def test_the_live_page_shows_the_city_and_follows_the_bus(
    quiet_bus: Bus, chromium: str, tmp_path: Path
) -> None:
    for reading in readings():
        await quiet_bus.publish_durable(reading, provenance="synthetic", source="/tests")
    async with running_gateway(quiet_bus) as gateway, Browser.launch(tmp_path, executable=chromium) as page:
        try:
            await page.navigate(gateway.url + "/")
            await page.wait_for("document.body.dataset.loaded === 'true'")

            # A marker for every place published, each showing its value.
            assert await page.wait_for("document.querySelectorAll('.badge').length === 6")
            assert await page.evaluate(badge("bragernes-strand")) == "15.7 °C"
            assert await page.evaluate(badge("sota-fjordpark")) == "16.6 °C"
            assert await page.evaluate(badge("NSR:StopPlace:11")) == "R10 +4 min"
            assert await page.evaluate(badge("3")) == "7 · 17"
            assert await page.wait_for(f"{badge('bangelokka')} === 'NO2 112'")  # the worst of its pollutants
            # The railway: Drammen and Brakerøya are consecutive calls of one journey.
            await page.wait_for("document.querySelectorAll('path.railway').length === 1")
            await page.wait_for("document.getElementById('connection').dataset.state === 'live'")
            # The catalogue is linked, and the link leads to it.
            link = "document.querySelector('footer a[href=\"./catalogue\"]')"
            assert await page.evaluate(f"fetch({link}.href).then(r => r.status)") == 200

            # A new reading on the bus changes what the page shows, without a reload.
            await quiet_bus.publish_durable(beach("bragernes-strand", 19.4, hour=11), source="/tests")
            await page.wait_for(f"{badge('bragernes-strand')} === '19.4 °C'")

            # The panel: the beach's values, and a chart of its two readings.
            await page.click('.badge[data-entity="bragernes-strand"]')
            await page.wait_for("document.getElementById('panel-title').textContent === 'Bragernes strand'")
            await page.wait_for(
                "document.querySelector('#panel-charts .chart-last')?.textContent === '19.4 °C'"
            )
            chart = "document.querySelector('#panel-charts polyline')"
            await page.wait_for(f"{chart}?.getAttribute('points').split(' ').length === 2")

            # A value from the bus that looks like markup is shown as text, never run.
            await page.click('.badge[data-entity="3"]')
            await page.wait_for(
                f"document.getElementById('panel-title').textContent === {json.dumps(MARKUP)}"
            )
            assert await page.evaluate("document.querySelectorAll('#side img, #side b').length") == 0
            assert await page.evaluate("window.injected === undefined")
        finally:  # kept whether the test passed or not: a failure is easier to see than to read
            shot = await page.screenshot(artefacts(tmp_path) / "gateway-page.png")
            print(f"screenshot of the live page: {shot}")  # noqa: T201 - for the person running the test
        assert page.errors == []


FEED = Path(__file__).resolve().parents[1] / "sandbox/data/sources/transport/entur_nsb_gtfs_2018.zip"


def text_of(element_id: str) -> str:
    """A JavaScript expression: the text of the element ``element_id``."""
    return f"document.getElementById({json.dumps(element_id)}).textContent"


@pytest.mark.slow
async def test_the_journey_panel_plans_drammen_to_oslo_s(
    quiet_bus: Bus, chromium: str, tmp_path: Path
) -> None:
    planner = AdapterHarness(
        JourneyPlanner, {"timetable": {"file": str(FEED)}}, bus=quiet_bus, instance="journey-planner"
    )
    async with (
        planner,
        running_gateway(quiet_bus) as gateway,
        Browser.launch(tmp_path, executable=chromium) as page,
    ):
        await quiet_bus.flush()  # the planner's subscription reaches the server before anyone asks
        try:
            await page.navigate(gateway.url + "/")
            await page.wait_for("document.body.dataset.loaded === 'true'")
            await page.type("#journey-from", "drammen")
            await page.type("#journey-to", "Oslo S")
            await page.type("#journey-depart", "2018-08-28T08:00")
            await page.click("#journey-go")
            await page.wait_for(
                "document.getElementById('journey-form').dataset.state === 'done'", timeout=30
            )

            # The journeys, fastest first; the first has a train leg with its line and times.
            assert await page.evaluate("document.querySelectorAll('#journey-list .journey-item').length") >= 1
            rail = "document.querySelector('#journey-list .journey-item .leg[data-mode=\"rail\"]')"
            assert await page.evaluate(f"{rail} !== null")
            leg = await page.evaluate(f"{rail}.textContent")
            assert "Oslo S" in leg and "timetable" in leg, leg
            assert re.search(r"\d\d:\d\d – \d\d:\d\d", leg), leg
            assert "Timetable valid 2018-08-18 to 2018-12-08" == await page.evaluate(
                text_of("journey-validity")
            )
            # The first journey is drawn on the map, a line per leg.
            assert await page.evaluate("document.getElementById('journey-list').dataset.drawn") == "0"
            assert await page.evaluate("document.querySelectorAll('path.journey-leg').length") >= 1
            assert page.errors == []
            shot = await page.screenshot(artefacts(tmp_path) / "gateway-journey.png")
            print(f"screenshot of the journey found: {shot}")  # noqa: T201 - for the person running the test

            # A place the planner does not know: the plan's one line, nothing drawn, and its nearest
            # names as buttons; taking one asks again.
            await page.type("#journey-to", "Oslo Sentral")
            await page.click("#journey-go")
            await page.wait_for("document.getElementById('journey-form').dataset.state === 'refused'")
            assert await page.evaluate(text_of("journey-message")) == (
                "no stop place is called 'Oslo Sentral': did you mean Oslo S, Vaksdal senter?"
            )
            assert await page.evaluate("document.querySelectorAll('path.journey-leg').length") == 0
            await page.click("#journey-suggestions .suggestion")
            await page.wait_for(
                "document.getElementById('journey-form').dataset.state === 'done'", timeout=30
            )
            assert await page.evaluate("document.getElementById('journey-to').value") == "Oslo S"
            assert await page.evaluate(f"{rail} !== null")
        finally:
            shot = await page.screenshot(artefacts(tmp_path) / "gateway-journey-end.png")
            print(f"screenshot of the journey panel at the end: {shot}")  # noqa: T201 - for the person running the test
    # The 404 of the unknown place is the only thing in red: Chromium logs every failed fetch.
    assert [e for e in page.errors if "status of 404" not in e or "/api/v1/journey" not in e] == []
