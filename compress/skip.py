"""Skip gate: learn which inputs need the audio / video encoders, then pick thresholds for a compute budget.

Gate target for modality m (audio, video) of one input: running m changes the student's prediction
meaningfully, |score(all) - score(without m)| > eps. The gate is trained on the training split (the rest
of the student frozen, early stopping on validation) and its thresholds are calibrated on a label-free
criterion over a calibration split (validation by default, train + validation with `--calibrate-on`; see
`calibrate`); `run_with_skipping` applies them exactly as the runtime does.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import product
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_msa.data.base import FeatureSet
from edge_msa.metrics import msa_metrics
from edge_msa.models.layers import presence
from edge_msa.models.student import run_with_skipping
from edge_msa.models.with_text import StudentModel, student_of
from edge_msa.spec import SKIPPABLE, modality_runs
from edge_msa.training import TrainConfig, fit, iterate

from .measure import difference

# subsets of (audio, video) that run, in the order of _combos' last axis
_SUBSETS = ((1, 1), (0, 1), (1, 0), (0, 0))


def _combos(model: StudentModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores for the 4 audio/video subsets (B, 4), modality presence (B, 3) and h_text (B, D)."""
    h = {m: model.encode(m, batch[m], batch[f"{m}_mask"]) for m in ("text", *SKIPPABLE)}
    present = torch.cat([presence(batch[f"{m}_mask"]) for m in ("text", *SKIPPABLE)], dim=-1)  # (B, 3)
    scores = []
    for run_a, run_v in _SUBSETS:
        p = present * torch.tensor([1.0, run_a, run_v])  # (B, 3)
        scores.append(model.head(model.fuse_present(h["text"], h["audio"], h["video"], p)))
    return torch.stack(scores, dim=1), present, h["text"]


def _select(scores: torch.Tensor, run: torch.Tensor) -> torch.Tensor:
    """Pick per row the score of the subset that runs: scores (B, 4), run (B, 2) bool -> (B,)."""
    col = torch.where(run[:, 0], torch.where(run[:, 1], 0, 2), torch.where(run[:, 1], 1, 3))  # (B,)
    return scores.gather(1, col[:, None]).squeeze(1)


def _targets(scores: torch.Tensor, eps: float) -> torch.Tensor:
    """'Running m matters' (B, 2) for audio, video: dropping it moves the full student's score by more than eps."""
    full = scores[:, 0]  # (B,) every present modality run
    return (torch.stack([(full - scores[:, 1]).abs(), (full - scores[:, 2]).abs()], 1) > eps).float()


@torch.no_grad()
def _frozen_rows(student: StudentModel, fs: FeatureSet) -> tuple[torch.Tensor, ...]:
    """`_combos` for every row of `fs`, in row order, plus the labels as batches carry them:
    scores (N, 4), presence (N, 3), h_text (N, D), labels (N,)."""
    student.eval()
    parts = [_combos(student, batch) for batch in iterate(fs, 256)]
    return (*(torch.cat(p) for p in zip(*parts)), torch.from_numpy(fs.labels.astype(np.float32)))


class GateTrainer(nn.Module):
    """fit() wrapper: BCE of the gate against 'running m matters' targets; the score it reports is the
    prediction under hard skipping at keep >= 0.5, so early stopping watches what skipping costs.

    Only the gate trains, so what the frozen rest of the student gives it is computed once per row of the
    training and validation splits (rerunning the text encoder and four fusions every epoch was most of the
    stage's time); a batch looks its rows up by index. fit() trains in train mode on `train` and validates in eval
    mode on `valid`, so the mode names the split; a batch whose labels are not that split's rows is refused."""

    def __init__(self, student: StudentModel, eps: float, train: FeatureSet, valid: FeatureSet) -> None:
        super().__init__()
        self.student = student
        self.eps = eps
        self.rows = {True: _frozen_rows(student, train), False: _frozen_rows(student, valid)}

    def forward(self, batch: dict) -> dict:
        self.student.eval()  # the gate runs as it will be deployed, as the rows were computed
        scores, present, h_text, labels = (x[batch["index"]] for x in self.rows[self.training])
        if not torch.equal(labels, batch["label"]):
            raise RuntimeError("GateTrainer got a batch of another split: train mode reads the training split's "
                               "rows, eval mode the validation split's")
        keep = self.student.keep(h_text, batch)  # (B, 2)
        run = modality_runs(present[:, 1:] > 0, keep, 0.5)  # (B, 2)
        return {"score": _select(scores, run), "keep": keep, "target": _targets(scores, self.eps),
                "present": present[:, 1:]}


