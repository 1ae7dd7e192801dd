"""Resident memory: the process peak per bundle (Linux VmHWM, reset through /proc/self/clear_refs) and
what loading a bundle added (VmRSS after minus before), which excludes the harness and evaluation data."""
from __future__ import annotations

import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Restart the peak-RSS watermark (Linux >= 4.0); False where it cannot, so peaks are process-wide."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    """Resident memory now (VmRSS); None where /proc is missing."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """Peak RSS in MB since the last reset (VmHWM), else the process peak from getrusage; None if unknown."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
