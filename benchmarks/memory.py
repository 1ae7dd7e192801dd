"""Resident memory: the benchmark process's peak per bundle (Linux VmHWM, reset through /proc/self/clear_refs), and
a fresh cold-start process's whole peak (`own_peak_rss_mb`).

Every figure is in MB of 10^6 bytes, the unit of the report's "bundle MB", so one table never mixes MB and MiB:
/proc's "kB" are KiB (1024 bytes), and dividing them by 1024 gave MiB, numbers 4.6 % below the MB they were called."""
from __future__ import annotations

import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
MB = 10**6  # bytes: the bench report's MB, as in "bundle MB"


def reset_peak() -> bool:
    """Restart the peak-RSS watermark (Linux >= 4.0); False where it cannot, so peaks are process-wide."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def status_bytes(status: str, field: str) -> int | None:
    """Bytes of a memory field (VmRSS, VmHWM) of a /proc/<pid>/status text, None if it has none: the one reader
    for this module and the REST load generator, in bytes so that each names its own unit (MB here, MiB there)."""
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # the kernel's "kB" are KiB
    return None


def _status_mb(field: str) -> float | None:
    try:
        size = status_bytes(STATUS.read_text(), field)
    except OSError:
        return None
    return None if size is None else size / MB


def peak_rss_mb() -> float | None:
    """Peak RSS in MB since the last reset (VmHWM), else the process peak from getrusage; None if unknown."""
    peak = own_peak_rss_mb()
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB on Linux
    return (peak if sys.platform == "darwin" else peak * 1024) / MB


def own_peak_rss_mb() -> float | None:
    """This process's peak RSS in MB from /proc (VmHWM, its own memory's high-water mark), None without /proc. The
    figure of a fresh cold-start process: getrusage's ru_maxrss carries the parent's peak across fork and exec on
    Linux, so every cold-start process of the main job, launched from the pipeline that had trained, read 3.7 GB."""
    return _status_mb("VmHWM")
