"""Export round trips on tiny random-weight models: torch -> ONNX -> the on-device runtime, for every graph
and every modality subset; single graph; fp16 / int8; format table; nothing half-written on failure."""
from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edge_msa.checkpoint import save_checkpoint
from edge_msa.errors import InputError, MissingDependencyError, ParityError
from edge_msa.models import create_model
from edge_msa.models.student import run_with_skipping
from edge_msa.runtime import load, read_manifest
from edge_msa.spec import MODALITIES, PARTS, FeatureSpec
from edge_msa.export import FORMATS, export
from edge_msa.export.formats import get_format, resolve_options
from edge_msa.export.parity import TIE_BAND, check_graphs, parity_batches, to_torch_batch
from edge_msa.export.slim import slim_file

from conftest import needs_data, one_line_error

SPEC = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4))
SUBSETS = [s for n in range(1, 4) for s in itertools.combinations(MODALITIES, n)]


def student_checkpoint(path, **params):
    """student_tiny with skip thresholds at the median keep of random inputs, so the gate skips about half."""
    torch.manual_seed(0)
    model = create_model("student_tiny", SPEC, **params).eval()
    b = parity_batches(SPEC, None)[-1]
    batch = to_torch_batch(b.features, b.lengths)
    with torch.no_grad():
        keep = model.keep(model.encode("text", batch["text"], batch["text_mask"]), batch)  # (B, 2)
    thresholds = [float(v) for v in keep.median(dim=0).values]
    model.config_params["skip_thresholds"] = thresholds
    return save_checkpoint(path, model, {"note": "test"}), model


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return student_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")


@pytest.fixture(scope="module")
def bundle(student, tmp_path_factory):
    return export(student[0], out=tmp_path_factory.mktemp("b") / "bundle", log=None)


def test_parts_bundle_manifest_and_parity(bundle):
    m = read_manifest(bundle)
    assert m.layout == "parts" and m.skipping and m.precision == "fp32" and m.model == "student_tiny"
    assert set(m.graphs) == set(PARTS) and all((bundle / f).is_file() for f in m.graphs.values())
    fp32 = m.parity
    assert fp32["ok"] and fp32["ran_mismatches"] == 0 and set(fp32["max_abs_diff"]) == {*PARTS, "score"}
    assert max(fp32["max_abs_diff"].values()) <= 1e-4
    assert m.feature_spec == SPEC and m.skip_thresholds and len(m.skip_thresholds) == 2
    jetpack5 = {"ok": False, "unsupported": {"encode_text": ["LayerNormalization"], "fuse": ["LayerNormalization"]}}
    assert m.tensorrt_check == {"ok": True, "unsupported": {}, "tensorrt_8.5": jetpack5}  # opset 17 (the default)
    assert (bundle / "manifest.json").stat().st_mode & 0o044 == 0o044  # readable by others
    lines = (bundle / "trtexec.txt").read_text().splitlines()
    assert sum(line.startswith("trtexec --onnx=") for line in lines) == len(PARTS)
    assert "--minShapes=x:1x1x12,mask:1x1" in (bundle / "trtexec.txt").read_text()


def test_runtime_matches_torch_skip_rule_on_every_subset(student, bundle):
    """Independent of the exporter's own check: new random lengths, every subset, skip decisions equal."""
    _, model = student
    rng = np.random.default_rng(7)
    skipped_somewhere = ran_somewhere = False
    with load(bundle) as predictor:
        for subset in SUBSETS:
            lengths = {m: rng.integers(1, SPEC.max_len(m) + 1, 6) if m in subset else np.zeros(6, np.int64)
                       for m in MODALITIES}
            feats = {m: rng.normal(size=(6, SPEC.max_len(m), SPEC.dim(m))).astype(np.float32) for m in MODALITIES}
            for m in MODALITIES:
                feats[m][np.arange(SPEC.max_len(m))[None, :] >= lengths[m][:, None]] = 0
            scores, ran = predictor.predict_features(feats, lengths)
            ref, ref_ran = run_with_skipping(model, to_torch_batch(feats, lengths))
            assert np.abs(scores - ref.numpy()).max() <= 1e-4, subset
            assert (ran == ref_ran.numpy()).all(), subset
            if "audio" in subset:
                skipped_somewhere |= bool((~ran[:, 1]).any())
                ran_somewhere |= bool(ran[:, 1].any())
    assert skipped_somewhere and ran_somewhere  # both branches of the gate were exercised


