"""Faults injected on purpose into a replay, seeded and reproducible, with a ground-truth log.

A pilot product must cope with what real city data does: sensors that fall silent or flatline,
messages that arrive twice, late, out of order or broken, clocks that are wrong. The replayer
hands every message to a :class:`FaultInjector` just before publishing it; the injector decides,
from a plan and a seed, what really goes out, and writes every fault it injects to a ground-truth
log so a company can score whether its product noticed.

The plan file (TOML)
--------------------
A ``seed`` and a list of ``[[faults]]``, each with a ``kind``. Every kind takes ``subjects`` (NATS
patterns with ``*`` and ``>``, default ``["city.>"]``) and may be limited to a window of the replay
with ``start`` (seconds, default 0) and ``duration`` (seconds, default: to the end); ``outage`` and
``stuck`` must give both. ``probability`` (0 to 1) is the chance that one matching message is hit.
A full example::

    seed = 2018

    [[faults]]                  # radio link losing messages, three in a row at a time
    kind = "drop"
    probability = 0.01
    burst = 3

    [[faults]]                  # at-least-once delivery: the same ce-id again, 5 s later
    kind = "duplicate"
    subjects = ["city.public.mobility.>"]
    probability = 0.02
    copies = 1
    gap = 5.0

    [[faults]]                  # four messages in a row come out shuffled
    kind = "reorder"
    probability = 0.05
    window = 4

    [[faults]]                  # a slow vendor API: 60 to 180 s late
    kind = "delay"
    subjects = ["city.public.environment.air-quality-observed.*"]
    probability = 0.1
    delay = 120.0
    jitter = 60.0

    [[faults]]                  # broken payloads: "truncate", "garble" or "retype"
    kind = "corrupt"
    probability = 0.005
    mode = "garble"

    [[faults]]                  # a beach sensor silent for three hours, two hours in
    kind = "outage"
    subjects = ["city.public.environment.beach-observation.blektjern"]
    start = 7200
    duration = 10800

    [[faults]]                  # a sensor repeating its reading for four hours
    kind = "stuck"
    subjects = ["city.public.environment.beach-observation.sota-fjordpark"]
    start = 3600
    duration = 14400

    [[faults]]                  # the beach sensors' clock ten minutes behind, the first day
    kind = "skew"
    sources = ["/adapters/beach-sensors"]
    skew = -600.0
    duration = 86400

Keys per kind: ``drop``: probability, ``burst`` (messages dropped in a row once triggered, default
1). ``duplicate``: probability, ``copies`` (default 1), ``gap`` (seconds between copies, default
0). ``reorder``: probability, ``window`` (messages held and shuffled, at least 2). ``delay``:
probability, ``delay`` and ``jitter`` (seconds; the delay is uniform in delay ± jitter, never below
0). ``corrupt``: probability, ``mode``. ``outage``, ``stuck``: start, duration (no probability:
the window is the fault). ``skew``: ``skew`` (seconds, positive = the clock is ahead) and
``sources`` (``ce-source`` values; empty = any source of the matching subjects). A plan with a
mistake is refused by :meth:`FaultPlan.load` with :class:`FaultPlanError` naming the file, the
fault (``faults[2] (kind "delay")``), the key and what is allowed.

Times
-----
Plan times are seconds of *replay time* from ``origin``, the replay clock's time when the replay
started (a replay at 60x covers ``duration = 3600`` in one wall-clock minute). A message is in a
window when its own time (its shifted ``ce-time``) is in ``[origin + start, origin + start +
duration)``; delays and gaps are replay seconds too. :meth:`FaultInjector.apply` returns for each
message the list of ``(delay, message)`` pairs to publish, the delay counted from that message's
due time: ``[(0.0, message)]`` when nothing happens, ``[]`` when it is dropped. A message held by
``reorder`` returns ``[]`` and comes out with the message that completes the run, spaced
:data:`REORDER_STEP` apart so they go out in the shuffled order (or with the first message after
the fault's time window, if that closes first); :meth:`FaultInjector.flush` releases what is still
held, with delays counted from the last message applied. Messages must be applied in time order,
as the replay publishes them.

Faults apply in plan order, each to what the ones before it let through: a dropped message meets
no later fault, the copies of a duplicate meet the later ones one by one. A delayed or reordered
message keeps its ``ce-time`` (it was measured then, it arrives late); a skewed one has its
``ce-time`` and body timestamps moved but is published when it is due (the device's clock is
wrong, not the moment it speaks).

Determinism
-----------
Each fault draws from its own ``random.Random(f"{seed}:{index}")`` (``index`` = its position in
the plan): one ``random()`` per matching message it has to decide on (none while a burst or a
reorder run is under way), then what the fault needs (the jitter, the bytes to garble, the
shuffle). So the same plan, seed and message sequence give the same output and the same ground
truth, and a fault added at the end of a plan leaves the decisions of the others alone (one
inserted before them shifts their indices, and so their draws).

Ground truth
------------
One JSON object per line for every fault injected, written and flushed as it happens::

    {"kind": "drop", "fault": 0, "subject": "city.public.environment.beach-observation.blektjern",
     "ce_id": "4f1c…", "time": "2018-08-29T10:00:00.000000Z", "burst": 3, "position": 2}

``kind``, ``fault`` (the index in the plan), ``subject``, ``ce_id`` and ``time`` (the message's
replay time, RFC 3339) are on every line, and per kind: ``drop``: ``burst``, ``position`` (1 to
burst); ``duplicate``: ``copies``, ``gap``; ``reorder``: ``window`` (messages in the run),
``arrived`` and ``released`` (0-based positions in the run); ``delay``: ``delay`` (seconds, as
applied); ``corrupt``: ``mode`` as applied, with ``field`` for ``retype`` and ``flipped`` (bytes)
for ``garble``; ``outage``: ``until`` (RFC 3339); ``stuck``: ``stuck_to`` (the ce-id whose values
are repeated); ``skew``: ``skew`` (seconds). A ``reorder`` line is written when its message is
released. :attr:`FaultInjector.counts` counts the lines per kind.

What a product should notice
----------------------------
* ``drop``: gaps in a series; a product should show a reading as missing, not invent it.
* ``duplicate``: delivery is at least once; the same ``ce-id`` twice must count once. Copies are
  published without ``Nats-Msg-Id``, or JetStream's duplicate window would swallow them before any
  consumer sees them; consumers deduplicate on ``ce-id``, as they must after a redelivery.
* ``reorder``: arrival order is not time order; an older reading must not overwrite a newer one.
* ``delay``: data arrives late; freshness is ``ce-time``, not arrival.
* ``corrupt``: the body fails the contract, so a consumer dead-letters it and keeps going. Every
  mode is checked against the contract's own decoder: ``truncate`` cuts the body in half,
  ``garble`` flips bytes until it is no longer JSON, ``retype`` gives the first field that the
  contract types strictly a value of the wrong type (a number for a string, a string for a number).
* ``outage``: a sensor gone silent; the product should say "no data since …", not show the last
  value as current.
* ``stuck``: a flatlined sensor repeats its first reading of the window with its own timestamps
  (per subject and ``ce-source``, so a manual reading is never made to look like the sensor's);
  the product should notice values that never change.
* ``skew``: a device clock that is wrong; readings from the future, or older than their arrival.
"""

from sandbox.faults.check import Finding, ReplayScope, check_plan
from sandbox.faults.injector import REORDER_STEP, FaultInjector, Outgoing
from sandbox.faults.plan import (
    CorruptFault,
    DelayFault,
    DropFault,
    DuplicateFault,
    FaultPlan,
    FaultPlanError,
    FaultSpec,
    OutageFault,
    ReorderFault,
    SkewFault,
    StuckFault,
)

__all__ = [
    "CorruptFault",
    "DelayFault",
    "DropFault",
    "DuplicateFault",
    "FaultInjector",
    "FaultPlan",
    "FaultPlanError",
    "FaultSpec",
    "Finding",
    "OutageFault",
    "Outgoing",
    "REORDER_STEP",
    "ReorderFault",
    "ReplayScope",
    "SkewFault",
    "StuckFault",
    "check_plan",
]
