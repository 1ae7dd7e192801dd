"""CPU clocks, a Jetson GPU's clock and thermal zones in the bench report, read from sysfs fixture trees
(tests/fixtures/sysfs): the static part in `system`, a snapshot before and after each row's timed calls, the
throttled? flag (on the GPU's clock only for rows that ran on it), the governor advice (the GPU's governor only for
rows that ran on it), a Raspberry Pi firmware's throttle bits (a fake `vcgencmd` on PATH), and one "unavailable" line
where sysfs has neither (a VM); --compare's warning about them."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_msa.benchmarks import run_bench, sysinfo
from edge_msa.benchmarks.compare import clock_warning
from edge_msa.benchmarks.report import render_markdown
from edge_msa.benchmarks.sysinfo import (CPU_DIR, DEVFREQ_DIR, DEVICE_TREE, THERMAL_DIR, THROTTLED_BELOW, Clocks,
                                         board_family, governor_advice, not_nvml, row_clocks, system_info)
from edge_msa.cli import main
from edge_msa.errors import GPU_FIX
from test_bench_sweep import FAST, _bundles, make_loader

SYSFS = Path(__file__).parent / "fixtures" / "sysfs"
JETSON, PI, VM = SYSFS / "orin_nano_throttled", SYSFS / "pi4_firmware_capped", SYSFS / "vm"
TX2 = SYSFS / "tx2_quill"  # a Jetson whose device-tree model is 'quill' (older L4T)
MAX_KHZ = 1510400
GPU, GPU_MAX_HZ, GPU_CUR = "17000000.ga10b", 624750000, 306000000 / 624750000  # the fixture's GPU: 49 % of max


def _set(root: Path, cur_khz: int, cpu_c: float) -> None:
    """Every CPU's current clock and cpu-thermal's temperature in a copy of the Jetson-like tree."""
    for cpu in range(6):
        (root / CPU_DIR / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq").write_text(f"{cur_khz}\n")
    (root / THERMAL_DIR / "thermal_zone0" / "temp").write_text(f"{int(cpu_c * 1e3)}\n")


def test_static_part_names_governors_max_clocks_and_first_passive_trips():
    clocks = Clocks(JETSON)
    assert list(clocks.cpus) == [f"cpu{i}" for i in range(6)]  # cpuidle/ beside them is not a CPU
    assert clocks.cpus["cpu0"] == {"governor": "schedutil", "max_khz": MAX_KHZ, "pinned": False}
    assert {z["type"]: z["passive_trip_c"] for z in clocks.zones.values()} == {
        "cpu-thermal": 99.0,  # the lowest passive trip, not the critical one listed first
        "gpu-thermal": 99.0, "soc0-thermal": None, "tj-thermal": None}  # -274000 is a disabled trip; no zone 4 temp
    assert clocks.gpu == {"device": GPU, "governor": "nvhost_podgov", "max_hz": GPU_MAX_HZ, "pinned": False}  # no vic
    assert Clocks(VM).gpu.startswith("unavailable (no Jetson GPU in devfreq: ")


def test_throttled_when_the_fastest_cpu_ends_below_the_threshold_or_a_zone_reaches_its_trip(tmp_path):
    root = Path(shutil.copytree(JETSON, tmp_path / "sysfs"))
    clocks = Clocks(root)
    _set(root, MAX_KHZ, 55.0)
    start = clocks.snapshot()
    assert start == {"cpu_freq_min": 1.0, "cpu_freq_max": 1.0, "gpu_freq": GPU_CUR, "hottest_c": 99.5,
                     "hottest_zone": "tj-thermal", "at_passive_trip": []}
    same = row_clocks(start, start, False)
    assert same["throttled"] is False and "throttled_why" not in same
    _set(root, int(MAX_KHZ * THROTTLED_BELOW) + 1, 60.0)  # just above the threshold: not flagged
    assert row_clocks(start, clocks.snapshot(), False)["throttled"] is False
    _set(root, 729600, 60.0)  # a one-thread run under schedutil: five idle cores clocked down, the busy one at max
    (root / CPU_DIR / "cpu3" / "cpufreq" / "scaling_cur_freq").write_text(f"{MAX_KHZ}\n")
    assert row_clocks(start, clocks.snapshot(), False)["throttled"] is False
    _set(root, 729600, 99.5)
    fields = row_clocks(start, clocks.snapshot(), False)
    assert fields["clocks"]["start"] == start and fields["throttled"] is True
    assert fields["clocks"]["end"]["cpu_freq_max"] == pytest.approx(729600 / MAX_KHZ)
    assert fields["throttled_why"] == "fastest CPU clock at 48% of max; cpu-thermal at or over its passive trip point"
    assert row_clocks({}, {}, False) == {}  # nothing in sysfs: no per-row fields


def test_advice_only_where_a_governor_lets_the_clocks_vary():
    cpus = Clocks(JETSON).cpus
    assert "`sudo jetson_clocks`" in governor_advice(cpus, jetson=True)
    assert governor_advice(cpus, jetson=False).startswith("the governor is schedutil: clocks vary between calls")
    assert "cpupower frequency-set -g performance" in governor_advice(cpus, jetson=False)
    pinned = {name: {**cpu, "pinned": True} for name, cpu in cpus.items()}  # jetson_clocks keeps the governor
    performance = {name: {**cpu, "governor": "performance"} for name, cpu in cpus.items()}
    assert governor_advice(pinned, jetson=True) is None and governor_advice(performance, jetson=False) is None
    assert governor_advice(cpus, True, Clocks(JETSON).gpu) == (
        "the governor is schedutil, nvhost_podgov on the GPU: clocks vary between calls (and idle cores clock down); "
        "for steady numbers pin them with `sudo jetson_clocks`")
    assert governor_advice("unavailable (no cpufreq in sysfs: /sys/devices/system/cpu/cpu*/cpufreq)", False) is None


def test_bench_on_a_throttled_jetson_like_board_flags_its_rows_and_advises(tmp_path, tiny_splits):
    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r", batches=(1, 2),
                    modalities=("all",), meter="none", loader=make_loader(tiny_splits.spec), sysfs_root=JETSON,
                    **FAST)
    report = json.loads((out / "report.json").read_text())
    system = report["system"]
    assert system["device"] == "NVIDIA Jetson Orin Nano Developer Kit" and len(system["cpufreq"]) == 6
    assert system["thermal"]["thermal_zone0"] == {"type": "cpu-thermal", "passive_trip_c": 99.0}
    assert "`sudo jetson_clocks`" in system["clock_advice"]
    for row in report["rows"]:
        assert set(row["clocks"]) == {"start", "end"} and row["clocks"]["end"]["hottest_c"] == 99.5
        assert row["throttled"] is True and row["throttled_why"].startswith("fastest CPU clock at 48% of max")
    md = (out / "report.md").read_text()
    assert md.count("| ok, throttled? |") == 4 and md.count("## Clocks and temperature") == 1
    assert "- CPU clocks: schedutil, max 1510 MHz: 6 CPUs" in md
    assert "- GPU clock: nvhost_podgov, max 625 MHz (17000000.ga10b)" in md and system["gpu_clock"]["device"] == GPU
    assert "cpu-thermal (passive trip 99 °C)" in md and "- advice: the governor is schedutil" in md
    assert md.count(f"below {THROTTLED_BELOW:.0%} of its max clock") == 1  # the rule, stated once
    assert ("| 2 | all | 48% / 48%, GPU 49% | 48% / 48%, GPU 49% | 99.5 °C (cpu-thermal) | 99.5 °C (cpu-thermal) | "
            "yes: fastest CPU") in md


def test_bench_on_a_vm_says_unavailable_once_not_per_row(tmp_path, tiny_splits):
    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r", batches=(1, 2),
                    meter="none", loader=make_loader(tiny_splits.spec), sysfs_root=VM, **FAST)
    report = json.loads((out / "report.json").read_text())
    assert report["system"]["cpufreq"].startswith("unavailable (no cpufreq in sysfs")
    assert report["system"]["thermal"].startswith("unavailable (no thermal zones in sysfs")
    assert report["system"]["clock_advice"] is None
    assert not [r for r in report["rows"] if {"clocks", "throttled"} & set(r)]
    md = (out / "report.md").read_text()
    assert md.count("no cpufreq in sysfs") == 1 and md.count("no thermal zones in sysfs") == 1
    assert report["system"]["gpu_clock"].startswith("unavailable (no Jetson GPU in devfreq")  # recorded, and not
    assert "GPU clock" not in md and "gpu:" not in md  # shown off a Jetson, nor NVML's on a CPU-only run: noise
    assert "throttled?" not in md and "advice" not in md


def test_edge_msa_bench_on_a_tiny_bundle_writes_the_clocks(token_bundle, tmp_path, monkeypatch):
    import edge_msa.benchmarks.sweep as sweep

    monkeypatch.setattr(sweep, "Clocks", lambda root: Clocks(JETSON))  # the CLI reads /; the board is the fixture
    assert main(["bench", str(token_bundle), "--out", str(tmp_path / "r"), "--meter", "none", "--quiet",
                 "--modalities", "text", "--min-time", "0", "--min-runs", "3", "--warmup", "0"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["system"]["cpufreq"]["cpu5"]["governor"] == "schedutil"
    row = report["rows"][0]
    assert row["status"] == "ok" and row["throttled"] is True and row["clocks"]["end"]["hottest_c"] == 99.5
    assert "| ok, throttled? |" in (tmp_path / "r" / "report.md").read_text()


def test_a_row_reads_the_clocks_just_before_and_just_after_its_timed_calls(tmp_path, tiny_splits, monkeypatch):
    """The board heats up during the timed calls (here: as they return); the row's start is the cool board before
    them, its end the hot one after them, and only the end decides the flag."""
    import edge_msa.benchmarks.sweep as sweep

    root = Path(shutil.copytree(JETSON, tmp_path / "sysfs"))
    _set(root, MAX_KHZ, 50.0)
    (root / THERMAL_DIR / "thermal_zone3" / "temp").write_text("50000\n")  # tj-thermal: the gpu's 71.25 is hottest
    timed = sweep.measure_side_by_side

    def heating(*args, **kwargs):
        try:
            return timed(*args, **kwargs)
        finally:
            _set(root, 729600, 99.5)

    monkeypatch.setattr(sweep, "measure_side_by_side", heating)
    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", modalities=("all",),
                    meter="none", loader=make_loader(tiny_splits.spec), sysfs_root=root, **FAST)
    row = json.loads((out / "report.json").read_text())["rows"][0]
    start, end = row["clocks"]["start"], row["clocks"]["end"]
    assert (start["cpu_freq_max"], start["hottest_zone"], start["at_passive_trip"]) == (1.0, "gpu-thermal", [])
    assert (end["cpu_freq_max"], end["hottest_zone"], end["hottest_c"]) == (729600 / MAX_KHZ, "cpu-thermal", 99.5)
    assert row["throttled"] is True
    assert "| 1 | all | 100% / 100%, GPU 49% | 48% / 48%, GPU 49% |" in (out / "report.md").read_text()


def test_compare_warns_once_per_report_whose_clocks_moved(tmp_path, tiny_splits, capsys):
    """A ratio between a throttled board and a cool one measures the clocks too; --compare printed it without a word.
    A report from before the clocks were recorded has no such fields: no warning, no error."""
    reports = {}
    for name, root in (("hot", JETSON), ("vm", VM)):
        (tmp_path / name).mkdir()
        out = run_bench(_bundles(tmp_path / name, "student"), data=tiny_splits, out=tmp_path / name / "r",
                        batches=(1, 2), modalities=("all",), meter="none", loader=make_loader(tiny_splits.spec),
                        sysfs_root=root, **FAST)
        reports[name] = out / "report.json"
    old = json.loads(reports["hot"].read_text())
    for key in ("cpufreq", "thermal", "clock_advice"):
        del old["system"][key]
    for row in old["rows"]:
        del row["clocks"], row["throttled"], row["throttled_why"]
    reports["old"] = tmp_path / "old.json"
    reports["old"].write_text(json.dumps(old))
    assert main(["bench", "--compare", str(reports["vm"]), str(reports["hot"]), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("Clocks of ") == 1 and (
        f"Clocks of B ({reports['hot']}): 2 of 2 successful rows flagged throttled?; governor schedutil (clocks not "
        "pinned); the ratios include their effect.") in printed
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert list(written["clock_warnings"]) == ["b"] and written["clock_warnings"]["b"].startswith("2 of 2")
    reports["old copy"] = shutil.copy(reports["old"], tmp_path / "old copy.json")  # the same file twice is refused
    for a, b in (("vm", "old"), ("old", "old copy")):
        assert main(["bench", "--compare", str(reports[a]), str(reports[b])]) == 0
        assert "Clocks of" not in capsys.readouterr().out


def test_the_gpu_clock_flags_only_the_rows_that_ran_on_the_gpu(tmp_path, tiny_splits):
    """A GPU capped at 49 % of its max on a cool board with its CPUs at their max: the TensorRT row is flagged, the
    CPU-only one records the GPU's clock (its governor clocks an idle GPU down) and is not flagged."""
    root = Path(shutil.copytree(JETSON, tmp_path / "sysfs"))
    _set(root, MAX_KHZ, 55.0)
    (root / THERMAL_DIR / "thermal_zone3" / "temp").write_text("50000\n")
    cpu_loader = make_loader(tiny_splits.spec)

    def loader(bundle, backend, threads):
        pred = cpu_loader(bundle, backend, threads)
        pred.manifest["backend"] = "tensorrt" if bundle.name == "student" else "onnxruntime"
        return pred

    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r",
                    modalities=("all",), meter="none", loader=loader, sysfs_root=root, **FAST)
    teacher, student = json.loads((out / "report.json").read_text())["rows"]
    assert teacher["clocks"]["end"]["gpu_freq"] == pytest.approx(GPU_CUR) and teacher["throttled"] is False
    assert student["throttled"] is True and student["throttled_why"] == "GPU clock at 49% of max"
    (root / DEVFREQ_DIR / GPU / "cur_freq").write_text(f"{GPU_MAX_HZ}\n")
    clocks = Clocks(root)
    assert row_clocks(clocks.snapshot(), clocks.snapshot(), True)["throttled"] is False


