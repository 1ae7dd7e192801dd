"""How far apart two compress runs are on the selection criterion, and whether validation can tell.

Every compress stage and seed is chosen on `edge_msa.teacher.SELECTION` (validation MAE with all modalities and
with text alone). On MOSI-U that split has 240 utterances, so two recipes' mean criteria can differ by noise
alone. This reads the per-seed students each run kept (`<out stem>.stages/gate[.seedN].pt`, the students the
criterion was computed on), averages each validation utterance's error over a run's seeds, and reports the
paired-bootstrap 95 % CI of run B minus run A over validation utterances. A CI that straddles 0 says validation
cannot order the two recipes. Test is never read. (`measure.paired_bootstrap` compares two prediction vectors on
Acc-2 and MAE; here the unit is an utterance's criterion error averaged over seeds, so it has its own loop.)

    python -m edge_msa.compress.selection_gap runs/final/student.pt runs/abl/prune05/student.pt
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from edge_msa.checkpoint import data_record, load_checkpoint, read_checkpoint
from edge_msa.data.base import FeatureSet
from edge_msa.errors import EdgeMSAError, InputError
from edge_msa.teacher import leak_robust

from .pipeline import report_paths, stage_path


def run_seeds(student: Path) -> list[int]:
    """The seeds a compress run trained (its report's `seeds.values`)."""
    path = report_paths(student)[0]
    try:
        return [int(s) for s in json.loads(path.read_text(encoding="utf-8"))["seeds"]["values"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the seeds of '{student}' from {path} ({type(exc).__name__}); expected "
                         "the student.pt of an `edge-msa compress` run with its report beside it") from None


def seed_errors(student: Path, selection: FeatureSet) -> tuple[np.ndarray, list[int]]:
    """(utterances,) selection-criterion error of each validation utterance, averaged over the run's seeds (the
    mean of its absolute error with all modalities and with text alone: `leak_robust` stacks the two), and the
    seeds."""
    from edge_msa.training import predict

    seeds = run_seeds(student)
    per_seed = []
    for seed in seeds:
        path = stage_path(student, "gate", seed if len(seeds) > 1 else None)
        if not path.is_file():
            raise InputError(f"'{path}' is missing; expected the per-seed students `edge-msa compress` keeps")
        model, _ = load_checkpoint(path)
        per_seed.append(np.abs(predict(model, selection) - selection.labels))
    err = np.mean(per_seed, axis=0)
    half = len(err) // 2
    return (err[:half] + err[half:]) / 2, seeds


def selection_gap(run_a: str | os.PathLike, run_b: str | os.PathLike, resamples: int = 2000,
                  seed: int = 0) -> dict:
    """Mean criterion of each run and B - A with its paired-bootstrap 95 % CI over validation utterances."""
    from edge_msa.data.lineage import rebuild_splits
    from edge_msa.models.with_text import text_front_end

    if resamples < 1:
        raise InputError(f"--resamples {resamples}; expected >= 1")
    run_a, run_b = Path(run_a), Path(run_b)
    model, meta = load_checkpoint(run_a)
    record = data_record(meta)
    if record != data_record(read_checkpoint(run_b).get("meta", {})):
        raise InputError(f"'{run_a}' and '{run_b}' were made on different data or splits; expected two compress "
                         "runs of the same data (their lineage records differ)")
    splits = rebuild_splits(record, None, False, text_encoder=text_front_end(model)).for_model(model.spec)
    selection = leak_robust(splits.valid)
    (err_a, seeds_a), (err_b, seeds_b) = seed_errors(run_a, selection), seed_errors(run_b, selection)
    diff = err_b - err_a
    rng = np.random.default_rng(seed)
    draws = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)]
    return {"valid_utterances": len(diff), "criterion_a": float(err_a.mean()), "criterion_b": float(err_b.mean()),
            "b_minus_a": float(diff.mean()), "ci95": [float(np.percentile(draws, 2.5)),
                                                      float(np.percentile(draws, 97.5))],
            "se": float(np.std(draws)), "resamples": resamples, "seeds_a": seeds_a, "seeds_b": seeds_b}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_msa.compress.selection_gap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", help="student.pt of the reference compress run (e.g. the defaults)")
    parser.add_argument("run_b", help="student.pt of the compress run to compare with it")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(selection_gap(args.run_a, args.run_b, args.resamples), indent=2))
    except EdgeMSAError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
