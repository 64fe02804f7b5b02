"""certify's scorer: run records built by hand, with real contract bodies, judged check by check.

The records stand for what the engine would record of an adapter that republishes beach readings
(``/adapters/relay``, a reading out 30 replay seconds after the reading in, with its trace id) and,
for detection, of one that raises ``acme.sensor-alert`` messages. Each check is shown passing for
an adapter that copes and failing, with the offending case named, for one that does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import pytest

from bus.errors import ConfigError
from contracts import BeachObservation, Contract, contract
from contracts.fields import Timestamp
from contracts.registry import Registry
from sandbox.certify.flow import percentile
from sandbox.certify.model import (
    Adapted,
    BrokerFault,
    Check,
    Crash,
    DetectionSpec,
    Handled,
    Refusal,
    Report,
    Resources,
    RunRecord,
    Seen,
    Thresholds,
)
from sandbox.certify.score import MAX_LANES, build_report, score
from sandbox.certify.truth import episodes

REGISTRY = Registry()
REGISTRY.add(BeachObservation)


@contract(
    "acme.sensor-alert",
    version=1,
    classification="public",
    key="site",
    example={"site": "blektjern", "problem": "stuck", "about": "2018-08-28T03:00:00Z"},
    registry=REGISTRY,
)
class SensorAlert(Contract, frozen=True, kw_only=True):
    """A product's word that a beach sensor misbehaves (``ok`` when it is well again)."""

    site: str
    problem: str
    about: Annotated[Timestamp, msgspec.Meta(description="When the problem was seen")]


T0 = datetime(2018, 8, 27, 22, tzinfo=UTC)
HOUR = 3600.0
SITES = ("blektjern", "sota-fjordpark")
REPLAY = "/adapters/sandbox-replay"
BEACHES = "city.public.environment.beach-observation"
ADAPTED = Adapted(
    adapter="beach-relay",
    instance="relay",
    source="/adapters/relay",
    consumes=["environment.beach-observation"],
    produces=["environment.beach-observation", "acme.sensor-alert"],
    consumed_subjects=["city.public.environment.beach-observation.*"],
    produced_subjects=["city.public.environment.beach-observation.*", "city.public.acme.sensor-alert.*"],
    detections=[
        DetectionSpec(
            contract="acme.sensor-alert", field="problem", kinds={"stuck": "stuck", "silent": "outage"},
            entity="site", time="about",
        )
    ],
)  # fmt: skip
PLAIN = msgspec.structs.replace(ADAPTED, detections=[])
"""The same relay, declaring no detection."""
STRICT = Thresholds(recovery_seconds=HOUR, liveness=0.8, liveness_window=HOUR, detection_tolerance=HOUR)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(site: str, seconds: float, **changes: Any) -> bytes:
    """A real BeachObservation body: the contract's example at this site and time."""
    example = dict(BeachObservation.__contract__.example)
    return msgspec.json.encode({**example, "site": site, "observed_at": at(seconds).isoformat(), **changes})


def seen(seconds: float, site: str, *, trace: str = "", source: str = REPLAY, **fields: Any) -> Seen:
    """A message on the bus at ``seconds`` into the day; a reading of ``site`` unless told otherwise."""
    values: dict[str, Any] = {
        "at": at(seconds),
        "wall": seconds / 1000,
        "subject": f"{BEACHES}.{site}",
        "entity": site,
        "ce_id": f"{site}-{seconds:g}-{source.rpartition('/')[2]}",
        "ce_time": at(seconds),
        "ce_source": source,
        "ce_type": BeachObservation.__contract__.type,
        "trace": trace,
        "body": reading(site, seconds),
    }
    values.update(fields)
    return Seen(**values)


def relay(inputs: Iterable[Seen], delay: float = 30.0) -> list[Seen]:
    """What a good relay publishes: each reading again, ``delay`` seconds later, with its trace id."""
    outputs = []
    for i in inputs:
        seconds = (i.at - T0).total_seconds() + delay
        outputs.append(
            seen(seconds, i.entity, trace=i.trace, source=ADAPTED.source, body=i.body, ce_id=f"out-{i.ce_id}")
        )
    return outputs


def day_of_inputs(skip: Iterable[tuple[str, int]] = ()) -> list[Seen]:
    """Hourly readings of each site over the day, each with its own trace id."""
    left_out = set(skip)
    return [
        seen(h * HOUR, site, trace=f"{site}-{h:02d}".ljust(32, "0"), ce_id=f"{site}-{h:02d}")
        for h in range(24)
        for site in SITES
        if (site, h) not in left_out
    ]


def record(preset: str = "clean", **fields: Any) -> RunRecord:
    inputs = fields.pop("inputs", None)
    inputs = day_of_inputs() if inputs is None else inputs
    outputs = fields.pop("outputs", None)
    outputs = relay(inputs) if outputs is None else outputs
    defaults: dict[str, Any] = {
        "resources": Resources(peak_rss_bytes=80 * 1024 * 1024, cpu_seconds=2.5),
        # the adapter handled every input a moment after it arrived
        "handled": [
            Handled(
                wall=0.0,
                seconds=0.001,
                subject=i.subject,
                ce_id=i.ce_id,
                trace=i.trace,
                error="",
                done=i.at + timedelta(seconds=1),
            )
            for i in inputs
        ],  # fmt: skip
    }
    return RunRecord(
        preset=preset,
        seed=7,
        origin=T0,
        end=at(24 * HOUR),
        inputs=inputs,
        outputs=outputs,
        **{**defaults, **fields},
    )


