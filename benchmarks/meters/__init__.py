"""Energy meters (NVML, Jetson INA rails through tegrastats or the INA3221 hwmon / IIO files, RAPL), each imported
lazily by `open_meter`."""
from .base import (ENERGY_WINDOW_S, IDLE_DRIFT_WARN, IDLE_SETTLE_S, Meter, MeterUnavailable, Window, active_window,
                   energy_per_item, idle_window, settled_idle_window, window_too_long)
from .select import METERS, open_meter

__all__ = ["ENERGY_WINDOW_S", "IDLE_DRIFT_WARN", "IDLE_SETTLE_S", "METERS", "Meter", "MeterUnavailable", "Window",
           "active_window", "energy_per_item", "idle_window", "open_meter", "settled_idle_window",
           "window_too_long"]
