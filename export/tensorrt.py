"""engine: TensorRT engines built from the fp32 ONNX graphs with the TensorRT Python API (one
optimisation profile per graph: batch 1..max_batch, sequence 1..max_len; fp16 or int8 with an entropy
calibrator fed the graphs' real inputs on a sample of the training split, copied to the GPU with cuda-python).
Engines are device-specific and stamped with the TensorRT version in the manifest. Never run on a GPU by our
tests: tests/test_tensorrt_fake_api.py exercises this control flow against a fake tensorrt + cuda-python API."""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from edge_msa.data.assemble import feature_set
from edge_msa.errors import ArtifactError, InputError, MissingDependencyError, given, require
from edge_msa.runtime.tensorrt_backend import cuda_call, cuda_runtime, to_engine_dtype

from .formats import LAYERNORM_OPSET, TRT_FIX
from .trt_support import profile_shapes

if TYPE_CHECKING:
    from edge_msa.data.base import FeatureSet

    from .exporter import ExportContext

# Training samples the INT8 entropy calibrator sees (each in every modality subset): NVIDIA's INT8 guide finds about
# 500 images enough to calibrate ImageNet classifiers; MOSI's training split is 1284 utterances, MOSEI's 16k.
CALIBRATION_SAMPLES = 500
CALIBRATION_DRAW = "numpy default_rng(0), without replacement, in split order"


def calibration_sample(train: FeatureSet) -> FeatureSet:
    """At most CALIBRATION_SAMPLES rows of the training split, drawn as CALIBRATION_DRAW says (a generator of its
    own: no other random draw moves), so the INT8 scales are fitted on training data and the accuracy check that
    judges them reads validation rows the scales never saw."""
    if len(train) <= CALIBRATION_SAMPLES:
        return train
    rows = np.sort(np.random.default_rng(0).choice(len(train), CALIBRATION_SAMPLES, replace=False))
    return feature_set(train.features, train.lengths, train.labels, train.ids, train.texts, rows, train.groups)


def _calibration_rows(feeds: list[dict[str, np.ndarray]], opt: dict[str, tuple[int, ...]],
                      dtypes: dict[str, np.dtype]):
    """Split recorded feeds into single samples padded/cut to the calibration (opt) shapes, in the network inputs'
    `dtypes` (TensorRT before 10 reads the int64 token ids as int32)."""
    for feed in feeds:
        for i in range(len(next(iter(feed.values())))):
            row = {}
            for name, x in feed.items():
                out = np.zeros(opt[name], dtype=x.dtype)
                sl = tuple(slice(0, min(a, b)) for a, b in zip(out.shape[1:], x.shape[1:]))
                out[0][sl] = x[i][sl]
                row[name] = to_engine_dtype(out, dtypes[name], f"INT8 calibration input '{name}'")
            yield row


def _calibrator(trt, feeds, opt, dtypes, cache_path):
    """An entropy calibrator over the recorded feeds: one sample per batch, in one device buffer per input
    (batch 1 at the calibration profile's opt shapes). Call `free()` once the engine is built."""
    cudart = cuda_runtime()
    rows = list(_calibration_rows(feeds, opt, dtypes))

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.device: dict[str, int] = {}  # input name -> device pointer

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.index >= len(rows):
                return None
            row = rows[self.index]
            self.index += 1
            for n in names:
                x = row[n]
                if n not in self.device:
                    self.device[n] = cuda_call(cudart.cudaMalloc(max(x.nbytes, 1)), "INT8 calibration")
                cuda_call(cudart.cudaMemcpy(self.device[n], x.ctypes.data, x.nbytes,
                                            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "INT8 calibration")
            return [int(self.device[n]) for n in names]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.write_bytes(bytes(cache))

        def free(self) -> None:
            for ptr in self.device.values():
                cudart.cudaFree(ptr)
            self.device.clear()

    return Calibrator()


def trt_version(trt: ModuleType) -> tuple[int, int]:
    """(major, minor) of the tensorrt module: what the builder's API and ONNX parser depend on."""
    major, minor = trt.__version__.split(".")[:2]
    return int(major), int(minor)


def preflight(opset: int) -> None:
    """Refuse, before any work, what this TensorRT cannot build: 11.x removed BuilderFlag.FP16/INT8 and the INT8
    calibrators; before 8.5 there is no tensor-name API (set_input_shape, execute_async_v3); 8.5 (JetPack 5) has no
    LayerNormalization importer, which opset 17+ graphs use (opset 16 writes it as primitive ops). cuda-python
    holds the calibration batches and the engines' buffers."""
    trt = require("tensorrt", "--format engine", TRT_FIX)
    version = trt_version(trt)
    if not (8, 5) <= version < (11, 0):
        raise MissingDependencyError(f"--format engine builds with TensorRT 8.5-10.x; this is TensorRT "
                                     f"{trt.__version__}" + (", which has no FP16/INT8 builder flags or calibrators"
                                                             if version >= (11, 0) else ""))
    if version < (8, 6) and opset >= LAYERNORM_OPSET:
        raise InputError(f"TensorRT {trt.__version__}'s ONNX parser has no LayerNormalization, which opset {opset} "
                         f"graphs use; expected {given('opset', LAYERNORM_OPSET - 1)} (or TensorRT >= 8.6)")
    cuda_runtime()


def build(ctx: ExportContext) -> dict[str, str]:
    trt = require("tensorrt", "--format engine", TRT_FIX)
    ctx.versions["tensorrt"] = trt.__version__
    logger = trt.Logger(trt.Logger.WARNING)
    graphs = {}
    for name, path in ctx.onnx_graphs.items():
        target = ctx.out / f"{name}.engine"
        target.write_bytes(_build_engine(trt, logger, ctx, name, path))
        graphs[name] = target.name
    return graphs


def _network(trt, builder, logger, path):
    """The explicit-batch network TensorRT's ONNX parser makes of `path` (one ArtifactError line if it cannot)."""
    explicit = trt_version(trt) < (10, 0)  # 10.x: always explicit batch (the flag is deprecated)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"TensorRT cannot parse {path.name}: {errors[:300]}")
    return network, parser  # the parser owns what the network refers to: keep it alive while building


def _build_engine(trt, logger, ctx, name: str, path) -> bytes:
    """One serialized engine for graph `name`: one profile (batch 1..max_batch, sequence 1..max_len), fp16 or
    int8 (calibrated on the graph's recorded feeds: see exporter._calibration) as asked."""
    precision = ctx.options["trt_precision"]
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, logger, path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(ctx.options["workspace_mb"]) << 20)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(path, ctx.spec, name, int(ctx.options["max_batch"]))
    for inp, (lo, opt, hi) in shapes.items():
        profile.set_shape(inp, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_calibration_profile(profile)
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dtypes = {t.name: np.dtype(trt.nptype(t.dtype)) for t in inputs}
        calibrator = _calibrator(trt, ctx.feeds.get(name, []), {k: v[1] for k, v in shapes.items()}, dtypes,
                                 ctx.out / f".{name}.calib")
        config.int8_calibrator = calibrator
    try:
        engine = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
        (ctx.out / f".{name}.calib").unlink(missing_ok=True)
    if engine is None:
        raise ArtifactError(f"TensorRT failed to build an engine for {path.name} (see the TensorRT log above)")
    return bytes(engine)
