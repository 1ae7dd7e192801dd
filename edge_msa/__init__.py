"""edge-msa: compress multimodal sentiment-analysis models and run them on small devices.

`import edge_msa` needs only numpy (no torch): the on-device API is `edge_msa.load(bundle_dir)`.
"""
from .errors import ArtifactError, EdgeMSAError, InputError, MissingDependencyError, ParityError
from .metrics import METRIC_KEYS, msa_metrics
from .spec import MODALITIES, FeatureSpec, ModelConfig
from .version import __version__

__all__ = [
    "ArtifactError", "EdgeMSAError", "FeatureSpec", "InputError", "METRIC_KEYS", "MODALITIES",
    "MissingDependencyError", "ModelConfig", "ParityError", "__version__", "msa_metrics",
]
