"""Package attributes imported on first use, so importing a package costs nothing until one is used (the CLI builds
its parser from light modules on every call; `import edge_msa.runtime` must not import onnxruntime)."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: attribute `name` in `exports` comes from submodule `exports[name]`."""
    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
