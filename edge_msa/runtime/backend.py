"""`Backend`: one compiled graph behind `run(feed) -> {output: array}`, with the input checks every
runtime shares. One subclass per runtime (onnxruntime, tensorrt, torch), chosen by name from BACKENDS."""
from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ..errors import ArtifactError, InputError
from ..spec import check_finite, suggest

# name -> "module:Class"; modules import their runtime lazily (torch and tensorrt are optional).
BACKENDS = {
    "onnxruntime": "edge_msa.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "edge_msa.runtime.tensorrt_backend:TensorRTBackend",
    "torch": "edge_msa.runtime.torch_backend:TorchBackend",
}


@dataclass(frozen=True)
class TensorInfo:
    """One graph input: name, numpy dtype, shape with None for dynamic axes."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


class BackendClass(Protocol):
    """What BACKENDS names: a Backend subclass, built from its runtime's own arguments (a graph file for onnxruntime
    and tensorrt, a module for torch) and the `label` its errors use. Backend's own __init__ takes none of them,
    so a bare type[Backend] could not be called the way open_bundle calls the registered class."""

    def __call__(self, *args: Any, label: str, **options: Any) -> Backend:
        """A loaded graph."""


class Backend(ABC):
    """A loaded graph. Subclasses set `inputs`/`outputs` and implement `_run`; `run` checks the feed
    first so every runtime fails the same one-line way. `calls` counts runs (tests, benchmarks)."""

    name: str = "backend"
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[str, ...]
    label: str  # what to call this graph in errors (part name or file)
    max_batch: int | None = None  # largest batch one call takes (TensorRT profiles); None = any
    providers: Sequence[str] = ()  # the execution providers it runs on, where its runtime has them (onnxruntime)

    def __init__(self) -> None:
        self.calls = 0

    def _file(self, path: str | os.PathLike, label: str | None, what: str) -> Path:
        """`path`, checked to be a file, with `label` (default: its name) set: the first lines of each backend that
        loads a file of the bundle (onnxruntime's graphs, TensorRT's engines), where `what` names that file."""
        path = Path(path)
        self.label = label or path.name
        if not path.is_file():
            raise ArtifactError(f"{what} file '{path}' is missing; re-export the bundle")
        return path

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a checked feed; a batch above `max_batch` runs in chunks (every input and output
        has the batch first), so evaluation and benchmarks need not know the engine's profile."""
        self.check(feed)
        batch = len(next(iter(feed.values()))) if feed else 0
        if not self.max_batch or batch <= self.max_batch:
            self.calls += 1
            return self._run(feed)
        parts = []
        for start in range(0, batch, self.max_batch):
            self.calls += 1
            parts.append(self._run({k: v[start:start + self.max_batch] for k, v in feed.items()}))
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on a checked feed."""

    def close(self) -> None:
        """Release runtime resources (sessions, device buffers)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, feed: dict[str, np.ndarray]) -> None:
        """Raise InputError for missing/unknown names, wrong dtype or rank or fixed dims, NaN/Inf."""
        names = [i.name for i in self.inputs]
        for key in feed:
            if key not in names:
                raise InputError(f"{self.label}: unknown input '{key}'{suggest(key, names)}")
        for info in self.inputs:
            if info.name not in feed:
                raise InputError(f"{self.label}: missing input '{info.name}'; expected {', '.join(names)}")
            x = feed[info.name]
            if not isinstance(x, np.ndarray) or x.dtype != info.dtype:
                got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
                raise InputError(f"{self.label}: input '{info.name}' has dtype {got}; expected {info.dtype}")
            fixed_ok = all(d is None or d == s for d, s in zip(info.shape, x.shape))
            if x.ndim != len(info.shape) or not fixed_ok:
                want = "(" + ", ".join("?" if d is None else str(d) for d in info.shape) + ")"
                raise InputError(f"{self.label}: input '{info.name}' has shape {x.shape}; expected {want}")
            if x.dtype.kind == "f":  # a graph's inputs have no common layout: the first bad value by its index
                check_finite(f"{self.label}: the numbers fed to input '{info.name}'", x, None)


def backend_class(name: str) -> BackendClass:
    """The Backend subclass registered as `name`, imported on demand, or one line naming the choices (a name that
    is not a string too: difflib's match raised a TypeError on it)."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}{suggest(str(name), sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)
