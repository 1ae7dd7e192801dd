"""Energy meters: integration with idle subtraction, RAPL sysfs incl. wraparound, tegrastats on real lines."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_msa.benchmarks.meters import (Meter, MeterUnavailable, Window, active_window, energy_per_item, idle_window,
                                        open_meter, settled_idle_window)
from edge_msa.benchmarks.meters import ina3221
from edge_msa.benchmarks.meters.ina3221 import Ina3221Meter
from edge_msa.benchmarks.meters.rapl import RaplMeter
from edge_msa.benchmarks.meters.tegrastats import TegrastatsMeter, module_power_mw, not_found, parse_rails
from edge_msa.benchmarks.sysinfo import board_family
from edge_msa.errors import GPU_FIX

FIXTURES = Path(__file__).parent / "fixtures" / "tegrastats"
SYSFS = Path(__file__).parent / "fixtures" / "sysfs"


class StepMeter(Meter):
    """Power that is constant between set_power calls; energy integrates exactly over perf_counter time."""

    name = "fake"

    def __init__(self, watts: float) -> None:
        self.watts, self.joules, self.t = watts, 0.0, time.perf_counter()

    def set_power(self, watts: float) -> None:
        self.energy_j()
        self.watts = watts

    def energy_j(self) -> float:
        now = time.perf_counter()
        self.joules += self.watts * (now - self.t)
        self.t = now
        return self.joules


def test_constant_power_over_a_window_is_power_times_time():
    meter = StepMeter(3.0)
    w = idle_window(meter, 0.2)
    assert w.joules == pytest.approx(3.0 * w.seconds, rel=1e-3)
    assert w.seconds >= 0.2 - 1e-3 and w.watts == pytest.approx(3.0, rel=1e-3)  # sleep: a lower bound only


def test_energy_per_item_subtracts_idle_power():
    meter = StepMeter(2.0)  # idle 2 W
    idle = idle_window(meter, 0.15)

    def work(i):
        meter.set_power(5.0)  # busy 5 W while inferring, 4 items per call
        time.sleep(0.01)
        return 4

    active = active_window(meter, work, 0.3)
    result = energy_per_item(active, idle)
    expected_mj = 1e3 * (5.0 - 2.0) * active.seconds / active.items
    assert result["energy_mj_per_item"] == pytest.approx(expected_mj, rel=0.02)
    assert result["energy_total_mj_per_item"] == pytest.approx(1e3 * 5.0 * active.seconds / active.items, rel=0.02)
    assert result["idle_w"] == pytest.approx(2.0, rel=1e-3) and result["active_w"] == pytest.approx(5.0, rel=0.02)


def test_settled_idle_window_leaves_out_the_settle_and_reports_drift():
    """Clocks still high after the timing (9 W) drop during the settle (2 W): the idle window sees 2 W only. Power
    that still falls inside the window (6 W, then 2 W) shows as a drift of 2/6 - 1."""
    meter, sleeps = StepMeter(9.0), []

    def scripted_sleep(seconds, after=(2.0, 2.0, 2.0)):  # the power once the settle, first and second half slept
        time.sleep(seconds)
        sleeps.append(seconds)
        meter.set_power(after[len(sleeps) - 1])

    window, drift = settled_idle_window(meter, 0.1, 0.05, sleep=scripted_sleep)
    assert sleeps == [0.05, 0.05, 0.05] and window.watts == pytest.approx(2.0, rel=1e-3)
    assert window.seconds == pytest.approx(0.1, abs=0.02) and drift == pytest.approx(0.0, abs=1e-3)
    meter, sleeps = StepMeter(6.0), []
    _, drift = settled_idle_window(meter, 0.1, 0.0, sleep=lambda s: scripted_sleep(s, (6.0, 2.0, 2.0)))
    assert drift == pytest.approx(2.0 / 6.0 - 1, rel=0.02)


def test_energy_per_item_needs_items():
    with pytest.raises(MeterUnavailable, match="no inference"):
        energy_per_item(Window(1.0, 1.0, 0), Window(0.5, 1.0, 0))


def test_energy_per_item_below_idle_is_unavailable_not_negative():
    """Active power under idle power (meter noise on a tiny model) gave -10 mJ per item, and report.md's ratio table
    an 'energy saving' of the wrong sign."""
    with pytest.raises(MeterUnavailable, match="active power 1 W is not above idle 1.1 W"):
        energy_per_item(Window(1.0, 1.0, 10), Window(1.1, 1.0, 0))


def _rapl_tree(root: Path, energy: dict[str, int], max_range: int = 1000) -> None:
    names = {"intel-rapl:0": "package-0", "intel-rapl:1": "package-1", "intel-rapl:0:0": "core",
             "intel-rapl:2": "psys"}
    for dom, name in names.items():
        d = root / dom
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(name + "\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "energy_uj").write_text(f"{energy.get(dom, 0)}\n")


def test_rapl_sums_packages_only_and_handles_wraparound(tmp_path):
    _rapl_tree(tmp_path, {"intel-rapl:0": 900, "intel-rapl:1": 100, "intel-rapl:0:0": 5})
    meter = RaplMeter(tmp_path)
    assert meter.scope == "CPU package-0+package-1"
    _rapl_tree(tmp_path, {"intel-rapl:0": 50, "intel-rapl:1": 400, "intel-rapl:0:0": 999, "intel-rapl:2": 777})
    # package-0 wrapped: 900 -> 1000 (range) -> 50 = 150 uJ; package-1 +300 uJ; core and psys ignored
    assert meter.energy_j() == pytest.approx(450e-6)
    _rapl_tree(tmp_path, {"intel-rapl:0": 60, "intel-rapl:1": 400})
    assert meter.energy_j() == pytest.approx(460e-6)


def test_rapl_unavailable_reasons(tmp_path):
    with pytest.raises(MeterUnavailable, match="no RAPL package domains"):
        RaplMeter(tmp_path / "nothing")
    _rapl_tree(tmp_path, {})
    (tmp_path / "intel-rapl:0" / "energy_uj").chmod(0)
    if _readable(tmp_path / "intel-rapl:0" / "energy_uj"):
        pytest.skip("running as root: permission bits do not block reads")
    with pytest.raises(MeterUnavailable, match="not readable"):
        RaplMeter(tmp_path)


def _readable(path: Path) -> bool:
    try:
        path.read_text()
        return True
    except PermissionError:
        return False


@pytest.mark.parametrize("fixture, expected_mw, scope", [
    ("orin_nano_jp6.txt", [12479, 4824], "input rail VDD_IN"),
    ("nano_jp4.txt", [1057, 1015, 1057], "input rail POM_5V_IN"),
    ("tx2_jp4.txt", [3140, 5297], "input rail VDD_IN"),
    ("agx_orin_jp6.txt", [2340 + 390 + 4025 + 0 + 301],
     "sum of rails VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+NC+VDDQ_VDD2_1V8AO"),
    ("agx_xavier_jp42.txt", [463 + 618 + 2936 + 0 + 309 + 3306], "sum of rails GPU+CPU+SOC+CV+VDDRQ+SYS5V"),
    ("agx_thor_jp7.txt", [87426], "input rail VIN"),  # 3 figures a rail; VIN was summed with the rails it feeds
])
def test_tegrastats_module_power_on_real_lines(fixture, expected_mw, scope):
    lines = (FIXTURES / fixture).read_text().splitlines()
    got = [module_power_mw(parse_rails(line)) for line in lines]
    assert [mw for mw, _ in got] == expected_mw
    assert {s for _, s in got} == {scope}


def test_tegrastats_rails_keep_instant_and_average_and_skip_memory():
    line = (FIXTURES / "tx2_jp4.txt").read_text().splitlines()[0]
    rails = parse_rails(line)
    assert rails["VDD_4V0_WIFI"] == (633, 527) and rails["VDD_SYS_DDR"] == (557, 601)
    assert "RAM" not in rails and len(rails) == 6
    nano = parse_rails((FIXTURES / "nano_jp4.txt").read_text().splitlines()[1])
    assert nano == {"POM_5V_IN": (1015, 1036), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (126, 126)}


def test_tegrastats_without_rails_is_unavailable():
    with pytest.raises(MeterUnavailable, match="no power rails"):
        module_power_mw(parse_rails("RAM 717/3964MB (lfb 140x4MB) CPU [18%@102] GR3D_FREQ 0%@76"))


@pytest.mark.parametrize("fixture, watts, scope", [("orin_nano_jp6.txt", 4.824, "Jetson tegrastats input rail VDD_IN"),
                                                   ("agx_thor_jp7.txt", 87.426, "Jetson tegrastats input rail VIN")])
def test_tegrastats_meter_integrates_a_streaming_subprocess(tmp_path, fixture, watts, scope):
    """A stand-in `tegrastats` that replays a real line every 20 ms (Orin Nano: 4824 mW on VDD_IN). The scope names
    the source read: it said "INA3221" for Thor's VIN too, a sensor chip the harness never saw."""
    with TegrastatsMeter(command=_fake_tegrastats(tmp_path, None, fixture=fixture)) as meter:
        assert meter.scope == scope
        w = idle_window(meter, 0.4)
    assert w.watts == pytest.approx(watts, rel=0.1)
    assert meter.proc.poll() is not None  # the subprocess is gone after close


