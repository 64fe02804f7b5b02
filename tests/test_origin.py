"""The consuming side of the pilot guard rails (bus/origin.py): a reserved ``ce-source`` on a subject
its owner does not publish is dead-lettered ``forged-source``, over the real server and in memory."""

from __future__ import annotations

import pytest
from conftest import wait_for

from bus import Bus
from bus.access import Declaration
from bus.errors import ContractViolation
from bus.origin import FORGED_SOURCE, SourceGuard
from bus.subjects import contract_filter
from contracts import BeachObservation
from tests.test_bus import Collector, beach, dead_letter_collector

CITY_SOURCE = "/adapters/beach"


def guard_for(*sites: str) -> SourceGuard:
    replay = Declaration(
        "sandbox",
        consumes=(),
        produces=(BeachObservation,),
        declassifier=False,
        owns=tuple(contract_filter(BeachObservation, s) for s in sites),
        sources=(CITY_SOURCE,),
    )
    return SourceGuard.from_declarations([replay])


async def test_a_city_source_on_a_pilots_entity_is_dead_lettered(any_bus: Bus, entity: str) -> None:
    city_site = f"city-{entity}"
    any_bus.source_guard = guard_for(city_site)
    letters = await dead_letter_collector(any_bus)
    got = Collector()
    await any_bus.subscribe(BeachObservation, got, entity="*")
    # The city's own reading, under the city's source: handled.
    await any_bus.publish(beach(city_site), source=CITY_SOURCE, provenance="sensor")
    # A pilot's own entity with its own source: handled.
    await any_bus.publish(beach(f"pilot-{entity}"), source="/adapters/acme", provenance="sensor")
    # A pilot's entity claiming the city's source: never handled, dead-lettered with the reason.
    await any_bus.publish(beach(f"forged-{entity}"), source=CITY_SOURCE, provenance="sensor")
    await wait_for(lambda: any(e.data.reason == FORGED_SOURCE for e in letters.events))  # type: ignore[attr-defined]
    forged = [e.data for e in letters.events if e.data.reason == FORGED_SOURCE]  # type: ignore[attr-defined]
    assert [f.original_subject for f in forged] == [contract_filter(BeachObservation, f"forged-{entity}")]
    assert "belongs to sandbox" in forged[0].detail
    await wait_for(lambda: len(got.events) == 2)
    assert sorted(e.data.site for e in got.events) == sorted([city_site, f"pilot-{entity}"])  # type: ignore[attr-defined]


def test_a_guard_without_owned_subjects_reserves_nothing() -> None:
    nothing = SourceGuard.from_declarations(
        [Declaration("x", consumes=(), produces=(), declassifier=False, sources=("/adapters/x",))]
    )
    assert not nothing
    nothing.check("city.public.environment.beach-observation.a", "/adapters/x")
    guard = guard_for("bragernes-strand")
    guard.check(contract_filter(BeachObservation, "bragernes-strand"), CITY_SOURCE)
    with pytest.raises(ContractViolation) as refused:
        guard.check(contract_filter(BeachObservation, "elsewhere"), CITY_SOURCE)
    assert refused.value.reason == FORGED_SOURCE


def test_citybus_ups_sandbox_instances_guard_the_recorded_sources() -> None:
    """What `citybus up` gives the buses of its SANDBOX instances (adapters/runtime.py): the shipped
    day's sources, reserved to its subjects."""
    from adapters.instances import parse_instance
    from adapters.runtime import sandbox_guard
    from sandbox.adapter import SandboxReplay

    guard = sandbox_guard([parse_instance("sandbox", SandboxReplay, {})])
    assert {"/adapters/beach", "/adapters/trains"} <= guard.sources
    guard.check(contract_filter(BeachObservation, "bragernes-strand"), "/adapters/beach")
    with pytest.raises(ContractViolation):
        guard.check(contract_filter(BeachObservation, "someone-elses-buoy"), "/adapters/beach")


def test_personal_subjects_are_not_guarded() -> None:
    """A replay publishes a recorded person's sealed message on the subject of their ref, which no
    recording can name beforehand; no guest may publish personal data, so nothing is forged there."""
    guard = SourceGuard()
    guard.reserve(
        ["/adapters/volunteers"],
        ["city.personal.community.volunteer-signup.v-3f9c2a7e51d0"],
        owner="sandbox-replay",
    )
    guard.check("city.personal.community.volunteer-signup.p-" + "0" * 24, "/adapters/volunteers")
    with pytest.raises(ContractViolation):
        guard.check("city.public.community.opportunity.made-up", "/adapters/volunteers")
