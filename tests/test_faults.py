"""Fault injection for the sandbox: each kind on a contract-valid day of beach readings, with the
ground-truth log checked line by line against what came out, corruption against the real codec,
plans that are refused with messages a user can act on, and reproducibility.

Where a fault draws random numbers, the expected outcome is worked out here from the documented
draw protocol (one ``random.Random(f"{seed}:{index}")`` per fault, one ``random()`` per matching
message it considers), never read back from the injector.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bus.codec import Codec
from bus.envelope import Provenance, build_headers, format_time
from bus.errors import CityBusError, ContractViolation
from bus.subjects import contract_subject
from contracts import BeachObservation, Contract, default_registry
from sandbox.faults import (
    REORDER_STEP,
    CorruptFault,
    DropFault,
    FaultInjector,
    FaultPlan,
    FaultPlanError,
    Outgoing,
)
from sandbox.recording import RecordingWriter
from sandbox.replay import Replayer
from tests.conftest import wait_for

T0 = datetime(2018, 8, 29, 0, 0, tzinfo=UTC)
SITES = ("blektjern", "bragernes-strand", "sota-fjordpark")
SOURCE = {
    "blektjern": "/adapters/beach",
    "bragernes-strand": "/adapters/beach",
    "sota-fjordpark": "/adapters/yr",
}
SUBJECT = {site: f"city.public.environment.beach-observation.{site}" for site in SITES}
STEPS = 144  # every 10 minutes for a day
BEACH = Codec(BeachObservation)


def reading(site: str, step: int) -> BeachObservation:
    """The reading of one site at one step: values that change every step, so a stuck one shows."""
    n = SITES.index(site)
    return BeachObservation(
        site=site,
        observed_at=T0 + timedelta(minutes=10 * step),
        water_temperature=round(14 + n + step / 100, 2),
        air_temperature=round(12 + step / 10, 1),
        uv_index=round(step / 40, 2),
        device=f"vicotee-{site}-1",
    )


def message(site: str, step: int, *, source: str | None = None, event_id: str | None = None) -> Outgoing:
    instance = reading(site, step)
    at = instance.observed_at
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=event_id or f"{site}-{step:03d}",
        source=source or SOURCE[site],
        time=at,
        provenance=Provenance.SYNTHETIC,
    )
    return Outgoing(
        subject=contract_subject(instance), data=msgspec.json.encode(instance), headers=headers, time=at
    )


def beach_day() -> list[Outgoing]:
    """432 messages: three sites every 10 minutes from midnight, in time order."""
    return [message(site, step) for step in range(STEPS) for site in SITES]


DAY = beach_day()


@dataclass
class Run:
    """What a replay with faults published, and its ground truth."""

    published: list[tuple[int, float, Outgoing]]
    """(index of the message applied when it came out, or len(stream) for flush; delay; message)"""
    truth_text: str
    counts: Counter[str]

    @property
    def truth(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.truth_text.splitlines()]

    def ids(self) -> list[str]:
        return [m.headers["ce-id"] for _, _, m in self.published]


def replay(plan: FaultPlan, stream: list[Outgoing] = DAY, origin: datetime = T0) -> Run:
    truth = io.StringIO()
    injector = FaultInjector(plan, origin=origin, truth=truth)
    published = []
    for i, outgoing in enumerate(stream):
        result = injector.apply(outgoing)
        assert [delay for delay, _ in result] == sorted(delay for delay, _ in result)
        assert all(delay >= 0 for delay, _ in result)
        published += [(i, delay, m) for delay, m in result]
    published += [(len(stream), delay, m) for delay, m in injector.flush()]
    run = Run(published, truth.getvalue(), injector.counts)
    assert run.counts == Counter(line["kind"] for line in run.truth)
    return run


def truth_line(kind: str, fault: int, m: Outgoing, **detail: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "fault": fault,
        "subject": m.subject,
        "ce_id": m.headers["ce-id"],
        "time": m.headers["ce-time"],
        **detail,
    }


def draws(seed: int, index: int) -> random.Random:
    """The random generator the plan's fault number ``index`` uses."""
    return random.Random(f"{seed}:{index}")


def of(site: str) -> list[Outgoing]:
    return [m for m in DAY if m.subject == SUBJECT[site]]


