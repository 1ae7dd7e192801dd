"""Data contracts: the one place that owns modality order, feature dims, model configs and the parts layout
(graph names and their input/output names, the skippable modalities, the skip rule).

FeatureSpec and ModelConfig are frozen, JSON round-trippable, and stored in every checkpoint and bundle manifest.
numpy only: the on-device runtime imports this module without torch.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError, check_range, given, is_whole

MODALITIES: tuple[str, str, str] = ("text", "audio", "video")
ABSENT = "absent"  # front end of a modality a dataset does not have (e.g. audio/video of a text-only label.csv)

# The two bundle layouts the runtime's Predictor runs: graph -> (input names, output names), inputs in positional order.
# "single": any model as one graph, every present modality runs.
SINGLE = "model"
SINGLE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    SINGLE: (("text", "text_mask", "audio", "audio_mask", "video", "video_mask"), ("score",)),
}
# "parts" (the student): the gate decides from the text encoding and presence before any audio/video encoder runs.
PART_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gate": (("h_text", "present"), ("keep",)),
    "encode_text": (("x", "mask"), ("h",)),
    "encode_audio": (("x", "mask"), ("h",)),
    "encode_video": (("x", "mask"), ("h",)),
    "fuse": (("h_text", "h_audio", "h_video", "present"), ("score",)),
}
PARTS: tuple[str, ...] = tuple(PART_IO)
SKIPPABLE: tuple[str, str] = ("audio", "video")  # the gate's keep columns, in skip_thresholds order
GRAPH_IO = {**SINGLE_IO, **PART_IO}  # every graph a bundle may hold


def modality_runs(present: Any, keep: Any, threshold: float) -> Any:
    """The skip rule for one skippable modality: its encoder runs iff the input has it and keep >= threshold.

    Elementwise on numpy arrays or torch tensors alike, so training, calibration, the torch reference and the
    runtime cannot drift apart. The threshold is made a Python float so the comparison happens in keep's own
    dtype (float32 from the gate graph) in numpy and torch alike, whatever type the threshold arrived as.
    """
    return present & (keep >= float(threshold))


def checked_skip_thresholds(thresholds: Any) -> list[float]:
    """skip_thresholds as floats, one per SKIPPABLE modality, each a finite number >= 0 (errors.check_range), or one
    InputError line: the one rule for the student's constructor and a bundle's manifest, here so that the runtime
    (no torch) checks what the student does. Why: a modality runs iff keep >= its threshold (modality_runs) and keep
    is the gate's sigmoid, in [0, 1], so 0 never skips and any value above 1 always does (skip.calibrate's
    candidates: 0, quantiles, 1.01). A negative one acted as 0 without a word, NaN skipped every input, inf made a
    bundle whose manifest is refused, and a word or a lone number reached the registry's generic "bad options" line
    through float(). A torch tensor's elements (a quantile computed in torch, as skip.calibrate's gate outputs are)
    are 0-d tensors, no Real, and 0.1 was refused as "skip_thresholds[0] = 0.1; expected a number": every 0-d
    element is read as its Python number (`.item()`, numpy's and torch's alike, on any device), without torch here;
    a 0-d array or tensor is one number, which iterating raised a TypeError on."""
    many = (isinstance(thresholds, Iterable) and not isinstance(thresholds, (str, bytes, Mapping))
            and getattr(thresholds, "ndim", None) != 0)
    values = [t.item() if getattr(t, "ndim", None) == 0 else t for t in thresholds] if many else []
    if len(values) != len(SKIPPABLE):
        raise InputError(f"skip_thresholds = {thresholds!r:.80}; expected {len(SKIPPABLE)} numbers, one per skippable "
                         f"modality ({', '.join(SKIPPABLE)})")
    check_range({f"skip_thresholds[{i}]": t for i, t in enumerate(values)}, 0, strict=False,
                why="the gate's keep is in [0, 1]: 0 never skips, above 1 always skips")
    return [float(t) for t in values]


def input_shapes(d: int | str = "d", token_ids: bool = False) -> str:
    """The shapes one input's array of a modality may take, in words ("(L, 5) or (1, L, 5)"), for predict's errors,
    its docstring and `edge-msa predict --help` alike: its steps, or a batch of one; token ids (a token-id bundle's
    text) also flat, as a tokenizer lists them, or as a batch of one, (1, L), the shape a tokenizer's
    `return_tensors="np"` gives. `d`: the modality's dim. The errors named (L, d) only, so a caller with a batch of
    one did not learn that it was taken."""
    shapes = ("(L,)", "(1, L)", "(L, 1)", "(1, L, 1)") if token_ids else (f"(L, {d})", f"(1, L, {d})")
    return f"{', '.join(shapes[:-1])} or {shapes[-1]}"


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """" (did you mean 'X'?); expected one of A, B": the closest choice where one is close, and always the choices,
    the one wording for a word not listed (the CLI's word flags, compress's keywords, formats, models). With a close
    match alone, the line said what was wrong but not what was expected."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; expected one of {', '.join(choices)}"


def read_word(name: str, value: object, words: tuple[str, ...]) -> str:
    """`value` as one of `words` (each in lower case), given in any case, or one line naming the knob as given and the
    closest word: the one rule for the library's word keywords (compress's share, train_teacher's text_encoder), as
    cli.one_of is for the command line's word flags, so `text_encoder='FROZEN'` reads as the CLI's `FROZEN` does."""
    if isinstance(value, str) and value.lower() in words:
        return value.lower()
    raise InputError(f"{given(name, value)} is unknown{suggest(str(value).lower(), words)}")


