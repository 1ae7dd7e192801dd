"""Pick the energy meter that covers the hardware the model runs on, or say why there is none."""
from __future__ import annotations

from edge_msa.errors import InputError
from edge_msa.spec import suggest

from .base import Meter, MeterUnavailable

METERS = ("auto", "nvml", "tegrastats", "rapl", "none")


def _open(name: str) -> Meter:
    if name == "nvml":
        from .nvml import NvmlMeter
        return NvmlMeter()
    if name == "tegrastats":
        from .tegrastats import TegrastatsMeter
        return TegrastatsMeter()
    from .rapl import RaplMeter
    return RaplMeter()


def open_meter(name: str = "auto", on_gpu: bool = False) -> Meter | str:
    """An open Meter, or `unavailable: <why>` naming every meter tried and its reason.

    auto: GPU work -> NVML (whole GPU board), then Jetson INA rails (NVML is NOT_SUPPORTED there);
    CPU work -> Jetson INA rails, then RAPL. NVML is skipped for CPU work: it would miss the CPU.
    """
    if name not in METERS:
        raise InputError(f"unknown meter '{name}'{suggest(name, METERS)}")
    if name == "none":
        return "unavailable: energy metering turned off (--meter none)"
    order = [name] if name != "auto" else (["nvml", "tegrastats"] if on_gpu else ["tegrastats", "rapl"])
    reasons = []
    for candidate in order:
        try:
            return _open(candidate)
        except MeterUnavailable as exc:
            reasons.append(f"{candidate}: {exc}")
    return "unavailable: " + "; ".join(reasons)
