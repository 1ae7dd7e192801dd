"""`--format engine` and the TensorRT runtime backend against a FAKE tensorrt + cuda-python API.

This exercises OUR control flow (export/tensorrt.py, edge_msa/runtime/tensorrt_backend.py) against the
subset of the TensorRT 8.6 / 10.x Python API and of `cuda.bindings.runtime` that we call, with the documented
contracts enforced where cheap: explicit-batch networks, profile shapes min <= opt <= max, set_input_shape
returning False outside the profile, a device address for every IO tensor before execute_async_v3, the
calibrator's get_batch giving one device pointer per input name (None at the end), (err, value) tuples and
memcpy directions. The fake "engine" carries the ONNX graph it was built from and runs it in fp32 with
onnxruntime on "device memory" that the fake cudart keeps as numpy buffers keyed by integer pointers.
It says nothing about real engines (kernels, fp16/int8 accuracy, speed): those need a GPU with TensorRT.
"""
from __future__ import annotations

import ctypes
import enum
import hashlib
import importlib.machinery
import itertools
import json
import shutil
import sys
import types
import warnings
from contextlib import contextmanager

import numpy as np
import onnx
import pytest

from edge_msa.checkpoint import save_checkpoint
from edge_msa.errors import ArtifactError, InputError, MissingDependencyError
from edge_msa.models import create_model
from edge_msa.runtime import load, read_manifest, write_manifest
from edge_msa.spec import MODALITIES, PARTS
from edge_msa.export import export
from edge_msa.export.parity import parity_batches
from edge_msa.export.trt_support import profile_shapes

from conftest import one_line_error
from test_export_bundle import SPEC, student_checkpoint

SUBSETS = [s for n in range(1, 4) for s in itertools.combinations(MODALITIES, n)]
MAGIC = b"FAKE-TRT-ENGINE\n"


# --- fake cuda-python runtime ---------------------------------------------------------------------------
class cudaError_t(enum.IntEnum):  # noqa: N801 (cuda-python's names)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        return self.handle


class Device:
    """Device memory (pointer -> numpy uint8 buffer) and live streams; pointers never overlap host memory."""

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}
        self.streams: set[int] = set()
        self.next_ptr = 1 << 20
        self.mallocs = 0  # cudaMalloc calls so far (a backend should allocate once, not per call)

    def find(self, ptr, nbytes: int = 0) -> np.ndarray | None:
        """The bytes [ptr, ptr + nbytes) of one live allocation, or None."""
        if not isinstance(ptr, int):
            return None
        for base, buf in self.buffers.items():
            if base <= ptr and ptr + nbytes <= base + buf.nbytes:
                return buf[ptr - base:ptr - base + nbytes]
        return None

    def read(self, ptr: int, dtype, shape) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raw = self.find(ptr, nbytes)
        assert raw is not None, f"fake CUDA: read of {nbytes} bytes at {ptr:#x} is outside device memory"
        return raw.view(dtype).reshape(shape).copy()

    def write(self, ptr: int, array: np.ndarray) -> None:
        raw = self.find(ptr, array.nbytes)
        assert raw is not None, f"fake CUDA: write of {array.nbytes} bytes at {ptr:#x} is outside device memory"
        raw[:] = np.ascontiguousarray(array).view(np.uint8).reshape(-1)

    def module(self) -> types.ModuleType:
        cudart = types.ModuleType("cuda.bindings.runtime")
        cudart.cudaError_t, cudart.cudaMemcpyKind, cudart.cudaStream_t = cudaError_t, cudaMemcpyKind, cudaStream_t
        ok, bad = cudaError_t.cudaSuccess, cudaError_t.cudaErrorInvalidValue

        def cudaMalloc(size):  # noqa: N802
            if not isinstance(size, int) or size <= 0:
                return (bad, 0)
            ptr, self.next_ptr = self.next_ptr, self.next_ptr + (size + 511) // 256 * 256
            self.buffers[ptr] = np.zeros(size, np.uint8)
            self.mallocs += 1
            return (ok, ptr)

        def cudaFree(ptr):  # noqa: N802
            return (ok,) if self.buffers.pop(ptr, None) is not None else (bad,)

        def cudaMemcpy(dst, src, count, kind):  # noqa: N802
            host = {cudaMemcpyKind.cudaMemcpyHostToDevice: src, cudaMemcpyKind.cudaMemcpyDeviceToHost: dst}
            device = {cudaMemcpyKind.cudaMemcpyHostToDevice: dst, cudaMemcpyKind.cudaMemcpyDeviceToHost: src}
            if kind not in host or not isinstance(host[kind], int) or self.find(host[kind]) is not None:
                return (bad,)  # wrong direction, or a "host" pointer that is device memory
            raw = self.find(device[kind], count)
            if raw is None:
                return (bad,)
            if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
                ctypes.memmove(raw.ctypes.data, src, count)
            else:
                ctypes.memmove(dst, raw.ctypes.data, count)
            return (ok,)

        def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
            if int(stream) not in self.streams:
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            return cudaMemcpy(dst, src, count, kind)

        def cudaStreamCreate():  # noqa: N802
            handle = 0x5000 + len(self.streams) + self.next_ptr
            self.streams.add(handle)
            return (ok, cudaStream_t(handle))

        def cudaStreamSynchronize(stream):  # noqa: N802
            return (ok,) if int(stream) in self.streams else (cudaError_t.cudaErrorInvalidResourceHandle,)

        def cudaStreamDestroy(stream):  # noqa: N802
            if int(stream) not in self.streams:
                return (cudaError_t.cudaErrorInvalidResourceHandle,)
            self.streams.discard(int(stream))
            return (ok,)

        for fn in (cudaMalloc, cudaFree, cudaMemcpy, cudaMemcpyAsync, cudaStreamCreate, cudaStreamSynchronize,
                   cudaStreamDestroy):
            setattr(cudart, fn.__name__, fn)
        return cudart


