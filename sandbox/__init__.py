"""citybus sandbox: recordings of city data (MCAP), their replay onto the bus at any speed with
faults injected on purpose, and the recorded Drammen day that ships with citybus.

:mod:`~sandbox.recording` is the file format and :mod:`~sandbox.contents` what a file holds;
:mod:`~sandbox.recorder` records live subjects, personal ones sealed or pseudonymised
(:mod:`~sandbox.pseudonyms`, with stand-ins from :mod:`~sandbox.people`);
:mod:`~sandbox.replay` schedules a recording back onto the bus, moved in time by
:mod:`~sandbox.timeshift`, with faults from :mod:`~sandbox.faults`; :mod:`~sandbox.adapter` runs
it as the ``sandbox-replay`` adapter that ``citybus up`` starts by default, steered through
:mod:`~sandbox.control` and publishing its clock (:class:`adapters.clock.ClockTick`); :mod:`sandbox.drammen`
builds the recorded Drammen day; :mod:`~sandbox.cli` adds the ``record``, ``recording``, ``replay``
and ``sandbox`` commands.
"""

from adapters.clock import ClockTick
from sandbox.adapter import DRAMMEN_DAY, ReplayConfig, SandboxReplay
from sandbox.contents import RecordingInfo, SubjectSummary, read_contents, read_info, read_subjects
from sandbox.control import NoArguments, SeekRequest, SpeedRequest, control_request
from sandbox.faults import FaultInjector, FaultPlan, FaultPlanError, Outgoing
from sandbox.metrics import ReplayMetrics, replay_metrics
from sandbox.pseudonyms import Pseudonymiser
from sandbox.recorder import RecordReport, record
from sandbox.recording import RecordedMessage, RecordingError, RecordingWriter, read_messages
from sandbox.replay import Replayer, ReplayStatus
from sandbox.timeshift import TimeShifter

__all__ = [
    "ClockTick",
    "DRAMMEN_DAY",
    "FaultInjector",
    "FaultPlan",
    "FaultPlanError",
    "NoArguments",
    "Outgoing",
    "Pseudonymiser",
    "RecordReport",
    "RecordedMessage",
    "RecordingError",
    "RecordingInfo",
    "RecordingWriter",
    "ReplayConfig",
    "ReplayMetrics",
    "ReplayStatus",
    "Replayer",
    "SandboxReplay",
    "SeekRequest",
    "SpeedRequest",
    "SubjectSummary",
    "TimeShifter",
    "control_request",
    "read_contents",
    "read_info",
    "read_messages",
    "read_subjects",
    "record",
    "replay_metrics",
]
