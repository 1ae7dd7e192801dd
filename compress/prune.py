"""Structural pruning of the student with torch-pruning: whole attention heads (q/k/v grouped, o follows)
and FFN / encoder / head hidden widths. The model width D (the residual stream, shared by every part
interface) is kept, so exported part signatures do not change.

After pruning, the new widths are written back into `config_params`, so the checkpoint rebuilds from
config + state_dict alone.
"""
from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from edge_msa.errors import TRAIN_FIX, InputError, given, require
from edge_msa.models.layers import TransformerLayer
from edge_msa.models.student import FrameEncoder, Student, StudentTextEncoder
from edge_msa.spec import SKIPPABLE


def _blocks(model: Student) -> dict[str, TransformerLayer]:
    """model.blocks with its layers' type: to mypy an nn.ModuleDict holds plain nn.Modules."""
    return cast("dict[str, TransformerLayer]", dict(model.blocks.items()))


def _frame_encoder(model: Student, modality: str) -> FrameEncoder:
    """The audio or video encoder with its type (nn.ModuleDict again)."""
    return cast(FrameEncoder, model.encoders[modality])


def widths(model: Student) -> dict[str, Any]:
    """The prunable widths as they are in the modules now."""
    return {
        "blocks": {name: {"heads": b.attn.num_heads, "head_dim": b.attn.head_dim, "ffn": b.ffn.fc1.out_features}
                   for name, b in _blocks(model).items()},
        "enc_hidden": {m: _frame_encoder(model, m).fc1.out_features for m in SKIPPABLE},
        "head_hidden": model.head_fc1.out_features,
    }


def check_ratio(model: Student, ratio: float) -> None:
    """One line when `ratio` would remove every head of a block or every channel of a width: torch-pruning then
    leaves that group whole without a word (4 heads at 0.8 stayed 4; encoder widths of 64 at 0.99 stayed 64), so the
    student came out larger than the ratio and the report said. MetaPruner (local pruning, as prune_student runs it)
    removes ceil(ratio x heads) heads of a block and keeps int(width x (1 - ratio)) channels of a width."""
    if ratio <= 0:
        return
    now = widths(model)
    heads = min(block["heads"] for block in now["blocks"].values())
    channels = min([block["ffn"] for block in now["blocks"].values()] + [*now["enc_hidden"].values(),
                                                                          now["head_hidden"]])
    if math.ceil(ratio * heads) < heads and int(channels * (1 - ratio)) >= 1:
        return
    what = (f"all {heads} heads of a block" if math.ceil(ratio * heads) >= heads
            else f"all {channels} channels of a width")
    top = math.floor((1 - 1 / min(heads, channels)) * 100) / 100  # keeps one head and one channel of each
    raise InputError(f"{given('prune_ratio', ratio)} would remove {what}, which torch-pruning then leaves unpruned; "
                     f"expected a ratio <= {top} for this student")


def prune_student(model: Student, example: dict[str, torch.Tensor], ratio: float) -> dict[str, Any]:
    """Prune `ratio` of heads and hidden channels in place (magnitude importance, grouped by dependency);
    return {"before": widths, "after": widths}."""
    tp = require("torch_pruning", "structural pruning in compress", TRAIN_FIX)
    before = widths(model)
    if ratio <= 0:
        return {"before": before, "after": before}
    model.eval()
    # Outputs of width D feed the residual stream / part interfaces: keep them (and the gate, trained later).
    ignored: list[nn.Module] = [model.gate, cast(StudentTextEncoder, model.encoders["text"]).proj, model.head_fc2,
                                *(_frame_encoder(model, m).fc2 for m in SKIPPABLE)]
    num_heads: dict[nn.Module, int] = {}
    for block in _blocks(model).values():
        ignored += [block.attn.o, block.ffn.fc2]
        num_heads.update({lin: block.attn.num_heads for lin in (block.attn.q, block.attn.k, block.attn.v)})
    pruner = tp.pruner.MetaPruner(
        model, example, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
        ignored_layers=ignored, num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
        head_pruning_ratio=ratio, forward_fn=lambda m, batch: m(batch)["score"],
        unwrapped_parameters=[(model.modality_embed, 1)])
    pruner.step()
    for block in _blocks(model).values():
        block.attn.num_heads = block.attn.q.out_features // block.attn.head_dim  # whole heads were removed
    after = widths(model)
    model.config_params.update({"blocks": after["blocks"], "enc_hidden": after["enc_hidden"],
                                "head_hidden": after["head_hidden"]})
    return {"before": before, "after": after}
