"""Pick the energy meter that covers the hardware the model runs on, or say why there is none."""
from __future__ import annotations

from edge_msa.errors import InputError
from edge_msa.spec import suggest

from .base import Meter, MeterUnavailable

METERS = ("auto", "nvml", "tegrastats", "ina3221", "rapl", "none")
BOARD_METERS = {"jetson": ("tegrastats", "ina3221"), "raspberry-pi": ()}
"""auto's meters on a board `sysinfo.board_family` detected, for CPU and GPU work alike: a Jetson's INA rails,
which cover the whole module, GPU included (its SoC GPU answers no NVML energy query, and RAPL is x86's), through
tegrastats, else from the INA3221 sysfs files (hwmon, or JetPack 4's ina3221x IIO) where tegrastats is missing (a
container, a minimal image); a Raspberry Pi has none (NO_BOARD_METER says so)."""
NO_BOARD_METER = {"raspberry-pi": "a Raspberry Pi has no on-board meter of its input power (no INA rails as on a "
                  "Jetson, no RAPL as on x86; a Pi 5's PMIC reads some rails, not the 5 V input's current): measure "
                  "it with an external USB power meter, or hide this line with --meter none"}


def _open(name: str, family: str | None) -> Meter:
    if name == "nvml":
        from .nvml import NvmlMeter
        return NvmlMeter()
    if name == "tegrastats":
        from .tegrastats import TegrastatsMeter
        return TegrastatsMeter(family=family)
    if name == "ina3221":
        from .ina3221 import Ina3221Meter
        return Ina3221Meter()
    from .rapl import RaplMeter
    return RaplMeter()


def _auto(on_gpu: bool, family: str | None) -> tuple[str, ...]:
    """The meters auto tries, in order: BOARD_METERS on a detected board; else GPU work -> NVML (whole GPU board),
    then a Jetson's rails; CPU work -> a Jetson's rails, then RAPL (NVML would miss the CPU). A Jetson's rails stay
    in both because a container hides the device tree on a Jetson too (Docker masks /sys/firmware, so
    /proc/device-tree reads nothing)."""
    board = BOARD_METERS.get(family or "")
    if board is not None:
        return board
    return ("nvml", *BOARD_METERS["jetson"]) if on_gpu else (*BOARD_METERS["jetson"], "rapl")


def open_meter(name: str = "auto", on_gpu: bool = False, family: str | None = None) -> Meter | str:
    """An open Meter, or `unavailable: <why>` naming every meter tried and its reason. `family`: the board's, from
    `sysinfo.board_family` (the one rule of what a board is), which picks auto's meters (`_auto`) and words the
    reasons: a tegrastats missing on a Jetson is missing from its image, not a sign of another board."""
    if name not in METERS:
        raise InputError(f"unknown meter '{name}'{suggest(name, METERS)}")
    if name == "none":
        return "unavailable: energy metering turned off (--meter none)"
    order = [name] if name != "auto" else list(_auto(on_gpu, family))
    if not order:
        return f"unavailable: {NO_BOARD_METER[family or '']}"
    reasons = []
    for candidate in order:
        try:
            return _open(candidate, family)
        except MeterUnavailable as exc:
            reasons.append(f"{candidate}: {exc}")
    return "unavailable: " + "; ".join(reasons)
