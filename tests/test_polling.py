"""Polled sources: real HTTP round trips to a local aiohttp server, and files on disk.

A tiny adapter reads a JSON list of weather readings; the tests drive its :class:`Poller` one poll
at a time and check what reached the handler, what was dead-lettered, what was counted, and how
long the poller says to wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import msgspec
import pytest

from adapters import Adapter, Context
from adapters.changes import LastSeen, stable_id
from adapters.instances import parse_instance
from adapters.polling import (
    DEAD_LETTER_LIMIT,
    Document,
    Poller,
    SourceConfig,
    SourceFormatError,
    http_session,
)
from adapters.testing import AdapterHarness
from bus import Provenance
from bus.errors import ConfigError
from contracts import WeatherObserved
from tests.conftest import wait_for
from tests.http_files import FileServer

READINGS = [
    {"station": "marienlyst", "time": "2018-08-29T10:00:00+02:00", "temperature": 17.9},
    {"station": "gulskogen", "time": "2018-08-29T10:00:00+02:00", "temperature": 18.2},
]


class ReadingsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: SourceConfig


class Reading(msgspec.Struct, frozen=True):
    station: str
    time: datetime
    temperature: float


_READINGS = msgspec.json.Decoder(list[Reading])


class Readings(Adapter[ReadingsConfig]):
    """Weather readings from a JSON list, polled."""

    name = "test-readings"
    Config = ReadingsConfig
    produces = (WeatherObserved,)

    async def run(self, ctx: Context) -> None:
        async with http_session(self.config.source) as session:
            poller = Poller(ctx, self.config.source, self.handler(ctx), name="readings", session=session)
            ctx.ready()
            await poller.run()

    @staticmethod
    def handler(ctx: Context):  # type: ignore[no-untyped-def]
        async def handle(document: Document) -> None:
            try:
                readings = _READINGS.decode(document.body)
            except msgspec.DecodeError as exc:
                raise SourceFormatError(f"not a list of readings: {exc}", reason="not-readings") from None
            for r in readings:
                observed = WeatherObserved(station=r.station, observed_at=r.time, temperature=r.temperature)
                await ctx.publish(observed, provenance=document.provenance, time=r.time)

        return handle


def _count(harness: AdapterHarness, outcome: str, source: str = "readings") -> float:
    labels = {"adapter": "test-readings", "adapter_instance": "test", "source": source, "outcome": outcome}
    return harness.bus.metrics.registry.get_sample_value("citybus_source_fetches_total", labels) or 0.0


def _up(harness: AdapterHarness) -> float | None:
    labels = {"adapter": "test-readings", "adapter_instance": "test", "source": "readings"}
    return harness.bus.metrics.registry.get_sample_value("citybus_source_up", labels)


class Idle(Adapter[ReadingsConfig]):
    """Holds a context for tests that drive a poller by hand."""

    name = "test-readings"
    Config = ReadingsConfig
    produces = (WeatherObserved,)

    async def run(self, ctx: Context) -> None:
        ctx.ready()
        await ctx.wait_stopped()


@pytest.fixture
async def idle(http_files: FileServer) -> AsyncIterator[AdapterHarness]:
    url = http_files.serve("/readings", json.dumps(READINGS).encode())
    async with AdapterHarness(Idle, {"source": {"url": url}}) as harness:
        yield harness


def _poller(harness: AdapterHarness, session: object, **overrides: object) -> Poller:
    ctx = harness.context
    assert ctx is not None
    config = msgspec.structs.replace(harness.adapter.config.source, **overrides)
    return Poller(ctx, config, Readings.handler(ctx), name="readings", session=session)  # type: ignore[arg-type]


async def test_a_new_document_is_handled_and_an_unchanged_one_is_not(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session, interval=42.0)
        assert await poller.poll() == 42.0
        observed = await idle.wait_for(WeatherObserved, 2)
        assert [(e.data.station, e.data.temperature) for e in observed] == [
            ("marienlyst", 17.9),
            ("gulskogen", 18.2),
        ]
        assert {e.envelope.provenance for e in observed} == {Provenance.VENDOR.value}
        assert await poller.poll() == 42.0  # the server answers 304 to the conditional request
        assert http_files.request_headers[-1]["If-None-Match"]
        assert http_files.request_headers[-1]["User-Agent"].startswith("citybus/")
        await idle.settle()
        assert len(idle.published(WeatherObserved)) == 2
        assert (_count(idle, "ok"), _count(idle, "not-modified")) == (1, 1)
        assert _up(idle) == 1


async def test_a_body_identical_to_the_last_one_is_skipped_without_conditional_headers(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session)
        await poller.poll()
        http_files.serve("/readings", json.dumps(READINGS).encode())  # same bytes, new Last-Modified
        http_files._routes["/readings"].modified += timedelta(seconds=5)
        await poller.poll()
        assert poller.documents == 1
        assert _count(idle, "unchanged") + _count(idle, "not-modified") == 1


async def test_http_errors_are_counted_and_retried_with_growing_backoff(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    http_files.fail("/readings", status=503, times=3)
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session, backoff_initial=1.0, backoff_max=3.0)
        delays = [await poller.poll() for _ in range(3)]
        assert 0.8 <= delays[0] <= 1.0 and 1.6 <= delays[1] <= 2.0 and 2.4 <= delays[2] <= 3.0
        assert _count(idle, "http-503") == 3
        assert _up(idle) == 0
        assert idle.published(WeatherObserved) == []
        await poller.poll()
        await idle.wait_for(WeatherObserved, 2)
        assert _up(idle) == 1


async def test_retry_after_is_honoured(idle: AdapterHarness, http_files: FileServer) -> None:
    url = http_files.serve("/limited", json.dumps(READINGS).encode(), headers={"Retry-After": "120"})
    http_files.fail("/limited", status=429)
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session, url=url, backoff_initial=0.1)
        assert await poller.poll() == 120.0
        assert _count(idle, "http-429") == 1
        assert await poller.poll() == idle.adapter.config.source.interval


async def test_expires_delays_the_next_poll(idle: AdapterHarness, http_files: FileServer) -> None:
    expires = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    url = http_files.serve("/forecast", json.dumps(READINGS).encode(), headers={"Expires": expires})
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session, url=url, interval=60.0)
        delay = await poller.poll()
        assert 3500 <= delay <= 3600


async def test_a_malformed_document_is_dead_lettered_once_with_its_reason(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    http_files.serve("/readings", b'[{"station": "marienlyst", "time": "yesterday"')
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session, backoff_initial=5.0)
        assert await poller.poll() <= 5.0
        await poller.poll()  # the same bytes again: not a second dead letter
        await idle.settle()
        [letter] = idle.dead_letters
        assert letter.reason == "not-readings"
        assert "not a list of readings" in letter.detail
        assert letter.original_subject == http_files.url("/readings")
        assert letter.payload == b'[{"station": "marienlyst", "time": "yesterday"'
        assert letter.original_headers["x-citybus-source"] == http_files.url("/readings")
        assert _count(idle, "malformed") == 1
        assert _up(idle) == 0


async def test_a_huge_malformed_document_keeps_its_head_in_the_dead_letter(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    http_files.serve("/readings", b"x" * (DEAD_LETTER_LIMIT + 10))
    async with http_session(idle.adapter.config.source) as session:
        await _poller(idle, session).poll()
        await idle.settle()
        [letter] = idle.dead_letters
        assert len(letter.payload) == DEAD_LETTER_LIMIT
        assert f"first {DEAD_LETTER_LIMIT} of {DEAD_LETTER_LIMIT + 10} bytes" in letter.detail


async def test_too_large_timeout_and_unreachable_are_failures_not_crashes(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    async with http_session(idle.adapter.config.source) as session:
        assert await _poller(idle, session, max_bytes=10).poll() > 0
        assert _count(idle, "too-large") == 1
        http_files.hang("/readings", 2.0)
        await _poller(idle, session, timeout=0.2).poll()
        assert _count(idle, "timeout") == 1
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        await _poller(idle, session, url=f"http://127.0.0.1:{closed}/readings").poll()
        assert _count(idle, "unreachable") == 1
        http_files.hang("/readings", 0)
        await _poller(idle, session, url=http_files.url("/nothing")).poll()
        assert _count(idle, "http-404") == 1
        assert idle.published(WeatherObserved) == []


async def test_a_file_source_is_read_when_it_changes_and_its_absence_is_retried(
    tmp_path: Path,
) -> None:
    path = tmp_path / "readings.json"
    async with AdapterHarness(Idle, {"source": {"file": str(path)}}) as harness:
        ctx = harness.context
        assert ctx is not None
        poller = Poller(ctx, harness.adapter.config.source, Readings.handler(ctx), name="readings")
        await poller.poll()
        assert _count(harness, "missing-file") == 1
        path.write_text(json.dumps(READINGS[:1]))
        await poller.poll()
        [event] = await harness.wait_for(WeatherObserved)
        assert event.envelope.provenance == Provenance.RECORDED
        await poller.poll()
        assert _count(harness, "not-modified") == 1
        path.write_text(json.dumps(READINGS))
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        await poller.poll()
        await harness.wait_for(WeatherObserved, 3)


async def test_the_poller_runs_through_an_outage_on_its_own(http_files: FileServer) -> None:
    url = http_files.serve("/readings", json.dumps(READINGS[:1]).encode())
    http_files.fail("/readings", status=500, times=2)
    config = {"source": {"url": url, "interval": 0.05, "backoff_initial": 0.01, "backoff_max": 0.02}}
    async with AdapterHarness(Readings, config) as harness:
        await harness.wait_for(WeatherObserved)
        http_files.serve("/readings", json.dumps(READINGS).encode())
        await harness.wait_for(WeatherObserved, 3)
        assert _count(harness, "http-500") == 2
    assert http_files.requests["/readings"] >= 4


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, "exactly one of `url`"),
        ({"url": "https://x.example", "file": "a.json"}, "exactly one of `url`"),
        ({"url": "ftp://x.example/a"}, "http:// or https://"),
        ({"url": "https://user:secret@/a"}, "URL with a host"),
        ({"url": "http://[::1/a"}, "not a valid URL"),
        ({"url": "https://x.example", "interval": 0}, "interval"),
        ({"url": "https://x.example", "backoff_initial": 10, "backoff_max": 1}, "backoff_initial"),
        ({"url": "https://x.example", "provenance": "guessed"}, "provenance"),
        ({"url": "https://x.example", "every": 5}, "every"),
    ],
)
def test_a_wrong_source_section_says_what_to_fix(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="adapters.readings") as info:
        parse_instance("readings", Readings, {"source": section})
    assert message in str(info.value)
    assert "secret" not in str(info.value)


def test_provenance_follows_the_source_unless_configured() -> None:
    assert SourceConfig(url="https://x.example").origin is Provenance.VENDOR
    assert SourceConfig(file="a.json").origin is Provenance.RECORDED
    assert SourceConfig(file="a.json", provenance="synthetic").origin is Provenance.SYNTHETIC
    assert SourceConfig(url="https://u:p@x.example/a").location == "https://***@x.example/a"


def test_last_seen_and_stable_ids() -> None:
    seen = LastSeen()
    assert seen.changed("a", 1) and not seen.changed("a", 1) and seen.changed("a", 2)
    seen.forget("a")
    assert seen.changed("a", 2) and len(seen) == 1
    assert stable_id("x", 1, "b") == stable_id("x", 1, "b") != stable_id("x", "1b")


async def test_a_source_cancelled_mid_fetch_stops_at_once(http_files: FileServer) -> None:
    url = http_files.serve("/readings", json.dumps(READINGS).encode())
    http_files.hang("/readings", 60)
    harness = AdapterHarness(Readings, {"source": {"url": url}})
    await harness.__aenter__()
    await wait_for(lambda: http_files.requests["/readings"] == 1)
    async with asyncio.timeout(10):  # the fetch hangs for 60 s: only a cancelled fetch ends sooner
        await harness.__aexit__(None, None, None)
    assert harness.error is None


class DefaultedConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: SourceConfig = msgspec.field(
        default_factory=lambda: SourceConfig(url="https://api.example.org/readings", interval=900.0)
    )


class Defaulted(Idle):
    """An adapter whose source has the publisher's URL and interval as its default."""

    Config = DefaultedConfig


