"""MulT baseline (Tsai et al., ACL 2019): Multimodal Transformer for unaligned sequences.

encode: per-modality projection (MulT's kernel-1 temporal conv) + sinusoidal positions. fuse: for each
target modality, two cross-modal transformers (the other modalities as keys/values) whose outputs are
concatenated and passed through a self-attention memory transformer; the last valid state of each of
the three targets is concatenated. head: residual MLP -> score. A missing modality (all-masked) is
zeroed as a target and seen as a single padded step as a source.
"""
from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..spec import MODALITIES, FeatureSpec
from .base import Batch, MSAModel, check_probabilities
from .encoders import InputNorm, drop_modalities, last_valid
from .layers import SinusoidalPosition, TransformerLayer, presence
from .registry import register


class _Embed(nn.Module):
    def __init__(self, modality: str, in_dim: int, dim: int, dropout: float, in_dropout: float) -> None:
        super().__init__()
        self.norm = InputNorm(in_dim, modality)
        self.in_drop = nn.Dropout(in_dropout)
        self.proj = nn.Linear(in_dim, dim)
        self.pos = SinusoidalPosition(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.pos(self.proj(self.in_drop(self.norm(x)))))  # (B, L, D)
        return h * mask.unsqueeze(-1).to(h.dtype)


class MulT(MSAModel):
    """`modality_dropout` / `av_input_dropout` are high because the declare-lab audio/video features are
    optimistic on the declare train split (see encoders.SequenceEncoder)."""

    COUNTS = {"dim": 1, "heads": 1, "cross_layers": 0, "memory_layers": 0}  # 0 layers: that transformer skipped

    def __init__(self, spec: FeatureSpec, dim: int = 32, heads: int = 4, cross_layers: int = 2,
                 memory_layers: int = 1, dropout: float = 0.2, modality_dropout: float = 0.7,
                 av_input_dropout: float = 0.7) -> None:
        super().__init__()
        check_probabilities({"dropout": dropout, "modality_dropout": modality_dropout,
                             "av_input_dropout": av_input_dropout})  # dropout is the text input's rate too
        self.config_params: dict[str, Any] = dict(dim=dim, heads=heads, cross_layers=cross_layers,
                                                  memory_layers=memory_layers, dropout=dropout,
                                                  modality_dropout=modality_dropout, av_input_dropout=av_input_dropout)
        self.spec = spec
        in_drop = {"text": dropout, "audio": av_input_dropout, "video": av_input_dropout}
        self.embed = nn.ModuleDict({m: _Embed(m, spec.dim(m), dim, dropout, in_drop[m]) for m in MODALITIES})
        self.cross = nn.ModuleDict({
            f"{src}_to_{tgt}": nn.ModuleList(TransformerLayer(dim, heads, 4 * dim, dropout)
                                             for _ in range(cross_layers))
            for tgt in MODALITIES for src in MODALITIES if src != tgt})
        self.memory = nn.ModuleDict({m: nn.ModuleList(TransformerLayer(2 * dim, heads, 8 * dim, dropout)
                                                      for _ in range(memory_layers)) for m in MODALITIES})
        width = 6 * dim
        self.proj1, self.proj2 = nn.Linear(width, width), nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, 1)

    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.embed[modality](x, mask)  # (B, L, D)

    def fuse(self, h: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        states = []
        for tgt in MODALITIES:
            streams = []
            for src in MODALITIES:
                if src == tgt:
                    continue
                z = h[tgt]
                for layer in cast(nn.ModuleList, self.cross[f"{src}_to_{tgt}"]):  # ModuleDict is not generic
                    z = layer(z, masks[tgt], context=h[src], context_mask=masks[src])
                streams.append(z)
            z = torch.cat(streams, dim=-1)  # (B, L_tgt, 2D)
            for layer in cast(nn.ModuleList, self.memory[tgt]):
                z = layer(z, masks[tgt])
            states.append(last_valid(z, masks[tgt]) * presence(masks[tgt]))  # (B, 2D)
        return torch.cat(states, dim=-1)  # (B, 6D)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.proj2(self.drop(torch.relu(self.proj1(z))))  # (B, 6D)
        return self.out(z).squeeze(-1)  # (B,)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        masks = drop_modalities({m: batch[f"{m}_mask"] for m in MODALITIES}, self.config_params["modality_dropout"],
                                self.training)
        h = {m: self.encode(m, batch[m], masks[m]) for m in MODALITIES}
        z = self.fuse(h, masks)
        return {"score": self.head(z), "z": z}


@register("mult")
def mult(spec: FeatureSpec, **params: Any) -> MulT:
    return MulT(spec, **params)


@register("mult_tiny")
def mult_tiny(spec: FeatureSpec, **params: Any) -> MulT:
    return MulT(spec, **{"dim": 8, "heads": 2, "cross_layers": 1, "memory_layers": 1, **params})
