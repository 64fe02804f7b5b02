"""The recordings place over a real nats-server: export finds a person's messages in the
recordings citybus knows of (sealed ones by ref, opened with the key; clear ones by identifier),
erasure rewrites each file without them, retention drops what expired; a copy made before the
erasure and kept aside holds nothing readable of the person once the key is destroyed."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from bus import Bus
from bus.config import load_config
from bus.envelope import H_PERSON, build_headers
from bus.personal.places import Person, installed_places
from contracts import BeachObservation, ErasedPlace
from contracts.community import SIGNUP_RETENTION, VolunteerSignup
from sandbox.adapter import DRAMMEN_DAY, DRAMMEN_VOLUNTEERS
from sandbox.contents import read_info
from sandbox.personal import RecordingsPlace, configured_recordings, recordings_of
from sandbox.recorder import RecordReport
from sandbox.recording import RecordingWriter, open_recording, read_messages, read_summary
from tests.test_sandbox_personal import EMAIL, NAME, PHONE, recording, signup

NOW = datetime.now(UTC)


async def person(bus: Bus) -> Person:
    volunteer = f"v-{os.urandom(6).hex()}"
    found = await bus.vault.key(volunteer)
    assert found is not None
    ref, key = found
    return Person(id=volunteer, ref=ref, key=key, identifiers=(NAME, EMAIL, PHONE))


def clear_recording(path: Path, volunteer: str, other: str) -> None:
    """A recording written in the clear (before sealing, or by another tool): the person's sign-up,
    another person's, and a public observation."""
    with RecordingWriter(path, metadata={"title": "written in the clear"}, compression="none") as writer:
        for who, name in ((volunteer, NAME), (other, "Ola Demolund")):
            value = signup(who, name=name, email=None if who == other else EMAIL, phone=None)
            headers = build_headers(
                value.__contract__,
                event_id=os.urandom(16).hex(),
                source="/tests",
                time=NOW,
                provenance="manual",
            )
            writer.add(f"city.personal.community.volunteer-signup.{who}", msgspec.json.encode(value), headers)
        observation = BeachObservation(site="sota-fjordpark", observed_at=NOW, water_temperature=16.0)
        headers = build_headers(
            observation.__contract__, event_id="o1", source="/tests", time=NOW, provenance="sensor"
        )
        writer.add(
            "city.public.environment.beach-observation.sota-fjordpark",
            msgspec.json.encode(observation),
            headers,
        )