def test_open_meter_reports_every_reason_and_none():
    assert open_meter("none") == "unavailable: energy metering turned off (--meter none)"
    result = open_meter("auto", on_gpu=False)
    if isinstance(result, Meter):
        result.close()
        pytest.skip("this machine has a readable energy meter")
    assert result.startswith("unavailable: tegrastats: ") and "; rapl: " in result


@pytest.mark.skipif(Path("/usr/bin/tegrastats").exists(), reason="this machine has tegrastats in /usr/bin")
def test_a_jetson_without_tegrastats_on_path_is_told_so_not_that_it_is_no_jetson(monkeypatch, tmp_path):
    """A Jetson in a container or a minimal image: the reason said "not a Jetson" beside the report's own "board
    family: jetson". The board family (from its device tree) words it, and picks the meters: NVML is not tried on a
    Jetson (its SoC GPU answers no energy query; here it would add an "install the [gpu] extra" reason)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(ina3221, "HWMON_ROOT", tmp_path)  # and no INA3221 in sysfs either, by either driver
    monkeypatch.setattr(ina3221, "IIO_ROOT", tmp_path / "ina3221x")
    family = board_family(SYSFS / "orin_nano_throttled")
    for on_gpu in (False, True):
        assert open_meter("auto", on_gpu, family) == (f"unavailable: tegrastats: {not_found('jetson')}; ina3221: no "
                                                      f"labelled INA3221 channels under {tmp_path} (hwmon name "
                                                      f"'ina3221') or {tmp_path / 'ina3221x'} (JetPack 3/4's ina3221x "
                                                      "IIO rail_name_K)")
    assert not_found("jetson") == ("tegrastats is not on PATH or in /usr/bin on this Jetson (it ships with L4T in "
                                   "/usr/bin): in a container, mount it from the host, or run bench on the host")
    assert open_meter("tegrastats") == ("unavailable: tegrastats: tegrastats is not on PATH or in /usr/bin, and the "
                                        "device tree names no Jetson")


ORIN_HWMON = SYSFS / "orin_nano_throttled" / "sys" / "class" / "hwmon"


@pytest.mark.skipif(Path("/usr/bin/tegrastats").exists(), reason="this machine has tegrastats in /usr/bin")
def test_a_jetson_without_tegrastats_is_metered_from_its_ina3221_hwmon_input_rail(monkeypatch, tmp_path):
    """The rails tegrastats prints, read from sysfs where it is missing: VDD_IN 5000 mV x 965 mA, the whole module
    (the CPU/GPU and SoC rails beside it are inside it, so not added), as tegrastats' 4.8 W on this board."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ina3221, "HWMON_ROOT", ORIN_HWMON)
    with open_meter("auto", True, "jetson") as meter:
        assert isinstance(meter, Ina3221Meter) and meter.scope == "Jetson INA3221 hwmon input rail VDD_IN"
        assert meter.refresh_s == 0.02 and _watts(meter) == pytest.approx(4.825, rel=0.05)
    assert not meter.thread.is_alive()  # the poller stops with the meter


