"""Everyday statistics, released so that they identify nobody (issue 19).

The release engine (:mod:`adapters.statistics.engine`, pure: no bus), the periods a release
covers (:mod:`adapters.statistics.periods`), and the public data sets computed from the city's
public contracts (:mod:`adapters.statistics.everyday`).
"""

__all__: list[str] = []
