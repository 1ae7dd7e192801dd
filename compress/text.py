"""The student's text encoder, made from the teacher's fine-tuned one:
pick layers -> prune heads / FFN / hidden with torch-pruning -> prune + factorise the vocabulary embedding ->
distil layer-wise (hidden states, TinyBERT-style) on a transfer set of transcripts.

Vocabulary policy: the student keeps the embedding rows of the tokens that occur in the transfer set's training
texts (plus the special tokens); the tokenizer stays the teacher's, and every other token id is mapped (a
(vocab,) table inside the graph) to the kept token whose teacher embedding is most similar (cosine), so an unseen
word still gets a nearby meaning instead of [UNK]. The kept rows are then factorised by truncated SVD,
(rows, H) ~ (rows, r) @ (r, H).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_msa.errors import InputError, require
from edge_msa.models.text_bert import BertEncoder


@dataclass(frozen=True)
class TextShape:
    """Target shape of the student's text encoder."""

    layers: int = 2
    hidden: int = 256
    heads: int = 8
    ffn: int = 768
    embed_rank: int = 128
    min_count: int = 1  # a token is kept when it occurs at least this often in the transfer texts


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (1-based output index) each student layer copies and imitates: evenly spaced, ending at the
    last layer (6 -> 2: [3, 6]), as TinyBERT's uniform mapping."""
    if not 1 <= student_layers <= teacher_layers:
        raise InputError(f"--text-layers {student_layers}; expected 1..{teacher_layers} (the teacher's layers)")
    return [round((k + 1) * teacher_layers / student_layers) for k in range(student_layers)]


def pick_layers(teacher: BertEncoder, student_layers: int) -> BertEncoder:
    """A copy of the teacher's encoder keeping only the mapped layers."""
    picked = layer_map(len(teacher.layers), student_layers)
    student = copy.deepcopy(teacher)
    student.layers = nn.ModuleList(student.layers[i - 1] for i in picked)
    student.sync_config()
    return student


def prune_widths(encoder: BertEncoder, shape: TextShape, max_len: int) -> dict[str, Any]:
    """Prune hidden channels, whole heads and FFN channels to `shape` with torch-pruning (L2 magnitude, grouped
    by dependency across embeddings, residual stream and LayerNorms); updates the encoder's config."""
    tp = require("torch_pruning", "pruning the text encoder", 'pip install "edge-msa[train]"')
    before = dict(encoder.config)
    hidden, ffn = encoder.hidden, encoder.layers[0].fc1.out_features
    heads = encoder.layers[0].heads
    if shape.hidden > hidden or shape.ffn > ffn or shape.heads > heads:
        raise InputError(f"text shape {shape} is wider than the teacher's encoder (hidden {hidden}, heads {heads}, "
                         f"ffn {ffn}); expected narrower")
    example = (torch.randint(1, 1000, (2, min(max_len, 16))), torch.ones(2, min(max_len, 16), dtype=torch.bool))
    layers = encoder.layers
    common = {"importance": tp.importance.GroupMagnitudeImportance(p=2),
              "forward_fn": lambda m, x: m(*x).sum(-1)}  # an output without the hidden axis: its width may change
    encoder.eval()
    # Pass 1, the residual stream (embeddings, every LayerNorm, o/fc2 outputs, q/k/v/fc1 inputs: one dependency
    # group): MetaPruner never selects this group for our encoder (it ranks it but prunes nothing), so it is pruned
    # through torch-pruning's dependency graph directly, lowest group L2 magnitude first.
    graph = tp.DependencyGraph().build_dependency(encoder, example_inputs=example, forward_fn=common["forward_fn"])
    group = graph.get_pruning_group(encoder.embed_norm, tp.prune_layernorm_out_channels, idxs=list(range(hidden)))
    weakest = common["importance"](group).argsort()[: hidden - shape.hidden]
    graph.get_pruning_group(encoder.embed_norm, tp.prune_layernorm_out_channels, idxs=weakest.tolist()).prune()
    # Pass 2: whole heads (q/k/v grouped, o follows) and FFN channels; the residual stream is fixed now (o and fc2
    # outputs ignored). In local mode torch-pruning removes heads only in a scope with a channel ratio > 0.
    head_ratio = 1 - shape.heads / heads
    tp.pruner.MetaPruner(encoder, example, pruning_ratio=head_ratio, **common,
                         ignored_layers=[lin for layer in layers for lin in (layer.o, layer.fc2)],
                         pruning_ratio_dict={layer.fc1: 1 - shape.ffn / ffn for layer in layers},
                         num_heads={lin: layer.heads for layer in layers for lin in (layer.q, layer.k, layer.v)},
                         prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=head_ratio).step()
    after = encoder.sync_config()
    return {"before": before, "after": after}


