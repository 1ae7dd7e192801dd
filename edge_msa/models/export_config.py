"""Export configs (in the spirit of Hugging Face Optimum's OnnxConfig): what tracing a model's graphs needs, declared
by the model class itself (`MSAModel.export_config`) so the exporter never has to guess from where a class lives.

Per graph: the torch module, its input/output names (the runtime's contract, `edge_msa.spec`), the dynamic axes
and example inputs to trace. Host only (torch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ..spec import MODALITIES, PART_IO, SINGLE, SINGLE_IO

if TYPE_CHECKING:
    from .base import MSAModel
    from .with_text import StudentModel

GraphIO = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # graph -> (input names, output names)


@dataclass(frozen=True)
class ExportConfig:
    """The graphs of one model. `text_vocab`: the text input is (B, L) int64 token ids below this (a model that
    encodes token ids itself), else (B, L, d) features. Subclasses name the layout, its graphs, their modules,
    which inputs have a sequence axis and how example inputs are made."""

    model: MSAModel
    text_vocab: int | None = None
    layout: ClassVar[str]  # the manifest's layout: "single" | "parts"
    io: ClassVar[GraphIO]
    length_axes: ClassVar[dict[str, dict[str, str]]]  # graph -> {sequence input: name of its length axis}

    def module(self, graph: str) -> nn.Module:
        raise NotImplementedError

    def example_inputs(self, graph: str) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def dynamic_axes(self, graph: str) -> dict[str, dict[int, str]]:
        """Axis 0 of every input and output is the batch; axis 1 of a sequence input is its length."""
        inputs, outputs = self.io[graph]
        axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in (*inputs, *outputs)}
        for name, length in self.length_axes.get(graph, {}).items():
            axes[name][1] = length
        return axes

    def sequence(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Example (x, mask) of one modality: batch 2 at the spec's max length, the second row half-masked."""
        spec = self.model.spec
        L = spec.max_len(modality)
        if modality == "text" and self.text_vocab:
            x = torch.randint(1, self.text_vocab, (2, L))  # (2, L) token ids
        else:
            x = torch.randn(2, L, spec.dim(modality))  # (2, L, d)
        mask = torch.arange(L)[None, :] < torch.tensor([L, max(L // 2, 1)])[:, None]  # (2, L)
        return x, mask


class SingleGraphConfig(ExportConfig):
    """Any MSAModel as one graph: (text, text_mask, audio, audio_mask, video, video_mask) -> score; no skipping."""

    layout = "single"
    io = SINGLE_IO
    length_axes = {SINGLE: {f"{m}{suffix}": f"len_{m}" for m in MODALITIES for suffix in ("", "_mask")}}

    def module(self, graph: str) -> nn.Module:
        return SingleGraph(self.model).eval()

    def example_inputs(self, graph: str) -> tuple[torch.Tensor, ...]:
        return tuple(t for m in MODALITIES for t in self.sequence(m))


class PartsConfig(ExportConfig):
    """The student as parts (gate, one encoder per modality, fuse) so the runtime can skip audio/video per input;
    the model provides each graph's module as `model.part(name)`."""

    model: StudentModel  # the models with parts (Student.export_config, WithTextEncoder's around one)
    layout = "parts"
    io = PART_IO
    length_axes = {f"encode_{m}": {"x": "len", "mask": "len"} for m in MODALITIES}

    def module(self, graph: str) -> nn.Module:
        return self.model.part(graph)

    def example_inputs(self, graph: str) -> tuple[torch.Tensor, ...]:
        if graph.startswith("encode_"):
            return self.sequence(graph.split("_", 1)[1])
        with torch.no_grad():
            h = self.model.part("encode_text")(*self.sequence("text"))  # (2, D)
        if graph == "gate":
            return (h, torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]))  # present (2, 3)
        return (h, h.clone(), h.clone(), torch.ones(2, len(MODALITIES)))  # fuse


class SingleGraph(nn.Module):
    """Any MSAModel as one module: positional inputs in SINGLE_IO order (the batch keys) -> score (B,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.inner(dict(zip(SINGLE_IO[SINGLE][0], inputs)))["score"]  # (B,)
