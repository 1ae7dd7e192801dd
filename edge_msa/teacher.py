"""Train a teacher: load a dataset, fit one model per seed with the one training loop, keep the best.

`train_teacher` writes the checkpoint (`out`) and `<out stem>.metrics.json` (test metrics of the saved
model, per-seed metrics, mean/std over seeds). Host only (torch).
"""
from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, cast

import numpy as np

from .atomic import write_text
from .data.modality_subset import restrict_set
from .errors import InputError, checked_seeds, checked_threads, given, option_name
from .host import training_host
from .jsonio import dumps
from .metrics import METRIC_KEYS, mean_std, msa_metrics
from .models.registry import TEXT_ENCODERS

if TYPE_CHECKING:  # torch-side types, imported lazily below (the module loads without torch)
    from .data.base import DatasetSplits, FeatureSet
    from .features.text import TokenIds
    from .models.base import MSAModel
    from .models.text_bert import BertEncoder
    from .models.with_text import WithTextEncoder
    from .spec import FeatureSpec
    from .training import TrainConfig, TrainResult

    # A pretrained text encoder to fine-tune and the front end over its own tokenizer (_pretrained_text)
    Pretrained = tuple[BertEncoder, TokenIds]

# Per-model training defaults: the papers' optimiser settings, shortened so one seed trains in a few
# minutes on 2 CPU cores (fit() uses AdamW; weight_decay 0 gives plain Adam for gtf as in its paper).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "fd_cmdie": {"epochs": 18, "batch_size": 64, "lr": 4e-4, "weight_decay": 1e-2, "patience": 7},
    "gtf": {"epochs": 15, "batch_size": 64, "lr": 3e-4, "weight_decay": 0.0, "patience": 6},
    "mult": {"epochs": 20, "batch_size": 32, "lr": 5e-4, "weight_decay": 1e-2, "patience": 6},
}
# Per-model architecture defaults for training (explicit model_params win). score_clip c bounds the score to
# c * tanh(. / c); 0 (the constructors' default) is the plain linear head. Chosen on validation MAE (README,
# "Defaults chosen on validation"): for gtf no clip (0) beat 3 on MOSI-U validation; for fd_cmdie (fine-tuned
# encoder, seed 0) 3 beat 0 on the selection criterion (validation MAE over all modalities and text alone:
# 0.806 vs 0.819).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "fd_cmdie": {"score_clip": 3.0},
}
FALLBACK_DEFAULTS: dict[str, Any] = {"epochs": 20, "batch_size": 32, "lr": 5e-4, "weight_decay": 1e-2, "patience": 6}
# With the text encoder fine-tuned inside the model (the default) training has three phases (teacher.fit_with_encoder):
# (0) the encoder alone on text with a linear head (BERT fine-tuning's recipe: lr 5e-5, linear warm-up + decay),
# (1) the fusion model with each model's own settings on the tuned encoder's token states (computed once), and
# (2) everything jointly, kept only if it improves validation. Training the random fusion model and the encoder
# jointly from the start converged slowly here (validation MAE 1.04 / 1.07 / 1.02 after 3 epochs of fd_cmdie).
# Phase 0 runs 4 epochs, chosen on validation (fd_cmdie, MOSI-U, seeds 0-2, mean seed-selection criterion): 3 epochs
# 0.827, 4 epochs 0.790, 5 epochs 0.789; 5 was within 0.002 of 4, so the cheaper one (about 1 min per seed) is kept.
TEXT_PHASE: dict[str, Any] = {"epochs": 4, "batch_size": 32, "lr": 1e-3, "encoder_lr": 5e-5, "weight_decay": 1e-2,
                              "patience": 2, "schedule": "linear", "warmup": 0.1, "max_minutes": 8.0}
JOINT_PHASE: dict[str, Any] = {"epochs": 1, "batch_size": 32, "lr": 1e-4, "encoder_lr": 2e-5, "weight_decay": 1e-2,
                               "patience": 1, "schedule": "linear", "warmup": 0.1, "max_minutes": 6.0}