def test_the_synthetic_day_is_valid_contract_data() -> None:
    assert len(DAY) == 432
    assert [BEACH.decode(m.data) for m in DAY[:3]] == [reading(site, 0) for site in SITES]
    assert all(BEACH.decode(m.data).observed_at == m.time for m in DAY)
    assert DAY[-1].headers["ce-time"] == "2018-08-29T23:50:00.000000Z"


def test_an_empty_plan_publishes_every_message_as_it_is() -> None:
    run = replay(FaultPlan())
    assert [(i, delay, m) for i, delay, m in run.published] == [(i, 0.0, m) for i, m in enumerate(DAY)]
    assert run.truth_text == "" and run.counts == Counter()


# --- each kind ----------------------------------------------------------------------------------


def test_drop_loses_the_messages_its_draws_pick_and_logs_each() -> None:
    plan = FaultPlan(seed=7, faults=[DropFault(probability=0.1, subjects=[SUBJECT["bragernes-strand"]])])
    rng = draws(7, 0)
    dropped = [m for m in of("bragernes-strand") if rng.random() < 0.1]
    run = replay(plan)
    assert run.ids() == [m.headers["ce-id"] for m in DAY if m not in dropped]
    assert all(delay == 0 for _, delay, _ in run.published)
    assert run.truth == [truth_line("drop", 0, m, burst=1, position=1) for m in dropped]
    # Pinned: these come from Random("7:0"); a change here changes every company's ground truth.
    assert [m.headers["ce-id"] for m in dropped[:3]] == [
        "bragernes-strand-001",
        "bragernes-strand-015",
        "bragernes-strand-039",
    ]


def test_drop_in_bursts_loses_that_many_matching_messages_in_a_row() -> None:
    plan = FaultPlan.loads('seed = 3\n[[faults]]\nkind = "drop"\nprobability = 0.05\nburst = 4\n')
    rng, position, expected = draws(3, 0), 0, []
    for m in DAY:  # every message matches city.>
        if position or rng.random() < 0.05:
            position += 1
            expected.append(truth_line("drop", 0, m, burst=4, position=position))
            position %= 4
    run = replay(plan)
    assert run.truth == expected
    assert len(expected) % 4 == 0 and len(expected) >= 8
    dropped = {line["ce_id"] for line in expected}
    assert run.ids() == [m.headers["ce-id"] for m in DAY if m.headers["ce-id"] not in dropped]
    # Each burst is four consecutive messages of the stream.
    positions = [DAY.index(next(m for m in DAY if m.headers["ce-id"] == line["ce_id"])) for line in expected]
    for start in range(0, len(positions), 4):
        assert positions[start : start + 4] == list(range(positions[start], positions[start] + 4))


def test_duplicate_publishes_the_same_event_again_after_the_gap() -> None:
    plan = FaultPlan.loads(
        '[[faults]]\nkind = "duplicate"\nsubjects = ["city.*.environment.*.sota-fjordpark"]\n'
        "probability = 1.0\ncopies = 2\ngap = 30\n"
    )
    run = replay(plan)
    for i, m in enumerate(DAY):
        out = [(delay, o) for j, delay, o in run.published if j == i]
        if m.subject != SUBJECT["sota-fjordpark"]:
            assert out == [(0.0, m)]
            continue
        assert [delay for delay, _ in out] == [0.0, 30.0, 60.0]
        assert out[0][1] == m
        for _, copy in out[1:]:
            # Same event (ce-id, body, time); no Nats-Msg-Id, so JetStream does not swallow it.
            assert copy.data == m.data and copy.time == m.time
            assert copy.headers == {k: v for k, v in m.headers.items() if k != "Nats-Msg-Id"}
            assert copy.headers["ce-id"] == m.headers["ce-id"]
    assert run.truth == [truth_line("duplicate", 0, m, copies=2, gap=30.0) for m in of("sota-fjordpark")]


def test_duplicate_at_random_with_no_gap() -> None:
    plan = FaultPlan.loads('seed = 11\n[[faults]]\nkind = "duplicate"\nprobability = 0.25\n')
    rng = draws(11, 0)
    doubled = [m for m in DAY if rng.random() < 0.25]
    run = replay(plan)
    expected_ids = [m.headers["ce-id"] for m in DAY for _ in range(2 if m in doubled else 1)]
    assert run.ids() == expected_ids
    assert all(delay == 0 for _, delay, _ in run.published)
    assert run.truth == [truth_line("duplicate", 0, m, copies=1, gap=0.0) for m in doubled]


