"""The sweep against fake predictors with known latencies: report schema, Markdown, PNG, failed rows,
accuracy and skip rate, energy with a fake meter, --compare, the CLI, and no torch on the device path."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest

from edge_msa.benchmarks import compare_reports, load_report, run_bench
from edge_msa.benchmarks.meters import Meter
from edge_msa.benchmarks.report import pareto_front
from edge_msa.benchmarks.timing import BLOCK_S
from conftest import make_featureset
from edge_msa.cli import main
from edge_msa.data.base import DatasetSplits
from edge_msa.errors import ArtifactError, InputError
from edge_msa.metrics import METRIC_KEYS
from edge_msa.spec import MODALITIES, FeatureSpec

ROW_KEYS = {"bundle", "backend", "precision", "batch", "modalities", "status", "latency_ms", "throughput",
            "peak_rss_mb", "metrics", "skip_rate", "load_ms", "cold_start_ms", "cold_start_rss_mb", "cold_start_runs",
            "cv", "stages_ms", "stages_ran"}


class FakePredictor:
    """Sleeps `delay_s` per call; scores follow the synthetic label rule so accuracy is real; the 'gate'
    skips video always (so the skip rate is known: half of the present audio/video encoders)."""

    def __init__(self, spec, delay_s: float, fail_batch: int | None = None) -> None:
        self.manifest = {"feature_spec": spec.to_dict(), "precision": "fp32", "model": "fake", "backend": "onnxruntime",
                         "graphs": {"model": "model.onnx"}}
        self.delay_s, self.fail_batch, self.closed = delay_s, fail_batch, False

    def predict_features(self, features, lengths):
        b = len(lengths["text"])
        if b == self.fail_batch:
            raise RuntimeError("fake runtime crash at this batch size")
        time.sleep(self.delay_s)
        scores = np.clip(1.5 * (features["text"][:, 0, 0] + 0.5 * features["audio"][:, 0, 0]), -3, 3)  # (B,)
        present = np.stack([lengths[m] > 0 for m in MODALITIES], axis=1)  # (B, 3)
        present[:, 2] = False  # the gate skips video
        return scores, present

    def predict_batch(self, items):
        time.sleep(self.delay_s)
        half_ms = 1e3 * self.delay_s / 2
        return [SimpleNamespace(ms={"encode_text": half_ms, "fuse": half_ms})] * len(items)

    def close(self):
        self.closed = True


class ConstantMeter(Meter):
    """2 W idle, 6 W while a prediction runs (the loader's wrapper flips `busy` around each call)."""

    name, scope = "fake", "test meter"

    def __init__(self):
        self.t, self.j, self.busy = time.perf_counter(), 0.0, False

    def energy_j(self):
        now = time.perf_counter()
        self.j += (6.0 if self.busy else 2.0) * (now - self.t)
        self.t = now
        return self.j


class CoolingMeter(ConstantMeter):
    """ConstantMeter on a board whose governor holds the clocks up (6 W) for `hold_s` after the last call ends."""

    def __init__(self, hold_s):
        super().__init__()
        self.hold_s, self.hot_until = hold_s, 0.0

    def energy_j(self):
        now = time.perf_counter()
        hot = now - self.t if self.busy else max(0.0, min(now, self.hot_until) - self.t)
        self.j += 6.0 * hot + 2.0 * (now - self.t - hot)
        self.hot_until = now + self.hold_s if self.busy else self.hot_until
        self.t = now
        return self.j


def powered(pred, meters):
    """`pred` whose calls draw 6 W on each of `meters()` (ConstantMeter's busy power), 2 W between them."""
    original = pred.predict_features

    def busy(features, lengths):
        for meter in meters():
            meter.energy_j()
            meter.busy = True
        try:
            return original(features, lengths)
        finally:
            for meter in meters():
                meter.energy_j()
                meter.busy = False
    pred.predict_features = busy
    return pred


def make_loader(spec, meter=None):
    made = {}

    def loader(bundle: Path, backend, threads):
        name = bundle.name
        if name == "broken":
            raise ArtifactError(f"'{bundle}' has no manifest.json; expected a bundle written by `edge-msa export`")
        pred = FakePredictor(spec, {"teacher": 0.004, "student": 0.001}.get(name, 0.002),
                             fail_batch=4 if name == "crashy" else None)
        if meter is not None:
            powered(pred, lambda: [meter])
        made[name] = pred
        return pred

    loader.made = made
    return loader


def _bundles(tmp_path, *names):
    """Bundle folders holding a graph file (teacher 4x the student's bytes) and a front-end file."""
    for n in names:
        (tmp_path / n).mkdir()
        (tmp_path / n / "model.onnx").write_bytes(b"x" * (4000 if n == "teacher" else 1000))
        (tmp_path / n / "text_encoder.onnx").write_bytes(b"x" * 500)
    return [tmp_path / n for n in names]


def fixed_cold_start(bundle, backend, threads):
    """Cold-start figures without fresh processes: those run the real runtime, and the fakes' bundles are empty
    folders (tests/test_bench_load_and_data.py runs them on real bundles)."""
    return {"cold_start_ms": 30.0, "load_ms": 10.0, "cold_start_rss_mb": 80.0, "cold_start_runs": 1}


FAST = dict(min_time=0.05, min_runs=5, warmup=2, energy_window=0.1, idle_settle=0, progress=False,
            cold_start=fixed_cold_start)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """One sweep shared by the tests that read its report (it takes a few seconds)."""
    spec = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4))
    splits = DatasetSplits(spec, *(make_featureset(spec, n, seed) for n, seed in ((64, 0), (32, 1), (32, 2))))
    tmp_path = tmp_path_factory.mktemp("sweep")
    meter = ConstantMeter()
    loader = make_loader(spec, meter)
    bundles = _bundles(tmp_path, "teacher", "broken", "crashy", "student")
    out = run_bench(bundles, data=splits, out=tmp_path / "report", batches=(1, 4),
                    modalities=("all", "text+audio"), meter=meter, loader=loader, argv=["edge-msa", "bench", "x"],
                    **FAST)
    assert all(p.closed for p in loader.made.values())
    return out


