"""The one training loop for every model on a FeatureSet (teachers, students, distillation, the skip gate): the loss
is a parameter. Its optimiser step (`train_epoch`) also drives the student text encoder's KD over raw token rows
(compress/text.py), whose batching and schedule differ.

Early stopping on validation MAE, AdamW, deterministic with a seed, a progress bar.
"""
from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .data.base import FeatureSet
from .errors import InputError, check_range, checked_seeds
from .models.base import Batch, MSAModel
from .spec import MODALITIES

# (model fit trains, its output, the batch) -> (loss, parts): the model is whatever fit got (an MSAModel, a Distiller)
LossFn = Callable[[Any, dict, Batch], "tuple[torch.Tensor, dict[str, float]]"]


def modality_tensors(x: np.ndarray, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, d) features and (B,) valid lengths -> the float tensor and its (B, L) bool mask (True = valid)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # (B, L, d)
    return tensor, torch.arange(tensor.shape[1])[None, :] < torch.from_numpy(np.asarray(lengths))[:, None]


def to_batch(fs: FeatureSet, index: np.ndarray) -> Batch:
    """Tensors for samples `index`, trimmed to the longest valid sequence per modality in the batch."""
    batch: Batch = {}
    for m in MODALITIES:
        lengths = fs.lengths[m][index]
        width = max(int(lengths.max()), 1)
        batch[m], batch[f"{m}_mask"] = modality_tensors(fs.features[m][index, :width], lengths)
    batch["label"] = torch.from_numpy(fs.labels[index].astype(np.float32))  # (B,)
    batch["index"] = torch.from_numpy(np.asarray(index, dtype=np.int64))  # (B,) rows of fs, for per-sample targets
    return batch


def iterate(fs: FeatureSet, batch_size: int, shuffle: bool = False,
            rng: np.random.Generator | None = None) -> Iterator[Batch]:
    """Batches of `fs` in order, or shuffled by `rng` (required: training is deterministic with a seed)."""
    if not shuffle:
        order = np.arange(len(fs))
    elif rng is None:
        raise ValueError("iterate(shuffle=True) got no rng; expected the seeded np.random.Generator to shuffle with")
    else:
        order = rng.permutation(len(fs))
    for start in range(0, len(fs), batch_size):
        yield to_batch(fs, order[start:start + batch_size])


@torch.no_grad()
def predict(model: torch.nn.Module, fs: FeatureSet, batch_size: int = 256) -> np.ndarray:
    """Scores for every sample of `fs` (model in eval mode)."""
    model.eval()
    return np.concatenate([model(b)["score"].float().numpy() for b in iterate(fs, batch_size)])


def default_loss(model: MSAModel, out: dict, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    return model.loss(out, batch)


def check_max_minutes(max_minutes: float | None) -> None:
    """The one rule for a training stage's time limit, TrainConfig's and compress's (CompressOptions): None or inf is
    no limit, else a number > 0 (TrainConfig says why). Compress had its own copy in other words, which took True as
    a limit and failed on '5' with a bare TypeError."""
    if max_minutes is not None:  # None: no limit
        check_range({"max_minutes": max_minutes}, 0, strict=True, no_limit=True)


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-2
    patience: int = 8
    seed: int = 0
    grad_clip: float = 1.0
    max_minutes: float | None = None
    encoder_lr: float | None = None  # learning rate of text-encoder (BertEncoder) weights; None = lr
    schedule: str = "constant"  # or "linear": warm up over `warmup` of the steps, then decay linearly to 0
    warmup: float = 0.1

    def __post_init__(self) -> None:
        """Counts whole (the CLI parses them with type=int; from Python epochs 2.5 was a TypeError from range() in
        fit, after the data load), every knob named as given. The knobs no flag sets were taken as given: max_minutes
        -1 stopped after the first epoch without a word (0 was no limit, as None is), grad_clip -1 clipped to a
        negative norm, which flips every gradient (gradient ascent), a NaN grad_clip made NaN weights blamed on the
        learning rate, and a negative or NaN weight_decay a ValueError from AdamW, all after the data load; a seed
        of 0.5 or -1 failed inside numpy's seeding when fit began, a warmup of '0.1' with a bare TypeError here."""
        counts = {"epochs": self.epochs, "batch_size": self.batch_size, "patience": self.patience}
        check_range(counts, 1, strict=False, whole=True)
        lrs = {"lr": self.lr, **({} if self.encoder_lr is None else {"encoder_lr": self.encoder_lr})}  # None: lr's
        check_range(lrs, 0, strict=True)
        check_range({"weight_decay": self.weight_decay, "grad_clip": self.grad_clip}, 0, strict=False)  # clip 0: off
        check_max_minutes(self.max_minutes)
        checked_seeds((self.seed,), "seed")
        check_range({"warmup": self.warmup}, 0, strict=False)  # its upper bound (< 1) is told with the schedule
        if self.schedule not in ("constant", "linear") or not 0 <= self.warmup < 1:
            raise InputError(f"schedule '{self.schedule}' / warmup {self.warmup}; expected constant or linear, "
                             "warmup in [0, 1)")


@dataclass
class TrainResult:
    best_epoch: int
    best_valid_mae: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def param_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """Text-encoder weights (every BertEncoder inside the model) at `encoder_lr`, the rest at `lr`: a pretrained
    encoder is fine-tuned gently while the fusion layers, trained from scratch, move fast."""
    from .models.text_bert import BertEncoder

    encoder = {id(p) for m in model.modules() if isinstance(m, BertEncoder) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in encoder], "lr": config.lr},
              {"params": [p for p in trainable if id(p) in encoder], "lr": config.encoder_lr or config.lr}]
    return [g for g in groups if g["params"]]