def reorder_runs(run: Run, site: str) -> list[list[tuple[int, float, str]]]:
    """The site's published messages grouped by the message whose apply released them."""
    groups: dict[int, list[tuple[int, float, str]]] = {}
    for i, delay, m in run.published:
        if m.subject == SUBJECT[site]:
            groups.setdefault(i, []).append((i, delay, m.headers["ce-id"]))
    return list(groups.values())


def test_reorder_holds_a_window_and_releases_it_shuffled() -> None:
    plan = FaultPlan.loads(
        f'seed = 5\n[[faults]]\nkind = "reorder"\nsubjects = ["{SUBJECT["bragernes-strand"]}"]\n'
        "probability = 1.0\nwindow = 3\n"
    )
    run = replay(plan)
    groups = reorder_runs(run, "bragernes-strand")
    assert len(groups) == STEPS // 3
    arrivals = [m.headers["ce-id"] for m in of("bragernes-strand")]
    truth = iter(run.truth)
    for n, group in enumerate(groups):
        held = arrivals[3 * n : 3 * n + 3]
        released = [ce_id for _, _, ce_id in group]
        # Out with the third message of the run, at once and in the shuffled order.
        assert group[0][0] == DAY.index(of("bragernes-strand")[3 * n + 2])
        assert [delay for _, delay, _ in group] == [0.0, REORDER_STEP, 2 * REORDER_STEP]
        assert sorted(released) == held and released != held
        for position, ce_id in enumerate(released):
            line = next(truth)
            assert (line["kind"], line["ce_id"], line["window"]) == ("reorder", ce_id, 3)
            assert (line["arrived"], line["released"]) == (held.index(ce_id), position)
    assert next(truth, None) is None
    # The other sites are untouched, and on time.
    others = [(i, delay, m) for i, delay, m in run.published if m.subject != SUBJECT["bragernes-strand"]]
    assert others == [(i, 0.0, m) for i, m in enumerate(DAY) if m.subject != SUBJECT["bragernes-strand"]]
    # Pinned: the first run's order from Random("5:0").
    assert groups[0] == [
        (7, 0.0, "bragernes-strand-002"),
        (7, REORDER_STEP, "bragernes-strand-001"),
        (7, 2 * REORDER_STEP, "bragernes-strand-000"),
    ]


def test_flush_releases_what_a_reorder_still_holds() -> None:
    plan = FaultPlan.loads(
        f'[[faults]]\nkind = "reorder"\nsubjects = ["{SUBJECT["blektjern"]}"]\n'
        "probability = 1.0\nwindow = 5\n"
    )
    run = replay(plan)
    tail = [(delay, m.headers["ce-id"]) for i, delay, m in run.published if i == len(DAY)]
    # 144 = 28 runs of 5 + 4 held at the end; flush times them from the last message applied.
    assert [delay for delay, _ in tail] == [0.0, REORDER_STEP, 2 * REORDER_STEP, 3 * REORDER_STEP]
    assert sorted(ce_id for _, ce_id in tail) == [f"blektjern-{s}" for s in range(140, 144)]
    assert [line["window"] for line in run.truth[-4:]] == [4, 4, 4, 4]
    assert sorted(run.ids()) == sorted(m.headers["ce-id"] for m in DAY)


def test_a_reorder_window_ending_releases_its_run_at_once() -> None:
    # A window of 4 messages in a time window [00:10, 00:40) that only three readings fall into.
    plan = FaultPlan.loads(
        f'[[faults]]\nkind = "reorder"\nsubjects = ["{SUBJECT["sota-fjordpark"]}"]\nprobability = 1.0\n'
        "window = 4\nstart = 600\nduration = 1800\n"
    )
    run = replay(plan)
    # Steps 1 to 3 (00:10 to 00:30) are held; the first message at 00:40 finds the window closed.
    assert DAY[12].headers["ce-id"] == "blektjern-004"
    out = [(delay, m.headers["ce-id"]) for i, delay, m in run.published if i == 12]
    held = [ce_id for _, ce_id in out if ce_id.startswith("sota")]
    assert sorted(held) == ["sota-fjordpark-001", "sota-fjordpark-002", "sota-fjordpark-003"]
    assert [delay for delay, _ in out] == [0.0, 0.0, REORDER_STEP, 2 * REORDER_STEP]
    assert out[1] == (0.0, "blektjern-004")  # itself on time, the overdue ones around it
    assert [line["ce_id"] for line in run.truth] == held
    assert all(line["window"] == 3 for line in run.truth)
    assert sorted(run.ids()) == sorted(m.headers["ce-id"] for m in DAY)


