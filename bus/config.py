"""citybus configuration: one frozen :class:`Config`, decoded from TOML and ``CITYBUS_*`` variables.

Configuration is passed in, never global: :func:`load_config` returns a value that the CLI hands to
the components. It reads, lowest precedence first:

1. the defaults declared here;
2. a TOML file: the ``path`` argument, else the file named by ``CITYBUS_CONFIG``, else
   ``citybus.toml`` in the current directory if there is one;
3. environment variables ``CITYBUS_<SECTION>_<FIELD>``, e.g. ``CITYBUS_NATS_URL``,
   ``CITYBUS_OPS_PORT``, ``CITYBUS_SERVER_DATA_DIR``.

Every mistake a user can make raises :class:`~bus.errors.ConfigError` with a message naming the file
or variable, the key (``ops.port``) and what is allowed. An example ``citybus.toml``::

    [nats]
    url = "nats://nats.drammen.kommune.no:4222"

    [ops]
    port = 9464

    [adapters.beach-sensors]
    mqtt_url = "mqtt://broker:1883"
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bus.errors import ConfigError
from bus.server import MIN_MEMORY_LIMIT, default_data_dir
from bus.streams_config import StreamsConfig

__all__ = [
    "AuthConfig",
    "BusConfig",
    "Config",
    "ConsumerConfig",
    "LogConfig",
    "NatsConfig",
    "OpsConfig",
    "SandboxConfig",
    "ServerConfig",
    "TracingConfig",
    "StreamsConfig",
    "config_file",
    "load_config",
]

ENV_PREFIX = "CITYBUS_"
CONFIG_ENV = "CITYBUS_CONFIG"
OTHER_VARIABLES = frozenset(
    {CONFIG_ENV, "CITYBUS_REQUIRE_SERVICES", "CITYBUS_TEST_POSTGRES", "CITYBUS_ARTEFACTS", "CITYBUS_CHROMIUM"}
)
"""``CITYBUS_*`` variables that are not settings: the config file's name, and the test suite's own
(services required in CI, the PostgreSQL to test against, where tests keep artefacts such as the web
page's screenshot, the Chromium to drive). Any other ``CITYBUS_*`` name that is not a setting is a
mistake and reported, like an unknown key in the file."""
DEFAULT_CONFIG_FILE = "citybus.toml"

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]


class NatsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How citybus connects to NATS."""

    url: str = ""
    """Server URL(s), comma-separated for a cluster; empty starts the embedded nats-server."""
    name: Annotated[str, msgspec.Meta(min_length=1)] = "citybus"
    """Connection name shown by the server's monitoring (``connz``)."""
    connect_timeout: _Seconds = 5.0
    """Seconds to wait for the first connection before giving up."""
    reconnect_wait: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    """Seconds between reconnect attempts; citybus reconnects forever."""
    drain_timeout: _Seconds = 10.0
    """Seconds that draining the connection on shutdown may take."""
    request_timeout: _Seconds = 5.0
    """Default seconds to wait for a reply to a request."""
    max_in_flight_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1_048_576
    """Publish backpressure: bytes buffered for the server before publishers wait."""
    tls_ca: str = ""
    """A CA certificate file (PEM) to trust for the server's TLS certificate, besides the system's;
    for the embedded server with ``server.tls_cert``, that certificate itself is trusted."""
    monitor_url: str = ""
    """The HTTP monitoring endpoint of the server at ``url`` (``http://host:8222``), read on every
    scrape of ``/metrics`` for the server's memory, JetStream use and slow consumers
    (``citybus_nats_server_*``); empty: those metrics are absent. The embedded server's own
    endpoint is used without it. For a cluster, every node's endpoint separated by commas
    (``http://n1:8222,http://n2:8222,http://n3:8222``): each node, stream leader, replica and
    quorum is then watched (``citybus_cluster_*``, ``citybus_stream_*`` and the ``nats cluster``
    health check, bus/cluster_monitor.py), and ``citybus_nats_server_*`` are the first node's."""


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The embedded nats-server, used when ``nats.url`` is empty."""

    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """Address to listen on; the default keeps the broker private to this machine."""
    port: _Port = 0
    """Client port; 0 picks a free one (and keeps it across restarts of the server)."""
    data_dir: str = ""
    """Config, log and JetStream store; empty means ``$XDG_DATA_HOME/citybus/nats``."""
    jetstream: bool = True
    """Enable JetStream (durable streams and consumers)."""
    mqtt: bool = False
    """Also listen for MQTT 3.1.1 clients (LoRaWAN network servers publish uplinks straight into the
    bus: topic ``a/b/c`` arrives as subject ``a.b.c``). nats-server needs JetStream for MQTT."""
    mqtt_port: _Port = 0
    """MQTT port when ``mqtt`` is on; 0 picks a free one (and keeps it across restarts of the server)."""
    tls_cert: str = ""
    """A certificate file (PEM) for TLS on the client port; clients then connect with ``tls://``."""
    tls_key: str = ""
    """The private key file (PEM) of ``tls_cert``."""
    monitor: bool = True
    """Serve nats-server's HTTP monitoring endpoints on the loopback address (never on ``host``);
    citybus reads them for its ``citybus_nats_server_*`` metrics."""
    monitor_port: _Port = 0
    """The monitoring port; 0 picks a free one (and keeps it across restarts of the server)."""
    memory_limit: Annotated[int, msgspec.Meta(ge=0)] = 1 << 30
    """A soft ceiling on the server's memory in bytes (Go's ``GOMEMLIMIT``): near it, the garbage
    collector runs more often instead of letting the heap double; 0 leaves Go's default (none).
    It bounds the garbage, not what the server must hold: see ``bus/server.py``."""
    cluster_size: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    """Nodes of the embedded broker: 1 is one server; 3 (or 5) starts a local cluster with routes on
    loopback (``citybus up --cluster 3``), each node in ``<data_dir>/cluster/node-N`` (bus/cluster.py),
    and streams get ``streams.replicas`` copies (automatic: 3)."""

    def __post_init__(self) -> None:
        if self.mqtt and not self.jetstream:
            raise ValueError(
                "server.mqtt = true needs server.jetstream = true: nats-server keeps MQTT sessions "
                "and QoS 1 messages in JetStream"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(
                "server.tls_cert and server.tls_key go together: give both files (PEM) for TLS on the "
                "client port, or neither"
            )
        if self.mqtt and self.cluster_size > 1:
            raise ValueError(
                "server.mqtt with server.cluster_size > 1: the local cluster runs no MQTT listener; "
                "use one server for MQTT, or configure MQTT on a cluster of your own (docs/cluster.md)"
            )
        if 0 < self.memory_limit < MIN_MEMORY_LIMIT:
            raise ValueError(
                f"server.memory_limit = {self.memory_limit} bytes is too small for nats-server: give "
                f"0 (no limit) or at least {MIN_MEMORY_LIMIT} ({MIN_MEMORY_LIMIT >> 20} MiB)"
            )


class ConsumerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Durable pull consumers: delivery, retries and flow control.

    The bus takes this Struct itself, as :class:`bus.ConsumerSettings`.
    """

    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Deliveries of one message before it goes to the dead letters."""
    retry_delay: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    """Seconds before a failed message is delivered again."""
    ack_wait: _Seconds = 30.0
    """Seconds a handler has before an unacknowledged message is redelivered."""
    max_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 64
    """Messages fetched at most at once: never more than the handler can take."""


class OpsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The operations HTTP server: ``/metrics``, ``/healthz``, ``/readyz``, schemas."""

    enabled: bool = True
    """Serve the operations endpoints."""
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """Address to listen on."""
    port: _Port = 9464
    """Port to listen on (9464 is Prometheus's conventional exporter port); 0 picks a free one."""


class LogConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Logging."""

    format: Literal["auto", "json", "console"] = "auto"
    """``json`` lines, readable ``console`` lines, or ``auto``: console on a terminal, else JSON."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """The least severe level written."""


class AuthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who may connect, and what each user may do (see ``bus/access/``)."""

    mode: Literal["auto", "on", "off"] = "auto"
    """``on``: every connection authenticates as its own user (NKeys) and the broker enforces what it
    may publish and read; ``off``: anonymous connections, no access control; ``auto``: on for the
    embedded server, off for an external one (which enforces what its operator configured; set
    ``on`` once it includes citybus's ``accounts.conf``)."""
    dir: str = ""
    """The credentials directory; empty means ``credentials`` in the server's data dir."""
    mqtt_users: tuple[Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9]*(-[a-z0-9]+)*$")], ...] = ()
    """Users of the embedded server's MQTT listener (a LoRaWAN network server, a gateway), in ``CITY``:
    each gets a password and may publish what the adapters read from raw subjects (uplinks), and
    read what they publish there (downlinks)."""


class BusConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What citybus puts on the messages it publishes."""

    encoding: Literal["json", "msgpack"] = "json"
    """Body encoding of published contracts."""
    source: Annotated[str, msgspec.Meta(min_length=1)] = "/citybus"
    """Default CloudEvents ``source`` (a URI reference) of published events."""
    provenance: Literal["sensor", "manual", "vendor", "recorded", "synthetic"] = "manual"
    """Default provenance of published events."""


class TracingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OpenTelemetry tracing (``bus/tracing.py``); needs ``pip install 'citybus[tracing]'`` when on."""

    enabled: bool = False
    """Trace what the buses of ``citybus up`` send, handle and dead-letter, exported over OTLP/HTTP."""
    endpoint: str = ""
    """The collector's traces URL (``http://127.0.0.1:4318/v1/traces``); empty: the exporter's default
    or its ``OTEL_EXPORTER_OTLP_*`` environment variables."""
    service_name: Annotated[str, msgspec.Meta(min_length=1)] = "citybus"
    """The ``service.name`` of the spans."""
    export: bool = True
    """Record spans and export them (needs the ``tracing`` extra); ``false``: only carry the trace
    context along (a message without one starts a trace, a handler's output carries its input's),
    recording nothing and needing no SDK — how ``citybus certify`` tells which input caused an output."""


class SandboxConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The sandbox's recordings, where ``citybus personal export|erase`` and retention look for a
    person's messages (the files of configured replays are searched too)."""

    recordings: list[str] = msgspec.field(default_factory=list)
    """Directories (searched for ``*.mcap``) and files; empty: ``recordings`` in the data directory."""


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole citybus configuration; every section has complete defaults."""

    nats: NatsConfig = msgspec.field(default_factory=NatsConfig)
    """The NATS connection."""
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    """The embedded nats-server."""
    streams: StreamsConfig = msgspec.field(default_factory=StreamsConfig)
    """JetStream stream limits."""
    consumer: ConsumerConfig = msgspec.field(default_factory=ConsumerConfig)
    """Durable consumers."""
    ops: OpsConfig = msgspec.field(default_factory=OpsConfig)
    """The operations HTTP server."""
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    """Logging."""
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    """Defaults for published messages."""
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    """Access control: credentials, accounts and users."""
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    """OpenTelemetry tracing (off by default)."""
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    """The sandbox's recordings."""
    adapters: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Raw ``[adapters.<instance>]`` sections; each adapter validates its own with the adapter SDK."""

    def auth_enabled(self) -> bool:
        """Whether connections authenticate as their users (``auth.mode``, ``auto`` resolved)."""
        if self.auth.mode == "auto":
            return not self.nats.url
        return self.auth.mode == "on"

    def credentials_dir(self) -> Path:
        """The credentials directory: ``auth.dir``, else ``credentials`` in the server's data dir."""
        if self.auth.dir:
            return Path(self.auth.dir).expanduser()
        return self.resolved_data_dir() / "credentials"

    def resolved_data_dir(self) -> Path:
        """The embedded server's data dir: ``server.data_dir`` with ``~`` expanded, or the default."""
        if self.server.data_dir:
            return Path(self.server.data_dir).expanduser()
        return default_data_dir()


# Sections whose fields are plain values, by name; ``adapters`` is free-form and checked apart.
_SECTIONS: dict[str, type[msgspec.Struct]] = {
    f.name: f.type
    for f in msgspec.structs.fields(Config)
    if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct)
}


def _env_names() -> dict[str, tuple[str, str]]:
    """``CITYBUS_NATS_URL`` → ``("nats", "url")``, built from the fields so underscores are safe."""
    names: dict[str, tuple[str, str]] = {}
    for section, struct in _SECTIONS.items():
        for field in msgspec.structs.fields(struct):
            names[f"{ENV_PREFIX}{section}_{field.name}".upper()] = (section, field.name)
    return names


_ENV_NAMES = _env_names()


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from a TOML file and ``CITYBUS_*`` variables (see the module doc).

    ``environ`` defaults to ``os.environ``; tests pass a dict. A ``CITYBUS_*`` variable that is neither
    a setting nor one of :data:`OTHER_VARIABLES` is reported (a misspelt setting would otherwise be
    ignored without a word). Raises :class:`~bus.errors.ConfigError` for a missing or malformed file,
    an unknown variable and any invalid value.
    """
    env = os.environ if environ is None else environ
    data: dict[str, dict[str, Any]] = {}
    file = _config_file(path, env)
    if file is not None:
        data = _read_toml(file)
    origin = f"config file {file}" if file is not None else "config"

    sections: dict[str, Any] = {}
    for section, table in data.items():
        if section == "adapters":
            sections[section] = _check_adapters(table, origin)
            continue
        struct = _SECTIONS.get(section)
        if struct is None:
            raise ConfigError(
                f"{origin}: unknown section [{section}]; allowed sections: {', '.join(_allowed_sections())}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: {section} must be a table ([{section}]), not {_toml_type(table)}")
        values: dict[str, Any] = {}
        for key, value in table.items():
            values[key] = _convert(struct, section, key, value, origin=origin, strict=True)
        sections[section] = values

    for name in sorted(env):
        target = _ENV_NAMES.get(name)
        if target is None:
            if name.startswith(ENV_PREFIX) and name not in OTHER_VARIABLES:
                raise ConfigError(_unknown_variable(name))
            continue  # not ours, or CITYBUS_CONFIG and friends, which are not settings
        section, key = target
        value = _convert(
            _SECTIONS[section], section, key, env[name], origin=f"environment variable {name}", strict=False
        )
        sections.setdefault(section, {})[key] = value

    try:
        return msgspec.convert(sections, type=Config)
    except msgspec.ValidationError as exc:  # checks across fields (__post_init__), and a safety net
        raise ConfigError(f"{origin}: {exc}") from exc


def _unknown_variable(name: str) -> str:
    """The error for a ``CITYBUS_*`` variable that is no setting: the nearest names, what is allowed."""
    # Compared without the prefix they all share, which would make any two names look alike.
    rest = name.removeprefix(ENV_PREFIX).lower()
    known = {n.removeprefix(ENV_PREFIX).lower(): n for n in [*_ENV_NAMES, *OTHER_VARIABLES]}
    # A section left out (CITYBUS_DATA_DIR) is the likeliest slip; else the nearest spelling.
    close = [known[k] for k in sorted(known) if k.endswith("_" + rest)][:1]
    close = close or [known[k] for k in difflib.get_close_matches(rest, sorted(known), n=1, cutoff=0.6)]
    guess = f"did you mean {close[0]}? " if close else ""
    section = next((s for s in sorted(_SECTIONS, key=len, reverse=True) if rest.startswith(s)), None)
    if section is None and close and close[0] in _ENV_NAMES:
        section = _ENV_NAMES[close[0]][0]
    if section is not None:
        allowed = sorted(n for n, (s, _) in _ENV_NAMES.items() if s == section)
        what = f"allowed in [{section}]: {', '.join(allowed)}"
    else:
        what = (
            f"settings are {ENV_PREFIX}<SECTION>_<KEY> for the keys of citybus.toml "
            f"(sections: {', '.join(sorted(_SECTIONS))}), and {CONFIG_ENV} names the file"
        )
    return f"environment variable {name}: not a citybus setting; {guess}{what}"


def config_file(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The file :func:`load_config` reads with these arguments, made absolute; ``None`` if none."""
    file = _config_file(path, os.environ if environ is None else environ)
    return file.resolve() if file is not None else None


def _config_file(path: Path | None, env: Mapping[str, str]) -> Path | None:
    """The file to read, or ``None``: explicit path, then ``CITYBUS_CONFIG``, then ./citybus.toml."""
    if path is not None:
        file, named_by = Path(path).expanduser(), ""
    elif env.get(CONFIG_ENV):
        file, named_by = Path(env[CONFIG_ENV]).expanduser(), f" (named by {CONFIG_ENV})"
    else:
        default = Path(DEFAULT_CONFIG_FILE)
        return default if default.is_file() else None
    if not file.exists():
        raise ConfigError(f"config file {file}{named_by} not found")
    return file


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)".
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {file} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None


def _check_adapters(table: Any, origin: str) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: adapters must be a table of [adapters.<name>] tables")
    for name, section in table.items():
        if not isinstance(section, dict):
            raise ConfigError(
                f"{origin}: adapters.{name} must be a table ([adapters.{name}]), not {_toml_type(section)}"
            )
    return table


def _convert(
    struct: type[msgspec.Struct], section: str, key: str, value: Any, *, origin: str, strict: bool
) -> Any:
    """One value checked against its field's type and constraints; the error names the key."""
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    field = fields.get(key)
    if field is None:
        raise ConfigError(
            f"{origin}: unknown key {section}.{key}; allowed keys in [{section}]: {', '.join(sorted(fields))}"
        )
    try:
        return msgspec.convert(value, type=field.type, strict=strict)
    except msgspec.ValidationError:
        raise ConfigError(
            f"{origin}: {section}.{key} = {value!r} is not allowed: expected {_describe(field.type)}"
        ) from None


def _describe(annotation: Any) -> str:
    """What a field accepts, in words: "an integer from 0 to 65535", "one of 'json', 'msgpack'"."""
    return _describe_info(msgspec.inspect.type_info(annotation))


def _describe_info(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.UnionType):
        return " or ".join(_describe_info(t) for t in info.types)
    if isinstance(info, msgspec.inspect.DictType):
        keys, values = _describe_info(info.key_type), _describe_info(info.value_type)
        return f"a table whose keys are {keys} and values {values}"
    if isinstance(info, msgspec.inspect.ListType):
        return f"an array of {_describe_info(info.item_type).removeprefix('a ').removeprefix('an ')}s"
    if isinstance(info, msgspec.inspect.LiteralType):
        return "one of " + ", ".join(repr(v) for v in info.values)
    if isinstance(info, msgspec.inspect.BoolType):
        return "true or false"
    if isinstance(info, msgspec.inspect.StrType):
        return "a non-empty string" if info.min_length else "a string"
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        noun = "an integer" if isinstance(info, msgspec.inspect.IntType) else "a number"
        if info.ge is not None and info.le is not None:
            return f"{noun} from {info.ge:g} to {info.le:g}"
        bounds = [
            f"{op} {bound:g}"
            for op, bound in ((">", info.gt), (">=", info.ge), ("<", info.lt), ("<=", info.le))
            if bound is not None
        ]
        return f"{noun} {' and '.join(bounds)}" if bounds else noun
    return type(info).__name__.removesuffix("Type").lower()


def _allowed_sections() -> list[str]:
    return sorted([*_SECTIONS, "adapters"])


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), type(value).__name__)