def test_parity_line_printed(student, tmp_path):
    lines = []
    export(student[0], out=tmp_path / "b", log=lines.append)
    assert re.fullmatch(r"ONNX parity: max\|Δ\| = \de[-+]\d\d <= 1e-04 ✓ \(parts: gate .*", lines[0])


def test_single_graph_student(student, tmp_path):
    out = export(student[0], out=tmp_path / "single", single_graph=True, log=None)
    m = read_manifest(out)
    assert m.layout == "single" and not m.skipping and list(m.graphs) == ["model"]
    assert json.loads((out / "manifest.json").read_text())["skipping"] is False
    assert m.parity["max_abs_diff"]["model"] <= 1e-4
    _, model = student
    b = parity_batches(SPEC, None, seed=3)
    with load(out) as predictor:
        for pb in b:
            scores, ran = predictor.predict_features(pb.features, pb.lengths)
            with torch.no_grad():
                ref = model(to_torch_batch(pb.features, pb.lengths))["score"].numpy()
            assert np.abs(scores - ref).max() <= 1e-4
            assert (ran == np.stack([pb.lengths[m] > 0 for m in MODALITIES], 1)).all()  # no skipping


def test_parity_counts_a_decision_at_the_threshold_as_a_tie(student, bundle):
    """torch and ONNX Runtime may round a gate output on either side of its threshold: within TIE_BAND that
    is a tie, and the score is compared under the bundle's decisions (was a flaky ParityError)."""
    _, model = student
    batches = parity_batches(SPEC, None)
    b = to_torch_batch(batches[-1].features, batches[-1].lengths)
    with torch.no_grad():
        k = float(model.keep(model.encode("text", b["text"], b["text_mask"]), b)[0, 0])  # row 0, audio
    t_video = model.config_params["skip_thresholds"][1]
    torch_side = copy.deepcopy(model)
    torch_side.config_params["skip_thresholds"] = [k + TIE_BAND / 2, t_video]  # torch skips row 0's audio
    with load(bundle) as predictor:
        predictor.thresholds = [k - TIE_BAND / 2, t_video]  # the bundle runs it
        result = check_graphs(torch_side, "parts", predictor, batches, 1e-4, "test inputs")
    assert result.ok and result.ran_mismatches == 0 and result.ran_ties >= 1
    assert result.max_abs_diff["score"] <= 1e-4  # same decisions on both sides, so the scores agree


def test_parity_uses_every_validation_input_in_engine_sized_chunks():
    from conftest import make_featureset

    valid = make_featureset(SPEC, 70)
    batches = parity_batches(SPEC, valid, max_batch=32)
    assert len(batches) == len(SUBSETS) * 3 and max(len(x.lengths["text"]) for x in batches) == 32
    assert sum(len(x.lengths["text"]) for x in batches if x.subset == MODALITIES) == 70


def test_block_shared_by_text_and_fusion_exports(tmp_path):
    """share="depth+modality": one block in both encode_text and fuse (each graph carries its copy)."""
    ckpt, _ = student_checkpoint(tmp_path / "s.pt", share="depth+modality")
    m = read_manifest(export(ckpt, out=tmp_path / "b", log=None))
    assert m.parity["ok"] and m.parity["max_abs_diff"]["fuse"] <= 1e-4


