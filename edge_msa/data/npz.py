"""Read an .npz without pickle and check its keys (shared by the npz formats)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, InputError, not_found

NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (an .npz is a zip archive: b"PK")


def load_npz(path: str | os.PathLike, required: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """All arrays of `path` (allow_pickle=False) after checking that `required` keys are present."""
    path = Path(path)
    if not path.is_file():
        raise not_found(f"{what} file", path, f"a {what} .npz")
    try:
        with open(path, "rb") as f:  # np.load would return a .npy's one array, which has no named keys
            if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
                raise InputError(f"{path} is a single .npy array, not a {what} .npz; expected an .npz archive of "
                                 "named arrays (np.savez)")
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a readable {what} .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{path} is not a {what} file: missing keys {missing}; found {sorted(data)}")
    return data