def test_delay_moves_messages_later_by_delay_plus_jitter() -> None:
    plan = FaultPlan.loads(
        f'seed = 2\n[[faults]]\nkind = "delay"\nsubjects = ["{SUBJECT["blektjern"]}"]\n'
        "probability = 1.0\ndelay = 60\njitter = 30\n"
    )
    rng = draws(2, 0)
    expected = {}
    for m in of("blektjern"):
        assert rng.random() < 1.0
        expected[m.headers["ce-id"]] = max(0.0, round(60 + rng.uniform(-30, 30), 6))
    run = replay(plan)
    for i, delay, m in run.published:
        assert m == DAY[i]  # a late message keeps its ce-time and body
        assert delay == expected.get(m.headers["ce-id"], 0.0)
    assert all(30 <= d <= 90 for d in expected.values()) and len(set(expected.values())) > 100
    assert run.truth == [
        truth_line("delay", 0, m, delay=expected[m.headers["ce-id"]]) for m in of("blektjern")
    ]


def test_delay_is_never_negative_when_the_jitter_is_larger() -> None:
    plan = FaultPlan.loads('seed = 4\n[[faults]]\nkind = "delay"\nprobability = 0.5\ndelay = 1\njitter = 5\n')
    rng, expected = draws(4, 0), {}
    for m in DAY:
        if rng.random() < 0.5:
            expected[m.headers["ce-id"]] = max(0.0, round(1 + rng.uniform(-5, 5), 6))
    run = replay(plan)
    assert {m.headers["ce-id"]: delay for _, delay, m in run.published if delay} == {
        k: v for k, v in expected.items() if v
    }
    assert sum(1 for v in expected.values() if v == 0.0) > 20  # the clipped ones: logged as 0, not below
    assert [(line["ce_id"], line["delay"]) for line in run.truth] == list(expected.items())


def contract_messages() -> list[tuple[type[Contract], Outgoing]]:
    """One real message of every contract citybus knows, from the contract's own example."""
    found = []
    for cls in default_registry():
        info = cls.__contract__
        instance = msgspec.json.decode(msgspec.json.encode(dict(info.example)), type=cls)
        headers = build_headers(
            info, event_id=f"ex-{info.name}", source="/tests", time=T0, provenance="synthetic"
        )
        body = msgspec.json.encode(instance)
        found.append((cls, Outgoing(subject=contract_subject(instance), data=body, headers=headers, time=T0)))
    return found


CONTRACT_MESSAGES = contract_messages()


