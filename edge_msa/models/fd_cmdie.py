"""FD-CMDIE (seed 001): feature decoupling + cross-modal deep interaction enhancement.

encode: per-modality sequence encoders (text: a projection of the frozen, already contextual MiniLM token
features, the stand-in for fine-tuned NeoBERT; `text_encoder="transformer"` adds Transformer layers, which
overfit MOSI-U; audio/video: stacked BiLSTM). fuse: one shared similarity encoder and
three private encoders (LN -> Linear -> Tanh -> Dropout) give T_s, V_s, A_s / T_d, V_d, A_d; the global
similar feature G_s is the masked concatenation (along time) of T_s, V_s, A_s; k layers of CMDIE run a
DIPU between G_s and each private feature and merge the three enhanced G_s with GAP. head:
MLP(concat(pool G_s^k, pool T_d^k, pool V_d^k, pool A_d^k)).
loss: MAE + lambda_cl * L_cl, L_cl = mean NT-Xent (intra (T_s,V_s), (T_s,A_s); inter-sample pairs mined
per batch) + lambda_tri * cosine triplet (anchor T_s, positives V_s/A_s, negatives T_d/V_d/A_d).
"""
from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_range
from ..spec import MODALITIES, FeatureSpec
from .base import Batch, MSAModel, check_probabilities
from .encoders import SequenceEncoder, bound_score, drop_modalities
from .layers import Attention, FeedForward, SinusoidalPosition, masked_mean, presence
from .losses import cosine_triplet, nt_xent, nt_xent_mined
from .registry import register


def _projector(hidden: int, dropout: float) -> nn.Sequential:
    """The decoupling encoder of the paper: LN -> Linear -> Tanh -> Dropout."""
    return nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout))