# How every seed and stage is selected (here and in compress): see leak_robust
SELECTION = ("validation MAE averaged over all modalities and text alone: the declare-lab audio/video features are "
             "optimistic on validation (their extractors saw the declare train split), so all-modality validation "
             "MAE alone rewards leaning on them")


def metrics_path(out: str | os.PathLike) -> Path:
    """`teacher.pt` -> `teacher.metrics.json` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".metrics.json")


def train_teacher(model: str = "fd_cmdie", data: str | os.PathLike | None = None, out: str | os.PathLike = "teacher.pt",
                  fmt: str | None = None, seeds: Sequence[int] = (0,), epochs: int | None = None,
                  batch_size: int | None = None, lr: float | None = None, progress: bool = True,
                  splits: DatasetSplits | None = None, text_encoder: str | None = None,
                  text_model: str | os.PathLike | None = None, threads: int | None = 1,
                  cv_fold: tuple[int, int] | None = None, **model_params: Any) -> dict[str, Any]:
    """Train `model` once per seed; save the seed with the best validation MAE to `out`.

    `data` is a dataset path for `edge_msa.data.load_dataset` (default: the MOSI-U file beside the
    checkout); `splits` (a DatasetSplits) may be passed instead, e.g. by tests. `text_encoder="finetune"` fine-tunes
    a BERT-family encoder (`text_model`: a Hugging Face folder; default all-MiniLM-L6-v2) inside the model on token
    ids; "frozen" trains on cached frozen-MiniLM token features (the ablation); None: "finetune", unless `splits`
    carry text features rather than token ids. It shadows fd_cmdie's constructor argument `text_encoder` (the kind
    of its text encoder: linear, transformer or lstm), which train_teacher therefore leaves at its default.
    `threads`: torch CPU threads while training (training.torch_threads: pinned so that results do not depend on the
    core count; 0 or None: torch's own count, left as it is).
    `cv_fold` = (fold, folds) trains on that cross-validation fold of train + valid (`edge_msa.data.cv`: its "test"
    is the held-out part; the real test is not read). Returns the metrics dict that is also written to
    `<out stem>.metrics.json`.
    """
    from .checkpoint import require_writable_pt, save_checkpoint
    from .training import torch_threads

    model_params = check_model_params(model, model_params)  # before the (slow) data load
    checked_seeds(seeds)
    threads = checked_threads(threads)
    _check_source(splits, data=data, fmt=fmt, cv_fold=cv_fold)
    require_writable_pt(out, "teacher")
    text_encoder = _text_encoder_mode(text_encoder, splits, text_model)
    pretrained = _pretrained_text(text_model) if text_encoder == "finetune" else None
    settings = _settings(model, epochs, batch_size, lr, pretrained is not None)
    if splits is None:
        splits = _load(data, fmt, seed=int(seeds[0]), progress=progress,
                       text_encoder=pretrained[1] if pretrained else None, cv_fold=cv_fold)
    _check_splits(splits, pretrained, text_encoder)
    with torch_threads(threads):
        runs = [_train_seed(model, int(seed), splits, model_params, pretrained, settings, progress) for seed in seeds]
        best = min(runs, key=lambda r: r["valid_mae"])  # each seed built its own net, kept as it is
        metrics = _metrics(model, text_encoder, splits, settings, runs, best)
    metrics_json = dumps(metrics, indent=2) + "\n"  # before the first write: no checkpoint without its metrics
    save_checkpoint(out, best["net"], _checkpoint_meta(text_encoder, splits, settings, runs, best, metrics))
    write_text(metrics_path(out), metrics_json)
    return metrics


def check_model_params(model: str, model_params: dict[str, Any]) -> dict[str, Any]:
    """`model_params` over the model's MODEL_DEFAULTS, once the model builds with them (registry.check_build: its
    options, counts and widths, as the factory merges them): train_teacher checks them before any data is read, and
    `edge-msa pipeline` with its other flags, before any stage (they were refused only after its train stage began).
    create_model's text_bert (the config of a text encoder inside the model) is train_teacher's own to set, from
    `text_model`: given here it failed after the data load with create_model's TypeError (two text_bert) or, with a
    frozen encoder, wrapped a random encoder around the text features and failed in its forward (a RuntimeError).
    gtf's score_scale is train_teacher's too: calibrate_scale resets it to 1 after training and fits it on validation,
    so a value given here was dropped without a word (checked after check_options: a model without it is told so)."""
    from .models.registry import check_build, check_options

    if "text_bert" in model_params:
        raise _text_bert_given()
    check_options(model, model_params, taken=inspect.signature(train_teacher).parameters)  # not offering text_encoder
    if "score_scale" in model_params:
        raise InputError(f"{option_name('score_scale')} is fitted on validation by train_teacher; expected no "
                         "score_scale among the model options")
    params = {**MODEL_DEFAULTS.get(model.removesuffix("_tiny"), {}), **model_params}
    check_build(model, params)
    return params


def _text_bert_given() -> InputError:
    """The line for a text_bert among the model params, in its caller's words: Python names the keyword text_model,
    `edge-msa train` its --model-param and --text-model flags (it read `--text-model = a Hugging Face folder`), and
    `edge-msa pipeline`, which fine-tunes the default encoder and has no --text-model, no way to choose one (it
    read `text_model = ...`, a keyword its user cannot pass)."""
    text_bert, text_model = option_name("text_bert"), option_name("text_model")
    if text_model != "text_model":  # train: its --text-model flag
        choose = f" ({text_model} FOLDER chooses the encoder)"
    elif text_bert == "text_bert":  # Python
        choose = " (text_model, a Hugging Face folder, chooses the encoder)"
    else:  # pipeline: the default encoder
        choose = ""
    return InputError(f"{text_bert} is set by train_teacher from the text encoder it fine-tunes; expected no text_bert "
                      f"among the model options{choose}")


def _check_source(splits, **how_to_load: Any) -> None:
    """Given `splits`, the arguments that say how to load them must be unset. Why: they were ignored without a word,
    so `cv_fold=(0, 5)` beside splits trained on the splits' own test rows as if it were a fold."""
    given = [name for name, value in how_to_load.items() if value is not None]
    if splits is not None and given:
        raise InputError(f"train_teacher got splits and also {', '.join(given)}, which only say how to load splits; "
                         "expected splits alone, or data (with fmt / cv_fold) to load them from")


