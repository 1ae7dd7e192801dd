"""What a bench row's cold start counts (a fresh process per bundle: the runtime's imports, the load and the text
front end) and which data its accuracy came from (the file's sha256 and the split's ids), which `bench --compare`
checks across reports."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_featureset
from edge_msa.benchmarks import run_bench
from edge_msa.cli import main
from edge_msa.data.base import DatasetSplits
from edge_msa.data.lineage import ids_sha256
from edge_msa.errors import ArtifactError
from test_bench_sweep import FAST, FakePredictor, _bundles

SLOW_S = 0.3
REAL = {k: v for k, v in FAST.items() if k != "cold_start"}  # the fresh processes, as `edge-msa bench` runs them


def test_cold_start_figures_do_not_depend_on_the_order_of_the_bundles(media_bundle, tmp_path):
    """Measured in the benchmark process, the first bundle paid ONNX Runtime's first session and later ones reused
    memory earlier loads had freed (three copies of one bundle: 400-440 ms / 195 MB first, ~280 ms / 96-122 MB
    after). Each bundle's cold start now runs in fresh processes of its own: two copies of one bundle agree."""
    bundles = [shutil.copytree(media_bundle, tmp_path / name) for name in ("first", "second")]
    out = run_bench(bundles, out=tmp_path / "r", modalities=("text",), threads=1, meter="none", **REAL)
    first, second = json.loads((out / "report.json").read_text())["rows"]
    assert first["status"] == second["status"] == "ok"
    assert first["cold_start_runs"] == second["cold_start_runs"] >= 1
    for key, factor in (("cold_start_rss_mb", 1.2), ("cold_start_ms", 3), ("load_ms", 3)):  # times: a busy machine
        assert 1 / factor < first[key] / second[key] < factor, (key, first[key], second[key])
    assert first["cold_start_ms"] > first["load_ms"] > 0  # the imports count in the first, not in the second
    assert first["cold_start_rss_mb"] > 30  # the whole process: Python, numpy, ONNX Runtime and the bundle


def test_a_fresh_process_that_fails_fails_its_bundles_rows_in_one_line(tmp_path, tiny_splits, monkeypatch):
    """Its one line goes into the bundle's rows (as a failed load's does), the bundle is not loaded here, and
    the other bundles are measured."""
    import edge_msa.benchmarks.coldstart as coldstart

    # argv[1] is the benchmark's edge_msa folder, argv[2] the bundle
    monkeypatch.setattr(coldstart, "CHILD", "import sys\nif sys.argv[2].endswith('teacher'):\n"
                        "    sys.exit('cannot map the model: out of memory')\n"
                        "print('{\"cold_start_ms\": 3, \"load_ms\": 2, \"cold_start_rss_mb\": 90}')\n")
    loaded = []

    def loader(bundle, backend, threads):
        loaded.append(bundle.name)
        return FakePredictor(tiny_splits.spec, 0.001)

    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r",
                    modalities=("text",), meter="none", loader=loader, **REAL)
    teacher, student = json.loads((out / "report.json").read_text())["rows"]
    assert teacher["status"] == "failed: load: cannot map the model: out of memory"
    assert student["status"] == "ok" and loaded == ["student"]
    assert (student["cold_start_ms"], student["load_ms"], student["cold_start_rss_mb"]) == (3, 2, 90)
    assert student["cold_start_runs"] == coldstart.RUNS


def test_a_fresh_process_past_its_time_is_one_line(tmp_path, monkeypatch):
    import edge_msa.benchmarks.coldstart as coldstart

    monkeypatch.setattr(coldstart, "CHILD", "import time; time.sleep(60)")
    start = time.perf_counter()
    with pytest.raises(coldstart.ColdStartFailed, match=r"^a fresh process loading it gave no answer within 0.5 s$"):
        coldstart.measure_cold_start(tmp_path, None, None, timeout_s=0.5)
    assert time.perf_counter() - start < 30