def truth(kind: str, site: str, seconds: float, fault: int = 0, **details: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "fault": fault,
        "subject": f"{BEACHES}.{site}",
        "ce_id": details.pop("ce_id", f"{site}-{int(seconds // HOUR):02d}"),
        "time": at(seconds).isoformat().replace("+00:00", "Z"),
        **details,
    }


def checks_of(
    runs: list[RunRecord], thresholds: Thresholds = STRICT, adapted: Adapted = ADAPTED
) -> list[Check]:
    return score(adapted, runs, thresholds, REGISTRY)[0]


def one(checks: list[Check], name: str, run: str) -> Check:
    (found,) = [c for c in checks if c.check == name and c.run == run]
    return found


# -- contract fit, access, crashes, handler errors ----------------------------------------------------


def test_a_relay_that_copes_passes_every_check() -> None:
    clean = record()
    outage = record(
        "outage",
        inputs=day_of_inputs(skip=[("blektjern", h) for h in (3, 4, 5)]),
        truth=[truth("outage", "blektjern", h * HOUR, until=at(6 * HOUR - 1).isoformat()) for h in (3, 4, 5)],
    )
    checks = checks_of([clean, outage], adapted=PLAIN)
    failed = [c for c in checks if c.verdict == "fail"]
    assert failed == []
    assert {c.check for c in checks} >= {
        "contract-fit", "access", "crashes", "handler-errors", "recovery", "amplification", "liveness",
        "peak-rss", "cpu", "latency-p50", "latency-p99",
    }  # fmt: skip
    fit = one(checks, "contract-fit", "clean")
    assert (fit.value, fit.summary) == (0, "all 48 outputs fit their contracts, declared subjects and source")


def test_contract_fit_names_each_output_that_does_not_fit() -> None:
    clean = record()
    bad = [
        seen(100, "blektjern", source="/adapters/someone-else", ce_id="wrong-source"),
        seen(
            200,
            "blektjern",
            source=ADAPTED.source,
            subject="city.public.environment.weather.x",
            ce_id="wrong-subject",
        ),
        seen(
            300,
            "blektjern",
            source=ADAPTED.source,
            body=reading("blektjern", 300, water_temprature=3.0),
            ce_id="typo",
        ),
        seen(400, "blektjern", source=ADAPTED.source, body=b'{"site": "blektjern", "observ', ce_id="cut"),
        seen(
            500,
            "blektjern",
            source=ADAPTED.source,
            body=reading("blektjern", 500, water_temperature="warm"),
            ce_id="retyped",
        ),
        seen(600, "blektjern", source=ADAPTED.source, ce_type="acme.unknown.v1", ce_id="unknown"),
    ]
    broken = record("corrupt", outputs=relay(clean.inputs) + bad)
    checks = checks_of([clean, broken])
    assert one(checks, "contract-fit", "clean").verdict == "pass"
    fit = one(checks, "contract-fit", "corrupt")
    assert (fit.verdict, fit.value) == ("fail", 6)
    assert "6 of 54 outputs" in fit.summary
    assert len(fit.examples) == 5  # at most five, the first five in order
    assert [e.split(": ")[0].split()[1] for e in fit.examples] == [
        "wrong-source", "wrong-subject", "typo", "cut", "retyped",
    ]  # fmt: skip
    assert "/adapters/someone-else" in fit.examples[0]
    assert "did not declare" in fit.examples[1]
    assert "$.water_temprature" in fit.examples[2]
    lenient = checks_of([clean, broken], Thresholds(contract_violations=6))
    assert one(lenient, "contract-fit", "corrupt").verdict == "pass"


def test_access_refusals_fail_the_run_they_happened_in() -> None:
    refused = Refusal(at=at(60), wall=0.1, operation="publish", subject="city.internal.water.level.x")
    checks = checks_of([record(), record("outage", refusals=[refused])])
    assert one(checks, "access", "clean").verdict == "pass"
    access = one(checks, "access", "outage")
    assert (access.verdict, access.value) == ("fail", 1)
    assert access.examples == ["publish city.internal.water.level.x at 2018-08-27T22:01:00Z"]


def test_crashes_name_the_error_and_count_a_process_that_exited() -> None:
    crash = Crash(at=at(90), wall=0.2, error="KeyError('water_temperature')")
    died = Crash(at=at(95), wall=0.3, error="exit status 1", process_died=True)
    runs = [
        record(),
        record("corrupt", crashes=[crash]),
        record("restart", exit_code=1, log_tail=["Traceback …", "ValueError: boom"]),
        record("stuck", crashes=[died], exit_code=1),
    ]
    checks = checks_of(runs)
    assert one(checks, "crashes", "clean").verdict == "pass"
    corrupt = one(checks, "crashes", "corrupt")
    assert (corrupt.verdict, corrupt.value) == ("fail", 1)
    assert "KeyError('water_temperature')" in corrupt.summary
    exited = one(checks, "crashes", "restart")
    assert (exited.verdict, exited.value) == ("fail", 1)
    assert exited.examples == ["the process exited with status 1; last log line: ValueError: boom"]
    assert one(checks, "crashes", "stuck").value == 1  # the death and its exit status are one failure
    assert one(checks_of(runs, Thresholds(crashes=1)), "crashes", "corrupt").verdict == "pass"