@pytest.mark.parametrize("name", ["fd_cmdie_tiny", "gtf_tiny", "mult_tiny"])
def test_teachers_export_as_one_graph(name, tmp_path, capfd):
    model = create_model(name, SPEC)
    ckpt = save_checkpoint(tmp_path / "t.pt", model, {})
    m = read_manifest(export(ckpt, out=tmp_path / "b", log=None))
    assert m.layout == "single" and m.parity["max_abs_diff"]["model"] <= 1e-4
    assert "PackPadded" not in capfd.readouterr().err  # the exporter's C++ note for LSTMs is filtered


def test_export_replays_other_cpp_stderr(capfd):
    """Only the known PackPadded note is dropped; anything else written to fd 2 during export gets through."""
    import os

    from edge_msa.export.onnx import _quiet_exporter

    with _quiet_exporter():
        os.write(2, b"[W] The shape inference of prim::PackPadded type is missing, so ...\n")
        os.write(2, b"something else from C++\n")
    assert capfd.readouterr().err == "something else from C++\n"


def test_failed_graph_export_is_one_line_without_the_ir_dump(student, tmp_path, capfd):
    """At opset 11 the student's attention cannot export: the exporter's ~170-line Torch IR dump went to stdout
    above the one-line error (export() refuses opset 11 up front; its graph step is called directly here)."""
    from edge_msa.errors import ArtifactError
    from edge_msa.export.onnx import export_graphs

    config = student[1].export_config()
    with pytest.raises(ArtifactError, match="cannot export graph 'encode_text' .*added in version 14"):
        export_graphs(config, tmp_path, 11, dedupe=True, short_names=True)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("opset", [11, 13, 21])
def test_an_opset_no_model_exports_at_fails_before_any_work(tmp_path, opset):
    """Every model's attention needs opset 14: 11..13 were accepted and failed only after loading the checkpoint."""
    message = one_line_error(lambda: export(tmp_path / "absent.pt", out=tmp_path / "b", opset=opset, log=None))
    assert message.startswith(f"opset = {opset}; expected 14 <= opset <= 20 (every model's attention needs 14")
    assert list(tmp_path.iterdir()) == []


def test_export_help_names_the_opset_range_that_is_checked(tmp_path, capsys, monkeypatch):
    """The help said "14..20" and the check `top=20`, literals beside MIN_OPSET: both follow the constants now (a
    torch whose TorchScript exporter writes opset 21 is one edit), as does the default the help names."""
    from edge_msa.cli import main
    from edge_msa.export import formats

    monkeypatch.setattr(formats, "MAX_OPSET", 21)
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert f"ONNX opset, {formats.MIN_OPSET}..21 (default: {formats.DEFAULTS['opset']}," in said
    message = one_line_error(lambda: export(tmp_path / "absent.pt", out=tmp_path / "b", opset=22, log=None))
    assert message.startswith(f"opset = 22; expected {formats.MIN_OPSET} <= opset <= 21 ")
    message = one_line_error(lambda: export(tmp_path / "absent.pt", out=tmp_path / "b", opset=21, log=None))
    assert message.startswith("checkpoint ") and "does not exist" in message  # 21 passed the range check


