"""SIRI 2.0 EstimatedTimetable, as Entur publishes Norway's real-time train data, read into journeys
and calls.

A SIRI ET document (namespace ``http://www.siri.org.uk/siri``) is
``Siri/ServiceDelivery/EstimatedTimetableDelivery/EstimatedJourneyVersionFrame``, holding one
``EstimatedVehicleJourney`` per train: its ``LineRef`` (``NSB:Line:L13$NSB:Line:L13`` in Bane
NOR's data), ``DatedVehicleJourneyRef`` (for NSB the GTFS ``trip_id``; Flytoget and freight trains
use ``3718:2018-08-28``), ``OperatorRef``, perhaps ``DestinationName`` and ``Cancellation``, then
its calls: ``RecordedCalls/RecordedCall`` — the stops it has made, with ``Actual*Time`` — and
``EstimatedCalls/EstimatedCall`` — the stops ahead, with ``Expected*Time``. Each call names its quay
(``StopPointRef`` NSR:Quay:22), its ``Order`` in the journey, ``Aimed*``/``Expected*``/``Actual*``
arrival and departure times, ``ArrivalPlatformName``/``DeparturePlatformName``, and may be
cancelled.

Decisions, and why:

* **Streamed.** A national ET document is about 100 MB. It is read with
  :func:`xml.etree.ElementTree.iterparse`, and each journey is cleared and dropped from the tree as
  soon as it has been read, so memory holds one journey at a time plus what is kept.
* **Only the area is kept.** The caller says which quays it wants (``keep``); calls elsewhere are
  not kept, and neither is their XML. A kept call carries its own element's XML, for its dead
  letter if it cannot become a message.
* **No DOCTYPE.** SIRI has no use for one, and a DOCTYPE is how entity expansion ("billion laughs")
  and external entities get in, so a document that has one is refused before it is parsed
  (``xml-doctype``), by a first pass of expat that stops at the root element.
* **What fails**: a document that is not well-formed XML (``not-xml``, with expat's line and
  column) or is not a SIRI ET delivery (``not-siri-et``) raises
  :class:`~adapters.polling.SourceFormatError`. A kept call without a ``StopPointRef``
  (``no-stop-point``), with a time that is not an ISO 8601 time with its UTC offset (``bad-time``)
  or an ``Order`` that is not a positive number (``bad-order``), and a journey with calls in the
  area but no journey reference (``no-journey-ref``), are :class:`~adapters.records.Rejected`
  on their own.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal
from xml.parsers import expat

from adapters.polling import SourceFormatError
from adapters.records import Rejected

__all__ = ["SIRI_NAMESPACE", "EstimatedTimetable", "SiriCall", "SiriJourney", "parse_estimated_timetable"]

SIRI_NAMESPACE: Final = "http://www.siri.org.uk/siri"
"""The namespace of SIRI 2.0 elements."""

_NS: Final = "{" + SIRI_NAMESPACE + "}"
_CHUNK: Final = 64 * 1024
_TIMES: Final = (
    "AimedArrivalTime",
    "ExpectedArrivalTime",
    "ActualArrivalTime",
    "AimedDepartureTime",
    "ExpectedDepartureTime",
    "ActualDepartureTime",
)


@dataclass(frozen=True, slots=True)
class SiriCall:
    """One ``RecordedCall`` or ``EstimatedCall`` at a kept quay."""

    kind: Literal["recorded", "estimated"]
    stop_point: str
    """The ``StopPointRef``: a quay, e.g. NSR:Quay:22."""
    position: int
    """The call's place among the journey's calls in the document, from 1 (when ``Order`` is absent)."""
    xml: bytes
    """The call's element, for its dead letter."""
    order: int | None = None
    stop_name: str | None = None
    aimed_arrival: datetime | None = None
    expected_arrival: datetime | None = None
    actual_arrival: datetime | None = None
    aimed_departure: datetime | None = None
    expected_departure: datetime | None = None
    actual_departure: datetime | None = None
    arrival_platform: str | None = None
    departure_platform: str | None = None
    destination: str | None = None
    """The call's ``DestinationDisplay``, if given."""
    cancelled: bool = False
    """``Cancellation`` is true, or the arrival or departure status is ``cancelled``."""


