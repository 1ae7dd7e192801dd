"""NVIDIA GPU energy from NVML's total-energy counter (Volta+ data-centre and desktop GPUs).

pynvml comes from the `nvidia-ml-py` package and is imported only here, only when asked. On Jetson
NVML initialises but power queries return NOT_SUPPORTED: that becomes MeterUnavailable so the
selector falls through to the INA rails (tegrastats). The counter, not nvmlDeviceGetPowerUsage: that is power
averaged over 1 s on Ampere and newer (NVML's docs), while the counter integrates every sample.
"""
from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Callable

from edge_msa.errors import GPU_FIX, MissingDependencyError, require

from ..memory import MB
from .base import Meter, MeterUnavailable


def _nvml(purpose: str = "NVML energy and GPU memory readings") -> ModuleType:
    try:
        pynvml = require("pynvml", purpose, GPU_FIX)
    except MissingDependencyError as exc:
        raise MeterUnavailable(str(exc)) from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError subclasses; no driver / no GPU
        raise MeterUnavailable(f"NVML did not initialise ({exc})") from None
    return pynvml


def visible_gpu() -> str:
    """The GPU this process's CUDA work runs on, as NVML should look it up: the first entry of CUDA_VISIBLE_DEVICES
    (an index, or a GPU-/MIG- UUID), else "0". NVML ignores that variable, so index 0 alone metered the wrong card
    on a multi-GPU host where the benchmark was pinned to another one."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return first or "0"


def _handle(nvml: ModuleType, gpu: str) -> tuple[object, str]:
    """NVML's handle of `gpu` (visible_gpu's form: an index or a UUID), and how it was picked, for the meter line.

    A UUID names one card. An index is CUDA's, counted in CUDA_DEVICE_ORDER: fastest first unless PCI_BUS_ID, while
    NVML counts in PCI bus order, so on a host of mixed GPUs index 0 can be two different cards. Hence the GPU where
    NVML shows this process's CUDA context, where there is exactly one (exact in any order; not where a container
    hides the host's process ids); else the index, exact under PCI_BUS_ID, the same model on a host of one GPU model
    (identical cards keep bus order in practice), and named a guess otherwise."""
    if not gpu.isdigit():
        return nvml.nvmlDeviceGetHandleByUUID(gpu.encode()), f"GPU {gpu}"
    try:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        own = [h for h in handles if any(p.pid == os.getpid() for p in nvml.nvmlDeviceGetComputeRunningProcesses(h))]
        models = sorted({_text(nvml.nvmlDeviceGetName(h)) for h in handles})
    except Exception:  # an older driver or pynvml without these queries: the index, as CUDA_VISIBLE_DEVICES gives it
        own, models = [], []
    if len(own) == 1:
        return own[0], f"GPU {nvml.nvmlDeviceGetIndex(own[0])}, where this process's CUDA context is"
    if len(models) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        return nvml.nvmlDeviceGetHandleByIndex(int(gpu)), (
            f"GPU {gpu} in NVML's PCI bus order, which may be another card than CUDA's {gpu} (fastest first) on this "
            f"host of {', '.join(models)}; set CUDA_DEVICE_ORDER=PCI_BUS_ID or CUDA_VISIBLE_DEVICES=GPU-<uuid>")
    return nvml.nvmlDeviceGetHandleByIndex(int(gpu)), f"GPU {gpu}"


PROBE_S = 1.0  # longest the meter watches its counter at open for how often it updates
POLL_S = 1e-3  # between two reads while watching


def counter_refresh_s(read: Callable[[], int], clock: Callable[[], float] = time.perf_counter,
                      sleep: Callable[[float], None] = time.sleep) -> float:
    """Seconds between the counter's updates, watched: the longest whole interval between its changes (up to three
    changes, polled every POLL_S), or PROBE_S where it changed under twice in that long (an update period over half
    of it). Why watch: NVML documents no period (20-100 ms is seen, 10 ms on some cards) and a window spans at least
    20 of them, so assuming the slow end refused an --energy-window under 4 s on every GPU and passed one with edges
    over 10 % where the counter is slower still."""
    changes: list[float] = []
    last, start = read(), clock()
    while len(changes) < 3 and clock() - start < PROBE_S:
        sleep(POLL_S)
        value = read()
        if value != last:
            changes.append(clock())
            last = value
    return max((b - a for a, b in zip(changes, changes[1:])), default=PROBE_S)


class NvmlMeter(Meter):
    """nvmlDeviceGetTotalEnergyConsumption (mJ since driver load) of one GPU: the whole board's energy, with the
    counter's update period watched at open (counter_refresh_s) as its refresh_s."""

    name = "nvml"

    def __init__(self, gpu: str | None = None) -> None:
        gpu = visible_gpu() if gpu is None else gpu
        self.nvml = _nvml()
        try:
            self.handle, which = _handle(self.nvml, gpu)
            self.scope = f"GPU board energy counter, {_text(self.nvml.nvmlDeviceGetName(self.handle))} ({which})"
            self.start_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.refresh_s = counter_refresh_s(lambda: self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as exc:
            self.nvml.nvmlShutdown()
            raise MeterUnavailable(f"NVML total-energy counter not readable on GPU {gpu} ({exc})") from None

    def describe(self) -> str:
        """With the refresh watched at open: it differs by card (10-100 ms, or slower), sets the shortest window the
        energy figures stand on (MIN_REFRESHES of it), and the report is where a reader judges --energy-window."""
        return f"{super().describe()}, counter refresh {self.refresh_s * 1e3:.3g} ms as watched at open"

    def energy_j(self) -> float:
        """Why MeterUnavailable for any failure: a GPU lost mid-run (fallen off the bus, reset) raised NVMLError out
        of the meter, and the row failed, its latency lost with its energy."""
        try:
            return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.start_mj) / 1e3
        except Exception as exc:  # pynvml.NVMLError subclasses
            raise MeterUnavailable(f"NVML energy counter no longer readable ({exc})") from None

    def close(self) -> None:
        self.nvml.nvmlShutdown()


