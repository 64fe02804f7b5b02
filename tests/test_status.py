"""``citybus status``: the view built from fixed ``/metrics`` text, and once against a real ``citybus up``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bus.config import load_config
from bus.errors import CityBusError
from bus.status import Count, Scrape, Section, Status, collect, ops_url_for_client, parse_metrics, render
from tests.test_cli import citybus_env, run_citybus, start_up

OPS = "http://127.0.0.1:9464"
READY = {"status": "ready", "checks": {"nats": True, "streams": True, "nats connected": True}}

# What a citybus up with one polled adapter and the sandbox replay exports (trimmed to the families
# the view reads, in the exposition format prometheus_client writes).
METRICS = """\
# HELP citybus_nats_connected 1 while connected to NATS, else 0.
# TYPE citybus_nats_connected gauge
citybus_nats_connected 1.0
# TYPE citybus_nats_reconnects counter
citybus_nats_reconnects_total 2.0
# TYPE citybus_adapter_up gauge
citybus_adapter_up{adapter="air-q",adapter_instance="air"} 1.0
citybus_adapter_up{adapter="sandbox-replay",adapter_instance="sandbox"} 0.0
# TYPE citybus_adapter_restarts counter
citybus_adapter_restarts_total{adapter="air-q",adapter_instance="air"} 0.0
citybus_adapter_restarts_total{adapter="sandbox-replay",adapter_instance="sandbox"} 3.0
# TYPE citybus_adapter_messages_published counter
citybus_adapter_messages_published_total{adapter="air-q",adapter_instance="air",contract="a.v1"} 40.0
citybus_adapter_messages_published_total{adapter="air-q",adapter_instance="air",contract="b.v1"} 2.0
# TYPE citybus_adapter_dead_letters counter
citybus_adapter_dead_letters_total{adapter="air-q",adapter_instance="air",reason="out-of-range"} 5.0
# TYPE citybus_source_up gauge
citybus_source_up{adapter="air-q",adapter_instance="air",source="kv"} 0.0
citybus_source_up{adapter="air-q",adapter_instance="air",source="never"} 0.0
# TYPE citybus_source_last_success_timestamp_seconds gauge
citybus_source_last_success_timestamp_seconds{adapter="air-q",adapter_instance="air",source="kv"} 1000.0
citybus_source_last_success_timestamp_seconds{adapter="air-q",adapter_instance="air",source="never"} 0.0
# TYPE citybus_source_fetches counter
citybus_source_fetches_total{adapter="air-q",adapter_instance="air",source="kv",outcome="ok"} 9.0
citybus_source_fetches_total{adapter="air-q",adapter_instance="air",source="kv",outcome="timeout"} 3.0
citybus_source_fetches_total{adapter="air-q",adapter_instance="air",source="kv",outcome="http-503"} 1.0
# TYPE citybus_dead_letters counter
citybus_dead_letters_total{contract="a.v1",reason="out-of-range"} 5.0
citybus_dead_letters_total{contract="b.v1",reason="out-of-range"} 1.0
citybus_dead_letters_total{contract="unknown",reason="malformed"} 2.0
# TYPE citybus_messages_invalid counter
citybus_messages_invalid_total{contract="a.v1",reason="schema"} 7.0
# TYPE citybus_replay_speed gauge
citybus_replay_speed{adapter_instance="sandbox"} 60.0
# TYPE citybus_replay_progress_ratio gauge
citybus_replay_progress_ratio{adapter_instance="sandbox"} 0.25
# TYPE citybus_replay_position_seconds gauge
citybus_replay_position_seconds{adapter_instance="sandbox"} 21600.0
# TYPE citybus_replay_lag_seconds gauge
citybus_replay_lag_seconds{adapter_instance="sandbox"} 0.0035
# TYPE citybus_replay_messages counter
citybus_replay_messages_total{adapter_instance="sandbox"} 1200.0
"""


def rows(status: Status, key: str) -> list[Any]:
    """The rows a package contributed under ``key`` (``adapters``, ``sources``, ``replays``)."""
    section = status.section(key)
    assert section is not None, [s.key for s in status.sections]
    return list(section.rows)


def test_totals_from_one_scrape() -> None:
    status = collect(ops_url=OPS, readiness=READY, metrics=parse_metrics(METRICS), now=1090.0)
    assert status.ready and status.nats_connected and status.interval_seconds is None
    assert status.nats_reconnects == Count(total=2.0)
    air, sandbox = rows(status, "adapters")
    assert (air.adapter, air.instance, air.up) == ("air-q", "air", True)
    assert air.published == Count(total=42.0)  # both contracts together
    assert air.dead_letters == Count(total=5.0)
    assert (sandbox.up, sandbox.restarts) == (False, Count(total=3.0))
    stations, never = rows(status, "sources")
    assert (never.source, never.up, never.last_success_age_seconds) == ("never", False, None)
    assert (stations.source, stations.last_success_age_seconds) == ("kv", 90.0)
    assert stations.failed_fetches == Count(total=4.0)  # timeout + http-503, not ok
    (replay,) = rows(status, "replays")
    assert (replay.instance, replay.speed, replay.progress_ratio, replay.lag_seconds) == (
        "sandbox",
        60,
        0.25,
        0.0035,
    )
    assert status.dead_letters == {"malformed": Count(total=2.0), "out-of-range": Count(total=6.0)}
    assert [(i.contract, i.reason, i.count.total) for i in status.invalid] == [("a.v1", "schema", 7.0)]

    text = render(status)
    assert text.splitlines()[0] == f"citybus at {OPS}: ready"
    assert "NATS: connected, disconnects 0, reconnects 2, slow consumers 0" in text
    assert "  sandbox-replay  sandbox   NO   3         0          0         0" in text
    assert "  air       kv      NO  90s ago       4" in text
    assert "  air       never   NO  never         0" in text
    assert "  sandbox   60x    25.0%     21600s    3.5ms  1200" in text
    assert "  out-of-range  6" in text
    assert "  a.v1      schema  7" in text


def test_rates_from_two_scrapes_and_a_reset_counter() -> None:
    later = (
        METRICS.replace('contract="a.v1"} 40.0', 'contract="a.v1"} 50.0')
        .replace('reason="malformed"} 2.0', 'reason="malformed"} 4.0')
        .replace('citybus_replay_messages_total{adapter_instance="sandbox"} 1200.0', "")
        .replace("citybus_nats_reconnects_total 2.0", "citybus_nats_reconnects_total 1.0")
        .replace("citybus_nats_connected 1.0", "citybus_nats_connected 0.0")
    )
    not_ready = {"status": "not ready", "checks": {"nats": True, "nats connected": False}}
    status = collect(
        ops_url=OPS,
        readiness=not_ready,
        metrics=parse_metrics(later),
        before=parse_metrics(METRICS),
        interval=2.0,
        now=1000.0,
    )
    assert rows(status, "adapters")[0].published == Count(total=52.0, per_second=5.0)
    assert status.dead_letters["malformed"] == Count(total=4.0, per_second=1.0)
    assert status.dead_letters["out-of-range"] == Count(total=6.0, per_second=0.0)
    assert status.nats_reconnects == Count(total=1.0, per_second=0.5)  # went down: restarted, all new
    assert rows(status, "replays")[0].messages == Count(total=0.0, per_second=0.0)  # not exported any more
    text = render(status)
    assert text.splitlines()[0] == f"citybus at {OPS}: NOT READY  (rates over 2s)"
    assert "checks: nats ok, nats connected FAILING" in text
    assert "NATS: DISCONNECTED" in text
    assert "52 (5.0/s)" in text


def test_no_adapters_and_nothing_rejected() -> None:
    status = collect(
        ops_url=OPS, readiness={}, metrics=parse_metrics("citybus_nats_connected 1.0\n"), now=0.0
    )
    assert render(status).splitlines()[1:] == [
        "  checks: none reported",
        "  NATS: connected, disconnects 0, reconnects 0, slow consumers 0",
        "",
        "adapters: none",
        "dead letters: none",
        "invalid messages: none",
    ]


def test_sections_come_from_the_installed_packages_in_their_order() -> None:
    """bus renders what ``citybus.status`` entry points contribute; it reads no upper layer's metrics."""
    seen: list[float] = []

    def mine(scrape: Scrape) -> list[Section]:
        seen.append(scrape.time)
        counts = scrape.counters("citybus_adapter_dead_letters_total", ("reason",))
        cells = [(reason, str(int(c.total))) for (reason,), c in counts.items()]
        return [
            Section(key="mine", title="mine", columns=("REASON", "N"), cells=cells, rows=[dict(cells)]),
            Section(key="nothing", title="nothing", columns=("A",), cells=[], rows=[], empty="none yet"),
            Section(key="hidden", title="hidden", columns=("A",), cells=[], rows=[]),
        ]

    status = collect(ops_url=OPS, readiness=READY, metrics=parse_metrics(METRICS), now=5.0, providers=[mine])
    assert seen == [5.0]
    lines = render(status).splitlines()
    assert lines[4:8] == ["mine:", "  REASON        N", "  out-of-range  5", "nothing: none yet"]
    assert not any("hidden" in line or "adapters" in line or "replay" in line for line in lines)
    document = status.document()
    assert document["mine"] == [{"out-of-range": "5"}] and document["hidden"] == []
    assert "adapters" not in document and document["ready"] is True


