"""Jetson power from the rails that `tegrastats` prints, integrated over time.

Line formats seen on real boards (fixtures in tests/fixtures/tegrastats/):
- JetPack 5/6 (Orin): `VDD_IN 4824mW/4824mW VDD_CPU_GPU_CV 518mW/518mW VDD_SOC 1475mW/1475mW`
- JetPack 4 (Nano, TX2, Xavier): `POM_5V_IN 1057/1057 POM_5V_GPU 0/0` or `VDD_IN 3140/3208` (mW, no unit),
  early AGX Xavier: `GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 SYS5V 3306/3306`.
- JetPack 7 (Thor): `VDD_GPU 37528mW/37528mW/37528mW VDD_CPU_SOC_MSS ... VIN_SYS_5V0 ... VIN 87426mW/43713mW/87426mW`.
Each pair is instantaneous/average mW (Thor adds the peak). The input rail (VDD_IN, POM_5V_IN, VIN) is the whole
module; boards without one (AGX Orin, AGX Xavier) are measured as the sum of their rails, and the scope says so.
The scope names tegrastats, the source read, not a sensor chip: INA3221 monitors up to Orin, but not on Thor.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from typing import Callable

from .base import Meter, MeterUnavailable

# NAME cur/avg[/peak] with optional mW units, followed by whitespace or end (so RAM 1/2MB never matches).
_RAIL = re.compile(r"(?<![\w@])([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/\d+(?:mW)?)?(?=\s|$)")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
STALE_LINES = 50  # missed lines before the held power counts as a guess (block-buffered output arrives ~10 at once)
_SKIP = {"RAM", "SWAP", "IRAM"}


def parse_rails(line: str) -> dict[str, tuple[int, int]]:
    """{rail: (instant mW, average mW)} for every power rail on one tegrastats line."""
    return {name: (int(cur), int(avg)) for name, cur, avg in _RAIL.findall(line) if name not in _SKIP}


def module_power_mw(rails: dict[str, tuple[int, int]]) -> tuple[float, str]:
    """Instant module power in mW and which rails it came from."""
    for name in INPUT_RAILS:
        if name in rails:
            return float(rails[name][0]), f"input rail {name}"
    if not rails:
        raise MeterUnavailable("tegrastats printed no power rails (no power monitor exposed on this board)")
    return float(sum(cur for cur, _ in rails.values())), "sum of rails " + "+".join(rails)


class RailsMeter(Meter):
    """Integrates instant module power from Jetson power rails (`module_power_mw`), each reading's power held until
    the next: the part tegrastats and the INA3221 sysfs files (ina3221.py: hwmon or IIO) share, so both measure one
    scope by one rule. A subclass feeds `_add` from a thread and sets `ready` at its first reading (or error).

    Power is held only while readings keep coming: once they stop for `STALE_LINES` intervals (at least a second),
    reading the energy fails instead of extrapolating the last reading's power."""

    source: str  # what the scope names as read: tegrastats, or the INA3221 hwmon or IIO files
    sample = "reading"  # one reading's word in the messages
    silent = "gave no reading"

    def __init__(self, interval_ms: int, clock: Callable[[], float]) -> None:
        self.refresh_s = interval_ms / 1e3  # a reading every interval
        self.clock = clock
        self.lock = threading.Lock()
        self.joules, self.last_w, self.samples = 0.0, 0.0, 0
        self.last_t: float | None = None
        self.error: str | None = None
        self.scope = ""
        self.ready = threading.Event()

    def _add(self, now: float, rails: dict[str, tuple[int, int]]) -> None:
        """Integrate the held power up to this reading's, then hold this one. A reading that measures another scope
        than the first (its input rail gone, so the sum of the others) fails the meter: one energy over two scopes is
        neither. So does a reading with no rails after readings with them, saying so: the start-up reason (no rails
        on this board) sent the reader looking for a board problem the first readings had disproved."""
        with self.lock:
            if self.samples and not rails:
                raise MeterUnavailable(f"{self.name} {self.sample}s lost their power rails mid-run, after "
                                       f"{self.sample} {self.samples} on the {self.scope}; the energy since is unknown")
            mw, scope = module_power_mw(rails)
            scope = f"Jetson {self.source} {scope}"
            if self.samples and self.scope != scope:
                raise MeterUnavailable(f"{self.name} {self.sample}s switched from the {self.scope} to the {scope} "
                                       "mid-run; energy over both would mix two scopes")
            if self.last_t is not None:
                self.joules += self.last_w * (now - self.last_t)
            self.last_t, self.last_w, self.scope = now, mw / 1e3, scope
            self.samples += 1

    def _wait_first(self, timeout_s: float) -> None:
        """Fail the open where no reading came in `timeout_s`, or the first failed."""
        if not self.ready.wait(timeout_s) or self.error:
            self.close()
            raise MeterUnavailable(self.error or f"{self.name} {self.silent} within {timeout_s} s")

    def energy_j(self) -> float:
        with self.lock:
            if self.error:
                raise MeterUnavailable(self.error)
            if self.last_t is None:
                return self.joules
            silent = self.clock() - self.last_t
            if silent > max(1.0, STALE_LINES * self.refresh_s):
                raise MeterUnavailable(f"{self.name} {self.silent} for {silent:.1f} s (interval "
                                       f"{self.refresh_s * 1e3:g} ms); the energy since would be a guess")
            return self.joules + self.last_w * silent