def _watts(meter: Meter, seconds: float = 0.5) -> float:
    """Mean power over `seconds`, read from the counter directly: shorter than a window bench would take."""
    e0, t0 = meter.energy_j(), time.perf_counter()
    time.sleep(seconds)
    return (meter.energy_j() - e0) / (time.perf_counter() - t0)


def _ina3221(hwmon: Path, channels: dict[int, tuple[str, int, int, int]], interval_ms: int | None = None) -> None:
    """An INA3221 hwmon folder: {channel: (label, mV, mA, enabled)}."""
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina3221\n")
    for n, (label, mv, ma, enabled) in channels.items():
        for name, value in (("label", label), ("input", mv), ("enable", enabled)):
            (hwmon / f"in{n}_{name}").write_text(f"{value}\n")
        (hwmon / f"curr{n}_input").write_text(f"{ma}\n")
    if interval_ms is not None:
        (hwmon / "update_interval").write_text(f"{interval_ms}\n")


def test_ina3221_without_an_input_rail_sums_its_connected_enabled_rails_across_monitors(tmp_path):
    """An AGX Orin-like board: two monitors, no input rail, channels labelled NC (not connected) and one disabled;
    the readings change every 100 ms (update_interval), which sets the shortest window, not the 20 ms polls."""
    _ina3221(tmp_path / "hwmon2", {1: ("VDD_GPU_SOC", 5000, 600, 1), 2: ("VDD_CPU_CV", 5000, 200, 1),
                                   3: ("VIN_SYS_5V0", 5000, 400, 1)}, interval_ms=100)
    _ina3221(tmp_path / "hwmon3", {1: ("NC", 5000, 999, 1), 2: ("VDDQ_VDD2_1V8AO", 5000, 100, 1),
                                   3: ("VDD_SPARE", 5000, 999, 0)})
    with Ina3221Meter(tmp_path) as meter:
        assert meter.scope == "Jetson INA3221 hwmon sum of rails VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO"
        assert meter.refresh_s == 0.1 and _watts(meter) == pytest.approx(6.5, rel=0.05)


