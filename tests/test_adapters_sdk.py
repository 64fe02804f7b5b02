"""The adapter SDK: declaration, discovery through real entry points, instances from config,
the context's contract checks, supervision (restart, backoff, isolation, shutdown order), the
test harness against both buses and ``citybus up`` running adapters (``citybus adapter new``:
test_scaffold.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import sdk_adapters
import structlog.testing
from conftest import wait_for
from sdk_adapters import JOURNAL, Echo, Leaky, Sneaky, Ticker

from adapters import (
    Adapter,
    AdapterDeclarationError,
    Backoff,
    Context,
    Supervisor,
    UndeclaredContractError,
    check_declaration,
    discover,
    instances_from_config,
)
from adapters.testing import AdapterHarness
from bus import Bus, Event, MemoryBus, Metrics
from bus.config import load_config
from bus.errors import ConfigError
from bus.health import Health
from bus.runtime import Runtime
from bus.server import EmbeddedServer
from contracts import BeachObservation, WeatherObserved

TESTS = Path(__file__).parent
ENTRY_POINTS = """\
[citybus.adapters]
ticker = sdk_adapters:Ticker
echo = sdk_adapters:Echo
sneaky = sdk_adapters:Sneaky
leaky = sdk_adapters:Leaky
missing = sdk_adapters:DoesNotExist
broken = broken_adapter:Whatever
not-an-adapter = sdk_adapters:NOT_AN_ADAPTER
misnamed = sdk_adapters:Ticker
"""


def install_entry_points(site: Path) -> Path:
    """A real installed distribution (a .dist-info with entry_points.txt) in ``site``."""
    info = site / "citybus_sdk_tests-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: citybus-sdk-tests\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = install_entry_points(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    yield site


def sample(bus: Bus, name: str, **labels: str) -> float:
    return bus.metrics.registry.get_sample_value(name, labels) or 0.0


# -- declaration ------------------------------------------------------------------------------


def test_well_declared_adapters_pass() -> None:
    assert check_declaration(Ticker) is Ticker
    assert Ticker.kind() == "source"
    assert Echo.kind() == "service"


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "Not Kebab"}, "kebab-case"),
        ({"Config": dict}, "msgspec.Struct"),
        ({"produces": [BeachObservation]}, "must be a tuple"),
        ({"produces": (int,)}, "not a contract"),
        ({"run": lambda self, ctx: None}, "async def run"),
    ],
)
def test_bad_declarations_are_refused_with_the_reason(attrs: dict[str, object], message: str) -> None:
    cls = type("Bad", (Ticker,), {"name": "bad", **attrs})
    with pytest.raises(AdapterDeclarationError, match=message):
        check_declaration(cls)


def test_an_adapter_moving_personal_data_to_public_must_declare_itself_a_declassifier() -> None:
    with pytest.raises(AdapterDeclarationError, match="declassifier"):
        check_declaration(Leaky)
    declared = type("Declared", (Leaky,), {"declassifier": True})
    assert check_declaration(declared) is declared


# -- discovery --------------------------------------------------------------------------------


def test_discovery_finds_installed_adapters_and_reports_broken_ones(installed: Path) -> None:
    found = discover()
    assert found.adapters["ticker"] is Ticker
    assert found.adapters["echo"] is Echo
    assert found.distributions["ticker"] == "citybus-sdk-tests 0.1"
    problems = {p.name: p.reason for p in found.problems}
    assert "import failed: ImportError: this adapter needs a library" in problems["broken"]
    assert "missing attribute" in problems["missing"]
    assert "not a subclass of adapters.Adapter" in problems["not-an-adapter"]
    assert "declassifier" in problems["leaky"]
    assert "calls itself 'ticker'" in problems["misnamed"]


def test_adapters_list_shows_installed_adapters(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(TESTS)])}
    result = subprocess.run(
        [sys.executable, "-m", "bus.cli", "adapters", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    ticker = next(a for a in listing["adapters"] if a["name"] == "ticker")
    assert ticker["produces"] == ["environment.beach-observation"]
    assert ticker["classification"] == ["public"]
    assert ticker["kind"] == "source"
    assert any("broken" in p and "ImportError" in p for p in listing["problems"])
    plain = subprocess.run(
        [sys.executable, "-m", "bus.cli", "adapters", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "ticker" in plain.stdout and "Traceback" not in plain.stderr
    assert "adapter entry point 'broken'" in plain.stderr


# -- instances from configuration -------------------------------------------------------------


ADAPTERS: dict[str, type[Adapter]] = {"ticker": Ticker, "echo": Echo}  # type: ignore[type-arg]


def test_several_instances_of_one_adapter() -> None:
    instances = instances_from_config(
        {
            "ticker-a": {"adapter": "ticker", "site": "sota-fjordpark"},
            "ticker-b": {"adapter": "ticker", "interval": 5},
            "echo": {},
            "off": {"adapter": "ticker", "enabled": False},
        },
        ADAPTERS,
    )
    assert [(i.name, i.adapter.name) for i in instances] == [
        ("ticker-a", "ticker"),
        ("ticker-b", "ticker"),
        ("echo", "echo"),
    ]
    assert instances[0].config == sdk_adapters.TickerConfig(site="sota-fjordpark")
    assert instances[1].config == sdk_adapters.TickerConfig(interval=5.0)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"t": {"adapter": "ticker", "intervall": 1}},
            r"\[adapters.t\] \(ticker\): unknown key 'intervall'; "
            r"allowed keys: adapter, enabled, clock, account, site, interval, crash_after",
        ),
        (
            {"t": {"adapter": "ticker", "interval": "fast"}},
            r"\[adapters.t\] \(ticker\): key interval: Expected `float`, got `str`",
        ),
        (
            {"t": {"adapter": "nope"}},
            r"no adapter named 'nope' is installed; installed adapters: echo, ticker",
        ),
        ({"t": {}}, r"set `adapter = \"NAME\"`"),
        ({"Bad_Name": {"adapter": "ticker"}}, "kebab case"),
        ({"t": {"adapter": "ticker", "enabled": "yes"}}, "enabled must be true or false"),
    ],
)
def test_config_errors_name_instance_adapter_and_key(
    sections: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        instances_from_config(sections, ADAPTERS)


# -- the context ------------------------------------------------------------------------------


async def test_context_refuses_contracts_the_adapter_did_not_declare() -> None:
    with pytest.raises(UndeclaredContractError, match="may not publish operations.device-status"):
        async with AdapterHarness(Sneaky) as harness:
            await harness.settle()
    async with AdapterHarness(Ticker) as harness:
        assert harness.context is not None
        with pytest.raises(
            UndeclaredContractError, match="may not subscribe to environment.weather-observed"
        ):
            await harness.context.subscribe(WeatherObserved, harness._record)


# -- the harness, against both buses ------------------------------------------------------------


@pytest.fixture(params=["memory", "nats"])
async def harness_bus(request: pytest.FixtureRequest, nats_server: EmbeddedServer) -> AsyncIterator[Bus]:
    b: Bus
    if request.param == "memory":
        b = MemoryBus(metrics=Metrics())
        await b.connect()
    else:
        b = Bus(metrics=Metrics())
        await b.connect(nats_server.url)
        await b.provision_streams()
    yield b
    await b.drain()


async def test_harness_runs_a_service_the_same_on_both_buses(harness_bus: Bus, entity: str) -> None:
    async with AdapterHarness(Echo, bus=harness_bus, instance=f"echo-{entity}") as harness:
        await harness.publish(
            msgspec.structs.replace(BeachObservation.example(), site=entity, water_temperature=16.4)
        )
        [reply] = await harness.wait_for(WeatherObserved)
        assert reply.data.station == entity
        assert reply.data.temperature == 16.4
        assert reply.envelope.source == f"/adapters/echo-{entity}"
        # an invalid message never reaches the adapter; it is dead-lettered the same way on both
        await harness_bus.publish_raw(
            f"city.public.environment.beach-observation.{entity}",
            b"{}",
            {
                "ce-specversion": "1.0",
                "ce-id": "x",
                "ce-source": "/t",
                "ce-type": "environment.beach-observation.v1",
            },
        )
        await wait_for(lambda: len(harness.dead_letters) >= 1)
        assert harness.dead_letters[0].reason == "invalid-body"
        assert len(harness.published(WeatherObserved)) == 1


# -- supervision ------------------------------------------------------------------------------


def supervised(bus: Bus, sections: dict[str, dict[str, object]], **kwargs: object) -> Supervisor:
    instances = instances_from_config(sections, ADAPTERS)
    return Supervisor(instances, bus=bus, backoff=Backoff(initial=0.01, maximum=0.05), **kwargs)  # type: ignore[arg-type]


async def test_a_crashing_adapter_is_restarted_while_another_keeps_delivering(bus: Bus, entity: str) -> None:
    steady: list[Event[BeachObservation]] = []

    async def collect(event: Event[BeachObservation]) -> None:
        steady.append(event)

    await bus.subscribe(BeachObservation, collect, entity=f"steady-{entity}")
    health = Health()
    supervisor = supervised(
        bus,
        {
            "crashy": {"adapter": "ticker", "site": f"crashy-{entity}", "crash_after": 1},
            "steady": {"adapter": "ticker", "site": f"steady-{entity}"},
        },
        health=health,
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        await wait_for(
            lambda: (
                sample(bus, "citybus_adapter_restarts_total", adapter="ticker", adapter_instance="crashy")
                >= 3
            )
        )
        before = len(steady)
        await wait_for(lambda: len(steady) >= before + 5)  # still delivering after three crashes
        assert sample(bus, "citybus_adapter_up", adapter="ticker", adapter_instance="steady") == 1
        assert health.status()["adapter steady"] is True
        supervisor.stop()
    assert sample(bus, "citybus_adapter_restarts_total", adapter="ticker", adapter_instance="steady") == 0
    assert (
        sample(
            bus,
            "citybus_adapter_messages_published_total",
            adapter="ticker",
            adapter_instance="steady",
            contract="environment.beach-observation.v1",
        )
        >= 5
    )


async def test_backoff_doubles_up_to_its_bound() -> None:
    bus = MemoryBus(metrics=Metrics())
    await bus.connect()
    with structlog.testing.capture_logs() as logs:
        supervisor = Supervisor(
            instances_from_config({"crashy": {"adapter": "ticker", "crash_after": 1}}, ADAPTERS),
            bus=bus,
            backoff=Backoff(initial=0.01, maximum=0.04, stable_after=60),
        )

        def delays() -> list[float]:
            return [e["restart_in"] for e in logs if e["event"] == "adapter failed, restarting"]

        async with asyncio.TaskGroup() as tg:
            tg.create_task(supervisor.run())
            await wait_for(lambda: len(delays()) >= 5)
            supervisor.stop()
    assert delays()[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]
    await bus.drain()


async def test_shutdown_stops_adapters_in_reverse_order(bus: Bus, entity: str) -> None:
    JOURNAL.clear()
    supervisor = supervised(
        bus,
        {
            f"first-{entity}": {"adapter": "ticker", "interval": 1},
            f"second-{entity}": {"adapter": "ticker", "interval": 1},
            f"third-{entity}": {"adapter": "ticker", "interval": 1},
        },
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        await wait_for(
            lambda: all(c.is_ready for c in supervisor.contexts.values()) and len(supervisor.contexts) == 3
        )
        supervisor.stop()
    assert JOURNAL == [f"stopped third-{entity}", f"stopped second-{entity}", f"stopped first-{entity}"]


# -- citybus up runs configured adapters ------------------------------------------------------


async def test_citybus_up_runs_the_configured_adapters(installed: Path, tmp_path: Path) -> None:
    toml = tmp_path / "citybus.toml"
    toml.write_text(
        f'[server]\ndata_dir = "{tmp_path / "nats"}"\n[ops]\nport = 0\n'
        '[adapters.echo]\n[adapters.beach-ticker]\nadapter = "ticker"\nsite = "blektjern"\ninterval = 0.05\n'
    )
    config = load_config(toml, environ={})
    runtime = Runtime(config)
    stop = asyncio.Event()
    replies: list[Event[WeatherObserved]] = []

    async def collect(event: Event[WeatherObserved]) -> None:
        replies.append(event)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await asyncio.wait_for(runtime.ready.wait(), 30)
        status = runtime.health.status()
        assert status["adapter echo"] is True and status["adapter beach-ticker"] is True
        # Each adapter runs as its own user; the runtime's own user reads no data: an internal one does.
        assert runtime.connector is not None and runtime.connector.enabled
        reader = await runtime.connector.connect("CITY", "internal")
        await reader.subscribe(WeatherObserved, collect, entity="blektjern")
        await wait_for(lambda: len(replies) >= 2)  # ticker → echo → weather, through the embedded server
        await reader.close()
        stop.set()
    assert replies[0].envelope.source == "/adapters/echo"


# -- adapters run ------------------------------------------------------------------------------


def test_adapters_run_finds_an_instance_that_citybus_up_leaves_out(installed: Path, tmp_path: Path) -> None:
    from adapters.cli import find_instance

    toml = tmp_path / "citybus.toml"
    toml.write_text('[adapters.solo]\nadapter = "ticker"\nenabled = false\nsite = "stordammen"\n')
    config = load_config(toml, environ={})
    instance = find_instance("solo", config)
    assert (instance.name, instance.adapter, instance.config) == (
        "solo",
        Ticker,
        sdk_adapters.TickerConfig(site="stordammen"),
    )
    assert find_instance("echo", config).name == "echo"  # not configured: the adapter with its defaults


async def test_an_adapter_whose_constructor_fails_is_restarted_and_the_others_keep_running() -> None:
    class Fragile(Ticker):
        """Cannot even be created."""

        name = "fragile"

        def __init__(self, config: sdk_adapters.TickerConfig) -> None:
            raise RuntimeError("missing calibration file")

    bus = MemoryBus(metrics=Metrics())
    await bus.connect()
    adapters = {"ticker": Ticker, "fragile": check_declaration(Fragile)}
    supervisor = Supervisor(
        instances_from_config({"fragile": {}, "steady": {"adapter": "ticker"}}, adapters),
        bus=bus,
        backoff=Backoff(initial=0.01, maximum=0.02),
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        await wait_for(
            lambda: (
                sample(bus, "citybus_adapter_restarts_total", adapter="fragile", adapter_instance="fragile")
                >= 2
            )
        )
        assert sample(bus, "citybus_adapter_up", adapter="ticker", adapter_instance="steady") == 1
        supervisor.stop()
    await bus.drain()


async def _fail_soon() -> None:
    await asyncio.sleep(0)
    raise RuntimeError("a task of the adapter's own failed")


async def test_an_adapter_cancelled_by_no_one_is_restarted_not_taken_for_stopped() -> None:
    runs: dict[str, int] = {"grouped": 0, "orphaned": 0}

    class Grouped(Ticker):
        """Fails from its TaskGroup once the group's body has ended (on Python 3.11 that leaves the
        task "cancelling"), then, started again, checks for a stop as the bus's reads do."""

        name = "grouped"

        async def run(self, ctx: Context) -> None:
            runs["grouped"] += 1
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # what bus/reading.py does when it sees a stop coming
            if runs["grouped"] == 1:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(_fail_soon())
            ctx.ready()
            await asyncio.Event().wait()

    class Orphaned(Ticker):
        """Awaits a future someone else cancels: a CancelledError that is no stop."""

        name = "orphaned"

        async def run(self, ctx: Context) -> None:
            runs["orphaned"] += 1
            if runs["orphaned"] == 1:
                future = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_soon(future.cancel)
                await future
            ctx.ready()
            await asyncio.Event().wait()

    bus = MemoryBus(metrics=Metrics())
    await bus.connect()
    adapters = {"grouped": check_declaration(Grouped), "orphaned": check_declaration(Orphaned)}
    supervisor = Supervisor(
        instances_from_config({"grouped": {}, "orphaned": {}}, adapters),
        bus=bus,
        backoff=Backoff(initial=0.01, maximum=0.02),
    )

    def up(name: str) -> float:
        return sample(bus, "citybus_adapter_up", adapter=name, adapter_instance=name)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        for name in runs:
            await wait_for(lambda n=name: up(n) == 1)
            assert sample(bus, "citybus_adapter_restarts_total", adapter=name, adapter_instance=name) == 1
        assert runs == {"grouped": 2, "orphaned": 2}
        supervisor.stop()  # a real stop still stops them
    assert [up(name) for name in runs] == [0, 0]
    await bus.drain()


