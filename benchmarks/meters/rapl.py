"""Intel/AMD RAPL package energy from /sys/class/powercap (x86 Linux), with counter wraparound.

`energy_uj` counts microjoules and wraps at `max_energy_range_uj`. One wrap between two reads is undone; two read
as less energy, without a sign. The harness reads the counter at each window's ends only, and a window is as long as
--energy-window, which has no upper bound, so two wraps can happen: the 32-bit counter holds 2^32 energy units, on
Intel 2^-14 J each (262,144 J: 8.7 min at a 500 W Xeon's package limit, 17 min at a desktop's 253 W) but on AMD Zen
2^-16 J (65,536 J: 2.2 min at 500 W, 3.9 min at 280 W). Hence `max_window_s`: the counter's range over the package's
highest powercap limit (long term, short term, peak): a longer --energy-window is refused before the sweep times
anything, and a window that runs past it anyway (by its last call) is unavailable (see base.window_too_long). A drop
by less than half the range is no wrap but a reset (suspend, CPU hotplug): the energy is then unknown. Since Linux
5.10 the file is root-only (CVE-2020-8694), which the unavailable reason says.
"""
from __future__ import annotations

import math
from pathlib import Path

from .base import Meter, MeterUnavailable, read_or

RAPL_ROOT = Path("/sys/class/powercap")
PACKAGE_W_CEILING = 1000.0  # twice the largest x86 package ratings (500 W): the bound where powercap gives none


class RaplMeter(Meter):
    """Sum of the top-level `package-N` domains (DRAM and psys are not added: they overlap or differ by board)."""

    name = "rapl"
    refresh_s = 1e-3  # the energy status counter updates about every millisecond

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        tops = [d for d in sorted(Path(root).glob("intel-rapl:*")) if d.name.count(":") == 1]
        self.domains = [d for d in tops if read_or(d / "name", "").startswith("package")]
        if not self.domains:
            raise MeterUnavailable(f"no RAPL package domains under {root} (not x86 Linux, or powercap not loaded)")
        self.max_range = [int(read_or(d / "max_energy_range_uj", "0")) for d in self.domains]
        self.max_window_s = min(_wrap_s(d, r) for d, r in zip(self.domains, self.max_range))
        self.last = [self._raw(d) for d in self.domains]
        self.total_uj = [0] * len(self.domains)
        self.scope = "CPU " + "+".join(read_or(d / "name", d.name) for d in self.domains)

    @staticmethod
    def _raw(domain: Path) -> int:
        try:
            return int((domain / "energy_uj").read_text().strip())
        except PermissionError:
            raise MeterUnavailable(f"{domain / 'energy_uj'} is not readable (root-only since Linux 5.10); "
                                   "run as root or relax its permissions") from None
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"cannot read {domain / 'energy_uj'}: {exc}") from None

    def energy_j(self) -> float:
        for i, domain in enumerate(self.domains):
            raw = self._raw(domain)
            delta = raw - self.last[i]
            if delta < 0 and -delta > self.max_range[i] / 2 > 0:  # the counter wrapped once since the last read
                delta += self.max_range[i]
            elif delta < 0:  # read as a wrap it added nearly the whole range (or, range unknown, subtracted)
                raise MeterUnavailable(f"{domain / 'energy_uj'} went backwards from {self.last[i]} to {raw} uJ, "
                                       f"which is no wrap at max_energy_range_uj ({self.max_range[i] or 'unreadable'})"
                                       ": the counter was reset, so the energy is unknown")
            self.total_uj[i] += delta
            self.last[i] = raw
        return sum(self.total_uj) / 1e6


def _wrap_s(domain: Path, max_range_uj: int) -> float:
    """Seconds the counter takes to wrap at the package's highest power: its range over the largest of its powercap
    limits, or over PACKAGE_W_CEILING where none is readable (AMD's RAPL has energy counters only) or a limit is
    above it (boards ship "unlimited" 4095 W limits, not a power a package draws). inf where the range is unknown."""
    watts = [int(v) / 1e6 for f in sorted(domain.glob("constraint_*_uw")) if (v := read_or(f, "")).isdigit()]
    bound_w = min(PACKAGE_W_CEILING, max(watts, default=0.0) or PACKAGE_W_CEILING)
    return max_range_uj / 1e6 / bound_w if max_range_uj > 0 else math.inf
