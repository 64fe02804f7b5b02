"""Joined users: ``SANDBOX`` users that a running process holds for as long as it runs.

``citybus sandbox join INSTANCE`` puts a development adapter into the running sandbox without
restarting ``citybus up``: :func:`join` issues the instance a user of its own in ``SANDBOX``,
rebuilds ``accounts.conf`` with every user the running instance has (its components, the MQTT
users, the guests, the other joined users) plus this one, and reloads the server; :func:`leave`
takes the user out again and reloads. Joined users are recorded, with the process that holds
each, in ``joined.json`` in the credentials directory::

    {"joined": [{"name": "beach-advisor", "pid": 4242, "started": "123456", ...,
                 "declaration": {...}}]}

Decisions, and why:

* **A joined user is a guest.** It comes from outside — a company's adapter — so it is made like
  a pilot (:class:`~bus.access.policy.Kind` ``GUEST``): its own contracts, never personal data,
  no control requests, and never the city's own entities (:mod:`bus.access.policy`).
* **It lives as long as its process.** A crashed join (``kill -9``) cannot leave; its entry says
  which process held it (pid and that process's start time, so a reused pid is not taken for it),
  and :func:`prune_joined` drops the entries whose process is gone and revokes their credentials.
  ``join``, ``citybus auth generate`` and ``citybus up`` prune before they write
  ``accounts.conf``, so a dangling user lasts at most until the next of them; ``citybus auth``'s
  other commands and a restarted ``citybus up`` keep only the live ones.
* **Every other user is kept.** The model is rebuilt from what the running ``citybus up``
  recorded in ``instance.json`` (as ``citybus auth`` does), never from a configuration at hand,
  and the whole read-change-write runs under a lock on the credentials directory, so two joins (or
  a join and a leave) do not drop each other.
* **Leaving revokes.** The seed is deleted and the key left out; joining again under the same
  name issues new credentials (a copy of the old seed file no longer logs in).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bus.access.declared import (
    Declared,
    access_model,
    declaration_from_record,
    declaration_record,
    declared_from_record,
    discover_declarations,
    discover_providers,
)
from bus.access.guests import load_guests
from bus.access.keys import Credential, CredentialStore, write_private
from bus.access.login import Instance, process_alive, read_instance, reload_server
from bus.access.render import generate
from bus.access.users import Account, Declaration
from bus.config import Config
from bus.errors import CityBusError, ConfigError
from contracts import UnknownContractError, default_registry

if sys.platform != "win32":
    import fcntl

__all__ = [
    "JOINED_FILE",
    "Joined",
    "JoinedUser",
    "credentials_lock",
    "declared_buckets",
    "join",
    "joined_declarations",
    "leave",
    "load_joined",
    "prune_joined",
    "running_sandbox",
]

JOINED_FILE = "joined.json"
"""The joined users and the processes holding them, in the credentials directory."""
_LOCK_FILE = ".lock"


class Joined(msgspec.Struct, frozen=True, kw_only=True):
    """One joined user: its name, the process holding it, and its declaration."""

    name: str
    pid: int
    started: str = ""
    """The holding process's start time (``/proc/<pid>/stat``), so a reused pid is not taken for it."""
    joined_at: datetime
    declaration: dict[str, Any]
    """:func:`bus.access.declared.declaration_record` of its user."""

    def alive(self) -> bool:
        """Whether the process that joined still runs."""
        return _process_started(self.pid) == self.started if process_alive(self.pid) else False


class _File(msgspec.Struct, kw_only=True):
    joined: list[Joined] = msgspec.field(default_factory=list)


def _process_started(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (empty where /proc cannot say)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces: count from after it.
    return stat.rsplit(")", 1)[1].split()[19]


def load_joined(directory: Path) -> list[Joined]:
    """Every joined user recorded in ``directory`` (live or not)."""
    path = directory / JOINED_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=_File).joined
    except FileNotFoundError:
        return []
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}): remove it; then `citybus auth generate`") from None


def _save(directory: Path, joined: list[Joined]) -> None:
    write_private(directory / JOINED_FILE, msgspec.json.encode(_File(joined=joined)).decode() + "\n")


def joined_declarations(directory: Path) -> tuple[Declaration, ...]:
    """The declarations of the live joined users (a dead one's is left out)."""
    registry = default_registry()
    found = []
    for entry in load_joined(directory):
        if not entry.alive():
            continue
        try:
            found.append(declaration_from_record(entry.declaration, registry))
        except (KeyError, TypeError, ValueError, UnknownContractError) as exc:
            raise ConfigError(
                f"{directory / JOINED_FILE}: joined user {entry.name!r} cannot be read back ({exc}); "
                "stop its `citybus sandbox join`"
            ) from None
    return tuple(found)


