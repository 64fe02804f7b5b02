"""Control services (``bus.control``): typed requests and answers, and refusals one way — the NATS
micro error headers, raised as ``RequestRefusedError`` — over a real nats-server."""

from __future__ import annotations

import msgspec
import nats
import pytest

from bus import Bus, RawMessage
from bus.control import Refusal, answer, decode_request, request
from bus.errors import CityBusError, RequestRefusedError
from bus.server import EmbeddedServer
from bus.subjects import control_subject


class Double(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    value: float


class Doubled(msgspec.Struct, frozen=True, kw_only=True):
    value: float


_DOUBLE = msgspec.json.Decoder(Double)


def double(data: bytes) -> Doubled:
    value = decode_request(_DOUBLE, data).value
    if value < 0:
        raise ValueError(f"value must be 0 or more, not {value:g}")
    if value > 1e6:
        raise Refusal("too large to double", "413")
    return Doubled(value=value * 2)


@pytest.fixture
async def doubler(bus: Bus, entity: str) -> str:
    async def serve(raw: RawMessage) -> None:
        body, headers = answer(lambda: double(raw.data))
        assert raw.reply
        await bus.publish_raw(raw.reply, body, headers)

    await bus.subscribe_raw(control_subject("doubler", entity), serve)
    return entity


async def test_a_request_gets_its_answer_typed(bus: Bus, doubler: str) -> None:
    subject = control_subject("doubler", doubler, "double")
    assert await request(bus, subject, Double(value=21), Doubled) == Doubled(value=42)


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'{"value": -1}', "400", "value must be 0 or more, not -1"),
        (b'{"value": 1e9}', "413", "too large to double"),
        (b'{"valu": 1}', "400", "unknown field `valu`"),
        (b"{", "400", "the request body is"),
        (b"[1]", "400", "Expected `object`, got `array`"),
    ],
)
async def test_a_refusal_is_raised_with_its_code_and_words(
    bus: Bus, doubler: str, body: bytes, code: str, words: str
) -> None:
    subject = control_subject("doubler", doubler, "double")
    reply = await bus.nc.request(subject, body, timeout=5)  # as any NATS client sees it
    assert reply.data == b"" and reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == code and words in reply.headers["Nats-Service-Error"]

    with pytest.raises(RequestRefusedError, match=words) as raw_refused:
        await bus.request_raw(subject, body)
    assert raw_refused.value.code == code and words in raw_refused.value.description

    with pytest.raises(RequestRefusedError, match=words) as refused:
        await request(_Verbatim(bus, body), subject, None, Doubled)
    assert refused.value.code == code and subject in str(refused.value)


async def test_a_refusal_from_nats_micro_reads_the_same(nats_server: EmbeddedServer, bus: Bus) -> None:
    """The headers are the NATS micro protocol's: a service built on nats.micro refuses the same way."""
    from nats import micro

    nc = await nats.connect(nats_server.url)
    try:

        async def refuse(req: micro.Request) -> None:
            await req.respond_error("400", "no, thank you")

        subject = control_subject("refuser", "x", "refuse")
        service = await micro.add_service(nc, name="refuser", version="0.0.1")
        await service.add_endpoint(name="refuse", subject=subject, handler=refuse)
        await nc.flush()  # the endpoint's subscription is at the server before the other connection asks
        with pytest.raises(RequestRefusedError, match="no, thank you"):
            await request(bus, subject, None, Doubled)
        await service.stop()
    finally:
        await nc.close()


async def test_an_answer_of_another_shape_is_an_error_that_says_so(bus: Bus, entity: str) -> None:
    async def serve(raw: RawMessage) -> None:
        assert raw.reply
        await bus.publish_raw(raw.reply, b'{"error": "old style"}')

    await bus.subscribe_raw(control_subject("old", entity), serve)
    with pytest.raises(CityBusError, match="is not a Doubled .*another version"):
        await request(bus, control_subject("old", entity, "x"), None, Doubled)


class _Verbatim:
    """A requester that sends ``body`` whatever it is asked to send (a client that is not citybus)."""

    def __init__(self, bus: Bus, body: bytes) -> None:
        self._bus = bus
        self._body = body

    async def request_raw(
        self, subject: str, data: bytes = b"", *, timeout: float | None = None
    ) -> RawMessage:
        return await self._bus.request_raw(subject, self._body, timeout=timeout)
