"""What a bench row's cold start counts (the load and the text front end, not the process's imports) and which data
its accuracy came from (the file's sha256 and the split's ids), which `bench --compare` checks across reports."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path


from conftest import make_featureset
from edge_msa.benchmarks import run_bench
from edge_msa.cli import main
from edge_msa.data.base import DatasetSplits
from edge_msa.data.lineage import ids_sha256
from edge_msa.errors import ArtifactError
from test_bench_sweep import FAST, FakePredictor, _bundles

SLOW_S = 0.3


def _slow_module(tmp_path: Path, monkeypatch) -> str:
    """A module on sys.path whose import takes SLOW_S, as a runtime library's first import does."""
    name = f"slow_runtime_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(f"import time\ntime.sleep({SLOW_S})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_the_first_bundle_is_not_charged_the_runtimes_imports(tmp_path, tiny_splits, monkeypatch):
    """The first bundle of a sweep paid the runtime's imports inside its load ms (the same bundle twice: 73 vs 39
    ms), so bundles were not compared on equal terms; the imports now come before the clock."""
    import edge_msa.benchmarks.target as target

    slow = _slow_module(tmp_path, monkeypatch)
    monkeypatch.setattr(target, "runtime_modules", lambda backend: (slow,))

    def loader(bundle, backend, threads):
        __import__(slow)  # what the runtime's load imports, once per process
        return FakePredictor(tiny_splits.spec, 0.001)

    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r",
                    modalities=("text",), meter="none", loader=loader, **FAST)
    load_ms = [r["load_ms"] for r in json.loads((out / "report.json").read_text())["rows"]]
    assert len(load_ms) == 2 and max(load_ms) < 1e3 * SLOW_S / 2, load_ms


class SlowFrontEnd:
    """A text front end whose load takes SLOW_S (a frozen encoder's MiniLM session), or fails."""

    def __init__(self, fails: bool = False) -> None:
        self.fails, self.loads = fails, 0

    def load(self) -> None:
        self.loads += 1
        time.sleep(SLOW_S)
        if self.fails:
            raise ArtifactError("cannot load text encoder bundle/text_encoder.onnx: bad graph")


def test_the_text_front_end_is_part_of_the_cold_start_and_one_that_fails_closes_the_bundle(tmp_path, tiny_splits):
    """The runtime builds the text front end at the first text, so it hid in the warm-up (a frozen INT8 bundle:
    load 100-180 ms, the first text another 600-900 ms); now load ms counts it, as a device pays it before its
    first text prediction. A front end that will not load fails the bundle's rows, its sessions released."""
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
    assert student["status"] == "ok" and student["load_ms"] >= 1e3 * SLOW_S
    assert made["student"].dataset_text_front_end.loads == 1


def test_after_the_runtimes_imports_a_real_load_imports_nothing(media_bundle):
    """runtime_modules names every module a real bundle's load and text front end (MiniLM) import, so none is left
    inside load ms. In a fresh process: this one imported them all long ago."""
    script = ("import json, sys\nfrom pathlib import Path\nimport edge_msa.benchmarks.sweep\n"
              "from edge_msa.benchmarks.target import import_runtime, load_target\n"
              "import_runtime(Path(sys.argv[1]), None)\nbefore = set(sys.modules)\n"
              "load_target(Path(sys.argv[1]), None, 1)\nprint(json.dumps(sorted(set(sys.modules) - before)))\n")
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