JP4_NANO = SYSFS / "nano_jp4_ina3221x"


@pytest.mark.skipif(Path("/usr/bin/tegrastats").exists(), reason="this machine has tegrastats in /usr/bin")
def test_a_jetpack4_nano_without_tegrastats_is_metered_from_its_ina3221x_iio_input_rail(monkeypatch, tmp_path):
    """JetPack 4 boards (Nano, TX2, Xavier) expose their INA3221 through NVIDIA's `ina3221x` IIO driver, not hwmon:
    in a container they got no energy figure. POM_5V_IN 5000 mV x 203 mA is the whole module (1.015 W, as the Nano
    tegrastats fixture's line), the GPU and CPU rails beside it inside it, so not added."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ina3221, "HWMON_ROOT", tmp_path)  # no INA3221 hwmon on L4T 32
    monkeypatch.setattr(ina3221, "IIO_ROOT", JP4_NANO / "sys" / "bus" / "i2c" / "drivers" / "ina3221x")
    assert board_family(JP4_NANO) == "jetson"  # auto tries only the board meters, NVML not
    with open_meter("auto", True, board_family(JP4_NANO)) as meter:
        assert isinstance(meter, Ina3221Meter) and meter.scope == "Jetson INA3221 IIO input rail POM_5V_IN"
        assert sorted(meter.rails) == ["POM_5V_CPU", "POM_5V_GPU", "POM_5V_IN"]
        assert meter.refresh_s == 0.02 and _watts(meter) == pytest.approx(1.015, rel=0.05)


TX2_L4T28 = SYSFS / "tx2_quill"


@pytest.mark.skipif(Path("/usr/bin/tegrastats").exists(), reason="this machine has tegrastats in /usr/bin")
def test_an_l4t28_tx2_without_tegrastats_is_metered_from_its_iio_device_folders(monkeypatch, tmp_path):
    """L4T 28 (JetPack 3: TX1, TX2) names a monitor's IIO folder `iio_device`, not `iio:deviceN`: the meter found
    no rails there. VDD_IN (0-0041's channel 0) is the whole module, as tegrastats' VDD_IN 3140 on this board."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ina3221, "HWMON_ROOT", tmp_path)
    monkeypatch.setattr(ina3221, "IIO_ROOT", TX2_L4T28 / "sys" / "bus" / "i2c" / "drivers" / "ina3221x")
    with open_meter("auto", False, board_family(TX2_L4T28)) as meter:
        assert isinstance(meter, Ina3221Meter) and meter.scope == "Jetson INA3221 IIO input rail VDD_IN"
        assert sorted(meter.rails) == ["VDD_4V0_WIFI", "VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "VDD_SYS_GPU",
                                       "VDD_SYS_SOC"]
        assert _watts(meter) == pytest.approx(3.14, rel=0.05)


def test_ina3221x_power_is_read_from_in_power_where_the_driver_has_it(tmp_path):
    """ina3221x computes `in_powerK_input` from one conversion's bus voltage and current; its `in_voltageK_input` and
    `in_currentK_input` are a conversion each, so their product paired two instants (TX2's VDD_IN 3204 mW, in_power
    3140), at two conversions a rail per poll. Without the power file the product is the reading, as on hwmon."""
    drivers = tmp_path / "ina3221x"
    shutil.copytree(TX2_L4T28 / "sys" / "bus" / "i2c" / "drivers" / "ina3221x", drivers)
    expected = {"VDD_SYS_GPU": 153, "VDD_SYS_SOC": 536, "VDD_4V0_WIFI": 633, "VDD_IN": 3140, "VDD_SYS_CPU": 536,
                "VDD_SYS_DDR": 557}
    with Ina3221Meter(tmp_path, iio_root=drivers) as meter:
        assert meter._read_mw() == expected
    for power in drivers.glob("*/iio_device/in_power*_input"):
        power.unlink()
    with Ina3221Meter(tmp_path, iio_root=drivers) as meter:
        assert meter._read_mw() == {"VDD_SYS_GPU": 152, "VDD_SYS_SOC": 534, "VDD_4V0_WIFI": 632, "VDD_IN": 3204,
                                    "VDD_SYS_CPU": 534, "VDD_SYS_DDR": 553}


def test_ina3221x_iio_without_an_input_rail_sums_the_rails_of_both_monitors():
    """A JetPack 4 AGX Xavier-like board: two IIO monitors (1-0040, 1-0041), no input rail; its six rails summed, as
    tegrastats sums GPU CPU SOC CV VDDRQ SYS5V there."""
    drivers = SYSFS / "agx_xavier_jp4_ina3221x" / "sys" / "bus" / "i2c" / "drivers" / "ina3221x"
    with Ina3221Meter(SYSFS / "agx_xavier_jp4_ina3221x" / "sys" / "class" / "hwmon", iio_root=drivers) as meter:
        assert meter.scope == "Jetson INA3221 IIO sum of rails GPU+CPU+SOC+CV+VDDRQ+SYS5V"
        assert _watts(meter) == pytest.approx(7.635, rel=0.05)


def test_ina3221_reads_hwmon_where_it_has_rails_and_never_mixes_in_iio(tmp_path):
    """Both drivers' folders present: hwmon (JetPack 5+) wins, and no IIO rail joins its sum."""
    _ina3221(tmp_path / "hwmon0", {1: ("VDD_IN", 5000, 965, 1)})
    with Ina3221Meter(tmp_path, iio_root=JP4_NANO / "sys" / "bus" / "i2c" / "drivers" / "ina3221x") as meter:
        assert meter.scope == "Jetson INA3221 hwmon input rail VDD_IN" and list(meter.rails) == ["VDD_IN"]


def test_ina3221_unreadable_or_absent_is_unavailable(tmp_path):
    with pytest.raises(MeterUnavailable, match="no labelled INA3221 channels under .* or .*ina3221x IIO rail_name_K"):
        Ina3221Meter(tmp_path, iio_root=tmp_path)
    _ina3221(tmp_path / "hwmon0", {1: ("VDD_IN", 5000, 965, 1)})
    with Ina3221Meter(tmp_path) as meter:
        (tmp_path / "hwmon0" / "curr1_input").unlink()  # the driver unbound mid-run
        time.sleep(0.2)
        with pytest.raises(MeterUnavailable, match="INA3221 rail no longer readable"):
            meter.energy_j()


def test_a_raspberry_pi_is_told_it_has_no_on_board_power_meter():
    """Auto on a Pi listed tegrastats and RAPL as unavailable, without saying that no meter exists on the board to
    find: the way is an external USB power meter, and --meter none hides the line."""
    family = board_family(SYSFS / "pi4_firmware_capped")
    for on_gpu in (False, True):
        assert open_meter("auto", on_gpu, family) == (
            "unavailable: a Raspberry Pi has no on-board meter of its input power (no INA rails as on a Jetson, no "
            "RAPL as on x86; a Pi 5's PMIC reads some rails, not the 5 V input's current): measure it with an "
            "external USB power meter, or hide this line with --meter none")


class FakeNVMLError(Exception):
    pass


def _fake_pynvml(energy_mj: list[int] | None, name: bytes = b"NVIDIA H100 80GB HBM3"):
    """A stand-in for nvidia-ml-py: energy_mj is the counter sequence, None = NOT_SUPPORTED (Jetson iGPU)."""
    calls = {"shutdown": 0}

    def energy(handle):
        if energy_mj is None:
            raise FakeNVMLError("Not Supported")
        return energy_mj.pop(0)

    module = SimpleNamespace(
        NVMLError=FakeNVMLError, nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: f"index {i}",
        nvmlDeviceGetHandleByUUID=lambda u: f"uuid {u.decode()}",
        nvmlDeviceGetName=lambda h: name, nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1))
    return module, calls


