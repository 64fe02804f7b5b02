"""The contract base class and the one place where a contract declares what it is.

A contract is a frozen, keyword-only :class:`msgspec.Struct`. Its identity — name, major version,
classification, entity key and an example — is declared once, with the :func:`contract` decorator,
which also validates the example against the contract's own constraints at import time, so a
contract whose example does not satisfy it cannot even be imported::

    @contract(
        "environment.beach-observation",
        version=1,
        classification=Classification.PUBLIC,
        key="site",
        example={"site": "bragernes-strand", ...},
    )
    class BeachObservation(Contract, frozen=True, kw_only=True):
        \"\"\"A reading of the water at a public beach.\"\"\"

        site: Annotated[str, Meta(description="...")]
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

if TYPE_CHECKING:
    from contracts.registry import Registry

__all__ = [
    "Classification",
    "Contract",
    "ContractError",
    "ContractInfo",
    "contract",
    "measure",
    "validate",
]

# ``rpc`` is the bus's request namespace (``city.<class>.rpc.…``), kept apart from stored events.
_RESERVED_DOMAINS = frozenset({"rpc"})
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\.[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


class ContractError(ValueError):
    """A contract is declared wrongly (bad name, unknown key field, invalid example…)."""


class Classification(enum.StrEnum):
    """Who may see a message: the second token of every subject, enforced by the broker.

    Norwegian municipal data platforms call these green (public), yellow (internal) and red;
    personal data is a class of its own and never leaves the adapters that declare it.
    """

    PUBLIC = "public"
    INTERNAL = "internal"
    PERSONAL = "personal"


class ContractInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a contract is, declared once by :func:`contract`."""

    name: str
    """``<domain>.<event>``, for example ``environment.beach-observation``."""
    version: int
    """The major version; a breaking change is a new version published side by side."""
    classification: Classification
    key: str
    """The field whose value identifies the entity (the subject's last token)."""
    example: Mapping[str, Any]
    """An example instance as plain data (what the JSON body looks like)."""
    reply: str | None = None
    """For a request (asked by request/reply on ``city.<class>.rpc.…``): the name of the contract it
    is answered with. ``None`` for the rest."""
    answers: str | None = None
    """For a reply: the name of the request contract it answers. ``None`` for the rest."""
    person: str | None = None
    """For personal data about one person: the field holding that person's pseudonymous id. A
    message of such a contract is sealed with the person's key on the bus (crypto-shredding), its
    subject names the person only by a pseudonym, and erasure and export find it by that id."""
    retention: timedelta | None = None
    """How long a message of a personal event contract may be kept after it was sent; expired
    messages are erased by the same path as an erasure request. ``None`` for the rest."""

    @property
    def sealed(self) -> bool:
        """Whether messages of this contract are sealed with a person's key: personal events about one
        person (requests and replies are never stored, so they travel as they are)."""
        return self.person is not None and self.exchange == "event"

    @property
    def exchange(self) -> str:
        """``event`` (published, stored in a stream), ``request`` or ``reply`` (request/reply: not stored)."""
        return "request" if self.reply else "reply" if self.answers else "event"

    @property
    def domain(self) -> str:
        """The first half of the name (``environment``)."""
        return self.name.partition(".")[0]

    @property
    def event(self) -> str:
        """The second half of the name (``beach-observation``)."""
        return self.name.partition(".")[2]

    @property
    def type(self) -> str:
        """The CloudEvents ``type`` of messages of this contract (``environment.beach-observation.v1``)."""
        return f"{self.name}.v{self.version}"

    @property
    def dataschema(self) -> str:
        """The CloudEvents ``dataschema``: a URN naming the contract's JSON Schema."""
        return f"urn:citybus:contract:{self.name}:v{self.version}"


class Contract(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every message contract. Subclasses are declared with :func:`contract`."""

    __contract__: ClassVar[ContractInfo]

    def entity(self) -> str:
        """The value of the contract's key field, as a string (the subject's entity)."""
        return str(getattr(self, self.__contract__.key))

    @classmethod
    def example(cls) -> Contract:
        """The contract's example instance."""
        return msgspec.convert(cls.__contract__.example, type=cls)

    @classmethod
    def summary(cls) -> str:
        """The first line of its docstring: what a message means in the city, in one line."""
        lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
        return lines[0] if lines else ""


C = TypeVar("C", bound=type[Contract])


