"""Personal data in recordings, over a real nats-server: personal requests are never recorded,
personal events are recorded sealed as they travelled (their person's ref kept), and with
``pseudonymise`` nobody is left in the file — checked in its raw bytes too."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.testing import AdapterHarness
from bus import Bus, Event, RawMessage
from bus.envelope import H_PERSON, H_PROVENANCE, build_headers
from contracts import BeachObservation
from contracts.community import Consent, Purpose, SignupRequest, VolunteerActivity, VolunteerSignup
from sandbox.adapter import DRAMMEN_VOLUNTEERS, SandboxReplay
from sandbox.contents import read_info
from sandbox.pseudonyms import Pseudonymiser
from sandbox.recorder import PERSONAL_PSEUDONYMISED, PERSONAL_SEALED, RecordReport, record, vault_opener
from sandbox.recording import read_messages
from sandbox.replay import Replayer
from tests.conftest import wait_for

T0 = datetime(2018, 8, 28, 19, 42, tzinfo=UTC)
NAME, EMAIL, PHONE = "Karianne Testperson", "karianne.t@example.invalid", "+447700900123"


def signup(volunteer: str, **changes: object) -> VolunteerSignup:
    value = VolunteerSignup(
        volunteer_id=volunteer,
        name=NAME,
        email=EMAIL,
        phone=PHONE,
        task_id="beach-clean-up-sota-fjordpark-2018-09-01",
        signed_up_at=T0,
        consent=Consent(purposes=(Purpose.VOLUNTEERING,), given_at=T0, text="drammen-volunteer-2018-08"),
    )
    return msgspec.structs.replace(value, **changes)


def headers_of(
    instance: VolunteerSignup | VolunteerActivity | SignupRequest | BeachObservation,
) -> dict[str, str]:
    return build_headers(
        instance.__contract__, event_id=os.urandom(16).hex(), source="/tests", time=T0, provenance="manual"
    )


class Sealer:
    """Seals as the bus does (AES-256-GCM, the type as associated data), with a key per ref."""

    def __init__(self) -> None:
        self.keys: dict[str, AESGCM] = {}

    def seal(self, ref: str, body: bytes, ce_type: str) -> bytes:
        cipher = self.keys.setdefault(ref, AESGCM(AESGCM.generate_key(bit_length=256)))
        nonce = os.urandom(12)
        return nonce + cipher.encrypt(nonce, body, ce_type.encode())

    async def open(self, ref: str, body: bytes, ce_type: str) -> bytes | None:
        cipher = self.keys.get(ref)
        return None if cipher is None else cipher.decrypt(body[:12], body[12:], ce_type.encode())


async def publish_mixture(bus: Bus, entity: str, sealer: Sealer) -> tuple[str, str]:
    """A public observation, a personal request, an unsealed personal event and a sealed one;
    returns the volunteer id and its ref."""
    volunteer, ref = f"v-{os.urandom(6).hex()}", f"p-{os.urandom(12).hex()}"
    public = BeachObservation(site=entity, observed_at=T0, water_temperature=16.5)
    await bus.publish_raw(
        f"city.public.environment.beach-observation.{entity}", msgspec.json.encode(public), headers_of(public)
    )
    request = SignupRequest(
        action="signup", volunteer_id=volunteer, opportunity_id=entity, name=NAME, email=EMAIL
    )
    await bus.publish_raw(
        f"city.personal.rpc.community.signup-request.{entity}",
        msgspec.json.encode(request),
        headers_of(request),
    )
    plain = signup(volunteer)
    await bus.publish_raw(
        f"city.personal.community.volunteer-signup.{volunteer}", msgspec.json.encode(plain), headers_of(plain)
    )
    sealed_headers = headers_of(plain) | {H_PERSON: ref}
    body = sealer.seal(ref, msgspec.json.encode(plain), plain.__contract__.type)
    await bus.publish_raw(f"city.personal.community.volunteer-signup.{ref}", body, sealed_headers)
    await bus.flush()
    return volunteer, ref


async def recording(
    bus: Bus, path: Path, report: RecordReport, total: int, **options: object
) -> asyncio.Task[int]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        record(bus, ["city.>"], path, stop=stop, ready=ready, report=report, **options)  # type: ignore[arg-type]
    )
    await ready.wait()

    async def done() -> int:
        await wait_for(lambda: report.recorded + sum(report.left_out.values()) >= total)
        stop.set()
        return await task

    return asyncio.create_task(done())


async def test_personal_requests_are_never_recorded_and_personal_events_only_sealed(
    quiet_bus: Bus, entity: str, tmp_path: Path
) -> None:
    path, report, sealer = tmp_path / "sealed.mcap", RecordReport(), Sealer()
    finished = await recording(quiet_bus, path, report, total=4)
    volunteer, ref = await publish_mixture(quiet_bus, entity, sealer)
    assert await asyncio.wait_for(finished, 10) == 2
    assert report.left_out == {"personal-request": 1, "unsealed-personal": 1}
    assert report.sealed == 1
    messages = {m.subject: m for m in read_messages(path)}
    assert set(messages) == {
        f"city.public.environment.beach-observation.{entity}",
        f"city.personal.community.volunteer-signup.{ref}",
    }
    sealed = messages[f"city.personal.community.volunteer-signup.{ref}"]
    assert sealed.headers[H_PERSON] == ref  # an erasure finds the person's messages by it
    opened = await sealer.open(ref, sealed.data, sealed.type)
    assert opened is not None and msgspec.json.decode(opened, type=VolunteerSignup) == signup(volunteer)
    raw = path.read_bytes()
    for identifier in (NAME, EMAIL, PHONE, volunteer):
        assert identifier.encode() not in raw
    assert read_info(path).metadata["personal_data"] == PERSONAL_SEALED


async def test_a_pseudonymised_recording_holds_nobody_and_says_so(
    quiet_bus: Bus, entity: str, tmp_path: Path
) -> None:
    path, report, sealer = tmp_path / "pilot.mcap", RecordReport(), Sealer()
    finished = await recording(quiet_bus, path, report, total=4, pseudonymise=True, opener=sealer.open)
    volunteer, ref = await publish_mixture(quiet_bus, entity, sealer)
    assert await asyncio.wait_for(finished, 10) == 3
    assert report.pseudonymised == 2 and report.left_out == {"personal-request": 1}
    raw = path.read_bytes()
    for identifier in (NAME, EMAIL, PHONE, volunteer, ref, "karianne", "+447700900123"):
        assert identifier.encode() not in raw, identifier
    personal = [m for m in read_messages(path) if m.subject.startswith("city.personal.")]
    assert len(personal) == 2
    values = [msgspec.json.decode(m.data, type=VolunteerSignup) for m in personal]  # still valid
    assert values[0] == values[1]  # the same person, the same stand-in (sealed or not)
    stand_in = values[0]
    assert stand_in.volunteer_id != volunteer and stand_in.name != NAME
    assert stand_in.email is not None and stand_in.email.endswith("@example.invalid")
    assert stand_in.phone is not None and stand_in.phone.startswith("+447700900")
    assert stand_in.task_id == signup(volunteer).task_id  # what is not about who stays
    for message in personal:
        assert message.subject == f"city.personal.community.volunteer-signup.{stand_in.volunteer_id}"
        assert message.headers[H_PROVENANCE] == "pseudonymised"
        assert H_PERSON not in message.headers
    info = read_info(path)
    assert info.metadata["personal_data"] == PERSONAL_PSEUDONYMISED
    assert info.provenance["pseudonymised"] == 2


async def test_a_pseudonymising_recorder_without_the_key_leaves_the_sealed_message_out(
    quiet_bus: Bus, entity: str, tmp_path: Path
) -> None:
    path, report = tmp_path / "nokey.mcap", RecordReport()
    finished = await recording(quiet_bus, path, report, total=4, pseudonymise=True, opener=Sealer().open)
    await publish_mixture(quiet_bus, entity, Sealer())  # sealed under a key the recorder cannot get
    assert await asyncio.wait_for(finished, 10) == 2
    assert report.left_out == {"personal-request": 1, "unreadable": 1}


async def test_a_pattern_of_personal_requests_only_is_refused(bus: Bus, tmp_path: Path) -> None:
    for pattern in ("city.personal.rpc.>", "city.personal.rpc.community.signup-request.*"):
        with pytest.raises(ValueError, match="personal requests and replies are never recorded"):
            await record(bus, [pattern], tmp_path / "x.mcap", stop=asyncio.Event())


async def test_a_sealed_recording_replays_sealed_with_its_ref(
    quiet_bus: Bus, entity: str, tmp_path: Path
) -> None:
    path, report, sealer = tmp_path / "sealed.mcap", RecordReport(), Sealer()
    finished = await recording(quiet_bus, path, report, total=4)
    volunteer, ref = await publish_mixture(quiet_bus, entity, sealer)
    await asyncio.wait_for(finished, 10)
    received: list[RawMessage] = []

    async def collect(raw: RawMessage) -> None:
        received.append(raw)

    await quiet_bus.subscribe_raw("city.personal.community.volunteer-signup.*", collect)
    await quiet_bus.flush()
    replayer = Replayer([path], quiet_bus.publish_raw, speed=0, shift_to_now=True)
    await replayer.run()
    await wait_for(lambda: len(received) == 1)
    (message,) = received
    assert message.subject.endswith(ref) and (message.headers or {})[H_PERSON] == ref
    opened = await sealer.open(ref, message.data, "community.volunteer-signup.v1")
    assert opened is not None and msgspec.json.decode(opened, type=VolunteerSignup) == signup(volunteer)


def test_pseudonyms_are_keyed_stable_within_a_recording_and_reach_free_text() -> None:
    first, second = Pseudonymiser(b"a" * 32), Pseudonymiser(b"b" * 32)
    assert first.pseudonym("v-0123456789ab") == first.pseudonym("v-0123456789ab")
    assert first.pseudonym("v-0123456789ab") != second.pseudonym("v-0123456789ab")  # another recording
    assert first.pseudonym("v-0123456789ab") != first.pseudonym("v-0123456789ac")
    activity = VolunteerActivity(
        volunteer_id="v-0123456789ab",
        opportunity_id="beach-clean-up-sota-fjordpark-2018-09-01",
        organisation="demo-strandryddere",
        starts=T0,
        hours=3.0,
    )
    subject, body, headers = first.message(
        VolunteerActivity,
        "city.personal.community.volunteer-activity.v-0123456789ab",
        msgspec.json.encode(activity),
        headers_of(activity),
    )
    assert b"0123456789ab" not in body and "0123456789ab" not in subject
    assert headers[H_PROVENANCE] == "pseudonymised"


async def test_the_days_volunteers_replay_as_the_platform_publishes_them(quiet_bus: Bus) -> None:
    expected = [m for m in read_messages(DRAMMEN_VOLUNTEERS) if m.type == "community.volunteer-signup.v1"]
    received: list[VolunteerSignup] = []

    async def collect(event: Event[VolunteerSignup]) -> None:
        received.append(event.data)

    wire: list[RawMessage] = []

    async def on_wire(raw: RawMessage) -> None:
        wire.append(raw)

    await quiet_bus.subscribe(VolunteerSignup, collect)
    await quiet_bus.subscribe_raw("city.personal.community.volunteer-signup.*", on_wire)
    await quiet_bus.flush()
    config = {"files": [str(DRAMMEN_VOLUNTEERS)], "speed": 0, "loop": False, "shift_to_now": False}
    async with AdapterHarness(SandboxReplay, config, instance="volunteers", bus=quiet_bus):
        await wait_for(lambda: len(received) == len(expected))
    assert sorted(s.volunteer_id for s in received) == sorted(
        msgspec.json.decode(m.data, type=VolunteerSignup).volunteer_id for m in expected
    )
    # on the wire each is sealed with its person's key, on a subject that names the ref
    await wait_for(lambda: len(wire) == len(expected))
    for raw, value in zip(wire, received, strict=True):
        headers = raw.headers or {}
        assert headers[H_PERSON] == await quiet_bus.vault.ref(value.volunteer_id)
        assert raw.subject.endswith(headers[H_PERSON])
        assert value.name.encode() not in raw.data and value.volunteer_id.encode() not in raw.data


async def test_what_the_bus_seals_is_recorded_sealed_or_pseudonymised_through_its_vault(
    quiet_bus: Bus, tmp_path: Path
) -> None:
    volunteer = f"v-{os.urandom(6).hex()}"
    ref = await quiet_bus.vault.ref(volunteer)
    sealed_path, pilot_path = tmp_path / "sealed.mcap", tmp_path / "pilot.mcap"
    sealed_report, pilot_report = RecordReport(), RecordReport()
    sealed = await recording(quiet_bus, sealed_path, sealed_report, total=2)
    pilot = await recording(quiet_bus, pilot_path, pilot_report, total=2, pseudonymise=True)
    await quiet_bus.publish(signup(volunteer), provenance="manual")
    await quiet_bus.publish(signup(volunteer, status="changed", phone=None), provenance="manual")
    assert await asyncio.wait_for(sealed, 10) == 2
    assert await asyncio.wait_for(pilot, 10) == 2
    recorded = list(read_messages(sealed_path))
    assert {m.subject for m in recorded} == {f"city.personal.community.volunteer-signup.{ref}"}
    assert all(m.headers[H_PERSON] == ref for m in recorded)
    assert pilot_report.pseudonymised == 2 and not pilot_report.left_out
    for path in (sealed_path, pilot_path):
        raw = path.read_bytes()
        for identifier in (NAME, EMAIL, PHONE, volunteer):
            assert identifier.encode() not in raw, (path.name, identifier)
    assert ref.encode() not in pilot_path.read_bytes()  # nothing leads from the pilot's file to the vault
    # the sealed file opens with the vault's key, until the key is destroyed
    assert await quiet_bus.vault.open(ref, recorded[0].data, recorded[0].type)
    await quiet_bus.vault.destroy(ref)
    assert await vault_opener(quiet_bus)(ref, recorded[0].data, recorded[0].type) is None
