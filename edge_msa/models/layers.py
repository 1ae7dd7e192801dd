"""Blocks shared by every architecture. Attention is q/k/v/o Linear + scaled_dot_product_attention
(not nn.MultiheadAttention) so torch-pruning can prune heads and ONNX export stays simple."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, given


def safe_mask(mask: torch.Tensor) -> torch.Tensor:
    """A key mask with at least one True per row, so attention over a missing modality gives no NaN.

    The caller zeroes missing modalities through their presence flag afterwards.
    """
    empty = ~mask.any(dim=-1, keepdim=True)  # (B, 1)
    first = torch.zeros_like(mask)
    first[..., 0] = True
    return mask | (empty & first)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid steps: x (B, L, D), mask (B, L) bool -> (B, D); zero for an all-masked row."""
    w = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


def presence(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) bool mask -> (B, 1) float flag: 1 where the modality has any valid step."""
    return mask.any(dim=-1, keepdim=True).to(torch.float32)


def head_width(dim: int, heads: int) -> int:
    """Each head's width when `heads` share width `dim`, or one line when they do not divide it: dim // heads rounded
    down built a narrower attention without a word (fd_cmdie's hidden 16 with 3 heads ran at width 15)."""
    if dim % heads:
        raise InputError(f"{given('heads', heads)} does not divide the attention width {dim}; expected a head count "
                         "that divides the model's width")
    return dim // heads


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections; `num_heads`/`head_dim` are plain ints
    that compress updates after head pruning."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, kv_dim: int | None = None,
                 head_dim: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or head_width(dim, num_heads)
        inner = self.num_heads * self.head_dim
        kv_dim = kv_dim or dim
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(kv_dim, inner)
        self.v = nn.Linear(kv_dim, inner)
        self.o = nn.Linear(inner, dim)
        self.dropout = dropout

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, lq, _ = query.shape
        lk = key.shape[1]
        q = self.q(query).view(b, lq, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Lq, Dh)
        k = self.k(key).view(b, lk, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Lk, Dh)
        v = self.v(value).view(b, lk, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, Lk, Dh)
        attn_mask = None
        if key_mask is not None:
            attn_mask = safe_mask(key_mask)[:, None, None, :]  # (B, 1, 1, Lk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, lq, self.num_heads * self.head_dim)  # (B, Lq, H*Dh)
        return self.o(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Post-LN Transformer layer: (cross-)attention + FFN, each with residual and LayerNorm."""

    def __init__(self, dim: int, num_heads: int, ffn: int, dropout: float = 0.1,
                 head_dim: int | None = None) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout, head_dim=head_dim)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if context is None else context
        kv_mask = mask if context is None else context_mask
        x = self.norm1(x + self.drop(self.attn(x, kv, kv, kv_mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class SinusoidalPosition(nn.Module):
    """Fixed sinusoidal positions added to a (B, L, D) sequence (no parameters, any length).

    With `mask`, a step's position counts the valid steps before it, as if the padding were removed. A sequence
    joined from padded segments (fd_cmdie's text | audio | video) needs that: counted by index, the audio and video
    positions would move with the padding of the text, i.e. with the longest transcript in the batch, and a score
    would depend on its batch-mates."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            pos = torch.arange(x.shape[1], dtype=x.dtype, device=x.device).unsqueeze(1)  # (L, 1)
        else:
            pos = (torch.cumsum(mask.to(x.dtype), dim=1) - 1).clamp_min(0).unsqueeze(-1)  # (B, L, 1)
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, dtype=x.dtype, device=x.device) * (-math.log(10000.0) / max(half, 1)))
        angles = pos * freq  # (L, half) or (B, L, half)
        pe = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if pe.shape[-1] < self.dim:
            pe = F.pad(pe, (0, self.dim - pe.shape[-1]))
        return x + pe
