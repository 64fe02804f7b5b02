"""How client commands find a running ``citybus up`` and log in to it.

``citybus up`` writes ``instance.json`` into its data directory (:func:`instance_file`): its pid, the
NATS, MQTT and ops URLs, its server's pid, where its credentials are and which account client
commands read, and the certificate to trust. The commands (``tail``, ``publish``, ``record``,
``sandbox``, ``adapters run``, ``auth``) read it with :func:`read_instance`, connect as the user
:func:`client_login` resolves, and ``citybus auth`` reloads its server with :func:`reload_server`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.access import Account
from bus.auth import account_name, seed_file_options, tls_context
from bus.bus import Bus
from bus.config import Config
from bus.credentials import CredentialStore, seed_public_key
from bus.errors import CityBusError

__all__ = [
    "INSTANCE_FILE",
    "Login",
    "client_login",
    "instance_file",
    "nats_url_for_client",
    "read_instance",
    "reload_server",
]

INSTANCE_FILE = "instance.json"


def instance_file(config: Config) -> Path:
    """Where a running ``citybus up`` says how to reach it (NATS URL, ops URL, pid)."""
    return config.resolved_data_dir() / INSTANCE_FILE


def read_instance(config: Config) -> dict[str, Any] | None:
    """The running instance's description, or ``None`` if none runs on this data directory."""
    path = instance_file(config)
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return info


def _alive(pid: int) -> bool:
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
    if info is None or not info.get("nats_url"):
        raise CityBusError(
            f"no running `citybus up` found (looked for {instance_file(config)}): start `citybus up`, "
            "or say which NATS server to use with --nats URL or CITYBUS_NATS_URL"
        )
    return str(info["nats_url"])


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
    url = nats_url_for_client(config, nats) if info is None else str(info["nats_url"])
    cas = [config.nats.tls_ca] if config.nats.tls_ca else []
    if info is not None and info.get("tls_ca"):
        cas.append(str(info["tls_ca"]))
    options: dict[str, Any] = {}
    if cas or url.startswith("tls://"):
        options["tls"] = tls_context(*cas)
    if nkey is not None:
        options.update(seed_file_options(nkey, user))
        pilot = user or Path(nkey).name.removesuffix(".nk")
        found_in = info.get("auth") if info is not None else None
        directory = config.credentials_dir()
        if isinstance(found_in, dict):
            directory = Path(str(found_in["credentials"]))
        # A key belongs to one account whatever --account says: name the one it logs in to.
        found = _seed_account(Path(nkey).expanduser(), directory)
        return Login(url, options, f"{found}/{pilot}" if found else pilot)
    auth = info.get("auth") if info is not None else None
    if info is None and (config.auth.mode == "on" or user or account):
        auth = {"credentials": str(config.credentials_dir()), "account": Account.CITY.value}
    if not isinstance(auth, dict):
        return Login(url, options)
    chosen = account_name(account or default_account or str(auth.get("account") or Account.CITY.value))
    name = user or default_user
    if name is None:
        raise CityBusError(
            "this command publishes, and under access control only a producer may: name the user with "
            f"--user (an adapter instance or pilot of {chosen} that produces it; `citybus auth show` "
            "lists them) or give a pilot's seed file with --nkey"
        )
    store = CredentialStore(Path(str(auth["credentials"])))
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
    pid = info.get("server_pid") if info is not None else None
    if not isinstance(pid, int) or not _alive(pid) or not _is_our_server(pid, config):
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
