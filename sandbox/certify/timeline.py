"""A run's timeline as one SVG picture: inputs, injected faults, outputs and crashes per entity.

x is the replay's clock (UTC, ticks on whole hours, or on a coarser step when the run is long),
one row per lane (:class:`~sandbox.certify.model.Lane`): grey ticks in the upper half of a row are
the inputs certify saw for that entity, blue ticks in the lower half the adapter's outputs about it.
A fault window is a translucent band on its entity's row, one colour per kind (the legend names
them); a window whose entity is ``""`` or ``"*"`` (a broker restart, a slow link: everything) spans
every row. A crash is a red line across all rows with a triangle above them. Below the axis a note
says how many entities the timeline left out (``omitted_lanes``), and how many fault windows were on
them and so are not drawn.

Decisions, and why:

* Plain SVG, written by hand: the report must be one self-contained file with nothing fetched and
  no script, and a plotting library would be a heavy dependency for a few hundred shapes.
* Presentation attributes, not CSS classes, carry the colours: the same SVG is a file of its own next
  to ``report.md`` and inline in ``report.html``, and must look the same in both. Classes remain, to
  name what a shape is (``lane``, ``fault``, ``crash``) for tests and for a reader of the source.
* A lane's ticks are one ``<path>`` per kind of mark, not one element per message: the Drammen day
  has thousands of messages and a page of thousands of elements gets slow.
* Every string from the report goes through :func:`escape`: entity names come from subjects, which a
  hostile or broken publisher chooses. Characters XML forbids (control characters) become U+FFFD, so
  the file stays well-formed XML whatever a name holds.
* Marks outside ``start..end`` are drawn at the edge they passed, not dropped: an output that leaves
  after the replay ended is still an output.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from sandbox.certify.model import FaultWindow, Timeline

__all__ = ["KIND_COLOURS", "escape", "timeline_svg"]

KIND_COLOURS: Final[dict[str, str]] = {
    "outage": "#9467bd",
    "stuck": "#ff7f0e",
    "drop": "#8c564b",
    "duplicate": "#2ca02c",
    "reorder": "#17becf",
    "delay": "#bcbd22",
    "corrupt": "#e377c2",
    "skew": "#c49c94",
    "restart": "#393b79",
    "slow": "#637939",
}
"""The band colour of each fault kind certify knows; other kinds take :data:`_SPARE_COLOURS` in turn."""
_SPARE_COLOURS: Final = ("#843c39", "#7b4173", "#3182bd", "#e7ba52", "#5254a3")
_INPUT: Final = "#8a8a8a"
_OUTPUT: Final = "#1f6feb"
_CRASH: Final = "#d62728"
_BAND_OPACITY: Final = 0.35
_EVERYTHING: Final = frozenset({"", "*"})
"""Fault-window entities that mean the whole sandbox, not one entity."""

_LABEL_WIDTH: Final = 190
_RIGHT: Final = 16
_ROW: Final = 16
_LEGEND_ROW: Final = 18
_AXIS: Final = 34
_NOTE: Final = 16
_LABEL_CHARS: Final = 28
_CHAR_WIDTH: Final = 6.0
"""Roughly, the width of one character at the legend's font size (for laying it out)."""
_STEPS: Final = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
"""Tick steps in seconds; the smallest leaving :data:`_MIN_TICK_GAP` pixels between labels wins."""
_MIN_TICK_GAP: Final = 44.0
_FORBIDDEN: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape(text: str) -> str:
    """``text`` for HTML or SVG, in content or a quoted attribute: ``& < > " '`` escaped, and the
    characters XML 1.0 forbids (control characters, lone surrogates) replaced by U+FFFD."""
    return html.escape(_FORBIDDEN.sub("\ufffd", text), quote=True)


