"""Default locations: data comes from a flag; `../shared/data` beside the checkout is the default
where it exists (our development and CI layout), so README commands run as written on a fresh clone."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def default_data_root() -> Path | None:
    """$EDGE_MSA_DATA, else ../shared/data beside the checkout or the working directory, else None."""
    env = os.environ.get("EDGE_MSA_DATA")
    if env:
        return Path(env)
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def default_mosi_path() -> Path:
    """The MOSI-U benchmark file, or an error that says which flag to pass; with $EDGE_MSA_DATA set, the file it
    looked for there (the folder that holds mosi/, not mosi/ itself), rather than advice to set it."""
    root = default_data_root()
    path = root / "mosi" / "mosi_utterance_std.npz" if root else None
    if path is not None and not path.is_file() and os.environ.get("EDGE_MSA_DATA"):
        raise InputError(f"no --data given and $EDGE_MSA_DATA holds no {path}; expected $EDGE_MSA_DATA to be the "
                         "folder that holds mosi/mosi_utterance_std.npz, or pass --data PATH")
    if path is None or not path.is_file():
        raise InputError("no --data given and no ../shared/data/mosi/mosi_utterance_std.npz beside the checkout; "
                         "pass --data PATH (or set EDGE_MSA_DATA)")
    return path


def cache_dir() -> Path:
    """Where derived features are cached ($EDGE_MSA_CACHE, else ~/.cache/edge-msa)."""
    return Path(os.environ.get("EDGE_MSA_CACHE", Path.home() / ".cache" / "edge-msa"))
