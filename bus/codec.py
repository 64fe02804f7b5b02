"""Encoding and typed decoding of contract bodies: one :class:`Codec` per subscription, built once.

:func:`decode_bytes` is the one rule for reading bytes that come from outside with a msgspec
decoder, here and in adapters and the sandbox: every way the bytes can fail becomes one
:class:`~bus.errors.UndecodableError`, never an exception that ends a task.
"""

from __future__ import annotations

import sys
from typing import Generic, TypeVar

import msgspec

from bus.envelope import JSON, MSGPACK
from bus.errors import ContractViolation, UndecodableError
from contracts import Contract

__all__ = ["Codec", "decode_bytes", "encode"]

C = TypeVar("C", bound=Contract)
T = TypeVar("T")


def decode_bytes(
    decoder: msgspec.json.Decoder[T] | msgspec.msgpack.Decoder[T],
    data: bytes | msgspec.Raw,
    *,
    what: str = "JSON",
) -> T:
    """``data`` decoded by ``decoder``; raises :class:`~bus.errors.UndecodableError` and nothing else.

    Its ``kind`` is ``"shape"`` for msgspec's ``ValidationError`` (the message is msgspec's),
    ``"syntax"`` for a ``DecodeError`` or a string that is not UTF-8 (msgspec raises
    ``UnicodeDecodeError`` for that), and ``"depth"`` for a ``RecursionError``: msgspec follows
    nested arrays and objects recursively, even the value of an unknown field it skips, so a few
    kilobytes of ``[[[[…`` (anyone may send them) exhaust the interpreter's recursion limit.
    ``what`` names the format in the messages (``"JSON"``, ``"msgpack"``, a content type).
    """
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise UndecodableError(str(exc), kind="shape") from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise UndecodableError(f"not valid {what}: {exc}", kind="syntax") from exc
    except RecursionError as exc:
        raise UndecodableError(
            f"nested too deeply to decode as {what} (more levels than the recursion limit, "
            f"{sys.getrecursionlimit()})",
            kind="depth",
        ) from exc


# msgspec encoders hold no per-type state, so one of each serves every contract.
_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def encode(instance: Contract, content_type: str = JSON) -> bytes:
    """The body of a message: the instance as JSON or msgpack."""
    if content_type == JSON:
        return _json_encoder.encode(instance)
    if content_type == MSGPACK:
        return _msgpack_encoder.encode(instance)
    raise ValueError(f"unsupported content type {content_type!r}; use {JSON} or {MSGPACK}")


class Codec(Generic[C]):
    """Typed decoders for one contract (JSON and msgpack), built once and reused for every message."""

    __slots__ = ("contract", "_json", "_msgpack")

    def __init__(self, contract: type[C]) -> None:
        self.contract = contract
        self._json = msgspec.json.Decoder(contract)
        self._msgpack = msgspec.msgpack.Decoder(contract)

    def decode(self, body: bytes, content_type: str = JSON) -> C:
        """Decode and validate a body; raise :class:`ContractViolation` naming what is wrong
        (an :class:`~bus.errors.UndecodableError` for a body that does not decode)."""
        decoder: msgspec.json.Decoder[C] | msgspec.msgpack.Decoder[C]
        if content_type == JSON or content_type.startswith(JSON):
            decoder = self._json
        elif content_type in (MSGPACK, "application/vnd.msgpack", "application/x-msgpack"):
            decoder = self._msgpack
        else:
            raise ContractViolation(
                f"unsupported content-type {content_type!r}; citybus reads {JSON} and {MSGPACK}",
                reason="unsupported-encoding",
            )
        try:
            return decode_bytes(decoder, body, what=content_type)
        except UndecodableError as exc:  # say which contract the body does not fit, or what the body is
            message = f"{self.contract.__contract__.name}: {exc}" if exc.kind == "shape" else f"body is {exc}"
            raise UndecodableError(message, kind=exc.kind) from exc.__cause__

    def encode(self, instance: C, content_type: str = JSON) -> bytes:
        """Encode an instance of this contract."""
        return encode(instance, content_type)