def test_a_figure_a_fresh_process_cannot_give_is_none_not_a_failure(tmp_path, monkeypatch):
    """Without /proc (macOS, Windows) a process has no peak RSS of its own to report: the median of None was a
    TypeError."""
    import edge_msa.benchmarks.coldstart as coldstart

    figures = '{"cold_start_ms": 3, "load_ms": 2, "cold_start_rss_mb": null}'
    monkeypatch.setattr(coldstart, "CHILD", f"print('{figures}')")
    assert coldstart.measure_cold_start(tmp_path, None, None, runs=2) == {
        "cold_start_ms": 3, "load_ms": 2, "cold_start_rss_mb": None, "cold_start_runs": 2}


class SlowFrontEnd:
    """A text front end whose load takes SLOW_S (a frozen encoder's MiniLM session), or fails."""

    def __init__(self, fails: bool = False) -> None:
        self.fails, self.loads = fails, 0

    def load(self) -> None:
        self.loads += 1
        time.sleep(SLOW_S)
        if self.fails:
            raise ArtifactError("cannot load text encoder bundle/text_encoder.onnx: bad graph")


def test_the_text_front_end_is_part_of_the_cold_start_and_one_that_fails_closes_the_bundle(tmp_path, tiny_splits,
                                                                                           monkeypatch, capsys):
    """The runtime builds the text front end at the first text, so it hid in the warm-up (a frozen INT8 bundle:
    load 100-180 ms, the first text another 600-900 ms); now the fresh process's load ms counts it, as a device
    pays it before its first text prediction. A front end that will not load fails the bundle's rows, its sessions
    released."""
    import edge_msa.benchmarks.coldstart as coldstart

    made = {}

    def loader(bundle, backend, threads):
        made[bundle.name] = pred = FakePredictor(tiny_splits.spec, 0.001)
        pred.dataset_text_front_end = SlowFrontEnd(fails=bundle.name == "teacher")
        return pred

    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r",
                    modalities=("text",), meter="none", loader=loader, **FAST)
    teacher, student = json.loads((out / "report.json").read_text())["rows"]
    assert teacher["status"] == "failed: load: cannot load text encoder bundle/text_encoder.onnx: bad graph"
    assert made["teacher"].closed
    assert student["status"] == "ok" and made["student"].dataset_text_front_end.loads == 1
    # the fresh process times the same opening (`child`, here with the fake loader): the front end inside load_ms
    monkeypatch.setattr(coldstart, "import_runtime", lambda bundle, backend: None)
    monkeypatch.setattr(coldstart, "runtime_loader", loader)
    monkeypatch.setattr(sys, "argv", ["-c", str(tmp_path / "student"), "", "1"])
    coldstart.child(time.perf_counter())
    assert json.loads(capsys.readouterr().out)["load_ms"] >= 1e3 * SLOW_S


