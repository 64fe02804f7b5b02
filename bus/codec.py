"""Encoding and typed decoding of contract bodies: one :class:`Codec` per subscription, built once."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from bus.envelope import JSON, MSGPACK
from bus.errors import ContractViolation
from contracts import Contract

__all__ = ["Codec", "encode"]

C = TypeVar("C", bound=Contract)

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
        """Decode and validate a body; raise :class:`ContractViolation` naming what is wrong."""
        try:
            if content_type == JSON or content_type.startswith(JSON):
                return self._json.decode(body)
            if content_type in (MSGPACK, "application/vnd.msgpack", "application/x-msgpack"):
                return self._msgpack.decode(body)
        except msgspec.ValidationError as exc:
            raise ContractViolation(
                f"{self.contract.__contract__.name}: {exc}", reason="invalid-body"
            ) from exc
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # a string of bytes that are not UTF-8, too
            raise ContractViolation(
                f"body is not valid {content_type}: {exc}", reason="invalid-body"
            ) from exc
        except RecursionError as exc:
            # msgspec skips an unknown field's value recursively: a thousand nested arrays in one
            # (a few kilobytes anyone may send) exhaust the interpreter's recursion limit.
            raise ContractViolation(
                f"body is nested too deeply to decode as {content_type} ({exc})", reason="invalid-body"
            ) from exc
        raise ContractViolation(
            f"unsupported content-type {content_type!r}; citybus reads {JSON} and {MSGPACK}",
            reason="unsupported-encoding",
        )

    def encode(self, instance: C, content_type: str = JSON) -> bytes:
        """Encode an instance of this contract."""
        return encode(instance, content_type)
