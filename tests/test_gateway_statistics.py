"""Statistics through the gateway: the catalogue lists them, the HTTP API serves them, the page shows them.

Released tables (``statistics.aggregate``) are published on a real nats-server as the statistics
service publishes them — the recorded Drammen day's beach water as a public table (mechanism none),
and a table of personal data under differential privacy with suppressed cells — and read back
through the real gateway: its DCAT catalogue, its entities API and its web page in Debian's
Chromium (tests/browser.py), where each data set is a table a person can read, a suppressed cell
says why, and a line says how the release was protected.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import msgspec
import pytest

from adapters.gateway.catalogue import catalogue_entries
from adapters.statistics.engine import Contribution, Policy, release
from adapters.statistics.everyday import BY_NAME, EverydayDataset, Observation, latest
from bus import Bus
from contracts import (
    Aggregate,
    Classification,
    Comparison,
    StatisticsRow,
    default_registry,
)
from sandbox.recording import read_messages
from tests.browser import Browser
from tests.gateway_support import running_gateway
from tests.test_gateway_catalogue import CB, datasets_by_id, expand, values
from tests.test_gateway_page import artefacts, chromium  # noqa: F401 - the fixture, found by name

ROOT = Path(__file__).resolve().parent.parent
DAY = ROOT / "sandbox" / "data" / "drammen-2018-08-28.mcap"
OSLO = ZoneInfo("Europe/Oslo")
MARKUP = '<img src=x onerror="window.injected = true">Konnerud <b>lakes</b>'


def observations(dataset: EverydayDataset) -> tuple[list[Observation], dict[str, str]]:
    """What ``dataset`` observes of the recorded day, and the names of its groups."""
    kind = dataset.contract.__contract__.type
    found: list[Observation] = []
    labels: dict[str, str] = {}
    for message in read_messages(DAY):
        if message.type == kind:
            value = msgspec.json.decode(message.data, type=dataset.contract)
            found += dataset.observe(value)
            labels |= dataset.labels(value)
    return latest(found), labels


def day_table(name: str) -> Aggregate:
    """The recorded day's table of the public data set ``name``, released as the service releases
    public data: through the engine, mechanism none."""
    dataset = BY_NAME[name]
    found, labels = observations(dataset)
    contributions = [Contribution(who=o.who, group=o.group, value=o.value) for o in found]
    table = release(contributions, dataset.dimensions, Policy(mechanism="none", k=0), labels=labels)
    return Aggregate(
        dataset=dataset.name,
        title=dataset.title,
        period="2018-08-28",
        period_start=datetime(2018, 8, 28, tzinfo=OSLO),
        period_end=datetime(2018, 8, 29, tzinfo=OSLO),
        final=True,
        dimensions=dataset.dimensions,
        measure=dataset.measure,
        unit=dataset.unit,
        counts=dataset.counts,
        rows=table.rows,
        privacy=table.privacy,
        sources=dataset.sources,
    )


def volunteer_week(release: int = 1) -> Aggregate:
    """A table of personal data under differential privacy, with a cell of each kind of suppression."""
    example = Aggregate.example()
    rows = (
        StatisticsRow(group=("bragernes", "beach-cleanup"), count=7.0, sum=20.4, mean=2.91),
        StatisticsRow(
            group=("konnerud", "beach-cleanup"), status="suppressed", reason="threshold", label=MARKUP
        ),
        StatisticsRow(group=("stromso", "beach-cleanup"), status="suppressed", reason="too-few"),
        StatisticsRow(group=("stromso", "first-aid"), status="suppressed", reason="complementary"),
        StatisticsRow(group=("all", "all"), count=12.0 + release, sum=33.0, mean=2.75),
    )
    return msgspec.structs.replace(example, rows=rows, release=release)


async def publish(bus: Bus, *tables: Aggregate) -> None:
    for table in tables:
        await bus.publish_durable(table, provenance="synthetic", source="/tests/statistics")


# -- the catalogue and the API --------------------------------------------------------------------


def test_the_catalogue_lists_released_tables_as_public_and_comparisons_as_personal() -> None:
    entries = {e.name: e for e in catalogue_entries(default_registry(), {}, "http://gateway.test")}
    aggregate = entries[Aggregate.__contract__.name]
    assert aggregate.classification is Classification.PUBLIC and aggregate.access_right == "PUBLIC"
    assert {d.kind for d in aggregate.distributions} == {"nats", "http", "sse"}
    http = next(d for d in aggregate.distributions if d.kind == "http")
    assert http.url == "http://gateway.test/api/v1/contracts/statistics.aggregate/entities"
    assert {f.name for f in aggregate.fields} >= {"dataset", "rows", "privacy", "period"}
    comparison = entries[Comparison.__contract__.name]
    assert comparison.access_right == "NON_PUBLIC"
    assert {d.kind for d in comparison.distributions} == {"nats"}  # personal: never served
    assert comparison.facts is None


@pytest.mark.slow
async def test_a_released_table_is_served_as_published_and_counted_in_the_catalogue(quiet_bus: Bus) -> None:
    beaches = day_table("beach-water-temperature")
    await publish(quiet_bus, beaches, volunteer_week())
    async with running_gateway(quiet_bus) as gateway, aiohttp.ClientSession() as http:
        url = f"{gateway.url}/api/v1/contracts/statistics.aggregate/entities"
        async with http.get(url) as response:
            assert response.status == 200
            events = {event["entity"]: event for event in await response.json()}
        assert set(events) == {"beach-water-temperature", "volunteer-hours"}
        served = msgspec.convert(events["beach-water-temperature"]["data"], Aggregate)
        assert served == beaches
        async with http.get(f"{gateway.url}/catalogue.jsonld") as response:
            document = json.loads(await response.read())
    dataset = datasets_by_id(expand(document))["statistics.aggregate.v1"]
    assert values(dataset, CB + "entities") == [2]


# -- the page -------------------------------------------------------------------------------------


def shown(value: float | None) -> str:
    """A figure as the page writes it: whole numbers as they are, else at most two digits (fewer
    for larger numbers) — restated here, so the test checks the page's rule, not its own code."""
    assert value is not None
    if value == int(value):
        return str(int(value))
    return f"{value:.{0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2}f}"