# --- fake tensorrt --------------------------------------------------------------------------------------
class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 5


NPTYPE = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
          DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.INT64: np.int64}
FROM_ONNX = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
             onnx.TensorProto.BOOL: DataType.BOOL, onnx.TensorProto.INT32: DataType.INT32,
             onnx.TensorProto.INT64: DataType.INT64}
TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
BuilderFlag = enum.Enum("BuilderFlag", "FP16 INT8")
MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0


class Logger:
    Severity = enum.IntEnum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")
    WARNING = Severity.WARNING

    def __init__(self, min_severity=Severity.WARNING) -> None:
        self.min_severity = min_severity


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:  # the Python API requires subclasses to call this
        self.base_initialised = True


class FakeTRT:
    """State shared by one fake `tensorrt` module: the device, its version, what was built and calibrated."""

    def __init__(self, version: str, device: Device) -> None:
        self.version, self.device = version, device
        self.builds: list[dict] = []  # per build_serialized_network: onnx sha, flags, pools, profile
        self.calibration: dict[str, list[dict[str, np.ndarray]]] = {}  # onnx sha -> batches
        self.executions = 0

    def module(self) -> types.ModuleType:
        trt = types.ModuleType("tensorrt")
        trt.__version__ = self.version
        for obj in (DataType, TensorIOMode, BuilderFlag, MemoryPoolType, NetworkDefinitionCreationFlag, Logger,
                    IInt8EntropyCalibrator2):
            setattr(trt, obj.__name__, obj)
        trt.nptype = lambda dt: NPTYPE[dt]
        api = self

        class Builder:
            def __init__(self, logger: Logger) -> None:
                assert isinstance(logger, Logger)

            def create_network(self, flags: int = 0) -> Network:
                explicit_bit = 1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH  # required before 10.0
                major = int(api.version.split(".")[0])
                return Network(major >= 10 or bool(flags & explicit_bit), int64=major >= 10)

            def create_builder_config(self) -> BuilderConfig:
                return BuilderConfig()

            def create_optimization_profile(self) -> OptimizationProfile:
                return OptimizationProfile()

            def build_serialized_network(self, network: Network, config: BuilderConfig):
                return api.build(network, config)

        class OnnxParser:
            def __init__(self, network: Network, logger: Logger) -> None:
                self.network, self.errors = network, []

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> str:
                return self.errors[i]

            def parse(self, model: bytes) -> bool:
                if not self.network.explicit:
                    self.errors.append("the ONNX parser needs a network created with EXPLICIT_BATCH")
                    return False
                try:
                    proto = onnx.load_from_string(bytes(model))
                except Exception as exc:  # noqa: BLE001 (the parser reports any decode failure)
                    self.errors.append(f"cannot decode the model: {exc}")
                    return False
                version = tuple(int(v) for v in api.version.split(".")[:2])
                if version < (8, 6) and any(n.op_type == "LayerNormalization" for n in proto.graph.node):
                    self.errors.append("No importer registered for op: LayerNormalization (added in 8.6)")
                    return False
                self.network.read(proto, bytes(model))
                return True

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                assert isinstance(logger, Logger)

            def deserialize_cuda_engine(self, data) -> Engine | None:
                return api.deserialize(bytes(data))

        trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
        return trt

    def build(self, network: Network, config: BuilderConfig):
        assert network.onnx is not None, "fake TensorRT: build_serialized_network before a successful parse"
        assert len(config.profiles) == 1, "fake TensorRT: expected exactly one optimisation profile"
        profile = config.profiles[0].shapes
        for name, (dtype, dims) in network.inputs.items():
            if -1 in dims:
                assert name in profile, f"fake TensorRT: dynamic input '{name}' has no profile shape"
            for shape in profile.get(name, ()):
                assert len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape)), \
                    f"fake TensorRT: profile shape {shape} does not fit input '{name}' {dims}"
        assert set(profile) <= set(network.inputs), "fake TensorRT: profile names an unknown input"
        sha = hashlib.sha256(network.onnx).hexdigest()
        if BuilderFlag.INT8 in config.flags:
            self.calibrate(sha, network, config)
        self.builds.append({"sha": sha, "flags": set(config.flags), "pools": dict(config.pools),
                            "profile": dict(profile)})
        header = {"version": self.version, "profile": profile, "dim_params": network.dim_params,
                  "inputs": {n: [d.name, list(s)] for n, (d, s) in network.inputs.items()},
                  "outputs": {n: [d.name, list(s)] for n, (d, s) in network.outputs.items()}}
        return memoryview(MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)

    def calibrate(self, sha: str, network: Network, config: BuilderConfig) -> None:
        calibrator = config.int8_calibrator
        assert isinstance(calibrator, IInt8EntropyCalibrator2) and getattr(calibrator, "base_initialised", False), \
            "fake TensorRT: int8_calibrator must be an IInt8EntropyCalibrator2 whose __init__ ran"
        assert config.calibration_profile is not None, "fake TensorRT: dynamic shapes need a calibration profile"
        opt = {n: s[1] for n, s in config.calibration_profile.shapes.items()}
        assert calibrator.get_batch_size() == 1 and all(s[0] == 1 for s in opt.values()), \
            "fake TensorRT: explicit-batch calibration takes the profile's opt shapes (batch 1)"
        batches = self.calibration.setdefault(sha, [])
        if not calibrator.read_calibration_cache():
            names = list(network.inputs)
            while pointers := calibrator.get_batch(names):
                assert len(pointers) == len(names) and all(isinstance(p, int) for p in pointers), \
                    "fake TensorRT: get_batch must give one int device pointer per input name"
                batches.append({n: self.device.read(p, NPTYPE[network.inputs[n][0]], opt[n])
                                for n, p in zip(names, pointers)})
            assert batches, "fake TensorRT: calibration got no batches"
        calibrator.write_calibration_cache(memoryview(b"fake calibration table"))

    def deserialize(self, data: bytes) -> Engine | None:
        if not data.startswith(MAGIC):
            return None  # the real runtime logs an error and returns None
        header, _, graph = data[len(MAGIC):].partition(b"\n")
        header = json.loads(header)
        return Engine(self, header, graph) if header["version"] == self.version else None


