"""`compress(teacher.pt) -> student.pt + report`: load -> text -> init -> distill -> prune -> finetune -> gate ->
evaluate.

Each model-producing stage of a seed saves `<out stem>.stages/<name>[.seedN].pt` beside `out` (a failed later stage
loses nothing; one folder per output, so repeated runs replace their stage files instead of piling up, and a finished
run removes those of an earlier run it did not write); the final checkpoint and reports are written atomically, and
the checkpoint records the sha256 of each seed's gate-stage student, so a stage file that a later, unfinished run
into the same `out` replaced is told from its own (selection_gap checks it). The text stage (a teacher with its own
text encoder only) runs once for all seeds; multi-seed runs repeat init..gate per seed, keep the seed with the lowest
validation MAE (teacher.SELECTION) and report mean +- std over seeds.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edge_msa.atomic import write_text
from edge_msa.benchmarks.timing import SIDE_BY_SIDE
from edge_msa.checkpoint import data_record, load_checkpoint, require_writable_pt, save_checkpoint
from edge_msa.data.base import DatasetSplits, FeatureSet
from edge_msa.data.lineage import lineage, rebuild_splits
from edge_msa.digest import file_sha256
from edge_msa.errors import ArtifactError, InputError
from edge_msa.metrics import msa_metrics
from edge_msa.models import create_model
from edge_msa.models.base import MSAModel
from edge_msa.models.encoders import fit_input_norms
from edge_msa.models.student import run_with_skipping
from edge_msa.models.text_bert import BertEncoder
from edge_msa.models.with_text import (StudentModel, WithTextEncoder, fusion_of, student_of, text_front_end,
                                     tokenizer_of)
from edge_msa.spec import SKIPPABLE, FeatureSpec
from edge_msa.teacher import leak_robust
from edge_msa.training import TrainConfig, fit, predict, to_batch, torch_threads, valid_mae

from . import measure
from .augment import with_augmented
from .distill import Distiller, TeacherTargets, init_from_teacher, kd_loss, teacher_targets
from .options import CompressOptions
from .prune import check_ratio, prune_student
from .results import CompressReport, Measurements, SeedRun, SeedTest, select_seed
from .skip import SkipCache, calibrate, predict_with_skipping, skip_cache, skip_stats, train_gate
from .text import check_shape, student_text_encoder, transfer_texts


def report_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """`student.pt` -> (`student.report.json`, `student.report.md`) beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".report.json"), out.with_name(out.stem + ".report.md")


STAGES = ("init", "distill", "prune", "finetune", "gate")  # the model-producing stages of a seed, in order
STAGE_FILE = re.compile(rf"(?:{'|'.join(STAGES)})(?:\.seed\d+)?\.pt")
SEED_STUDENTS = "seed_students_sha256"  # student meta: {seed: sha256 of its gate-stage file}


def stage_path(out: Path, stage: str, seed: int | None = None) -> Path:
    tag = f".seed{seed}" if seed is not None else ""
    return out.with_name(f"{out.stem}.stages") / f"{stage}{tag}.pt"


def stage_files(out: Path) -> list[Path]:
    """The stage files in `out`'s stages folder, whichever run wrote them (other files there are not ours)."""
    folder = stage_path(out, STAGES[0]).parent
    return sorted(p for p in folder.glob("*.pt") if STAGE_FILE.fullmatch(p.name)) if folder.is_dir() else []


