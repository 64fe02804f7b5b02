"""The recordings place: a person's messages in the MCAP recordings citybus knows of, for export,
erasure and retention (:mod:`bus.personal.places`, registered as the ``recording`` place of the
``citybus.personal`` entry points).

**Which recordings.** Those citybus records into and replays from: every ``*.mcap`` under the
directories and files of ``[sandbox] recordings`` (default: ``recordings`` in the data directory),
and the files of every configured ``sandbox-replay`` instance. The recordings shipped with citybus
(``sandbox/data``) are left alone: every person in them is generated, and they are the package's,
not the city's.

**Finding a person.** A sealed message names its person by the ``citybus-person`` header its
channel keeps (:mod:`sandbox.recorder`): a match by ref, opened with the person's key for an
export. A message recorded in the clear (before sealing existed, or written by another tool) is a
match when its subject or bytes contain the person's id, ref or one of their identifiers (name,
e-mail, phone). A pseudonymised recording holds nothing that leads back to anyone
(:mod:`sandbox.pseudonyms`), so it has nothing to find.

**Erasing** rewrites the file without the person's messages, atomically: the new file is written
beside the old one, flushed to disk (``fsync``), and renamed over it, so a crash leaves either the
old file or the new one, never half of each. Its metadata is kept. A copy handed to a pilot cannot
be rewritten: its sealed messages are erased by the destruction of the key (the ``key`` place);
what is left of them is ciphertext nobody can open.

**Expiring** drops, the same way, the messages older than their contract's retention
(:attr:`contracts.ContractInfo.retention`), by their ``ce-time`` (the recording's log time).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from mcap.reader import make_reader

from bus import Bus
from bus.config import Config
from bus.envelope import H_CONTENT_TYPE, H_PERSON, H_TYPE, MSGPACK
from bus.personal.places import Person, PersonalPlace, in_clear
from bus.personal.seal import Unreadable, open_body
from contracts import ErasedPlace, FoundMessage, Registry, default_registry
from sandbox.adapter import SandboxReplay
from sandbox.recording import (
    RecordedMessage,
    RecordingError,
    RecordingWriter,
    lock_recording,
    nanoseconds,
    open_recording,
    read_messages,
    read_summary,
)

__all__ = [
    "PLACE",
    "RecordingBusy",
    "RecordingsPlace",
    "configured_recordings",
    "places",
    "recordings_of",
    "rewrite",
]

PLACE: Final = "recording"
SHIPPED: Final = Path(__file__).resolve().parent / "data"
"""The recordings that ship with citybus: generated people only, never rewritten."""


def recordings_of(paths: Iterable[str | Path]) -> list[Path]:
    """Every recording under ``paths`` (files as they are, directories searched for ``*.mcap``),
    once each, the shipped ones left out; a path that does not exist holds none."""
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given).expanduser()
        files = sorted(path.rglob("*.mcap")) if path.is_dir() else [path] if path.is_file() else []
        for file in files:
            resolved = file.resolve()
            if not resolved.is_relative_to(SHIPPED):
                found[resolved] = None
    return list(found)


class RecordingsPlace:
    """The ``recording`` place over the recordings that ``files`` lists (asked anew at each use,
    so a recording made since is searched too)."""

    name = PLACE

    def __init__(self, files: Callable[[], list[Path]], *, registry: Registry | None = None) -> None:
        self._files = files
        self._registry = registry or default_registry()

    async def export(self, who: Person) -> list[FoundMessage]:
        """Every message about ``who`` in every recording, opened with their key where sealed."""
        return await asyncio.to_thread(self._export, who)

    async def erase(self, who: Person) -> list[ErasedPlace]:
        """Rewrite every recording that holds a message about ``who`` without it; one receipt per such
        file (a file that could not be rewritten says why)."""
        receipts = await asyncio.to_thread(
            self._rewrite_all, lambda m: _about(m, who), "rewritten without them"
        )
        # Where nothing was found the receipt still says where it was looked for.
        searched = len(self._files())
        where = f"{searched} recording{'' if searched == 1 else 's'}"
        return receipts or [ErasedPlace(place=PLACE, location=where)]

    async def expire(self, now: datetime) -> list[ErasedPlace]:
        """Rewrite every recording that holds messages older than their contract's retention
        without them."""
        return await asyncio.to_thread(
            self._rewrite_all, lambda m: self._expired(m, now), "rewritten without what retention expired"
        )

    # -- in a worker thread ------------------------------------------------------------------------

    def _export(self, who: Person) -> list[FoundMessage]:
        cipher = None if who.key is None else AESGCM(who.key)
        found: list[FoundMessage] = []
        for path in self._files():
            try:
                messages = [m for m in read_messages(path) if _about(m, who)]
            except RecordingError:
                continue  # not a recording (or not one any more): nothing of anyone's is readable there
            for message in messages:
                data, readable = _opened(message, cipher)
                found.append(
                    FoundMessage(
                        place=PLACE,
                        location=f"{path} ({message.subject} #{message.sequence})",
                        subject=message.subject,
                        type=message.type,
                        time=message.time,
                        data=data,
                        readable=readable,
                    )
                )
        return found

    def _expired(self, message: RecordedMessage, now: datetime) -> bool:
        contract = self._registry.by_type(message.type) if message.type else None
        retention = None if contract is None else contract.__contract__.retention
        return retention is not None and message.log_time < nanoseconds(now - retention)

    def _rewrite_all(self, drop: Callable[[RecordedMessage], bool], how: str) -> list[ErasedPlace]:
        receipts: list[ErasedPlace] = []
        for path in self._files():
            try:
                dropped, unfinished = rewrite(path, drop)
            except RecordingError:
                continue
            except RecordingBusy:
                receipts.append(
                    ErasedPlace(
                        place=PLACE,
                        location=str(path),
                        how=how,
                        error="it is being recorded now: its sealed messages are unreadable once the key "
                        "is destroyed; erase again when the recording ends for any in the clear",
                    )
                )
                continue
            except OSError as exc:
                receipts.append(
                    ErasedPlace(place=PLACE, location=str(path), how=how, error=f"cannot rewrite it: {exc}")
                )
                continue
            if dropped or unfinished:
                # An unfinished file's cut-off last chunk went too: it may have held anyone's data.
                where = f"{path} (unfinished: its cut-off last chunk dropped)" if unfinished else str(path)
                receipts.append(
                    ErasedPlace(place=PLACE, location=where, found=dropped, erased=dropped, how=how)
                )
        return receipts


def _about(message: RecordedMessage, who: Person) -> bool:
    ref = message.headers.get(H_PERSON)
    if ref:
        if ref == who.ref:
            return True
        # sealed for someone else, its bytes say nothing of anyone — unless the seal is only claimed
        return who.named_by(message.subject) or who.named_in_clear(
            message.data, message.headers.get(H_CONTENT_TYPE, "")
        )
    if who.named_by(message.subject):
        return True
    return who.named_in(message.data.decode("utf-8", errors="replace"))


def _opened(message: RecordedMessage, cipher: AESGCM | None) -> tuple[Any, bool]:
    """The message's data as JSON values, and whether it could be read."""
    body = message.data
    if message.headers.get(H_PERSON) and not in_clear(body, message.headers.get(H_CONTENT_TYPE, "")):
        if cipher is None:
            return None, False
        try:
            body = open_body(cipher, body, message.headers.get(H_TYPE, ""))
        except Unreadable:
            return None, False
    try:
        if message.headers.get(H_CONTENT_TYPE) == MSGPACK:
            return msgspec.msgpack.decode(body), True
        return msgspec.json.decode(body), True
    except msgspec.DecodeError:
        return body.decode("utf-8", errors="replace"), True


