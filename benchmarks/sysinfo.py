"""What the numbers were measured on: hardware, OS, power mode, CPU clocks and temperatures, package versions, the
exact command.

Everything here is best effort and never fails a benchmark: a field that cannot be read says so.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from edge_msa.host import cpu_model

from .meters.base import MeterUnavailable
from .meters.nvml import THROTTLING, gpu_clocks_now, gpu_facts, gpu_name
from .target import ok_rows_on_gpu

SYSFS_ROOT = Path("/")
CPU_DIR, THERMAL_DIR, DEVFREQ_DIR = "sys/devices/system/cpu", "sys/class/thermal", "sys/class/devfreq"
DEVICE_TREE = "proc/device-tree"
BOARDS = (("jetson", "nvidia,tegra", "jetson"), ("raspberry-pi", "raspberrypi,", "raspberry pi"))
"""Board families: (name, the prefix of one of its device tree's `compatible` strings, a word of its model string).
`compatible` first: every Jetson lists its SoC as nvidia,tegra<N> (tegra210 Nano, tegra186 TX2, tegra194 Xavier,
tegra234 Orin) whatever its model says (a TX2 on older L4T says 'quill', a third-party carrier board its own name),
and every Pi its model as raspberrypi,<N>-model-<x>; the model word only where `compatible` names neither."""
# a Jetson GPU's devfreq device name holds one: 17000000.ga10b or .gpu (Orin), .gv11b (Xavier), .gp10b (TX2)
GPU_DEVFREQ = ("gpu", "ga10b", "gv11b", "gp10b")
THROTTLED_BELOW = 0.90
"""A row is flagged "throttled?" when, at the end of its timed calls, even its fastest CPU ran below this fraction of
its max clock, or, on a row that ran on the GPU, the GPU's devfreq clock did (a CPU-only row leaves the GPU idle, and
its governor clocks it down: recorded, not flagged). A governor under sustained load holds a busy CPU at its max, and
the clock steps are a few percent of it (Jetson Orin: 76.8 MHz of 1510 MHz; Raspberry Pi 4 and 5: 100 MHz), so 90 %
is two steps or more down: a thermal or power cap, not a step of the governor's. The fastest CPU, not the median: a
one-thread run leaves the other cores idle, and schedutil / ondemand clock idle cores down, which would flag every
row of a 6-core board; a cap lowers the busy core too (a Jetson's or a Pi's cores share one cluster clock). A sampled
clock can still catch a busy core between calls, hence the question mark, and the advice line beside it."""
FIRMWARE_FLAGS = ("under-voltage", "ARM frequency capped", "throttled", "soft temperature limit")
"""A Raspberry Pi firmware's throttle bits 0-3 in `vcgencmd get_throttled` ('throttled=0x50005'), set while it holds
the clocks down now, which scaling_cur_freq does not show reliably; bits 16-19 (FIRMWARE_SINCE_BOOT) are the same four
"has occurred since boot"."""
FIRMWARE_SINCE_BOOT = 16
VCGENCMD_TIMEOUT_S = 2.0  # it answers in milliseconds; a hung firmware mailbox must not hang the bench
NOT_NVML = "not applicable"  # how `not_nvml`'s reason starts: `gpu_named` tells it from a GPU's name by it
PERFORMANCE = "performance"  # the governor that holds every clock at its max (thermal caps aside) between calls too
PACKAGES = ("edge-msa", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "nvidia-ml-py")


def _device_tree(root: Path, name: str) -> list[str]:
    """A device-tree property's strings (the kernel writes them NUL-separated and NUL-terminated); none where it has
    none (x86)."""
    try:
        text = (root / DEVICE_TREE / name).read_bytes().decode(errors="replace")
    except OSError:
        return []
    return [part.strip() for part in text.split("\x00") if part.strip()]


def board_model(root: Path = SYSFS_ROOT) -> str | None:
    """The board's name from the device tree ('NVIDIA Jetson Orin Nano Developer Kit', 'Raspberry Pi 4 Model B Rev
    1.4'); None where there is none (x86)."""
    return next(iter(_device_tree(root, "model")), None)