def test_handler_errors_are_judged_in_the_clean_run_only() -> None:
    error = Handled(
        wall=0.1, seconds=0.01, subject="city.public.x.y", ce_id="abc", trace="", error="ValueError('x')"
    )
    fine = Handled(wall=0.2, seconds=0.01, subject="city.public.x.y", ce_id="def", trace="", error="")
    checks = checks_of([record(handled=[error, fine]), record("corrupt", handled=[error, error, fine])])
    clean = one(checks, "handler-errors", "clean")
    assert (clean.verdict, clean.value, clean.examples) == (
        "fail",
        1,
        ["city.public.x.y abc: ValueError('x')"],
    )
    faulted = one(checks, "handler-errors", "corrupt")
    assert (faulted.verdict, faulted.value) == ("n/a", 2)
    assert "2 of 3 handled messages raised" in faulted.summary


# -- recovery -----------------------------------------------------------------------------------------


def outage_run(resume_hour: int | None, until_hour: int = 6) -> RunRecord:
    """Blektjern silent from 03:00 to ``until_hour`` (truth), its readings out again from
    ``resume_hour`` (never, with ``None``); Sota fjordpark's keep flowing all along."""
    last = 24 if resume_hour is None else resume_hour
    silent = [("blektjern", h) for h in range(3, last)]
    lines = [
        truth("outage", "blektjern", h * HOUR, until=at(until_hour * HOUR).isoformat())
        for h in range(3, until_hour)
    ]
    return record("outage", inputs=day_of_inputs(skip=silent), truth=lines)


def test_recovery_waits_for_the_silent_entitys_own_outputs() -> None:
    checks = checks_of([record(), outage_run(resume_hour=8)])
    recovery = one(checks, "recovery", "outage")
    # the outage ended at 06:00; blektjern's 08:00 reading went out 30 s later, where the clean
    # run's 06:00 reading went out at 06:00:30. Sota fjordpark's outputs at 06:00:30 and 07:00:30
    # do not count: traces tell whose input caused them.
    assert recovery.value == 2 * HOUR
    assert recovery.verdict == "fail"
    assert recovery.examples == [
        "outage of blektjern ended 2018-08-28T04:00:00Z: outputs again after 7230 s, 7200 s later than clean"
    ]
    assert one(checks_of([record(), outage_run(resume_hour=6)]), "recovery", "outage").value == 0


def test_recovery_is_the_worst_of_the_runs_outages_listed_worst_first() -> None:
    silent = [("sota-fjordpark", 11), *(("blektjern", h) for h in range(3, 8))]
    lines = [
        *(truth("outage", "blektjern", h * HOUR, until=at(6 * HOUR).isoformat()) for h in range(3, 6)),
        truth("outage", "sota-fjordpark", 11 * HOUR, fault=1, until=at(11.5 * HOUR).isoformat()),
    ]
    run = record("outage", inputs=day_of_inputs(skip=silent), truth=lines)
    recovery = one(checks_of([record(), run]), "recovery", "outage")
    assert recovery.value == 2 * HOUR
    assert "after 2 faults ended" in recovery.summary
    assert [e.split(" ended")[0] for e in recovery.examples] == [
        "outage of blektjern",
        "outage of sota-fjordpark",
    ]
    assert "outputs again after 1830 s" in recovery.examples[1]


def test_recovery_fails_an_adapter_that_never_publishes_again_after_a_fault() -> None:
    recovery = one(checks_of([record(), outage_run(resume_hour=None)]), "recovery", "outage")
    assert recovery.verdict == "fail"
    assert "never resumed after outage of blektjern" in recovery.summary
    assert recovery.value == 18 * HOUR  # from 06:00 to the run's end


def test_recovery_after_a_broker_restart_takes_any_output() -> None:
    restart = BrokerFault(kind="restart", start=at(10 * HOUR), end=at(10 * HOUR + 60))
    gone = [(site, h) for site in SITES for h in (10, 11, 12)]
    run = record("broker-restart", inputs=day_of_inputs(skip=gone), broker_faults=[restart])
    recovery = one(checks_of([record(), run]), "recovery", "broker-restart")
    assert recovery.value == 2 * HOUR  # back at 13:00:30, where the clean run published at 11:00:30
    assert recovery.verdict == "fail"
    assert recovery.examples[0].startswith("restart ended 2018-08-28T08:01:00Z")


def test_recovery_does_not_apply_without_outputs_or_without_outages() -> None:
    checks = checks_of([record(), record("duplicates")])
    (recovery,) = [c for c in checks if c.check == "recovery"]
    assert (recovery.run, recovery.verdict) == ("all", "n/a")
    quiet = [record(outputs=[], handled=[]), outage_run(resume_hour=6)]
    assert one(checks_of(quiet), "recovery", "outage").verdict == "n/a"


def test_recovery_of_an_adapter_that_publishes_nothing_is_its_handling_resuming() -> None:
    """A sink, or a detector on a quiet day: after the outage it must handle blektjern's readings again."""

    def handled(hours: Iterable[int], site: str = "blektjern") -> list[Handled]:
        return [
            Handled(wall=0.0, seconds=0.01, subject=f"{BEACHES}.{site}", ce_id=f"{site}-{h}", trace="",
                    error="", done=at(h * HOUR + 60))
            for h in hours
        ]  # fmt: skip

    clean = record(outputs=[], handled=handled(range(24)))
    outage = BrokerFault(kind="restart", start=at(4 * HOUR), end=at(6 * HOUR))
    stalled = record("broker-restart", outputs=[], handled=handled(range(4)), broker_faults=[outage])
    recovery = one(checks_of([clean, stalled]), "recovery", "broker-restart")
    assert recovery.verdict == "fail" and "never resumed after restart" in recovery.summary
    assert recovery.examples[0].endswith("nothing handled after it (the clean run had some)")
    back = record(
        "broker-restart", outputs=[], handled=handled([*range(4), *range(7, 24)]), broker_faults=[outage]
    )
    resumed = one(checks_of([clean, back]), "recovery", "broker-restart")
    assert resumed.verdict == "pass" and resumed.value == HOUR  # 07:01 against the clean run's 06:01
    assert "handling again after" in resumed.examples[0]