class _AttnBlock(nn.Module):
    """LN(x + Dropout(Attention(x, context)))."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = Attention(hidden, heads, dropout)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.drop(self.attn(x, context, context, context_mask)))


class DIPU(nn.Module):
    """Deep interaction promotion unit between the global feature G and one private feature X.

    positions (G's counted over its valid steps, since it joins padded segments) + LN; cross-attention both ways
    (+res, LN); self-attention on each (+res, LN); a second cross-attention of the refined queries against the
    ORIGINAL keys/values (+res, LN); FFN (+res, LN).
    """

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.pos = SinusoidalPosition(hidden)
        self.in_g, self.in_x = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.cross_g, self.cross_x = _AttnBlock(hidden, heads, dropout), _AttnBlock(hidden, heads, dropout)
        self.self_g, self.self_x = _AttnBlock(hidden, heads, dropout), _AttnBlock(hidden, heads, dropout)
        self.cross2_g, self.cross2_x = _AttnBlock(hidden, heads, dropout), _AttnBlock(hidden, heads, dropout)
        self.ffn_g, self.ffn_x = FeedForward(hidden, 2 * hidden, dropout), FeedForward(hidden, 2 * hidden, dropout)
        self.out_g, self.out_x = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def forward(self, g: torch.Tensor, g_mask: torch.Tensor, x: torch.Tensor,
                x_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g0, x0 = self.in_g(self.pos(g, g_mask)), self.in_x(self.pos(x))  # (B, Lg, H), (B, Lx, H)
        g1, x1 = self.cross_g(g0, x0, x_mask), self.cross_x(x0, g0, g_mask)
        g2, x2 = self.self_g(g1, g1, g_mask), self.self_x(x1, x1, x_mask)
        g3, x3 = self.cross2_g(g2, x0, x_mask), self.cross2_x(x2, g0, g_mask)
        return self.out_g(g3 + self.ffn_g(g3)), self.out_x(x3 + self.ffn_x(x3))


class GAP(nn.Module):
    """Gated attention pooling of the three enhanced global features (softmax over T/V/A).

    gate g_M = sigmoid(GateMLP(LN(G_M))) is one scalar per modality and sample; the attention MLP scores the
    gated features; modalities that are missing get no weight.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.gate = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1))
        self.score = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.Tanh(), nn.Linear(hidden // 2, 1))

    def forward(self, feats: list[torch.Tensor], mask: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        g = torch.stack(feats, dim=1)  # (B, 3, Lg, H)
        pooled = masked_mean(g.flatten(0, 1), mask.repeat_interleave(3, dim=0)).view(g.shape[0], 3, -1)  # (B, 3, H)
        gate = torch.sigmoid(self.gate(self.norm(pooled)))  # (B, 3, 1)
        logits = self.score(gate * pooled).squeeze(-1).masked_fill(present <= 0, -1e4)  # (B, 3)
        weights = torch.softmax(logits, dim=-1) * present  # (B, 3)
        return ((weights * gate.squeeze(-1))[:, :, None, None] * g).sum(dim=1)  # (B, Lg, H)


class FDCMDIE(MSAModel):
    """Defaults are the chosen MOSI-U settings. `modality_dropout` / `av_input_dropout` are high because the
    declare-lab audio/video features are optimistic on the declare train split (see encoders.SequenceEncoder).
    `score_clip` as in GTF (teacher.MODEL_DEFAULTS sets 3; constructor default 0 = linear, as older checkpoints)."""

    # 0 CMDIE layers fuse the pooled shared features alone, 0 text layers are the projection, k_cl 0 turns the mined
    # pairs off; the BiLSTMs need a layer, and a width of 2 or more (one half a direction)
    COUNTS = {"hidden": 2, "heads": 1, "layers": 0, "text_layers": 0, "av_layers": 1, "k_cl": 0}

    def __init__(self, spec: FeatureSpec, hidden: int = 64, heads: int = 4, layers: int = 3,
                 text_encoder: str = "linear", text_layers: int = 1, av_layers: int = 2, dropout: float = 0.3,
                 modality_dropout: float = 0.7, av_input_dropout: float = 0.7, k_cl: int = 10, tau: float = 0.5,
                 margin: float = 0.5, lambda_cl: float = 0.1, lambda_tri: float = 0.1, score_clip: float = 0.0) -> None:
        super().__init__()
        check_probabilities({"dropout": dropout, "modality_dropout": modality_dropout,
                             "av_input_dropout": av_input_dropout})
        # NT-Xent divides the similarities by tau (0: a NaN loss); a negative margin or loss weight rewards the term
        # it should lower; score_clip 0 is the linear head (bound_score)
        check_range({"tau": tau}, 0, strict=True, why="the contrastive temperature")
        check_range({"margin": margin, "lambda_cl": lambda_cl, "lambda_tri": lambda_tri, "score_clip": score_clip}, 0,
                    strict=False)
        self.config_params: dict[str, Any] = dict(
            hidden=hidden, heads=heads, layers=layers, text_encoder=text_encoder, text_layers=text_layers,
            av_layers=av_layers, dropout=dropout, modality_dropout=modality_dropout, av_input_dropout=av_input_dropout,
            k_cl=k_cl, tau=tau, margin=margin, lambda_cl=lambda_cl, lambda_tri=lambda_tri, score_clip=score_clip)
        self.spec = spec
        self.encoders = nn.ModuleDict({
            "text": SequenceEncoder("text", spec.dim("text"), hidden, text_encoder, text_layers, heads, dropout),
            **{m: SequenceEncoder(m, spec.dim(m), hidden, "lstm", av_layers, heads, dropout, av_input_dropout)
               for m in ("audio", "video")},
        })
        self.shared = _projector(hidden, dropout)
        self.private = nn.ModuleDict({m: _projector(hidden, dropout) for m in MODALITIES})
        self.dipu = nn.ModuleList(nn.ModuleDict({m: DIPU(hidden, heads, dropout) for m in MODALITIES})
                                  for _ in range(layers))
        self.gap = nn.ModuleList(GAP(hidden) for _ in range(layers))
        self.mlp = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoders[modality](x, mask)  # (B, L, H)

    def fuse(self, h: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._fuse(h, masks)[0]

    def _fuse(self, h: dict[str, torch.Tensor],
              masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sim = {m: self.shared(h[m]) for m in MODALITIES}  # (B, L_m, H) each
        dis = {m: self.private[m](h[m]) for m in MODALITIES}
        present = torch.cat([presence(masks[m]) for m in MODALITIES], dim=1)  # (B, 3)
        g = torch.cat([sim[m] for m in MODALITIES], dim=1)  # (B, Lt+La+Lv, H)
        g_mask = torch.cat([masks[m] for m in MODALITIES], dim=1)  # (B, Lg)
        x = dict(dis)
        for dipu, gap in zip(self.dipu, self.gap):
            enhanced = []
            for m in MODALITIES:
                g_m, x[m] = cast(nn.ModuleDict, dipu)[m](g, g_mask, x[m], masks[m])  # ModuleList is not generic
                enhanced.append(g_m)
            g = gap(enhanced, g_mask, present)  # (B, Lg, H)
        pooled = [masked_mean(g, g_mask)] + [masked_mean(x[m], masks[m]) for m in MODALITIES]  # 4 x (B, H)
        aux = {"present": present,
               **{f"s_{m}": masked_mean(sim[m], masks[m]) for m in MODALITIES},
               **{f"d_{m}": masked_mean(dis[m], masks[m]) for m in MODALITIES}}
        return torch.cat(pooled, dim=-1), aux  # (B, 4H)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return bound_score(self.mlp(z).squeeze(-1), self.config_params["score_clip"])  # (B,)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        masks = drop_modalities({m: batch[f"{m}_mask"] for m in MODALITIES}, self.config_params["modality_dropout"],
                                self.training)
        h = {m: self.encode(m, batch[m], masks[m]) for m in MODALITIES}
        z, aux = self._fuse(h, masks)
        return {"score": self.head(z), "z": z, **aux}

    def loss(self, out: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.config_params
        task = F.l1_loss(out["score"], batch["label"])
        pt, pa, pv = out["present"][:, 0], out["present"][:, 1], out["present"][:, 2]  # (B,) each
        s_t, s_a, s_v = out["s_text"], out["s_audio"], out["s_video"]
        count = out["present"].sum(1, keepdim=True).clamp_min(1)  # (B, 1)
        s_all = (s_t * pt[:, None] + s_a * pa[:, None] + s_v * pv[:, None]) / count  # mean similar vector
        ntx = torch.stack([nt_xent(s_t, s_v, p["tau"], pt * pv), nt_xent(s_t, s_a, p["tau"], pt * pa),
                           nt_xent_mined(s_all, batch["label"], p["k_cl"], p["tau"])]).mean()
        tri = cosine_triplet(s_t, [s_v, s_a], [out["d_text"], out["d_video"], out["d_audio"]], p["margin"],
                             [pt * pv, pt * pa])
        l_cl = ntx + p["lambda_tri"] * tri
        total = task + p["lambda_cl"] * l_cl
        return total, {"mae": float(task.detach()), "nt_xent": float(ntx.detach()), "triplet": float(tri.detach()),
                       "loss": float(total.detach())}


@register("fd_cmdie")
def fd_cmdie(spec: FeatureSpec, **params: Any) -> FDCMDIE:
    return FDCMDIE(spec, **params)


@register("fd_cmdie_tiny")
def fd_cmdie_tiny(spec: FeatureSpec, **params: Any) -> FDCMDIE:
    return FDCMDIE(spec, **{"hidden": 16, "heads": 2, "layers": 1, "av_layers": 1, "k_cl": 2, **params})
