"""The rights engine with the upper packages' places, over a real nats-server and a real PostgreSQL:
an export finds what a test planted in the archive and in recordings, and an erasure leaves nothing
about the person readable there — in a recording made before the request and kept aside either —
checked by a search of the raw bytes for the person's name, e-mail, phone and id."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from pathlib import Path

from bus import Bus
from bus.config import load_config
from bus.personal import rights
from sandbox.recorder import RecordReport
from tests.test_postgres_archive import archive, pg_dsn, schema, wait_until
from tests.test_postgres_personal import rows
from tests.test_sandbox_personal import EMAIL, NAME, PHONE, recording, signup
from tests.test_sandbox_personal_place import clear_recording

__all__ = ["pg_dsn", "schema"]  # fixtures, imported for this module's tests


async def test_an_erasure_reaches_the_archive_and_every_recording(
    quiet_bus: Bus, pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    folder = tmp_path / "recordings"
    (folder / "old").mkdir(parents=True)
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        f'[sandbox]\nrecordings = ["{folder}"]\n'
        f'[adapters.archive]\nadapter = "postgres-archive"\ndsn = "{pg_dsn}"\nschema = "{schema}"\n'
        'contracts = ["community.volunteer-signup"]\n'
    )
    config = load_config(toml, environ={})
    volunteer, other = f"v-{os.urandom(6).hex()}", f"v-{os.urandom(6).hex()}"
    live, report = folder / "live.mcap", RecordReport()
    recorded = await recording(quiet_bus, live, report, total=3)
    async with archive(quiet_bus, pg_dsn, schema, contracts=("community.volunteer-signup",)):
        await quiet_bus.publish(signup(volunteer), provenance="manual")
        await quiet_bus.publish(signup(volunteer, status="changed"), provenance="manual")
        await quiet_bus.publish(
            signup(other, name="Ola Demolund", email=None, phone=None), provenance="manual"
        )

        async def archived() -> bool:
            return len(await rows(pg_dsn, schema)) == 3

        await wait_until(archived)
    assert await asyncio.wait_for(recorded, 10) == 3
    clear_recording(folder / "old" / "clear.mcap", volunteer, other)  # names them in the clear
    kept_aside = tmp_path / "handed-to-a-pilot.mcap"
    shutil.copy(live, kept_aside)
    places, problems = rights.places(config, quiet_bus)
    assert problems == []

    exported = await rights.export(quiet_bus, places, volunteer)
    where = Counter(m.place for m in exported.messages)
    assert where["recording"] == 3 and where["archive"] == 2  # two sealed in each, one in the clear
    assert exported.complete

    receipt = await rights.erase(quiet_bus, places, volunteer)  # no identifier given: learned
    lines = {(line.place, line.location): line for line in receipt.places}
    assert lines[("recording", str(live.resolve()))].erased == 2
    assert lines[("recording", str((folder / "old" / "clear.mcap").resolve()))].erased == 1
    assert lines[("archive", f"archive: {schema}.community_volunteer_signup_v1")].erased == 2
    assert receipt.complete, receipt

    after = await rights.export(quiet_bus, places, volunteer)
    assert [m for m in after.messages if m.place in ("recording", "archive")] == []
    for path in (live, folder / "old" / "clear.mcap", kept_aside):
        raw = path.read_bytes()
        for identifier in (NAME, EMAIL, PHONE, volunteer):
            assert identifier.encode() not in raw, (path.name, identifier)
    for text in await rows(pg_dsn, schema):
        for identifier in (NAME, EMAIL, PHONE, volunteer):
            assert identifier not in text
    # the copy kept aside still holds the two sealed messages, which nobody can open any more
    ref = await quiet_bus.vault.ref(volunteer)
    assert await quiet_bus.vault.cipher_of(ref) is None
    assert ref.encode() in kept_aside.read_bytes()
    kept = Counter(m.place for m in (await rights.export(quiet_bus, places, other)).messages)
    assert (kept["recording"], kept["archive"]) == (2, 1)  # the other person's stay
