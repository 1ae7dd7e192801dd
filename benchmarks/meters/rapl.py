"""Intel/AMD RAPL package energy from /sys/class/powercap (x86 Linux), with counter wraparound.

`energy_uj` counts microjoules and wraps at `max_energy_range_uj`; reading at least once per window
(wrap takes tens of minutes even at 100 W) keeps the sum exact. A drop by less than half the range is no
wrap but a reset (suspend, CPU hotplug): the energy is then unknown. Since Linux 5.10 the file is
root-only (CVE-2020-8694), which the unavailable reason says.
"""
from __future__ import annotations

from pathlib import Path

from .base import Meter, MeterUnavailable

RAPL_ROOT = Path("/sys/class/powercap")


class RaplMeter(Meter):
    """Sum of the top-level `package-N` domains (DRAM and psys are not added: they overlap or differ by board)."""

    name = "rapl"
    refresh_s = 1e-3  # the energy status counter updates about every millisecond

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        tops = [d for d in sorted(Path(root).glob("intel-rapl:*")) if d.name.count(":") == 1]
        self.domains = [d for d in tops if _read(d / "name", "").startswith("package")]
        if not self.domains:
            raise MeterUnavailable(f"no RAPL package domains under {root} (not x86 Linux, or powercap not loaded)")
        self.max_range = [int(_read(d / "max_energy_range_uj", "0")) for d in self.domains]
        self.last = [self._raw(d) for d in self.domains]
        self.total_uj = [0] * len(self.domains)
        self.scope = "CPU " + "+".join(_read(d / "name", d.name) for d in self.domains)

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


def _read(path: Path, default: str) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default
