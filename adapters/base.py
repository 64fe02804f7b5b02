"""The adapter model: a class with a name, a config Struct, the contracts it consumes and
produces, and ``async run(ctx)``.

::

    class BeachSensors(Adapter[BeachConfig]):
        \"\"\"Vicotee beach units: VicPack uplinks in, beach observations out.\"\"\"

        name = "vicotee-beach"
        Config = BeachConfig
        consumes = ()
        produces = (BeachObservation,)

        async def run(self, ctx: Context) -> None:
            await ctx.subscribe_raw("ttn.>", self.on_uplink)
            ctx.ready()
            await ctx.wait_stopped()

An adapter only translates: it talks to the bus through its :class:`~adapters.context.Context`,
which refuses contracts it did not declare.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from bus.errors import CityBusError
from contracts import Classification, Contract, default_registry

if TYPE_CHECKING:
    from adapters.context import Context

__all__ = ["Adapter", "AdapterDeclarationError", "Detection", "NoConfig", "check_declaration"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


class AdapterDeclarationError(CityBusError, ValueError):
    """An adapter class is declared wrongly; the message names the adapter and the problem."""


class NoConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The configuration of an adapter that needs none."""


ConfigT = TypeVar("ConfigT", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class Detection:
    """What an adapter detects, and where it says so: outputs of ``contract`` whose ``field`` has
    one of the values of ``kinds`` report a fault of that kind on an entity.

    ``citybus certify`` matches them against the sandbox's ground truth by entity and time and
    scores precision and recall per kind (docs/certify.md)::

        detects = (Detection(SensorAlert, field="problem", kinds={"stuck": "stuck", "silent": "outage"}),)

    :param kinds: a value of ``field`` → the fault kind it reports (``drop``, ``duplicate``,
        ``reorder``, ``delay``, ``corrupt``, ``outage``, ``stuck``, ``skew``, ``restart``); values
        not listed (an "all clear") are not detections.
    :param entity: the field naming the entity the detection is about (default: the contract's
        key, the subject's last token).
    :param time: the field with the time it is about (default: the output's ``ce-time``).
    """

    contract: type[Contract]
    field: str
    kinds: Mapping[str, str]
    entity: str | None = None
    time: str | None = None


class Adapter(Generic[ConfigT]):
    """Base class of every adapter. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    """The adapter's name, in kebab case; also its entry-point name in ``citybus.adapters``."""
    Config: ClassVar[type[msgspec.Struct]] = NoConfig
    """The frozen Struct its ``[adapters.<instance>]`` section decodes into."""
    consumes: ClassVar[tuple[type[Contract], ...]] = ()
    """The contracts it subscribes to."""
    produces: ClassVar[tuple[type[Contract], ...]] = ()
    """The contracts it publishes (and those it answers requests with)."""
    answers: ClassVar[tuple[type[Contract], ...]] = ()
    """The request contracts it answers (``ctx.serve``): it receives them on
    ``city.<class>.rpc.<domain>.<event>.*`` and replies with a contract it produces."""
    detects: ClassVar[tuple[Detection, ...]] = ()
    """What it detects, for ``citybus certify`` to score (:class:`Detection`); usually nothing."""
    default_instance: ClassVar[str | None] = None
    """The instance name it runs as when the configuration names no adapters at all: ``citybus up``
    on a fresh machine runs every installed adapter that sets one (the sandbox's replay)."""
    default_section: ClassVar[Mapping[str, Any]] = {}
    """More keys of the section its :attr:`default_instance` runs with (``account``, ``clock``, its
    own settings): the gateway serves the sandbox's account when ``citybus up`` runs the defaults."""
    acts_for: ClassVar[bool] = False
    """True for an adapter that serves other users (the HTTP gateway): its context then opens
    connections as a user of its own account (:meth:`~adapters.context.Context.connect_as`), so that
    the broker judges what each caller may read, not the adapter."""
    declassifier: ClassVar[bool] = False
    """True for the rare adapter that consumes internal or personal data and publishes public data
    (an aggregate with privacy thresholds): the one door through which data may be declassified."""
    durable: ClassVar[bool] = False
    """True for an adapter that consumes durably (``ctx.consume``): the broker then lets it use the
    JetStream API of its own durable consumers, one per contract it consumes, and no other."""
    privacy: ClassVar[bool] = False
    """True for the privacy service alone (:mod:`adapters.privacy`): the broker lets it read and
    erase the stored messages of the personal streams and destroy keys in the vault, and its context
    hands it the bus and the configuration for that (:meth:`~adapters.context.Context.personal_data`)."""
    stores: ClassVar[tuple[str, ...]] = ()
    """Names of the key-value buckets it keeps (``ctx.key_value(name)``): state its replicas share
    and change by compare-and-set. The broker grants each instance its own buckets of these names."""
    recalls: ClassVar[tuple[type[Contract], ...]] = ()
    """Contracts it produces whose stored messages it reads back (``ctx.recall``): the state a
    restart or another replica rebuilds. The broker grants reading their streams."""
    control: ClassVar[str | None] = None
    """The component whose control requests it answers (``"replay"``: requests on
    ``citybus.control.replay.<instance>.<verb>``, and it publishes its clock on
    ``citybus.clock.<instance>``); ``None`` for an adapter that takes no control requests."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    async def run(self, ctx: Context) -> None:
        """Do the adapter's work until cancelled; call ``ctx.ready()`` once ready."""
        raise NotImplementedError

    def consumed(self) -> tuple[type[Contract], ...]:
        """The contracts this instance consumes: :attr:`consumes`, unless its config narrows or
        widens them (a bridge or an archive configured with the contracts it carries)."""
        return self.consumes

    def produced(self) -> tuple[type[Contract], ...]:
        """The contracts this instance produces: :attr:`produces` unless its config says otherwise."""
        return self.produces

    def raw_subjects(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The raw subjects (native formats, not contracts) this instance reads and writes, as NATS
        patterns: ``(subscribe, publish)``; by default none.

        An adapter that calls ``ctx.subscribe_raw`` or ``ctx.publish_raw`` outside its contracts
        (device uplinks, a bridge's topics) lists those subjects here: the broker grants each
        adapter exactly its contracts and these, and refuses the rest. Raw subjects stay outside
        ``city.``, ``citybus.``, ``_INBOX.`` and ``$…`` (see :mod:`bus.access`).
        """
        return ((), ())

    def owned(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The city's own entities this instance publishes, as ``(subjects, ce-sources)``; by
        default none.

        A replay owns what its recordings hold. The broker then refuses those subjects to every
        pilot, and a consumer takes those sources on no other subject (see :mod:`bus.access.policy`
        and :mod:`bus.origin`): a pilot cannot pass its readings off as the city's.
        """
        return ((), ())

    @classmethod
    def kind(cls) -> Literal["source", "service", "sink"]:
        """``source`` (only produces), ``sink`` (only consumes) or ``service`` (both)."""
        if cls.produces and cls.consumes:
            return "service"
        return "source" if cls.produces else "sink"

    @classmethod
    def summary(cls) -> str:
        """The first paragraph of the class docstring, on one line."""
        first = (cls.__doc__ or "").strip().split("\n\n", 1)[0]
        return " ".join(first.split())

    @classmethod
    def classifications(cls) -> set[Classification]:
        """Every classification among the contracts it consumes and produces."""
        return {c.__contract__.classification for c in (*cls.consumes, *cls.produces)}


def check_declaration(cls: Any) -> type[Adapter[Any]]:
    """Check that ``cls`` is a well-declared adapter; raise :class:`AdapterDeclarationError` if not."""
    label = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise AdapterDeclarationError(f"{label} is not a subclass of adapters.Adapter")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise AdapterDeclarationError(
            f"{label}: `name` must be a kebab-case string such as 'beach-sensors', got {name!r}"
        )
    config = cls.Config
    if not (isinstance(config, type) and issubclass(config, msgspec.Struct)):
        raise AdapterDeclarationError(f"adapter {name}: `Config` must be a msgspec.Struct class")
    registry = default_registry()
    for attr in ("consumes", "produces", "answers"):
        declared = getattr(cls, attr)
        if not isinstance(declared, tuple):
            raise AdapterDeclarationError(f"adapter {name}: `{attr}` must be a tuple of contract classes")
        for contract in declared:
            if not (isinstance(contract, type) and issubclass(contract, Contract)):
                raise AdapterDeclarationError(f"adapter {name}: {attr} lists {contract!r}, not a contract")
            if contract not in registry:
                raise AdapterDeclarationError(
                    f"adapter {name}: {attr} lists {contract.__qualname__}, "
                    "which is not a registered contract"
                )
    _check_detections(cls, name)
    if cls.run is Adapter.run or not inspect.iscoroutinefunction(cls.run):
        raise AdapterDeclarationError(f"adapter {name}: it must define `async def run(self, ctx)`")
    public = Classification.PUBLIC
    private_in = any(c.__contract__.classification is not public for c in (*cls.consumes, *cls.answers))
    public_out = any(c.__contract__.classification is public for c in cls.produces)
    if private_in and public_out and not cls.declassifier:
        raise AdapterDeclarationError(
            f"adapter {name}: it consumes internal or personal contracts and produces public ones; "
            "that makes it a declassifier, which it must say with `declassifier = True`"
        )
    return cls


def _check_detections(cls: type[Adapter[Any]], name: str) -> None:
    detects = cls.detects
    if not isinstance(detects, tuple) or not all(isinstance(d, Detection) for d in detects):
        raise AdapterDeclarationError(f"adapter {name}: `detects` must be a tuple of adapters.Detection")
    for detection in detects:
        contract = detection.contract
        if contract not in cls.produces:
            raise AdapterDeclarationError(
                f"adapter {name}: detects names {getattr(contract, '__qualname__', contract)!r}, "
                "which is not among the contracts it produces"
            )
        fields = set(contract.__struct_fields__)
        named = (("field", detection.field), ("entity", detection.entity), ("time", detection.time))
        for what, value in named:
            if value is not None and value not in fields:
                raise AdapterDeclarationError(
                    f"adapter {name}: detection {what} {value!r} is no field of {contract.__qualname__} "
                    f"(its fields: {', '.join(sorted(fields))})"
                )
        if not detection.kinds or not all(isinstance(k, str) and v for k, v in detection.kinds.items()):
            raise AdapterDeclarationError(
                f"adapter {name}: a detection's kinds map values of {detection.field!r} to fault kinds, "
                'for example {"stuck": "stuck"}'
            )