def test_report_json_schema_and_rows(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["system"]) >= {"device", "cpu", "gpu", "os", "versions", "command"}
    assert report["system"]["command"] == "edge-msa bench x" and "numpy" in report["system"]["versions"]
    rows = report["rows"]
    assert len(rows) == 4 * 2 * 2
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(Path(r["bundle"]).name, r["batch"]) for r in ok} == {("teacher", 1), ("teacher", 4), ("student", 1),
                                                                  ("student", 4), ("crashy", 1)}
    for r in ok:
        assert ROW_KEYS <= set(r)
        assert set(r["latency_ms"]) == {"p50", "p90", "p99", "mean"}
        assert set(r["metrics"]) == set(METRIC_KEYS)
        assert isinstance(r["energy_mj_per_item"], float) and "energy" not in r
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / r["latency_ms"]["mean"], rel=1e-6)
        assert r["skip_rate"] == pytest.approx(0.5 if r["modalities"] == "all" else 0.0)
        assert set(r["stages_ms"]) == {"encode_text", "fuse", "total"}
        assert r["peak_rss_mb"] > 10 and isinstance(r["cold_start_rss_mb"], float)


def test_latency_follows_the_fake_sleeps_and_energy_subtracts_idle(report_dir):
    rows = {(Path(r["bundle"]).name, r["batch"], r["modalities"]): r
            for r in json.loads((report_dir / "report.json").read_text())["rows"]}
    teacher, student = rows[("teacher", 1, "all")], rows[("student", 1, "all")]
    # sleeps are lower bounds; upper bounds would depend on machine load (issue 10: no test may)
    assert teacher["latency_ms"]["p50"] >= 4.0 and student["latency_ms"]["p50"] >= 1.0
    # 6 W busy - 2 W idle = 4 W above idle, so mJ/item ~= 4 W x seconds per item (latency per item)
    per_item_s = 1.0 / teacher["throughput"]
    assert teacher["energy_mj_per_item"] == pytest.approx(4.0 * 1e3 * per_item_s, rel=0.35)
    assert teacher["idle_w"] == pytest.approx(2.0, rel=1e-3)
    assert "fake (test meter)" in teacher["energy_method"] and "idle power" in teacher["energy_method"]


def test_failed_rows_say_why_and_the_sweep_continues(report_dir):
    rows = json.loads((report_dir / "report.json").read_text())["rows"]
    broken = [r for r in rows if Path(r["bundle"]).name == "broken"]
    assert len(broken) == 4 and all(r["status"].startswith("failed: load: ") and "manifest.json" in r["status"]
                                    for r in broken)
    crashy4 = [r for r in rows if Path(r["bundle"]).name == "crashy" and r["batch"] == 4]
    assert crashy4 and all(r["status"] == "failed: RuntimeError: fake runtime crash at this batch size"
                           for r in crashy4)
    assert any(Path(r["bundle"]).name == "student" and r["status"] == "ok" for r in rows)  # after the failures


