"""NVIDIA GPU energy from NVML's total-energy counter (Volta+ data-centre and desktop GPUs).

pynvml comes from the `nvidia-ml-py` package and is imported only here, only when asked. On Jetson
NVML initialises but power queries return NOT_SUPPORTED: that becomes MeterUnavailable so the
selector falls through to the INA rails (tegrastats).
"""
from __future__ import annotations

import os
from types import ModuleType

from edge_msa.errors import MissingDependencyError, require

from .base import Meter, MeterUnavailable


def _nvml() -> ModuleType:
    try:
        pynvml = require("pynvml", "NVML energy and GPU memory readings", "pip install nvidia-ml-py")
    except MissingDependencyError as exc:
        raise MeterUnavailable(str(exc)) from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError subclasses; no driver / no GPU
        raise MeterUnavailable(f"NVML did not initialise ({exc})") from None
    return pynvml


class NvmlMeter(Meter):
    """nvmlDeviceGetTotalEnergyConsumption (mJ since driver load) of one GPU: the whole board's energy."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        self.nvml = _nvml()
        try:
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            self.scope = f"GPU board energy counter, {_text(self.nvml.nvmlDeviceGetName(self.handle))}"
            self.start_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:
            self.nvml.nvmlShutdown()
            raise MeterUnavailable(f"NVML total-energy counter not readable on GPU {index} ({exc})") from None

    def energy_j(self) -> float:
        return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.start_mj) / 1e3

    def close(self) -> None:
        self.nvml.nvmlShutdown()


def gpu_name(index: int = 0) -> str:
    """The NVML device name, or `unavailable: <why>` (no nvidia-ml-py, no driver, no GPU)."""
    try:
        nvml = _nvml()
    except MeterUnavailable as exc:
        return f"unavailable: {exc}"
    try:
        return _text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(index)))
    except Exception as exc:
        return f"unavailable: NVML has no GPU {index} ({exc})"
    finally:
        nvml.nvmlShutdown()


def gpu_memory_mb(index: int = 0, pid: int | None = None) -> float | str:
    """GPU memory this process holds (MB), else `unavailable: <why>`."""
    pid = os.getpid() if pid is None else pid
    try:
        nvml = _nvml()
    except MeterUnavailable as exc:
        return f"unavailable: {exc}"
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return proc.usedGpuMemory / 2**20
        return "unavailable: this process holds no NVML-visible GPU memory"
    except Exception as exc:
        return f"unavailable: NVML process memory query failed ({exc})"
    finally:
        nvml.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