def board_family(root: Path = SYSFS_ROOT) -> str | None:
    """'jetson', 'raspberry-pi' (BOARDS) or None: what decides the advice (`jetson_clocks` or `cpupower`) and
    whether the board's model is recorded as a Jetson's."""
    compatible, model = _device_tree(root, "compatible"), (board_model(root) or "").lower()
    for family, prefix, word in BOARDS:
        if any(c.startswith(prefix) for c in compatible) or word in model:
            return family
    return None


def nvpmodel_mode() -> str | None:
    """The Jetson power mode (`nvpmodel -q`, e.g. 'MAXN'), which changes latency by 2-3x. Called only on a detected
    Jetson (`board_family`), so one rule says what a board is: not an `nvpmodel` somewhere on PATH."""
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


def firmware_throttled(vcgencmd: str | None) -> int | None:
    """A Raspberry Pi firmware's throttle bits from `vcgencmd get_throttled` (FIRMWARE_FLAGS), or None where there is
    no vcgencmd (not a Pi) or it fails (a user outside the `video` group gets 'VCHI initialization failed')."""
    if not vcgencmd:
        return None
    try:
        out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True,
                             timeout=VCGENCMD_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.fullmatch(r"throttled=(0x[0-9a-fA-F]+)", out.strip())
    return int(found[1], 16) if found else None


def firmware_flags(bits: int, shift: int = 0) -> list[str]:
    """FIRMWARE_FLAGS set in `bits`: the "now" ones, or with shift=FIRMWARE_SINCE_BOOT the "since boot" ones."""
    return [flag for i, flag in enumerate(FIRMWARE_FLAGS) if bits >> (shift + i) & 1]


def firmware_system(bits: int | None) -> dict[str, Any]:
    """The `system` block's Pi firmware fields: the raw value and the flags set since boot, with one line of advice
    where there are any (under-voltage: the power supply; the others without it: heat); nothing without vcgencmd."""
    if bits is None:
        return {}
    since = firmware_flags(bits, FIRMWARE_SINCE_BOOT)
    fixes = (["check the power supply"] if "under-voltage" in since else []) + (
        ["cool the board"] if "soft temperature limit" in since or "under-voltage" not in since else [])
    return {"firmware_throttled": {"raw": f"{bits:#x}", "since_boot": since},
            "firmware_advice": f"the firmware reported {', '.join(since)} since boot: {' and '.join(fixes)}" if since
            else None}


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


def _read(path: Path) -> str | None:
    """A sysfs file's text, or None: a file that is missing or unreadable (a disabled thermal zone answers EINVAL,
    a root-only one EACCES) is one reading fewer, never an error."""
    try:
        return path.read_text(errors="replace").strip() or None
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _numbered(folder: Path, prefix: str) -> list[Path]:
    """folder/prefix<N> in numeric order (cpu10 after cpu9); cpufreq and cpuidle beside the CPUs are not CPUs."""
    try:
        found = [p for p in folder.iterdir() if re.fullmatch(rf"{prefix}\d+", p.name)]
    except OSError:
        return []
    return sorted(found, key=lambda p: int(p.name[len(prefix):]))


def cpu_clocks(root: Path = SYSFS_ROOT) -> dict[str, dict[str, Any]] | str:
    """Each CPU's frequency governor, max clock in kHz and whether its min is raised to that max (`jetson_clocks` pins
    the clocks so and leaves the governor as it was): {"cpu0": {"governor": "schedutil", "max_khz": 1510400,
    "pinned": false}}, or why there are none. The max is scaling_max_freq as the run starts (the power mode's cap: a
    15 W nvpmodel mode is not throttling), else the hardware's cpuinfo_max_freq; a thermal cap that comes later
    shows as a clock below it."""
    cpus = {}
    for cpu in _numbered(root / CPU_DIR, "cpu"):
        freq = cpu / "cpufreq"
        top = _read_int(freq / "scaling_max_freq") or _read_int(freq / "cpuinfo_max_freq")
        if top:
            cpus[cpu.name] = {"governor": _read(freq / "scaling_governor") or "unknown", "max_khz": top,
                              "pinned": (_read_int(freq / "scaling_min_freq") or 0) >= top}
    return cpus or f"unavailable (no cpufreq in sysfs: {root / CPU_DIR}/cpu*/cpufreq)"


