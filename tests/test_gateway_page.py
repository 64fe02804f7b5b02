"""The gateway's live web page: its files as HTTP serves them, and the page itself in a real Chromium.

The browser test runs Debian's ``chromium`` headless, driven over the DevTools protocol
(tests/browser.py), against the real gateway on the real nats-server. Without Chromium it is skipped
with the reason — a failure under ``CITYBUS_REQUIRE_SERVICES=1``, as in CI (``.ci/run`` installs the
``chromium`` package). Its screenshot is kept: in ``$CITYBUS_ARTEFACTS`` when set, else in the test's
``tmp_path``; the path is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters.gateway.page import WEB, load_files, routes

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
    assert 'href="catalogue"' in html  # the catalogue is linked
    assert "<script>" not in html  # no inline script: the policy forbids it


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("app.js", "text/javascript; charset=utf-8", "no-cache"),
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


def test_the_page_script_never_parses_data_as_html() -> None:
    """Values come from the bus: the page writes them as text only. A regression guard for the
    browser test's check that a name with markup shows as text."""
    script = (WEB / "app.js").read_text()
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "bindPopup", "bindTooltip")
    for sink in sinks:
        assert sink not in script, f"app.js uses {sink}"
    assert not re.search(r"\beval\(|new Function\(", script)