def test_an_unpinned_gpu_governor_is_advised_on_only_where_a_row_ran_on_the_gpu(tmp_path, tiny_splits):
    """CPUs pinned by hand but the GPU left on nvhost_podgov: the TensorRT run's clocks still vary, so it gets the
    jetson_clocks advice and --compare's warning; a CPU-only run leaves the GPU idle (its governor clocks it down):
    neither."""
    root = Path(shutil.copytree(JETSON, tmp_path / "sysfs"))
    for cpu in range(6):
        (root / CPU_DIR / f"cpu{cpu}" / "cpufreq" / "scaling_min_freq").write_text(f"{MAX_KHZ}\n")
    _set(root, MAX_KHZ, 55.0)  # a cool board: the CPU-only row is not flagged
    (root / THERMAL_DIR / "thermal_zone3" / "temp").write_text("50000\n")
    cpu_loader = make_loader(tiny_splits.spec)

    def on_gpu(bundle, backend, threads):
        pred = cpu_loader(bundle, backend, threads)
        pred.manifest["backend"] = "tensorrt"
        return pred

    reports = {}
    for name, loader in (("cpu", cpu_loader), ("gpu", on_gpu)):
        (tmp_path / name).mkdir()
        out = run_bench(_bundles(tmp_path / name, "student"), data=tiny_splits, out=tmp_path / name / "r",
                        modalities=("all",), meter="none", loader=loader, sysfs_root=root, **FAST)
        reports[name] = json.loads((out / "report.json").read_text())
    assert reports["cpu"]["system"]["clock_advice"] is None and clock_warning(reports["cpu"]) is None
    assert reports["gpu"]["system"]["clock_advice"] == (
        "the governor is nvhost_podgov on the GPU: the GPU clock varies between calls; for steady numbers pin it with "
        "`sudo jetson_clocks`")  # the CPUs are pinned: no idle cores clocking down
    assert clock_warning(reports["gpu"]).endswith("governor nvhost_podgov on the GPU (clocks not pinned)")
    (root / DEVFREQ_DIR / GPU / "min_freq").write_text(f"{GPU_MAX_HZ}\n")  # jetson_clocks pins the GPU too
    clocks = Clocks(root)
    assert governor_advice(clocks.cpus, True, clocks.gpu) is None