def test_opset_and_workspace_are_named_as_given_on_the_cli(tmp_path, capsys):
    """`opset 21 is out of range` / `workspace_mb must be ...; got 0` named neither the flag typed nor the keyword."""
    from edge_msa.cli import main

    for flags, says in ((["--opset", "21"], "--opset 21; expected 14 <= opset <= 20"),
                        (["--format", "engine", "--workspace-mb", "0"], "--workspace-mb 0; expected >= 1 (MiB; "
                         "TensorRT's builder")):
        assert main(["export", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "b"), "--quiet", *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {says}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []



def test_a_bundle_path_that_is_not_utf8_is_refused_as_load_refuses_it_before_any_work(student, tmp_path, capsys):
    """A folder named in Latin-1 bytes (Python keeps them as surrogates): the graph exporter refused it after the
    checkpoint was read, as "cannot export graph 'gate' of student_tiny to ONNX (_export_onnx(): incompatible
    function arguments...)", and load() would refuse the bundle anyway."""
    from edge_msa.cli import main

    out = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9")) / "bundle"
    assert main(["export", str(student[0]), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {one_line_error(lambda: load(out))}\n"
    assert list(tmp_path.iterdir()) == []

def test_parity_failure_names_parts_and_writes_nothing(student, tmp_path):
    with pytest.raises(ParityError, match=r"ONNX parity failed: max\|Δ\| > 1e-12 for .*encode_text \d"):
        export(student[0], out=tmp_path / "b", atol=1e-12, log=None)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_scores_nan_is_refused_and_writes_nothing(student, tmp_path):
    """A NaN weight exported and loaded (parity's max() kept 0 against a NaN difference), and the service answered
    its null score as a neutral 200."""
    path, model = student
    broken = copy.deepcopy(model)
    with torch.no_grad():
        dict(broken.named_parameters())["head_fc2.bias"].fill_(float("nan"))  # every score
    save_checkpoint(tmp_path / "broken.pt", broken, {"note": "test"})
    with pytest.raises(ParityError, match=r"^the checkpoint's model scored NaN or inf on 8 of 8 parity inputs .*"
                                          r"expected finite scores[^\n]*$"):
        export(tmp_path / "broken.pt", out=tmp_path / "b", log=None)
    assert not (tmp_path / "b").exists()


def test_a_nan_difference_fails_parity():
    from edge_msa.export.parity import _worst

    assert _worst(0.0, np.array([1.0, np.nan]), np.array([1.0, 2.0])) == math.inf
    assert _worst(0.5, np.array([1.0]), np.array([1.25])) == 0.5


def test_out_replaces_an_earlier_bundle_but_never_another_folder(student, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "teacher.pt").write_bytes(b"precious")
    with pytest.raises(InputError, match=r"--out '.*runs' exists and is not an earlier bundle \(no manifest.json\)"):
        export(student[0], out=runs, log=None)
    with pytest.raises(InputError, match=r"^--out '.*runs' exists"):  # before the data is read: it said 'dataset
        export(student[0], out=runs, data=tmp_path / "absent.npz", log=None)  # not found' (a real one: tokenized)
    assert [p.name for p in runs.iterdir()] == ["teacher.pt"] and (runs / "teacher.pt").read_bytes() == b"precious"
    bundle = export(student[0], out=tmp_path / "b", log=None)
    (bundle / "stale.txt").write_text("from the earlier export")
    assert not (export(student[0], out=bundle, log=None) / "stale.txt").exists()  # replaced as a whole


def test_dedupe_drops_identical_initializers(tmp_path):
    """Two byte-identical weight copies (what per-call-site exporters emit for a shared block) become one."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32])],
        [numpy_helper.from_array(w, "w1"), numpy_helper.from_array(w.copy(), "w2")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    before = path.stat().st_size
    x = np.random.default_rng(1).normal(size=(2, 32)).astype(np.float32)
    import onnxruntime as ort
    y0 = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert slim_file(path, short_names=False) == path.stat().st_size < before - w.nbytes + 100
    assert [i.name for i in onnx.load(str(path)).graph.initializer] == ["w1"]  # one of the two copies removed
    assert np.array_equal(ort.InferenceSession(str(path)).run(None, {"x": x})[0], y0)


def test_bundle_has_no_duplicate_initializers(bundle):
    for f in read_manifest(bundle).graphs.values():
        inits = onnx.load(str(bundle / f)).graph.initializer
        blobs = [(i.data_type, tuple(i.dims), onnx.numpy_helper.to_array(i).tobytes()) for i in inits]
        assert len(blobs) == len(set(blobs)), f


@pytest.fixture(scope="module")
def wide_student(tmp_path_factory):
    """Wide enough that weights dominate the graph files (int8 then shrinks them)."""
    return student_checkpoint(tmp_path_factory.mktemp("wide") / "wide.pt", dim=128, heads=4, ffn=256)[0]


@pytest.mark.slow  # two exports of a 128-wide student: ~8-11 s on the shared 2 cores
def test_int8_bundle_smaller_and_flagged_for_tensorrt(wide_student, tmp_path):
    fp32 = export(wide_student, out=tmp_path / "fp32", log=None)
    int8 = export(wide_student, format="onnx-int8", out=tmp_path / "int8", log=None)
    size = {b: sum((b / f).stat().st_size for f in read_manifest(b).graphs.values()) for b in (fp32, int8)}
    assert size[int8] < 0.6 * size[fp32]
    m = read_manifest(int8)
    assert m.precision == "int8" and m.parity["int8"]["max_abs_diff"]["score"] < 0.5  # random weights; judged by --data
    assert "unavailable" in m.metrics["valid"]  # no --data: the accuracy drop is not claimed
    assert not m.tensorrt_check["ok"] and "MatMulInteger" in sum(m.tensorrt_check["unsupported"].values(), [])
    # trtexec.txt offered commands on these graphs that TensorRT cannot parse: each is commented out, saying why
    lines = (int8 / "trtexec.txt").read_text().splitlines()
    assert not any(line.startswith("trtexec") for line in lines)
    for part in m.tensorrt_check["unsupported"]:
        assert any(line.startswith(f"# trtexec --onnx={part}.onnx ") for line in lines)
        assert any(line.startswith(f"# {part}.onnx uses ") and "MatMulInteger" in line and "--format engine" in line
                   for line in lines)


def test_info_counts_every_file_on_disk_and_the_parity_of_its_precision(student, media_bundle, tmp_path, capsys):
    """`info` listed the graphs alone: a bundle with a frozen MiniLM front end read as ~40 KiB where 22 MiB lie on
    disk (text_encoder.onnx), and an int8 bundle showed only its fp32 parity, not the int8 graphs' own."""
    from edge_msa.cli import main

    int8 = export(student[0], format="onnx-int8", out=tmp_path / "int8", log=None)
    out = {}
    for bundle, unit, scale in ((int8, "KiB", 1024), (media_bundle, "MiB", 1024 ** 2)):
        assert main(["info", str(bundle)]) == 0
        out[bundle] = capsys.readouterr().out
        files = [f for f in bundle.rglob("*") if f.is_file()]
        total = sum(f.stat().st_size for f in files)
        assert f"on disk    {total / scale:.1f} {unit} in {len(files)} files\n" in out[bundle]
    encoder = (media_bundle / "text_encoder.onnx").stat().st_size
    assert f"text       onnx text_encoder.onnx ({encoder / 1024 ** 2:.1f} MiB), tokenizer tokenizer.json (" in (
        out[media_bundle])
    int8_parity = read_manifest(int8).parity["int8"]["max_abs_diff"]
    assert f"parity     int8 max|Δ| {int8_parity} atol None ok True\n" in out[int8]


def _count_line(checkpoint) -> str:
    """What `info` must say of `checkpoint`'s model: compress's counter (measure.count_model) on one input at the
    spec's max lengths, labelled end to end for a model that encodes token ids itself."""
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.compress.measure import END_TO_END, FROM_FEATURES, count_model
    from edge_msa.models.with_text import WithTextEncoder

    model, _ = load_checkpoint(checkpoint)
    spec = model.spec
    full = {m: np.full(1, spec.max_len(m)) for m in MODALITIES}
    count = count_model(model, to_torch_batch({m: np.zeros((1, spec.max_len(m), spec.dim(m)), np.float32)
                                               for m in MODALITIES}, full))
    label = END_TO_END if isinstance(model, WithTextEncoder) else FROM_FEATURES
    return (f"count      {count['params']:,} parameters, {count['macs']:,.0f} MACs per input (batch 1 at max_lens "
            f"{list(spec.max_lens)}), {label}\n")


@pytest.mark.parametrize("which", ["bundle", "token_bundle"])
def test_info_shows_the_params_and_macs_measure_counts_for_the_checkpoint(which, request, capsys):
    """`info` listed files and bytes but no parameter count or MACs (only compress's report had them): export
    records them, counted end to end from token ids (embeddings included) for a model that encodes them itself,
    and `info` prints the same line for the bundle and for its checkpoint."""
    from edge_msa.cli import main

    bundle = request.getfixturevalue(which)
    checkpoint = read_manifest(bundle).export_options["checkpoint"]
    line = _count_line(checkpoint)
    assert ("end to end from token ids" in line) is (which == "token_bundle")
    for path in (bundle, checkpoint):
        assert main(["info", str(path)]) == 0
        assert line in capsys.readouterr().out


def test_info_says_unknown_for_a_bundle_exported_without_the_count(bundle, tmp_path, capsys):
    """Bundles exported before the count was recorded still load (format_version unchanged) and say so."""
    import shutil

    from edge_msa.cli import main

    old = Path(shutil.copytree(bundle, tmp_path / "old"))
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    del manifest["metrics"]["count"]
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert main(["info", str(old)]) == 0
    assert "\ncount      unknown: not in this manifest (exported by an older edge-msa; re-export to record it)\n" in (
        capsys.readouterr().out)


def test_checkpoint_info_without_torch_pruning_names_the_fix(student, monkeypatch, capsys):
    """The MAC counter is torch-pruning's: without it the checkpoint summary still prints, and says what to install."""
    from edge_msa.cli import main

    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import fails as if it were not installed
    assert main(["info", str(student[0])]) == 0
    out = capsys.readouterr().out
    assert "\ncount      unknown: torch_pruning is required for counting MACs and params" in out
    assert 'pip install "edge-msa[train]"' in out and "model      student_tiny" in out


def test_fp16_keeps_layernorm_and_residuals_fp32(student, tmp_path):
    out = export(student[0], format="onnx-fp16", out=tmp_path / "fp16", log=None)
    m = read_manifest(out)
    assert m.precision == "fp16" and m.parity["fp16"]["max_abs_diff"]["score"] < 0.05
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(out / "encode_text.onnx"))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({i.name: i.data_type for i in graph.initializer})
    producers = {o: n for n in graph.node for o in n.output}
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(types[i] == onnx.TensorProto.FLOAT for n in norms for i in n.input)
    residual = [producers[n.input[0]] for n in norms]
    residual = [producers[r.input[0]] if r.op_type == "Cast" else r for r in residual]  # cast inserted after Add?
    assert all(r.op_type == "Add" and types[r.output[0]] == onnx.TensorProto.FLOAT for r in residual)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)  # the rest is fp16
    assert all(types[i.name] == onnx.TensorProto.FLOAT for i in [*graph.input, *graph.output]
               if i.type.tensor_type.elem_type != onnx.TensorProto.BOOL)


def test_fp16_without_converter_names_the_extra(student, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "edge-msa\[fp16\]"'):
        export(student[0], format="onnx-fp16", out=tmp_path / "b", log=None)
    assert list(tmp_path.iterdir()) == []


def test_format_table_validation():
    assert set(FORMATS) == {"onnx", "onnx-fp16", "onnx-int8", "engine"}
    with pytest.raises(InputError, match="did you mean 'onnx'"):
        get_format("onx")
    with pytest.raises(InputError, match="did you mean 'atol'"):
        resolve_options(FORMATS["onnx"], {"atoll": 1e-3})
    with pytest.raises(InputError, match=r"option --max-drop \(max_drop=\) does not apply to format 'onnx'; "
                                         "expected one of the formats that take it: onnx-fp16, onnx-int8, engine"):
        resolve_options(FORMATS["onnx"], {"max_drop": 1.0})
    assert resolve_options(FORMATS["onnx-int8"], {})["max_drop"] == 0.5


def test_format_names_in_any_case_and_other_tools_names_suggested():
    """`--format ONNX` (Ultralytics lower-cases format=) was 'unknown' with no suggestion; so were TensorRT's names."""
    assert get_format("ONNX-INT8") is FORMATS["onnx-int8"] and get_format("Engine") is FORMATS["engine"]
    for name in ("tensorrt", "TRT"):
        assert one_line_error(lambda: get_format(name)) == (f"unknown format '{name}' (did you mean 'engine'?); "
                                                            f"expected one of {', '.join(FORMATS)}")  # spec.suggest's


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_workspace_below_one_mib_refused_before_any_work(bad):
    """workspace_mb <= 0 reached TensorRT's set_memory_pool_limit only after every graph was exported."""
    message = one_line_error(lambda: resolve_options(FORMATS["engine"], {"workspace_mb": bad}))
    said = re.escape(f"workspace_mb = {bad}; expected ")
    assert re.match(said + r"(a whole number )?>= 1 \(MiB; TensorRT's builder", message)


@pytest.mark.parametrize("options, says", [({"opset": "abc"}, "opset = 'abc'; expected a whole number 14 <= opset "
                                                              "<= 20"),
                                           ({"opset": 17.5}, "opset = 17.5; expected a whole number 14 <= opset <= 20"),
                                           # the one rule's fix for a whole float (its own check said only "a whole number")
                                           ({"opset": 17.0}, "opset = 17.0 is a float; expected a whole number 14 <= "
                                                             "opset <= 20 (every model's attention needs 14; 17 suits "
                                                             "TensorRT 8.6+, 16 TensorRT 8.5; write 17)"),
                                           ({"max_batch": 2.5}, "max_batch = 2.5; expected a whole number >= 1"),
                                           ({"max_batch": "2"}, "max_batch = '2'; expected a whole number >= 1"),
                                           ({"atol": "0.1"}, "atol = '0.1'; expected a number > 0")])
def test_whole_and_numeric_options_from_python_are_one_line(options, says):
    """export's CLI parses these with type=int / float; from Python opset "abc" was a ValueError from int(), 17.5 and
    max_batch 2.5 were taken (check_range's whole=True), a string atol a bare TypeError from the comparison."""
    assert one_line_error(lambda: resolve_options(FORMATS["onnx-int8"], options)).startswith(says)


@pytest.mark.parametrize("options, says", [({"atol": 0.0}, "atol = 0.0; expected > 0"),
                                           ({"atol": math.nan}, "atol = nan; expected a finite number > 0"),
                                           ({"max_batch": 0}, "max_batch = 0; expected >= 1"),
                                           ({"max_drop": -1.0}, "max_drop = -1.0; expected >= 0 (inf: no limit)")])
def test_tolerances_follow_the_one_range_rule_named_as_given(options, says, tmp_path, capsys):
    """`atol must be > 0 and max_batch >= 1; got 0.0, 16` named both knobs for one, and the keywords on the CLI."""
    from edge_msa.cli import main

    assert one_line_error(lambda: resolve_options(FORMATS["onnx-int8"], options)) == says
    resolve_options(FORMATS["onnx-int8"], {"max_drop": math.inf})  # no limit, as the README's `--max-drop inf`
    (name, value), = options.items()
    flags = ["--format", "onnx-int8", f"--{name.replace('_', '-')}", str(value)]
    assert main(["export", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "b"), "--quiet", *flags]) == 2
    assert capsys.readouterr().err == f"error: --{name.replace('_', '-')} {says.split(' = ', 1)[1]}\n"
    assert list(tmp_path.iterdir()) == []


def test_cli_workspace_flag_reaches_the_format_table(student, tmp_path):
    """workspace_mb is an engine option of the format table, but the CLI had no flag for it."""
    r = _cli("export", student[0], "--format", "onnx", "--workspace-mb", "64", "--out", tmp_path / "b")
    assert r.returncode == 2 and r.stderr.strip() == ("error: option --workspace-mb (workspace_mb=) does not apply to "
                                                      "format 'onnx'; expected one of the formats that take it: engine")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", [{"atol": float("nan")}, {"max_drop": -1.0}, {"max_drop": float("nan")}])
def test_nan_or_negative_limits_refused_before_any_work(option):
    """A NaN atol passed `atol <= 0` and failed parity as 'max|Δ| > nan for ' (no graph named); a negative or NaN
    max_drop was accepted, then failed every export judged on --data."""
    message = one_line_error(lambda: resolve_options(FORMATS["onnx-int8"], option))
    assert message.startswith(f"{next(iter(option))} = ") and "; expected " in message


def test_bad_trt_precision_says_what_is_wrong():
    message = one_line_error(lambda: resolve_options(FORMATS["engine"], {"trt_precision": "int9"}))
    assert message == "trt_precision 'int9' is not an engine precision (did you mean 'int8'?); expected one of fp32, fp16, int8"  # said not what was wrong


def _cli(*args) -> subprocess.CompletedProcess:
    """`edge-msa ARGS` run by cli.main in this process, as `python -m edge_msa` runs it (its exit code, stdout and
    stderr): a subprocess per call spent seconds importing torch again."""
    from edge_msa.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None,
                    reason="tensorrt is installed here; this checks the message shown where it is missing")
