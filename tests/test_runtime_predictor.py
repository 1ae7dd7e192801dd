"""The on-device runtime: torch-free loading and prediction, real skipping, media/text inputs, bad
inputs as one-line errors (CLI exit 2), eval on a featurized dataset."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
import warnings
from functools import partial

import numpy as np
import pytest

from edge_msa.checkpoint import save_checkpoint
from edge_msa.errors import ArtifactError, InputError
from edge_msa.data.lineage import file_sha256
from edge_msa.metrics import METRIC_KEYS
from edge_msa.models import create_model
from edge_msa.runtime import load
from edge_msa.runtime.onnxruntime_backend import OnnxRuntimeBackend
from edge_msa.spec import MODALITIES, PART_IO, PARTS, FeatureSpec
from edge_msa.export import export

from conftest import DATA_ROOT, make_featureset

SPEC = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4),
                   front_ends=("external:text-12", "external:declare-opensmile-73", "external:declare-3dcnn-100"))
MINILM_SPEC = FeatureSpec(dims=(384, 5, 7), max_lens=(16, 1, 1),
                          front_ends=("minilm-l6-int8", "external:declare-opensmile-73", "external:declare-3dcnn-100"))


def _export(tmp_path_factory, spec, name):
    model = create_model("student_tiny", spec)
    ckpt = save_checkpoint(tmp_path_factory.mktemp(name) / "s.pt", model, {})
    return export(ckpt, out=tmp_path_factory.mktemp(name) / "bundle", log=None)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _export(tmp_path_factory, SPEC, "ext")


@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory):
    return _export(tmp_path_factory, MINILM_SPEC, "minilm")


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(SPEC.max_len(m), SPEC.dim(m))).astype(np.float32) for m in MODALITIES}


def _cli(capfd, *args) -> subprocess.CompletedProcess:
    """`edge-msa ARGS` run in this process (a subprocess spends about a second importing), with what it wrote to
    file descriptors 1 and 2, onnxruntime's own log lines included."""
    from edge_msa.cli import main

    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def _cli_process(*args) -> subprocess.CompletedProcess:
    """`python -m edge_msa ARGS` in a fresh process: for checks of all a real run writes to stderr, which in this
    process would miss what imports and first-time warnings write (done here by earlier tests)."""
    return subprocess.run([sys.executable, "-m", "edge_msa", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_load_and_predict_without_torch(bundle, tmp_path):
    np.save(tmp_path / "a.npy", _arrays()["audio"])
    code = f"""
import json, sys
sys.modules['torch'] = None  # any torch import now fails
import numpy as np, edge_msa
from edge_msa.cli import main
p = edge_msa.runtime.load({str(bundle)!r})
r = p.predict(text=np.ones((4, 12), np.float32), audio=np.ones((2, 5), np.float32))
print(json.dumps(r.to_dict()))
assert isinstance(edge_msa.load({str(bundle)!r}), edge_msa.Predictor)
sys.exit(main(['predict', {str(bundle)!r}, '--audio', {str(tmp_path / 'a.npy')!r}]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first, cli = [json.loads(line) for line in r.stdout.splitlines()]
    assert first["ran"][0] == "text" and first["skipped"]["video"] == "missing"
    assert {"score", "polarity", "ran", "skipped", "ms"} <= set(cli) and cli["skipped"]["text"] == "missing"


def _torch_parts_predictor(model, thresholds):
    """The runtime's Predictor over the student's own torch parts (TorchBackend), so both sides see bit-identical
    gate outputs and only the skip rules themselves can differ."""
    import torch

    from edge_msa.runtime.backend import TensorInfo
    from edge_msa.runtime.manifest import Manifest
    from edge_msa.runtime.predictor import Predictor
    from edge_msa.runtime.torch_backend import TorchBackend

    config = model.export_config()
    backends = {}
    for part in PARTS:
        inputs, outputs = PART_IO[part]
        with torch.no_grad():
            example = config.example_inputs(part)
        infos = [TensorInfo(n, t.numpy().dtype, (None,) * t.dim()) for n, t in zip(inputs, example)]
        backends[part] = TorchBackend(config.module(part), infos, outputs, part)
    manifest = Manifest(feature_spec=model.spec, graphs={p: f"{p}.onnx" for p in PARTS}, layout="parts",
                        precision="fp32", model=model.model_name, skip_thresholds=list(thresholds))
    return Predictor(manifest, backends)


def test_torch_and_numpy_skip_rules_agree_at_and_near_the_threshold():
    """run_with_skipping (torch, the reference export is judged by) and the Predictor (numpy, on device) take the
    same audio/video decisions on random inputs, with each threshold exactly at a gate output, one float32 step
    either side, a quarter step above (a float64 value that rounds onto the gate output in float32), 0, 1 and
    uniform draws; some rows lack audio or video."""
    import torch

    from edge_msa.export.parity import to_torch_batch
    from edge_msa.models.student import run_with_skipping

    torch.manual_seed(0)
    model = create_model("student_tiny", SPEC).eval()
    fs = make_featureset(SPEC, 24, seed=3)
    fs.lengths["audio"][:5] = 0
    fs.lengths["video"][3:8] = 0
    batch = to_torch_batch(fs.features, fs.lengths)  # the same (B, L, d) the Predictor feeds its graphs
    with torch.no_grad():
        keep = model.keep(model.encode("text", batch["text"], batch["text_mask"]), batch).numpy()  # (B, 2) float32
    rng = np.random.default_rng(0)

    def near(column: int) -> list[float]:
        k = keep[rng.integers(len(keep)), column]
        up, down = np.nextafter(k, np.float32(2)), np.nextafter(k, np.float32(-1))
        return [float(k), float(up), float(down), float(k) + (float(up) - float(k)) / 4, 0.0, 1.0, rng.uniform()]

    predictor = _torch_parts_predictor(model, [0.0, 0.0])
    decided = 0
    for t_audio in near(0):
        for t_video in near(1):
            model.config_params["skip_thresholds"] = [t_audio, t_video]
            predictor.thresholds = [t_audio, t_video]
            ref_scores, ref_ran = run_with_skipping(model, batch)
            scores, ran = predictor.predict_features(fs.features, fs.lengths)
            assert np.array_equal(ran, ref_ran.numpy()), (t_audio, t_video)
            assert np.allclose(scores, ref_scores.numpy(), atol=1e-5)
            decided += int((keep == np.float32([t_audio, t_video])).sum())
    assert decided > 0  # some decisions really were taken exactly at a threshold


def test_skipped_encoders_are_not_run(bundle):
    a = _arrays()
    with load(bundle) as p:
        p.predict(text=a["text"])
        assert {k: b.calls for k, b in p.backends.items()} == \
            {"encode_text": 1, "gate": 0, "encode_audio": 0, "encode_video": 0, "fuse": 1}
        p.thresholds = [2.0, 0.0]  # keep is in [0, 1]: audio never worth it, video always
        r = p.predict(text=a["text"], audio=a["audio"], video=a["video"])
        assert r.ran == ["text", "video"] and r.skipped["audio"].startswith("gate: keep")
        assert p.backends["encode_audio"].calls == 0 and p.backends["encode_video"].calls == 1
        assert set(r.ms) == {"encode_text", "gate", "encode_video", "fuse", "total"}
        p.thresholds = [0.0, 0.0]
        scores, ran = p.predict_features({m: a[m][None] for m in MODALITIES})
        assert ran.all() and p.backends["encode_audio"].calls == 1


def test_gate_skip_means_the_media_front_end_never_runs(tmp_path_factory, tmp_path):
    """Raw media: the gate decides from h_text + presence BEFORE any audio/video front end, so a skipped
    modality's front end is not called and has no front-end time."""
    sf = pytest.importorskip("soundfile")
    pytest.importorskip("cv2")
    from test_features_video import write_video

    spec = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4), front_ends=("external:text-12", "logmel-v1", "face-v1"))
    bundle = _export(tmp_path_factory, spec, "media")
    clips = {"audio": tmp_path / "clip.wav", "video": tmp_path / "clip.avi"}  # opened (measured), never decoded
    sf.write(clips["audio"], np.zeros(800, np.float32), 8000)
    write_video(clips["video"], [np.zeros((48, 64, 3), np.uint8)] * 2)
    calls = {"audio": 0, "video": 0}

    def fake(m):
        def run(path):
            calls[m] += 1
            return np.ones((2, spec.dim(m)), np.float32)
        return run

    text = np.ones((4, 12), np.float32)
    with load(bundle) as p:
        p._front_ends = {"audio": fake("audio"), "video": fake("video")}
        p.thresholds = [2.0, 0.0]  # audio never worth it, video always
        r = p.predict(text=text, audio=clips["audio"], video=clips["video"])
        assert calls == {"audio": 0, "video": 1} and r.ran == ["text", "video"]
        assert re.fullmatch(r"gate: keep 0\.\d{3} < threshold 2\.000", r.skipped["audio"])
        assert "front_end_video" in r.ms and "front_end_audio" not in r.ms
        assert p.backends["encode_audio"].calls == 0
        p.thresholds = [0.0, 0.0]
        r = p.predict(text=text, audio=clips["audio"], video=clips["video"])
        assert calls == {"audio": 1, "video": 2} and r.ran == list(MODALITIES) and not r.skipped


