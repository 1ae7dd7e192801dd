"""Default locations: data comes from a flag; `../shared/data` beside the checkout (or the working directory) is
the default where it exists (our development and CI layout), so README commands run as written on a fresh clone."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .errors import InputError

DATA_ENV = "EDGE_MSA_DATA"  # the folder that holds mosi/ (and mosei/)
MOSI_FILE = "mosi/mosi_utterance_std.npz"  # MOSI-U, relative to that folder
MOSEI_FILE = "mosei/label.csv"  # MOSEI's MMSA label.csv there: the texts of compress's --transfer mosei
CACHE_ENV = "EDGE_MSA_CACHE"  # the folder for derived features (default ~/.cache/edge-msa)
# Without $EDGE_MSA_DATA, the data folder is SHARED_DATA from the first of these folders that has one: the one rule of
# default_data_root, which its error and the --data help (cli.DEFAULT_DATA) name from here (the help named the
# checkout alone, and repeated ../shared/data).
SHARED_DATA = "../shared/data"
SHARED_DATA_FROM: dict[str, Callable[[], Path]] = {
    "the checkout": lambda: Path(__file__).resolve().parents[1],
    "the working directory": Path.cwd,
}


def searched(relative: str) -> str:
    """Where `relative`, a file of the data folder, is looked for (default_data_root's rule), in words: the help and
    messages of what defaults to such a file. Why: compress's --transfer mosei named ../shared/data alone, so a user
    who had set $EDGE_MSA_DATA was told the default ignored it, as the --data help told before it was worded here."""
    return f"${DATA_ENV}/{relative}, else {_shared(relative)}"


def _shared(relative: str) -> str:
    """Where `relative` is looked for without $EDGE_MSA_DATA, in words: searched's second half, and the whole of
    default_mosi_path's error (which is raised only where $EDGE_MSA_DATA is unset)."""
    return f"{SHARED_DATA}/{relative} beside {' or '.join(SHARED_DATA_FROM)}"


def default_data_root() -> Path | None:
    """$EDGE_MSA_DATA, else SHARED_DATA beside the checkout or the working directory (SHARED_DATA_FROM), else None."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    for base in SHARED_DATA_FROM.values():
        candidate = Path(os.path.normpath(base() / SHARED_DATA))  # lexical: base's parent / shared / data
        if candidate.is_dir():
            return candidate
    return None


def default_mosi_path() -> Path:
    """The MOSI-U benchmark file, or an error that says which flag to pass; with $EDGE_MSA_DATA set, the file it
    looked for there (the folder that holds mosi/, not mosi/ itself), rather than advice to set it."""
    root = default_data_root()
    path = root / MOSI_FILE if root else None
    if path is not None and path.is_file():
        return path
    if os.environ.get(DATA_ENV):
        raise InputError(f"no --data given and ${DATA_ENV} holds no {path}; expected ${DATA_ENV} to be the folder "
                         f"that holds {MOSI_FILE}, or pass --data PATH")
    raise InputError(f"no --data given and no {_shared(MOSI_FILE)}; pass --data PATH (or set {DATA_ENV})")


def cache_dir() -> Path:
    """Where derived features are cached ($EDGE_MSA_CACHE, else ~/.cache/edge-msa), or an InputError where neither
    names a folder: no $HOME and no home directory for this user, as in a container under an arbitrary uid (the home
    is looked up only without $EDGE_MSA_CACHE, whose user may have none)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    try:
        return Path.home() / ".cache" / "edge-msa"
    except RuntimeError:  # pathlib's "Could not determine home directory."
        raise InputError(f"no ${CACHE_ENV} set and no home directory for this user; expected ${CACHE_ENV} to name "
                         "a writable folder for edge-msa's cache") from None


def utf8_path(path: Path, what: str) -> Path:
    """`path`, or one line where its full path is not UTF-8 (a name in another encoding, e.g. a Latin-1 'café' on a
    memory card, which Python keeps as surrogates). Why: onnxruntime, tokenizers and soundfile take UTF-8 paths only,
    and refused such a one with an error blaming the file (a 'corrupt' graph) or a traceback; OpenCV crashed the
    process (a segmentation fault)."""
    full = str(path.absolute())  # a relative path is opened through the working directory's
    try:
        full.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} path {full!r} is not valid UTF-8; expected a UTF-8 path, the only kind onnxruntime "
                         "and the media decoders open: rename it or copy it") from None
    return path