def _text_encoder_mode(text_encoder: str | None, splits, text_model: str | os.PathLike | None) -> str:
    """`text_encoder` checked; None: "finetune", unless given splits carry text features rather than token ids.
    A `text_model` is the encoder to fine-tune: with "frozen" it would go unused, so that is refused."""
    from .spec import read_word

    if text_encoder is None:
        text_encoder = "frozen" if splits is not None and not _token_spec(splits.spec) else "finetune"
    if isinstance(text_encoder, str) and text_encoder.lower() not in TEXT_ENCODERS:
        _refuse_encoder_kind(text_encoder)
    text_encoder = read_word("text_encoder", text_encoder, TEXT_ENCODERS)  # in any case, as compress's words
    if text_encoder == "frozen" and text_model is not None:
        raise InputError(f"{given('text_model', str(text_model))} is an encoder to fine-tune, but the text encoder is "
                         f"frozen (frozen MiniLM features); expected one of {option_name('text_model')} and "
                         f"{given('text_encoder', 'frozen')}")
    return text_encoder


def _refuse_encoder_kind(text_encoder: str) -> None:
    """One line when `text_encoder` is a kind of fd_cmdie's text encoder, its constructor argument of the same name:
    train_teacher's own keyword takes it (Python binds it there, never to model_params), so the kind cannot be set
    here and was told only that it is not finetune or frozen."""
    from .models.encoders import ENCODER_KINDS
    from .models.fd_cmdie import FDCMDIE

    if text_encoder.lower() in ENCODER_KINDS:
        default = inspect.signature(FDCMDIE).parameters["text_encoder"].default
        raise InputError(f"{given('text_encoder', text_encoder)} is a kind of fd_cmdie's text encoder "
                         f"({', '.join(ENCODER_KINDS)}), which train_teacher cannot set: its own text_encoder (how the "
                         f"teacher's text is encoded) shadows that argument, so fd_cmdie trains with its default, "
                         f"{default}; expected one of {', '.join(TEXT_ENCODERS)} (for another kind, build the model "
                         "with models.create_model('fd_cmdie', spec, text_encoder=...) and train it with training.fit)")