def test_markdown_and_png(report_dir):
    md = (report_dir / "report.md").read_text()
    assert "| bundle | model | precision | model KB | bundle MB | batch | modalities | input | status |" in md
    assert "every MB is 10^6 bytes (the RSS figures too" in md  # load MB and peak RSS MB were MiB
    assert "## Ratios vs the first bundle (teacher)" in md
    ratio_line = next(l for l in md.splitlines() if l.startswith("| student | 1 | all |"))
    speedup = float(ratio_line.split("|")[4].strip().rstrip("x"))
    rows_by = {(Path(r["bundle"]).name, r["batch"], r["modalities"]): r
               for r in json.loads((report_dir / "report.json").read_text())["rows"]}
    p90 = {n: rows_by[(n, 1, "all")]["latency_ms"]["p90"] for n in ("teacher", "student")}
    assert speedup == pytest.approx(p90["teacher"] / p90["student"], abs=0.006)  # first/this, whatever the load
    assert ratio_line.split("|")[5].strip() == "4.00x"  # model graph bytes: 4000 / 1000
    rows = json.loads((report_dir / "report.json").read_text())["rows"]
    student = next(r for r in rows if Path(r["bundle"]).name == "student" and r["status"] == "ok")
    assert (student["model_bytes"], student["bundle_bytes"]) == (1000, 1500)
    assert "failed: load:" in md and "## Energy method" in md
    png = (report_dir / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_no_matplotlib_skips_png_with_a_note(tmp_path, tiny_splits, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", meter="none",
                    loader=make_loader(tiny_splits.spec), **FAST)
    assert not (out / "report.png").exists()
    assert "matplotlib is not installed" in (out / "report.md").read_text()
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["energy"] == "unavailable: energy metering turned off (--meter none)"
    assert "energy_mj_per_item" not in row


def test_without_data_accuracy_is_unavailable_and_inputs_synthetic(tmp_path, tiny_spec):
    out = run_bench(_bundles(tmp_path, "student"), out=tmp_path / "r", modalities=("text",), meter="none",
                    loader=make_loader(tiny_spec), **FAST)
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["status"] == "ok" and row["inputs"].startswith("synthetic")
    assert row["metrics"] == "unavailable: no --data (the bundle's features are not MOSI-U's)"
    assert "no successful row has accuracy" in (out / "report.md").read_text()


class TokenIdPredictor(FakePredictor):
    """A token-id bundle ("wordpiece:" text): refuses text that is not whole ids below its vocabulary, as the
    runtime does."""

    text_encoder = SimpleNamespace(vocab_size=30)

    def predict_features(self, features, lengths):
        ids = features["text"]
        if (ids != np.rint(ids)).any() or ids.min() < 0 or ids.max() >= self.text_encoder.vocab_size:
            raise InputError(f"text token ids must be whole numbers in [0, 30); got [{ids.min()}, {ids.max()}]")
        return super().predict_features(features, lengths)


TOKEN_SPEC = FeatureSpec(dims=(1, 5, 7), max_lens=(9, 3, 4), front_ends=("wordpiece:0123456789ab", "x", "y"))


def test_without_data_a_token_id_bundle_is_timed_on_valid_token_ids(tmp_path):
    out = run_bench(_bundles(tmp_path, "student"), out=tmp_path / "r", modalities=("all", "text"), meter="none",
                    loader=lambda bundle, backend, threads: TokenIdPredictor(TOKEN_SPEC, 0.001), **FAST)
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["inputs"].startswith("synthetic")


def test_without_data_a_token_id_bundle_lacking_its_tokenizer_fails_its_rows(tmp_path):
    """No vocabulary size, no valid synthetic ids: its rows say so and the sweep still writes the report."""
    out = run_bench(_bundles(tmp_path, "student"), out=tmp_path / "r", modalities=("text",), meter="none",
                    loader=lambda bundle, backend, threads: FakePredictor(TOKEN_SPEC, 0.001), **FAST)
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["status"].startswith("failed: synthetic inputs:") and "vocabulary size" in row["status"]


def test_bad_arguments_fail_before_timing(tmp_path, tiny_splits):
    with pytest.raises(InputError, match="did you mean 'audio'"):
        run_bench(["x"], modalities=("text+audoi",), out=tmp_path / "r")
    for bad, message in (({"batches": (0,)}, "batches = 0; expected >= 1"),
                         ({"batches": ()}, "no batch size given; expected one or more batch sizes >= 1"),
                         ({"min_time": float("inf")}, "min_time = inf; expected a finite number >= 0"),
                         ({"min_time": float("nan")}, "min_time = nan; expected a finite number >= 0"),
                         ({"energy_window": float("nan")}, "energy_window = nan; expected a finite number > 0"),
                         ({"idle_settle": float("inf")}, "idle_settle = inf; expected a finite number >= 0"),
                         ({"idle_settle": -1.0}, "idle_settle = -1.0; expected >= 0"),
                         ({"min_runs": 0}, "min_runs = 0; expected >= 1"), ({"warmup": -1}, "warmup = -1; expected >= 0")):
        with pytest.raises(InputError, match=f"^{re.escape(message)}$"):  # Python keywords, one knob: it named the
            run_bench(["x"], out=tmp_path / "r", **{**FAST, **bad})  # flags and every knob; inf: never ended
    for twice, message in ((dict(bundles=["b1", "./b1"]), "bundle './b1' is given twice (also as 'b1')"),
                           (dict(batches=(1, 4, 1)), "batch size '1' is given twice"),
                           (dict(modalities=("text+audio", "audio+text")), "subset 'audio+text' is given twice")):
        with pytest.raises(InputError, match=re.escape(message)):  # the same rows under one name, timed twice
            run_bench(**{"bundles": ["b1"], **twice}, out=tmp_path / "r", **FAST)
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an earlier bench report"):
        run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=keep, meter="none",
                  loader=make_loader(tiny_splits.spec), **FAST)
    assert (keep / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("bad, message", [({"batches": (1.5,)}, "batches = 1.5; expected a whole number >= 1"),
                                          ({"batches": ("2",)}, "batches = '2'; expected a whole number >= 1"),
                                          ({"batches": (True,)}, "batches = True; expected a whole number >= 1"),
                                          ({"min_runs": 2.5}, "min_runs = 2.5; expected a whole number >= 1"),
                                          ({"warmup": 0.5}, "warmup = 0.5; expected a whole number >= 0"),
                                          ({"min_time": "1"}, "min_time = '1'; expected a number >= 0")])
def test_counts_from_python_are_whole_numbers(tmp_path, bad, message):
    """The CLI parses these with type=int; from Python batch 1.5 ran as batch 1 (0.5 warm-up calls as none), and a
    string was a bare TypeError from the comparison (check_range's whole=True; the CLI's wording is unchanged)."""
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        run_bench(["x"], out=tmp_path / "r", **{**FAST, **bad})
    assert list(tmp_path.iterdir()) == []


def test_bench_cli_names_its_flags_in_range_errors(tmp_path, capsys):
    """The bench CLI's bad numbers are named by the flags typed (named_as_flags), one knob a line: it said "need finite
    --energy-window > 0, --min-time >= 0 and --idle-settle >= 0 seconds, ..." with every value, to Python callers too."""
    for flags, message in ((["--batch", "0"], "--batch 0; expected >= 1"),
                           (["--energy-window", "0"], "--energy-window 0; expected > 0"),
                           (["--min-time", "inf"], "--min-time inf; expected a finite number >= 0"),
                           (["--min-runs", "0"], "--min-runs 0; expected >= 1")):
        assert main(["bench", str(tmp_path / "b"), "--out", str(tmp_path / "r"), *flags]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


def test_compare_matches_subsets_however_typed(tmp_path, tiny_splits, capsys):
    """Rows are keyed by the canonical subset: `TEXT` / `audio+text` rows did not match `text` / `text+audio` rows in
    --compare ("no successful rows with the same ... modalities")."""
    reports = []
    for name, subsets in (("a", ("TEXT", "audio+text", "text+audio+video")), ("b", ("text", "text+audio", "ALL"))):
        (tmp_path / name).mkdir()
        reports.append(run_bench(_bundles(tmp_path / name, "student"), data=tiny_splits, out=tmp_path / name / "r",
                                 modalities=subsets, meter="none", loader=make_loader(tiny_splits.spec),
                                 **FAST) / "report.json")
    assert load_report(reports[0])["settings"]["modalities"] == ["text", "text+audio", "all"]
    assert main(["bench", "--compare", *map(str, reports), "--out", str(tmp_path / "cmp")]) == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert [r["modalities"] for r in rows] == ["text", "text+audio", "all"]


def test_modality_subsets_are_read_in_any_case():
    from edge_msa.benchmarks.inputs import parse_subset  # `--modalities TEXT` was an unknown modality 'TEXT'

    assert parse_subset("Text+AUDIO") == ("text", "audio")
    assert parse_subset("ALL") == MODALITIES
    with pytest.raises(InputError, match="did you mean 'audio'"):
        parse_subset("TEXT+Audoi")


def test_pareto_front():
    assert pareto_front([(1, 0.7), (2, 0.8), (3, 0.75), (4, 0.9), (1.5, 0.6)]) == [(1, 0.7), (2, 0.8), (4, 0.9)]


def test_compare_ratios_and_cli(tmp_path, tiny_splits, capsys):
    a = run_bench(_bundles(tmp_path, "teacher"), data=tiny_splits, out=tmp_path / "a", meter="none",
                  loader=make_loader(tiny_splits.spec), **FAST)
    (tmp_path / "b").mkdir()
    b = run_bench(_bundles(tmp_path / "b", "student"), data=tiny_splits, out=tmp_path / "b" / "rep", meter="none",
                  loader=make_loader(tiny_splits.spec), **FAST)
    entries = compare_reports(load_report(a / "report.json"), load_report(b / "report.json"))
    assert {(e["batch"], e["modalities"]) for e in entries} == {(1, "all"), (1, "text")}
    ra, rb = (json.loads((d / "report.json").read_text())["rows"][0] for d in (a, b))
    assert entries[0]["p90_ratio"] == pytest.approx(rb["latency_ms"]["p90"] / ra["latency_ms"]["p90"])
    assert entries[0]["p90_ratio"] < 0.8  # student (1 ms) vs teacher (4 ms)
    assert main(["bench", "--compare", str(a / "report.json"), str(b / "report.json"), "--out",
                 str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "p90 B/A" in printed and (tmp_path / "cmp" / "compare.md").read_text() == printed
    assert main(["bench", "--compare", str(a / "report.json"), str(tmp_path / "nope.json")]) == 2
    assert "cannot read report" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("mine")
    for before, after, message in (([str(tmp_path / "teacher")], [], "--compare reads reports and times nothing; got "
                                    "bundles too"), ([], ["--out", str(tmp_path / "file.txt")], "is a file; expected "
                                    "a folder")):
        assert main(["bench", *before, "--compare", str(a / "report.json"), str(b / "report.json"), *after]) == 2
        captured = capsys.readouterr()  # the bundle was ignored; a file as --out failed in a traceback after the table
        assert captured.out == "" and message in captured.err and captured.err.count("\n") == 1
    assert (tmp_path / "file.txt").read_text() == "mine"


def test_cli_sweep_with_only_a_missing_bundle_writes_failed_rows_and_exits_2(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["bench", str(tmp_path / "missing"), "--out", str(out), "--meter", "none", "--quiet",
                 "--min-time", "0", "--warmup", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: every row failed") and "is not a directory" in err and "\n" not in err
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["status"].startswith("failed: load: ") and "is not a directory" in row["status"]
    assert main(["bench", "--out", str(out)]) == 2 and "no bundle given" in capsys.readouterr().err


NO_TORCH = (r'''
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
from pathlib import Path
import edge_msa.benchmarks, edge_msa.benchmarks.meters.nvml, edge_msa.benchmarks.meters.rapl, '''  # one script line
            r'''edge_msa.benchmarks.meters.tegrastats
import edge_msa.cli.bench, edge_msa.runtime.predictor, edge_msa.runtime.evaluate
from edge_msa.benchmarks import run_bench
from edge_msa.spec import FeatureSpec
spec = FeatureSpec(dims=(4, 3, 2), max_lens=(5, 1, 1))
class P:
    manifest = {"feature_spec": spec.to_dict(), "precision": "fp32", "model": "p"}
    def predict_features(self, f, l):
        return np.zeros(len(l["text"])), np.ones((len(l["text"]), 3), bool)
tmp = Path(sys.argv[1]); (tmp / "b").mkdir()
run_bench([tmp / "b"], out=tmp / "r", meter="none", min_time=0, min_runs=2, warmup=0, progress=False,
          loader=lambda b, backend, threads: P(), cold_start=lambda b, backend, threads: {})
assert (tmp / "r" / "report.json").is_file()
assert "torch" not in sys.modules, "torch was imported"
print("ok")
''')


def test_benchmarks_never_import_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_bench_flags_take_run_bench_defaults_and_say_them(capsys):
    """The CLI repeated run_bench's defaults (--energy-window 10, --meter's choices) and its --idle-settle help said
    5 while the default lived in IDLE_SETTLE_S; now it reads them, and building the parser (every `edge-msa` call)
    does not import the sweep to do so."""
    import inspect

    from edge_msa.benchmarks.meters import ENERGY_WINDOW_S, IDLE_SETTLE_S, METERS
    from edge_msa.cli import build_parser

    args = build_parser().parse_args(["bench", "b"])
    given = {name: p.default for name, p in inspect.signature(run_bench).parameters.items()}
    cli = {"batches": tuple(args.batch), "modalities": tuple(args.modalities), "split": args.split,
           "min_time": args.min_time, "min_runs": args.min_runs, "warmup": args.warmup, "meter": args.meter,
           "energy_window": args.energy_window}
    assert cli == {name: given[name] for name in cli} and given["energy_window"] == ENERGY_WINDOW_S
    assert args.idle_settle == IDLE_SETTLE_S
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(METERS) + "}" in text
    assert f"(default: {ENERGY_WINDOW_S:g})" in text and f"levels first (default: {IDLE_SETTLE_S:g})" in text
    code = ("import sys; from edge_msa.cli import build_parser; build_parser(); "
            "print('edge_msa.benchmarks.sweep' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout == "False\n"


def test_a_missing_data_file_is_one_line_before_timing(tmp_path, capsys):
    """It used to end in a FileNotFoundError traceback from the .npz sniffer (exit 1)."""
    with pytest.raises(InputError, match="dataset not found"):
        run_bench(["b"], data=tmp_path / "missing.npz", out=tmp_path / "r", **FAST)
    assert main(["bench", "b", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("error: dataset not found")


class NoTokenizerPredictor(FakePredictor):
    """A bundle folder whose tokenizer.json is gone: the runtime raises on first use of its text front end."""

    @property
    def dataset_text_front_end(self):
        raise InputError("tokenizer file not found: bundle/tokenizer.json")


def test_a_bundle_without_its_tokenizer_fails_its_rows_not_the_sweep(tmp_path, tiny_splits):
    """It used to end the whole sweep (other bundles' rows lost, no report) from outside the per-bundle guard. Its
    text front end is part of its cold start (load_target), so it fails there, in its own rows; it used to lose only
    its accuracy, and then fail every raw-text row at the first text."""
    def loader(bundle, backend, threads):
        return (NoTokenizerPredictor if bundle.name == "teacher" else FakePredictor)(tiny_splits.spec, 0.001)

    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r",
                    modalities=("text",), meter="none", loader=loader, **FAST)
    teacher, student = json.loads((out / "report.json").read_text())["rows"]
    assert teacher["status"] == "failed: load: tokenizer file not found: bundle/tokenizer.json"
    assert student["status"] == "ok" and isinstance(student["metrics"], dict)


def test_a_meter_is_open_only_while_it_measures_so_no_row_is_timed_beside_it(tmp_path, tiny_splits, monkeypatch):
    """A background-sampling meter (tegrastats) left open ran beside the latency timing of every row after the
    first, but not the first's: rows were timed under different conditions. Now each row's windows open and close
    it; idle power is measured once."""
    opened: list[ConstantMeter] = []

    class Tracked(ConstantMeter):
        live = False

        def close(self):
            self.live = False

    def fake_open(name, on_gpu=False, family=None):
        opened.append(Tracked())
        opened[-1].live = True
        return opened[-1]

    monkeypatch.setattr("edge_msa.benchmarks.sweep.open_meter", fake_open)
    live_at_load = []

    def loader(bundle, backend, threads):  # the student loads (and is timed) after the teacher's energy windows
        live_at_load.append(any(m.live for m in opened))
        # busy above idle: at 2 W throughout, active - idle was clock noise of either sign, and a row's energy
        # flipped to "unavailable: not above idle" under load
        return powered(FakePredictor(tiny_splits.spec, 0.001), lambda: opened)

    out = run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r",
                    modalities=("text",), meter="auto", min_time=0, min_runs=3, warmup=0, energy_window=0.02,
                    idle_settle=0, progress=False, loader=loader, cold_start=fixed_cold_start)
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert live_at_load == [False, False]
    # one open to check --energy-window before any timing, then one per row, each closed after its windows
    assert len(opened) == 3 and not any(m.live for m in opened)
    assert all(isinstance(r["energy_mj_per_item"], float) for r in rows)
    assert rows[0]["idle_w"] == rows[1]["idle_w"]  # idle measured once, in the first row's windows


def test_bundles_are_timed_side_by_side(tmp_path, tiny_splits):
    """The latency calls of the bundles interleave (they used to run bundle after bundle, so a burst of load
    during one bundle's turn moved the ratios), and every bundle stays loaded until the last row is timed."""
    calls: list[str] = []

    class Logged(FakePredictor):
        def predict_features(self, features, lengths):  # the timed call (these features have no transcripts)
            calls.append(self.name)
            return super().predict_features(features, lengths)

    def loader(bundle, backend, threads):
        pred = Logged(tiny_splits.spec, 0.001)
        pred.name = bundle.name
        return pred

    run_bench(_bundles(tmp_path, "teacher", "student"), data=tiny_splits, out=tmp_path / "r", modalities=("text",),
              meter="none", min_time=4 * BLOCK_S, min_runs=20, warmup=0, progress=False, loader=loader,
              cold_start=fixed_cold_start)
    switches = sum(a != b for a, b in zip(calls, calls[1:]))
    assert switches >= 6  # one after the other: 1 switch; in blocks of BLOCK_S timed seconds: 7


def test_compare_says_which_settings_differ(tmp_path, tiny_splits, capsys):
    """A 1-thread report against a 2-thread one: the ratios mix the thread count into the device comparison, and
    the comparison used to print them without a word (then said it in compare.md only, not in compare.json)."""
    reports = []
    for name, threads in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        reports.append(run_bench(_bundles(tmp_path / name, "student"), data=tiny_splits, out=tmp_path / name / "r",
                                 modalities=("text",), meter="none", threads=threads,
                                 loader=make_loader(tiny_splits.spec), **FAST) / "report.json")
    assert main(["bench", "--compare", *map(str, reports), "--out", str(tmp_path / "cmp")]) == 0
    assert "Settings differ (the ratios include their effect): threads A 1, B 2." in capsys.readouterr().out
    written = json.loads((tmp_path / "cmp" / "compare.json").read_text())  # said in the JSON too, not only the .md
    assert written["settings_differ"] == {"threads": {"a": 1, "b": 2}} and len(written["rows"]) == 1
    copy = str(shutil.copy(reports[0], tmp_path / "copy.json"))  # the same file twice is refused
    assert main(["bench", "--compare", str(reports[0]), copy]) == 0
    assert "Settings differ" not in capsys.readouterr().out


def test_threads_zero_is_the_runtimes_default_like_no_flag(tmp_path, tiny_splits, capsys):
    """--threads 0 means the runtime's default in bench as in serve and train (errors.checked_threads); it was
    refused here, and recorded as 0 it would read as a setting that differs from a report without the flag."""
    reports = []
    for name, threads in (("a", 0), ("b", None)):
        (tmp_path / name).mkdir()
        reports.append(run_bench(_bundles(tmp_path / name, "student"), data=tiny_splits, out=tmp_path / name / "r",
                                 modalities=("text",), meter="none", threads=threads,
                                 loader=make_loader(tiny_splits.spec), **FAST) / "report.json")
    assert json.loads(reports[0].read_text())["settings"]["threads"] is None
    # ONNX Runtime's default is one thread per physical core; the rows said "(N logical CPUs)", os.cpu_count()
    rows = json.loads(reports[0].read_text())["rows"]
    assert rows and {row["threads"] for row in rows} == {"runtime default (ONNX Runtime: one per physical core)"}
    assert main(["bench", "--compare", *map(str, reports), "--out", str(tmp_path / "cmp")]) == 0
    assert "Settings differ" not in capsys.readouterr().out
    with pytest.raises(InputError, match=r"^threads = -1; expected >= 0 \(0: the library's default\)$"):
        run_bench(_bundles(tmp_path, "c"), data=tiny_splits, out=tmp_path / "c" / "r", threads=-1,
                  loader=make_loader(tiny_splits.spec), **FAST)
    assert main(["bench", "b", "--threads", "-1", "--out", str(tmp_path / "d")]) == 2  # the flag as typed
    assert capsys.readouterr().err.startswith("error: --threads -1; expected >= 0 (0: the library's default)")


def test_idle_power_is_measured_once_the_clocks_settle(tmp_path, tiny_splits):
    """Idle was measured right after the timing, while the clocks were still up: 6 W of a 2 W idle counted as idle,
    and the energy per item above it came out too low. After --idle-settle it reads 2 W; an idle window that still
    falls is flagged in the rows' warnings."""
    rows = {}
    for settle in (0.0, 0.3):
        meter = CoolingMeter(hold_s=0.2)
        (tmp_path / str(settle)).mkdir()
        out = run_bench(_bundles(tmp_path / str(settle), "student"), data=tiny_splits, out=tmp_path / str(settle) / "r",
                        modalities=("text",), meter=meter, loader=make_loader(tiny_splits.spec, meter),
                        **{**FAST, "energy_window": 0.3, "idle_settle": settle})
        rows[settle] = json.loads((out / "report.json").read_text())["rows"][0]
    assert rows[0.3]["idle_w"] == pytest.approx(2.0, rel=1e-3) and rows[0.3]["idle_drift"] == pytest.approx(0, abs=1e-3)
    assert "after 0.3 s of sleep" in rows[0.3]["energy_method"]
    assert not [w for w in rows[0.3]["warnings"] if "idle" in w]
    assert rows[0.0]["idle_w"] > 2.1 and rows[0.0]["idle_drift"] < -0.05
    assert any("idle power changed" in w and "--idle-settle" in w for w in rows[0.0]["warnings"])


def test_report_command_reads_as_the_console_command_however_it_was_started():
    from edge_msa.benchmarks.sysinfo import command_line

    assert command_line(["/venv/lib/python3.11/site-packages/edge_msa/__main__.py", "bench", "b dir"]) == \
        "edge-msa bench 'b dir'"
    assert command_line(["/venv/bin/edge-msa", "bench", "b"]) == "edge-msa bench b"
    assert command_line(["python", "script.py"]) == "python script.py"


def test_stages_of_a_row_by_row_batch_add_up_encoders_only_some_items_ran(tiny_spec):
    """An INT8 bundle runs a batch one item at a time (Predictor.row_by_row), so each item's ms names the encoders
    its own gate ran; the first item's skipped audio once failed the whole row (KeyError: 'encode_audio')."""
    from edge_msa.benchmarks.inputs import Batch
    from edge_msa.benchmarks.target import Target

    class RowByRow(FakePredictor):
        def predict_batch(self, items):
            return [SimpleNamespace(ms={"encode_text": 1.0, "fuse": 0.5}),
                    SimpleNamespace(ms={"encode_text": 1.0, "encode_audio": 0.25, "fuse": 0.5})]

    fs = make_featureset(tiny_spec, 2)
    batch = Batch({m: fs.features[m] for m in MODALITIES}, {m: fs.lengths[m] for m in MODALITIES})
    target = Target(Path("int8"), None, RowByRow(tiny_spec, 0.0), 1)
    assert target.stages_ms(batch) == {"encode_text": 2.0, "fuse": 1.0, "encode_audio": 0.25}


class StagedPredictor(FakePredictor):
    """A runtime whose gate runs some encoders in some calls only: predict_batch reports the stage ms that
    `stages(call, first item)` gives (calls counted from 0), with their total, after `call_s` of sleep."""

    def __init__(self, spec, stages: Callable[[int, dict], dict], call_s: float = 0.0) -> None:
        super().__init__(spec, 0.0)
        self.stages, self.call_s, self.calls = stages, call_s, 0

    def predict_batch(self, items):
        time.sleep(self.call_s)
        ms = self.stages(self.calls, items[0])
        self.calls += 1
        return [SimpleNamespace(ms={**ms, "total": sum(ms.values())})] * len(items)


def test_stages_are_per_call_over_all_calls_with_how_often_each_ran(tmp_path, tiny_splits):
    """The gate skips audio in some calls: its per-call ms counts those calls as 0 (ran in 8 of 32 calls, 4 ms each:
    1.0 ms per call), so the stages add up to total; the median over only the calls it ran in read 4 ms per call.
    total covers the timed stages only, below the p50: the rest of the same calls is shown as untimed."""
    def stages(call, item):  # 4 ms a call, of which the runtime times 1.5 ms (5.5 with audio)
        audio = {"encode_audio": 4.0} if call % 4 == 1 else {}  # calls 1, 5, ..., 29 of the 32 extra calls
        return {"encode_text": 1.0, **audio, "fuse": 0.5}

    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "report", modalities=("all",),
                    meter="none", loader=lambda *_: StagedPredictor(tiny_splits.spec, stages, call_s=0.004), **FAST)
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["stages_ms"] == pytest.approx({"encode_text": 1.0, "encode_audio": 1.0, "fuse": 0.5, "total": 2.5})
    assert row["stages_ran"] == {"encode_text": 1.0, "fuse": 1.0, "encode_audio": 0.25, "total": 1.0}
    untimed = row["stages_untimed_ms"]  # the median call: 4 ms and more of wall time, 1.5 ms of it timed stages
    assert 2.5 <= untimed < 2.5 + 4.0
    assert f"| student | 1 | all | encode_text 1.00, fuse 0.50, encode_audio 1.00 (ran in 25% of calls, 4.00 when it " \
           f"ran), total 2.50, untimed {untimed:.2f} |" in (out / "report.md").read_text()  # total last, then untimed


def test_stage_figures_shrug_off_a_slow_call_and_see_every_timed_batch(tmp_path, tiny_splits):
    """One call stalled by a busy VM (encode_text 100 ms instead of 1 ms) moved the mean over 10 calls to 10.9 ms; and
    stages_ran came from the first 10 batches only, so audio, which the gate runs for the 2nd half of the 32 timed
    batches only, read as never run. The figure is now each stage's median over the calls it ran in times the share
    of calls it ran in, over calls spread across every timed batch."""
    later_audio = tiny_splits.test.features["audio"][16:, 0, 0]  # the 2nd half of the test split, batch 1

    def stages(call, item):
        audio = {"encode_audio": 4.0} if np.isin(item["audio"][0, 0], later_audio) else {}
        return {"encode_text": 100.0 if call == 1 else 1.0, **audio, "fuse": 0.5}  # the 2nd call stalls

    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "report", modalities=("all",),
                    meter="none", loader=lambda *_: StagedPredictor(tiny_splits.spec, stages), **FAST)
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["stages_ms"] == pytest.approx({"encode_text": 1.0, "encode_audio": 2.0, "fuse": 0.5, "total": 3.5})
    assert row["stages_ran"] == {"encode_text": 1.0, "encode_audio": 0.5, "fuse": 1.0, "total": 1.0}
    assert row["stages_calls"] == 32


def test_an_energy_window_too_short_for_the_meter_is_unavailable_and_the_row_keeps_its_latency(tmp_path, tiny_splits):
    """A 0.1 s window on a meter that refreshes every second gave an energy per item; now the row says why not."""
    class SlowMeter(ConstantMeter):
        refresh_s = 1.0

    out = run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "report", modalities=("all",),
                    meter=SlowMeter(), loader=lambda *_: FakePredictor(tiny_splits.spec, 0.0), **FAST)
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["status"] == "ok" and row["latency_ms"]["p50"] >= 0 and "energy_mj_per_item" not in row
    assert row["energy"].startswith("unavailable: a 0.") and "under 20 of the fake meter's 1000 ms" in row["energy"]
    assert f"- energy {row['energy']}" in (out / "report.md").read_text()


def test_an_energy_window_longer_than_the_meters_counter_wrap_is_refused_before_any_timing(tmp_path, tiny_splits,
                                                                                          capsys, monkeypatch):
    """It was refused only as each row's window ended (after the settle, idle and active windows), and then as every
    row's 'energy unavailable': one line and exit 2 now, before a call is timed, nothing written."""
    class WrappingMeter(ConstantMeter):
        name, max_window_s = "rapl", 0.05

    timed = []
    monkeypatch.setattr("edge_msa.benchmarks.sweep.measure_side_by_side", lambda *a, **k: timed.append(a))
    with pytest.raises(InputError, match=r"^--energy-window 0.1: a 0.1 s window is longer than the 0.05 s the rapl "
                       r"counter takes to wrap .*; expected --energy-window of at most 0.05 s with the rapl meter"):
        run_bench(_bundles(tmp_path, "student"), data=tiny_splits, out=tmp_path / "r", meter=WrappingMeter(),
                  loader=make_loader(tiny_splits.spec), **FAST)
    monkeypatch.setattr("edge_msa.benchmarks.sweep.open_meter", lambda name, on_gpu=False, family=None: WrappingMeter())
    monkeypatch.setattr("edge_msa.benchmarks.coldstart.runtime_loader", make_loader(tiny_splits.spec))
    monkeypatch.setattr("edge_msa.benchmarks.sweep.measure_cold_start", fixed_cold_start)
    assert main(["bench", str(tmp_path / "student"), "--meter", "rapl", "--energy-window", "0.1",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: --energy-window 0.1: a 0.1 s window is longer than")
    assert not timed and not (tmp_path / "r").exists()


def test_a_jsonl_payload_is_one_body_per_line_in_any_case(tmp_path):
    """The load generator read `inputs.JSONL` as one body (two JSON objects: every request a 400)."""
    from edge_msa.benchmarks.load import payloads

    for name in ("inputs.jsonl", "inputs.JSONL"):
        (tmp_path / name).write_text('{"text": "a"}\n\n{"text": "b"}\n')
        assert payloads(tmp_path / name) == [b'{"text": "a"}', b'{"text": "b"}']


def test_load_refuses_a_url_without_a_host(capsys):
    """`--url localhost:8000/v1/predict` (no scheme) has no host to urlsplit: each client thread died on it with a
    TypeError and the table reported 0 requests as if it had measured them."""
    from edge_msa.benchmarks.load import main as load_main

    assert load_main(["--url", "localhost:8000/v1/predict", "--requests", "1", "--duration", "1"]) == 2
    assert capsys.readouterr().err == ("error: url 'localhost:8000/v1/predict' has no host; expected "
                                       "http://HOST[:PORT]/PATH\n")


STATUS_TEXT = "Name:\tpython\nVmHWM:\t 2000000 kB\nVmRSS:\t 1000000 kB\n"  # /proc's kB are KiB


def test_rss_figures_are_mb_of_a_million_bytes_like_bundle_mb(tmp_path, monkeypatch):
    """VmRSS / VmHWM kB were divided by 1024, MiB under the report's "MB" (4.6 % below the bundle MB beside them)."""
    from edge_msa.benchmarks import memory

    (tmp_path / "status").write_text(STATUS_TEXT)
    monkeypatch.setattr(memory, "STATUS", tmp_path / "status")
    assert memory.peak_rss_mb() == 2048.0  # 2 x 10^6 KiB = 2048 MB
    monkeypatch.setattr(memory, "STATUS", tmp_path / "missing")  # no /proc: getrusage's ru_maxrss
    import resource
    for platform, maxrss in (("linux", 10**6), ("darwin", 1024 * 10**6)):  # KiB on Linux, bytes on macOS
        monkeypatch.setattr(sys, "platform", platform)
        monkeypatch.setattr(resource, "getrusage", lambda who, maxrss=maxrss: SimpleNamespace(ru_maxrss=maxrss))
        assert memory.peak_rss_mb() == 1024.0


def test_the_load_generator_reads_rss_with_the_bench_reader_and_keeps_mib(monkeypatch):
    """Two VmRSS parsers, two units: the soak's `rss_mib` stays MiB (the README quotes it), from the same bytes."""
    from edge_msa.benchmarks import load
    from edge_msa.benchmarks.memory import status_bytes

    assert status_bytes(STATUS_TEXT, "VmRSS") == 1024 * 10**6 and status_bytes(STATUS_TEXT, "VmSwap") is None
    monkeypatch.setattr(load, "proc_file", lambda pid, name: STATUS_TEXT)
    assert load.rss_mib(1) == 10**6 / 1024
    monkeypatch.setattr(load, "proc_file", lambda pid, name: "Name:\tzombie\n")
    with pytest.raises(InputError, match="has no VmRSS; expected a live Linux process"):
        load.rss_mib(1)
