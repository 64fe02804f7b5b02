"""The statistics service: everyday statistics, released so that they identify nobody.

It reads the personal data its consent allows and the city's public data, and publishes
:class:`~contracts.Aggregate` tables protected by k-anonymity or differential privacy (OpenDP);
:mod:`adapters.statistics.everyday` says how the public data sets are computed.
"""

__all__: list[str] = []