class Network:
    """What the ONNX parser makes of a graph. TensorRT before 10 has no INT64: its parser narrows int64 inputs and
    outputs to INT32 (`int64=False`)."""

    def __init__(self, explicit: bool, int64: bool = True) -> None:
        self.explicit, self.int64, self.onnx = explicit, int64, None
        self.inputs: dict[str, tuple[DataType, tuple[int, ...]]] = {}
        self.outputs: dict[str, tuple[DataType, tuple[int, ...]]] = {}
        self.dim_params: dict[str, list[str]] = {}

    def read(self, proto: onnx.ModelProto, raw: bytes) -> None:
        inits = {i.name for i in proto.graph.initializer}
        for value, table in [(v, self.inputs) for v in proto.graph.input if v.name not in inits] + \
                            [(v, self.outputs) for v in proto.graph.output]:
            dims = value.type.tensor_type.shape.dim
            dtype = FROM_ONNX[value.type.tensor_type.elem_type]
            table[value.name] = (DataType.INT32 if dtype == DataType.INT64 and not self.int64 else dtype,
                                 tuple(-1 if d.dim_param else int(d.dim_value) for d in dims))
            self.dim_params[value.name] = [d.dim_param for d in dims]
        self.onnx = raw

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> types.SimpleNamespace:  # an ITensor: name, dtype, shape
        name = list(self.inputs)[index]
        return types.SimpleNamespace(name=name, dtype=self.inputs[name][0], shape=self.inputs[name][1])


class OptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002 (the real keyword names)
        lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not (len(lo) == len(mid) == len(hi)) or not all(0 <= a <= b <= c for a, b, c in zip(lo, mid, hi)):
            raise ValueError(f"set_shape({input!r}): need min <= opt <= max of equal rank, got {lo} {mid} {hi}")
        self.shapes[input] = (lo, mid, hi)


class BuilderConfig:
    def __init__(self) -> None:
        self.pools: dict[MemoryPoolType, int] = {}
        self.flags: set[BuilderFlag] = set()
        self.profiles: list[OptimizationProfile] = []
        self.calibration_profile: OptimizationProfile | None = None
        self.int8_calibrator = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        if not isinstance(pool, MemoryPoolType) or not isinstance(size, int) or size <= 0:
            raise TypeError(f"set_memory_pool_limit({pool!r}, {size!r})")
        self.pools[pool] = size

    def set_flag(self, flag: BuilderFlag) -> None:
        if not isinstance(flag, BuilderFlag):
            raise TypeError(f"set_flag({flag!r})")
        self.flags.add(flag)

    def add_optimization_profile(self, profile: OptimizationProfile) -> int:
        assert isinstance(profile, OptimizationProfile) and profile.shapes
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: OptimizationProfile) -> bool:
        assert isinstance(profile, OptimizationProfile)
        self.calibration_profile = profile
        return True


