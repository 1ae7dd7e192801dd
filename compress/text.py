"""The student's text encoder, made from the teacher's fine-tuned one:
pick layers -> prune heads / FFN / hidden with torch-pruning -> prune + factorise the vocabulary embedding ->
distil layer-wise (hidden states, TinyBERT-style; optionally the last layer's self-attention relations,
MiniLMv2-style) on a transfer set of transcripts.

Vocabulary policy: the student keeps the embedding rows of the tokens that occur in the transfer set's training
texts (plus the special tokens); the tokenizer stays the teacher's, and every other token id is mapped (a
(vocab,) table inside the graph) to the kept token whose teacher embedding is most similar (cosine), so an unseen
word still gets a nearby meaning instead of [UNK]. The kept rows are then factorised by truncated SVD,
(rows, H) ~ (rows, r) @ (r, H).
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_msa.data.assemble import feature_set, pad_sequences
from edge_msa.errors import InputError, given, option_name, plural, require, warn
from edge_msa.models.base import MSAModel
from edge_msa.models.text_bert import BertEncoder, BertLayer, key_padding_bias
from edge_msa.models.with_text import token_ids
from edge_msa.training import inference_threads, modality_tensors, torch_threads, train_epoch

if TYPE_CHECKING:
    from edge_msa.data.base import DatasetSplits, FeatureSet
    from edge_msa.models.with_text import WithTextEncoder


@dataclass(frozen=True)
class TextShape:
    """Target shape of the student's text encoder. The defaults live in one place, CompressOptions (whose
    `text_shape` fills this); min_count and shared default to what changes nothing."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    embed_rank: int
    min_count: int = 1  # a token is kept when it occurs at least this often in the transfer texts
    shared: bool = False  # ALBERT-style: one layer (the first mapped) run `layers` times


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (1-based output index) each student layer copies and imitates: evenly spaced, ending at the
    last layer (6 -> 2: [3, 6]), as TinyBERT's uniform mapping."""
    if not 1 <= student_layers <= teacher_layers:
        raise InputError(f"{given('text_layers', student_layers)}; expected 1..{teacher_layers} (the teacher's layers)")
    return [round((k + 1) * teacher_layers / student_layers) for k in range(student_layers)]


def check_shape(teacher: BertEncoder, shape: TextShape) -> None:
    """One line when `shape` cannot be cut from the teacher's encoder (more layers than it has, or a width above
    its): called before the transfer texts are read, so a typo in a text option costs no work."""
    layer_map(len(teacher.layers), shape.layers)
    _check_widths(teacher, shape)


def _check_widths(encoder: BertEncoder, shape: TextShape) -> tuple[int, int, int]:
    """The encoder's (hidden, heads, ffn), or one line when `shape` is wider than they are."""
    first = cast(BertLayer, encoder.layers[0])  # to mypy an nn.ModuleList holds plain nn.Modules
    hidden, heads, ffn = encoder.hidden, first.heads, first.fc1.out_features
    if shape.hidden > hidden or shape.ffn > ffn or shape.heads > heads:
        asked = ", ".join(given(f"text_{name}", getattr(shape, name)) for name in ("hidden", "heads", "ffn"))
        raise InputError(f"{asked}: wider than the teacher's encoder (hidden {hidden}, heads {heads}, ffn {ffn}); "
                         "expected at most those")
    return hidden, heads, ffn


def pick_layers(teacher: BertEncoder, student_layers: int, shared: bool = False) -> BertEncoder:
    """A copy of the teacher's encoder keeping only the mapped layers; `shared`: only the first of them, to be run
    `student_layers` times (ALBERT; the first, so that the first pass starts as the teacher's does)."""
    picked = layer_map(len(teacher.layers), student_layers)[:1 if shared else None]
    student = copy.deepcopy(teacher)
    student.layers = nn.ModuleList(student.layers[i - 1] for i in picked)
    student.sync_config()
    return student


