"""The machine a model was trained on, recorded beside its metrics.

Why: the same seed, code and data gave fd_cmdie teachers that differ in the third digit between two sessions on
what may have been different CPUs (torch picks its kernels, and so the float rounding, by the CPU's vector
extensions). Recording the CPU and torch's kernel level lets a reader tell a host difference from a code change.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/'Model'), else platform."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_host() -> dict[str, Any]:
    """CPU model, torch's CPU kernel level (e.g. 'AVX2', 'AVX512'), torch version and thread count."""
    import torch

    return {"cpu": cpu_model(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