def test_an_adapter_that_hangs_after_its_first_messages_fails_handling_in_the_clean_run() -> None:
    """The clean run is every other check's baseline: it is held against its own inputs here."""
    inputs = day_of_inputs()
    early = [i for i in inputs if i.at < at(2 * HOUR)]
    hung = record(outputs=relay(early), handled=record(inputs=early).handled)
    handling = one(checks_of([hung]), "handling", "clean")
    assert handling.verdict == "fail" and handling.value == pytest.approx(2 / 24)
    assert handling.examples[0] == "inputs but nothing handled in 2018-08-28T00:00:00Z..2018-08-28T01:00:00Z"
    assert one(checks_of([record()]), "handling", "clean").verdict == "pass"


# -- amplification ------------------------------------------------------------------------------------


def duplicated_run(dedupe: bool, same_trace: bool = True, stable_ids: bool = False) -> RunRecord:
    """Blektjern's 05:00 reading delivered twice (5 s apart); a relay that deduplicates on ce-id
    publishes it once, one that does not publishes it twice: under a fresh event id, or (with
    ``stable_ids``, ids made from what it says) under the same one."""
    inputs = day_of_inputs()
    original = next(i for i in inputs if i.ce_id == "blektjern-05")
    copy = msgspec.structs.replace(
        original, at=original.at + timedelta(seconds=5), trace=original.trace if same_trace else "f" * 32
    )
    again = [msgspec.structs.replace(o, ce_id=o.ce_id if stable_ids else "fresh") for o in relay([copy])]
    outputs = relay(inputs) + ([] if dedupe else again)
    lines = [truth("duplicate", "blektjern", 5 * HOUR, copies=1, gap=5.0)]
    return record("duplicates", inputs=[*inputs, copy], outputs=outputs, truth=lines)


@pytest.mark.parametrize("same_trace", [True, False])
def test_a_duplicated_input_that_becomes_two_identical_outputs_is_amplified(same_trace: bool) -> None:
    checks = checks_of([record(), duplicated_run(dedupe=False, same_trace=same_trace)])
    amplified = one(checks, "amplification", "duplicates")
    assert (amplified.verdict, amplified.value) == ("fail", 1)
    assert amplified.examples == [
        f"duplicated input blektjern-05 became 2 identical outputs on {BEACHES}.blektjern"
    ]
    assert (
        one(checks_of([record(), duplicated_run(dedupe=True)]), "amplification", "duplicates").verdict
        == "pass"
    )


def test_outputs_that_differ_only_in_when_they_were_made_say_the_same() -> None:
    """Advice stamped with the time it was given: one duplicated reading, two pieces of advice."""
    run = duplicated_run(dedupe=False)
    stamped = []
    for n, output in enumerate(run.outputs):
        body = msgspec.json.decode(output.body)
        body["advised_at"] = f"2026-12-07T10:{n // 60 % 60:02d}:{n % 60:02d}Z"
        stamped.append(msgspec.structs.replace(output, body=msgspec.json.encode(body)))
    run = msgspec.structs.replace(run, outputs=stamped)
    amplified = one(checks_of([record(), run]), "amplification", "duplicates")
    assert (amplified.verdict, amplified.value) == ("fail", 1)


def test_an_output_published_again_under_its_own_event_id_is_not_amplified() -> None:
    # consumers deduplicate on ce-id, as after any redelivery: the same message twice is one
    run = duplicated_run(dedupe=False, stable_ids=True)
    stable = one(checks_of([record(), run]), "amplification", "duplicates")
    assert (stable.verdict, stable.value) == ("pass", 0)


def test_repeats_no_duplicated_input_caused_are_shown_but_not_judged() -> None:
    run = record("stuck")
    repeat = msgspec.structs.replace(run.outputs[3], ce_id="again", trace="")
    amplified = one(
        checks_of([record(), msgspec.structs.replace(run, outputs=[*run.outputs, repeat])]),
        "amplification",
        "stuck",
    )
    assert (amplified.verdict, amplified.value) == ("pass", 0)
    assert "1 more repeated output than in the clean run that no duplicated input caused" in amplified.summary


def test_without_trace_ids_repeats_beyond_the_clean_runs_count_as_amplified() -> None:
    def untraced(run: RunRecord) -> RunRecord:
        return msgspec.structs.replace(
            run, outputs=[msgspec.structs.replace(o, trace="") for o in run.outputs]
        )

    clean = untraced(record())
    amplified = one(checks_of([clean, untraced(duplicated_run(dedupe=False))]), "amplification", "duplicates")
    assert (amplified.verdict, amplified.value) == ("fail", 1)
    assert "repeats beyond the clean run's" in amplified.summary
    fine = one(checks_of([clean, untraced(duplicated_run(dedupe=True))]), "amplification", "duplicates")
    assert (fine.verdict, fine.value) == ("pass", 0)


