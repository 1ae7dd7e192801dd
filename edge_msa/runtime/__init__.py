"""On-device runtime (numpy + onnxruntime): `load(bundle_dir) -> Predictor`.

Attributes are resolved lazily so `import edge_msa.runtime` costs nothing and never imports torch.
"""
from __future__ import annotations

from ..lazy import lazy_attributes

_EXPORTS = {
    "load": "predictor", "Predictor": "predictor", "Prediction": "predictor", "ItemError": "predictor",
    "Backend": "backend", "BACKENDS": "backend",
    "Manifest": "manifest", "read_manifest": "manifest", "write_manifest": "manifest",
}  # evaluate lives in edge_msa.runtime.evaluate (a same-named attribute would shadow the submodule)

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
