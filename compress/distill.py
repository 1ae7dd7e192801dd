"""Knowledge distillation pieces: teacher outputs computed once, the student initialised from the
teacher where shapes allow, and the KD loss that `edge_msa.training.fit` optimises."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edge_msa.data.base import FeatureSet
from edge_msa.models.base import MSAModel
from edge_msa.spec import MODALITIES
from edge_msa.training import LossFn, iterate

from .options import CompressOptions


@dataclass
class TeacherTargets:
    """Teacher score (N,) and standardised fused representation (N, Zt) for every training row."""

    score: torch.Tensor
    z: torch.Tensor


@torch.no_grad()
def teacher_targets(teacher: nn.Module, fs: FeatureSet, batch_size: int = 128) -> TeacherTargets:
    teacher.eval()
    scores, zs = [], []
    for batch in iterate(fs, batch_size):
        out = teacher(batch)
        scores.append(out["score"].float())
        zs.append(out["z"].float().reshape(len(out["score"]), -1))
    z = torch.cat(zs)  # (N, Zt)
    z = (z - z.mean(0)) / z.std(0).clamp_min(1e-4)
    return TeacherTargets(torch.cat(scores), z)


class Distiller(nn.Module):
    """Student + the learned projection of its fused representation onto the teacher's (hint KD).

    fit() trains this wrapper; only `.student` is kept afterwards.
    """

    def __init__(self, student: MSAModel, teacher_dim: int) -> None:
        super().__init__()
        self.student = student
        self.proj = nn.Linear(student.config_params["dim"], teacher_dim)

    def forward(self, batch: dict) -> dict:
        out = self.student(batch)
        return {**out, "hint": self.proj(out["z"])}  # hint (B, Zt)


def kd_loss(targets: TeacherTargets, options: CompressOptions) -> LossFn:
    """loss_fn for fit: label MAE + response KD (L1 to the teacher score + temperature-softened polarity)
    + hint KD (MSE between projected student and teacher fused representations)."""
    t = options.temperature

    def loss_fn(model: nn.Module, out: dict, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        idx = batch["index"]  # (B,) rows of the training FeatureSet
        s, ts = out["score"], targets.score[idx]  # (B,)
        task = F.l1_loss(s, batch["label"])
        response = F.l1_loss(s, ts) + t * t * F.binary_cross_entropy_with_logits(s / t, torch.sigmoid(ts / t))
        hint = F.mse_loss(out["hint"], targets.z[idx])
        total = options.label_weight * task + options.kd_weight * response + options.hint_weight * hint
        return total, {"mae": float(task.detach()), "kd": float(response.detach()), "hint": float(hint.detach())}

    return loss_fn


# student name -> teacher name candidates; a tensor is copied when a candidate exists with the same shape
_INIT_MAP = (
    ("encoders.text.proj.", ("encoders.text.proj.",)),
    ("blocks.{text_block}.", ("encoders.text.layers.0.",)),
    *((f"encoders.{m}.norm.", (f"encoders.{m}.norm.",)) for m in MODALITIES),
)


@torch.no_grad()
def init_from_teacher(student: MSAModel, teacher: nn.Module) -> dict[str, int]:
    """Copy teacher tensors into the student where the layouts match (text projection, the teacher's first
    text Transformer layer into the student's text block, input normalisation statistics).
    Returns {student prefix <- teacher prefix: number of tensors copied}."""
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    text_block = student.config_params["sharing"]["text"]
    copied: dict[str, int] = {}
    for s_prefix, t_prefixes in _INIT_MAP:
        s_prefix = s_prefix.format(text_block=text_block)
        for name, tensor in s_state.items():
            if not name.startswith(s_prefix):
                continue
            rest = name[len(s_prefix):]
            for t_prefix in t_prefixes:
                src = t_state.get(t_prefix + rest)
                if src is not None and src.shape == tensor.shape:
                    tensor.copy_(src)
                    key = f"{s_prefix.rstrip('.')} <- {t_prefix.rstrip('.')}"
                    copied[key] = copied.get(key, 0) + 1
                    break
    return copied