def test_a_corrupt_input_that_becomes_an_invalid_output_is_amplified() -> None:
    inputs = day_of_inputs()
    broken = reading("sota-fjordpark", 7 * HOUR, water_temperature="15,7")
    corrupted = [
        msgspec.structs.replace(i, body=broken) if i.ce_id == "sota-fjordpark-07" else i for i in inputs
    ]
    lines = [truth("corrupt", "sota-fjordpark", 7 * HOUR, mode="retype", field="water_temperature")]
    passed_on = record("corrupt", inputs=corrupted, outputs=relay(corrupted), truth=lines)
    checks = checks_of([record(), passed_on])
    amplified = one(checks, "amplification", "corrupt")
    assert (amplified.verdict, amplified.value) == ("fail", 1)
    assert amplified.examples[0].startswith(
        "corrupt input sota-fjordpark-07 became invalid output out-sota-fjordpark-07"
    )
    assert one(checks, "contract-fit", "corrupt").verdict == "fail"  # and it does not fit, of course
    dead_lettered = record(
        "corrupt", inputs=corrupted, outputs=relay(i for i in corrupted if i.body != broken), truth=lines
    )
    assert one(checks_of([record(), dead_lettered]), "amplification", "corrupt").verdict == "pass"


# -- liveness -----------------------------------------------------------------------------------------


def test_liveness_is_the_share_of_the_clean_runs_active_windows_with_outputs() -> None:
    def quiet_during(hours: Iterable[int]) -> RunRecord:
        silent = [(site, h) for site in SITES for h in hours]
        return record("outage", inputs=day_of_inputs(skip=silent))

    four = one(checks_of([record(), quiet_during(range(3, 7))]), "liveness", "outage")
    assert four.value == pytest.approx(20 / 24)
    assert four.verdict == "pass"  # 83 % ≥ 80 %
    assert (
        four.examples[0] == "no output in 2018-08-28T01:00:00Z..2018-08-28T02:00:00Z (the clean run had some)"
    )
    assert len(four.examples) == 4
    six = one(checks_of([record(), quiet_during(range(3, 9))]), "liveness", "outage")
    assert (six.value, six.verdict) == (pytest.approx(18 / 24), "fail")
    last = one(checks_of([record(), quiet_during([23])]), "liveness", "outage")
    assert last.value == pytest.approx(23 / 24)
    assert last.verdict == "fail"  # outputs did not resume after the faults
    assert "did not resume" in last.summary
    assert last.examples[0].startswith("no output in 2018-08-28T21:00:00Z")


def test_liveness_leaves_out_the_windows_in_which_the_broker_was_down() -> None:
    restart = BrokerFault(kind="restart", start=at(10 * HOUR + 1800), end=at(11 * HOUR + 600))
    gone = [(site, h) for site in SITES for h in (11, 12)]  # 10:00's readings went out before
    run = record("broker-restart", inputs=day_of_inputs(skip=gone), broker_faults=[restart])
    liveness = one(checks_of([record(), run]), "liveness", "broker-restart")
    assert liveness.value == pytest.approx(21 / 22)  # windows 10 and 11 left out; 12 had no output
    assert "2 windows with the broker down left out" in liveness.summary
    assert liveness.examples == [
        "no output in 2018-08-28T10:00:00Z..2018-08-28T11:00:00Z (the clean run had some)"
    ]


def test_a_liveness_window_of_no_length_is_refused_with_one_line() -> None:
    with pytest.raises(ConfigError, match="liveness_window must be more than 0"):
        checks_of([record(), record("outage")], Thresholds(liveness_window=0))


def test_liveness_does_not_apply_when_the_clean_run_published_and_handled_nothing() -> None:
    liveness = one(
        checks_of([record(outputs=[], handled=[]), record("outage", outputs=[], handled=[])]),
        "liveness",
        "outage",
    )
    assert liveness.verdict == "n/a"
    assert "neither published nor handled" in liveness.summary


def test_liveness_of_an_adapter_that_publishes_nothing_is_its_handling() -> None:
    """A sink (or a detector on a quiet day): the windows in which it finished handling messages."""

    def handled(hours: Iterable[int]) -> list[Handled]:
        return [
            Handled(
                wall=0.0, seconds=0.01, subject="s", ce_id=f"{h}", trace="", error="", done=at(h * HOUR + 60)
            )
            for h in hours
        ]

    clean = record(outputs=[], handled=handled(range(24)))
    stalled = record("outage", outputs=[], handled=handled(range(12)))  # stopped handling at noon
    liveness = one(checks_of([clean, stalled]), "liveness", "outage")
    assert liveness.verdict == "fail" and liveness.value == pytest.approx(12 / 24)
    assert "messages handled in 12 of the clean run's 24 active" in liveness.summary
    assert (
        liveness.examples[0]
        == "nothing handled in 2018-08-28T21:00:00Z..2018-08-28T22:00:00Z (the clean run had some)"
    )
    fine = one(
        checks_of([clean, record("outage", outputs=[], handled=handled(range(24)))]), "liveness", "outage"
    )
    assert fine.verdict == "pass"


# -- resources ----------------------------------------------------------------------------------------