def test_a_gpu_bundle_whose_rows_all_failed_counts_as_no_gpu_run_in_the_advice_and_in_compare(tmp_path, tiny_splits):
    """One rule (`ok_rows_on_gpu`) for "the run used the GPU" in the system block, report.md and --compare: a
    TensorRT bundle that loaded but failed every row measured nothing on the GPU. Its loaded target once put the
    GPU's governor in the clock advice while --compare, reading the rows, left it out."""
    root = Path(shutil.copytree(JETSON, tmp_path / "sysfs"))
    for cpu in range(6):  # CPUs pinned: only the GPU's governor could make advice
        (root / CPU_DIR / f"cpu{cpu}" / "cpufreq" / "scaling_min_freq").write_text(f"{MAX_KHZ}\n")
    cpu_loader = make_loader(tiny_splits.spec)

    def on_gpu(bundle, backend, threads):
        pred = cpu_loader(bundle, backend, threads)
        pred.manifest["backend"] = "tensorrt"
        return pred

    out = run_bench(_bundles(tmp_path, "crashy"), data=tiny_splits, out=tmp_path / "r", batches=(4,),
                    modalities=("all",), meter="none", loader=on_gpu, sysfs_root=root, **FAST)
    report = json.loads((out / "report.json").read_text())
    assert [r["status"].startswith("failed") for r in report["rows"]] == [True]
    assert report["system"]["clock_advice"] is None and clock_warning(report) is None