CLOCK_REASONS = (("GpuIdle", "idle"), ("ApplicationsClocksSetting", "application clocks setting"),
                 ("SwPowerCap", "power cap"), ("HwSlowdown", "HW slowdown"), ("SyncBoost", "sync boost"),
                 ("SwThermalSlowdown", "SW thermal slowdown"), ("HwThermalSlowdown", "HW thermal slowdown"),
                 ("HwPowerBrakeSlowdown", "HW power brake slowdown"), ("DisplayClockSetting", "display clock setting"))
"""NVML's clock event reasons (pynvml's nvmlClocksEventReason<X> bits, nvmlClocksThrottleReason<X> in an older one)
and their names in the report."""
THROTTLING = ("power cap", "HW slowdown", "SW thermal slowdown", "HW thermal slowdown", "HW power brake slowdown")
"""The reasons that hold the clocks down against the load (the power limit, heat, the board's slowdown signal): they
flag a GPU row throttled?. The others are recorded, not flagged: idle is a GPU between calls, where the snapshots
are taken; application clocks, the display clock and sync boost are settings someone chose, like a power mode."""


CLOCKS_PURPOSE = "NVIDIA GPU clocks and throttle reasons"


def gpu_facts(gpu: str | None = None) -> tuple[str, dict[str, object] | str]:
    """The visible GPU's name (`gpu_name`'s form) and its name and max SM clock in MHz, or `unavailable (<why>)`,
    read as a run starts in one NVML session: the `system` block's GPU facts once, not an nvmlInit and a name read
    per fact. The clocks only once its current clocks have been read (`gpu_clocks_now`'s queries): a driver without
    them (a Jetson's) says so here, as the run starts, not at every row, and still names its GPU."""
    gpu = visible_gpu() if gpu is None else gpu
    try:
        nvml = _nvml(CLOCKS_PURPOSE)
    except MeterUnavailable as exc:
        return f"unavailable: {exc}", f"unavailable ({exc})"
    try:
        try:
            handle = _handle(nvml, gpu)[0]
            name = _text(nvml.nvmlDeviceGetName(handle))
        except Exception as exc:  # pynvml.NVMLError subclasses
            return f"unavailable: NVML has no GPU {gpu} ({exc})", f"unavailable (NVML has no GPU {gpu} ({exc}))"
        try:
            _clocks_now(nvml, handle)
            top = int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM))
            return name, {"device": name, "max_sm_mhz": top}
        except Exception as exc:  # a query this driver lacks
            return name, f"unavailable (NVML clocks not readable on GPU {gpu} ({exc}))"
    finally:
        nvml.nvmlShutdown()