@dataclass(frozen=True, slots=True)
class SiriJourney:
    """One ``EstimatedVehicleJourney`` with its calls at kept quays."""

    journey_ref: str
    """``DatedVehicleJourneyRef`` (or that of ``FramedVehicleJourneyRef``, or the
    ``EstimatedVehicleJourneyCode`` of an extra journey)."""
    line_ref: str | None
    published_line: str | None
    """``PublishedLineName``: the line as travellers see it, when the producer gives it."""
    operator: str | None
    destination: str | None
    cancelled: bool
    freight: bool
    """``ServiceFeatureRef`` is ``freightTrain``: a train no traveller can board."""
    calls: tuple[SiriCall, ...]


@dataclass(frozen=True, slots=True)
class EstimatedTimetable:
    """What a SIRI ET document gave: the journeys with calls at kept quays, and the records it could
    not use."""

    journeys: list[SiriJourney] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    journeys_read: int = 0
    """How many journeys the document had, kept or not."""


class _Doctype(Exception):
    pass


class _RootReached(Exception):
    pass


def _refuse_doctype(body: bytes) -> None:
    """Raise ``xml-doctype`` if the prolog declares a DOCTYPE (or entities), ``not-xml`` if it is
    malformed; return at the root element."""
    parser = expat.ParserCreate()

    def doctype(*_: object) -> None:
        raise _Doctype

    def root(*_: object) -> None:
        raise _RootReached

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = root
    try:
        for start in range(0, len(body), _CHUNK):
            parser.Parse(body[start : start + _CHUNK], False)
        parser.Parse(b"", True)
    except _RootReached:
        return
    except _Doctype:
        raise SourceFormatError(
            "the document declares a DOCTYPE; SIRI needs none, and DOCTYPEs are how entity attacks "
            "get in, so it is refused",
            reason="xml-doctype",
        ) from None
    except expat.ExpatError as exc:
        raise SourceFormatError(f"not well-formed XML: {exc}", reason="not-xml") from None
    except (LookupError, UnicodeError) as exc:  # an encoding Python does not know, or bytes not in it
        raise SourceFormatError(f"not XML in an encoding Python reads: {exc}", reason="not-xml") from None
    raise SourceFormatError("not well-formed XML: no root element", reason="not-xml")


def _text(element: ET.Element, name: str) -> str | None:
    found = element.find(_NS + name)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    return text or None


def _flag(element: ET.Element, name: str) -> bool:
    return _text(element, name) in ("true", "1")


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 time") from None
    if moment.utcoffset() is None:
        raise ValueError(f"{name} {text!r} has no UTC offset")
    return moment


def _xml(element: ET.Element) -> bytes:
    tail, element.tail = element.tail, None  # the whitespace after it is not part of the record
    try:
        xml: bytes = ET.tostring(element, encoding="utf-8", default_namespace=SIRI_NAMESPACE)
        return xml
    finally:
        element.tail = tail


def _journey_ref(journey: ET.Element) -> str | None:
    ref = _text(journey, "DatedVehicleJourneyRef")
    if ref is None:
        framed = journey.find(_NS + "FramedVehicleJourneyRef")
        ref = _text(framed, "DatedVehicleJourneyRef") if framed is not None else None
    return ref or _text(journey, "EstimatedVehicleJourneyCode")


