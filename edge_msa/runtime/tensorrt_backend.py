"""TensorRT backend: runs one serialized engine (TensorRT >= 8.5 tensor API) with cuda-python for device
memory, so the device path needs no torch. Imported only when a bundle of engines is loaded.
Never run on a GPU by our tests: tests/test_tensorrt_fake_api.py exercises this control flow against a fake
tensorrt + cuda-python API; the engines come from `edge-msa export --format engine`."""
from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError, require
from .backend import Backend, TensorInfo

TRT_FIX = "install it from JetPack (Jetson) or `pip install tensorrt` from NVIDIA's index on x86"


def cuda_runtime() -> ModuleType:
    """cuda-python's runtime API (cuda.bindings.runtime; cuda.cudart before 12.6): device memory for engines
    and for INT8 calibration batches."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        cudart = require("cuda.cudart", "TensorRT device memory", "pip install \"edge-msa[tensorrt]\" (cuda-python)")
    return cudart


def to_engine_dtype(x: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """`x` contiguous in the engine tensor's `dtype`. TensorRT before 10 has no INT64: its ONNX parser narrows the
    graphs' int64 inputs (token ids) to INT32, so integer arrays are narrowed here, and values int32 cannot hold
    are refused rather than wrapped into other ids."""
    dtype = np.dtype(dtype)
    if x.dtype != dtype and x.dtype.kind in "iu" and dtype.kind == "i" and x.size:
        bounds = np.iinfo(dtype)
        if int(x.min()) < bounds.min or int(x.max()) > bounds.max:
            raise InputError(f"{what} holds values outside {dtype} ({int(x.min())}..{int(x.max())}), which this "
                             f"TensorRT engine takes; expected {bounds.min}..{bounds.max}")
    return np.ascontiguousarray(x, dtype=dtype)


def graph_dtype(engine_dtype: np.dtype) -> np.dtype:
    """The dtype the runtime feeds for an engine tensor: int64 where TensorRT before 10 narrowed it to int32 (our
    graphs take no int32 input), else the engine's own."""
    return np.dtype(np.int64) if np.dtype(engine_dtype) == np.int32 else np.dtype(engine_dtype)


def cuda_call(result: Any, what: str) -> Any:
    """cuda-python returns (err, *values): the value (None if there is none), ArtifactError when err != 0."""
    err, *value = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ArtifactError(f"{what}: CUDA error {err}")
    return value[0] if value else None


class TensorRTBackend(Backend):
    """One engine, one execution context, one CUDA stream, and one device buffer per input/output sized for the
    optimisation profile's max shapes, allocated on first use and kept until close(): a cudaMalloc/cudaFree
    pair per tensor per call would dominate a sub-millisecond engine."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, label: str | None = None) -> None:
        super().__init__()
        trt = require("tensorrt", "running TensorRT engines", TRT_FIX)
        self.trt, self.cudart = trt, cuda_runtime()
        path = self._file(path, label, "engine")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"cannot deserialize engine '{path}': corrupt, or built by another TensorRT "
                                f"version/GPU (this is TensorRT {trt.__version__}); rebuild it on this device")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}  # the engine's
        self.inputs = tuple(TensorInfo(n, graph_dtype(self.dtypes[n]),
                                       tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(n)))
                            for n in names if is_input[n])
        self.outputs = tuple(n for n in names if not is_input[n])
        dynamic = [i.name for i in self.inputs if i.shape and i.shape[0] is None]
        if dynamic:  # profile 0's max batch (export builds one profile per engine)
            self.max_batch = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) for n in dynamic)
        self.stream = cuda_call(self.cudart.cudaStreamCreate(), self.label)
        self.device: dict[str, int] = {}  # tensor name -> device pointer (see _buffers)

    def _buffers(self) -> dict[str, int]:
        """Device buffers for every tensor at profile 0's max shapes (outputs: their shape at those inputs)."""
        if not self.device:
            nbytes = {}
            for info in self.inputs:
                # profile 0's max, or the static shape as the engine gives it (ints: info.shape's type allows None)
                shape = tuple(self.engine.get_tensor_profile_shape(info.name, 0)[2] if None in info.shape
                              else self.engine.get_tensor_shape(info.name))
                self.context.set_input_shape(info.name, shape)
                nbytes[info.name] = int(np.prod(shape)) * self.dtypes[info.name].itemsize
            for name in self.outputs:
                nbytes[name] = int(np.prod(tuple(self.context.get_tensor_shape(name)))) * self.dtypes[name].itemsize
            try:
                for name, size in nbytes.items():
                    self.device[name] = cuda_call(self.cudart.cudaMalloc(max(size, 1)), self.label)
                    self.context.set_tensor_address(name, self.device[name])
            except ArtifactError:
                self._free()
                raise
        return self.device

    def _free(self) -> None:
        for ptr in getattr(self, "device", {}).values():
            self.cudart.cudaFree(ptr)
        self.device = {}

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, kinds = self.cudart, self.cudart.cudaMemcpyKind
        device = self._buffers()
        for info in self.inputs:
            x = to_engine_dtype(feed[info.name], self.dtypes[info.name], f"{self.label}: input '{info.name}'")
            if not self.context.set_input_shape(info.name, x.shape):
                raise InputError(f"{self.label}: input '{info.name}' shape {x.shape} is outside the engine's "
                                 "optimisation profile (see trtexec.txt for min/max shapes)")
            cuda_call(cudart.cudaMemcpyAsync(device[info.name], x.ctypes.data, x.nbytes,
                                             kinds.cudaMemcpyHostToDevice, self.stream), self.label)
        if not self.context.execute_async_v3(int(self.stream)):
            raise ArtifactError(f"{self.label}: TensorRT execution failed")
        host = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host[name] = np.empty(shape, dtype=self.dtypes[name])
            cuda_call(cudart.cudaMemcpyAsync(host[name].ctypes.data, device[name], host[name].nbytes,
                                             kinds.cudaMemcpyDeviceToHost, self.stream), self.label)
        cuda_call(cudart.cudaStreamSynchronize(self.stream), self.label)
        return host

    def close(self) -> None:
        self._free()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = self.engine = None
