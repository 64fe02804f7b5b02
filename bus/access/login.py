"""Login: how client commands find a running ``citybus up`` and log in to it.

``citybus up`` writes ``instance.json`` into its data directory (:func:`instance_file`): its pid, the
NATS, MQTT and ops URLs, its server's pid, where its credentials are and which account client
commands read, and the certificate to trust. The commands (``tail``, ``publish``, ``record``,
``sandbox``, ``adapters run``, ``auth``) read it with :func:`read_instance`, connect as the user
:func:`client_login` resolves, and ``citybus auth`` reloads its server with :func:`reload_server`.

Decisions, and why:

* **One typed record, written and read here.** ``instance.json`` is an :class:`Instance` (a msgspec
  Struct), written by :func:`write_instance` and read by :func:`read_instance` only, so a field
  is named in one place and a misspelt or mistyped one is caught where it is read, not three
  modules later as a ``KeyError``.
* **A version field.** A file of another version (a ``citybus up`` of an older or newer citybus
  still running) is not guessed at: :func:`read_instance` says so in one line, and the command
  asks for a restart. A file without one is version 1, the shape before the field existed.
* **Private, and written whole.** The NATS URL may carry credentials: the file is created 0600,
  written to a temporary name and renamed over the old one, so a reader sees the old or the new.
* **A dead pid is no instance.** A file left by a ``citybus up`` that was killed is ignored.
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bus import subjects
from bus.access.keys import CredentialError, CredentialStore, seed_public_key
from bus.access.users import Account
from bus.bus import Bus
from bus.config import Config
from bus.errors import CityBusError, ConfigError

__all__ = [
    "INSTANCE_FILE",
    "INSTANCE_VERSION",
    "Instance",
    "InstanceAccess",
    "InstanceAuth",
    "Login",
    "account_name",
    "client_login",
    "forget_instance",
    "instance_file",
    "nats_url_for_client",
    "process_alive",
    "read_instance",
    "reload_server",
    "running_instance",
    "seed_file_options",
    "tls_context",
    "write_instance",
]

INSTANCE_FILE = "instance.json"
INSTANCE_VERSION = 1
"""The version of ``instance.json`` this citybus writes and reads."""


class InstanceAuth(msgspec.Struct, frozen=True, kw_only=True):
    """How client commands log in to a running instance under access control."""

    credentials: str
    """The credentials directory."""
    account: str
    """The account client commands read by default (``SANDBOX`` when only the sandbox runs)."""


class InstanceAccess(msgspec.Struct, frozen=True, kw_only=True):
    """What ``citybus auth`` needs to rebuild the running instance's access model."""

    declared: dict[str, list[dict[str, Any]]]
    """The declarations (:func:`bus.access.declared.declared_record`)."""
    mqtt_users: list[str]
    users: list[str]
    """``ACCOUNT/user`` of every user it runs as (never dropped by ``citybus auth``)."""


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """``instance.json``: how to reach a running ``citybus up``."""

    version: int = INSTANCE_VERSION
    pid: int
    nats_url: str
    mqtt_url: str | None = None
    ops_url: str | None = None
    server_pid: int | None = None
    auth: InstanceAuth | None = None
    """How client commands log in, under access control; ``None`` without it."""
    tls_ca: str | None = None
    """The certificate to trust (the configured CA, or the embedded server's own)."""
    config_file: str | None = None
    """The file its configuration was read from, if any."""
    access: InstanceAccess | None = None


def instance_file(config: Config) -> Path:
    """Where a running ``citybus up`` says how to reach it (NATS URL, ops URL, pid)."""
    return config.resolved_data_dir() / INSTANCE_FILE


def write_instance(config: Config, instance: Instance) -> Path:
    """Write ``instance.json`` (0600, whole) into the data directory of ``config``."""
    path = instance_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # The URL may carry credentials: readable by this user only.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.encode(instance))
    tmp.replace(path)
    return path


