"""Every knob of `compress` in one frozen dataclass, validated once (the CLI and the library share it)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Mapping

from edge_msa.errors import InputError, check_range, checked_seeds, given, option_name, warn
from edge_msa.models.registry import check_build
from edge_msa.models.student import SHARE_MODES
from edge_msa.spec import read_word, suggest
from edge_msa.training import check_max_minutes

if TYPE_CHECKING:
    from .text import TextKD, TextShape

SHARE_CHOICES = tuple(SHARE_MODES)
CALIBRATION_SPLITS = ("valid", "train+valid")
# The knobs that only choose the skip thresholds: on data without audio or video (MOSEI-T) nothing is ever skipped.
# Not --gate-epochs: the gate still trains there (never to run), and fewer epochs save that time (README's MOSEI-T run)
SKIP_KNOBS = ("skip_budget", "max_drop", "calibrate_on")
TRANSFER_KEYWORDS = ("mosei", "none")  # --transfer's words (or a path)
# The knobs whose values are words, each read in any case from its one list (NONE was taken while MOSEI was read as a
# file name; argparse's choices refused --share DEPTH and --calibrate-on VALID). Every one but transfer takes only these
KEYWORDS = {"share": SHARE_CHOICES, "calibrate_on": CALIBRATION_SPLITS, "transfer": TRANSFER_KEYWORDS}
# Default fusion prune ratio by teacher kind, each chosen on validation (README, "Defaults chosen on validation"):
# a frozen-encoder teacher's student is all fusion (0.5 beat 0.3); a student with its own text encoder is 99 %
# text encoder, which torch-pruning prunes in the text stage. Pruning its 45 k-param fusion part too cost
# validation MAE with the previous teacher (0 beat 0.5: 0.829 vs 0.856) and ties with the 4-epoch one over three
# seeds (-0.004 [-0.023, +0.013] by compress.selection_gap), so 0 stays.
FUSION_PRUNE_RATIO = {"frozen_text": 0.5, "own_text_encoder": 0.0}


# The numeric knobs' ranges beyond the flags checked one by one in CompressOptions.__post_init__: (names, bound,
# strict, whole) means every value must be finite and > bound (strict) or >= bound, and with `whole` a count
# (errors.check_range): the CLI parses the counts with type=int, but from Python epochs 2.5 or bootstrap 50.5 was a
# TypeError from range() minutes into the run, and patience 1.5 ran as patience 2.
_LIMITS = (
    (("kd_weight", "hint_weight", "label_weight", "skip_eps", "text_relation_kd"), 0, False, False),
    (("text_rank", "text_kd_epochs", "text_score_epochs", "text_augment"), 0, False, True),
    (("temperature", "lr", "text_lr", "text_kd_lr"), 0, True, False),
    (("text_layers", "text_hidden", "text_heads", "text_ffn", "text_min_count", "epochs", "finetune_epochs",
      "gate_epochs", "batch_size", "patience", "latency_calls", "bootstrap", "latency_threads", "threads"), 1, False,
     True),
)

# The knobs of one step that another knob turns off at 0: (knob, switch, why). Set away from its default with the
# switch at 0, a knob was accepted and did nothing (text_kd_lr with text_kd_epochs 0). Not text_lr: it is also the
# text encoder's rate in distillation and finetuning, which always run
_STEP_KNOBS = (
    ("temperature", "kd_weight", "the temperature softens the response-KD term only, which weight 0 turns off"),
    ("text_relation_kd", "text_kd_epochs", "relation KD is part of the layer-wise KD step, which 0 epochs turn off"),
    ("text_kd_lr", "text_kd_epochs", "it is the layer-wise KD step's learning rate, which 0 epochs turn off"),
)


def _default(name: str) -> Any:
    """A CompressOptions field's default: a knob set away from it was given by the user."""
    return next(f.default for f in fields(CompressOptions) if f.name == name)