def lr_schedule(opt: torch.optim.Optimizer, config: TrainConfig,
                steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant, or linear warm-up then linear decay to 0 over the whole run (BERT fine-tuning's schedule)."""
    total = max(config.epochs * steps_per_epoch, 1)
    warm = int(config.warmup * total)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(total - warm, 1))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch on `n` CPU threads (None: the count it has), then restore the old count. Training pins
    it (1 by default) so that a seed's result does not depend on the machine's core count: float sums reduce in
    another order on 2 threads (the same teacher seed gave MAE 0.807 on 2 threads, 0.803 on 1), and 2 threads bought
    no measurable time on the 2-core VM (the main job took 26.9 min with them, 27.0 without)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n or old)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def inference_threads() -> int:
    """Threads for the no-grad encoder passes over many texts (the teacher's states for text KD and for the fusion
    phase): OMP_NUM_THREADS where set, else every core this process may use. Unlike training, these passes gave
    bit-identical states on 1 and 2 threads on the 2-core VM, in 0.55x the time (1,500 MOSEI-length texts through
    MiniLM-L6: 38 s on 1, 20 s on 2), so the thread count buys time without changing the model."""
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def valid_mae(model: torch.nn.Module, valid: FeatureSet) -> float:
    """The model's mean absolute error on `valid`: the quantity every stage selects on."""
    return float(np.mean(np.abs(predict(model, valid) - valid.labels)))


def train_epoch(batches: Iterable[Any], batch_loss: Callable[[Any], tuple[torch.Tensor, dict[str, float]]],
                opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                params: list[torch.nn.Parameter], grad_clip: float) -> dict[str, float]:
    """The optimiser step shared by every training loop (fit, and the text encoder's KD over token rows in
    compress/text.py): per batch, `batch_loss(batch) -> (loss, parts)`, one optimiser and one scheduler step
    (gradients clipped to `grad_clip` over `params`, 0 = off). Returns the epoch's mean of each part; a progress
    bar as `batches` shows their running means."""
    totals: dict[str, float] = {}
    steps = 0
    show = getattr(batches, "set_postfix", None)
    for batch in batches:
        loss, parts = batch_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        steps += 1
        for k, v in parts.items():
            totals[k] = totals.get(k, 0.0) + v
        if show:
            show({k: f"{v / steps:.4f}" for k, v in totals.items()}, refresh=False)
    return {k: v / max(steps, 1) for k, v in totals.items()}


def fit(model: torch.nn.Module, train: FeatureSet, valid: FeatureSet, config: TrainConfig,
        loss_fn: LossFn = default_loss, progress: bool = True, desc: str = "train",
        keep_start: bool = False) -> TrainResult:
    """Train in place; on return the model holds the weights of the best validation epoch. With `keep_start` the
    weights it came in with compete as epoch -1, so a later stage (fine-tuning after pruning) never ends worse on
    validation than it began: early stopping that may stop before the first epoch."""
    from tqdm.auto import tqdm

    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    sched = lr_schedule(opt, config, steps_per_epoch=steps_per_epoch)
    best_state, best_mae, best_epoch, bad = None, float("inf"), -1, 0
    if keep_start:
        best_state, best_mae = copy.deepcopy(model.state_dict()), valid_mae(model, valid)
    history: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        batches = tqdm(iterate(train, config.batch_size, shuffle=True, rng=rng), total=steps_per_epoch, leave=False,
                       desc=f"{desc} epoch {epoch + 1}/{config.epochs}", disable=not progress)  # long epochs show life
        model.train()
        parts = train_epoch(batches, lambda batch: loss_fn(model, model(batch), batch), opt, sched, params,
                            config.grad_clip)
        epoch_mae = valid_mae(model, valid)
        history.append({"epoch": epoch, "valid_mae": epoch_mae, **parts})
        bar.set_postfix(valid_mae=f"{epoch_mae:.3f}", best=f"{min(best_mae, epoch_mae):.3f}")
        if epoch_mae < best_mae - 1e-4:
            best_mae, best_epoch, bad = epoch_mae, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        minutes = (time.perf_counter() - start) / 60
        if bad >= config.patience or (config.max_minutes and minutes > config.max_minutes):
            break
    if best_state is None:  # no epoch scored a finite MAE (with keep_start the start is one): the weights are NaN
        raise InputError(f"{desc}: the validation MAE was {history[-1]['valid_mae']} after every epoch, so training "
                         f"diverged at learning rate {config.lr}; expected a smaller learning rate")
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch, best_mae, history, time.perf_counter() - start)
