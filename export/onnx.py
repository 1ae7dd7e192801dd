"""fp32 ONNX: each graph exported with the legacy TorchScript exporter (opset 17: fast, and what older
TensorRT parses), dynamic batch and sequence axes, then deduplicated and slimmed (slim.py). Host only (torch)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_msa.errors import ArtifactError
from edge_msa.features.text import TOKENS_PREFIX
from edge_msa.runtime.manifest import PARTS, SINGLE, SINGLE_INPUTS, SINGLE_OUTPUTS
from edge_msa.spec import MODALITIES, FeatureSpec

from .slim import slim_file


def graph_io(model, layout: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Input/output names of every graph: the student's PART_IO, or the single-graph wrapper's."""
    if layout == "single":
        return {SINGLE: (SINGLE_INPUTS, SINGLE_OUTPUTS)}
    import importlib

    from edge_msa.models.with_text import fusion_of
    part_io = importlib.import_module(type(fusion_of(model)).__module__).PART_IO
    return {p: tuple(tuple(x) for x in part_io[p]) for p in PARTS}


def graph_module(model, layout: str, name: str):
    """The torch module behind one graph (positional inputs in graph_io order)."""
    return SingleGraph(model).eval() if layout == "single" else model.part(name)


class SingleGraph(nn.Module):
    """Any MSAModel as one graph: (text, text_mask, audio, audio_mask, video, video_mask) -> score (B,)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.inner = model

    def forward(self, text, text_mask, audio, audio_mask, video, video_mask):
        batch = {"text": text, "text_mask": text_mask, "audio": audio, "audio_mask": audio_mask,
                 "video": video, "video_mask": video_mask}
        return self.inner(batch)["score"]  # (B,)


def example_inputs(model, spec: FeatureSpec, layout: str, name: str) -> tuple:
    """Dummy tensors to trace one graph: batch 2, full max lengths, the second row half-masked."""
    def seq(m: str):
        L = spec.max_len(m)
        x = torch.randn(2, L, spec.dim(m))  # (2, L, d)
        if m == "text" and spec.front_end("text").startswith(TOKENS_PREFIX):  # a model with its own text encoder
            x = torch.randint(1, model.config_params["text_bert"]["vocab_size"], (2, L))  # (2, L) token ids
        mask = torch.arange(L)[None, :] < torch.tensor([L, max(L // 2, 1)])[:, None]  # (2, L)
        return x, mask

    if layout == "single":
        return tuple(t for m in MODALITIES for t in seq(m))
    if name.startswith("encode_"):
        return seq(name.split("_", 1)[1])
    with torch.no_grad():
        h = model.part("encode_text")(*seq("text"))  # (2, D)
    if name == "gate":
        return (h, torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]))  # present (2, 3)
    return (h, h.clone(), h.clone(), torch.ones(2, len(MODALITIES)))  # fuse


def dynamic_axes(inputs: tuple[str, ...], outputs: tuple[str, ...], example: tuple) -> dict[str, dict[int, str]]:
    """Axis 0 of everything is the batch; axis 1 of a sequence (3-D) or mask (bool) is its length:
    "len" inside an encoder graph, "len_<modality>" where several sequences meet."""
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in (*inputs, *outputs)}
    for name, t in zip(inputs, example):
        if t.dim() == 3 or t.dtype in (torch.bool, torch.int64):  # features, masks, token ids
            axes[name][1] = "len" if name in ("x", "mask") else f"len_{name.removesuffix('_mask')}"
    return axes


# The legacy exporter prints this from C++ for every pack_padded_sequence (the teachers' LSTMs). The
# shapes it warns about are checked for real: every export ends with a parity run on all modality subsets.
_KNOWN_CPP_NOTE = re.compile(rb"shape inference of prim::(PackPadded|PadPacked) type is missing")


@contextlib.contextmanager
def _without_packpadded_notes():
    """Capture the process's stderr (fd 2, where C++ writes) and replay all but the known note."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _KNOWN_CPP_NOTE.search(line)]
            if kept:
                sys.stderr.write(b"".join(kept).decode(errors="replace"))
                sys.stderr.flush()


def export_graphs(model, spec: FeatureSpec, layout: str, out: Path, opset: int, dedupe: bool,
                  short_names: bool) -> dict[str, Any]:
    """Write one .onnx per graph into `out`, deduplicated and slimmed (export/slim.py) as asked.
    Returns {graph: {"file", "bytes_exported" (as torch wrote it), "bytes"}}."""
    model.eval()
    info = {}
    for name, (inputs, outputs) in graph_io(model, layout).items():
        module = graph_module(model, layout, name)
        example = example_inputs(model, spec, layout, name)
        path = out / f"{name}.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad(), _without_packpadded_notes():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
                torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                                  input_names=list(inputs), output_names=list(outputs),
                                  dynamic_axes=dynamic_axes(inputs, outputs, example), do_constant_folding=True)
        except Exception as exc:  # tracer/exporter errors are long; keep the first line
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"cannot export graph '{name}' of {model.model_name} to ONNX ({first})") from None
        info[name] = {"file": path.name, "bytes_exported": path.stat().st_size,
                      "bytes": slim_file(path, dedupe=dedupe, short_names=short_names)}
    return info


def build(ctx) -> dict[str, str]:
    """fp32: the exported graphs are the bundle's graphs."""
    return {name: path.name for name, path in ctx.onnx_graphs.items()}