def test_engine_without_tensorrt_exits_2_and_writes_nothing(student, tmp_path):
    r = _cli("export", student[0], "--format", "engine", "--out", tmp_path / "trt")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: tensorrt is required for --format engine")
    assert "JetPack" in r.stderr and "pip install tensorrt" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_unknown_format_suggests(student, tmp_path):
    r = _cli("export", student[0], "--format", "onx", "--out", tmp_path / "b")
    assert r.returncode == 2 and r.stderr.strip() == "error: unknown format 'onx' (did you mean 'onnx'?); expected one of onnx, onnx-fp16, onnx-int8, engine"


def _weight_zero_point_sizes(graph_path) -> set[int]:
    """Sizes of the int8 weights' zero points (MatMulInteger's 4th input): 1 per tensor, one per output channel."""
    graph = onnx.load(str(graph_path)).graph
    zero_points = {n.input[3] for n in graph.node if n.op_type == "MatMulInteger"}
    return {int(np.prod(i.dims)) for i in graph.initializer if i.name in zero_points}


@pytest.mark.slow  # two CLI int8 exports
def test_cli_int8_weights_per_channel_by_default_per_tensor_on_request(student, tmp_path):
    for flag, per_channel in (((), True), (("--no-per-channel",), False)):
        out = tmp_path / f"b{per_channel}"
        r = _cli("export", student[0], "--format", "onnx-int8", *flag, "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        assert read_manifest(out).export_options["per_channel"] is per_channel
        sizes = _weight_zero_point_sizes(out / "encode_text.onnx")
        assert (max(sizes) > 1) is per_channel, sizes
    r = _cli("export", student[0], "--per-channel", "--out", tmp_path / "fp32")
    assert r.returncode == 2 and "--per-channel (per_channel=) does not apply to format 'onnx'" in r.stderr


@pytest.mark.slow  # three CLI commands, one an export
def test_cli_export_then_info(student, tmp_path):
    r = _cli("export", student[0], "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ONNX parity: max|Δ| = ")
    info = _cli("info", tmp_path / "b")
    assert info.returncode == 0 and "layout parts (modality skipping)" in info.stdout
    assert "parity     fp32 max|Δ|" in info.stdout
    ckpt = _cli("info", student[0])
    assert ckpt.returncode == 0 and "model      student_tiny" in ckpt.stdout


@pytest.mark.slow  # real MOSI-U validation inputs (MiniLM features, cached after the first run)
@needs_data
def test_real_data_parity_and_int8_accuracy_recorded(mosi_int8_bundle):
    out = mosi_int8_bundle  # student_tiny exported as onnx-int8 with --data MOSI-U (conftest)
    m = read_manifest(out)
    assert "validation samples" in m.parity["inputs"] and m.parity["max_abs_diff"]["score"] <= 1e-4
    valid = m.metrics["valid"]
    assert valid["n"] > 100 and set(valid["torch"]) >= {"acc2_non0", "mae"}
    assert isinstance(valid["acc2_non0_drop_points"], float)
    assert (out / "text_encoder.onnx").is_file() and m.text_encoder["tokenizer"] == "tokenizer.json"
