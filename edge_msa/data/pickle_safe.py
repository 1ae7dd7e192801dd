"""A restricted unpickler for the public MSA dataset pickles (MISA, MMSA, MultiBench).

Those formats are pickles of numpy arrays inside lists/dicts. Loading them with plain `pickle`
would run any code a crafted file names; this unpickler resolves only numpy array reconstruction
and builtin containers and refuses every other class with an ArtifactError naming it.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, not_found, one_line

# (module, name) pairs a numpy-only pickle needs; numpy 2 writes numpy._core, numpy 1 numpy.core.
_NUMPY_NAMES = {"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"}
_NUMPY_MODULES = {"numpy.core.multiarray", "numpy._core.multiarray", "numpy", "numpy.core.numeric",
                  "numpy._core.numeric"}
_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float",
             "complex", "bool", "slice", "range"}


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # numpy 1 pickles under numpy 2, no warning
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        if (module == "numpy" and name.endswith("DType")) or module == "numpy.dtypes":
            return super().find_class(module, name)  # numpy >= 1.25 dtype classes (e.g. Float32DType)
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)  # how protocol <= 2 pickles spell bytes
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        raise ArtifactError(f"refusing to unpickle {module}.{name}: dataset pickles may hold only numpy "
                            "arrays and builtin containers")


def load_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` with SafeUnpickler (latin1 for Python-2 era numpy pickles)."""
    path = Path(path)
    if not path.is_file():
        raise not_found("pickle file", path, "a dataset pickle (.pkl)")
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="latin1").load()
    except ArtifactError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a readable pickle ({type(exc).__name__}: {one_line(exc)}); expected a "
                            "MISA / MMSA / MultiBench dataset pickle") from None