@pytest.fixture
def refresh_known(monkeypatch):
    """The fakes' counters are lists of readings, one per read: no watching their update period at open."""
    monkeypatch.setattr("edge_msa.benchmarks.meters.nvml.counter_refresh_s", lambda read: 0.1)


def test_nvml_counter_is_read_as_joules_since_open(monkeypatch, refresh_known):
    module, calls = _fake_pynvml([1_000_000, 1_002_500, 1_010_000])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    from edge_msa.benchmarks.meters.nvml import NvmlMeter
    with NvmlMeter() as meter:
        assert meter.scope == "GPU board energy counter, NVIDIA H100 80GB HBM3 (GPU 0)"
        assert meter.energy_j() == pytest.approx(2.5)
        assert meter.energy_j() == pytest.approx(10.0)
    assert calls["shutdown"] == 1


def test_nvml_meter_names_the_counter_refresh_it_watched(monkeypatch):
    """The refresh watched at open sets the shortest window the energy stands on; the report's energy method (the
    meter's describe()) did not say it, so a reader could not judge the --energy-window against it."""
    module, _ = _fake_pynvml([1_000_000])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setattr("edge_msa.benchmarks.meters.nvml.counter_refresh_s", lambda read: 0.0213)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meter = open_meter("nvml", on_gpu=True)
    try:
        assert meter.describe() == ("nvml (GPU board energy counter, NVIDIA H100 80GB HBM3 (GPU 0)), counter refresh "
                                    "21.3 ms as watched at open")
    finally:
        meter.close()


@pytest.mark.parametrize("visible, handle", [("2,3", "index 2"), ("GPU-8f2c,GPU-11aa", "uuid GPU-8f2c"),
                                              ("", "index 0")])
