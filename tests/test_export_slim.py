"""Slimming ONNX files (export/slim.py): same outputs, shorter names, one copy of each Constant; the
bundle's graphs come out slimmed unless --keep-names is given."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from edge_msa.checkpoint import save_checkpoint
from edge_msa.cli import main
from edge_msa.models import create_model
from edge_msa.runtime import read_manifest
from edge_msa.spec import FeatureSpec
from edge_msa.export import export
from edge_msa.export.slim import share_constants, shorten_names, slim_file

from test_export_bundle import student_checkpoint


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _graph_with_repeated_constants(path):
    """x -> (x * 2) + (x * 2) @ w, with the scalar 2 emitted twice under exporter-style long names."""
    two = numpy_helper.from_array(np.array(2.0, np.float32))
    nodes = [helper.make_node("Constant", [], ["/model/block.0/Constant_output_0"], value=two, name="/c0"),
             helper.make_node("Constant", [], ["/model/block.1/Constant_output_0"], value=two, name="/c1"),
             helper.make_node("Mul", ["x", "/model/block.0/Constant_output_0"], ["/model/block.0/Mul_output_0"]),
             helper.make_node("Mul", ["x", "/model/block.1/Constant_output_0"], ["/model/block.1/Mul_output_0"]),
             helper.make_node("MatMul", ["/model/block.1/Mul_output_0", "model.proj.weight"], ["/model/MatMul_out"]),
             helper.make_node("Add", ["/model/block.0/Mul_output_0", "/model/MatMul_out"], ["y"])]
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32), "model.proj.weight")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [w],
                              value_info=[helper.make_tensor_value_info("/model/MatMul_out", TensorProto.FLOAT,
                                                                        [None, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_slim_keeps_outputs_and_io_names(tmp_path):
    path = _graph_with_repeated_constants(tmp_path / "m.onnx")
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    y0, before = _run(path, x), path.stat().st_size
    assert slim_file(path) == path.stat().st_size < before
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node].count("Constant") == 1
    assert [v.name for v in model.graph.input] == ["x"] and [v.name for v in model.graph.output] == ["y"]
    internal = {t for n in model.graph.node for t in [*n.input, *n.output]} - {"x", "y"}
    assert internal and all(len(t) <= 2 for t in internal)  # short hex ids
    assert not model.graph.value_info and all(n.name == "" for n in model.graph.node)
    np.testing.assert_array_equal(_run(path, x), y0)


def test_share_constants_leaves_distinct_values_and_outputs(tmp_path):
    model = onnx.load(str(_graph_with_repeated_constants(tmp_path / "m.onnx")))
    model.graph.node[1].attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(3.0, np.float32)))
    assert share_constants(model.graph) == 0  # 2.0 and 3.0 are different constants
    assert shorten_names(model) > 0
    onnx.checker.check_model(model)


def test_bundle_graphs_slimmed_and_sizes_recorded(tmp_path):
    checkpoint, _ = student_checkpoint(tmp_path / "s.pt")
    slim = export(checkpoint, format="onnx-int8", out=tmp_path / "slim", log=None)
    assert main(["export", str(checkpoint), "--format", "onnx-int8", "--keep-names", "--quiet",
                 "--out", str(tmp_path / "named")]) == 0
    named = tmp_path / "named"
    sizes = {}
    for bundle in (slim, named):
        m = read_manifest(bundle)
        recorded = m.export_options["graph_bytes"]
        assert {n: recorded[n]["bytes"] for n in m.graphs} == {n: (bundle / f).stat().st_size
                                                               for n, f in m.graphs.items()}
        sizes[bundle] = sum(recorded[n]["bytes"] for n in m.graphs)
    assert sizes[slim] < 0.8 * sizes[named]
    names = [n.name for n in onnx.load(str(slim / "fuse.onnx")).graph.node]
    assert names and not any(names)
    assert any(n.name for n in onnx.load(str(named / "fuse.onnx")).graph.node)
    assert read_manifest(slim).parity["int8"]["max_abs_diff"]["score"] < 0.5


# The MOSI-U student as compress ships it (prune ratio 0.3): widths from its checkpoint config.
SHIPPED_STUDENT = {"dim": 64, "depth": 2, "fuse_depth": 1, "share": "depth+modality",
                   "blocks": {"shared": {"heads": 2, "head_dim": 16, "ffn": 89}},
                   "enc_hidden": {"audio": 44, "video": 44}, "head_hidden": 44, "gate_hidden": 0}


def test_int8_graphs_three_times_smaller_at_shipped_size(tmp_path):
    """At 61 k parameters the graph structure would otherwise cap INT8 at ~1.9x (the issue asks >= 3x)."""
    spec = FeatureSpec(dims=(384, 73, 100), max_lens=(50, 1, 1))
    torch.manual_seed(0)
    model = create_model("student", spec, **SHIPPED_STUDENT)
    assert 55_000 < sum(p.numel() for p in model.parameters()) < 70_000
    checkpoint = save_checkpoint(tmp_path / "s.pt", model, {})
    sizes = {}
    for fmt in ("onnx", "onnx-int8"):
        bundle = export(checkpoint, format=fmt, out=tmp_path / fmt, log=None)
        sizes[fmt] = sum((bundle / f).stat().st_size for f in read_manifest(bundle).graphs.values())
    assert sizes["onnx"] / sizes["onnx-int8"] >= 3.0, sizes
