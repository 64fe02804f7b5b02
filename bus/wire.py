"""Where citybus meets nats-py's wire format: a client that reads and writes headers faster.

Every citybus message carries nine CloudEvents headers, and reading them is most of what a
subscriber does per message: nats-py parses a header block line by line and checks each name
character by character (``any(c.isspace() for c in name)``), which measured as the largest single
cost of a typed subscriber (docs/benchmarks.md, case 1). :class:`Client` is nats-py's client with
that one step replaced by one that gives the same result — the same dict for every header block,
well-formed or not (a property test compares the two on arbitrary bytes) — and remembers the
header names it has already checked, since a connection sees the same few names again and again.

Writing is the same story: nats-py encodes a header dict name by name (a regular expression, a
strip and a translate each, nine times per message). :meth:`Client._send_publish` builds the same
bytes in one join when every name is one already checked and no value needs nats-py's cleaning
(surrounding whitespace, a line break); anything else goes through nats-py's own code, which also
raises its own errors for bad names. Both publish and JetStream's ``publish_async`` go through it.

Reading must also survive what nats-py cannot read. A header block nats-py chokes on
(``NATS/1.0`` without a line end, a status line of bytes that are not UTF-8) raised from deep in
its reader, and the reader task ended: the connection went deaf — no message, acknowledgement or
reply — while it still counted as connected. :meth:`Client._process_headers` returns such a block
as :class:`BadHeaders` (empty, carrying the raw bytes and the error), so the message is delivered
and the bus dead-letters it (``bad-header``); :meth:`Client._process_msg` reports, instead of
dying on, anything else a single message makes nats-py raise.

It overrides private methods of nats-py 2.x (``_parse_header_lines``, ``_send_publish``,
``_process_headers``, ``_process_msg``), so nats-py is pinned to the versions tested
(``>=2.15,<3`` in pyproject.toml, both ends run by ``.ci/run``). Should a nats-py within them no
longer call an override, it would silently never be used — slower, and the reader unguarded — so
``tests/test_nats_internals.py`` fails loudly instead: each method must exist with the arguments
the override takes, and a round trip through a real nats-server must call every override. Other
tests compare the header parser and writer with nats-py's own on arbitrary input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client as _NatsClient
from nats.protocol import command

__all__ = ["BadHeaders", "Client", "escape_block", "header_block", "parse_header_lines"]

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # the names nats-py writes as they are
_clean_names: set[str] = set()

_CRLF = b"\r\n"
_NAME_CACHE_LIMIT = 4096
_NAME_CACHE_LENGTH = 64  # longer names are checked every time, never kept: a cache an attacker cannot fill
_names: dict[bytes, str | None] = {}  # raw name -> the key, or None for a name nats-py skips
_text_names: dict[str, str | None] = {}  # the same, for names of ASCII blocks
_BYTES_WHITESPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips (str.strip() also takes \x1c-\x1f)


def _name(raw: bytes) -> str | None:
    """A header name as nats-py reads it: stripped, ASCII, no whitespace inside; else ``None``."""
    try:
        key = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        return None
    # str.split() drops exactly the characters str.isspace() accepts (bytes.strip() above does not
    # take "\x1c" to "\x1f"), so a name with any of them inside or around it splits differently.
    if key and key.split() != [key]:
        return None
    return key


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """Parse a NATS header block (``Name: Value\\r\\n`` lines) exactly as nats-py 2.x does."""
    if raw.isascii():
        return _parse_ascii(raw.decode("ascii"))
    out: dict[str, str] = {}
    names = _names
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        if name in names:
            key = names[name]
        else:
            key = _name(name)
            if len(names) < _NAME_CACHE_LIMIT and len(name) <= _NAME_CACHE_LENGTH:
                names[name] = key
        if key is None:
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def _parse_ascii(text: str) -> dict[str, str]:
    """:func:`parse_header_lines` of an ASCII block (every CloudEvents block citybus writes), decoded
    once: the same steps on ``str``, stripping what ``bytes.strip`` strips."""
    out: dict[str, str] = {}
    names = _text_names
    for line in text.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if name in names:
            key = names[name]
        else:
            key = _name(name.encode("ascii"))
            if len(names) < _NAME_CACHE_LIMIT and len(name) <= _NAME_CACHE_LENGTH:
                names[name] = key
        if key is None:
            continue
        out[key] = value.strip(_BYTES_WHITESPACE)
    return out


def header_block(headers: Mapping[str, str]) -> bytes | None:
    """The header block nats-py 2.x writes for ``headers``, byte for byte, or ``None`` when nats-py
    would change or refuse something (then let it: it cleans values and raises for bad names).

    Checked in C where it can be: the names against the set of names already checked, the values
    by one join (a value that is not a string fails it; a line break in one shows in it), and
    whitespace around a value by the length of the values stripped (nats-py strips each).
    """
    if not headers:
        return None
    names = _clean_names
    if not headers.keys() <= names:
        for name in headers:
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                return None
            if len(names) < _NAME_CACHE_LIMIT and len(name) <= _NAME_CACHE_LENGTH:
                names.add(name)
    try:
        values = "".join(headers.values())
    except TypeError:
        return None
    if "\r" in values or "\n" in values or len("".join(map(str.strip, headers.values()))) != len(values):
        return None
    return ("NATS/1.0\r\n" + "\r\n".join(map(": ".join, headers.items())) + "\r\n\r\n").encode()


class BadHeaders(dict[str, str]):
    """The headers of a message whose header block could not be read: none, but the block's raw
    bytes (:attr:`raw`) and what was wrong with it (:attr:`error`). Only :class:`Client` makes one,
    so a sender cannot forge it with a header of its own."""

    __slots__ = ("raw", "error")

    def __init__(self, raw: bytes, error: str) -> None:
        super().__init__()
        self.raw = raw
        self.error = error


def escape_block(raw: bytes) -> str:
    """``raw`` as printable ASCII with Python escapes (``\\xff``, ``\\r\\n``); lossless:
    ``text.encode("ascii").decode("unicode_escape").encode("latin-1")`` gives the bytes back."""
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii")


class Client(_NatsClient):
    """nats-py's client, reading header blocks with :func:`parse_header_lines` and writing them with
    :func:`header_block`."""

    _parse_header_lines = staticmethod(parse_header_lines)

    async def _send_publish(
        self, subject: str, reply: str, payload: bytes, payload_size: int, headers: Mapping[str, Any] | None
    ) -> None:
        block = header_block(headers) if headers is not None else None
        if block is None or not subject:
            # No headers, an empty subject (nats-py raises), or headers nats-py must clean itself.
            await super()._send_publish(subject, reply, payload, payload_size, headers)  # type: ignore[arg-type]
            return
        # As nats-py's _send_publish does with the block it builds.
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(command.hpub_cmd(subject, reply, block, payload))
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _process_headers(self, headers: Any) -> dict[str, str] | None:
        try:
            parsed: dict[str, str] | None = await super()._process_headers(headers)
        except Exception as exc:  # nats-py indexes and decodes the status line unguarded
            return BadHeaders(bytes(headers), f"{type(exc).__name__}: {exc}")
        return parsed

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        try:
            await super()._process_msg(sid, subject, reply, data, headers)
        except Exception as exc:
            # Raised into the parser, it would end the reader task and the connection would go deaf.
            where = subject[:200].decode("ascii", "replace")
            await self._error_cb(nats.errors.Error(f"a message on {where} could not be read: {exc!r}"))
