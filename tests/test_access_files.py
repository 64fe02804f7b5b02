"""The files of access control: ``instance.json`` (one typed record, versioned) and the guests' TOML
file (written by a writer that escapes what it writes). No server needed."""

from __future__ import annotations

import json
import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.access.guests import Guest, GuestKind, load_guests, save_guests, toml_key, toml_string
from bus.access.login import (
    Instance,
    InstanceAccess,
    InstanceAuth,
    forget_instance,
    instance_file,
    read_instance,
    write_instance,
)
from bus.config import Config, load_config
from bus.errors import CityBusError, ConfigError
from contracts import BeachObservation, DeviceStatus
from sandbox.access import PILOTS, pilot_declaration

HOSTILE = [
    'a"b',
    "back\\slash",
    'both \\" and "\\',
    "new\nline",
    "tab\there",
    "bell\x07",
    "del\x7f",
    "ø æ 🌊",
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_strings_and_keys_round_trip_through_tomllib(text: str) -> None:
    document = f"{toml_key(text)} = {toml_string(text)}\nlist = [{toml_string(text)}, {toml_string(text)}]\n"
    assert tomllib.loads(document) == {text: text, "list": [text, text]}


def test_a_bare_key_stays_bare() -> None:
    assert toml_key("acme-sensors_2") == "acme-sensors_2"
    assert toml_key("a.b") == '"a.b"'  # a dot would otherwise nest a table


def test_a_pilot_file_with_quotes_and_backslashes_round_trips(tmp_path: Path) -> None:
    """pilots.toml was written with f-strings: a name with a quote broke the file (or added keys)."""
    added = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    odd = Guest(PILOTS, 'acme"] evil = ["x', (BeachObservation,), added)
    plain = Guest(PILOTS, "acme", (BeachObservation, DeviceStatus), added)
    tmp_path.chmod(0o700)
    path = save_guests(tmp_path, PILOTS, [plain, odd])
    data = tomllib.loads(path.read_text())
    assert set(data["pilots"]) == {"acme", 'acme"] evil = ["x'}
    assert data["pilots"]['acme"] evil = ["x'] == {
        "produces": ["environment.beach-observation@1"],
        "added": added,
    }
    # Reading it back refuses the odd name in one line, and takes the plain one as it was.
    with pytest.raises(ConfigError, match="must be kebab case"):
        load_guests(tmp_path, PILOTS)
    save_guests(tmp_path, PILOTS, [plain])
    assert load_guests(tmp_path, PILOTS) == [plain]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_guest_file_is_named_by_its_kind(tmp_path: Path) -> None:
    kind = GuestKind(name="visitor", declare=pilot_declaration, help="add a visitor", reads="public data")
    tmp_path.chmod(0o700)
    guest = Guest(kind, "kim", (), datetime(2025, 1, 1, tzinfo=UTC))
    assert save_guests(tmp_path, kind, [guest]).name == "visitors.toml"
    assert load_guests(tmp_path, kind) == [guest]
    assert guest.declaration().kind == "pilot"  # its package's declaration, whatever the kind's name


# -- instance.json ---------------------------------------------------------------------------------


def config_in(tmp_path: Path) -> Config:
    return load_config(None, environ={"CITYBUS_SERVER_DATA_DIR": str(tmp_path)})


def test_instance_json_is_written_and_read_as_one_typed_record(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    instance = Instance(
        pid=os.getpid(),
        nats_url="nats://127.0.0.1:4222",
        ops_url="http://127.0.0.1:9464",
        auth=InstanceAuth(credentials=str(tmp_path / "credentials"), account="SANDBOX"),
        access=InstanceAccess(
            declared={"city": [], "sandbox": []}, mqtt_users=["ns"], users=["CITY/service"]
        ),
    )
    path = write_instance(config, instance)
    assert path == instance_file(config) and oct(path.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text())["version"] == 1
    assert read_instance(config) == instance
    forget_instance(config)
    assert not path.exists()


def test_a_file_without_a_version_is_version_one(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    instance_file(config).write_text(json.dumps({"pid": os.getpid(), "nats_url": "nats://h:1", "auth": None}))
    info = read_instance(config)
    assert info is not None and (info.version, info.nats_url) == (1, "nats://h:1")


def test_a_running_instance_of_another_version_is_one_clear_line(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    instance_file(config).write_text(json.dumps({"version": 2, "pid": os.getpid(), "whatever": True}))
    with pytest.raises(CityBusError, match=r"version 2, and this citybus reads version 1: run the citybus"):
        read_instance(config)
    forget_instance(config)  # ours, by its pid: removed whatever its version
    assert not instance_file(config).exists()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"pid": "12"}),
        json.dumps({"version": 2, "pid": 2**22 + 12345}),  # another version, but nobody runs it
        json.dumps({"pid": os.getpid(), "nats_url": 5}),
    ],
)
def test_a_stale_or_broken_file_is_no_instance(tmp_path: Path, text: str) -> None:
    config = config_in(tmp_path)
    instance_file(config).write_text(text)
    assert read_instance(config) is None
