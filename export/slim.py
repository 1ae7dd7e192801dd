"""Make ONNX files smaller without changing what they compute, in one load and one save per file.

Dedupe: the legacy exporter writes a parameter reused across call sites (shared blocks) as Identity aliases
or byte-identical copies, and repeats the same scalar Constant node dozens of times; each is kept once.
Short names: at a student's size (~60 k parameters) the graph's structure, not its weights, is most of each
file: tensors named after their module path ("/fusion/block/attn/q/MatMul_output_0") and the quantizer's
shape annotations (value_info) for every tensor. Left in, they cap what INT8 can save (int8 weights are
3.6x smaller than fp32, the files only 1.9x). Graph inputs and outputs keep their names: they are the
runtime's contract.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # onnx is imported where it is used
    from onnx import GraphProto, ModelProto


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_nodes(sub)


def _has_subgraphs(graph) -> bool:
    return any(attr.HasField("g") or len(attr.graphs) for node in graph.node for attr in node.attribute)


def _rename_inputs(graph, rename: dict[str, str]) -> None:
    """Point every node input (subgraphs included) named in `rename` at its new name."""
    for node in _all_nodes(graph):
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def _remove(items, drop: Callable) -> None:
    """Delete the entries of a protobuf repeated field for which drop(entry) is true."""
    kept = [x for x in items if not drop(x)]
    del items[:]
    items.extend(kept)


def fold_identities(graph: GraphProto) -> int:
    """Drop Identity nodes that alias an initializer (the legacy exporter emits them for reused
    parameters); consumers read the initializer directly. Keeps fp16 conversion and dedupe simple."""
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if alias:
        _remove(graph.node, lambda n: n.op_type == "Identity" and n.output[0] in alias)
        _rename_inputs(graph, alias)
    return len(alias)


def dedupe_initializers(graph: GraphProto) -> int:
    """Make nodes share one copy of byte-identical initializers (shared blocks, folded transposes).
    Returns how many initializers were removed."""
    from onnx import numpy_helper

    keep: dict[str, str] = {}
    rename: dict[str, str] = {}
    outputs = {o.name for o in graph.output}
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        digest = hashlib.sha1(arr.dtype.str.encode() + str(arr.shape).encode()
                              + np.ascontiguousarray(arr).tobytes()).hexdigest()
        if digest not in keep:
            keep[digest] = init.name
        elif init.name not in outputs:
            rename[init.name] = keep[digest]
    if rename:
        _rename_inputs(graph, rename)
        _remove(graph.initializer, lambda i: i.name in rename)
        _remove(graph.input, lambda i: i.name in rename)
    return len(rename)


def share_constants(graph: GraphProto) -> int:
    """Identical Constant nodes (same value, same attributes) collapse into the first one; returns how many
    were removed. Graphs with subgraphs (If/Loop) are left alone: a subgraph may read an outer name."""
    if _has_subgraphs(graph):
        return 0
    outputs = {o.name for o in graph.output}
    first: dict[bytes, str] = {}
    rename: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Constant" or node.output[0] in outputs:
            continue
        key = b"".join(attr.SerializeToString() for attr in node.attribute)
        if key in first:
            rename[node.output[0]] = first[key]
        else:
            first[key] = node.output[0]
    if rename:
        _remove(graph.node, lambda n: n.op_type == "Constant" and n.output[0] in rename)
        _rename_inputs(graph, rename)
    return len(rename)


def shorten_names(model: ModelProto) -> int:
    """Internal tensor names become short hex ids; node names, doc strings and value_info are dropped.
    Returns how many tensors were renamed (0 for graphs with subgraphs, which are left as they are)."""
    graph = model.graph
    if _has_subgraphs(graph):
        return 0
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    rename: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return rename.setdefault(name, format(len(rename), "x"))

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        for i, name in enumerate(node.input):
            node.input[i] = short(name)
        for i, name in enumerate(node.output):
            node.output[i] = short(name)
    del graph.value_info[:]
    graph.doc_string = ""
    model.doc_string = ""
    return len(rename)


def slim_file(path: Path, dedupe: bool = True, short_names: bool = True) -> int:
    """Dedupe (identity aliases, identical initializers and Constant nodes) and/or shorten names, in place;
    the ONNX checker passes the result before it is saved. Returns the file's size afterwards. The exporter
    calls it inside its temporary bundle folder, which is renamed into place only when the export succeeds."""
    import onnx

    model = onnx.load(str(path))
    changed = 0
    if dedupe:
        changed += fold_identities(model.graph) + dedupe_initializers(model.graph) + share_constants(model.graph)
    if short_names:
        changed += shorten_names(model)
    if changed:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return path.stat().st_size
