"""``citybus stats list|show|release|compare``: the released statistics from the command line.

::

    citybus stats list                                  the latest release of every data set
    citybus stats show volunteer-hours [--period 2026-W49]
    citybus stats release volunteer-hours [--period 2026-W49]       as the analyst
    citybus stats compare v-3f9c2a7e51d0 [--period 2026-W49] [--commute bangelokka,backeparken]

``list`` and ``show`` read what was published (``statistics.aggregate``, the last message of each
data set's subject, or of the period asked for) as the ``public`` user: what anyone may see.
``release`` asks the service for a release now, as the ``analyst``; a refusal (the privacy budget
of the data set and period would be exceeded) is one line and exit status 1. ``compare`` asks how a
person's figures compare with the released ones, as the ``statistics-desk``, or as the citizen
themselves (``--user v-…`` or ``--nkey`` with the seed ``citybus auth add-citizen`` issued), whom
the broker lets ask about no one else. ``--nats``, ``--user``, ``--account`` and ``--nkey`` as for
the other commands; the account is the statistics service's (its configured instance's, or the
sandbox where ``citybus up`` runs it by default).

Decisions, and why:

* **Reading the stream, not asking the service**, for ``list`` and ``show``: a release is public
  once published, and JetStream keeps it; the command works when the service is stopped, and
  shows exactly what everyone else sees (:mod:`bus.reading`: read-only message gets, no consumer).
* **A period's latest release is found by reading the data set's subject in stored order**: the
  releases of one data set are few (one per period, and the provisional ones), and the last one
  of the period asked for is the one that counts (later releases replace earlier ones).
* **Suppressed cells are shown as suppressed, with why**, never left out: a reader should know a
  figure exists and is withheld. Only the figure columns some released row has are printed.
* **What a person is told about their own figures stays in their terminal**: ``compare`` prints
  the answer, computed for the asker alone and never published.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from adapters.access import configured_instances
from adapters.statistics.access import ANALYST, DESK
from adapters.statistics.everyday import BY_NAME
from bus import Bus, Metrics, subjects
from bus.cli import add_login_options, err, login, out
from bus.codec import Codec
from bus.config import Config
from bus.envelope import JSON, parse_headers
from bus.errors import (
    CityBusError,
    NoRespondersError,
    PermissionDeniedError,
    RequestTimeoutError,
)
from bus.logs import configure_logging
from bus.reading import StoredMessage, last_stored, next_stored, stream_subjects
from contracts import (
    Aggregate,
    Classification,
    Comparison,
    ComparisonRequest,
    Contract,
    OwnFigure,
    ReleaseReceipt,
    ReleaseRequest,
    StatisticsRow,
)

__all__ = ["format_aggregate", "format_comparison", "privacy_line", "register"]

R = TypeVar("R", bound=Contract)
T = TypeVar("T")

_PERIOD = re.compile(r"^[0-9]{4}(?:-W[0-9]{2}|-[0-9]{2}(?:-[0-9]{2})?)$")
_DATASET = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PERSON = re.compile(r"^v-[0-9a-f]{8,32}$")
_STREAM = subjects.stream_name(Classification.PUBLIC, Aggregate.__contract__.domain)
_COUNTS = {"persons": "PERSONS", "observations": "OBSERVATIONS", "entities": "ENTITIES"}
_WHY = {
    "too-few": "suppressed: fewer than k persons",
    "complementary": "suppressed: would give away another suppressed cell",
    "threshold": "suppressed: below the noise threshold",
}
_FIGURES = ("sum", "mean", "median", "min", "max")
_AIR_UNIT = BY_NAME["air-quality"].unit if "air-quality" in BY_NAME else ""
"""The unit of the air-quality rows a comparison's ``commute`` holds."""
_SERVICE = (
    "no statistics service answers on this bus: start `citybus up` (it runs one by default), "
    "or an instance of the statistics adapter"
)


class _Usage(ValueError):
    """A mistake on the command line: one line, exit status 2."""


# -- input ----------------------------------------------------------------------------------------


def _cells(n: int) -> str:
    return "1 cell" if n == 1 else f"{n} cells"