def test_nvml_meters_the_gpu_cuda_visible_devices_pins_the_run_to(monkeypatch, refresh_known, visible, handle):
    """NVML numbers GPUs itself and ignores CUDA_VISIBLE_DEVICES: index 0 metered another card than the one a
    pinned benchmark ran on."""
    module, _ = _fake_pynvml([0])
    seen = []
    module.nvmlDeviceGetName = lambda h: seen.append(h) or b"NVIDIA L4"
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    from edge_msa.benchmarks.meters.nvml import NvmlMeter, gpu_name
    with NvmlMeter():
        pass
    assert gpu_name() == "NVIDIA L4" and seen == [handle, handle]


def test_nvml_meters_the_gpu_this_process_runs_on_when_cuda_and_nvml_count_gpus_differently(monkeypatch, refresh_known):
    """CUDA counts GPUs fastest first (CUDA_DEVICE_ORDER's default), NVML in PCI bus order: on a T4 + A100 host CUDA's
    GPU 0 is the A100, NVML's the T4, and the meter read the T4's counter while the model ran on the A100."""
    from edge_msa.benchmarks.meters.nvml import NvmlMeter, gpu_memory_mb, gpu_name

    module, _ = _fake_pynvml([0, 0, 0])
    names, procs = [b"Tesla T4", b"NVIDIA A100-SXM4-40GB"], {"index 1": [os.getpid()]}
    module.nvmlDeviceGetCount, module.nvmlDeviceGetIndex = lambda: 2, lambda h: int(h.split()[-1])
    module.nvmlDeviceGetName = lambda h: names[int(h.split()[-1])]
    module.nvmlDeviceGetComputeRunningProcesses = lambda h: [SimpleNamespace(pid=p, usedGpuMemory=2**20)
                                                             for p in procs.get(h, [])]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    with NvmlMeter() as meter:
        assert meter.handle == "index 1"
        assert meter.scope == ("GPU board energy counter, NVIDIA A100-SXM4-40GB (GPU 1, where this process's CUDA "
                               "context is)")
    assert gpu_name() == "NVIDIA A100-SXM4-40GB" and gpu_memory_mb() == 1.048576  # MB of 10^6 bytes, not MiB
    procs.clear()  # a container hides the host's process ids: the index, named a guess on this host of mixed GPUs
    with NvmlMeter() as meter:
        assert meter.handle == "index 0" and "may be another card than CUDA's 0" in meter.scope
        assert "host of NVIDIA A100-SXM4-40GB, Tesla T4; set CUDA_DEVICE_ORDER=PCI_BUS_ID" in meter.scope
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA counts in bus order too: the index is exact
    with NvmlMeter() as meter:
        assert meter.scope == "GPU board energy counter, Tesla T4 (GPU 0)"


def test_nvml_not_supported_falls_through_to_jetson_rails(monkeypatch, tmp_path):
    """Jetson: NVML initialises, energy is NOT_SUPPORTED, so GPU work is metered by the INA input rail."""
    module, calls = _fake_pynvml(None, name=b"Orin (nvgpu)")
    monkeypatch.setitem(sys.modules, "pynvml", module)
    line = (FIXTURES / "orin_nano_jp6.txt").read_text().splitlines()[1]
    fake = tmp_path / "tegrastats"
    fake.write_text(f"#!{sys.executable}\nimport time\nwhile True:\n    print({line!r}, flush=True)\n"
                    "    time.sleep(0.02)\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    meter = open_meter("auto", on_gpu=True)
    try:
        assert isinstance(meter, TegrastatsMeter) and meter.scope == "Jetson tegrastats input rail VDD_IN"
    finally:
        meter.close()
    assert calls["shutdown"] == 1
    reason = open_meter("nvml", on_gpu=True)
    assert reason.startswith("unavailable: nvml: NVML total-energy counter not readable") and "Not Supported" in reason


def test_nvml_missing_package_is_an_unavailable_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    reason = open_meter("nvml", on_gpu=True)
    assert reason.startswith("unavailable: nvml: pynvml is required") and GPU_FIX in reason


def _fake_tegrastats(tmp_path: Path, lines: int | None, then: str = "",
                     fixture: str = "orin_nano_jp6.txt") -> list[str]:
    """A stand-in printing a real line every 20 ms, `lines` times (None: forever): the last of `fixture`, by default
    Orin Nano's VDD_IN 4824 mW."""
    line = (FIXTURES / fixture).read_text().splitlines()[-1]
    loop = "while True" if lines is None else f"for _ in range({lines})"
    script = tmp_path / "fake_tegrastats.py"
    script.write_text(f"import sys, time\n{loop}:\n    print({line!r}, flush=True)\n    time.sleep(0.02)\n{then}\n")
    return [sys.executable, str(script)]


def test_tegrastats_that_exits_fails_the_reading_instead_of_holding_its_last_power(tmp_path):
    """It used to keep adding the last line's 4.8 W for as long as it was read: an estimate in disguise."""
    command = _fake_tegrastats(tmp_path, 3, "sys.stderr.write('lost the INA3221\\n'); sys.exit(3)")
    with TegrastatsMeter(command=command) as meter:
        deadline = time.monotonic() + 5
        while meter.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)  # the reader thread notes the exit
        with pytest.raises(MeterUnavailable, match="tegrastats exited \\(code 3\\): lost the INA3221"):
            meter.energy_j()