def _clocks_now(nvml: ModuleType, handle: object) -> dict[str, object]:
    """`gpu_clocks_now`'s reading in an open NVML session."""
    reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or (
        nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
    bits = reasons(handle)
    sm = nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM) / nvml.nvmlDeviceGetMaxClockInfo(
        handle, nvml.NVML_CLOCK_SM)
    return {"gpu_sm_clock": sm, "gpu_reasons": [name for attr, name in CLOCK_REASONS if bits & _bit(nvml, attr)]}


def gpu_clocks_now(gpu: str | None = None) -> dict[str, object]:
    """The visible GPU's SM clock as a fraction of its max and the clock event reasons set now (CLOCK_REASONS'
    names), for bench's clock snapshots, never inside a timed call. The reasons, not the clock, say whether it was
    throttled: a snapshot comes as the timed calls end, and a GPU between calls clocks down for being idle."""
    return _read_gpu(gpu, _clocks_now)


def _bit(nvml: ModuleType, reason: str) -> int:
    """A CLOCK_REASONS bit as this pynvml spells it; 0 where it has none (an older one lacks the newer reasons)."""
    new = getattr(nvml, f"nvmlClocksEventReason{reason}", None)
    return int(new if new is not None else getattr(nvml, f"nvmlClocksThrottleReason{reason}", 0))


def _read_gpu(gpu: str | None, read: Callable[[ModuleType, object], dict[str, object]]) -> dict[str, object]:
    """`read(pynvml, handle)` of the visible GPU, NVML initialised around it as `gpu_memory_mb` does (nothing held
    open between a run's snapshots), or MeterUnavailable saying why not (no nvidia-ml-py: the `[gpu]` extra's fix)."""
    gpu = visible_gpu() if gpu is None else gpu
    nvml = _nvml(CLOCKS_PURPOSE)
    try:
        return read(nvml, _handle(nvml, gpu)[0])
    except Exception as exc:  # pynvml.NVMLError subclasses; a query this driver lacks
        raise MeterUnavailable(f"NVML clocks not readable on GPU {gpu} ({exc})") from None
    finally:
        nvml.nvmlShutdown()


def gpu_name(gpu: str | None = None) -> str:
    """The NVML device name of the visible GPU, or `unavailable: <why>` (no nvidia-ml-py, no driver, no GPU)."""
    gpu = visible_gpu() if gpu is None else gpu
    try:
        nvml = _nvml()
    except MeterUnavailable as exc:
        return f"unavailable: {exc}"
    try:
        return _text(nvml.nvmlDeviceGetName(_handle(nvml, gpu)[0]))
    except Exception as exc:
        return f"unavailable: NVML has no GPU {gpu} ({exc})"
    finally:
        nvml.nvmlShutdown()


def gpu_memory_mb(gpu: str | None = None, pid: int | None = None) -> float | str:
    """GPU memory this process holds on the visible GPU in MB (10^6 bytes, as the report's other MB), else
    `unavailable: <why>`."""
    gpu = visible_gpu() if gpu is None else gpu
    pid = os.getpid() if pid is None else pid
    try:
        nvml = _nvml()
    except MeterUnavailable as exc:
        return f"unavailable: {exc}"
    try:
        handle = _handle(nvml, gpu)[0]
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return proc.usedGpuMemory / MB
        return "unavailable: this process holds no NVML-visible GPU memory"
    except Exception as exc:
        return f"unavailable: NVML process memory query failed ({exc})"
    finally:
        nvml.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