CLUSTER = """\
# TYPE citybus_cluster_node_up gauge
citybus_cluster_node_up{node="citybus-1"} 1.0
citybus_cluster_node_up{node="citybus-2"} 0.0
citybus_cluster_node_up{node="citybus-3"} 0.0
# TYPE citybus_cluster_node_connections gauge
citybus_cluster_node_connections{node="citybus-1"} 4.0
# TYPE citybus_cluster_node_routes gauge
citybus_cluster_node_routes{node="citybus-1"} 0.0
# TYPE citybus_cluster_meta_leader gauge
citybus_cluster_meta_leader{node="citybus-1"} 1.0
citybus_cluster_meta_leader{node="citybus-2"} 0.0
citybus_cluster_meta_leader{node="citybus-3"} 0.0
# TYPE citybus_stream_leader gauge
citybus_stream_leader{account="CITY",node="citybus-1",stream="CITY_PUBLIC_ENVIRONMENT"} 1.0
# TYPE citybus_stream_quorum gauge
citybus_stream_quorum{account="CITY",stream="CITY_PUBLIC_ENVIRONMENT"} 0.0
citybus_stream_quorum{account="CITY",stream="CITY_PUBLIC_MOBILITY"} 0.0
citybus_stream_quorum{account="SANDBOX",stream="CITY_PUBLIC_MOBILITY"} 1.0
"""


