"""Auxiliary representation losses of the teachers (seeds 001 and 002).

All take (B, D) vectors and an optional (B,) float weight (0 for samples where a modality is
missing) so missing modalities neither produce NaN nor pull representations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _wmean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return x.mean()
    return (x * weight).sum() / weight.sum().clamp_min(1.0)


def cmd(x1: torch.Tensor, x2: torch.Tensor, moments: int = 5, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Central moment discrepancy (Zellinger et al. 2017): ||E x1 - E x2|| + sum_k ||c_k(x1) - c_k(x2)||."""
    w = torch.ones(x1.shape[0], device=x1.device) if weight is None else weight
    w = (w / w.sum().clamp_min(1.0)).unsqueeze(1)  # (B, 1)
    m1, m2 = (w * x1).sum(0), (w * x2).sum(0)  # (D,)
    c1, c2 = x1 - m1, x2 - m2  # (B, D)
    total = torch.linalg.vector_norm(m1 - m2)
    for k in range(2, moments + 1):
        total = total + torch.linalg.vector_norm((w * c1.pow(k)).sum(0) - (w * c2.pow(k)).sum(0))
    return total


class MIBound(nn.Module):
    """Lower bound I(X;Y) >= E[log q(y|x)] + H(Y) (Barber-Agakov, as in MMIM).

    q(y|x) is a diagonal Gaussian predicted from x. H(Y) comes from a 2-class Gaussian mixture fitted to
    the batch, one diagonal Gaussian per label sign (pos >= 0 / neg < 0): H ~ sum_c w_c H(N(mu_c, S_c)),
    the usual upper-bound approximation of a mixture's entropy (MMIM). Classes with < 2 samples are skipped.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int, min_logvar: float = -4.0) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, y_dim))
        self.min_logvar = min_logvar

    def forward(self, x: torch.Tensor, y: torch.Tensor, label: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        mu = self.mu(x)  # (B, Dy)
        logvar = self.logvar(x).clamp_min(self.min_logvar)  # (B, Dy)
        log_q = -0.5 * (((y - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)  # (B,)
        return _wmean(log_q, weight) + mixture_entropy(y, label, weight)


def mixture_entropy(y: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None,
                    eps: float = 1e-4) -> torch.Tensor:
    """Entropy of a per-batch 2-class (label sign) diagonal Gaussian mixture over y (B, D)."""
    w = torch.ones_like(label) if weight is None else weight
    total, mass = y.new_zeros(()), y.new_zeros(())
    for member in (label >= 0, label < 0):
        wc = w * member.to(y.dtype)  # (B,)
        n = wc.sum()
        if float(n) < 2:
            continue
        mean = (wc.unsqueeze(1) * y).sum(0) / n  # (D,)
        var = (wc.unsqueeze(1) * (y - mean) ** 2).sum(0) / (n - 1) + eps  # (D,)
        total = total + n * 0.5 * (torch.log(2 * math.pi * math.e * var)).sum()
        mass = mass + n
    return total / mass.clamp_min(1.0)


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.5, weight: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent (SimCLR) between paired views a[i] <-> b[i]; the other 2B - 2 vectors are negatives."""
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=-1)  # (2B, D)
    sim = z @ z.t() / tau  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2B,)
    per = F.cross_entropy(sim, target, reduction="none")  # (2B,)
    w = None if weight is None else torch.cat([weight, weight])
    return _wmean(per, w)


def nt_xent_mined(z: torch.Tensor, label: torch.Tensor, k: int, tau: float = 0.5,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Inter-sample NT-Xent with pairs mined inside the batch (FD-CMDIE).

    For each anchor: positives = its k most similar samples of the same polarity, negatives = its k
    least similar samples of the other polarity; loss = -mean_p log(e^{s_p} / (e^{s_p} + sum_n e^{s_n})).
    The sets are drawn per batch (not over the dataset), so k is capped by the batch's class sizes.
    """
    n = z.shape[0]
    zn = F.normalize(z, dim=-1)
    sim = zn @ zn.t() / tau  # (B, B)
    pol = label >= 0  # (B,)
    same = (pol[:, None] == pol[None, :]) & ~torch.eye(n, dtype=torch.bool, device=z.device)  # (B, B)
    diff = pol[:, None] != pol[None, :]
    if weight is not None:
        valid = weight > 0
        same, diff = same & valid[None, :], diff & valid[None, :]
    kp = min(k, int(same.sum(1).min()))
    kn = min(k, int(diff.sum(1).min()))
    if kp < 1 or kn < 1:
        return z.new_zeros(())
    with torch.no_grad():
        pos_idx = sim.masked_fill(~same, float("-inf")).topk(kp, dim=1).indices  # (B, kp)
        neg_idx = sim.masked_fill(~diff, float("inf")).topk(kn, dim=1, largest=False).indices  # (B, kn)
    s_pos = sim.gather(1, pos_idx)  # (B, kp)
    s_neg = sim.gather(1, neg_idx)  # (B, kn)
    denom = torch.logsumexp(torch.cat([s_pos.unsqueeze(2), s_neg.unsqueeze(1).expand(-1, kp, -1)], dim=2), dim=2)
    per = (denom - s_pos).mean(dim=1)  # (B,)
    return _wmean(per, weight)


def cosine_triplet(anchor: torch.Tensor, positives: list[torch.Tensor], negatives: list[torch.Tensor],
                   margin: float = 0.5, weights: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """Mean over (positive, negative) pairs of relu(d(a, p) - d(a, n) + margin), d = 1 - cosine."""
    terms = []
    pw = weights or [None] * len(positives)
    for p, w in zip(positives, pw):
        d_ap = 1 - F.cosine_similarity(anchor, p, dim=-1)  # (B,)
        for neg in negatives:
            d_an = 1 - F.cosine_similarity(anchor, neg, dim=-1)  # (B,)
            terms.append(_wmean(F.relu(d_ap - d_an + margin), w))
    return torch.stack(terms).mean()
