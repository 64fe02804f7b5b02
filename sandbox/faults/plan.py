"""The fault plan: what a replay is to do wrong, read from TOML and checked (reference: docs/faults.md)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

from bus.errors import CityBusError
from bus.subjects import validate_pattern

__all__ = [
    "CorruptFault",
    "DelayFault",
    "DropFault",
    "DuplicateFault",
    "FaultPlan",
    "FaultPlanError",
    "FaultSpec",
    "OutageFault",
    "ReorderFault",
    "SkewFault",
    "StuckFault",
]


class FaultPlanError(CityBusError, ValueError):
    """A fault plan that cannot be read or has a wrong value; the message names file, fault and key."""


# --- the plan ------------------------------------------------------------------------------------

_Probability = Annotated[float, Meta(ge=0, le=1, description="the chance that a matching message is hit")]
_Patterns = Annotated[list[str], Meta(description="NATS subject patterns of the messages it hits")]


def _default_subjects() -> list[str]:
    return ["city.>"]


class _Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """What every kind of fault has: the subjects it hits and an optional window of the replay."""

    subjects: _Patterns = msgspec.field(default_factory=_default_subjects)
    """The subjects (NATS patterns) of the messages it may hit."""
    start: Annotated[float, Meta(ge=0, description="seconds from the start of the replay")] = 0.0
    """Seconds of replay time from the start of the replay before it begins."""
    duration: Annotated[float, Meta(gt=0, description="seconds it lasts")] | None = None
    """Seconds of replay time it lasts; ``None`` (absent): to the end of the replay."""

    def __post_init__(self) -> None:
        if not self.subjects:
            raise ValueError("subjects must name at least one subject pattern, e.g. ['city.>']")
        for pattern in self.subjects:
            validate_pattern(pattern)


class DropFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="drop"):
    """Messages lost on the way; once triggered, ``burst`` matching messages in a row."""

    probability: _Probability
    """The chance that a matching message starts a burst."""
    burst: Annotated[int, Meta(ge=1, description="messages dropped in a row once triggered")] = 1
    """Matching messages dropped in a row once triggered (the first included)."""


class DuplicateFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="duplicate"):
    """The same message (same ``ce-id``) delivered again, as at-least-once delivery does."""

    probability: _Probability
    """The chance that a matching message is duplicated."""
    copies: Annotated[int, Meta(ge=1, le=100, description="extra copies published")] = 1
    """Extra copies published after the original."""
    gap: Annotated[float, Meta(ge=0, description="seconds between copies")] = 0.0
    """Replay seconds between the original and the first copy, and between copies."""


class ReorderFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="reorder"):
    """A run of ``window`` matching messages held back and released in a shuffled order."""

    probability: _Probability
    """The chance that a matching message starts a run."""
    window: Annotated[int, Meta(ge=2, le=1000, description="messages held and shuffled")]
    """Matching messages held and shuffled (the first included)."""


class DelayFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="delay"):
    """A message arriving late, by ``delay`` ± ``jitter`` seconds (never earlier than due)."""

    probability: _Probability
    """The chance that a matching message is delayed."""
    delay: Annotated[float, Meta(ge=0, description="seconds of delay")]
    """The mean delay in replay seconds."""
    jitter: Annotated[float, Meta(ge=0, description="seconds the delay varies either way")] = 0.0
    """The delay varies uniformly by up to this many seconds either way; it never goes below 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delay == 0 and self.jitter == 0:
            raise ValueError("delay and jitter are both 0, so nothing would be delayed; give delay > 0")


CorruptMode = Literal["truncate", "garble", "retype"]


class CorruptFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="corrupt"):
    """A body broken so that it fails its contract and lands in a consumer's dead letters."""

    probability: _Probability
    """The chance that a matching message is corrupted."""
    mode: Annotated[CorruptMode, Meta(description="how the body is broken")]
    """``truncate`` (cut in half), ``garble`` (bytes flipped) or ``retype`` (a field's type wrong)."""


class OutageFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="outage"):
    """A sensor gone silent: every matching message in the window is dropped."""

    start: Annotated[float, Meta(ge=0, description="seconds from the start of the replay")]
    """Seconds of replay time from the start of the replay before the outage begins."""
    duration: Annotated[float, Meta(gt=0, description="seconds the outage lasts")]
    """Seconds of replay time the outage lasts."""


class StuckFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="stuck"):
    """A flatlined sensor: in the window, each message repeats the values of the window's first."""

    start: Annotated[float, Meta(ge=0, description="seconds from the start of the replay")]
    """Seconds of replay time from the start of the replay before the sensor sticks."""
    duration: Annotated[float, Meta(gt=0, description="seconds the sensor stays stuck")]
    """Seconds of replay time the sensor stays stuck."""


