"""ONNX Runtime backend: providers TensorRT EP -> CUDA -> CPU, with a warning when ORT falls back."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, InputError, one_line, require, warn
from .backend import Backend, TensorInfo

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ORT_TYPES = {"tensor(float)": np.dtype(np.float32), "tensor(bool)": np.dtype(np.bool_),
             "tensor(float16)": np.dtype(np.float16), "tensor(int64)": np.dtype(np.int64),
             "tensor(int32)": np.dtype(np.int32)}


def default_providers(available: Sequence[str]) -> list[str]:
    """The best providers this onnxruntime build has, in preference order (CPU always last)."""
    return [p for p in PREFERRED if p in available] or ["CPUExecutionProvider"]


def provider_names(providers: str | Sequence[str] | None) -> list[str]:
    """The providers a caller asked for as a list of names ([]: none asked): one name alone is a list of one (else
    read letter by letter: 'onnxruntime has no C, P, U, ... in this build'), and anything but names is one line
    (a 5 raised a TypeError from inside, joining the names of the warning for unknown providers)."""
    if isinstance(providers, str):
        return [providers]
    try:
        names: list[object] = [] if providers is None else list(providers)
    except TypeError:  # a caller's 5: typed as names, given as anything
        names = [providers]
    if not all(isinstance(p, str) for p in names):
        raise InputError(f"providers {providers!r}; expected onnxruntime execution provider names (str), e.g. "
                         f"{list(PREFERRED[1:])}")
    return [str(p) for p in names]


class OnnxRuntimeBackend(Backend):
    """One `onnxruntime.InferenceSession` over one .onnx file."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] | None = None,
                 threads: int | None = None, label: str | None = None) -> None:
        super().__init__()
        providers = provider_names(providers)
        ort = require("onnxruntime", "running ONNX bundles", "pip install onnxruntime (or onnxruntime-gpu)")
        path = self._file(path, label, "graph")
        available = ort.get_available_providers()
        asked = providers or default_providers(available)
        unknown = [p for p in asked if p not in available]
        usable = [p for p in asked if p in available] or ["CPUExecutionProvider"]
        if unknown and providers:  # names what runs: "using the rest" was said with none left, running on the CPU
            warn(f"onnxruntime has no {', '.join(unknown)} in this build (available: "
                 f"{', '.join(available)}); running on {', '.join(usable)}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 4  # fatal only: our one-line errors and fallback warning replace ORT's log lines
        try:
            self.session = ort.InferenceSession(str(path), options, providers=usable)
        except Exception as exc:  # ORT raises InvalidProtobuf/Fail/InvalidGraph from its own module
            raise ArtifactError(f"cannot load graph '{path}' ({one_line(exc)}); the file is corrupt or truncated, "
                                "re-export the bundle") from None
        self.providers = self.session.get_providers()
        dropped = [p for p in usable if p not in self.providers]
        if dropped:
            warn(f"onnxruntime fell back from {', '.join(dropped)} to {', '.join(self.providers)} "
                 f"for {self.label}")
        self.inputs = tuple(self._info(i) for i in self.session.get_inputs())
        self.outputs = tuple(o.name for o in self.session.get_outputs())

    def _info(self, node) -> TensorInfo:
        if node.type not in ORT_TYPES:
            raise ArtifactError(f"{self.label}: input '{node.name}' has unsupported type {node.type}")
        shape = tuple(d if isinstance(d, int) else None for d in node.shape)
        return TensorInfo(node.name, ORT_TYPES[node.type], shape)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(list(self.outputs), feed)
        except Exception as exc:  # shape mismatches inside the graph surface here
            raise InputError(f"{self.label}: onnxruntime rejected the inputs ({one_line(exc)})") from None
        return dict(zip(self.outputs, values))

    def close(self) -> None:
        self.session = None