def _checkpoint_meta(text_encoder: str, splits, settings: dict, runs: list[dict], best: dict,
                     metrics: dict[str, Any]) -> dict[str, Any]:
    """What the teacher checkpoint records beside its weights: selection, per-seed test scores, data lineage."""
    from .data.lineage import lineage

    return {"dataset": splits.name, "text_encoder": text_encoder, "seeds": [r["seed"] for r in runs],
            "selected_seed": best["seed"], "per_seed_test": {str(r["seed"]): r["test"] for r in runs},
            "train_seconds": {str(r["seed"]): r["train_seconds"] for r in runs}, "params": metrics["params"],
            "train_settings": settings["fusion"], "data": lineage(splits), "created": time.time()}


def _check_splits(splits, pretrained: Pretrained | None, text_encoder: str) -> None:
    """Given splits must carry what the model reads: token ids of the encoder's own tokenizer, or text features."""
    if pretrained and splits.spec.front_end("text") != pretrained[1].name:
        raise InputError(f"the given splits were tokenized by {splits.spec.front_end('text')} but the text encoder's "
                         f"tokenizer is {pretrained[1].name}; tokenize them with the encoder's tokenizer.json")
    if _token_spec(splits.spec) != bool(pretrained):
        raise InputError(f"text_encoder='{text_encoder}' needs {'token ids' if pretrained else 'text features'} but "
                         f"the given splits carry {'token ids' if _token_spec(splits.spec) else 'text features'} "
                         f"(text front end '{splits.spec.front_end('text')}')")
    splits.train.check_spec(splits.spec)
    splits.require_rows()


def _settings(model: str, epochs: int | None, batch_size: int | None, lr: float | None,
              with_encoder: bool) -> dict[str, dict[str, Any]]:
    """Training settings per phase: "fusion" (the model's defaults < flags) and, with a pretrained encoder, the
    "text" and "joint" phases (epochs capped by --epochs). Each is checked as a TrainConfig here, so that an
    out-of-range flag fails before the (slow) data load instead of after it."""
    from .training import TrainConfig

    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    fusion = {**TRAIN_DEFAULTS.get(model.removesuffix("_tiny"), FALLBACK_DEFAULTS),
              **{k: v for k, v in overrides.items() if v is not None}}
    phases = {"fusion": fusion}
    if with_encoder:
        phases.update({name: {**phase, "epochs": min(phase["epochs"], epochs or phase["epochs"])}
                       for name, phase in (("text", TEXT_PHASE), ("joint", JOINT_PHASE))})
    for values in phases.values():
        TrainConfig(**values)
    return phases


def _train_seed(model: str, seed: int, splits, model_params: dict[str, Any], pretrained: Pretrained | None,
                settings: dict, progress: bool) -> dict[str, Any]:
    """One seed: build, train (three phases with a pretrained encoder), calibrate, score the test split."""
    import torch

    from .models.encoders import fit_input_norms
    from .models.with_text import WithTextEncoder
    from .training import TrainConfig, fit, predict

    torch.manual_seed(seed)
    net = _build(model, splits.spec, model_params, pretrained)
    configs = {name: TrainConfig(seed=seed, **values) for name, values in settings.items()}
    if isinstance(net, WithTextEncoder):  # built around the pretrained encoder
        result = fit_with_encoder(net, splits, configs, progress, f"{model} seed {seed}")
    else:
        fit_input_norms(net, splits.train.features, splits.train.lengths)
        result = fit(net, splits.train, splits.valid, configs["fusion"], progress=progress, desc=f"{model} seed {seed}")
    valid_mae = calibrate_scale(net, splits.valid) if "score_scale" in net.config_params else result.best_valid_mae
    # no metric is None: the splits were checked (require_rows), so the test split holds non-zero labels
    test = cast("dict[str, float]", msa_metrics(predict(net, splits.test), splits.test.labels))
    return {"seed": seed, "net": net, "best_epoch": result.best_epoch, "valid_mae": valid_mae,
            "kept_phase": result.history[result.best_epoch].get("phase", "single") if result.history else None,
            "train_seconds": round(result.seconds, 1), "test": {k: float(test[k]) for k in METRIC_KEYS}}


