"""Adapter instances from the configuration: ``[adapters.<instance>]`` sections.

::

    [adapters.beach]                 # the instance name: its queue group, durable names, user
    adapter = "vicotee-beach"        # which adapter (default: the instance name)
    enabled = true                   # default true
    clock = "sandbox"                # run on the time the replay "sandbox" keeps (default: wall clock)
    devices = { "a84041000181c4d1" = { site = "bragernes-strand", water_slot = 1 } }

    [adapters.mqtt-city]
    adapter = "mqtt-bridge"
    url = "mqtt://127.0.0.1:1883"

Several instances of one adapter are several sections. Every error names the instance, the
adapter, the key and what is allowed.

A table for a key whose default is itself a Struct (an adapter's ``source``, with the publisher's
URL and a sensible interval) is merged over that default, so ``[adapters.air.source]`` with only
``headers`` keeps the adapter's URL and interval. A Struct may name keys that exclude each other
in ``__exclusive__`` (a source's ``url`` and ``file``): setting one drops the others' defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters.base import Adapter
from bus.access import Account
from bus.errors import ConfigError

__all__ = ["Instance", "instances_from_config", "parse_instance"]

_INSTANCE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_RESERVED = ("adapter", "enabled", "clock")


REPLAY_CONTROL = "replay"
"""The control component of a replay: an adapter that answers it runs in ``SANDBOX``."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One configured adapter instance."""

    name: str
    adapter: type[Adapter[Any]]
    config: msgspec.Struct
    clock: str | None = None
    """The replay whose clock the instance runs on (``clock = "sandbox"``); ``None``: the wall clock."""

    def create(self) -> Adapter[Any]:
        """A fresh adapter object (one per start, so a restart begins from a clean state)."""
        return self.adapter(self.config)

    @property
    def account(self) -> str:
        """The broker account the instance runs in: ``SANDBOX`` for a replay (its adapter answers
        ``replay`` control requests) or an instance on a replay's clock — it handles replayed data,
        which must never reach production — else ``CITY``."""
        sandbox = self.adapter.control == REPLAY_CONTROL or self.clock is not None
        return Account.SANDBOX.value if sandbox else Account.CITY.value


def _allowed(struct: type[msgspec.Struct]) -> str:
    names = [f.name for f in msgspec.structs.fields(struct)]
    return ", ".join([*_RESERVED, *names])


def parse_instance(name: str, adapter: type[Adapter[Any]], table: dict[str, Any]) -> Instance:
    """Decode one ``[adapters.<name>]`` table into the adapter's Config; raise :class:`ConfigError`."""
    where = f"[adapters.{name}] ({adapter.name})"
    struct = adapter.Config
    values = {k: v for k, v in table.items() if k not in _RESERVED}
    fields = {f.name for f in msgspec.structs.fields(struct)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: {_allowed(struct)}")
    values = _over_defaults(struct, values)
    try:
        config = msgspec.convert(values, type=struct)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    clock = table.get("clock")
    if clock is not None and not (isinstance(clock, str) and _INSTANCE.match(clock)):
        raise ConfigError(
            f'{where}: clock must name the replay instance whose time it runs on, e.g. "sandbox"; '
            f"got {clock!r}"
        )
    return Instance(name, adapter, config, clock)


def _over_defaults(struct: type[msgspec.Struct], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each table for a Struct-valued key merged over that key's default Struct."""
    merged = dict(values)
    for field in msgspec.structs.fields(struct):
        given = values.get(field.name)
        if not isinstance(given, dict):
            continue
        default = field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory()
        if not isinstance(default, msgspec.Struct):
            continue
        base = msgspec.to_builtins(default)
        for group in getattr(type(default), "__exclusive__", ()):
            if any(key in given for key in group):
                for key in group:
                    base.pop(key, None)
        merged[field.name] = {**base, **_over_defaults(type(default), given)}
    return merged


def _describe(exc: msgspec.ValidationError) -> str:
    """msgspec says ``Expected `int`, got `str` - at `$.port```; say it with the key first."""
    text = str(exc)
    message, sep, path = text.rpartition(" - at `")
    if not sep:
        return text
    key = path.rstrip("`").removeprefix("$").lstrip(".") or "(the section)"
    return f"key {key}: {message}"


def instances_from_config(
    sections: dict[str, dict[str, Any]], adapters: dict[str, type[Adapter[Any]]]
) -> list[Instance]:
    """Every enabled instance in the ``adapters`` sections of the configuration, in file order."""
    found = []
    for name, table in sections.items():
        if not _INSTANCE.match(name):
            raise ConfigError(f"[adapters.{name}]: an instance name must be kebab case, e.g. 'mqtt-city'")
        adapter_name = table.get("adapter", name)
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"[adapters.{name}]: enabled must be true or false, not {enabled!r}")
        if not isinstance(adapter_name, str) or adapter_name not in adapters:
            known = ", ".join(sorted(adapters)) or "none installed"
            raise ConfigError(
                f"[adapters.{name}]: no adapter named {adapter_name!r} is installed; "
                f"installed adapters: {known}"
                + (
                    ""
                    if "adapter" in table
                    else ' (set `adapter = "NAME"` if the instance is named otherwise)'
                )
            )
        if enabled:
            found.append(parse_instance(name, adapters[adapter_name], table))
    return found
