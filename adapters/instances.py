"""Adapter instances from the configuration: ``[adapters.<instance>]`` sections.

::

    [adapters.beach]                 # the instance name: its queue group, durable names, user
    adapter = "vicotee-beach"        # which adapter (default: the instance name)
    enabled = true                   # default true
    devices = { "a84041000181c4d1" = { site = "bragernes-strand", water_slot = 1 } }

    [adapters.advisor]
    account = "sandbox"              # a pilot's product: replayed data only (default "city")
    # clock = "sandbox"              # the replay whose time it runs on: the default in SANDBOX
    # clock = "wall"                 # real time, even in SANDBOX

    [adapters.mqtt-city]
    adapter = "mqtt-bridge"
    url = "mqtt://127.0.0.1:1883"

Several instances of one adapter are several sections. Every error names the instance, the
adapter, the key and what is allowed.

**Account and clock.** An instance runs in ``SANDBOX`` when it is a replay (its adapter answers
``replay`` control requests), names a replay's clock (``clock = "sandbox"``) or says
``account = "sandbox"``; every other instance runs in ``CITY`` on the wall clock. An instance in
``SANDBOX`` runs on replayed time unless it says ``clock = "wall"``: by default on the clock of
:func:`default_replay` — the one replay instance the configuration names, or, when it names none,
the replay ``citybus up`` runs without configuration (``sandbox``). A configuration with several
replays makes each sandbox instance name its own. ``account = "city"`` with a replay's clock is
refused: replayed data must never reach production.

Decisions, and why: **the account is said (``account = "sandbox"``), the clock follows from it.**
Which account an instance runs in decides what data it may see, so it is a key of its own rather
than a side effect of the clock; and a sandbox instance on the wall clock is the exception (its
own ``clock = "wall"``), because replayed data runs up to 60× ahead of real time and a product
that reads it on the wall clock finds every reading in the future or hours old. ``wall`` is
therefore no replay's name.

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

__all__ = ["Instance", "WALL_CLOCK", "default_replay", "instances_from_config", "parse_instance"]

_INSTANCE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_RESERVED = ("adapter", "enabled", "clock", "account")
_ACCOUNTS = ("city", "sandbox")

WALL_CLOCK = "wall"
"""``clock = "wall"``: real time, also for an instance in ``SANDBOX`` (no replay may be named so)."""


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
    sandbox: bool = False
    """Whether it runs in ``SANDBOX`` on the wall clock (``account = "sandbox"``, ``clock = "wall"``):
    an instance on a replay's clock is in ``SANDBOX`` whatever this says."""

    def create(self) -> Adapter[Any]:
        """A fresh adapter object (one per start, so a restart begins from a clean state)."""
        return self.adapter(self.config)

    @property
    def account(self) -> str:
        """The broker account the instance runs in: ``SANDBOX`` for a replay (its adapter answers
        ``replay`` control requests) or an instance on a replay's clock — it handles replayed data,
        which must never reach production — else ``CITY``."""
        sandbox = self.adapter.control == REPLAY_CONTROL or self.clock is not None or self.sandbox
        return Account.SANDBOX.value if sandbox else Account.CITY.value


def _allowed(struct: type[msgspec.Struct]) -> str:
    names = [f.name for f in msgspec.structs.fields(struct)]
    return ", ".join([*_RESERVED, *names])


def parse_instance(
    name: str, adapter: type[Adapter[Any]], table: dict[str, Any], *, replay: str | None = None
) -> Instance:
    """Decode one ``[adapters.<name>]`` table into the adapter's Config; raise :class:`ConfigError`.

    ``replay`` is the replay instance whose clock an instance in ``SANDBOX`` runs on when its table
    names no clock (see :func:`default_replay`); ``None`` when there is none to follow.
    """
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
    clock, sandbox = _clock_and_account(where, adapter, table, replay)
    return Instance(name, adapter, config, clock, sandbox)


def _clock_and_account(
    where: str, adapter: type[Adapter[Any]], table: dict[str, Any], replay: str | None
) -> tuple[str | None, bool]:
    """The instance's clock (a replay's name, or ``None`` for the wall clock) and whether it is in
    ``SANDBOX`` on the wall clock, from its ``clock`` and ``account`` keys (see the module doc)."""
    clock = table.get("clock")
    if clock is not None and not (isinstance(clock, str) and _INSTANCE.match(clock)):
        raise ConfigError(
            f'{where}: clock must name the replay instance whose time it runs on, e.g. "sandbox", '
            f'or be "wall" for real time; got {clock!r}'
        )
    account = table.get("account")
    if account is not None and account not in _ACCOUNTS:
        raise ConfigError(f'{where}: account must be "city" or "sandbox", not {account!r}')
    is_replay = adapter.control == REPLAY_CONTROL
    if account == "city" and (is_replay or (clock is not None and clock != WALL_CLOCK)):
        why = "a replay" if is_replay else f'on the replay {clock!r}\'s clock (clock = "{clock}")'
        raise ConfigError(
            f'{where}: account = "city" but the instance is {why}: replayed data must never reach '
            'production; leave account out (it runs in SANDBOX) or set clock = "wall"'
        )
    if clock == WALL_CLOCK:
        return None, account == "sandbox" or is_replay
    if clock is not None or account != "sandbox" or is_replay:
        return clock, False  # a replay keeps its own time; a CITY instance the wall clock's
    if replay is None:
        raise ConfigError(
            f'{where}: account = "sandbox" runs it on a replay\'s time, but no single replay is '
            'configured to follow: name one with clock = "<replay instance>", or set clock = "wall"'
        )
    return replay, False


def default_replay(
    sections: dict[str, dict[str, Any]], adapters: dict[str, type[Adapter[Any]]]
) -> str | None:
    """The replay whose clock an instance in ``SANDBOX`` follows unless it names one: the one
    enabled replay instance in ``sections``; when they configure none, the one replay adapter's
    ``default_instance`` (what ``citybus up`` runs without configuration: ``sandbox``); ``None``
    when there are several, or none at all."""
    configured = [
        name
        for name, table in sections.items()
        if table.get("enabled", True) is True
        and (cls := adapters.get(str(table.get("adapter", name)))) is not None
        and cls.control == REPLAY_CONTROL
    ]
    if configured:
        return configured[0] if len(configured) == 1 else None
    defaults = [
        cls.default_instance
        for cls in adapters.values()
        if cls.control == REPLAY_CONTROL and cls.default_instance is not None
    ]
    return defaults[0] if len(defaults) == 1 else None


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
    sections: dict[str, dict[str, Any]],
    adapters: dict[str, type[Adapter[Any]]],
    *,
    whole: dict[str, dict[str, Any]] | None = None,
) -> list[Instance]:
    """Every enabled instance in the ``adapters`` sections of the configuration, in file order.

    ``whole`` is the configuration's every section when ``sections`` is a part of it (one instance
    run on its own): the replay a sandbox instance follows by default is found among them."""
    found = []
    replay = default_replay(sections if whole is None else whole, adapters)
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
        if name == WALL_CLOCK and adapters[adapter_name].control == REPLAY_CONTROL:
            raise ConfigError(
                f'[adapters.{name}]: a replay may not be named "{name}": clock = "wall" means real time'
            )
        if enabled:
            found.append(parse_instance(name, adapters[adapter_name], table, replay=replay))
    return found