def rows_of(dataset: str) -> str:
    """A JavaScript expression: the rows of ``dataset``'s table as lists of cell texts."""
    selector = json.dumps(f'details[data-dataset="{dataset}"] tbody tr')
    return f"[...document.querySelectorAll({selector})].map(r => [...r.cells].map(c => c.textContent))"


def text_of(selector: str) -> str:
    """A JavaScript expression: the text of the first element ``selector`` matches (null if none)."""
    return f"(document.querySelector({json.dumps(selector)})?.textContent ?? null)"


@pytest.mark.slow
async def test_the_page_shows_each_released_table_readably_and_follows_new_releases(
    quiet_bus: Bus,
    chromium: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    beaches, trains = day_table("beach-water-temperature"), day_table("train-punctuality")
    await publish(quiet_bus, beaches, trains, volunteer_week())
    async with running_gateway(quiet_bus) as gateway, Browser.launch(tmp_path, executable=chromium) as page:
        try:
            await page.navigate(gateway.url + "/")
            await page.wait_for("document.getElementById('statistics').dataset.loaded === 'true'")
            titles = "[...document.querySelectorAll('#statistics .stats-title')].map(t => t.textContent)"
            assert await page.wait_for(f"{titles}.length === 3 && {titles}") == [
                beaches.title,  # sorted by data set
                trains.title,
                Aggregate.example().title,
            ]
            assert await page.evaluate("document.getElementById('statistics-empty').hidden")
            await page.click('details[data-dataset="beach-water-temperature"] summary')

            # The public table: a row per site by its name, its figures; the total; what protected it.
            rows = await page.evaluate(rows_of("beach-water-temperature"))
            head = (
                "[...document.querySelectorAll('details[data-dataset=\"beach-water-temperature\"] thead th')]"
            )
            assert await page.evaluate(f"{head}.map(h => h.textContent)") == [
                "Site",
                "n",
                "mean",
                "median",
                "range",
                "sum",
            ]
            by_group = {row[0]: row[1:] for row in rows}
            for published in beaches.rows:
                name = published.label or published.group[0]
                expected = [shown(published.count), shown(published.mean), shown(published.median)]
                expected += [f"{shown(published.min)}–{shown(published.max)}", shown(published.sum)]
                assert by_group[name] == expected, name
            assert len(rows) == len(beaches.rows) == 8  # seven sites and the total
            privacy = 'details[data-dataset="beach-water-temperature"] .stats-privacy'
            assert "mechanism: none" in await page.evaluate(text_of(privacy))

            # A table of two dimensions: a row's group by the names the messages carry.
            await page.click('details[data-dataset="train-punctuality"] summary')
            drammen = next(row for row in trains.rows if row.group == ("NSR:StopPlace:11", "all"))
            selector = json.dumps(
                'details[data-dataset="train-punctuality"] tr[data-group="NSR:StopPlace:11|all"]'
            )
            cells = await page.evaluate(
                f"[...document.querySelector({selector}).cells].map(c => c.textContent)"
            )
            assert cells[:3] == ["Drammen stasjon, all", shown(drammen.count), shown(drammen.mean)]

            # The table of personal data: suppressed cells say why; the privacy line says ε and k.
            await page.click('details[data-dataset="volunteer-hours"] summary')
            cells = await page.evaluate(rows_of("volunteer-hours"))
            assert cells[0] == ["bragernes", "beach-cleanup", "7", "2.91", "20.4"]
            assert cells[1] == [MARKUP, "suppressed (below the noise threshold)"]  # a label: as text
            assert cells[2] == ["stromso", "beach-cleanup", "suppressed (fewer than 5 persons)"]
            assert cells[3] == ["stromso", "first-aid", "suppressed (would reveal another suppressed cell)"]
            assert cells[4] == ["all", "all", "13", "2.75", "33"]
            line = await page.evaluate(text_of('details[data-dataset="volunteer-hours"] .stats-privacy'))
            assert "Differential privacy" in line and "ε = 0.5" in line and "k = 5" in line, line
            assert "spent this period 0.5 of 1" in line, line

            # A new release replaces the table as it arrives, the open table staying open.
            await publish(quiet_bus, volunteer_week(release=2))
            period = 'details[data-dataset="volunteer-hours"] .stats-period'
            await page.wait_for(f"{text_of(period)} === '2018-W35 · release 2 · final'")
            assert (await page.evaluate(rows_of("volunteer-hours")))[4][2] == "14"
            assert await page.evaluate(
                "document.querySelector('details[data-dataset=\"volunteer-hours\"]').open"
            )
            assert (
                await page.evaluate("document.querySelectorAll('#statistics img, #statistics b').length") == 0
            )
            assert await page.evaluate("window.injected === undefined")
        finally:
            await page.evaluate("document.getElementById('statistics').scrollIntoView()")
            shot = await page.screenshot(artefacts(tmp_path) / "gateway-statistics.png")
            print(f"screenshot of the statistics on the page: {shot}")  # noqa: T201 - for the person running the test
    assert page.errors == []
