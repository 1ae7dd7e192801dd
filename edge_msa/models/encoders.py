"""Per-modality sequence encoders shared by the teachers.

Every encoder takes (B, L, d) features with a (B, L) bool mask for ANY L >= 1 (MOSI-U audio/video are
single vectors, text a token sequence; word-aligned data has long sequences in all three) and an
all-False row (modality missing) without NaN. Inputs are standardised with per-feature statistics of
the training split (buffers, so checkpoints carry them): the declare-lab openSMILE features span
very different scales (|x| up to ~400).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..errors import InputError, given
from .layers import SinusoidalPosition, TransformerLayer, presence, safe_mask

ENCODER_KINDS = ("lstm", "transformer", "linear")


class InputNorm(nn.Module):
    """(x - mean) / std per feature, clamped to +-clip; identity until `fit` is called."""

    mean: torch.Tensor  # buffers, declared for the type checker (nn.Module's attribute lookup types them loosely)
    std: torch.Tensor

    def __init__(self, dim: int, modality: str, clip: float = 10.0) -> None:
        super().__init__()
        self.modality = modality
        self.clip = clip
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Statistics over the valid steps of x (N, L, d)."""
        steps = x[mask]  # (S, d)
        if steps.shape[0] > 1:
            self.mean.copy_(steps.mean(dim=0))
            self.std.copy_(steps.std(dim=0).clamp_min(1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-self.clip, self.clip)  # (B, L, d)


def fit_input_norms(model: nn.Module, features: Mapping[str, np.ndarray], lengths: Mapping[str, np.ndarray]) -> None:
    """Set every InputNorm of `model` from numpy training arrays features[m] (N, L, d), lengths[m] (N,).

    A norm whose width differs from the data's features sits behind a text encoder inside the model (the data
    holds token ids): it stays the identity, the encoder's states are layer-normalised already."""
    for module in model.modules():
        if isinstance(module, InputNorm) and features[module.modality].shape[-1] == module.mean.numel():
            x = torch.from_numpy(features[module.modality])  # (N, L, d)
            n = torch.from_numpy(lengths[module.modality])  # (N,)
            module.fit(x, torch.arange(x.shape[1])[None, :] < n[:, None])


class SequenceEncoder(nn.Module):
    """InputNorm -> input dropout -> {BiLSTM | Linear + positions + Transformer layers | Linear} -> (B, L, hidden).

    Steps outside the mask are zero in the output. `in_dropout` (default: dropout) regularises the input
    features; the teachers set it high for audio/video, whose declare-lab features are optimistic on the
    declare train split (their extractors were trained on it) and weak on test.
    """

    def __init__(self, modality: str, in_dim: int, hidden: int, kind: str = "lstm", layers: int = 1,
                 heads: int = 4, dropout: float = 0.1, in_dropout: float | None = None) -> None:
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise InputError(f"encoder kind '{kind}' is unknown; expected one of {', '.join(ENCODER_KINDS)}")
        if kind == "lstm" and hidden % 2:  # was a ValueError, which the CLI (loading a checkpoint) shows as a traceback
            raise InputError(f"{given('hidden', hidden)} is odd; expected an even width (a BiLSTM gives each of "
                             "its directions half)")
        self.kind = kind
        self.norm = InputNorm(in_dim, modality)
        self.drop = nn.Dropout(dropout if in_dropout is None else in_dropout)  # on the input features
        if kind == "lstm":
            self.rnn = nn.LSTM(in_dim, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True,
                               dropout=dropout if layers > 1 else 0.0)
        else:
            self.proj = nn.Linear(in_dim, hidden)
            self.pos = SinusoidalPosition(hidden)
            n_layers = layers if kind == "transformer" else 0
            self.layers = nn.ModuleList(TransformerLayer(hidden, heads, 2 * hidden, dropout) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.norm(x))  # (B, L, d)
        if self.kind == "lstm":
            lengths = mask.sum(dim=1).clamp_min(1).cpu()  # (B,)
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])  # (B, L, H)
        else:
            h = self.proj(x)  # (B, L, H)
            if self.layers:
                h = self.pos(h)
            for layer in self.layers:
                h = layer(h, mask)
        return self.out_norm(h) * mask.unsqueeze(-1).to(h.dtype)  # (B, L, H)


class AttentionPool(nn.Module):
    """Learned attention pooling over valid steps: (B, L, H) -> (B, H); zero for a missing modality."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(h).squeeze(-1).masked_fill(~safe_mask(mask), float("-inf"))  # (B, L)
        weights = torch.softmax(logits, dim=-1) * presence(mask)  # (B, L); a missing modality -> 0
        return (weights.unsqueeze(-1) * h).sum(dim=1)  # (B, H)


def last_valid(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state at the last valid step of each row: (B, L, H) -> (B, H) (step 0 for an empty row)."""
    idx = (mask.sum(dim=1) - 1).clamp_min(0)  # (B,)
    return h[torch.arange(h.shape[0]), idx]


def bound_score(score: torch.Tensor, clip: float) -> torch.Tensor:
    """clip * tanh(score / clip): keeps the score inside the label range [-clip, clip] (near-identity for small
    scores) so the L1 loss stops pushing extreme predictions; clip <= 0 leaves the score linear."""
    return clip * torch.tanh(score / clip) if clip > 0 else score  # (B,)


def drop_modalities(masks: dict[str, torch.Tensor], p: float | Mapping[str, float],
                    training: bool) -> dict[str, torch.Tensor]:
    """Modality dropout: in training, hide a modality of a sample with probability p (one p for audio and
    video, or a {modality: p} mapping), so the model learns to predict with it missing (masks all False,
    as for truly missing data)."""
    probs = dict(p) if isinstance(p, Mapping) else {"audio": p, "video": p}
    if not training or all(q <= 0 for q in probs.values()):
        return masks
    out = dict(masks)
    for m, q in probs.items():
        keep = torch.rand(masks[m].shape[0], 1, device=masks[m].device) >= q  # (B, 1)
        out[m] = masks[m] & keep
    return out