def forget_instance(config: Config) -> None:
    """Remove ``instance.json`` if this process wrote it (another may have started since)."""
    path = instance_file(config)
    try:
        if msgspec.json.decode(path.read_bytes(), type=_Head).pid == os.getpid():
            path.unlink()
    except (OSError, msgspec.DecodeError):
        pass


class _Head(msgspec.Struct):
    """What every version of ``instance.json`` has: its version and the pid that wrote it."""

    pid: int
    version: int = INSTANCE_VERSION


def read_instance(config: Config) -> Instance | None:
    """The running instance's description, or ``None`` if none runs on this data directory.

    A running instance's file of another version is a :class:`~bus.errors.CityBusError` that says
    what to do; an unreadable file, or one whose pid is gone, is no instance.
    """
    path = instance_file(config)
    try:
        data = path.read_bytes()
        head = msgspec.json.decode(data, type=_Head)
    except (OSError, msgspec.DecodeError):
        return None
    if not process_alive(head.pid):
        return None
    if head.version != INSTANCE_VERSION:
        raise CityBusError(
            f"the running citybus up (pid {head.pid}) wrote {path} in version {head.version}, and this "
            f"citybus reads version {INSTANCE_VERSION}: run the citybus it runs, or restart it with this one"
        )
    try:
        return msgspec.json.decode(data, type=Instance)
    except msgspec.DecodeError:
        return None


def running_instance(config: Config, directory: Path) -> Instance | None:
    """The running ``citybus up`` whose credentials are ``directory``, if one runs."""
    info = read_instance(config)
    if (
        info is not None
        and info.auth is not None
        and Path(info.auth.credentials).resolve() == directory.resolve()
    ):
        return info
    return None


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def nats_url_for_client(config: Config, override: str | None = None) -> str:
    """The NATS URL a client command should use: ``--nats``, the config, or the running ``citybus up``."""
    if override:
        return override
    if config.nats.url:
        return config.nats.url
    info = read_instance(config)
    if info is None or not info.nats_url:
        raise CityBusError(
            f"no running `citybus up` found (looked for {instance_file(config)}): start `citybus up`, "
            "or say which NATS server to use with --nats URL or CITYBUS_NATS_URL"
        )
    return info.nats_url


@dataclass(frozen=True, slots=True)
class Login:
    """Where and as whom a client command connects: ``bus.connect(login.url, **login.options)``."""

    url: str
    options: dict[str, Any]
    """nats-py ``connect`` options: the seed *file*, the inbox prefix, TLS."""
    user: str = ""
    """``ACCOUNT/name``, or empty for an anonymous connection."""

    async def connect(self, bus: Bus, config: Config, **options: Any) -> None:
        """Connect ``bus`` as this login, with the configured connect timeout."""
        bus.user = self.user
        await bus.connect(self.url, connect_timeout=config.nats.connect_timeout, **options, **self.options)


def client_login(
    config: Config,
    *,
    nats: str | None = None,
    user: str | None = None,
    account: str | None = None,
    nkey: Path | None = None,
    default_user: str | None = "internal",
    default_account: str | None = None,
) -> Login:
    """How a client command connects: to ``--nats``, the configured URL or the running ``citybus up``,
    as ``--user`` of ``--account`` (default ``default_user`` in the account the running instance
    reads: ``SANDBOX`` when only the sandbox runs), or with a seed file (``--nkey``).

    Against a running ``citybus up`` its access control decides; against a given URL, credentials
    are used when ``auth.mode = "on"`` or a user is named. ``default_user = None`` means the command
    needs a user named (it publishes, and only a producer may); ``default_account`` replaces the
    running instance's (an adapter instance belongs to its own account).
    """
    info = None if (nats or config.nats.url) else read_instance(config)
    url = nats_url_for_client(config, nats) if info is None else info.nats_url
    cas = [config.nats.tls_ca] if config.nats.tls_ca else []
    if info is not None and info.tls_ca:
        cas.append(info.tls_ca)
    options: dict[str, Any] = {}
    if cas or url.startswith("tls://"):
        options["tls"] = tls_context(*cas)
    if nkey is not None:
        options.update(seed_file_options(nkey, user))
        holder = user or Path(nkey).name.removesuffix(".nk")
        found_in = info.auth if info is not None else None
        directory = config.credentials_dir() if found_in is None else Path(found_in.credentials)
        # A key belongs to one account whatever --account says: name the one it logs in to.
        found = _seed_account(Path(nkey).expanduser(), directory)
        return Login(url, options, f"{found}/{holder}" if found else holder)
    auth = info.auth if info is not None else None
    if info is None and (config.auth.mode == "on" or user or account):
        auth = InstanceAuth(credentials=str(config.credentials_dir()), account=Account.CITY.value)
    if auth is None:
        return Login(url, options)
    chosen = account_name(account or default_account or auth.account or Account.CITY.value)
    name = user or default_user
    if name is None:
        raise CityBusError(
            "this command publishes, and under access control only a producer may: name the user with "
            f"--user (a user of {chosen} that produces it; `citybus auth show` lists them) or give "
            "the seed file citybus auth issued with --nkey"
        )
    store = CredentialStore(Path(auth.credentials))
    options.update(store.load(chosen, name).connect_options())
    return Login(url, options, f"{chosen}/{name}")