class TegrastatsMeter(RailsMeter):
    """Runs `tegrastats --interval N` and integrates instant module power (held until the next line)."""

    name = source = "tegrastats"
    sample, silent = "line", "printed no line"

    def __init__(self, interval_ms: int = 20, command: list[str] | None = None,
                 clock: Callable[[], float] = time.perf_counter, first_line_timeout_s: float = 5.0,
                 family: str | None = None) -> None:
        """`family`: the board's (`sysinfo.board_family`), which words the reason where tegrastats is missing
        (`not_found`)."""
        if command is None:
            exe = shutil.which("tegrastats") or "/usr/bin/tegrastats"
            if not shutil.which(exe):
                raise MeterUnavailable(not_found(family))
            # tegrastats writes through stdio: force line buffering so arrival time = sample time.
            stdbuf = shutil.which("stdbuf")
            command = ([stdbuf, "-oL"] if stdbuf else []) + [exe, "--interval", str(interval_ms)]
        super().__init__(interval_ms, clock)
        try:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         bufsize=1)
        except OSError as exc:
            raise MeterUnavailable(f"cannot start {command[0]}: {exc}") from None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self._wait_first(first_line_timeout_s)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = self.clock()
            try:
                self._add(now, parse_rails(line))
            except MeterUnavailable as exc:
                self.error = str(exc)
                self.ready.set()
                return
            self.ready.set()
        self.error = self.error or f"tegrastats exited (code {self.proc.wait()}){_first_line(self.proc.stderr)}"
        self.ready.set()  # an exit before the first power line fails the start at once, not after the timeout

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def not_found(family: str | None) -> str:
    """Why there is no tegrastats, by what the device tree says the board is: on a detected Jetson it ships with L4T
    in /usr/bin, so it is missing from this image or container, not from the board ("not a Jetson" there contradicted
    the report's own board line); elsewhere the device tree names no Jetson, or a container hides it."""
    if family == "jetson":
        return ("tegrastats is not on PATH or in /usr/bin on this Jetson (it ships with L4T in /usr/bin): in a "
                "container, mount it from the host, or run bench on the host")
    return "tegrastats is not on PATH or in /usr/bin, and the device tree names no Jetson"


def _first_line(stream) -> str:
    """': <first line>' of what an exited tegrastats wrote to stderr (its reason), else ''."""
    text = stream.read().strip() if stream is not None else ""
    return f": {text.splitlines()[0]}" if text else ""
