"""Jetson power from the INA3221 monitors' files in sysfs, without tegrastats (a container, a minimal image).

Two drivers, one per JetPack generation, expose the same rails tegrastats prints, each channel as its bus voltage in
mV and current in mA, whose product is its power:
- hwmon: the upstream `ina3221` driver (JetPack 5 and 6: Orin, Xavier), per channel N of 1-3 in
  /sys/class/hwmon/hwmonX (name `ina3221`): `inN_label` (from the device tree), `inN_input`, `currN_input`; channels
  disabled (`inN_enable` 0) are left out.
- IIO: NVIDIA's downstream `ina3221x` driver (JetPack 4, L4T 32: Nano, TX2, Xavier NX/AGX; JetPack 3, L4T 28: TX1,
  TX2), per channel K of 0-2 in /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:deviceN (`iio_device` on L4T 28):
  `rail_name_K`, `in_voltageK_input`, `in_currentK_input`, and `in_powerK_input` (mW), which is read where present.
  Why: the INA3221 has no power register; this driver multiplies one conversion's bus voltage and current (the same
  mV x mA / 1000), while the voltage and current files are a conversion each (in its triggered mode, each read powers
  the chip up and down), so their product pairs two instants, at two conversions a rail per poll. Voltage x current
  stays the fallback (RailFiles), as on hwmon, whose driver has no power file.
hwmon is read where it has rails, else IIO: never both, so the rails come from one driver. They are summed by
tegrastats' rule (`module_power_mw`): the input rail (VDD_IN on Orin Nano / NX and Xavier NX / TX2, POM_5V_IN on Nano)
is the whole module; boards without one (AGX Orin, AGX Xavier) are measured as the sum of their rails across
monitors. Channels without a name or named NC (not connected) are left out. Not covered: Thor, which has no INA3221.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from .base import MeterUnavailable, read_or
from .tegrastats import RailsMeter

HWMON_ROOT = Path("/sys/class/hwmon")
IIO_ROOT = Path("/sys/bus/i2c/drivers/ina3221x")
CHANNELS = (1, 2, 3)  # hwmon numbers an INA3221's channels from 1, IIO (ina3221x) from 0
RailFiles = tuple[Path, ...]  # a rail's power file (mW), or its bus voltage (mV) and current (mA) files
IIO_DEVICES = "*/iio[:_]device*"  # a monitor's IIO folder in its <bus-addr>: iio:deviceN (L4T 32), iio_device (L4T 28)


def _connected(label: str) -> bool:
    """Whether a channel's name (hwmon `inN_label`, IIO `rail_name_K`) is a rail: unnamed or NC channels are not."""
    return bool(label) and label != "NC"


def _hwmons(root: Path) -> list[Path]:
    """The INA3221 hwmon folders under `root` (the hwmon class folder), in order."""
    return [hwmon for hwmon in sorted(root.glob("hwmon*")) if read_or(hwmon / "name", "") == "ina3221"]


def rail_files(root: Path) -> dict[str, RailFiles]:
    """{rail label: (its bus voltage file, its current file)} for every connected, enabled channel of every INA3221
    hwmon under `root`."""
    rails: dict[str, RailFiles] = {}
    for hwmon in _hwmons(root):
        for n in CHANNELS:
            label = read_or(hwmon / f"in{n}_label", "")
            if _connected(label) and read_or(hwmon / f"in{n}_enable", "1") != "0":
                rails[label] = (hwmon / f"in{n}_input", hwmon / f"curr{n}_input")
    return rails


def iio_rail_files(root: Path) -> dict[str, RailFiles]:
    """`rail_files` for JetPack 3/4's `ina3221x` IIO devices under `root` (its driver folder, one `<bus-addr>` folder
    per monitor, IIO_DEVICES): each rail's power file where it has one, else the same bus mV and mA, so one reader
    (`rail_mw`) and one rule serve both drivers."""
    rails: dict[str, RailFiles] = {}
    for iio in sorted(root.glob(IIO_DEVICES)):
        for k in (n - 1 for n in CHANNELS):
            label = read_or(iio / f"rail_name_{k}", "")
            if _connected(label):
                power, volts, amps = (iio / f"in_{kind}{k}_input" for kind in ("power", "voltage", "current"))
                rails[label] = (power,) if power.exists() else (volts, amps)
    return rails


def rail_mw(files: RailFiles) -> int:
    """A rail's instant power in mW from its RailFiles: the power file as read, else bus mV x mA / 1000."""
    values = [int(f.read_text()) for f in files]
    return values[0] if len(values) == 1 else values[0] * values[1] // 1000


def update_interval_ms(root: Path) -> int:
    """The slowest INA3221's conversion period (`update_interval`, ms; 0 where unreadable): how often its readings
    change, which sets the shortest window (base.MIN_REFRESHES of it), however fast they are polled."""
    found = [int(v) for h in _hwmons(root) if (v := read_or(h / "update_interval", "")).isdigit()]
    return max(found, default=0)


class Ina3221Meter(RailsMeter):
    """Polls the INA3221 rails every `interval_ms` in a thread and integrates module power (held until the next
    reading); a failed read fails the meter, as a tegrastats that exits does."""

    name = "ina3221"

    def __init__(self, root: Path | None = None, interval_ms: int = 20,
                 clock: Callable[[], float] = time.perf_counter, iio_root: Path | None = None) -> None:
        """`root`: the hwmon class folder, HWMON_ROOT by default; `iio_root`: the `ina3221x` driver folder, read
        where `root` has no INA3221 rails, IIO_ROOT by default (both read when the meter opens)."""
        root = HWMON_ROOT if root is None else Path(root)
        iio_root = IIO_ROOT if iio_root is None else Path(iio_root)
        self.rails, self.source, period_ms = rail_files(root), "INA3221 hwmon", update_interval_ms(root)
        if not self.rails:  # no update_interval is read from ina3221x: its rails are polled every interval_ms
            self.rails, self.source, period_ms = iio_rail_files(iio_root), "INA3221 IIO", 0
        if not self.rails:
            raise MeterUnavailable(f"no labelled INA3221 channels under {root} (hwmon name 'ina3221') or {iio_root} "
                                   "(JetPack 3/4's ina3221x IIO rail_name_K)")
        super().__init__(max(interval_ms, period_ms), clock)
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
        """Each rail's instant power in mW (`rail_mw`)."""
        try:
            return {label: rail_mw(files) for label, files in self.rails.items()}
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"INA3221 rail no longer readable ({exc})") from None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