def test_after_the_runtimes_imports_a_real_load_imports_nothing(media_bundle):
    """runtime_modules names every module a real bundle's load and text front end (MiniLM) import, so the fresh
    process's load_ms holds none of them (they count in its cold_start_ms)."""
    script = ("import json, sys\nfrom pathlib import Path\n"
              "from edge_msa.benchmarks.coldstart import import_runtime, open_bundle\n"
              "import_runtime(Path(sys.argv[1]), None)\nbefore = set(sys.modules)\n"
              "open_bundle(Path(sys.argv[1]), None, 1)\nprint(json.dumps(sorted(set(sys.modules) - before)))\n")
    done = subprocess.run([sys.executable, "-c", script, str(media_bundle)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def _splits(spec, sha256: str, test_rows: int = 24) -> DatasetSplits:
    """Tiny splits as a data file's reader gives them: the file's path and sha256 in `info`."""
    sets = (make_featureset(spec, n, k) for k, n in enumerate((48, 24, test_rows)))
    return DatasetSplits(spec, *sets, name="tiny", info={"path": "/data/tiny.npz", "sha256": sha256})


def _report(tmp_path: Path, name: str, splits: DatasetSplits) -> Path:
    (tmp_path / name).mkdir()
    loader = lambda bundle, backend, threads: FakePredictor(splits.spec, 0.001)  # noqa: E731
    return run_bench(_bundles(tmp_path / name, "student"), data=splits, out=tmp_path / name / "r",
                     modalities=("text",), meter="none", loader=loader, **FAST) / "report.json"


def test_rows_record_the_data_file_and_rows_they_scored(tmp_path, tiny_spec):
    """Rows said only "inputs": "test split": a report read later could not tell which file and rows it scored."""
    splits = _splits(tiny_spec, "ab" * 32)
    report = _report(tmp_path, "a", splits)
    row = json.loads(report.read_text())["rows"][0]
    assert row["data"] == {"path": "/data/tiny.npz", "sha256": "ab" * 32, "missing": []}
    assert row["split"] == {"name": "test", "n": 24, "ids_sha256": ids_sha256(splits.test.ids)}
    md = (report.parent / "report.md").read_text()
    assert f"- data (student): /data/tiny.npz (sha256 {'ab' * 6}…), test split: 24 rows (ids_sha256 " in md


def test_compare_says_when_accuracy_was_scored_on_other_rows(tmp_path, tiny_spec, capsys):
    """A Δ accuracy between reports scored on another file or carve measured the data too, without a word; reports
    from before the record (no "data" / "split") compare as before."""
    same = _report(tmp_path, "a", _splits(tiny_spec, "ab" * 32))
    other_rows = _report(tmp_path, "b", _splits(tiny_spec, "ab" * 32, test_rows=30))
    other_file = _report(tmp_path, "c", _splits(tiny_spec, "cd" * 32))
    old = json.loads(same.read_text())
    for row in old["rows"]:
        del row["data"], row["split"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    warning = "Accuracy scored on other rows (data file or split) in A and B: student / student; their Δ Acc-2"
    a = _report(tmp_path, "base", _splits(tiny_spec, "ab" * 32))
    for b, differs in ((same, False), (other_rows, True), (other_file, True), (tmp_path / "old.json", None)):
        assert main(["bench", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
        printed = capsys.readouterr().out
        assert (warning in printed) is bool(differs), b
        rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
        assert {e["same_scored_rows"] for e in rows} == {None if differs is None else not differs}


def test_a_failed_rows_status_keeps_every_line_of_its_error():
    """onnxruntime puts its detail on a second line ("... Got: 5 Expected: 3"): a row's status keeps it, on one line."""
    from edge_msa.benchmarks.coldstart import failure_text
    from edge_msa.errors import InputError

    assert failure_text(RuntimeError("invalid dimensions\nindex: 1 Got: 5 Expected: 3")) == \
        "RuntimeError: invalid dimensions index: 1 Got: 5 Expected: 3"
    assert failure_text(InputError("bad\nbundle")) == "bad bundle"
    assert failure_text(ValueError()) == "ValueError:"


def test_a_fresh_process_imports_the_benchmarks_edge_msa_not_one_in_the_working_directory(media_bundle, tmp_path,
                                                                                          monkeypatch):
    """`python -c` puts the working directory first on its path: run from a checkout beside a non-editable install
    (CI's device venv), the checkout's edge_msa/ (no benchmarks/ in it) was imported and every row failed."""
    import edge_msa.benchmarks.coldstart as coldstart

    decoy = tmp_path / "edge_msa"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the working directory edge_msa was imported')\n")
    monkeypatch.chdir(tmp_path)
    figures = coldstart.measure_cold_start(media_bundle, None, 1, runs=1)
    assert figures["cold_start_ms"] > figures["load_ms"] > 0


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="a process's own peak RSS is read from /proc")
def test_a_fresh_processs_peak_rss_is_its_own_not_the_benchmarks(media_bundle):
    """getrusage's ru_maxrss carries the parent's peak across fork and exec on Linux: every cold-start process of the
    main job, launched from the pipeline that had trained, read 3.7 GB. The child's figure is its own (VmHWM)."""
    import edge_msa.benchmarks.coldstart as coldstart
    from edge_msa.benchmarks.memory import peak_rss_mb

    ballast = np.ones(80_000_000 // 8)  # 80 MB touched: this process's peak well above a small bundle's process
    parent = peak_rss_mb()
    figures = coldstart.measure_cold_start(media_bundle, None, 1, runs=1)
    assert figures["cold_start_rss_mb"] < parent - 40, (figures, parent)
    del ballast


def test_a_fresh_processs_clock_charges_no_module_a_device_process_would_not_import(media_bundle):
    """The cold-start process imports edge_msa.benchmarks.coldstart after its clock starts: at the module's top,
    subprocess and statistics (with decimal, fractions, threading, selectors) were charged to every cold_start_ms,
    26-50 ms of a ~360 ms cold start on this machine, modules a process serving the bundle never imports."""
    script = (f"import sys, edge_msa\np = edge_msa.load({str(media_bundle)!r})\n"
              "getattr(p, 'dataset_text_front_end', None) and p.dataset_text_front_end.load()\n"
              "device = set(sys.modules)\nimport edge_msa.benchmarks.coldstart\n"
              "print(' '.join(sorted(set(sys.modules) - device)))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {m for m in proc.stdout.split() if not m.startswith("edge_msa.benchmarks")} == set()


def test_a_fresh_process_imports_no_module_from_the_working_directory(media_bundle, tmp_path, monkeypatch):
    """`python -c` puts the working directory first on its path, where `edge-msa bench` (a console script) has none:
    a json.py there (or random.py, copy.py: a user's scripts beside their bundles) shadowed the standard library's
    in the cold-start process alone, and every row failed while the benchmark itself ran."""
    import edge_msa.benchmarks.coldstart as coldstart

    (tmp_path / "json.py").write_text("raise ImportError('the working directory json.py was imported')\n")
    monkeypatch.chdir(tmp_path)
    figures = coldstart.measure_cold_start(media_bundle, None, 1, runs=1)
    assert figures["cold_start_ms"] > figures["load_ms"] > 0


@pytest.mark.skipif(sys.platform == "win32", reason="a process killed by a POSIX signal")
def test_a_fresh_process_killed_by_a_signal_says_which(tmp_path, monkeypatch):
    """A teacher bundle on a small board: the kernel's out-of-memory killer ends the cold-start process with SIGKILL,
    before it can say anything; every row read "exited with status -9 and said nothing", or the last warning
    onnxruntime had printed, as if that were why."""
    import edge_msa.benchmarks.coldstart as coldstart

    monkeypatch.setattr(coldstart, "CHILD", "import os, signal, sys\nprint('a warning', file=sys.stderr, flush=True)\n"
                        "os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(coldstart.ColdStartFailed, match=r"^a fresh process loading it was killed by SIGKILL \(what "
                       r"the kernel's out-of-memory killer sends\)$"):
        coldstart.measure_cold_start(tmp_path, None, None, runs=1)


def test_the_runtimes_imports_include_cuda_python_under_its_older_name(tmp_path):
    """cuda-python before 12.6 (JetPack's) has its runtime API as cuda.cudart, not cuda.bindings.runtime: the fresh
    process imported only the newer name, which failed quietly, so a Jetson's TensorRT bundle paid cuda-python's
    import in its load_ms. The runtime's own choice (tensorrt_backend.cuda_runtime) is imported before the clock."""
    fakes = tmp_path / "fakes"
    for module in ("tensorrt/__init__.py", "cuda/__init__.py", "cuda/cudart.py"):  # cuda-python 12.2: no bindings
        (fakes / module).parent.mkdir(parents=True, exist_ok=True)
        (fakes / module).write_text("")
    script = ("import json, sys\nfrom pathlib import Path\nsys.path.insert(0, sys.argv[1])\n"
              "from edge_msa.benchmarks.coldstart import import_runtime\n"
              "from edge_msa.runtime.tensorrt_backend import cuda_runtime\n"
              "import_runtime(Path(sys.argv[1], 'bundle'), 'tensorrt')\nbefore = set(sys.modules)\n"
              "cuda_runtime()\nprint(json.dumps(sorted(set(sys.modules) - before)))\n")
    done = subprocess.run([sys.executable, "-c", script, str(fakes)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
