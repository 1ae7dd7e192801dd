"""A fusion model whose text encoder is part of the model: token ids -> BertEncoder -> the fusion model.

Both reference papers fine-tune their BERT-class text encoder inside the fusion model; this wrapper does that for
every registered architecture (teachers and the student) without touching them: the fusion model is built for
a spec whose text features are the encoder's token states, and the wrapper's own spec says the text input is
token ids ("wordpiece:<tokenizer sha>", dim 1). `create_model(name, spec, text_bert={...})` builds it, so a
checkpoint (config + state_dict) rebuilds it like any other model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union, cast

import torch
from torch import nn

from ..spec import FeatureSpec
from .base import Batch, MSAModel
from .export_config import ExportConfig
from .layers import masked_mean
from .text_bert import BertEncoder, build

if TYPE_CHECKING:
    from ..features.text import TokenIds
    from .student import Student

STATES_FRONT_END = "text-encoder-states"


def token_ids(x: torch.Tensor) -> torch.Tensor:
    """(B, L, 1) float token ids (the container format of token-id features) -> (B, L) int64."""
    return x.squeeze(-1).round().to(torch.int64) if x.dim() == 3 else x.to(torch.int64)


class WithTextEncoder(MSAModel):
    """`bert` turns token ids into (B, L, H) states; `fusion` is any MSAModel built for H-dim text features.

    `config_params` is the fusion model's own dict (so options such as score_scale or skip_thresholds written
    here reach the fusion model) plus "text_bert": the BertEncoder config.

    `tokenizer_path` is the tokenizer.json its token ids come from: whoever builds the model with trained weights
    sets it (train, compress; load_checkpoint from the checkpoint's tokenizer_json), save_checkpoint stores it.
    """

    tokenizer_path: Path | None

    def __init__(self, bert: BertEncoder, fusion: MSAModel) -> None:
        super().__init__()
        self.bert = bert
        self.fusion = fusion
        self.tokenizer_path = None
        self.config_params = fusion.config_params
        self.config_params["text_bert"] = bert.config

    def states(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.bert(token_ids(x), mask)  # (B, L, H)

    # --- the method split, delegated --------------------------------------------------------------
    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fusion.encode(modality, self.states(x, mask) if modality == "text" else x, mask)

    def fuse(self, h: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion.fuse(h, masks)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.fusion.head(z)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.fusion({**batch, "text": self.states(batch["text"], batch["text_mask"])})

    def loss(self, out: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.fusion.loss(out, batch)

    # --- what the student's skip rule and per-part export use ------------------------------------------
    def keep(self, h_text: torch.Tensor, batch: Batch) -> torch.Tensor:
        return student_of(self).keep(h_text, batch)

    def fuse_present(self, h_text: torch.Tensor, h_audio: torch.Tensor, h_video: torch.Tensor,
                     present: torch.Tensor) -> torch.Tensor:
        return student_of(self).fuse_present(h_text, h_audio, h_video, present)

    def export_config(self, single_graph: bool = False) -> ExportConfig:
        """The fusion model's graphs (its layout), traced through this wrapper from (B, L) int64 token ids."""
        inner = self.fusion.export_config(single_graph)
        return dataclasses.replace(inner, model=self, text_vocab=int(self.config_params["text_bert"]["vocab_size"]))

    def part(self, name: str) -> nn.Module:
        if name == "encode_text":
            return _TextPart(self).train(self.training)
        return student_of(self).part(name)


class TextProbe(MSAModel):
    """The text encoder + a linear head on its mean-pooled states, trained on text alone (MSAModel's L1 loss): the
    teacher's first phase (edge_msa.teacher.fit_with_encoder), so the fusion model later starts from sentiment-tuned
    states."""

    def __init__(self, bert: BertEncoder) -> None:
        super().__init__()
        self.bert, self.out = bert, nn.Linear(bert.hidden, 1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        states = self.bert(token_ids(batch["text"]), batch["text_mask"])  # (B, L, H)
        return {"score": self.out(masked_mean(states, batch["text_mask"])).squeeze(-1)}  # (B,)


class _TextPart(nn.Module):
    """encode_text as one graph from token ids: (ids (B, L) int64, mask (B, L) bool) -> h (B, D)."""

    def __init__(self, model: WithTextEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.fusion.encode("text", self.model.bert(ids, mask), mask)


def tokenizer_of(model: nn.Module) -> Path | None:
    """The tokenizer.json `model` reads its token ids with: a model with its own text encoder carries it (None until
    whoever builds it with trained weights sets it); any other model reads text features, so None. Why one reader:
    save_checkpoint, export and text_front_end each took `getattr(model, "tokenizer_path", None)`, untyped, which
    also honoured the attribute set ad hoc on a model that reads no token ids."""
    return model.tokenizer_path if isinstance(model, WithTextEncoder) else None


def text_front_end(model: MSAModel) -> TokenIds | None:
    """How `model` reads text from a dataset: TokenIds with its own tokenizer, or None (the default front end)."""
    from ..features.text import TokenIds

    path = tokenizer_of(model)
    return TokenIds(path, max_len=model.spec.max_len("text")) if path is not None else None


def fusion_of(model: nn.Module) -> nn.Module:
    """The fusion model inside a model with its own text encoder (the model itself otherwise)."""
    return model.fusion if isinstance(model, WithTextEncoder) else model


# A student as compress, the skip rule and per-part export get it: the Student, or the WithTextEncoder around one (a
# student with its own text encoder). Both have the parts and the skip rule (keep, fuse_present, part); what only the
# Student has (gate, blocks) is reached by student_of.
StudentModel = Union["Student", WithTextEncoder]


def student_of(model: nn.Module) -> Student:
    """fusion_of for a student: the Student itself, or the one inside its text-encoder wrapper, typed as the one
    model with a skip gate, blocks and parts (a teacher's fusion model fails on those with AttributeError, as it
    always did). A cast, as the type checker cannot know which model fusion_of returns; compress and the wrapper's
    own skip rule and parts call this rather than casting at each use."""
    return cast("Student", fusion_of(model))


def states_spec(spec: FeatureSpec, hidden: int) -> FeatureSpec:
    """The spec the inner fusion model sees: text = H-dim encoder states instead of token ids."""
    return FeatureSpec(dims=(hidden, spec.dims[1], spec.dims[2]), max_lens=spec.max_lens,
                       front_ends=(STATES_FRONT_END, spec.front_ends[1], spec.front_ends[2]), dtype=spec.dtype)


def with_text_encoder(factory: Callable[..., MSAModel], spec: FeatureSpec, text_bert: dict[str, Any],
                      params: dict[str, Any]) -> WithTextEncoder:
    bert = build(dict(text_bert))
    fusion = factory(states_spec(spec, bert.hidden), **params)
    fusion.spec = states_spec(spec, bert.hidden)
    return WithTextEncoder(bert, fusion)
