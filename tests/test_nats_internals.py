"""The private parts of nats-py that bus/wire.py overrides are still there, and still called.

:class:`bus.wire.Client` overrides four private methods of nats-py's client. A nats-py that
renamed one, changed its arguments or stopped calling it would not fail anything else: the bus
would just get slower (the header parser and writer) or lose its guard against a message that
kills the reader. Here it fails loudly: the methods must exist with the arguments the overrides
take, and a round trip through a real nats-server must call each override.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from conftest import wait_for
from nats.aio.client import Client as NatsClient

from bus import Bus, Event, Metrics
from bus.server import EmbeddedServer
from bus.wire import Client
from contracts import BeachObservation

# What bus/wire.py overrides, with the parameters its overrides take (nats-py 2.15 and 2.16).
OVERRIDDEN = {
    "_parse_header_lines": ["raw"],
    "_send_publish": ["self", "subject", "reply", "payload", "payload_size", "headers"],
    "_process_headers": ["self", "headers"],
    "_process_msg": ["self", "sid", "subject", "reply", "data", "headers"],
}


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_nats_py_still_has_what_bus_wire_overrides(name: str) -> None:
    theirs = inspect.getattr_static(NatsClient, name, None)
    assert theirs is not None, f"nats-py's Client has no {name} any more: bus/wire.py overrides nothing"
    ours = inspect.getattr_static(Client, name)
    assert type(theirs) is type(ours), f"{name}: nats-py's is a {type(theirs).__name__} now"
    their_function = theirs.__func__ if isinstance(theirs, staticmethod) else theirs
    our_function = ours.__func__ if isinstance(ours, staticmethod) else ours
    assert list(inspect.signature(their_function).parameters) == OVERRIDDEN[name]
    assert list(inspect.signature(our_function).parameters) == OVERRIDDEN[name]
    assert inspect.iscoroutinefunction(their_function) == inspect.iscoroutinefunction(our_function)


def counting(calls: Counter[str], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, counting its calls under ``name``."""
    if inspect.iscoroutinefunction(method):

        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await method(*args, **kwargs)

        return counted_async

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)

    return counted


async def test_a_round_trip_through_a_real_server_calls_every_override(
    nats_server: EmbeddedServer, entity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    for name in OVERRIDDEN:
        ours = inspect.getattr_static(Client, name)
        if isinstance(ours, staticmethod):
            monkeypatch.setattr(Client, name, staticmethod(counting(calls, name, ours.__func__)))
        else:
            monkeypatch.setattr(Client, name, counting(calls, name, ours))
    bus = Bus(metrics=Metrics(), source="/tests")
    await bus.connect(nats_server.url)
    try:
        await bus.provision_streams()
        got: list[Event[BeachObservation]] = []

        async def on_event(event: Event[BeachObservation]) -> None:
            got.append(event)

        await bus.subscribe(BeachObservation, on_event, entity=entity)
        reading = msgspec.structs.replace(BeachObservation.example(), site=entity)
        await bus.publish(reading)  # core publish: written by _send_publish
        await bus.publish_durable(reading)  # JetStream's publish goes through it too
        await wait_for(lambda: len(got) == 2)  # read by _process_msg, _process_headers, the parser
        await asyncio.sleep(0)
    finally:
        await bus.drain()
    never = sorted(name for name in OVERRIDDEN if calls[name] == 0)
    assert never == [], (
        f"nats-py no longer calls {', '.join(never)}: bus/wire.py's overrides are dead code "
        "(slower reading/writing, or no guard for the reader); adapt bus/wire.py to this nats-py"
    )