def _metadata(path: Path) -> dict[str, str]:
    stream = open_recording(path)
    with stream:
        if read_summary(stream) is None:
            return {}
        found: dict[str, str] = {}
        for record in make_reader(stream).iter_metadata():
            if record.name == "citybus":
                found.update(record.metadata)
        return found


class RecordingBusy(OSError):
    """The recording is being written (a recorder holds its lock): it cannot be rewritten now."""


def rewrite(path: Path, drop: Callable[[RecordedMessage], bool]) -> tuple[int, bool]:
    """Write ``path`` again without the messages ``drop`` picks, atomically (a temporary file in
    the same directory, fsynced, renamed over it); returns how many were dropped, and whether the
    file was unfinished (no footer: its recorder crashed or was killed) and so was rewritten whole.

    An unfinished file is rewritten even when ``drop`` picks nothing: its last chunk may have been
    cut off mid-write, and what it holds — anyone's, readable by no MCAP reader but still on disk,
    in the clear when uncompressed — cannot be searched, so it is cut off (everything before it is
    kept, and the file gets its footer). A file left as it was returns ``(0, False)``.

    Raises :class:`RecordingBusy` when a recorder is writing the file (the rename would leave it
    writing a file nobody sees any more)."""
    with open(path, "rb") as held:
        unfinished = read_summary(held) is None
        if not any(drop(m) for m in read_messages(path)) and not unfinished:
            return 0, False
        if not lock_recording(held):
            raise RecordingBusy(f"{path} is being recorded now")
        metadata = _metadata(path)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        dropped = 0
        try:
            with os.fdopen(descriptor, "wb") as stream:
                with RecordingWriter(stream, metadata=metadata, flush_interval=float("inf")) as writer:
                    for message in read_messages(path):
                        if drop(message):
                            dropped += 1
                            continue
                        writer.add(
                            message.subject,
                            message.data,
                            message.headers,
                            log_time=message.log_time,
                            publish_time=message.publish_time,
                        )
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, path.stat().st_mode & 0o777)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    _sync_directory(path.parent)
    return dropped, unfinished


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # a platform without directory descriptors
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def configured_recordings(config: Config) -> list[Path]:
    """The recordings of ``config``: ``[sandbox] recordings`` (default: ``recordings`` in the data
    directory) and the files of every configured ``sandbox-replay`` instance."""
    paths: list[str | Path] = list(config.sandbox.recordings) or [config.resolved_data_dir() / "recordings"]
    for table in config.adapters.values():
        if table.get("adapter") == SandboxReplay.name:
            files = table.get("files")
            if isinstance(files, list):
                paths += [str(f) for f in files]
    return recordings_of(paths)


def places(config: Config, bus: Bus) -> list[PersonalPlace]:
    """The ``citybus.personal`` entry point of ``sandbox``: the recordings place."""
    return [RecordingsPlace(lambda: configured_recordings(config), registry=bus.registry)]
