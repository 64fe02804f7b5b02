"""The Grafana dashboard and the Prometheus alert rules shipped in ``docs/`` against what citybus exports.

An operator who imports the dashboard or loads the rules must never meet a panel that stays empty or an
alert that can never fire because a metric was renamed. So every PromQL expression is checked against
the exposition text of a registry holding every metric family a running ``citybus up`` registers (the
bus's, the adapters' and the replay's, each built by the function the runtime calls), with one child of
each labelled family touched so that it is exported: metric names, label names in selectors and in
``by (...)``, ``rate``/``increase`` only over counters, quantiles only over histogram buckets. Every
exported family must appear on the dashboard. And a real ``citybus up``, started as a user starts it,
is scraped: every family queried is in its ``/metrics``.

PyYAML is not a dependency, so the rules file keeps to a small YAML subset (block mappings and lists,
one-line scalars) that :func:`parse_yaml_subset` reads strictly: anything outside the subset is an
error, never a silent misreading. When ``promtool`` (Debian's ``prometheus`` package) is on the PATH,
the rules are also checked by it, and unit-tested with synthetic series so each alert is seen to fire
(and not to fire) as its description says.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.journey.metrics import journey_metrics
from adapters.privacy.metrics import privacy_metrics
from adapters.statistics.metrics import statistics_metrics
from adapters.supervisor import adapter_metrics
from adapters.volunteer.metrics import volunteer_metrics
from bus import Bus
from bus.cluster import LocalCluster
from bus.cluster_monitor import ClusterMonitor
from bus.metrics import Metrics
from bus.monitor import monitor_server
from bus.server import EmbeddedServer
from bus.streams_config import StreamsConfig
from contracts import ErasedPlace
from sandbox.metrics import replay_metrics
from tests.test_cli import start_up
from tests.test_cluster_monitor import CLUSTER_FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "citybus.json"
RULES = ROOT / "docs" / "prometheus" / "citybus-rules.yml"
METRIC = re.compile(r"\bcitybus_[a-z_]+\b")
SELECTOR = re.compile(r"\b(citybus_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"(?:[^\"\\]|\\.)*\"\s*(?:,|$)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase)\(\s*(citybus_[a-z_]+)")
QUANTILE = re.compile(r"histogram_quantile\(\s*[0-9.]+\s*,(.*)\)\s*(?:[<>!=]=?\s*[0-9.]+)?$")
DURATION = re.compile(r"^(?:[0-9]+[smhdwy])+$")


# -- a strict reader of the YAML subset the rules file is written in ------------------------------


class YamlSubsetError(ValueError):
    """The text uses YAML outside the subset this reader knows."""


_PLAIN_FORBIDDEN_START = set("[]{}&*!|>'\"%@`,#-?:")
_NOT_A_STRING = re.compile(r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|[-+]?[0-9][0-9_.eE+-]*)$")


def _scalar(text: str, where: str) -> str:
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlSubsetError(f"{where}: unterminated double-quoted string")
        try:
            value = json.loads(text)  # the JSON escapes are YAML's double-quoted escapes we use
        except json.JSONDecodeError as error:
            raise YamlSubsetError(f"{where}: double-quoted string outside the subset: {error}") from None
        if not isinstance(value, str):
            raise YamlSubsetError(f"{where}: not one double-quoted string")
        return value
    if text.startswith("'"):
        inner = text[1:-1]
        if not text.endswith("'") or len(text) < 2 or re.search(r"(?<!')'(?!')", inner.replace("''", "")):
            raise YamlSubsetError(f"{where}: malformed single-quoted string")
        return inner.replace("''", "'")
    if not text or text[0] in _PLAIN_FORBIDDEN_START or ": " in text or " #" in text or text.endswith(":"):
        raise YamlSubsetError(f"{where}: plain scalar {text!r} needs quoting")
    if _NOT_A_STRING.match(text):
        raise YamlSubsetError(f"{where}: {text!r} would not be a string in YAML; quote it")
    return text


def _lines(text: str) -> list[tuple[int, int, str]]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if "\t" in raw:
            raise YamlSubsetError(f"line {number}: tab character")
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lines.append((number, len(raw) - len(raw.lstrip(" ")), stripped))
    return lines


def parse_yaml_subset(text: str) -> Any:
    """Block mappings (``key: value``, ``key:`` + nested block), block lists (``- ...``), one-line
    scalars (plain, single- or double-quoted; all strings) and full-line comments; nothing else."""
    lines = _lines(text)
    if not lines:
        raise YamlSubsetError("empty document")
    position = 0

    def block(indent: int) -> Any:
        nonlocal position
        if lines[position][2].startswith("- ") or lines[position][2] == "-":
            return sequence(indent)
        return mapping(indent)

    def sequence(indent: int) -> list[Any]:
        nonlocal position
        items: list[Any] = []
        while position < len(lines) and lines[position][1] == indent:
            number, _, content = lines[position]
            if not content.startswith("- "):
                raise YamlSubsetError(f"line {number}: expected a list item at indent {indent}")
            # The item's first key sits two columns in; read it as a mapping starting there.
            lines[position] = (number, indent + 2, content[2:].lstrip(" "))
            if lines[position][2] != content[2:]:
                raise YamlSubsetError(f"line {number}: one space after '-'")
            items.append(mapping(indent + 2))
        return items

    def mapping(indent: int) -> dict[str, Any]:
        nonlocal position
        result: dict[str, Any] = {}
        while position < len(lines) and lines[position][1] == indent:
            number, _, content = lines[position]
            match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?", content)
            if match is None:
                raise YamlSubsetError(f"line {number}: expected 'key: value' or 'key:'")
            key, value = match.group(1), match.group(2)
            if key in result:
                raise YamlSubsetError(f"line {number}: duplicate key {key!r}")
            position += 1
            if value is not None and value.strip():
                result[key] = _scalar(value.strip(), f"line {number}")
            elif position < len(lines) and lines[position][1] > indent:
                result[key] = block(lines[position][1])
            else:
                raise YamlSubsetError(f"line {number}: {key!r} has no value")
        if position < len(lines) and lines[position][1] > indent:
            raise YamlSubsetError(f"line {lines[position][0]}: unexpected indentation")
        return result

    document = block(lines[0][1])
    if position != len(lines):
        raise YamlSubsetError(f"line {lines[position][0]}: unexpected indentation")
    return document


def test_the_yaml_subset_reader_reads_what_it_knows_and_refuses_the_rest() -> None:
    text = "a:\n  - b: x == 0\n    c:\n      d: \"q: {{ $v }}\"\n  - b: 'it''s'\n# note\ne: 5m\n"
    assert parse_yaml_subset(text) == {
        "a": [{"b": "x == 0", "c": {"d": "q: {{ $v }}"}}, {"b": "it's"}],
        "e": "5m",
    }
    for bad in (
        "a: 1",
        "a: true",
        "a: {b: c}",
        "a: x: y",
        "a:\n\tb: c",
        "a: b\na: c",
        "a:\n",
        "a: b\n  c: d",
    ):
        with pytest.raises(YamlSubsetError):
            parse_yaml_subset(bad)


# -- what citybus exports ------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def exported(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, set[str]]]:
    """Sample name → label names, from the exposition text of every family citybus registers."""
    metrics = Metrics()
    registry: CollectorRegistry = metrics.registry
    # The server's own families come from a real server's monitoring endpoint (bus/monitor.py).
    server = EmbeddedServer(
        data_dir=tmp_path_factory.mktemp("monitored"), monitor_port=0, memory_limit=1 << 30
    )
    # The cluster's families from a real three-node cluster's (bus/cluster_monitor.py).
    cluster = LocalCluster(data_dir=tmp_path_factory.mktemp("cluster"), size=3)
    await server.start()
    try:
        await cluster.start()
        bus = Bus(source="/tests")
        await bus.connect(server.url)
        await bus.provision_streams()  # streams, so that the per-stream families have samples
        await bus.drain()
        assert server.monitor_url is not None
        monitor_server(registry, server.monitor_url, memory_limit=server.memory_limit)
        bus = Bus(source="/tests")
        await bus.connect(cluster.url)
        await bus.provision_streams(StreamsConfig(replicas=3))  # leaders, replicas and quorum
        await bus.drain()
        registry.register(ClusterMonitor(cluster.monitor_urls))
        yield await asyncio.to_thread(_exported, metrics)
    finally:
        await cluster.stop()
        await server.stop()


def _exported(metrics: Metrics) -> dict[str, set[str]]:
    registry = metrics.registry
    contract = metrics.contract("environment.beach-observation.v1")
    contract.published.inc()
    contract.received.inc()
    contract.handler_errors.inc()
    contract.handler_duration.observe(0.001)
    contract.latency.observe(0.01)
    contract.invalid("schema")
    metrics.dead_lettered.labels("environment.beach-observation.v1", "out-of-range").inc()
    metrics.dead_letters_unstored.labels("environment.beach-observation.v1", "out-of-range").inc()
    metrics.publish_retries.labels("environment.beach-observation.v1").inc()
    metrics.consumer_pending.labels("archive-beach-observation-v1", "CITY_PUBLIC_ENVIRONMENT").set(3)
    metrics.stream_setting_kept.labels("CITY_PUBLIC_ENVIRONMENT", "replicas").set(1)
    metrics.permission_denials.labels("publish").inc()
    instance = adapter_metrics(registry).instance("vicotee", "drammen")
    instance.up.set(1)
    instance.restarts.inc()
    instance.published("environment.beach-observation.v1")
    instance.received("environment.beach-observation.v1")
    instance.dead_lettered("out-of-range")
    source = instance.source("sensors")
    source.fetched("ok")
    source.up.set(1)
    source.last_success.set(1.0)
    replay = replay_metrics(registry)
    replay.messages.labels("sandbox").inc()
    replay.lag.labels("sandbox").set(0.001)
    replay.schedule_error.labels("sandbox").observe(0.001)
    replay.position.labels("sandbox").set(1)
    replay.progress.labels("sandbox").set(0.5)
    replay.speed.labels("sandbox").set(60)
    replay.loops.labels("sandbox").inc()
    replay.faults.labels("sandbox", "duplicate").inc()
    journey = journey_metrics(registry)
    journey.loaded(4680, 493, 0.5, date(2018, 12, 8), ZoneInfo("Europe/Oslo"))
    journey.answered("ok", 0.004)
    journey.live("applied")
    metrics.personal_unreadable.labels("community.volunteer-signup.v1").inc()
    volunteer = volunteer_metrics(registry)
    volunteer.signed("signup", "confirmed")
    volunteer.offers.labels("accepted").inc()
    volunteer.rosters.inc()
    volunteer.places("beach-cleanup", 3, "open")
    volunteer.conflicts.inc()
    volunteer.erased_places.inc()
    volunteer.volunteers.set(1)
    privacy = privacy_metrics(registry)
    erased = [ErasedPlace(place="stream", location="CITY_PERSONAL_COMMUNITY", erased=1)]
    privacy.erasure("request", erased, False, 1.7e9)
    privacy.exports.inc()
    statistics = statistics_metrics(registry)
    statistics.releases.labels("volunteer-hours", "released").inc()
    statistics.budget("volunteer-hours", 0.5, 1.0)
    statistics.suppressed.labels("volunteer-hours", "threshold").inc()
    statistics.last_release.labels("volunteer-hours").set(1.7e9)
    statistics.comparisons.labels("volunteer-hours").inc()
    statistics.contributions.labels("counted").inc()
    statistics.observations.labels("air-quality").inc()
    statistics.conflicts.inc()

    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        # A family that exported nothing means a child above is missing, and the check would be blind.
        assert family.samples, f"{family.name} exported no sample: touch one of its children above"
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def _families(exported: dict[str, set[str]]) -> set[str]:
    return {re.sub(r"_(?:total|created|bucket|sum|count)$", "", name) for name in exported}


# -- the documents -------------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    document = parse_yaml_subset(RULES.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def expressions(dashboard: dict[str, Any], rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = dashboard_expressions(dashboard) + [(f"alert {rule['alert']}", rule["expr"]) for rule in rules]
    assert len(found) > 30
    return found


def test_dashboard_is_provisioning_ready_with_the_datasource_as_an_input(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == "citybus" and dashboard["title"] == "citybus"
    assert [(i["name"], i["type"], i["pluginId"]) for i in dashboard["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    # A datasource variable of the same name lets ${DS_PROMETHEUS} resolve when provisioned from a file.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["DS_PROMETHEUS"]["type"], variables["DS_PROMETHEUS"]["query"]) == (
        "datasource",
        "prometheus",
    )
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert panels
    for panel in panels:
        sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources), panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_dashboard_has_the_rows_an_operator_looks_for(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Messages",
        "Handlers and latency",
        "NATS connection",
        "Adapters",
        "Polled sources",
        "Sandbox replay",
        "JetStream consumers",
        "NATS server",
        "NATS cluster",
        "Journey planner",
        "Volunteer platform",
        "Personal data",
        "Statistics",
    ]


def test_every_metric_queried_is_exported(
    expressions: list[tuple[str, str]], exported: dict[str, set[str]]
) -> None:
    unknown = [
        (where, name) for where, expr in expressions for name in METRIC.findall(expr) if name not in exported
    ]
    assert not unknown, f"not exported by citybus: {unknown}"


@pytest.mark.slow
async def test_a_running_citybus_up_exports_every_family_queried(
    tmp_path: Path, expressions: list[tuple[str, str]]
) -> None:
    """The real thing: ``citybus up`` as a user starts it (the sandbox replaying), scraped over HTTP."""
    running = await start_up(tmp_path / "up", sandbox=True)
    try:
        async with aiohttp.ClientSession() as session:
            # Once the replay has published, its labelled families have samples too.
            for _ in range(100):
                async with session.get(f"{running.ops_url}/metrics") as response:
                    text = await response.text()
                if "citybus_replay_messages_total{" in text:
                    break
                await asyncio.sleep(0.1)
    finally:
        await running.stop()
    registered = {family.name for family in text_string_to_metric_families(text)}
    queried = _families({name: set() for _, expr in expressions for name in METRIC.findall(expr)})
    # The cluster's families need a cluster: tests/test_cluster_monitor.py scrapes a citybus up on one.
    missing = queried - registered - CLUSTER_FAMILIES
    assert missing == set(), "queried, but not exported by a running citybus up"
    assert "citybus_replay_messages_total{" in text  # the replay ran: its series are real ones


def test_every_label_queried_exists_on_the_metric(
    expressions: list[tuple[str, str]], exported: dict[str, set[str]]
) -> None:
    for where, expr in expressions:
        for name, matchers in SELECTOR.findall(expr):
            assert MATCHER.sub("", matchers).strip() == "", f"{where}: cannot read the matchers {matchers!r}"
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                assert label in exported.get(name, set()), f"{where}: {name} has no label {label!r}"
        available = set().union(*(exported.get(name, set()) for name in METRIC.findall(expr)))
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                assert label in available, f"{where}: grouping by {label!r}, which {expr!r} does not have"


def test_rates_and_quantiles_are_taken_of_counters_and_histograms(expressions: list[tuple[str, str]]) -> None:
    for where, expr in expressions:
        for function, name in RANGE_FUNCTION.findall(expr):
            assert name.endswith(("_total", "_bucket", "_sum", "_count")), (
                f"{where}: {function}() of gauge {name}"
            )
        if "histogram_quantile" in expr:
            match = QUANTILE.search(expr)
            assert match is not None, f"{where}: cannot read {expr!r}"
            inner = match.group(1)
            assert all(n.endswith("_bucket") for n in METRIC.findall(inner)), (
                f"{where}: quantile of non-buckets"
            )
            assert any("le" in g.replace(" ", "").split(",") for g in GROUPING.findall(inner)), (
                f"{where}: no le"
            )


def test_the_dashboard_charts_every_exported_family(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    charted = _families(
        {name: set() for _, expr in dashboard_expressions(dashboard) for name in METRIC.findall(expr)}
    )
    assert _families(exported) - charted == set()


def test_every_alert_has_for_severity_summary_and_description(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert DURATION.match(rule["for"]), f"{rule['alert']}: for: {rule['for']!r}"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert all(len(text) > 20 for text in rule["annotations"].values()), rule["alert"]


def test_alerts_watch_what_operators_asked_for(rules: list[dict[str, Any]]) -> None:
    watched = {name for rule in rules for name in METRIC.findall(rule["expr"])}
    assert watched == {
        "citybus_nats_connected",
        "citybus_adapter_up",
        "citybus_adapter_finished",
        "citybus_adapter_restarts_total",
        "citybus_dead_letters_total",
        "citybus_messages_invalid_total",
        "citybus_source_up",
        "citybus_replay_lag_seconds",
        "citybus_handler_duration_seconds_bucket",
        "citybus_consumer_pending",
        "citybus_nats_permission_denials_total",
        "citybus_nats_server_memory_bytes",
        "citybus_nats_server_memory_limit_bytes",
        "citybus_nats_server_slow_consumers_total",
        "citybus_cluster_node_up",
        "citybus_stream_replica",
        "citybus_stream_quorum",
        "citybus_journey_timetable_valid_to_timestamp_seconds",
        "citybus_journey_plan_seconds_bucket",
        "citybus_personal_erasure_incomplete_total",
        "citybus_personal_erasure_last_timestamp_seconds",
        "citybus_statistics_budget_spent",
        "citybus_statistics_budget_remaining",
        "citybus_statistics_releases_total",
    }


# -- promtool ------------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH (Debian package prometheus)"
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(RULES), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 21 rules found" in result.stdout


BEACH = "environment.beach-observation.v1"


def _replica(node: str, state: str) -> str:
    labels = f'account="CITY",stream="CITY_PUBLIC_ENVIRONMENT",node="{node}",state="{state}"'
    return f'citybus_stream_replica{{job="citybus",instance="bus:9464",{labels}}}'


BIKES = "mobility.bike-station-status.v1"


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"alertname": name, "exp_alerts": [{"exp_labels": {"severity": severity, **labels}}]}


def quiet(name: str) -> dict[str, Any]:
    return {"alertname": name, "exp_alerts": []}


# Synthetic series, one sample a minute: for each alert a sick series that fires it (once its `for:`
# has passed, not before) and a healthy one that must not.
SERIES = [
    ('citybus_nats_connected{job="citybus",instance="bus:9464"}', "1 0x20"),
    ('citybus_adapter_up{adapter="vicotee",adapter_instance="drammen"}', "1 1 0x20"),
    ('citybus_adapter_up{adapter="frost",adapter_instance="weather"}', "1x22"),
    # A replay that does not loop finished its work at minute 2: not running, and not down either.
    ('citybus_adapter_up{adapter="sandbox-replay",adapter_instance="once"}', "1 1 0x20"),
    ('citybus_adapter_finished{adapter="sandbox-replay",adapter_instance="once"}', "0 0 1x20"),
    ('citybus_adapter_finished{adapter="vicotee",adapter_instance="drammen"}', "0x22"),
    ('citybus_adapter_restarts_total{adapter="vicotee",adapter_instance="drammen"}', "0+1x20"),
    ('citybus_adapter_restarts_total{adapter="frost",adapter_instance="weather"}', "0 0 1x20"),
    (f'citybus_dead_letters_total{{contract="{BEACH}",reason="out-of-range"}}', "0+2x40"),
    (f'citybus_dead_letters_total{{contract="{BIKES}",reason="schema"}}', "5x40"),
    (f'citybus_messages_invalid_total{{contract="{BIKES}",reason="schema"}}', "0+1x40"),
    (f'citybus_messages_invalid_total{{contract="{BEACH}",reason="schema"}}', "3x40"),
    ('citybus_source_up{adapter="frost",adapter_instance="weather",source="observations"}', "0x30"),
    ('citybus_source_up{adapter="nilu",adapter_instance="air",source="stations"}', "1x30"),
    ('citybus_replay_lag_seconds{adapter_instance="sandbox"}', "0.002 2.5x10"),
    ('citybus_replay_lag_seconds{adapter_instance="fast"}', "0.5x11"),
    # Every observation of the beach handler between 0.5 s and 1 s; the bikes handler under 1 ms.
    (f'citybus_handler_duration_seconds_bucket{{contract="{BEACH}",le="0.5"}}', "0x30"),
    (f'citybus_handler_duration_seconds_bucket{{contract="{BEACH}",le="1.0"}}', "0+10x30"),
    (f'citybus_handler_duration_seconds_bucket{{contract="{BEACH}",le="+Inf"}}', "0+10x30"),
    (f'citybus_handler_duration_seconds_bucket{{contract="{BIKES}",le="0.001"}}', "0+10x30"),
    (f'citybus_handler_duration_seconds_bucket{{contract="{BIKES}",le="+Inf"}}', "0+10x30"),
    # The archive falls ever further behind; the bridge keeps up.
    ('citybus_consumer_pending{consumer="archive",stream="CITY_PUBLIC_ENVIRONMENT"}', "500+100x30"),
    ('citybus_consumer_pending{consumer="bridge",stream="CITY_PUBLIC_ENVIRONMENT"}', "3x30"),
    # An adapter keeps publishing where it may not; nobody subscribes where they may not.
    (
        'citybus_nats_permission_denials_total{job="citybus",instance="bus:9464",operation="publish"}',
        "0+1x30",
    ),
    (
        'citybus_nats_permission_denials_total{job="citybus",instance="bus:9464",operation="subscription"}',
        "0x30",
    ),
    # The server creeps up to its 1 GiB limit (past 90% from minute 10) and stays; the other keeps well under.
    ('citybus_nats_server_memory_bytes{job="citybus",instance="bus:9464"}', "500e6+50e6x10 1e9x20"),
    ('citybus_nats_server_memory_limit_bytes{job="citybus",instance="bus:9464"}', "1073741824x30"),
    ('citybus_nats_server_memory_bytes{job="citybus",instance="other:9464"}', "200e6x30"),
    ('citybus_nats_server_memory_limit_bytes{job="citybus",instance="other:9464"}', "1073741824x30"),
    # Slow consumers keep being found on one server; the other found one once, long ago.
    ('citybus_nats_server_slow_consumers_total{job="citybus",instance="bus:9464"}', "0+2x30"),
    ('citybus_nats_server_slow_consumers_total{job="citybus",instance="other:9464"}', "1x30"),
    # A cluster node stops answering at minute 2; the others answer all along.
    ('citybus_cluster_node_up{job="citybus",instance="bus:9464",node="citybus-2"}', "1 1 0x20"),
    ('citybus_cluster_node_up{job="citybus",instance="bus:9464",node="citybus-1"}', "1x22"),
    # A replica lags from minute 2, then is offline from minute 5 (one alert all along, whatever the
    # state); another lagged for two minutes and caught up; the leader's own replica is current.
    (_replica("citybus-3", "lagging"), "_ _ 1 1 1 stale"),
    (_replica("citybus-3", "offline"), "_ _ _ _ _ 1x20"),
    (_replica("citybus-2", "lagging"), "_ 1 1 stale"),
    (_replica("citybus-1", "current"), "1x25"),
    # A stream loses its quorum at minute 2 and keeps it lost; another is without a leader for one
    # minute only (an election), a third never loses it.
    ('citybus_stream_quorum{account="CITY",stream="CITY_PUBLIC_MOBILITY"}', "1 1 0x10"),
    ('citybus_stream_quorum{account="CITY",stream="CITY_PUBLIC_COMMUNITY"}', "1 0 1x10"),
    ('citybus_stream_quorum{account="CITY",stream="CITY_PUBLIC_ENVIRONMENT"}', "1x12"),
    # One planner's timetable ends 8 days after the start (the alert is due after a day and an hour);
    # the other's in a year. Time in these tests starts at 0 (1970-01-01).
    ('citybus_journey_timetable_valid_to_timestamp_seconds{instance="old:9464"}', "691200x1700"),
    ('citybus_journey_timetable_valid_to_timestamp_seconds{instance="new:9464"}', "31536000x1700"),
    # One planner takes 0.1–0.25 s per request from the start; the other, as busy, under 10 ms: half
    # the requests slow, so the 95th percentile over both is slow.
    ('citybus_journey_plan_seconds_bucket{instance="slow:9464",le="0.1"}', "0x30"),
    ('citybus_journey_plan_seconds_bucket{instance="slow:9464",le="0.25"}', "0+10x30"),
    ('citybus_journey_plan_seconds_bucket{instance="slow:9464",le="+Inf"}', "0+10x30"),
    ('citybus_journey_plan_seconds_bucket{instance="fast:9464",le="0.01"}', "0+10x30"),
    ('citybus_journey_plan_seconds_bucket{instance="fast:9464",le="+Inf"}', "0+10x30"),
    # One erasure left a place behind at minute 2; the other service's erasures all completed.
    ('citybus_personal_erasure_incomplete_total{instance="bus:9464",reason="request"}', "0 0 1x30"),
    ('citybus_personal_erasure_incomplete_total{instance="other:9464",reason="retention"}', "0x30"),
    # One service's sweep stopped at time 0; the other's sweeps every minute.
    ('citybus_personal_erasure_last_timestamp_seconds{instance="stuck:9464",reason="retention"}', "0x300"),
    ('citybus_personal_erasure_last_timestamp_seconds{instance="bus:9464",reason="retention"}', "0+60x300"),
    # One data set spends its budget of 1 by half at minutes 2 and 4; another keeps half of it; a
    # public data set spends nothing of nothing.
    ('citybus_statistics_budget_spent{instance="bus:9464",dataset="volunteer-hours"}', "0 0 0.5 0.5 1x20"),
    (
        'citybus_statistics_budget_remaining{instance="bus:9464",dataset="volunteer-hours"}',
        "1 1 0.5 0.5 0x20",
    ),
    ('citybus_statistics_budget_spent{instance="bus:9464",dataset="sports-hours"}', "0.5x24"),
    ('citybus_statistics_budget_remaining{instance="bus:9464",dataset="sports-hours"}', "0.5x24"),
    ('citybus_statistics_budget_spent{instance="bus:9464",dataset="air-quality"}', "0x24"),
    ('citybus_statistics_budget_remaining{instance="bus:9464",dataset="air-quality"}', "0x24"),
    # One release refused at minute 3; releases made all along.
    ('citybus_statistics_releases_total{dataset="volunteer-hours",outcome="refused"}', "0 0 0 1x30"),
    ('citybus_statistics_releases_total{dataset="air-quality",outcome="released"}', "0+1x30"),
]
EXPECTED = [
    ("30s", [quiet("CitybusNatsDisconnected"), quiet("CitybusAdapterDown")]),
    ("3m", [alert("CitybusNatsDisconnected", "critical", job="citybus", instance="bus:9464")]),
    ("5m", [alert("CitybusAdapterDown", "critical", adapter="vicotee", adapter_instance="drammen")]),
    ("5m", [alert("CitybusReplayLagging", "warning", adapter_instance="sandbox")]),
    ("10m", [quiet("CitybusSourceDown"), quiet("CitybusDeadLettersRising"), quiet("CitybusHandlerSlow")]),
    (
        "18m",
        [alert("CitybusAdapterRestartingOften", "warning", adapter="vicotee", adapter_instance="drammen")],
    ),
    (
        "20m",
        [
            alert(
                "CitybusSourceDown",
                "warning",
                adapter="frost",
                adapter_instance="weather",
                source="observations",
            )
        ],
    ),
    ("20m", [alert("CitybusHandlerSlow", "warning", contract=BEACH)]),
    ("30m", [alert("CitybusDeadLettersRising", "warning", contract=BEACH, reason="out-of-range")]),
    ("30m", [alert("CitybusInvalidMessagesRising", "warning", contract=BIKES, reason="schema")]),
    ("3m", [quiet("CitybusPermissionDenied")]),
    ("10m", [alert("CitybusPermissionDenied", "warning", operation="publish")]),
    ("10m", [quiet("CitybusConsumerBacklog")]),  # over 1000 from minute 6, but not yet for 15 minutes
    (
        "25m",
        [alert("CitybusConsumerBacklog", "warning", consumer="archive", stream="CITY_PUBLIC_ENVIRONMENT")],
    ),
    ("15m", [quiet("CitybusNatsServerMemoryHigh")]),  # over 90% from minute 8, not yet for 10 minutes
    ("20m", [alert("CitybusNatsServerMemoryHigh", "warning", job="citybus", instance="bus:9464")]),
    ("3m", [quiet("CitybusClusterNodeDown")]),  # down from minute 2, not yet for 2 minutes
    ("5m", [alert("CitybusClusterNodeDown", "warning", node="citybus-2")]),
    ("6m", [quiet("CitybusStreamReplicaLost")]),  # not current from minute 2, not yet for 5 minutes
    (
        "8m",
        [
            alert(
                "CitybusStreamReplicaLost",
                "warning",
                account="CITY",
                stream="CITY_PUBLIC_ENVIRONMENT",
                node="citybus-3",
            )
        ],
    ),
    ("2m", [quiet("CitybusStreamNoQuorum")]),  # the election at minute 1 is over; the loss just began
    ("3m", [alert("CitybusStreamNoQuorum", "critical", account="CITY", stream="CITY_PUBLIC_MOBILITY")]),
    ("3m", [quiet("CitybusNatsServerSlowConsumers")]),
    ("10m", [alert("CitybusNatsServerSlowConsumers", "warning", job="citybus", instance="bus:9464")]),
    ("1d", [quiet("CitybusJourneyTimetableRunningOut")]),  # 7 days left from day 1, not yet for an hour
    ("1d2h", [alert("CitybusJourneyTimetableRunningOut", "warning", instance="old:9464")]),
    ("10m", [quiet("CitybusJourneyPlanningSlow")]),
    ("20m", [alert("CitybusJourneyPlanningSlow", "warning")]),
    ("2m", [quiet("CitybusPersonalErasureIncomplete")]),
    ("4m", [alert("CitybusPersonalErasureIncomplete", "critical", instance="bus:9464", reason="request")]),
    ("3h10m", [quiet("CitybusRetentionSweepStale")]),  # stale from 3h, not yet for 15 minutes
    ("3h20m", [alert("CitybusRetentionSweepStale", "warning", instance="stuck:9464", reason="retention")]),
    ("8m", [quiet("CitybusStatisticsBudgetNearlySpent")]),  # all spent from minute 4, not yet for 5 minutes
    (
        "10m",
        [
            alert(
                "CitybusStatisticsBudgetNearlySpent",
                "warning",
                instance="bus:9464",
                dataset="volunteer-hours",
            )
        ],
    ),
    ("3m", [quiet("CitybusStatisticsReleaseRefused")]),
    ("5m", [alert("CitybusStatisticsReleaseRefused", "warning", dataset="volunteer-hours")]),
]


@needs_promtool
def test_each_alert_fires_on_a_sick_series_only_after_its_for(
    tmp_path: Path, rules: list[dict[str, Any]]
) -> None:
    assert {case["alertname"] for _, cases in EXPECTED for case in cases if case["exp_alerts"]} == {
        rule["alert"] for rule in rules
    }
    # promtool compares annotations too; `promtool check rules` above covers their templates, so the
    # unit test runs on a copy without them (JSON is YAML, so the copy needs no YAML writer).
    stripped = {
        "groups": [
            {"name": "citybus", "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in rules]}
        ]
    }
    (tmp_path / "rules.yml").write_text(json.dumps(stripped), encoding="utf-8")
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": values} for series, values in SERIES],
                "alert_rule_test": [{"eval_time": at, **case} for at, cases in EXPECTED for case in cases],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(tests), encoding="utf-8")
    result = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
