"""Certification suites: named, versioned sets of fault presets, and how a suite file is read.

A suite (a TOML file, docs/certify.md "Suites and presets") says how the recorded day is replayed
(``speed``, ``start``, ``duration``), the ``seed``, the :class:`~sandbox.certify.model.Thresholds` a
run must meet, and its ``[[presets]]``: each a fault plan of docs/faults.md whose ``subjects`` may
name *targets* (:data:`TARGETS`) instead of subjects and whose ``hits`` may stand for a
``probability``; or a broker ``restart``, or a ``slow`` link to the broker, which certify injects
itself. :func:`load_suite` reads a shipped suite (``default``, ``quick``: ``suites/*.toml`` next to
this module) or a company's file; :mod:`sandbox.certify.aim` turns a preset into the concrete fault
plan of one adapter and seed.

Decisions, and why:

* **Checked where it is read, in one line.** Every key of a suite, a preset, a threshold and a
  fault is checked when the suite loads, so a mistake costs nothing but the error: the line names
  the file, ``presets[i] (name)``, the key and what is allowed. A fault's keys are checked by the
  real fault-plan loader (targets and ``hits`` stood in for), so its words are the loader's.
* **A company's plan file is read at load too** (``plan = FILE``, relative to the suite file), with
  the same targets allowed: a missing file fails before anything runs.
* **``include`` extends, it does not merge deeply.** The included suite's presets come first, a
  preset of the same name replaces its own in place, thresholds are overridden key by key, the
  replay keys (``speed``, ``start``, ``duration``, ``seed``, ``description``) when given; ``name``
  and ``version`` are always the including suite's, since it is another suite.
* **A preset may not be called ``clean``**: that is the run without faults.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from bus.errors import ConfigError
from bus.subjects import validate_pattern
from sandbox.certify.model import Thresholds
from sandbox.faults import FaultPlan, FaultPlanError, FaultSpec

__all__ = [
    "SUITES",
    "TARGETS",
    "Preset",
    "Restart",
    "Slow",
    "Suite",
    "SuiteError",
    "load_suite",
    "shipped_suites",
]

SUITES: Final = Path(__file__).resolve().parent / "suites"
"""Where the shipped suites are (``default.toml``, ``quick.toml``)."""
TARGETS: Final = ("@consumed", "@one")
"""What a preset's ``subjects`` may name instead of a subject pattern."""
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_KINDS: Final[dict[str, type[Any]]] = {t.__struct_config__.tag: t for t in typing.get_args(FaultSpec)}
_RATIOS: Final = frozenset({"liveness", "precision", "recall"})


class SuiteError(ConfigError):
    """A suite that cannot be read, or a preset that cannot be aimed; one line naming file, preset, key."""