def gpu_clock(root: Path = SYSFS_ROOT) -> dict[str, Any] | str:
    """A Jetson GPU's devfreq device (GPU_DEVFREQ names; the EMC, NVDLA, VIC, ... beside it are left out): its name,
    governor, max clock in Hz and whether its min is raised to it (`jetson_clocks`), like `cpu_clocks`: max_freq as
    the run starts (the power mode's cap), so a thermal cap that comes later shows as a clock below it; or why there
    is none. A desktop GPU's clocks and throttle reasons are NVML's (`gpu_facts`): here they read as unavailable."""
    try:
        found = sorted(p for p in (root / DEVFREQ_DIR).iterdir() if any(k in p.name for k in GPU_DEVFREQ))
    except OSError:
        found = []
    for dev in found:
        if top := _read_int(dev / "max_freq"):
            return {"device": dev.name, "governor": _read(dev / "governor") or "unknown", "max_hz": top,
                    "pinned": (_read_int(dev / "min_freq") or 0) >= top}
    return f"unavailable (no Jetson GPU in devfreq: {root / DEVFREQ_DIR}/*)"


def thermal_zones(root: Path = SYSFS_ROOT) -> dict[str, dict[str, Any]] | str:
    """Each readable thermal zone's type and first passive trip point in degrees C (where the kernel starts cooling
    it by lowering clocks; None where it has none), or why there are none. A disabled trip point reads -274000
    (THERMAL_TEMP_INVALID: x86 iwlwifi and x86_pkg_temp zones have them), so trips at or below 0 degrees C are none:
    taken at face value, every reading was over it."""
    zones = {}
    for zone in _numbered(root / THERMAL_DIR, "thermal_zone"):
        if _read_int(zone / "temp") is None:
            continue
        trips = [t / 1e3 for kind in zone.glob("trip_point_*_type") if _read(kind) == "passive"
                 and (t := _read_int(kind.with_name(kind.name.replace("_type", "_temp")))) is not None and t > 0]
        zones[zone.name] = {"type": _read(zone / "type") or zone.name, "passive_trip_c": min(trips, default=None)}
    return zones or f"unavailable (no thermal zones in sysfs: {root / THERMAL_DIR}/thermal_zone*)"