def prune_widths(encoder: BertEncoder, shape: TextShape, max_len: int) -> dict[str, Any]:
    """Prune hidden channels, whole heads and FFN channels to `shape` with torch-pruning (L2 magnitude, grouped
    by dependency across embeddings, residual stream and LayerNorms); updates the encoder's config."""
    tp = require("torch_pruning", "pruning the text encoder", 'pip install "edge-msa[train]"')
    before = dict(encoder.config)
    hidden, heads, ffn = _check_widths(encoder, shape)
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
    head_ratio = _ratio_keeping(heads, shape.heads)
    tp.pruner.MetaPruner(encoder, example, pruning_ratio=head_ratio, **common,
                         ignored_layers=[lin for layer in layers for lin in (layer.o, layer.fc2)],
                         pruning_ratio_dict={layer.fc1: _ratio_keeping(ffn, shape.ffn) for layer in layers},
                         num_heads={lin: layer.heads for layer in layers for lin in (layer.q, layer.k, layer.v)},
                         prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=head_ratio).step()
    after = encoder.sync_config()
    return {"before": before, "after": after}


def _ratio_keeping(total: int, keep: int) -> float:
    """The pruning ratio for which torch-pruning's MetaPruner keeps exactly `keep` of `total`: it removes
    ceil(ratio x heads) heads and keeps int(channels x (1 - ratio)) channels, so the ratio sits half a unit inside
    the count. 1 - keep / total landed a float hair off it: --text-heads 11 of 12 kept 10, --text-ffn 4 of 1536 kept
    3, and 1 kept all 1536 (torch-pruning does not empty a layer)."""
    return max(total - keep - 0.5, 0.0) / total


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
    if rank > len(kept):  # the SVD has no more components than rows: torch failed on a shape mismatch below
        raise InputError(f"{given('text_rank', rank)} is above the {len(kept)} embedding rows kept (tokens seen >= "
                         f"{shape.min_count}x in the transfer texts, plus the special tokens); expected a rank <= "
                         f"{len(kept)}, or more transfer texts ({option_name('transfer')})")
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


# MiniLMv2's relation heads: q, k and v are each re-split into this many heads (the same number for teacher and
# student, whatever their attention heads), so a student with fewer heads still gets one target per head. 32 gives
# the default student (256 wide) 8-dim relation heads, as MiniLMv2's 384-wide student of a BERT-base teacher had
# (48 relation heads); a width it does not divide uses the largest common divisor (relation_heads).
RELATION_HEADS = 32


def relation_heads(*widths: int) -> int:
    """Relation heads for q/k/v projections of these widths: RELATION_HEADS or the largest count dividing all."""
    return math.gcd(RELATION_HEADS, *widths)