def test_tegrastats_that_falls_silent_fails_the_reading(tmp_path):
    shift = [0.0]
    command = _fake_tegrastats(tmp_path, 1, "time.sleep(30)")
    with TegrastatsMeter(command=command, clock=lambda: time.perf_counter() + shift[0]) as meter:
        assert meter.energy_j() >= 0.0
        shift[0] = 5.0  # five seconds without a line
        with pytest.raises(MeterUnavailable, match="printed no line for 5"):
            meter.energy_j()


def test_tegrastats_that_exits_at_once_fails_to_open_without_waiting(tmp_path):
    script = tmp_path / "denied.py"
    script.write_text("import sys\nsys.stderr.write('tegrastats: permission denied\\n')\nsys.exit(1)\n")
    start = time.monotonic()
    with pytest.raises(MeterUnavailable, match="exited \\(code 1\\): tegrastats: permission denied"):
        TegrastatsMeter(command=[sys.executable, str(script)])
    assert time.monotonic() - start < 4  # not the 5 s first-line timeout


@pytest.mark.parametrize("max_range, why", [(10_000, "went backwards from 5000 to 4000 uJ"),
                                            (None, "went backwards from 5000 to 4000 uJ")])
def test_rapl_counter_that_goes_backwards_is_unavailable_not_a_wrap(tmp_path, max_range, why):
    """A drop of 1000 uJ on a 10000 uJ counter is no wrap (that drops by most of the range): the counter was reset
    (suspend, hotplug). Read as a wrap it added 9000 uJ; with max_energy_range_uj unreadable it subtracted 1000."""
    _rapl_tree(tmp_path, {"intel-rapl:0": 5000}, max_range=max_range or 0)
    if max_range is None:
        (tmp_path / "intel-rapl:0" / "max_energy_range_uj").unlink()
    meter = RaplMeter(tmp_path)
    _rapl_tree(tmp_path, {"intel-rapl:0": 4000}, max_range=max_range or 0)
    with pytest.raises(MeterUnavailable, match=why):
        meter.energy_j()


AMD_RANGE_UJ = 65_532_610_987  # max_energy_range_uj of AMD Zen: 2^32 units of 2^-16 J


@pytest.mark.parametrize("limits, wrap_s", [
    ({}, AMD_RANGE_UJ / 1e6 / 1000),  # no powercap limit readable (AMD): the 1000 W ceiling
    ({"constraint_0_power_limit_uw": "280000000", "constraint_1_power_limit_uw": "0", "constraint_0_max_power_uw": ""},
     AMD_RANGE_UJ / 1e6 / 280),  # the highest readable limit, 280 W: 234 s
    ({"constraint_0_power_limit_uw": "4095875000"}, AMD_RANGE_UJ / 1e6 / 1000),  # "unlimited": the ceiling
])
def test_rapl_window_longer_than_a_counter_wrap_is_refused(tmp_path, limits, wrap_s):
    """Two wraps between a window's reads read as one (or none): a whole range (65.5 kJ on AMD, 2.2 min at 500 W)
    missing without a sign, and --energy-window has no upper bound."""
    _rapl_tree(tmp_path, {"intel-rapl:0": 5000, "intel-rapl:1": 5000}, max_range=AMD_RANGE_UJ)
    for package in ("intel-rapl:0", "intel-rapl:1"):
        for name, value in limits.items():
            (tmp_path / package / name).write_text(value + "\n")
    meter, now = RaplMeter(tmp_path), [0.0]
    assert meter.max_window_s == pytest.approx(wrap_s)

    def sleep(seconds):  # the counter climbs at 1 W: readings that 1 W plus a whole range would also give
        now[0] += seconds
        _rapl_tree(tmp_path, {"intel-rapl:0": 5000 + int(1e6 * now[0]), "intel-rapl:1": 5000}, max_range=AMD_RANGE_UJ)

    assert idle_window(meter, 0.9 * wrap_s, sleep, clock=lambda: now[0]).seconds == pytest.approx(0.9 * wrap_s)
    with pytest.raises(MeterUnavailable, match=f"a 300 s window is longer than the {wrap_s:.3g} s the rapl counter"):
        idle_window(meter, 300, sleep, clock=lambda: now[0])


class CounterMeter(Meter):
    """A counter that reads the given joules in turn (refreshing every `refresh_s`)."""

    name = "counter"

    def __init__(self, joules: list[float], refresh_s: float = 0.0) -> None:
        self.joules, self.refresh_s = joules, refresh_s

    def energy_j(self) -> float:
        return self.joules.pop(0)


