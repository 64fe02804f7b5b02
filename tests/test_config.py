"""Configuration: defaults, TOML, CITYBUS_* overrides, and messages a user can act on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import bus
from bus.config import (
    BusConfig,
    Config,
    ConsumerConfig,
    LogConfig,
    NatsConfig,
    OpsConfig,
    ServerConfig,
    StreamsConfig,
    load_config,
)
from bus.errors import ConfigError

WriteToml = Callable[[str], Path]


@pytest.fixture
def toml(tmp_path: Path) -> WriteToml:
    """Write a citybus.toml with the given text and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "citybus.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_config looks for ./citybus.toml; tests must not pick up a developer's file.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)


def test_defaults() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert config.nats == NatsConfig(url="", name="citybus", max_in_flight_bytes=1_048_576)
    assert config.server == ServerConfig(host="127.0.0.1", port=0, data_dir="", jetstream=True)
    assert config.streams.max_age == 7 * 24 * 3600
    assert config.streams.max_bytes == 1 << 30
    assert config.streams.storage == "file"
    assert config.consumer == ConsumerConfig(max_deliver=5, retry_delay=1.0, ack_wait=30.0, max_in_flight=64)
    assert config.ops == OpsConfig(enabled=True, host="127.0.0.1", port=9464)
    assert config.log == LogConfig(format="auto", level="info")
    assert config.bus == BusConfig(encoding="json", source="/citybus", provenance="manual")
    assert config.adapters == {}


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.ops = OpsConfig(port=1)  # type: ignore[misc]


def test_toml_file(toml: WriteToml) -> None:
    path = toml(
        """
        [nats]
        url = "nats://nats.example:4222"
        connect_timeout = 2      # an integer is fine for seconds

        [streams]
        replicas = 3
        storage = "memory"

        [adapters.bragernes-beach]
        mqtt_url = "mqtt://broker:1883"
        interval = 60
        """
    )
    config = load_config(path, environ={})
    assert config.nats.url == "nats://nats.example:4222"
    assert config.nats.connect_timeout == 2.0
    assert config.streams == StreamsConfig(replicas=3, storage="memory")
    assert config.adapters == {"bragernes-beach": {"mqtt_url": "mqtt://broker:1883", "interval": 60}}
    assert config.ops == OpsConfig()  # untouched sections keep their defaults


def test_citybus_toml_in_cwd_is_found(toml: WriteToml, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml("[ops]\nport = 9000\n")
    monkeypatch.chdir(path.parent)
    assert load_config(environ={}).ops.port == 9000


def test_citybus_config_names_the_file(toml: WriteToml) -> None:
    path = toml("[log]\nlevel = 'debug'\n")
    assert load_config(environ={"CITYBUS_CONFIG": str(path)}).log.level == "debug"


def test_environment_overrides_the_file(toml: WriteToml) -> None:
    path = toml("[ops]\nport = 9000\nhost = '0.0.0.0'\n")
    config = load_config(
        path,
        environ={
            "CITYBUS_OPS_PORT": "9100",
            "CITYBUS_NATS_URL": "nats://other:4222",
            "CITYBUS_SERVER_DATA_DIR": "/srv/citybus",  # underscore in the field name
            "CITYBUS_NATS_MAX_IN_FLIGHT_BYTES": "2048",
            "CITYBUS_SERVER_JETSTREAM": "false",
            "CITYBUS_STREAMS_MAX_AGE": "3600.5",
            "CITYBUS_LOG_FORMAT": "json",
        },
    )
    assert config.ops == OpsConfig(host="0.0.0.0", port=9100)
    assert config.nats.url == "nats://other:4222"
    assert config.nats.max_in_flight_bytes == 2048
    assert config.server.data_dir == "/srv/citybus"
    assert config.server.jetstream is False
    assert config.streams.max_age == 3600.5
    assert config.log.format == "json"


def test_citybus_variables_that_are_not_settings_are_ignored() -> None:
    config = load_config(
        environ={
            "CITYBUS_REQUIRE_SERVICES": "1",  # the test suite's
            "CITYBUS_TEST_POSTGRES": "postgresql://127.0.0.1:5432/test",
            "CITYBUS_ARTEFACTS": "/tmp/artefacts",
            "CITYBUS_CHROMIUM": "/usr/bin/chromium",
            "citybus_ops_port": "1",  # not a CITYBUS_ name at all (environment names are case-sensitive)
            "PATH": "/usr/bin",
        }
    )
    assert config == Config()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "CITYBUS_OPS_PROT",
            "environment variable CITYBUS_OPS_PROT: not a citybus setting; did you mean CITYBUS_OPS_PORT? "
            "allowed in [ops]: CITYBUS_OPS_ENABLED, CITYBUS_OPS_HOST, CITYBUS_OPS_PORT",
        ),
        (
            "CITYBUS_OPS",
            "environment variable CITYBUS_OPS: not a citybus setting; "
            "allowed in [ops]: CITYBUS_OPS_ENABLED, CITYBUS_OPS_HOST, CITYBUS_OPS_PORT",
        ),
        ("CITYBUS_DATA_DIR", "did you mean CITYBUS_SERVER_DATA_DIR? allowed in [server]: "),
        ("CITYBUS_NAT_URL", "did you mean CITYBUS_NATS_URL? allowed in [nats]: "),
        ("CITYBUS_CONFIGG", "did you mean CITYBUS_CONFIG? settings are CITYBUS_<SECTION>_<KEY>"),
        (
            "CITYBUS_SOMETHING_ELSE",
            "environment variable CITYBUS_SOMETHING_ELSE: not a citybus setting; settings are "
            "CITYBUS_<SECTION>_<KEY> for the keys of citybus.toml (sections: auth, bus, consumer, log, "
            "nats, ops, sandbox, server, streams, tracing), and CITYBUS_CONFIG names the file",
        ),
    ],
)
def test_a_misspelt_citybus_variable_is_reported_with_the_nearest_name(name: str, expected: str) -> None:
    message = _error(environ={name: "1"})
    assert expected in message
    assert message.startswith(f"environment variable {name}: not a citybus setting; ")


