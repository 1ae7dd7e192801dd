"""Jetson power from the INA3221 monitors' hwmon files in sysfs, without tegrastats (a container, a minimal image).

The upstream `ina3221` hwmon driver (JetPack 5 and 6: Orin, Xavier) exposes, per channel N of 1-3, the rail's name
(`inN_label`, from the device tree), its bus voltage in mV (`inN_input`) and current in mA (`currN_input`): the rails
tegrastats prints, whose power is their product. They are summed by tegrastats' rule (`module_power_mw`): the input
rail (VDD_IN on Orin Nano / NX) is the whole module; boards without one (AGX Orin) are measured as the sum of their
rails across both monitors. Channels without a label, labelled NC (not connected) or disabled (`inN_enable` 0) are
left out. Not covered: JetPack 4 (Nano, TX2), whose downstream `ina3221x` driver is IIO, not hwmon; Thor, which has
no INA3221.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from .base import MeterUnavailable
from .rapl import _read
from .tegrastats import RailsMeter

HWMON_ROOT = Path("/sys/class/hwmon")
CHANNELS = (1, 2, 3)


def rail_files(root: Path) -> dict[str, tuple[Path, Path]]:
    """{rail label: (its bus voltage file, its current file)} for every connected, enabled channel of every INA3221
    under `root`."""
    rails = {}
    for hwmon in sorted(root.glob("hwmon*")):
        if _read(hwmon / "name", "") != "ina3221":
            continue
        for n in CHANNELS:
            label = _read(hwmon / f"in{n}_label", "")
            if label and label != "NC" and _read(hwmon / f"in{n}_enable", "1") != "0":
                rails[label] = (hwmon / f"in{n}_input", hwmon / f"curr{n}_input")
    return rails


def update_interval_ms(root: Path) -> int:
    """The slowest INA3221's conversion period (`update_interval`, ms; 0 where unreadable): how often its readings
    change, which sets the shortest window (base.MIN_REFRESHES of it), however fast they are polled."""
    found = [int(v) for h in sorted(root.glob("hwmon*")) if _read(h / "name", "") == "ina3221"
             and (v := _read(h / "update_interval", "")).isdigit()]
    return max(found, default=0)


class Ina3221Meter(RailsMeter):
    """Polls the INA3221 rails every `interval_ms` in a thread and integrates module power (held until the next
    reading); a failed read fails the meter, as a tegrastats that exits does."""

    name, source = "ina3221", "INA3221 hwmon"

    def __init__(self, root: Path | None = None, interval_ms: int = 20,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """`root`: the hwmon class folder, HWMON_ROOT (read when the meter opens) by default."""
        root = HWMON_ROOT if root is None else Path(root)
        self.rails = rail_files(root)
        if not self.rails:
            raise MeterUnavailable(f"no labelled INA3221 channels under {root} (hwmon name 'ina3221')")
        super().__init__(max(interval_ms, update_interval_ms(root)), clock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        self._wait_first(5.0)

    def _poll(self) -> None:
        while not self.stop.is_set():
            try:
                self._add(self.clock(), {label: (mw, mw) for label, mw in self._read_mw().items()})
            except MeterUnavailable as exc:
                self.error = str(exc)
            self.ready.set()
            if self.error:
                return
            self.stop.wait(self.refresh_s)

    def _read_mw(self) -> dict[str, int]:
        """Each rail's instant power in mW: bus mV x mA / 1000."""
        try:
            return {label: int(v.read_text()) * int(i.read_text()) // 1000 for label, (v, i) in self.rails.items()}
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"INA3221 rail no longer readable ({exc})") from None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