def _seed_account(path: Path, credentials: Path) -> str | None:
    """The account a seed file logs in to: where its public key is in the credentials directory,
    else the directory it lies in (``<ACCOUNT>/<user>.nk``, as ``citybus auth`` writes them)."""
    key = seed_public_key(path)
    if key is not None:
        try:
            for (account, _user), public in CredentialStore(credentials).public_keys().items():
                if public == key:
                    return account
        except (OSError, CityBusError):
            pass  # not ours to read: fall back to the file's place
    parent = path.parent.name
    return parent if parent in {a.value for a in Account} else None


def reload_server(config: Config) -> int | None:
    """Ask the running ``citybus up``'s embedded server to reload its configuration (SIGHUP); its pid,
    or ``None`` when no embedded server runs on this data directory."""
    info = read_instance(config)
    pid = info.server_pid if info is not None else None
    if pid is None or not process_alive(pid) or not _is_our_server(pid, config):
        return None
    os.kill(pid, signal.SIGHUP)
    return pid


def _is_our_server(pid: int, config: Config) -> bool:
    """Whether ``pid`` is still the embedded nats-server of this data dir: a pid written at start
    may belong to another program by now, and SIGHUP would end most programs."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return sys.platform != "linux"  # no /proc to ask: trust the instance file
    conf = str(config.resolved_data_dir() / "nats-server.conf")
    return Path(os.fsdecode(argv[0])).name.startswith("nats-server") and conf in map(os.fsdecode, argv)


def account_name(text: str) -> str:
    """``city`` / ``CITY`` → ``CITY``; a :class:`~bus.errors.ConfigError` names the accounts."""
    try:
        return Account(text.upper()).value
    except ValueError:
        names = ", ".join(a.value.lower() for a in Account if a is not Account.SYS)
        raise ConfigError(f"there is no account {text!r}: the accounts are {names}") from None


def seed_file_options(path: Path, user: str | None = None) -> dict[str, Any]:
    """``connect`` options for a seed file handed to a user (a guest's ``<name>.nk``).

    The user's name (for its private inbox prefix) is ``user``, else the file's name without
    ``.nk``, as ``citybus auth`` names them.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CredentialError(f"the seed file {path} does not exist: give the .nk file citybus auth issued")
    name = user or path.name.removesuffix(".nk")
    return {"nkeys_seed": str(path), "inbox_prefix": subjects.inbox_prefix(name)}


def tls_context(*ca_files: str | Path) -> ssl.SSLContext:
    """A client TLS context that trusts the system's CAs and ``ca_files`` (a self-signed certificate
    is its own CA); the server's name or address must match its certificate."""
    context = ssl.create_default_context()
    for ca in ca_files:
        try:
            context.load_verify_locations(cafile=str(Path(ca).expanduser()))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot read the CA certificate {ca} ({exc.strerror or exc}): give a PEM file "
                "(nats.tls_ca, or the embedded server's server.tls_cert)"
            ) from None
    return context
