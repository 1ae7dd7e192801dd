"""The one file hash: sha256 of a file's bytes (or a folder's files), read in 1 MiB blocks.

Why a module of its own, below everything (stdlib only): the dataset lineage (edge_msa.data), the text front end's
cache keys (edge_msa.features) and a bundle's file records (edge_msa.runtime, on the device) all hash files, and
the device's import path must not pull in the dataset readers, nor the front ends the readers."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (name + bytes, sorted by name) for directory formats."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