def test_a_source_table_is_merged_over_the_adapters_default() -> None:
    def source(table: dict[str, object]) -> SourceConfig:
        config = parse_instance("readings", Defaulted, {"source": table} if table else {}).config
        return config.source  # type: ignore[attr-defined, no-any-return]

    assert source({}) == SourceConfig(url="https://api.example.org/readings", interval=900.0)
    with_key = source({"headers": {"apikey": "k"}})
    assert (with_key.url, with_key.interval, with_key.headers) == (
        "https://api.example.org/readings",
        900.0,
        {"apikey": "k"},
    )
    from_file = source({"file": "recorded.json"})
    assert (from_file.file, from_file.url, from_file.interval) == ("recorded.json", None, 900.0)
    assert source({"url": "https://mirror.example.org/r", "interval": 60}).interval == 60.0


def test_a_source_never_shows_its_secrets() -> None:
    config = SourceConfig(url="https://user:pw@x.example/a", headers={"apikey": "s3cret"})
    assert "s3cret" not in repr(config) and "pw" not in repr(config)
    assert "apikey" in repr(config)


async def test_a_redirect_is_refused_so_api_keys_stay_with_their_host(
    idle: AdapterHarness, http_files: FileServer
) -> None:
    url = http_files.redirect("/moved", "http://elsewhere.example/readings?apikey=SECRET")
    async with http_session(idle.adapter.config.source) as session:
        await _poller(idle, session, url=url, headers={"apikey": "k"}).poll()
    assert _count(idle, "redirect") == 1
    assert http_files.requests["/moved"] == 1  # and nothing was sent to elsewhere.example


async def test_retry_after_is_read_carefully(idle: AdapterHarness, http_files: FileServer) -> None:
    url = http_files.serve("/odd", b"[]", headers={"Retry-After": "99999999"})
    http_files.fail("/odd", status=503)
    async with http_session(idle.adapter.config.source) as session:
        poller = _poller(idle, session, url=url, interval=60.0, backoff_max=300.0)
        assert await poller.poll() <= 300.0  # not eleven hundred days
        http_files.serve("/odd", b"[]", headers={"Retry-After": "\u00b2"})  # a digit that is not ASCII
        http_files.fail("/odd", status=503)
        assert await poller.poll() > 0  # refused, counted and retried; not a crash
    assert _count(idle, "http-503") == 2


def test_urls_in_logs_hide_credentials_and_secret_parameters() -> None:
    from bus.bus import redact_url

    assert redact_url("https://u:p@api.example/et?datasetId=BNR&apikey=S3CRET&client_id=abc") == (
        "https://***@api.example/et?datasetId=BNR&apikey=***&client_id=***"
    )
