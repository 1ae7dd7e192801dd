"""What compression costs on held-out cross-validation folds: teacher − student pooled over the folds.

A compress report's `compare.teacher_minus_student` is measured on test, once per run. For the runs of a
cross-validation (teachers from `edge-msa train --cv-fold F/K`, each compressed), this scores each run's teacher
and saved student on the fold's held-out part, pools the utterances of all folds (all of train + valid), and
reports Acc-2 non-0 and MAE of each with the paired-bootstrap 95 % CI of teacher − student
(`measure.paired_bootstrap`). Test is never read.

    python -m edge_msa.compress.fold_drop runs/cv/f0/a/student.pt runs/cv/f1/a/student.pt ...
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_msa.checkpoint import data_record, load_checkpoint
from edge_msa.errors import InputError, check_range, named_as_flags
from edge_msa.metrics import msa_metrics

from .measure import paired_bootstrap
from .selection_gap import print_json, scored_on, scored_split


def fold_predictions(student: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(teacher predictions, student predictions, labels) on a fold run's held-out part, and its lineage record.
    Both models score the one split rebuilt in the teacher's shapes, as compress's own report does."""
    from edge_msa.data.lineage import recorded_fold
    from edge_msa.training import predict

    model, meta = load_checkpoint(student)
    if "teacher" not in meta:
        raise InputError(f"'{student}' names no teacher; expected the student.pt of an `edge-msa compress` run")
    record = data_record(meta) or {}
    if recorded_fold(record) is None:
        raise InputError(f"'{student}' was not made on a cross-validation fold; expected students of "
                         "teachers from `edge-msa train --cv-fold F/K`")
    teacher_path = Path(meta["teacher"])
    if not teacher_path.is_file():
        raise InputError(f"the teacher '{teacher_path}' of '{student}' is not there; expected it where compress "
                         "read it (relative paths count from the folder compress ran in)")
    teacher, _ = load_checkpoint(teacher_path)
    rows = scored_split(teacher, record)
    return predict(teacher, rows), predict(model, rows), rows.labels, record


def fold_drop(students: Sequence[str | os.PathLike], resamples: int = 1000) -> dict[str, Any]:
    """Teacher and student metrics pooled over the folds' held-out parts, and teacher − student with its CI."""
    check_range({"resamples": resamples}, 1, strict=False, whole=True)
    folds = [fold_predictions(Path(s)) for s in students]
    where = scored_on([record for *_, record in folds])
    teacher, student, labels = (np.concatenate([f[i] for f in folds]) for i in range(3))
    keys = ("acc2_non0", "acc2_has0", "f1_non0", "acc7", "mae", "corr")
    scores = {name: msa_metrics(pred, labels) for name, pred in (("teacher", teacher), ("student", student))}
    return {"scored_on": where, "utterances": len(labels),
            **{name: {k: metrics[k] for k in keys} for name, metrics in scores.items()},
            "teacher_minus_student": paired_bootstrap(teacher, student, labels, resamples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_msa.compress.fold_drop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("students", nargs="+", help="student.pt of one compress run per cross-validation fold")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    args = parser.parse_args(argv)
    with named_as_flags(["resamples"]):
        return print_json(lambda: fold_drop(args.students, args.resamples))


if __name__ == "__main__":
    sys.exit(main())
