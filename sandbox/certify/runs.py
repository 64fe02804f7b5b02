"""What a certification run is: the adapter under test (:class:`Target`), what it replays
(:class:`Scope`), what happens to it (:class:`RunSpec`), and the private city's configuration.

:func:`private_config` is the ``citybus.toml`` of one run's private city: an embedded
nats-server with access control in a data directory of its own, no ops port, JSON logs, ``[tracing]
export = false`` (the trace context is carried, nothing recorded), a ``sandbox-replay`` named
``replay`` that starts **paused**, neither loops nor shifts times to now, leaves out what the adapter
itself produces (the recorded day holds the city's own outputs of a built-in service) and applies
the run's fault plan with a ground-truth file; and the adapter's own section, from the user's
configuration, disabled (the adapter joins as a pilot from a process of its own).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.config import Config
from bus.errors import CityBusError
from sandbox.certify.model import Adapted, DetectionSpec
from sandbox.certify.suite import Restart, Slow

__all__ = ["REPLAY", "RunSpec", "Scope", "Target", "private_config", "target_of", "write_config"]

REPLAY = "replay"
"""The name of the private sandbox's replay instance (its clock is the adapter's)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What every run of a suite replays, and how fast."""

    recording: Path
    speed: float
    start: float = 0.0
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run: the clean one (no plan, no restart, no slow link) or one preset."""

    name: str
    seed: int
    plan: str = ""
    """A fault plan's TOML text (docs/faults.md); empty: none."""
    restart: Restart | None = None
    slow: Slow | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """The adapter under certification: its instance name, its configuration section, what it is."""

    instance: str
    section: Mapping[str, Any]
    adapted: Adapted


def private_config(target: Target, spec: RunSpec, scope: Scope, directory: Path) -> dict[str, Any]:
    """The run's ``citybus.toml`` as data (written next to its files for whoever looks)."""
    replay: dict[str, Any] = {
        "adapter": "sandbox-replay",
        "files": [str(scope.recording)],
        "speed": scope.speed,
        "loop": False,
        "start": scope.start,
        "shift_to_now": False,
        "paused": True,
        "clock_interval": 0.25,
        "exclude": list(target.adapted.produced_subjects),
    }
    if scope.duration is not None:
        replay["duration"] = scope.duration
    if spec.plan:
        plan = directory / "plan.toml"
        plan.write_text(spec.plan, encoding="utf-8")
        replay["faults"] = str(plan)
        replay["truth"] = str(directory / "truth.jsonl")
    section = {k: v for k, v in target.section.items() if k not in ("enabled", "clock", "account")}
    section["enabled"] = False  # the runtime does not run it: the child joins as a pilot
    return {
        "server": {"data_dir": str(directory / "data")},
        "ops": {"enabled": False},
        "log": {"format": "json", "level": "info"},
        "auth": {"mode": "on"},
        "tracing": {"enabled": True, "export": False},
        # a reconnect attempt every 0.1 wall seconds: at thousands of times real time, the default
        # second between attempts would be an hour of the day lost to a broker restart
        "nats": {"reconnect_wait": 0.1},
        "adapters": {REPLAY: replay, target.instance: section},
    }


def write_config(target: Target, spec: RunSpec, scope: Scope, directory: Path) -> Path:
    """Write the run's ``citybus.toml`` (and its fault plan) into ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "citybus.toml"
    config_file.write_text(_toml(private_config(target, spec, scope, directory)), encoding="utf-8")
    return config_file


def _toml(data: Mapping[str, Any]) -> str:
    """``data`` as TOML (tables of scalars and lists, as :func:`private_config` makes)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise CityBusError(f"cannot write {v!r} into the run's citybus.toml")

    def table(prefix: str, items: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in items.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in items.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in tables.items():
            table(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    table("", data)
    return "\n".join(lines) + "\n"


def target_of(name: str, config: Config) -> Target:
    """The adapter ``name`` (an installed adapter or a configured instance of ``config``) as certify
    runs it: its section, what it consumes and produces, and what it says it detects."""
    from adapters.cli import find_instance  # the command line's own lookup, with its errors
    from bus.subjects import contract_filter

    instance = find_instance(name, config)
    try:
        adapter = instance.create()
    except Exception as exc:  # the adapter's own code: said in one line, not a traceback
        raise CityBusError(
            f"adapter {instance.adapter.name} could not be created: {type(exc).__name__}: {exc}"
        ) from exc
    section = dict(config.adapters.get(instance.name) or {"adapter": instance.adapter.name})
    consumed = adapter.consumed()
    produced = adapter.produced()
    detections = [
        DetectionSpec(
            contract=d.contract.__contract__.name,
            field=d.field,
            kinds=dict(d.kinds),
            entity=d.entity or d.contract.__contract__.key,
            time=d.time or "",
        )
        for d in instance.adapter.detects
    ]
    adapted = Adapted(
        adapter=instance.adapter.name,
        instance=instance.name,
        source=f"/adapters/{instance.name}",
        consumes=[c.__contract__.name for c in consumed],
        produces=[c.__contract__.name for c in produced],
        consumed_subjects=[contract_filter(c) for c in consumed],
        produced_subjects=[contract_filter(c) for c in produced],
        detections=detections,
    )
    return Target(instance=instance.name, section=section, adapted=adapted)
