"""bus.wire: citybus's header parser gives exactly nats-py's result, for any bytes at all."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from bus import Bus, Metrics
from bus.envelope import build_headers, new_event_id
from bus.server import EmbeddedServer
from bus.wire import Client, header_block, parse_header_lines
from contracts import BeachObservation

_PIECES = st.sampled_from(
    [b"\r\n", b":", b" ", b"\t", b"\x1c", b"ce-id", b"ce-type", b"Nats-Msg-Id", b"\xff", b"\xc3\xa6", b"a b"]
)
_BLOCKS = st.lists(st.one_of(_PIECES, st.binary(max_size=12)), max_size=30).map(b"".join)


_ASCII_BLOCKS = st.lists(
    st.one_of(
        st.sampled_from([b"\r\n", b":", b" ", b"\t", b"\x1c", b"\x0b", b"ce-id", b"Nats-Msg-Id", b"a b"]),
        st.text(st.characters(max_codepoint=127), max_size=10).map(str.encode),
    ),
    max_size=30,
).map(b"".join)


def nats_py(raw: bytes) -> dict[str, str]:
    result: dict[str, str] = NatsClient._parse_header_lines(raw)
    return result


@settings(max_examples=2000)
@given(_BLOCKS)
def test_any_header_block_parses_as_nats_py_parses_it(raw: bytes) -> None:
    assert parse_header_lines(raw) == nats_py(raw)
    assert parse_header_lines(raw) == nats_py(raw)  # again, with the names now cached


@settings(max_examples=2000)
@given(_ASCII_BLOCKS)
def test_any_ascii_header_block_parses_as_nats_py_parses_it(raw: bytes) -> None:
    assert raw.isascii()
    assert parse_header_lines(raw) == nats_py(raw)
    assert parse_header_lines(raw) == nats_py(raw)


def test_a_cloudevents_block_and_odd_lines_parse_alike() -> None:
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/adapters/vicotee",
        time=datetime.now(UTC),
        provenance="sensor",
    )
    block = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    odd = b"Bad Name: x\r\n:empty name\r\nno colon\r\n\xffname: v\r\nname:\tvalue \r\n"
    odd += b"k: \xe2\x82\xac \xff\r\n\x1cname: v\r\n\r\n"
    for raw in (block, odd, block + odd):
        assert parse_header_lines(raw) == nats_py(raw)
    assert parse_header_lines(block) == headers


async def test_the_bus_connects_with_the_faster_client(nats_server: EmbeddedServer) -> None:
    bus = Bus(metrics=Metrics())
    await bus.connect(nats_server.url)
    try:
        assert isinstance(bus.nc, Client)
        assert bus.nc._parse_header_lines is parse_header_lines
    finally:
        await bus.close()


# -- writing ---------------------------------------------------------------------------------------

_NAMES = st.one_of(
    st.sampled_from(["ce-id", "ce-type", "Nats-Msg-Id", " padded ", "", "bad name", "é", "a:b", "x"]),
    st.text(max_size=8),
)
_VALUES = st.one_of(
    st.sampled_from(["", " lead", "trail ", "two\r\nlines", "tab\t", "æøå", "\x1c", "ok"]),
    st.text(max_size=12),
)


class _Captured:
    """A client that has no connection: what it would send is kept."""

    def __init__(self, client: NatsClient) -> None:
        self.client = client
        self.sent: list[bytes] = []

        async def send_command(cmd: bytes, priority: bool = False) -> None:
            self.sent.append(bytes(cmd))

        client._send_command = send_command  # type: ignore[method-assign]
        client._flush_queue = None

    async def publish(self, headers: dict[str, str] | None) -> bytes | str:
        try:
            await self.client._send_publish("city.x", "_INBOX.a.b", b"body", 4, headers)
        except Exception as exc:  # nats-py's own error for a bad name: ours must raise it too
            return type(exc).__name__
        return self.sent.pop()


@settings(max_examples=1000)
@given(st.dictionaries(_NAMES, _VALUES, max_size=6) | st.none())
async def test_any_headers_are_written_as_nats_py_writes_them(headers: dict[str, str] | None) -> None:
    ours, theirs = _Captured(Client()), _Captured(NatsClient())
    assert await ours.publish(headers) == await theirs.publish(headers)
    assert await ours.publish(headers) == await theirs.publish(headers)  # names now cached


async def test_cloudevents_headers_take_the_fast_path() -> None:
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/adapters/vicotee",
        time=datetime.now(UTC),
        provenance="sensor",
    )
    block = header_block(headers)
    assert block is not None and block.startswith(b"NATS/1.0\r\n") and block.endswith(b"\r\n\r\n")
    assert parse_header_lines(block[len(b"NATS/1.0\r\n") :]) == headers
    assert header_block({"ce-id": " padded"}) is None  # nats-py strips it: its path, not ours