def test_peak_rss_and_cpu_are_judged_per_run() -> None:
    hungry = record("stuck", resources=Resources(peak_rss_bytes=600 * 1024 * 1024, cpu_seconds=200.0))
    unmeasured = record("reorder", resources=Resources(peak_rss_bytes=0, cpu_seconds=0.0))
    checks = checks_of([record(), hungry, unmeasured])
    assert one(checks, "peak-rss", "clean").value == 80.0
    assert one(checks, "peak-rss", "clean").verdict == "pass"
    assert (one(checks, "peak-rss", "stuck").verdict, one(checks, "peak-rss", "stuck").value) == (
        "fail",
        600.0,
    )
    assert (one(checks, "cpu", "stuck").verdict, one(checks, "cpu", "stuck").value) == ("fail", 200.0)
    assert one(checks, "peak-rss", "reorder").verdict == "n/a"
    assert one(checks, "cpu", "reorder").verdict == "n/a"


# -- latency ------------------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    hundred = [float(v) for v in range(1, 101)]
    assert (percentile(hundred, 50), percentile(hundred, 99), percentile(hundred, 100)) == (50.0, 99.0, 100.0)


def test_latency_runs_from_the_input_to_the_output_with_its_trace_id() -> None:
    inputs = day_of_inputs()[:40]
    # output i leaves i+1 seconds after its input (1..40 s); one more output with no cause is ignored
    outputs = [relay([i], delay=n + 1)[0] for n, i in enumerate(inputs)]
    outputs.append(seen(100, "blektjern", source=ADAPTED.source, trace="e" * 32, ce_id="uncaused"))
    checks = checks_of([record(inputs=inputs, outputs=outputs)], Thresholds(latency_p50=20, latency_p99=39))
    p50, p99 = one(checks, "latency-p50", "clean"), one(checks, "latency-p99", "clean")
    assert (p50.value, p50.verdict) == (20.0, "pass")
    assert (p99.value, p99.verdict) == (40.0, "fail")
    slowest = inputs[-1]
    assert p99.examples == [f"{slowest.subject} out-{slowest.ce_id}: 40 s after input {slowest.ce_id}"]
    assert "over 40 traced outputs" in p50.summary


def test_a_sinks_latency_runs_from_the_input_to_the_end_of_its_handling() -> None:
    inputs = day_of_inputs()[:4]

    def handled(i: Seen, seconds: float, error: str = "") -> Handled:
        done = i.at + timedelta(seconds=seconds)
        return Handled(
            wall=0.0, seconds=0.01, subject=i.subject, ce_id=i.ce_id, trace=i.trace, error=error, done=done
        )

    stored = [
        handled(inputs[0], 2),
        handled(inputs[1], 4),
        handled(inputs[2], 6),
        handled(inputs[3], 500, "boom"),
    ]
    sink = record(inputs=inputs, outputs=[], handled=stored)
    p50 = one(checks_of([sink], Thresholds(latency_p50=3)), "latency-p50", "clean")
    assert (p50.value, p50.verdict) == (4.0, "fail")  # the failed handling is no reaction
    assert "3 handled messages" in p50.summary
    assert (
        p50.examples[0] == f"{inputs[2].subject} {inputs[2].ce_id} handled: 6 s after input {inputs[2].ce_id}"
    )


def test_latency_does_not_apply_when_no_output_can_be_traced_to_an_input() -> None:
    clean = record()
    untraced = msgspec.structs.replace(
        clean, outputs=[msgspec.structs.replace(o, trace="") for o in clean.outputs]
    )
    p50 = one(checks_of([untraced]), "latency-p50", "clean")
    assert (p50.verdict, p50.value) == ("n/a", None)
    assert "none of its 48 outputs carries the trace id of an input" in p50.summary
    assert (
        "published nothing"
        in one(checks_of([record(outputs=[], handled=[])]), "latency-p99", "clean").summary
    )


# -- detection ----------------------------------------------------------------------------------------

ALERT_TYPE = SensorAlert.__contract__.type


def alert(seconds: float, site: str, problem: str, about: float | None = None) -> Seen:
    """An ``acme.sensor-alert`` the adapter published at ``seconds``, about ``about`` (default: then)."""
    body = msgspec.json.encode(
        SensorAlert(site=site, problem=problem, about=at(seconds if about is None else about))
    )
    return seen(
        seconds,
        site,
        source=ADAPTED.source,
        subject=f"city.public.acme.sensor-alert.{site}",
        ce_type=ALERT_TYPE,
        body=body,
        ce_id=f"alert-{site}-{seconds:g}",
    )


STUCK = {  # fault index → (site, first and last hour of the stuck readings)
    0: ("blektjern", 2, 4),
    1: ("sota-fjordpark", 6, 8),
    2: ("landfalltjern", 10, 12),
    3: ("stordammen", 14, 15),
    4: ("vannverksdammen", 18, 19),
}


def stuck_truth() -> list[dict[str, Any]]:
    return [
        truth(
            "stuck", site, h * HOUR, fault=fault, ce_id=f"{site}-{h:02d}", stuck_to=f"{site}-{first - 1:02d}"
        )
        for fault, (site, first, last) in STUCK.items()
        for h in range(first, last + 1)
    ]


