"""Torch reference backend (host only): runs a torch module behind the same `Backend` interface, so
the exporter can run the very same Predictor pipeline on torch and on ONNX and compare them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import TRAIN_FIX, require
from .backend import Backend, TensorInfo

if TYPE_CHECKING:  # torch is optional: imported when the backend is built (require), not by this module
    from torch import nn


class TorchBackend(Backend):
    """`module(*inputs in order) -> output or tuple of outputs`, on CPU, in eval mode, without grad."""

    name = "torch"

    def __init__(self, module: nn.Module, inputs: Sequence[TensorInfo], outputs: Sequence[str],
                 label: str = "torch") -> None:
        super().__init__()
        self.torch = require("torch", "the torch reference backend (host only)", TRAIN_FIX)
        self.module = module.eval()
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.label = label

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = [torch.from_numpy(np.ascontiguousarray(feed[i.name])) for i in self.inputs]
        with torch.no_grad():
            out = self.module(*args)
        values = out if isinstance(out, (tuple, list)) else (out,)
        return {name: v.detach().float().numpy() for name, v in zip(self.outputs, values)}
