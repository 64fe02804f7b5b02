"""FastStream's side of the comparison: its NATS broker publishing and subscribing the same contract.

Imported only where FastStream is installed (``pip install -e '.[bench]'``, which pins the version).
Two ways to validate, both typed handlers as FastStream's documentation writes them:

``faststream-msgspec``
    ``NatsBroker(serializer=MsgSpecSerializer())`` and a handler taking ``body: BeachObservation``:
    the very contract citybus decodes into, with the same constraints, checked by msgspec. The
    fairest comparison: the same validation code, only the framework around it differs.
``faststream-pydantic``
    FastStream's default serializer (pydantic) and a handler taking :class:`PydanticBeachObservation`,
    a pydantic model with the same fields, types and bounds: how most FastStream users write it.

``faststream-defaults``
    As ``faststream-pydantic``, with FastStream's default logger: as its quick start runs, two log
    lines at INFO per message. Shown for reference; the target is judged against the faster of the
    two above.

In those two, the broker is made as a service would run it in production: ``logger=None``, because
by default FastStream logs two lines at INFO for every message, which citybus does not do. Each
message gets the same nine CloudEvents headers as citybus's (fresh id and time), and the body is
the contract encoded by the serializer: msgspec's bytes are citybus's; pydantic's JSON has the
same fields and values. FastStream checks neither the headers nor the ``ce-type`` (citybus does),
and both serializers convert the JSON FastStream has already parsed in lax mode (a number in a
string passes), where citybus decodes strictly: the comparison leans, if anything, to FastStream.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from fast_depends.msgspec import MsgSpecSerializer  # type: ignore[import-not-found,unused-ignore]
from faststream.nats import NatsBroker  # type: ignore[import-not-found,unused-ignore]
from pydantic import (  # type: ignore[import-not-found,unused-ignore]
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
)

from bench.peers import FILTER, MESSAGE, SUBJECT, Endpoint, cloudevents_headers
from contracts import BeachObservation

__all__ = ["PydanticBeachObservation", "PydanticGeoPoint", "publisher", "subscriber"]

SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


class PydanticGeoPoint(BaseModel):  # type: ignore[misc,unused-ignore]
    """``contracts.fields.GeoPoint`` as a pydantic model."""

    model_config = ConfigDict(frozen=True)

    type: Literal["Point"] = "Point"
    coordinates: tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]]


class PydanticBeachObservation(BaseModel):  # type: ignore[misc,unused-ignore]
    """``contracts.BeachObservation`` as a pydantic model: the same fields, types and bounds."""

    model_config = ConfigDict(frozen=True)

    site: Annotated[str, Field(pattern=SLUG, min_length=1, max_length=64)]
    observed_at: AwareDatetime
    water_temperature: Annotated[float, Field(ge=-2, le=40)]
    air_temperature: Annotated[float, Field(ge=-50, le=50)] | None = None
    uv_index: Annotated[float, Field(ge=0, le=20)] | None = None
    battery: Annotated[float, Field(ge=0, le=100)] | None = None
    device: str | None = None
    depth: Annotated[float, Field(ge=0, le=100)] | None = None
    location: PydanticGeoPoint | None = None
    source: Annotated[str, Field(min_length=1)] | None = None


def _broker(impl: str, url: str) -> Any:
    if impl == "faststream-msgspec":
        return NatsBroker(url, logger=None, serializer=MsgSpecSerializer())
    if impl == "faststream-pydantic":
        return NatsBroker(url, logger=None)
    if impl == "faststream-defaults":
        return NatsBroker(url)
    raise ValueError(f"not a FastStream implementation: {impl}")


def _message(impl: str) -> Any:
    """The message as this implementation's users hold it: the contract, or its pydantic model."""
    if impl == "faststream-msgspec":
        return MESSAGE
    return PydanticBeachObservation.model_validate(msgspec.to_builtins(MESSAGE))


async def publisher(impl: str, url: str) -> Endpoint:
    """``NatsBroker.publish`` of the message, with the CloudEvents headers."""
    broker = _broker(impl, url)
    await broker.connect()
    message = _message(impl)

    async def send() -> None:
        await broker.publish(message, SUBJECT, headers=cloudevents_headers())

    async def flush() -> None:
        await broker.connection.flush(timeout=30)
        await broker.connection.flush(timeout=30)

    return Endpoint(send, flush, broker.stop)


async def subscriber(impl: str, url: str, arrived: Callable[[], None]) -> Endpoint:
    """A typed FastStream subscriber calling ``arrived`` for each valid message."""
    broker = _broker(impl, url)
    if impl == "faststream-msgspec":

        async def handle_contract(body: BeachObservation) -> None:
            arrived()

        broker.subscriber(FILTER)(handle_contract)
    else:

        async def handle_model(body: PydanticBeachObservation) -> None:
            arrived()

        broker.subscriber(FILTER)(handle_model)
    await broker.start()

    async def flush() -> None:
        await broker.connection.flush(timeout=30)
        await broker.connection.flush(timeout=30)

    await flush()

    async def nothing() -> None:
        pass

    return Endpoint(nothing, flush, broker.stop)
