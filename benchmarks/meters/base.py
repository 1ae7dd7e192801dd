"""Energy meters as cumulative counters, and energy per inference from two measured windows.

Every meter exposes `energy_j()`: joules since it was opened. Hardware counters (NVML, RAPL) are read
directly; sampled power (tegrastats INA rails) is integrated in the background. Meters refresh every
20-100 ms, so a window must be long (>= 10 s by default) for the edge error to stay around 1 %.
Energy per item = (active energy - idle power x active time) / items, with the idle power measured
in the same run: the report gives that number and names the method, never an estimate.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class MeterUnavailable(Exception):
    """This meter cannot measure on this machine; the message says why (it lands in the report)."""


def read_or(path: Path, default: str) -> str:
    """A sysfs file's stripped text, or `default` where it cannot be read: the probe of every meter that reads sysfs
    (RAPL's powercap, the INA3221 files)."""
    try:
        return path.read_text().strip()
    except OSError:
        return default


class Meter(ABC):
    """A cumulative energy counter; use as a context manager so subprocesses and handles are released."""

    name: str = "meter"
    scope: str = ""  # what the reading covers, e.g. "GPU board" or "module input rail VDD_IN"
    refresh_s: float = 0.0  # seconds between the reading's updates (0: unknown); sets the shortest window
    max_window_s: float = math.inf  # the longest window it measures (a wrapping counter's wrap at full power)

    @abstractmethod
    def energy_j(self) -> float:
        """Joules consumed since the meter was opened."""

    def close(self) -> None:
        """Release the device handle or subprocess."""

    def describe(self) -> str:
        return f"{self.name} ({self.scope})" if self.scope else self.name

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Window:
    """Energy measured over one window of wall time, with how many items were processed in it."""

    joules: float
    seconds: float
    items: int

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


MIN_REFRESHES = 20  # a window spans at least this many of its meter's refreshes: each edge errs by up to one, 10 %


def window_too_long(meter: Meter, seconds: float) -> str:
    """Why `meter` cannot measure a window of `seconds` (its counter may wrap twice in it), or "" where it can. One
    rule for two checks: --energy-window against the meter before the sweep times anything, and each measured window
    (_window), which can run past --energy-window by its last call."""
    if seconds <= meter.max_window_s:
        return ""
    return (f"a {seconds:.3g} s window is longer than the {meter.max_window_s:.3g} s the {meter.name} counter takes "
            "to wrap at its highest power: wrapped twice, it reads as less energy")


def _window(meter: Meter, e0: float, t0: float, items: int, clock: Callable[[], float]) -> Window:
    """The window from (e0, t0) to now, or MeterUnavailable where its joules cannot be right: a window too short for
    the meter's refresh, or too long for its counter's range (wrapped twice, it reads as less energy), a counter that
    did not move (idle read 0 W, so all active energy counted as above idle) or went backwards (a reset or driver
    reload: negative energy)."""
    joules, seconds = meter.energy_j() - e0, clock() - t0
    if too_long := window_too_long(meter, seconds):
        raise MeterUnavailable(f"{too_long}; shorten --energy-window")
    if joules < 0:
        raise MeterUnavailable(f"the {meter.name} counter went backwards by {-joules:.4g} J over a {seconds:.3g} s "
                               "window (reset, or driver reloaded); its energy is unknown")
    if seconds < MIN_REFRESHES * meter.refresh_s:
        raise MeterUnavailable(f"a {seconds:.3g} s window spans under {MIN_REFRESHES} of the {meter.name} meter's "
                               f"{meter.refresh_s * 1e3:g} ms refreshes (edge error over 10 %); lengthen "
                               "--energy-window")
    if joules == 0:
        raise MeterUnavailable(f"the {meter.name} counter did not move over a {seconds:.3g} s window (it refreshes "
                               "less often, or stopped); lengthen --energy-window")
    return Window(joules, seconds, items)


def idle_window(meter: Meter, seconds: float, sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.perf_counter) -> Window:
    """Energy while the process sleeps: the baseline subtracted from every active window."""
    e0, t0 = meter.energy_j(), clock()
    sleep(seconds)
    return _window(meter, e0, t0, 0, clock)


IDLE_SETTLE_S = 5.0  # default sleep between a row's timing and the idle window (`edge-msa bench --idle-settle`)
ENERGY_WINDOW_S = 10.0  # default seconds of the idle and of each active window (`edge-msa bench --energy-window`)
IDLE_DRIFT_WARN = 0.05  # idle power changing more than this between the idle window's halves: it had not settled


def settled_idle_window(meter: Meter, seconds: float, settle_s: float, sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.perf_counter) -> tuple[Window, float]:
    """The idle window after `settle_s` of sleep, and its drift: the second half's power over the first half's - 1.

    Why settle: idle is measured right after a row's timing, while DVFS governors (a Jetson's CPU, GPU and EMC
    devfreq, a desktop GPU's P-state) still hold the clocks up; idle power read then is too high, so the energy above
    it per item came out too low. Why the drift: a window whose power still falls (or rises) has no settled idle to
    subtract, and the report says so rather than hide it."""
    sleep(settle_s)
    first = idle_window(meter, seconds / 2, sleep, clock)
    second = idle_window(meter, seconds / 2, sleep, clock)
    both = Window(first.joules + second.joules, first.seconds + second.seconds, 0)
    return both, second.watts / first.watts - 1 if first.watts > 0 else 0.0


def active_window(meter: Meter, work: Callable[[int], int], seconds: float,
                  clock: Callable[[], float] = time.perf_counter) -> Window:
    """Energy while `work(i)` runs back to back for `seconds`; `work` returns the items it processed."""
    items, i = 0, 0
    e0, t0 = meter.energy_j(), clock()
    while clock() - t0 < seconds:
        items += work(i)
        i += 1
    return _window(meter, e0, t0, items, clock)


def energy_per_item(active: Window, idle: Window) -> dict:
    """mJ per item above idle (the headline) and including idle, with the powers behind them."""
    if active.items < 1:
        raise MeterUnavailable("no inference finished inside the energy window; lengthen --energy-window")
    dynamic_j = active.joules - idle.watts * active.seconds
    if dynamic_j <= 0:  # a negative energy per item, and a ratio of the wrong sign in report.md
        raise MeterUnavailable(f"active power {active.watts:.3g} W is not above idle {idle.watts:.3g} W: the energy "
                               "per item is under the meter's noise floor; use a longer --energy-window or a larger "
                               "batch")
    return {
        "energy_mj_per_item": 1e3 * dynamic_j / active.items,
        "energy_total_mj_per_item": 1e3 * active.joules / active.items,
        "active_w": active.watts,
        "idle_w": idle.watts,
        "energy_window_s": active.seconds,
        "energy_items": active.items,
    }