@pytest.mark.parametrize("mode", ["truncate", "garble", "retype"])
def test_every_corruption_of_every_contract_fails_its_real_decoding(mode: str) -> None:
    assert len(CONTRACT_MESSAGES) >= 10
    for seed in range(25):
        plan = FaultPlan(seed=seed, faults=[CorruptFault(probability=1.0, mode=mode)])  # type: ignore[arg-type]
        truth = io.StringIO()
        injector = FaultInjector(plan, origin=T0, truth=truth)
        for cls, original in CONTRACT_MESSAGES:
            Codec(cls).decode(original.data)  # the original is fine
            [(delay, broken)] = injector.apply(original)
            assert delay == 0.0 and broken.headers == original.headers and broken.data != original.data
            with pytest.raises(ContractViolation) as caught:
                Codec(cls).decode(broken.data)
            assert caught.value.reason == "invalid-body"
            line = json.loads(truth.getvalue().splitlines()[-1])
            assert line["mode"] == mode and line["ce_id"] == original.headers["ce-id"]
            if mode == "truncate":
                assert broken.data == original.data[: len(original.data) // 2]
            elif mode == "garble":
                assert len(broken.data) == len(original.data) and line["flipped"] >= 1
                with pytest.raises(msgspec.DecodeError):
                    msgspec.json.decode(broken.data)
            else:  # valid JSON, one field of another JSON type
                before, after = msgspec.json.decode(original.data), msgspec.json.decode(broken.data)
                changed = [k for k in before if before[k] != after[k]]
                assert changed == [line["field"]]
                assert type(before[line["field"]]) is not type(after[line["field"]])


def test_retype_hits_the_first_field_a_beach_observation_types_strictly() -> None:
    plan = FaultPlan.loads('seed = 9\n[[faults]]\nkind = "corrupt"\nprobability = 0.2\nmode = "retype"\n')
    rng, number = draws(9, 0), {}
    for m in DAY:
        if rng.random() < 0.2:
            number[m.headers["ce-id"]] = rng.randrange(1000)  # what replaces the site's name
    run = replay(plan)
    assert run.truth == [
        truth_line("corrupt", 0, m, mode="retype", field="site") for m in DAY if m.headers["ce-id"] in number
    ]
    assert [i for i, _, _ in run.published] == list(range(len(DAY)))
    for i, _, m in run.published:
        if m.headers["ce-id"] not in number:
            assert m == DAY[i]
            continue
        assert m.headers == DAY[i].headers
        assert msgspec.json.decode(m.data) == {
            **msgspec.json.decode(DAY[i].data),
            "site": number[m.headers["ce-id"]],
        }
        with pytest.raises(ContractViolation, match="Expected `str`, got `int` - at `\\$.site`"):
            BEACH.decode(m.data)
    assert 60 < len(number) < 120


@pytest.mark.parametrize("body", [b"\x01\x02binary frame", b'"\xff not UTF-8"', b"[1, 2, 3]"])
def test_retype_of_a_body_that_is_no_json_object_truncates_it(body: bytes) -> None:
    raw = Outgoing(subject="city.internal.raw.uplink.x", data=body, headers={}, time=T0)
    truth = io.StringIO()
    injector = FaultInjector(
        FaultPlan(faults=[CorruptFault(probability=1, mode="retype")]), origin=T0, truth=truth
    )
    [(_, out)] = injector.apply(raw)
    assert out.data == body[: len(body) // 2]
    assert json.loads(truth.getvalue()) == {
        "kind": "corrupt",
        "fault": 0,
        "subject": "city.internal.raw.uplink.x",
        "ce_id": "",
        "time": "2018-08-29T00:00:00.000000Z",
        "mode": "truncate",
    }


def test_a_stuck_body_that_does_not_decode_is_repeated_as_it_is() -> None:
    plan = FaultPlan.loads('[[faults]]\nkind = "stuck"\nstart = 0\nduration = 3600\n')
    first, second = message("blektjern", 0), message("blektjern", 1)
    first = Outgoing(subject=first.subject, data=b'{"site": "\xff"}', headers=first.headers, time=first.time)
    injector = FaultInjector(plan, origin=T0)
    assert injector.apply(first) == [(0.0, first)]
    [(_, out)] = injector.apply(second)
    assert out.data == first.data and out.headers == second.headers


def test_outage_silences_a_sensor_for_its_window() -> None:
    plan = FaultPlan.loads(
        f'[[faults]]\nkind = "outage"\nsubjects = ["{SUBJECT["blektjern"]}"]\nstart = 3600\nduration = 1800\n'
    )
    run = replay(plan)
    silent = ["blektjern-006", "blektjern-007", "blektjern-008"]  # 01:00, 01:10, 01:20
    assert run.ids() == [m.headers["ce-id"] for m in DAY if m.headers["ce-id"] not in silent]
    assert run.truth == [
        truth_line("outage", 0, m, until="2018-08-29T01:30:00.000000Z")
        for m in DAY
        if m.headers["ce-id"] in silent
    ]


def test_stuck_repeats_the_first_reading_of_the_window_with_fresh_timestamps() -> None:
    plan = FaultPlan.loads(
        f'[[faults]]\nkind = "stuck"\nsubjects = ["{SUBJECT["sota-fjordpark"]}"]\n'
        "start = 7200\nduration = 3600\n"
    )
    stream = [
        *DAY[:40],
        message("sota-fjordpark", 13, source="/adapters/manual", event_id="manual-1"),
        *DAY[40:],
    ]
    run = replay(plan, stream)
    first = reading("sota-fjordpark", 12)  # 02:00, the window's first sensor reading
    published = {m.headers["ce-id"]: m for _, _, m in run.published}
    assert len(published) == len(stream)
    for step in range(13, 18):  # 02:10 to 02:50
        m = published[f"sota-fjordpark-{step:03d}"]
        stuck = BEACH.decode(m.data)
        assert stuck == msgspec.structs.replace(first, observed_at=T0 + timedelta(minutes=10 * step))
        assert m.headers == message("sota-fjordpark", step).headers  # its own ce-id and ce-time
    assert published["sota-fjordpark-012"].data == msgspec.json.encode(first)
    assert published["sota-fjordpark-018"].data == msgspec.json.encode(reading("sota-fjordpark", 18))
    # The manual reading on the same subject is from another source: it is its own first reading.
    assert published["manual-1"].data == msgspec.json.encode(reading("sota-fjordpark", 13))
    assert run.truth == [
        truth_line("stuck", 0, m, stuck_to="sota-fjordpark-012")
        for m in of("sota-fjordpark")
        if m.headers["ce-id"] in {f"sota-fjordpark-{s:03d}" for s in range(13, 18)}
    ]


def test_skew_moves_a_source_s_clock_but_not_when_it_speaks() -> None:
    plan = FaultPlan.loads('[[faults]]\nkind = "skew"\nsources = ["/adapters/beach"]\nskew = -300\n')
    run = replay(plan)
    assert [(i, delay) for i, delay, _ in run.published] == [(i, 0.0) for i in range(len(DAY))]
    for i, _, m in run.published:
        original = DAY[i]
        assert m.time == original.time and m.headers["ce-id"] == original.headers["ce-id"]
        if original.headers["ce-source"] == "/adapters/yr":
            assert m == original
            continue
        assert m.headers["ce-time"] == format_time(original.time - timedelta(minutes=5))
        assert BEACH.decode(m.data).observed_at == original.time - timedelta(minutes=5)
        assert BEACH.decode(m.data).water_temperature == BEACH.decode(original.data).water_temperature
    assert run.truth == [
        truth_line("skew", 0, m, skew=-300.0) for m in DAY if m.headers["ce-source"] == "/adapters/beach"
    ]


# --- plans: order, windows, determinism ----------------------------------------------------------


def test_a_window_limits_a_random_fault() -> None:
    run = replay(
        FaultPlan.loads('[[faults]]\nkind = "drop"\nprobability = 1\nstart = 600\nduration = 1200\n')
    )
    gone = {f"{site}-{step:03d}" for site in SITES for step in (1, 2)}  # 00:10 and 00:20
    assert [line["ce_id"] for line in run.truth] == [
        m.headers["ce-id"] for m in DAY if m.headers["ce-id"] in gone
    ]
    assert run.ids() == [m.headers["ce-id"] for m in DAY if m.headers["ce-id"] not in gone]


def test_faults_apply_in_plan_order_and_a_dropped_message_meets_no_later_fault() -> None:
    plan = FaultPlan.loads(
        f'[[faults]]\nkind = "drop"\nprobability = 1\nsubjects = ["{SUBJECT["blektjern"]}"]\n'
        '[[faults]]\nkind = "duplicate"\nprobability = 1\n'
        f'[[faults]]\nkind = "delay"\nprobability = 1\ndelay = 10\n'
        f'subjects = ["{SUBJECT["sota-fjordpark"]}"]\n'
    )
    run = replay(plan)
    expected = []
    for i, m in enumerate(DAY):
        if m.subject == SUBJECT["blektjern"]:
            continue
        delay = 10.0 if m.subject == SUBJECT["sota-fjordpark"] else 0.0
        expected += [(i, delay, m.headers["ce-id"])] * 2  # the copy meets the delay too
    assert [(i, delay, m.headers["ce-id"]) for i, delay, m in run.published] == expected
    assert run.counts == Counter(drop=STEPS, duplicate=2 * STEPS, delay=2 * STEPS)
    assert [line["kind"] for line in run.truth[:4]] == ["drop", "duplicate", "duplicate", "delay"]
    assert run.truth[3]["ce_id"] == run.truth[2]["ce_id"] == "sota-fjordpark-000"


EVERYTHING = """
seed = {seed}
[[faults]]
kind = "drop"
probability = 0.03
burst = 2
[[faults]]
kind = "duplicate"
probability = 0.05
gap = 2.5
[[faults]]
kind = "reorder"
probability = 0.1
window = 3
[[faults]]
kind = "delay"
probability = 0.1
delay = 30
jitter = 20
[[faults]]
kind = "corrupt"
probability = 0.05
mode = "garble"
[[faults]]
kind = "outage"
subjects = ["city.public.environment.beach-observation.blektjern"]
start = 7200
duration = 3600
[[faults]]
kind = "stuck"
subjects = ["city.public.environment.beach-observation.bragernes-strand"]
start = 36000
duration = 7200
[[faults]]
kind = "skew"
sources = ["/adapters/yr"]
skew = 120
"""


def fingerprint(run: Run) -> list[tuple[int, float, str, bytes, dict[str, str]]]:
    return [(i, delay, m.subject, m.data, m.headers) for i, delay, m in run.published]


def test_the_same_plan_and_seed_give_the_same_output_and_ground_truth() -> None:
    first, second = (
        replay(FaultPlan.loads(EVERYTHING.format(seed=42))),
        replay(FaultPlan.loads(EVERYTHING.format(seed=42))),
    )
    assert fingerprint(first) == fingerprint(second)
    assert first.truth_text == second.truth_text
    assert set(first.counts) == {
        "drop",
        "duplicate",
        "reorder",
        "delay",
        "corrupt",
        "outage",
        "stuck",
        "skew",
    }
    other = replay(FaultPlan.loads(EVERYTHING.format(seed=43)))
    assert other.truth_text != first.truth_text


def test_adding_a_fault_at_the_end_leaves_the_others_decisions_alone() -> None:
    base = replay(FaultPlan.loads(EVERYTHING.format(seed=1)))
    more = replay(
        FaultPlan.loads(EVERYTHING.format(seed=1) + '[[faults]]\nkind = "drop"\nprobability = 0.5\n')
    )
    assert [line for line in more.truth if line["fault"] < 8] == base.truth
    assert more.counts["drop"] > base.counts["drop"]


# --- plans that are refused ----------------------------------------------------------------------

GOOD = '[[faults]]\nkind = "drop"\nprobability = 0.1\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + '[[faults]]\nkind = "explode"\n',
            "faults[1]: unknown kind 'explode'; allowed kinds: 'drop', 'duplicate', 'reorder', 'delay', "
            "'corrupt', 'outage', 'stuck', 'skew'",
        ),
        (
            GOOD + '[[faults]]\nkind = "drop"\nprobability = 1.5\n',
            "faults[1] (kind 'drop'): probability = 1.5 is not allowed: expected a number from 0 to 1",
        ),
        (
            GOOD + '[[faults]]\nkind = "outage"\nstart = 60\n',
            "faults[1] (kind 'outage'): missing required key 'duration' (a number > 0 (seconds the outage "
            "lasts)); required for outage: duration",
        ),
        (
            GOOD + '[[faults]]\nkind = "drop"\nprobabilty = 0.1\n',
            "faults[1] (kind 'drop'): unknown key 'probabilty'; allowed keys for drop: "
            "kind, burst, duration, probability, start, subjects",
        ),
        (
            GOOD + '[[faults]]\nkind = "drop"\nprobability = 0.1\nsubjects = ["city.>.beach"]\n',
            "faults[1] (kind 'drop'): subject 'city.>.beach': '>' may only be the last token",
        ),
        (
            GOOD + '[[faults]]\nkind = "drop"\nprobability = 0.1\nsubjects = ["city..beach"]\n',
            "faults[1] (kind 'drop'): subject 'city..beach': token 2 is empty",
        ),
        (
            GOOD + '[[faults]]\nkind = "drop"\nprobability = 0.1\nsubjects = []\n',
            "faults[1] (kind 'drop'): subjects must name at least one subject pattern",
        ),
        (GOOD + "[[faults]]\nprobability = 0.1\n", "faults[1] has no kind; allowed kinds: 'drop'"),
        (
            GOOD + '[[faults]]\nkind = "drop"\nprobability = 0.1\nburst = 1.5\n',
            "faults[1] (kind 'drop'): burst = 1.5 is not allowed: expected an integer >= 1",
        ),
        (
            '[[faults]]\nkind = "corrupt"\nprobability = 0.1\nmode = "shred"\n',
            "faults[0] (kind 'corrupt'): mode = 'shred' is not allowed: "
            "expected one of 'garble', 'retype', 'truncate' (how the body is broken)",
        ),
        (
            '[[faults]]\nkind = "delay"\nprobability = 0.1\ndelay = 0\n',
            "faults[0] (kind 'delay'): delay and jitter are both 0",
        ),
        (
            '[[faults]]\nkind = "reorder"\nprobability = 0.1\nwindow = 1\n',
            "faults[0] (kind 'reorder'): window = 1 is not allowed: expected an integer from 2 to 1000",
        ),
        ('seed = "x"\n', "seed = 'x' is not allowed: expected an integer"),
        ("sede = 1\n", "unknown key 'sede'; allowed top-level keys: faults, seed"),
        ("faults = 3\n", "faults must be an array of tables ([[faults]])"),
        ("[[faults]\nkind = 1\n", "is not valid TOML: "),
    ],
)
def test_a_bad_plan_is_refused_saying_where_and_what_is_allowed(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad-day.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FaultPlanError) as caught:
        FaultPlan.load(path)
    assert str(caught.value).startswith(f"fault plan {path}")
    assert expected in str(caught.value)
    assert isinstance(caught.value, CityBusError) and isinstance(caught.value, ValueError)


