"""The ``sensor-watch`` service adapter: alerts when a sensor's readings flatline or stop, and when
they recover (:mod:`~adapters.watch.adapter`), by the rules of :mod:`~adapters.watch.watch`."""

from adapters.watch.adapter import SensorWatch, WatchConfig, beach_reading, weather_reading
from adapters.watch.watch import Finding, Reading, Watch

__all__ = ["Finding", "Reading", "SensorWatch", "Watch", "WatchConfig", "beach_reading", "weather_reading"]
