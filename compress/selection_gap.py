"""How far apart two compress runs are on the selection criterion, and whether validation can tell.

Every compress stage and seed is chosen on `edge_msa.teacher.SELECTION` (validation MAE with all modalities and
with text alone). On MOSI-U that split has 240 utterances, so two recipes' mean criteria can differ by noise
alone. This reads the per-seed students each run kept (`<out stem>.stages/gate[.seedN].pt`, the students the
criterion was computed on), averages each validation utterance's error over a run's seeds, and reports the
paired-bootstrap 95 % CI of run B minus run A over validation utterances. A CI that straddles 0 says validation
cannot order the two recipes. Test is never read. (`measure.paired_bootstrap` compares two prediction vectors on
Acc-2 and MAE; here the unit is an utterance's criterion error averaged over seeds, so it has its own loop.)

For more than 240 utterances, give one pair per cross-validation fold (teachers from `edge-msa train --cv-fold F/K`,
each compressed twice): each pair is scored on its fold's held-out part, which no choice of either run saw, and
the utterances of all folds are pooled, so all of train + valid decides. Acc-2 non-0 (all modalities) and its B - A
with a CI from the same resamples are reported beside the criterion; they decide nothing.

The CI resamples utterances, not training runs, so with one seed per run it leaves seed noise out: on the MOSI-U
folds a reseed of the default recipe alone moved the criterion by +0.028 [+0.010, +0.046] (README, ablation). Let
a decision rest on several seeds per side. `compress --seeds 0 1 2` reseeds the fusion stages only (its text
stage runs once, with the first seed), so a side may also be several runs joined by commas (`a0.pt,a1.pt`): all
their per-seed students are averaged per utterance, as one run's seeds are.

    python -m edge_msa.compress.selection_gap runs/final/student.pt runs/abl/prune05/student.pt
    python -m edge_msa.compress.selection_gap runs/cv/f0/a/student.pt runs/cv/f0/b/student.pt \\
        runs/cv/f1/a/student.pt runs/cv/f1/b/student.pt   # ... one pair per fold
    python -m edge_msa.compress.selection_gap runs/cv/f0/a/student.pt,runs/cv/f0/a1/student.pt \\
        runs/cv/f0/b/student.pt,runs/cv/f0/b1/student.pt ...   # two runs (seeds) per side and fold
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_msa.checkpoint import data_record, load_checkpoint, read_checkpoint
from edge_msa.data.base import FeatureSet
from edge_msa.digest import file_sha256
from edge_msa.errors import EdgeMSAError, InputError, check_range, named_as_flags
from edge_msa.jsonio import dumps
from edge_msa.metrics import polarity_non0
from edge_msa.teacher import leak_robust

from .measure import difference, percentile_ci
from .pipeline import SEED_STUDENTS, report_paths, stage_path


def run_seeds(student: Path) -> list[int]:
    """The seeds a compress run trained (its report's `seeds.values`)."""
    path = report_paths(student)[0]
    try:
        return [int(s) for s in json.loads(path.read_text(encoding="utf-8"))["seeds"]["values"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the seeds of '{student}' from {path} ({type(exc).__name__}); expected "
                         "the student.pt of an `edge-msa compress` run with its report beside it") from None


Side = tuple[Path, ...]  # one recipe's compress runs on one split; more than one: their seeds are pooled


def side_of(runs: str | os.PathLike | Sequence[str | os.PathLike]) -> Side:
    """A side given as one student.pt or as several (a sequence of paths)."""
    return (Path(runs),) if isinstance(runs, (str, os.PathLike)) else tuple(Path(r) for r in runs)


def side_predictions(side: Side, rows: FeatureSet) -> tuple[np.ndarray, list[int]]:
    """(draws, rows) predictions of every per-seed student of the side's runs, and their seeds, run by run."""
    per_run = [seed_predictions(run, rows) for run in side]
    return np.concatenate([pred for pred, _ in per_run]), [seed for _, seeds in per_run for seed in seeds]


def seed_predictions(student: Path, rows: FeatureSet) -> tuple[np.ndarray, list[int]]:
    """(seeds, rows) predictions of the per-seed students a run kept, and the seeds."""
    from edge_msa.training import predict

    seeds = run_seeds(student)
    recorded = read_checkpoint(student).get("meta", {}).get(SEED_STUDENTS)
    per_seed = []
    for seed in seeds:
        path = stage_path(student, "gate", seed if len(seeds) > 1 else None)
        check_seed_student(student, seed, path, recorded)
        model, _ = load_checkpoint(path)
        per_seed.append(predict(model, rows))
    return np.stack(per_seed), seeds


def check_seed_student(student: Path, seed: int, path: Path, recorded: dict[str, str] | None) -> None:
    """`path` must be the seed's gate-stage student of the run that wrote `student` (`recorded`: the sha256 per seed
    in its meta): a later compress into the same --out that was interrupted (or trained other seeds) leaves its own
    stage files beside the old student.pt, and scoring those silently compared the wrong recipe. Students from before
    the sha256 was recorded (`recorded` None) are not checked."""
    if not path.is_file():
        raise InputError(f"'{path}' is missing; expected the per-seed students `edge-msa compress` keeps")
    if recorded is not None and recorded.get(str(seed)) != file_sha256(path):
        raise InputError(f"'{path}' is not the seed-{seed} student of '{student}' (its sha256 is not the one recorded "
                         "there: a later compress into the same --out wrote it); expected that run's own stage files: "
                         "run its compress again")


def criterion_errors(pred: np.ndarray, rows: FeatureSet) -> np.ndarray:
    """(utterances,) selection-criterion error: the absolute error with all modalities and with text alone
    (`leak_robust` stacks the two halves), averaged over the halves and the seeds."""
    err = np.abs(pred - rows.labels).mean(axis=0)
    half = len(err) // 2
    return (err[:half] + err[half:]) / 2


def polarity_hits(pred: np.ndarray, rows: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Acc-2 non-0's per-utterance parts with all modalities (the first half of the rows), so that folds pool and
    resample exactly: how often the utterance's polarity is right over the seeds, and whether its label is non-zero
    (`metrics.polarity_non0`)."""
    labels = rows.labels[: len(rows.labels) // 2]
    correct, non_zero = polarity_non0(pred[:, : len(labels)], labels)  # (seeds, utterances), (utterances,)
    return correct.mean(axis=0), non_zero


def pooled_acc2(hits: np.ndarray, non_zero: np.ndarray) -> float | None:
    """Acc-2 non-0 of pooled per-utterance hits; None when no label is non-zero (as `msa_metrics` has it)."""
    return float(hits[non_zero].mean()) if non_zero.any() else None


def pooled_side(sides: list[Side], rows: list[FeatureSet]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                     list[list[int]]]:
    """One recipe's sides (one per compared split), pooled over the splits: criterion errors, Acc-2 non-0 hits and
    non-zero flags per utterance, and each side's seeds."""
    errors, hits, non_zero, seeds = [], [], [], []
    for side, fs in zip(sides, rows):
        pred, run_seeds = side_predictions(side, fs)
        errors.append(criterion_errors(pred, fs))
        run_hits, run_non_zero = polarity_hits(pred, fs)
        hits.append(run_hits)
        non_zero.append(run_non_zero)
        seeds.append(run_seeds)
    return np.concatenate(errors), np.concatenate(hits), np.concatenate(non_zero), seeds


def compared_rows(side_a: Side, side_b: Side) -> tuple[FeatureSet, dict[str, Any]]:
    """The rows two sides are compared on (`scored_split`, with all modalities and with text alone) and the
    lineage record all their runs share."""
    model, meta = load_checkpoint(side_a[0])
    record = data_record(meta)
    for run in (*side_a[1:], *side_b):
        if record != data_record(read_checkpoint(run).get("meta", {})):
            raise InputError(f"'{side_a[0]}' and '{run}' were made on different data or splits; expected compress "
                             "runs of the same data (their lineage records differ)")
    return leak_robust(scored_split(model, record)), record or {}


def scored_split(model: Any, record: dict[str, Any] | None) -> FeatureSet:
    """The rows a run is judged on, in `model`'s shapes: on a cross-validation fold (`train --cv-fold`) its
    held-out part, which no choice of the run saw; otherwise the validation split (test is never read). Only that
    split's text is featurized (a fold re-splits train + valid, so load_dataset featurizes every split of it)."""
    from edge_msa.data.lineage import rebuild_splits, recorded_fold
    from edge_msa.models.with_text import text_front_end

    name = "test" if recorded_fold(record) else "valid"
    splits = rebuild_splits(record, None, False, text_encoder=text_front_end(model), featurize=(name,))
    return splits.for_model(model.spec).split(name)


def scored_on(records: list[dict[str, Any]]) -> str:
    """"valid", or "held-out folds 0, 1 of 4" for pairs that cover distinct folds of one cross-validation."""
    from edge_msa.data.lineage import recorded_fold

    folds = [recorded_fold(r) for r in records]
    if len(records) == 1 and folds[0] is None:
        return "valid"
    same_data = len({(r.get("sha256"), r.get("seed")) for r in records}) == 1
    known = [f for f in folds if f is not None]
    if len(known) < len(folds) or not same_data or len({k for _, k in known}) > 1 or len(set(known)) < len(known):
        raise InputError("runs pooled over several folds must come from distinct cross-validation folds of one "
                         "dataset (`edge-msa train --cv-fold F/K`), one run or pair per fold")
    return f"held-out folds {', '.join(str(f) for f, _ in sorted(known))} of {known[0][1]}"


def selection_gap(pairs: Sequence[tuple[Any, Any]], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean criterion of sides A and B and B - A with its paired-bootstrap 95 % CI over the compared utterances,
    pooled over `pairs` (one (A, B) pair; or one per cross-validation fold); Acc-2 non-0's B - A beside it, from
    the same resamples (it decides nothing: the criterion does). A side is one student.pt or several (side_of)."""
    check_range({"resamples": resamples}, 1, strict=False, whole=True)
    if not pairs:
        raise InputError("no runs to compare; expected pairs of student.pt: A B [A B ...]")
    sides = [(side_of(a), side_of(b)) for a, b in pairs]
    compared = [compared_rows(a, b) for a, b in sides]
    where = scored_on([record for _, record in compared])
    rows = [fs for fs, _ in compared]
    a, hits_a, non_zero, seeds_a = pooled_side([side_a for side_a, _ in sides], rows)
    b, hits_b, _, seeds_b = pooled_side([side_b for _, side_b in sides], rows)  # the same rows and labels

    def acc2_gap(idx: np.ndarray) -> float | None:
        acc_a, acc_b = pooled_acc2(hits_a[idx], non_zero[idx]), pooled_acc2(hits_b[idx], non_zero[idx])
        return difference(acc_b, acc_a)

    diff, rng, draws, acc2_draws = b - a, np.random.default_rng(seed), [], []
    for _ in range(resamples):
        idx = rng.integers(0, len(diff), len(diff))
        draws.append(diff[idx].mean())
        acc2_draws.append(acc2_gap(idx))
    acc2_kept = [d for d in acc2_draws if d is not None]
    return {"scored_on": where, "utterances": len(diff), "criterion_a": float(a.mean()),
            "criterion_b": float(b.mean()), "b_minus_a": float(diff.mean()), "ci95": percentile_ci(draws),
            "se": float(np.std(draws)), "resamples": resamples,
            "acc2_non0_a": pooled_acc2(hits_a, non_zero), "acc2_non0_b": pooled_acc2(hits_b, non_zero),
            "acc2_non0_b_minus_a": acc2_gap(np.arange(len(diff))),
            "acc2_non0_ci95": percentile_ci(acc2_kept) if acc2_kept else None,
            "seeds_a": seeds_a, "seeds_b": seeds_b}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_msa.compress.selection_gap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="A B",
                        help="student.pt of the reference compress run (e.g. the defaults), then of the run to "
                             "compare with it; one such pair per fold for cross-validation folds; a side may be "
                             "several runs joined by commas (their seeds are pooled)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    args = parser.parse_args(argv)

    def compare() -> dict[str, Any]:
        if len(args.runs) % 2:
            raise InputError(f"{len(args.runs)} runs given; expected pairs: A B [A B ...]")
        sides = [run.split(",") for run in args.runs]
        for run, side in zip(args.runs, sides):
            if "" in side:
                raise InputError(f"'{run}' has an empty path between commas; expected student.pt or "
                                 "a.pt,b.pt (several runs of one side)")
        return selection_gap(list(zip(sides[::2], sides[1::2])), args.resamples)

    with named_as_flags(["resamples"]):
        return print_json(compare)


def print_json(make: Callable[[], dict[str, Any]]) -> int:
    """Exit code of a `python -m` tool: `make()`'s dict printed as JSON (0), or its EdgeMSAError as one `error:`
    line (2), as the edge-msa commands do."""
    try:
        print(dumps(make(), indent=2))
    except EdgeMSAError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
