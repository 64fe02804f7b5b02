"""citybus sandbox: recordings of city data (MCAP), their replay onto the bus at any speed with
faults injected on purpose, and the recorded Drammen day that ships with citybus.
"""

__all__: list[str] = []
