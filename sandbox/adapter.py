"""The ``sandbox-replay`` adapter: the replayer as a source adapter, steered over the bus.

The sandbox's replayer is started, supervised, measured and permissioned like any other source:
``citybus up`` runs it by default on the recorded Drammen day, looping at 60×, so a newcomer sees
live city data within seconds. Configuration::

    [adapters.sandbox]
    adapter = "sandbox-replay"
    files = ["recordings/harbour.mcap"]    # default: the shipped Drammen day (2018-08-28)
    speed = 60                             # × real time; 0 = as fast as possible
    loop = true
    start = 0                              # seconds into the recording
    # duration = 3600                      # seconds of it (default: to its end)
    include = ["city.public.mobility.>"]   # subject patterns (default: everything)
    exclude = []
    shift_to_now = true                    # the recorded day happens now
    faults = "faults.toml"                 # a fault plan (docs/faults.md)
    truth = "faults.jsonl"                 # its ground-truth log (default: none)

While it runs it answers JSON requests on ``citybus.control.replay.<instance>.<verb>``:
``status``, ``pause``, ``resume``, ``seek`` (``{"position": seconds}``) and ``speed``
(``{"speed": 60}``), each replying with the replay's status, or refusing a bad request with the
``Nats-Service-Error`` headers (:mod:`sandbox.control`), and publishes its clock on
``citybus.clock.<instance>`` every ``clock_interval`` seconds and at every change: a
:class:`~adapters.clock.ClockTick`, ``{"time": …, "speed": …, "state": …, "epoch": …}`` (``epoch``
counts seeks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Final

import msgspec
from msgspec import Meta

from adapters import Adapter, Context
from adapters.clock import ClockTick
from bus import RawMessage, control
from bus.envelope import H_TYPE
from bus.subjects import clock_subject, control_subject, matches, validate_pattern
from contracts import Contract, default_registry
from sandbox.contents import read_channels, read_info
from sandbox.control import handle
from sandbox.faults import FaultInjector, FaultPlan, FaultPlanError, Finding, ReplayScope, check_plan
from sandbox.metrics import replay_metrics
from sandbox.replay import Replayer

__all__ = ["DRAMMEN_DAY", "DRAMMEN_VOLUNTEERS", "ReplayConfig", "SandboxReplay"]

DRAMMEN_DAY: Final = Path(__file__).resolve().parent / "data" / "drammen-2018-08-28.mcap"
"""The recorded Drammen day shipped with citybus (see ``sandbox/data/README.md``)."""
DRAMMEN_VOLUNTEERS: Final = DRAMMEN_DAY.with_name("drammen-2018-08-28-volunteers.mcap")
"""The day's volunteer sign-ups and activity, all generated: personal messages, replayed by an
instance configured with them (``files = [...]``), which seals each with its person's key."""


class ReplayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of the replay adapter (see the module doc)."""

    files: list[str] = msgspec.field(default_factory=lambda: [str(DRAMMEN_DAY)])
    speed: Annotated[float, Meta(ge=0, le=1_000_000)] = 60.0
    loop: bool = True
    start: Annotated[float, Meta(ge=0)] = 0.0
    duration: Annotated[float, Meta(gt=0)] | None = None
    include: list[str] = msgspec.field(default_factory=list)
    exclude: list[str] = msgspec.field(default_factory=list)
    shift_to_now: bool = True
    faults: str | None = None
    truth: str | None = None
    read_ahead: Annotated[int, Meta(ge=1, le=100_000)] = 512
    clock_interval: Annotated[float, Meta(gt=0, le=3600)] = 1.0
    paused: bool = False
    """Start paused, at the window's start: nothing is published until a ``resume`` request (how
    ``citybus certify`` lets the adapter under test get ready first)."""

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("files: give at least one recording (or leave it out for the Drammen day)")
        for name in self.files:
            if not Path(name).is_file():
                raise ValueError(f"files: no recording at {name}")
        for pattern in (*self.include, *self.exclude):
            validate_pattern(pattern)
        if self.faults is not None:  # a bad plan, or one that never fires, is refused at start
            errors = [f for f in self.check_faults() if f.level == "error"]
            if errors:
                more = f" (and {len(errors) - 1} more: citybus sandbox check-faults lists them)"
                raise FaultPlanError(errors[0].text + (more if len(errors) > 1 else ""))

    def check_faults(self) -> list[Finding]:
        """The fault plan read and checked against the recordings as this replay plays them."""
        if self.faults is None:
            return []
        plan = FaultPlan.load(Path(self.faults))
        scope = ReplayScope.of(
            self.files,
            include=self.include,
            exclude=self.exclude,
            start=self.start,
            duration=self.duration,
        )
        return check_plan(plan, scope, origin=f"fault plan {self.faults}")


class SandboxReplay(Adapter[ReplayConfig]):
    """Recorded city data replayed onto the bus: at any speed, looping, with faults, steerable."""

    name = "sandbox-replay"
    Config = ReplayConfig
    default_instance = "sandbox"
    control = "replay"  # pause, resume, seek, speed and status requests; it publishes its clock

    def produced(self) -> tuple[type[Contract], ...]:
        """The contracts the configured recordings hold."""
        registry = default_registry()
        found: dict[str, type[Contract]] = {}
        for name in self.config.files:
            for ce_type in read_info(name).per_type:
                contract = registry.by_type(ce_type)
                if contract is not None:
                    found[ce_type] = contract
        return tuple(found[t] for t in sorted(found))

    def owned(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The subjects and ``ce-source`` values of the configured recordings that it replays (its
        ``include`` and ``exclude`` applied): the city's entities. What it leaves out is not its own,
        so another may publish it (certify leaves out what the adapter under test produces)."""
        subjects: set[str] = set()
        sources: set[str] = set()
        config = self.config
        for name in config.files:
            for channel in read_channels(name):
                subject = channel.subject
                if config.include and not any(matches(p, subject) for p in config.include):
                    continue
                if any(matches(p, subject) for p in config.exclude):
                    continue
                subjects.add(subject)
                if channel.source:
                    sources.add(channel.source)
        return tuple(sorted(subjects)), tuple(sorted(sources))

    async def run(self, ctx: Context) -> None:
        """Replay until done (or forever when looping), answering control requests meanwhile."""
        config = self.config
        with contextlib.ExitStack() as stack:
            truth: IO[str] | None = None
            if config.truth is not None:
                # a small local file, opened once at start: not worth a thread
                truth = stack.enter_context(open(config.truth, "a", encoding="utf-8"))  # noqa: ASYNC230, SIM115
            factory: Callable[[datetime], FaultInjector] | None = None
            if config.faults is not None:
                plan = FaultPlan.load(Path(config.faults))
                warnings = [f for f in config.check_faults() if f.level == "warning"]  # errors: refused
                for finding in warnings:
                    ctx.log.warning(
                        "fault plan warning",
                        plan=config.faults,
                        faults=list(finding.faults),
                        detail=finding.text,
                    )

                def factory(origin: datetime) -> FaultInjector:
                    return FaultInjector(plan, origin=origin, truth=truth)

            sent = _Counts(ctx)

            async def publish(subject: str, data: bytes, headers: dict[str, str]) -> None:
                # A recording's personal messages (synthetic people) are sealed as any publisher's.
                subject, data, headers = await ctx.seal_raw(subject, data, headers)
                await ctx.publish_raw(subject, data, headers)
                sent.add(headers.get(H_TYPE) or "")

            replayer = Replayer(
                [Path(f) for f in config.files],
                publish,
                instance=ctx.instance,
                speed=config.speed,
                loop=config.loop,
                start=config.start,
                duration=config.duration,
                include=tuple(config.include),
                exclude=tuple(config.exclude),
                shift_to_now=config.shift_to_now,
                read_ahead=config.read_ahead,
                faults=factory,
                paused=config.paused,
                metrics=replay_metrics(ctx.registry),
                logger=ctx.log,
            )

            async def on_control(raw: RawMessage) -> None:
                verb = raw.subject.rsplit(".", 1)[-1]
                try:
                    body, headers = control.answer(lambda: handle(replayer, verb, raw.data))
                except Exception as exc:  # a bug: the requester hears of it at once, the bus logs it
                    if raw.reply:
                        failed = control.error_headers(control.FAILED, f"{type(exc).__name__}: {exc}")
                        await ctx.publish_raw(raw.reply, b"", failed)
                    raise
                if raw.reply:
                    await ctx.publish_raw(raw.reply, body, headers)
                await _tick(ctx, replayer)

            await ctx.subscribe_raw(control_subject("replay", ctx.instance), on_control)
            try:
                async with asyncio.TaskGroup() as tasks:
                    clock = tasks.create_task(
                        _clock(ctx, replayer, config.clock_interval, sent), name="replay clock"
                    )
                    ctx.ready()
                    await replayer.run()
                    clock.cancel()
            finally:
                sent.flush()
            await _tick(ctx, replayer)  # a replay that does not loop ends here: the adapter is done


class _Counts:
    """The replay's messages per contract, counted cheaply and handed to the metrics in bulk.

    The replay publishes up to ~80,000 messages a second through the raw fast path; looking up a
    labelled counter for each would cost more than the publish. So each message adds one to a plain
    dict, and :meth:`flush` (every clock tick, at least once a second, and at the end) counts the
    totals in ``citybus_messages_published_total{contract}`` — where operators look for traffic,
    as for every other publisher — and the adapter's own published counter.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._counts: dict[str, int] = {}

    def add(self, ce_type: str) -> None:
        """One message of ``ce_type`` (empty: a raw message, not a contract) went out."""
        counts = self._counts
        counts[ce_type] = counts.get(ce_type, 0) + 1

    def flush(self) -> None:
        """Count what went out since the last flush."""
        counts, self._counts = self._counts, {}
        for ce_type, count in counts.items():
            if ce_type:
                self._ctx.count_published(ce_type, count)
            else:
                self._ctx.metrics.published("raw", count)  # not a contract: the adapter's own only


async def _tick(ctx: Context, replayer: Replayer) -> None:
    if replayer.state == "starting":
        return
    tick = ClockTick(
        time=replayer.clock_time(), speed=replayer.speed, state=replayer.state, epoch=replayer.seeks
    )
    await ctx.publish_raw(clock_subject(ctx.instance), msgspec.json.encode(tick))


async def _clock(ctx: Context, replayer: Replayer, interval: float, sent: _Counts) -> None:
    while replayer.state != "finished":
        sent.flush()
        await _tick(ctx, replayer)
        await replayer.wait_change(interval)