class Clocks:
    """The CPU clocks, a Jetson GPU's clock and the thermal zones under a sysfs `root`, and a desktop NVIDIA GPU's
    clocks through NVML: the static part (governors, max clocks, zones and their trip points) is read once, when the
    run starts, for the `system` block; `snapshot` reads the current clocks and temperatures, between rows (a few
    small file reads and NVML queries, never inside a timed call). A board that throttles under a sustained run, or
    a governor that clocks down between calls, moves latency more than most model changes, so a row says what its
    clocks were."""

    def __init__(self, root: str | os.PathLike = SYSFS_ROOT, nvml: bool | None = None) -> None:
        """`nvml`: read an NVIDIA GPU's name and clocks through NVML (`gpu_facts`, one session); by default only
        where `root` is this machine's, since NVML reads this machine's GPU, which is not the board of another root
        (a fixture); never on a detected Jetson or Pi (`not_nvml`)."""
        self.root = Path(root)
        self.family = board_family(self.root)
        self.cpus, self.zones = cpu_clocks(self.root), thermal_zones(self.root)
        self.gpu = gpu_clock(self.root)
        board = not_nvml(self.family)
        skip = board or (None if (self.root == SYSFS_ROOT if nvml is None else nvml)
                         else f"not read (the sysfs root {self.root} is not this machine's)")
        # the GPU's name from the clocks' NVML session (`gpu_facts`), or on a detected board why NVML is not read
        # there (`not_nvml`, one rule for the clocks and the name); None where only a fixture root skips NVML's
        # clocks: the `system` block's other facts (cpu, os) are this machine's, its GPU's name too (`system_info`)
        self.gpu_name: str | None
        self.nvidia: dict[str, object] | str
        self.gpu_name, self.nvidia = (board, skip) if skip else gpu_facts()
        self.vcgencmd = shutil.which("vcgencmd")  # a Raspberry Pi's: its firmware's throttle bits

    def snapshot(self) -> dict[str, Any]:
        """The slowest and fastest current CPU clock as a fraction of its max, the GPU's, the hottest zone (degrees C,
        type) and the zones at or over their passive trip point; only what sysfs has. On a Pi, the firmware's
        throttle bits (raw) and the flags set now."""
        snap: dict[str, Any] = {}
        if (bits := firmware_throttled(self.vcgencmd)) is not None:
            snap.update(firmware_throttled=f"{bits:#x}", firmware_now=firmware_flags(bits))
        if isinstance(self.cpus, dict):
            fractions = [cur / cpu["max_khz"] for name, cpu in self.cpus.items()
                         if (cur := _read_int(self.root / CPU_DIR / name / "cpufreq" / "scaling_cur_freq"))]
            if fractions:
                snap.update(cpu_freq_min=min(fractions), cpu_freq_max=max(fractions))
        if isinstance(self.gpu, dict) and (cur := _read_int(self.root / DEVFREQ_DIR / self.gpu["device"] / "cur_freq")):
            snap["gpu_freq"] = cur / self.gpu["max_hz"]
        if isinstance(self.nvidia, dict):
            with contextlib.suppress(MeterUnavailable):  # a GPU lost mid-run: one reading fewer, not a failed row
                snap.update(gpu_clocks_now())
        if isinstance(self.zones, dict):
            temps = {name: t / 1e3 for name in self.zones
                     if (t := _read_int(self.root / THERMAL_DIR / name / "temp")) is not None}
            if temps:
                hottest = max(temps, key=temps.__getitem__)
                trips = {name: self.zones[name]["passive_trip_c"] for name in temps}
                snap.update(hottest_c=temps[hottest], hottest_zone=self.zones[hottest]["type"],
                            at_passive_trip=[self.zones[n]["type"] for n, t in temps.items()
                                             if trips[n] is not None and t >= trips[n]])
        return snap


def not_nvml(family: str | None) -> str | None:
    """Why NVML is not read on a detected board ('not applicable (jetson: ...)'), or None off one: a Jetson's GPU is
    the SoC's (its clocks are devfreq's, `gpu_clock`; its NVML answers few queries) and a Pi has no NVIDIA GPU, so
    an NVML line there, most often "install the [gpu] extra", would only be noise on the boards bench is for."""
    return f"{NOT_NVML} ({family}: its GPU, if any, is not NVML-managed)" if family else None


def gpu_named(gpu: str) -> bool:
    """Whether the `system` block's `gpu` names a GPU, rather than saying why none was read: 'unavailable: <why>'
    (`gpu_name`) or, on a detected board, `not_nvml`'s reason. The device line and report.md's cpu line show a
    name only."""
    return not gpu.startswith(("unavailable", NOT_NVML))


def row_clocks(start: dict[str, Any], end: dict[str, Any], on_gpu: bool) -> dict[str, Any]:
    """A row's `clocks` (the snapshots before and after its timed calls) and its `throttled` flag, with why; nothing
    where sysfs has neither clocks nor zones (the `system` block says so once, not every row)."""
    if not start and not end:
        return {}
    why = throttled(end, on_gpu)
    return {"clocks": {"start": start, "end": end}, "throttled": why is not None,
            **({"throttled_why": why} if why else {})}