@dataclass(frozen=True)
class CompressOptions:
    """Defaults are tuned on MOSI-U with the fd_cmdie teacher (README, "Defaults chosen on validation"); the
    comments say which were chosen on validation and which by the size/latency budget."""

    student: str = "student"  # registry name ("student_tiny" for tests)
    student_params: dict[str, Any] = field(default_factory=dict)  # overrides of the student's default widths
    share: str = "depth+modality"  # one block for text encoder and fusion (fewer params than "depth")
    # fraction of the fusion part's heads / FFN / encoder hidden channels removed; None: by teacher kind
    # (FUSION_PRUNE_RATIO, chosen on validation, README)
    prune_ratio: float | None = None
    kd_weight: float = 1.0  # response KD on the score (L1 to the teacher + soft polarity)
    hint_weight: float = 0.5  # feature KD on the fused representation through a learned projection
    label_weight: float = 1.0  # MAE on the labels
    temperature: float = 2.0  # of the soft-polarity KD term
    epochs: int = 40  # distillation
    finetune_epochs: int = 20  # distillation again after pruning
    gate_epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    patience: int = 8
    skip_budget: float | None = None  # target fraction of audio+video encoder MACs saved by skipping
    max_drop: float | None = None  # or: Acc-2 non-0 allowed to be lost to skipping (validation)
    calibrate_on: str = "valid"  # split(s) the label-free skip thresholds are chosen on; picked on validation (README)
    skip_eps: float = 0.1  # |score_all - score_without_m| above which running m "matters" (gate target)
    seeds: tuple[int, ...] = (0,)
    latency_calls: int = 300  # timed calls per model, batch 1, side by side
    latency_threads: int = 1
    threads: int = 1  # torch threads for training: on a small shared CPU, more threads thrash (25 s vs 2 s/epoch)
    # (the teacher's no-grad states for text KD run on training.inference_threads: the same states, in less time)
    bootstrap: int = 1000
    max_minutes: float | None = None  # per training stage
    # The student's text encoder (used when the teacher fine-tuned its own; see compress/text.py). Widths are set by
    # the size/latency budget of the targets (>= 5x fewer params and >= 5x lower latency end to end), not by test.
    text_layers: int = 2  # teacher layers kept (evenly spaced, ending at the last)
    text_hidden: int = 256  # residual width after torch-pruning (teacher 384)
    text_heads: int = 8  # attention heads kept (teacher 12, head dim 32)
    text_ffn: int = 768  # FFN width kept (teacher 1536); 1536 tied by 4-fold cross-validation with two seeds per
    # arm (-0.004 [-0.017, +0.009]) and made each compress run ~30 % slower (README)
    text_rank: int = 128  # rank of the factorised embedding (0 = no factorisation)
    text_min_count: int = 1  # vocabulary: tokens seen at least this often in the transfer texts keep their row
    text_shared: bool = False  # ALBERT-style: one layer run text_layers times (ablation; README)
    # layer-wise distillation epochs over the transfer texts (0 = none); 4 beat 2 on validation over 3 seeds. 8 tied
    # with 4 by 4-fold cross-validation (-0.0004 [-0.018, +0.017]) and missed the rule on MOSEI-T validation
    # (-0.0087 [-0.0176, +0.0003]: CI not wholly below 0), at ~4 more minutes (README)
    text_kd_epochs: int = 4
    text_kd_lr: float = 5e-4
    # weight of MiniLMv2's self-attention relation KD (the student's last layer against the teacher's), added to the
    # layer-wise KD loss; 0 = off: 1 tied with 0 by 4-fold cross-validation (+0.0015 [-0.017, +0.021]) and makes the
    # layer-wise step ~40 % slower (README ablation)
    text_relation_kd: float = 0.0
    # then KD of the teacher's text-only score over the transfer texts (TinyBERT's step 2; the epoch kept is the one
    # with the lowest validation MAE of the encoder + a linear head, text alone). Off by default: 2 epochs tied
    # with 0 on the student's selection criterion (0.8563 both, README) and cost ~4 min; a tie goes to the cheaper.
    text_score_epochs: int = 0
    text_lr: float = 1e-4  # student text-encoder learning rate in the response-KD / finetune stages and score KD
    transfer: str | None = "mosei"  # extra transfer texts: "mosei" (train fold of the MOSEI label.csv), a path, or None
    # TinyBERT-style variants per training transcript added to the transfer texts. Off: with the default teacher 4
    # tied on validation (0.812 both, 3 seeds; with the previous 3-epoch teacher it paid, 0.812 vs 0.826) and it
    # costs ~3 min of the main job's 30 (README ablation)
    text_augment: int = 0

    def __post_init__(self) -> None:
        self._read_keywords()
        self._check_fractions()
        for names, bound, strict, whole in _LIMITS:
            check_range({name: getattr(self, name) for name in names}, bound, strict, whole=whole)
        path = self._transfer_file()
        if path is not None and not os.path.isfile(path):  # found at the text stage, after the teacher's pass
            raise InputError(f"{given('transfer', path)} is not a file; expected "
                             f"{', '.join(map(repr, TRANSFER_KEYWORDS))} or the path of an MMSA label.csv")
        check_max_minutes(self.max_minutes)
        self._refuse_conflicts()
        object.__setattr__(self, "seeds", checked_seeds(self.seeds))
        self._check_student_params()
        # the student's widths, heads and keywords, before the teacher and the data are read (they were found when the
        # student was first built, after both loads and the teacher's pass)
        check_build(self.student, {"share": self.share, **self.student_params})

    def _check_fractions(self) -> None:
        """prune_ratio in [0, 1) (1 removes every channel), skip_budget or max_drop in [0, 1], each by check_range, the
        one rule: compared here by hand, a string from a Python caller ('0.5') was a bare TypeError."""
        if self.prune_ratio is not None:
            check_range({"prune_ratio": self.prune_ratio}, 0, strict=False, top=1, exclusive_top=True,
                        why="1 removes every channel")
        if self.skip_budget is not None and self.max_drop is not None:
            raise InputError(f"{option_name('skip_budget')} and {option_name('max_drop')} both given; "
                             "expected at most one way to pick skip thresholds")
        if self.skip_budget is not None:
            check_range({"skip_budget": self.skip_budget}, 0, strict=False, top=1,
                        why="a fraction of the audio and video encoders' compute")
        if self.max_drop is not None:
            check_range({"max_drop": self.max_drop}, 0, strict=False, top=1,
                        why="a fraction of Acc-2, e.g. 0.005 = half a point")

    def _check_student_params(self) -> None:
        """student_params as a map without 'share' or 'text_bert': the pipeline builds the student with
        share=self.share **and** the map, so a 'share' key in it was a raw TypeError (share given twice) and None one
        from the ** (not a mapping), both after the teacher and the data were loaded. text_bert (the config of a text
        encoder inside the model) is the pipeline's own, from the encoder distilled from the teacher's: given here it
        was a TypeError (text_bert given twice) after the text stage, or, with a teacher over text features, a random
        encoder wrapped around those features that failed in the student's first forward. skip_thresholds too: the
        gate stage calibrates them and writes them over the student's, so a given pair was dropped without a word."""
        params = self.student_params
        if not isinstance(params, Mapping):
            raise InputError(f"{given('student_params', params)}; expected a map of the student's options to "
                             "override (e.g. {'dim': 64}), or {} for none")
        if "share" in params:
            raise InputError(f"{given('student_params', dict(params))} sets share; expected the share mode as its own "
                             f"option ({given('share', params['share'])}), not in student_params")
        own = {"text_bert": f"the student's text encoder is distilled from the teacher's (its shape: "
                            f"{option_name('text_hidden')}, {option_name('text_layers')} and the other text options)",
               "skip_thresholds": f"the gate stage calibrates them ({option_name('skip_budget')} or "
                                  f"{option_name('max_drop')} says to what)"}
        for name, why in own.items():
            if name in params:
                raise InputError(f"student_params sets {name}; expected no {name}: {why}")

    def _read_keywords(self) -> None:
        """Each KEYWORDS knob's word in lower case, whatever case it was given in; one line for a word not listed
        (transfer may be a path instead, checked with the other knobs)."""
        for name, words in KEYWORDS.items():
            value = getattr(self, name)
            if name == "transfer" and not (isinstance(value, str) and value.lower() in words):
                continue  # a path, or None
            object.__setattr__(self, name, read_word(name, value, words))

    def _refuse_conflicts(self) -> None:
        """Knobs that another knob makes do nothing, or that the code would silently change: each was accepted and
        the run reported as if it had applied."""
        for knob, switch, why in _STEP_KNOBS:
            if getattr(self, switch) == 0 and getattr(self, knob) != _default(knob):
                raise InputError(f"{given(knob, getattr(self, knob))} with {given(switch, 0)}; {why}, so expected "
                                 f"{option_name(switch)} > 0 or no {option_name(knob)}")
        if self.kd_weight == self.hint_weight == self.label_weight == 0:
            names = [option_name(n) for n in ("kd_weight", "hint_weight", "label_weight")]
            raise InputError(f"{', '.join(names[:2])} and {names[2]} are all 0, so the student would learn nothing; "
                             "expected at least one > 0")
        if self.text_rank > self.text_hidden:  # prune_vocabulary would cut it to the width without a word
            raise InputError(f"{given('text_rank', self.text_rank)} with {given('text_hidden', self.text_hidden)}; the "
                             "factorised embedding's rank cannot exceed the encoder's width, so expected 0 (no "
                             f"factorisation) or a rank <= {self.text_hidden}")
        if self.text_shared and self.text_layers == 1:
            shared, layers = option_name("text_shared"), option_name("text_layers")
            raise InputError(f"{shared} with {given('text_layers', 1)}; one layer has no other to share its weights "
                             f"with, so expected {layers} > 1 or no {shared}")

    @property
    def skip_mode(self) -> tuple[str, float]:
        """('budget', fraction) or ('max_drop', fraction); a budget of 0.5 when neither is given."""
        if self.max_drop is not None:
            return "max_drop", float(self.max_drop)
        return "budget", 0.5 if self.skip_budget is None else float(self.skip_budget)

    @property
    def text_shape(self) -> TextShape:
        """The student text encoder's target widths (compress/text.py)."""
        from .text import TextShape

        return TextShape(self.text_layers, self.text_hidden, self.text_heads, self.text_ffn, self.text_rank,
                         self.text_min_count, self.text_shared)

    def for_teacher(self, own_text_encoder: bool) -> "CompressOptions":
        """These options with the prune ratio resolved for the teacher's kind (when not given). The student text
        encoder's options do nothing for a teacher on frozen features; any set away from its default is named in a
        warning, so a user does not read the result as that setting's."""
        if not own_text_encoder:
            unused = [option_name(f.name) for f in fields(self)
                      if (f.name.startswith("text_") or f.name == "transfer") and getattr(self, f.name) != f.default]
            if unused:
                warn(f"{', '.join(unused)} ignored: they shape the student's own text encoder, and this "
                     "teacher has none (it was trained on frozen text features)")
        if self.prune_ratio is not None:
            return self
        return replace(self, prune_ratio=FUSION_PRUNE_RATIO["own_text_encoder" if own_text_encoder else "frozen_text"])

    def warn_nothing_to_skip(self) -> None:
        """Called on data without audio or video: the skip knobs set away from their defaults change nothing there,
        which the report said only at the end of the run (its skip targets "not applicable"); said up front."""
        set_here = [given(name, getattr(self, name)) for name in SKIP_KNOBS if getattr(self, name) != _default(name)]
        if set_here:
            verb = "changes" if len(set_here) == 1 else "change"
            warn(f"{', '.join(set_here)} {verb} nothing: the data has no audio or video, so the student has "
                 "nothing to skip (the report marks the skip targets not applicable)")

    @property
    def text_kd(self) -> TextKD:
        """How the student text encoder is distilled (compress/text.py)."""
        from .text import TextKD

        return TextKD(layer_epochs=self.text_kd_epochs, layer_lr=self.text_kd_lr,
                      relation_weight=self.text_relation_kd, score_epochs=self.text_score_epochs,
                      score_lr=self.text_lr, seed=self.seeds[0], max_minutes=self.max_minutes)

    def transfer_path(self) -> str | None:
        """The transfer label.csv: None, the MOSEI file of the data folder ("mosei"; skipped with a warning if absent,
        since the README measured the student 1.8 pt worse without it), or a path."""
        if self.transfer == "mosei":
            from edge_msa.paths import MOSEI_FILE, default_data_root, searched

            root = default_data_root()
            path = root / MOSEI_FILE if root else None
            if path is not None and path.is_file():
                return str(path)
            where = path or searched(MOSEI_FILE)
            warn(f"{given('transfer', 'mosei')} skipped: {where} not found, so the student's text encoder "
                 "learns from the training transcripts alone (the README measured that 1.8 pt Acc-2 non-0 "
                 "worse on MOSI-U test); expected MOSEI's label.csv "
                 f"there, or {given('transfer', 'none')} to choose this")
            return None
        return self._transfer_file()

    def _transfer_file(self) -> str | None:
        """--transfer when it names a file; None for the keywords ('mosei', 'none') and for no transfer."""
        if not self.transfer or self.transfer in TRANSFER_KEYWORDS:
            return None
        return self.transfer

    @classmethod
    def build(cls, **overrides: Any) -> "CompressOptions":
        """Defaults < overrides; unknown keys are rejected with a close match."""
        known = [f.name for f in fields(cls)]
        for key in overrides:
            if key not in known:
                raise InputError(f"unknown compress option '{key}'{suggest(key, known)}")
        return cls(**overrides)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