class Engine:
    def __init__(self, api: FakeTRT, header: dict, graph: bytes) -> None:
        import onnxruntime

        self.api, self.header = api, header
        self.io = {n: (TensorIOMode.INPUT, DataType[d], tuple(s)) for n, (d, s) in header["inputs"].items()}
        self.io.update({n: (TensorIOMode.OUTPUT, DataType[d], tuple(s)) for n, (d, s) in header["outputs"].items()})
        self.session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
        ort_types = {"tensor(float)": np.float32, "tensor(bool)": np.bool_, "tensor(int64)": np.int64,
                     "tensor(int32)": np.int32, "tensor(float16)": np.float16}
        self.onnx_types = {i.name: ort_types[i.type] for i in self.session.get_inputs()}

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, i: int) -> str:
        return list(self.io)[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.io[name][0] if name in self.io else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.io[name][1]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.io[name][2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        assert profile_index == 0 and self.io[name][0] == TensorIOMode.INPUT, "fake TensorRT: one profile, inputs"
        return [tuple(s) for s in self.engine_profile(name)]

    def engine_profile(self, name: str):
        dims = self.io[name][2]
        return self.header["profile"].get(name, (dims, dims, dims))

    def create_execution_context(self) -> Context:
        return Context(self)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name: str, shape) -> bool:
        mode, _, dims = self.engine.io.get(name, (TensorIOMode.NONE, None, ()))
        shape = tuple(int(s) for s in shape)
        lo, _, hi = self.engine.header["profile"].get(name, (dims, dims, dims))
        if mode != TensorIOMode.INPUT or len(shape) != len(dims) or \
                not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False  # the real context logs an error and returns False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes or self.engine.io[name][0] == TensorIOMode.INPUT:
            return self.shapes.get(name, self.engine.io[name][2])
        params = self.engine.header["dim_params"]
        sizes = {p: s for n, shape in self.shapes.items() for p, s in zip(params[n], shape) if p}
        return tuple(sizes.get(p, -1) if p else d for p, d in zip(self.engine.header["dim_params"][name],
                                                                 self.engine.io[name][2]))

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        assert name in self.engine.io and isinstance(ptr, int), f"fake TensorRT: set_tensor_address({name!r}, {ptr!r})"
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        device = self.engine.api.device
        assert isinstance(stream_handle, int) and stream_handle in device.streams, "fake TensorRT: unknown stream"
        feed = {}
        for name, (mode, dtype, _) in self.engine.io.items():
            shape = self.get_tensor_shape(name)
            assert -1 not in shape, f"fake TensorRT: shape of '{name}' not set before execute_async_v3"
            assert name in self.addresses, f"fake TensorRT: no address for '{name}' before execute_async_v3"
            nbytes = int(np.prod(shape)) * np.dtype(NPTYPE[dtype]).itemsize
            assert device.find(self.addresses[name], nbytes) is not None, \
                f"fake TensorRT: '{name}' address is not {nbytes} bytes of live device memory"
            if mode == TensorIOMode.INPUT:  # the engine reads its own dtype; the graph inside runs on ONNX's
                value = device.read(self.addresses[name], NPTYPE[dtype], shape)
                feed[name] = value.astype(self.engine.onnx_types[name])
        outputs = [n for n, (mode, _, _) in self.engine.io.items() if mode == TensorIOMode.OUTPUT]
        for name, value in zip(outputs, self.engine.session.run(outputs, feed)):
            assert value.shape == self.get_tensor_shape(name), f"fake TensorRT: '{name}' shape {value.shape}"
            device.write(self.addresses[name], value.astype(NPTYPE[self.engine.io[name][1]]))
        self.engine.api.executions += 1
        return True


@contextmanager
def fake_tensorrt(version: str = "10.3.0", device: Device | None = None):
    """Put the fake `tensorrt` and `cuda.bindings.runtime` in sys.modules for the duration."""
    api = FakeTRT(version, device or Device())
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, api.device.module()
    with pytest.MonkeyPatch.context() as mp:
        for name, module in {"tensorrt": api.module(), "cuda": cuda, "cuda.bindings": bindings,
                             "cuda.bindings.runtime": bindings.runtime}.items():
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec (torch, transformers) reads it
            mp.setitem(sys.modules, name, module)
        yield api


# --- fixtures: one onnx and two engine bundles of the same tiny student -----------------------------------
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return student_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")


@pytest.fixture(scope="module")
def trt_api():
    with fake_tensorrt() as api:
        yield api


@pytest.fixture(scope="module")
def onnx_bundle(student, tmp_path_factory):
    return export(student[0], out=tmp_path_factory.mktemp("onnx") / "b", log=None)


@pytest.fixture(scope="module")
def engines(student, trt_api, tmp_path_factory):
    """{precision: bundle} built through the fake API; calibration batches are those of the int8 build. Without
    --data only the int8 build warns that its scales come from random inputs."""
    out = {}
    for precision in ("fp16", "int8"):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out[precision] = export(student[0], format="engine", trt_precision=precision, log=None,
                                    out=tmp_path_factory.mktemp(precision) / "b")
        said = [str(w.message) for w in seen if "calibrated on 8 random inputs" in str(w.message)]
        assert len(said) == (precision == "int8"), said
    return out


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows_run(bundle, m: str) -> int:
    """How many parity rows run encode_m (the exporter runs it on the full batch of 8 if the gate never does)."""
    j = MODALITIES.index(m)
    with load(bundle) as predictor:
        n = sum(int(predictor.predict_features(b.features, b.lengths)[1][:, j].sum())
                for b in parity_batches(SPEC, None))
    return n or 8


def _same_batch_predictions(engine, reference, seed: int) -> None:
    """Scores within 1e-5 and identical ran masks on fresh random batches of every modality subset."""
    for b in parity_batches(SPEC, None, seed=seed):
        (s1, r1), (s2, r2) = (p.predict_features(b.features, b.lengths) for p in (engine, reference))
        assert np.abs(s1 - s2).max() <= 1e-5 and (r1 == r2).all(), b.subset


# --- tests --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_bundle_manifest_and_builds(engines, trt_api, precision):
    bundle = engines[precision]
    m = read_manifest(bundle)
    assert m.precision == f"engine-{precision}" and m.backend == "tensorrt" and m.layout == "parts"
    assert m.graphs == {p: f"{p}.engine" for p in PARTS} and all((bundle / f).is_file() for f in m.graphs.values())
    assert m.versions["tensorrt"] == "10.3.0"
    kept = m.export_options["onnx_graphs"]
    assert set(kept) == set(PARTS) and all((bundle / f).is_file() for f in kept.values())
    trtexec = (bundle / "trtexec.txt").read_text()
    assert sum(line.startswith("trtexec --onnx=") for line in trtexec.splitlines()) == len(PARTS)
    assert not list(bundle.glob(".*"))  # no calibration cache or other hidden leftovers
    flags = {BuilderFlag.FP16, BuilderFlag.INT8} if precision == "int8" else {BuilderFlag.FP16}
    for part, file in kept.items():  # both bundles hold the same fp32 graphs: find this precision's build
        build, = [b for b in trt_api.builds if b["sha"] == _sha(bundle / file) and b["flags"] == flags]
        assert build["profile"] == profile_shapes(bundle / file, SPEC, part, 32)
        assert build["pools"] == {MemoryPoolType.WORKSPACE: 1024 << 20}
    assert m.parity[m.precision]["max_abs_diff"]["score"] <= 1e-5  # the fake runs the fp32 graphs


def test_trtexec_builds_with_the_exporters_workspace(student, trt_api, onnx_bundle, tmp_path):
    """trtexec.txt names the engine the exporter builds, but left out its workspace pool (--workspace-mb, default
    1024 MiB), so trtexec built with its own; each command carries the one value the builder was given."""
    bundle = export(student[0], format="engine", workspace_mb=256, single_graph=True, log=None, out=tmp_path / "b")
    (graph,) = read_manifest(bundle).export_options["onnx_graphs"].values()
    (build,) = [b for b in trt_api.builds if b["sha"] == _sha(bundle / graph)]
    assert build["pools"] == {MemoryPoolType.WORKSPACE: 256 << 20}
    (line,) = [line for line in (bundle / "trtexec.txt").read_text().splitlines() if line.startswith("trtexec ")]
    assert line.endswith(" --fp16 --memPoolSize=workspace:256")  # a bare number: MiB in trtexec 8.5-10
    onnx_lines = [line for line in (onnx_bundle / "trtexec.txt").read_text().splitlines() if line.startswith("trtexec ")]
    assert onnx_lines and all(line.endswith(" --memPoolSize=workspace:1024") for line in onnx_lines)  # the default


def test_int8_calibrator_gets_the_recorded_feeds(engines, trt_api, onnx_bundle):
    bundle = engines["int8"]
    kept = read_manifest(bundle).export_options["onnx_graphs"]
    expected = {"encode_text": 7 * 8, "fuse": 7 * 8, "gate": 6 * 8,  # 7 subsets x 8 rows; gate when audio/video
                "encode_audio": _rows_run(onnx_bundle, "audio"), "encode_video": _rows_run(onnx_bundle, "video")}
    for part, file in kept.items():
        batches = trt_api.calibration[_sha(bundle / file)]
        assert len(batches) == expected[part], part
        opt = {k: v[1] for k, v in profile_shapes(bundle / file, SPEC, part, 32).items()}
        assert all({k: v.shape for k, v in b.items()} == opt for b in batches), part
        if part.startswith("encode_"):  # real padded samples: a valid prefix, zeros after it
            lengths = [int(b["mask"].sum()) for b in batches]
            assert all(b["mask"][0, :n].all() and not b["mask"][0, n:].any() for b, n in zip(batches, lengths))
            assert all(not b["x"][0, n:].any() and (n == 0 or b["x"][0, :n].any()) for b, n in zip(batches, lengths))
            assert max(lengths) == SPEC.max_len(part[7:]) and len(set(lengths)) > 1, part  # recorded lengths vary
    assert trt_api.device.buffers == {} and trt_api.device.streams == set()  # calibration + parity freed all


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_bundle_predicts_like_the_onnx_bundle(engines, trt_api, onnx_bundle, precision):
    rng = np.random.default_rng(5)
    arrays = {m: rng.normal(size=(SPEC.max_len(m) - 1, SPEC.dim(m))).astype(np.float32) for m in MODALITIES}
    before = trt_api.executions
    ran_sets = set()
    with load(engines[precision]) as engine, load(onnx_bundle) as reference:
        assert {type(b).__name__ for b in engine.backends.values()} == {"TensorRTBackend"}
        for subset in SUBSETS:
            given = {m: arrays[m] for m in subset}
            got, want = engine.predict(**given), reference.predict(**given)
            assert abs(got.score - want.score) <= 1e-5 and got.ran == want.ran and got.skipped == want.skipped, subset
            ran_sets.add(tuple(got.ran))
        _same_batch_predictions(engine, reference, seed=4)
    assert trt_api.executions > before and trt_api.device.buffers == {} and trt_api.device.streams == set()
    assert len(ran_sets) >= 4  # several paths through the gate were taken


def test_batches_above_the_profile_run_in_chunks(engines, trt_api, onnx_bundle):
    """Evaluation batches (256 rows) exceed an engine's max batch (32): the backend splits them."""
    b = parity_batches(SPEC, None)[-1]
    features = {m: np.repeat(b.features[m], 9, axis=0)[:70] for m in MODALITIES}  # 70 rows > max_batch 32
    lengths = {m: np.repeat(b.lengths[m], 9)[:70] for m in MODALITIES}
    with load(engines["fp16"]) as engine, load(onnx_bundle) as reference:
        assert engine.backends["encode_text"].max_batch == 32
        before = engine.backends["encode_text"].calls
        (s1, r1), (s2, r2) = (p.predict_features(features, lengths) for p in (engine, reference))
        assert engine.backends["encode_text"].calls - before == 3  # 32 + 32 + 6
    assert s1.shape == (70,) and np.abs(s1 - s2).max() <= 1e-5 and (r1 == r2).all()
    assert len(trt_api.device.buffers) == 0


def test_device_buffers_are_allocated_once_not_per_call(engines, trt_api):
    """cudaMalloc/cudaFree per tensor per call would dominate a sub-ms engine: one buffer per tensor, reused."""
    with load(engines["fp16"]) as predictor:
        before = trt_api.device.mallocs
        tensors = sum(len(b.inputs) + len(b.outputs) for b in predictor.backends.values())
        counts = []
        for seed in range(3):  # every subset, new shapes each round
            for b in parity_batches(SPEC, None, seed=seed):
                predictor.predict_features(b.features, b.lengths)
            counts.append(trt_api.device.mallocs - before)
        assert 0 < counts[0] == counts[1] == counts[2] <= tensors  # the first calls allocate; later ones reuse
        assert len(trt_api.device.buffers) == counts[0]
    assert len(trt_api.device.buffers) == 0


def test_shape_outside_the_profile_is_a_one_line_input_error(engines, trt_api):
    """A sequence longer than the profile's max (the spec's max_len) cannot be chunked away."""
    x = np.ones((1, SPEC.max_len("text") + 1, SPEC.dim("text")), np.float32)
    with load(engines["fp16"]) as predictor:
        with pytest.raises(InputError, match=r"^encode_text: input 'x' shape \(1, 10, 12\) is outside the engine's "
                                             r"optimisation profile") as err:
            predictor.backends["encode_text"].run({"x": x, "mask": np.ones(x.shape[:2], bool)})
        assert "\n" not in str(err.value)
    assert len(trt_api.device.buffers) == 0  # close() freed the backend's buffers



def test_providers_for_an_engine_bundle_are_refused_in_one_line(engines, trt_api):
    """onnxruntime's execution providers were dropped without a word for a TensorRT bundle."""
    message = one_line_error(lambda: load(engines["fp16"], providers=["CUDAExecutionProvider"]))
    assert message == (f"providers CUDAExecutionProvider are onnxruntime's, but bundle '{engines['fp16']}' runs on "
                       "tensorrt, which takes none; expected no providers for it (or an ONNX bundle)")

def test_corrupt_or_foreign_engine_is_an_artifact_error_naming_the_version(engines, trt_api, tmp_path):
    bad = shutil.copytree(engines["fp16"], tmp_path / "b")
    (bad / "gate.engine").write_bytes(b"\x00 not an engine")
    with pytest.raises(ArtifactError, match=r"file gate\.engine differs from what export recorded \(sha256\)"):
        load(bad)
    write_manifest(bad, read_manifest(bad))  # the bytes as exported: TensorRT itself is what refuses them
    with pytest.raises(ArtifactError, match=r"cannot deserialize engine .*gate\.engine.*this is TensorRT 10\.3\.0"):
        load(bad)
    assert trt_api.device.streams == set()  # backends opened before the bad one were closed
    (bad / "gate.engine").unlink()
    with pytest.raises(ArtifactError, match=r"engine file '.*gate\.engine' is missing; re-export the bundle"):
        load(bad)
    with fake_tensorrt("10.4.0"):  # an engine from another TensorRT version is refused the same way
        with pytest.raises(ArtifactError, match=r"this is TensorRT 10\.4\.0\); rebuild it on this device"):
            load(engines["fp16"])


def test_single_graph_teacher_with_tensorrt_8_6(tmp_path):
    """TensorRT 8.6 needs EXPLICIT_BATCH in create_network (the fake's parser refuses otherwise)."""
    ckpt = save_checkpoint(tmp_path / "t.pt", create_model("gtf_tiny", SPEC), {})
    reference = export(ckpt, out=tmp_path / "onnx", log=None)
    with fake_tensorrt("8.6.1") as api:
        bundle = export(ckpt, format="engine", out=tmp_path / "engine", log=None)
        m = read_manifest(bundle)
        assert m.layout == "single" and m.graphs == {"model": "model.engine"} and m.precision == "engine-fp16"
        assert m.versions["tensorrt"] == "8.6.1" and len(api.builds) == 1
        with load(bundle) as engine, load(reference) as onnx_runtime:
            _same_batch_predictions(engine, onnx_runtime, seed=2)
        assert api.device.buffers == {} and api.device.streams == set()


def test_tensorrt_11_is_refused_in_one_line_before_anything_is_written(student, tmp_path):
    """TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8 calibrators this build uses."""
    with fake_tensorrt("11.0.0") as api:
        with pytest.raises(MissingDependencyError, match=r"^--format engine builds with TensorRT 8\.5-10\.x; "
                                                         r"this is TensorRT 11\.0\.0") as err:
            export(student[0], format="engine", out=tmp_path / "b", log=None)
    assert "\n" not in str(err.value) and api.builds == [] and list(tmp_path.iterdir()) == []


def test_the_fake_enforces_its_contracts():
    """The checks above are only as good as the fake: it must refuse what the real API refuses."""
    with fake_tensorrt("8.6.1") as api:
        trt, cudart = sys.modules["tensorrt"], sys.modules["cuda.bindings.runtime"]
        builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
        assert not trt.OnnxParser(builder.create_network(0), None).parse(b"")  # 8.6: implicit batch refused
        with pytest.raises(ValueError, match="min <= opt <= max"):
            builder.create_optimization_profile().set_shape("x", (1, 4), (1, 2), (1, 9))
        err, ptr = cudart.cudaMalloc(16)
        host = np.zeros(4, np.float32)
        assert err == 0 and cudart.cudaMemcpy(host.ctypes.data, ptr, 16, cudaMemcpyKind.cudaMemcpyHostToDevice)[0] != 0
        assert cudart.cudaMemcpy(ptr, host.ctypes.data, 32, cudaMemcpyKind.cudaMemcpyHostToDevice)[0] != 0
        assert cudart.cudaFree(ptr) == (0,) and cudart.cudaFree(ptr)[0] != 0
        assert api.device.buffers == {}


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_token_id_student_engines_on_tensorrt_before_and_after_int64(tiny_bert_dir, tmp_path, version):
    """TensorRT before 10 has no INT64: its ONNX parser makes the token ids an INT32 input. The backend refused the
    int64 ids the runtime feeds (so no engine bundle of a token-id student, the main job's, built or ran on TensorRT
    8.x), and INT8 calibration copied int64 rows into buffers TensorRT reads as int32 (every other id a 0)."""
    from conftest import token_student

    ckpt = save_checkpoint(tmp_path / "s.pt", token_student(tiny_bert_dir, 12), {})
    reference = export(ckpt, out=tmp_path / "onnx", log=None)
    with fake_tensorrt(version) as api:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "calibrated on 8 random inputs" (no --data)
            bundle = export(ckpt, format="engine", trt_precision="int8", out=tmp_path / "engine", log=None)
        with load(bundle) as engine, load(reference) as onnx_runtime:
            assert {i.name: i.dtype for i in engine.backends["encode_text"].inputs} == {"x": np.int64, "mask": np.bool_}
            for text in ("a good film", "bad", "the plot was great but the acting was awful"):
                assert engine.predict(text=text).score == pytest.approx(onnx_runtime.predict(text=text).score, abs=1e-5)
            if version == "8.6.1":  # ids int32 cannot hold are refused, not wrapped into other ids
                with pytest.raises(InputError, match=r"^encode_text: input 'x' holds values outside int32"):
                    engine.backends["encode_text"].run({"x": np.full((1, 3), 2 ** 40), "mask": np.ones((1, 3), bool)})
        text_graph = read_manifest(bundle).export_options["onnx_graphs"]["encode_text"]
        batches = api.calibration[_sha(bundle / text_graph)]
        assert {b["x"].dtype for b in batches} == {np.dtype(np.int32 if version == "8.6.1" else np.int64)}
        for b in batches:  # the recorded ids, each in its place: a valid prefix of ids >= 1, zeros after it
            n = int(b["mask"].sum())
            assert (b["x"][0, :n] > 0).all() and not b["x"][0, n:].any()
        assert max(int(b["mask"].sum()) for b in batches) > 1
    assert api.device.buffers == {} and api.device.streams == set()


def test_engine_without_cuda_python_is_refused_before_any_work(student, tmp_path):
    """cuda-python missing was found only when the built engines were checked: after every graph was exported and
    every engine built (minutes for a teacher)."""
    with fake_tensorrt() as api, pytest.MonkeyPatch.context() as mp:
        for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
            mp.setitem(sys.modules, name, None)
        with pytest.raises(MissingDependencyError, match=r'^cuda\.cudart is required for TensorRT device memory .*'
                                                         r'pip install "edge-msa\[tensorrt\]"') as err:
            export(student[0], format="engine", out=tmp_path / "b", log=None)
    assert "\n" not in str(err.value) and api.builds == [] and list(tmp_path.iterdir()) == []


def test_op_check_says_what_tensorrt_8_5_cannot_parse(onnx_bundle, capsys):
    """The op check knew TensorRT 8.6-10 only, so an opset-17 bundle read "ok" to a JetPack-5 user (TensorRT 8.5, no
    LayerNormalization importer) whose trtexec then failed on it. Per version it now names what that parser rejects."""
    from edge_msa.cli import main
    from edge_msa.export.tensorrt import _network

    m = read_manifest(onnx_bundle)
    for version, verdict in (("8.5.2", m.tensorrt_check["tensorrt_8.5"]), ("10.3.0", m.tensorrt_check)):
        with fake_tensorrt(version):
            import tensorrt as trt

            logger, rejected = trt.Logger(trt.Logger.WARNING), set()
            for name, file in m.graphs.items():
                try:
                    _network(trt, trt.Builder(logger), logger, onnx_bundle / file)
                except ArtifactError:
                    rejected.add(name)
        assert rejected == set(verdict["unsupported"]) and verdict["ok"] == (not rejected)
    assert rejected == set() and set(m.tensorrt_check["tensorrt_8.5"]["unsupported"]) == {"encode_text", "fuse"}
    note = "TensorRT 8.5 (JetPack 5) cannot parse LayerNormalization (in encode_text, fuse); export with --opset 16"
    assert f"# {note} for JetPack 5." in (onnx_bundle / "trtexec.txt").read_text().splitlines()
    assert main(["info", str(onnx_bundle)]) == 0
    assert f"tensorrt   ops ok True on TensorRT 8.6-10; {note} for JetPack 5\n" in capsys.readouterr().out


def test_tensorrt_8_5_needs_opset_16_and_builds_with_it(student, onnx_bundle, tmp_path, capsys):
    """TensorRT 8.5 (JetPack 5) has no LayerNormalization importer: at the default opset 17 every graph failed to
    parse, after the whole ONNX export; opset 16 writes LayerNorm as primitive ops, which it parses."""
    from edge_msa.cli import main

    with fake_tensorrt("8.5.2") as api:
        message = one_line_error(lambda: export(student[0], format="engine", out=tmp_path / "b17", log=None))
        assert message == ("TensorRT 8.5.2's ONNX parser has no LayerNormalization, which opset 17 graphs use; "
                           "expected opset = 16 (or TensorRT >= 8.6)")  # the keyword typed (`--opset 16`: the CLI)
        assert api.builds == [] and list(tmp_path.iterdir()) == []
        assert main(["export", str(student[0]), "--format", "engine", "--out", str(tmp_path / "b17"), "--quiet"]) == 2
        assert capsys.readouterr().err.endswith("which opset 17 graphs use; expected --opset 16 (or TensorRT >= 8.6)\n")
        bundle = export(student[0], format="engine", opset=16, out=tmp_path / "b16", log=None)
        assert read_manifest(bundle).versions["opset"] == "16" and len(api.builds) == len(PARTS)
        with load(bundle) as engine, load(onnx_bundle) as reference:
            _same_batch_predictions(engine, reference, seed=3)
    too_old = r"^--format engine builds with TensorRT 8\.5-10\.x; this is TensorRT 8\.4\.3$"
    with fake_tensorrt("8.4.3"), pytest.raises(MissingDependencyError, match=too_old):
        export(student[0], format="engine", opset=16, out=tmp_path / "b84", log=None)


def _padded_rows(x: np.ndarray, lengths: np.ndarray, steps: int) -> set[bytes]:
    """The rows of `x` (N, L, d) with a valid step, cut or zero-padded to `steps` as calibration batches hold them."""
    out = np.zeros((len(x), steps, x.shape[2]), np.float32)
    out[:, :min(steps, x.shape[1])] = x[:, :steps]
    return {row.tobytes() for row, n in zip(out, lengths) if n > 0}


def test_int8_engine_calibrates_on_training_rows_and_is_judged_on_validation_rows(student, tmp_path, monkeypatch):
    """`--format engine --int8 --data` calibrated TensorRT's entropy calibrator on the parity feeds: the validation rows
    its max_drop accuracy check then judged it on, so the check passed scales fitted to the rows it judged. Now a
    bounded, seeded sample of the training split calibrates (read in the one load of the data that gives the
    validation split), the validation split alone judges, and the log and the manifest say which split calibrated."""
    import edge_msa.data
    from conftest import make_featureset
    from edge_msa.data.base import DatasetSplits
    from edge_msa.export import tensorrt

    train, valid, test = (make_featureset(SPEC, n, seed) for n, seed in ((40, 1), (24, 2), (6, 3)))
    loads = []

    def rebuild_splits(record, data, text_encoder=None, featurize=("train", "valid", "test")):
        loads.append(tuple(featurize))
        return DatasetSplits(SPEC, train, valid, test, info={"featurized": list(featurize)})

    monkeypatch.setattr(edge_msa.data, "rebuild_splits", rebuild_splits)
    monkeypatch.setattr(tensorrt, "CALIBRATION_SAMPLES", 16)
    lines = []
    with fake_tensorrt() as api:
        bundle = export(student[0], format="engine", trt_precision="int8", data="d.npz", out=tmp_path / "int8",
                        log=lines.append)
        fp16 = export(student[0], format="engine", data="d.npz", out=tmp_path / "fp16", log=None)
    assert loads == [("train", "valid"), ("valid",)]  # one load each; only INT8 embeds the training split's text
    m = read_manifest(bundle)
    drawn = np.sort(np.random.default_rng(0).choice(40, 16, replace=False))
    words = "16 (numpy default_rng(0), without replacement, in split order) of 40 training samples"
    assert m.export_options["int8_calibration"] == {
        "split": "train", "inputs": f"{words}, each in 7 modality subsets", "samples": 16}
    assert f"INT8 calibration: {words}, each in 7 modality subsets; accuracy judged on all 24 validation samples " \
           "of d.npz" in lines
    assert m.metrics["valid"]["n"] == 24 and m.metrics["valid"]["ok"]
    assert "int8_calibration" not in read_manifest(fp16).export_options
    text_graph = bundle / m.export_options["onnx_graphs"]["encode_text"]
    batches = api.calibration[_sha(text_graph)]
    steps = batches[0]["x"].shape[1]
    calibrated = {b["x"][0].tobytes() for b in batches if b["mask"].any()}
    assert calibrated == _padded_rows(train.features["text"][drawn], train.lengths["text"][drawn], steps)
    assert not calibrated & _padded_rows(valid.features["text"], valid.lengths["text"], steps)
    assert len(batches) == 7 * 16  # every subset of the sample: with text present (4) and without it (3)


def test_int8_engine_without_data_records_its_random_calibration(engines):
    """Without --data the warning says random inputs calibrated (see `engines`), and so does the manifest."""
    assert read_manifest(engines["int8"]).export_options["int8_calibration"] == {
        "split": None, "inputs": "8 random inputs of the spec's shapes, each in 7 modality subsets", "samples": 8}
    assert "int8_calibration" not in read_manifest(engines["fp16"]).export_options


def test_int8_engine_on_data_without_training_rows_is_refused_in_one_line(student, tmp_path, monkeypatch):
    """A file whose training split is empty (a feedback export of validation rows) gave the calibrator no batch:
    TensorRT fails the build after every graph was exported; now one line before anything is written."""
    import edge_msa.data
    from conftest import make_featureset
    from edge_msa.data.base import DatasetSplits

    splits = DatasetSplits(SPEC, *(make_featureset(SPEC, n, seed) for n, seed in ((0, 1), (24, 2), (6, 3))),
                           name="d.csv")
    monkeypatch.setattr(edge_msa.data, "rebuild_splits", lambda record, data, text_encoder=None, featurize=(): splits)
    with fake_tensorrt() as api:
        message = one_line_error(lambda: export(student[0], format="engine", trt_precision="int8", data="d.csv",
                                                out=tmp_path / "b", log=None))
    assert message == ("INT8 calibration needs training rows, but the training split of d.csv has none; expected "
                       "a dataset with training rows, or trt_precision = 'fp16'")  # the keyword typed (CLI: the flag)
    assert api.builds == [] and list(tmp_path.iterdir()) == []