def test_false_alarms_count_five_true_and_four_false_is_a_precision_of_5_of_9() -> None:
    # The story: a scorer gave 5 of 5 while the product raised 4 false alarms it never counted.
    hits = [alert((first + 1) * HOUR, site, "stuck") for site, first, _ in STUCK.values()]
    all_clear = [alert((last + 2) * HOUR, site, "ok") for site, _, last in STUCK.values()]  # not detections
    clean_alarms = [alert(5 * HOUR, "blektjern", "stuck"), alert(9 * HOUR, "sota-fjordpark", "stuck")]
    healthy_site = alert(7 * HOUR, "bragernes-strand", "stuck")
    too_late = alert(21 * HOUR, "stordammen", "stuck")  # 15:00 + 1 h tolerance < 21:00
    clean = record(outputs=relay(day_of_inputs()) + clean_alarms)
    stuck = record(
        "stuck",
        outputs=relay(day_of_inputs()) + hits + all_clear + [healthy_site, too_late],
        truth=stuck_truth(),
    )
    checks, detection = score(ADAPTED, [clean, stuck], STRICT, REGISTRY)
    by_kind = {d.kind: d for d in detection}
    assert set(by_kind) == {"outage", "stuck"}  # the kinds the adapter declares, no other
    scored = by_kind["stuck"]
    assert (scored.detections, scored.true_positives, scored.false_alarms) == (9, 5, 4)
    assert (scored.episodes, scored.detected) == (5, 5)
    assert scored.precision == pytest.approx(5 / 9)
    assert scored.recall == 1.0
    assert scored.false_alarm_examples == [
        "clean: blektjern at 2018-08-28T03:00:00Z (stuck)",
        "clean: sota-fjordpark at 2018-08-28T07:00:00Z (stuck)",
        "stuck: bragernes-strand at 2018-08-28T05:00:00Z (stuck)",
        "stuck: stordammen at 2018-08-28T19:00:00Z (stuck)",
    ]
    precision = one(checks, "precision:stuck", "all")
    assert (precision.verdict, precision.value) == ("fail", pytest.approx(5 / 9))
    assert "4 false alarms" in precision.summary
    assert one(checks, "recall:stuck", "all").verdict == "pass"
    assert one(checks, "precision:outage", "all").verdict == "n/a"
    assert one(checks, "recall:outage", "all").verdict == "n/a"
    assert one(checks, "contract-fit", "stuck").verdict == "pass"  # the alerts fit their contract


def test_a_detection_must_be_about_the_entity_and_inside_the_episode_or_its_tolerance() -> None:
    lines = [truth("outage", "blektjern", h * HOUR, until=at(6 * HOUR).isoformat()) for h in (3, 4, 5)]
    early = alert(3 * HOUR - 1, "blektjern", "silent")  # before the first dropped reading: a guess
    in_time = alert(7 * HOUR, "blektjern", "silent", about=6 * HOUR + HOUR)  # until + tolerance, exactly
    late = alert(8 * HOUR, "blektjern", "silent", about=7 * HOUR + 1)
    wrong_site = alert(4 * HOUR, "sota-fjordpark", "silent")
    run = record("outage", outputs=[early, in_time, late, wrong_site], truth=lines)
    _, detection = score(ADAPTED, [record(), run], STRICT, REGISTRY)
    outage = next(d for d in detection if d.kind == "outage")
    assert (outage.detections, outage.true_positives, outage.episodes, outage.detected) == (4, 1, 1, 1)


def test_a_kind_raised_without_faults_is_all_false_alarms_and_one_never_raised_has_no_recall() -> None:
    alarms = record(outputs=[alert(5 * HOUR, "blektjern", "silent")])
    stuck = record("stuck", truth=stuck_truth())
    checks, detection = score(ADAPTED, [alarms, stuck], STRICT, REGISTRY)
    outage = one(checks, "precision:outage", "all")
    assert (outage.verdict, outage.value) == ("fail", 0.0)
    assert "no outage fault was injected" in outage.summary
    assert one(checks, "recall:outage", "all").verdict == "n/a"
    recall = one(checks, "recall:stuck", "all")
    assert (recall.verdict, recall.value) == ("fail", 0.0)
    assert (
        recall.examples[0] == "missed: stuck: blektjern 2018-08-28T00:00:00Z..2018-08-28T02:00:00Z (3 hits)"
    )
    assert one(checks, "precision:stuck", "all").verdict == "n/a"


def test_a_broker_restart_is_detected_on_any_entity_and_the_contract_may_be_named_by_type() -> None:
    spec = DetectionSpec(
        contract=ALERT_TYPE, field="problem", kinds={"broker-down": "restart"}, entity="site", time=""
    )
    adapted = msgspec.structs.replace(ADAPTED, detections=[spec])
    restart = BrokerFault(kind="restart", start=at(10 * HOUR), end=at(10 * HOUR + 60))
    noticed = alert(10 * HOUR + 30, "blektjern", "broker-down", about=0)  # time: '' → its ce-time
    run = record("broker-restart", outputs=[noticed], broker_faults=[restart])
    _, detection = score(adapted, [record(), run], STRICT, REGISTRY)
    assert [(d.kind, d.true_positives, d.detected, d.precision, d.recall) for d in detection] == [
        ("restart", 1, 1, 1.0, 1.0)
    ]


def test_an_adapter_that_declares_no_detection_gets_no_detection_checks() -> None:
    checks, detection = score(PLAIN, [record(), record("stuck", truth=stuck_truth())], STRICT, REGISTRY)
    assert detection == []
    assert not [c for c in checks if ":" in c.check]


# -- the ground truth as episodes ---------------------------------------------------------------------


