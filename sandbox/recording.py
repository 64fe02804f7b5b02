"""The recording format: MCAP, one channel per subject, JSON bodies with the contract's JSON Schema.

MCAP is the standard indexed, chunked container for recorded sensor data, so a citybus recording
opens in the ``mcap`` CLI, Foxglove and every MCAP library. How citybus uses it:

* **Channels.** One channel per subject (the MCAP *topic* is the NATS subject). A channel's
  metadata holds what replay needs and does not change between messages on it: ``ce-type``,
  ``ce-source``, ``ce-provenance`` and ``content-type``. A subject whose messages come from two
  sources (a beach's sensor readings and its manual readings) gets one channel per source on the
  same topic, so provenance is never mixed up.
* **Schemas.** A contract message's channel refers to the contract's JSON Schema (encoding
  ``jsonschema``, named by its CloudEvents type, e.g. ``environment.beach-observation.v1``); its
  messages are JSON (``message_encoding = "json"``). A msgpack body is re-encoded as JSON when it is
  recorded. A raw subject (a device uplink) has no schema; its bodies are kept as they arrived, with
  ``message_encoding = "json"`` when they are JSON and ``application/octet-stream`` otherwise.
* **Sealed personal messages** keep their body as it travelled (ciphertext: ``message_encoding``
  ``application/octet-stream``, no schema) and their ``citybus-person`` header, the person's vault
  ref, in the channel's metadata: one channel per person and subject, so an erasure finds a
  person's messages from the summary and a replay publishes them sealed as they were.
* **Times.** ``log_time`` is the message's original ``ce-time`` (when the city measured it, the
  replay clock), ``publish_time`` when the recorder received it. Both are nanoseconds since the Unix
  epoch, as MCAP wants.
* **Crash safety.** Chunks are compressed (zstd by default, lz4 optional) and flushed at least every
  ``flush_interval`` seconds; a file whose writer never finished (Ctrl-C, a crash, a full disk) is
  still read up to its last complete chunk (:func:`read_messages` stops there cleanly).

Attribution of the data a recording holds travels in an MCAP metadata record named ``citybus``.

This module writes and reads messages; :mod:`sandbox.contents` says what a recording holds
(its channels, subjects, counts and time span) without replaying it.
"""

from __future__ import annotations

import bisect
import json
import struct
import sys
import time as _time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from struct import error as struct_error
from typing import IO, Any, Final, Literal

import lz4.frame  # type: ignore[import-untyped]
import msgspec
import zstandard
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Channel
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

if sys.platform != "win32":
    import fcntl

from bus.codec import decode_bytes
from bus.envelope import H_CONTENT_TYPE, H_PERSON, H_PROVENANCE, H_SOURCE, H_TIME, H_TYPE, JSON, MSGPACK
from bus.errors import CityBusError, UndecodableError
from contracts import Registry, default_registry, json_schema

__all__ = [
    "OCTET_STREAM",
    "RecordedMessage",
    "RecordingError",
    "RecordingWriter",
    "from_nanoseconds",
    "lock_recording",
    "nanoseconds",
    "open_recording",
    "read_messages",
    "read_summary",
]

PROFILE: Final = "citybus"
OCTET_STREAM: Final = "application/octet-stream"
_CHANNEL_KEYS: Final = (H_TYPE, H_SOURCE, H_PROVENANCE, H_CONTENT_TYPE, H_PERSON)


class RecordingError(CityBusError, ValueError):
    """A recording that cannot be read or written; the message names the file and the problem."""