async def test_export_erase_and_a_copy_kept_aside(quiet_bus: Bus, tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    who, other = await person(quiet_bus), await person(quiet_bus)
    sealed_path, report = folder / "live.mcap", RecordReport()
    finished = await recording(quiet_bus, sealed_path, report, total=3)
    await quiet_bus.publish(signup(who.id), provenance="manual")
    await quiet_bus.publish(signup(who.id, status="changed"), provenance="manual")
    await quiet_bus.publish(signup(other.id, name="Ola Demolund", email=None), provenance="manual")
    assert await asyncio.wait_for(finished, 10) == 3
    clear_path = folder / "old" / "clear.mcap"
    clear_path.parent.mkdir()
    clear_recording(clear_path, who.id, other.id)
    # uncompressed, so the search of the raw bytes below could find her (a zstd chunk hides them)
    assert NAME.encode() in clear_path.read_bytes() and EMAIL.encode() in clear_path.read_bytes()
    handed_away = tmp_path / "pilot-copy.mcap"
    shutil.copy(sealed_path, handed_away)  # made before the erasure, kept aside: never rewritten
    place = RecordingsPlace(lambda: recordings_of([folder, DRAMMEN_VOLUNTEERS]))

    found = await place.export(who)
    assert len(found) == 3
    by_file = {f.location.split(" (")[0]: [] for f in found}
    for f in found:
        by_file[f.location.split(" (")[0]].append(f)
    assert sorted(len(v) for v in by_file.values()) == [1, 2]
    for f in found:
        assert f.place == "recording" and f.readable and f.type == "community.volunteer-signup.v1"
        assert msgspec.convert(f.data, type=VolunteerSignup).volunteer_id == who.id
    assert {f.data["status"] for f in found} == {"confirmed", "changed"}

    receipts = await place.erase(who)
    assert sorted((r.location, r.found, r.erased) for r in receipts) == sorted(
        [(str(sealed_path.resolve()), 2, 2), (str(clear_path.resolve()), 1, 1)]
    )
    assert all(r.how and not r.error for r in receipts)
    assert await place.export(who) == []
    # the others are still there, the files are whole and keep their metadata
    assert [m.headers[H_PERSON] for m in read_messages(sealed_path)] == [other.ref]
    assert len(list(read_messages(clear_path))) == 2
    assert read_info(clear_path).metadata["title"] == "written in the clear"
    assert read_info(clear_path).complete
    assert not list(folder.rglob("*.partial"))
    for path in (sealed_path, clear_path):
        raw = path.read_bytes()
        # the rewritten file's chunks are compressed: search what they hold, too
        held = b"".join(m.subject.encode() + m.data for m in read_messages(path))
        for identifier in (NAME, EMAIL, who.id, who.ref):
            assert identifier.encode() not in raw, (path.name, identifier)
            assert identifier.encode() not in held, (path.name, identifier)
    assert len(await place.export(other)) == 2  # the other person's sealed and clear messages

    # the copy handed away before the erasure: sealed, so nothing of the person in its bytes, and
    # once the key is destroyed (the key place) nobody can open it
    raw = handed_away.read_bytes()
    for identifier in (NAME, EMAIL, PHONE, who.id):
        assert identifier.encode() not in raw
    assert await quiet_bus.vault.destroy(who.ref)
    copy = RecordingsPlace(lambda: [handed_away])
    gone = Person(id=who.id, ref=who.ref, key=None, identifiers=who.identifiers)
    left = await copy.export(gone)
    assert len(left) == 2 and not any(f.readable for f in left) and all(f.data is None for f in left)
    assert await quiet_bus.vault.cipher_of(who.ref) is None
    # the shipped recordings are never the place's to rewrite
    assert DRAMMEN_VOLUNTEERS.resolve() not in recordings_of([DRAMMEN_VOLUNTEERS, DRAMMEN_DAY.parent])


async def test_expire_drops_what_outlived_its_retention(tmp_path: Path) -> None:
    path = tmp_path / "old.mcap"
    old, recent = NOW - SIGNUP_RETENTION - timedelta(days=1), NOW - timedelta(days=2)
    with RecordingWriter(path) as writer:
        for moment, volunteer in ((old, "v-00000000aaaa"), (recent, "v-00000000bbbb")):
            value = msgspec.structs.replace(signup(volunteer), signed_up_at=moment)
            headers = build_headers(
                value.__contract__, event_id=volunteer, source="/tests", time=moment, provenance="manual"
            )
            writer.add(
                f"city.personal.community.volunteer-signup.{volunteer}", msgspec.json.encode(value), headers
            )
        observation = BeachObservation(site="sota-fjordpark", observed_at=old, water_temperature=16.0)
        headers = build_headers(
            observation.__contract__, event_id="o", source="/t", time=old, provenance="sensor"
        )
        writer.add(
            "city.public.environment.beach-observation.sota-fjordpark",
            msgspec.json.encode(observation),
            headers,
        )
    place = RecordingsPlace(lambda: [path])
    receipts = await place.expire(NOW)
    assert [(r.location, r.found, r.erased) for r in receipts] == [(str(path), 1, 1)]
    left = [m.subject.rsplit(".", 1)[-1] for m in read_messages(path)]
    assert sorted(left) == ["sota-fjordpark", "v-00000000bbbb"]  # public data has no retention
    assert await place.expire(NOW) == []  # nothing more to expire: the file is left alone


def test_the_recordings_citybus_knows_of(tmp_path: Path) -> None:
    own, extra = tmp_path / "data" / "recordings", tmp_path / "elsewhere.mcap"
    own.mkdir(parents=True)
    (own / "a.mcap").write_bytes(b"")
    extra.write_bytes(b"")
    toml = tmp_path / "citybus.toml"
    toml.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    assert configured_recordings(load_config(toml, environ={})) == [(own / "a.mcap").resolve()]
    toml.write_text(
        f'[sandbox]\nrecordings = ["{own}"]\n'
        f'[adapters.harbour]\nadapter = "sandbox-replay"\nfiles = ["{extra}", "{DRAMMEN_DAY}"]\n'
    )
    assert configured_recordings(load_config(toml, environ={})) == [
        (own / "a.mcap").resolve(),
        extra.resolve(),
    ]  # the shipped day left out: every person in it is generated


async def test_the_sandbox_registers_the_recordings_place(quiet_bus: Bus, tmp_path: Path) -> None:
    toml = tmp_path / "citybus.toml"
    toml.write_text(f'[sandbox]\nrecordings = ["{tmp_path}"]\n')
    found, problems = installed_places(load_config(toml, environ={}), quiet_bus)
    assert problems == []
    assert [p.name for p in found if isinstance(p, RecordingsPlace)] == ["recording"]


@pytest.mark.parametrize("broken", [b"", b"not an mcap file"])
async def test_a_file_that_is_no_recording_holds_nobody(tmp_path: Path, broken: bytes) -> None:
    path = tmp_path / "broken.mcap"
    path.write_bytes(broken)
    place = RecordingsPlace(lambda: [path])
    who = Person(id="v-0123456789ab", ref="p-" + "0" * 24, key=None, identifiers=(NAME,))
    assert await place.export(who) == []
    # Nothing to erase, and the receipt still says where it looked.
    assert await place.erase(who) == [ErasedPlace(place="recording", location="1 recording")]
    assert path.read_bytes() == broken


async def test_a_recording_being_written_is_not_rewritten_under_its_recorder(tmp_path: Path) -> None:
    path = tmp_path / "live.mcap"
    who = Person(id="v-0123456789ab", ref="p-" + "0" * 24, key=None, identifiers=(NAME,))
    value = signup(who.id)
    headers = build_headers(value.__contract__, event_id="e", source="/tests", time=NOW, provenance="manual")
    place = RecordingsPlace(lambda: [path])
    with RecordingWriter(path) as writer:
        writer.add(f"city.personal.community.volunteer-signup.{who.id}", msgspec.json.encode(value), headers)
        writer.flush()  # readable up to here, while the recorder goes on
        (busy,) = await place.erase(who)
        assert busy.erased == 0 and "being recorded now" in busy.error
        writer.add(f"city.personal.community.volunteer-signup.{who.id}", msgspec.json.encode(value), headers)
    assert len(list(read_messages(path))) == 2  # nothing the recorder wrote was lost
    (done,) = await place.erase(who)
    assert (done.found, done.erased, done.error) == (2, 2, "")


async def test_a_recording_cut_short_by_a_crash_is_not_passed_over_by_an_erasure(
    quiet_bus: Bus, tmp_path: Path
) -> None:
    """A recording cut short (Ctrl-C, a crash: no summary, no footer) is readable up to its last
    chunk (README). An erasure must not pass it over as "not a recording" and call itself complete
    while the person's name is in it in the clear."""
    who = await person(quiet_bus)
    path = tmp_path / "cut.mcap"
    clear_recording(path, who.id, "v-0000000000aa")
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"Ola Demolund") + 200])  # the footer and summary gone
    assert NAME.encode() in path.read_bytes()
    place = RecordingsPlace(lambda: [path])
    found = await place.export(who)
    receipts = await place.erase(who)
    still = NAME.encode() in path.read_bytes()
    # Decision: the unfinished chunk is cut off (no reader could read it, so no export finds what it
    # holds; it may hold anyone's data in the clear), what came before is kept, and the receipt says so.
    assert found == [] and not still
    assert [r.location for r in receipts] == [f"{path} (unfinished: its cut-off last chunk dropped)"]
    with open_recording(path) as stream:
        assert read_summary(stream) is not None  # finished now: it has its footer
