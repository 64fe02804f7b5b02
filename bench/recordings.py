"""Recordings for the replay benchmarks, generated from the messages of the shipped Drammen day.

The templates are the beach observations, train calls, bike statuses and forecasts of the
shipped day, decoded with their contracts; each generated message is a template with every
timestamp moved to its own time and encoded by msgspec. So subjects, channels, body sizes and the
time shift of every timestamp cost what they cost in a real replay. A schedule (:data:`Schedule`)
says when each message happens and of which kind: evenly spread (:func:`spread`), endless at a
rate (:func:`endless`), or city-like with random gaps and bursts (:func:`city_traffic`).
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from bench.common import CASE_LIMIT, BenchError
from bus.envelope import H_PROVENANCE, H_SOURCE, build_headers
from bus.subjects import contract_subject
from contracts import BeachObservation, BikeStationStatus, Contract, TrainCall, WeatherForecast
from sandbox.adapter import DRAMMEN_DAY
from sandbox.recording import RecordingWriter, read_messages

__all__ = [
    "T0",
    "Schedule",
    "Template",
    "Written",
    "city_traffic",
    "endless",
    "kinds",
    "load_templates",
    "spread",
    "write_recording",
]

T0: Final = datetime(2018, 8, 27, 22, 0, tzinfo=UTC)  # 2018-08-28 00:00 in Drammen, as the shipped day


@dataclass(frozen=True)
class Template:
    """A real message of the shipped day: its contract instance, subject and headers."""

    instance: Contract
    time: datetime
    """The message's own time: a generated message moves every timestamp by its distance to this."""
    subject: str
    headers: dict[str, str]
    """Its CloudEvents headers; a recording keeps type, source, provenance and content type of them."""
    move: Callable[[timedelta], Contract]

    @classmethod
    def of(cls, instance: Contract, moment: datetime, source: str, provenance: str) -> Template:
        """The template of ``instance``, which happened at ``moment``."""
        headers = build_headers(
            instance.__contract__, event_id="bench", source=source, time=moment, provenance=provenance
        )
        return cls(instance, moment, contract_subject(instance), headers, _mover(instance))

    def at(self, moment: datetime) -> Contract:
        """The template's message as if it happened at ``moment`` (every timestamp in it moved)."""
        return self.move(moment - self.time)


def _holds_time(value: Any) -> bool:
    if isinstance(value, datetime):
        return True
    if isinstance(value, msgspec.Struct):
        return any(_holds_time(getattr(value, name)) for name in value.__struct_fields__)
    return isinstance(value, list) and any(_holds_time(item) for item in value)


def _mover(value: Any) -> Callable[[timedelta], Any]:
    """A function moving every timestamp in ``value`` (nested Structs and lists too) by a delta,
    planned once: moving a template is the hot path of writing a 1 GB recording."""
    if isinstance(value, datetime):
        return lambda delta: value + delta
    if isinstance(value, list):
        items = [_mover(item) for item in value]
        return lambda delta: [move(delta) for move in items]
    if isinstance(value, msgspec.Struct):
        movers = {
            name: _mover(getattr(value, name))
            for name in value.__struct_fields__
            if _holds_time(getattr(value, name))
        }
        return lambda delta: msgspec.structs.replace(value, **{n: move(delta) for n, move in movers.items()})
    return lambda delta: value


_DECODERS: Final[dict[str, tuple[str, msgspec.json.Decoder[Any]]]] = {
    BeachObservation.__contract__.type: ("beach", msgspec.json.Decoder(BeachObservation)),
    TrainCall.__contract__.type: ("train", msgspec.json.Decoder(TrainCall)),
    BikeStationStatus.__contract__.type: ("bike", msgspec.json.Decoder(BikeStationStatus)),
    WeatherForecast.__contract__.type: ("forecast", msgspec.json.Decoder(WeatherForecast)),
}
_FORECAST_STEPS: Final = 4  # the next four hours: a ~1 kB body


