"""Energy meters (NVML, Jetson tegrastats INA rails, RAPL), each imported lazily by `open_meter`."""
from .base import Meter, MeterUnavailable, Window, active_window, energy_per_item, idle_window
from .select import METERS, open_meter

__all__ = ["METERS", "Meter", "MeterUnavailable", "Window", "active_window", "energy_per_item", "idle_window",
           "open_meter"]
