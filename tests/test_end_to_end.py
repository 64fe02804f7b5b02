"""End to end, on real servers: a The Things Stack v3 uplink published to Mosquitto travels through
the MQTT bridge, the Vicotee beach adapter and the bus into a PostgreSQL row — with the right site
and values.

    Mosquitto ─► mqtt-bridge ─► v3.….up (raw) ─► vicotee-beach ─► city.public.environment.
    beach-observation.bragernes-strand ─► postgres-archive ─► citybus_e2e.environment_beach_observation_v1
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiomqtt
import pytest
from conftest import MOSQUITTO, require_service
from pg import SHARED_DSN, query, unreachable
from psycopg import sql

from adapters import Backoff, Supervisor, discover, instances_from_config
from adapters.vicotee import build_frame, driver_info, reference_voltage_raw, temperature_raw, uv_index_raw
from bus import Bus

SI7050 = 1  # the driver id of the Si7050 thermometer in a driver_info package
BROKER = MOSQUITTO


@pytest.fixture
async def services(mosquitto: str) -> None:
    """Mosquitto and PostgreSQL, or a skip (a failure under CITYBUS_REQUIRE_SERVICES=1)."""
    reason = await unreachable(SHARED_DSN)
    if reason is not None:
        require_service("PostgreSQL", f"no server at 127.0.0.1:5432 ({reason})")


@pytest.fixture
async def schema(services: None) -> AsyncIterator[str]:
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    yield name
    await query(SHARED_DSN, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def uplink(device: str, frame: bytes, received: str) -> bytes:
    """The JSON The Things Stack v3 publishes on ``v3/{app}@{tenant}/devices/{device}/up``."""
    return json.dumps(
        {
            "end_device_ids": {
                "device_id": device,
                "application_ids": {"application_id": "drammen-beach"},
                "dev_eui": "A84041000181C4D1",
            },
            "received_at": received,
            "uplink_message": {
                "f_port": 2,
                "frm_payload": base64.b64encode(frame).decode(),
                "rx_metadata": [
                    {"gateway_ids": {"gateway_id": "drammen-bragernes"}, "rssi": -87, "snr": 9.25}
                ],
            },
        }
    ).encode()


async def test_uplink_to_mosquitto_ends_as_a_postgres_row(bus: Bus, schema: str) -> None:
    run = uuid.uuid4().hex[:8]
    device = f"vicotee-bragernes-{run}"
    application = f"drammen-beach-{run}@drammen"
    frame = build_frame(
        [
            (0x01, driver_info(SI7050, 0)),
            (0x14, temperature_raw(17.9)),  # air, on land
            (0x01, driver_info(SI7050, 1)),
            (0x14, temperature_raw(15.7)),  # water: the real reading at Bragernes strand, 2018-08-29
            (0x36, reference_voltage_raw(1.2)),
            (0x20, uv_index_raw(3)),
        ],
        packet_id=42,
    )
    received = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    sections = {
        "mqtt-city": {
            "adapter": "mqtt-bridge",
            "url": f"mqtt://{BROKER[0]}:{BROKER[1]}",
            "client_id": f"citybus-e2e-{run}",
            "inbound": [{"topic": f"v3/{application}/devices/+/up"}],
        },
        "beach": {
            "adapter": "vicotee-beach",
            "subjects": [f"v3.{application}.devices.*.up"],
            "devices": {device: {"site": "bragernes-strand", "water_slot": 1, "air_slot": 0}},
        },
        "archive": {
            "adapter": "postgres-archive",
            "dsn": SHARED_DSN,
            "schema": schema,
            "contracts": ["environment.beach-observation"],
            "batch_wait": 0.05,
        },
    }
    found = discover()
    instances = instances_from_config(sections, found.adapters)
    supervisor = Supervisor(instances, bus=bus, backoff=Backoff(initial=0.05, maximum=0.5))
    table = sql.Identifier(schema, "environment_beach_observation_v1")
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        async with asyncio.timeout(30):
            while not all(c.is_ready for c in supervisor.contexts.values()) or len(supervisor.contexts) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with aiomqtt.Client(BROKER[0], BROKER[1], identifier=f"network-server-{run}") as network_server:
            await network_server.publish(
                f"v3/{application}/devices/{device}/up", uplink(device, frame, received), qos=1
            )
        rows: list[tuple[object, ...]] = []
        async with asyncio.timeout(30):
            while not rows:
                try:
                    rows = await query(
                        SHARED_DSN,
                        sql.SQL(
                            "SELECT site, water_temperature, air_temperature, uv_index, device, "
                            "ce_provenance, ce_source, ce_type FROM {} WHERE device = %s"
                        ).format(table),
                        [device],
                    )
                except Exception:  # the table appears when the archive has started
                    rows = []
                await asyncio.sleep(0.1)
        supervisor.stop()
    [(site, water, air, uv, stored_device, provenance, source, ce_type)] = rows
    assert site == "bragernes-strand"
    assert water == pytest.approx(15.7, abs=0.01)
    assert air == pytest.approx(17.9, abs=0.01)
    assert uv == 3
    assert stored_device == device
    assert provenance == "sensor"
    assert source == "/adapters/beach"
    assert ce_type == "environment.beach-observation.v1"