async def test_citybus_up_can_be_stopped_while_it_is_still_starting(tmp_path: Path) -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    class NeverReady:
        name = "never-ready"

        async def start(self) -> None:
            started.set()
            await asyncio.Event().wait()  # like adapters that never say they are ready

        async def stop(self) -> None:
            stopped.append("never-ready")

    config = load_config(
        None, environ={"CITYBUS_SERVER_DATA_DIR": str(tmp_path / "nats"), "CITYBUS_OPS_PORT": "0"}
    )
    runtime = Runtime(config, components=[("never-ready", lambda context: NeverReady())])
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(runtime.run(stop))
        await asyncio.wait_for(started.wait(), 30)
        assert runtime.server is not None and runtime.server.running
        stop.set()
    assert run.done() and not runtime.ready.is_set()
    assert not runtime.server.running  # the embedded server it had started is stopped again
    # A component stopped while it was starting is asked to stop too (what it had started, such as
    # adapters still getting ready, stops before the connections and the server it runs on).
    assert stopped == ["never-ready"]


def test_a_failure_inside_a_task_group_is_logged_by_what_failed() -> None:
    """An adapter whose TaskGroup failed is logged with the exceptions inside the group, not as
    "unhandled errors in a TaskGroup (1 sub-exception)", which says nothing about what to fix."""
    from adapters.supervisor import _failure_text

    group = ExceptionGroup(
        "unhandled errors in a TaskGroup",
        [KeyError("walk"), ExceptionGroup("inner", [TimeoutError("JetStream did not answer")])],
    )
    assert _failure_text(group) == "KeyError: 'walk'; TimeoutError: JetStream did not answer"
    assert _failure_text(ValueError("bad")) == "ValueError: bad"
