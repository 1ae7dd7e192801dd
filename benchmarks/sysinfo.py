"""What the numbers were measured on: hardware, OS, power mode, package versions, the exact command.

Everything here is best effort and never fails a benchmark: a field that cannot be read says so.
"""
from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from edge_msa.host import cpu_model

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
PACKAGES = ("edge-msa", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "nvidia-ml-py")


def jetson_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """'NVIDIA Jetson Orin Nano Developer Kit' etc. from the device tree; None elsewhere."""
    try:
        model = path.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
    except OSError:
        return None
    return model or None


def nvpmodel_mode() -> str | None:
    """The Jetson power mode (`nvpmodel -q`, e.g. 'MAXN'), which changes latency by 2-3x."""
    exe = shutil.which("nvpmodel")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "Power Mode" in line:
            return line.split(":", 1)[-1].strip()
    return out.strip().splitlines()[0] if out.strip() else None


def versions() -> dict[str, str]:
    """Python + installed package versions (metadata only: nothing heavy is imported)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "tensorrt" not in found:  # JetPack installs the bindings without pip metadata
        try:
            import tensorrt  # type: ignore[import-not-found]
            found["tensorrt"] = str(tensorrt.__version__)
        except (ImportError, OSError):
            pass
    return found


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except (ImportError, OSError):
        return []
    return list(onnxruntime.get_available_providers())


def system_info(argv: list[str] | None = None) -> dict:
    """The `system` block of report.json."""
    from .meters.nvml import gpu_name

    jetson = jetson_model()
    gpu = gpu_name()
    cpu = cpu_model()
    return {
        "device": jetson or (cpu if gpu.startswith("unavailable") else f"{cpu} + {gpu}"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "jetson_model": jetson,
        "power_mode": nvpmodel_mode(),
        "os": platform.platform(),
        "versions": versions(),
        "onnxruntime_providers": onnxruntime_providers(),
        "command": command_line(sys.argv if argv is None else argv),
    }


def command_line(argv: list[str]) -> str:
    """The command as a user would retype it: `python -m edge_msa bench ...` and the console script's full path
    both read `edge-msa bench ...`, so two reports' commands compare as text."""
    if argv and Path(argv[0]).name in ("edge-msa", "__main__.py"):
        argv = ["edge-msa", *argv[1:]]
    return shlex.join(argv)
