"""The method split every model implements: encode(m) -> fuse -> head. Pruning, sharing, skipping and
per-part export all rely on it."""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_range
from ..spec import MODALITIES, FeatureSpec
from .export_config import ExportConfig, SingleGraphConfig

Batch = dict[str, torch.Tensor]  # text/audio/video (B, L, d) float, *_mask (B, L) bool, label (B,)


def check_probabilities(values: Mapping[str, Any]) -> None:
    """One line for the first of `values` (name -> a constructor's dropout rate) that is not a probability in
    [0, 1), checked by every model's constructor, so registry.check_build refuses it before any data load. Why [0, 1):
    drop_modalities keeps a sample where torch.rand (< 1) >= p, so a modality_dropout of 1 or more hid the modality
    in every training batch (its encoder never trained) and one below 0 never hid it, both silently; a dropout (each
    nn.Dropout's and the attention's rate) or av_input_dropout of 1 zeroed every activation or audio/video input, a
    model that learns nothing (nn.Dropout and the attention take it; nn.Dropout refuses only p outside [0, 1], in
    torch's words through the registry's "bad options" line). check_range's rule and wording, as every other knob's
    (its own said "a probability in [0, 1)", a range check_range could not say before exclusive_top); kept as the one
    place for the arguments and this why, which four constructors share."""
    check_range(values, 0, strict=False, top=1, exclusive_top=True, why="a probability")


class MSAModel(nn.Module):
    """Base class. Subclasses set `self.spec` and implement encode/fuse/head.

    forward() returns a dict with at least "score" (B,) plus whatever tensors the model's own loss
    needs (e.g. modality representations for CMD / contrastive terms).
    """

    spec: FeatureSpec
    config_params: dict[str, Any]
    model_name: str  # the registry name create_model built it under (model_config writes it into checkpoints)
    # The counts its factory takes (widths, heads, layers), each with the least value it takes: registry.checked_params
    # refuses any other value by name before a model is built (or, in train_teacher, before the data load)
    COUNTS: ClassVar[Mapping[str, int]] = {}

    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fuse(self, h: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def head(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        masks = {m: batch[f"{m}_mask"] for m in MODALITIES}
        h = {m: self.encode(m, batch[m], masks[m]) for m in MODALITIES}
        z = self.fuse(h, masks)
        return {"score": self.head(z), "z": z, **{f"h_{m}": h[m] for m in MODALITIES}}

    def loss(self, out: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Task loss (MAE, as all reference papers) plus the model's auxiliary terms."""
        task = F.l1_loss(out["score"], batch["label"])
        return task, {"mae": float(task.detach())}

    def export_config(self, single_graph: bool = False) -> ExportConfig:
        """How `edge_msa.export` traces this model: any model exports as one graph (no modality skipping)."""
        return SingleGraphConfig(self)
