"""The MQTT bridge: MQTT topics onto the bus as raw subjects, and contracts out to MQTT as JSON.

Configure an instance in ``citybus.toml``::

    [adapters.mqtt-city]
    adapter = "mqtt-bridge"
    url = "mqtt://127.0.0.1:1883"
    inbound = [{ topic = "v3/+/devices/+/up", subject_prefix = "ttn" }]
    outbound = [{ contract = "environment.beach-observation", topic = "drammen/beach/{entity}" }]

:mod:`adapters.mqtt.config` holds the configuration and its rules (only public contracts go out,
internal ones with ``allow_internal``, personal ones never; routes may not loop),
:mod:`adapters.mqtt.topics` the topic ↔ subject mapping, :mod:`adapters.mqtt.bridge` the adapter.
"""

from adapters.mqtt.bridge import BridgeStats, MqttBridge, cloud_event_properties
from adapters.mqtt.config import Endpoint, InboundRoute, MqttBridgeConfig, OutboundRoute
from adapters.mqtt.topics import subject_to_topic, topic_to_subject

__all__ = [
    "BridgeStats",
    "Endpoint",
    "InboundRoute",
    "MqttBridge",
    "MqttBridgeConfig",
    "OutboundRoute",
    "cloud_event_properties",
    "subject_to_topic",
    "topic_to_subject",
]
