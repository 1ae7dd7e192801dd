"""onnx-fp16: onnxconverter-common's float16 conversion with fp32 inputs/outputs; LayerNormalization and
the residual Adds feeding it stay fp32 (fp16 variance sums overflow/lose precision there)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from edge_msa.errors import require

from .formats import FP16_FIX

if TYPE_CHECKING:  # onnx is imported where it is used
    from onnx import GraphProto

    from .exporter import ExportContext


def residual_adds(graph: GraphProto) -> list[str]:
    """Names of the Add nodes whose output feeds a LayerNormalization (the post-LN residual sums)."""
    producers = {out: node for node in graph.node for out in node.output}
    names = []
    for node in graph.node:
        if node.op_type == "LayerNormalization":
            src = producers.get(node.input[0])
            if src is not None and src.op_type == "Add":
                names.append(src.name)
    return names


def fp32_nodes(graph: GraphProto) -> list[str]:
    """Nodes kept fp32 by name: the residual Adds, and the graph's own Cast(to=float) nodes. The converter
    retypes a Cast's output to fp16 but not its `to` attribute (ORT then rejects the graph); blocked, they
    get explicit casts instead. Blocking "Cast" by op type would also block the casts the converter
    inserts while it iterates, which never terminates."""
    from onnx import TensorProto

    for i, node in enumerate(graph.node):
        node.name = node.name or f"{node.op_type}_{i}"
    casts = [n.name for n in graph.node if n.op_type == "Cast"
             and any(a.name == "to" and a.i == TensorProto.FLOAT for a in n.attribute)]
    return residual_adds(graph) + casts


def build(ctx: ExportContext) -> dict[str, str]:
    import onnx

    converter = require("onnxconverter_common", "--format onnx-fp16", FP16_FIX)
    float16 = require("onnxconverter_common.float16", "--format onnx-fp16", FP16_FIX)
    ctx.versions["onnxconverter_common"] = getattr(converter, "__version__", "unknown")
    block_ops = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | {"LayerNormalization"})
    for path in ctx.onnx_graphs.values():
        proto = onnx.load(str(path))
        with warnings.catch_warnings():  # "-inf will be truncated to -10000" (attention masks): harmless
            warnings.simplefilter("ignore")
            half = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=block_ops,
                                                    node_block_list=fp32_nodes(proto.graph))
        onnx.save(half, str(path))
    ctx.export_notes["fp16_fp32_ops"] = ["LayerNormalization", "residual Add"]
    return {name: path.name for name, path in ctx.onnx_graphs.items()}
