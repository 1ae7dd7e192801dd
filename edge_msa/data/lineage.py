"""Data lineage: which file, read how, carved with which seed, and exactly which rows each split holds.

`lineage(splits)` is stored in every checkpoint (meta["data"]) and bundle manifest ("data");
`rebuild_splits(record)` reads the same file with the same format and seed, so eval / bench / export /
compress score the split the model was selected on, and warns when the file or the rows differ.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from ..digest import file_sha256
from ..errors import InputError, plural, warn
from ..splits import SPLITS
from .base import Column, DatasetSplits, FeatureSet


def ids_sha256(ids: Column) -> str:
    """sha256 of the sample ids in order, one per line: two splits are the same rows iff these agree."""
    return hashlib.sha256("\n".join(str(i) for i in ids).encode("utf-8")).hexdigest()


def split_record(fs: FeatureSet) -> dict[str, Any]:
    return {"n": len(fs), "ids_sha256": ids_sha256(fs.ids)}


def scored_record(splits: DatasetSplits, split: str) -> dict[str, Any]:
    """What a score was computed on: "split" {name, n, ids_sha256} and "data" {path, sha256, missing}. One shape for
    `edge-msa eval --out` and bench's rows, which `bench --compare` reads to tell whether two scores share rows."""
    return {"split": {"name": split, **split_record(splits.split(split))},
            "data": {k: splits.info.get(k) for k in ("path", "sha256", "missing")}}


def lineage(splits: DatasetSplits) -> dict[str, Any]:
    """{"path", "format", "sha256", "seed", "splits": {train|valid|test: {"n", "ids_sha256"}}} of `splits`
    (path/format/sha256 None for splits built in memory), plus "cv": {"fold", "folds"} for a cross-validation
    fold (`edge_msa.data.cv`)."""
    info = splits.info
    cv = {"cv": dict(info["cv"])} if info.get("cv") else {}
    return {"path": info.get("path"), "format": info.get("format"), "sha256": info.get("sha256"),
            "seed": int(info.get("seed", 0)), **cv,
            "splits": {name: split_record(splits.split(name)) for name in SPLITS}}


def recorded_fold(record: dict[str, Any] | None) -> tuple[int, int] | None:
    """(fold, folds) of a `lineage` record made on a cross-validation fold, else None."""
    cv = (record or {}).get("cv")
    return (int(cv["fold"]), int(cv["folds"])) if cv else None


def recorded_file(record: dict[str, Any] | None) -> Path | None:
    """The data file a `lineage` record names, if it is still there, else MOSI-U where it holds the recorded bytes (the
    model's own file reached from another checkout), else None. One rule for eval, compress and bench (`_data_path`)
    and export, which checked a model moved with its MOSI-U run folder on random inputs while eval found the file."""
    from ..paths import default_mosi_path

    record = record or {}
    recorded = record.get("path")
    if recorded and Path(recorded).exists():
        return Path(recorded)
    if not (recorded and record.get("sha256")):
        return None
    try:
        default = default_mosi_path()
    except InputError:
        return None
    return default if _compared_sha256(record, default) == record["sha256"] else None


def rebuild_splits(record: dict[str, Any] | None, data: str | os.PathLike | None = None,
                   progress: bool = False, text_encoder: Any = None,
                   featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    """The splits of `record` (a `lineage` dict; None = unknown: seed 0), read from `data` or else the
    recorded path or else MOSI-U (`_data_path`: an InputError when the recorded file is gone and MOSI-U is not it;
    `text_encoder`, `featurize` as in load_dataset). Warns when the file's sha256 or a split's rows differ from the
    record (every split's rows, featurized or not), or when the record holds neither (a model from before lineage: a
    path and seed at most, which read MOSI-U without a word once the path was gone); a sha256 warning says whether the
    recorded file was edited since or another file was given, as the fixes differ."""
    from .loader import load_dataset

    record = record or {}
    recorded = record.get("path")
    path = _data_path(record, data)
    same_file = recorded is not None and Path(recorded).resolve() == path.resolve()
    sha256 = None if same_file else _compared_sha256(record, path)  # passed on, so load_dataset need not hash it
    fmt = record.get("format") if same_file or (sha256 and sha256 == record["sha256"]) else None
    splits = load_dataset(path, fmt=fmt, seed=int(record.get("seed", 0)),
                          progress=progress, text_encoder=text_encoder, cv_fold=recorded_fold(record),
                          featurize=featurize, sha256=sha256)
    if not (record.get("sha256") or record.get("splits")):  # none, or a path and seed alone: nothing to check against
        warn(f"no data lineage recorded with the model; reading {path} with seed {int(record.get('seed', 0))}, which "
             "may not be the file or the carve the model was trained on")
    elif record.get("sha256") and splits.info.get("sha256") != record["sha256"]:
        now, then = str(splits.info.get("sha256"))[:12], record["sha256"][:12]
        if same_file:
            warn(f"{path} was edited since the model was trained on it (sha256 {now}…, then {then}…): its "
                 "rows and labels may not be the model's")
        else:
            warn(f"{path} (sha256 {now}…) is not the file the model was trained on ({recorded}, sha256 "
                 f"{then}…): its splits are not the model's")
    else:
        # getattr, not split(): the ids of every split are read, whether or not its text was featurized
        changed = [n for n in SPLITS if n in record.get("splits", {})
                   and split_record(getattr(splits, n))["ids_sha256"] != record["splits"][n]["ids_sha256"]]
        if changed:
            warn(f"{path}: {plural(len(changed), 'split')} ({', '.join(changed)}) with other rows than the model's "
                 "record (a reader or seed changed); scores are not comparable")
    return splits


def _compared_sha256(record: dict[str, Any], path: Path) -> str | None:
    """`path`'s sha256 where `record` holds one to compare it with (else None, the file unread). A file at another
    path with the recorded bytes (moved, copied, another checkout) is read in the recorded format: detected from its
    new name instead, it had another reader or none (a file trained with `train --data-format` was refused by eval,
    bench, export and compress, which have no such flag). The digest is returned, not only compared, for
    rebuild_splits to pass on to load_dataset, which read the file once more to hash it: a file of GBs (MOSEI's)."""
    return file_sha256(path) if record.get("sha256") and path.exists() else None


def _data_path(record: dict[str, Any], data: str | os.PathLike | None) -> Path:
    """`data`, else the recorded file, else MOSI-U, but MOSI-U only for a model without a record or whose recorded
    file it is (moved: same sha256). A model trained on a label.csv that was since moved or deleted had eval,
    compress and export read MOSI-U instead, under one warning, and report its scores as the model's."""
    from ..paths import default_mosi_path

    if data is not None:
        return Path(data)
    found = recorded_file(record)
    if found:
        return found
    if not (record.get("path") and record.get("sha256")):  # no record to hold MOSI-U against
        return default_mosi_path()
    raise InputError(f"the model's data {record['path']} is not there (moved or deleted); expected that file back "
                     "at its path, or --data naming where it is now")


def summary(record: dict[str, Any] | None) -> str:
    """One line for `edge-msa info`."""
    if not record:
        return "unknown (made before data lineage was recorded)"
    sizes = ", ".join(f"{n} {s['n']} ({s['ids_sha256'][:8]})" for n, s in record.get("splits", {}).items())
    sha = (record.get("sha256") or "?")[:12]
    fold = recorded_fold(record)
    cv = f", cross-validation fold {fold[0]}/{fold[1]} (test = the held-out part of train + valid)" if fold else ""
    return f"{record.get('path')} [{record.get('format')}] sha256 {sha}… seed {record.get('seed')}{cv}; {sizes}"