def nanoseconds(moment: datetime) -> int:
    """A timezone-aware datetime as nanoseconds since the Unix epoch (MCAP's timestamps)."""
    if moment.tzinfo is None:
        raise ValueError("a recording needs timezone-aware times")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_nanoseconds(ns: int) -> datetime:
    """Nanoseconds since the Unix epoch as a UTC datetime, to the microsecond (the inverse of
    :func:`nanoseconds`, less the last three digits)."""
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(microsecond=(ns % 1_000_000_000) // 1000)


class RecordedMessage(msgspec.Struct, frozen=True, gc=False):
    """One message of a recording, as replay needs it.

    A msgspec Struct rather than a dataclass: a replay makes one per message, and a Struct is
    made ten times faster (and, holding no cycles, stays out of the garbage collector's way).
    """

    subject: str
    data: bytes
    log_time: int
    """The original ``ce-time`` in nanoseconds since the epoch: when it happens on the replay clock."""
    publish_time: int
    """When the recorder received it, in nanoseconds since the epoch."""
    headers: Mapping[str, str]
    """The channel's attributes: ``ce-type``, ``ce-source``, ``ce-provenance``, ``content-type``."""
    sequence: int = 0
    """The message's number within its channel (from 1)."""
    channel: int = 0
    """Its MCAP channel id, the same for every message of the channel in one file (replay keeps
    what a channel's messages share by it)."""

    @property
    def type(self) -> str:
        """The CloudEvents type (``environment.beach-observation.v1``); empty for a raw message."""
        return self.headers.get(H_TYPE, "")

    @property
    def time(self) -> datetime:
        """The original time as a datetime (UTC)."""
        return from_nanoseconds(self.log_time)


class RecordingWriter:
    """Writes a recording; use as a context manager (or call :meth:`close`) so the file gets its index.

    ::

        with RecordingWriter("drammen.mcap") as writer:
            writer.add(subject, body, headers)        # headers as they arrived, ce-time included
    """

    def __init__(
        self,
        output: str | Path | IO[bytes],
        *,
        compression: Literal["zstd", "lz4", "none"] = "zstd",
        chunk_size: int = 1024 * 1024,
        flush_interval: float = 1.0,
        registry: Registry | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(output, str | Path):
            self._owns = True
            self._file: IO[bytes] = open(output, "wb")  # noqa: SIM115 - closed by close()
            self.path = str(output)
            lock_recording(self._file)  # an erasure does not rewrite a file while it is written
        else:
            self._owns = False
            self._file = output
            self.path = getattr(output, "name", "<stream>")
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=kind[compression])
        self._writer.start(profile=PROFILE, library="citybus")
        if metadata:
            self._writer.add_metadata("citybus", dict(metadata))
        self._registry = registry or default_registry()
        self._schemas: dict[str, int] = {}
        self._channels: dict[tuple[str, ...], int] = {}
        self._sequences: Counter[int] = Counter()
        self._flush_interval = flush_interval
        self._last_flush = _time.monotonic()
        self.count = 0
        self._closed = False

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _schema(self, ce_type: str) -> int:
        if not ce_type:
            return 0
        found = self._schemas.get(ce_type)
        if found is None:
            contract = self._registry.by_type(ce_type)
            if contract is None:
                found = 0  # a type this citybus does not know: kept without a schema
            else:
                schema = json.dumps(json_schema(contract), sort_keys=True).encode()
                found = self._writer.register_schema(name=ce_type, encoding="jsonschema", data=schema)
            self._schemas[ce_type] = found
        return found

    def _channel(
        self, subject: str, attributes: dict[str, str], encoding: str, *, schema: bool = True
    ) -> int:
        key = (subject, encoding, *(attributes.get(k, "") for k in _CHANNEL_KEYS))
        found = self._channels.get(key)
        if found is None:
            found = self._writer.register_channel(
                topic=subject,
                message_encoding=encoding,
                schema_id=self._schema(attributes.get(H_TYPE, "")) if schema else 0,
                metadata={k: v for k, v in attributes.items() if v},
            )
            self._channels[key] = found
        return found

    def add(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        log_time: int | None = None,
        publish_time: int | None = None,
    ) -> None:
        """Record one message. ``log_time`` defaults to its ``ce-time``, else to now."""
        headers = headers or {}
        now = _time.time_ns()
        if log_time is None:
            raw_time = headers.get(H_TIME)
            log_time = nanoseconds(datetime.fromisoformat(raw_time)) if raw_time else now
        attributes = {k: headers.get(k, "") for k in _CHANNEL_KEYS}
        content_type = attributes[H_CONTENT_TYPE]
        if attributes[H_PERSON]:  # sealed: ciphertext, whatever its content-type says of the inside
            channel = self._channel(subject, attributes, OCTET_STREAM, schema=False)
        elif content_type == MSGPACK and (decoded := _msgpack(data)) is not None:
            data = msgspec.json.encode(decoded)  # MCAP tools read JSON; the type system is the same
            attributes[H_CONTENT_TYPE] = JSON
        elif not attributes[H_TYPE]:
            attributes[H_CONTENT_TYPE] = content_type or (JSON if _is_json(data) else OCTET_STREAM)
        if not attributes[H_PERSON]:
            encoding = "json" if attributes[H_CONTENT_TYPE] in ("", JSON) else OCTET_STREAM
            channel = self._channel(subject, attributes, encoding)
        self._sequences[channel] += 1
        self._writer.add_message(
            channel_id=channel,
            log_time=log_time,
            publish_time=publish_time if publish_time is not None else now,
            data=data,
            sequence=self._sequences[channel],
        )
        self.count += 1
        if _time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush()

    def flush(self) -> None:
        """Close the chunk in progress and write it out, so a crash after this loses nothing before it."""
        self._writer.flush()  # type: ignore[no-untyped-call]
        self._last_flush = _time.monotonic()

    def close(self) -> None:
        """Write the index and summary and close the file."""
        if self._closed:
            return
        self._closed = True
        self._writer.finish()  # type: ignore[no-untyped-call]
        if self._owns:
            self._file.close()


_ANY_JSON: Final = msgspec.json.Decoder()
_ANY_MSGPACK: Final = msgspec.msgpack.Decoder()


def _is_json(data: bytes) -> bool:
    try:
        decode_bytes(_ANY_JSON, data)
    except UndecodableError:  # a recorder records anything it is sent, 100 000 nested "[" too
        return False
    return True


def _msgpack(data: bytes) -> Any:
    """The msgpack body decoded, or ``None`` for one that is not msgpack (recorded as the bytes it is)."""
    try:
        return decode_bytes(_ANY_MSGPACK, data, what="msgpack")
    except UndecodableError:
        return None


_MAGIC: Final = b"\x89MCAP0\r\n"


def lock_recording(stream: IO[bytes]) -> bool:
    """Take the file's exclusive advisory lock without waiting: held by a writer while it writes,
    and by an erasure while it rewrites. ``False`` when another holds it (always ``True`` on
    Windows, which has no ``flock``)."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def open_recording(path: str | Path) -> IO[bytes]:
    """The file opened for reading, checked to start like an MCAP file; a missing, unreadable or
    foreign file is a :class:`RecordingError` that names it. The caller closes it."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise RecordingError(f"no recording at {path}: check the path") from None
    except IsADirectoryError:
        raise RecordingError(f"{path} is a directory, not a recording") from None
    except OSError as exc:
        raise RecordingError(f"cannot open {path}: {exc.strerror or exc}") from None
    if stream.read(len(_MAGIC)) != _MAGIC:
        stream.close()
        raise RecordingError(f"{path} is not an MCAP recording (it does not start with the MCAP magic)")
    stream.seek(0)
    return stream


def read_summary(stream: IO[bytes]) -> Any:
    """The file's MCAP summary (channels, statistics, chunk index), or ``None`` when its writer
    never finished (no footer or a cut-off one). The stream is left at its start."""
    try:
        return make_reader(stream).get_summary()
    except (McapError, EOFError, ValueError, OSError, KeyError, struct_error):
        return None
    finally:
        stream.seek(0)


def _recorded(channel: Channel, message: Any) -> RecordedMessage:
    return RecordedMessage(
        subject=channel.topic,
        data=message.data,
        log_time=message.log_time,
        publish_time=message.publish_time,
        headers=channel.metadata,
        sequence=message.sequence,
        channel=message.channel_id,
    )


def read_messages(
    path: str | Path, *, start: int | None = None, end: int | None = None
) -> Iterator[RecordedMessage]:
    """The recording's messages in ``log_time`` order, from ``start`` up to (excluding) ``end`` (ns).

    A complete file is read through its index, chunk by chunk, so memory stays flat however large
    it is. A file whose writer never finished is read front to back up to its last complete record.
    """
    stream = open_recording(path)
    with stream:
        summary = read_summary(stream)
        if summary is None:
            yield from _read_unfinished(stream, start, end)
            return
        try:
            if summary.chunk_indexes:
                yield from _read_indexed(stream, summary, start, end)
                return
            # an MCAP file without chunks (not one citybus writes): the library reads it as it is
            for _schema, channel, message in make_reader(stream).iter_messages(
                starting_at=start, ending_before=end
            ):
                yield _recorded(channel, message)
        except _DAMAGED as exc:
            raise RecordingError(f"{path} is damaged: {exc or type(exc).__name__}") from None


# -- reading a complete file through its chunk index -------------------------------------------------

_CHUNK: Final = struct.Struct("<BQQQQII")
"""A chunk record up to its compression's name: opcode, length, first and last message time,
uncompressed size, CRC, length of the compression's name."""
_MESSAGE: Final = struct.Struct("<QHIQQ")
"""A message record after its opcode: length, channel id, sequence, log time, publish time."""
_LENGTH: Final = struct.Struct("<Q")
_OP_CHUNK: Final = 0x06
_OP_MESSAGE: Final = 0x05
_MESSAGE_FIELDS: Final = 22  # channel id, sequence, log time and publish time, before the data
_NEVER: Final = 1 << 64  # later than any MCAP time (u64 nanoseconds)
_DAMAGED: Final = (McapError, EOFError, ValueError, KeyError, struct_error, zstandard.ZstdError, RuntimeError)
"""What a damaged file raises on the way: the mcap library's errors, a record cut short, a chunk
that does not decompress (lz4 raises RuntimeError), a message of a channel the file never declared."""

_Held = tuple[int, int, int, int, int, int, bytes]
"""A message read but not yet handed out: (log time, chunk offset, offset in the chunk, channel id,
sequence, publish time, data). In this order the tuples sort as the MCAP library orders messages:
by time, then by where they are in the file."""
_BY_TIME: Final = itemgetter(0)
_BY_PLACE: Final = itemgetter(0, 1, 2)


def _read_indexed(
    stream: IO[bytes], summary: Any, start: int | None, end: int | None
) -> Iterator[RecordedMessage]:
    """A complete file's messages in ``log_time`` order (ties in file order), chunk by chunk.

    The same messages in the same order as the mcap library's reader, without its heap of one
    Python object per message (which made reading the replay's slowest part): chunks are taken in
    order of their first message time, each chunk's messages are parsed in one pass and sorted as a
    whole (in C), and a message is handed out once no chunk still to come can start before it.
    A recorder's chunks follow each other in time, so only one chunk is held at a time; chunks
    that overlap in time (a file merged from several) are held together until they stop overlapping.
    """
    channels = {channel_id: (c.topic, c.metadata) for channel_id, c in summary.channels.items()}
    low = -1 if start is None else start
    high = _NEVER if end is None else end
    chunks = sorted(
        (c for c in summary.chunk_indexes if c.message_end_time >= low and c.message_start_time < high),
        key=lambda c: (c.message_start_time, c.chunk_start_offset),
    )
    held: list[_Held] = []
    for chunk in chunks:
        if held:
            ready = bisect.bisect_left(held, chunk.message_start_time, key=_BY_TIME)
            yield from _handed_out(held if ready == len(held) else held[:ready], channels)
            del held[:ready]
        fresh = _chunk_messages(stream, chunk.chunk_start_offset, chunk.chunk_length, low, high)
        if held:
            held += fresh
            held.sort(key=_BY_PLACE)
        else:
            fresh.sort(key=_BY_TIME)  # stable: ties keep their order in the chunk
            held = fresh
    yield from _handed_out(held, channels)


def _handed_out(
    held: list[_Held], channels: dict[int, tuple[str, dict[str, str]]]
) -> Iterator[RecordedMessage]:
    for log_time, _chunk, _offset, channel, sequence, publish_time, data in held:
        subject, headers = channels[channel]
        yield RecordedMessage(subject, data, log_time, publish_time, headers, sequence, channel)


def _chunk_messages(stream: IO[bytes], offset: int, length: int, low: int, high: int) -> list[_Held]:
    """The messages of the chunk record at ``offset`` with ``low <= log_time < high``, in file order."""
    stream.seek(offset)
    record = stream.read(length)
    if len(record) < _CHUNK.size:
        raise EOFError(f"the chunk at byte {offset} is cut short")
    opcode, _length, _first, _last, size, _crc, name_length = _CHUNK.unpack_from(record)
    if opcode != _OP_CHUNK:
        raise ValueError(f"the index points at byte {offset}, where there is no chunk")
    compression = record[_CHUNK.size : _CHUNK.size + name_length]
    (data_length,) = _LENGTH.unpack_from(record, _CHUNK.size + name_length)
    begin = _CHUNK.size + name_length + _LENGTH.size
    data = memoryview(record)[begin : begin + data_length]
    if len(data) != data_length:
        raise EOFError(f"the chunk at byte {offset} is cut short")
    if compression == b"zstd":
        records = zstandard.decompress(data, size)
    elif compression == b"lz4":
        records = lz4.frame.decompress(data)
    elif not compression:
        records = bytes(data)
    else:
        raise ValueError(
            f"a chunk is compressed with {compression.decode(errors='replace')!r}, not zstd or lz4"
        )
    found: list[_Held] = []
    append = found.append
    position, total = 0, len(records)
    while position < total:  # one pass over the records: the hot loop of reading
        if records[position] == _OP_MESSAGE:
            length, channel, sequence, log_time, publish_time = _MESSAGE.unpack_from(records, position + 1)
            body = position + 9
            position = body + length
            if low <= log_time < high:
                append(
                    (
                        log_time,
                        offset,
                        body,
                        channel,
                        sequence,
                        publish_time,
                        records[body + _MESSAGE_FIELDS : position],
                    )
                )
        else:  # a schema or channel record (their copies are in the summary) or one this reader skips
            (length,) = _LENGTH.unpack_from(records, position + 1)
            position += 9 + length
    if position != total:
        raise EOFError(f"the last record of the chunk at byte {offset} is cut short")
    return found


def _read_unfinished(stream: IO[bytes], start: int | None, end: int | None) -> Iterator[RecordedMessage]:
    """Messages of a file without summary, in file order (a recorder writes in arrival order)."""
    from mcap.records import Channel as ChannelRecord
    from mcap.records import Message

    channels: dict[int, Channel] = {}
    try:
        for record in StreamReader(stream).records:
            if isinstance(record, ChannelRecord):
                channels[record.id] = record
            elif isinstance(record, Message):
                if (start is None or record.log_time >= start) and (end is None or record.log_time < end):
                    yield _recorded(channels[record.channel_id], record)
    except (McapError, EOFError, ValueError, KeyError, OSError, struct_error):
        return  # the last chunk was cut off: everything before it has been read