def test_the_board_family_comes_from_the_device_tree_compatible_strings_then_the_model(tmp_path):
    """A TX2 on older L4T calls itself 'quill' and a third-party carrier board its own name; every Jetson's
    `compatible` names its nvidia,tegra SoC. Without `compatible` the model string still tells."""
    assert [board_family(root) for root in (JETSON, TX2, PI, VM)] == ["jetson", "jetson", "raspberry-pi", None]
    for root, missing in ((JETSON, "compatible"), (PI, "model")):
        copy = Path(shutil.copytree(root / DEVICE_TREE, tmp_path / root.name / DEVICE_TREE)).parents[1]
        (copy / DEVICE_TREE / missing).unlink()
        assert board_family(copy) == board_family(root)


def test_a_jetson_with_an_odd_model_gets_the_jetson_advice(tmp_path, tiny_splits):
    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", modalities=("all",),
                    meter="none", loader=make_loader(tiny_splits.spec), sysfs_root=TX2, **FAST)
    system = json.loads((out / "report.json").read_text())["system"]
    assert (system["device"], system["board_family"], system["jetson_model"]) == ("quill", "jetson", "quill")
    assert system["clock_advice"] == ("the governor is schedutil: clocks vary between calls (and idle cores clock "
                                      "down); for steady numbers pin them with `sudo jetson_clocks`")