def test_a_cluster_shows_its_nodes_and_the_streams_without_quorum() -> None:
    from bus.cluster_status import status_sections

    status = collect(
        ops_url=OPS, readiness=READY, metrics=parse_metrics(CLUSTER), now=0.0, providers=[status_sections]
    )
    lines = render(status).splitlines()
    start = lines.index("NATS cluster nodes:")
    assert lines[start : start + 10] == [
        "NATS cluster nodes:",
        "  NODE       UP   CONNECTIONS  ROUTES  META LEADER",
        "  citybus-1  yes  4            0       yes",
        "  citybus-2  NO   -            -",
        "  citybus-3  NO   -            -",
        "streams without quorum:",
        "  ACCOUNT  STREAM                   LEADER",
        "  CITY     CITY_PUBLIC_ENVIRONMENT  citybus-1",
        "  CITY     CITY_PUBLIC_MOBILITY     NONE",
        "dead letters: none",
    ]
    document = status.document()
    assert document["streams_without_quorum"][1] == {
        "account": "CITY",
        "stream": "CITY_PUBLIC_MOBILITY",
        "leader": None,
    }
    # A single server exports no cluster families: no cluster tables at all.
    alone = collect(
        ops_url=OPS, readiness=READY, metrics=parse_metrics(METRICS), now=0.0, providers=[status_sections]
    )
    assert alone.sections == []


def test_text_that_is_not_prometheus_is_an_error() -> None:
    with pytest.raises(CityBusError, match="not Prometheus text"):
        parse_metrics("citybus_nats_connected one\n")


def test_ops_url_needs_a_running_instance_or_a_url(tmp_path: Path) -> None:
    config = load_config(None, environ={"CITYBUS_SERVER_DATA_DIR": str(tmp_path)})
    with pytest.raises(CityBusError, match=r"start `citybus up`, or .* --ops URL"):
        ops_url_for_client(config)
    assert ops_url_for_client(config, "http://h:1/") == "http://h:1"
    with pytest.raises(CityBusError, match="as a URL"):
        ops_url_for_client(config, "h:1")


@pytest.mark.slow
async def test_status_of_a_running_citybus_up_with_the_sandbox(tmp_path: Path) -> None:
    nothing = await run_citybus("status", cwd=tmp_path, env=citybus_env(tmp_path / "none"))
    assert nothing.returncode == 1 and "start `citybus up`" in nothing.stderr, nothing
    assert len(nothing.stderr.strip().splitlines()) == 1, nothing
    running = await start_up(tmp_path / "up", sandbox=True)
    try:
        answer = await run_citybus("status", "--once", "--json", cwd=running.cwd, env=running.env)
        assert answer.returncode == 0, answer
        status = json.loads(answer.stdout)
        assert status["ops_url"] == running.ops_url
        assert status["nats_connected"] is True and status["checks"]["nats connected"] is True
        assert status["ready"] is True and status["interval_seconds"] is None
        (replay,) = status["replays"]
        assert (replay["instance"], replay["speed"]) == ("sandbox", 60)
        assert [(a["adapter"], a["instance"], a["up"]) for a in status["adapters"]] == [
            ("gateway", "gateway", True),
            ("journey-planner", "journey-planner", True),
            ("privacy", "privacy", True),
            ("sandbox-replay", "sandbox", True),
            ("statistics", "statistics", True),
            ("volunteer-platform", "volunteer-platform", True),
        ]
    finally:
        await running.stop()
