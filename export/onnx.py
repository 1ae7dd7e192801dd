"""fp32 ONNX: each graph exported with the legacy TorchScript exporter (opset 17: fast, and what older
TensorRT parses), dynamic batch and sequence axes, identical initializers deduplicated, then slimmed (slim.py). Host only (torch)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_msa.errors import ArtifactError
from edge_msa.runtime.manifest import PARTS, SINGLE, SINGLE_INPUTS, SINGLE_OUTPUTS
from edge_msa.spec import MODALITIES, FeatureSpec

from .slim import slim_file


def graph_io(model, layout: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Input/output names of every graph: the student's PART_IO, or the single-graph wrapper's."""
    if layout == "single":
        return {SINGLE: (SINGLE_INPUTS, SINGLE_OUTPUTS)}
    import importlib
    part_io = importlib.import_module(type(model).__module__).PART_IO
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
        if t.dim() == 3 or t.dtype == torch.bool:
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
        before = path.stat().st_size
        if dedupe:
            dedupe_file(path)
        info[name] = {"file": path.name, "bytes_exported": before,
                      "bytes": slim_file(path, constants=dedupe, short_names=short_names)}
    return info


def dedupe_initializers(graph) -> int:
    """Make nodes share one copy of byte-identical initializers (shared blocks, folded transposes).
    Returns how many initializers were removed."""
    from onnx import numpy_helper

    keep: dict[str, str] = {}
    rename: dict[str, str] = {}
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        key = hashlib.sha1(arr.dtype.str.encode() + str(arr.shape).encode() + np.ascontiguousarray(arr).tobytes())
        digest = key.hexdigest()
        if digest in keep:
            rename[init.name] = keep[digest]
        else:
            keep[digest] = init.name
    if not rename:
        return 0
    outputs = {o.name for o in graph.output}
    rename = {k: v for k, v in rename.items() if k not in outputs}
    for node in _all_nodes(graph):
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    kept = [init for init in graph.initializer if init.name not in rename]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph_inputs = [i for i in graph.input if i.name not in rename]
    del graph.input[:]
    graph.input.extend(graph_inputs)
    return len(rename)


def fold_identities(graph) -> int:
    """Drop Identity nodes that alias an initializer (the legacy exporter emits them for reused
    parameters); consumers read the initializer directly. Keeps fp16 conversion and dedupe simple."""
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return 0
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    del graph.node[:]
    graph.node.extend(kept)
    for node in _all_nodes(graph):
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    return len(alias)


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_nodes(sub)


def dedupe_file(path: Path) -> int:
    """Fold initializer aliases and share identical initializers in one .onnx file, in place."""
    import onnx

    proto = onnx.load(str(path))
    removed = fold_identities(proto.graph) + dedupe_initializers(proto.graph)
    if removed:
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
    return removed


def build(ctx) -> dict[str, str]:
    """fp32: the exported graphs are the bundle's graphs."""
    return {name: path.name for name, path in ctx.onnx_graphs.items()}
