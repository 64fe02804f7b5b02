"""The statistics service: everyday statistics, released so that they identify nobody.

It reads the personal data its consent allows and the city's public data, and publishes
:class:`~contracts.Aggregate` tables protected by k-anonymity or differential privacy (OpenDP);
:mod:`adapters.statistics.everyday` says how the public data sets are computed, the release
engine (:mod:`adapters.statistics.engine`, pure: no bus) how a table is made, and
:mod:`adapters.statistics.periods` the periods a release covers.

A service adapter (``statistics``, :mod:`adapters.statistics.adapter`) releasing each data set per
period, spending privacy budget by compare-and-set so that two processes can never overspend it
(:mod:`adapters.statistics.budget`), keeping each person's contributions by ref only
(:mod:`adapters.statistics.contributions`) in districts (:mod:`adapters.statistics.districts`),
and answering a person's comparison with their own figures for them alone
(:mod:`adapters.statistics.service`).
"""

from adapters.statistics.adapter import DatasetConfig, DistrictConfig, StatisticsConfig, StatisticsService
from adapters.statistics.budget import Budget, Refused, Spent
from adapters.statistics.contributions import Contributions
from adapters.statistics.districts import DRAMMEN, District, Districts
from adapters.statistics.service import VOLUNTEER_HOURS, Statistics

__all__ = [
    "Budget",
    "Contributions",
    "DRAMMEN",
    "DatasetConfig",
    "District",
    "DistrictConfig",
    "Districts",
    "Refused",
    "Spent",
    "Statistics",
    "StatisticsConfig",
    "StatisticsService",
    "VOLUNTEER_HOURS",
]