def attention_relations(layer: BertLayer, x: torch.Tensor, mask: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """MiniLMv2's q-q, k-k and v-v self-attention relations of `layer` on its input `x` (B, L, H): each projection
    split into `heads` relation heads, scaled dot products, log-softmax over the valid keys: three (B, heads, L, L)."""
    b, n, _ = x.shape
    key_bias = key_padding_bias(mask)
    relations = []
    for project in (layer.q, layer.k, layer.v):
        z = project(x).view(b, n, heads, -1).transpose(1, 2)  # (B, heads, L, d)
        scores = z @ z.transpose(-1, -2) / math.sqrt(z.shape[-1]) + key_bias
        relations.append(F.log_softmax(scores, dim=-1))
    return relations


def relation_kl(teacher: list[torch.Tensor], student: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per valid query row, averaged over the three relations, relation heads and tokens."""
    queries = mask[:, None, :, None].float()  # (B, 1, L, 1)
    kl = sum(F.kl_div(s, t, log_target=True, reduction="none") for t, s in zip(teacher, student))  # (B, R, L, L)
    return (kl * queries).sum() / (queries.sum() * teacher[0].shape[1] * len(teacher))


class LayerwiseKD(nn.Module):
    """Student encoder + one learned projection per imitated layer (student width -> teacher width); given the
    teacher's last layer (frozen, not a parameter here), also MiniLMv2's relation KD on the student's last layer."""

    def __init__(self, student: BertEncoder, teacher_hidden: int, teacher_last: BertLayer | None = None,
                 relation_weight: float = 0.0) -> None:
        super().__init__()
        self.student = student
        self.proj = nn.ModuleList(nn.Linear(student.hidden, teacher_hidden) for _ in range(len(student.stack) + 1))
        self.relation_weight = relation_weight
        self._teacher_last = (teacher_last,)  # a tuple: neither trained nor saved with the student's projections
        if teacher_last is not None:
            self.heads = relation_heads(teacher_last.q.out_features, student.stack[-1].q.out_features)

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, targets: list[torch.Tensor],
             relation_input: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over imitated layers (embeddings + each student layer) of the MSE on valid tokens; plus
        relation_weight x relation_kl when the teacher's last layer and its input (`relation_input`) are given."""
        states = self.student(ids, mask, all_layers=True)
        valid = mask.unsqueeze(-1).float()  # (B, L, 1)
        n = valid.sum() * targets[0].shape[-1]
        hidden = sum(((p(s) - t) ** 2 * valid).sum() / n for p, s, t in zip(self.proj, states, targets)) / len(states)
        teacher_last = self._teacher_last[0]
        if teacher_last is None:
            return hidden
        assert relation_input is not None  # given with the teacher's last layer (distill_layers passes both)
        with torch.no_grad():
            target = attention_relations(teacher_last, relation_input, mask, self.heads)
        mine = attention_relations(self.student.stack[-1], states[-2], mask, self.heads)
        return hidden + self.relation_weight * relation_kl(target, mine, mask)


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows -> (B, W) int64 ids zero-padded and the (B, W) bool mask (the dataset padding, ids as floats)."""
    ids, mask = modality_tensors(*pad_sequences([np.asarray(r, dtype=np.float32)[:, None] for r in rows], dim=1))
    return token_ids(ids), mask


def _lengths(id_rows: list[list[int]]) -> np.ndarray:
    return np.array([len(r) for r in id_rows])


@torch.no_grad()
def teacher_layer_states(teacher: BertEncoder, id_rows: list[list[int]], layers: list[int], progress: bool,
                         batch_size: int = 64) -> list[torch.Tensor]:
    """Per text, the teacher's states at `layers` as one (L_i, len(layers), H) float16 tensor, computed once (the
    teacher's forward pass is most of a KD epoch's cost; float16 halves the memory), on every core
    (training.inference_threads)."""
    from tqdm.auto import tqdm

    teacher.eval()
    order = np.argsort(_lengths(id_rows), kind="stable")  # similar lengths per batch: little padding
    out: list[torch.Tensor | None] = [None] * len(id_rows)
    starts = range(0, len(order), batch_size)
    with torch_threads(inference_threads()):
        for start in tqdm(starts, desc="teacher states for text KD", leave=False, disable=not progress):
            rows = order[start:start + batch_size]
            ids, mask = _padded([id_rows[i] for i in rows])
            every_layer = teacher(ids, mask, all_layers=True)  # one forward pass for all picked layers
            states = torch.stack([every_layer[k] for k in layers], dim=2).half()  # (B, W, P, H)
            for j, i in enumerate(rows):
                out[i] = states[j, :len(id_rows[i])].clone()
    return cast("list[torch.Tensor]", out)  # every text is in `order`: no None is left


@dataclass(frozen=True)
class TextKD:
    """How the student's text encoder learns from the teacher's (CompressOptions fills it, and its defaults are the
    tuned ones; these equal them; epochs 0 = that step off)."""

    layer_epochs: int = 4  # TinyBERT step 1: hidden states of the mapped layers (label-free)
    layer_lr: float = 5e-4
    # MiniLMv2 relation KD on the last layer, added to step 1's loss with this weight; 0 = off (README ablation)
    relation_weight: float = 0.0
    score_epochs: int = 0  # TinyBERT step 2: the teacher's text-only score (prediction-layer KD); off by default
    score_lr: float = 1e-4  # encoder; the throw-away linear head learns 10x faster
    batch_size: int = 32
    seed: int = 0
    max_minutes: float | None = None  # per step

    @property
    def relations(self) -> bool:
        """Relation KD runs: it is part of the layer-wise step, so it needs that step too."""
        return self.layer_epochs > 0 and self.relation_weight > 0


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           group: int = 50) -> list[np.ndarray]:
    """Shuffled batches of rows of similar length (Hugging Face Trainer's `group_by_length` scheme: shuffle, sort
    each run of `group` batches by length, shuffle the batches). Random batches of the MOSEI transcripts (median 23
    of at most 50 tokens) were half padding, i.e. half of every KD step's compute; grouped ones are ~2 % padding."""
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    for start in range(0, len(order), batch_size * group):
        run = order[start:start + batch_size * group]
        run = run[np.argsort(-lengths[run], kind="stable")]
        batches += [run[b:b + batch_size] for b in range(0, len(run), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _train_epochs(params: list[dict], lengths: np.ndarray, batch_loss, epochs: int, kd: TextKD, desc: str,
                  progress: bool, after_epoch=None) -> list[dict]:
    """Both KD steps' epochs: AdamW over `params` groups, one-cycle schedule, length-grouped shuffled batches of row
    indices (`lengths`: tokens per row) fed to `batch_loss(rows) -> loss`, each step training.train_epoch's
    (gradients clipped to 1); `after_epoch()` adds to the epoch's record."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(params, weight_decay=0.01)
    steps = max(epochs * -(-len(lengths) // kd.batch_size), 1)
    # 10 % warm-up; torch's OneCycleLR divides by (warm-up steps - 1), zero for a 10-step run (a few dozen texts, a
    # few epochs), so such a run warms up for 2 steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in params], total_steps=steps,
                                                pct_start=0.1 if steps != 10 else 0.2)
    flat = [p for g in params for p in g["params"]]

    def step(rows: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        loss = batch_loss(rows)
        return loss, {"loss": loss.item()}

    rng, history, start = np.random.default_rng(kd.seed), [], time.perf_counter()
    for epoch in range(epochs):
        bar = tqdm(length_grouped_batches(lengths, kd.batch_size, rng), leave=False,
                   desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress)
        parts = train_epoch(bar, step, opt, sched, flat, grad_clip=1.0)
        history.append({"epoch": epoch, "loss": parts.get("loss", 0.0), **(after_epoch() if after_epoch else {})})
        if kd.max_minutes and (time.perf_counter() - start) / 60 > kd.max_minutes:
            break
    return history


def distill_layers(student: BertEncoder, teacher: BertEncoder, id_rows: list[list[int]], targets: list[torch.Tensor],
                   kd: TextKD, progress: bool) -> dict:
    """Train `student` to reproduce the teacher's hidden states (`targets`: per text (L_i, P, H), embeddings then
    each mapped layer, then, with relation KD, the input of the teacher's last layer) through one learned
    projection per imitated layer (label-free)."""
    start = time.perf_counter()
    relations = kd.relations
    model = LayerwiseKD(student, teacher.hidden, teacher.stack[-1] if relations else None, kd.relation_weight).train()
    imitated = len(student.stack) + 1

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        ids, mask = _padded([id_rows[i] for i in rows])
        t = torch.nn.utils.rnn.pad_sequence([targets[i] for i in rows], batch_first=True).float()  # (B, W, P, H)
        layers = list(t.unbind(dim=2))
        return model.loss(ids, mask, layers[:imitated], layers[imitated] if relations else None)

    name = "hidden states + attention relations" if relations else "hidden states"
    history = _train_epochs([{"params": list(model.parameters()), "lr": kd.layer_lr}], _lengths(id_rows), batch_loss,
                            kd.layer_epochs, kd, f"text KD ({name}) epoch", progress)
    student.eval()
    return {"epochs_run": len(history), "history": history, "seconds": round(time.perf_counter() - start, 1),
            **({"relation_weight": kd.relation_weight, "relation_heads": model.heads} if relations else {})}


@torch.no_grad()
def teacher_text_scores(fusion: MSAModel, last_states: list[torch.Tensor], batch_size: int = 256) -> np.ndarray:
    """The teacher's score of each transfer text with audio and video missing, from its cached last-layer states
    (only the fusion part runs: the encoder's pass is already paid for by the layer targets)."""
    from edge_msa.data.base import missing_modality
    from edge_msa.spec import MODALITIES

    fusion.eval()
    scores = []
    for start in range(0, len(last_states), batch_size):
        chunk = last_states[start:start + batch_size]
        states, mask = modality_tensors(*pad_sequences([c.float().numpy() for c in chunk]))
        batch = {"text": states, "text_mask": mask}
        for m, dim in zip(MODALITIES[1:], fusion.spec.dims[1:]):
            batch[m], batch[f"{m}_mask"] = modality_tensors(*missing_modality(len(chunk), dim))
        scores.append(fusion(batch)["score"])
    return torch.cat(scores).numpy()


def distill_scores(student: BertEncoder, id_rows: list[list[int]], targets: np.ndarray, valid: tuple[list, np.ndarray],
                   kd: TextKD, progress: bool) -> dict:
    """Prediction-layer KD: the student encoder + a linear head on its mean-pooled states (TextProbe) learns
    `targets` (L1); the head is thrown away. The epoch kept is the one with the lowest MAE on `valid` (the
    training dataset's validation texts and labels, text alone): an early-stopping point chosen on validation."""
    from edge_msa.models.with_text import TextProbe

    start = time.perf_counter()
    probe = TextProbe(student).train()
    target = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    best: dict[str, Any] = {"mae": float("inf"), "epochs": 0}

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        ids, mask = _padded([id_rows[i] for i in rows])
        return (probe({"text": ids, "text_mask": mask})["score"] - target[rows]).abs().mean()

    @torch.no_grad()
    def validate() -> dict:
        probe.eval()
        ids, mask = _padded(valid[0])
        mae = float(np.mean(np.abs(probe({"text": ids, "text_mask": mask})["score"].numpy() - valid[1])))
        if mae < best["mae"]:
            best.update(mae=mae, state=copy.deepcopy(student.state_dict()), epoch=best["epochs"])
        best["epochs"] += 1
        probe.train()
        return {"valid_mae_text_only": round(mae, 4)}

    groups = [{"params": list(student.parameters()), "lr": kd.score_lr},
              {"params": list(probe.out.parameters()), "lr": 10 * kd.score_lr}]
    history = _train_epochs(groups, _lengths(id_rows), batch_loss, kd.score_epochs, kd, "text KD (score) epoch",
                            progress, after_epoch=validate)
    student.load_state_dict(best["state"])
    student.eval()
    return {"epochs_run": len(history), "history": history, "kept_epoch": best["epoch"],
            "seconds": round(time.perf_counter() - start, 1)}


def _transcripts(fs: FeatureSet) -> list[str]:
    """The split's transcripts as strings."""
    assert fs.texts is not None  # a token-id model's data has them: its token ids are made from them
    return [str(t) for t in fs.texts]


def transfer_texts(splits: DatasetSplits, transfer: str | None, tokenizer_path: str | os.PathLike, max_len: int,
                   progress: bool) -> dict[str, Any]:
    """Transcripts the student's text encoder learns from: the training split's own texts (with their labels) plus,
    if `transfer` names an MMSA label.csv (e.g. MOSEI), that file's TRAINING fold (never its valid/test folds; its
    labels unused: NaN, the teacher labels them), less the videos of the data's valid and test splits
    (`outside_held_out`). The training dataset's validation texts come along for early stopping."""
    from edge_msa.data import load_dataset
    from edge_msa.features.text import TokenIds

    front = TokenIds(tokenizer_path, max_len=max_len)
    texts, labels = _transcripts(splits.train), [np.asarray(splits.train.labels, dtype=np.float32)]
    sources = {splits.name: len(texts)}
    if transfer:
        extra = outside_held_out(load_dataset(transfer, fmt="mmsa-label-csv", progress=progress, text_encoder=front,
                                              featurize=("train",)).split("train"), splits, transfer)
        texts += _transcripts(extra)
        labels.append(np.full(len(extra), np.nan, dtype=np.float32))
        sources[f"{transfer} (train fold)"] = len(extra)
    return {"ids": front.tokenize(texts), "labels": np.concatenate(labels), "sources": sources,
            "specials": front.special_ids,
            "valid": (front.tokenize(_transcripts(splits.valid)), np.asarray(splits.valid.labels))}


def outside_held_out(extra: FeatureSet, splits: DatasetSplits, transfer: str) -> FeatureSet:
    """The transfer rows whose video is in neither the valid nor the test split of `splits`, with a warning naming
    how many were left out. Why: a teacher trained on a cross-validation fold of that same label.csv (`train --cv-fold`)
    holds out rows of its training fold; as transfer texts they shaped the student's vocabulary and text encoder, and
    the fold's scores (`selection-gap`) were no longer on rows no choice had seen."""
    held_out = set(splits.valid.videos().tolist()) | set(splits.test.videos().tolist())
    keep = np.array([video not in held_out for video in extra.videos().tolist()], dtype=bool)
    if keep.all():
        return extra
    warn(f"{given('transfer', transfer)}: {plural(int((~keep).sum()), 'training-fold row')} left out, their videos "
         f"being in the valid or test split of {splits.info.get('path') or splits.name} (the same file?)")
    return feature_set(extra.features, extra.lengths, extra.labels, extra.ids, extra.texts, np.flatnonzero(keep),
                       extra.groups)


def score_targets(teacher_scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """What the student learns per text: the teacher's text-only score, halfway to the label where there is one."""
    return np.where(np.isnan(labels), teacher_scores, 0.5 * (teacher_scores + np.nan_to_num(labels)))


def student_text_encoder(teacher: WithTextEncoder, texts: dict[str, Any], shape: TextShape, max_len: int, kd: TextKD,
                         progress: bool) -> tuple[BertEncoder, dict[str, Any]]:
    """pick layers -> prune widths -> prune + factorise the vocabulary -> layer-wise KD -> score KD, from the
    teacher model (a WithTextEncoder) and `texts` (transfer_texts)."""
    torch.manual_seed(kd.seed)
    bert, id_rows = teacher.bert, texts["ids"]
    student = pick_layers(bert, shape.layers, shape.shared)
    pruning = prune_widths(student, shape, max_len)
    if shape.shared:  # only now: torch-pruning traces each module once
        student.config["repeats"] = shape.layers
    vocab = prune_vocabulary(student, bert.word.weight, token_counts(id_rows, int(bert.config["vocab_size"])),
                             texts["specials"], shape)
    info: dict[str, Any] = {
        "layers_from_teacher": layer_map(len(bert.layers), shape.layers), "pruning": pruning,
        "vocabulary": vocab, "transfer_texts": len(id_rows), "shared_layers": shape.shared,
        "layerwise_kd": {"epochs_run": 0, "note": "no layer-wise distillation"},
        "score_kd": {"epochs_run": 0, "note": "no score distillation"},
        "tool": "torch-pruning (DependencyGraph for hidden channels, MetaPruner for heads and FFN), "
                "GroupMagnitudeImportance(p=2)"}
    if kd.layer_epochs or kd.score_epochs:
        # 0 = embeddings; the last mapped layer is the teacher's last (all score KD needs); relation KD also needs
        # the input of the teacher's last layer, appended after them
        last = info["layers_from_teacher"][-1]
        picked = [0, *info["layers_from_teacher"]] if kd.layer_epochs else [last]
        relation_input = [len(bert.stack) - 1] if kd.relations else []
        start = time.perf_counter()
        targets = teacher_layer_states(bert, id_rows, picked + relation_input, progress)
        info["teacher_states_seconds"] = round(time.perf_counter() - start, 1)
        if kd.layer_epochs:
            info["layerwise_kd"] = {**distill_layers(student, bert, id_rows, targets, kd, progress),
                                    "teacher_layers": picked, "relation_input_layer": relation_input or None}
        if kd.score_epochs:
            scores = teacher_text_scores(teacher.fusion, [t[:, picked.index(last)] for t in targets])
            info["score_kd"] = distill_scores(student, id_rows, score_targets(scores, texts["labels"]),
                                              texts["valid"], kd, progress)
    info["params"] = {"teacher_encoder": sum(p.numel() for p in bert.parameters()),
                      "student_encoder": sum(p.numel() for p in student.parameters())}
    return student, info