def _metrics(model: str, text_encoder: str, splits, settings: dict, runs: list[dict], best: dict) -> dict[str, Any]:
    """What <out stem>.metrics.json holds: the kept seed's test metrics, per-seed rows and mean/std over seeds."""
    spread = mean_std([r["test"] for r in runs])
    phases = ({"text_phase": settings["text"], "joint_phase": settings["joint"], "selection": SELECTION}
              if "text" in settings else {})
    return {
        **best["test"], "selected_seed": best["seed"], "selection": "lowest validation MAE over seeds",
        "params": sum(p.numel() for p in best["net"].parameters()), "model": model, "text_encoder": text_encoder,
        "dataset": splits.name, "train_settings": {**settings["fusion"], **phases},
        "model_params": dict(best["net"].config_params),
        "seeds": {str(r["seed"]): {**r["test"], "valid_mae": r["valid_mae"], "best_epoch": r["best_epoch"],
                                   "kept_phase": r["kept_phase"], "train_seconds": r["train_seconds"]} for r in runs},
        "mean": {k: v["mean"] for k, v in spread.items()}, "std": {k: v["std"] for k, v in spread.items()},
        "train_seconds": {str(r["seed"]): r["train_seconds"] for r in runs}, "host": training_host(),
    }


def calibrate_scale(net: MSAModel, valid: FeatureSet,
                    grid: Sequence[float] = tuple(np.arange(0.5, 1.51, 0.05))) -> float:
    """Set `net.config_params["score_scale"]` to the grid value with the lowest validation MAE; return that MAE.

    Why: with modality/input dropout 0.7 the model trains mostly on text alone, and at evaluation (all
    modalities, no dropout) its scores come out over-spread; on MOSI-U gtf's best scale is ~0.8 on validation
    and on test alike. One scalar fitted on validation, so the test split stays untouched.
    """
    from .training import predict

    net.config_params["score_scale"] = 1.0
    pred = predict(net, valid)  # (N,) unscaled
    maes = [float(np.mean(np.abs(a * pred - valid.labels))) for a in grid]
    best = int(np.argmin(maes))
    net.config_params["score_scale"] = round(float(grid[best]), 2)
    return maes[best]


def _load(data, fmt, seed: int, progress: bool, text_encoder=None, cv_fold: tuple[int, int] | None = None):
    from .data import load_dataset
    from .paths import default_mosi_path

    return load_dataset(Path(data) if data is not None else default_mosi_path(), fmt=fmt, seed=seed, progress=progress,
                        text_encoder=text_encoder, cv_fold=cv_fold)


def _token_spec(spec) -> bool:
    from .features.text import TOKENS_PREFIX

    return spec.front_end("text").startswith(TOKENS_PREFIX)