@contextlib.contextmanager
def credentials_lock(directory: Path) -> Iterator[None]:
    """Hold the credentials directory for one read-change-write of its files."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if sys.platform == "win32":  # no flock: one command at a time is then up to the operator
        yield
        return
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def prune_joined(store: CredentialStore) -> list[str]:
    """Drop the joined users whose process is gone and revoke their credentials; their names.

    Call it holding :func:`credentials_lock`, before writing ``accounts.conf``.
    """
    entries = load_joined(store.directory)
    dead = [e for e in entries if not e.alive()]
    if not dead:
        return []
    _save(store.directory, [e for e in entries if e.alive()])
    for entry in dead:
        if store.seed_path(Account.SANDBOX.value, entry.name).exists():
            store.revoke(Account.SANDBOX.value, entry.name)
    return [e.name for e in dead]


def declared_buckets(config: Config) -> dict[Account, tuple[str, ...]]:
    """The key-value buckets declared in each account (what its provisioner creates): the running
    ``citybus up``'s and its joined users' — or, when none runs here, the configuration's."""
    info = read_instance(config)
    if info is None or info.auth is None or info.access is None:
        return discover_declarations(config).buckets()
    declared = declared_from_record(info.access.declared, default_registry())
    return (declared + Declared(guests=joined_declarations(Path(info.auth.credentials)))).buckets()


def running_sandbox(config: Config) -> tuple[Instance, Declared]:
    """The running ``citybus up`` and what it declared; a :class:`CityBusError` that says what to do
    when none runs, or it runs without access control."""
    info = read_instance(config)
    if info is None:
        raise CityBusError(
            f"no running citybus up found (looked in {config.resolved_data_dir()}): start `citybus up` "
            "first (or give its data dir with CITYBUS_SERVER_DATA_DIR)"
        )
    if info.auth is None or info.access is None:
        raise CityBusError(
            f"the running citybus up (pid {info.pid}) runs without access control: there is no sandbox "
            "account to join; run your adapter with `citybus adapters run NAME` instead"
        )
    return info, declared_from_record(info.access.declared, default_registry())


@dataclass(frozen=True, slots=True)
class JoinedUser:
    """What :func:`join` did: the user's credentials, and whether the server was reloaded."""

    credential: Credential
    reloaded: int | None
    """The pid of the reloaded nats-server, or ``None`` when none could be (an external one)."""
    pruned: tuple[str, ...]
    """Joined users of dead processes removed on the way."""


def _apply(config: Config, info: Instance, declared: Declared, joined: tuple[Declaration, ...]) -> Any:
    """``accounts.conf`` of the running instance's users, its guests and ``joined``."""
    assert info.auth is not None and info.access is not None
    store = CredentialStore(Path(info.auth.credentials))
    guests = tuple(
        g.declaration()
        for provider in discover_providers()
        for kind in provider.guests
        for g in load_guests(store.directory, kind)
    )
    everyone = Declared(declared.city, declared.sandbox, guests + joined, declared.on_demand)
    model = access_model(default_registry(), everyone, config, mqtt_users=tuple(info.access.mqtt_users))
    return store, model


def join(config: Config, declaration: Declaration, *, pid: int | None = None) -> JoinedUser:
    """Add ``declaration`` to the running sandbox as a user held by process ``pid`` (this one).

    Refuses (:class:`CityBusError`, one line) a name another user of ``SANDBOX`` has, and what the
    access model refuses (a personal contract, a declassification).
    """
    info, declared = running_sandbox(config)
    assert info.auth is not None
    directory = Path(info.auth.credentials)
    pid = os.getpid() if pid is None else pid
    with credentials_lock(directory):
        store = CredentialStore(directory)
        pruned = prune_joined(store)
        others = joined_declarations(directory)
        _, model = _apply(config, info, declared, others)
        taken = {u.name for u in model.users if u.account is Account.SANDBOX}
        if declaration.name in taken:
            user = model.user(Account.SANDBOX, declaration.name)
            raise CityBusError(
                f"the sandbox already has a user named {declaration.name!r} ({user.title}): join under "
                'another instance name (an [adapters.NAME] section with adapter = "...")'
            )
        store, model = _apply(config, info, declared, (*others, declaration))  # refuses what it must
        credential = store.generate(Account.SANDBOX.value, declaration.name, replace=True)
        entry = Joined(
            name=declaration.name,
            pid=pid,
            started=_process_started(pid),
            joined_at=datetime.now(UTC),
            declaration=declaration_record(declaration),
        )
        _save(directory, [*(e for e in load_joined(directory) if e.name != entry.name), entry])
        generate(model, store)
        reloaded = reload_server(config)
    return JoinedUser(credential, reloaded, tuple(pruned))


def leave(config: Config, name: str) -> int | None:
    """Take joined user ``name`` out of the running sandbox: revoke it, rewrite ``accounts.conf``
    and reload the server (whose pid is returned; ``None`` when none runs any more)."""
    info = read_instance(config)
    if info is None or info.auth is None or info.access is None:
        return None  # citybus up stopped first: its server, and the user with it, are gone
    declared = declared_from_record(info.access.declared, default_registry())
    directory = Path(info.auth.credentials)
    with credentials_lock(directory):
        kept = [e for e in load_joined(directory) if e.name != name]
        _save(directory, kept)
        store = CredentialStore(directory)
        if store.seed_path(Account.SANDBOX.value, name).exists():
            store.revoke(Account.SANDBOX.value, name)
        prune_joined(store)
        store, model = _apply(config, info, declared, joined_declarations(directory))
        generate(model, store)
        return reload_server(config)