def token_counts(id_rows: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    counts = np.zeros(vocab_size, dtype=np.int64)
    for row in id_rows:
        np.add.at(counts, np.asarray(row, dtype=np.int64), 1)
    return counts


@torch.no_grad()
def prune_vocabulary(encoder: BertEncoder, reference: torch.Tensor, counts: np.ndarray, specials: Sequence[int],
                     shape: TextShape) -> dict:
    """Keep the rows of tokens seen >= min_count times (+ `specials`), map every other token to its nearest kept
    token by cosine of `reference` (the teacher's full embedding, (vocab, H_teacher)), factorise the kept rows
    to rank r. Replaces the encoder's embedding in place."""
    vocab = counts.shape[0]
    kept = np.union1d(np.flatnonzero(counts >= shape.min_count), np.asarray(specials, dtype=np.int64))
    kept_t = torch.from_numpy(kept)
    ref = F.normalize(reference.float(), dim=-1)  # (V, Ht)
    rows = torch.empty(vocab, dtype=torch.int64)
    for start in range(0, vocab, 4096):  # nearest kept token, chunked: (4096, Ht) @ (Ht, K)
        rows[start:start + 4096] = (ref[start:start + 4096] @ ref[kept_t].T).argmax(dim=1)
    rows[kept_t] = torch.arange(len(kept))  # a kept token maps to itself
    table = encoder.word.weight[kept_t]  # (K, H)
    rank = min(shape.embed_rank, table.shape[1]) if shape.embed_rank else 0
    encoder.word = nn.Embedding(len(kept), rank or table.shape[1])
    if rank:
        u, s, vh = torch.linalg.svd(table, full_matrices=False)
        encoder.word.weight.copy_(u[:, :rank] * s[:rank])
        encoder.word_proj = nn.Linear(rank, table.shape[1], bias=False)
        encoder.word_proj.weight.copy_(vh[:rank].T)  # (H, r)
    else:
        encoder.word.weight.copy_(table)
    encoder.register_buffer("token_rows", rows)
    encoder.sync_config()
    mapped = int(vocab - len(kept))
    return {"vocab": vocab, "kept": int(len(kept)), "mapped_to_nearest": mapped, "rank": rank,
            "policy": f"tokens seen >= {shape.min_count}x in the transfer texts (+ specials) keep their row; the "
                      "other tokenizer ids use the kept token with the most similar teacher embedding (cosine)"}


class LayerwiseKD(nn.Module):
    """Student encoder + one learned projection per imitated layer (student width -> teacher width)."""

    def __init__(self, student: BertEncoder, teacher_hidden: int) -> None:
        super().__init__()
        self.student = student
        self.proj = nn.ModuleList(nn.Linear(student.hidden, teacher_hidden) for _ in range(len(student.layers) + 1))

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
        """Mean over imitated layers (embeddings + each student layer) of the MSE on valid tokens."""
        states = self.student(ids, mask, all_layers=True)
        valid = mask.unsqueeze(-1).float()  # (B, L, 1)
        n = valid.sum() * targets[0].shape[-1]
        return sum(((p(s) - t) ** 2 * valid).sum() / n for p, s, t in zip(self.proj, states, targets)) / len(states)


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows -> (B, W) int64 ids zero-padded and the (B, W) bool mask."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    for j, r in enumerate(rows):
        ids[j, :len(r)] = torch.tensor(r)
    return ids, ids != 0


@torch.no_grad()
def teacher_layer_states(teacher: BertEncoder, id_rows: list[list[int]], layers: list[int], progress: bool,
                         batch_size: int = 64) -> list[torch.Tensor]:
    """Per text, the teacher's states at `layers` as one (L_i, len(layers), H) float16 tensor, computed once (the
    teacher's forward pass is most of a KD epoch's cost; float16 halves the memory)."""
    from tqdm.auto import tqdm

    teacher.eval()
    order = np.argsort([len(r) for r in id_rows], kind="stable")  # similar lengths per batch: little padding
    out: list[torch.Tensor | None] = [None] * len(id_rows)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="teacher states for text KD", leave=False, disable=not progress):
        rows = order[start:start + batch_size]
        ids, mask = _padded([id_rows[i] for i in rows])
        states = torch.stack([teacher(ids, mask, all_layers=True)[k] for k in layers], dim=2).half()  # (B, W, P, H)
        for j, i in enumerate(rows):
            out[i] = states[j, :len(id_rows[i])].clone()
    return out