@dataclass(frozen=True)
class FeatureSpec:
    """Per-modality feature dims, max sequence lengths and the front end that makes them.

    `front_ends[m]` names who produces modality m's features: an edge_msa front end such as
    "minilm-l6-int8" (text) / "logmel-v1" (audio) / "face-v1" (video), or "external:<what>"
    for features the user brings (e.g. "external:declare-opensmile-73").
    """

    dims: tuple[int, int, int]
    max_lens: tuple[int, int, int]
    front_ends: tuple[str, str, str] = ("external", "external", "external")
    dtype: str = "float32"

    def __post_init__(self) -> None:
        """Check every field here, so a hand-edited manifest or checkpoint (`"dims": "abc"`) is one line naming
        the field, not a ValueError from int() at load or an AttributeError at the first prediction."""
        for name in ("dims", "max_lens", "front_ends"):
            raw = getattr(self, name)
            value = () if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable) else tuple(raw)
            names = name == "front_ends"
            if len(value) != 3 or not all(isinstance(v, str) if names else _count(v) for v in value):
                want = "front end names" if names else "whole numbers >= 1"
                raise InputError(f"FeatureSpec.{name} must be 3 {want} ({', '.join(MODALITIES)}); got {raw!r:.80}")
            object.__setattr__(self, name, value if names else tuple(int(v) for v in value))

    def dim(self, modality: str) -> int:
        return int(self.dims[modality_index(modality)])

    def max_len(self, modality: str) -> int:
        return int(self.max_lens[modality_index(modality)])

    def front_end(self, modality: str) -> str:
        return self.front_ends[modality_index(modality)]

    def computes(self, modality: str) -> bool:
        """Whether the bundle turns this modality's raw input (text, a media file) into features itself; an
        "external:<what>" front end takes (L, d) arrays the user computed."""
        return not self.front_end(modality).startswith("external")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown FeatureSpec keys {sorted(unknown)}; expected {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def check(self, modality: str, x: np.ndarray) -> None:
        """Raise InputError unless `x` is a finite (L, dim) or (B, L, dim) array of this modality."""
        d = self.dim(modality)
        if not isinstance(x, np.ndarray) or x.ndim not in (2, 3) or x.shape[-1] != d:
            shape = getattr(x, "shape", type(x).__name__)
            raise InputError(f"{modality} features have shape {shape}; expected (L, {d}) or (B, L, {d})")
        if not np.issubdtype(x.dtype, np.floating):
            raise InputError(f"{modality} features have dtype {x.dtype}; expected a float array")
        check_finite(f"{modality} features", x, ("input", "step", "feature")[-x.ndim:])  # (L, d) or (B, L, d)


def check_finite(what: str, x: np.ndarray, axes: Sequence[str] | None, expected: str = "finite numbers") -> None:
    """Raise InputError if `x` holds NaN or inf, saying how many and where the first is: a broken extractor or a
    half-written .npy leaves a few bad frames among good ones, which the count and the place let its user find. The
    one rule and wording for the features predict takes and for what is checked below it (a graph's raw inputs,
    decoded audio samples, training data), each of which said "contains NaN or Inf" in words of its own, none with a
    place. `what` is plural ("audio features hold ..."); `axes` names x's axes, one each ("step", "feature"), for the
    place of the first, None to give its index; `expected`: what belongs there."""
    finite = np.isfinite(x)
    if not finite.all():
        first = np.argwhere(~finite)[0].tolist()
        where = ", ".join(f"{axis} {i}" for axis, i in zip(axes, first)) if axes else f"index {tuple(first)}"
        raise InputError(f"{what} hold {x.size - int(finite.sum())} of {x.size} values that are not finite (NaN or "
                         f"inf), the first at {where}; expected {expected}")


def _count(value: Any) -> bool:
    """A dim or max_len: a whole number >= 1 (Python or numpy int; not a bool, float or string)."""
    return is_whole(value) and value >= 1


def check_compatible(model: FeatureSpec, data: FeatureSpec, what: str = "the data") -> tuple[str, ...]:
    """The one check that `data`'s features can feed a model built for `model` (compress, export, bench, eval).

    Every modality both sides have must agree in dims AND front end (same widths from another extractor
    are other features). A modality either side lacks (front end ABSENT) runs as missing; those are
    returned so the caller can say so. Raises InputError naming the first disagreement.
    """
    absent = tuple(m for m in MODALITIES if ABSENT in (model.front_end(m), data.front_end(m)))
    for m in MODALITIES:
        if m in absent:
            continue
        if model.dim(m) != data.dim(m) or model.front_end(m) != data.front_end(m):
            raise InputError(f"{m} features in {what} are {data.dim(m)}-dim from '{data.front_end(m)}' but the model "
                             f"expects {model.dim(m)}-dim from '{model.front_end(m)}'; expected the same features "
                             "the model was trained on (or the modality absent)")
    if len(absent) == len(MODALITIES):
        raise InputError(f"{what} and the model share no modality; expected at least one in common")
    return absent


def modality_index(modality: str) -> int:
    if modality not in MODALITIES:
        raise InputError(f"unknown modality '{modality}'{suggest(modality, MODALITIES)}")
    return MODALITIES.index(modality)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture name + every constructor argument needed to rebuild it (post-pruning widths too)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return cls(name=str(data["name"]), params=dict(data.get("params", {})))
