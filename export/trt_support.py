"""What TensorRT will make of the ONNX graphs: optimisation-profile shapes (min/opt/max), the equivalent
`trtexec` command lines (written to every bundle as trtexec.txt) and a check of op types against the ops
the TensorRT ONNX parser supports (onnx-tensorrt operators.md, TensorRT 8.6-10)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_msa.spec import MODALITIES, FeatureSpec

TRT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Identity
If InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
MatMul Max MaxPool Mean Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh
Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Where Xor
""".split())


def profile_shapes(path: Path, spec: FeatureSpec, graph: str, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """{input: (min, opt, max) shapes}: batch 1 / 1 / max_batch, sequence 1 / max_len / max_len."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    shapes = {}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        lo, opt, hi = [], [], []
        for dim in inp.type.tensor_type.shape.dim:
            name = dim.dim_param
            if name == "batch":
                lo.append(1), opt.append(1), hi.append(max_batch)
            elif name.startswith("len"):
                m = name[4:] if name.startswith("len_") else graph.split("_", 1)[1]
                m = m if m in MODALITIES else "text"
                lo.append(1), opt.append(spec.max_len(m)), hi.append(spec.max_len(m))
            else:
                for seq in (lo, opt, hi):
                    seq.append(int(dim.dim_value))
        shapes[inp.name] = (tuple(lo), tuple(opt), tuple(hi))
    return shapes


def trtexec_lines(graphs: dict[str, Path], spec: FeatureSpec, max_batch: int, precision: str,
                  unsupported: dict[str, list[str]] | None = None) -> str:
    """One `trtexec` command per graph, building the engine this bundle's exporter would build. A graph with ops
    TensorRT's parser lacks (`unsupported`, from check_ops: the onnx-int8 bundles' MatMulInteger) gets its command
    commented out, with why and what to run instead, since trtexec would only fail on it."""
    flag = {"fp16": " --fp16", "int8": " --int8 --fp16", "fp32": ""}.get(precision, " --fp16")
    lines = ["# Equivalent trtexec commands (run on the target device; engines are device-specific).",
             "# INT8 via trtexec has no calibration data: prefer `edge-msa export --format engine "
             "--trt-precision int8 --data ...`."]
    for name, path in graphs.items():
        shapes = profile_shapes(path, spec, name, max_batch)
        fmt = [",".join(f"{k}:{'x'.join(map(str, s[i]))}" for k, s in shapes.items()) for i in range(3)]
        line = (f"trtexec --onnx={path.name} --saveEngine={name}.engine --minShapes={fmt[0]} "
                f"--optShapes={fmt[1]} --maxShapes={fmt[2]}{flag}")
        if (unsupported or {}).get(name):
            lines.append(f"# {path.name} uses {', '.join(unsupported[name])}, which TensorRT's ONNX parser lacks: "
                         "build from a `--format onnx` bundle's graphs, or run `edge-msa export --format engine`")
            line = f"# {line}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def check_ops(graphs: dict[str, Path]) -> dict[str, Any]:
    """{"ok": bool, "unsupported": {graph: [op types TensorRT's ONNX parser lacks]}}."""
    import onnx

    unsupported = {}
    for name, path in graphs.items():
        ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
        bad = sorted(ops - TRT_OPS)
        if bad:
            unsupported[name] = bad
    return {"ok": not unsupported, "unsupported": unsupported}
