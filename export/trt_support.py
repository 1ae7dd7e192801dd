"""What TensorRT will make of the ONNX graphs: optimisation-profile shapes (min/opt/max), the equivalent
`trtexec` command lines (written to every bundle as trtexec.txt) and a check of op types against the ops
the TensorRT ONNX parser supports (onnx-tensorrt operators.md: TensorRT 8.6-10, and 8.5 for JetPack 5)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from edge_msa.spec import MODALITIES, FeatureSpec

from .formats import DEFAULTS, LAYERNORM_OPSET

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
# TRT_OPS that TensorRT 8.5's parser (JetPack 5) lacks: onnx-tensorrt release/8.5-GA docs/operators.md marks
# LayerNormalization and IsInf "N" and does not list GroupNormalization (opset 18) or Gelu (opset 20).
TRT_85_LACKS = frozenset({"Gelu", "GroupNormalization", "IsInf", "LayerNormalization"})


def profile_shapes(path: Path, spec: FeatureSpec, graph: str, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """{input: (min, opt, max) shapes}: batch 1 / 1 / max_batch, sequence 1 / max_len / max_len."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        sizes: list[tuple[int, int, int]] = []  # (min, opt, max) per dimension
        for dim in inp.type.tensor_type.shape.dim:
            name = dim.dim_param
            if name == "batch":
                sizes.append((1, 1, max_batch))
            elif name.startswith("len"):
                m = name[4:] if name.startswith("len_") else graph.split("_", 1)[1]
                m = m if m in MODALITIES else "text"
                sizes.append((1, spec.max_len(m), spec.max_len(m)))
            else:
                n = int(dim.dim_value)
                sizes.append((n, n, n))
        shapes[inp.name] = tuple(tuple(s[i] for s in sizes) for i in range(3))
    return shapes


def trtexec_lines(graphs: dict[str, Path], spec: FeatureSpec, options: Mapping[str, Any],
                  check: dict[str, Any]) -> str:
    """One `trtexec` command per graph, building the engine this bundle's exporter would build: its profile
    (options' max_batch), precision (trt_precision) and workspace pool (workspace_mb), the engine format's defaults
    where `options` (an ONNX format's) lack them. A graph with ops TensorRT's parser lacks (`check`, from check_ops:
    the onnx-int8 bundles' MatMulInteger) gets its command commented out, with why and what to run instead, since
    trtexec would only fail on it; what TensorRT 8.5 lacks besides is said once in the header."""
    opts = {**DEFAULTS, **options}
    flag = {"fp16": " --fp16", "int8": " --int8 --fp16", "fp32": ""}[opts["trt_precision"]]
    # as tensorrt.build's set_memory_pool_limit(WORKSPACE, workspace_mb MiB); a bare number is MiB in every trtexec
    # of TensorRT 8.5-10 (8.x reads "workspace:sizeInMiB"; 10.x takes a B/K/M/G suffix, MiB when none is given)
    flag += f" --memPoolSize=workspace:{int(opts['workspace_mb'])}"
    unsupported, jetpack5 = check["unsupported"], tensorrt_85_note(check)
    lines = ["# Equivalent trtexec commands (run on the target device; engines are device-specific).",
             "# INT8 via trtexec has no calibration data: prefer `edge-msa export --format engine "
             "--trt-precision int8 --data ...`.", *([f"# {jetpack5}."] if jetpack5 else [])]
    for name, path in graphs.items():
        shapes = profile_shapes(path, spec, name, int(opts["max_batch"]))
        fmt = [",".join(f"{k}:{'x'.join(map(str, s[i]))}" for k, s in shapes.items()) for i in range(3)]
        line = (f"trtexec --onnx={path.name} --saveEngine={name}.engine --minShapes={fmt[0]} "
                f"--optShapes={fmt[1]} --maxShapes={fmt[2]}{flag}")
        if unsupported.get(name):
            lines.append(f"# {path.name} uses {', '.join(unsupported[name])}, which TensorRT's ONNX parser lacks: "
                         "build from a `--format onnx` bundle's graphs, or run `edge-msa export --format engine`")
            line = f"# {line}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def check_ops(graphs: dict[str, Path]) -> dict[str, Any]:
    """{"ok": bool, "unsupported": {graph: [op types TensorRT 8.6-10's ONNX parser lacks]}, "tensorrt_8.5": the same
    for TensorRT 8.5 (JetPack 5)}. Why both: 8.5 lacks more (TRT_85_LACKS), and an opset-17 bundle's
    LayerNormalization read "ok" to a JetPack-5 user whose trtexec then could not parse it."""
    import onnx

    ops = {name: {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
           for name, path in graphs.items()}
    return {**_lacking(ops, TRT_OPS), "tensorrt_8.5": _lacking(ops, TRT_OPS - TRT_85_LACKS)}


def _lacking(ops: dict[str, set[str]], supported: frozenset[str]) -> dict[str, Any]:
    unsupported = {name: sorted(used - supported) for name, used in ops.items() if used - supported}
    return {"ok": not unsupported, "unsupported": unsupported}


def tensorrt_85_note(check: dict[str, Any]) -> str | None:
    """What TensorRT 8.5 (JetPack 5) lacks beyond what 8.6-10 lack, per check_ops' result, with the fix where there is
    one; None when nothing more (or for a manifest written before the 8.5 check)."""
    newer = check.get("unsupported", {})
    extra = {name: [op for op in used if op not in newer.get(name, [])]
             for name, used in check.get("tensorrt_8.5", {}).get("unsupported", {}).items()}
    extra = {name: used for name, used in extra.items() if used}
    if not extra:
        return None
    ops = sorted({op for used in extra.values() for op in used})
    fix = f"; export with --opset {LAYERNORM_OPSET - 1} for JetPack 5" if ops == ["LayerNormalization"] else ""
    return f"TensorRT 8.5 (JetPack 5) cannot parse {', '.join(ops)} (in {', '.join(extra)}){fix}"
