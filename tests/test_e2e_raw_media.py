"""The whole raw-media path on real CREMA-D clips: featurize -> train -> compress -> export -> predict.

Accuracy on 12 clips means nothing; the point is that every stage really runs on real media through the CLI.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import pytest

from edge_msa.cli import main
from conftest import DATA_ROOT

CREMAD = DATA_ROOT / "raw_av" / "cremad"
pytestmark = [pytest.mark.slow, pytest.mark.e2e,
              pytest.mark.skipif(not CREMAD.is_dir(), reason=f"CREMA-D clips not found at {CREMAD}")]


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Iterator[Path]:
    """The 12 clips featurized once by the CLI (2 s) for both tests, which only read the file: checked unchanged."""
    root = tmp_path_factory.mktemp("cremad_ds")
    ds = root / "ds.npz"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_MSA_CACHE", str(root / "cache"))
        assert main(["featurize", str(CREMAD), "--labels", str(CREMAD / "label.csv"), "--label-map", "cremad",
                     "--out", str(ds), "--quiet"]) == 0
    state = lambda: (sorted(p.name for p in root.rglob("*")), hashlib.sha256(ds.read_bytes()).hexdigest())  # noqa: E731
    before = state()
    yield ds
    assert state() == before


def test_featurize_train_compress_export_predict_on_real_clips(tmp_path, monkeypatch, capsys, cli_tiny_teacher, ds,
                                                               few_timings):
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    teacher, student, bundle = (tmp_path / n for n in ("teacher.pt", "student.pt", "bundle"))
    assert main(["train", "--model", "fd_cmdie_tiny", "--data", str(ds), "--epochs", "2", "--out", str(teacher),
                 "--text-encoder", "frozen", "--quiet"]) == 0  # the raw-media path; text fine-tuning is tested apart
    assert main(["compress", str(teacher), "--data", str(ds), "--epochs", "2", "--finetune-epochs", "1",
                 "--out", str(student), "--quiet"]) == 0
    report = json.loads(student.with_name("student.report.json").read_text())
    assert report["student"]["params"] > 0 and "targets" in report
    assert main(["export", str(student), "--format", "onnx", "--out", str(bundle), "--data", str(ds), "--quiet"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["parity"]["ok"] is True
    assert manifest["feature_spec"]["front_ends"] == ["minilm-l6-int8", "logmel-v1", "face-v1"]
    capsys.readouterr()
    assert main(["predict", str(bundle), "--text", "don't forget a jacket",
                 "--audio", str(CREMAD / "resampled" / "1001_DFA_HAP_XX.wav"),
                 "--video", str(CREMAD / "data" / "1001_DFA_HAP_XX.flv")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert -3.0 <= line["score"] <= 3.0
    assert "text" in line["ran"]
    assert set(line["ran"]) | set(line["skipped"]) == {"text", "audio", "video"}
    assert line["ms"]["total"] > 0


def test_pipeline_runs_every_stage_and_writes_the_bench_report(tmp_path, monkeypatch, capsys, cli_tiny_teacher, ds,
                                                               few_timings, few_bench_calls):
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["pipeline", "--model", "fd_cmdie_tiny", "--data", str(ds), "--out", str(out), "--epochs", "1",
                 "--min-time", "0.05", "--text-encoder", "frozen", "--quiet"]) == 0
    report = json.loads((out / "bench" / "report.json").read_text())
    assert {Path(r["bundle"]).name for r in report["rows"]} == {"teacher", "student", "student-int8"}
    assert all(r["status"] == "ok" for r in report["rows"]), [r["status"] for r in report["rows"]]
    assert (out / "student.report.json").is_file() and (out / "teacher.metrics.json").is_file()
    teacher_written = (out / "teacher.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["pipeline", "--model", "fd_cmdie_tiny", "--data", str(ds), "--out", str(out), "--epochs", "1",
                 "--min-time", "0.06", "--text-encoder", "frozen", "--quiet", "--resume"]) == 0
    stages = [line for line in capsys.readouterr().out.splitlines() if line.startswith("== ")]
    assert len(stages) == 6 and all("resumed" in line for line in stages[:5]), stages  # only the bench changed
    assert "resumed" not in stages[5] and (out / "teacher.pt").stat().st_mtime_ns == teacher_written