def gate_loss(model: nn.Module, out: dict, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """fit()'s loss for the gate: BCE of keep against 'running m matters', only where m is present."""
    weight = out["present"]  # only where the modality exists
    bce = F.binary_cross_entropy(out["keep"].clamp(1e-6, 1 - 1e-6), out["target"], weight=weight,
                                 reduction="sum") / weight.sum().clamp_min(1.0)
    return bce, {"gate_bce": float(bce.detach())}


def train_gate(student: StudentModel, train: FeatureSet, valid: FeatureSet, epochs: int, eps: float, seed: int,
               progress: bool, max_minutes: float | None = None) -> dict:
    """Train only the gate's weights; returns the positive-target rates (how often m matters)."""
    frozen = {name: p.requires_grad for name, p in student.named_parameters()}
    gate = {id(p) for p in student_of(student).gate.parameters()}
    for name, p in student.named_parameters():
        p.requires_grad = id(p) in gate
    trainer = GateTrainer(student, eps, train, valid)
    try:
        result = fit(trainer, train, valid, TrainConfig(epochs=epochs, lr=3e-3, patience=epochs, seed=seed,
                                                        max_minutes=max_minutes),
                     loss_fn=gate_loss, progress=progress, desc="gate")
    finally:
        for name, p in student.named_parameters():
            p.requires_grad = frozen[name]
    targets = _targets(trainer.rows[True][0], eps)  # (N, 2)
    return {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
            "target_rate": {m: float(targets[:, i].mean()) for i, m in enumerate(SKIPPABLE)}}


@dataclass
class SkipCache:
    """Everything threshold search needs for one split, computed once."""

    scores: np.ndarray  # (N, 4) per audio/video subset
    keep: np.ndarray  # (N, 2)
    present: np.ndarray  # (N, 2) bool
    labels: np.ndarray  # (N,)
    macs: np.ndarray  # (N, 2) encoder MACs each input would spend on audio / video
    gate_macs: np.ndarray  # (N,) the gate's MACs for each input (it runs wherever audio or video is present)

    @classmethod
    def concat(cls, caches: list["SkipCache"]) -> "SkipCache":
        """Pool splits into one calibration set (row order does not matter to `calibrate`)."""
        return cls(*(np.concatenate([getattr(c, f.name) for c in caches]) for f in fields(cls)))


def mac_table(fs: FeatureSet, macs_per_step: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per input: audio/video encoder MACs if they ran (N, 2), which are present (N, 2) bool, and the gate's
    MACs (N,) (it runs wherever audio or video is present)."""
    macs = np.stack([fs.lengths[m] * macs_per_step[m] for m in SKIPPABLE], axis=1).astype(np.float64)  # (N, 2)
    present = np.stack([fs.lengths[m] > 0 for m in SKIPPABLE], axis=1)  # (N, 2)
    gate = present.any(axis=1) * float(macs_per_step["gate"])  # (N,)
    return macs, present, cast(np.ndarray, gate)  # numpy's stubs allow a scalar here


def mac_saving(macs: np.ndarray, present: np.ndarray, run: np.ndarray, gate_macs: np.ndarray) -> dict[str, float]:
    """Audio+video encoder MACs saved when only `run` (N, 2) of the present encoders run: gross (skipped /
    every present encoder) and net (minus the gate's MACs)."""
    possible = float((macs * present).sum())
    skipped = float((macs * (present & ~run)).sum())
    gate = float(gate_macs.sum())
    return {"saved_fraction": (skipped - gate) / possible if possible > 0 else 0.0,
            "saved_fraction_gross": skipped / possible if possible > 0 else 0.0,
            "encoder_macs_skipped": skipped, "gate_macs": gate, "encoder_macs_possible": possible}


@torch.no_grad()
def skip_cache(model: StudentModel, fs: FeatureSet, macs_per_step: dict[str, float]) -> SkipCache:
    model.eval()
    scores, keeps = [], []
    for batch in iterate(fs, 256):
        s, _, h_text = _combos(model, batch)
        scores.append(s)
        keeps.append(model.keep(h_text, batch))
    macs, present, gate = mac_table(fs, macs_per_step)
    return SkipCache(torch.cat(scores).numpy(), torch.cat(keeps).numpy(), present, fs.labels, macs, gate)


def evaluate_thresholds(cache: SkipCache, thresholds: tuple[float, float]) -> dict:
    run = np.stack([modality_runs(cache.present[:, i], cache.keep[:, i], t) for i, t in enumerate(thresholds)],
                   axis=1)  # (N, 2)
    pred = _select(torch.from_numpy(cache.scores), torch.from_numpy(run)).numpy()
    return {"pred": pred, "run": run, **mac_saving(cache.macs, cache.present, run, cache.gate_macs)}


def calibrate(cache: SkipCache, mode: str, value: float, split: str = "valid", grid: int = 26) -> dict:
    """Pick (t_audio, t_video) on the calibration split `cache` (named `split` in the result).

    'budget': save >= value of the audio+video encoder MACs (net: minus the gate's own MACs) while flipping
    the fewest polarity decisions of the full student; 'max_drop': the largest saving whose flip rate is
    <= value. The flip rate is taken over every calibration row and reads no labels (an Acc-2 decision can
    only be lost where the polarity flips, so it bounds the loss on rows where the labels would agree with the
    full student). On MOSI-U the validation labels are not a safe guide (its video features come from an
    extractor trained on the declare-train part that validation is carved from), and being label-free the
    criterion may pool train and validation (`--calibrate-on`, chosen on validation: see the README).
    `acc2_non0_drop` and `mae` in the result use the labels for the report only; they choose nothing.
    Candidates are quantiles of the gate's outputs (+ 0 = never skip, > 1 = always skip).
    """
    full = cache.scores[:, 0]
    full_acc = msa_metrics(full, cache.labels)["acc2_non0"]
    cands = [np.unique(np.concatenate([[0.0, 1.01], np.quantile(cache.keep[:, i], np.linspace(0, 1, grid))]))
             for i in range(len(SKIPPABLE))]
    rows = []
    for ta, tv in product(*cands):
        ev = evaluate_thresholds(cache, (float(ta), float(tv)))
        flips = float(np.mean((ev["pred"] > 0) != (full > 0)))  # every row: no labels read
        change = float(np.mean(np.abs(ev["pred"] - full)))
        rows.append({"thresholds": [float(ta), float(tv)], "saved": ev["saved_fraction"],
                     "gross": ev["saved_fraction_gross"], "flips": flips,
                     "change": change, "pred": ev["pred"]})
    if mode == "budget":
        ok = [r for r in rows if r["saved"] >= value - 1e-9]
        best = (min(ok, key=lambda r: (r["flips"], r["change"], -r["saved"])) if ok
                else max(rows, key=lambda r: (r["saved"], -r["flips"])))
    else:
        ok = [r for r in rows if r["flips"] <= value + 1e-9]  # (0, 0) never skips, so ok is never empty
        best = max(ok, key=lambda r: (r["saved"], -r["flips"], -r["change"]))
    skip_metrics = msa_metrics(best["pred"], cache.labels)
    return {"thresholds": best["thresholds"], "mode": mode, "value": value, "reached": bool(ok),
            "split": split, "n": int(len(cache.labels)),
            "criterion": "polarity flips vs the full student over every calibration row (label-free; bounds "
                         "the Acc-2 decisions skipping can lose)",
            "saved_fraction": best["saved"], "saved_fraction_gross": best["gross"],
            "flip_rate": best["flips"],
            "mean_abs_score_change": best["change"],
            "acc2_non0_drop": difference(full_acc, skip_metrics["acc2_non0"]), "mae": skip_metrics["mae"],
            "candidates": len(rows)}


@torch.no_grad()
def predict_with_skipping(model: StudentModel, fs: FeatureSet, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) and ran (N, 3) through the reference skip rule."""
    scores, ran = [], []
    for batch in iterate(fs, batch_size):
        s, r = run_with_skipping(model, batch)
        scores.append(s)
        ran.append(r)
    return torch.cat(scores).numpy(), torch.cat(ran).numpy()


def skip_stats(ran: np.ndarray, fs: FeatureSet, macs_per_step: dict[str, float]) -> dict:
    """Skip rate per modality (over inputs where it is present) and the audio+video encoder MACs saved
    (see mac_saving) for the `ran` (N, 3) decisions of the reference skip rule."""
    macs, present, gate = mac_table(fs, macs_per_step)
    run = ran[:, 1:]  # (N, 2) audio, video
    rate = {m: float((present[:, i] & ~run[:, i]).sum() / max(int(present[:, i].sum()), 1))
            for i, m in enumerate(SKIPPABLE)}
    return {"rate": rate, **mac_saving(macs, present, run, gate)}