class Restart(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Certify stops the broker at replay second ``at`` and starts it again ``down`` wall seconds later."""

    at: Annotated[float, Meta(ge=0)]
    """Replay seconds from the start of the replay."""
    down: Annotated[float, Meta(gt=0, le=60)]
    """Wall-clock seconds the broker stays down."""


class Slow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The adapter's link to the broker delays every chunk of traffic by ``latency`` wall seconds,
    from replay second ``start`` for ``duration`` replay seconds."""

    start: Annotated[float, Meta(ge=0)] = 0.0
    duration: Annotated[float, Meta(gt=0)] | None = None
    """Replay seconds; ``None``: to the end of the replay."""
    latency: Annotated[float, Meta(gt=0, le=10)]
    """Wall-clock seconds added to every chunk, both ways."""


class Preset(msgspec.Struct, frozen=True, kw_only=True):
    """One faulted run of a suite: fault templates, and/or a broker restart or a slow link."""

    name: str
    description: str = ""
    faults: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Faults of docs/faults.md as tables, checked; ``subjects`` may name :data:`TARGETS`, ``hits``
    may stand for ``probability``. A preset with ``plan = FILE`` holds that file's faults."""
    plan: str | None = None
    """The fault-plan file the faults came from (as the suite wrote it), or ``None``: inline."""
    restart: Restart | None = None
    slow: Slow | None = None


class Suite(msgspec.Struct, frozen=True, kw_only=True):
    """A certification suite: how the day is replayed, what a run must meet, and its presets."""

    name: str
    version: int
    description: str = ""
    speed: float = 4320.0
    """Replay speed (times real time)."""
    start: float = 0.0
    """Seconds into the recording where the replay starts."""
    duration: float | None = None
    """Seconds of the recording replayed; ``None``: to its end."""
    seed: int = 0
    thresholds: Thresholds = msgspec.field(default_factory=Thresholds)
    presets: list[Preset] = msgspec.field(default_factory=list)
    path: str = ""
    """The file it was read from."""

    def preset(self, name: str) -> Preset:
        """The preset called ``name``; :class:`SuiteError` listing the names when there is none."""
        for preset in self.presets:
            if preset.name == name:
                return preset
        names = ", ".join(p.name for p in self.presets)
        raise SuiteError(f"suite {self.name}: no preset {name!r}; its presets: {names}")


def shipped_suites() -> list[str]:
    """The names of the suites citybus ships (``default``, ``quick``)."""
    return sorted(p.stem for p in SUITES.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name, or a suite file by path; :class:`SuiteError` saying what is wrong."""
    return _load(_locate(name_or_path, None), ())


# -- reading a suite --------------------------------------------------------------------------------


def _locate(name_or_path: str, base: Path | None) -> Path:
    """A shipped suite's file, or the path as given (relative to ``base``: the including suite's folder)."""
    if name_or_path in shipped_suites():
        return SUITES / f"{name_or_path}.toml"
    path = Path(name_or_path) if base is None else base / name_or_path
    if "/" in name_or_path or name_or_path.endswith(".toml") or path.exists():
        return path
    shipped = ", ".join(shipped_suites())
    raise SuiteError(
        f"unknown suite {name_or_path!r}: shipped suites are {shipped}, or give a suite file (.toml)"
    )


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{what} not found: check the path") from None
    except IsADirectoryError:
        raise SuiteError(f"{what} is a directory, not a TOML file") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{what} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise SuiteError(f"cannot read {what}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{what} is not valid TOML: {exc}") from None


_TOP: Final[dict[str, Any]] = {
    "name": str,
    "version": Annotated[int, Meta(ge=1)],
    "description": str,
    "include": str,
    "speed": Annotated[float, Meta(gt=0, le=1_000_000)],
    "start": Annotated[float, Meta(ge=0)],
    "duration": Annotated[float, Meta(gt=0)],
    "seed": int,
    "thresholds": dict,
    "presets": list,
}
_REPLAY: Final = ("description", "speed", "start", "duration", "seed")
"""The keys an including suite takes from the included one unless it gives them."""
_WORDS: Final = {
    "name": "a string",
    "version": "an integer >= 1",
    "description": "a string",
    "include": "a shipped suite's name or a suite file",
    "speed": "a number > 0 and <= 1000000 (times real time)",
    "start": "a number >= 0 (seconds)",
    "duration": "a number > 0 (seconds)",
    "seed": "an integer",
    "thresholds": "a table ([thresholds])",
    "presets": "an array of tables ([[presets]])",
}


def _load(path: Path, seen: tuple[Path, ...]) -> Suite:
    where = f"suite {path}"
    if path.resolve() in seen:
        raise SuiteError(f"{where}: include goes round in a circle ({' -> '.join(map(str, seen))})")
    data = _read_toml(path, where)
    for key, value in data.items():
        if key not in _TOP:
            raise SuiteError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(sorted(_TOP))}")
        if not _fits(value, _TOP[key]):
            raise SuiteError(f"{where}: {key} = {value!r} is not allowed: expected {_WORDS[key]}")
    for key in ("name", "version"):
        if key not in data:
            raise SuiteError(f"{where}: missing required key {key!r} ({_WORDS[key]})")
    if not _NAME.match(data["name"]):
        raise SuiteError(f"{where}: name = {data['name']!r} is not allowed: expected a-z, 0-9 and '-'")
    base = (
        _load(_locate(data["include"], path.parent), (*seen, path.resolve())) if "include" in data else None
    )
    presets = list(base.presets) if base else []
    names = set()
    for index, table in enumerate(data.get("presets", [])):
        preset = _preset(table, f"{where}: presets[{index}]", path.parent)
        if preset.name in names:
            raise SuiteError(f"{where}: presets[{index}]: a second preset named {preset.name!r}")
        names.add(preset.name)
        replaced = [i for i, p in enumerate(presets) if p.name == preset.name]
        if replaced:
            presets[replaced[0]] = preset  # extending a suite: a preset of the same name replaces its own
        else:
            presets.append(preset)
    if not presets:
        raise SuiteError(f"{where}: no presets; give at least one [[presets]] (or include a suite)")
    inherited: dict[str, Any] = msgspec.structs.asdict(base) if base else {}
    replay: dict[str, Any] = {k: inherited[k] for k in _REPLAY if base}
    replay.update({k: data[k] for k in _REPLAY if k in data})
    thresholds = _thresholds(data.get("thresholds", {}), base.thresholds if base else Thresholds(), where)
    return msgspec.convert(
        {
            **replay,
            "name": data["name"],
            "version": data["version"],
            "thresholds": thresholds,
            "presets": presets,
            "path": str(path),
        },
        type=Suite,
        from_attributes=True,
    )


def _fits(value: Any, annotation: Any) -> bool:
    try:
        msgspec.convert(value, type=annotation)
    except msgspec.ValidationError:
        return False
    return True


def _thresholds(table: Mapping[str, Any], base: Thresholds, where: str) -> Thresholds:
    fields = {f.name: f for f in msgspec.structs.fields(Thresholds)}
    for key, value in table.items():
        item = fields.get(key)
        if item is None:
            raise SuiteError(
                f"{where}: thresholds: unknown key {key!r}; allowed keys: {', '.join(sorted(fields))}"
            )
        noun = "an integer" if item.type is int else "a number"
        low, high = (0, 1) if key in _RATIOS else (0, None)
        ok = _fits(value, item.type) and value >= low and (high is None or value <= high)
        if key == "liveness_window":
            ok, words = ok and value > 0, f"{noun} > 0 (replay seconds)"
        else:
            words = f"{noun} from 0 to 1 (a share)" if high else f"{noun} >= 0"
        if not ok:
            raise SuiteError(f"{where}: thresholds: {key} = {value!r} is not allowed: expected {words}")
    return msgspec.convert({**msgspec.structs.asdict(base), **table}, type=Thresholds)  # ints as floats


_PRESET_KEYS: Final = ("name", "description", "faults", "plan", "restart", "slow")


def _preset(table: Any, where: str, base: Path) -> Preset:
    if not isinstance(table, dict):
        raise SuiteError(f"{where} must be a table ([[presets]])")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or name == "clean":
        raise SuiteError(
            f"{where}: name = {name!r} is not allowed: "
            "expected a name of a-z, 0-9 and '-' ('clean' is the clean run)"
        )
    where = f"{where} ({name})"
    for key in table:
        if key not in _PRESET_KEYS:
            raise SuiteError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(sorted(_PRESET_KEYS))}")
    if not isinstance(table.get("description", ""), str):
        raise SuiteError(f"{where}: description must be a string")
    extra: dict[str, Any] = {}
    for key, cls in (("restart", Restart), ("slow", Slow)):
        if key in table:
            extra[key] = _struct(table[key], cls, key, where)
    plan = table.get("plan")
    if plan is not None and "faults" in table:
        raise SuiteError(f"{where}: give either plan = FILE or [[presets.faults]], not both")
    if plan is not None:
        if not isinstance(plan, str):
            raise SuiteError(
                f"{where}: plan = {plan!r} is not allowed: expected a fault-plan file (a string)"
            )
        what = f"{where}: plan {base / plan}"
        data = _read_toml(base / plan, what)
        unknown = sorted(set(data) - {"seed", "faults"})
        if unknown:
            raise SuiteError(f"{what}: unknown key {unknown[0]!r}; allowed top-level keys: faults, seed")
        faults, origin = data.get("faults", []), what
    else:
        faults, origin = table.get("faults", []), where
    if not isinstance(faults, list):
        raise SuiteError(f"{origin}: faults must be an array of tables")
    templates = [_template(fault, i, origin) for i, fault in enumerate(faults)]
    if not (templates or extra):
        raise SuiteError(f"{where}: it does nothing; give faults, plan, restart or slow")
    description = table.get("description", "")
    return Preset(name=name, description=description, faults=templates, plan=plan, **extra)


_KEYS_OF: Final[dict[str, dict[str, str]]] = {
    "restart": {"at": "a number >= 0 (replay seconds)", "down": "a number > 0 and <= 60 (wall seconds)"},
    "slow": {
        "start": "a number >= 0 (replay seconds)",
        "duration": "a number > 0 (replay seconds)",
        "latency": "a number > 0 and <= 10 (wall seconds)",
    },
}
"""What each key of ``restart`` and ``slow`` accepts, in words."""


def _struct(value: Any, cls: type[Any], key: str, where: str) -> Any:
    """``restart = {...}`` or ``slow = {...}``, checked key by key."""
    where = f"{where}: {key}"
    words = _KEYS_OF[key]
    if not isinstance(value, dict):
        raise SuiteError(f"{where} must be a table, e.g. {{ {', '.join(f'{k} = ...' for k in words)} }}")
    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    for name, item in value.items():
        if name not in fields:
            raise SuiteError(f"{where}: unknown key {name!r}; allowed keys: {', '.join(words)}")
        if not _fits(item, fields[name].type):
            raise SuiteError(f"{where}: {name} = {item!r} is not allowed: expected {words[name]}")
    missing = [f.name for f in fields.values() if f.required and f.name not in value]
    if missing:
        raise SuiteError(f"{where}: missing required key {missing[0]!r} ({words[missing[0]]})")
    return msgspec.convert(value, type=cls)


def _template(table: Any, index: int, origin: str) -> dict[str, Any]:
    """One fault template, checked by the real plan loader with its targets and ``hits`` stood in for."""
    where = f"{origin}: faults[{index}]"
    if not isinstance(table, dict):
        raise SuiteError(f"{where} must be a table ([[faults]])")
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        _check_fault(table, index, origin)  # the plan loader's words for a missing or unknown kind
    where = f"{where} (kind {kind!r})"
    subjects = table.get("subjects", ["city.>"])
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, str) for s in subjects):
        raise SuiteError(
            f"{where}: subjects = {subjects!r} is not allowed: expected a list of patterns or targets"
        )
    for subject in subjects:
        if subject.startswith("@"):
            if subject not in TARGETS:
                raise SuiteError(
                    f"{where}: subjects: unknown target {subject!r}; targets: {', '.join(TARGETS)}"
                )
            continue
        try:
            validate_pattern(subject)
        except ValueError as exc:
            raise SuiteError(f"{where}: {exc}") from None
    stand_in = {**table, "subjects": [s if not s.startswith("@") else "city.>" for s in subjects]}
    if "hits" in table:
        hits = stand_in.pop("hits")
        cls = _KINDS.get(kind) if isinstance(kind, str) else None
        if cls is not None and "probability" not in {f.name for f in msgspec.structs.fields(cls)}:
            raise SuiteError(f"{where}: hits is only for kinds with a probability, not {kind}")
        if "probability" in table:
            raise SuiteError(f"{where}: give hits or probability, not both")
        if isinstance(hits, bool) or not isinstance(hits, int | float) or not hits > 0:
            raise SuiteError(f"{where}: hits = {hits!r} is not allowed: expected a number > 0 (messages hit)")
        stand_in["probability"] = 0.5
    _check_fault(stand_in, index, origin)
    return dict(table)


def _check_fault(table: Mapping[str, Any], index: int, origin: str) -> FaultSpec:
    try:
        plan = FaultPlan.from_dict({"faults": [table]}, origin=origin)
    except FaultPlanError as exc:
        raise SuiteError(str(exc).replace("faults[0]", f"faults[{index}]", 1)) from None
    return plan.faults[0]