def contract(
    name: str,
    *,
    version: int,
    classification: Classification | str,
    key: str,
    example: Mapping[str, Any],
    registry: Registry | None = None,
    reply: str | None = None,
    answers: str | None = None,
    person: str | None = None,
    retention: timedelta | None = None,
) -> Callable[[C], C]:
    """Declare a class as a contract: its name, major version, classification, key and example.

    The contract is added to ``registry`` (the default registry unless one is given). The
    declaration is checked on import: the name must be ``<domain>.<event>`` in kebab case, the
    key must be a field, and the example must decode into the contract with all its constraints.

    A contract asked and answered by request/reply says so: the request names its ``reply``
    contract, the reply the request it ``answers`` (``mobility.journey-request`` and
    ``mobility.journey-plan``). Such messages are not events: no stream keeps them, and the AsyncAPI
    document describes them as a request and its reply.

    Personal data declares what the law asks of it: ``person`` names the field holding the
    pseudonymous id of the person a message is about (``volunteer_id``), and a personal event
    states its ``retention``, how long it may be kept. Every personal event must state a
    retention; only personal or internal contracts may name a person.
    """
    if reply is not None and answers is not None:
        raise ContractError(f"contract {name}: it is a request (reply=) or a reply (answers=), not both")
    if not _NAME.match(name):
        raise ContractError(
            f"contract name {name!r} must be '<domain>.<event>' in lower kebab case, "
            "e.g. 'environment.beach-observation'"
        )
    if retention is not None and retention <= timedelta(0):
        raise ContractError(f"contract {name}: retention must be a positive duration, got {retention}")
    if name.partition(".")[0] in _RESERVED_DOMAINS:
        raise ContractError(f"contract {name}: the domain {name.partition('.')[0]!r} is reserved by the bus")
    if version < 1:
        raise ContractError(f"contract {name}: version must be 1 or more, got {version}")
    try:
        cls_ = Classification(classification)
    except ValueError:
        allowed = ", ".join(c.value for c in Classification)
        raise ContractError(
            f"contract {name}: classification {classification!r} is not one of {allowed}"
        ) from None

    from contracts.registry import default_registry

    def declare(cls: C) -> C:
        if not issubclass(cls, Contract):
            raise ContractError(f"contract {name}: {cls.__qualname__} must subclass Contract")
        params = inspect.signature(cls).parameters.values()
        positional = any(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in params)
        if positional or not cls.__struct_config__.frozen:
            # frozen=True is msgspec's default for a subclass of a frozen Struct, but type checkers
            # only see it when it is spelled out, so it is required here too.
            raise ContractError(
                f"contract {name}: declare it as "
                f"`class {cls.__qualname__}(Contract, frozen=True, kw_only=True)`"
            )
        if not cls.__doc__ or not cls.__doc__.strip():
            raise ContractError(f"contract {name}: {cls.__qualname__} needs a docstring")
        if person is not None and person not in cls.__struct_fields__:
            raise ContractError(
                f"contract {name}: person {person!r} is not a field of {cls.__qualname__} "
                f"(fields: {', '.join(cls.__struct_fields__)})"
            )
        if person is not None and cls_ is Classification.PUBLIC:
            raise ContractError(
                f"contract {name}: a public contract cannot be about a person (person={person!r}); "
                "classify it personal"
            )
        if cls_ is Classification.PERSONAL and reply is None and answers is None and retention is None:
            raise ContractError(
                f"contract {name}: a personal event must state how long it may be kept, "
                "e.g. retention=timedelta(days=365)"
            )
        if key not in cls.__struct_fields__:
            raise ContractError(
                f"contract {name}: key {key!r} is not a field of {cls.__qualname__} "
                f"(fields: {', '.join(cls.__struct_fields__)})"
            )
        cls.__contract__ = ContractInfo(
            name=name,
            version=version,
            classification=cls_,
            key=key,
            example=dict(example),
            reply=reply,
            answers=answers,
            person=person,
            retention=retention,
        )
        try:
            msgspec.convert(example, type=cls)
        except msgspec.ValidationError as exc:
            raise ContractError(f"contract {name}: the example does not validate: {exc}") from exc
        (registry if registry is not None else default_registry()).add(cls)
        return cls

    return declare


def measure(
    description: str,
    *,
    unit: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
) -> msgspec.Meta:
    """Field metadata for a measured quantity: a description, a UCUM-style unit and bounds.

    The unit is kept both in ``Meta.extra`` (for code) and as ``x-unit`` in the JSON Schema (for
    people and tools reading the schema).
    """
    extra: dict[str, Any] = {}
    schema: dict[str, Any] = {}
    if unit is not None:
        extra["unit"] = unit
        schema["x-unit"] = unit
    # Passed as a mapping: msgspec's type stubs accept only one lower and one upper bound per call.
    bounds: dict[str, Any] = {"ge": ge, "le": le, "gt": gt, "lt": lt}
    return msgspec.Meta(
        description=description,
        extra=extra or None,
        extra_json_schema=schema or None,
        **bounds,
    )


S = TypeVar("S", bound=msgspec.Struct)
_VALIDATORS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def validate(instance: S) -> S:
    """``instance`` checked against its constraints; raises :class:`msgspec.ValidationError` if one fails.

    A Struct's constructor checks nothing — not a pattern, not a bound — only decoding does. An
    adapter that builds a contract from outside data validates it before publishing, so a value the
    contract forbids (a water temperature of 60 °C) goes to the dead letters instead of the bus.
    """
    cls = type(instance)
    decoder = _VALIDATORS.get(cls)
    if decoder is None:
        decoder = _VALIDATORS[cls] = msgspec.json.Decoder(cls)
    result: S = decoder.decode(msgspec.json.encode(instance))
    return result
