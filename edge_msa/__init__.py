"""edge-msa: compress multimodal sentiment-analysis models and run them on small devices.

`import edge_msa` needs only numpy (no torch): the on-device API is `edge_msa.load(bundle_dir)`.
"""
import os
import sys

# Before anything imports onnxruntime: from 1.29 on, its Linux build keeps a telemetry database under
# ~/.cache/Microsoft (or $XDG_CACHE_HOME) from its import on, to upload to Microsoft, and prints a warning at every
# start where that folder is read-only; a device must write nothing outside its own outputs. Setting the variable
# to 0 keeps onnxruntime's default.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
if os.environ["ORT_DISABLE_TELEMETRY"] == "1" and sys.modules.get("onnxruntime") is not None:
    # Imported before edge_msa, onnxruntime read the variable too early: its database and device id are written
    # already, but its later events (each run error's message, source file and line) are kept out of it.
    sys.modules["onnxruntime"].disable_telemetry_events()

from .errors import ArtifactError, EdgeMSAError, InputError, MissingDependencyError, ParityError
from .metrics import METRIC_KEYS, msa_metrics
from .spec import MODALITIES, FeatureSpec, ModelConfig
from .version import __version__

__all__ = [
    "ArtifactError", "EdgeMSAError", "FeatureSpec", "InputError", "METRIC_KEYS", "MODALITIES",
    "MissingDependencyError", "ModelConfig", "ParityError", "Predictor", "__version__", "load", "msa_metrics",
]


def __getattr__(name: str):
    """`edge_msa.load` / `edge_msa.Predictor` / `edge_msa.runtime`, imported on first use (onnxruntime)."""
    if name in ("load", "Predictor"):
        from .runtime import predictor
        return getattr(predictor, name)
    if name == "runtime":
        import importlib
        return importlib.import_module(".runtime", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
