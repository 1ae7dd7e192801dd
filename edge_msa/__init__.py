"""edge-msa: compress multimodal sentiment-analysis models and run them on small devices.

`import edge_msa` needs only numpy (no torch): the on-device API is `edge_msa.load(bundle_dir)`.
"""
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
