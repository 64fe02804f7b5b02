"""One way in: every kind of delivery goes through the one pipeline of :mod:`bus.pipeline`.

A behaviour added in one place — a middleware the test installs — shows on core subscriptions,
raw subscriptions, request/reply and durable consumers alike, on the real server and the
in-memory bus. And the shape that makes this hold: no import cycle in ``bus``, no ``bus`` module
over ~500 lines, and an in-memory bus that fakes the connection instead of overriding the bus.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import wait_for

from bus import Bus, ConsumerSettings, Event, Metrics, RawMessage
from bus.envelope import build_headers, new_event_id
from bus.errors import RequestRefusedError
from bus.memory import MemoryBus
from bus.pipeline import Route, Step
from bus.server import EmbeddedServer
from bus.subjects import contract_subject
from contracts import BeachObservation, DeadLetter, WeatherObserved

ROOT = Path(__file__).resolve().parent.parent


def beach(entity: str, **changes: object) -> BeachObservation:
    return msgspec.structs.replace(BeachObservation.example(), site=entity, **changes)


class Seen:
    """A middleware that records every message it sees: (kind, contract, consumer, event id)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []

    def __call__(self, route: Route, step: Step) -> Step:
        async def seen(item: Any, msg: Any) -> Any:
            event_id = item.id if isinstance(item, Event) else (item.headers or {}).get("ce-id", "")
            self.calls.append((route.kind, route.contract, route.consumer, event_id))
            return await step(item, msg)

        return seen

    def kinds(self) -> set[str]:
        return {kind for kind, *_ in self.calls}


async def test_a_middleware_added_once_shows_on_every_kind_of_delivery(any_bus: Bus, entity: str) -> None:
    seen = Seen()
    any_bus.middleware.append(seen)  # the one place
    subscribed: list[Event[BeachObservation]] = []
    consumed: list[Event[BeachObservation]] = []
    raw: list[RawMessage] = []

    async def on_event(event: Event[BeachObservation]) -> None:
        subscribed.append(event)

    async def on_durable(event: Event[BeachObservation]) -> None:
        consumed.append(event)

    async def on_raw(message: RawMessage) -> None:
        raw.append(message)

    async def respond(event: Event[BeachObservation]) -> WeatherObserved:
        return msgspec.structs.replace(WeatherObserved.example(), station=event.data.site)

    await any_bus.subscribe(BeachObservation, on_event, queue="stats", entity=entity)
    await any_bus.subscribe_raw(contract_subject(beach(entity)), on_raw)
    await any_bus.serve(BeachObservation, respond, entity=entity)
    consumer = any_bus.consume(BeachObservation, on_durable, durable=f"pipeline-{entity}", entity=entity)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        ack = await any_bus.publish_durable(beach(entity))
        reply = await any_bus.request(beach(entity), WeatherObserved)
        await wait_for(lambda: len(consumed) == 1 and len(subscribed) == 1 and len(raw) == 1)
        consumer.stop()

    assert reply.data.station == entity
    assert seen.kinds() == {"subscribe", "raw", "serve", "consume"}
    by_kind = {
        kind: (contract, consumer_name, event_id) for kind, contract, consumer_name, event_id in seen.calls
    }
    expected = BeachObservation.__contract__.type
    assert by_kind["subscribe"] == (expected, "stats", ack.event_id)
    assert by_kind["consume"] == (expected, f"pipeline-{entity}", ack.event_id)
    assert by_kind["raw"] == ("", "", ack.event_id)
    assert by_kind["serve"][0] == expected
    assert len(seen.calls) == 4  # once each: the middleware wraps every handler exactly once