def test_episodes_are_one_per_windowed_fault_and_entity_one_per_burst_and_one_per_hit() -> None:
    lines = [
        *(truth("outage", "blektjern", h * HOUR, until=at(6 * HOUR).isoformat()) for h in (3, 4, 5)),
        *(truth("stuck", "sota-fjordpark", h * HOUR, fault=1, stuck_to="x") for h in (1, 2)),
        truth("duplicate", "blektjern", 1 * HOUR, fault=2, copies=1, gap=5.0),
        truth("duplicate", "blektjern", 9 * HOUR, fault=2, copies=1, gap=5.0),
        truth("drop", "blektjern", 10 * HOUR, fault=3, burst=2, position=1),
        truth("drop", "blektjern", 11 * HOUR, fault=3, burst=2, position=2),
        truth("drop", "blektjern", 15 * HOUR, fault=3, burst=2, position=1),
        {"kind": "outage", "fault": 0, "subject": f"{BEACHES}.x", "time": "not a time"},  # skipped
    ]
    found = [(e.kind, e.entity, e.start, e.end, e.hits) for e in episodes(record("mixed", truth=lines))]
    assert found == [
        ("duplicate", "blektjern", at(HOUR), at(HOUR), 1),  # by start, then kind
        ("stuck", "sota-fjordpark", at(HOUR), at(2 * HOUR), 2),
        ("outage", "blektjern", at(3 * HOUR), at(6 * HOUR), 3),
        ("duplicate", "blektjern", at(9 * HOUR), at(9 * HOUR), 1),
        ("drop", "blektjern", at(10 * HOUR), at(11 * HOUR), 2),
        ("drop", "blektjern", at(15 * HOUR), at(15 * HOUR), 1),
    ]


# -- the report ---------------------------------------------------------------------------------------


def report_of(runs: list[RunRecord], adapted: Adapted = ADAPTED) -> Report:
    checks, detection = score(adapted, runs, STRICT, REGISTRY)
    return build_report(
        adapted=adapted,
        runs=runs,
        thresholds=STRICT,
        checks=checks,
        detection=detection,
        suite_name="default",
        suite_version=1,
        suite_description="the default suite",
        seed=7,
        speed=3600.0,
        recording="drammen.mcap",
        command="citybus certify beach-relay --seed 7",
        started=at(0),
        finished=at(60),
        plans={"outage": '[[faults]]\nkind = "outage"\n'},
        descriptions={"clean": "no faults", "outage": "a sensor silent"},
    )


def test_the_report_passes_only_when_no_check_fails() -> None:
    good = report_of([record(), outage_run(resume_hour=6)], PLAIN)
    assert good.verdict == "pass"
    assert [r.verdict for r in good.runs] == ["pass", "pass"]
    crash = Crash(at=at(90), wall=0.2, error="KeyError('x')")
    bad = report_of([record(), msgspec.structs.replace(outage_run(resume_hour=6), crashes=[crash])], PLAIN)
    assert bad.verdict == "fail"
    assert [r.verdict for r in bad.runs] == ["pass", "fail"]
    again = msgspec.json.decode(msgspec.json.encode(bad), type=Report)  # the document round-trips
    assert again == bad
    assert bad.citybus != "" and bad.suite == "default" and bad.thresholds == STRICT


def test_each_run_is_summarised_with_what_was_injected_and_its_latency() -> None:
    restart = BrokerFault(kind="restart", start=at(10 * HOUR), end=at(10 * HOUR + 60))
    outage = msgspec.structs.replace(outage_run(resume_hour=6), broker_faults=[restart], dead_letters=[])
    report = report_of([record(), outage])
    clean, faulted = report.runs
    assert (clean.description, clean.plan, clean.injected) == ("no faults", "", {})
    assert faulted.plan.startswith("[[faults]]")
    assert faulted.injected == {"outage": 3, "restart": 1}
    assert (faulted.inputs, faulted.outputs) == (45, 45)
    assert (clean.latency_p50, clean.latency_p99) == (30.0, 30.0)
    assert (clean.peak_rss_mib, clean.cpu_seconds) == (80.0, 2.5)
    assert report.command == "citybus certify beach-relay --seed 7"
    windows = {(w.kind, w.entity, w.start, w.end, w.hits) for w in faulted.timeline.faults}
    assert windows == {
        ("outage", "blektjern", at(3 * HOUR), at(6 * HOUR), 3),
        ("restart", "*", at(10 * HOUR), at(10 * HOUR + 60), 1),
    }


def test_the_timeline_shows_entities_hit_by_faults_first_then_the_busiest() -> None:
    many = [f"site-{n:02d}" for n in range(30)]
    # site-nn has nn readings, so site-29 is the busiest; site-00 has none but is hit by a fault
    inputs = [
        seen(h * 60.0, site, trace=f"{site}{h}".ljust(32, "0"))
        for n, site in enumerate(many)
        for h in range(n)
    ]
    crash = Crash(at=at(300), wall=0.3, error="boom")
    run = record("stuck", inputs=inputs, truth=[truth("stuck", "site-00", 600.0)], crashes=[crash])
    timeline = report_of([record(), run]).runs[1].timeline
    assert len(timeline.lanes) == MAX_LANES
    assert timeline.omitted_lanes == 30 - MAX_LANES
    assert [lane.entity for lane in timeline.lanes[:3]] == ["site-00", "site-29", "site-28"]
    assert timeline.lanes[-1].entity == "site-07"
    busiest = timeline.lanes[1]
    assert len(busiest.inputs) == len(busiest.outputs) == 29
    assert busiest.outputs[0] == at(30)
    assert (timeline.start, timeline.end, timeline.crashes) == (T0, at(24 * HOUR), [at(300)])
    assert [(w.entity, w.hits) for w in timeline.faults] == [("site-00", 1)]