class _Progress:
    """One bar over the stages plus a one-line summary per stage (silent with progress=False)."""

    def __init__(self, enabled: bool, total: int) -> None:
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(total=total, desc="compress", unit="stage", disable=not enabled, file=sys.stderr)
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.name, self.t_stage = name, time.perf_counter()
        self.bar.set_description(f"compress: {name}")

    def done(self, summary: str) -> None:
        seconds = time.perf_counter() - self.t_stage
        self.times[self.name] = self.times.get(self.name, 0.0) + seconds
        if self.enabled:
            self.bar.write(f"[compress] {self.name} ({seconds:.1f}s): {summary}", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.t0

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()  # on an error too, so its `error:` line starts a line of its own


def _train_config(options: CompressOptions, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=options.batch_size, lr=options.lr, patience=options.patience,
                       seed=seed, max_minutes=options.max_minutes, encoder_lr=options.text_lr)


def fusion_batch(model: torch.nn.Module, batch: dict) -> dict:
    """`batch` as the fusion model sees it: text token ids replaced by the text encoder's states."""
    if not isinstance(model, WithTextEncoder):
        return batch
    with torch.no_grad():
        return {**batch, "text": model.states(batch["text"], batch["text_mask"])}


def _text_stage(teacher: WithTextEncoder, splits: DatasetSplits, options: CompressOptions,
                progress: bool) -> tuple[BertEncoder, dict[str, Any]]:
    """The student's text encoder from the teacher's (compress/text.py), once for all seeds; its shape was checked
    against the teacher's encoder (check_shape) as the teacher loaded."""
    tokenizer = teacher.tokenizer_path
    assert tokenizer is not None  # load_checkpoint gives a model with its own text encoder its checkpoint's tokenizer
    texts = transfer_texts(splits, options.transfer_path(), tokenizer, splits.spec.max_len("text"), progress)
    if options.text_augment:
        texts = with_augmented(texts, splits.name, options.text_augment, tokenizer,
                               teacher.bert.word.weight, options.seeds[0])
    encoder, info = student_text_encoder(teacher, texts, options.text_shape, splits.spec.max_len("text"),
                                         options.text_kd, progress)
    return encoder, {**info, "transfer_sources": texts["sources"]}


def _new_student(options: CompressOptions, splits: DatasetSplits, teacher: MSAModel,
                 text_encoder: BertEncoder | None) -> StudentModel:
    """The student (fusion part from the registry); with the distilled text encoder inside when there is one."""
    extra = {"text_bert": dict(text_encoder.config)} if text_encoder is not None else {}
    student = create_model(options.student, splits.spec, share=options.share, **options.student_params, **extra)
    if text_encoder is None:
        return student_of(student)  # the Student itself, typed as one
    assert isinstance(student, WithTextEncoder)  # create_model wraps a model built with text_bert
    student.bert.load_state_dict(text_encoder.state_dict())
    student.tokenizer_path = tokenizer_of(teacher)  # the teacher's: the student reads the same token ids
    return student


def _check_rebuild(path: Path, model: StudentModel, batch: dict) -> None:
    """A pruned checkpoint must rebuild from config + weights alone and give the same scores."""
    again, _ = load_checkpoint(path)
    model.eval()
    with torch.no_grad():
        diff = float((again(batch)["score"] - model(batch)["score"]).abs().max())
    if diff > 1e-5:
        raise ArtifactError(f"'{path}' does not rebuild to the pruned student (max |Δscore| = {diff:.2e}); "
                            "the pruned widths were not written back into the config")


def _one_seed(seed: int, teacher: MSAModel, splits: DatasetSplits, targets: TeacherTargets, options: CompressOptions,
              out: Path, stage_seed: int | None, bar: _Progress, progress: bool,
              text_encoder: BertEncoder | None = None) -> SeedRun:
    """Stages init..gate for one seed; returns the student and what each stage did. Every stage and the seed are
    selected as the teacher's are (teacher.SELECTION): on validation with all modalities and with text alone."""
    torch.manual_seed(seed)
    selection = leak_robust(splits.valid)
    bar.start("init")
    student = _new_student(options, splits, teacher, text_encoder)
    checkpoints: list[Path] = []

    def save(stage: str) -> Path:
        checkpoints.append(save_checkpoint(stage_path(out, stage, stage_seed), student, {"stage": stage, "seed": seed}))
        return checkpoints[-1]

    fit_input_norms(student, splits.train.features, splits.train.lengths)
    copied = init_from_teacher(student_of(student), fusion_of(teacher))
    save("init")
    bar.done(f"student '{options.student}' share={options.share}, {sum(p.numel() for p in student.parameters()):,} "
             f"params; copied from teacher: {', '.join(copied) or 'nothing (no matching shapes)'}")

    bar.start("distill")
    distiller = Distiller(student, int(targets.z.shape[1]))
    loss_fn = kd_loss(targets, options)
    res = fit(distiller, splits.train, selection, _train_config(options, options.epochs, seed), loss_fn=loss_fn,
              progress=progress, desc=f"distill seed {seed}")
    save("distill")
    bar.done(f"best valid MAE {res.best_valid_mae:.4f} at epoch {res.best_epoch} ({len(res.history)} epochs)")

    bar.start("prune")
    assert options.prune_ratio is not None  # options.for_teacher resolved it
    pruning, summary = _prune(student, splits.train, options.prune_ratio, save)
    bar.done(summary)

    bar.start("finetune")
    res_ft = fit(distiller, splits.train, selection, _train_config(options, options.finetune_epochs, seed + 1),
                 loss_fn=loss_fn, progress=progress, desc=f"finetune seed {seed}", keep_start=True)
    save("finetune")
    kept = f"epoch {res_ft.best_epoch}" if res_ft.best_epoch >= 0 else "the stage's start (no epoch beat it)"
    bar.done(f"best valid MAE {res_ft.best_valid_mae:.4f} at {kept}")

    bar.start("gate")
    gate, calib, macs_step = _gate(student, splits, options, seed, progress)
    save("gate")
    bar.done(f"thresholds {[round(t, 4) for t in calib['thresholds']]} ({calib['mode']} {calib['value']}) on "
             f"{calib['split']} (n={calib['n']}): saving {calib['saved_fraction']:.3f}, decisions flipped "
             f"{calib['flip_rate']:.4f}")
    return SeedRun(seed, student, valid_mae(student, selection), copied, pruning, gate, calib, macs_step,
                   {"distill_epochs": len(res.history), "finetune_epochs": len(res_ft.history),
                    "finetune_kept_epoch": res_ft.best_epoch}, checkpoints)


def _prune(student: StudentModel, train: FeatureSet, ratio: float,
           save: Callable[[str], Path]) -> tuple[dict[str, Any], str]:
    """Prune the student's fusion part in place (prune.prune_student), save it and check that the saved checkpoint
    rebuilds to it; returns the widths before/after and the stage's summary line."""
    example = {k: v for k, v in to_batch(train, np.arange(min(8, len(train)))).items() if k != "index"}
    n_before = sum(p.numel() for p in student.parameters())
    pruning = prune_student(student_of(student), fusion_batch(student, example), ratio)
    _check_rebuild(save("prune"), student, example)
    n_after = sum(p.numel() for p in student.parameters())
    return pruning, f"ratio {ratio}: {n_before:,} -> {n_after:,} params; {pruning['after']}"


def _gate(student: StudentModel, splits: DatasetSplits, options: CompressOptions, seed: int,
          progress: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """Train the skip gate, then calibrate its thresholds (written into the student's config) on the
    calibration split(s); returns the gate's training record, the calibration and the MACs per step."""
    gate = train_gate(student, splits.train, splits.valid, options.gate_epochs, options.skip_eps, seed, progress,
                      options.max_minutes)
    macs_step = _macs_per_step(student, splits)
    mode, value = options.skip_mode
    calib_sets = [splits.valid] if options.calibrate_on == "valid" else [splits.train, splits.valid]
    cache = SkipCache.concat([skip_cache(student, fs, macs_step) for fs in calib_sets])
    calib = calibrate(cache, mode, value, split=options.calibrate_on)
    student.config_params["skip_thresholds"] = list(calib["thresholds"])
    return gate, calib, macs_step


def _macs_per_step(student: StudentModel, splits: DatasetSplits) -> dict[str, float]:
    """Encoder MACs per audio/video step, and the gate's MACs per input ("gate")."""
    batch = measure.one_step_batch(splits.valid)
    parts = measure.count_student_parts(student, batch)
    return {**{m: parts[f"encode_{m}"]["macs"] for m in SKIPPABLE}, "gate": parts["gate"]["macs"]}


def compress(teacher_path: str | os.PathLike, data: str | os.PathLike | None = None,
             out: str | os.PathLike = "student.pt", options: CompressOptions | None = None, progress: bool = True,
             splits: DatasetSplits | None = None, **overrides: Any) -> dict[str, Any]:
    """Compress a teacher checkpoint into a student; returns the report dict (also written as JSON + Markdown).

    `options` (or keyword overrides of CompressOptions, not both) set every knob; `splits` may replace `data` (tests).
    """
    if options is not None and overrides:
        raise TypeError(f"compress() got options and overrides {sorted(overrides)}; pass one of them")
    options = options or CompressOptions.build(**overrides)
    out = require_writable_pt(out, "student")
    _check_not_the_teacher(Path(teacher_path), out)
    started = time.time()
    try:
        with torch_threads(options.threads), _Progress(progress, 3 + 5 * len(options.seeds)) as bar:
            return _compress(Path(teacher_path), data, out, options, progress, splits, bar)
    except KeyboardInterrupt as exc:  # the CLI's `interrupted` line adds what is kept on purpose
        exc.args = exc.args or _kept_on_interrupt(out, started)
        raise


def _kept_on_interrupt(out: Path, started: float) -> tuple[str, ...]:
    """An interrupted run keeps the stages it finished (each written whole, for a look or a rerun of what failed);
    they are not the stages of an `out` an earlier run wrote, which stays as it was."""
    kept = [p.name for p in stage_files(out) if p.stat().st_mtime >= started - 1.0]  # 1 s: coarse file clocks
    if not kept:
        return ()
    return (f"the stages that finished stay in {stage_path(out, STAGES[0]).parent}/ ({', '.join(kept)}); {out} was "
            "not written",)


def _drop_stale_stages(out: Path, runs: list[SeedRun]) -> None:
    """After a finished run, remove the stage files of earlier runs into the same `out` that it did not write (e.g.
    gate.seed2.pt after `--seeds 0 1 2` became `--seeds 0`), so the folder holds this student's stages alone."""
    written = {path.name for run in runs for path in run.checkpoints}
    for path in stage_files(out):
        if path.name not in written:
            path.unlink(missing_ok=True)


def _check_not_the_teacher(teacher_path: Path, out: Path) -> None:
    """Refused before any work: the student would replace the teacher it is made from (`compress t.pt --out t.pt`,
    or an --out that is the same file by another path: ./t.pt, a symbolic or hard link)."""
    same = out.resolve() == teacher_path.resolve() or (out.exists() and teacher_path.exists()
                                                       and os.path.samefile(out, teacher_path))
    if same:
        raise InputError(f"--out '{out}' is the teacher '{teacher_path}' itself, which the student would overwrite; "
                         "expected another path for the student")


def _compress(teacher_path: Path, data: str | os.PathLike | None, out: Path, options: CompressOptions, progress: bool,
              splits: DatasetSplits | None, bar: _Progress) -> dict[str, Any]:
    """load -> text encoder -> stages per seed -> evaluate -> write; returns the report as written. `bar` has
    one step per stage: load, text, 5 per seed, evaluate."""
    bar.start("load")
    teacher, meta = _load_teacher(teacher_path)
    options = options.for_teacher(own_text_encoder=isinstance(teacher, WithTextEncoder))
    _check_prune_ratio(options, teacher.spec)  # before the data load and the teacher's pass over it, as is
    if isinstance(teacher, WithTextEncoder):  # the student's text shape, cut from the teacher's encoder
        check_shape(teacher.bert, options.text_shape)
    splits, targets = _load_data(teacher, meta, data, splits, bar, progress)
    if not any(fs.lengths[m].any() for fs in (splits.train, splits.valid, splits.test) for m in SKIPPABLE):
        options.warn_nothing_to_skip()  # text-only data (MOSEI-T), before any training

    bar.start("text")
    no_text: dict[str, Any] = {"note": "the teacher has no text encoder of its own (frozen features)"}
    text_encoder, text_info = (_text_stage(teacher, splits, options, progress) if isinstance(teacher, WithTextEncoder)
                               else (None, no_text))
    bar.done(f"{text_info.get('params', {})}; vocabulary {text_info.get('vocabulary', {}).get('kept', '-')} rows"
             if text_encoder is not None else text_info["note"])

    multi = len(options.seeds) > 1
    runs = [_one_seed(seed, teacher, splits, targets, options, out, seed if multi else None, bar, progress,
                      text_encoder) for seed in options.seeds]
    best = select_seed(runs)

    bar.start("evaluate")  # its time is in timing.total_s, not in timing.stages_s
    tests = [_test_seed(run, splits.test) for run in runs]
    chosen = tests[runs.index(best)]
    measured = _measure(teacher, best.student, chosen, splits, options)
    report, json_text, md_text = CompressReport(out, teacher_path, teacher.model_name, options, splits, runs, best,
                                                tests, measured, text_info, bar.times, bar.close()).render()
    save_checkpoint(out, best.student, {"teacher": str(teacher_path), "data": lineage(splits), "seed": best.seed,
                                        "metrics": chosen.metrics, "metrics_skip": chosen.metrics_skip,
                                        "skip_thresholds": best.calibration["thresholds"],
                                        SEED_STUDENTS: {str(r.seed): file_sha256(r.checkpoints[-1])  # gate: the last
                                                        for r in runs}})
    for path, text in zip(report_paths(out), (json_text, md_text)):  # each atomically
        write_text(path, text)
    _drop_stale_stages(out, runs)
    return report


def _load_teacher(teacher_path: Path) -> tuple[MSAModel, dict[str, Any]]:
    """The teacher and its checkpoint's meta, refused where compress wrote it (a student)."""
    teacher, meta = load_checkpoint(teacher_path)
    if "teacher" in meta:  # written by compress: a student's pruned vocabulary and widths are not a teacher's
        raise InputError(f"'{teacher_path}' is a student made by `edge-msa compress` (from {meta['teacher']}); "
                         "expected a teacher checkpoint from `edge-msa train`: compress that teacher instead")
    return teacher, meta


def _load_data(teacher: MSAModel, meta: dict[str, Any], data: str | os.PathLike | None, splits: DatasetSplits | None,
               bar: _Progress, progress: bool) -> tuple[DatasetSplits, TeacherTargets]:
    """The splits in the teacher's shapes, and its outputs on the training split (the KD targets)."""
    if splits is None:  # the teacher's own splits (same file, format and validation carve), or --data's
        splits = rebuild_splits(data_record(meta), data, progress, text_encoder=text_front_end(teacher))
    splits = splits.for_model(teacher.spec)  # the one FeatureSpec check; modalities it lacks run as missing
    splits.require_rows()
    data_path = Path(splits.info.get("path") or str(data or splits.name))
    teacher.eval()
    targets = teacher_targets(teacher, splits.train)
    bar.done(f"teacher '{teacher.model_name}' ({sum(p.numel() for p in teacher.parameters()):,} params), data "
             f"{data_path} ({len(splits.train)}/{len(splits.valid)}/{len(splits.test)} train/valid/test)")
    return splits, targets


def _check_prune_ratio(options: CompressOptions, spec: FeatureSpec) -> None:
    """Before the data load, the text stage and any training: the ratio must leave each head and width of the
    student something (prune.check_ratio). The widths are read off a student built aside over the teacher's spec
    (the seeded RNG is left as it was); they are the student's options, not the data's."""
    with torch.random.fork_rng(devices=[]):
        student = create_model(options.student, spec, share=options.share, **options.student_params)
    assert options.prune_ratio is not None  # options.for_teacher resolved it
    check_ratio(student_of(student), options.prune_ratio)


def _test_seed(run: SeedRun, test: FeatureSet) -> SeedTest:
    """One seed's student on the test split, without and with skipping."""
    pred = predict(run.student, test)
    pred_skip, ran = predict_with_skipping(run.student, test)
    return SeedTest(run.seed, run.valid_mae, pred, pred_skip, msa_metrics(pred, test.labels),
                    msa_metrics(pred_skip, test.labels), skip_stats(ran, test, run.macs_per_step))


def _measure(teacher: MSAModel, student: StudentModel, chosen: SeedTest, splits: DatasetSplits,
             options: CompressOptions) -> Measurements:
    """Teacher vs kept student on the test split: accuracy, params and MACs per input (mean over test),
    side-by-side latency, and paired bootstraps (teacher - student, student - student with skipping)."""
    test = splits.test
    pred_teacher = predict(teacher, test)
    count_t = measure.mean_over_inputs(measure.count_model, teacher, test)
    count_s = measure.mean_over_inputs(measure.count_model, student, test)
    parts_s = measure.mean_over_inputs(measure.count_student_parts, student, test)
    front = measure.text_front_end_params(splits.spec)
    lat = measure.latency(_timed(teacher, student, test), test, options.latency_calls, options.latency_threads)
    compare = {"teacher_minus_student": measure.paired_bootstrap(pred_teacher, chosen.pred, test.labels,
                                                                 options.bootstrap),
               "student_minus_student_skip": measure.paired_bootstrap(chosen.pred, chosen.pred_skip, test.labels,
                                                                      options.bootstrap, seed=1)}
    return Measurements(msa_metrics(pred_teacher, test.labels), count_t, count_s, parts_s, front, lat, compare,
                        _end_to_end(teacher, student, count_t, count_s, lat))


def _timed(teacher: MSAModel, student: StudentModel, test: FeatureSet) -> dict[str, Callable[[dict], Any]]:
    """What the latency table times: from the raw transcript when the models carry their own text encoder."""
    models: dict[str, Callable[[dict], Any]] = {"teacher": teacher, "student": student,
                                               "student_skip": lambda b: run_with_skipping(student, b)}
    if not isinstance(teacher, WithTextEncoder):
        return models
    front = text_front_end(teacher)
    assert front is not None  # a WithTextEncoder reads text with its own tokenizer
    return {name: measure.raw_text(fn, test, front) for name, fn in models.items()}


def _end_to_end(teacher: MSAModel, student: StudentModel, count_t: dict, count_s: dict, lat: dict) -> dict[str, Any]:
    """Token ids -> score (embeddings included) params and raw-string latency; fusion-only numbers beside them."""
    if not isinstance(teacher, WithTextEncoder):
        return {}
    fusion_t, fusion_s = (sum(p.numel() for p in fusion_of(m).parameters()) for m in (teacher, student))
    return {"teacher_params": count_t["params"], "student_params": count_s["params"],
            "params_ratio": count_t["params"] / count_s["params"],
            "teacher_latency_ms_p50": lat["teacher"]["p50"], "student_latency_ms_p50": lat["student"]["p50"],
            "latency_ratio": lat["teacher"]["p50"] / lat["student"]["p50"],
            "latency": "torch CPU eager, 1 thread, batch 1, raw test transcript -> tokenizer -> text encoder -> "
                       f"fusion -> score (audio/video features given), {SIDE_BY_SIDE}",
            "fusion_only": {"teacher_params": fusion_t, "student_params": fusion_s, "params_ratio": fusion_t / fusion_s,
                            "note": "fusion part only (audio/video encoders, fusion, head, gate): no text encoder"}}