@pytest.mark.parametrize("joules, refresh_s, why", [
    ([5.0, 5.0], 0.0, "did not move over a"),  # 0 J: idle 0 W, so all the active energy read as above idle
    ([5.0, 1.0], 0.0, "went backwards by 4 J"),  # driver reload, counter reset: a negative energy
    ([5.0, 6.0], 0.01, "spans under 20 of the counter meter's 10 ms refreshes"),  # 0.05 s: edge error up to 40 %
])
def test_a_window_the_meter_cannot_measure_is_unavailable(joules, refresh_s, why):
    with pytest.raises(MeterUnavailable, match=why):
        idle_window(CounterMeter(list(joules), refresh_s), 0.05)
    with pytest.raises(MeterUnavailable, match=why):
        active_window(CounterMeter(list(joules), refresh_s), lambda i: time.sleep(0.01) or 1, 0.05)


def test_nvml_counter_reset_or_gpu_lost_mid_run_is_unavailable(monkeypatch, refresh_known):
    """A driver reload restarts NVML's counter (energy went negative); a GPU that falls off the bus raised NVMLError
    out of the meter, failing the whole row, latency included, instead of its energy only."""
    from edge_msa.benchmarks.meters.nvml import NvmlMeter

    module, _ = _fake_pynvml([1_000_000, 1_005_000, 2_000])
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with NvmlMeter() as meter, pytest.raises(MeterUnavailable, match="went backwards by 1003 J"):
        idle_window(meter, 0.0)
    module, _ = _fake_pynvml([1_000_000])
    module.nvmlDeviceGetTotalEnergyConsumption = lambda h, left=[1_000_000]: left.pop() if left else _lost()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    with NvmlMeter() as meter, pytest.raises(MeterUnavailable, match="counter no longer readable .*GPU is lost"):
        meter.energy_j()


def _lost():
    raise FakeNVMLError("GPU is lost")


@pytest.mark.parametrize("later, why", [
    (lambda orin: orin.replace("VDD_IN 4824mW/4824mW ", ""),
     "switched from the Jetson tegrastats input rail VDD_IN to the Jetson tegrastats sum of rails VDD_CPU_GPU_CV"),
    (lambda orin: orin.split(" VDD_IN")[0],
     "lost their power rails mid-run, after line 1 on the Jetson tegrastats input rail VDD_IN"),
])
def test_tegrastats_lines_that_switch_scope_mid_run_fail_the_reading(tmp_path, later, why):
    """Lines that lose their input rail would be summed over other rails: two scopes added up as one energy. Lines
    that lose every rail said "no power rails (... not exposed on this board)", the start-up reason, though the
    first line had them."""
    orin = (FIXTURES / "orin_nano_jp6.txt").read_text().splitlines()[1]
    script = tmp_path / "switching.py"
    script.write_text(f"import time\nprint({orin!r}, flush=True)\ntime.sleep(0.05)\n"
                      f"print({later(orin)!r}, flush=True)\ntime.sleep(30)\n")
    with TegrastatsMeter(command=[sys.executable, str(script)]) as meter:
        time.sleep(0.5)
        with pytest.raises(MeterUnavailable, match=why):
            meter.energy_j()


@pytest.mark.parametrize("period_s, expected_s", [(0.02, 0.02), (0.25, 0.25), (0.4, 0.4), (0.6, 1.0), (None, 1.0)])
def test_nvml_counter_refresh_is_watched_not_assumed(period_s, expected_s):
    """A counter updating every period_s (None: never) on a fake clock: its period, or the 1 s watched where it did
    not change twice in it."""
    from edge_msa.benchmarks.meters.nvml import counter_refresh_s

    now = [0.0]
    read = (lambda: 0) if period_s is None else (lambda: int(now[0] / period_s + 1e-9))
    assert counter_refresh_s(read, lambda: now[0], lambda s: now.__setitem__(0, now[0] + s)) == pytest.approx(
        expected_s, abs=2e-3)


def test_nvml_meter_takes_the_counter_refresh_it_watched(monkeypatch):
    """A counter that updates every 10 ms (as on some cards): a 1 s window spans 100 of its updates, yet the 100 ms
    assumed for every GPU refused any window under 2 s (so --energy-window under 4 s)."""
    from edge_msa.benchmarks.meters.nvml import NvmlMeter

    module, _ = _fake_pynvml(None)
    module.nvmlDeviceGetTotalEnergyConsumption = lambda h: 500 * int(time.perf_counter() / 0.01)  # 50 W
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with NvmlMeter() as meter:
        assert meter.refresh_s < 0.04
        assert idle_window(meter, 1.0).watts == pytest.approx(50, rel=0.05)