def test_invalid_toml_says_where() -> None:
    with pytest.raises(FaultPlanError, match=r"fault plan x is not valid TOML: .*line 1"):
        FaultPlan.loads("[[faults]\n", origin="fault plan x")


def test_a_missing_plan_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FaultPlanError, match=r"fault plan .*nowhere\.toml not found: check the path"):
        FaultPlan.load(tmp_path / "nowhere.toml")


def test_a_plan_built_in_code_is_checked_too() -> None:
    with pytest.raises(FaultPlanError, match=r"probability = 2\.0 is not allowed"):
        FaultInjector(FaultPlan(faults=[DropFault(probability=2.0)]), origin=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        FaultInjector(FaultPlan(), origin=datetime(2018, 8, 29))


# --- windows in every loop of a replay -------------------------------------------------------------


async def test_every_loop_of_a_replay_starts_the_fault_windows_again(tmp_path: Path) -> None:
    """A looping replay's times start again at the wall-clock now of each loop; the windows follow,
    so an outage two hours in happens two hours into every loop, not only the first."""
    path = tmp_path / "two-hours.mcap"
    with RecordingWriter(path) as writer:
        for step in range(12):  # 0 to 110 minutes
            for site in SITES:
                recorded = message(site, step)
                writer.add(recorded.subject, recorded.data, recorded.headers)
    plan = FaultPlan.loads(
        f'[[faults]]\nkind = "outage"\nsubjects = ["{SUBJECT["blektjern"]}"]\nstart = 600\nduration = 1200\n'
        f'[[faults]]\nkind = "stuck"\nsubjects = ["{SUBJECT["sota-fjordpark"]}"]\nstart = 3600\n'
        "duration = 1800\n"
    )
    wall = [datetime(2026, 12, 1, tzinfo=UTC)]

    def now() -> datetime:  # every loop begins a day after the one before
        wall[0] += timedelta(days=1)
        return wall[0]

    sent: list[tuple[str, bytes]] = []
    held = asyncio.Event()
    per_loop = 36 - 2  # the outage drops two blektjern readings a loop

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
        sent.append((subject, data))
        if len(sent) == 3 * per_loop:
            await held.wait()  # three loops done: hold the replay here

    truth = io.StringIO()
    replayer = Replayer(
        [path],
        publish,
        speed=0,
        loop=True,
        wall=now,
        faults=lambda origin: FaultInjector(plan, origin=origin, truth=truth),
    )
    task = asyncio.create_task(replayer.run())
    await wait_for(lambda: len(sent) == 3 * per_loop)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = [json.loads(line) for line in truth.getvalue().splitlines()]
    day = [datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=loop) for loop in (1, 2, 3)]
    assert [(line["kind"], line["time"]) for line in lines] == [
        (kind, format_time(start + timedelta(minutes=minutes)))
        for start in day
        for kind, minutes in (("outage", 10), ("outage", 20), ("stuck", 70), ("stuck", 80))
    ]
    stuck_to = [line["stuck_to"] for line in lines if line["kind"] == "stuck"]
    assert len(set(stuck_to)) == 3  # each loop sticks to its own first reading of the window
    bodies = [data for subject, data in sent if subject == SUBJECT["sota-fjordpark"]]
    values = [msgspec.json.decode(body, type=BeachObservation).water_temperature for body in bodies]
    assert values[6:9] == [values[6]] * 3 and values[12 + 6 : 12 + 9] == [values[6]] * 3