def test_resolved_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert Config().resolved_data_dir() == tmp_path / "citybus" / "nats"
    config = load_config(environ={"CITYBUS_SERVER_DATA_DIR": "~/citybus-data"})
    assert config.resolved_data_dir() == Path.home() / "citybus-data"


def test_every_section_field_has_a_default() -> None:
    for section in (NatsConfig, ServerConfig, StreamsConfig, ConsumerConfig, OpsConfig, LogConfig, BusConfig):
        for field in msgspec.structs.fields(section):
            assert field.required is False, f"{section.__name__}.{field.name}"


# -- errors --------------------------------------------------------------------------------------


def _error(path: Path | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert _error(missing) == f"config file {missing} not found"
    assert _error(environ={"CITYBUS_CONFIG": str(missing)}) == (
        f"config file {missing} (named by CITYBUS_CONFIG) not found"
    )


def test_bad_toml_names_file_and_line(toml: WriteToml) -> None:
    path = toml('[ops]\nport = 9464\nhost = "unterminated\n')
    message = _error(path)
    assert message.startswith(f"config file {path} is not valid TOML:")
    assert "line 3" in message


def test_unknown_key_lists_allowed_keys(toml: WriteToml) -> None:
    message = _error(toml("[ops]\nprot = 1\n"))
    assert "unknown key ops.prot" in message
    assert "allowed keys in [ops]: enabled, host, port" in message
    assert str(toml("")) in message


def test_unknown_section_lists_sections(toml: WriteToml) -> None:
    message = _error(toml("[opps]\nport = 1\n"))
    assert "unknown section [opps]" in message
    assert "adapters, auth, bus, consumer, log, nats, ops, sandbox, server, streams, tracing" in message


def test_section_that_is_not_a_table(toml: WriteToml) -> None:
    assert "ops must be a table" in _error(toml("ops = 5\n"))
    assert "adapters.x must be a table" in _error(toml("[adapters]\nx = 1\n"))


def test_wrong_type_in_file_says_expected_type(toml: WriteToml) -> None:
    message = _error(toml('[ops]\nport = "9464"\n'))
    assert "ops.port = '9464' is not allowed: expected an integer from 0 to 65535" in message
    assert "expected true or false" in _error(toml('[server]\njetstream = "yes"\n'))
    assert "expected a number > 0" in _error(toml("[nats]\nconnect_timeout = 0\n"))
    assert "expected an integer >= 1" in _error(toml("[consumer]\nmax_deliver = 0\n"))
    assert "expected an integer from 0 to 5 or a table" in _error(toml("[streams]\nreplicas = 7\n"))


def test_bad_literal_lists_allowed_values(toml: WriteToml) -> None:
    message = _error(toml('[log]\nformat = "xml"\n'))
    assert "log.format = 'xml' is not allowed: expected one of 'auto', 'console', 'json'" in message
    message = _error(toml('[bus]\nprovenance = "guess"\n'))
    for value in ("sensor", "manual", "vendor", "recorded", "synthetic"):
        assert repr(value) in message


def test_bad_environment_value_names_the_variable() -> None:
    message = _error(environ={"CITYBUS_OPS_PORT": "http"})
    assert message == (
        "environment variable CITYBUS_OPS_PORT: ops.port = 'http' is not allowed: "
        "expected an integer from 0 to 65535"
    )
    message = _error(environ={"CITYBUS_STREAMS_STORAGE": "disk"})
    assert message.startswith("environment variable CITYBUS_STREAMS_STORAGE: streams.storage")
    assert "'file', 'memory'" in message


def test_the_streams_and_consumer_sections_are_the_bus_settings() -> None:
    """``[streams]`` and ``[consumer]`` are the Structs the bus takes (``StreamSettings``,
    ``ConsumerSettings``), not copies of them: no field can be dropped on the way."""
    assert bus.StreamSettings is StreamsConfig
    assert bus.ConsumerSettings is ConsumerConfig
    config = load_config(environ={"CITYBUS_CONSUMER_MAX_DELIVER": "9", "CITYBUS_STREAMS_REPLICAS": "3"})
    settings: bus.ConsumerSettings = config.consumer  # what citybus up hands to every consumer
    assert settings.max_deliver == 9 and config.streams.replicas == 3