class SkewFault(_Fault, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="skew"):
    """A device clock that is wrong: ``ce-time`` and body timestamps moved by ``skew`` seconds."""

    skew: Annotated[float, Meta(description="seconds the clock is ahead (negative: behind)")]
    """Seconds the device's clock is ahead; negative when it is behind."""
    sources: Annotated[list[str], Meta(description="ce-source values of the skewed devices")] = msgspec.field(
        default_factory=list
    )
    """``ce-source`` values of the devices whose clock is wrong; empty: every source."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.skew == 0:
            raise ValueError("skew = 0 would change nothing; give the seconds the clock is off")
        if any(not source for source in self.sources):
            raise ValueError("sources must be non-empty ce-source values, e.g. '/adapters/beach-sensors'")


FaultSpec = (
    DropFault
    | DuplicateFault
    | ReorderFault
    | DelayFault
    | CorruptFault
    | OutageFault
    | StuckFault
    | SkewFault
)
"""One fault of a plan, told apart by its ``kind``."""

_KINDS: Final[dict[str, type[_Fault]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        DropFault,
        DuplicateFault,
        ReorderFault,
        DelayFault,
        CorruptFault,
        OutageFault,
        StuckFault,
        SkewFault,
    )
}


class FaultPlan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A seed and the faults to inject, in the order they apply (docs/faults.md)."""

    seed: int = 0
    """Seeds every fault's random choices: same plan and seed, same faults."""
    faults: list[FaultSpec] = msgspec.field(default_factory=list)
    """The faults, applied in this order."""

    @classmethod
    def load(cls, path: Path) -> FaultPlan:
        """Read a plan from a TOML file; raise :class:`FaultPlanError` saying what is wrong and where."""
        origin = f"fault plan {path}"
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise FaultPlanError(f"{origin} not found: check the path") from None
        except IsADirectoryError:
            raise FaultPlanError(f"{origin} is a directory, not a TOML file") from None
        except UnicodeDecodeError as exc:
            raise FaultPlanError(f"{origin} is not UTF-8 text: {exc}") from None
        except OSError as exc:
            raise FaultPlanError(f"cannot read {origin}: {exc.strerror or exc}") from None
        return cls.loads(text, origin=origin)

    @classmethod
    def loads(cls, text: str, *, origin: str = "fault plan") -> FaultPlan:
        """Read a plan from TOML text; ``origin`` names it in error messages."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message ends with "(at line N, column M)".
            raise FaultPlanError(f"{origin} is not valid TOML: {exc}") from None
        return cls.from_dict(data, origin=origin)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "fault plan") -> FaultPlan:
        """Check and build a plan from plain data (a decoded TOML document)."""
        unknown = sorted(set(data) - {"seed", "faults"})
        if unknown:
            raise FaultPlanError(
                f"{origin}: unknown key {unknown[0]!r}; allowed top-level keys: faults, seed"
            )
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise FaultPlanError(f"{origin}: seed = {seed!r} is not allowed: expected an integer")
        tables = data.get("faults", [])
        if not isinstance(tables, list):
            raise FaultPlanError(f"{origin}: faults must be an array of tables ([[faults]])")
        return cls(seed=seed, faults=[_fault(table, i, origin) for i, table in enumerate(tables)])


def _fault(table: Any, index: int, origin: str) -> FaultSpec:
    """One ``[[faults]]`` table, checked key by key so the error names the key and what it allows."""
    where = f"{origin}: faults[{index}]"
    allowed_kinds = ", ".join(repr(k) for k in _KINDS)
    if not isinstance(table, dict):
        raise FaultPlanError(f"{where} must be a table ([[faults]]), not {table!r}")
    kind = table.get("kind")
    if kind is None:
        raise FaultPlanError(f"{where} has no kind; allowed kinds: {allowed_kinds}")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FaultPlanError(f"{where}: unknown kind {kind!r}; allowed kinds: {allowed_kinds}")
    where = f"{where} (kind {kind!r})"
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    for key, value in table.items():
        if key == "kind":
            continue
        field = fields.get(key)
        if field is None:
            raise FaultPlanError(
                f"{where}: unknown key {key!r}; allowed keys for {kind}: "
                + ", ".join(["kind", *sorted(fields)])
            )
        try:
            msgspec.convert(value, type=field.type)
        except msgspec.ValidationError:
            raise FaultPlanError(
                f"{where}: {key} = {value!r} is not allowed: expected {_describe(field.type)}"
            ) from None
    missing = [f for f in fields.values() if f.required and f.encode_name not in table]
    if missing:
        raise FaultPlanError(
            f"{where}: missing required key {missing[0].encode_name!r} "
            f"({_describe(missing[0].type)}); required for {kind}: "
            + ", ".join(f.encode_name for f in missing)
        )
    try:
        return msgspec.convert(table, type=cls)  # type: ignore[return-value]
    except msgspec.ValidationError as exc:  # the checks across keys in __post_init__
        raise FaultPlanError(f"{where}: {str(exc).removesuffix(' - at `$`')}") from None


def _describe(annotation: Any) -> str:
    """What a key accepts, in words: "a number from 0 to 1", "one of 'truncate', 'garble'"."""
    info = mi.type_info(annotation)
    description = ""
    if isinstance(info, mi.UnionType):  # ``x | None``: TOML has no null, so only x can be written
        info = next(t for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.Metadata):
        description = f" ({info.extra_json_schema.get('description')})" if info.extra_json_schema else ""
        info = info.type
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in info.values) + description
    if isinstance(info, mi.ListType):
        return "a list of strings" + description
    if isinstance(info, mi.IntType | mi.FloatType):
        noun = "an integer" if isinstance(info, mi.IntType) else "a number"
        bounds = [
            f"{op} {bound:g}"
            for op, bound in ((">", info.gt), (">=", info.ge), ("<", info.lt), ("<=", info.le))
            if bound is not None
        ]
        if info.ge is not None and info.le is not None:
            bounds = [f"from {info.ge:g} to {info.le:g}"]
        return " ".join([noun, " and ".join(bounds)]).strip() + description
    return "a string" + description