def throttled(end: dict[str, Any], on_gpu: bool) -> str | None:
    """Why a row's end snapshot looks throttled (THROTTLED_BELOW; the GPU's clock or NVML's THROTTLING reasons only
    where the row ran on it; a zone at its passive trip point; a Pi firmware's "now" flag), or None."""
    why = [f"fastest CPU clock at {end['cpu_freq_max']:.0%} of max"] if end.get(
        "cpu_freq_max", 1.0) < THROTTLED_BELOW else []
    gpu = end.get("gpu_freq", 1.0) if on_gpu else 1.0
    why += [f"GPU clock at {gpu:.0%} of max"] if gpu < THROTTLED_BELOW else []
    held = [reason for reason in end.get("gpu_reasons", []) if reason in THROTTLING] if on_gpu else []
    why += [f"NVML reports the GPU clocks held down by {', '.join(held)}"] if held else []
    why += [f"{zone} at or over its passive trip point" for zone in end.get("at_passive_trip", [])]
    why += [f"firmware reports {', '.join(now)} now (vcgencmd get_throttled {end['firmware_throttled']})"] if (
        now := end.get("firmware_now")) else []
    return "; ".join(why) or None


def varying_governors(cpus: dict[str, dict[str, Any]] | str, gpu: dict[str, Any] | str | None = None) -> list[str]:
    """The governors other than `performance` that set clocks which are not pinned (none where sysfs had no cpufreq),
    the GPU's as '<governor> on the GPU' where `gpu` is given (pass it only for a run with rows on the GPU: a
    CPU-only run leaves it idle): under them a clock varies between calls, so the figures depend on the governor as
    well as the board. `jetson_clocks` pins the GPU as well as the CPUs; pinning the CPUs alone leaves its
    nvhost_podgov scaling the GPU with its load."""
    names = _varying_cpu_governors(cpus)
    if isinstance(gpu, dict) and not gpu["pinned"] and gpu["governor"] != PERFORMANCE:
        names.append(f"{gpu['governor']} on the GPU")
    return names


def _varying_cpu_governors(cpus: dict[str, dict[str, Any]] | str) -> list[str]:
    return sorted({cpu["governor"] for cpu in cpus.values() if not cpu["pinned"]} - {PERFORMANCE}) if isinstance(
        cpus, dict) else []


def governor_advice(cpus: dict[str, dict[str, Any]] | str, jetson: bool,
                    gpu: dict[str, Any] | str | None = None) -> str | None:
    """One line of advice where a governor other than `performance` sets clocks that are not pinned (the GPU's where
    it is given: `varying_governors`), or None. It says what varies: idle cores clocking down is a CPU governor's
    doing, not the GPU's."""
    others = varying_governors(cpus, gpu)
    if not others:
        return None
    pin = "`sudo jetson_clocks`" if jetson else f"`sudo cpupower frequency-set -g {PERFORMANCE}`"
    varies = ("clocks vary between calls (and idle cores clock down); for steady numbers pin them"
              if _varying_cpu_governors(cpus) else "the GPU clock varies between calls; for steady numbers pin it")
    return f"the governor is {', '.join(others)}: {varies} with {pin}"


def system_info(clocks: Clocks, argv: list[str] | None = None, rows: Iterable[Mapping[str, Any]] = ()) -> dict:
    """The `system` block of report.json; `clocks` read as the run started, `rows` the report's: where a successful
    one ran on the GPU (`ok_rows_on_gpu`, the rule report.md and --compare read the rows by), the GPU's governor
    counts in the advice."""
    board, family = board_model(clocks.root), clocks.family  # the board whose sysfs was read
    jetson = board if family == "jetson" else None
    gpu = clocks.gpu_name or gpu_name()  # read once: with the NVML clocks where read, on a board never (`Clocks`)
    cpu = cpu_model()
    return {
        "device": board or (f"{cpu} + {gpu}" if gpu_named(gpu) else cpu),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "board_family": family,
        "jetson_model": jetson,
        "power_mode": nvpmodel_mode() if family == "jetson" else None,  # the board detection decides, not PATH
        "cpufreq": clocks.cpus,
        "gpu_clock": clocks.gpu,
        "nvml_clocks": clocks.nvidia,
        "thermal": clocks.zones,
        "clock_advice": governor_advice(clocks.cpus, family == "jetson", clocks.gpu if ok_rows_on_gpu(rows) else None),
        **firmware_system(firmware_throttled(clocks.vcgencmd)),  # read as the run ends: since boot covers the run
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
