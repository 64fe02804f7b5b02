"""The recording format: MCAP files that citybus writes and standard MCAP readers open."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import msgspec
import pytest
from mcap.reader import make_reader

import sandbox.contents
from bus.envelope import build_headers
from contracts import BeachObservation, WeatherObserved
from sandbox.contents import SubjectSummary, read_contents, read_info, read_subjects
from sandbox.recording import (
    OCTET_STREAM,
    RecordingError,
    RecordingWriter,
    nanoseconds,
    read_messages,
)

T0 = datetime(2018, 8, 29, 8, 0, tzinfo=UTC)
BEACH = "city.public.environment.beach-observation.bragernes-strand"


def _beach(i: int) -> bytes:
    return msgspec.json.encode(
        BeachObservation(
            site="bragernes-strand", observed_at=T0 + timedelta(hours=i), water_temperature=15 + i / 10
        )
    )


def _headers(i: int, provenance: str = "synthetic", source: str = "/sandbox/beach") -> dict[str, str]:
    return build_headers(
        BeachObservation.__contract__,
        event_id=f"e{i}",
        source=source,
        time=T0 + timedelta(hours=i),
        provenance=provenance,
    )


def test_a_recording_round_trips_subjects_bodies_times_and_attributes(tmp_path: Path) -> None:
    path = tmp_path / "day.mcap"
    with RecordingWriter(path, metadata={"attribution": "Entur (NLOD 2.0)"}) as writer:
        for i in range(24):
            writer.add(BEACH, _beach(i), _headers(i))
        writer.add(BEACH, _beach(3), _headers(3, provenance="manual", source="/adapters/yr"))
    messages = list(read_messages(path))
    assert len(messages) == 25
    assert [m.data for m in messages[:4]] == [_beach(0), _beach(1), _beach(2), _beach(3)]
    assert messages[4].headers["ce-provenance"] == "manual"  # same time as e3, so it comes next
    assert messages[0].time == T0 and messages[-1].time == T0 + timedelta(hours=23)
    assert dict(messages[0].headers) == {
        "ce-type": "environment.beach-observation.v1",
        "ce-source": "/sandbox/beach",
        "ce-provenance": "synthetic",
        "content-type": "application/json",
    }
    info = read_info(path)
    assert (info.messages, info.subjects, info.channels, info.complete) == (25, 1, 2, True)
    assert info.duration == 23 * 3600
    assert info.per_type == {"environment.beach-observation.v1": 25}
    assert info.provenance == {"synthetic": 24, "manual": 1}
    assert info.metadata == {"attribution": "Entur (NLOD 2.0)"}


def test_standard_mcap_readers_see_json_channels_with_the_contract_schema(tmp_path: Path) -> None:
    path = tmp_path / "day.mcap"
    with RecordingWriter(path, compression="lz4") as writer:
        writer.add(BEACH, _beach(0), _headers(0))
    with path.open("rb") as stream:
        reader = make_reader(stream, validate_crcs=True)
        header = reader.get_header()
        [(schema, channel, message)] = list(reader.iter_messages())
    assert header.profile == "citybus"
    assert channel.topic == BEACH and channel.message_encoding == "json"
    assert schema is not None and schema.encoding == "jsonschema"
    assert schema.name == "environment.beach-observation.v1"
    assert json.loads(schema.data)["$id"] == "urn:citybus:contract:environment.beach-observation:v1"
    assert json.loads(message.data)["water_temperature"] == 15.0


def test_msgpack_bodies_are_recorded_as_json_and_raw_bodies_as_they_came(tmp_path: Path) -> None:
    path = tmp_path / "mixed.mcap"
    observed = WeatherObserved(station="marienlyst", observed_at=T0, temperature=17.9)
    headers = build_headers(
        WeatherObserved.__contract__,
        event_id="w",
        source="/s",
        time=T0,
        provenance="recorded",
        content_type="application/msgpack",
    )
    with RecordingWriter(path) as writer:
        writer.add(
            "city.public.environment.weather-observed.marienlyst", msgspec.msgpack.encode(observed), headers
        )
        writer.add("v3.app.devices.unit-1.up", b"\xfa\x01\x02", {"ce-time": T0.isoformat()})
        writer.add("v3.app.devices.unit-1.up", b'{"uplink_message": {}}', {"ce-time": T0.isoformat()})
    weather, binary, text = read_messages(path)
    assert json.loads(weather.data)["temperature"] == 17.9
    assert weather.headers["content-type"] == "application/json"
    assert (binary.data, binary.headers["content-type"], binary.type) == (b"\xfa\x01\x02", OCTET_STREAM, "")
    assert text.headers["content-type"] == "application/json"
    assert read_info(path).per_type == {"environment.weather-observed.v1": 1, "raw": 2}


def test_an_interrupted_recording_is_readable_up_to_its_last_flushed_chunk(tmp_path: Path) -> None:
    path = tmp_path / "crashed.mcap"
    writer = RecordingWriter(path, flush_interval=3600)
    sizes = []
    for chunk in range(3):
        for i in range(5 * chunk, 5 * chunk + 5):
            writer.add(BEACH, _beach(i), _headers(i))
        writer.flush()
        sizes.append(path.stat().st_size)
    for i in range(15, 20):
        writer.add(BEACH, _beach(i), _headers(i))
    # the process dies here: the chunk in progress never reaches the file, and the file has no index
    assert [m.data for m in read_messages(path)] == [_beach(i) for i in range(15)]
    info = read_info(path)
    assert (info.complete, info.messages) == (False, 15)
    # a crash in the middle of writing the third chunk: the first two are still there
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: (sizes[1] + sizes[2]) // 2])
    assert [m.data for m in read_messages(cut)] == [_beach(i) for i in range(10)]
    writer.close()


def _two_sources_and_a_raw_subject(writer: RecordingWriter) -> None:
    """A beach read by its sensor every hour and by hand at 10:00, and a raw uplink at 09:00."""
    for i in range(6):
        writer.add(BEACH, _beach(i), _headers(i, provenance="sensor"))
    writer.add(BEACH, _beach(2), _headers(2, provenance="manual", source="/adapters/yr"))
    writer.add("raw.uplink.dev-1", b"\x01\x02", {}, log_time=nanoseconds(T0 + timedelta(hours=1)))


def test_what_a_recording_holds_is_read_once_and_the_same_whether_it_is_finished_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished, unfinished = tmp_path / "day.mcap", tmp_path / "crashed.mcap"
    with RecordingWriter(finished) as writer:
        _two_sources_and_a_raw_subject(writer)
    writer = RecordingWriter(unfinished, flush_interval=3600)
    _two_sources_and_a_raw_subject(writer)
    writer.flush()  # the process dies here: the file has its messages but no summary
    expected = [
        SubjectSummary(BEACH, "environment.beach-observation.v1", 7, T0, T0 + timedelta(hours=5)),
        SubjectSummary("raw.uplink.dev-1", "", 1, T0 + timedelta(hours=1), T0 + timedelta(hours=1)),
    ]
    reads: list[object] = []
    counting = sandbox.contents.read_messages

    def read_messages_counted(path: Path) -> object:
        reads.append(path)
        return counting(path)

    monkeypatch.setattr(sandbox.contents, "read_messages", read_messages_counted)
    for path, complete in [(finished, True), (unfinished, False)]:
        reads.clear()
        info, subjects = read_contents(path)
        assert len(reads) == 1, "recording info reads the messages once"
        assert subjects == read_subjects(path) == expected
        assert info == read_info(path)
        assert (info.complete, info.messages, info.subjects, info.channels) == (complete, 8, 2, 3)
        assert (info.start, info.end) == (T0, T0 + timedelta(hours=5))
        assert info.per_type == {"environment.beach-observation.v1": 7, "raw": 1}
        assert info.provenance == {"sensor": 6, "manual": 1, "unknown": 1}
    writer.close()


def test_time_windows_select_by_original_time(tmp_path: Path) -> None:
    path = tmp_path / "day.mcap"
    with RecordingWriter(path) as writer:
        for i in range(24):
            writer.add(BEACH, _beach(i), _headers(i))
    start = int((T0 + timedelta(hours=6)).timestamp() * 1e9)
    end = int((T0 + timedelta(hours=9)).timestamp() * 1e9)
    assert [m.time.hour for m in read_messages(path, start=start, end=end)] == [14, 15, 16]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no recording at"), (b"PK\x03\x04 not mcap", "not an MCAP recording")],
)
def test_a_missing_or_foreign_file_says_so(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.mcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        list(read_messages(path))
    with pytest.raises(RecordingError, match=message):
        read_info(path)


def _library_order(
    path: Path, start: int | None = None, end: int | None = None
) -> list[tuple[str, bytes, int]]:
    with path.open("rb") as stream:
        return [
            (channel.topic, message.data, message.log_time)
            for _schema, channel, message in make_reader(stream).iter_messages(
                starting_at=start, ending_before=end
            )
        ]


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_chunks_that_overlap_in_time_are_read_in_the_order_standard_mcap_readers_give(
    tmp_path: Path, compression: Literal["zstd", "lz4", "none"]
) -> None:
    # Messages written out of time order in small chunks: the chunks overlap in time, and many
    # messages share a time, so the order within a time is the file's order.
    path = tmp_path / "shuffled.mcap"
    base = nanoseconds(T0)
    times = [base + ((i * 7919) % 50) * 1_000_000_000 + (i // 40) * 3_000_000_000 for i in range(600)]
    with RecordingWriter(path, compression=compression, chunk_size=1500) as writer:
        for i, log_time in enumerate(times):
            writer.add(f"{BEACH}-{i % 5}", _beach(i % 24), _headers(i % 24), log_time=log_time)
    expected = _library_order(path)
    assert len(expected) == 600 and [m[2] for m in expected] == sorted(times)
    assert [(m.subject, m.data, m.log_time) for m in read_messages(path)] == expected
    first, middle = sorted(times)[0], sorted(times)[300]
    for start, end in [(middle, None), (None, middle), (first + 1, middle + 1), (middle, middle)]:
        window = [(m.subject, m.data, m.log_time) for m in read_messages(path, start=start, end=end)]
        assert window == _library_order(path, start, end)


def test_a_damaged_chunk_in_a_complete_recording_says_so(tmp_path: Path) -> None:
    path = tmp_path / "day.mcap"
    with RecordingWriter(path, compression="none") as writer:
        for i in range(24):
            writer.add(BEACH, _beach(i), _headers(i))
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None
    [chunk] = summary.chunk_indexes
    content = bytearray(path.read_bytes())
    # the length of the chunk's first record (after the chunk's own 49 bytes and the opcode)
    first_length = chunk.chunk_start_offset + 49 + 1
    content[first_length : first_length + 8] = (10**9).to_bytes(8, "little")
    path.write_bytes(bytes(content))
    with pytest.raises(RecordingError, match="day.mcap is damaged: the last record of the chunk"):
        list(read_messages(path))
