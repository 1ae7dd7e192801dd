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


def visible_gpu() -> str:
    """The GPU this process's CUDA work runs on, as NVML should look it up: the first entry of CUDA_VISIBLE_DEVICES
    (an index, or a GPU-/MIG- UUID), else "0". NVML ignores that variable, so index 0 alone metered the wrong card
    on a multi-GPU host where the benchmark was pinned to another one."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return first or "0"


def _handle(nvml: ModuleType, gpu: str) -> object:
    """NVML's handle of `gpu` (visible_gpu's form: an index or a UUID)."""
    if gpu.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(gpu))
    return nvml.nvmlDeviceGetHandleByUUID(gpu.encode())


class NvmlMeter(Meter):
    """nvmlDeviceGetTotalEnergyConsumption (mJ since driver load) of one GPU: the whole board's energy."""

    name = "nvml"

    def __init__(self, gpu: str | None = None) -> None:
        gpu = visible_gpu() if gpu is None else gpu
        self.nvml = _nvml()
        try:
            self.handle = _handle(self.nvml, gpu)
            self.scope = f"GPU board energy counter, {_text(self.nvml.nvmlDeviceGetName(self.handle))} (GPU {gpu})"
            self.start_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as exc:
            self.nvml.nvmlShutdown()
            raise MeterUnavailable(f"NVML total-energy counter not readable on GPU {gpu} ({exc})") from None

    def energy_j(self) -> float:
        return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.start_mj) / 1e3

    def close(self) -> None:
        self.nvml.nvmlShutdown()


def gpu_name(gpu: str | None = None) -> str:
    """The NVML device name of the visible GPU, or `unavailable: <why>` (no nvidia-ml-py, no driver, no GPU)."""
    gpu = visible_gpu() if gpu is None else gpu
    try:
        nvml = _nvml()
    except MeterUnavailable as exc:
        return f"unavailable: {exc}"
    try:
        return _text(nvml.nvmlDeviceGetName(_handle(nvml, gpu)))
    except Exception as exc:
        return f"unavailable: NVML has no GPU {gpu} ({exc})"
    finally:
        nvml.nvmlShutdown()


def gpu_memory_mb(gpu: str | None = None, pid: int | None = None) -> float | str:
    """GPU memory this process holds on the visible GPU (MB), else `unavailable: <why>`."""
    gpu = visible_gpu() if gpu is None else gpu
    pid = os.getpid() if pid is None else pid
    try:
        nvml = _nvml()
    except MeterUnavailable as exc:
        return f"unavailable: {exc}"
    try:
        handle = _handle(nvml, gpu)
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