def fit_with_encoder(net: WithTextEncoder, splits: DatasetSplits, phases: dict[str, TrainConfig], progress: bool,
                     desc: str) -> TrainResult:
    """Phases text -> fusion -> joint (see TEXT_PHASE); each selected on `leak_robust(valid)`. The joint phase is
    kept only if it beats the fusion phase there. Returns a TrainResult over all phases (rows name their phase)."""
    import copy

    from .models.encoders import fit_input_norms
    from .models.with_text import TextProbe
    from .training import TrainResult, fit

    valid = leak_robust(splits.valid)
    text = fit(TextProbe(net.bert), splits.train, restrict_set(splits.valid, ("text",)), phases["text"],
               progress=progress, desc=f"{desc} (text encoder)")
    train_states, valid_states = (encoder_states(net.bert, fs, progress, f"{desc} (encoder states, {name})")
                                  for name, fs in (("train", splits.train), ("valid", valid)))
    fit_input_norms(net.fusion, train_states.features, train_states.lengths)
    fusion = fit(net.fusion, train_states, valid_states, phases["fusion"], progress=progress,
                 desc=f"{desc} (fusion on encoder states)")
    kept = copy.deepcopy(net.state_dict())
    joint = fit(net, splits.train, valid, phases["joint"], progress=progress, desc=f"{desc} (joint)")
    if joint.best_valid_mae >= fusion.best_valid_mae:
        net.load_state_dict(kept)
    best = min(fusion, joint, key=lambda r: r.best_valid_mae)
    history = [{**h, "phase": name} for name, r in (("text", text), ("fusion", fusion), ("joint", joint))
               for h in r.history]
    offset = len(text.history) + (len(fusion.history) if best is joint else 0)
    return TrainResult(best.best_epoch + offset, best.best_valid_mae, history,
                       text.seconds + fusion.seconds + joint.seconds)


def leak_robust(valid: FeatureSet) -> FeatureSet:
    """Validation rows twice, with all modalities and with text alone: its MAE is the mean of the two (SELECTION)."""
    from .data.assemble import concat_sets

    return concat_sets([valid, restrict_set(valid, ("text",))])


def encoder_states(bert: BertEncoder, fs: FeatureSet, progress: bool = False,
                   desc: str = "encoder states") -> FeatureSet:
    """A copy of FeatureSet `fs` whose text is the encoder's token states (B, L, H) instead of token ids, computed
    on every core (training.inference_threads)."""
    import torch
    from tqdm.auto import tqdm

    from .data.base import FeatureSet
    from .models.with_text import token_ids
    from .training import inference_threads, iterate, torch_threads

    bert.eval()
    with torch.no_grad(), torch_threads(inference_threads()):
        batches = tqdm(iterate(fs, 64), total=-(-len(fs) // 64), desc=desc, leave=False, disable=not progress)
        chunks = [bert(token_ids(b["text"]), b["text_mask"]).numpy() for b in batches]
    width = max(c.shape[1] for c in chunks)
    states = np.concatenate([np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0))) for c in chunks])  # (N, L, H)
    return FeatureSet({**fs.features, "text": states}, fs.lengths, fs.labels, fs.ids, fs.texts)


def _pretrained_text(text_model: str | os.PathLike | None) -> Pretrained:
    """(BertEncoder with pretrained weights, TokenIds over its tokenizer JSON) from a Hugging Face folder
    (text_bert.LAYOUT: a vocab.txt becomes tokenizer.json text, kept in the cache); the tokenizer must cover exactly
    the encoder's vocabulary."""
    from .features.text import DEFAULT_MAX_LEN, TokenIds, tokenizer_file
    from .models.text_bert import TOKENIZER_FILES, check_tokenizer_fits, default_model_dir, folder_file
    from .models.text_bert import load_pretrained, tokenizer_json

    folder = Path(text_model) if text_model else default_model_dir()
    encoder = load_pretrained(folder, max_positions=DEFAULT_MAX_LEN)
    # texts are cut to the encoder's positions (with a warning), never past them
    front = TokenIds(tokenizer_file(tokenizer_json(folder)), max_len=int(encoder.config["max_positions"]))
    check_tokenizer_fits(front.vocab_size, encoder, str(folder_file(folder, TOKENIZER_FILES)))
    return encoder, front


def _build(model: str, spec: FeatureSpec, model_params: dict[str, Any], pretrained: Pretrained | None) -> MSAModel:
    """The model; with a pretrained text encoder, wrapped around it (weights copied in, tokenizer attached)."""
    from .models import create_model
    from .models.with_text import WithTextEncoder

    if pretrained is None:
        return create_model(model, spec, **model_params)
    encoder, front = pretrained
    net = create_model(model, spec, text_bert=dict(encoder.config), **model_params)
    assert isinstance(net, WithTextEncoder)  # create_model wraps a model built with text_bert
    net.bert.load_state_dict(encoder.state_dict())
    net.tokenizer_path = front.tokenizer_path
    return net