def distill_layers(student: BertEncoder, teacher: BertEncoder, id_rows: list[list[int]], epochs: int, lr: float,
                   batch_size: int, seed: int, progress: bool, max_minutes: float | None = None) -> dict:
    """Train `student` to reproduce the teacher's hidden states at the mapped layers (label-free)."""
    from tqdm.auto import tqdm

    picked = [0, *layer_map(len(teacher.layers), len(student.layers))]  # 0 = embeddings
    start = time.perf_counter()
    targets = teacher_layer_states(teacher, id_rows, picked, progress)
    kd = LayerwiseKD(student, teacher.hidden)
    opt = torch.optim.AdamW(kd.parameters(), lr=lr, weight_decay=0.01)
    n_batches = -(-len(id_rows) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(epochs * n_batches, 1), pct_start=0.1)
    rng, history = np.random.default_rng(seed), []
    for epoch in range(epochs):
        kd.train()
        total, count = 0.0, 0
        order = rng.permutation(len(id_rows))
        bar = tqdm(range(0, len(order), batch_size), leave=False, desc=f"text KD epoch {epoch + 1}/{epochs}",
                   disable=not progress)
        for b in bar:
            rows = order[b:b + batch_size]
            ids, mask = _padded([id_rows[i] for i in rows])
            t = torch.nn.utils.rnn.pad_sequence([targets[i] for i in rows], batch_first=True).float()  # (B, W, P, H)
            loss = kd.loss(ids, mask, [t[:, :, k] for k in range(len(picked))])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(kd.parameters(), 1.0)
            opt.step()
            sched.step()
            total, count = total + loss.item(), count + 1
            bar.set_postfix(mse=f"{total / count:.4f}")
        history.append({"epoch": epoch, "mse": total / max(count, 1)})
        if max_minutes and (time.perf_counter() - start) / 60 > max_minutes:
            break
    student.eval()
    return {"epochs_run": len(history), "history": history, "teacher_layers": picked,
            "seconds": round(time.perf_counter() - start, 1)}


def transfer_texts(splits, transfer: str | None, tokenizer_path, max_len: int, progress: bool) -> dict[str, Any]:
    """Transcripts the student's text encoder learns from (label-free): the training split's own texts plus, if
    `transfer` names an MMSA label.csv (e.g. MOSEI), that file's TRAINING fold (never its valid/test folds)."""
    from edge_msa.data import load_dataset
    from edge_msa.features.text import TokenIds

    front = TokenIds(tokenizer_path, max_len=max_len)
    texts = [str(t) for t in splits.train.texts]
    sources = {splits.name: len(texts)}
    if transfer:
        extra = load_dataset(transfer, fmt="mmsa-label-csv", progress=progress, text_encoder=front).train
        texts += [str(t) for t in extra.texts]
        sources[f"{transfer} (train fold)"] = len(extra)
    return {"ids": front.tokenize(texts), "sources": sources, "specials": front.special_ids}


def student_text_encoder(teacher: BertEncoder, id_rows: list[list[int]], specials: Sequence[int], shape: TextShape,
                         max_len: int,
                         kd_epochs: int, kd_lr: float, seed: int, progress: bool,
                         max_minutes: float | None = None) -> tuple[BertEncoder, dict[str, Any]]:
    """pick layers -> prune widths -> prune + factorise the vocabulary -> layer-wise KD (kd_epochs 0: none)."""
    torch.manual_seed(seed)
    params_before = sum(p.numel() for p in teacher.parameters())
    student = pick_layers(teacher, shape.layers)
    pruning = prune_widths(student, shape, max_len)
    vocab = prune_vocabulary(student, teacher.word.weight, token_counts(id_rows, teacher.config["vocab_size"]),
                             specials, shape)
    kd = (distill_layers(student, teacher, id_rows, kd_epochs, kd_lr, 32, seed, progress, max_minutes)
          if kd_epochs > 0 else {"epochs_run": 0, "note": "no layer-wise distillation"})
    info = {"layers_from_teacher": layer_map(len(teacher.layers), shape.layers), "pruning": pruning,
            "vocabulary": vocab, "layerwise_kd": kd, "transfer_texts": len(id_rows),
            "params": {"teacher_encoder": params_before, "student_encoder": sum(p.numel() for p in student.parameters())},
            "tool": "torch-pruning (DependencyGraph for hidden channels, MetaPruner for heads and FFN), "
                    "GroupMagnitudeImportance(p=2)"}
    return student, info