class _BadCall(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _call(element: ET.Element, kind: Literal["recorded", "estimated"], position: int, where: str) -> SiriCall:
    """One kept call; :class:`_BadCall` says what is wrong with it."""
    stop_point = _text(element, "StopPointRef") or ""
    order_text = _text(element, "Order")
    order: int | None = None
    if order_text is not None:
        if not (order_text.isascii() and order_text.isdigit()) or int(order_text) < 1:
            raise _BadCall("bad-order", f"{where}: Order {order_text!r} is not a positive whole number")
        order = int(order_text)
    try:
        times = {name: _time(_text(element, name), name) for name in _TIMES}
    except ValueError as exc:
        raise _BadCall("bad-time", f"{where}: {exc}") from None
    statuses = (_text(element, "ArrivalStatus"), _text(element, "DepartureStatus"))
    return SiriCall(
        kind=kind,
        stop_point=stop_point,
        position=position,
        xml=_xml(element),
        order=order,
        stop_name=_text(element, "StopPointName"),
        aimed_arrival=times["AimedArrivalTime"],
        expected_arrival=times["ExpectedArrivalTime"],
        actual_arrival=times["ActualArrivalTime"],
        aimed_departure=times["AimedDepartureTime"],
        expected_departure=times["ExpectedDepartureTime"],
        actual_departure=times["ActualDepartureTime"],
        arrival_platform=_text(element, "ArrivalPlatformName"),
        departure_platform=_text(element, "DeparturePlatformName"),
        destination=_text(element, "DestinationDisplay"),
        cancelled=_flag(element, "Cancellation") or "cancelled" in statuses,
    )


def _journey(
    element: ET.Element, keep: Callable[[str], bool], rejected: list[Rejected]
) -> SiriJourney | None:
    """The journey with its kept calls, or ``None`` if it has none."""
    ref = _journey_ref(element)
    label = f"journey {ref or '(no DatedVehicleJourneyRef)'}"
    elements: list[tuple[ET.Element, Literal["recorded", "estimated"]]] = [
        (call, "recorded")
        for calls in element.findall(_NS + "RecordedCalls")
        for call in calls.findall(_NS + "RecordedCall")
    ]
    elements += [
        (call, "estimated")
        for calls in element.findall(_NS + "EstimatedCalls")
        for call in calls.findall(_NS + "EstimatedCall")
    ]
    calls: list[SiriCall] = []
    for position, (call, kind) in enumerate(elements, start=1):
        stop_point = _text(call, "StopPointRef")
        where = f"{label}, call {position} ({'RecordedCall' if kind == 'recorded' else 'EstimatedCall'})"
        if stop_point is None:
            rejected.append(Rejected("no-stop-point", f"{where}: no StopPointRef", _xml(call)))
            continue
        if not keep(stop_point):
            continue
        try:
            calls.append(_call(call, kind, position, f"{where} at {stop_point}"))
        except _BadCall as bad:
            rejected.append(Rejected(bad.reason, bad.detail, _xml(call)))
    if not calls:
        return None
    if ref is None:
        detail = (
            f"{label} calls at {', '.join(c.stop_point for c in calls)} but has no DatedVehicleJourneyRef, "
            "FramedVehicleJourneyRef or EstimatedVehicleJourneyCode"
        )
        rejected.append(Rejected("no-journey-ref", detail, _xml(element)))
        return None
    return SiriJourney(
        journey_ref=ref,
        line_ref=_text(element, "LineRef"),
        published_line=_text(element, "PublishedLineName"),
        operator=_text(element, "OperatorRef"),
        destination=_text(element, "DestinationName"),
        cancelled=_flag(element, "Cancellation"),
        freight=_text(element, "ServiceFeatureRef") == "freightTrain",
        calls=tuple(calls),
    )


def parse_estimated_timetable(
    body: bytes, keep: Callable[[str], bool] = lambda _: True
) -> EstimatedTimetable:
    """Read a SIRI ET document; keep the calls whose ``StopPointRef`` ``keep`` accepts.

    Pure and blocking (run it in a thread for a national document). Raises
    :class:`~adapters.polling.SourceFormatError` for a document that cannot be used at all.
    """
    _refuse_doctype(body)
    result = EstimatedTimetable()
    stack: list[ET.Element] = []
    delivered = False
    journeys = 0
    try:
        for event, element in ET.iterparse(io.BytesIO(body), events=("start", "end")):
            if event == "start":
                if not stack and element.tag != _NS + "Siri":
                    raise SourceFormatError(
                        f"the root element is {element.tag}, not {_NS}Siri: not a SIRI document",
                        reason="not-siri-et",
                    )
                if element.tag == _NS + "EstimatedTimetableDelivery":
                    delivered = True
                stack.append(element)
                continue
            stack.pop()
            if element.tag == _NS + "EstimatedVehicleJourney":
                journeys += 1
                journey = _journey(element, keep, result.rejected)
                if journey is not None:
                    result.journeys.append(journey)
                element.clear()
                if stack:  # drop it from its frame, so the tree never holds more than one journey
                    stack[-1].remove(element)
    except ET.ParseError as exc:
        raise SourceFormatError(f"not well-formed XML: {exc}", reason="not-xml") from None
    except (LookupError, UnicodeError) as exc:
        raise SourceFormatError(f"not XML in an encoding Python reads: {exc}", reason="not-xml") from None
    if not delivered:
        raise SourceFormatError(
            "a SIRI document without an EstimatedTimetableDelivery: not an EstimatedTimetable",
            reason="not-siri-et",
        )
    return EstimatedTimetable(journeys=result.journeys, rejected=result.rejected, journeys_read=journeys)