def test_backend_must_match_the_bundle(bundle, tmp_path, capfd):
    """The fix is named as the caller gave the backend: `predict --backend tensorrt` was told "use
    backend='onnxruntime'", a Python keyword on the command line."""
    with pytest.raises(InputError, match=r"holds onnxruntime graphs .* cannot run on backend = 'tensorrt'; "
                       r"expected backend = 'onnxruntime' \(the default for this bundle\)"):
        load(bundle, backend="tensorrt")
    r = _cli(capfd, "predict", bundle, "--backend", "tensorrt", "--text", "a good film")
    assert r.returncode == 2 and r.stderr.startswith("error: bundle") and r.stderr.count("\n") == 1, r.stderr
    assert "cannot run on --backend tensorrt; expected --backend onnxruntime (the default" in r.stderr
    with pytest.raises(InputError, match=r"^backend = 'torch' wraps a model in memory .*; expected backend = "
                       "'onnxruntime'"):
        load(bundle, backend="torch")
    engines = shutil.copytree(bundle, tmp_path / "engines")
    m = json.loads((engines / "manifest.json").read_text())
    (engines / "manifest.json").write_text(json.dumps({**m, "backend": "tensorrt"}))
    with pytest.raises(InputError, match=r"holds tensorrt graphs .*expected backend = 'tensorrt'"):
        load(engines, backend="onnxruntime")
    r = _cli(capfd, "predict", engines, "--providers", "CPUExecutionProvider", "--text", "a good film")
    assert "error: --providers CPUExecutionProvider are onnxruntime's" in r.stderr
    assert "expected no --providers for it" in r.stderr
    with pytest.raises(InputError, match="did you mean 'onnxruntime'"):
        load(bundle, backend="onnxruntim")
    with pytest.raises(InputError, match="unknown backend 5; expected one of onnxruntime, tensorrt, torch"):
        load(bundle, backend=5)  # was difflib's TypeError


def test_empty_modality_array_counts_as_missing(bundle):
    """A (B, 0, d) array without lengths is missing in every row: its encoder never runs."""
    rng = np.random.default_rng(3)
    text = rng.normal(size=(2, 4, 12)).astype(np.float32)
    with load(bundle) as p:
        p.thresholds = [0.0, 0.0]  # the gate keeps whatever is present
        scores, ran = p.predict_features({"text": text, "audio": np.zeros((2, 0, 5), np.float32)})
        same, _ = p.predict_features({"text": text})
    assert not ran[:, 1].any() and np.allclose(scores, same)


def test_one_inputs_empty_array_is_refused_and_says_how_to_leave_the_modality_out(bundle):
    """predict refused a (0, d) array, as it refuses an empty text, while predict_features reads a (B, 0, d) one as
    missing (padding when no row has it): on purpose, and the refusal now says how one input goes without audio."""
    from conftest import one_line_error

    text = _arrays()["text"]
    with load(bundle) as p:
        assert one_line_error(lambda: p.predict(text=text, audio=np.zeros((0, 5), np.float32))) == (
            "audio features have no steps (shape (0, 5)); expected L >= 1 (an input without audio leaves audio out)")
        scores, ran = p.predict_features({"text": text[None], "audio": np.zeros((1, 0, 5), np.float32)})
        alone = p.predict(text=text)
    assert ran[0].tolist() == [True, False, False] and scores[0] == pytest.approx(alone.score, abs=1e-6)


def test_predict_batch_matches_single_predictions(bundle):
    a, b = _arrays(0), _arrays(1)
    with load(bundle) as p:
        batch = p.predict_batch([{"text": a["text"], "video": a["video"]}, {"audio": b["audio"][:2]}])
        single = [p.predict(text=a["text"], video=a["video"]), p.predict(audio=b["audio"][:2])]
    for got, want in zip(batch, single):
        assert abs(got.score - want.score) < 1e-5 and got.ran == want.ran and got.skipped == want.skipped


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    model = create_model("student_tiny", SPEC)
    ckpt = save_checkpoint(tmp_path_factory.mktemp("int8") / "s.pt", model, {})
    return export(ckpt, format="onnx-int8", out=tmp_path_factory.mktemp("int8") / "bundle", log=None)


def test_int8_batches_score_what_each_row_scores_alone(int8_bundle):
    """Dynamic quantization scales each call's activations by the whole tensor, padding and batch-mates included,
    so INT8 bundles run batches row by row: `predict_batch` and `predict_features` (eval) give `predict`'s scores."""
    items = [{m: _arrays(seed)[m][:steps] for m in MODALITIES} for seed, steps in ((0, 9), (1, 1), (2, 3), (3, 2))]
    with load(int8_bundle) as p:
        p.thresholds = [0.0, 0.0]
        alone = [p.predict(**item).score for item in items]
        batched = [r.score for r in p.predict_batch(items)]
        padded = {m: np.zeros((len(items), SPEC.max_len(m), SPEC.dim(m)), np.float32) for m in MODALITIES}
        lengths = {m: np.array([len(item[m]) for item in items]) for m in MODALITIES}
        for i, item in enumerate(items):
            for m in MODALITIES:
                padded[m][i, :len(item[m])] = item[m]
        scores, _ = p.predict_features(padded, lengths)
    assert batched == alone and scores.tolist() == pytest.approx(alone, abs=0)


def _fd_cmdie_bundle(tmp_path, count_padding: bool):
    """fd_cmdie_tiny exported as it is now, or (count_padding) with its positions counted by index over the joined
    padded sequence, as before 4a75a1b: the graph old fd_cmdie bundles hold (and their export, which checked
    parity in batches, did not run them row by row)."""
    from edge_msa.models.layers import SinusoidalPosition
    from edge_msa.runtime import predictor

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "t.pt", create_model("fd_cmdie_tiny", SPEC), {})
    with pytest.MonkeyPatch.context() as mp:
        if count_padding:
            forward = SinusoidalPosition.forward
            mp.setattr(SinusoidalPosition, "forward", lambda self, x, mask=None: forward(self, x))
            mp.setattr(predictor, "positions_count_padding", lambda bundle, manifest: False, raising=False)
        return export(ckpt, out=tmp_path / "bundle", log=None)


def test_fd_cmdie_bundle_from_before_the_position_fix_warns_and_runs_row_by_row(tmp_path, capsys):
    """Such a bundle scores an input by its batch-mates' text padding: loading it says so with the fix, and its
    batches run row by row, where an input with every modality scores what a re-exported bundle gives it.
    `edge-msa info` shows the same warning (it did not), and none for a re-exported bundle."""
    from edge_msa.cli import main

    items = [{m: _arrays(seed)[m][:steps] for m in MODALITIES} for seed, steps in ((0, 9), (1, 1), (2, 3))]
    old_dir, new_dir = (_fd_cmdie_bundle(tmp_path / name, count_padding=name == "old") for name in ("old", "new"))
    for path, shown in ((old_dir, True), (new_dir, False)):
        assert main(["info", str(path)]) == 0
        warning = "warning    an fd_cmdie_tiny teacher exported before 4a75a1b: its positions count padding"
        assert (warning in capsys.readouterr().out) is shown
    with pytest.warns(UserWarning, match=r"exported before 4a75a1b: its positions count padding.*`edge-msa export`"):
        old = load(old_dir)
    with old, warnings.catch_warnings():
        warnings.simplefilter("error")
        with load(new_dir) as new:
            assert old.row_by_row and not new.row_by_row
            alone = [new.predict(**item).score for item in items]
            assert [r.score for r in new.predict_batch(items)] == pytest.approx(alone, abs=1e-5)
            assert [r.score for r in old.predict_batch(items)] == pytest.approx(alone, abs=1e-5)