def timeline_svg(timeline: Timeline, *, width: int = 960, title: str = "") -> str:
    """The timeline as a standalone SVG document (``<svg xmlns=…>`` … ``</svg>``), ``width`` pixels
    wide and as tall as its lanes need; ``title`` is its accessible name (and tooltip)."""
    plot = _Plot.of(timeline, width)
    legend, legend_height = _legend(timeline, width)
    top = legend_height + 6
    rows = max(len(timeline.lanes), 1)
    bottom = top + rows * _ROW
    hidden = _hidden_windows(timeline)
    note = _note(timeline.omitted_lanes, hidden)
    height = bottom + _AXIS + (_NOTE if note else 0)
    name = title or f"Timeline from {_clock(timeline.start)} to {_clock(timeline.end)} (replay time, UTC)"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11" fill="#222222">',
        f"<title>{escape(name)}</title>",
        f'<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        *legend,
        *_lanes(timeline, plot, top),
        *_bands(timeline, plot, top, bottom),
        *_crashes(timeline.crashes, plot, top, bottom),
        *_axis(timeline, plot, bottom),
    ]
    if note:
        y = bottom + _AXIS + 11
        parts.append(f'<text class="note" x="{plot.left}" y="{y}" fill="#555555">{escape(note)}</text>')
    if not timeline.lanes:
        parts.append(
            f'<text class="empty" x="{plot.left + 4}" y="{top + 12}" fill="#555555">'
            "no inputs or outputs in this run</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class _Plot:
    """The mapping from replay time to x, over the plot area right of the labels."""

    __slots__ = ("left", "right", "seconds", "start")

    def __init__(self, start: datetime, seconds: float, left: float, right: float) -> None:
        self.start = start
        self.seconds = seconds
        self.left = left
        self.right = right

    @classmethod
    def of(cls, timeline: Timeline, width: int) -> _Plot:
        start = _utc(timeline.start)
        seconds = max((_utc(timeline.end) - start).total_seconds(), 1.0)
        return cls(start, seconds, _LABEL_WIDTH, max(width - _RIGHT, _LABEL_WIDTH + 50))

    @property
    def width(self) -> float:
        """The plot's width in pixels."""
        return self.right - self.left

    def x(self, at: datetime) -> float:
        """The x of a time, clamped to the plot."""
        share = (_utc(at) - self.start).total_seconds() / self.seconds
        return round(self.left + min(max(share, 0.0), 1.0) * (self.right - self.left), 1)


def _lanes(timeline: Timeline, plot: _Plot, top: float) -> Iterable[str]:
    for index, lane in enumerate(timeline.lanes):
        y = top + index * _ROW
        label = lane.entity if len(lane.entity) <= _LABEL_CHARS else lane.entity[: _LABEL_CHARS - 1] + "…"
        shade = "#f4f6f8" if index % 2 else "#ffffff"
        yield f'<g class="lane" data-entity="{escape(lane.entity)}">'
        yield f"<title>{escape(lane.entity)}: {len(lane.inputs)} inputs, {len(lane.outputs)} outputs</title>"
        yield f'<rect x="{plot.left}" y="{y}" width="{plot.width}" height="{_ROW}" fill="{shade}"/>'
        yield f'<text x="{plot.left - 6}" y="{y + _ROW - 4}" text-anchor="end">{escape(label)}</text>'
        if lane.inputs:
            yield _ticks("inputs", lane.inputs, plot, y + 2, y + _ROW / 2, _INPUT, 1.0)
        if lane.outputs:
            yield _ticks("outputs", lane.outputs, plot, y + _ROW / 2, y + _ROW - 2, _OUTPUT, 1.5)
        yield "</g>"


def _ticks(
    kind: str, times: list[datetime], plot: _Plot, y1: float, y2: float, colour: str, stroke: float
) -> str:
    xs = sorted({plot.x(at) for at in times})
    path = "".join(f"M{x} {y1}V{y2}" for x in xs)
    return f'<path class="{kind}" d="{path}" stroke="{colour}" stroke-width="{stroke}" fill="none"/>'


def _hidden_windows(timeline: Timeline) -> int:
    drawn = {lane.entity for lane in timeline.lanes}
    return sum(1 for window in timeline.faults if window.entity not in drawn | _EVERYTHING)


def _bands(timeline: Timeline, plot: _Plot, top: float, bottom: float) -> Iterable[str]:
    rows = {lane.entity: index for index, lane in enumerate(timeline.lanes)}
    colours = _colours(window.kind for window in timeline.faults)
    for window in timeline.faults:
        if window.entity in _EVERYTHING:
            y, height = top, bottom - top
        elif window.entity in rows:
            y, height = top + rows[window.entity] * _ROW + 1, _ROW - 2
        else:
            continue  # on an entity left out of the plot; the note counts it
        x1, x2 = plot.x(window.start), plot.x(window.end)
        span = max(x2 - x1, 2.0)  # an instant (a duplicate) still shows
        yield (
            f'<rect class="fault" data-kind="{escape(window.kind)}" x="{x1}" y="{y}" '
            f'width="{round(span, 1)}" height="{height}" fill="{colours[window.kind]}" '
            f'fill-opacity="{_BAND_OPACITY}">'
            f"<title>{escape(_window_text(window))}</title></rect>"
        )


def _window_text(window: FaultWindow) -> str:
    where = "everything" if window.entity in _EVERYTHING else window.entity
    when = f"from {_clock(window.start)} to {_clock(window.end)}"
    return f"{window.kind} on {where} {when} ({window.hits} hits)"


def _crashes(crashes: list[datetime], plot: _Plot, top: float, bottom: float) -> Iterable[str]:
    for at in crashes:
        x = plot.x(at)
        yield (
            f'<g class="crash"><title>{escape("crash at " + _clock(at))}</title>'
            f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="{_CRASH}" stroke-width="2"/>'
            f'<path d="M{x - 5} {top - 6}H{x + 5}L{x} {top}Z" fill="{_CRASH}"/></g>'
        )


def _axis(timeline: Timeline, plot: _Plot, bottom: float) -> Iterable[str]:
    yield f'<line x1="{plot.left}" y1="{bottom}" x2="{plot.right}" y2="{bottom}" stroke="#444444"/>'
    pixels_per_second = (plot.right - plot.left) / plot.seconds
    step = next((s for s in _STEPS if s * pixels_per_second >= _MIN_TICK_GAP), _STEPS[-1])
    start = plot.start.timestamp()
    first = math.ceil(start / step) * step
    count = int((start + plot.seconds - first) // step) + 1
    ticks = [datetime.fromtimestamp(first + n * step, UTC) for n in range(max(count, 0))]
    midnights = [plot.x(at) for at in ticks if at.hour == at.minute == 0]
    for index, at in enumerate(ticks):
        x = plot.x(at)
        yield f'<line class="tick" x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="#444444"/>'
        yield f'<text x="{x}" y="{bottom + 15}" text-anchor="middle">{at:%H:%M}</text>'
        # the date under each midnight, and under the first tick unless a midnight's date is too near
        if x in midnights or (index == 0 and all(m - x > 90 for m in midnights)):
            yield f'<text x="{x}" y="{bottom + 27}" text-anchor="middle" fill="#555555">{at:%Y-%m-%d}</text>'
    yield f'<text x="{plot.left - 22}" y="{bottom + 15}" text-anchor="end" fill="#555555">replay time</text>'
    yield f'<text x="{plot.left - 22}" y="{bottom + 27}" text-anchor="end" fill="#555555">(UTC)</text>'


def _legend(timeline: Timeline, width: int) -> tuple[list[str], int]:
    """The legend's shapes, laid out in rows that fit ``width``, and the height they take."""
    items: list[tuple[str, str]] = [
        (f'<path d="M{{x}} 3V13" stroke="{_INPUT}" stroke-width="2"/>', "input"),
        (f'<path d="M{{x}} 3V13" stroke="{_OUTPUT}" stroke-width="2"/>', "output"),
    ]
    for kind, colour in _colours(window.kind for window in timeline.faults).items():
        fill = f'fill="{colour}" fill-opacity="{_BAND_OPACITY}"'
        swatch = f'<rect x="{{x}}" y="3" width="14" height="10" {fill}/>'
        items.append((swatch, f"{kind} (fault)"))
    if timeline.crashes:
        items.append((f'<path d="M{{x}} 2V14" stroke="{_CRASH}" stroke-width="2"/>', "crash"))
    shapes: list[str] = []
    x, row = 8.0, 0
    for swatch, label in items:
        item_width = 24 + len(label) * _CHAR_WIDTH + 14
        if x + item_width > width and x > 8.0:
            x, row = 8.0, row + 1
        y = row * _LEGEND_ROW + 2
        shapes.append(f'<g class="legend" transform="translate(0 {y})">{swatch.format(x=round(x + 2, 1))}')
        shapes.append(f'<text x="{round(x + 20, 1)}" y="12" fill="#222222">{escape(label)}</text></g>')
        x += item_width
    return shapes, (row + 1) * _LEGEND_ROW + 2


def _colours(kinds: Iterable[str]) -> dict[str, str]:
    """Each kind present, in order of first appearance, and its colour."""
    colours: dict[str, str] = {}
    spare = 0
    for kind in kinds:
        if kind not in colours:
            if kind in KIND_COLOURS:
                colours[kind] = KIND_COLOURS[kind]
            else:
                colours[kind] = _SPARE_COLOURS[spare % len(_SPARE_COLOURS)]
                spare += 1
    return colours


def _note(omitted: int, hidden: int) -> str:
    said = []
    if omitted:
        said.append(f"{omitted} {'entity' if omitted == 1 else 'entities'} left out")
    if hidden:
        said.append(f"{hidden} fault {'window' if hidden == 1 else 'windows'} on entities not drawn")
    return "; ".join(said)


def _utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive time is taken to be UTC already (the recording's times are)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _clock(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S")
