"""Everyday statistics, released so that they identify nobody (issue 19).

The release engine (:mod:`adapters.statistics.engine`, pure: no bus) and the periods a release
covers (:mod:`adapters.statistics.periods`).
"""

__all__: list[str] = []
