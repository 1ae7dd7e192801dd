"""Measurements for the compress report: params/MACs (torch-pruning's counter + attention matmuls, averaged
over the real inputs), side-by-side CPU latency (as the bench times), paired bootstrap confidence intervals."""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Callable, Sequence, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from edge_msa.benchmarks.timing import LatencyStats, measure_side_by_side
from edge_msa.data.base import FeatureSet
from edge_msa.errors import TRAIN_FIX, require
from edge_msa.metrics import msa_metrics
from edge_msa.models.base import MSAModel
from edge_msa.features.text import TOKENS_PREFIX, TokenIds, TruncationWarning
from edge_msa.models.with_text import StudentModel, student_of, token_ids
from edge_msa.spec import MODALITIES, SKIPPABLE, FeatureSpec
from edge_msa.training import modality_tensors, to_batch, torch_threads


class _Score(nn.Module):
    """model(batch)["score"] with the batch passed as keyword tensors (what the op counter calls)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)["score"]


class _Encode(nn.Module):
    def __init__(self, model: MSAModel, modality: str) -> None:
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.modality, x, mask)


class _AttentionMacs(TorchFunctionMode):
    """Counts the MACs of F.scaled_dot_product_attention calls (q @ k^T and attn @ v), which torch-pruning's
    module-level counter cannot see: B*H*L_q*L_k*(E + E_v) per call, as the kernel computes every score."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3] if len(args) >= 3 else (kwargs["query"], kwargs["key"], kwargs["value"])
            self.macs += float(q.numel() // q.shape[-1] * k.shape[-2] * (q.shape[-1] + v.shape[-1]))
        return func(*args, **(kwargs or {}))


def _ops(module: nn.Module, inputs: Any) -> tuple[float, int]:
    """MACs and unique params for ONE input (batch 1): torch-pruning's counter for the modules, plus the
    attention matmuls inside scaled_dot_product_attention (a functional call it does not count).

    Its total sums child counts per parent, so a module reachable from two parents (the student's shared
    block) would count twice; summing the per-layer counts of each counted module once avoids that.
    """
    tp = require("torch_pruning", "counting MACs and params", TRAIN_FIX)
    from torch_pruning.utils.op_counter import is_supported_instance

    with contextlib.redirect_stdout(io.StringIO()):  # the counter prints a warning per reused module
        _, params, layer_macs, _ = tp.utils.count_ops_and_params(module, inputs, layer_wise=True)
    macs = sum(float(layer_macs.get(m) or 0.0) for m in module.modules() if is_supported_instance(m))
    attention = _AttentionMacs()
    with torch.no_grad(), attention:
        module(**inputs) if isinstance(inputs, dict) else module(*inputs)
    return macs + attention.macs, int(params)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def _encoder_params(model: MSAModel, modality: str, x: torch.Tensor, mask: torch.Tensor) -> int:
    """Parameters of the modules that model.encode(modality) actually calls (any architecture)."""
    called: list[nn.Module] = []
    hooks = [mod.register_forward_hook(lambda mod, *_: called.append(mod)) for mod in model.modules()]
    try:
        model.encode(modality, x, mask)
    finally:
        for h in hooks:
            h.remove()
    params = {id(p): p.numel() for mod in called for p in mod.parameters(recurse=False)}
    return sum(params.values())


def one_step_batch(fs: FeatureSet, i: int = 0) -> dict[str, torch.Tensor]:
    """Sample i with every modality cut to ONE valid step: MACs per step of the per-step encoders."""
    batch = to_batch(fs, np.array([i]))
    for m in MODALITIES:
        batch[m] = batch[m][:, :1]
        batch[f"{m}_mask"] = torch.ones(1, 1, dtype=torch.bool)
    return batch


def count_model(model: MSAModel, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Total params (unique) and MACs for one input, plus per modality encoder and the rest ('fusion').

    MACs: torch-pruning's module-level count (Linear, LayerNorm, LSTM, ...) + the attention matmuls.
    """
    batch = {k: v for k, v in batch.items() if k != "index"}
    model.eval()
    macs, _ = _ops(_Score(model), batch)
    parts: dict[str, dict[str, float]] = {}
    enc_params = 0
    for m in MODALITIES:
        mac_m, _ = _ops(_Encode(model, m), (batch[m], batch[f"{m}_mask"]))
        p_m = _encoder_params(model, m, batch[m], batch[f"{m}_mask"])
        enc_params += p_m
        parts[f"encode_{m}"] = {"params": p_m, "macs": mac_m}
    total = _params(model)
    parts["fusion"] = {"params": total - enc_params,
                       "macs": macs - sum(parts[f"encode_{m}"]["macs"] for m in MODALITIES)}
    return {"params": total, "macs": macs, "parts": parts}


END_TO_END = "end to end from token ids (text encoder and embeddings included)"
FROM_FEATURES = "from text features (not counting the frozen text encoder that makes them)"


def count_at_max_lens(model: MSAModel) -> dict[str, Any]:
    """count_model's params and MACs for ONE input at the spec's max lengths, labelled with what they count: a
    bundle and a checkpoint are sized without data (the compress report averages over the test split instead),
    and a model that reads text features leaves out the text encoder that a token-id model counts."""
    spec = model.spec
    batch = {}
    for m in MODALITIES:
        length = spec.max_len(m)
        batch[m], batch[f"{m}_mask"] = modality_tensors(np.zeros((1, length, spec.dim(m)), np.float32),
                                                        np.array([length]))  # (1, L, d), (1, L)
    count = count_model(model, batch)
    tokens = spec.front_end("text").startswith(TOKENS_PREFIX)
    return {"params": count["params"], "macs": count["macs"], "scope": END_TO_END if tokens else FROM_FEATURES,
            "input": f"batch 1 at max_lens {list(spec.max_lens)}"}


Model = TypeVar("Model", bound=nn.Module)  # whatever `count` takes: a teacher, a student


def mean_over_inputs(count: Callable[[Model, dict], dict], model: Model, fs: FeatureSet) -> dict[str, Any]:
    """`count(model, batch of one input)` averaged over EVERY input of `fs` (MACs grow with sequence length).
    Inputs with the same per-modality lengths cost the same, so each distinct length tuple is counted once
    and weighted by how many inputs have it; `inputs` says how many were averaged."""
    keys = np.stack([fs.lengths[m] for m in MODALITIES], axis=1)  # (N, 3)
    _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    results = [count(model, {k: v for k, v in to_batch(fs, np.array([i])).items() if k != "index"}) for i in first]
    return {**_weighted_mean(results, counts / counts.sum()), "inputs": len(fs)}


def _weighted_mean(items: list, weights: np.ndarray):
    """Leaf-wise weighted mean of equally shaped dicts of numbers (values equal everywhere stay as they are)."""
    if isinstance(items[0], dict):
        return {k: _weighted_mean([x[k] for x in items], weights) for k in items[0]}
    if all(x == items[0] for x in items):
        return items[0]
    return float(np.dot(weights, np.asarray(items, dtype=np.float64)))


def count_student_parts(model: StudentModel, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Params/MACs per exported part (a shared block counts in every part that uses it); with a text encoder
    inside the model, encode_text counts it too (from token ids)."""
    fusion = student_of(model)
    text = token_ids(batch["text"]) if fusion is not model else batch["text"]
    h = torch.zeros(1, model.config_params["dim"])
    present = torch.ones(1, 3)
    inputs = {"encode_text": (text, batch["text_mask"]),
              **{f"encode_{m}": (batch[m], batch[f"{m}_mask"]) for m in SKIPPABLE},
              "gate": (h, present),
              "fuse": (h, h, h, present)}
    fuse_modules = (fusion.blocks[model.config_params["sharing"]["fuse"]], fusion.head_fc1, fusion.head_fc2)
    fuse_params = _params(nn.ModuleList(fuse_modules)) + fusion.modality_embed.numel()
    out = {}
    for name, args in inputs.items():
        macs, params = _ops(model.part(name), args)
        out[name] = {"params": fuse_params if name == "fuse" else params, "macs": macs}
    return out


def raw_text(model: Callable[[dict], Any], fs: FeatureSet, front: TokenIds) -> Callable[[dict], Any]:
    """`model` called from the raw transcript: each call tokenizes fs.texts[batch index] (`front`: TokenIds) and
    replaces the batch's token ids, so a timing covers string -> tokenizer -> encoder -> fusion -> score."""
    def call(batch: dict) -> Any:
        assert fs.texts is not None  # token ids are made from the transcripts, which the data keeps
        ids, lengths = front.encode([str(fs.texts[int(batch["index"][0])])])
        x, mask = modality_tensors(ids, lengths)  # (1, L, 1), (1, L)
        return model({**batch, "text": x, "text_mask": mask})
    return call


def text_front_end_params(spec: FeatureSpec) -> dict[str, Any]:
    """Parameter count of the frozen text front end both models share (from its ONNX initialisers)."""
    name = spec.front_end("text")
    if name.startswith(TOKENS_PREFIX):
        return {"name": name, "params": None, "note": "the text encoder is part of each model (counted in params)"}
    if name != "minilm-l6-int8":
        return {"name": name, "params": None, "note": "external text features; no front end in this pipeline"}
    try:
        onnx = require("onnx", "counting the text front end's parameters", TRAIN_FIX)
        from edge_msa.features.text import default_onnx_path

        graph = onnx.load(str(default_onnx_path()), load_external_data=False).graph
        count = int(sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type in (1, 3, 6, 7, 10, 16)
                        and len(t.dims) > 0 and int(np.prod(t.dims)) > 1))
        return {"name": name, "params": count, "note": "int8 ONNX initialisers (weights + biases, scalars excluded)"}
    except Exception as exc:  # the count is informational; the report says why it is missing
        return {"name": name, "params": None, "note": f"could not count: {type(exc).__name__}: {exc}"}


def latency(models: dict[str, Callable[[dict], Any]], fs: FeatureSet, calls: int, threads: int) -> dict[str, Any]:
    """Batch-1 latency of each callable on `calls` real inputs of `fs` (the same inputs for every model), timed as
    `edge-msa bench` times bundles (`measure_side_by_side`); percentiles in ms. Timed call by call instead, the
    student ran on caches the teacher had just flushed, which overstated its latency."""
    batches = [to_batch(fs, np.array([i])) for i in range(min(calls, len(fs)))]
    warmup = min(20, calls)
    timed = [lambda i, fn=fn: fn(batches[i % len(batches)]) for fn in models.values()]
    with torch_threads(threads), torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # the data load said so; raw_text re-tokenizes them
        stats = measure_side_by_side(timed, items_per_call=1, warmup=warmup, min_time_s=0.0, min_runs=calls,
                                     max_runs=calls)
    failed = [s for s in stats if isinstance(s, Exception)]
    if failed:
        raise failed[0]
    return {name: {**s.latency_ms(), "cv": s.cv, "calls": s.runs}
            for name, s in zip(models, cast("list[LatencyStats]", stats))}  # no Exception: raised above


def difference(a: float | None, b: float | None) -> float | None:
    """a - b, or None where either is undefined: Acc-2 non-0 is None on labels that are all 0 (msa_metrics), as a
    bootstrap resample of a split holding some 0 labels can be."""
    return None if a is None or b is None else a - b


def percentile_ci(draws: Sequence[float]) -> list[float]:
    """The 95 % percentile interval of bootstrap draws: their 2.5th and 97.5th percentiles."""
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def paired_bootstrap(pred_a: np.ndarray, pred_b: np.ndarray, truth: np.ndarray, n: int, seed: int = 0) -> dict:
    """95% CI of metric(a) - metric(b) for Acc-2 non-0 and MAE, resampling test items jointly.

    Acc-2 non-0 is undefined (None, see msa_metrics) on a resample whose labels are all 0: such draws are left
    out and `resamples` counts the draws kept. A small test split holding a 0 label (a 20-row label.csv) drew
    one almost surely, and `None - None` failed compress after all its training."""
    rng = np.random.default_rng(seed)

    def diffs(idx: np.ndarray) -> dict[str, float | None]:
        ma, mb = msa_metrics(pred_a[idx], truth[idx]), msa_metrics(pred_b[idx], truth[idx])
        return {k: difference(ma[k], mb[k]) for k in ("acc2_non0", "mae")}

    point = diffs(np.arange(len(truth)))
    draws = [diffs(rng.integers(0, len(truth), len(truth))) for _ in range(n)]
    kept = {k: [v for d in draws if (v := d[k]) is not None] for k in point}
    return {k: {"diff": point[k], "ci95": percentile_ci(kept[k]) if kept[k] else None, "resamples": len(kept[k])}
            for k in point}