def _dataset(text: str) -> str:
    if not _DATASET.fullmatch(text) or len(text) > 64:
        raise _Usage(
            f"{text!r} is not a data set's name: kebab case, e.g. volunteer-hours (`citybus stats list`)"
        )
    return text


def _period(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        if not _PERIOD.fullmatch(text):
            raise ValueError
        if "-W" in text:
            datetime.fromisocalendar(int(text[:4]), int(text[6:]), 1)
        else:
            date.fromisoformat(text if len(text) == 10 else f"{text}-01")
    except ValueError:
        raise _Usage(
            f"--period {text!r}: a period is an ISO week (2026-W49), a month (2026-12) or a day (2026-12-07)"
        ) from None
    return text


def _person(text: str) -> str:
    if not _PERSON.fullmatch(text):
        raise _Usage(f"{text!r} is not a person's id: v- and 8 to 32 hex digits (v-3f9c2a7e51d0)")
    return text


def _stations(text: str | None) -> tuple[str, ...]:
    stations = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    for station in stations:
        if not _DATASET.fullmatch(station):
            raise _Usage(
                f"--commute {station!r}: a station's id, kebab case (bangelokka), "
                "as `citybus stats show air-quality` lists them"
            )
    if len(stations) > 8:
        raise _Usage(f"--commute: {len(stations)} stations; at most 8")
    return stations


# -- figures --------------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    text = f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return text.rstrip("0").rstrip(".")


def _columns(lines: Sequence[Sequence[str]]) -> list[str]:
    """Lines of cells in columns two spaces apart; a line's last cell is not padded (a suppressed
    row's reason may run across the figure columns)."""
    widths: dict[int, int] = {}
    for line in lines:
        for i, cell in enumerate(line[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    return [
        "  ".join([*(c.ljust(widths[i]) for i, c in enumerate(line[:-1])), *line[-1:]]).rstrip()
        for line in lines
    ]


def _unit(unit: str) -> str:
    return f" ({unit})" if unit else ""


def _rows(
    rows: Sequence[StatisticsRow], dimensions: Sequence[str] | None, counts: str, unit: str
) -> list[list[str]]:
    """The table of ``rows``: a header, then a line per row, suppressed ones with why. Without
    ``dimensions`` (rows of several tables) a group is one column, its values joined."""
    if dimensions is None:
        rows = [msgspec.structs.replace(r, group=(" / ".join(r.group),)) for r in rows]
        dimensions = ("group",)
    released = [r for r in rows if r.status == "released"]
    shown = [f for f in _FIGURES if any(getattr(r, f) is not None for r in released)]
    labels = any(r.label for r in rows)
    width = max([len(dimensions), *(len(r.group) for r in rows)], default=0)
    names = [*(d.upper() for d in dimensions), *("" for _ in range(width - len(dimensions)))]
    label = ["NAME"] if labels else []
    table = [[*names, *label, _COUNTS.get(counts, "COUNT"), *(f"{f.upper()}{_unit(unit)}" for f in shown)]]
    for row in rows:
        group = [*row.group, *("" for _ in range(width - len(row.group))), *([row.label] if labels else [])]
        if row.status == "suppressed":
            table.append([*group, _WHY.get(row.reason, "suppressed")])
        else:
            table.append([*group, _number(row.count), *(_number(getattr(row, f)) for f in shown)])
    return table


def privacy_line(aggregate: Aggregate) -> str:
    """How the release was protected, in a line: mechanism, k, epsilon spent of the budget."""
    p = aggregate.privacy
    if p.mechanism == "none":
        return "privacy: none needed (public data: no person in it)"
    if p.mechanism == "k-anonymity":
        return (
            f"privacy: k-anonymity, exact figures; no released cell covers fewer than k = {p.k} persons, "
            "and complementary suppression keeps a suppressed cell from being worked out from the totals"
        )
    unit = f" {aggregate.unit}" if aggregate.unit else ""
    return (
        f"privacy: differential privacy (OpenDP), ε {_number(p.epsilon)} and δ {p.delta:.2g} this release; "
        f"ε {_number(p.spent)} of {_number(p.budget)} spent on {aggregate.period}; no released cell covers "
        f"fewer than k = {p.k} persons; Laplace noise of scale {_number(p.count_scale)} on counts and "
        f"{_number(p.sum_scale)}{unit} on sums; a person counts in at most {_cells(p.max_contributions)}, "
        f"with at most {_number(p.clamp)}{unit} each"
    )


def _when(aggregate: Aggregate) -> str:
    start = aggregate.period_start.date()
    last = (aggregate.period_end - timedelta(microseconds=1)).date()  # the end is exclusive
    days = start.isoformat() if last <= start else f"{start.isoformat()} to {last.isoformat()}"
    state = "final" if aggregate.final else "provisional"
    return f"{aggregate.period} ({days}), release {aggregate.release}, {state}"


def format_aggregate(aggregate: Aggregate) -> list[str]:
    """A release as lines a person reads: title, period, the table, the privacy line, the sources."""
    lines = [aggregate.title, f"{aggregate.dataset}, {_when(aggregate)}"]
    if aggregate.measure:
        lines.append(f"measure: {aggregate.measure}{_unit(aggregate.unit)}")
    if aggregate.rows:
        lines += _columns(_rows(aggregate.rows, aggregate.dimensions, aggregate.counts, aggregate.unit))
    else:
        lines.append("(no cells: nothing was counted in this period)")
    lines.append(privacy_line(aggregate))
    if aggregate.sources:
        lines.append(f"from {', '.join(aggregate.sources)}")
    return lines


def _short_privacy(aggregate: Aggregate) -> str:
    p = aggregate.privacy
    if p.mechanism == "none":
        return "none (public data)"
    if p.mechanism == "k-anonymity":
        return f"k-anonymity, k {p.k}"
    return f"differential privacy, k {p.k}, ε {_number(p.spent)} of {_number(p.budget)} spent"


def _yours(figures: Sequence[OwnFigure], unit: str) -> list[list[str]]:
    labels = any(f.label for f in figures)
    table = [
        ["GROUP", *(["NAME"] if labels else []), f"YOURS{_unit(unit)}", "RELEASED MEAN", "RELEASED MEDIAN"]
    ]
    for f in figures:
        mean, median = _number(f.released_mean), _number(f.released_median)
        table.append([" / ".join(f.group), *([f.label] if labels else []), _number(f.value), mean, median])
    return table


def format_comparison(comparison: Comparison) -> list[str]:
    """A person's answer as lines: their own figures, the released rows, the air on their commute."""
    c = comparison
    against = f"release {c.release}" if c.release else "no release yet"
    lines = [f"{c.dataset}, {c.period}, for {c.person_id} (compared with {against} of the period):"]
    if c.yours:
        lines += _columns(_yours(c.yours, c.unit))
    else:
        lines.append("you have no figures of your own in this period")
    if c.released:
        lines.append("released (what everyone sees):")
        lines += _columns(_rows(c.released, None, "", c.unit))
    if c.commute:
        unit = f", {_AIR_UNIT}" if _AIR_UNIT else ""
        lines.append(f"the air on your commute (released{unit}):")
        lines += _columns(_rows(c.commute, None, "observations", ""))
    if c.note:
        lines.append(f"note: {c.note}")
    lines.append("computed for you alone; nothing of it was published")
    return lines


# -- the bus --------------------------------------------------------------------------------------


def _account(config: Config) -> str | None:
    """The account of the statistics service: its configured (or default) instance's."""
    instances, _ = configured_instances(config)
    for instance in instances:
        if ComparisonRequest in instance.adapter.answers or ReleaseRequest in instance.adapter.answers:
            return instance.account
    return None


def _run(args: argparse.Namespace, config: Config, user: str, work: Callable[[Bus], Awaitable[T]]) -> T:
    who = login(args, config, default=user, account=_account(config))

    async def run() -> T:
        # errors only: what the broker refuses is said once, by the command, in its own words
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "error"))
        await who.connect(bus, config)
        try:
            return await work(bus)
        finally:
            await bus.close()

    return asyncio.run(run())


async def _ask(bus: Bus, request: Contract, answer: type[R], timeout: float) -> R:
    try:
        return (await bus.request(request, answer, timeout=timeout)).data
    except NoRespondersError:
        raise CityBusError(_SERVICE) from None
    except RequestTimeoutError:
        raise CityBusError(f"the statistics service did not answer within {timeout} s") from None


_CODEC = Codec(Aggregate)


def _decode(stored: StoredMessage) -> Aggregate:
    """A stored message as an aggregate; a :class:`CityBusError` saying why it is not one."""
    try:
        envelope = parse_headers(stored.headers, stored.subject)
        if envelope.type != Aggregate.__contract__.type:
            raise CityBusError(f"its ce-type is {envelope.type!r}")
        return _CODEC.decode(stored.data, envelope.content_type or JSON)
    except CityBusError as exc:
        raise CityBusError(f"{stored.subject} #{stored.seq} is not a valid release ({exc})") from None


def _aggregate(stored: StoredMessage) -> Aggregate | None:
    """A stored message as an aggregate; ``None``, with a warning, if it is not one."""
    try:
        return _decode(stored)
    except CityBusError as exc:
        err(f"citybus stats: warning: {exc}")
        return None


async def _held(bus: Bus) -> dict[str, int]:
    """The data sets' subjects the stream holds, each with its message count (none if no stream)."""
    try:
        return await stream_subjects(bus, _STREAM, subjects.contract_filter(Aggregate))
    except LookupError as exc:
        if "not found" in str(exc):
            return {}  # nothing was ever released in this account
        raise CityBusError(f"cannot read {_STREAM}: {exc}") from None


async def _latest_all(bus: Bus) -> list[Aggregate]:
    found = []
    for subject in sorted(await _held(bus)):
        try:
            stored = await last_stored(bus, _STREAM, subject)
        except LookupError as exc:
            raise CityBusError(str(exc)) from None
        aggregate = _aggregate(stored) if stored is not None else None
        if aggregate is not None:
            found.append(aggregate)
    return found


async def _latest(bus: Bus, dataset: str, period: str | None) -> Aggregate:
    """The latest release of ``dataset`` (of ``period``, when given)."""
    subject = subjects.contract_filter(Aggregate, dataset)
    if subject not in await _held(bus):
        raise CityBusError(
            f"no release of {dataset!r} has been published: `citybus stats list` lists the data sets"
        )
    try:
        if period is None:
            stored = await last_stored(bus, _STREAM, subject)
            if stored is None:
                raise CityBusError(f"no release of {dataset!r} is held any more")
            return _decode(stored)
        found: Aggregate | None = None
        periods: list[str] = []
        seq = 1
        while (stored := await next_stored(bus, _STREAM, subject, seq)) is not None:
            seq = stored.seq + 1
            aggregate = _aggregate(stored)
            if aggregate is None:
                continue
            if aggregate.period not in periods:
                periods.append(aggregate.period)
            if aggregate.period == period:
                found = aggregate
    except LookupError as exc:
        raise CityBusError(str(exc)) from None
    if found is None:
        held = ", ".join(sorted(periods)) or "none"
        raise CityBusError(f"no release of {dataset} for {period} is held (periods held: {held})")
    return found


# -- the commands ---------------------------------------------------------------------------------


def _json(value: Any) -> None:
    out(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    """Print the latest release of every data set."""
    releases = _run(args, config, "public", _latest_all)
    if args.json:
        _json(releases)
        return 0
    if not releases:
        out("no statistics have been released yet (the statistics service releases when a period ends)")
        return 0
    table = [["DATASET", "PERIOD", "RELEASE", "CELLS", "PRIVACY", "TITLE"]]
    for a in releases:
        suppressed = sum(1 for r in a.rows if r.status == "suppressed")
        cells = f"{len(a.rows)}" + (f" ({suppressed} suppressed)" if suppressed else "")
        release = f"{a.release} ({'final' if a.final else 'provisional'})"
        table.append([a.dataset, a.period, release, cells, _short_privacy(a), a.title])
    for line in _columns(table):
        out(line)
    return 0


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    """Print one data set's latest release (of a period) as a table."""
    dataset, period = _dataset(args.dataset), _period(args.period)
    aggregate = _run(args, config, "public", lambda bus: _latest(bus, dataset, period))
    if args.json:
        _json(aggregate)
        return 0
    for line in format_aggregate(aggregate):
        out(line)
    return 0


def cmd_release(args: argparse.Namespace, config: Config) -> int:
    """Ask the service for a release now; print the receipt (refused: one line, exit status 1)."""
    request = ReleaseRequest(dataset=_dataset(args.dataset), period=_period(args.period))
    receipt = _run(args, config, ANALYST, lambda bus: _ask(bus, request, ReleaseReceipt, args.timeout))
    if args.json:
        _json(receipt)
        return 0 if receipt.status == "released" else 1
    spent = f"ε {_number(receipt.spent)} of {_number(receipt.budget)} spent on the period"
    if receipt.status == "refused":
        why = receipt.reason or f"it would spend ε {_number(receipt.epsilon)}; {spent}"
        err(f"refused: {receipt.dataset} {receipt.period}: {why}")
        return 1
    if receipt.epsilon or receipt.budget:
        out(f"released {receipt.dataset} {receipt.period}: release {receipt.release}, "
            f"ε {_number(receipt.epsilon)} ({spent})")  # fmt: skip
    else:
        out(
            f"released {receipt.dataset} {receipt.period}: release {receipt.release} (public data: no budget)"
        )
    return 0


def cmd_compare(args: argparse.Namespace, config: Config) -> int:
    """Ask how a person's figures compare with the released ones, and print the answer."""
    request = ComparisonRequest(
        person_id=_person(args.person),
        dataset=_dataset(args.dataset),
        period=_period(args.period),
        commute=_stations(args.commute),
    )

    async def ask(bus: Bus) -> Comparison:
        try:
            return await _ask(bus, request, Comparison, args.timeout)
        except PermissionDeniedError:
            raise CityBusError(
                f"the broker refused {bus.user or 'this user'} to ask about {request.person_id}: a citizen "
                "asks only about themselves, and only the statistics desk for anyone"
            ) from None

    comparison = _run(args, config, DESK, ask)
    if args.json:
        _json(comparison)
        return 0
    for line in format_comparison(comparison):
        out(line)
    return 0


def _guarded(
    command: Callable[[argparse.Namespace, Config], int],
) -> Callable[[argparse.Namespace, Config], int]:
    """``command``, with a mistake on the command line said in one line and exit status 2."""

    def run(args: argparse.Namespace, config: Config) -> int:
        try:
            return command(args, config)
        except _Usage as exc:
            err(f"citybus stats {args.stats_command}: {exc}")
            return 2

    run.__doc__ = command.__doc__
    return run


def register(subparsers: Any) -> None:
    """Add ``stats`` to the ``citybus`` command."""
    parser = subparsers.add_parser(
        "stats",
        help="everyday statistics: the released tables, a release now, how a person's figures compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="stats_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="the latest release of every data set")
    listing.set_defaults(func=_guarded(cmd_list))
    show = sub.add_parser("show", help="one data set's latest release (of a period), as a table")
    show.add_argument("dataset", metavar="DATASET", help="the data set (volunteer-hours, air-quality, …)")
    show.set_defaults(func=_guarded(cmd_show))
    release = sub.add_parser("release", help="ask for a release now, as the analyst (spends privacy budget)")
    release.add_argument("dataset", metavar="DATASET", help="the data set")
    release.set_defaults(func=_guarded(cmd_release))
    compare = sub.add_parser("compare", help="how a person's figures compare with the released ones")
    compare.add_argument("person", metavar="PERSON", help="the person's id (v-3f9c2a7e51d0)")
    compare.add_argument(
        "--dataset", default="volunteer-hours", help="the data set (default volunteer-hours)"
    )
    compare.add_argument(
        "--commute", metavar="A,B", help="air-quality stations on the person's way (comma-separated)"
    )
    compare.set_defaults(func=_guarded(cmd_compare))
    periods = {show: "the latest release's", release: "the current one", compare: "the current one"}
    for command, user in ((listing, "public"), (show, "public"), (release, ANALYST), (compare, DESK)):
        if command in periods:
            what = f"the period: 2026-W49, 2026-12 or 2026-12-07 (default: {periods[command]})"
            command.add_argument("--period", metavar="P", help=what)
        if command in (release, compare):
            command.add_argument(
                "--timeout", type=float, default=10.0, metavar="SECONDS", help="wait this long (default 10)"
            )
        command.add_argument("--json", action="store_true", help="print the message as JSON")
        add_login_options(command, default=user)