async def test_a_middleware_that_fails_settles_like_a_handler_that_fails(any_bus: Bus, entity: str) -> None:
    """What a middleware raises is the handler's failure, whatever the kind: dead-lettered for a
    subscription, an error reply for a request, retried then dead-lettered for a durable consumer."""

    def refuse(route: Route, step: Step) -> Step:
        if route.contract != BeachObservation.__contract__.type:
            return step  # the dead letters themselves pass

        async def refused(item: Any, msg: Any) -> Any:
            raise RuntimeError(f"refused by middleware ({route.kind})")

        return refused

    letters: list[Event[DeadLetter]] = []

    async def on_letter(event: Event[DeadLetter]) -> None:
        letters.append(event)

    async def never(event: Event[BeachObservation]) -> None:
        raise AssertionError("the middleware stops it before the handler")

    async def never_respond(event: Event[BeachObservation]) -> WeatherObserved:
        raise AssertionError("the middleware stops it before the responder")

    await any_bus.subscribe(DeadLetter, on_letter, entity=">")
    any_bus.middleware.append(refuse)
    await any_bus.subscribe(BeachObservation, never, entity=entity)
    await any_bus.serve(BeachObservation, never_respond, entity=entity)
    settings = ConsumerSettings(max_deliver=2, retry_delay=0.05)
    consumer = any_bus.consume(
        BeachObservation, never, durable=f"refuse-{entity}", entity=entity, settings=settings
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(consumer.run())
        await any_bus.publish_durable(beach(entity))
        with pytest.raises(
            RequestRefusedError, match=r"handler-error: RuntimeError: refused by middleware \(serve\)"
        ):
            await any_bus.request(beach(entity), WeatherObserved)
        await wait_for(lambda: {e.data.reason for e in letters} >= {"handler-error", "max-deliver"})
        consumer.stop()
    details = {e.data.reason: e.data.detail for e in letters if e.data.original_subject.endswith(entity)}
    assert "refused by middleware (subscribe)" in details["handler-error"]
    assert "refused by middleware (consume)" in details["max-deliver"]


async def test_middleware_given_to_the_bus_and_none_by_default(
    nats_server: EmbeddedServer, entity: str
) -> None:
    seen = Seen()
    b = Bus(metrics=Metrics(), source="/tests", middleware=[seen])
    await b.connect(nats_server.url)
    try:
        got: list[Event[BeachObservation]] = []

        async def on_event(event: Event[BeachObservation]) -> None:
            got.append(event)

        await b.subscribe(BeachObservation, on_event, entity=entity)
        await b.publish(beach(entity))
        await wait_for(lambda: len(got) == 1)
        assert seen.kinds() == {"subscribe"}
    finally:
        await b.drain()
    assert Bus().middleware == []


async def test_an_invalid_message_never_reaches_the_middleware(any_bus: Bus, entity: str) -> None:
    letters: list[Event[DeadLetter]] = []

    async def on_letter(event: Event[DeadLetter]) -> None:
        letters.append(event)

    async def never(event: Event[BeachObservation]) -> None:
        raise AssertionError("invalid")

    await any_bus.subscribe(DeadLetter, on_letter, entity=">")
    seen = Seen()
    any_bus.middleware.append(seen)
    await any_bus.subscribe(BeachObservation, never, entity=entity)
    headers = build_headers(
        BeachObservation.__contract__,
        event_id=new_event_id(),
        source="/t",
        time=beach(entity).observed_at,
        provenance="manual",
    )
    subject = contract_subject(beach(entity))
    await any_bus.nc.publish(subject, b'{"site": 1}', headers=headers)
    await wait_for(lambda: any(e.data.original_subject == subject for e in letters))
    assert seen.calls == []


# -- the shape ----------------------------------------------------------------------------------


def bus_modules() -> dict[str, Path]:
    """Every module of the ``bus`` package (subpackages too) by dotted name."""
    found = {}
    for path in sorted((ROOT / "bus").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def bus_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``bus`` modules ``name`` imports, anywhere in it: at the top, in functions, and under
    ``if TYPE_CHECKING:`` — a cycle through type-only imports still ties the modules together
    (neither can be read, tested or moved without the other), so it counts."""

    def resolve(dotted: str) -> str:
        while dotted not in modules and "." in dotted:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(resolve(a.name) for a in node.names if a.name.split(".")[0] == "bus")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "bus":
                continue
            for alias in node.names:  # `from bus import subjects` imports the module bus.subjects
                found.add(resolve(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base))
    return found - {name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_in_bus() -> None:
    modules = bus_modules()
    graph = {name: bus_imports(name, path, modules) for name, path in modules.items()}
    assert graph["bus.bus"] >= {"bus.connection", "bus.pipeline", "bus.durable"}  # the scan sees imports
    assert import_cycles(graph) == []


def test_the_cycle_scan_sees_type_only_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "bus").mkdir()
    (tmp_path / "bus" / "__init__.py").write_text("")
    (tmp_path / "bus" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bus.b import B\n"
    )
    (tmp_path / "bus" / "b.py").write_text("from . import a\n")
    modules = {
        "bus": tmp_path / "bus/__init__.py",
        "bus.a": tmp_path / "bus/a.py",
        "bus.b": tmp_path / "bus/b.py",
    }
    graph = {name: bus_imports(name, path, modules) for name, path in modules.items()}
    assert import_cycles(graph) == [["bus.a", "bus.b", "bus.a"]]


def test_no_bus_module_is_over_500_lines() -> None:
    long = {
        name: lines
        for name, path in bus_modules().items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 510
    }
    assert long == {}


def test_an_arrived_message_has_one_shape() -> None:
    """The pipeline reads and the dead letters keep the same :class:`bus.pipeline.Message` (there
    was a second, near-identical Protocol in ``bus.deadletters``)."""
    import typing

    import bus.deadletters
    from bus.deadletters import DeadLetters
    from bus.pipeline import Message

    assert typing.get_type_hints(DeadLetters.send)["msg"] is Message
    protocols = [
        name
        for name, value in vars(bus.deadletters).items()
        if inspect.isclass(value)
        and getattr(value, "_is_protocol", False)
        and value.__module__ == "bus.deadletters"
    ]
    assert protocols == ["LetterPublisher"]  # how letters leave, not what arrived


def test_the_memory_bus_overrides_nothing_private_of_the_bus() -> None:
    """It fakes the transport (bus.connection.Connection.adopt); the bus's own code runs as on NATS."""
    own = {name for name in vars(MemoryBus) if not name.startswith("__")}
    assert own == {"connect"}
    assert inspect.signature(MemoryBus.connect).parameters["url"].default == "memory://"