def _vcgencmd(tmp_path: Path, monkeypatch, script: str, name: str = "vcgencmd") -> None:
    """A fake Raspberry Pi `vcgencmd` (or another board's tool: `name`) first on PATH, running `script` (sh)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_the_board_family_and_only_a_jetsons_power_mode_head_the_report(tmp_path, monkeypatch):
    """The family beside the board's model (it chose the advice, and what NVML is not read on); nvpmodel is read
    where the board is a Jetson, not wherever an `nvpmodel` is on PATH."""
    _vcgencmd(tmp_path, monkeypatch, "echo 'NV Power Mode: MAXN'", name="nvpmodel")
    heads = {}
    for root in (JETSON, TX2, PI, VM):
        system = system_info(Clocks(root), [])
        heads[root.name] = system["power_mode"], render_markdown({"system": system, "rows": []}).splitlines()[2]
    assert heads == {
        "orin_nano_throttled": ("MAXN", "- device: NVIDIA Jetson Orin Nano Developer Kit (board family: jetson, "
                                        "power mode: MAXN)"),
        "tx2_quill": ("MAXN", "- device: quill (board family: jetson, power mode: MAXN)"),
        "pi4_firmware_capped": (None, "- device: Raspberry Pi 4 Model B Rev 1.4 (board family: raspberry-pi)"),
        "vm": (None, f"- device: {system['device']}")}
    monkeypatch.setenv("PATH", "")  # a Jetson without nvpmodel says so
    assert "(board family: jetson, power mode: unknown)" in render_markdown({"system": system_info(Clocks(TX2), [])})


def test_a_pi_firmware_throttling_now_flags_the_row_and_since_boot_goes_in_the_system_block(tmp_path, monkeypatch):
    """A Pi's firmware caps its clocks (under-voltage, heat) without scaling_cur_freq showing it reliably; `vcgencmd
    get_throttled` says so: bits 0-3 now flag the row, bits 16-19 (since boot) advise once."""
    _vcgencmd(tmp_path, monkeypatch, "echo throttled=0x50005")
    clocks = Clocks(VM)
    end = clocks.snapshot()
    assert end == {"firmware_throttled": "0x50005", "firmware_now": ["under-voltage", "throttled"]}
    fields = row_clocks({}, end, False)
    assert fields["throttled"] is True
    assert fields["throttled_why"] == "firmware reports under-voltage, throttled now (vcgencmd get_throttled 0x50005)"
    system = system_info(clocks, ["edge-msa", "bench"])
    assert system["firmware_throttled"] == {"raw": "0x50005", "since_boot": ["under-voltage", "throttled"]}
    assert system["firmware_advice"] == ("the firmware reported under-voltage, throttled since boot: check the power "
                                         "supply")
    (tmp_path / "bin" / "vcgencmd").write_text("#!/bin/sh\necho throttled=0xa0000\n")  # since boot only
    assert row_clocks({}, clocks.snapshot(), False)["throttled"] is False
    assert system_info(clocks, [])["firmware_advice"] == ("the firmware reported ARM frequency capped, soft "
                                                          "temperature limit since boot: cool the board")


def test_no_or_a_failing_vcgencmd_adds_no_field(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no vcgencmd: not a Pi
    clocks = Clocks(VM)
    assert clocks.snapshot() == {} and not {"firmware_throttled", "firmware_advice"} & set(system_info(clocks, []))
    assert "firmware" not in render_markdown({"system": system_info(clocks, [])})
    pi = render_markdown({"system": system_info(Clocks(PI), [])})  # a Pi's "throttled? no" would read as checked
    assert "- Raspberry Pi firmware: not read (`vcgencmd get_throttled` did not answer: not on PATH" in pi
    _vcgencmd(tmp_path, monkeypatch, "echo 'VCHI initialization failed' >&2; exit 255")  # not in the video group
    assert Clocks(VM).snapshot() == {}
    monkeypatch.setattr(sysinfo, "VCGENCMD_TIMEOUT_S", 0.2)
    (tmp_path / "bin" / "vcgencmd").write_text("#!/bin/sh\nsleep 5\n")  # a hung firmware mailbox
    assert Clocks(VM).snapshot() == {}


def test_bench_and_compare_on_a_pi_whose_firmware_throttles(tmp_path, tiny_splits, monkeypatch, capsys):
    """A Pi 4 at 81.5 °C whose firmware throttles while sysfs shows every CPU at its max: the row is flagged by the
    firmware alone. A Pi is not a Jetson: its governor advice is cpupower's, not jetson_clocks."""
    _vcgencmd(tmp_path, monkeypatch, "echo throttled=0x50005")
    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", modalities=("all",),
                    meter="none", loader=make_loader(tiny_splits.spec), sysfs_root=PI, **FAST)
    report = json.loads((out / "report.json").read_text())
    system = report["system"]
    assert (system["device"], system["board_family"], system["jetson_model"]) == (
        "Raspberry Pi 4 Model B Rev 1.4", "raspberry-pi", None)
    assert system["clock_advice"].endswith("`sudo cpupower frequency-set -g performance`")
    assert report["rows"][0]["throttled"] is True and system["firmware_throttled"]["raw"] == "0x50005"
    md = (out / "report.md").read_text()
    assert ("- Raspberry Pi firmware (vcgencmd get_throttled as the run ended): 0x50005; since boot: under-voltage, "
            "throttled") in md
    assert "- advice: the firmware reported under-voltage, throttled since boot: check the power supply" in md
    assert ("throttled? marks a row whose timed calls ended with even the fastest CPU below 90% of its max clock, a "
            "thermal zone at or over its first passive trip point or a Raspberry Pi's firmware throttling now.") in md
    assert "NVML" not in md and "GPU" not in md  # the rule names what this board has, the table's cells too
    assert ("| 1 | all | 100% / 100%, firmware 0x50005 | 100% / 100%, firmware 0x50005 | 81.5 °C (cpu-thermal) | "
            "81.5 °C (cpu-thermal) | yes: firmware reports under-voltage, throttled now (vcgencmd get_throttled "
            "0x50005) |") in md
    assert main(["bench", "--compare", str(out / "report.json"), str(shutil.copy(out / "report.json", tmp_path))]) == 0
    assert ("1 of 1 successful rows flagged throttled?; governor ondemand (clocks not pinned); firmware reported "
            "under-voltage, throttled since boot; the ratios include their effect.") in capsys.readouterr().out


def test_bench_picks_the_energy_meter_by_the_board_family_it_read(tmp_path, tiny_splits):
    """The meter choice takes the board from the sysfs root the run read (`board_family`), as the report's board line
    does: on a Pi, that it has no meter on board, not tegrastats and RAPL each unavailable."""
    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", modalities=("all",),
                    loader=make_loader(tiny_splits.spec), sysfs_root=PI, **FAST)
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["energy"].startswith("unavailable: a Raspberry Pi has no on-board meter of its input power")
    assert "- energy unavailable: a Raspberry Pi has no on-board meter" in (out / "report.md").read_text()


REASON_BITS = {"GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8,
               "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40}


def _fake_pynvml(reasons: list[int], sm_mhz: int = 1980, renamed: bool = True):
    """A stand-in for nvidia-ml-py on a desktop GPU: `reasons` are the clock event reason bits, one per read, spelled
    as in pynvml 12.535+ (`...ClocksEventReason...`) or, `renamed=False`, as before (`...ClocksThrottleReason...`)."""
    calls = {"clock": 0, "init": 0, "shutdown": 0}

    def clock(handle, kind):
        assert kind == module.NVML_CLOCK_SM
        calls["clock"] += 1
        return sm_mhz

    spelling = "Event" if renamed else "Throttle"
    module = SimpleNamespace(
        NVML_CLOCK_SM=1, nvmlInit=lambda: calls.__setitem__("init", calls["init"] + 1),
        nvmlDeviceGetHandleByIndex=lambda i: f"index {i}",
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3", nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980,
        nvmlDeviceGetClockInfo=clock, nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        **{f"nvmlDeviceGetCurrentClocks{spelling}Reasons": lambda h: reasons.pop(0)},
        **{f"nvmlClocks{spelling}Reason{name}": bit for name, bit in REASON_BITS.items()})
    return module, calls


@pytest.mark.parametrize("renamed", [True, False])
def test_nvml_clock_event_reasons_flag_a_gpu_row_for_power_heat_and_slowdown_only(monkeypatch, renamed):
    """A desktop GPU's clocks and why NVML holds them down; a power cap flags a GPU row, idle (a GPU between calls,
    where the snapshots are taken) and application clocks (a setting) do not, nor anything a CPU-only row."""
    module, calls = _fake_pynvml([0, 0x1 | 0x2, 0x1 | 0x4, 0x40], sm_mhz=990, renamed=renamed)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("PATH", "")  # no vcgencmd
    clocks = Clocks(VM, nvml=True)
    idle = clocks.snapshot()
    assert idle == {"gpu_sm_clock": 0.5, "gpu_reasons": ["idle", "application clocks setting"]}
    assert row_clocks(idle, idle, True)["throttled"] is False
    capped = clocks.snapshot()
    assert capped["gpu_reasons"] == ["idle", "power cap"] and row_clocks(idle, capped, False)["throttled"] is False
    assert row_clocks(idle, capped, True)["throttled_why"] == "NVML reports the GPU clocks held down by power cap"
    assert row_clocks(idle, clocks.snapshot(), True)["throttled_why"].endswith("by HW thermal slowdown")
    assert system_info(clocks, [])["nvml_clocks"] == {"device": "NVIDIA H100 80GB HBM3", "max_sm_mhz": 1980}
    assert calls["init"] == calls["shutdown"]  # nothing held open between snapshots


def test_the_system_blocks_gpu_facts_take_one_nvml_session_and_one_name_read(monkeypatch):
    """The GPU's name, max SM clock and the check that its clocks are readable come from one nvmlInit as the run
    starts (they took three: the current clocks, the max clock, then the name again for the `system` block); a
    driver without the clock queries still names its GPU from that session."""
    module, calls = _fake_pynvml([0x4])
    named = module.nvmlDeviceGetName
    module.nvmlDeviceGetName = lambda h: calls.__setitem__("name", calls.get("name", 0) + 1) or named(h)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("PATH", "")
    system = system_info(Clocks(VM, nvml=True), [])
    assert system["gpu"] == "NVIDIA H100 80GB HBM3" and system["nvml_clocks"]["device"] == system["gpu"]
    assert calls["init"] == calls["shutdown"] == 1 and calls["name"] == 1
    module, calls = _fake_pynvml([])  # no clock reasons query
    monkeypatch.setitem(sys.modules, "pynvml", module)
    system = system_info(Clocks(VM, nvml=True), [])
    assert system["gpu"] == "NVIDIA H100 80GB HBM3" and system["nvml_clocks"].startswith("unavailable (NVML clocks")
    assert calls["init"] == calls["shutdown"] == 1


def test_no_nvml_is_one_unavailable_line_and_no_reading(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", "")
    clocks = Clocks(VM, nvml=True)
    assert clocks.nvidia.startswith("unavailable (pynvml is required for NVIDIA GPU clocks")
    assert clocks.nvidia.endswith(f"fix: {GPU_FIX})")
    assert clocks.snapshot() == {} and system_info(clocks, [])["nvml_clocks"] == clocks.nvidia
    assert Clocks(VM).nvidia.startswith("not read (the sysfs root ")  # a fixture's board is not this machine's GPU
    module, _ = _fake_pynvml([])  # a driver without the reasons query (an empty list fails to pop): not read at all
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert Clocks(VM, nvml=True).nvidia.startswith("unavailable (NVML clocks not readable on GPU 0 (")


def test_bench_on_a_power_capped_desktop_gpu_reads_nvml_outside_the_timed_calls(tmp_path, tiny_splits, monkeypatch):
    import edge_msa.benchmarks.sweep as sweep

    module, calls = _fake_pynvml([0x4] * 3)  # one read at open, one before and one after the timed calls
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(sweep, "Clocks", lambda root: Clocks(VM, nvml=True))
    timed = sweep.measure_side_by_side

    def untouched(*args, **kwargs):
        before = calls["clock"]
        try:
            return timed(*args, **kwargs)
        finally:
            assert calls["clock"] == before

    monkeypatch.setattr(sweep, "measure_side_by_side", untouched)
    cpu_loader = make_loader(tiny_splits.spec)

    def on_gpu(bundle, backend, threads):
        pred = cpu_loader(bundle, backend, threads)
        pred.manifest["backend"] = "tensorrt"
        return pred

    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", modalities=("all",),
                    meter="none", loader=on_gpu, **FAST)
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["throttled"] is True and row["clocks"]["end"]["gpu_reasons"] == ["power cap"]
    md = (out / "report.md").read_text()
    assert "- NVIDIA GPU clocks (NVML): max SM 1980 MHz (NVIDIA H100 80GB HBM3)" in md
    assert ("below 90% of its max clock, NVML reporting a GPU backend's clocks held down by a power cap, heat or a "
            "hardware slowdown or a thermal zone") in md and "fastest CPU (and the GPU) as a share" in md
    assert "| 1 | all | –, GPU SM 100% (power cap) | –, GPU SM 100% (power cap) |" in md
    assert calls["clock"] == 3 and calls["init"] == calls["shutdown"]


GPU_ROW = {"bundle": "student", "batch": 1, "modalities": "all", "status": "ok", "backend": "tensorrt",
           "providers": []}


def test_nvml_is_not_read_on_a_board_and_its_absence_shown_only_where_a_gpu_reading_is_missing(monkeypatch):
    """A Jetson's or a Pi's GPU is not NVML-managed: NVML is not read there (recorded why, never shown). Elsewhere a
    missing NVML reading is shown only where a row ran on the GPU or NVML names one: on a CPU-only run without
    nvidia-ml-py, "install the [gpu] extra" is noise."""
    module, calls = _fake_pynvml([0x4] * 3)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("PATH", "")
    for root, family in ((JETSON, "jetson"), (PI, "raspberry-pi")):
        clocks = Clocks(root, nvml=True)
        assert clocks.nvidia == f"not applicable ({family}: its GPU, if any, is not NVML-managed)"
        assert "gpu_sm_clock" not in clocks.snapshot()
    assert calls["init"] == 0
    monkeypatch.setitem(sys.modules, "pynvml", None)
    md = {name: render_markdown({"system": system_info(Clocks(root, nvml=True), []), "rows": rows})
          for name, root, rows in (("jetson", JETSON, [GPU_ROW]), ("cpu", VM, []), ("gpu", VM, [GPU_ROW]))}
    assert "NVML" not in md["jetson"] and "gpu:" not in md["jetson"] and "- GPU clock: nvhost_podgov" in md["jetson"]
    assert "NVML" not in md["cpu"] and "gpu:" not in md["cpu"]
    assert md["gpu"].count(GPU_FIX) == 2  # the gpu name's and the clocks' line: the reader learns why
    assert '- NVIDIA GPU clocks (NVML): unavailable (pynvml is required for NVIDIA GPU clocks' in md["gpu"]
    module, _ = _fake_pynvml([])  # NVML names a GPU but its driver has no clock reasons: shown on a CPU-only run
    monkeypatch.setitem(sys.modules, "pynvml", module)
    cpu_run = render_markdown({"system": system_info(Clocks(VM, nvml=True), []), "rows": []})
    assert "; gpu: NVIDIA H100 80GB HBM3" in cpu_run and "(NVML): unavailable (NVML clocks not readable" in cpu_run


def test_the_system_blocks_gpu_on_a_board_says_why_nvml_is_not_read_and_reads_none(tmp_path, monkeypatch):
    """On a detected Jetson or Pi the `system` block's gpu follows the clocks' rule (`not_nvml`): it was read through
    NVML all the same, so a fixture board's report named this machine's GPU, and a Jetson's read NVML against the
    rule. A Jetson told by its `compatible` alone (no model) is its CPU, not "<cpu> + not applicable (...)"."""
    module, calls = _fake_pynvml([0x4] * 3)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("PATH", "")
    unnamed = Path(shutil.copytree(JETSON, tmp_path / "sysfs"))
    (unnamed / DEVICE_TREE / "model").unlink()
    for root in (JETSON, PI, unnamed):
        clocks = Clocks(root)
        system = system_info(clocks, [])
        assert system["gpu"] == clocks.nvidia == not_nvml(clocks.family)
        assert "gpu:" not in render_markdown({"system": system, "rows": [GPU_ROW]})
    assert system["board_family"] == "jetson" and system["device"] == system["cpu"]
    assert calls["init"] == 0