def test_media_file_for_external_features_is_skipped_with_a_warning(bundle, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    with load(bundle) as p, pytest.warns(UserWarning, match="expects external:declare-opensmile-73 features"):
        r = p.predict(text=_arrays()["text"], audio=clip)
    assert r.skipped["audio"] == "expects external:declare-opensmile-73 features, got a media file"
    assert "audio" not in r.ran
    with load(bundle) as p, pytest.raises(InputError, match="audio file not found: .*nope.wav"):
        p.predict(text=_arrays()["text"], audio=tmp_path / "nope.wav")  # a typo is an error, not a skip


def test_thread_count_zero_is_onnxruntimes_default_and_a_negative_one_is_refused(bundle, tmp_path, capsys):
    """One rule for every --threads flag (errors.checked_threads): 0 = the library's default, as in serve. Named as
    given: load() from Python was told `--threads -2`, a flag it has not got."""
    with load(bundle, threads=0) as p:
        assert p.threads is None and np.isfinite(p.predict(**_arrays()).score)
    refusal = "--threads -2; expected >= 0 (0: the library's default)"
    with pytest.raises(InputError, match=f"^{re.escape('threads = ' + refusal[len('--threads '):])}$"):
        load(bundle, threads=-2)
    from edge_msa.cli import main

    np.savez(tmp_path / "one.npz", **_arrays())
    assert main(["predict", str(bundle), "--features", str(tmp_path / "one.npz"), "--threads", "0"]) == 0
    assert main(["predict", str(bundle), "--features", str(tmp_path / "one.npz"), "--threads", "-2"]) == 2
    assert capsys.readouterr().err == f"error: {refusal}\n"
    # a flag is checked before the inputs: without any, "no input given" came first and hid the bad count
    assert main(["predict", str(tmp_path / "no_bundle"), "--threads", "-2"]) == 2
    assert capsys.readouterr().err == f"error: {refusal}\n"


@pytest.mark.parametrize("flags, says", [(["--batch-size", "0"], "--batch-size 0; expected >= 1"),  # was "must be"
                                         (["--threads", "-2"], "--threads -2; expected >= 0 (0: the library's "
                                                               "default)")])
def test_eval_flags_are_checked_before_the_bundle_opens(flags, says, tmp_path, capsys):
    from edge_msa.cli import main

    assert main(["eval", str(tmp_path / "no_bundle"), *flags]) == 2
    assert capsys.readouterr().err == f"error: {says}\n"


@pytest.mark.parametrize("threads", [-2, 1.5, "2", True])
def test_thread_count_that_is_not_a_whole_number_is_refused_when_the_bundle_opens(bundle, threads):
    """-2 failed deep in session creation; 1.5 ran on int(1.5) threads and "2" raised a TypeError comparing str
    with int."""
    said = re.escape(f"threads = {threads!r}; expected ") + r"(a whole number )?>= 0 \(0: the library's default\)$"
    with pytest.raises(InputError, match=said):
        load(bundle, threads=threads)


def test_load_takes_one_provider_name_and_names_a_bundle_that_is_not_a_path(bundle):
    """providers="CPUExecutionProvider" was read letter by letter ('onnxruntime has no C, P, U, ... in this
    build'); load(None) raised Path's TypeError."""
    from conftest import one_line_error

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with load(bundle, providers="CPUExecutionProvider") as p:
            assert p.backends["fuse"].providers == ["CPUExecutionProvider"]
    assert one_line_error(lambda: load(None)) == ("bundle is a NoneType; expected the path (str or os.PathLike) of "
                                                  "the folder written by `edge-msa export`")


@pytest.mark.parametrize("providers", [[5], 5, b"CPU", ["CPUExecutionProvider", None]])
def test_providers_that_are_not_names_are_one_line_errors(bundle, providers):
    """[5] raised a TypeError from inside the backend (joining the names for its unknown-provider warning), 5 one
    from list()."""
    from conftest import one_line_error

    assert one_line_error(lambda: load(bundle, providers=providers)) == (
        f"providers {providers!r}; expected onnxruntime execution provider names (str), e.g. "
        "['CUDAExecutionProvider', 'CPUExecutionProvider']")


def test_bad_arrays_raise_one_line_input_errors(bundle):
    a = _arrays()
    bad_nan = a["audio"].copy()
    bad_nan[0, 0] = np.nan
    with load(bundle) as p:
        with pytest.raises(InputError, match=r"audio features have shape \(3, 6\); expected \(L, 5\)"):
            p.predict(audio=np.zeros((3, 6), np.float32))
        with pytest.raises(InputError, match="audio features hold 1 of 15 values that are not finite"):
            p.predict(audio=bad_nan)
        with pytest.raises(InputError, match="has no text encoder"):
            p.predict(text="a lovely film")
        with pytest.raises(InputError, match=r"no usable modality \(nothing given\)"):
            p.predict()
        with pytest.raises(InputError, match="unknown modalities"):
            p.predict_features({"txt": a["text"][None]})
        with pytest.raises(InputError, match=re.escape(  # the Backend check itself, in the features' wording
                "encode_text: the numbers fed to input 'x' hold 24 of 24 values that are not finite (NaN or inf), the "
                "first at index (0, 0, 0); expected finite numbers")):
            p.backends["encode_text"].run({"x": np.full((1, 2, 12), np.inf, np.float32),
                                           "mask": np.ones((1, 2), bool)})


def test_non_finite_features_are_refused_naming_how_many_and_the_first(bundle, tmp_path, capfd):
    """A NaN or inf (a broken extractor, a half-written .npy) was refused as "audio features contain NaN or Inf;
    expected finite values": one bad frame read as an all-NaN file does, and nothing said where to look. spec.check
    counts them and places the first, for predict, predict_batch, predict_features and `edge-msa predict` alike."""
    from conftest import one_line_error

    audio = _arrays()["audio"]  # (3, 5)
    audio[1, 2], audio[2, 0] = np.nan, -np.inf
    said = ("audio features hold 2 of 15 values that are not finite (NaN or inf), the first at step 1, feature 2; "
            "expected finite numbers")
    with load(bundle) as p:
        for given in (audio, audio[None], audio.astype(np.float16), audio.tolist()):  # a batch of one: by its steps
            assert one_line_error(lambda: p.predict(audio=given)) == said
        assert one_line_error(lambda: p.predict_batch([{"audio": _arrays()["audio"]}, {"audio": audio}])) == (
            f"input index 1: {said}")
        assert one_line_error(lambda: p.predict_features({"audio": audio[None]})) == (
            said.replace("at step", "at input 0, step"))
    np.save(tmp_path / "audio.npy", audio)
    r = _cli(capfd, "predict", bundle, "--audio", tmp_path / "audio.npy")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {said}\n")


def _broken_copy(bundle, tmp_path, how):
    target = tmp_path / how
    shutil.copytree(bundle, target)
    if how.startswith("truncated"):
        data = (target / "encode_audio.onnx").read_bytes()
        (target / "encode_audio.onnx").write_bytes(data[: len(data) // 2])
    if how == "truncated unrecorded":  # exported before manifests recorded sha256: onnxruntime's check is left
        m = json.loads((target / "manifest.json").read_text())
        del m["files"]
        (target / "manifest.json").write_text(json.dumps(m))
    if how == "missing":
        (target / "fuse.onnx").unlink()
    elif how in MANIFEST_EDITS:
        m = json.loads((target / "manifest.json").read_text())
        MANIFEST_EDITS[how](m)
        (target / "manifest.json").write_text(json.dumps(m))
    return target


MANIFEST_EDITS = {  # how -> an edit of manifest.json that load must refuse in one line
    "future": lambda m: m.update(format_version=999),
    "thresholds": lambda m: m.update(skip_thresholds=[0.1]),  # was an IndexError at the first prediction
    "negative threshold": lambda m: m.update(skip_thresholds=[0.0, -0.1]),  # loaded, and acted as 0
    "outside": lambda m: m["graphs"].update(fuse="../../fuse.onnx"),  # was loaded from outside the bundle
    "sources": lambda m: m.update(model="fd_cmdie",  # an old fd_cmdie's graph was read from outside the bundle
                                  export_options={"onnx_graphs": {"model": "../../x.onnx"}}),
    "encoder": lambda m: m.update(text_encoder={"onnx": "text_encoder.onnx"}),  # was a KeyError at the first text
    "versions": lambda m: m.update(versions="0.1"),  # was an AttributeError in `edge-msa info`
    "dims": lambda m: m["feature_spec"].update(dims="abc"),  # was a ValueError from int('a')
    "front_ends": lambda m: m["feature_spec"].update(front_ends=[1, 2, 3]),  # was an AttributeError
    "record": lambda m: m["files"].update({"fuse.onnx": "0" * 64}),  # a sha256 without its size
    "record outside": lambda m: m["files"].update({"../x.onnx": m["files"]["fuse.onnx"]}),
}


@pytest.mark.parametrize("how, message", [
    ("truncated", r"file encode_audio.onnx differs from what export recorded \(sha256\); re-copy or re-export"),
    ("truncated unrecorded", "cannot load graph .*encode_audio.onnx.*corrupt or truncated"),
    ("missing", "graph file .*fuse.onnx' is missing"),
    ("future", "format_version 999, newer than this edge-msa reads"),
    ("thresholds", r"skip_thresholds = \[0.1\]; expected 2 numbers, one per skippable modality \(audio, video\)$"),
    ("negative threshold", re.escape("skip_thresholds[1] = -0.1; expected >= 0 (the gate's keep is in [0, 1]: 0 never "
                                     "skips, above 1 always skips)") + "$"),  # the student's own rule and line
    ("outside", r"graphs \{'fuse': '../../fuse.onnx'\} are not file names inside the bundle"),
    ("sources", r"export_options.onnx_graphs \{'model': '../../x.onnx'\} are not file names inside the bundle"),
    ("encoder", r"text_encoder lists no \['tokenizer'\] file"),
    ("versions", r"manifest.json: fields \['versions'\] are not JSON objects"),
    ("dims", r"FeatureSpec.dims must be 3 whole numbers >= 1 \(text, audio, video\); got 'abc'"),
    ("front_ends", r"FeatureSpec.front_ends must be 3 front end names \(text, audio, video\); got \(1, 2, 3\)"),
    ("record", r"manifest.json: files \{'fuse.onnx': '0+'\} are not file records; expected \{\"sha256\""),
    # the name once (it was printed twice)
    ("record outside", re.escape("manifest.json: files ['../x.onnx'] are not file names inside the bundle; "
                                 "expected plain relative names such as 'fuse.onnx'") + "$"),
])
def test_broken_bundles(bundle, tmp_path, how, message, capsys):
    """A refused manifest is named, once: the lines of its fields' checks named no bundle."""
    broken = _broken_copy(bundle, tmp_path, how)
    with pytest.raises(ArtifactError, match=message) as info:
        load(broken)
    if how in MANIFEST_EDITS:
        from edge_msa.cli import main

        assert str(info.value).startswith(f"{broken / 'manifest.json'}") and str(info.value).count(str(broken)) == 1
        assert main(["info", str(broken)]) == 2
        assert capsys.readouterr().err == f"error: {info.value}\n"


@pytest.mark.parametrize("name", ["tokenizer.json", "text_encoder.onnx"])
def test_a_bundle_without_its_text_encoder_files_is_refused_at_load(minilm_bundle, tmp_path, name):
    """A bundle without its tokenizer.json loaded, and its first text raised InputError "tokenizer file not found":
    not the ArtifactError (a corrupt bundle, README "Python API") that a missing graph gets at load."""
    broken = tmp_path / "broken"
    shutil.copytree(minilm_bundle, broken)
    (broken / name).unlink()
    with pytest.raises(ArtifactError, match=f"text encoder file .*{name}' is missing; re-export the bundle"):
        load(broken)


def test_cli_bad_inputs_exit_2_with_one_line(bundle, tmp_path, capfd):
    a = _arrays()
    np.savez(tmp_path / "wrong.npz", audio=np.zeros((3, 6), np.float32))
    nan = a["video"].copy()
    nan[1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", video=nan)
    cases = [
        (_broken_copy(bundle, tmp_path, "truncated"), ["--features", tmp_path / "wrong.npz"],
         "file encode_audio.onnx differs from what export recorded (sha256); re-copy or re-export the bundle"),
        (_broken_copy(bundle, tmp_path, "future"), [], "format_version 999"),
        (_broken_copy(bundle, tmp_path, "missing"), [], "fuse.onnx' is missing"),
        (_broken_copy(bundle, tmp_path, "negative threshold"), [],
         f"{tmp_path / 'negative threshold' / 'manifest.json'}: skip_thresholds[1] = -0.1; expected >= 0"),
        (bundle, ["--features", tmp_path / "wrong.npz"], "audio features have shape (3, 6); expected"),
        (bundle, ["--features", tmp_path / "nan.npz"], "video features hold 1 of 28 values that are not finite (NaN or "
                                                       "inf), the first at step 1, feature 1; expected finite numbers"),
    ]
    for target, extra, message in cases:
        r = _cli(capfd, "predict", target, *(extra or ["--features", tmp_path / "nan.npz"]))
        assert r.returncode == 2 and r.stdout == "", (target, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr


def test_cli_predict_batch_csv(bundle, tmp_path, capfd):
    a = _arrays()
    for m in MODALITIES:
        np.save(tmp_path / f"{m}.npy", a[m])
    (tmp_path / "in.csv").write_text("text,audio,video\ntext.npy,audio.npy,\n,,video.npy\n")
    r = _cli(capfd, "predict", bundle, "--batch", tmp_path / "in.csv")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["skipped"]["video"] == "missing" and rows[1]["skipped"]["text"] == "missing"


def test_cli_predict_reads_feature_files_with_an_upper_case_extension(bundle, tmp_path, capfd):
    """`--text T.NPY` was scored as the sentence "T.NPY" and `--audio A.NPY` decoded as a media file: the .npy test
    was case-sensitive, unlike dataset detection (`detect_format`)."""
    a = _arrays()
    for m in ("text", "audio"):
        np.save(tmp_path / f"{m}.npy", a[m])
        (tmp_path / f"{m}.npy").rename(tmp_path / f"{m.upper()}.NPY")
    r = _cli(capfd, "predict", bundle, "--text", tmp_path / "TEXT.NPY", "--audio", tmp_path / "AUDIO.NPY")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped"] == {"video": "missing"}

def test_provider_fallback_warns(bundle):
    with pytest.warns(UserWarning, match="no CUDAExecutionProvider in this build"):
        backend = OnnxRuntimeBackend(bundle / "fuse.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert backend.providers == ["CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default choice warns about nothing
        OnnxRuntimeBackend(bundle / "fuse.onnx")


@pytest.mark.parametrize("asked", [["NoSuchExecutionProvider"], ["NoSuchExecutionProvider", "CPUExecutionProvider"]])
def test_provider_fallback_says_what_runs(bundle, asked):
    """`--providers CUDAExecutionProvider` on a CPU-only onnxruntime said "using the rest" with none left: it runs
    on the CPU, and says so."""
    with pytest.warns(UserWarning) as said:
        backend = OnnxRuntimeBackend(bundle / "fuse.onnx", providers=asked)
    assert [str(w.message).rsplit("; ", 1)[1] for w in said] == ["running on CPUExecutionProvider"]
    assert backend.providers == ["CPUExecutionProvider"]


def test_warnings_name_the_callers_line_not_edge_msas(minilm_bundle, bundle, tmp_path):
    """Each warning counted a fixed stacklevel, so one reached through other frames named a line inside edge-msa
    (predict(text=<long text>): predictor.py; load's provider warning: predictor.py too), and warnings filters
    and "once per location" keyed on that line; errors.warn names the first frame outside the package."""
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with load(minilm_bundle, providers=["NoSuchExecutionProvider", "CPUExecutionProvider"]) as p:
            p.predict(text="good " * 40)
            p.predict_batch([{"text": "good " * 40}])
        with load(bundle) as p:
            p.predict(text=_arrays()["text"], audio=clip)
    kinds = ("onnxruntime has no NoSuchExecutionProvider", "1 of 1 texts are longer than 16", "audio: skipped clip.wav")
    assert {kind for w in said for kind in kinds if str(w.message).startswith(kind)} == set(kinds)
    assert {w.filename for w in said} == {__file__}



def test_the_bundled_minilm_encoder_runs_on_the_providers_given_else_on_the_cpu(minilm_bundle):
    """The frozen text encoder's session ran on the CPU whatever `providers` load() was given: a GPU's CUDA EP ran
    the small graphs and the CPU the encoder, the largest of them. Here: every provider this onnxruntime has
    (AzureExecutionProvider beside the CPU's in this build)."""
    import onnxruntime as ort

    with load(minilm_bundle, providers=ort.get_available_providers()) as p:
        assert p.text_encoder.session.get_providers() == p.backends["fuse"].providers == ort.get_available_providers()
    with load(minilm_bundle) as p:
        assert p.text_encoder.session.get_providers() == ["CPUExecutionProvider"]

def test_text_string_through_the_bundled_minilm_encoder(minilm_bundle):
    assert (minilm_bundle / "text_encoder.onnx").is_file() and (minilm_bundle / "tokenizer.json").is_file()
    with load(minilm_bundle) as p:
        assert p.manifest.text_encoder == {"onnx": "text_encoder.onnx", "tokenizer": "tokenizer.json"}
        r = p.predict(text="what a wonderful film")
        assert r.ran == ["text"] and "text_encoder" in r.ms and np.isfinite(r.score)
        assert r.load_ms["text_encoder_load"] > 0  # the one-off session build is reported apart from the call
        assert "text_encoder_load" not in r.ms and not p.predict(text="what a wonderful film").load_ms
        assert r.ms["total"] == pytest.approx(sum(v for k, v in r.ms.items() if k != "total"), abs=1e-3)
        start = time.perf_counter()
        many = p.predict_batch([{"text": "a fine film"}] * 16)
        wall_ms = (time.perf_counter() - start) * 1e3
        assert sum(x.ms["total"] for x in many) <= wall_ms + 0.02  # each item has its share, not the whole batch's
        assert all(x.ms["total"] == pytest.approx(sum(v for k, v in x.ms.items() if k != "total"), abs=1e-3)
                   for x in many)
        feats, lengths = p.text_encoder.encode(["what a wonderful film"])
        same = p.predict(text=feats[0, :lengths[0]])
        assert abs(same.score - r.score) < 1e-6
        with pytest.raises(InputError, match="empty text"):
            p.predict(text="   ")
        with pytest.warns(UserWarning, match="1 of 2 texts are longer than 16 tokens"):
            short, cut = p.predict_batch([{"text": "a fine film"}, {"text": "good " * 40}])
        assert not short.warnings and r.warnings == [] and cut.to_dict()["warnings"] == [
            "text is longer than 16 tokens and was truncated; only its first 16 were scored"]


def _features_npz(path, n=24, seed=0):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "film", "really", "not", "great", "boring", "fun"]
    spec = json.dumps(MINILM_SPEC.to_dict())
    np.savez(path, format="edge-msa-features-v1", feature_spec=spec, id=np.array([f"c{i}" for i in range(n)]),
             label=rng.uniform(-3, 3, n).astype(np.float32),
             split=np.array(["train", "valid", "test"] * (n // 3)),
             transcript=np.array([" ".join(rng.choice(words, 4)) for _ in range(n)]),
             audio_feat=rng.normal(size=(n, 1, 5)).astype(np.float32), audio_len=np.ones(n, np.int64),
             video_feat=rng.normal(size=(n, 1, 7)).astype(np.float32), video_len=np.ones(n, np.int64))
    return path


@pytest.mark.slow  # MiniLM features for 24 transcripts
def test_cli_eval_writes_metrics(minilm_bundle, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    data = _features_npz(tmp_path / "feats.npz")
    r = _cli(capfd, "eval", minilm_bundle, "--data", data, "--split", "test", "--out", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(METRIC_KEYS) <= set(m) and m["n"] == 8 and m["split"]["name"] == "test" and m["split"]["n"] == 8
    assert len(m["split"]["ids_sha256"]) == 64 and m["data"]["sha256"] == file_sha256(data)
    assert all(0.0 <= m[f"skip_rate_{x}"] <= 1.0 for x in MODALITIES)


CLIP = DATA_ROOT / "raw_av" / "cremad" / "data" / "1001_DFA_ANG_XX.flv"


@pytest.mark.slow  # MiniLM + face detection on a real 2 s clip
@pytest.mark.skipif(not CLIP.is_file(), reason=f"real clip not found at {CLIP}")
def test_raw_text_and_video_file_through_the_front_ends(tmp_path_factory):
    spec = FeatureSpec(dims=(384, 56, 105), max_lens=(50, 200, 60),
                       front_ends=("minilm-l6-int8", "logmel-v1", "face-v1"))
    pytest.importorskip("av", reason="PyAV decodes the FLV's audio track (pip install 'edge-msa[media]')")
    with load(_export(tmp_path_factory, spec, "media")) as p:
        p.thresholds = [0.0, 0.0]  # run everything present
        r = p.predict(text="I am so angry right now", video=CLIP)  # audio: the FLV's own track
        # the front ends produce the sequence lengths the model was trained on, not their own defaults
        assert (p._front_ends["audio"].max_frames, p._front_ends["video"].num_frames) == (200, 60)
    assert r.ran == list(MODALITIES) and not r.skipped
    assert r.ms["front_end_video"] > 0 and r.ms["front_end_audio"] > 0 and r.ms["text_encoder"] > 0
    assert np.isfinite(r.score)


def test_cli_media_skip_is_one_warning_line(bundle, tmp_path, capfd):
    np.save(tmp_path / "t.npy", _arrays()["text"])
    missing = _cli(capfd, "predict", bundle, "--text", tmp_path / "t.npy", "--audio", tmp_path / "clip.wav")
    assert missing.returncode == 2 and missing.stderr.startswith(f"error: audio file not found: {tmp_path / 'clip.wav'}"
                                                                 "; expected a media file")
    assert missing.stdout == "" and len(missing.stderr.splitlines()) == 1
    (tmp_path / "clip.wav").write_bytes(b"RIFF")
    r = _cli_process("predict", bundle, "--text", tmp_path / "t.npy", "--audio", tmp_path / "clip.wav")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("warning: audio: skipped clip.wav")
    out = json.loads(r.stdout)
    assert out["skipped"]["audio"].startswith("expects external:declare-opensmile-73") and out["ran"] == ["text"]


AV_SPEC = FeatureSpec(dims=(12, 56, 105), max_lens=(9, 50, 16),
                      front_ends=("external:text-12", "logmel-v1", "face-v1"))
needs_clip = pytest.mark.skipif(not CLIP.is_file(), reason=f"real clip not found at {CLIP}")


@pytest.fixture(scope="module")
def av_bundle(tmp_path_factory):
    return _export(tmp_path_factory, AV_SPEC, "av")


def _fake_face(path):
    return np.ones((2, AV_SPEC.dim("video")), np.float32)  # face detection is not under test here


@needs_clip
def test_video_audio_track_stands_in_for_audio_and_is_decoded_only_after_the_gate(av_bundle, monkeypatch):
    pytest.importorskip("av", reason="PyAV decodes the FLV's audio track (pip install 'edge-msa[media]')")
    import edge_msa.features.audio as audio

    decoded, real = [], audio.decode_audio_track
    monkeypatch.setattr(audio, "decode_audio_track", lambda path: decoded.append(path) or real(path))
    text = np.ones((4, 12), np.float32)
    with load(av_bundle) as p:
        p._front_ends = {"video": _fake_face}
        p.thresholds = [0.0, 0.0]
        r = p.predict(text=text, video=CLIP)
        assert r.ran == list(MODALITIES) and not r.skipped and r.ms["front_end_audio"] > 0 and decoded == [CLIP]
        explicit = p.predict(text=text, audio=audio.AudioFrontEnd()(CLIP), video=CLIP)  # same features, given
        assert abs(explicit.score - r.score) < 1e-5 and len(decoded) == 2
        p.thresholds = [2.0, 0.0]  # the gate never keeps audio: the track is never decoded
        r = p.predict(text=text, video=CLIP)
        assert len(decoded) == 2 and r.ran == ["text", "video"] and "front_end_audio" not in r.ms
        assert r.skipped["audio"].startswith("gate: keep")


def test_video_without_audio_track_or_without_pyav_leaves_audio_missing(av_bundle, tmp_path, monkeypatch):
    pytest.importorskip("av", reason="PyAV reads the video container (pip install 'edge-msa[media]')")
    from test_features_audio import silent_avi

    silent = silent_avi(tmp_path / "silent.avi")
    text = np.ones((4, 12), np.float32)
    with load(av_bundle) as p:
        p._front_ends = {"video": _fake_face}
        p.thresholds = [0.0, 0.0]
        r = p.predict(text=text, video=silent)
        assert r.ran == ["text", "video"] and r.skipped == {"audio": "silent.avi has no audio track"}
        monkeypatch.setitem(sys.modules, "av", None)  # any `import av` now fails
        with pytest.warns(UserWarning, match=r"audio: not taken from silent.avi: av is required .*pip install av"):
            r = p.predict(text=text, video=silent)
        assert r.ran == ["text", "video"] and r.skipped == {"audio": "cannot read the audio track of silent.avi"}


@needs_clip
def test_external_audio_bundle_never_opens_the_video_for_audio(bundle, monkeypatch):
    import edge_msa.runtime.predictor as predictor

    monkeypatch.setattr(predictor, "has_audio_track", lambda path: pytest.fail("probed the video for audio"))
    with load(bundle) as p, pytest.warns(UserWarning, match="video: skipped 1001_DFA_ANG_XX.flv"):
        r = p.predict(text=_arrays()["text"], video=CLIP)
    assert r.ran == ["text"] and r.skipped["audio"] == "missing" and r.skipped["video"].startswith("expects external")


@needs_clip
def test_cli_video_only_uses_its_audio_track(av_bundle, tmp_path):
    pytest.importorskip("av", reason="PyAV decodes the FLV's audio track (pip install 'edge-msa[media]')")
    np.save(tmp_path / "t.npy", np.ones((4, 12), np.float32))
    r = _cli_process("predict", av_bundle, "--text", tmp_path / "t.npy", "--video", CLIP)
    assert r.returncode == 0 and not r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert "audio" in out["ran"] or out["skipped"]["audio"].startswith("gate: keep")  # present, never "missing"


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _npy(path, array):
    np.save(path, array)
    return path


BAD_FEATURE_FILES = [  # (name, writer, expected one-line error)
    ("empty.npy", lambda p: p.write_bytes(b""), "cannot read '.*empty.npy' as a numpy array"),
    ("empty.npz", lambda p: p.write_bytes(b""), "empty.npz is not a readable features .npz"),
    ("cut.npz", lambda p: p.write_bytes(_npz(p.with_suffix(".tmp.npz"), audio=np.ones((1, 5))).read_bytes()[:40]),
     "cut.npz is not a readable features .npz"),
    ("short_len.npz", lambda p: _npz(p, audio=np.ones((2, 1, 5), np.float32), audio_len=np.array([1])),
     r"audio lengths must be 2 integers in \[0, 1\]"),
    ("float_len.npz", lambda p: _npz(p, audio=np.ones((2, 3, 5), np.float32), audio_len=np.array([1.5, 2.0])),
     r"audio lengths must be 2 integers in \[0, 3\]; got float64"),
    ("long_len.npz", lambda p: _npz(p, audio=np.ones((1, 3, 5), np.float32), audio_len=np.array([7])),
     r"audio lengths must be 1 integers in \[0, 3\]"),
    ("flat.npz", lambda p: _npz(p, audio=np.ones(5, np.float32)), r"arrays have shapes \{'audio': \(5,\)\}"),
    ("mixed.npz", lambda p: _npz(p, audio=np.ones((2, 1, 5), np.float32), video=np.ones((1, 7), np.float32)),
     "expected all \\(L, d\\) for one input or all \\(N, L, d\\)"),
    ("orphan.npz", lambda p: _npz(p, audio=np.ones((1, 5), np.float32), video_len=np.array([1])),
     r"unknown arrays \['video_len'\]"),
    ("none.npz", lambda p: _npz(p, audio=np.ones((0, 1, 5), np.float32)), "holds 0 inputs"),
    ("single.npy.npz", lambda p: p.write_bytes(_npy(p.with_suffix(".npy"), np.ones((3, 5))).read_bytes()),
     r"single.npy.npz is a single .npy array, not a features .npz; expected an .npz archive of named arrays"),
]


@pytest.mark.parametrize("name, write, message", BAD_FEATURE_FILES, ids=[c[0] for c in BAD_FEATURE_FILES])
def test_cli_bad_feature_files_are_one_line_errors(bundle, tmp_path, capsys, name, write, message):
    """Empty or truncated .npy/.npz files and *_len arrays of the wrong size, type or range: exit 2 with one line,
    never numpy's EOFError / BadZipFile / IndexError, nor a length silently rounded or read past the array."""
    from edge_msa.cli import main

    write(tmp_path / name)
    flag = "--audio" if name.endswith(".npy") else "--features"
    assert main(["predict", str(bundle), flag, str(tmp_path / name)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err


BAD_CSVS = [  # (bytes of the --batch CSV, expected one-line error)
    (b"\xff\xfetext\nhi\n", "cannot read .* as a UTF-8 CSV"),
    (b"text,audio\nhello, world,\n", "row 1 has more values than the header has columns; expected at most 2"),
    (b"text,text\nhi,there\n", r"has columns \['text', 'text'\]; expected any of text, audio, video, each once"),
]


@pytest.mark.parametrize("content, message", BAD_CSVS)
def test_cli_bad_batch_csv_is_a_one_line_error(bundle, tmp_path, capsys, content, message):
    from edge_msa.cli import main

    (tmp_path / "in.csv").write_bytes(content)
    assert main(["predict", str(bundle), "--batch", str(tmp_path / "in.csv")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and re.search(message, err), err


def test_cli_batch_csv_with_a_byte_order_mark(bundle, tmp_path, capsys):
    """Spreadsheet programs save UTF-8 CSVs with a BOM; its header still names the columns."""
    from edge_msa.cli import main

    np.save(tmp_path / "a.npy", _arrays()["audio"])
    (tmp_path / "in.csv").write_bytes("\ufeffaudio\na.npy\n".encode())
    assert main(["predict", str(bundle), "--batch", str(tmp_path / "in.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == ["audio"]


def test_cli_features_npz_with_lengths_and_flags(bundle, tmp_path, capsys):
    """(N, L, d) arrays cut to *_len (0 = missing for that input); one (L, d) input merges with --text etc."""
    from edge_msa.cli import main

    a = _arrays()
    path = _npz(tmp_path / "f.npz", audio=np.stack([a["audio"]] * 2), audio_len=np.array([2, 0]),
                video=np.stack([a["video"]] * 2))
    assert main(["predict", str(bundle), "--features", str(path)]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert second["skipped"]["audio"] == "missing" and "audio" not in first["skipped"]
    np.save(tmp_path / "t.npy", a["text"])
    one = _npz(tmp_path / "one.npz", audio=a["audio"])
    assert main(["predict", str(bundle), "--text", str(tmp_path / "t.npy"), "--features", str(one)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"]["video"] == "missing" and "text" in out["ran"]


def test_cli_batch_errors_name_the_row_as_found_in_the_file(bundle, tmp_path, capsys):
    """A bad input of several was `input #1`, counted from 0 (the CSV's 2nd row), and a bad feature array named no
    input at all (nor did a missing .npy a row names); the CLI now names a CSV's data row from 1 (a one-row CSV's
    too: predict_batch names no index for one input) and an .npz's index along N, the API "input index 1"."""
    from conftest import one_line_error
    from edge_msa.cli import main

    a = _arrays()
    np.save(tmp_path / "a.npy", a["audio"])
    np.save(tmp_path / "wrong.npy", np.zeros((3, 6), np.float32))
    (tmp_path / "empty.csv").write_text("text,audio\n,a.npy\n,\n")
    (tmp_path / "wrong.csv").write_text("audio\na.npy\nwrong.npy\na.npy\n")
    (tmp_path / "gone.csv").write_text("audio\na.npy\na.npy\ngone.npy\n")
    (tmp_path / "one.csv").write_text("audio\nwrong.npy\n")  # one input: predict_batch names no index
    npz = _npz(tmp_path / "f.npz", audio=np.stack([a["audio"]] * 3), audio_len=np.array([2, 2, 0]))
    cases = [(["--batch", tmp_path / "empty.csv"], "empty.csv row 2: input has no usable modality (nothing given)"),
             (["--batch", tmp_path / "wrong.csv"], "wrong.csv row 2: audio features have shape (3, 6); expected"),
             (["--batch", tmp_path / "gone.csv"], f"gone.csv row 3: feature file not found: {tmp_path / 'gone.npy'}; "
              "expected an .npy array: features (L, d) or (1, L, d), or a token-id bundle's text as token ids (L,), "
              "(1, L), (L, 1) or (1, L, 1)"),
             (["--batch", tmp_path / "none.csv"], f"batch file not found: {tmp_path / 'none.csv'}; expected a CSV"),
             (["--batch", tmp_path / "one.csv"], "one.csv row 1: audio features have shape (3, 6); expected"),
             (["--features", npz], "f.npz index 2: input has no usable modality")]
    for flags, message in cases:
        assert main(["predict", str(bundle), *map(str, flags)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and message in err, err
    with load(bundle) as p:
        assert one_line_error(lambda: p.predict_batch([{"audio": a["audio"]}, {"audio": np.zeros((3, 6))}])) \
            .startswith("input index 1: audio features have shape (3, 6)")
        assert one_line_error(lambda: p.predict(audio=np.zeros((3, 6)))).startswith("audio features have shape")


def test_media_longer_than_the_limit_is_refused_before_decoding(av_bundle, tmp_path, capsys):
    """predict decoded any media file whole (an hour-long recording: minutes and GBs) while REST refused more than
    30 s: both now share one limit, measured from the header, raised with --max-media-s / max_media_seconds=."""
    sf = pytest.importorskip("soundfile")
    from conftest import one_line_error
    from edge_msa.cli import main
    from edge_msa.features import MAX_MEDIA_SECONDS
    from edge_msa.serve.inputs import Limits
    from test_features_video import write_video

    assert Limits().max_media_seconds == MAX_MEDIA_SECONDS == 30
    sf.write(tmp_path / "long.wav", np.zeros(1000 * 31, np.float32), 1000)  # 31 s at 1 kHz
    write_video(tmp_path / "slow.avi", [np.zeros((48, 64, 3), np.uint8)] * 4, fps=0.1)  # 40 s
    np.save(tmp_path / "t.npy", np.ones((4, 12), np.float32))
    text = ["--text", str(tmp_path / "t.npy")]
    for flag, name, seconds in (("--audio", "long.wav", "31.0"), ("--video", "slow.avi", "40.0")):
        assert main(["predict", str(av_bundle), *text, flag, str(tmp_path / name)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and f"{name} lasts {seconds} s; expected at most 30 s" in err
        assert "--max-media-s" in err
    assert main(["predict", str(av_bundle), *text, "--audio", str(tmp_path / "long.wav"), "--max-media-s", "60"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] is not None
    with load(av_bundle, max_media_seconds=10) as p:
        p._front_ends = {"audio": lambda path: pytest.fail("decoded a file over the limit")}
        p.thresholds = [2.0, 2.0]  # the gate would skip the audio: refused all the same
        message = one_line_error(lambda: p.predict(text=np.ones((4, 12), np.float32), audio=tmp_path / "long.wav"))
        assert "long.wav lasts 31.0 s; expected at most 10 s" in message
    for limit, expected in ((0, "max_media_seconds = 0; expected > 0 (inf: no limit)"),
                            (math.nan, "max_media_seconds = nan; expected > 0 (inf: no limit)"),
                            ("10", "max_media_seconds = '10'; expected a number > 0 (inf: no limit)"),
                            (None, "max_media_seconds = None; expected a number > 0 (inf: no limit)"),
                            (True, "max_media_seconds = True; expected a number > 0 (inf: no limit)")):
        message = one_line_error(lambda: load(av_bundle, max_media_seconds=limit))  # the keyword, not the flag too
        assert message.endswith(expected)  # "10" raised a TypeError
    assert main(["predict", str(av_bundle), *text, "--max-media-s", "-1"]) == 2
    assert capsys.readouterr().err == "error: --max-media-s -1; expected > 0 (inf: no limit)\n"  # as typed, not -1.0


def test_a_still_image_is_refused_before_the_gate(av_bundle, tmp_path):
    """A photo given as video was refused only when the gate ran video (read_frames): with text that made the gate
    skip video it passed as a skipped modality. It is refused before the gate now, like a file over the limit; with
    no limit (max_media_seconds=inf, predict --max-media-s inf) too, where nothing was read before the gate, so a
    photo or an unreadable file still passed as skipped."""
    cv2 = pytest.importorskip("cv2")
    from conftest import one_line_error
    from edge_msa.features import MAX_MEDIA_SECONDS
    from test_features_video import write_video

    image = np.zeros((48, 64, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "face.png"), image)
    write_video(tmp_path / "two.avi", [image, image])
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    text = np.ones((4, 12), np.float32)
    for limit in (MAX_MEDIA_SECONDS, math.inf):
        with load(av_bundle, max_media_seconds=limit) as p:
            p._front_ends = {"video": lambda path: pytest.fail("decoded a video the gate skips")}
            p.thresholds = [2.0, 2.0]  # the gate skips audio and video
            message = one_line_error(lambda: p.predict(text=text, video=tmp_path / "face.png"))
            assert "face.png is a still image (1 frame); expected a video clip" in message
            assert "cannot read media" in one_line_error(lambda: p.predict(text=text, video=tmp_path / "junk.avi"))
            assert p.predict(text=text, video=tmp_path / "two.avi").skipped["video"].startswith("gate: keep")


def test_text_and_token_ids_are_checked_before_the_tokenizer_and_graph(token_bundle):
    """A lone surrogate reached the tokenizer (TypeError); token ids outside the vocabulary, negative or fractional
    were clamped or truncated inside the graph into a score for some other token."""
    from conftest import one_line_error

    with load(token_bundle) as p:
        text = p.predict(text="a good film")
        ids = p.text_encoder.encode(["a good film"])[0][0]  # (L, 1) float32, as the string travels
        assert p.predict(text=ids).score == pytest.approx(text.score, abs=1e-6)
        assert "text holds an unpaired UTF-16 surrogate" in one_line_error(lambda: p.predict(text="bad \ud800"))
        assert "input index 1: text holds an unpaired" in one_line_error(lambda: p.predict_batch([{"text": "ok"},
                                                                                       {"text": "\udcff"}]))
        vocab = p.text_encoder.vocab_size
        for bad in (-1.0, float(vocab), 2.5):
            message = one_line_error(lambda: p.predict(text=np.array([[2.0], [bad]], np.float32)))
            assert f"text token ids must be whole numbers in [0, {vocab})" in message
        max_len = p.spec.max_len("text")
        long_ids = np.tile(ids, (max_len // len(ids) + 2, 1))  # (> max_len, 1): beyond the encoder's positions
        with pytest.warns(UserWarning, match=f"more than the encoder's {max_len} positions; truncated"):
            cut = p.predict(text=long_ids)
        assert cut.score == pytest.approx(p.predict(text=long_ids[:max_len]).score, abs=1e-6)
        assert cut.warnings == [f"text: {len(long_ids)} token ids are more than the encoder's {max_len} positions; "
                                f"truncated to the first {max_len}"]  # the answer says so, not only the server log


def test_token_ids_may_be_integers_and_are_checked_in_predict_features_too(token_bundle):
    """Integer token ids, as a tokenizer gives them, were refused ('dtype int64; expected a float array'; a flat list
    'shape (L,); expected (L, 1)'), and predict_features sent ids to the graph unchecked: ids outside the
    vocabulary, negative or fractional scored as some other token, and ids past the encoder's positions failed
    inside onnxruntime."""
    from conftest import one_line_error

    with load(token_bundle) as p:
        ids = np.array(p.text_encoder.tokenize(["a good film"])[0])[:, None]  # (L, 1) int64
        score = p.predict(text=ids.astype(np.float32)).score
        assert p.predict(text=ids).score == pytest.approx(score, abs=1e-6)
        assert p.predict(text=ids[:, 0].tolist()).score == pytest.approx(score, abs=1e-6)  # the tokenizer's list
        assert p.predict_features({"text": ids[None]})[0][0] == pytest.approx(score, abs=1e-6)
        vocab = p.text_encoder.vocab_size
        for bad in (-1.0, float(vocab), 2.5):
            call = partial(p.predict_features, {"text": np.array([[[2.0], [bad]]], np.float32)})
            assert f"text token ids must be whole numbers in [0, {vocab})" in one_line_error(call)
        max_len = p.spec.max_len("text")
        padded = np.zeros((1, max_len + 3, 1), np.int64)  # padding past the positions: cut off
        padded[0, :len(ids)] = ids
        assert p.predict_features({"text": padded}, {"text": np.array([len(ids)])})[0][0] == pytest.approx(score,
                                                                                                         abs=1e-6)
        assert f"text token ids run to {max_len + 1} steps; expected at most the encoder's {max_len} positions" in \
            one_line_error(lambda: p.predict_features({"text": np.full((1, max_len + 1, 1), 2)}))


def test_token_ids_outside_the_vocabulary_in_a_file_exit_2_in_one_line(token_bundle, tmp_path, capfd):
    """`--text ids.npy` holding ids the bundle's vocabulary lacks (negative, or >= its size) is the runtime's one line
    and exit 2, not onnxruntime's Gather error: the file route of the check tested from Python above."""
    with load(token_bundle) as p:
        vocab = p.text_encoder.vocab_size
    for bad in (-1, vocab):
        np.save(tmp_path / "ids.npy", np.array([2, bad, 3]))
        r = _cli(capfd, "predict", token_bundle, "--text", tmp_path / "ids.npy")
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: text token ids must be whole numbers in [0, "
                                                             f"{vocab}) for this bundle's tokenizer; got values in "
                                                             f"[{min(2, bad)}, {max(3, bad)}]\n")


def test_a_wrong_token_id_array_is_told_every_shape_taken(token_bundle, tmp_path, capfd):
    """`--text feats.npy` of shape (6, 384) on a token-id bundle was told "expected (L, 1) or (B, L, 1)": not the
    flat (L,) ids that the README and `predict --help` allow, and a batch shape that one input does not take. Then
    "expected (L,) or (L, 1)", without the batch of one, (1, L, 1), that predict takes too."""
    from conftest import one_line_error

    said = "text features have shape (6, 384); expected (L,), (1, L), (L, 1) or (1, L, 1)"
    np.save(tmp_path / "feats.npy", np.zeros((6, 384), np.float32))
    r = _cli(capfd, "predict", token_bundle, "--text", tmp_path / "feats.npy")
    assert (r.returncode, r.stderr) == (2, f"error: {said}\n")
    with load(token_bundle) as p:
        assert one_line_error(lambda: p.predict(text=np.zeros((6, 384)))) == said
        assert one_line_error(lambda: p.predict(text=np.zeros((1, 2, 3), np.float32))) == (
            "text features have shape (1, 2, 3); expected (L,), (1, L), (L, 1) or (1, L, 1)")
        ids = np.array(p.text_encoder.tokenize(["a good film"])[0])  # (L,) int64, as the tokenizer lists them
        assert p.predict(text=ids[None, :, None]).score == p.predict(text=ids).score  # (1, L, 1): a batch of one
        # (1, L): what a tokenizer's return_tensors="np" gives for one text; it was refused
        assert p.predict(text=ids[None, :]).score == p.predict(text=ids).score


def test_docs_and_help_list_the_shapes_predict_takes():
    """predict's docstring and `edge-msa predict --help` named (L, d) only, while predict takes a batch of one,
    (1, L, d), too: both now say what spec.input_shapes (the errors' words) says."""
    from edge_msa.cli.predict import EPILOG
    from edge_msa.runtime import Predictor
    from edge_msa.spec import input_shapes

    for words in (input_shapes(), input_shapes(token_ids=True)):
        assert words in " ".join(Predictor.predict.__doc__.split()) and words in " ".join(EPILOG.split())


@pytest.mark.parametrize("value, message", [
    ([[0.0] * 5, [1.0]], r"audio is not a rectangular array of numbers; expected \(L, 5\) or \(1, L, 5\)$"),
    (b"RIFF....", r"audio is bytes; expected a media file path or an \(L, 5\) or \(1, L, 5\) array"),
    ({"x": 1}, r"audio is dict; expected a media file path or an \(L, 5\) or \(1, L, 5\) array"),
    (bytearray(b"RIFF"), r"audio is bytearray; expected a media file path or an \(L, 5\) or \(1, L, 5\) array"),
    (["a.wav", "b.wav"], (r"audio is a list of 2 strings; expected a media file path or an \(L, 5\) or "
                          r"\(1, L, 5\) array \(predict_batch takes several inputs\)")),
    (np.full((2, 5), 1e300), "audio features hold values beyond float32's range"),
])
def test_odd_python_values_are_one_line_input_errors(bundle, value, message):
    """A ragged list raised numpy's ValueError; bytes or a dict said 'shape ()'; 1e300 became Inf with a
    RuntimeWarning (and, when the gate kept audio, an error naming the graph's input 'x')."""
    from conftest import one_line_error

    with load(bundle) as p, warnings.catch_warnings():
        warnings.simplefilter("error")
        assert re.search(message, one_line_error(lambda: p.predict(text=_arrays()["text"], audio=value)))
        if isinstance(value, np.ndarray):
            assert re.search(message, one_line_error(lambda: p.predict_features({"audio": value[None]})))


def test_a_path_given_as_text_is_refused(minilm_bundle, bundle, tmp_path):
    """Text has no file front end, yet a path went down the media route: with no media limit the MiniLM bundle
    scored the path's own characters as the text; with one, 'cannot read media ...; expected a media file'; an
    external-features bundle skipped it as 'a media file'."""
    from conftest import one_line_error

    (tmp_path / "review.txt").write_text("a good film", encoding="utf-8")
    audio = _arrays()["audio"]
    for predictor in (load(minilm_bundle, max_media_seconds=math.inf), load(minilm_bundle), load(bundle)):
        with predictor as p:
            message = one_line_error(lambda: p.predict(text=tmp_path / "review.txt", audio=audio))
            assert message == (f"text is a path ({tmp_path / 'review.txt'}); expected a string or an "
                               f"(L, {p.spec.dim('text')}) array (read the file's text first)")


def test_a_closed_predictor_says_so(bundle):
    """A Predictor used after its `with` block said 'onnxruntime rejected the inputs ('NoneType' object has no
    attribute 'run')', blaming the inputs."""
    from conftest import one_line_error

    with load(bundle) as p:
        assert p.predict(audio=_arrays()["audio"]).ran == ["audio"]
    closed = "this Predictor is closed (its `with` block ended, or close() was called)"
    assert one_line_error(lambda: p.predict(audio=_arrays()["audio"])).startswith(closed)
    assert one_line_error(lambda: p.predict_features({"audio": np.ones((1, 2, 5))})).startswith(closed)


def test_per_input_errors_cross_a_process_boundary_intact():
    """ItemError and TextError did not unpickle (Exception pickles its message alone, their __init__ takes more),
    so one raised in a worker process (multiprocessing, concurrent.futures) broke the pool instead of reaching it."""
    import pickle

    from edge_msa.features.text import TextError
    from edge_msa.runtime import ItemError

    for error in (ItemError(3, "empty text; expected at least one word"), TextError(2, "empty text", 5)):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert (back.index, back.reason) == (error.index, error.reason)


def test_tensors_numpy_cannot_read_and_features_not_in_a_dict_are_one_line_errors(bundle):
    """A torch tensor that requires grad raised torch's RuntimeError from inside numpy (predict and
    predict_features); an array given to predict_features instead of a dict raised 'unhashable type'."""
    import torch
    from conftest import one_line_error

    audio = torch.zeros(3, 5, requires_grad=True)
    with load(bundle) as p:
        assert p.predict(audio=audio.detach()).ran == ["audio"]
        message = one_line_error(lambda: p.predict(audio=audio))
        assert message.startswith("audio is a Tensor that numpy cannot read (") and "detach" in message
        assert "expected (L, 5)" in message
        assert "expected (B, L, 5)" in one_line_error(lambda: p.predict_features({"audio": audio[None]}))
        text = _arrays()["text"][None]
        assert one_line_error(lambda: p.predict_features(text)) == (
            "predict_features got features of type ndarray; expected a dict {modality: array} with modalities text, "
            "audio, video")
        assert "predict_features got lengths of type ndarray" in one_line_error(
            lambda: p.predict_features({"text": text}, np.array([9])))
        # audio lengths without audio features were dropped: audio ran as missing
        assert one_line_error(lambda: p.predict_features({"text": text}, {"audio": np.array([3])})) == (
            "lengths given for audio without features; expected features and lengths for the same modalities")


def test_predict_batch_refuses_a_single_dict_or_string_and_names_a_directory(bundle, tmp_path):
    """predict_batch({"text": ...}) was read key by key ('unknown input keys [e, t, x]')."""
    from conftest import one_line_error

    with load(bundle) as p:
        assert "predict_batch got a dict; expected a list of {text, audio, video} dicts (predict() takes one " \
            "input)" == one_line_error(lambda: p.predict_batch({"audio": _arrays()["audio"]}))
        assert "got an item of type str" in one_line_error(lambda: p.predict_batch(["text"]))
        # a bad item of several is named (an unknown key was not; mixed key types raised sorted's TypeError)
        audio = {"audio": _arrays()["audio"]}
        assert one_line_error(lambda: p.predict_batch([audio, {0: 1, "img": 2}])) == (
            "input index 1: unknown input keys ['img', 0]; expected text, audio, video")
        assert one_line_error(lambda: p.predict_batch([audio, None])).startswith(
            "input index 1: predict_batch got an item of type NoneType; expected a list")
        # a generator was used up by the checks (then a TypeError from numpy); None was 'not iterable'
        assert len(p.predict_batch({"audio": _arrays(seed)["audio"]} for seed in range(2))) == 2
        assert one_line_error(lambda: p.predict_batch(None)).startswith("predict_batch got a NoneType; expected a list")
        assert one_line_error(lambda: p.predict(audio=tmp_path)).endswith("is a folder; expected a media file")


def test_cli_eval_out_a_directory_is_refused_before_scoring(bundle, tmp_path, capsys, monkeypatch):
    """--out naming a folder ran the whole evaluation, then died in the final rename (IsADirectoryError)."""
    import edge_msa.data as data
    from edge_msa.cli import main

    monkeypatch.setattr(data, "rebuild_splits", lambda *a, **k: pytest.fail("the split was read"))
    assert main(["eval", str(bundle), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --out '{tmp_path}' is a folder; expected the path of the file to write\n"
    new_folder = f"{tmp_path / 'results'}/"  # not there yet: the metrics were written to a file named 'results'
    assert main(["eval", str(bundle), "--out", new_folder]) == 2
    assert capsys.readouterr().err == (f"error: --out '{new_folder}' is a folder; expected the path of the file to "
                                       "write\n")
    assert not (tmp_path / "results").exists()


def test_cli_eval_of_an_empty_split_is_a_one_line_error(bundle, tmp_path, capsys, monkeypatch):
    """A label.csv whose rows are all mode=train (`feedback export` can write one) has an empty test split:
    eval said `ValueError: need at least one array to concatenate` (exit 1) instead of naming the split; a one-row
    split got the metrics' "metrics need two equal-length arrays of >= 2 scores"."""
    import edge_msa.data as data
    from edge_msa.cli import main
    from edge_msa.data.base import DatasetSplits

    sets = [make_featureset(SPEC, n, seed) for seed, n in enumerate((6, 1, 0))]
    info = {"path": "l.csv", "sizes": {"train": 6, "valid": 1, "test": 0}}  # as data.assemble records them
    monkeypatch.setattr(data, "rebuild_splits", lambda *a, **k: DatasetSplits(SPEC, *sets, info=info))
    assert main(["eval", str(bundle), "--data", "l.csv", "--split", "test", "--out", str(tmp_path / "m.json")]) == 2
    assert capsys.readouterr().err == ("error: the test split of l.csv holds 0 samples (train 6, valid 1, test 0); "
                                       "expected a --split with at least 2\n")
    assert main(["eval", str(bundle), "--data", "l.csv", "--split", "valid"]) == 2  # the metrics named no split
    assert capsys.readouterr().err == ("error: the valid split of l.csv holds 1 sample (train 6, valid 1, test 0); "
                                       "expected a --split with at least 2\n")
    assert not (tmp_path / "m.json").exists()


def test_eval_of_a_model_that_scores_no_number_is_the_runtimes_one_line(bundle, broken, tmp_path, capsys,
                                                                       monkeypatch):
    """eval of a broken model (a NaN weight exports and loads) was refused by the metrics as "metrics got NaN/Inf
    scores; expected finite predictions and labels": the data seemed at fault, and no bundle was named. The Python
    evaluate and `edge-msa eval` give the runtime's BrokenModel line now; the CLI exits 2 and writes no --out."""
    import edge_msa.data as data
    from edge_msa.cli import main
    from edge_msa.data.base import DatasetSplits
    from edge_msa.runtime.evaluate import evaluate
    from edge_msa.runtime.predictor import BrokenModel

    sets = [make_featureset(SPEC, n, seed) for seed, n in enumerate((6, 4, 8))]
    monkeypatch.setattr(data, "rebuild_splits", lambda *a, **k: DatasetSplits(SPEC, *sets, info={"path": "l.csv"}))
    assert main(["eval", str(bundle), "--out", str(tmp_path / "m.json")]) == 2
    assert capsys.readouterr().err == f"error: {broken}\n" and not (tmp_path / "m.json").exists()
    with load(bundle) as p, pytest.raises(BrokenModel) as info:
        evaluate(p, sets[2])
    assert str(info.value) == broken


def test_cli_text_is_a_feature_file_only_when_it_looks_like_a_path(tmp_path):
    """`--text "I loved the file named results.npy"` was read as a feature file path (and failed as one); the same
    for --batch CSV cells. One word ending in .npy, or an existing file (even with a space), is still a path."""
    from conftest import one_line_error
    from edge_msa.cli.predict import _csv_items, _text

    np.save(tmp_path / "my feats.npy", _arrays()["text"])
    sentence = "I loved the file named results.npy"
    assert _text(sentence, tmp_path) == sentence
    assert _text("my feats.npy", tmp_path).shape == (SPEC.max_len("text"), SPEC.dim("text"))
    assert "feature file" in one_line_error(lambda: _text("results.npy", tmp_path))
    (tmp_path / "in.csv").write_text(f'text\n"{sentence}"\nmy feats.npy\n')
    items = _csv_items(tmp_path / "in.csv")
    assert items[0]["text"] == sentence and isinstance(items[1]["text"], np.ndarray)


@pytest.mark.parametrize("args", [["info", "--json"], ["predict", "--features", "many.npz"]])
def test_cli_output_to_a_closed_pipe_exits_quietly(bundle, tmp_path, args):
    """`edge-msa info B --json | head -1` printed a BrokenPipeError traceback and exited 1."""
    np.savez(tmp_path / "many.npz", audio=np.ones((64, 3, SPEC.dim("audio")), np.float32))
    argv = [sys.executable, "-m", "edge_msa", args[0], str(bundle), *args[1:]]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_a_graph_that_fails_is_our_one_line_error_without_onnxruntime_log_lines(bundle, capfd):
    """ORT printed its own `[E:onnxruntime:...]` line on stderr before our error (sessions logged errors)."""
    backend = OnnxRuntimeBackend(bundle / "fuse.onnx")
    feed = {i.name: np.zeros((2 if i.name != "h_audio" else 3, i.shape[1]), np.float32) for i in backend.inputs}
    with pytest.raises(InputError, match="fuse.onnx: onnxruntime rejected the inputs"):
        backend.run(feed)  # batch sizes that disagree fail inside the graph's Concat
    assert "onnxruntime" not in capfd.readouterr().err


@pytest.fixture
def broken(bundle, monkeypatch) -> str:
    """`bundle` run as a broken model runs (a NaN weight exports and loads): its fuse graph scores NaN. Returns the
    runtime's line for it."""
    run = OnnxRuntimeBackend.run
    monkeypatch.setattr(OnnxRuntimeBackend, "run", lambda self, feed: {
        k: np.full_like(v, np.nan) if self.label == "fuse" else v for k, v in run(self, feed).items()})
    return (f"bundle '{bundle}': the model scored nan (a broken bundle: NaN or infinite weights); expected a bundle "
            "whose model scores finite numbers (export it again from a sound checkpoint)")


def test_a_score_that_is_no_number_is_one_error_naming_the_bundle(bundle, broken, tmp_path, capfd):
    """A broken model (a NaN weight exports and loads) was answered `score: NaN` with polarity "neutral" by predict,
    predict_batch and `edge-msa predict` alike: an app read a neutral sentence. Each raises one ArtifactError naming
    the bundle now; predict_features still returns the raw scores (export's parity check reads them)."""
    import pickle

    from edge_msa.runtime.predictor import BrokenModel

    with load(bundle) as p:
        for call in (lambda: p.predict(audio=_arrays()["audio"]),
                     lambda: p.predict_batch([{"audio": _arrays(1)["audio"]}, {"text": _arrays(2)["text"]}])):
            with pytest.raises(ArtifactError) as info:
                call()
            assert str(info.value) == broken and isinstance(info.value, BrokenModel)
        scores, _ = p.predict_features({"audio": np.ones((2, 3, 5), np.float32)})
        assert np.isnan(scores).all()
    back = pickle.loads(pickle.dumps(info.value))  # a worker process's error reaches its pool
    assert type(back) is BrokenModel and (str(back), back.reason) == (broken, info.value.reason)
    np.save(tmp_path / "a.npy", _arrays()["audio"])
    r = _cli(capfd, "predict", bundle, "--audio", tmp_path / "a.npy")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {broken}\n")


@pytest.mark.parametrize("how", sorted(MANIFEST_EDITS))
def test_a_refused_manifest_field_names_the_file_not_the_word_manifest_again(bundle, tmp_path, how):
    """A field refused by the manifest's own checks read `<bundle>/manifest.json: manifest skip_thresholds[1] = ...`:
    the file, then the word again. The file is named once, the word left to a manifest built without one."""
    from edge_msa.runtime.manifest import Manifest

    broken = _broken_copy(bundle, tmp_path, how)
    with pytest.raises(ArtifactError) as info:
        load(broken)
    assert str(info.value).startswith(f"{broken / 'manifest.json'}")
    assert "manifest" not in str(info.value).split("manifest.json", 1)[1]
    with pytest.raises(ArtifactError) as info:
        Manifest(FeatureSpec((4, 5, 6), (3, 3, 3)), {}, "tree", "fp32", "x")
    assert str(info.value) == "manifest layout 'tree' is unknown; expected 'parts' or 'single'"