@functools.cache
def load_templates(path: Path = DRAMMEN_DAY) -> dict[str, list[Template]]:
    """The templates per kind (beach, train, bike, forecast), from the shipped recording."""
    templates: dict[str, list[Template]] = {kind: [] for kind, _ in _DECODERS.values()}
    for message in read_messages(path):
        found = _DECODERS.get(message.type)
        if found is None:
            continue
        kind, decoder = found
        instance = decoder.decode(message.data)
        source, provenance = message.headers.get(H_SOURCE, "/bench"), message.headers.get(H_PROVENANCE, "")
        if isinstance(instance, WeatherForecast):
            # a forecast of the next four hours from each hour of the day: ~1 kB, five timestamps
            for first in range(0, len(instance.steps) - _FORECAST_STEPS + 1, _FORECAST_STEPS):
                steps = instance.steps[first : first + _FORECAST_STEPS]
                short = msgspec.structs.replace(instance, steps=steps, updated_at=steps[0].time)
                templates[kind].append(Template.of(short, steps[0].time, source, provenance))
        else:
            templates[kind].append(Template.of(instance, message.time, source, provenance))
    empty = [kind for kind, found in templates.items() if not found]
    if empty:
        raise BenchError(f"{path} holds no {', '.join(empty)} messages to use as templates")
    return templates


@dataclass
class Written:
    """What :func:`write_recording` wrote."""

    path: Path
    messages: int = 0
    body_bytes: int = 0
    file_bytes: int = 0
    seconds: float = 0.0
    per_kind: Counter[str] = field(default_factory=Counter)

    @property
    def mean_body(self) -> float:
        """The mean body size in bytes."""
        return self.body_bytes / max(self.messages, 1)


Schedule = Iterable[tuple[int, str]]
"""(log time in ns since the epoch, template kind) of every message, in time order."""


def write_recording(
    path: Path,
    schedule: Schedule,
    templates: dict[str, list[Template]],
    *,
    compression: Literal["zstd", "lz4", "none"] = "zstd",
    stop_at_bytes: int | None = None,
) -> Written:
    """Write a recording of real-looking messages, one per schedule entry (or until the file is
    ``stop_at_bytes`` large)."""
    started = time.perf_counter()
    written = Written(path)
    cycles = {kind: itertools.cycle(found) for kind, found in templates.items()}
    encode = msgspec.json.Encoder().encode
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with RecordingWriter(path, compression=compression) as writer:
        for log_time, kind in schedule:
            template = next(cycles[kind])
            body = encode(template.at(epoch + timedelta(microseconds=log_time // 1000)))
            writer.add(template.subject, body, template.headers, log_time=log_time, publish_time=log_time)
            written.messages += 1
            written.body_bytes += len(body)
            written.per_kind[kind] += 1
            if stop_at_bytes is not None and written.messages % 512 == 0:
                if path.stat().st_size >= stop_at_bytes:
                    break
            if written.messages % 4096 == 0 and time.perf_counter() - started > CASE_LIMIT:
                raise BenchError(f"writing {path.name} took over {CASE_LIMIT:.0f} s")
    written.file_bytes = path.stat().st_size
    written.seconds = time.perf_counter() - started
    return written


def _log_time(seconds: float) -> int:
    """The log time ``seconds`` after the start of the day, in whole microseconds as a ``ce-time`` has."""
    return (int(T0.timestamp()) * 1_000_000 + round(seconds * 1_000_000)) * 1000


def spread(count: int, seconds: float, kinds: Sequence[str]) -> Schedule:
    """``count`` messages evenly over ``seconds`` from the start of the day, kinds in turn."""
    return ((_log_time(i * seconds / count), kinds[i % len(kinds)]) for i in range(count))


def endless(rate: float, kinds: Sequence[str]) -> Schedule:
    """Messages at ``rate`` per second, kinds in turn, for as long as they are taken."""
    return ((_log_time(i / rate), kinds[i % len(kinds)]) for i in itertools.count())


def city_traffic(
    seconds: float, rate: float, burst_every: float, burst_size: int, seed: int = 2018
) -> list[tuple[int, str]]:
    """About ``rate`` messages a second with random gaps (a Poisson stream of beach, train and bike
    messages), and every ``burst_every`` seconds ``burst_size`` messages at the same instant, by
    turns bike statuses (a GBFS poll) and train calls (a SIRI-ET document)."""
    rng = random.Random(seed)
    messages: list[tuple[int, str]] = []
    moment, kinds = 0.0, itertools.cycle(("beach", "train", "bike"))
    while (moment := moment + rng.expovariate(rate)) < seconds:
        messages.append((_log_time(moment), next(kinds)))
    bursts = itertools.takewhile(lambda at: at < seconds, itertools.count(burst_every / 2, burst_every))
    for n, at in enumerate(bursts):
        messages += [(_log_time(at), "bike" if n % 2 == 0 else "train")] * burst_size
    messages.sort(key=lambda item: item[0])  # stable: a burst stays together
    return messages


def kinds(written: Written) -> str:
    """How many messages of each kind a recording holds, for a report."""
    return ", ".join(f"{count} {kind}" for kind, count in sorted(written.per_kind.items()))
