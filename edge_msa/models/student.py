"""The compressed student: narrow per-modality encoders, ONE Transformer block reused across depth
(ALBERT-style, optionally also across the text and fusion streams) and a tiny skip gate.

It exports as parts (gate, encode_text, encode_audio, encode_video, fuse) so the runtime can skip the
audio/video encoders per input; `run_with_skipping` is the torch reference of that rule. Every width
(after pruning), the sharing map and the skip thresholds live in `config_params`, so a pruned student
rebuilds from its checkpoint without pickle.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, check_range
from ..spec import MODALITIES, PARTS, SKIPPABLE, FeatureSpec, checked_skip_thresholds, modality_runs
from .base import Batch, MSAModel, check_probabilities
from .encoders import InputNorm, drop_modalities
from .export_config import ExportConfig, PartsConfig, SingleGraphConfig
from .layers import SinusoidalPosition, TransformerLayer, head_width, masked_mean, presence
from .registry import check_options, register

if TYPE_CHECKING:
    from .with_text import StudentModel

SHARE_MODES = {"depth": {"text": "text", "fuse": "fuse"}, "depth+modality": {"text": "shared", "fuse": "shared"}}


class StudentTextEncoder(nn.Module):
    """Linear down-projection + positions + the (shared) block applied `depth` times + masked mean pooling
    (the teachers' text encoder layout, so its weights can initialise this one)."""

    def __init__(self, in_dim: int, dim: int, block: TransformerLayer, depth: int) -> None:
        super().__init__()
        self.norm = InputNorm(in_dim, "text")
        self.proj = nn.Linear(in_dim, dim)
        self.pos = SinusoidalPosition(dim)
        self.block = block
        self.depth = depth

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.pos(self.proj(self.norm(x)))  # (B, L, D)
        for _ in range(self.depth):
            h = self.block(h, mask)  # same weights every step
        return masked_mean(h, mask)  # (B, D)


class FrameEncoder(nn.Module):
    """Audio/video: a per-step GELU MLP then masked mean, so any length >= 1 (e.g. one utterance vector) works.
    `in_dropout` drops input features in training (as the teachers do: declare-lab a/v features are
    optimistic on declare-train, so leaning on them hurts on test)."""

    def __init__(self, modality: str, in_dim: int, hidden: int, dim: int, dropout: float, in_dropout: float) -> None:
        super().__init__()
        self.norm = InputNorm(in_dim, modality)
        self.in_drop = nn.Dropout(in_dropout)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.fc2(self.drop(F.gelu(self.fc1(self.in_drop(self.norm(x))))))  # (B, L, D)
        return masked_mean(h, mask)  # (B, D)


class SkipGate(nn.Module):
    """keep (B, 2) in [0, 1]: how much running audio / video is worth it, from signals known BEFORE any
    audio/video front end runs (the text encoding and which modalities were supplied), so a skip saves
    the raw-media front end too. One hidden layer of `hidden` units (0 = a single Linear)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        n_in = dim + len(MODALITIES)
        self.net = (nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, len(SKIPPABLE))) if hidden
                    else nn.Linear(n_in, len(SKIPPABLE)))

    def forward(self, h_text: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(torch.cat([h_text, present], dim=-1)))  # (B, 2)


class Student(MSAModel):
    """See the module docstring. `blocks[name]` = {heads, head_dim, ffn}; `sharing` maps the text and fusion
    streams to block names."""

    # the factory's counts (registry.checked_params): int() made dim 15.5 a width of 15 and dim 0 built a student;
    # a depth of 0 skips that stream's block, gate_hidden 0 is the gate without a hidden layer
    COUNTS = {"dim": 1, "heads": 1, "ffn": 1, "depth": 0, "fuse_depth": 0, "head_hidden": 1, "gate_hidden": 0}
    # the nested widths (each block's, each audio/video encoder's hidden width), each a whole number >= 1 by the same
    # rule (_checked_widths; pruning keeps one head and one channel of each, compress.prune.check_ratio)
    NESTED_WIDTHS = {"blocks": ("heads", "head_dim", "ffn"), "enc_hidden": SKIPPABLE}

    def __init__(self, spec: FeatureSpec, dim: int, depth: int, fuse_depth: int, share: str,
                 blocks: dict[str, dict[str, int]], enc_hidden: dict[str, int], head_hidden: int,
                 gate_hidden: int, dropout: float, av_input_dropout: float) -> None:
        super().__init__()
        self.spec = spec
        self.sharing = dict(SHARE_MODES[share])
        layers = {name: TransformerLayer(dim, b["heads"], b["ffn"], dropout, head_dim=b["head_dim"])
                  for name, b in blocks.items()}  # by name, typed (a ModuleDict's items are plain Modules)
        self.blocks = nn.ModuleDict(layers)
        self.encoders = nn.ModuleDict({
            "text": StudentTextEncoder(spec.dim("text"), dim, layers[self.sharing["text"]], depth),
            **{m: FrameEncoder(m, spec.dim(m), enc_hidden[m], dim, dropout, av_input_dropout) for m in SKIPPABLE}})
        self.modality_embed = nn.Parameter(torch.zeros(len(MODALITIES), dim))
        nn.init.normal_(self.modality_embed, std=0.02)
        self.fuse_depth = fuse_depth
        self.head_fc1 = nn.Linear(dim, head_hidden)
        self.head_fc2 = nn.Linear(head_hidden, 1)
        self.gate = SkipGate(dim, gate_hidden)

    # --- the method split ---------------------------------------------------------------------------
    def encode(self, modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoders[modality](x, mask)  # (B, D)

    def fuse_present(self, h_text: torch.Tensor, h_audio: torch.Tensor, h_video: torch.Tensor,
                     present: torch.Tensor) -> torch.Tensor:
        """Fusion over the 3 modality tokens; absent ones (present 0) are zeroed and masked out as keys."""
        tokens = torch.stack([h_text, h_audio, h_video], dim=1) * present.unsqueeze(-1)  # (B, 3, D)
        tokens = tokens + self.modality_embed.unsqueeze(0)  # (B, 3, D)
        key_mask = present > 0.5  # (B, 3)
        for _ in range(self.fuse_depth):
            tokens = self.blocks[self.sharing["fuse"]](tokens, key_mask)  # same weights every step
        return masked_mean(tokens, key_mask)  # (B, D)

    def fuse(self, h: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        present = torch.cat([presence(masks[m]) for m in MODALITIES], dim=-1)  # (B, 3)
        return self.fuse_present(h["text"], h["audio"], h["video"], present)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head_fc2(F.gelu(self.head_fc1(z))).squeeze(-1)  # (B,)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """All present modalities run (no skipping). In training, modality dropout hides whole modalities so
        fusion learns to work with any subset (the skip gate relies on that)."""
        masks = drop_modalities({m: batch[f"{m}_mask"] for m in MODALITIES},
                                dict(zip(MODALITIES, self.config_params["modality_dropout"])), self.training)
        h = {m: self.encode(m, batch[m], masks[m]) for m in MODALITIES}
        z = self.fuse(h, masks)
        return {"score": self.head(z), "z": z, **{f"h_{m}": h[m] for m in MODALITIES}}

    def keep(self, h_text: torch.Tensor, batch: Batch) -> torch.Tensor:
        present = torch.cat([presence(batch[f"{m}_mask"]) for m in MODALITIES], dim=-1)  # (B, 3)
        return self.gate(h_text, present)  # (B, 2)

    # --- export parts -------------------------------------------------------------------------------
    def export_config(self, single_graph: bool = False) -> ExportConfig:
        """Parts (gate, encoders, fuse) so the runtime can skip audio/video per input; or one graph, no skipping."""
        return SingleGraphConfig(self) if single_graph else PartsConfig(self)

    def part(self, name: str) -> nn.Module:
        """A module for one exported graph; positional tensor inputs/outputs named by edge_msa.spec.PART_IO[name]."""
        if name not in PARTS:
            raise InputError(f"unknown student part '{name}'; expected one of {', '.join(PARTS)}")
        if name == "gate":
            return self.gate
        if name == "fuse":
            return _FusePart(self).train(self.training)  # a fresh wrapper must not flip the model's mode
        return self.encoders[name.split("_", 1)[1]]


class _FusePart(nn.Module):
    """fuse + head as one graph: (h_text, h_audio, h_video, present (B, 3)) -> score (B,)."""

    def __init__(self, model: Student) -> None:
        super().__init__()
        self.model = model

    def forward(self, h_text: torch.Tensor, h_audio: torch.Tensor, h_video: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.fuse_present(h_text, h_audio, h_video, present))


@torch.no_grad()
def run_with_skipping(model: StudentModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of the runtime's parts pipeline under the skip rule (edge_msa.spec.modality_runs): audio/video
    run iff present and keep[:, i] >= skip_thresholds[i]; skipped encoders are really not called for the rows they skip.

    Returns (score (B,), ran (B, 3) bool).
    """
    model.eval()
    h_text = model.encode("text", batch["text"], batch["text_mask"])  # (B, D)
    keep = model.keep(h_text, batch)  # (B, 2)
    thresholds = model.config_params["skip_thresholds"]
    ran = [presence(batch["text_mask"]).squeeze(-1) > 0]
    hs = {"text": h_text}
    for i, m in enumerate(SKIPPABLE):
        run = modality_runs(presence(batch[f"{m}_mask"]).squeeze(-1) > 0, keep[:, i], thresholds[i])  # (B,)
        if bool(run.all()):  # every row runs (always so at batch 1 when it runs): no gather/scatter
            h = model.encode(m, batch[m], batch[f"{m}_mask"])  # (B, D)
        else:
            h = torch.zeros_like(h_text)  # (B, D)
            if bool(run.any()):
                h[run] = model.encode(m, batch[m][run], batch[f"{m}_mask"][run])
        ran.append(run)
        hs[m] = h
    ran_t = torch.stack(ran, dim=1)  # (B, 3)
    score = model.head(model.fuse_present(hs["text"], hs["audio"], hs["video"], ran_t.to(torch.float32)))  # (B,)
    return score, ran_t


def _block(dim: int, heads: int, ffn: int) -> dict[str, int]:
    return {"heads": heads, "head_dim": head_width(dim, heads), "ffn": ffn}


def _checked_widths(name: str, widths: Any, keys: tuple[str, ...]) -> dict[str, int]:
    """`widths` (a map of exactly `keys`) with each as a Python int, or one line naming the first that is not a whole
    number >= 1 (errors.check_range, as COUNTS are checked): int() made a head_dim of 8.5 a width of 8 and an
    encoder width of 2.5 one of 2, built a block of 0 heads without a word, and a missing key was a KeyError."""
    if not isinstance(widths, Mapping) or sorted(widths) != sorted(keys):
        raise InputError(f"student {name} = {widths!r}; expected a map of {', '.join(keys)} to whole numbers >= 1")
    check_range({f"{name}['{k}']": widths[k] for k in keys}, 1, strict=False, whole=True)
    return {k: int(widths[k]) for k in keys}


def _blocks(cfg: dict[str, Any], share: str) -> Mapping[str, Any]:
    """The blocks of share mode `share`: one of dim, heads and ffn per name when none are given, else the given map
    of those names, or one line. Why: a list or a number got the registry's generic "bad options" line (a list of
    the names an AttributeError), a string was read as its letters, and an empty map built the default blocks."""
    names = sorted(set(SHARE_MODES[share].values()))
    blocks = cfg.get("blocks")
    if blocks is None:
        return {n: _block(cfg["dim"], cfg["heads"], cfg["ffn"]) for n in names}
    if not isinstance(blocks, Mapping):
        raise InputError(f"student blocks = {blocks!r}; expected a map of {', '.join(names)} (the blocks of "
                         f"share='{share}') to maps of {', '.join(Student.NESTED_WIDTHS['blocks'])}")
    if set(blocks) != set(names):  # sorted(key=repr): a map keyed 1 and 'text' cannot be sorted as given
        raise InputError(f"student blocks {sorted(blocks, key=repr)} do not match share='{share}'; expected {names}")
    return blocks


def _checked_dropouts(cfg: dict[str, Any]) -> list[float]:
    """modality_dropout as floats, one per modality (text, audio, video), each of them, dropout and av_input_dropout
    as given a probability by base.check_probabilities, the teachers' rule: a rate of 1 or more hid (or zeroed) that
    input or activation in every training batch, silently."""
    rates = list(cfg["modality_dropout"])
    if len(rates) != len(MODALITIES):
        raise InputError(f"modality_dropout needs {len(MODALITIES)} values (text, audio, video); "
                         f"got {[float(p) for p in rates]}")
    check_probabilities({"dropout": cfg["dropout"], **{f"modality_dropout[{i}]": p for i, p in enumerate(rates)},
                         "av_input_dropout": cfg["av_input_dropout"]})
    return [float(p) for p in rates]  # checked numbers: a word is told as no probability, not by float()


def _build(name: str, spec: FeatureSpec, defaults: dict[str, Any], params: dict[str, Any]) -> Student:
    # its defaults, and the blocks and sharing map a pruned student's checkpoint records: an option it lacks is told
    # as a teacher's is (registry.check_options), where it was a TypeError listing the defaults alone
    check_options(name, params, options=(*defaults, "blocks", "sharing"))
    cfg = {**defaults, **params}
    share = cfg["share"]
    if share not in SHARE_MODES:
        raise InputError(f"unknown share mode '{share}'; expected one of {', '.join(SHARE_MODES)}")
    blocks = _blocks(cfg, share)
    if "sharing" in params and params["sharing"] != SHARE_MODES[share]:
        raise InputError(f"student sharing map {params['sharing']} contradicts share='{share}'")
    thresholds = checked_skip_thresholds(cfg["skip_thresholds"])
    modality_dropout = _checked_dropouts(cfg)
    blocks = {n: _checked_widths(f"blocks['{n}']", b, Student.NESTED_WIDTHS["blocks"]) for n, b in blocks.items()}
    enc_hidden = _checked_widths("enc_hidden", cfg["enc_hidden"], Student.NESTED_WIDTHS["enc_hidden"])
    model = Student(spec, int(cfg["dim"]), int(cfg["depth"]), int(cfg["fuse_depth"]), share, blocks, enc_hidden,
                    int(cfg["head_hidden"]), int(cfg["gate_hidden"]), float(cfg["dropout"]),
                    float(cfg["av_input_dropout"]))
    model.config_params = {
        "dim": int(cfg["dim"]), "depth": int(cfg["depth"]), "fuse_depth": int(cfg["fuse_depth"]), "share": share,
        "sharing": dict(SHARE_MODES[share]), "blocks": copy.deepcopy(blocks), "enc_hidden": enc_hidden,
        "head_hidden": int(cfg["head_hidden"]), "gate_hidden": int(cfg["gate_hidden"]),
        "dropout": float(cfg["dropout"]), "modality_dropout": modality_dropout,
        "av_input_dropout": float(cfg["av_input_dropout"]),
        "skip_thresholds": thresholds, "heads": int(cfg["heads"]), "ffn": int(cfg["ffn"]),
    }
    return model


_DEFAULTS: dict[str, Any] = {
    "dim": 64, "heads": 4, "ffn": 128, "depth": 2, "fuse_depth": 1, "share": "depth",
    "enc_hidden": {"audio": 64, "video": 64}, "head_hidden": 64, "gate_hidden": 0, "dropout": 0.1,
    "modality_dropout": [0.05, 0.7, 0.7], "av_input_dropout": 0.7, "skip_thresholds": [0.0, 0.0],
}


@register("student")
def student(spec: FeatureSpec, **params: Any) -> Student:
    return _build("student", spec, _DEFAULTS, params)


@register("student_tiny")
def student_tiny(spec: FeatureSpec, **params: Any) -> Student:
    tiny = {**_DEFAULTS, "dim": 16, "heads": 2, "ffn": 32, "enc_hidden": {"audio": 16, "video": 16},
            "head_hidden": 16, "gate_hidden": 8}
    return _build("student_tiny", spec, tiny, params)
